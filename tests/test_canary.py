"""Canary verdicts: exact statistics, the reference's numbers, the rules' properties, streaks and cooldowns.

scipy is the independent oracle here (tests only; the package computes everything in pure Python).
A note on the oracle: ``binomtest(...).proportion_ci`` finds its exact bounds with ``brentq`` at an
absolute tolerance of about 2e-12, so for bounds near 1e-7 it is only good to a few parts in 1e5;
the comparison with it is absolute (1e-9), and the relative one (1e-9) is against ``beta.ppf``,
the closed form of the same bound.
"""

from __future__ import annotations

import ast
import math
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from scipy import special
from scipy.stats import beta, binom, binomtest, fisher_exact

from budgetguard.core import canary
from budgetguard.core.canary import (
    CanaryJudgement,
    CanaryKnobs,
    Counts,
    Streak,
    burning_errors,
    clean_events_needed,
    clopper_pearson,
    healthy_errors,
    judge,
    p_value_worse_than_baseline,
    wilson,
)
from budgetguard.core.verdict import Verdict

BUDGET = Fraction(1, 1000)  # objective 99.9%
KNOBS = CanaryKnobs(burn_limit=14.4)
WILSON = CanaryKnobs(burn_limit=14.4, method="wilson")
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
S = timedelta(seconds=1)

RANK = {Verdict.HEALTHY: 0, Verdict.INCONCLUSIVE: 1, Verdict.BURNING: 2}


def scipy_exact(k: int, n: int, confidence: float) -> tuple[float, float]:
    low = binomtest(k, n, alternative="greater").proportion_ci(confidence, method="exact").low
    high = binomtest(k, n, alternative="less").proportion_ci(confidence, method="exact").high
    return float(low), float(high)


def beta_exact(k: int, n: int, confidence: float) -> tuple[float, float]:
    alpha = 1 - confidence
    low = 0.0 if k == 0 else float(beta.ppf(alpha, k, n - k + 1))
    high = 1.0 if k == n else float(beta.isf(alpha, k + 1, n - k))
    return low, high


# --- the statistics against scipy ------------------------------------------------------------------

BOUND_CASES = [
    pytest.param(0, 1, 0.95, id="one clean request"),
    pytest.param(1, 1, 0.95, id="one failed request"),
    pytest.param(0, 207, 0.95, id="207 clean requests, the reference's 14.4x figure"),
    pytest.param(5, 100, 0.95, id="5 errors in 100"),
    pytest.param(12, 60, 0.95, id="12 errors in 60"),
    pytest.param(165, 10_000, 0.95, id="165 errors in 10,000"),
    pytest.param(1, 1_000_000, 0.95, id="one error in a million"),
    pytest.param(0, 1_000_000, 0.999, id="a clean million at 99.9%"),
    pytest.param(500_000, 1_000_000, 0.99, id="half of a million at 99%"),
    pytest.param(999_999, 1_000_000, 0.95, id="all but one of a million"),
    pytest.param(3, 7, 0.5, id="confidence 0.5 gives the median-unbiased pair"),
]


@pytest.mark.parametrize(("k", "n", "confidence"), BOUND_CASES)
def test_clopper_pearson_equals_scipy(k: int, n: int, confidence: float) -> None:
    ours = clopper_pearson(k, n, confidence)
    for mine, reference in zip(ours, beta_exact(k, n, confidence), strict=True):
        assert mine == pytest.approx(reference, rel=1e-9, abs=1e-300)
    for mine, reference in zip(ours, scipy_exact(k, n, confidence), strict=True):
        assert mine == pytest.approx(reference, abs=1e-9)


