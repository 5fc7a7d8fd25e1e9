"""The daemon's memory: every evaluation and every verdict change, in one SQLite file.

Owns the schema, its numbered migrations, transactions and retention. The file must survive a crash
at any instant and a restart must serve the verdicts and exported values it had before, so a cycle is
written in one transaction and ``latest`` rebuilds evaluations with ``records.from_record``. It must not
do HTTP or make policy decisions: it stores what the engine decided and answers questions about it.
sqlite-utils (and ``sqlite3``) live here and nowhere else.

Schema (version 3; ``PRAGMA user_version`` is the applied migration's number)::

    evaluations       one row per SLO per cycle
      id INTEGER PRIMARY KEY, at REAL (UTC unix seconds), slo_id TEXT ("service/name"), service TEXT,
      slo TEXT, verdict TEXT, reason TEXT, budget_remaining REAL, error_ratio REAL, events REAL,
      verdict_changed INTEGER (1 when the verdict differs from the SLO's previous row: retention keeps
      it), record BLOB (``records.to_record`` as JSON deflated against a preset dictionary, see
      ``encode_record``; plain JSON TEXT in rows written before compression)
      index (ten-minute slot of at, slo_id, at): the history of one SLO since T (one seek per slot)
      and retention. Time comes first so that a cycle's thousand inserts land in the few index pages
      of the current slot; an (slo_id, at) index puts each SLO's newest entry on its own page and a
      cycle rewrites a thousand pages (measured: 200 ms instead of 33 ms per cycle on a 3 GB file)
    slo_latest        one row per SLO: its newest evaluation's id, time and verdict, kept by a trigger
      on insert; the previous verdict of a cycle and ``latest`` are primary-key lookups here
    verdict_changes   one row per change, the first evaluation of an SLO included (from NULL)
      id INTEGER PRIMARY KEY, at REAL, slo_id TEXT, from_verdict TEXT NULL, to_verdict TEXT, reason TEXT
      index (slo_id, at) and (at)
    retention_state   one row: downsampled_until REAL, where the last downsampling stopped, so each
      prune reads only the rows that aged since the previous one
    incidents         (migration 2) one row per canary incident (``guard.Incident``), id TEXT
      PRIMARY KEY (deterministic, ``guard.incident_id``); index (state, slo_id) for the open ones
    outbox            (migration 2) one row per delivery to make, written in the transaction of the
      decision that made it: idempotency_key TEXT UNIQUE (a replayed decision inserts nothing), action,
      event, request (``records.request_to_record`` JSON), status (pending, delivered, already_done,
      failed, dry_run), attempts, next_attempt_at, last_status, last_detail, done_at, resend_at (when
      a delivered trigger must be sent again, for targets that forget, like Alertmanager)
    guard_pauses      (migration 2) SLOs whose guard is paused: paused_at, until (NULL: until resumed),
      by, reason
    incidents.affected  (migration 3) who is affected (``affected.to_record`` JSON), NULL until the
      daemon's breakdown query answered; read into every outbox row of the incident when delivered

Times are UTC unix seconds as REAL and nothing else; datetimes in and out are timezone-aware, and a
naive one is a ``ValueError``. The file is opened in WAL mode (readers never block the cycle's writer)
with ``synchronous=NORMAL`` (a power loss may lose the last cycles, never corrupt the file). A new file
gets 16 KiB pages and ``auto_vacuum=INCREMENTAL`` before its first table, the only moment both can be
set without rewriting the whole file.

Later issues append a ``Migration`` to ``MIGRATIONS`` and write their own rows (incidents, an action
outbox) in the cycle's transaction through ``record_cycle(evaluations, extra=...)``. A file whose schema
is newer than this code is refused with a ``ConfigError`` and left untouched; so is a SQLite file that
belongs to something else.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any

import sqlite_utils

from budgetguard.core import affected as affected_records
from budgetguard.core.errors import BudgetguardError, ConfigError
from budgetguard.core.guard import Decision, Incident, IncidentState
from budgetguard.core.policy import Evaluation
from budgetguard.core.ports import ActionRequest, Affected
from budgetguard.core.records import (
    format_time,
    from_record,
    request_from_record,
    request_to_record,
    to_record,
)
from budgetguard.core.spec import SLO

log = logging.getLogger(__name__)

# Positional (``?``) or named (``:name``) statement parameters.
Parameters = Sequence[Any] | dict[str, Any]

# Evaluations younger than this are kept at full (30 s) resolution: a day covers the incident being
# investigated right now and the 1h/5m page tier's windows many times over.
RAW_RETENTION = timedelta(days=1)
# Everything is deleted after this: three 30-day SLO windows, a quarter's budget review. The price,
# measured by bench/store_growth.py: about 25 MiB per SLO at steady state (2.0 MB per SLO per day raw,
# 0.27 MB per SLO per day once downsampled), so 25 GB for a thousand SLOs.
KEEP_RETENTION = timedelta(days=90)
# Older evaluations keep one row per SLO per bucket, the bucket's last, plus every verdict change. Five
# minutes is the shortest window the default tiers judge, so a bucket never hides a tier's decision.
DOWNSAMPLE_BUCKET = timedelta(minutes=5)

# Prune works in slices so the write lock is never held for long: evaluations of this much time per
# transaction (0.35 s with a thousand SLOs, measured), and this many free pages given back per step.
_DOWNSAMPLE_SLICE = timedelta(minutes=15)
_VACUUM_STEP_PAGES = 1024

# How long a statement waits for another connection's write lock before failing with "locked".
DEFAULT_BUSY_TIMEOUT = timedelta(seconds=5)
# /readyz must answer quickly even when another process holds the write lock.
_PROBE_BUSY_TIMEOUT = timedelta(milliseconds=200)
# A stored row is 0.5-1 KiB compressed (2 KiB as plain JSON): 16 KiB pages leave little slack at the end
# of each page, where SQLite's default 4 KiB pages held a single 2 KiB row and wasted half the file.
_PAGE_SIZE_BYTES = 16384
# The WAL is truncated back to this after a checkpoint, so one large prune does not leave a large file.
_JOURNAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024


class StoreError(BudgetguardError):
    """The database could not be read or written (locked, disk full, closed, unreadable file)."""


@dataclass(frozen=True)
class Migration:
    """One step of the schema; ``version`` is what ``PRAGMA user_version`` says once it has run.

    Migrations only ever append: a released one is never edited, because files in the field have
    already run it.
    """

    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "evaluations, the latest evaluation of each SLO, verdict changes and the retention watermark",
        (
            """
            CREATE TABLE evaluations (
                id INTEGER PRIMARY KEY,
                at REAL NOT NULL,
                slo_id TEXT NOT NULL,
                service TEXT NOT NULL,
                slo TEXT NOT NULL,
                verdict TEXT NOT NULL,
                reason TEXT NOT NULL,
                budget_remaining REAL,
                error_ratio REAL,
                events REAL,
                verdict_changed INTEGER NOT NULL,
                record BLOB NOT NULL
            )
            """,
            # Queries must spell the slot as _SLOT does, or SQLite cannot use this index.
            "CREATE INDEX evaluations_by_slot ON evaluations (CAST(at / 600 AS INTEGER), slo_id, at)",
            """
            CREATE TABLE slo_latest (
                slo_id TEXT PRIMARY KEY,
                evaluation_id INTEGER NOT NULL,
                at REAL NOT NULL,
                verdict TEXT NOT NULL
            ) WITHOUT ROWID
            """,
            """
            CREATE TRIGGER evaluations_keep_slo_latest AFTER INSERT ON evaluations BEGIN
                INSERT INTO slo_latest (slo_id, evaluation_id, at, verdict)
                VALUES (NEW.slo_id, NEW.id, NEW.at, NEW.verdict)
                ON CONFLICT (slo_id) DO UPDATE
                SET evaluation_id = excluded.evaluation_id, at = excluded.at, verdict = excluded.verdict
                WHERE excluded.at >= slo_latest.at;
            END
            """,
            """
            CREATE TABLE verdict_changes (
                id INTEGER PRIMARY KEY,
                at REAL NOT NULL,
                slo_id TEXT NOT NULL,
                from_verdict TEXT,
                to_verdict TEXT NOT NULL,
                reason TEXT NOT NULL
            )
            """,
            "CREATE INDEX verdict_changes_by_slo_at ON verdict_changes (slo_id, at)",
            "CREATE INDEX verdict_changes_by_at ON verdict_changes (at)",
            """
            CREATE TABLE retention_state (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                downsampled_until REAL NOT NULL
            )
            """,
            "INSERT INTO retention_state (id, downsampled_until) VALUES (1, 0)",
        ),
    ),
    Migration(
        2,
        "canary incidents, the action outbox and guard pauses",
        (
            """
            CREATE TABLE incidents (
                id TEXT PRIMARY KEY,
                slo_id TEXT NOT NULL,
                service TEXT NOT NULL,
                slo TEXT NOT NULL,
                canary_label TEXT NOT NULL,
                canary_value TEXT NOT NULL,
                baseline TEXT,
                state TEXT NOT NULL,
                opened_at REAL NOT NULL,
                reason TEXT NOT NULL,
                burn_rates TEXT NOT NULL,
                events REAL,
                healthy_since REAL,
                acknowledged_at REAL,
                acknowledged_by TEXT,
                resolved_at REAL,
                resolution TEXT
            ) WITHOUT ROWID
            """,
            "CREATE INDEX incidents_by_state ON incidents (state, slo_id)",
            "CREATE INDEX incidents_by_canary ON incidents (slo_id, canary_value, opened_at)",
            """
            CREATE TABLE outbox (
                id INTEGER PRIMARY KEY,
                idempotency_key TEXT NOT NULL UNIQUE,
                incident_id TEXT NOT NULL REFERENCES incidents (id),
                action TEXT NOT NULL,
                event TEXT NOT NULL,
                request TEXT NOT NULL,
                status TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                created_at REAL NOT NULL,
                next_attempt_at REAL,
                last_attempt_at REAL,
                last_status INTEGER,
                last_detail TEXT,
                done_at REAL,
                resend_at REAL
            )
            """,
            "CREATE INDEX outbox_due ON outbox (status, next_attempt_at)",
            "CREATE INDEX outbox_by_incident ON outbox (incident_id)",
            """
            CREATE TABLE guard_pauses (
                slo_id TEXT PRIMARY KEY,
                paused_at REAL NOT NULL,
                until REAL,
                by TEXT,
                reason TEXT
            ) WITHOUT ROWID
            """,
        ),
    ),
    Migration(
        3,
        "who is affected: the breakdown of an incident's canary errors",
        ("ALTER TABLE incidents ADD COLUMN affected TEXT",),
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1].version

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
# The ten-minute slot of a time, exactly as the evaluations_by_slot index spells it. CAST truncates
# towards zero, which is floor for every time after 1970.
_SLOT_SECONDS = 600
_SLOT = "CAST(at / 600 AS INTEGER)"
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
# Rows of [lo, hi) that are neither their (SLO, bucket)'s last nor a verdict change.
_DOWNSAMPLE = f"""
    DELETE FROM evaluations WHERE id IN (
        SELECT id FROM (
            SELECT id, verdict_changed,
                   row_number() OVER (
                       PARTITION BY slo_id, CAST(at / :bucket AS INTEGER) ORDER BY at DESC, id DESC
                   ) AS newest_first
            FROM evaluations
            WHERE {_SLOT} BETWEEN :lo_slot AND :hi_slot AND at >= :lo AND at < :hi
        ) WHERE newest_first > 1 AND verdict_changed = 0
    )
