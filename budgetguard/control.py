"""Manual control of the guard, shared by the command line and the API: the same rules from both.

Acknowledge an incident, resolve it by hand (which sends RESOLVE where the targets understand it,
through the outbox like any decision), retry a failed delivery, pause and resume the guard of an SLO.
The store is the one place these live, so the daemon sees a change made from the command line at its
next cycle, and the command line works while the daemon is down.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from budgetguard.core import affected
from budgetguard.core.errors import ControlError
from budgetguard.core.guard import Decision, Delivery, Incident, IncidentState, resolve, resolve_entries_from
from budgetguard.core.records import format_time
from budgetguard.store import OutboxRow, OutboxStatus


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


# The longest pause: a year (the HTTP API's limit on "for" too).
MAX_PAUSE = timedelta(days=366)


@dataclass(frozen=True)
class Control:
    store: ControlStore
    delivery: Delivery
    # The SLO ids the daemon judges, when known (the daemon's own, or the config's SLO files for the
    # command line): a pause of any other id is refused, since it would silently pause nothing.
    declared: Collection[str] | None = None

    def _incident(self, incident_id: str) -> Incident:
        found = self.store.incident(incident_id)
        if found is None:
            raise ControlError(404, f"no incident {incident_id!r}; list them with budgetguard incidents")
        return found

    def incidents(self, state: IncidentState | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Incidents, newest first, each with the deliveries that failed or are being retried: a halt
        that did not happen shows in the list, not only in a log line."""
        return [
            {**incident_record(i), "delivery_problems": self._delivery_problems(i.id)}
            for i in self.store.incidents(state=state, limit=limit)
        ]

    def _delivery_problems(self, incident_id: str) -> list[dict[str, Any]]:
        return [
            row.as_record()
            for row in self.store.outbox(incident_id=incident_id)
            if row.status is OutboxStatus.FAILED or (row.status is OutboxStatus.PENDING and row.attempts > 0)
        ]

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
        if until is not None and until - at > MAX_PAUSE:
            raise ControlError(
                400,
                f"a pause is at most {MAX_PAUSE.days} days; a guard off for longer should be taken out of "
                "the SLO file (remove its canary: block), where everyone sees it",
            )
        if self.declared is not None and slo_id not in self.declared:
            known = ", ".join(sorted(self.declared)[:10]) or "none"
            more = f" and {len(self.declared) - 10} more" if len(self.declared) > 10 else ""
            raise ControlError(
                404,
                f"no SLO {slo_id!r} is declared, so there is no guard to pause (declared: {known}{more}); "
                "give SERVICE/SLO as budgetguard check lists it",
            )
        self.store.pause(slo_id, at, until=until, by=by, reason=reason)
        return self.store.pauses(at)[slo_id]

    def pauses(self, at: datetime) -> list[dict[str, Any]]:
        """The pauses in force at ``at``, by SLO id."""
        return [pause for _, pause in sorted(self.store.pauses(at).items())]

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
