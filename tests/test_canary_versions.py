"""Canaries declared in SLO files: the canary block, per-version answers and their judgement."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from budgetguard.core.canary import CanaryEvaluation, Counts, judge_versions, pick_baseline
from budgetguard.core.ports import QueryResult, Sample
from budgetguard.core.queries import PART_LABEL, plan
from budgetguard.core.spec import SLO
from budgetguard.core.verdict import Verdict
from budgetguard.engine import Engine
from budgetguard.loader import load_text
from tests.helpers import slo_from

AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

CANARY = """
version: budgetguard/v1
service: checkout
slos:
  - name: availability
    objective: 99.9
    sli:
      events:
        error_query: sum by (version) (rate(http_requests_total{job="checkout",code=~"5.."}[{{.window}}]))
        total_query: sum by (version) (rate(http_requests_total{job="checkout"}[{{.window}}]))
    canary:
      label: version
      on_burn: [abort]
      notify: [slack]
"""


def test_defaults_follow_from_the_fastest_page_tier() -> None:
    slo = slo_from(CANARY)
    policy = slo.canary
    assert policy is not None
    assert policy.windows == (timedelta(minutes=1), timedelta(minutes=5))
    assert policy.baseline_window == timedelta(hours=1)
    assert policy.burn_limit == pytest.approx(14.4)
    assert policy.actions == ("abort", "slack")
    assert timedelta(minutes=1) in slo.windows()


def problems(text: str, actions: dict[str, frozenset[str]] | None = None) -> list[str]:
    slos, found = load_text(text, "canary.yaml", actions)
    assert not slos
    return [str(p) for p in found]


def test_a_query_that_does_not_group_by_the_label_is_refused_with_the_fix() -> None:
    text = CANARY.replace(
        'sum by (version) (rate(http_requests_total{job="checkout"}[',
        'sum(rate(http_requests_total{job="checkout"}[',
    )
    [message] = problems(text)
    assert "canary.yaml:10" in message and "sli.events.total_query" in message
    assert "sum by (version)" in message


def test_a_raw_sli_cannot_be_split_by_version() -> None:
    text = """
    version: budgetguard/v1
    service: s
    slos:
      - name: raw
        objective: 99
        sli: {raw: {error_ratio_query: "sum by (version) (rate(e[{{.window}}]))"}}
        canary: {label: version}
    """
    [message] = problems(text.replace("\n    ", "\n"))
    assert "slos[0].canary" in message and "sli.events" in message


def test_action_names_and_their_placeholders_are_checked_at_load() -> None:
    [unknown] = problems(CANARY, {"slack": frozenset()})
    assert "action 'abort' is not declared" in unknown and "canary.yaml:13" in unknown
    [placeholder] = problems(CANARY, {"abort": frozenset({"team"}), "slack": frozenset()})
    assert "${team}" in placeholder and "add the label 'team'" in placeholder
    slos, found = load_text(
        CANARY, "canary.yaml", {"abort": frozenset({"canary", "service"}), "slack": frozenset()}
    )
    assert found == [] and len(slos) == 1


def test_a_sloth_file_may_not_use_the_canary_block() -> None:
    [message] = problems(CANARY.replace("budgetguard/v1", "prometheus/v1"))
    assert "'canary' is a budgetguard/v1 addition" in message


def test_the_baseline_is_the_busiest_version_unless_declared() -> None:
    policy = slo_from(CANARY).canary
    assert policy is not None
    assert pick_baseline(policy, {"v1": 900.0, "v2": 100.0}) == "v1"
    assert pick_baseline(policy, {"b": 5.0, "a": 5.0}) == "a"
    assert pick_baseline(policy, {"v1": 0.0}) is None
    declared = policy.model_copy(update={"baseline": "v2"})
    assert pick_baseline(declared, {"v1": 900.0, "v2": 100.0}) == "v2"


def per_version(slo: SLO, rates: dict[str, tuple[float, float]]) -> QueryResult:
    """A combined answer where each version serves (requests/s, error ratio) in every window."""
    samples = []
    for q in plan(slo):
        for version, (rps, ratio) in rates.items():
            value = rps * ratio if q.part == "errors" else rps
            samples.append(Sample({PART_LABEL: q.tag, "version": version}, value))
    return QueryResult(tuple(samples))


class OneAnswer:
    def __init__(self, answer: QueryResult) -> None:
        self.answer = answer

    async def query(self, expr: str, at: datetime) -> QueryResult:
        return self.answer

    async def aclose(self) -> None:
        return None


def evaluate(slo: SLO, rates: dict[str, tuple[float, float]]) -> tuple[Verdict, tuple[CanaryEvaluation, ...]]:
    ev = asyncio.run(Engine(OneAnswer(per_version(slo, rates))).evaluate(slo, AT))
    return ev.verdict, ev.canaries


def test_the_service_is_the_sum_and_each_version_is_judged_on_its_own() -> None:
    slo = slo_from(CANARY)
    verdict, canaries = evaluate(slo, {"v1": (995.0, 0.0), "v2": (5.0, 0.2)})
    # the service as a whole: 1 error/s in 1,000 requests/s, a 1x burn; the canary alone burns 200x
    assert verdict is Verdict.HEALTHY
    [v2] = canaries
    assert (v2.value, v2.baseline, v2.verdict) == ("v2", "v1", Verdict.BURNING)
    # both windows burn; the deciding one is the surest (the highest lower bound): 5m, more requests
    assert all(w.judgement.verdict is Verdict.BURNING for w in v2.windows)
    assert v2.judgement.events == pytest.approx(5.0 * 300) and v2.window == timedelta(minutes=5)
    assert "version=v2 over 5m" in v2.reason


def test_a_healthy_canary_is_healthy_and_the_baseline_is_not_judged() -> None:
    slo = slo_from(CANARY)
    verdict, canaries = evaluate(slo, {"v1": (95.0, 0.0), "v2": (5.0, 0.0)})
    assert verdict is Verdict.HEALTHY
    [v2] = canaries
    assert v2.verdict is Verdict.HEALTHY and v2.window == timedelta(minutes=5)
    # 1,500 clean requests show it is within 14.4x but not yet that it stays within the budget (1x):
    # at 97.5% (two windows) that takes n clean requests with 0.999^n <= 0.025: 3,688
    assert v2.judgement.events == pytest.approx(1500.0) and not v2.healthy_enough
    _, [busier] = evaluate(slo, {"v1": (95.0, 0.0), "v2": (20.0, 0.0)})
    assert busier.healthy_enough and "enough requests to promote (3,688 needed)" in busier.reason


def test_windows_split_the_confidence() -> None:
    slo = slo_from(CANARY)
    policy = slo.canary
    assert policy is not None
    # 3 errors in 50 requests: the exact 95% lower bound is 1.67% (above 1.44%), the 97.5% one 1.25%
    one = policy.model_copy(update={"windows": (timedelta(minutes=1),)})
    two = policy
    counts = {w: {"v2": Counts(3, 50), "v1": Counts(0, 50_000)} for w in two.windows}
    assert judge_versions(one, slo.error_budget, counts, {"v1": 1e6})[0].verdict is Verdict.BURNING
    assert judge_versions(two, slo.error_budget, counts, {"v1": 1e6})[0].verdict is Verdict.INCONCLUSIVE
