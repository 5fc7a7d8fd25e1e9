"""The arithmetic of error budgets, checked against the SRE Workbook's own numbers and by properties."""

from __future__ import annotations

from datetime import timedelta
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from budgetguard.core import budget
from budgetguard.core.spec import Severity, burn_rate_for, default_tiers

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
B999 = Fraction(1, 1000)


@pytest.mark.parametrize(
    ("period", "expected"),
    [
        pytest.param(
            timedelta(days=30), [14.4, 6.0, 3.0, 1.0], id="a 30d window gives the workbook's 14.4, 6, 3 and 1"
        ),
        pytest.param(
            timedelta(days=28), [13.44, 5.6, 2.8, 0.9333333333], id="a 28d window scales them by 28/30"
        ),
        pytest.param(
            timedelta(days=7), [3.36, 1.4, 0.7, 0.2333333333], id="a 7d window keeps the budget shares"
        ),
    ],
)
def test_default_tier_thresholds_follow_the_workbook_formula(
    period: timedelta, expected: list[float]
) -> None:
    tiers = default_tiers(period)
    assert [t.burn_rate for t in tiers] == pytest.approx(expected, rel=1e-9)
    assert [t.severity for t in tiers] == [Severity.PAGE, Severity.PAGE, Severity.TICKET, Severity.TICKET]


def test_tiers_longer_than_the_slo_window_are_dropped() -> None:
    tiers = default_tiers(timedelta(days=1))
    assert [(t.long_window, t.short_window) for t in tiers] == [
        (HOUR, 5 * MINUTE),
        (6 * HOUR, 30 * MINUTE),
        (DAY, 2 * HOUR),
    ]


@pytest.mark.parametrize(
    ("burn", "window", "consumed"),
    [
        pytest.param(14.4, HOUR, 0.02, id="the 1h page tier fires after 2% of a 30d budget"),
        pytest.param(6.0, 6 * HOUR, 0.05, id="the 6h page tier fires after 5%"),
        pytest.param(3.0, DAY, 0.10, id="the 1d ticket tier fires after 10%"),
        pytest.param(1.0, 3 * DAY, 0.10, id="the 3d ticket tier fires after 10%"),
        pytest.param(36.0, HOUR, 0.05, id="iteration 4's 36x over 1h is 5% of the budget"),
    ],
)
def test_budget_consumed_by_each_tier_matches_table_5_8(
    burn: float, window: timedelta, consumed: float
) -> None:
    assert budget.budget_consumed(burn, window, timedelta(days=30)) == pytest.approx(consumed, rel=1e-12)


@pytest.mark.parametrize(
    ("burn", "days"),
    [
        pytest.param(1, 30, id="burn 1 exhausts a 30d budget in 30 days"),
        pytest.param(2, 15, id="burn 2 in 15 days"),
        pytest.param(10, 3, id="burn 10 in 3 days"),
        pytest.param(1000, 30 / 1000, id="burn 1000 in 43 minutes"),
    ],
)
def test_time_to_exhaustion_matches_table_5_4(burn: float, days: float) -> None:
    got = budget.time_to_exhaustion(1.0, burn, timedelta(days=30))
    assert got is not None
    assert got.total_seconds() == pytest.approx(days * 86400, rel=1e-12)
    if burn == 1000:
        assert round(got.total_seconds() / 60) == 43


@pytest.mark.parametrize(
    ("long_window", "threshold", "seconds"),
    [
        pytest.param(HOUR, 14.4, 51.84, id="a 100% outage fires the 1h page tier after 0.86 minutes"),
        pytest.param(6 * HOUR, 6.0, 129.6, id="the 6h page tier after 2.16 minutes"),
        pytest.param(DAY, 3.0, 259.2, id="the 1d ticket tier after 4.32 minutes"),
        pytest.param(3 * DAY, 1.0, 259.2, id="the 3d ticket tier after 4.32 minutes"),
    ],
)
def test_detection_time_of_a_full_outage_per_tier(
    long_window: timedelta, threshold: float, seconds: float
) -> None:
    assert budget.detection_time(1.0, B999, long_window, threshold).total_seconds() == pytest.approx(seconds)


