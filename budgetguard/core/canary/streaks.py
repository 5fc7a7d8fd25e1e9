"""When to act on verdicts over time: a run of BURNING verdicts, a breach that has lasted, a cooldown.

Immutable states advanced by each evaluation's verdict and timestamp (time arrives as an argument),
so a clock step can neither double a rollback nor make a breach look older.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from budgetguard.core.canary.judgement import CanaryJudgement
from budgetguard.core.canary.knobs import CanaryKnobs
from budgetguard.core.canary.latency import LatencyCheck
from budgetguard.core.verdict import Verdict


@dataclass(frozen=True)
class Hold:
    """How long one check has been burning without interruption, by the evaluation timestamps.

    ``since`` is the first BURNING verdict of the current run and ``last`` the latest. Any other
    verdict ends the run; so does time going backwards (a clock step must not make a breach look
    older, nor shorten the wait: the run starts again from the earlier time). Failed evaluations are
    not verdicts and leave the run as it is, as a Prometheus alert keeps its pending state.
    """

    since: datetime | None = None
    last: datetime | None = None

    def advance(self, burning: bool, at: datetime) -> Hold:
        if not burning:
            return Hold()
        if self.since is None or self.last is None or at < self.last:
            return Hold(at, at)
        return Hold(self.since, at)

    @property
    def held(self) -> timedelta:
        return timedelta(0) if self.since is None or self.last is None else self.last - self.since


@dataclass(frozen=True)
class Streak:
    """When to act on one canary's verdicts: ``needed`` BURNING verdicts in a row, then a cooldown.

    Immutable: ``advance`` returns the next state and whether to act now. Any verdict other than
    BURNING ends the run: INCONCLUSIVE means the evidence no longer clears the bar. Acting starts a
    new run, and no second action comes within ``cooldown`` of the last one, also when time goes
    backwards (a clock step must not double a rollback). After the cooldown a canary still burning
    is acted on again, in case the first action did not take.
    """

    needed: int = 1
    cooldown: timedelta = timedelta(minutes=5)
    run: int = 0
    acted_at: datetime | None = None
    breach: Hold = Hold()  # the latency guard's clock (``advance_latency``)

    def __post_init__(self) -> None:
        if self.needed < 1:
            raise ValueError(f"needed must be at least 1, got {self.needed}")

    @classmethod
    def for_knobs(cls, knobs: CanaryKnobs) -> Streak:
        return cls(needed=knobs.streak, cooldown=knobs.cooldown)

    def cooling(self, at: datetime) -> bool:
        """Would an action at ``at`` come too soon after the last one?"""
        return self.acted_at is not None and at < self.acted_at + self.cooldown

    def advance(self, judgement: CanaryJudgement, at: datetime) -> tuple[Streak, bool]:
        run = self.run + 1 if judgement.verdict is Verdict.BURNING else 0
        if run >= self.needed and not self.cooling(at):
            return replace(self, run=0, acted_at=at), True
        return replace(self, run=run), False

    def advance_latency(self, check: LatencyCheck, at: datetime) -> tuple[Streak, timedelta | None]:
        """Run the latency guard's clock on one verdict; the breach's duration when it is time to act.

        Due once the breach has been judged BURNING without interruption for ``check.hold`` (at the
        first BURNING verdict when the hold is zero) and outside the cooldown; acting restarts it.
        """
        breach = self.breach.advance(check.verdict is Verdict.BURNING, at)
        if breach.since is not None and breach.held >= check.hold and not self.cooling(at):
            return replace(self, run=0, acted_at=at, breach=Hold()), breach.held
        return replace(self, breach=breach), None
