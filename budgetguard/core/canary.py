"""Canary verdicts with statistical confidence: is this version burning the error budget too fast?

A canary serves a small share of traffic, so its error ratio over a short window rests on few
requests: 1 failure in 10 requests is a 10% ratio, a 100x burn at 99.9%, and proves almost nothing.
Flagger and Argo Rollouts compare that raw ratio with a fixed threshold, and the SRE workbook's 1h/5m
page rule (burn > 14.4 over both windows) does the same; at low traffic all of them roll back on noise
or wait for a fixed number of failed checks (reference ``prometheus-and-burn-math.md`` §3.9, §4). This
module instead asks how sure the counts make us:

* BURNING when the one-sided lower confidence bound on the canary's error ratio is above the ratio a
  ``burn_limit`` burn allows (``burn_limit x budget``, 1.44% for 14.4x at 99.9%), and, when a baseline
  is given, the canary is significantly worse than the baseline (so a degraded service as a whole is
  not blamed on the canary: workbook ch. 16 compares canary with control, not with the past);
* HEALTHY when the one-sided upper bound is at most that ratio;
* INCONCLUSIVE otherwise, with the number of further requests that would decide, assuming the current
  error ratio persists.

The asymmetry is deliberate and bounded. Each single check wrongly calls a canary BURNING with
probability at most ``1 - confidence`` when its true ratio is at or below the limit (Clopper-Pearson
intervals are exact: their coverage is never below nominal), and wrongly calls it HEALTHY with at most
the same probability when its true ratio is above. What is not bounded is the error over *repeated*
checks: a guard that looks every few seconds at a sliding window tests many times, so over a canary's
life the chance of at least one false BURNING grows (how much is measured by ``bench/canary_sim.py``).
That is why the limit is the fast page tier's burn rather than 1x: a healthy canary (burn <= 1) sits
far below it and its per-check false-alarm probability is orders of magnitude below ``1 - confidence``.

Numbers the defaults reproduce (reference §3.9, exact one-sided 95%, objective 99.9%): 207 clean
requests show "below 14.4x", 498 "below 6x", 2,995 "below 1x"; at 100, 1,000 and 10,000 requests, 5, 22
and 165 errors show "above 14.4x".

The statistics are written here in standard-library Python, so the core needs no numpy or scipy:
the regularized incomplete beta function (continued fraction, Numerical Recipes §6.4, with the
prefactor computed from Loader's saddle-point binomial density as R's ``dbinom``/``dhyper`` do, which
keeps full precision at a million events), its inverse by safeguarded Newton, Wilson's score bound
(Newcombe 1998, with the optional continuity correction) and Fisher's exact test. ``tests/test_canary.py``
checks them against scipy to 1e-9.

Pure: no I/O, no clock (time arrives as an argument), no logging; reasons are returned, not logged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from fractions import Fraction
from statistics import NormalDist
from typing import Literal

from budgetguard.core.durations import format_duration
from budgetguard.core.spec import BudgetConsumption, CanaryLatencySpec, CanaryPolicy, seconds_text
from budgetguard.core.verdict import Verdict

Method = Literal["wilson", "exact"]

_LN_2PI = math.log(2.0 * math.pi)
_LN_SQRT_2PI = 0.5 * _LN_2PI
_CF_EPSILON = 1e-15
_CF_TINY = 1e-300
_CF_MAX_ITERATIONS = 1_000_000  # ~sqrt(max(a, b)) are needed; a few hundred at a million events
_NEWTON_MAX_ITERATIONS = 300
# Counts from Prometheus' increase() are floats; 4.999999999999999 errors is 5 errors with rounding noise.
_INTEGER_SLACK = 1e-9
# events_needed gives up beyond this many requests: no canary lives that long, and the answer
# "none in practice" is more useful than a precise astronomical number.
MAX_EVENTS_NEEDED = 10**9


# --- the regularized incomplete beta function ------------------------------------------------------


def _stirling_error(n: float) -> float:
    """log(n!) - log(sqrt(2 pi n) (n/e)^n), the error of Stirling's formula (Loader 2000)."""
    if n <= 15.0:
        return math.lgamma(n + 1.0) - (n + 0.5) * math.log(n) + n - _LN_SQRT_2PI
    s0, s1, s2, s3, s4 = 1 / 12, 1 / 360, 1 / 1260, 1 / 1680, 1 / 1188
    nn = n * n
    if n > 500:
        return (s0 - s1 / nn) / n
    if n > 80:
        return (s0 - (s1 - s2 / nn) / nn) / n
    if n > 35:
        return (s0 - (s1 - (s2 - s3 / nn) / nn) / nn) / n
    return (s0 - (s1 - (s2 - (s3 - s4 / nn) / nn) / nn) / nn) / n