@pytest.mark.parametrize(("k", "n", "confidence"), BOUND_CASES)
@pytest.mark.parametrize("continuity", [False, True], ids=["plain Wilson", "continuity-corrected Wilson"])
def test_wilson_equals_scipy(k: int, n: int, confidence: float, continuity: bool) -> None:
    method = "wilsoncc" if continuity else "wilson"
    low = binomtest(k, n, alternative="greater").proportion_ci(confidence, method=method).low
    high = binomtest(k, n, alternative="less").proportion_ci(confidence, method=method).high
    ours = wilson(k, n, confidence, continuity)
    assert ours[0] == pytest.approx(min(max(low, 0.0), 1.0), rel=1e-9, abs=1e-15)
    assert ours[1] == pytest.approx(min(max(high, 0.0), 1.0), rel=1e-9, abs=1e-15)


@st.composite
def counts_up_to_a_million(draw: st.DrawFn) -> tuple[int, int]:
    n = draw(st.one_of(st.integers(1, 100), st.integers(1, 1_000_000)))
    k = draw(st.one_of(st.integers(0, n), st.integers(0, min(n, 50)), st.integers(max(0, n - 5), n)))
    return k, n


@settings(max_examples=150, deadline=None)
@given(counts_up_to_a_million(), st.sampled_from([0.5, 0.8, 0.9, 0.95, 0.99, 0.999]))
def test_clopper_pearson_matches_scipy_up_to_a_million_events(
    case: tuple[int, int], confidence: float
) -> None:
    k, n = case
    ours = clopper_pearson(k, n, confidence)
    for mine, reference in zip(ours, beta_exact(k, n, confidence), strict=True):
        assert mine == pytest.approx(reference, rel=1e-9, abs=1e-300)
    for mine, reference in zip(ours, scipy_exact(k, n, confidence), strict=True):
        assert mine == pytest.approx(reference, abs=1e-9)
    assert ours[0] <= k / n <= ours[1]


@settings(max_examples=150, deadline=None)
@given(counts_up_to_a_million(), st.sampled_from([0.8, 0.95, 0.99]), st.booleans())
def test_wilson_matches_scipy_up_to_a_million_events(
    case: tuple[int, int], confidence: float, continuity: bool
) -> None:
    k, n = case
    method = "wilsoncc" if continuity else "wilson"
    low = binomtest(k, n, alternative="greater").proportion_ci(confidence, method=method).low
    high = binomtest(k, n, alternative="less").proportion_ci(confidence, method=method).high
    ours = wilson(k, n, confidence, continuity)
    assert ours[0] == pytest.approx(min(max(low, 0.0), 1.0), rel=1e-9, abs=1e-15)
    assert ours[1] == pytest.approx(min(max(high, 0.0), 1.0), rel=1e-9, abs=1e-15)


@settings(max_examples=300, deadline=None)
@given(
    st.floats(0.1, 1e6),
    st.floats(0.1, 1e6),
    # Normal floats only: at a subnormal x scipy itself loses digits (at x=5e-324, a=b=0.25 it is 1%
    # below x^a / (a B(a, b)), the leading term, while betainc here matches it).
    st.one_of(st.just(0.0), st.floats(1e-300, 1.0)),
)
# scipy's inverse misses here (its quantile gives betainc - x = -1.2e-8; ours +1.4e-12).
@example(1000.0, 836603.0, 0.625)
def test_betainc_and_its_inverse_match_scipy(a: float, b: float, x: float) -> None:
    expected = float(special.betainc(a, b, x))
    assert canary.betainc(a, b, x) == pytest.approx(expected, rel=1e-9, abs=1e-280)
    assume(1e-12 < x < 1 - 1e-12)
    ours, theirs = canary.betaincinv(a, b, x), float(special.betaincinv(a, b, x))
    if ours != pytest.approx(theirs, rel=1e-9):
        # Where the two quantiles differ, scipy's own forward function is the judge: ours must solve
        # betainc(a, b, q) = x at least as well as scipy's inverse does.
        assert abs(special.betainc(a, b, ours) - x) <= abs(special.betainc(a, b, theirs) - x)


