"""What the judge is told (``CanaryKnobs``, ``Counts``) and the two questions it asks of the counts.

Is the lower confidence bound above the limit (``lower_bound_exceeds``), is the upper bound within it
(``upper_bound_within``); both are asked of whole request counts rounded towards the answer that
cannot cause a false verdict (``burning_side``, ``healthy_side``). No wording, no verdicts: those are
``judgement``'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from fractions import Fraction

from budgetguard.core.canary.proportions import (
    Method,
    at_least,
    at_most,
    check_confidence,
    clopper_pearson,
    wilson,
)

# Counts from Prometheus' increase() are floats; 4.999999999999999 errors is 5 errors with rounding noise.
INTEGER_SLACK = 1e-9


@dataclass(frozen=True)
class CanaryKnobs:
    """How sure the guard must be, and of what. The defaults and why:

    ``burn_limit``: the burn rate above which a canary is burning. No default: the caller passes the
    fastest page tier's threshold (14.4 for a 30-day SLO: 2% of the budget in 1h, workbook Table 5-8),
    so the guard rolls back exactly what would page if the canary took all traffic.

    ``confidence`` 0.95: one-sided, per check. Reproduces the reference's numbers (207 clean requests
    to say "below 14.4x" at 99.9%) and is Kayenta's order of magnitude (0.98 for Mann-Whitney).
    Higher waits longer for evidence; lower acts sooner on noise.

    ``method`` "exact": Clopper-Pearson never covers less than ``confidence``, so the false-alarm bound
    above holds for every true ratio; Wilson is a little quicker but its coverage dips below nominal at
    the small counts canaries live with. ``continuity_correction`` applies to Wilson only.

    ``compare_baseline`` True and ``baseline_confidence`` 0.95: burning also requires the canary to be
    significantly worse than the baseline (one-sided Fisher exact test), so an incident that degrades
    every version does not roll back the canary (workbook ch. 16: compare with a control population).

    ``streak`` 1: burning verdicts in a row before acting (``Streak``). One is enough: the confidence
    bound already absorbs the noise that Flagger's ``threshold`` of failed checks exists for.

    ``cooldown`` 5 minutes: after acting, no second action for the same canary for this long. As long
    as the default short window, so the evidence behind one action never triggers another.

    ``healthy_min_events`` None: the promotion gate (``healthy_enough``) needs a HEALTHY verdict on at
    least this many requests. None derives it: the requests that, all clean, would show the canary
    burns below 1x, the budget itself (rule of three: 2,995 at 99.9% and 95%). Fewer events could not
    have revealed a canary that spends the budget too fast to ship; workbook ch. 16: "Terminating a
    canary deployment after receiving just a handful of queries doesn't provide a useful signal."
    Pass the canary's counts since it started when judging for promotion.
    """

    burn_limit: float
    confidence: float = 0.95
    method: Method = "exact"
    compare_baseline: bool = True
    baseline_confidence: float = 0.95
    streak: int = 1
    cooldown: timedelta = timedelta(minutes=5)
    healthy_min_events: float | None = None
    continuity_correction: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.burn_limit) and self.burn_limit > 0):
            raise ValueError(f"burn_limit must be a positive burn rate, got {self.burn_limit}")
        check_confidence(self.confidence)
        check_confidence(self.baseline_confidence)
        if self.method not in ("exact", "wilson"):
            raise ValueError(f"unknown method {self.method!r}: use 'exact' or 'wilson'")
        if self.streak < 1:
            raise ValueError(f"streak must be at least 1, got {self.streak}")
        if self.cooldown < timedelta(0):
            raise ValueError("cooldown must not be negative")
        if self.healthy_min_events is not None and not self.healthy_min_events >= 0:
            raise ValueError(f"healthy_min_events must be >= 0, got {self.healthy_min_events}")


@dataclass(frozen=True)
class Counts:
    """Events over one window: ``errors`` among ``total`` requests.

    Floats, because Prometheus' ``increase()`` extrapolates (reference §3.3). The judge turns them into
    whole requests in the direction that cannot cause the verdict it is testing for: the test for
    BURNING uses the errors rounded down and the total rounded up, the test for HEALTHY the errors
    rounded up and the total rounded down (values within 1e-6 of a whole number count as that number).
    Errors above the total, an extrapolation artefact, count as the total; ``policy.evaluate`` is
    where a ratio far above 1 is reported as a query problem.
    """

    errors: float
    total: float

    def __post_init__(self) -> None:
        for name, value in (("errors", self.errors), ("total", self.total)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite count >= 0, got {value}")

    @property
    def error_ratio(self) -> float | None:
        """errors / total, at most 1; ``None`` without traffic."""
        return None if self.total <= 0 else min(self.errors / self.total, 1.0)


def round_down(value: float) -> int:
    nearest = round(value)
    return nearest if abs(value - nearest) <= INTEGER_SLACK * max(1.0, value) else math.floor(value)


def round_up(value: float) -> int:
    nearest = round(value)
    return nearest if abs(value - nearest) <= INTEGER_SLACK * max(1.0, value) else math.ceil(value)


def burning_side(counts: Counts) -> tuple[int, int]:
    """Whole (errors, total) that make a false BURNING least likely: fewer errors, more requests."""
    total = round_up(counts.total)
    return min(round_down(counts.errors), total), total


def healthy_side(counts: Counts) -> tuple[int, int]:
    """Whole (errors, total) that make a false HEALTHY least likely: more errors, fewer requests."""
    total = round_down(counts.total)
    return min(round_up(counts.errors), total), total


def method_bounds(errors: int, total: int, knobs: CanaryKnobs) -> tuple[float, float]:
    if knobs.method == "exact":
        return clopper_pearson(errors, total, knobs.confidence)
    return wilson(errors, total, knobs.confidence, knobs.continuity_correction)


def lower_bound_exceeds(errors: float, total: float, limit_ratio: float, knobs: CanaryKnobs) -> bool:
    """Is the lower bound above ``limit_ratio``? For the exact method, by the equivalent tail test.

    L > limit exactly when P(X >= errors | limit) < 1 - confidence (the tail grows with the ratio and
    equals 1 - confidence at L): one incomplete-beta evaluation instead of a root search.
    """
    if limit_ratio >= 1.0 or total <= 0:
        return False
    if knobs.method == "exact":
        return at_least(errors, total, limit_ratio) < 1.0 - knobs.confidence
    return wilson(errors, total, knobs.confidence, knobs.continuity_correction)[0] > limit_ratio


def upper_bound_within(errors: float, total: float, limit_ratio: float, knobs: CanaryKnobs) -> bool:
    """Is the upper bound at most ``limit_ratio``? U <= limit exactly when P(X <= errors | limit) <= alpha."""
    if total <= 0:
        return False
    if limit_ratio >= 1.0:
        return True
    if knobs.method == "exact":
        return at_most(errors, total, limit_ratio) <= 1.0 - knobs.confidence
    return wilson(errors, total, knobs.confidence, knobs.continuity_correction)[1] <= limit_ratio


def check_budget(budget: float | Fraction) -> float:
    value = float(budget)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"the error budget must be in (0, 1], got {budget}")
    return value
