"""The read model: what the cycle and the SLO reloads write, and what the web layer and the exporter read.

``State`` holds the SLOs in force, each one's latest evaluation, the problems of a refused reload and
the number of finished cycles; all of it lives in the daemon's one event loop, so readers need no
locks or copies. ``ReadModel`` answers the web layer's ``ApiView`` and the exporter's ``MetricsView``
from that state and the store. It decides nothing and changes nothing.

The pull gates ask, per SLO, whether it is paused and which canaries have an open incident. Read from
the store on every request, that put a database round trip on the gates' path and, worse, made the
event loop wait for the store's lock while a cycle's write held it (most of a second at 10,000 SLOs,
#14). The daemon keeps a ``GuardSnapshot`` instead: read again (``refresh_guard``) after each cycle's
write, at once after a change made through this daemon's API, and every ``GUARD_REFRESH`` for changes
made elsewhere (the CLI on the host, another replica). A pause's end is judged at request time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from budgetguard.core.errors import BudgetguardError
from budgetguard.core.guard import IncidentState
from budgetguard.core.latest import LatestEvaluations
from budgetguard.core.policy import Evaluation
from budgetguard.core.spec import SLO
from budgetguard.store import AnyStore

log = logging.getLogger("budgetguard")

# How stale the gates' view of pauses and open incidents made elsewhere (the CLI on the host, another
# replica) may be: changes made through this daemon's API and by its own cycles are seen at once.
GUARD_REFRESH = timedelta(seconds=2)


@dataclass(frozen=True)
class GuardSnapshot:
    """Pauses (SLO id -> end, None: until resumed) and open incidents' canary values, per SLO."""

    paused: dict[str, datetime | None]
    open_canaries: dict[str, frozenset[str]]

    def status(self, slo_id: str, now: datetime) -> tuple[bool, frozenset[str]]:
        paused = slo_id in self.paused
        if paused:
            until = self.paused[slo_id]
            paused = until is None or until > now
        return paused, self.open_canaries.get(slo_id, frozenset())


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
        latest = self.latest
        found = (latest.get(slo.id) for slo in self.slos)
        self.published = LatestEvaluations(ev for ev in found if ev is not None)


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
        self._guard: GuardSnapshot | None = None  # None: read the store per request

    def read_guard(self) -> GuardSnapshot:
        """Pauses and open incidents as the store has them now (blocking: call off the event loop,
        or where a store call is made anyway)."""
        pauses = self._store.pauses(self._clock())
        paused = {
            slo_id: None if p["until"] is None else datetime.fromisoformat(p["until"])
            for slo_id, p in pauses.items()
        }
        open_: dict[str, set[str]] = {}
        for incident in self._store.incidents(state=IncidentState.OPEN, limit=1_000_000):
            open_.setdefault(incident.slo_id, set()).add(incident.canary_value)
        return GuardSnapshot(paused, {k: frozenset(v) for k, v in open_.items()})

    def refresh_guard_now(self) -> None:
        """Read again, here and now: after a change this process just wrote (a pause, a resolve). If the
        store cannot answer, the gates read it per request again until the next refresh succeeds."""
        try:
            self._guard = self.read_guard()
        except BudgetguardError:
            self._guard = None
            log.warning(
                "cannot read pauses and incidents; the gates read the store per request", exc_info=True
            )

    async def refresh_guard(self) -> None:
        """Read again in a worker thread (the store's lock may be held by a cycle's write). If the store
        cannot answer, the last snapshot stays (the store's health is reported on its own)."""
        try:
            self._guard = await asyncio.to_thread(self.read_guard)
        except BudgetguardError:
            log.debug("cannot refresh pauses and incidents; the last ones read stay", exc_info=True)

    async def keep_guard_fresh(self, stop: asyncio.Event, every: timedelta = GUARD_REFRESH) -> None:
        """Refresh every ``every`` until ``stop``: changes made elsewhere reach the gates."""
        while not stop.is_set():
            await self.refresh_guard()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every.total_seconds())

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
        """(paused, canary values with an open incident) for the pull gates: from the snapshot the daemon
        keeps, or read from the store when there is none."""
        if self._guard is not None:
            return self._guard.status(slo_id, self._clock())
        paused = slo_id in self._store.pauses(self._clock())
        open_ = self._store.incidents(state=IncidentState.OPEN, slo_id=slo_id, limit=10_000)
        return paused, frozenset(i.canary_value for i in open_)