FISHER_CASES = [
    pytest.param(12, 60, 100, 100_000, id="a bad canary against a clean baseline"),
    pytest.param(0, 10, 0, 10, id="no errors anywhere"),
    pytest.param(1, 1, 0, 1_000, id="one failed request against a clean baseline"),
    pytest.param(30, 1_000, 2_900, 100_000, id="canary and baseline both at 3%"),
    pytest.param(3, 5, 2, 5, id="tiny samples"),
    pytest.param(5, 5, 0, 0, id="no baseline traffic"),
    pytest.param(1_000, 30_000, 30_000, 1_000_000, id="large counts"),
    pytest.param(0, 300, 5, 1_000, id="clean canary"),
]


@pytest.mark.parametrize(("k1", "n1", "k2", "n2"), FISHER_CASES)
def test_baseline_p_value_equals_scipys_one_sided_fisher(k1: int, n1: int, k2: int, n2: int) -> None:
    expected = fisher_exact([[k1, n1 - k1], [k2, n2 - k2]], alternative="greater").pvalue
    assert p_value_worse_than_baseline(k1, n1, k2, n2) == pytest.approx(expected, rel=1e-9, abs=1e-15)


@st.composite
def two_samples(draw: st.DrawFn) -> tuple[int, int, int, int]:
    n1 = draw(st.integers(1, 20_000))
    n2 = draw(st.integers(0, 200_000))
    k1 = draw(st.integers(0, min(n1, 600)))
    k2 = draw(st.integers(0, min(n2, 6_000)))
    return k1, n1, k2, n2


@settings(max_examples=200, deadline=None)
@given(two_samples())
def test_baseline_p_value_matches_scipy_on_random_tables(case: tuple[int, int, int, int]) -> None:
    k1, n1, k2, n2 = case
    expected = fisher_exact([[k1, n1 - k1], [k2, n2 - k2]], alternative="greater").pvalue
    assert p_value_worse_than_baseline(k1, n1, k2, n2) == pytest.approx(expected, rel=1e-9, abs=1e-14)


# --- the reference's numbers (prometheus-and-burn-math.md §3.9) ------------------------------------


@pytest.mark.parametrize(
    ("burn", "requests"),
    [
        pytest.param(14.4, 207, id="207 clean requests show below 14.4x at 99.9%"),
        pytest.param(6.0, 498, id="498 clean requests show below 6x"),
        pytest.param(1.0, 2_995, id="2,995 clean requests show below 1x"),
    ],
)
def test_clean_requests_needed_to_call_a_canary_healthy(burn: float, requests: int) -> None:
    knobs = CanaryKnobs(burn_limit=burn)
    assert clean_events_needed(burn * float(BUDGET), 0.95) == requests
    assert judge(Counts(0, requests), None, BUDGET, knobs).verdict is Verdict.HEALTHY
    short = judge(Counts(0, requests - 1), None, BUDGET, knobs)
    assert short.verdict is Verdict.INCONCLUSIVE
    assert short.events_needed == 1
    assert healthy_errors(requests - 1, BUDGET, knobs) is None
    assert healthy_errors(requests, BUDGET, knobs) == 0


@pytest.mark.parametrize(
    ("requests", "errors"),
    [
        pytest.param(100, 5, id="5 errors in 100 requests show above 14.4x"),
        pytest.param(1_000, 22, id="22 errors in 1,000 requests show above 14.4x"),
        pytest.param(10_000, 165, id="165 errors in 10,000 requests show above 14.4x"),
    ],
)
def test_errors_needed_to_call_a_canary_burning(requests: int, errors: int) -> None:
    assert burning_errors(requests, BUDGET, KNOBS) == errors
    assert judge(Counts(errors, requests), None, BUDGET, KNOBS).verdict is Verdict.BURNING
    assert judge(Counts(errors - 1, requests), None, BUDGET, KNOBS).verdict is Verdict.INCONCLUSIVE


def test_no_traffic_is_inconclusive_and_names_the_207_clean_requests_that_would_decide() -> None:
    verdict = judge(Counts(0, 0), None, BUDGET, KNOBS, name="canary v2")
    assert verdict.verdict is Verdict.INCONCLUSIVE
    assert (verdict.error_ratio, verdict.burn_rate) == (None, None)
    assert (verdict.lower_bound, verdict.upper_bound) == (0.0, 1.0)
    assert verdict.events_needed == 207
    assert verdict.reason.startswith("canary v2: no requests in the window")


