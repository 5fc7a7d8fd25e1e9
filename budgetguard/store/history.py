"""Evaluations and verdict changes: writing a cycle, and reading the latest, a history and the changes
(and one SLO's budget line, for the status page).

A cycle is written in one transaction, one row per evaluation and one per changed verdict, with the
records serialised before the write lock is taken (``prepare``). ``latest`` rebuilds evaluations with
``records.from_record`` so a restart serves the verdicts it had before. Every read seeks through an
index (``tests/test_store.py`` checks the query plans): a scan of a large file takes minutes.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from budgetguard.core.errors import StoreError
from budgetguard.core.policy import Evaluation
from budgetguard.core.records import format_time, from_record, to_record
from budgetguard.core.spec import SLO
from budgetguard.store.encoding import decode_record, encode_record, from_unix, unix
from budgetguard.store.retention import bucket_start
from budgetguard.store.schema import SLOT, slot

if TYPE_CHECKING:
    from budgetguard.store.connection import Connection, Transaction

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pending:
    """An evaluation serialised outside the write lock; only ``verdict_changed`` waits for the database."""

    at: float
    slo_id: str
    service: str
    slo: str
    verdict: str
    reason: str
    budget_remaining: float | None
    error_ratio: float | None
    events: float | None
    record: bytes


def prepare(evaluations: Sequence[Evaluation]) -> list[Pending]:
    pending = []
    for ev in evaluations:
        at = unix(ev.at, f"the evaluation time of {ev.slo.id}")
        pending.append(
            Pending(
                at=at,
                slo_id=ev.slo.id,
                service=ev.slo.service,
                slo=ev.slo.name,
                verdict=str(ev.verdict),
                reason=ev.reason,
                budget_remaining=ev.budget_remaining,
                error_ratio=ev.error_ratio,
                events=ev.events,
                # Infinity is kept (json writes it, json reads it back) rather than failing a cycle.
                record=encode_record(to_record(ev)),
            )
        )
    return pending


_EVALUATION_COLUMNS = (
    "at",
    "slo_id",
    "service",
    "slo",
    "verdict",
    "reason",
    "budget_remaining",
    "error_ratio",
    "events",
    "verdict_changed",
    "record",
)
_INSERT_EVALUATION = (
    f"INSERT INTO evaluations ({', '.join(_EVALUATION_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _EVALUATION_COLUMNS)})"
)
_INSERT_CHANGE = (
    "INSERT INTO verdict_changes (at, slo_id, from_verdict, to_verdict, reason) VALUES (?, ?, ?, ?, ?)"
)
_PREVIOUS_VERDICTS = """
    SELECT ids.value AS slo_id, l.verdict
    FROM json_each(?) AS ids JOIN slo_latest AS l ON l.slo_id = ids.value
"""
_LATEST_RECORDS = """
    SELECT ids.value AS slo_id, e.record
    FROM json_each(?) AS ids
    JOIN slo_latest AS l ON l.slo_id = ids.value
    JOIN evaluations AS e ON e.id = l.evaluation_id
"""
# One index seek per slot of [since, until), ids sorted and limited before any record is read.
_HISTORY = """
    WITH RECURSIVE slots(slot) AS (
        SELECT :first_slot UNION ALL SELECT slot + 1 FROM slots WHERE slot < :last_slot
    )
    SELECT record FROM evaluations WHERE id IN (
        SELECT e.id FROM slots CROSS JOIN evaluations AS e
        WHERE CAST(e.at / 600 AS INTEGER) = slots.slot AND e.slo_id = :slo_id
          AND e.at >= :since AND e.at < :until
        ORDER BY e.at, e.id LIMIT :limit
    )
    ORDER BY at, id
"""

# The last budget_remaining of each :step-second bucket of one SLO (SQLite's bare column beside max()
# takes the row of the maximum): the status page's sparklines and burn-down, without decoding records.
_BUDGET_SERIES = """
    WITH RECURSIVE slots(slot) AS (
        SELECT :first_slot UNION ALL SELECT slot + 1 FROM slots WHERE slot < :last_slot
    )
    SELECT CAST((e.at - :since) / :step AS INTEGER) AS bucket, max(e.at) AS at, e.budget_remaining
    FROM slots CROSS JOIN evaluations AS e
    WHERE CAST(e.at / 600 AS INTEGER) = slots.slot AND e.slo_id = :slo_id AND e.at >= :since
    GROUP BY bucket ORDER BY bucket
"""


def cycle_slo_ids(pending: Sequence[Pending]) -> list[str]:
    """The SLOs of a cycle, once each, in order: whose last stored verdict the cycle compares with."""
    return list(dict.fromkeys(p.slo_id for p in pending))


def cycle_rows(
    pending: Sequence[Pending], previous: Mapping[str, str | None]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The ``evaluations`` rows of a cycle and its ``verdict_changes`` rows, given each SLO's last stored
    verdict (``previous``): the same for every backend, whatever its SQL dialect."""
    last = dict(previous)
    evaluations = []
    changes = []
    for p in pending:
        before = last.get(p.slo_id)
        changed = before != p.verdict
        last[p.slo_id] = p.verdict
        evaluations.append(
            (
                p.at,
                p.slo_id,
                p.service,
                p.slo,
                p.verdict,
                p.reason,
                p.budget_remaining,
                p.error_ratio,
                p.events,
                int(changed),
                p.record,
            )
        )
        if changed:
            changes.append((p.at, p.slo_id, before, p.verdict, p.reason))
    return evaluations, changes


