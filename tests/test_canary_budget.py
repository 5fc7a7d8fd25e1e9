"""The budget-consumption rule (#6): "if your error budget for the month is 0.1% and a canary release
consumes 0.05% of that budget in ten minutes, stop the rollout immediately".

``budget_consumed: {percent: 0.05, within: 10m}`` is a share of the SLO window's budget consumed within
a lookback; the workbook's formula turns it into the burn rate the canary may not exceed over that
lookback: 0.0005 x 30d / 10m = 2.16.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from budgetguard.cli import main
from budgetguard.core.canary import CanaryEvaluation, Counts, Streak, judge_versions
from budgetguard.core.guard import Delivery, decide
from budgetguard.core.policy import Evaluation
from budgetguard.core.spec import SLO, burn_rate_for
from budgetguard.core.verdict import Verdict
from budgetguard.loader import load_paths, load_text
from tests.helpers import slo_from

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

ARTICLE = """
version: budgetguard/v1
service: checkout
slos:
  - name: availability
    objective: 99.9          # an error budget of 0.1% for the month
    window: 30d
    sli:
      events:
        error_query: sum by (version) (rate(http_requests_total{job="checkout",code=~"5.."}[{{.window}}]))
        total_query: sum by (version) (rate(http_requests_total{job="checkout"}[{{.window}}]))
    canary:
      label: version
      baseline: v1
      budget_consumed: {percent: 0.05, within: 10m}
      on_burn: [abort]