@pytest.mark.parametrize("seen", [0, 1, 50, 206])
def test_clean_canary_needs_the_rest_of_the_207_requests(seen: int) -> None:
    assert judge(Counts(0, seen), None, BUDGET, KNOBS).events_needed == 207 - seen


def projected(errors: int, total: int, later: int) -> Counts:
    """The counts judge would see after ``later`` requests at the ratio errors/total, rounded as it rounds:
    errors down when the ratio is above the limit (the BURNING test), up when below (the HEALTHY test)."""
    ratio = Fraction(errors, total)
    above = ratio > Fraction(144, 10_000)
    return Counts(math.floor(ratio * later) if above else math.ceil(ratio * later), later)


EVENTS_NEEDED_CASES = [
    pytest.param(1, 50, None, id="2% over 50 requests: a burning ratio, not yet enough events"),
    pytest.param(20, 1_000, None, id="2% over 1,000 requests"),
    pytest.param(15, 1_000, None, id="1.5%, just above the limit: many more requests"),
    pytest.param(14, 1_000, None, id="1.4%, just below the limit: many more requests to call it healthy"),
    pytest.param(3, 200, None, id="1.5% over 200 requests"),
    pytest.param(1, 150, None, id="0.67% over 150 requests, on its way to healthy"),
    pytest.param(4, 100, Counts(20, 1_000), id="4% against a 2% baseline: significance takes longer"),
    pytest.param(30, 1_000, Counts(2_900, 100_000), id="3% against a 2.9% baseline: very much longer"),
]


@pytest.mark.parametrize(("errors", "total", "baseline"), EVENTS_NEEDED_CASES)
def test_events_needed_is_the_first_point_where_judge_decides_at_the_current_ratio(
    errors: int, total: int, baseline: Counts | None
) -> None:
    verdict = judge(Counts(errors, total), baseline, BUDGET, KNOBS)
    assert verdict.verdict is Verdict.INCONCLUSIVE
    assert verdict.events_needed is not None
    later = total + verdict.events_needed
    decided = judge(projected(errors, total, later), baseline, BUDGET, KNOBS)
    assert decided.verdict is not Verdict.INCONCLUSIVE
    one_fewer = judge(projected(errors, total, later - 1), baseline, BUDGET, KNOBS)
    assert one_fewer.verdict is Verdict.INCONCLUSIVE
    # and scipy agrees that the bound has crossed the limit there
    counts, limit = projected(errors, total, later), 14.4 * float(BUDGET)
    k, n = int(counts.errors), int(counts.total)
    if decided.verdict is Verdict.BURNING:
        assert beta.ppf(0.05, k, n - k + 1) > limit
    else:
        assert beta.isf(0.05, k + 1, n - k) <= limit


def test_exactly_at_the_limit_no_amount_of_traffic_decides() -> None:
    verdict = judge(Counts(144, 10_000), None, BUDGET, KNOBS)
    assert verdict.verdict is Verdict.INCONCLUSIVE
    assert verdict.events_needed is None
    assert "no amount of traffic" in verdict.reason


# --- the rules' properties -------------------------------------------------------------------------


@st.composite
def canary_counts(draw: st.DrawFn, most: int = 20_000) -> tuple[int, int]:
    n = draw(st.integers(0, most))
    return draw(st.integers(0, min(n, 400))), n


baselines = st.one_of(
    st.none(),
    st.builds(lambda k, n: Counts(min(k, n), n), st.integers(0, 3_000), st.integers(0, 300_000)),
)


@settings(max_examples=150, deadline=None)
@given(canary_counts(), baselines, st.sampled_from([KNOBS, WILSON]))
def test_more_errors_never_make_a_canary_less_burning(
    case: tuple[int, int], baseline: Counts | None, knobs: CanaryKnobs
) -> None:
    k, n = case
    assume(k < n)
    before = judge(Counts(k, n), baseline, BUDGET, knobs)
    after = judge(Counts(k + 1, n), baseline, BUDGET, knobs)
    assert RANK[after.verdict] >= RANK[before.verdict]