def _deviance(x: float, mean: float) -> float:
    """x log(x / mean) + mean - x, without the cancellation when x is close to mean (Loader's bd0)."""
    if abs(x - mean) < 0.1 * (x + mean):
        v = (x - mean) / (x + mean)
        total = (x - mean) * v
        term = 2.0 * x * v
        v *= v
        for j in range(1, 1000):
            term *= v
            updated = total + term / (2 * j + 1)
            if updated == total:
                return updated
            total = updated
        return total
    return x * math.log(x / mean) + mean - x


def _log_binomial_density(x: float, n: float, p: float, q: float) -> float:
    """log of C(n, x) p^x q^(n-x) for real 0 <= x <= n and q = 1 - p (Loader's dbinom_raw)."""
    if p == 0.0:
        return 0.0 if x == 0 else -math.inf
    if q == 0.0:
        return 0.0 if x == n else -math.inf
    if x == 0:
        if n == 0:
            return 0.0
        return -_deviance(n, n * q) - n * p if p < 0.1 else n * math.log(q)
    if x == n:
        return -_deviance(n, n * p) - n * q if q < 0.1 else n * math.log(p)
    if x < 0 or x > n:
        return -math.inf
    log_c = (
        _stirling_error(n)
        - _stirling_error(x)
        - _stirling_error(n - x)
        - _deviance(x, n * p)
        - _deviance(n - x, n * q)
    )
    return log_c - 0.5 * (_LN_2PI + math.log(x) + math.log1p(-x / n))


def _log_beta_prefactor(a: float, b: float, x: float) -> float:
    """log(x^a (1-x)^b / B(a, b)); equals the binomial density of a in a + b trials times ab/(a+b).

    Loader's form keeps full precision when a and b are large; it needs the expected counts (a+b)x and
    (a+b)(1-x) to be normal floats, so far out in a tail the plain log-gamma form takes over.
    """
    n = a + b
    if min(x, 1.0 - x) * n < 1e-300:
        return a * math.log(x) + b * math.log1p(-x) - _log_beta(a, b)
    return _log_binomial_density(a, n, x, 1.0 - x) + math.log(a) + math.log(b) - math.log(n)


def _lgamma_correction(x: float) -> float:
    """lgamma(x) - ((x - 1/2) log x - x + log sqrt(2 pi)) for x >= 10, from Stirling's series."""
    inverse = 1.0 / x
    square = inverse * inverse
    terms = (1 / 12, -1 / 360, 1 / 1260, -1 / 1680, 1 / 1188, -691 / 360360, 1 / 156)
    total = 0.0
    for coefficient in reversed(terms):
        total = total * square + coefficient
    return total * inverse


def _log_beta(a: float, b: float) -> float:
    """log B(a, b) without the cancellation of lgamma(a) + lgamma(b) - lgamma(a + b) (R's lbeta)."""
    p, q = min(a, b), max(a, b)
    if p >= 10:
        correction = _lgamma_correction(p) + _lgamma_correction(q) - _lgamma_correction(p + q)
        return (
            -0.5 * math.log(q)
            + _LN_SQRT_2PI
            + correction
            + (p - 0.5) * math.log(p / (p + q))
            + q * math.log1p(-p / (p + q))
        )
    if q >= 10:
        correction = _lgamma_correction(q) - _lgamma_correction(p + q)
        return math.lgamma(p) + correction + p - p * math.log(p + q) + (q - 0.5) * math.log1p(-p / (p + q))
    return math.lgamma(p) + math.lgamma(q) - math.lgamma(p + q)


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) by the modified Lentz method (Numerical Recipes §6.4)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) >= _CF_TINY else _CF_TINY)
    h = d
    for m in range(1, _CF_MAX_ITERATIONS + 1):
        m2 = 2 * m
        for numerator in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) >= _CF_TINY else _CF_TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) >= _CF_TINY else _CF_TINY
            step = d * c
            h *= step
        if abs(step - 1.0) < _CF_EPSILON:
            return h
    raise ArithmeticError(f"the incomplete beta continued fraction did not converge for a={a}, b={b}, x={x}")


def _beta_tails(a: float, b: float, x: float) -> tuple[float, float]:
    """(I_x(a, b), 1 - I_x(a, b)), each computed directly where it is the small one."""
    if x <= 0.0:
        return 0.0, 1.0
    if x >= 1.0:
        return 1.0, 0.0
    prefactor = math.exp(_log_beta_prefactor(a, b, x))
    if x < (a + 1.0) / (a + b + 2.0):
        lower = prefactor * _beta_continued_fraction(a, b, x) / a
        return lower, 1.0 - lower
    upper = prefactor * _beta_continued_fraction(b, a, 1.0 - x) / b
    return 1.0 - upper, upper