"""
SLO_ = slo_from(ARTICLE)
assert SLO_.canary is not None and SLO_.canary.budget_consumed is not None
POLICY = SLO_.canary
RULE = SLO_.canary.budget_consumed


def test_the_articles_numbers_give_a_burn_limit_of_2_16_over_ten_minutes() -> None:
    # 0.05% of the budget in 10 minutes of a 43,200-minute month: 0.0005 x 43,200 / 10 = 2.16
    assert RULE.fraction == 0.0005 and RULE.within == timedelta(minutes=10)
    assert POLICY.burn_limit == pytest.approx(2.16, rel=1e-15)
    assert POLICY.burn_limit == burn_rate_for(Fraction(5, 10_000), timedelta(days=30), timedelta(minutes=10))
    assert POLICY.windows == (timedelta(minutes=10),)
    # at 99.9% that is an error ratio of 0.216% held over the last ten minutes
    assert POLICY.burn_limit * SLO_.error_budget_float == pytest.approx(0.00216)
    assert RULE.consumed(POLICY.burn_limit) == pytest.approx(0.0005)


@pytest.mark.parametrize(
    ("rule", "window", "burn_limit"),
    [
        pytest.param(
            "{percent: 2, within: 1h}", "30d", 14.4, id="2% in 1h of 30d is the workbook's page tier"
        ),
        pytest.param("{percent: 5, within: 6h}", "30d", 6.0, id="5% in 6h of 30d is its second page tier"),
        pytest.param("{percent: 0.05, within: 10m}", "28d", 2.016, id="a 28d window scales the limit"),
    ],
)
def test_the_limit_follows_the_workbooks_formula(rule: str, window: str, burn_limit: float) -> None:
    text = ARTICLE.replace("{percent: 0.05, within: 10m}", rule).replace("window: 30d", f"window: {window}")
    policy = slo_from(text).canary
    assert policy is not None and policy.burn_limit == pytest.approx(burn_limit, rel=1e-12)


def problems(text: str) -> list[str]:
    slos, found = load_text(text, "slos/checkout.yaml")
    assert not slos
    return [str(p) for p in found]


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        pytest.param(
            ("      budget_consumed:", "      windows: [1m]\n      budget_consumed:"),
            [
                ":15",
                "canary.windows",
                "budget_consumed sets the canary's window (its 'within'); remove windows",
            ],
            id="windows beside budget_consumed are refused: within is the window",
        ),
        pytest.param(
            ("      budget_consumed:", "      burn_limit: 3\n      budget_consumed:"),
            [":15", "canary.burn_limit", "budget_consumed sets the canary's burn limit"],
            id="a burn_limit beside budget_consumed is refused: it is the burn limit",
        ),
        pytest.param(
            ("within: 10m", "within: 60d"),
            [":15", "canary.budget_consumed.within", "longer than the SLO window (30d)"],
            id="a lookback longer than the SLO window is refused",
        ),
        pytest.param(
            ("percent: 0.05", "percent: 50"),
            [
                ":15",
                "canary.budget_consumed.percent",
                "takes a 2,160x burn, an error ratio of 216%",
                "not of requests",
            ],
            id="reading 0.05% as half of a 0.1% budget would need more errors than requests",
        ),
        pytest.param(
            ("percent: 0.05", "percent: 0"),
            ["canary.budget_consumed.percent", "greater than 0"],
            id="a zero share is refused",
        ),
        pytest.param(
            ("within: 10m", "within: 0s"),
            ["canary.budget_consumed.within", "must be longer than zero"],
            id="a zero lookback is refused",
        ),
        pytest.param(
            ("{percent: 0.05, within: 10m}", "{percent: 0.05}"),
            ["canary.budget_consumed.within", "required field 'within' is missing"],
            id="the lookback is required",
        ),
    ],
)
def test_budget_consumed_is_validated_with_file_line_field_and_fix(
    change: tuple[str, str], fragments: list[str]
) -> None:
    [message] = problems(ARTICLE.replace(*change))
    assert message.startswith("slos/checkout.yaml:") and "slo 'availability'" in message
    for fragment in fragments:
        assert fragment in message


STABLE = Counts(0, 60_000)  # the baseline, v1: clean


def versions(v2: Counts) -> tuple[CanaryEvaluation, ...]:
    counts = {w: {"v1": STABLE, "v2": v2} for w in POLICY.windows}
    return judge_versions(POLICY, SLO_.error_budget, counts, {"v1": 1e6})


def test_a_canary_consuming_faster_than_allowed_burns_in_the_rules_terms() -> None:
    # 31 errors in 6,000 requests over 10 minutes: 0.517%, a 5.17x burn: 0.12% of the 30d budget
    [v2] = versions(Counts(31, 6_000))
    assert v2.verdict is Verdict.BURNING
    assert v2.reason.startswith(
        "version=v2 consumed 0.12% of the 30d budget in 10m (at least 0.0866% with 95% confidence), "
        "above the 0.05% allowed: 31 errors in 6,000 requests (0.517%)"
    )


def test_one_consuming_less_is_healthy_and_one_in_between_undecided() -> None:
    [below] = versions(Counts(3, 6_000))
    assert below.verdict is Verdict.HEALTHY
    assert (
        "consumed 0.0116% of the 30d budget in 10m (at most 0.0299% with 95% confidence), within the 0.05%"
        in (below.reason)
    )
    [between] = versions(Counts(15, 6_000))
    assert between.verdict is Verdict.INCONCLUSIVE and "undecided against the 0.05% allowed" in between.reason
    assert "more requests at this error ratio would decide" in between.reason


@settings(max_examples=150, deadline=None)
@given(errors=st.integers(0, 200), total=st.integers(1, 20_000))
def test_burning_means_the_lower_bound_consumes_more_than_allowed(errors: int, total: int) -> None:
    errors = min(errors, total)
    [v2] = versions(Counts(errors, total))
    lower = RULE.consumed(v2.judgement.burn_lower)
    if v2.verdict is Verdict.BURNING:
        assert lower > RULE.fraction * (1 - 1e-12)
    if v2.verdict is Verdict.HEALTHY:
        assert RULE.consumed(v2.judgement.burn_upper) <= RULE.fraction * (1 + 1e-12)


def test_the_incident_says_how_much_of_the_budget_was_consumed() -> None:
    [v2] = versions(Counts(31, 6_000))
    ev = Evaluation(SLO_, T0, Verdict.HEALTHY, "service", canaries=(v2,))
    streaks: dict[tuple[str, str], Streak] = {}
    decision, _ = decide(ev, [], streaks, paused=False, delivery=Delivery())
    [incident] = decision.opened
    assert incident.reason.startswith("version=v2 consumed 0.12% of the 30d budget in 10m")
    assert [e.action for e in decision.outbox] == ["abort"]


def test_without_budget_consumed_the_default_limit_still_applies() -> None:
    plain: SLO = slo_from(ARTICLE.replace("      budget_consumed: {percent: 0.05, within: 10m}\n", ""))
    assert plain.canary is not None and plain.canary.budget_consumed is None
    assert plain.canary.burn_limit == pytest.approx(14.4)


def test_the_shipped_example_of_both_rules_loads_with_the_actions_its_config_declares() -> None:
    repo = Path(__file__).resolve().parent.parent
    example, actions = (
        repo / "slos" / "checkout-canary.yaml",
        repo / "deploy/examples/checkout-canary.config.yaml",
    )
    out, err = io.StringIO(), io.StringIO()
    assert main(["check", str(example), "--config", str(actions)], out, err) == 0, err.getvalue()
    [slo] = load_paths([example]).slos
    assert (
        slo.canary is not None and slo.canary.latency is not None and slo.canary.budget_consumed is not None
    )
    assert slo.canary.burn_limit == pytest.approx(2.16) and slo.canary.windows == (timedelta(minutes=10),)
    latency = slo.canary.latency
    assert (latency.quantile_name, latency.threshold_seconds, latency.hold) == (
        "p99",
        0.5,
        timedelta(minutes=2),
    )