@settings(max_examples=150, deadline=None)
@given(canary_counts(), st.integers(1, 5_000), baselines, st.sampled_from([KNOBS, WILSON]))
def test_more_clean_traffic_never_makes_a_canary_less_healthy(
    case: tuple[int, int], clean: int, baseline: Counts | None, knobs: CanaryKnobs
) -> None:
    k, n = case
    before = judge(Counts(k, n), baseline, BUDGET, knobs)
    after = judge(Counts(k, n + clean), baseline, BUDGET, knobs)
    assert RANK[after.verdict] <= RANK[before.verdict]


@settings(max_examples=150, deadline=None)
@given(
    st.floats(0, 1e5, allow_nan=False),
    st.floats(0, 1e5, allow_nan=False),
    st.one_of(st.none(), st.builds(Counts, st.floats(0, 1e4), st.floats(0, 1e6))),
    st.sampled_from([KNOBS, WILSON, CanaryKnobs(burn_limit=2, confidence=0.99, compare_baseline=False)]),
)
def test_the_verdict_is_burning_healthy_or_inconclusive_and_agrees_with_the_bounds(
    errors: float, total: float, baseline: Counts | None, knobs: CanaryKnobs
) -> None:
    verdict = judge(Counts(errors, total), baseline, BUDGET, knobs)
    assert verdict.verdict in {Verdict.BURNING, Verdict.HEALTHY, Verdict.INCONCLUSIVE}
    assert 0.0 <= verdict.lower_bound <= verdict.upper_bound <= 1.0
    if verdict.verdict is Verdict.BURNING:
        assert verdict.lower_bound > verdict.limit_ratio
    if verdict.verdict is Verdict.HEALTHY:
        assert verdict.upper_bound <= verdict.limit_ratio
    assert (verdict.events_needed is not None) <= (verdict.verdict is Verdict.INCONCLUSIVE)
    assert verdict.healthy_enough <= (verdict.verdict is Verdict.HEALTHY)


@pytest.mark.parametrize("knobs", [KNOBS, WILSON], ids=["exact", "wilson"])
def test_the_count_thresholds_agree_with_judge_on_both_sides_for_every_count_up_to_400(
    knobs: CanaryKnobs,
) -> None:
    for n in range(401):
        first_burning = burning_errors(n, BUDGET, knobs)
        last_healthy = healthy_errors(n, BUDGET, knobs)
        edges = {0, 1, n}
        if first_burning is not None:
            edges |= {first_burning - 1, first_burning}
        if last_healthy is not None:
            edges |= {last_healthy, last_healthy + 1}
        for k in sorted(e for e in edges if 0 <= e <= n):  # either side of both thresholds
            verdict = judge(Counts(k, n), None, BUDGET, knobs).verdict
            assert (verdict is Verdict.BURNING) == (first_burning is not None and k >= first_burning), (k, n)
            assert (verdict is Verdict.HEALTHY) == (last_healthy is not None and k <= last_healthy), (k, n)


def test_a_healthy_canary_is_rarely_called_burning_in_simulation() -> None:
    """Single checks of canaries at burn 1 and 0.5: false BURNING at most 1 - confidence (it is ~0)."""
    rng = np.random.default_rng(20261126)
    trials = 4_000
    for burn in (1.0, 0.5):
        for total in (3, 30, 300, 3_000, 30_000):
            errors = rng.binomial(total, burn * float(BUDGET), size=trials)
            cache: dict[int, bool] = {}
            burning = 0
            for k in errors.tolist():
                if k not in cache:
                    cache[k] = judge(Counts(k, total), None, BUDGET, KNOBS).verdict is Verdict.BURNING
                burning += cache[k]
            assert burning / trials <= (1 - KNOBS.confidence) / 2, (burn, total)