def write_cycle(tx: Transaction, pending: Sequence[Pending]) -> None:
    """One cycle's rows, in ``tx``: a change row where the verdict differs from the SLO's last."""
    if not pending:
        return
    slo_ids = cycle_slo_ids(pending)
    previous = {row["slo_id"]: row["verdict"] for row in tx.query(_PREVIOUS_VERDICTS, [json.dumps(slo_ids)])}
    evaluations, changes = cycle_rows(pending, previous)
    # sqlite-utils' insert_all builds multi-row INSERTs in Python: 5x slower than executemany here.
    tx.executemany(_INSERT_EVALUATION, evaluations)
    tx.executemany(_INSERT_CHANGE, changes)
    # A row older than the downsampling watermark (a clock stepping back) reopens its bucket.
    oldest_bucket = bucket_start(min(p.at for p in pending))
    tx.execute(
        "UPDATE retention_state SET downsampled_until = ? WHERE downsampled_until > ?",
        [oldest_bucket, oldest_bucket],
    )


def latest(db: Connection, slos: Sequence[SLO]) -> dict[str, Evaluation]:
    """The last stored evaluation of each SLO, by ``slo.id``, rebuilt against the SLO as declared now.

    SLOs with no history are absent, and so is a renamed SLO under its new id. A record that cannot
    be rebuilt is logged and left out: the SLO then starts afresh instead of stopping the restart.
    """
    by_id = {slo.id: slo for slo in slos}
    rows = db.query(_LATEST_RECORDS, [json.dumps(list(by_id))])
    latest: dict[str, Evaluation] = {}
    for row in rows:
        if row["record"] is None:
            continue
        slo_id = row["slo_id"]
        try:
            latest[slo_id] = from_record(decode_record(row["record"]), by_id[slo_id])
        except (StoreError, ValueError, KeyError, TypeError):
            log.warning("the stored evaluation of %s cannot be read; it is ignored", slo_id, exc_info=True)
    return latest


def history(
    db: Connection,
    slo_id: str,
    since: datetime,
    until: datetime | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Records of one SLO at or after ``since`` and before ``until``, oldest first, as stored.

    ``limit`` keeps the oldest ``limit`` records, so a caller pages forward from the last ``at``.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be at least 0, got {limit}")
    since_s = unix(since, "since")
    until_s = math.inf if until is None else unix(until, "until")
    # Seek only the slots between the file's oldest evaluation and this SLO's newest.
    bounds = db.query(
        f"SELECT (SELECT min({SLOT}) FROM evaluations) AS oldest,"
        " (SELECT at FROM slo_latest WHERE slo_id = ?) AS newest",
        [slo_id],
    )[0]
    if bounds["newest"] is None or limit == 0 or since_s >= until_s:
        return []
    first_slot = max(slot(since_s), int(bounds["oldest"]))
    last_slot = slot(min(until_s, float(bounds["newest"])))
    parameters = {
        "first_slot": first_slot,
        "last_slot": last_slot,
        "slo_id": slo_id,
        "since": since_s,
        "until": until_s,
        "limit": -1 if limit is None else limit,
    }
    return [decode_record(row["record"]) for row in db.query(_HISTORY, parameters)]


def budget_series(
    db: Connection, slo_id: str, since: datetime, step: timedelta
) -> list[tuple[datetime, float | None]]:
    """One SLO's budget remaining since ``since``: the last evaluation of each ``step``, oldest first.

    Reads the ``budget_remaining`` column, never the records, so a 30-day line of a thousand SLOs is
    cheap enough for the status page.
    """
    since_s = unix(since, "since")
    step_s = step.total_seconds()
    if step_s <= 0:
        raise ValueError(f"step must be positive, got {step}")
    bounds = db.query(
        f"SELECT (SELECT min({SLOT}) FROM evaluations) AS oldest,"
        " (SELECT at FROM slo_latest WHERE slo_id = ?) AS newest",
        [slo_id],
    )[0]
    if bounds["newest"] is None or float(bounds["newest"]) < since_s:
        return []
    parameters = {
        "first_slot": max(slot(since_s), int(bounds["oldest"])),
        "last_slot": slot(float(bounds["newest"])),
        "slo_id": slo_id,
        "since": since_s,
        "step": step_s,
    }
    return [(from_unix(row["at"]), row["budget_remaining"]) for row in db.query(_BUDGET_SERIES, parameters)]


def verdict_changes(db: Connection, slo_id: str | None, since: datetime) -> list[dict[str, Any]]:
    """Verdict changes at or after ``since``, oldest first, of one SLO or (``None``) of all.

    Each is ``{"at", "slo_id", "from", "to", "reason"}``; ``at`` is written as in records (UTC,
    ISO 8601, ``Z``) and ``from`` is ``None`` for an SLO's first evaluation.
    """
    sql = "SELECT at, slo_id, from_verdict, to_verdict, reason FROM verdict_changes WHERE at >= ?"
    parameters: list[Any] = [unix(since, "since")]
    if slo_id is not None:
        sql += " AND slo_id = ?"
        parameters.append(slo_id)
    rows = db.query(sql + " ORDER BY at, id", parameters)
    return [
        {
            "at": format_time(from_unix(row["at"])),
            "slo_id": row["slo_id"],
            "from": row["from_verdict"],
            "to": row["to_verdict"],
            "reason": row["reason"],
        }
        for row in rows
    ]