"""


@dataclass(frozen=True)
class PruneReport:
    """What one ``prune`` did: rows removed by downsampling and by age, and file space given back."""

    downsampled: int
    deleted: int
    verdict_changes_deleted: int
    reclaimed_bytes: int


def _unix(at: datetime, name: str) -> float:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got the naive {at.isoformat()}")
    return at.timestamp()


def _from_unix(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@contextmanager
def _translated(action: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"{action}: {exc}") from exc


@dataclass(frozen=True)
class _Pending:
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


# Records are compressed with a preset dictionary of what every record repeats (its keys, the default
# windows and tiers, the usual reason phrases): a 1.6 KB record becomes a few hundred bytes, which is
# most of the file. The dictionary is part of the format, so it is versioned by the blob's prefix;
# rows written as plain JSON text (before compression) still read. Measured in bench/daemon_bench.py.
_RECORD_PREFIX = b"Z1"
_RECORD_DICTIONARY = (
    b'"missing":{},"labels":{},"warnings":[],"error_kind":null,"source":"slos/'
    b'"time_to_exhaustion_seconds":null,"events":null,"note":"","firing":null,"firing":false,"firing":true,'
    b'"reason":"cannot judge the page tier 1h/5m: no traffic (0 events) in 5m","reason":"no tier firing; '
    b"closest is the ticket tier 3d/6h at 0.1x over 3d (fires above 1x)"
    b'","reason":"source error (unavailable): ","reason":"page tier 1h/5m firing: burn 20x over 1h and '
    b'20x over 5m, above 14.4x (2% of the 30d budget in 1h)","verdict":"inconclusive","verdict":"warning",'
    b'"verdict":"burning","verdict":"error","verdict":"healthy",'
    b'{"severity":"ticket","long_window":"3d","short_window":"6h","burn_rate_threshold":1.0,'
    b'"budget_fraction":0.1,"long_burn_rate":0.0,"short_burn_rate":0.0,"firing":false,"note":""}]'
    b'{"severity":"ticket","long_window":"1d","short_window":"2h","burn_rate_threshold":3.0,'
    b'"budget_fraction":0.1,"long_burn_rate":0.0,"short_burn_rate":0.0,"firing":false,"note":""},'
    b'"tiers":[{"severity":"page","long_window":"1h","short_window":"5m","burn_rate_threshold":14.4,'
    b'"budget_fraction":0.02,"long_burn_rate":0.0,"short_burn_rate":0.0,"firing":false,"note":""},'
    b'{"severity":"page","long_window":"6h","short_window":"30m","burn_rate_threshold":6.0,'
    b'"budget_fraction":0.05,"long_burn_rate":0.0,"short_burn_rate":0.0,"firing":false,"note":""},'
    b'"burn_rates":{"5m":0.0,"30m":0.0,"1h":0.0,"2h":0.0,"6h":0.0,"1d":0.0,"3d":0.0,"30d":0.0},'
    b'"error_ratios":{"5m":0.0,"30m":0.0,"1h":0.0,"2h":0.0,"6h":0.0,"1d":0.0,"3d":0.0,"30d":0.0},'
    b'"events_by_window":{"5m":0.0,"30m":0.0,"1h":0.0,"2h":0.0,"6h":0.0,"1d":0.0,"3d":0.0,"30d":0.0},'
    b'{"service":"","slo":"","objective":99.9,"window":"30d","at":"2026-01-01T00:00:00Z","verdict":"healthy",'
    b'"budget_remaining":0.0,"error_ratio":0.0,"events":0.0,"time_to_exhaustion_seconds":0.0,'
)


def encode_record(record: dict[str, Any]) -> bytes:
    """A record as stored: compact JSON, deflated against the preset dictionary."""
    text = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
    packer = zlib.compressobj(
        6, zlib.DEFLATED, zlib.MAX_WBITS, 9, zlib.Z_DEFAULT_STRATEGY, _RECORD_DICTIONARY
    )
    return _RECORD_PREFIX + packer.compress(text) + packer.flush()


def decode_record(stored: bytes | str) -> dict[str, Any]:
    # Infinity is kept (json writes it, json reads it back) rather than failing a cycle.
    if isinstance(stored, bytes) and stored.startswith(_RECORD_PREFIX):
        unpacker = zlib.decompressobj(zlib.MAX_WBITS, _RECORD_DICTIONARY)
        try:
            stored = unpacker.decompress(stored[len(_RECORD_PREFIX) :]) + unpacker.flush()
        except zlib.error as exc:
            raise StoreError(f"a stored record cannot be decompressed: {exc}") from exc
    try:
        record = json.loads(stored)
    except ValueError as exc:
        raise StoreError(f"a stored record is not valid JSON: {exc}") from exc
    if not isinstance(record, dict):
        raise StoreError("a stored record is not a JSON object")
    return record


def _prepare(evaluations: Sequence[Evaluation]) -> list[_Pending]:
    pending = []
    for ev in evaluations:
        at = _unix(ev.at, f"the evaluation time of {ev.slo.id}")
        pending.append(
            _Pending(
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


class OutboxStatus(StrEnum):
    PENDING = "pending"  # due at next_attempt_at
    DELIVERED = "delivered"
    ALREADY_DONE = "already_done"  # the target was already where the action wanted it
    FAILED = "failed"  # permanent failure or gave up; ``retry`` puts it back
    DRY_RUN = "dry_run"  # recorded, never called


_INCIDENT_COLUMNS = (
    "id",
    "slo_id",
    "service",
    "slo",
    "canary_label",
    "canary_value",
    "baseline",
    "state",
    "opened_at",
    "reason",
    "burn_rates",
    "events",
    "healthy_since",
    "acknowledged_at",
    "acknowledged_by",
    "resolved_at",
    "resolution",
)
# INSERT OR IGNORE: incident ids are deterministic, so a decision replayed after a crash adds nothing.
_INSERT_INCIDENT = (
    f"INSERT OR IGNORE INTO incidents ({', '.join(_INCIDENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _INCIDENT_COLUMNS)})"
)
_UPDATE_INCIDENT = (
    f"UPDATE incidents SET ({', '.join(_INCIDENT_COLUMNS[1:])}) = "
    f"({', '.join('?' for _ in _INCIDENT_COLUMNS[1:])}) WHERE id = ?"
)
_INSERT_OUTBOX = """
    INSERT OR IGNORE INTO outbox (idempotency_key, incident_id, action, event, request, status, created_at,
                                  next_attempt_at, done_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
# The incident's who-is-affected slice rides along with every row: a delivery carries what is known
# when it goes out, not what was known when the decision was written (it is read after the decision).
_OUTBOX_COLUMNS = (
    "id, idempotency_key, incident_id, action, event, request, status, attempts, created_at, "
    "next_attempt_at, last_attempt_at, last_status, last_detail, done_at, resend_at, "
    "(SELECT affected FROM incidents WHERE incidents.id = outbox.incident_id) AS affected"
)


def _opt_unix(at: datetime | None) -> float | None:
    return None if at is None else _unix(at, "time")


def _opt_time(seconds: float | None) -> datetime | None:
    return None if seconds is None else _from_unix(seconds)


def _incident_row(incident: Incident) -> list[Any]:
    return [
        incident.id,
        incident.slo_id,
        incident.service,
        incident.slo,
        incident.canary_label,
        incident.canary_value,
        incident.baseline,
        str(incident.state),
        _unix(incident.opened_at, "opened_at"),
        incident.reason,
        json.dumps(dict(incident.burn_rates)),
        incident.events,
        _opt_unix(incident.healthy_since),
        _opt_unix(incident.acknowledged_at),
        incident.acknowledged_by,
        _opt_unix(incident.resolved_at),
        incident.resolution,
    ]


def _update_parameters(incident: Incident) -> list[Any]:
    row = _incident_row(incident)
    return [*row[1:], row[0]]


def _incident(row: dict[str, Any]) -> Incident:
    return Incident(
        id=row["id"],
        slo_id=row["slo_id"],
        service=row["service"],
        slo=row["slo"],
        canary_label=row["canary_label"],
        canary_value=row["canary_value"],
        baseline=row["baseline"],
        state=IncidentState(row["state"]),
        opened_at=_from_unix(row["opened_at"]),
        reason=row["reason"],
        burn_rates=json.loads(row["burn_rates"]),
        events=row["events"],
        healthy_since=_opt_time(row["healthy_since"]),
        acknowledged_at=_opt_time(row["acknowledged_at"]),
        acknowledged_by=row["acknowledged_by"],
        resolved_at=_opt_time(row["resolved_at"]),
        resolution=row["resolution"],
        affected=_affected(row.get("affected")),
    )


def _affected(stored: str | None) -> Affected | None:
    return None if stored is None else affected_records.from_record(json.loads(stored))


@dataclass(frozen=True)
class OutboxRow:
    """One stored delivery and where it stands."""

    id: int
    action: str
    request: ActionRequest
    status: OutboxStatus
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status: int | None
    last_detail: str | None
    done_at: datetime | None
    resend_at: datetime | None

    @property
    def idempotency_key(self) -> str:
        return self.request.idempotency_key

    def as_record(self) -> dict[str, Any]:
        """The JSON shape of the API and ``budgetguard incidents``."""

        def t(at: datetime | None) -> str | None:
            return None if at is None else format_time(at)

        return {
            "id": self.id,
            "idempotency_key": self.idempotency_key,
            "incident_id": self.request.incident_id,
            "action": self.action,
            "event": str(self.request.event),
            "status": str(self.status),
            "attempts": self.attempts,
            "created_at": t(self.created_at),
            "next_attempt_at": t(self.next_attempt_at),
            "last_attempt_at": t(self.last_attempt_at),
            "last_status": self.last_status,
            "last_detail": self.last_detail,
            "done_at": t(self.done_at),
        }


def _outbox_row(row: dict[str, Any]) -> OutboxRow:
    request = request_from_record(json.loads(row["request"]))
    known = _affected(row.get("affected"))
    if known is not None:
        request = replace(request, affected=known)
    return OutboxRow(
        id=row["id"],
        action=row["action"],
        request=request,
        status=OutboxStatus(row["status"]),
        attempts=row["attempts"],
        created_at=_from_unix(row["created_at"]),
        next_attempt_at=_opt_time(row["next_attempt_at"]),
        last_attempt_at=_opt_time(row["last_attempt_at"]),
        last_status=row["last_status"],
        last_detail=row["last_detail"],
        done_at=_opt_time(row["done_at"]),
        resend_at=_opt_time(row["resend_at"]),
    )


class Transaction:
    """The open write transaction: whatever runs through it commits or rolls back as one.

    Given to ``record_cycle``'s ``extra`` and by ``Store.transaction()``. Unusable once its block ends.
    """

    def __init__(self, db: sqlite_utils.Database) -> None:
        self._db = db
        self._open = True

    def _conn(self) -> sqlite3.Connection:
        if not self._open:
            raise StoreError("this transaction has already ended")
        return self._db.conn

    def _finish(self) -> None:
        self._open = False

    def execute(self, sql: str, parameters: Parameters = ()) -> int:
        """Run one statement; return the number of rows it changed."""
        conn = self._conn()
        with _translated("cannot write to the budgetguard database"):
            return conn.execute(sql, parameters).rowcount

    def executemany(self, sql: str, rows: Iterable[Parameters]) -> int:
        conn = self._conn()
        with _translated("cannot write to the budgetguard database"):
            return conn.executemany(sql, rows).rowcount

    def query(self, sql: str, parameters: Parameters = ()) -> list[dict[str, Any]]:
        self._conn()
        with _translated("cannot read the budgetguard database"):
            return list(self._db.query(sql, parameters))

    def write_decision(self, decision: Decision, now: datetime) -> None:
        """Incidents opened, updated and resolved, and their outbox entries, in this transaction."""
        for incident in decision.opened:
            self.execute(_INSERT_INCIDENT, _incident_row(incident))
        for incident in (*decision.updated, *decision.resolved):
            self.execute(_UPDATE_INCIDENT, _update_parameters(incident))
        created = _unix(now, "now")
        self.executemany(
            _INSERT_OUTBOX,
            [
                (
                    entry.request.idempotency_key,
                    entry.request.incident_id,
                    entry.action,
                    str(entry.request.event),
                    json.dumps(request_to_record(entry.request)),
                    OutboxStatus.DRY_RUN if entry.dry_run else OutboxStatus.PENDING,
                    created,
                    None if entry.dry_run else _unix(entry.not_before or now, "not_before"),
                    created if entry.dry_run else None,
                )
                for entry in decision.outbox
            ],
        )

    def _write_cycle(self, pending: Sequence[_Pending]) -> None:
        if not pending:
            return
        slo_ids = list(dict.fromkeys(p.slo_id for p in pending))
        previous: dict[str, str | None] = {
            row["slo_id"]: row["verdict"] for row in self.query(_PREVIOUS_VERDICTS, [json.dumps(slo_ids)])
        }
        evaluations = []
        changes = []
        for p in pending:
            before = previous.get(p.slo_id)
            changed = before != p.verdict
            previous[p.slo_id] = p.verdict
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
        # sqlite-utils' insert_all builds multi-row INSERTs in Python: 5x slower than executemany here.
        self.executemany(_INSERT_EVALUATION, evaluations)
        self.executemany(_INSERT_CHANGE, changes)
        # A row older than the downsampling watermark (a clock stepping back) reopens its bucket.
        oldest_bucket = _bucket_start(min(p.at for p in pending))
        self.execute(
            "UPDATE retention_state SET downsampled_until = ? WHERE downsampled_until > ?",
            [oldest_bucket, oldest_bucket],
        )


def _slot(seconds: float) -> int:
    return math.floor(seconds / _SLOT_SECONDS)


def _bucket_start(seconds: float) -> float:
    bucket = DOWNSAMPLE_BUCKET.total_seconds()
    return math.floor(seconds / bucket) * bucket


class Store:
    """One SQLite file, opened once per process; its methods may be called from several threads.

    A lock serialises them, so ``writable()`` from the HTTP thread waits for a cycle's transaction
    rather than failing on it.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout: timedelta = DEFAULT_BUSY_TIMEOUT,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        if [m.version for m in migrations] != list(range(1, len(migrations) + 1)):
            raise ValueError("migrations must be numbered 1, 2, 3, ... in order")
        self.path = Path(path)
        self._busy_timeout_ms = int(busy_timeout / timedelta(milliseconds=1))
        self._lock = threading.RLock()
        try:
            # isolation_level=None: the driver opens no transaction of its own; every one is explicit.
            conn = sqlite3.connect(
                self.path,
                timeout=busy_timeout.total_seconds(),
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the budgetguard database {self.path}: {exc}") from exc
        self._closed = False
        self._db = sqlite_utils.Database(conn, execute_plugins=False)
        try:
            self._open(migrations)
        except BaseException:
            conn.close()
            self._closed = True
            raise

    # -- opening -----------------------------------------------------------------------------------

    def _open(self, migrations: Sequence[Migration]) -> None:
        conn = self._db.conn
        known = len(migrations)
        with _translated(f"cannot open the budgetguard database {self.path}"):
            conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            # Read before anything is written: a file we must refuse is left exactly as it was.
            found = self._user_version()
            if found > known:
                raise ConfigError(
                    f"the database {self.path} has schema version {found}, written by a newer budgetguard; "
                    f"this version knows schema versions up to {known}. Upgrade budgetguard or point it at "
                    "another database file; the file was not changed"
                )
            if found == 0:
                self._prepare_new_file()
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning(
                    "the database %s cannot use WAL (journal mode %s): readers will block", self.path, mode
                )
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(f"PRAGMA journal_size_limit = {_JOURNAL_SIZE_LIMIT_BYTES}")
        for migration in migrations[found:]:
            self._migrate(migration)

    def _user_version(self) -> int:
        return int(self._db.conn.execute("PRAGMA user_version").fetchone()[0])

    def _prepare_new_file(self) -> None:
        tables = [name for name in self._db.table_names() if not name.startswith("sqlite_")]
        if tables:
            raise ConfigError(
                f"the database {self.path} is not a budgetguard database: it has the tables "
                f"{', '.join(sorted(tables))} but no budgetguard schema version. Point budgetguard at its "
                "own database file (a new path is created); the file was not changed"
            )
        conn = self._db.conn
        conn.execute(f"PRAGMA page_size = {_PAGE_SIZE_BYTES}")
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            # The file already has a header (a journal mode was set first): only VACUUM applies it now.
            conn.execute("VACUUM")

    def _migrate(self, migration: Migration) -> None:
        with self.transaction() as tx:
            # Another process may have migrated while we waited for the write lock.
            if self._user_version() >= migration.version:
                return
            for statement in migration.statements:
                tx.execute(statement)
            tx.execute(f"PRAGMA user_version = {int(migration.version)}")
        log.info("applied migration %s to %s: %s", migration.version, self.path, migration.description)

    # -- transactions ------------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"the budgetguard database {self.path} is closed")
        return self._db.conn

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One write transaction: committed when the block ends, rolled back if it raises.

        ``BEGIN IMMEDIATE`` takes the write lock up front, so a transaction that reads before it
        writes waits for another writer instead of failing halfway. Transactions do not nest.
        """
        with self._lock:
            conn = self._connection()
            if conn.in_transaction:
                raise RuntimeError("a Store transaction is already open; transactions do not nest")
            with _translated(f"cannot start a write transaction on {self.path}"):
                conn.execute("BEGIN IMMEDIATE")
            tx = Transaction(self._db)
            try:
                yield tx
            except BaseException:
                tx._finish()
                self._rollback()
                raise
            tx._finish()
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise StoreError(f"cannot commit to the budgetguard database {self.path}: {exc}") from exc

    def _rollback(self) -> None:
        conn = self._db.conn
        if not conn.in_transaction:
            return
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            # The original exception is the one worth raising; SQLite rolls back on close anyway.
            log.warning("rollback failed on %s", self.path, exc_info=True)

    # -- writing -----------------------------------------------------------------------------------

    def record_cycle(
        self,
        evaluations: Sequence[Evaluation],
        extra: Callable[[Transaction], object] | None = None,
    ) -> None:
        """Store one cycle in one transaction: a row per evaluation, a change row per new verdict.

        A verdict is a change when it differs from the SLO's most recent stored one; an SLO's first
        evaluation is a change from ``None``. ``extra`` runs inside the same transaction, after the
        evaluations: if it raises, nothing of the cycle is stored. Records are serialised before the
        write lock is taken, so the lock is held only for the inserts.
        """
        pending = _prepare(evaluations)
        with self.transaction() as tx:
            tx._write_cycle(pending)
            if extra is not None:
                extra(tx)

    def prune(
        self,
        now: datetime,
        raw_for: timedelta = RAW_RETENTION,
        keep_for: timedelta = KEEP_RETENTION,
    ) -> PruneReport:
        """Keep the file bounded: downsample after ``raw_for``, delete after ``keep_for``, give space back.

        Evaluations older than ``raw_for`` keep one row per SLO per 5-minute bucket (the bucket's last)
        plus every row whose verdict changed; the boundary is rounded down to a whole bucket so a bucket
        is never split. Evaluations and verdict changes older than ``keep_for`` are deleted, and so are
        incidents resolved before then, with their deliveries (open incidents stay). Each call
        reads only the rows that aged past ``raw_for`` since the previous call. Freed pages are then
        returned to the file system (``incremental_vacuum``) and the WAL is checkpointed and truncated.

        The daemon's defaults are ``RAW_RETENTION`` (1 day: today's incident at full resolution, many
        times the 1h/5m page tier's windows) and ``KEEP_RETENTION`` (90 days: three 30-day SLO windows,
        a quarter's review), about 25 MiB per SLO at steady state; see the constants.

        The work runs in short transactions (a slice of simulated time, a few MiB of pages each) and
        the lock is released between them, so a cycle recorded from another thread waits for one slice,
        never for the whole prune (seconds with a thousand SLOs). Stopping halfway loses nothing: the
        next prune carries on from where this one stopped.
        """
        now_s = _unix(now, "now")
        if raw_for <= timedelta(0) or keep_for < raw_for:
            raise ValueError(f"need 0 < raw_for <= keep_for, got raw_for={raw_for} and keep_for={keep_for}")
        raw_cutoff = _bucket_start(now_s - raw_for.total_seconds())
        keep_cutoff = now_s - keep_for.total_seconds()
        pages_before = self._page_count()
        with self.transaction() as tx:
            deleted = tx.execute(
                f"DELETE FROM evaluations WHERE {_SLOT} <= :slot AND at < :cutoff",
                {"slot": _slot(keep_cutoff), "cutoff": keep_cutoff},
            )
            # An SLO whose newest evaluation is gone has no evaluation left at all.
            tx.execute("DELETE FROM slo_latest WHERE at < ?", [keep_cutoff])
            changes_deleted = tx.execute("DELETE FROM verdict_changes WHERE at < ?", [keep_cutoff])
            # Incidents resolved before the cutoff go with their deliveries; open ones stay, whatever
            # their age: an incident is history only once it is over.
            old_incidents = "SELECT id FROM incidents WHERE state = 'resolved' AND resolved_at < ?"
            tx.execute(f"DELETE FROM outbox WHERE incident_id IN ({old_incidents})", [keep_cutoff])
            tx.execute(f"DELETE FROM incidents WHERE id IN ({old_incidents})", [keep_cutoff])
        downsampled = self._downsample(max(keep_cutoff, 0.0), raw_cutoff)
        reclaimed = (pages_before - self._reclaim()) * self._page_size()
        report = PruneReport(downsampled, deleted, changes_deleted, max(reclaimed, 0))
        log.debug("pruned %s: %s", self.path, report)
        return report

    def _downsample(self, keep_cutoff: float, raw_cutoff: float) -> int:
        """Downsample [watermark, raw_cutoff) slice by slice, moving the watermark with each slice."""
        slice_s = _DOWNSAMPLE_SLICE.total_seconds()
        downsampled = 0
        with self.transaction() as tx:
            expected = self._watermark(tx)
        lo = max(expected, keep_cutoff)
        while lo < raw_cutoff:
            with self.transaction() as tx:
                if self._watermark(tx) < expected:
                    # A cycle stored an evaluation behind the watermark (the clock stepped back) and
                    # reopened older buckets: leave the watermark there for the next prune.
                    break
                first = tx.query(
                    f"SELECT min({_SLOT}) AS slot FROM evaluations WHERE {_SLOT} >= ?", [_slot(lo)]
                )
                first_slot = first[0]["slot"]
                if first_slot is None or first_slot * _SLOT_SECONDS >= raw_cutoff:
                    tx.execute("UPDATE retention_state SET downsampled_until = ?", [raw_cutoff])
                    break
                lo = max(lo, float(first_slot * _SLOT_SECONDS))  # skip empty stretches in one step
                hi = min(raw_cutoff, _bucket_start(lo) + slice_s)
                downsampled += tx.execute(
                    _DOWNSAMPLE,
                    {
                        "bucket": DOWNSAMPLE_BUCKET.total_seconds(),
                        "lo": lo,
                        "hi": hi,
                        "lo_slot": _slot(lo),
                        "hi_slot": _slot(hi),
                    },
                )
                tx.execute("UPDATE retention_state SET downsampled_until = ?", [hi])
            expected = lo = hi
        return downsampled

    @staticmethod
    def _watermark(tx: Transaction) -> float:
        return float(tx.query("SELECT downsampled_until FROM retention_state")[0]["downsampled_until"])

    def _page_count(self) -> int:
        with self._lock, _translated(f"cannot read the budgetguard database {self.path}"):
            return int(self._connection().execute("PRAGMA page_count").fetchone()[0])

    def _page_size(self) -> int:
        with self._lock, _translated(f"cannot read the budgetguard database {self.path}"):
            return int(self._connection().execute("PRAGMA page_size").fetchone()[0])

    def _reclaim(self) -> int:
        """Give free pages back in steps, truncate the WAL; return the page count after."""
        while True:
            with self._lock, _translated(f"cannot reclaim space in {self.path}"):
                conn = self._connection()
                free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
                if free == 0:
                    break
                # executescript steps the pragma to completion; execute() frees a single page and stops.
                conn.executescript(f"PRAGMA incremental_vacuum({min(free, _VACUUM_STEP_PAGES)});")
        with self._lock, _translated(f"cannot checkpoint {self.path}"):
            self._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return self._page_count()

    # -- reading -----------------------------------------------------------------------------------

    def _query(self, sql: str, parameters: Parameters) -> list[dict[str, Any]]:
        with self._lock:
            self._connection()
            with _translated(f"cannot read the budgetguard database {self.path}"):
                return list(self._db.query(sql, parameters))

    def latest(self, slos: Sequence[SLO]) -> dict[str, Evaluation]:
        """The last stored evaluation of each SLO, by ``slo.id``, rebuilt against the SLO as declared now.

        SLOs with no history are absent, and so is a renamed SLO under its new id. A record that cannot
        be rebuilt is logged and left out: the SLO then starts afresh instead of stopping the restart.
        """
        by_id = {slo.id: slo for slo in slos}
        rows = self._query(_LATEST_RECORDS, [json.dumps(list(by_id))])
        latest: dict[str, Evaluation] = {}
        for row in rows:
            if row["record"] is None:
                continue
            slo_id = row["slo_id"]
            try:
                latest[slo_id] = from_record(decode_record(row["record"]), by_id[slo_id])
            except (StoreError, ValueError, KeyError, TypeError):
                log.warning(
                    "the stored evaluation of %s cannot be read; it is ignored", slo_id, exc_info=True
                )
        return latest

    def history(
        self,
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
        since_s = _unix(since, "since")
        until_s = math.inf if until is None else _unix(until, "until")
        # Seek only the slots between the file's oldest evaluation and this SLO's newest.
        bounds = self._query(
            f"SELECT (SELECT min({_SLOT}) FROM evaluations) AS oldest,"
            " (SELECT at FROM slo_latest WHERE slo_id = ?) AS newest",
            [slo_id],
        )[0]
        if bounds["newest"] is None or limit == 0 or since_s >= until_s:
            return []
        first_slot = max(_slot(since_s), int(bounds["oldest"]))
        last_slot = _slot(min(until_s, float(bounds["newest"])))
        parameters = {
            "first_slot": first_slot,
            "last_slot": last_slot,
            "slo_id": slo_id,
            "since": since_s,
            "until": until_s,
            "limit": -1 if limit is None else limit,
        }
        return [decode_record(row["record"]) for row in self._query(_HISTORY, parameters)]

    def verdict_changes(self, slo_id: str | None, since: datetime) -> list[dict[str, Any]]:
        """Verdict changes at or after ``since``, oldest first, of one SLO or (``None``) of all.

        Each is ``{"at", "slo_id", "from", "to", "reason"}``; ``at`` is written as in records (UTC,
        ISO 8601, ``Z``) and ``from`` is ``None`` for an SLO's first evaluation.
        """
        sql = "SELECT at, slo_id, from_verdict, to_verdict, reason FROM verdict_changes WHERE at >= ?"
        parameters: list[Any] = [_unix(since, "since")]
        if slo_id is not None:
            sql += " AND slo_id = ?"
            parameters.append(slo_id)
        rows = self._query(sql + " ORDER BY at, id", parameters)
        return [
            {
                "at": format_time(_from_unix(row["at"])),
                "slo_id": row["slo_id"],
                "from": row["from_verdict"],
                "to": row["to_verdict"],
                "reason": row["reason"],
            }
            for row in rows
        ]

    # -- incidents, outbox and pauses --------------------------------------------------------------

    def write_decision(self, decision: Decision, now: datetime) -> None:
        """A decision taken outside a cycle (a manual resolve), in a transaction of its own."""
        with self.transaction() as tx:
            tx.write_decision(decision, now)

    def incidents(
        self, *, state: IncidentState | None = None, slo_id: str | None = None, limit: int = 100
    ) -> list[Incident]:
        """Incidents, newest first; open ones only with ``state=IncidentState.OPEN``."""
        sql = "SELECT * FROM incidents WHERE 1 = 1"
        parameters: list[Any] = []
        if state is not None:
            sql += " AND state = ?"
            parameters.append(str(state))
        if slo_id is not None:
            sql += " AND slo_id = ?"
            parameters.append(slo_id)
        sql += " ORDER BY opened_at DESC, id LIMIT ?"
        parameters.append(limit)
        return [_incident(row) for row in self._query(sql, parameters)]

    def incident(self, incident_id: str) -> Incident | None:
        rows = self._query("SELECT * FROM incidents WHERE id = ?", [incident_id])
        return _incident(rows[0]) if rows else None

    def last_opened(self) -> dict[tuple[str, str], datetime]:
        """When an incident last opened for each (SLO, canary value): the cooldown across restarts."""
        rows = self._query(
            "SELECT slo_id, canary_value, max(opened_at) AS at FROM incidents GROUP BY slo_id, canary_value",
            [],
        )
        return {(row["slo_id"], row["canary_value"]): _from_unix(row["at"]) for row in rows}

    def acknowledge(self, incident_id: str, by: str, at: datetime) -> Incident | None:
        with self.transaction() as tx:
            tx.execute(
                "UPDATE incidents SET acknowledged_at = ?, acknowledged_by = ? WHERE id = ?",
                [_unix(at, "at"), by, incident_id],
            )
        return self.incident(incident_id)

    def set_affected(self, incident_id: str, affected: Affected, now: datetime) -> int:
        """Store who is affected, and make the incident's deliveries held for it due now; returns how
        many were released. Only never-attempted pending rows move: a retry keeps its backoff."""
        now_s = _unix(now, "now")
        with self.transaction() as tx:
            tx.execute(
                "UPDATE incidents SET affected = ? WHERE id = ?",
                [json.dumps(affected_records.to_record(affected)), incident_id],
            )
            return tx.execute(
                "UPDATE outbox SET next_attempt_at = ? WHERE incident_id = ? AND status = 'pending' "
                "AND attempts = 0 AND next_attempt_at > ?",
                [now_s, incident_id, now_s],
            )

    def outbox(self, *, incident_id: str | None = None, limit: int = 100) -> list[OutboxRow]:
        """Deliveries, oldest first, of one incident or of all."""
        sql = f"SELECT {_OUTBOX_COLUMNS} FROM outbox"
        parameters: list[Any] = []
        if incident_id is not None:
            sql += " WHERE incident_id = ?"
            parameters.append(incident_id)
        sql += " ORDER BY id LIMIT ?"
        parameters.append(limit)
        return [_outbox_row(row) for row in self._query(sql, parameters)]

    def due(self, now: datetime, limit: int = 50) -> list[OutboxRow]:
        """Pending deliveries due by ``now``, and delivered triggers of open incidents due a resend."""
        now_s = _unix(now, "now")
        rows = self._query(
            f"""
            SELECT {_OUTBOX_COLUMNS} FROM outbox
            WHERE status = 'pending' AND next_attempt_at <= :now
            UNION ALL
            SELECT {_OUTBOX_COLUMNS} FROM outbox
            WHERE status = 'delivered' AND resend_at <= :now
              AND incident_id IN (SELECT id FROM incidents WHERE state = 'open')
            ORDER BY id LIMIT :limit
            """,
            {"now": now_s, "limit": limit},
        )
        return [_outbox_row(row) for row in rows]

    def next_due(self) -> datetime | None:
        """When the next delivery or resend falls due, or None when nothing waits."""
        row = self._query(
            """
            SELECT min(t) AS at FROM (
                SELECT min(next_attempt_at) AS t FROM outbox WHERE status = 'pending'
                UNION ALL
                SELECT min(resend_at) FROM outbox WHERE status = 'delivered' AND resend_at IS NOT NULL
                  AND incident_id IN (SELECT id FROM incidents WHERE state = 'open')
            )
            """,
            [],
        )[0]
        return None if row["at"] is None else _from_unix(row["at"])

    def record_attempt(
        self,
        outbox_id: int,
        *,
        status: OutboxStatus,
        at: datetime,
        last_status: int | None,
        detail: str,
        next_attempt_at: datetime | None = None,
        resend_at: datetime | None = None,
        counts: bool = True,
    ) -> None:
        """What one delivery attempt came to. ``counts=False`` for a resend, which is not a new attempt."""
        done = status in (OutboxStatus.DELIVERED, OutboxStatus.ALREADY_DONE, OutboxStatus.FAILED)
        with self.transaction() as tx:
            tx.execute(
                """
                UPDATE outbox SET status = ?, attempts = attempts + ?, last_attempt_at = ?, last_status = ?,
                    last_detail = ?, next_attempt_at = ?, resend_at = ?,
                    done_at = CASE WHEN ? THEN coalesce(done_at, ?) ELSE done_at END
                WHERE id = ?
                """,
                [
                    str(status),
                    int(counts),
                    _unix(at, "at"),
                    last_status,
                    detail,
                    _opt_unix(next_attempt_at),
                    _opt_unix(resend_at),
                    int(done),
                    _unix(at, "at"),
                    outbox_id,
                ],
            )

    def retry(self, outbox_id: int, now: datetime) -> tuple[OutboxRow | None, bool]:
        """Put a failed delivery back in line, due now. Returns the row (None: no such row) and
        whether it was failed and so requeued; any other row is left alone."""
        with self.transaction() as tx:
            changed = tx.execute(
                "UPDATE outbox SET status = 'pending', next_attempt_at = ?, done_at = NULL "
                "WHERE id = ? AND status = 'failed'",
                [_unix(now, "now"), outbox_id],
            )
            rows = tx.query(f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE id = ?", [outbox_id])
        return (_outbox_row(rows[0]) if rows else None), changed > 0

    def pause(self, slo_id: str, at: datetime, *, until: datetime | None, by: str, reason: str) -> None:
        with self.transaction() as tx:
            tx.execute(
                "INSERT OR REPLACE INTO guard_pauses (slo_id, paused_at, until, by, reason) "
                "VALUES (?, ?, ?, ?, ?)",
                [slo_id, _unix(at, "at"), _opt_unix(until), by, reason],
            )

    def resume(self, slo_id: str) -> bool:
        with self.transaction() as tx:
            return tx.execute("DELETE FROM guard_pauses WHERE slo_id = ?", [slo_id]) > 0

    def pauses(self, now: datetime) -> dict[str, dict[str, Any]]:
        """SLOs paused at ``now``: by id, with paused_at, until, by and reason (times as ISO text)."""
        rows = self._query("SELECT * FROM guard_pauses WHERE until IS NULL OR until > ?", [_unix(now, "now")])
        return {
            row["slo_id"]: {
                "slo_id": row["slo_id"],
                "paused_at": format_time(_from_unix(row["paused_at"])),
                "until": None if row["until"] is None else format_time(_from_unix(row["until"])),
                "by": row["by"],
                "reason": row["reason"],
            }
            for row in rows
        }

    # -- health and lifecycle ----------------------------------------------------------------------

    def writable(self) -> bool:
        """Whether a write could start now: takes and releases the write lock (for /readyz).

        Detects a closed store, a file that became read-only and another process holding the lock;
        a full disk shows only when a real write fails.
        """
        with self._lock:
            if self._closed:
                return False
            conn = self._db.conn
            if conn.in_transaction:  # this thread is inside a transaction: it holds the lock
                return True
            probe_ms = int(_PROBE_BUSY_TIMEOUT / timedelta(milliseconds=1))
            try:
                conn.execute(f"PRAGMA busy_timeout = {min(probe_ms, self._busy_timeout_ms)}")
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
            except sqlite3.Error as exc:
                log.warning("the database %s is not writable: %s", self.path, exc)
                self._rollback()
                return False
            finally:
                try:
                    conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
                except sqlite3.Error:
                    log.warning("cannot restore the busy timeout on %s", self.path, exc_info=True)
            return True

    def close(self) -> None:
        """Checkpoint the WAL into the file and close; closing twice is harmless."""
        with self._lock:
            if self._closed:
                return
            conn = self._db.conn
            self._rollback()
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.Error:
                log.warning("cannot checkpoint %s before closing", self.path, exc_info=True)
            self._closed = True
            conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