def test_at_the_limit_itself_the_exact_false_alarm_rate_stays_below_one_minus_confidence() -> None:
    """The sharp form of the guarantee: a canary burning exactly 14.4x, every request count to 3,000."""
    limit = 14.4 * float(BUDGET)
    worst = 0.0
    for n in range(1, 3_001):
        k = burning_errors(n, BUDGET, KNOBS)
        if k is not None:
            worst = max(worst, float(binom.sf(k - 1, n, limit)))
    assert 0.04 < worst <= 1 - KNOBS.confidence


def test_at_the_limit_wilson_calls_a_burning_canary_far_more_often_than_it_says() -> None:
    """Why exact is the default: one error in 15 requests is 'burning' for Wilson, which happens
    with probability 19.6% to a canary at exactly 14.4x, four times the nominal 5%."""
    assert burning_errors(15, BUDGET, WILSON) == 1
    assert burning_errors(15, BUDGET, KNOBS) == 2
    assert float(binom.sf(0, 15, 14.4 * float(BUDGET))) == pytest.approx(0.196, abs=1e-3)


def test_simulated_canaries_at_the_limit_are_called_burning_at_most_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(7)
    limit = 14.4 * float(BUDGET)
    trials = 20_000
    for total in (50, 500, 5_000):
        threshold = burning_errors(total, BUDGET, KNOBS)
        assert threshold is not None
        rate = float(np.mean(rng.binomial(total, limit, size=trials) >= threshold))
        assert rate <= 0.05 + 4 * math.sqrt(0.05 * 0.95 / trials)


# --- against the baseline --------------------------------------------------------------------------


def test_a_canary_as_bad_as_a_degraded_baseline_is_not_burning() -> None:
    verdict = judge(Counts(30, 1_000), Counts(3_000, 100_000), BUDGET, KNOBS)
    assert verdict.lower_bound > verdict.limit_ratio
    assert verdict.verdict is Verdict.INCONCLUSIVE
    assert verdict.p_value_vs_baseline is not None
    assert verdict.p_value_vs_baseline > 0.05
    assert "the service as a whole is degraded" in verdict.reason


def test_without_the_baseline_comparison_the_same_canary_is_burning() -> None:
    knobs = CanaryKnobs(burn_limit=14.4, compare_baseline=False)
    verdict = judge(Counts(30, 1_000), Counts(3_000, 100_000), BUDGET, knobs)
    assert verdict.verdict is Verdict.BURNING
    assert verdict.p_value_vs_baseline is None


def test_a_bad_canary_against_a_clean_baseline_is_burning_with_the_numbers_in_the_reason() -> None:
    verdict = judge(Counts(12, 60), Counts(100, 100_000), BUDGET, KNOBS, name="canary v2")
    assert verdict.verdict is Verdict.BURNING
    assert verdict.reason == (
        "canary v2: 12 errors in 60 requests (20%); with 95% confidence at least 12%, above the 1.44% "
        "that a 14.4x burn allows; and worse than the baseline's 0.1% (p=3e-24)"
    )
    assert verdict.burn_rate == pytest.approx(200)
    assert verdict.burn_lower == pytest.approx(verdict.lower_bound * 1000)


def test_a_baseline_without_traffic_leaves_the_bound_to_decide() -> None:
    verdict = judge(Counts(12, 60), Counts(0, 0), BUDGET, KNOBS)
    assert verdict.verdict is Verdict.BURNING
    assert "the baseline had no traffic" in verdict.reason


def test_a_canary_no_worse_than_its_baseline_will_never_be_called_burning() -> None:
    verdict = judge(Counts(30, 1_000), Counts(4_000, 100_000), BUDGET, KNOBS)  # 3% against 4%
    assert verdict.verdict is Verdict.INCONCLUSIVE
    assert verdict.events_needed is None


