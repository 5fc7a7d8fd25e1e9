"""How many requests decide: the thresholds the judge implies and the traffic it still needs.

``burning_errors``/``healthy_errors`` say where the verdict flips at a given traffic, and
``clean_events_needed`` how many clean requests show a ratio is within a limit (the rule of three's
exact form). ``requests_to_decide`` projects the current error ratio forward to the first request
count at which the judge would decide; an INCONCLUSIVE verdict reports it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from statistics import NormalDist

from budgetguard.core.canary.knobs import (
    CanaryKnobs,
    Counts,
    check_budget,
    lower_bound_exceeds,
    round_down,
    round_up,
    upper_bound_within,
)
from budgetguard.core.canary.proportions import Method, check_confidence, p_value_worse_than_baseline

# events_needed gives up beyond this many requests: no canary lives that long, and the answer
# "none in practice" is more useful than a precise astronomical number.
MAX_EVENTS_NEEDED = 10**9


def _first_true(predicate: Callable[[int], bool], low: int, high: int, guess: int, step: int = 1) -> int:
    """The smallest n in (low, high] with predicate(n), for a predicate false at low and true at high,
    monotone in between; gallops out from ``guess`` (first by ``step``, then doubling) then bisects."""
    guess = min(max(guess, low + 1), high)
    first_step = max(step, 1)
    if predicate(guess):
        high = guess
        step = first_step
        while high - step > low and predicate(high - step):
            high -= step
            step *= 2
        low = max(low, high - step)
    else:
        low = guess
        step = first_step
        while low + step < high and not predicate(low + step):
            low += step
            step *= 2
        high = min(high, low + step)
    while high - low > 1:
        middle = (low + high) // 2
        if predicate(middle):
            high = middle
        else:
            low = middle
    return high


def _normal_guess(total: int, ratio: float, z: float) -> int:
    return math.ceil(total * ratio + z * math.sqrt(total * ratio * (1.0 - ratio)))


def burning_errors(total: int, budget: float | Fraction, knobs: CanaryKnobs) -> int | None:
    """The fewest errors among ``total`` requests that ``judge`` calls burning without a baseline.

    ``None`` when even all-failed would not be (no requests, or a limit of 100% errors or more). With
    the exact method: 5 at 100 requests, 22 at 1,000 and 165 at 10,000 for 14.4x at 99.9%.
    """
    limit = knobs.burn_limit * check_budget(budget)
    if total <= 0 or not lower_bound_exceeds(total, total, limit, knobs):
        return None
    z = NormalDist().inv_cdf(knobs.confidence)
    return _first_true(
        lambda k: lower_bound_exceeds(k, total, limit, knobs), 0, total, _normal_guess(total, limit, z)
    )


def healthy_errors(total: int, budget: float | Fraction, knobs: CanaryKnobs) -> int | None:
    """The most errors among ``total`` requests that ``judge`` still calls healthy; ``None`` if not even 0."""
    limit = knobs.burn_limit * check_budget(budget)
    if not upper_bound_within(0, total, limit, knobs):
        return None
    if upper_bound_within(total, total, limit, knobs):
        return total
    z = NormalDist().inv_cdf(knobs.confidence)
    guess = _normal_guess(total, limit, -z)
    return _first_true(lambda k: not upper_bound_within(k, total, limit, knobs), 0, total, guess) - 1


def clean_events_needed(ratio_limit: float, confidence: float, method: Method = "exact") -> int:
    """The fewest requests that, all clean, show the error ratio is at most ``ratio_limit``.

    Exact: (1 - r)^n <= 1 - confidence, the rule of three's exact form (207 for 1.44% at 95%).
    """
    check_confidence(confidence)
    if ratio_limit >= 1.0:
        return 1
    if not ratio_limit > 0:
        raise ValueError(f"ratio_limit must be positive, got {ratio_limit}")
    alpha = 1.0 - confidence
    if method == "exact":
        estimate = math.ceil(math.log(alpha) / math.log1p(-ratio_limit))
    else:
        z = NormalDist().inv_cdf(confidence)
        estimate = math.ceil(z * z * (1.0 - ratio_limit) / ratio_limit)
    # The closed forms can be off by one in floating point at an exact tie; settle it with the bound.
    knobs = CanaryKnobs(burn_limit=1.0, confidence=confidence, method=method)
    estimate = max(estimate, 1)
    while estimate > 1 and upper_bound_within(0, estimate - 1, ratio_limit, knobs):
        estimate -= 1
    while not upper_bound_within(0, estimate, ratio_limit, knobs):
        estimate += 1
    return estimate


def _first_total(predicate: Callable[[int], bool], start: int, guess: float, cap: int) -> int | None:
    """The smallest integer >= start where ``predicate`` holds (monotone), or None up to ``cap``.

    ``guess`` is a normal approximation; the search gallops out from it and bisects.
    """
    if start > cap:
        return None
    if predicate(start):
        return start
    guess_total = int(min(max(guess, start + 1), cap))
    high = guess_total
    while not predicate(high):
        if high >= cap:
            return None
        high = min(2 * high, cap)
    low = start if high == guess_total else high // 2
    return _first_true(predicate, low, high, guess_total, step=guess_total // 32)


def requests_to_decide(
    canary: Counts,
    baseline: tuple[int, int] | None,
    limit_ratio: float,
    knobs: CanaryKnobs,
) -> int | None:
    """Further requests until ``judge`` decides, if the canary's error ratio r holds from here on.

    The projection follows the counts ``judge`` would see: after N requests, floor(r N) errors for the
    BURNING test and ceil(r N) for the HEALTHY test (their conservative roundings), with the baseline,
    when it matters, held at its current counts. Whole error counts make the tests saw-toothed in N, so
    the search runs over the error count e, at the point of each e's stretch of N where the test is
    easiest to pass (the first N with e errors for BURNING, the last for HEALTHY; within one stretch the
    tests are monotone in N): a single bisection then finds the first N where ``judge`` decides, and one
    request earlier it does not. With no traffic yet there is no ratio; a clean one is projected.
    """
    ratio = canary.error_ratio or 0.0
    start = round_down(canary.total) + 1
    z = NormalDist().inv_cdf(knobs.confidence)
    # Normal approximation: |r - limit| N = z sqrt(N limit (1 - limit)).
    guess = z * z * limit_ratio * (1.0 - limit_ratio) / max((ratio - limit_ratio) ** 2, 1e-300)
    candidates: list[int] = []
    if ratio == 0.0:
        candidates.append(max(start, clean_events_needed(limit_ratio, knobs.confidence, knobs.method)))
    elif ratio < limit_ratio:

        def last_total(e: int) -> int:  # the most requests with ceil(r N) == e
            return max(round_down(e / ratio), start)

        first_errors = round_up(ratio * start)
        found = _first_total(
            lambda e: upper_bound_within(e, last_total(e), limit_ratio, knobs),
            first_errors,
            ratio * guess,
            max(round_down(ratio * MAX_EVENTS_NEEDED), first_errors),
        )
        if found is not None:
            errors = found
            low = start - 1 if errors == first_errors else last_total(errors - 1)
            candidates.append(
                _first_true(
                    lambda n: upper_bound_within(errors, n, limit_ratio, knobs),
                    low,
                    last_total(errors),
                    low + 1,
                )
            )
    baseline_ratio = None if baseline is None else baseline[0] / baseline[1]
    if ratio > limit_ratio and (baseline_ratio is None or ratio > baseline_ratio):
        alpha = 1.0 - knobs.baseline_confidence

        def first_total(e: int) -> int:  # the fewest requests with floor(r N) == e
            return max(round_up(e / ratio), start)

        def burning(e: int) -> bool:
            n = first_total(e)
            if not lower_bound_exceeds(e, n, limit_ratio, knobs):
                return False
            return baseline is None or p_value_worse_than_baseline(e, n, *baseline) < alpha

        first_errors = round_down(ratio * start)
        found = _first_total(
            burning,
            first_errors,
            ratio * guess,
            max(round_down(ratio * MAX_EVENTS_NEEDED), first_errors),
        )
        if found is not None:
            candidates.append(first_total(found))
    if not candidates:
        return None
    return max(math.ceil(min(candidates) - canary.total), 1)
