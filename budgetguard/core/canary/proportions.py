"""Bounds on a binomial proportion and the one-sided test of a canary against its baseline.

Clopper-Pearson's exact bounds, Wilson's score bounds (Newcombe 1998, with the optional continuity
correction), and Fisher's exact test, each one-sided: the judge asks "at least" and "at most"
separately. Counts in, probabilities out; what a ratio means for a canary lives in ``knobs`` and
``judgement``.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Literal

from budgetguard.core.canary.beta import beta_quantile, beta_tails, log_binomial_density

Method = Literal["wilson", "exact"]


# --- bounds on a binomial proportion ---------------------------------------------------------------


def _check_counts(errors: float, total: float) -> None:
    if not (0 <= errors <= total and math.isfinite(total)):
        raise ValueError(f"need 0 <= errors <= total, got {errors} errors in {total}")


def check_confidence(confidence: float) -> None:
    if not 0.5 <= confidence < 1.0:
        raise ValueError(f"confidence must be in [0.5, 1), got {confidence}")


def clopper_pearson(errors: int, total: int, confidence: float) -> tuple[float, float]:
    """Exact one-sided bounds (Clopper-Pearson 1934): each holds alone with probability >= confidence.

    The lower bound L solves P(X >= errors | L) = 1 - confidence, the upper U solves
    P(X <= errors | U) = 1 - confidence, X ~ Binomial(total, .): the quantiles of
    Beta(errors, total - errors + 1) and Beta(errors + 1, total - errors). No events: (0, 1).
    """
    _check_counts(errors, total)
    check_confidence(confidence)
    if total == 0:
        return 0.0, 1.0
    alpha = 1.0 - confidence
    log_alpha_per_event = math.log(alpha) / total
    if errors == 0:
        lower = 0.0
    elif errors == total:
        lower = math.exp(log_alpha_per_event)
    else:
        lower = beta_quantile(errors, total - errors + 1, alpha, upper=False)
    if errors == total:
        upper = 1.0
    elif errors == 0:
        upper = -math.expm1(log_alpha_per_event)
    else:
        upper = beta_quantile(errors + 1, total - errors, alpha, upper=True)
    return lower, upper


def wilson(errors: float, total: float, confidence: float, continuity: bool = False) -> tuple[float, float]:
    """Wilson score one-sided bounds (Wilson 1927), optionally continuity-corrected (Newcombe 1998).

    Each holds alone at ``confidence``. Coverage is close to nominal on average but dips below it for
    some ratios, most at small counts; the continuity correction makes it more conservative. Real-valued
    counts are accepted. No events: (0, 1).
    """
    _check_counts(errors, total)
    check_confidence(confidence)
    if total == 0:
        return 0.0, 1.0
    n = total
    p = errors / n
    q = 1.0 - p
    z = NormalDist().inv_cdf(confidence)
    denominator = 2.0 * (n + z * z)
    center = (2.0 * n * p + z * z) / denominator
    if continuity:
        if errors == 0:
            lower = 0.0
        else:
            spread = z * math.sqrt(max(z * z - 2.0 - 1.0 / n + 4.0 * p * (n * q + 1.0), 0.0))
            lower = center - (1.0 + spread) / denominator
        if errors == total:
            upper = 1.0
        else:
            spread = z * math.sqrt(max(z * z + 2.0 - 1.0 / n + 4.0 * p * (n * q - 1.0), 0.0))
            upper = center + (1.0 + spread) / denominator
    else:
        delta = z / denominator * math.sqrt(4.0 * n * p * q + z * z)
        lower = 0.0 if errors == 0 else center - delta
        upper = 1.0 if errors == total else center + delta
    return min(max(lower, 0.0), 1.0), min(max(upper, 0.0), 1.0)


def proportion_bounds(
    errors: int, total: int, confidence: float, method: Method = "exact", continuity: bool = False
) -> tuple[float, float]:
    """One-sided lower and upper bounds on an error ratio by ``method``; see the two functions above."""
    if method == "exact":
        return clopper_pearson(errors, total, confidence)
    if method == "wilson":
        return wilson(errors, total, confidence, continuity)
    raise ValueError(f"unknown method {method!r}: use 'exact' or 'wilson'")


def at_least(errors: float, total: float, ratio: float) -> float:
    """P(X >= errors), X ~ Binomial(total, ratio); real ``errors`` extends it continuously."""
    if errors <= 0:
        return 1.0
    if errors > total:
        return 0.0
    return beta_tails(errors, total - errors + 1.0, ratio)[0]


def at_most(errors: float, total: float, ratio: float) -> float:
    """P(X <= errors), X ~ Binomial(total, ratio); real ``errors`` extends it continuously."""
    if errors < 0:
        return 0.0
    if errors >= total:
        return 1.0
    return beta_tails(errors + 1.0, total - errors, ratio)[1]


# --- canary versus baseline ------------------------------------------------------------------------


def _log_hypergeometric(x: int, successes: int, failures: int, draws: int) -> float:
    """log P(X = x) for X ~ Hypergeometric, as a ratio of binomial densities (Loader; R's dhyper)."""
    population = successes + failures
    p = draws / population
    q = (population - draws) / population
    return (
        log_binomial_density(x, successes, p, q)
        + log_binomial_density(draws - x, failures, p, q)
        - log_binomial_density(draws, population, p, q)
    )


def p_value_worse_than_baseline(
    canary_errors: int, canary_total: int, baseline_errors: int, baseline_total: int
) -> float:
    """One-sided Fisher exact test: how likely a canary error count this high is if both are alike.

    Conditions on the total errors and both request counts; the canary's errors are then
    hypergeometric, and the p-value is P(X >= canary_errors) (scipy's
    ``fisher_exact(..., alternative="greater")``). Exact at any count, including zero baseline errors
    where a z-test divides by nothing, and never anti-conservative; the price is a little power at
    small counts, which here errs towards not rolling back.
    """
    _check_counts(canary_errors, canary_total)
    _check_counts(baseline_errors, baseline_total)
    population = canary_total + baseline_total
    errors = canary_errors + baseline_errors
    first = max(0, canary_total - (population - errors))
    last = min(errors, canary_total)
    if canary_errors <= first:
        return 1.0
    successes, failures, draws = errors, population - errors, canary_total

    def ratio_up(x: int) -> float:  # P(x + 1) / P(x)
        return (successes - x) * (draws - x) / ((x + 1) * (failures - draws + x + 1))

    mode = (draws + 1) * (errors + 1) // (population + 2)
    if canary_errors > mode:
        # Sum the upper tail outward from the observed count: the terms only shrink.
        term = math.exp(_log_hypergeometric(canary_errors, successes, failures, draws))
        total = 0.0
        for x in range(canary_errors, last + 1):
            total += term
            if term <= total * 1e-17:
                break
            term *= ratio_up(x)
        return min(total, 1.0)
    # The observed count is at or below the mode: sum the small lower tail and take the complement.
    term = math.exp(_log_hypergeometric(canary_errors - 1, successes, failures, draws))
    total = 0.0
    for x in range(canary_errors - 1, first - 1, -1):
        total += term
        if term <= total * 1e-17 or x == first:
            break
        term /= ratio_up(x - 1)
    return min(max(1.0 - total, 0.0), 1.0)
