"""The verdict on one canary version over one window: BURNING, HEALTHY or INCONCLUSIVE, and why.

``judge`` puts the bounds, the baseline test and the traffic still needed together into a
``CanaryJudgement`` whose ``reason`` a person can act on. The arithmetic is in ``proportions`` and
``sample_size``; what to do about a verdict is ``streaks``' and the guard's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from budgetguard.core.canary.knobs import (
    CanaryKnobs,
    Counts,
    burning_side,
    check_budget,
    healthy_side,
    method_bounds,
    round_down,
    round_up,
)
from budgetguard.core.canary.proportions import p_value_worse_than_baseline
from budgetguard.core.canary.sample_size import clean_events_needed, requests_to_decide
from budgetguard.core.canary.wording import count_text, p_text, percent
from budgetguard.core.verdict import Verdict


@dataclass(frozen=True)
class CanaryJudgement:
    """The verdict on one canary at one evaluation, with the numbers behind it.

    Ratios are shares of requests (0.0144 is 1.44%); burn rates are ratios over the budget. The bounds
    are one-sided at ``knobs.confidence``; without traffic they are the vacuous 0 and 1 while the point
    estimates are ``None``.
    """

    verdict: Verdict
    reason: str
    error_ratio: float | None
    lower_bound: float
    upper_bound: float
    limit_ratio: float  # burn_limit x budget: the error ratio a burn_limit burn means
    burn_rate: float | None
    burn_lower: float
    burn_upper: float
    p_value_vs_baseline: float | None
    baseline_error_ratio: float | None
    events: float  # the canary's requests in the window, as given
    events_needed: int | None  # INCONCLUSIVE only: further requests that decide at the current ratio
    healthy_enough: bool  # HEALTHY on at least the promotion gate's number of requests


def judge(
    canary: Counts,
    baseline: Counts | None,
    budget: float | Fraction,
    knobs: CanaryKnobs,
    *,
    name: str = "canary",
) -> CanaryJudgement:
    """Judge one canary version from its counts over a window (and the baseline's over the same window).

    BURNING: the lower bound is above ``burn_limit x budget`` and, when a baseline with traffic is
    given and ``knobs.compare_baseline`` is on, the canary is worse than the baseline at
    ``baseline_confidence``. HEALTHY: the upper bound is at most ``burn_limit x budget``. Otherwise
    INCONCLUSIVE, with ``events_needed``. No traffic is INCONCLUSIVE.
    """
    budget_ratio = check_budget(budget)
    limit = knobs.burn_limit * budget_ratio
    confidence = f"{knobs.confidence * 100:g}%"
    allowed = f"the {percent(limit)} that a {knobs.burn_limit:g}x burn allows"
    min_events = (
        knobs.healthy_min_events
        if knobs.healthy_min_events is not None
        else clean_events_needed(budget_ratio, knobs.confidence, knobs.method)
    )
    burn_k, burn_n = burning_side(canary)
    healthy_k, healthy_n = healthy_side(canary)
    ratio = canary.error_ratio

    if healthy_n == 0:
        needed = clean_events_needed(limit, knobs.confidence, knobs.method)
        seen = "no requests" if canary.total == 0 else f"less than one request ({canary.total:.2g})"
        return CanaryJudgement(
            verdict=Verdict.INCONCLUSIVE,
            reason=(
                f"{name}: {seen} in the window, nothing to judge; {needed:,} clean requests would "
                f"show with {confidence} confidence that it stays within {allowed}"
            ),
            error_ratio=ratio,
            lower_bound=0.0,
            upper_bound=1.0,
            limit_ratio=limit,
            burn_rate=None if ratio is None else ratio / budget_ratio,
            burn_lower=0.0,
            burn_upper=1.0 / budget_ratio,
            p_value_vs_baseline=None,
            baseline_error_ratio=None if baseline is None else baseline.error_ratio,
            events=canary.total,
            events_needed=needed,
            healthy_enough=False,
        )
    assert ratio is not None
    lower = method_bounds(burn_k, burn_n, knobs)[0]
    upper = method_bounds(healthy_k, healthy_n, knobs)[1]
    exceeds, within = lower > limit, upper <= limit

    # Against the baseline: canary rounded towards fewer errors, baseline towards more (no false alarm).
    base_counts: tuple[int, int] | None = None
    p_value = None
    baseline_note = ""
    if baseline is not None and knobs.compare_baseline:
        base_total = round_down(baseline.total)
        if base_total == 0:
            baseline_note = "; the baseline had no traffic, so the bound alone decides"
        else:
            base_counts = (min(round_up(baseline.errors), base_total), base_total)
            p_value = p_value_worse_than_baseline(burn_k, burn_n, *base_counts)
    base_ratio = None if baseline is None else baseline.error_ratio
    worse = p_value is None or p_value < 1.0 - knobs.baseline_confidence

    errors, requests = count_text(canary.errors, "error"), count_text(canary.total, "request")
    head = f"{name}: {errors} in {requests} ({percent(ratio)})"
    versus = ""
    if p_value is not None and base_ratio is not None:
        versus = f"the baseline's {percent(base_ratio)} (p={p_text(p_value)})"
    events_needed = None
    healthy_enough = False
    if exceeds and worse:
        verdict = Verdict.BURNING
        reason = f"{head}; with {confidence} confidence at least {percent(lower)}, above {allowed}"
        reason += f"; and worse than {versus}" if versus else baseline_note
    elif within:
        verdict = Verdict.HEALTHY
        reason = f"{head}; with {confidence} confidence at most {percent(upper)}, within {allowed}"
        healthy_enough = healthy_n >= min_events
        if healthy_enough:
            reason += f"; enough requests to promote ({math.ceil(min_events):,} needed)"
        else:
            reason += f"; {healthy_n:,} of the {math.ceil(min_events):,} requests a promotion needs"
    else:
        verdict = Verdict.INCONCLUSIVE
        events_needed = requests_to_decide(canary, base_counts, limit, knobs)
        if exceeds:
            reason = (
                f"{head}; with {confidence} confidence at least {percent(lower)}, above {allowed}, but not "
                f"significantly worse than {versus}, which would need "
                f"p<{p_text(1.0 - knobs.baseline_confidence)}"
                ": the service as a whole is degraded, not just this version"
            )
        else:
            reason = (
                f"{head}; with {confidence} confidence between {percent(lower)} and {percent(upper)}, "
                f"which includes {allowed}"
            )
        if events_needed is None:
            reason += "; no amount of traffic at this error ratio would decide"
        else:
            reason += f"; about {events_needed:,} more requests at this error ratio would decide"
    return CanaryJudgement(
        verdict=verdict,
        reason=reason,
        error_ratio=ratio,
        lower_bound=lower,
        upper_bound=upper,
        limit_ratio=limit,
        burn_rate=ratio / budget_ratio,
        burn_lower=lower / budget_ratio,
        burn_upper=upper / budget_ratio,
        p_value_vs_baseline=p_value,
        baseline_error_ratio=base_ratio,
        events=canary.total,
        events_needed=events_needed,
        healthy_enough=healthy_enough,
    )
