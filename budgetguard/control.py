"""Manual control of the guard, shared by the command line and the API: the same rules from both.

Acknowledge an incident, resolve it by hand (which sends RESOLVE where the targets understand it,
through the outbox like any decision), retry a failed delivery, pause and resume the guard of an SLO.
The store is the one place these live, so the daemon sees a change made from the command line at its
next cycle, and the command line works while the daemon is down.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from budgetguard.core import affected
from budgetguard.core.errors import ControlError
from budgetguard.core.guard import Decision, Delivery, Incident, IncidentState, resolve, resolve_entries_from
from budgetguard.core.records import format_time
from budgetguard.store import OutboxRow


class ControlStore(Protocol):
    """What manual control needs of the store: incidents, their deliveries, pauses, and writing a decision.

    ``budgetguard.store.Store`` (SQLite) and the PostgreSQL store implement it.
    """

    def incident(self, incident_id: str) -> Incident | None: ...

    def incidents(
        self, *, state: IncidentState | None = None, slo_id: str | None = None, limit: int = 100
    ) -> list[Incident]: ...

    def outbox(self, *, incident_id: str | None = None, limit: int = 100) -> list[OutboxRow]: ...

    def acknowledge(self, incident_id: str, by: str, at: datetime) -> Incident | None: ...

    def write_decision(self, decision: Decision, now: datetime) -> None: ...

    def retry(self, outbox_id: int, now: datetime) -> tuple[OutboxRow | None, bool]: ...

    def pause(self, slo_id: str, at: datetime, *, until: datetime | None, by: str, reason: str) -> None: ...

    def resume(self, slo_id: str) -> bool: ...

    def pauses(self, now: datetime) -> dict[str, dict[str, Any]]: ...


@dataclass(frozen=True)
class Control:
    store: ControlStore
    delivery: Delivery

    def _incident(self, incident_id: str) -> Incident:
        found = self.store.incident(incident_id)
        if found is None:
            raise ControlError(404, f"no incident {incident_id!r}; list them with budgetguard incidents")
        return found

    def incidents(self, state: IncidentState | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return [incident_record(i) for i in self.store.incidents(state=state, limit=limit)]

    def show(self, incident_id: str) -> dict[str, Any]:
        incident = self._incident(incident_id)
        outbox = self.store.outbox(incident_id=incident_id)
        return {**incident_record(incident), "deliveries": [row.as_record() for row in outbox]}

    def acknowledge(self, incident_id: str, by: str, at: datetime) -> dict[str, Any]:
        self._incident(incident_id)
        done = self.store.acknowledge(incident_id, by, at)
        assert done is not None
        return incident_record(done)

    def resolve(self, incident_id: str, by: str, at: datetime) -> dict[str, Any]:
        incident = self._incident(incident_id)
        if incident.state is IncidentState.RESOLVED:
            raise ControlError(409, f"incident {incident_id} is already resolved ({incident.resolution})")
        done = resolve(incident, at, f"resolved by hand by {by}")
        triggers = [(row.action, row.request) for row in self.store.outbox(incident_id=incident_id)]
        entries = resolve_entries_from(done, triggers, self.delivery)
        self.store.write_decision(Decision(resolved=(done,), outbox=entries), at)
        return incident_record(done)

    def retry(self, outbox_id: int, at: datetime) -> dict[str, Any]:
        row, requeued = self.store.retry(outbox_id, at)
        if row is None:
            raise ControlError(404, f"no delivery {outbox_id}; see budgetguard incidents show ID")
        if not requeued:
            raise ControlError(409, f"delivery {outbox_id} is {row.status}; only a failed one is retried")
        return row.as_record()

    def pause(
        self, slo_id: str, at: datetime, *, until: datetime | None, by: str, reason: str
    ) -> dict[str, Any]:
        self.store.pause(slo_id, at, until=until, by=by, reason=reason)
        return self.store.pauses(at)[slo_id]

    def resume(self, slo_id: str) -> bool:
        return self.store.resume(slo_id)


def incident_record(incident: Incident) -> dict[str, Any]:
    def t(at: datetime | None) -> str | None:
        return None if at is None else format_time(at)

    return {
        "id": incident.id,
        "slo_id": incident.slo_id,
        "service": incident.service,
        "slo": incident.slo,
        "canary_label": incident.canary_label,
        "canary": incident.canary_value,
        "baseline": incident.baseline,
        "state": str(incident.state),
        "opened_at": t(incident.opened_at),
        "reason": incident.reason,
        "burn_rates": dict(incident.burn_rates),
        "events": incident.events,
        "healthy_since": t(incident.healthy_since),
        "acknowledged_at": t(incident.acknowledged_at),
        "acknowledged_by": incident.acknowledged_by,
        "resolved_at": t(incident.resolved_at),
        "resolution": incident.resolution,
        "affected": None if incident.affected is None else affected.to_record(incident.affected),
    }