def _check_shape(a: float, b: float) -> None:
    if not (a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b)):
        raise ValueError(f"the beta shape parameters must be positive and finite, got a={a}, b={b}")


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), the CDF of Beta(a, b) at x."""
    _check_shape(a, b)
    return _beta_tails(a, b, x)[0]


def _beta_quantile(a: float, b: float, tail: float, upper: bool) -> float:
    """The x where the lower tail I_x(a, b) (or, with ``upper``, 1 - I_x) equals ``tail``.

    Safeguarded Newton (Numerical Recipes' rtsafe) on the tail that is being matched, so a tail of 1e-12
    keeps its precision; the step falls back to bisection whenever Newton would leave the bracket.
    """
    if tail <= 0.0:
        return 1.0 if upper else 0.0
    if tail >= 1.0:
        return 0.0 if upper else 1.0
    lo, hi = 0.0, 1.0
    # Start from the normal approximation to Beta(a, b), which Newton polishes in a few steps.
    mean = a / (a + b)
    sd = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1.0)))
    z = NormalDist().inv_cdf(tail)
    x = mean - z * sd if upper else mean + z * sd
    if not 0.0 < x < 1.0:
        x = mean
    for _ in range(_NEWTON_MAX_ITERATIONS):
        below, above = _beta_tails(a, b, x)
        # g(x) increases with x in both cases: the lower tail grows, the upper tail shrinks.
        g = below - tail if not upper else tail - above
        if g == 0.0:
            return x
        if g < 0.0:
            lo = x
        else:
            hi = x
        density = math.exp(_log_beta_prefactor(a, b, x)) / (x * (1.0 - x))
        step = g / density if density > 0.0 else math.inf
        candidate = x - step
        if not lo < candidate < hi:
            candidate = 0.5 * (lo + hi)
        if abs(candidate - x) <= 4e-16 * x or hi - lo <= 4e-16 * hi:
            return candidate
        x = candidate
    return x


def betaincinv(a: float, b: float, q: float) -> float:
    """The inverse of ``betainc`` in x: the q-quantile of Beta(a, b)."""
    _check_shape(a, b)
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be a probability, got {q}")
    if q <= 0.5:
        return _beta_quantile(a, b, q, upper=False)
    return _beta_quantile(a, b, 1.0 - q, upper=True)


# --- bounds on a binomial proportion ---------------------------------------------------------------


def _check_counts(errors: float, total: float) -> None:
    if not (0 <= errors <= total and math.isfinite(total)):
        raise ValueError(f"need 0 <= errors <= total, got {errors} errors in {total}")


def _check_confidence(confidence: float) -> None:
    if not 0.5 <= confidence < 1.0:
        raise ValueError(f"confidence must be in [0.5, 1), got {confidence}")


def clopper_pearson(errors: int, total: int, confidence: float) -> tuple[float, float]:
    """Exact one-sided bounds (Clopper-Pearson 1934): each holds alone with probability >= confidence.

    The lower bound L solves P(X >= errors | L) = 1 - confidence, the upper U solves
    P(X <= errors | U) = 1 - confidence, X ~ Binomial(total, .): the quantiles of
    Beta(errors, total - errors + 1) and Beta(errors + 1, total - errors). No events: (0, 1).
    """
    _check_counts(errors, total)
    _check_confidence(confidence)
    if total == 0:
        return 0.0, 1.0
    alpha = 1.0 - confidence
    log_alpha_per_event = math.log(alpha) / total
    if errors == 0:
        lower = 0.0
    elif errors == total:
        lower = math.exp(log_alpha_per_event)
    else:
        lower = _beta_quantile(errors, total - errors + 1, alpha, upper=False)
    if errors == total:
        upper = 1.0
    elif errors == 0:
        upper = -math.expm1(log_alpha_per_event)
    else:
        upper = _beta_quantile(errors + 1, total - errors, alpha, upper=True)
    return lower, upper


def wilson(errors: float, total: float, confidence: float, continuity: bool = False) -> tuple[float, float]:
    """Wilson score one-sided bounds (Wilson 1927), optionally continuity-corrected (Newcombe 1998).

    Each holds alone at ``confidence``. Coverage is close to nominal on average but dips below it for
    some ratios, most at small counts; the continuity correction makes it more conservative. Real-valued
    counts are accepted. No events: (0, 1).
    """
    _check_counts(errors, total)
    _check_confidence(confidence)
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


def _at_least(errors: float, total: float, ratio: float) -> float:
    """P(X >= errors), X ~ Binomial(total, ratio); real ``errors`` extends it continuously."""
    if errors <= 0:
        return 1.0
    if errors > total:
        return 0.0
    return _beta_tails(errors, total - errors + 1.0, ratio)[0]


def _at_most(errors: float, total: float, ratio: float) -> float:
    """P(X <= errors), X ~ Binomial(total, ratio); real ``errors`` extends it continuously."""
    if errors < 0:
        return 0.0
    if errors >= total:
        return 1.0
    return _beta_tails(errors + 1.0, total - errors, ratio)[1]


# --- canary versus baseline ------------------------------------------------------------------------


def _log_hypergeometric(x: int, successes: int, failures: int, draws: int) -> float:
    """log P(X = x) for X ~ Hypergeometric, as a ratio of binomial densities (Loader; R's dhyper)."""
    population = successes + failures
    p = draws / population
    q = (population - draws) / population
    return (
        _log_binomial_density(x, successes, p, q)
        + _log_binomial_density(draws - x, failures, p, q)
        - _log_binomial_density(draws, population, p, q)
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


# --- the canary judgement --------------------------------------------------------------------------


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
        _check_confidence(self.confidence)
        _check_confidence(self.baseline_confidence)
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


def _round_down(value: float) -> int:
    nearest = round(value)
    return nearest if abs(value - nearest) <= _INTEGER_SLACK * max(1.0, value) else math.floor(value)


def _round_up(value: float) -> int:
    nearest = round(value)
    return nearest if abs(value - nearest) <= _INTEGER_SLACK * max(1.0, value) else math.ceil(value)


def _burning_side(counts: Counts) -> tuple[int, int]:
    """Whole (errors, total) that make a false BURNING least likely: fewer errors, more requests."""
    total = _round_up(counts.total)
    return min(_round_down(counts.errors), total), total


def _healthy_side(counts: Counts) -> tuple[int, int]:
    """Whole (errors, total) that make a false HEALTHY least likely: more errors, fewer requests."""
    total = _round_down(counts.total)
    return min(_round_up(counts.errors), total), total


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


def _method_bounds(errors: int, total: int, knobs: CanaryKnobs) -> tuple[float, float]:
    if knobs.method == "exact":
        return clopper_pearson(errors, total, knobs.confidence)
    return wilson(errors, total, knobs.confidence, knobs.continuity_correction)


def _exceeds(errors: float, total: float, limit_ratio: float, knobs: CanaryKnobs) -> bool:
    """Is the lower bound above ``limit_ratio``? For the exact method, by the equivalent tail test.

    L > limit exactly when P(X >= errors | limit) < 1 - confidence (the tail grows with the ratio and
    equals 1 - confidence at L): one incomplete-beta evaluation instead of a root search.
    """
    if limit_ratio >= 1.0 or total <= 0:
        return False
    if knobs.method == "exact":
        return _at_least(errors, total, limit_ratio) < 1.0 - knobs.confidence
    return wilson(errors, total, knobs.confidence, knobs.continuity_correction)[0] > limit_ratio


def _within(errors: float, total: float, limit_ratio: float, knobs: CanaryKnobs) -> bool:
    """Is the upper bound at most ``limit_ratio``? U <= limit exactly when P(X <= errors | limit) <= alpha."""
    if total <= 0:
        return False
    if limit_ratio >= 1.0:
        return True
    if knobs.method == "exact":
        return _at_most(errors, total, limit_ratio) <= 1.0 - knobs.confidence
    return wilson(errors, total, knobs.confidence, knobs.continuity_correction)[1] <= limit_ratio


def _check_budget(budget: float | Fraction) -> float:
    value = float(budget)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"the error budget must be in (0, 1], got {budget}")
    return value


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
    limit = knobs.burn_limit * _check_budget(budget)
    if total <= 0 or not _exceeds(total, total, limit, knobs):
        return None
    z = NormalDist().inv_cdf(knobs.confidence)
    return _first_true(lambda k: _exceeds(k, total, limit, knobs), 0, total, _normal_guess(total, limit, z))


def healthy_errors(total: int, budget: float | Fraction, knobs: CanaryKnobs) -> int | None:
    """The most errors among ``total`` requests that ``judge`` still calls healthy; ``None`` if not even 0."""
    limit = knobs.burn_limit * _check_budget(budget)
    if not _within(0, total, limit, knobs):
        return None
    if _within(total, total, limit, knobs):
        return total
    z = NormalDist().inv_cdf(knobs.confidence)
    guess = _normal_guess(total, limit, -z)
    return _first_true(lambda k: not _within(k, total, limit, knobs), 0, total, guess) - 1


def clean_events_needed(ratio_limit: float, confidence: float, method: Method = "exact") -> int:
    """The fewest requests that, all clean, show the error ratio is at most ``ratio_limit``.

    Exact: (1 - r)^n <= 1 - confidence, the rule of three's exact form (207 for 1.44% at 95%).
    """
    _check_confidence(confidence)
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
    while estimate > 1 and _within(0, estimate - 1, ratio_limit, knobs):
        estimate -= 1
    while not _within(0, estimate, ratio_limit, knobs):
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


def _events_needed(
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
    start = _round_down(canary.total) + 1
    z = NormalDist().inv_cdf(knobs.confidence)
    # Normal approximation: |r - limit| N = z sqrt(N limit (1 - limit)).
    guess = z * z * limit_ratio * (1.0 - limit_ratio) / max((ratio - limit_ratio) ** 2, 1e-300)
    candidates: list[int] = []
    if ratio == 0.0:
        candidates.append(max(start, clean_events_needed(limit_ratio, knobs.confidence, knobs.method)))
    elif ratio < limit_ratio:

        def last_total(e: int) -> int:  # the most requests with ceil(r N) == e
            return max(_round_down(e / ratio), start)

        first_errors = _round_up(ratio * start)
        found = _first_total(
            lambda e: _within(e, last_total(e), limit_ratio, knobs),
            first_errors,
            ratio * guess,
            max(_round_down(ratio * MAX_EVENTS_NEEDED), first_errors),
        )
        if found is not None:
            errors = found
            low = start - 1 if errors == first_errors else last_total(errors - 1)
            candidates.append(
                _first_true(
                    lambda n: _within(errors, n, limit_ratio, knobs), low, last_total(errors), low + 1
                )
            )
    baseline_ratio = None if baseline is None else baseline[0] / baseline[1]
    if ratio > limit_ratio and (baseline_ratio is None or ratio > baseline_ratio):
        alpha = 1.0 - knobs.baseline_confidence

        def first_total(e: int) -> int:  # the fewest requests with floor(r N) == e
            return max(_round_up(e / ratio), start)

        def burning(e: int) -> bool:
            n = first_total(e)
            if not _exceeds(e, n, limit_ratio, knobs):
                return False
            return baseline is None or p_value_worse_than_baseline(e, n, *baseline) < alpha

        first_errors = _round_down(ratio * start)
        found = _first_total(
            burning,
            first_errors,
            ratio * guess,
            max(_round_down(ratio * MAX_EVENTS_NEEDED), first_errors),
        )
        if found is not None:
            candidates.append(first_total(found))
    if not candidates:
        return None
    return max(math.ceil(min(candidates) - canary.total), 1)


def _pct(ratio: float) -> str:
    return f"{ratio * 100:.3g}%"


def _count(value: float, unit: str) -> str:
    whole = round(value)
    text = f"{whole:,}" if abs(value - whole) <= _INTEGER_SLACK * max(1.0, value) else f"{value:,.10g}"
    return f"{text} {unit}" + ("" if text == "1" else "s")


def _p(value: float) -> str:
    return f"{value:.2g}" if value >= 1e-3 else f"{value:.0e}".replace("e-0", "e-")


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
    budget_ratio = _check_budget(budget)
    limit = knobs.burn_limit * budget_ratio
    confidence = f"{knobs.confidence * 100:g}%"
    allowed = f"the {_pct(limit)} that a {knobs.burn_limit:g}x burn allows"
    min_events = (
        knobs.healthy_min_events
        if knobs.healthy_min_events is not None
        else clean_events_needed(budget_ratio, knobs.confidence, knobs.method)
    )
    burn_k, burn_n = _burning_side(canary)
    healthy_k, healthy_n = _healthy_side(canary)
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
    lower = _method_bounds(burn_k, burn_n, knobs)[0]
    upper = _method_bounds(healthy_k, healthy_n, knobs)[1]
    exceeds, within = lower > limit, upper <= limit

    # Against the baseline: canary rounded towards fewer errors, baseline towards more (no false alarm).
    base_counts: tuple[int, int] | None = None
    p_value = None
    baseline_note = ""
    if baseline is not None and knobs.compare_baseline:
        base_total = _round_down(baseline.total)
        if base_total == 0:
            baseline_note = "; the baseline had no traffic, so the bound alone decides"
        else:
            base_counts = (min(_round_up(baseline.errors), base_total), base_total)
            p_value = p_value_worse_than_baseline(burn_k, burn_n, *base_counts)
    base_ratio = None if baseline is None else baseline.error_ratio
    worse = p_value is None or p_value < 1.0 - knobs.baseline_confidence

    head = f"{name}: {_count(canary.errors, 'error')} in {_count(canary.total, 'request')} ({_pct(ratio)})"
    versus = ""
    if p_value is not None and base_ratio is not None:
        versus = f"the baseline's {_pct(base_ratio)} (p={_p(p_value)})"
    events_needed = None
    healthy_enough = False
    if exceeds and worse:
        verdict = Verdict.BURNING
        reason = f"{head}; with {confidence} confidence at least {_pct(lower)}, above {allowed}"
        reason += f"; and worse than {versus}" if versus else baseline_note
    elif within:
        verdict = Verdict.HEALTHY
        reason = f"{head}; with {confidence} confidence at most {_pct(upper)}, within {allowed}"
        healthy_enough = healthy_n >= min_events
        if healthy_enough:
            reason += f"; enough requests to promote ({math.ceil(min_events):,} needed)"
        else:
            reason += f"; {healthy_n:,} of the {math.ceil(min_events):,} requests a promotion needs"
    else:
        verdict = Verdict.INCONCLUSIVE
        events_needed = _events_needed(canary, base_counts, limit, knobs)
        if exceeds:
            reason = (
                f"{head}; with {confidence} confidence at least {_pct(lower)}, above {allowed}, but not "
                f"significantly worse than {versus}, which would need p<{_p(1.0 - knobs.baseline_confidence)}"
                ": the service as a whole is degraded, not just this version"
            )
        else:
            reason = (
                f"{head}; with {confidence} confidence between {_pct(lower)} and {_pct(upper)}, "
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


# --- the latency guard: a quantile above a threshold is a share of slow requests ---------------------


def format_held(held: timedelta) -> str:
    """How long a breach has lasted, to the second (evaluation timestamps carry microseconds)."""
    return format_duration(timedelta(seconds=round(held.total_seconds())))


@dataclass(frozen=True)
class LatencyCheck:
    """One version's latency against ``canary.latency``, at one evaluation.

    "p99 above 500ms" is "more than 1% of requests slower than 500ms": ``slow`` requests (``_count``
    minus the bucket at the threshold) among all, judged by ``judge`` against the limit 1 - quantile
    with the same confidence bounds and baseline test as an error ratio. BURNING here is evidence of
    a breach now; the guard acts only once it has lasted ``hold`` (``Streak.advance_latency``).
    Ratios are shares of requests; ``slow`` is None when the version's histogram has no bucket at
    the threshold.
    """

    verdict: Verdict
    headline: str  # "p99 latency of version=v2 above 500ms"
    evidence: str  # "4.1% of 820 requests in the last 1m slower than 500ms, at least 2.3% ..."
    window: timedelta
    hold: timedelta
    quantile: float
    threshold_seconds: float
    slow: Counts | None
    baseline: Counts | None
    slow_ratio: float | None
    lower_bound: float
    upper_bound: float
    limit_ratio: float  # 1 - quantile
    p_value_vs_baseline: float | None
    baseline_slow_ratio: float | None
    events_needed: int | None
    healthy_enough: bool

    @property
    def reason(self) -> str:
        return f"{self.headline}: {self.evidence}"

    def held_reason(self, held: timedelta) -> str:
        """The reason once the breach has lasted ``held``: the article's "above 500ms for 2m"."""
        return f"{self.headline} for {format_held(held)}: {self.evidence}"


def judge_latency(
    slow: Counts | None,
    baseline: Counts | None,
    guard: CanaryLatencySpec,
    knobs: CanaryKnobs,
    *,
    name: str = "canary",
) -> LatencyCheck:
    """Judge one version's share of requests slower than ``guard.threshold_seconds`` over its window.

    ``judge`` decides, with 1 - quantile as the "budget" and a 1x limit, so the significance, the
    baseline comparison and the requests still needed are exactly those of an error ratio.
    """
    limit = guard.slow_ratio_limit
    p, threshold = guard.quantile_name, seconds_text(guard.threshold_seconds)
    subject = f"{p} latency of {name}"
    window = format_duration(guard.measured_over)
    confidence = f"{knobs.confidence * 100:g}%"
    allows = f"({p} allows {_pct(limit)})"
    j = None if slow is None else judge(slow, baseline, limit, replace(knobs, burn_limit=1.0), name=subject)
    if slow is None or j is None:
        headline = f"{subject} not judged"
        evidence = (
            f"its requests have no {guard.metric}_bucket series at le={guard.threshold_seconds:g}; "
            "threshold_seconds must be one of its histogram's bucket boundaries"
        )
    elif _healthy_side(slow)[1] == 0:
        headline = f"{subject} not judged"
        evidence = (
            f"no requests in the last {window}; {j.events_needed or 0:,} requests all faster than "
            f"{threshold} would show with {confidence} confidence that its {p} stays within it"
        )
    else:
        measured = (
            f"{_pct(j.error_ratio or 0.0)} of {_count(slow.total, 'request')} in the last {window} "
            f"slower than {threshold}"
        )
        versus = ""
        if j.p_value_vs_baseline is not None and j.baseline_error_ratio is not None:
            versus = f"the baseline's {_pct(j.baseline_error_ratio)} (p={_p(j.p_value_vs_baseline)})"
        if j.verdict is Verdict.BURNING:
            headline = f"{subject} above {threshold}"
            evidence = f"{measured}, at least {_pct(j.lower_bound)} with {confidence} confidence {allows}"
            if versus:
                evidence += f"; and worse than {versus}"
            elif baseline is not None and knobs.compare_baseline:
                evidence += "; the baseline had no traffic, so the bound alone decides"
        elif j.verdict is Verdict.HEALTHY:
            headline = f"{subject} within {threshold}"
            evidence = f"{measured}, at most {_pct(j.upper_bound)} with {confidence} confidence {allows}"
        elif j.lower_bound > limit:
            headline = f"{subject} above {threshold}, but so is the baseline's"
            evidence = (
                f"{measured}, at least {_pct(j.lower_bound)} with {confidence} confidence {allows}, but not "
                f"significantly worse than {versus}: the service as a whole is slow, not just this version"
            )
        else:
            headline = f"{subject} undecided against {threshold}"
            evidence = (
                f"{measured}, between {_pct(j.lower_bound)} and {_pct(j.upper_bound)} with {confidence} "
                f"confidence, which includes the {_pct(limit)} {p} allows"
            )
            if j.events_needed is None:
                evidence += "; no amount of traffic at this share would decide"
            else:
                evidence += f"; about {_count(j.events_needed, 'more request')} at this share would decide"
    return LatencyCheck(
        verdict=Verdict.INCONCLUSIVE if j is None else j.verdict,
        headline=headline,
        evidence=evidence,
        window=guard.measured_over,
        hold=guard.hold,
        quantile=guard.quantile,
        threshold_seconds=guard.threshold_seconds,
        slow=slow,
        baseline=baseline,
        slow_ratio=None if j is None else j.error_ratio,
        lower_bound=0.0 if j is None else j.lower_bound,
        upper_bound=1.0 if j is None else j.upper_bound,
        limit_ratio=limit,
        p_value_vs_baseline=None if j is None else j.p_value_vs_baseline,
        baseline_slow_ratio=None if j is None else j.baseline_error_ratio,
        events_needed=None if j is None else j.events_needed,
        healthy_enough=j is not None and j.healthy_enough,
    )


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


# --- every version of one SLO ----------------------------------------------------------------------


@dataclass(frozen=True)
class CanaryWindow:
    window: timedelta
    canary: Counts
    baseline: Counts | None
    judgement: CanaryJudgement


@dataclass(frozen=True)
class CanaryEvaluation:
    """One canary version of one SLO at one evaluation: the verdict across its windows.

    BURNING when any window is burning; HEALTHY when the longest window is healthy and none burns;
    INCONCLUSIVE otherwise. ``judgement`` is the deciding window's: the burning window with the highest
    lower bound, or else the longest window. With several windows each is tested at the confidence
    split between them (Bonferroni), so the chance that one check wrongly calls a canary BURNING stays
    at most ``1 - confidence`` whatever the number of windows.

    With a latency guard (``latency``) the verdict covers both checks: HEALTHY needs both healthy, and
    a latency breach makes the version BURNING only when the guard acts at once (``for`` 0); a breach
    that must last first leaves it INCONCLUSIVE (not promoted, not yet halted) until the guard's
    clock opens an incident. ``judgement`` and ``windows`` stay the error ratio's.
    """

    label: str
    value: str
    baseline: str | None
    verdict: Verdict
    reason: str
    window: timedelta
    judgement: CanaryJudgement
    windows: tuple[CanaryWindow, ...]
    latency: LatencyCheck | None = None

    @property
    def healthy_enough(self) -> bool:
        latency_ok = self.latency is None or self.latency.healthy_enough
        return self.verdict is Verdict.HEALTHY and self.judgement.healthy_enough and latency_ok


def knobs_for(policy: CanaryPolicy, windows: int = 1) -> CanaryKnobs:
    """The knobs of a declared canary block, with the confidence split between ``windows`` tests."""
    return CanaryKnobs(
        burn_limit=policy.burn_limit,
        confidence=1.0 - (1.0 - policy.confidence) / max(windows, 1),
        method=policy.method,
        compare_baseline=policy.compare_baseline,
        baseline_confidence=policy.baseline_confidence,
        streak=policy.streak,
        cooldown=policy.cooldown,
        healthy_min_events=policy.promote_min_events,
    )


def pick_baseline(policy: CanaryPolicy, traffic: Mapping[str, float]) -> str | None:
    """The declared baseline, or the version with most requests over the baseline window (ties: by name).

    A shadow has none: its SLI counts only the shadowed versions, each compared with the primary already.
    """
    if policy.baseline is not None or policy.shadow:
        return policy.baseline
    busy = [(total, value) for value, total in traffic.items() if total > 0]
    if not busy:
        return None
    return min(busy, key=lambda pair: (-pair[0], pair[1]))[1]


def judge_versions(
    policy: CanaryPolicy,
    budget: float | Fraction,
    counts: Mapping[timedelta, Mapping[str, Counts]],
    traffic: Mapping[str, float],
    latency: Mapping[str, Counts | None] | None = None,
) -> tuple[CanaryEvaluation, ...]:
    """Judge every version seen in the canary windows except the baseline.

    ``counts`` holds each canary window's per-version counts; ``traffic`` each version's requests over
    the baseline window. A version present in no canary window is not judged (it is gone). With a
    latency guard, ``latency`` holds each version's slow requests among all over the guard's window
    (None: its histogram has no bucket at the threshold); it is required then.
    """
    if policy.latency is not None and latency is None:
        raise ValueError("the canary block has a latency guard: pass each version's slow and total requests")
    baseline = pick_baseline(policy, traffic)
    knobs = knobs_for(policy, len(policy.windows))
    seen_values = {value for window in policy.windows for value in counts.get(window, {})}
    seen = sorted((seen_values | set(latency or {})) - {baseline})
    out = []
    for value in seen:
        results = []
        for window in policy.windows:
            per_version = counts.get(window, {})
            mine = per_version.get(value, Counts(0.0, 0.0))
            theirs = None if baseline is None else per_version.get(baseline)
            name = f"{policy.label}={value} over {format_duration(window)}"
            results.append(CanaryWindow(window, mine, theirs, judge(mine, theirs, budget, knobs, name=name)))
        burning = [r for r in results if r.judgement.verdict is Verdict.BURNING]
        longest = results[-1]
        if burning:
            decider = max(burning, key=lambda r: (r.judgement.burn_lower, -r.window.total_seconds()))
            verdict = Verdict.BURNING
        else:
            decider = longest
            healthy = longest.judgement.verdict is Verdict.HEALTHY
            verdict = Verdict.HEALTHY if healthy else Verdict.INCONCLUSIVE
        reason = decider.judgement.reason
        if policy.budget_consumed is not None:
            who = f"{policy.label}={value}"
            reason = _consumption_reason(policy.budget_consumed, decider.judgement, knobs, who, reason)
        if baseline is None and policy.compare_baseline:
            reason += "; no baseline version with traffic to compare with"
        check = None
        if policy.latency is not None and latency is not None:
            theirs = None if baseline is None else latency.get(baseline)
            check = judge_latency(
                latency.get(value, Counts(0.0, 0.0)),
                theirs,
                policy.latency,
                knobs_for(policy),
                name=f"{policy.label}={value}",
            )
            verdict, reason = _with_latency(verdict, reason, check)
        out.append(
            CanaryEvaluation(
                label=policy.label,
                value=value,
                baseline=baseline,
                verdict=verdict,
                reason=reason,
                window=decider.window,
                judgement=decider.judgement,
                windows=tuple(results),
                latency=check,
            )
        )
    return tuple(out)


def _with_latency(verdict: Verdict, reason: str, check: LatencyCheck) -> tuple[Verdict, str]:
    """One version's verdict over both checks; the reason of whichever decides (both when healthy)."""
    if verdict is Verdict.BURNING:
        return verdict, reason
    if check.verdict is Verdict.BURNING:
        if check.hold <= timedelta(0):
            return Verdict.BURNING, check.reason
        return (
            Verdict.INCONCLUSIVE,
            f"{check.reason}; acting once it has lasted {format_duration(check.hold)}",
        )
    if verdict is Verdict.HEALTHY and check.verdict is Verdict.HEALTHY:
        return Verdict.HEALTHY, f"{reason}; {check.reason}"
    undecided = [r for v, r in ((verdict, reason), (check.verdict, check.reason)) if v is not Verdict.HEALTHY]
    return Verdict.INCONCLUSIVE, "; ".join(undecided)


def _consumption_reason(
    rule: BudgetConsumption, judgement: CanaryJudgement, knobs: CanaryKnobs, who: str, reason: str
) -> str:
    """The reason in ``budget_consumed``'s terms: the share of the period's budget the version's error
    ratio consumes within the lookback, against the share allowed (its own requests, as if it took all
    traffic, like every canary burn rate)."""
    if judgement.burn_rate is None:
        return reason
    confidence = f"{knobs.confidence * 100:g}%"
    period, within = format_duration(rule.period), format_duration(rule.within)
    head = f"{who} consumed {_pct(rule.consumed(judgement.burn_rate))} of the {period} budget in {within}"
    allowed = f"the {_pct(rule.fraction)} allowed"
    lower, upper = _pct(rule.consumed(judgement.burn_lower)), _pct(rule.consumed(judgement.burn_upper))
    if judgement.verdict is Verdict.BURNING:
        head += f" (at least {lower} with {confidence} confidence), above {allowed}"
    elif judgement.verdict is Verdict.HEALTHY:
        head += f" (at most {upper} with {confidence} confidence), within {allowed}"
    else:
        head += f" (between {lower} and {upper} with {confidence} confidence), undecided against {allowed}"
    return f"{head}: {reason.removeprefix(f'{who} over {within}: ')}"