# --- counts from Prometheus are floats -------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "verdict"),
    [
        pytest.param(
            Counts(4.999999999999999, 100), Verdict.BURNING, id="4.999999999999999 errors are 5 errors"
        ),
        pytest.param(Counts(4.9999, 100), Verdict.INCONCLUSIVE, id="but 4.9999 errors are 4 for burning"),
        pytest.param(
            Counts(4.6, 100), Verdict.INCONCLUSIVE, id="4.6 errors count as 4 before calling burning"
        ),
        pytest.param(
            Counts(5.0, 136.4), Verdict.BURNING, id="5 errors in 136.4 requests count as in 137: burning"
        ),
        pytest.param(Counts(5.0, 137.4), Verdict.INCONCLUSIVE, id="and in 137.4 as in 138, which is not"),
        pytest.param(Counts(0.0, 207.0), Verdict.HEALTHY, id="207 clean requests are healthy"),
        pytest.param(Counts(0.0, 206.7), Verdict.INCONCLUSIVE, id="206.7 requests count as 206 for healthy"),
        pytest.param(Counts(0.0, 300.0), Verdict.HEALTHY, id="300 clean requests are healthy"),
        pytest.param(Counts(0.2, 300.0), Verdict.INCONCLUSIVE, id="but 0.2 errors count as 1 for healthy"),
        pytest.param(Counts(61.0, 60.0), Verdict.BURNING, id="errors above the total count as the total"),
        pytest.param(Counts(0.3, 0.4), Verdict.INCONCLUSIVE, id="less than one request is no traffic"),
    ],
)
def test_fractional_counts_round_away_from_the_verdict_under_test(counts: Counts, verdict: Verdict) -> None:
    assert burning_errors(137, BUDGET, KNOBS) == 5
    assert burning_errors(138, BUDGET, KNOBS) == 6
    assert judge(counts, None, BUDGET, KNOBS).verdict is verdict


@pytest.mark.parametrize(
    ("errors", "total"),
    [(-1.0, 10.0), (1.0, -10.0), (math.nan, 10.0), (1.0, math.inf)],
    ids=["negative errors", "negative total", "NaN errors", "infinite total"],
)
def test_counts_reject_what_is_not_a_count(errors: float, total: float) -> None:
    with pytest.raises(ValueError, match="must be a finite count"):
        Counts(errors, total)


# --- the promotion gate and the knobs --------------------------------------------------------------


def test_healthy_enough_needs_the_requests_that_would_show_a_burn_below_one() -> None:
    assert judge(Counts(0, 2_995), None, BUDGET, KNOBS).healthy_enough
    almost = judge(Counts(0, 2_994), None, BUDGET, KNOBS)
    assert almost.verdict is Verdict.HEALTHY
    assert not almost.healthy_enough
    assert "2,994 of the 2,995 requests a promotion needs" in almost.reason


def test_an_explicit_promotion_minimum_replaces_the_derived_one() -> None:
    knobs = CanaryKnobs(burn_limit=14.4, healthy_min_events=300)
    assert judge(Counts(0, 300), None, BUDGET, knobs).healthy_enough
    assert not judge(Counts(0, 299), None, BUDGET, knobs).healthy_enough


