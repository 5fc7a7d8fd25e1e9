"""The read model: what the cycle and the SLO reloads write, and what the web layer and the exporter read.

``State`` holds the SLOs in force, each one's latest evaluation, the problems of a refused reload and
the number of finished cycles; all of it lives in the daemon's one event loop, so readers need no
locks or copies. ``ReadModel`` answers the web layer's ``ApiView`` and the exporter's ``MetricsView``
from that state and the store. It decides nothing and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from budgetguard.core.guard import IncidentState
from budgetguard.core.latest import LatestEvaluations
from budgetguard.core.policy import Evaluation
from budgetguard.core.spec import SLO
from budgetguard.store import AnyStore


@dataclass
class State:
    """What the scheduler writes and the server and exporter read, all in one event loop."""

    slos: list[SLO] = field(default_factory=list)
    latest: dict[str, Evaluation] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    cycles: int = 0
    # What readers see: ``latest`` of the SLOs in force, indexed by SLO and by service, rebuilt by
    # ``publish`` after each change and never per request: a gate's cost must not grow with the number
    # of SLOs (#14).
    published: LatestEvaluations = field(default_factory=LatestEvaluations)

    def publish(self) -> None:
        """Call after changing ``slos`` or ``latest``."""
        self.published = LatestEvaluations(self.latest[s.id] for s in self.slos if s.id in self.latest)


class Leadership(Protocol):
    """Who leads, as ``budgetguard.leadership.Leader`` (PostgreSQL) or ``Sole`` (SQLite) tells it."""

    def status(self) -> dict[str, Any]: ...


class ReadModel:
    """The state and the store, as the HTTP API (``budgetguard.web.ApiView``) and the exporter see them."""

    def __init__(
        self,
        state: State,
        store: AnyStore,
        clock: Callable[[], datetime] = lambda: datetime.now(tz=UTC),
        *,
        readiness: Callable[[int], tuple[bool, str]] | None = None,
        leadership: Leadership | None = None,
    ) -> None:
        self.state = state
        self._store = store
        self._clock = clock
        # The daemon's ``health.GuardHealth.readiness``: a real write, saying why it fails.
        self._readiness = readiness
        self._leadership = leadership

    def status(self) -> dict[str, Any]:
        """This replica: whether it leads and which one does, the store, the cycles done (the API's
        /api/v1/status)."""
        leadership = self._leadership.status() if self._leadership is not None else {"leader": True}
        return {
            **leadership,
            "store": str(self._store.path),
            "cycles": self.state.cycles,
            "slos": len(self.state.slos),
        }

    def latest_evaluations(self) -> LatestEvaluations:
        return self.state.published

    def config_errors(self) -> int:
        return len(self.state.problems)

    def config_problems(self) -> Sequence[str]:
        return list(self.state.problems)

    def readiness(self) -> tuple[bool, str]:
        if self._readiness is not None:
            return self._readiness(self.state.cycles)
        if self.state.cycles == 0:
            return False, "the first evaluation cycle has not finished yet"
        if not self._store.writable():
            return False, "the store is not writable"
        return True, f"{self.state.cycles} cycle(s) done"

    def history(self, slo_id: str, since: datetime, limit: int) -> list[dict[str, Any]]:
        return self._store.history(slo_id, since, limit=limit)

    def verdict_changes(self, slo_id: str, since: datetime) -> list[dict[str, Any]]:
        return self._store.verdict_changes(slo_id, since)

    def budget_series(
        self, slo_id: str, since: datetime, step: timedelta
    ) -> list[tuple[datetime, float | None]]:
        return self._store.budget_series(slo_id, since, step)

    def guard_status(self, slo_id: str) -> tuple[bool, frozenset[str]]:
        """(paused, canary values with an open incident) for the pull gates, read from the store."""
        paused = slo_id in self._store.pauses(self._clock())
        open_ = self._store.incidents(state=IncidentState.OPEN, slo_id=slo_id, limit=10_000)
        return paused, frozenset(i.canary_value for i in open_)
