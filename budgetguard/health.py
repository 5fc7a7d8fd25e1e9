"""The guard's own health: what it logs about itself, whether it is ready, what its alerts read.

Issue 13 found budgetguard silent when it mattered: an unreachable source or a broken query logged
nothing for minutes, the first verdict of each SLO was never logged, and /readyz said "ready" while
no decision could be stored. ``GuardHealth`` is told what each cycle saw (``observe_cycle``) and
whether its write committed (``record_write``), and turns that into

- log lines, once per change of state and at most once per ``log_min_interval`` per subject
  (``budgetguard.statelog``): each SLO's first verdict and its changes, the source failing (its cause
  and URL) and recovering, the store refusing writes and taking them again, the guard's notes;
- readiness: not ready before the first cycle, nor while the store refuses a real write (the probe's,
  or the cycle's own), saying why;
- the series of ``budgetguard.exporter.HealthView``: open incidents, pauses, the store, config errors.

It decides nothing about SLOs or canaries; it only reports on the daemon that does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from budgetguard.core.guard import Incident, IncidentState
from budgetguard.core.policy import Evaluation
from budgetguard.core.verdict import Verdict
from budgetguard.exporter import SOURCE_DOWN_REASONS
from budgetguard.statelog import StateLog

log = logging.getLogger("budgetguard")

# A reason longer than this is cut in the log (the API and the store keep it whole): a combined query of
# thirty windows would otherwise fill a screen per line.
LOGGED_REASON = 400
# /readyz is unauthenticated: its real write is made at most this often, whatever the probe rate.
PROBE_EVERY = 1.0


class HealthStore(Protocol):
    """What health reads from the store (``budgetguard.store.Store`` is one)."""

    def write_problem(self) -> str | None: ...

    def incidents(
        self, *, state: IncidentState | None = None, slo_id: str | None = None, limit: int = 100
    ) -> list[Incident]: ...

    def pauses(self, now: datetime) -> dict[str, dict[str, Any]]: ...


class GuardHealth:
    """The daemon's view of itself; see the module docstring."""

    def __init__(
        self,
        store: HealthStore,
        states: StateLog,
        *,
        source_url: str,
        clock: Callable[[], datetime] = lambda: datetime.now(tz=UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.states = states
        self.source_url = source_url
        self._clock = clock
        self._monotonic = monotonic
        self._write_failure: str | None = None  # the cycle's last write, when it failed
        self._probed: tuple[float, str | None] | None = None
        self.config_problems: list[str] = []  # of the last refused reload of the config file

    # --- what the cycle saw -------------------------------------------------------------------------

    @staticmethod
    def _reason(ev: Evaluation) -> str:
        """The evaluation's reason for the log: without the query when the source itself failed (the
        query is not the cause), and cut at ``LOGGED_REASON`` characters."""
        reason = ev.reason
        if ev.verdict is Verdict.ERROR and (ev.error_kind or "") in SOURCE_DOWN_REASONS:
            reason = reason.split(" in query: ", 1)[0]
        return reason if len(reason) <= LOGGED_REASON else reason[:LOGGED_REASON] + "..."

    def observe_cycle(self, evaluations: Sequence[Evaluation]) -> None:
        """Log each SLO's first verdict and its changes, and the source failing or recovering."""
        self.observe_slos(evaluations)
        self.observe_source(evaluations)

    def observe_slos(self, evaluations: Sequence[Evaluation]) -> None:
        """``observe_cycle``'s first part, for some of a cycle's SLOs at a time (the daemon logs 10,000
        first verdicts in batches, between which the event loop answers requests)."""
        for ev in evaluations:
            level = logging.WARNING if ev.verdict in (Verdict.BURNING, Verdict.ERROR) else logging.INFO
            before = self.states.state(f"slo:{ev.slo.id}")
            if before is None:
                self.states.observe(
                    f"slo:{ev.slo.id}",
                    str(ev.verdict),
                    level,
                    "%s: %s: %s",
                    ev.slo.id,
                    ev.verdict,
                    self._reason(ev),
                )
            else:
                self.states.observe(
                    f"slo:{ev.slo.id}",
                    str(ev.verdict),
                    level,
                    "%s: %s -> %s: %s",
                    ev.slo.id,
                    before,
                    ev.verdict,
                    self._reason(ev),
                )

    def observe_source(self, evaluations: Sequence[Evaluation]) -> None:
        """``observe_cycle``'s last part, once all of a cycle's SLOs were observed: the source as they
        all say, and the lines held back by the rate limit."""
        self._observe_source(evaluations)
        self.states.flush()

    def _observe_source(self, evaluations: Sequence[Evaluation]) -> None:
        if not evaluations:
            return
        failed = [
            ev
            for ev in evaluations
            if ev.verdict is Verdict.ERROR and (ev.error_kind or "") in SOURCE_DOWN_REASONS
        ]
        if len(failed) == len(evaluations):
            kinds = sorted({str(ev.error_kind) for ev in failed})
            self.states.observe(
                "source",
                "failing:" + ",".join(kinds),
                logging.ERROR,
                "the metrics source %s fails for every SLO (%s): %s; no SLO is judged and no canary "
                "would be halted",
                self.source_url,
                ", ".join(kinds),
                self._reason(failed[0]),
            )
            return
        before = self.states.state("source")
        if before is not None and before.startswith("failing"):
            self.states.observe(
                "source", "ok", logging.INFO, "the metrics source %s answers again", self.source_url
            )
        elif before is None:
            self.states.observe(
                "source", "ok", logging.INFO, "the metrics source %s answers", self.source_url
            )

    def notes(self, subject: str, texts: Sequence[str]) -> None:
        """The guard's notes on ``subject`` this cycle (a canary not judged, a breach held for ``for``),
        logged when they change; none is recorded without a line."""
        if texts:
            self.states.observe(f"note:{subject}", "\n".join(texts), logging.INFO, "%s", "; ".join(texts))
        else:
            self.states.settle(f"note:{subject}", "")

    def forget_slos(self, ids: Iterable[str]) -> None:
        """SLOs a reload removed: if one comes back, its first verdict is logged again."""
        for slo_id in ids:
            self.states.forget(f"slo:{slo_id}")

    def record_write(self, problem: str | None) -> None:
        """The cycle's write committed (None) or failed (why): readiness follows the last one."""
        self._write_failure = problem
        self._store_state(problem)

    def _store_state(self, problem: str | None) -> None:
        if problem is not None:
            self.states.observe(
                "store",
                "failing",
                logging.ERROR,
                "the store refuses writes: %s; no decision is stored, so no canary is halted, and "
                "/readyz answers 503",
                problem,
            )
        elif self.states.state("store") == "failing":
            self.states.observe("store", "ok", logging.INFO, "the store takes writes again")

    # --- readiness ----------------------------------------------------------------------------------

    def store_problem(self) -> str | None:
        """Why the store cannot be written now: a real write at most every ``PROBE_EVERY`` seconds,
        else the cycle's last failed write (which a later committed write or probe clears)."""
        now = self._monotonic()
        if self._probed is None or now - self._probed[0] >= PROBE_EVERY:
            problem = self._store.write_problem()
            self._probed = (now, problem)
            if problem is None and self._write_failure is not None:
                self._write_failure = None  # a real write commits again
            self._store_state(problem or self._write_failure)
        return self._probed[1] or self._write_failure

    def readiness(self, cycles: int) -> tuple[bool, str]:
        if cycles == 0:
            return False, "the first evaluation cycle has not finished yet"
        problem = self.store_problem()
        if problem is not None:
            return False, f"{problem}: no decision can be stored, so no canary would be halted"
        return True, f"{cycles} cycle(s) done"

    # --- the exporter's HealthView -------------------------------------------------------------------

    def open_incidents(self) -> Mapping[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        for incident in self._store.incidents(state=IncidentState.OPEN, limit=100_000):
            key = (incident.service, incident.slo)
            counts[key] = counts.get(key, 0) + 1
        return counts

    def paused(self) -> Sequence[tuple[str, str]]:
        out = []
        for slo_id in self._store.pauses(self._clock()):
            service, _, name = slo_id.partition("/")
            out.append((service, name))
        return out

    def config_file_problems(self) -> int:
        return len(self.config_problems)