def test_wilson_calls_clean_canaries_healthy_sooner_than_exact() -> None:
    z2 = 1.6448536269514722**2
    first = math.ceil(z2 * (1 - 0.0144) / 0.0144)
    assert first == 186
    assert judge(Counts(0, first), None, BUDGET, WILSON).verdict is Verdict.HEALTHY
    assert judge(Counts(0, first - 1), None, BUDGET, WILSON).verdict is Verdict.INCONCLUSIVE


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"burn_limit": 0.0}, "burn_limit"),
        ({"burn_limit": math.inf}, "burn_limit"),
        ({"burn_limit": 14.4, "confidence": 1.0}, "confidence"),
        ({"burn_limit": 14.4, "confidence": 0.3}, "confidence"),
        ({"burn_limit": 14.4, "baseline_confidence": 1.5}, "confidence"),
        ({"burn_limit": 14.4, "streak": 0}, "streak"),
        ({"burn_limit": 14.4, "method": "bayes"}, "method"),
        ({"burn_limit": 14.4, "cooldown": -S}, "cooldown"),
        ({"burn_limit": 14.4, "healthy_min_events": -1.0}, "healthy_min_events"),
    ],
    ids=[
        "a zero burn limit",
        "an infinite burn limit",
        "certainty",
        "confidence below a coin toss",
        "baseline confidence above 1",
        "a streak of zero",
        "an unknown method",
        "a negative cooldown",
        "a negative promotion minimum",
    ],
)
def test_knobs_refuse_nonsense(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        CanaryKnobs(**kwargs)  # type: ignore[arg-type]


def test_the_budget_must_be_a_ratio() -> None:
    with pytest.raises(ValueError, match="error budget"):
        judge(Counts(1, 10), None, 0.0, KNOBS)


@pytest.mark.parametrize(
    "module", sorted(Path(canary.__file__).parent.glob("*.py")), ids=lambda path: path.name
)
def test_the_canary_core_imports_only_the_standard_library_and_the_core(module: Path) -> None:
    tree = ast.parse(module.read_text())
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    # The package's own rooms import each other; everything else must be on the list.
    imported = {name for name in imported if not name.startswith("budgetguard.core.canary.")}
    allowed = {
        "__future__",
        "math",
        "collections.abc",
        "dataclasses",
        "datetime",
        "fractions",
        "statistics",
        "typing",
        "budgetguard.core.verdict",
        "budgetguard.core.spec",  # the resolved canary block it judges by
        "budgetguard.core.durations",  # window names in reasons
    }
    assert imported <= allowed


# --- streaks and cooldowns with fake time ----------------------------------------------------------


def verdict_of(kind: str) -> CanaryJudgement:
    counts = {"B": Counts(12, 60), "H": Counts(0, 3_000), "I": Counts(1, 50)}[kind]
    return judge(counts, None, BUDGET, KNOBS)


@pytest.mark.parametrize(
    ("needed", "cooldown", "script", "acts"),
    [
        pytest.param(1, 300, "B", "1", id="one burning verdict acts when the streak is 1"),
        pytest.param(3, 300, "BBB", "001", id="three in a row act on the third"),
        pytest.param(3, 300, "BBIBBB", "000001", id="an inconclusive verdict breaks the run"),
        pytest.param(2, 300, "BHBHBH", "000000", id="alternating verdicts never act"),
        pytest.param(1, 300, "BBBB", "1000", id="the cooldown holds back a second action"),
        pytest.param(
            1, 3, "BBBBB", "10010", id="after the cooldown a canary still burning is acted on again"
        ),
        pytest.param(
            2, 3, "BBBBBBB", "0100100", id="after acting a new run starts, and counts through the cooldown"
        ),
        pytest.param(1, 0, "BBB", "111", id="no cooldown acts every time"),
    ],
)
def test_streak_and_cooldown(needed: int, cooldown: int, script: str, acts: str) -> None:
    state = Streak(needed=needed, cooldown=cooldown * S)
    got = []
    for second, kind in enumerate(script):
        state, act = state.advance(verdict_of(kind), T0 + second * S)
        got.append("1" if act else "0")
    assert "".join(got) == acts


def test_time_going_backwards_never_doubles_an_action() -> None:
    state, act = Streak(cooldown=timedelta(minutes=5)).advance(verdict_of("B"), T0)
    assert act
    state, act = state.advance(verdict_of("B"), T0 - timedelta(hours=1))
    assert not act
    state, act = state.advance(verdict_of("B"), T0 + timedelta(minutes=5))
    assert act


def test_the_streak_takes_its_settings_from_the_knobs_and_is_immutable() -> None:
    knobs = CanaryKnobs(burn_limit=14.4, streak=2, cooldown=timedelta(minutes=10))
    state = Streak.for_knobs(knobs)
    assert (state.needed, state.cooldown, state.run, state.acted_at) == (2, timedelta(minutes=10), 0, None)
    advanced, _ = state.advance(verdict_of("B"), T0)
    assert advanced.run == 1
    assert state.run == 0
