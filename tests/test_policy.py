"""Verdicts: from measured windows to healthy, warning, burning, inconclusive or error, with reasons."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from budgetguard.core import budget
from budgetguard.core.policy import Observation, evaluate
from budgetguard.core.spec import SLO
from budgetguard.core.verdict import Verdict
from tests.helpers import slo_from

AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
M, H, D = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)


def observe(
    slo: SLO, ratios: dict[timedelta, float | None], default: float = 0.0, events: float | None = 10_000.0
) -> dict[timedelta, Observation]:
    out = {}
    for window in slo.windows():
        ratio = ratios.get(window, default)
        out[window] = Observation(window, ratio, events, None if ratio is not None else "no traffic (NaN)")
    return out


SLO_999 = slo_from()
B = 0.001


@pytest.mark.parametrize(
    ("ratios", "verdict", "words"),
    [
        pytest.param({}, Verdict.HEALTHY, "no tier firing", id="no errors anywhere is healthy"),
        pytest.param(
            {H: 15 * B, 5 * M: 15 * B},
            Verdict.BURNING,
            "page tier 1h/5m firing",
            id="15x over 1h and 5m fires the fast page tier",
        ),
        pytest.param(
            {H: 15 * B, 5 * M: 0.0},
            Verdict.HEALTHY,
            "closest",
            id="a burst that has stopped (short window clean) does not fire",
        ),
        pytest.param(
            {H: 14.4 * B, 5 * M: 14.4 * B},
            Verdict.HEALTHY,
            "",
            id="exactly at the threshold does not fire: the rule is strictly greater",
        ),
        pytest.param(
            {6 * H: 7 * B, 30 * M: 7 * B},
            Verdict.BURNING,
            "page tier 6h/30m",
            id="7x over 6h and 30m fires the slow page tier",
        ),
        pytest.param(
            {D: 4 * B, 2 * H: 4 * B},
            Verdict.WARNING,
            "ticket tier 1d/2h",
            id="4x over 1d and 2h is a ticket, a warning",
        ),
        pytest.param(
            {3 * D: 1.5 * B, 6 * H: 1.5 * B},
            Verdict.WARNING,
            "ticket tier 3d/6h",
            id="1.5x over 3d and 6h is a ticket",
        ),
        pytest.param(
            {5 * M: None},
            Verdict.INCONCLUSIVE,
            "no traffic (NaN) in 5m",
            id="no traffic in the short window is inconclusive, never healthy",
        ),
        pytest.param(
            {5 * M: None, D: 4 * B, 2 * H: 4 * B},
            Verdict.WARNING,
            "ticket",
            id="a firing tier still counts when another window has no data",
        ),
    ],
)
def test_verdict_table(ratios: dict[timedelta, float | None], verdict: Verdict, words: str) -> None:
    ev = evaluate(SLO_999, observe(SLO_999, ratios), AT)
    assert ev.verdict is verdict
    assert words in ev.reason


def test_page_wins_over_ticket_and_reason_names_the_budget_share() -> None:
    ratios = dict.fromkeys(SLO_999.windows(), 20 * B)
    ev = evaluate(SLO_999, observe(SLO_999, ratios), AT)
    assert ev.verdict is Verdict.BURNING
    assert "above 14.4x" in ev.reason and "2% of the 30d budget in 1h" in ev.reason
    assert all(t.firing for t in ev.tiers)


def test_partial_data_is_inconclusive_even_when_the_numbers_look_fine_or_bad() -> None:
    fine = evaluate(SLO_999, observe(SLO_999, {}), AT, warnings=["partial response: store down"])
    assert fine.verdict is Verdict.INCONCLUSIVE and "partial data" in fine.reason
    bad = evaluate(
        SLO_999, observe(SLO_999, dict.fromkeys(SLO_999.windows(), 20 * B)), AT, warnings=["partial response"]
    )
    assert bad.verdict is Verdict.INCONCLUSIVE and "page tier 1h/5m firing" in bad.reason


def test_too_few_events_is_inconclusive_and_says_how_many() -> None:
    slo = slo_from(
        """
        version: budgetguard/v1
        service: s
        slos:
          - name: x
            objective: 99
            min_events: 100
            sli: {raw: {error_ratio_query: 'sum(rate(e[{{.window}}])) / sum(rate(t[{{.window}}]))'}}
        """
    )
    ev = evaluate(slo, observe(slo, dict.fromkeys(slo.windows(), 0.5), events=12), AT)
    assert ev.verdict is Verdict.INCONCLUSIVE
    assert "12 events in 5m, fewer than min_events 100" in ev.reason


def test_budget_remaining_and_time_to_exhaustion() -> None:
    ratios = {timedelta(days=30): 0.4 * B, H: 2 * B}
    ev = evaluate(SLO_999, observe(SLO_999, ratios), AT)
    assert ev.budget_remaining == pytest.approx(0.6)
    assert ev.error_ratio == pytest.approx(0.4 * B)
    # 60% of the budget left at 2x the sustainable rate lasts 0.6 * 30d / 2 = 9 days
    assert ev.time_to_exhaustion == pytest.approx(timedelta(days=9), abs=timedelta(milliseconds=1))


def test_overspent_budget_is_negative_not_clamped() -> None:
    ev = evaluate(SLO_999, observe(SLO_999, {timedelta(days=30): 2.5 * B}), AT)
    assert ev.budget_remaining == pytest.approx(-1.5)
    assert ev.time_to_exhaustion == timedelta(0)


def test_no_traffic_over_the_slo_window_leaves_the_budget_unknown() -> None:
    ev = evaluate(SLO_999, observe(SLO_999, {}, default=None), AT)
    assert ev.verdict is Verdict.INCONCLUSIVE
    assert ev.budget_remaining is None and ev.time_to_exhaustion is None


def test_an_error_ratio_far_above_one_is_a_configuration_error() -> None:
    ev = evaluate(SLO_999, observe(SLO_999, {H: 3.0}), AT)
    assert ev.verdict is Verdict.ERROR
    assert "error query counts events the total query does not" in ev.reason


def test_a_ratio_just_above_one_is_an_extrapolation_artefact_read_as_one() -> None:
    ev = evaluate(SLO_999, observe(SLO_999, dict.fromkeys(SLO_999.windows(), 1.01)), AT)
    assert ev.verdict is Verdict.BURNING
    assert ev.window(H) is not None and ev.window(H).error_ratio == 1.0  # type: ignore[union-attr]


def outage_ratio(window: timedelta, elapsed: timedelta, error_ratio: float) -> float:
    """Error ratio over ``window`` at ``elapsed`` after a constant-traffic outage began."""
    return error_ratio * min(elapsed / window, 1.0)


@settings(max_examples=60, deadline=None)
@given(st.floats(min_value=0.02, max_value=1.0))
def test_detection_matches_the_workbook_formula(error_ratio: float) -> None:
    """Simulate an outage second by second: the verdict turns burning when the formula says it must."""
    expected = min(
        max(
            budget.detection_time(error_ratio, SLO_999.error_budget, t.long_window, t.burn_rate),
            budget.detection_time(error_ratio, SLO_999.error_budget, t.short_window, t.burn_rate),
        )
        for t in SLO_999.tiers
        if t.severity == "page"
    )
    step = timedelta(seconds=1)

    def burning_at(elapsed: timedelta) -> bool:
        ratios = {w: outage_ratio(w, elapsed, error_ratio) for w in SLO_999.windows()}
        return evaluate(SLO_999, observe(SLO_999, ratios), AT).verdict is Verdict.BURNING

    assert not burning_at(expected - step)
    assert burning_at(expected + step)


@pytest.mark.parametrize("bad", [math.nan, math.inf], ids=["NaN", "infinity"])
@pytest.mark.parametrize("where", [timedelta(days=30), H], ids=["the SLO window", "a tier's window"])
def test_a_non_finite_ratio_is_no_data_not_a_crash(bad: float, where: timedelta) -> None:
    """A NaN reaching the policy (a caller's arithmetic, a source answering "NaN") once raised inside
    time_to_exhaustion; it is a window without a number, judged as a window without data is."""
    ratios = {timedelta(days=30): 0.4 * B, H: 2 * B}
    ev = evaluate(SLO_999, observe(SLO_999, {**ratios, where: bad}), AT)
    without = evaluate(SLO_999, observe(SLO_999, {**ratios, where: None}), AT)
    assert ev.verdict is without.verdict
    stat = ev.window(where)
    assert stat is not None and stat.error_ratio is None and stat.burn_rate is None
    assert stat.missing == f"a non-finite error ratio ({bad})"
    if where == timedelta(days=30):
        assert ev.budget_remaining is None and ev.time_to_exhaustion is None
    else:
        assert ev.verdict is Verdict.INCONCLUSIVE
        assert f"a non-finite error ratio ({bad}) in 1h" in ev.reason


def test_time_to_exhaustion_of_unknown_inputs_is_no_estimate() -> None:
    period = timedelta(days=30)
    assert budget.time_to_exhaustion(math.nan, 2.0, period) is None
    assert budget.time_to_exhaustion(0.5, math.nan, period) is None
    assert budget.time_to_exhaustion(0.5, math.inf, period) is None
    assert budget.time_to_exhaustion(-0.1, math.nan, period) is None
    assert budget.time_to_exhaustion(0.5, 2.0, period) == timedelta(days=7.5)
