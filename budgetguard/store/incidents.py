"""Canary incidents and guard pauses: what the guard decided, and what a person did about it.

``write_decision`` stores a decision's incidents with their deliveries in one transaction; incident
ids are deterministic, so a decision replayed after a crash adds nothing. The reads and the manual
changes (acknowledge, who is affected, pause and resume) are the ones ``Control`` and the daemon use.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from budgetguard.core import affected as affected_records
from budgetguard.core.guard import Decision, Incident, IncidentState
from budgetguard.core.ports import Affected
from budgetguard.core.records import format_time, request_to_record
from budgetguard.store.deliveries import INSERT_OUTBOX, OutboxStatus
from budgetguard.store.encoding import affected_from_text, from_unix, opt_time, opt_unix, unix

if TYPE_CHECKING:
    from budgetguard.store.connection import Connection, Transaction

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


def incident_row(incident: Incident) -> list[Any]:
    return [
        incident.id,
        incident.slo_id,
        incident.service,
        incident.slo,
        incident.canary_label,
        incident.canary_value,
        incident.baseline,
        str(incident.state),
        unix(incident.opened_at, "opened_at"),
        incident.reason,
        json.dumps(dict(incident.burn_rates)),
        incident.events,
        opt_unix(incident.healthy_since),
        opt_unix(incident.acknowledged_at),
        incident.acknowledged_by,
        opt_unix(incident.resolved_at),
        incident.resolution,
    ]


def update_parameters(incident: Incident) -> list[Any]:
    row = incident_row(incident)
    return [*row[1:], row[0]]


def incident_from_row(row: dict[str, Any]) -> Incident:
    return Incident(
        id=row["id"],
        slo_id=row["slo_id"],
        service=row["service"],
        slo=row["slo"],
        canary_label=row["canary_label"],
        canary_value=row["canary_value"],
        baseline=row["baseline"],
        state=IncidentState(row["state"]),
        opened_at=from_unix(row["opened_at"]),
        reason=row["reason"],
        burn_rates=json.loads(row["burn_rates"]),
        events=row["events"],
        healthy_since=opt_time(row["healthy_since"]),
        acknowledged_at=opt_time(row["acknowledged_at"]),
        acknowledged_by=row["acknowledged_by"],
        resolved_at=opt_time(row["resolved_at"]),
        resolution=row["resolution"],
        affected=affected_from_text(row.get("affected")),
    )


def write_decision(tx: Transaction, decision: Decision, now: datetime) -> None:
    """Incidents opened, updated and resolved, and their outbox entries, in this transaction."""
    for incident in decision.opened:
        tx.execute(_INSERT_INCIDENT, incident_row(incident))
    for incident in (*decision.updated, *decision.resolved):
        tx.execute(_UPDATE_INCIDENT, update_parameters(incident))
    tx.executemany(INSERT_OUTBOX, outbox_rows(decision, now))


def outbox_rows(decision: Decision, now: datetime) -> list[tuple[Any, ...]]:
    """The outbox rows a decision writes, in ``INSERT_OUTBOX``'s column order, for either backend:
    pending from ``not_before`` (or now), or a dry run recorded as done at once."""
    created = unix(now, "now")
    return [
        (
            entry.request.idempotency_key,
            entry.request.incident_id,
            entry.action,
            str(entry.request.event),
            json.dumps(request_to_record(entry.request)),
            str(OutboxStatus.DRY_RUN if entry.dry_run else OutboxStatus.PENDING),
            created,
            None if entry.dry_run else unix(entry.not_before or now, "not_before"),
            created if entry.dry_run else None,
        )
        for entry in decision.outbox
    ]


def incidents(
    db: Connection, *, state: IncidentState | None = None, slo_id: str | None = None, limit: int = 100
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
    return [incident_from_row(row) for row in db.query(sql, parameters)]


def incident(db: Connection, incident_id: str) -> Incident | None:
    rows = db.query("SELECT * FROM incidents WHERE id = ?", [incident_id])
    return incident_from_row(rows[0]) if rows else None


def last_opened(db: Connection) -> dict[tuple[str, str], datetime]:
    """When an incident last opened for each (SLO, canary value): the cooldown across restarts."""
    rows = db.query(
        "SELECT slo_id, canary_value, max(opened_at) AS at FROM incidents GROUP BY slo_id, canary_value",
        [],
    )
    return {(row["slo_id"], row["canary_value"]): from_unix(row["at"]) for row in rows}


def acknowledge(db: Connection, incident_id: str, by: str, at: datetime) -> Incident | None:
    with db.transaction() as tx:
        tx.execute(
            "UPDATE incidents SET acknowledged_at = ?, acknowledged_by = ? WHERE id = ?",
            [unix(at, "at"), by, incident_id],
        )
    return incident(db, incident_id)


def set_affected(db: Connection, incident_id: str, affected: Affected, now: datetime) -> int:
    """Store who is affected, and make the incident's deliveries held for it due now; returns how
    many were released. Only never-attempted pending rows move: a retry keeps its backoff."""
    now_s = unix(now, "now")
    with db.transaction() as tx:
        tx.execute(
            "UPDATE incidents SET affected = ? WHERE id = ?",
            [json.dumps(affected_records.to_record(affected)), incident_id],
        )
        return tx.execute(
            "UPDATE outbox SET next_attempt_at = ? WHERE incident_id = ? AND status = 'pending' "
            "AND attempts = 0 AND next_attempt_at > ?",
            [now_s, incident_id, now_s],
        )


def pause(db: Connection, slo_id: str, at: datetime, *, until: datetime | None, by: str, reason: str) -> None:
    with db.transaction() as tx:
        tx.execute(
            "INSERT OR REPLACE INTO guard_pauses (slo_id, paused_at, until, by, reason) "
            "VALUES (?, ?, ?, ?, ?)",
            [slo_id, unix(at, "at"), opt_unix(until), by, reason],
        )


def resume(db: Connection, slo_id: str) -> bool:
    with db.transaction() as tx:
        return tx.execute("DELETE FROM guard_pauses WHERE slo_id = ?", [slo_id]) > 0


def pauses(db: Connection, now: datetime) -> dict[str, dict[str, Any]]:
    """SLOs paused at ``now``: by id, with paused_at, until, by and reason (times as ISO text)."""
    rows = db.query("SELECT * FROM guard_pauses WHERE until IS NULL OR until > ?", [unix(now, "now")])
    return {
        row["slo_id"]: {
            "slo_id": row["slo_id"],
            "paused_at": format_time(from_unix(row["paused_at"])),
            "until": None if row["until"] is None else format_time(from_unix(row["until"])),
            "by": row["by"],
            "reason": row["reason"],
        }
        for row in rows
    }