def test_detection_time_at_15_percent_errors_is_the_workbooks_five_odd_minutes() -> None:
    # reference §2.1: "At 15% errors: 5.76 min" for the 1h/14.4 rule.
    assert budget.detection_time(0.15, B999, HOUR, 14.4).total_seconds() / 60 == pytest.approx(5.76)


def test_low_traffic_example_one_failure_in_ten_requests() -> None:
    # Workbook "Low-Traffic Services": 10 req/h and one failure consume 13.9% of a 30d budget. The book
    # calls that a "1,000x" burn, but 10% / 0.1% is 100x, and only 100x over 1h gives its 13.9%.
    burn = budget.burn_rate(budget.error_ratio(1, 10) or 0.0, B999)
    assert burn == pytest.approx(100)
    assert budget.budget_consumed(burn, HOUR, timedelta(days=30)) == pytest.approx(0.1389, abs=1e-4)


def test_a_budget_of_99_9_is_exactly_one_thousandth() -> None:
    assert 1 - Fraction("99.9") / 100 == B999
    assert budget.burn_rate(0.001, B999) == 1.0
    assert budget.budget_remaining(0.0005, B999) == 0.5


@pytest.mark.parametrize(
    ("errors", "total", "expected"),
    [
        pytest.param(0, 0, None, id="zero over zero is no data, not a ratio"),
        pytest.param(None, 100, 0.0, id="a missing error series beside traffic is zero errors"),
        pytest.param(5, None, None, id="a missing total is no data"),
        pytest.param(float("inf"), 10, None, id="an infinite count is no data"),
        pytest.param(1, 4, 0.25, id="one in four is a quarter"),
    ],
)
def test_error_ratio_edge_cases(errors: float | None, total: float | None, expected: float | None) -> None:
    assert budget.error_ratio(errors, total) == expected


ratios = st.floats(min_value=0, max_value=1, allow_nan=False)
objectives = st.decimals(min_value="50", max_value="99.999", places=3).filter(lambda d: d < 100)


@given(ratios, objectives)
def test_burn_rate_and_budget_remaining_are_two_views_of_one_number(ratio: float, objective: object) -> None:
    b = 1 - Fraction(str(objective)) / 100
    assert budget.budget_remaining(ratio, b) == pytest.approx(1 - budget.burn_rate(ratio, b), abs=1e-12)


@given(ratios, ratios, objectives)
def test_more_errors_never_burn_slower(a: float, c: float, objective: object) -> None:
    b = 1 - Fraction(str(objective)) / 100
    low, high = sorted((a, c))
    assert budget.burn_rate(low, b) <= budget.burn_rate(high, b)
    assert budget.budget_remaining(low, b) >= budget.budget_remaining(high, b)


@given(st.floats(min_value=0.001, max_value=1), st.floats(min_value=0.01, max_value=1000))
def test_time_to_exhaustion_is_remaining_budget_over_burn(remaining: float, burn: float) -> None:
    period = timedelta(days=30)
    got = budget.time_to_exhaustion(remaining, burn, period)
    assert got is not None
    # spending `burn` budgets per period, `remaining` of one lasts remaining/burn periods
    assert budget.budget_consumed(burn, got, period) == pytest.approx(remaining, rel=1e-6)


@given(
    st.fractions(min_value=Fraction(1, 1000), max_value=1),
    st.integers(min_value=1, max_value=90),
    st.integers(min_value=1, max_value=72),
)
def test_a_threshold_consumes_exactly_its_budget_share(fraction: Fraction, days: int, hours: int) -> None:
    period, window = timedelta(days=days), timedelta(hours=hours)
    burn = burn_rate_for(fraction, period, window)
    assert budget.budget_consumed(burn, window, period) == pytest.approx(float(fraction), rel=1e-9)


def test_exhausted_budget_has_no_time_left_and_no_burn_never_runs_out() -> None:
    assert budget.time_to_exhaustion(-0.2, 3.0, timedelta(days=30)) == timedelta(0)
    assert budget.time_to_exhaustion(0.5, 0.0, timedelta(days=30)) is None


def test_a_vanishing_burn_rate_never_exhausts_the_budget_instead_of_overflowing() -> None:
    assert budget.time_to_exhaustion(0.5, 1e-308, timedelta(days=30)) is None
    assert budget.time_to_exhaustion(1.0, 1 / 999, timedelta(days=1)) == pytest.approx(
        timedelta(days=999), abs=timedelta(milliseconds=1)
    )
