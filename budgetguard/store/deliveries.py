"""The outbox table: each delivery a decision made, and where it stands.

A decision's deliveries are written in the decision's own transaction (``incidents.write_decision``),
so a daemon killed between deciding and delivering still delivers after a restart; the outbox worker
claims what is due (``claim_due``: a row is in one delivery at a time) and records each attempt. A
delivery carries who is affected as known when it goes out, read from its incident, not as known when
the decision was written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from budgetguard.core.ports import ActionRequest
from budgetguard.core.records import format_time, request_from_record
from budgetguard.store.encoding import affected_from_text, from_unix, opt_time, opt_unix, unix

if TYPE_CHECKING:
    from budgetguard.store.connection import Connection


class OutboxStatus(StrEnum):
    PENDING = "pending"  # due at next_attempt_at
    DELIVERED = "delivered"
    ALREADY_DONE = "already_done"  # the target was already where the action wanted it
    FAILED = "failed"  # permanent failure or gave up; ``retry`` puts it back
    DRY_RUN = "dry_run"  # recorded, never called


INSERT_OUTBOX = """
    INSERT OR IGNORE INTO outbox (idempotency_key, incident_id, action, event, request, status, created_at,
                                  next_attempt_at, done_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
# The incident's who-is-affected slice rides along with every row: a delivery carries what is known
# when it goes out, not what was known when the decision was written (it is read after the decision).
OUTBOX_COLUMNS = (
    "id, idempotency_key, incident_id, action, event, request, status, attempts, created_at, "
    "next_attempt_at, last_attempt_at, last_status, last_detail, done_at, resend_at, "
    "(SELECT affected FROM incidents WHERE incidents.id = outbox.incident_id) AS affected"
)


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


def outbox_row(row: dict[str, Any]) -> OutboxRow:
    request = request_from_record(json.loads(row["request"]))
    known = affected_from_text(row.get("affected"))
    if known is not None:
        request = replace(request, affected=known)
    return OutboxRow(
        id=row["id"],
        action=row["action"],
        request=request,
        status=OutboxStatus(row["status"]),
        attempts=row["attempts"],
        created_at=from_unix(row["created_at"]),
        next_attempt_at=opt_time(row["next_attempt_at"]),
        last_attempt_at=opt_time(row["last_attempt_at"]),
        last_status=row["last_status"],
        last_detail=row["last_detail"],
        done_at=opt_time(row["done_at"]),
        resend_at=opt_time(row["resend_at"]),
    )


def deliveries(db: Connection, *, incident_id: str | None = None, limit: int = 100) -> list[OutboxRow]:
    """Deliveries, oldest first, of one incident or of all."""
    sql = f"SELECT {OUTBOX_COLUMNS} FROM outbox"
    parameters: list[Any] = []
    if incident_id is not None:
        sql += " WHERE incident_id = ?"
        parameters.append(incident_id)
    sql += " ORDER BY id LIMIT ?"
    parameters.append(limit)
    return [outbox_row(row) for row in db.query(sql, parameters)]


def due(db: Connection, now: datetime, limit: int = 50) -> list[OutboxRow]:
    """Pending deliveries due by ``now``, and delivered triggers of open incidents due a resend."""
    now_s = unix(now, "now")
    rows = db.query(
        f"""
        SELECT {OUTBOX_COLUMNS} FROM outbox
        WHERE status = 'pending' AND next_attempt_at <= :now
        UNION ALL
        SELECT {OUTBOX_COLUMNS} FROM outbox
        WHERE status = 'delivered' AND resend_at <= :now
          AND incident_id IN (SELECT id FROM incidents WHERE state = 'open')
        ORDER BY id LIMIT :limit
        """,
        {"now": now_s, "limit": limit},
    )
    return [outbox_row(row) for row in rows]


def claim_due(
    db: Connection, now: datetime, *, holder: str, hold_for: timedelta, limit: int = 50
) -> list[OutboxRow]:
    """Due rows, each claimed by ``holder`` for ``hold_for``: ``due`` without the rows in flight.

    One transaction takes the write lock, so two claimers never take the same row; recording the
    attempt releases the claim. One daemon runs per file (``lockfile``), so a claim by another holder
    is a previous life's, cut short by a crash: it lapses at once, as any does at ``claimed_until``.
    """
    now_s = unix(now, "now")
    # A read first: the worker asks every second, and an idle outbox must not take the write lock
    # each time (a store locked by another process would stall the daemon's loop for the busy timeout).
    if not db.query(
        "SELECT 1 FROM outbox WHERE (status = 'pending' AND next_attempt_at <= :now) "
        "OR (status = 'delivered' AND resend_at <= :now) LIMIT 1",
        {"now": now_s},
    ):
        return []
    with db.transaction() as tx:
        rows = tx.query(
            """
            UPDATE outbox SET claimed_by = :holder, claim_token = 0, claimed_until = :until
            WHERE id IN (
                SELECT id FROM outbox
                WHERE ((status = 'pending' AND next_attempt_at <= :now)
                       OR (status = 'delivered' AND resend_at <= :now
                           AND incident_id IN (SELECT id FROM incidents WHERE state = 'open')))
                  AND (claimed_until IS NULL OR claimed_until <= :now OR claimed_by != :holder)
                ORDER BY id LIMIT :limit
            )
            RETURNING id
            """,
            {"holder": holder, "until": now_s + hold_for.total_seconds(), "now": now_s, "limit": limit},
        )
        claimed = tx.query(
            f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id",
            [json.dumps(sorted(row["id"] for row in rows))],
        )
    return [outbox_row(row) for row in claimed]


def next_due(db: Connection) -> datetime | None:
    """When the next delivery or resend falls due, or None when nothing waits."""
    row = db.query(
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
    return None if row["at"] is None else from_unix(row["at"])


# An attempt that ends in one of these leaves nothing to retry: the row is done.
FINISHED = frozenset({OutboxStatus.DELIVERED, OutboxStatus.ALREADY_DONE, OutboxStatus.FAILED})


def record_attempt(
    db: Connection,
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
    done = status in FINISHED
    with db.transaction() as tx:
        tx.execute(
            """
            UPDATE outbox SET status = ?, attempts = attempts + ?, last_attempt_at = ?, last_status = ?,
                last_detail = ?, next_attempt_at = ?, resend_at = ?,
                done_at = CASE WHEN ? THEN coalesce(done_at, ?) ELSE done_at END,
                claimed_by = NULL, claim_token = NULL, claimed_until = NULL
            WHERE id = ?
            """,
            [
                str(status),
                int(counts),
                unix(at, "at"),
                last_status,
                detail,
                opt_unix(next_attempt_at),
                opt_unix(resend_at),
                int(done),
                unix(at, "at"),
                outbox_id,
            ],
        )


def retry(db: Connection, outbox_id: int, now: datetime) -> tuple[OutboxRow | None, bool]:
    """Put a failed delivery back in line, due now. Returns the row (None: no such row) and
    whether it was failed and so requeued; any other row is left alone."""
    with db.transaction() as tx:
        changed = tx.execute(
            "UPDATE outbox SET status = 'pending', next_attempt_at = ?, done_at = NULL "
            "WHERE id = ? AND status = 'failed'",
            [unix(now, "now"), outbox_id],
        )
        rows = tx.query(f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = ?", [outbox_id])
    return (outbox_row(rows[0]) if rows else None), changed > 0
