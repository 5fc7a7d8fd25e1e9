"""The release freeze and shadow traffic: the policy as declared, decided, estimated and served.

The workbook's error budget policy (Appendix B): while a service's budget is spent, releases wait,
except the changes the policy names. Decisions are pure (``budgetguard.core.freeze``, ``budgetguard.core.gates``)
and tested edge by edge here; the routes are driven through the fakes of ``tests/test_gates.py``, which
read answers exactly as Flagger and Argo Rollouts do, against the real server; ``budgetguard gate``
talks to that server over HTTP. The end to end runs, with a real Prometheus and the daemon, are in
``tests/test_release_e2e.py``.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import textwrap
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from budgetguard.cli import main
from budgetguard.core import freeze, gates
from budgetguard.core.errors import SourceProtocolError, SourceUnavailable
from budgetguard.core.freeze import FreezeState, Recovery, RecoveryQuery
from budgetguard.core.gates import GuardStatus
from budgetguard.core.policy import Evaluation, Observation, evaluate, failed
from budgetguard.core.ports import QueryResult, RangeResult, RangeSeries, Sample
from budgetguard.core.queries import PART_LABEL, plan
from budgetguard.core.spec import SLO
from budgetguard.engine import Engine
from budgetguard.loader import load_paths, load_text
from budgetguard.sources import PrometheusConfig, PrometheusSource
from budgetguard.web import HttpServer, RangeSource, RecoveryEstimates, create_app
from tests.helpers import slos_from
from tests.test_gates import FakeArgo, FakeFlagger, Metrics, OneAnswer, free_port

ROOT = Path(__file__).resolve().parent.parent
AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
TOKEN = "s3cret-t0ken"

SERVICE = """
version: budgetguard/v1
service: checkout
freeze:                                   # every SLO of the file, unless it declares its own
  except: {change: [security-fix, rollback]}
slos:
  - name: availability
    objective: 99.9
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="checkout",code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="checkout"}[{{.window}}]))
  - name: latency
    objective: 99
    freeze: {below: 0.25}                 # its own floor, and no exceptions
    sli:
      latency: {metric: http_request_duration_seconds, selector: job="checkout", threshold_seconds: 0.5}
  - name: not-found
    objective: 95
    freeze: false                         # opted out of the file's policy
    sli:
      raw:
        error_ratio_query: sum(rate(x{code="404"}[{{.window}}])) / sum(rate(x[{{.window}}]))
  - name: shadow
    objective: 99
    sli:
      events:
        error_query: sum by (version) (rate(shadow_mismatches_total[{{.window}}]))
        total_query: sum by (version) (rate(shadow_requests_total[{{.window}}]))
    canary: {label: version, kind: shadow, notify: [chat]}
"""


@cache
def slos() -> dict[str, SLO]:
    return {s.name: s for s in slos_from(SERVICE)}


def measured(slo: SLO, remaining: float | None, events: float = 1_000_000.0) -> Evaluation:
    """An evaluation whose SLO-window budget remaining is ``remaining`` (None: no traffic at all)."""
    if remaining is None:
        observations = {w: Observation(w, None, 0.0, "no traffic (0 events)") for w in slo.windows()}
    else:
        ratio = (1.0 - remaining) * slo.error_budget_float
        observations = {w: Observation(w, ratio, events) for w in slo.windows()}
    return evaluate(slo, observations, AT)


def down(slo: SLO) -> Evaluation:
    return failed(slo, AT, "source error (unavailable): connection refused", "unavailable")


# Shadow traffic per version: (comparisons per second, mismatch ratio), the same in every window.
SHADOWS: dict[str, dict[str, tuple[float, float]]] = {
    "mismatching": {"v2": (20.0, 0.2)},
    "clean": {"v2": (20.0, 0.0)},
    "quiet": {"v2": (0.01, 0.0)},
}


@cache
def shadow(scenario: str) -> Evaluation:
    slo = slos()["shadow"]
    samples = []
    for q in plan(slo):
        for version, (rps, ratio) in SHADOWS[scenario].items():
            value = rps * ratio if q.part == "errors" else rps
            samples.append(Sample({PART_LABEL: q.tag, "version": version}, value))
    return asyncio.run(Engine(OneAnswer(QueryResult(tuple(samples)))).evaluate(slo, AT))


def service(
    availability: float | None = 0.5, latency: float | None = 0.5, shadowing: str = "clean"
) -> list[Evaluation]:
    """The checkout service's latest evaluations with these budgets remaining (None: its source failed)."""
    named = slos()
    return [
        measured(named["availability"], availability)
        if availability is not None
        else down(named["availability"]),
        measured(named["latency"], latency) if latency is not None else down(named["latency"]),
        measured(named["not-found"], -3.0),  # spent, but opted out: never freezes
        shadow(shadowing),
    ]


# --- declaring the policy ----------------------------------------------------------------------------


def test_the_file_policy_reaches_every_slo_but_those_with_their_own_opted_out_or_shadows() -> None:
    named = slos()
    availability, latency = named["availability"].freeze, named["latency"].freeze
    assert availability is not None and latency is not None
    assert (availability.below, availability.exceptions, availability.inherited) == (
        0.0,
        {"change": ("security-fix", "rollback")},
        True,
    )
    assert (latency.below, latency.exceptions, latency.inherited) == (0.25, {}, False)
    assert named["not-found"].freeze is None
    assert named["shadow"].freeze is None  # a shadow's budget is not the users'
    assert named["shadow"].canary is not None and named["shadow"].canary.kind == "shadow"
    assert named["shadow"].canary.compare_baseline is False


def test_freeze_true_is_the_workbook_default_and_a_shadow_may_opt_in_explicitly() -> None:
    text = SERVICE.replace("freeze: {below: 0.25}", "freeze: true").replace(
        "kind: shadow, notify: [chat]}", "kind: shadow, notify: [chat]}\n    freeze: {below: 0.5}"
    )
    named = {s.name: s for s in slos_from(text)}
    latency, shadowed = named["latency"].freeze, named["shadow"].freeze
    assert latency is not None and (latency.below, latency.exceptions) == (0.0, {})
    assert shadowed is not None and shadowed.below == 0.5


@pytest.mark.parametrize(
    ("edit", "line", "field", "message"),
    [
        pytest.param(
            ("freeze: {below: 0.25}", "freeze: {below: 25}"),
            15,
            "slos[1].freeze.below",
            "below is the share of the error budget left under which releases freeze, from 0",
            id="a floor written as a percent is refused",
        ),
        pytest.param(
            ("freeze: {below: 0.25}", "freeze: {below: 0.25, unless: {change: [x]}}"),
            15,
            "slos[1].freeze.unless",
            "unknown field 'unless'",
            id="a misspelt key lists the allowed ones",
        ),
        pytest.param(
            ("except: {change: [security-fix, rollback]}", "except: {change: []}"),
            5,
            "freeze.except",
            "list at least one non-empty value for 'change'",
            id="an exception with no value is refused",
        ),
        pytest.param(
            ("except: {change: [security-fix, rollback]}", "except: {change-type: [x]}"),
            5,
            "freeze.except",
            "'change-type' is not a label name",
            id="an exception on a name no label can have is refused",
        ),
        pytest.param(
            ("except: {change: [security-fix, rollback]}", "except: {change: security-fix}"),
            5,
            "freeze.except.change",
            "valid tuple",
            id="exception values are a list",
        ),
        pytest.param(
            ("kind: shadow, notify: [chat]", "kind: shadow, on_burn: [abort], notify: [chat]"),
            30,
            "slos[3].canary.on_burn",
            "a shadow (kind: shadow) serves no user, so there is no traffic to halt",
            id="a shadow refuses actions that halt traffic",
        ),
        pytest.param(
            ("kind: shadow, notify: [chat]", "kind: shadow, baseline: v1"),
            30,
            "slos[3].canary.baseline",
            "every version is judged on its own; remove baseline",
            id="a shadow has no baseline",
        ),
        pytest.param(
            ("kind: shadow, notify: [chat]", "kind: shadow, compare_baseline: true"),
            30,
            "slos[3].canary.compare_baseline",
            "a shadow has no baseline version to compare with",
            id="nor a comparison with one",
        ),
        pytest.param(
            ("kind: shadow, notify: [chat]", "kind: dark"),
            30,
            "slos[3].canary.kind",
            "'canary' or 'shadow'",
            id="kind is canary or shadow",
        ),
        pytest.param(
            ("version: budgetguard/v1", "version: prometheus/v1"),
            4,
            "freeze",
            "'freeze' is a budgetguard/v1 addition that Sloth's prometheus/v1 rejects",
            id="a Sloth file cannot declare a freeze",
        ),
    ],
)
def test_a_bad_policy_names_file_line_field_and_fix(
    edit: tuple[str, str], line: int, field: str, message: str
) -> None:
    old, new = edit
    assert old in SERVICE
    loaded, problems = load_text(textwrap.dedent(SERVICE.replace(old, new)), "slos/checkout.yaml")
    assert not loaded
    texts = [str(p) for p in problems]
    wanted = [t for t in texts if f"field '{field}'" in t]
    assert wanted, texts
    assert wanted[0].startswith(f"slos/checkout.yaml:{line}:"), wanted[0]
    assert message in wanted[0]


def test_the_shipped_slos_declare_the_freeze_and_the_shadow_example_loads() -> None:
    shipped = load_paths([ROOT / "slos"])
    assert shipped.ok, [str(p) for p in shipped.problems]
    frozen = {s.id: s.freeze for s in shipped.slos if s.freeze is not None}
    assert set(frozen) == {"checkout/requests-availability", "checkout/requests-latency"}
    assert all(f.exceptions == {"change": ("security-fix", "rollback")} for f in frozen.values())
    out, err = io.StringIO(), io.StringIO()
    examples = ROOT / "deploy" / "examples"
    shadow = ROOT / "slos" / "checkout-shadow.yaml"
    code = main(["check", str(shadow), "--config", str(examples / "config.yaml")], out, err)
    assert code == 0, err.getvalue()
    [example] = load_paths([shadow]).slos
    assert example.canary is not None and example.canary.shadow and example.canary.on_burn == ()


# --- one SLO's part ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("slo", "remaining", "labels", "state", "reason"),
    [
        pytest.param(
            "availability", 0.3, {}, FreezeState.OPEN, "30% of its error budget left", id="budget left"
        ),
        pytest.param("availability", 0.0, {}, FreezeState.FROZEN, "freezes once spent", id="exactly spent"),
        pytest.param("availability", -0.5, {}, FreezeState.FROZEN, "-50%", id="overspent"),
        pytest.param(
            "availability",
            -0.5,
            {"change": "security-fix"},
            FreezeState.EXEMPT,
            "change=security-fix is exempt",
            id="a security fix is exempt",
        ),
        pytest.param(
            "availability",
            -0.5,
            {"change": "feature"},
            FreezeState.FROZEN,
            "exempt: change=security-fix|rollback",
            id="another change is not, and is told what is",
        ),
        pytest.param(
            "latency", 0.2, {}, FreezeState.FROZEN, "freezes under 25% left", id="under its own floor"
        ),
        pytest.param("latency", 0.25, {}, FreezeState.OPEN, "25%", id="at its floor is not under it"),
        pytest.param(
            "latency",
            0.2,
            {"change": "security-fix"},
            FreezeState.FROZEN,
            "freezes under 25% left",
            id="its own policy names no exceptions",
        ),
        pytest.param(
            "availability",
            None,
            {},
            FreezeState.OPEN,
            "nothing known to be spent",
            id="no traffic spends nothing",
        ),
    ],
)
def test_one_slo_freezes_its_service_while_its_budget_is_under_the_floor(
    slo: str, remaining: float | None, labels: dict[str, str], state: FreezeState, reason: str
) -> None:
    judged = freeze.judge(measured(slos()[slo], remaining), labels)
    assert judged is not None
    assert judged.state is state
    assert reason in judged.reason


def test_a_failed_evaluation_is_unknown_unless_the_caller_is_exempt_anyway() -> None:
    slo = slos()["availability"]
    unknown = freeze.judge(down(slo), {})
    exempt = freeze.judge(down(slo), {"change": "rollback"})
    assert (
        unknown is not None
        and unknown.state is FreezeState.UNKNOWN
        and "connection refused" in unknown.reason
    )
    assert exempt is not None and exempt.state is FreezeState.EXEMPT and exempt.exempt_by == "change=rollback"
    assert freeze.judge(measured(slos()["not-found"], -3.0), {}) is None  # no policy, no part


# --- when the budget comes back ---------------------------------------------------------------------------


def points(query: RecoveryQuery, errors_by_step: Mapping[int, float]) -> list[RangeSeries]:
    """A range answer with ``errors`` in step ``i`` (1 = the oldest), as the query's unit (rate or count)."""
    unit = query.step.total_seconds() if query.per_second else 1.0
    steps = round((query.end - query.start) / query.step) + 1
    values = [
        (query.start + query.step * (i - 1), errors_by_step.get(i, 0.0) / unit) for i in range(1, steps + 1)
    ]
    return [RangeSeries({}, tuple(values))]


def test_the_recovery_query_reads_each_hour_of_a_30_day_window() -> None:
    named = slos()
    events = freeze.recovery_query(named["availability"], AT)
    latency = freeze.recovery_query(named["latency"], AT)
    raw = freeze.recovery_query(named["not-found"], AT)
    assert events.step == timedelta(hours=1) and events.end == AT
    assert events.start == AT - timedelta(days=30) + timedelta(hours=1)  # the first step starts the window
    assert events.expr == 'sum((sum(rate(http_requests_total{job="checkout",code=~"5.."}[1h]))))'
    assert (events.per_second, events.ratio) == (True, False)
    assert latency.expr.startswith(
        'sum((sum(rate(http_request_duration_seconds_count{job="checkout"}[1h]))))'
    )
    assert " - sum((sum(rate(http_request_duration_seconds_bucket{" in latency.expr
    assert (raw.ratio, raw.expr) == (True, 'sum(rate(x{code="404"}[1h])) / sum(rate(x[1h]))')


@pytest.mark.parametrize(
    ("window", "step"),
    [
        pytest.param(timedelta(days=30), timedelta(hours=1), id="30d in hours"),
        pytest.param(timedelta(days=7), timedelta(minutes=14), id="7d in 720 steps"),
        pytest.param(timedelta(hours=1), timedelta(minutes=1), id="never under a minute"),
        pytest.param(timedelta(seconds=30), timedelta(seconds=30), id="a window under a minute is one step"),
    ],
)
def test_the_recovery_step(window: timedelta, step: timedelta) -> None:
    assert freeze.recovery_step(window) == step


def test_the_budget_comes_back_as_the_oldest_errors_leave_the_window() -> None:
    # 1,000,000 requests over 30d at 99.9%: a budget of 1,000 errors; -50% left means 1,500 errors.
    # 500 must leave: the 300 of the 10th hour, then half of the 400 of the 20th.
    ev = measured(slos()["availability"], -0.5)
    query = freeze.recovery_query(ev.slo, AT)
    recovery = freeze.estimate_recovery(ev, query, points(query, {10: 300.0, 20: 400.0, 30: 800.0}), AT)
    assert recovery.at == AT + timedelta(hours=19, minutes=30)
    assert not recovery.upper_bound
    assert recovery.reason.startswith(
        "expected back above zero around 2026-11-27T07:30:00Z (in about 19h30m)"
    )
    assert "assuming no new errors and traffic as steady as over the last 30d" in recovery.reason


def test_a_higher_floor_needs_more_errors_gone() -> None:
    # latency: 99% of 1,000,000 is a budget of 10,000 errors; 20% left, 25% needed: 500 errors must leave.
    ev = measured(slos()["latency"], 0.2)
    query = freeze.recovery_query(ev.slo, AT)
    recovery = freeze.estimate_recovery(ev, query, points(query, {1: 250.0, 2: 1000.0}), AT)
    assert recovery.at == AT + timedelta(hours=1, minutes=15)
    assert "back above 25%" in recovery.reason


def test_a_raw_ratio_is_weighed_by_time_alone() -> None:
    ev = measured(slos()["not-found"], -3.0)
    policy = slos()["availability"].freeze
    ev = replace(ev, slo=ev.slo.model_copy(update={"freeze": policy}))
    query = freeze.recovery_query(ev.slo, AT)
    # A 5% budget: a step at ratio 1.0 is 1/720 of the window, 1/36 of a budget; 3 budgets need 108 steps.
    answer = [RangeSeries({}, tuple((query.start + query.step * i, 1.0) for i in range(720)))]
    recovery = freeze.estimate_recovery(ev, query, answer, AT)
    assert recovery.at == AT + timedelta(hours=108)


@pytest.mark.parametrize(
    ("errors", "expected"),
    [
        pytest.param({5: 100.0}, "at the latest", id="the steps account for too few errors"),
        pytest.param({}, "at the latest", id="no error steps at all"),
    ],
)
def test_when_the_steps_cannot_explain_the_spent_budget_only_an_upper_bound_is_given(
    errors: dict[int, float], expected: str
) -> None:
    ev = measured(slos()["availability"], -0.5)
    query = freeze.recovery_query(ev.slo, AT)
    recovery = freeze.estimate_recovery(ev, query, points(query, errors), AT)
    assert recovery.upper_bound and recovery.at == AT + timedelta(days=30)
    assert expected in recovery.reason


def test_no_estimate_without_a_request_count_or_a_freeze() -> None:
    ev = measured(slos()["availability"], -0.5)
    query = freeze.recovery_query(ev.slo, AT)
    nothing = freeze.estimate_recovery(replace(ev, events=None), query, points(query, {1: 1e6}), AT)
    fine = freeze.estimate_recovery(measured(slos()["availability"], 0.5), query, [], AT)
    assert nothing.at is None and "no request count" in nothing.reason
    assert (fine.at, fine.reason) == (AT, "not frozen")


@settings(max_examples=200, deadline=None)
@given(
    errors=st.dictionaries(st.integers(1, 720), st.floats(0.0, 500.0), min_size=1, max_size=40),
    extra=st.floats(0.0, 1.0),
    below=st.sampled_from([0.0, 0.1, 0.5]),
)
def test_at_the_estimated_moment_the_budget_left_is_exactly_the_floor(
    errors: dict[int, float], extra: float, below: float
) -> None:
    total_errors = sum(errors.values())
    events = 100_000.0
    slo = slos()["availability"].model_copy(
        update={"freeze": slos()["availability"].freeze.model_copy(update={"below": below})}  # type: ignore[union-attr]
    )
    budget = slo.error_budget_float
    remaining = 1.0 - total_errors / (events * budget) - extra  # some errors the steps do not show
    ev = replace(measured(slo, remaining, events), budget_remaining=remaining)
    if not freeze.is_frozen(slo.freeze, remaining):  # type: ignore[arg-type]
        return
    query = freeze.recovery_query(slo, AT)
    recovery = freeze.estimate_recovery(ev, query, points(query, errors), AT)
    assert recovery.at is not None and recovery.at >= AT
    if recovery.upper_bound:
        assert remaining + total_errors / (events * budget) < below + 1e-9
        return

    # Replay the window: every step leaves linearly over its own length, a full window later.
    def left_at(moment: datetime) -> float:
        gone = 0.0
        for i, count in errors.items():
            leaves_from = query.start + query.step * (i - 1) - query.step + slo.window
            gone += count * min(max((moment - leaves_from) / query.step, 0.0), 1.0)
        return remaining + gone / (events * budget)

    # The estimate is said to the minute: the floor is crossed within half a minute of it.
    half = timedelta(seconds=30)
    if recovery.at > AT:
        assert left_at(recovery.at - half) <= below + 1e-9
    assert left_at(recovery.at + half) >= below - 1e-9


# --- the range query, as the Prometheus adapter sends and reads it ------------------------------------


def test_the_prometheus_source_sends_a_range_query_and_reads_its_matrix() -> None:

    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        body = {
            "status": "success",
            "warnings": ["a store was slow"],
            "data": {
                "resultType": "matrix",
                "result": [{"metric": {}, "values": [[1700000000, "0.5"], [1700003600, "NaN"]]}],
            },
        }
        return httpx.Response(200, json=body)

    async def ask() -> RangeResult:
        async with PrometheusSource(
            PrometheusConfig(url="http://prometheus.test:9090/prefix"), transport=httpx.MockTransport(handler)
        ) as prometheus:
            source: RangeSource = prometheus  # the port the server's recovery estimates read through
            start = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
            return await source.query_range("up", start, start + timedelta(hours=1), timedelta(minutes=14))

    result = asyncio.run(ask())
    [request] = sent
    params = dict(httpx.QueryParams(request.content.decode()))
    assert request.url.path == "/prefix/api/v1/query_range" and request.method == "POST"
    assert (params["query"], params["start"], params["end"], params["step"]) == (
        "up",
        "1700000000.000",
        "1700003600.000",
        "840",
    )
    assert params["partial_response"] == "false"
    [series] = result.series
    assert series.points == (
        (datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC), 0.5),
        (datetime(2023, 11, 14, 23, 13, 20, tzinfo=UTC), None),
    )
    assert result.warnings == ("a store was slow",)


def test_a_range_query_answered_with_a_vector_is_a_protocol_error() -> None:

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": []}})

    async def ask() -> None:
        async with PrometheusSource(
            PrometheusConfig(url="http://prometheus.test:9090"), transport=httpx.MockTransport(handler)
        ) as source:
            await source.query_range("up", AT, AT, timedelta(hours=1))

    with pytest.raises(SourceProtocolError, match="where a range query's matrix was expected"):
        asyncio.run(ask())


# --- the release decision -----------------------------------------------------------------------------


def decide(
    evaluations: Sequence[Evaluation],
    labels: Mapping[str, str] | None = None,
    canary: str | None = None,
    guards: Mapping[str, GuardStatus] | None = None,
    recoveries: Mapping[str, Recovery] | None = None,
) -> gates.Release:
    return gates.release(
        "checkout", evaluations, guards or {}, labels or {}, canary=canary, recoveries=recoveries
    )


@pytest.mark.parametrize(
    ("budgets", "asked", "allowed", "reason"),
    [
        pytest.param({}, {}, True, "releases of checkout may go", id="budget left everywhere"),
        pytest.param(
            {"availability": -0.2},
            {},
            False,
            "releases of checkout are frozen: checkout/availability has -20%",
            id="one spent budget freezes the service",
        ),
        pytest.param(
            {"availability": -0.2},
            {"labels": {"change": "security-fix"}},
            True,
            "change=security-fix is exempt",
            id="a security fix goes",
        ),
        pytest.param(
            {"availability": -0.2, "latency": 0.1},
            {"labels": {"change": "security-fix"}},
            False,
            "checkout/latency has 10%",
            id="every frozen SLO must exempt the change",
        ),
        pytest.param(
            {"availability": None},
            {},
            None,
            "no verdict for checkout: checkout/availability: its latest evaluation failed",
            id="a policy's SLO that failed leaves no verdict",
        ),
        pytest.param(
            {"availability": None, "latency": 0.1},
            {},
            False,
            "checkout/latency has 10%",
            id="but another SLO's freeze still holds",
        ),
        pytest.param(
            {"availability": None},
            {"labels": {"change": "rollback"}},
            True,
            "change=rollback is exempt",
            id="an exempt change needs no verdict",
        ),
        pytest.param(
            {"shadowing": "mismatching"},
            {"canary": "v2"},
            False,
            "shadow checkout/shadow refuses version=v2",
            id="a burning shadow version is refused",
        ),
        pytest.param(
            {"shadowing": "mismatching"},
            {"canary": "v2", "labels": {"change": "security-fix"}},
            False,
            "refuses version=v2",
            id="the freeze's exceptions do not lift a shadow's refusal",
        ),
        pytest.param(
            {"shadowing": "mismatching"},
            {"canary": "v3"},
            True,
            "no traffic from version=v3",
            id="another version is not refused",
        ),
        pytest.param(
            {"shadowing": "clean"},
            {"canary": "v2", "guards": {"checkout/shadow": GuardStatus(open_incidents=frozenset({"v2"}))}},
            False,
            "an incident is open for version=v2",
            id="an open incident refuses a shadow that looks clean now",
        ),
        pytest.param(
            {"shadowing": "mismatching"},
            {"canary": "v2", "guards": {"checkout/shadow": GuardStatus(paused=True)}},
            True,
            "guard paused for checkout/shadow: its shadow is not enforced",
            id="a paused guard does not enforce its shadow",
        ),
        pytest.param(
            {"shadowing": "mismatching"}, {}, True, "may go", id="without a version no shadow is asked"
        ),
    ],
)
def test_release_decisions(
    budgets: dict[str, Any], asked: dict[str, Any], allowed: bool | None, reason: str
) -> None:
    decision = decide(service(**budgets), **asked)
    assert decision.allowed is allowed
    assert reason in decision.reason
    json.dumps(gates.release_data(decision), allow_nan=False)


def test_the_gate_answers_shape_the_decision_for_each_caller() -> None:
    soon = Recovery(AT + timedelta(days=3), "expected back above zero around ...")
    frozen = decide(service(availability=-0.2), recoveries={"checkout/availability": soon})
    fine = decide(service())
    unknown = decide(service(availability=None))
    assert gates.flagger_confirm_rollout(frozen).status == 403
    assert gates.flagger_confirm_rollout(fine).status == 200
    assert gates.flagger_confirm_rollout(unknown).status == 503
    body = gates.flagger_confirm_rollout(frozen).body
    assert body["rollout"] is False and body["recoveryAt"] == "2026-11-29T12:00:00Z"
    assert "Budget expected back above zero" in body["reason"]
    metric = gates.release_metric(frozen)
    assert metric.status == 200 and metric.body["data"]["ok"] is False and metric.body["data"]["frozen"]
    [availability] = [s for s in metric.body["data"]["slos"] if s["slo"] == "checkout/availability"]
    assert availability == {
        "slo": "checkout/availability",
        "state": "frozen",
        "budgetRemaining": pytest.approx(-0.2),
        "below": 0.0,
        "exemptBy": None,
        "reason": availability["reason"],
        "recoveryAt": "2026-11-29T12:00:00Z",
        "recovery": "expected back above zero around ...",
    }
    assert gates.release_metric(fine).body["data"]["ok"] is True
    no_verdict = gates.release_metric(unknown)
    assert no_verdict.status == 503 and no_verdict.body["data"]["ok"] is False  # the CLI reads it too


def test_the_latest_recovery_is_the_services() -> None:
    first = Recovery(AT + timedelta(days=1), "one")
    last = Recovery(AT + timedelta(days=9), "nine")
    both = decide(
        service(availability=-0.2, latency=0.1),
        recoveries={"checkout/availability": first, "checkout/latency": last},
    )
    unknown = decide(service(availability=-0.2, latency=0.1), recoveries={"checkout/availability": first})
    assert both.recovery == last
    assert unknown.recovery is None and "Recovery: one" in unknown.reason


def test_a_service_without_a_policy_is_refused_as_a_configuration_error() -> None:
    without = [measured(slos()["not-found"], -3.0)]
    for answer in (
        gates.flagger_confirm_rollout(decide(without)),
        gates.release_metric(decide(without, canary="v2")),
    ):
        assert answer.status == 400
        assert "declares a freeze: policy" in answer.body["error"]
    only_shadow = decide([shadow("mismatching")], canary="v2")
    assert gates.release_metric(only_shadow).status == 200  # a shadow alone is something to refuse with


def test_the_shadow_is_never_rolled_back_but_its_promotion_waits() -> None:
    burning = shadow("mismatching")
    rollback = gates.flagger_rollback("checkout/shadow", burning, GuardStatus(), "v2")
    incident = gates.flagger_rollback(
        "checkout/shadow", shadow("clean"), GuardStatus(open_incidents=frozenset({"v2"})), "v2"
    )
    promotion = gates.flagger_promotion("checkout/shadow", burning, GuardStatus(), "v2")
    clean = gates.flagger_promotion("checkout/shadow", shadow("clean"), GuardStatus(), "v2")
    quiet = gates.flagger_promotion("checkout/shadow", shadow("quiet"), GuardStatus(), "v2")
    argo = gates.argo_metric("checkout/shadow", burning, GuardStatus(), "v2").body["data"]
    assert (rollback.status, rollback.body["rollback"]) == (403, False)
    assert "a shadow (kind: shadow) that serves no user: never rolled back" in rollback.body["reason"]
    assert "its promotion is refused instead: version=v2 over" in rollback.body["reason"]
    assert incident.status == 403 and "an incident is open for version=v2" in incident.body["reason"]
    assert promotion.status == 403 and clean.status == 200 and quiet.status == 403
    assert quiet.body["events_needed"] is not None or "requests a promotion needs" in quiet.body["reason"]
    assert (argo["ok"], argo["promote"], argo["baseline"]) == (False, False, None)


# --- Flagger's payload ------------------------------------------------------------------------------


def test_a_confirm_rollout_payload_carries_the_service_the_version_and_the_labels() -> None:
    payload = {
        "name": "checkout",
        "namespace": "shop",
        "phase": "Progressing",
        "checksum": "85d557f47b",
        "metadata": {
            "service": "checkout",
            "canary": "v2",
            "token": TOKEN,
            "change": "security-fix",
            "team": "",
        },
    }
    hook = gates.parse_flagger_release_hook(json.dumps(payload).encode())
    assert (hook.service, hook.canary, hook.labels, hook.token) == (
        "checkout",
        "v2",
        {"change": "security-fix"},
        TOKEN,
    )
    assert TOKEN not in repr(hook)
    by_slo = gates.parse_flagger_release_hook(
        json.dumps({"metadata": {"slo": "checkout/availability"}}).encode()
    )
    assert (by_slo.service, by_slo.canary, by_slo.labels) == ("checkout", None, {})
    with pytest.raises(ValueError, match="metadata needs service"):
        gates.parse_flagger_release_hook(b'{"metadata": {"canary": "v2"}}')
    with pytest.raises(ValueError, match="'change-type' is not a label name"):
        gates.parse_flagger_release_hook(b'{"metadata": {"service": "a", "change-type": "x"}}')


# --- the routes, through fakes that read answers as Flagger and Argo do ----------------------------


@dataclass
class ServiceView:
    """The daemon as the server sees it; tests set the evaluations and the guard per SLO."""

    evaluations: list[Evaluation] = field(default_factory=list)
    guards: dict[str, GuardStatus] = field(default_factory=dict)
    ready: bool = True

    def latest_evaluations(self) -> Sequence[Evaluation]:
        return list(self.evaluations)

    def config_problems(self) -> Sequence[str]:
        return []

    def readiness(self) -> tuple[bool, str]:
        return self.ready, "ok"

    def history(self, slo_id: str, since: datetime, limit: int) -> list[dict[str, Any]]:
        return []

    def verdict_changes(self, slo_id: str, since: datetime) -> list[dict[str, Any]]:
        return []

    def guard_status(self, slo_id: str) -> tuple[bool, frozenset[str]]:
        guard = self.guards.get(slo_id, GuardStatus())
        return guard.paused, guard.open_incidents


@dataclass
class FakeHistory:
    """A range source answering the recovery query: the errors of the 10th hour, or a failure, or slowly."""

    errors: float = 1000.0  # at -50% of a 1,000,000-request 99.9% budget, 500 must leave: half of these
    delay: float = 0.0
    fail: bool = False
    asked: list[str] = field(default_factory=list)

    async def query_range(self, expr: str, start: datetime, end: datetime, step: timedelta) -> RangeResult:
        self.asked.append(expr)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise SourceUnavailable("connection refused", query=expr)
        series = ((start + step * 9, self.errors / step.total_seconds()),)
        return RangeResult((RangeSeries({}, series),))


@contextmanager
def serving(view: ServiceView, history: FakeHistory | None = None, token: str | None = None) -> Iterator[str]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    port = free_port()
    server = HttpServer(create_app(view, Metrics(), token, history=history), "127.0.0.1", port)
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=15)
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()


class ReleaseFlagger(FakeFlagger):
    YES: ClassVar[dict[str, str]] = {**FakeFlagger.YES, "confirm-rollout": "start"}
    NO: ClassVar[dict[str, str]] = {**FakeFlagger.NO, "confirm-rollout": "wait"}


def confirm_rollout(base: str, **metadata: str) -> Any:
    return ReleaseFlagger().call(
        "confirm-rollout", f"{base}/gates/flagger/confirm-rollout", {"service": "checkout", **metadata}
    )


def release_metric(base: str, query: str = "", token: str | None = None) -> FakeArgo:
    return FakeArgo(
        url=f"{base}/gates/release/checkout{query}",
        headers={} if token is None else {"Authorization": f"Bearer {token}"},
        json_path="{$.data}",
        success_condition="result.ok == true",
    )


@pytest.mark.parametrize(
    ("budgets", "metadata", "decision", "status"),
    [
        pytest.param({"availability": -0.5}, {}, "wait", 403, id="a spent budget keeps the canary waiting"),
        pytest.param(
            {"availability": -0.5}, {"change": "security-fix"}, "start", 200, id="a security fix starts"
        ),
        pytest.param({}, {}, "start", 200, id="budget left starts it"),
        pytest.param({"availability": None}, {}, "wait", 503, id="no verdict waits too"),
    ],
)
def test_flagger_confirm_rollout(
    budgets: dict[str, float | None], metadata: dict[str, str], decision: str, status: int
) -> None:
    view = ServiceView(service(**budgets))  # type: ignore[arg-type]
    with serving(view, FakeHistory()) as base:
        reply = confirm_rollout(base, **metadata)
    assert (reply.decision, reply.status) == (decision, status)
    assert reply.body["rollout"] is (status == 200) and reply.body["service"] == "checkout"
    if status == 403:
        assert reply.body["recoveryAt"] == "2026-11-26T21:30:00Z"  # half of the 10th hour's errors
        assert "checkout/availability has -50%" in reply.body["reason"]


def test_the_release_metric_as_argo_measures_it() -> None:
    view = ServiceView(service(availability=-0.5, shadowing="mismatching"))
    with serving(view, FakeHistory(), token=TOKEN) as base, httpx.Client(timeout=10) as http:
        frozen = release_metric(base, token=TOKEN).measure()
        exempt = release_metric(base, "?change=security-fix", token=TOKEN).measure()
        refused = release_metric(base, "?change=security-fix&canary=v2", token=TOKEN).measure()
        without_token = release_metric(base).measure()
        bad_label = http.get(
            f"{base}/gates/release/checkout?change-type=x", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        unknown = http.get(f"{base}/gates/release/nope", headers={"Authorization": f"Bearer {TOKEN}"})
        view.evaluations = service(availability=None)
        no_verdict = release_metric(base, token=TOKEN)
        phase = no_verdict.measure()
    assert (frozen, exempt, refused, without_token) == ("Failed", "Successful", "Failed", "Error")
    assert bad_label.status_code == 400 and "'change-type' is not a label name" in bad_label.json()["error"]
    assert unknown.status_code == 404 and "no SLO of service 'nope'" in unknown.json()["error"]
    assert phase == "Error"  # 503: tolerated consecutiveErrorLimit times, never a Failed measurement


def test_before_the_first_cycle_there_is_no_verdict() -> None:
    with serving(ServiceView([], ready=False)) as base:
        reply = confirm_rollout(base)
    assert reply.status == 503 and "no evaluation of checkout's SLOs yet" in reply.body["error"]


def test_a_wrong_token_is_refused_without_echoing_it() -> None:
    with serving(ServiceView(service()), token=TOKEN) as base:
        wrong = confirm_rollout(base, token="nope")
        right = confirm_rollout(base, token=TOKEN)
    assert wrong.status == 401 and "nope" not in json.dumps(wrong.body)
    assert right.status == 200


def test_the_recovery_estimate_is_cached_and_never_holds_a_gate_for_long() -> None:
    ev = measured(slos()["availability"], -0.5)

    async def scenario() -> tuple[list[Recovery], list[str], list[Recovery]]:
        fast = FakeHistory()
        estimates = RecoveryEstimates(fast)
        cached = [await estimates.get(ev), await estimates.get(ev)]
        slow = RecoveryEstimates(FakeHistory(delay=0.5), wait=0.05)
        waited = [await slow.get(ev)]
        await asyncio.sleep(0.7)
        waited.append(await slow.get(ev))
        failing = RecoveryEstimates(FakeHistory(fail=True))
        waited.append(await failing.get(ev))
        none = RecoveryEstimates(None)
        waited.append(await none.get(ev))
        return cached, fast.asked, waited

    cached, asked, (pending, landed, failure, no_source) = asyncio.run(scenario())
    assert cached[0] == cached[1] and len(asked) == 1  # one range query for both asks
    assert cached[0].at == AT + timedelta(hours=9, minutes=30)
    assert pending.at is None and "still being estimated" in pending.reason
    assert landed.at == AT + timedelta(hours=9, minutes=30)
    assert failure.at is None and "the metrics source failed" in failure.reason
    assert no_source.at is None and "no metrics source" in no_source.reason


# --- budgetguard gate ----------------------------------------------------------------------------------


def gate(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["gate", *argv], out, err)
    return code, out.getvalue(), err.getvalue()


def test_budgetguard_gate_exit_codes_and_what_it_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    monkeypatch.delenv("BUDGETGUARD_API_TOKEN", raising=False)
    view = ServiceView(service(availability=-0.5))
    with serving(view, FakeHistory(), token=TOKEN) as base:
        frozen = gate("checkout", "--url", base, "--token-file", str(token_file))
        exempt = gate(
            "checkout", "--url", base, "--token-file", str(token_file), "--label", "change=rollback"
        )
        as_json = gate("checkout", "--url", base, "--token-file", str(token_file), "--json")
        unauthorised = gate("checkout", "--url", base)
        monkeypatch.setenv("BUDGETGUARD_API_TOKEN", TOKEN)
        unknown = gate("nope", "--url", base)
        view.evaluations = service(availability=None)
        no_verdict = gate("checkout", "--url", base)
    unreachable = gate("checkout", "--url", f"http://127.0.0.1:{free_port()}", "--timeout", "2s")

    code, out, _ = frozen
    assert code == 4
    assert out.startswith("frozen: releases of checkout must wait\n")
    assert "\n  frozen   checkout/availability has -50% of its 30d error budget left" in out
    assert "recovery: expected back above zero around 2026-11-26T21:30:00Z" in out
    assert "expected to recover: 2026-11-26T21:30:00Z" in out
    assert exempt[0] == 0 and exempt[1].startswith("go: releases of checkout may go")
    assert "  exempt   checkout/availability has -50%" in exempt[1]
    assert "change=rollback is exempt" in exempt[1]
    assert as_json[0] == 4 and json.loads(as_json[1])["data"]["frozen"] is True
    assert unauthorised[0] == 2 and "HTTP 401" in unauthorised[2]
    assert unknown[0] == 2 and "no SLO of service 'nope'" in unknown[2]
    assert no_verdict[0] == 3 and no_verdict[1].startswith("no verdict for checkout")
    assert unreachable[0] == 3 and "no answer from budgetguard" in unreachable[2]


def test_budgetguard_gate_is_documented() -> None:
    # The README's "Release freeze" and "Shadow traffic" sections moved to the docs site (issue 11).
    freeze_doc = (ROOT / "docs" / "how-to" / "release-freeze.md").read_text()
    shadow_doc = (ROOT / "docs" / "how-to" / "shadow-traffic.md").read_text()
    out = io.StringIO()
    assert main(["gate", "--help"], out, io.StringIO()) == 0
    for flag in ("--label", "--canary", "--url", "--token-file", "--json"):
        assert flag in freeze_doc, flag
    assert "budgetguard gate" in freeze_doc and "# Freeze releases on a spent budget" in freeze_doc
    assert "budgetguard gate checkout --canary v2" in shadow_doc and "# Guard shadow traffic" in shadow_doc
    cli_doc = (ROOT / "budgetguard" / "cli" / "__init__.py").read_text()
    assert re.search(r"gate\s+0 the release may go, 4 frozen", cli_doc)


# --- the deploy examples ------------------------------------------------------------------------------


def _served(url: str, base: str) -> str:
    parts = httpx.URL(url)
    assert (parts.host, parts.port) == ("budgetguard.monitoring", 8731), url
    return f"{base}{parts.raw_path.decode()}"


def test_the_flagger_example_confirm_rollout_hook_decides_as_documented() -> None:
    canary = yaml.safe_load((ROOT / "deploy" / "flagger" / "canary.yaml").read_text())
    [hook] = [h for h in canary["spec"]["analysis"]["webhooks"] if h["type"] == "confirm-rollout"]
    assert hook["metadata"]["service"] == "checkout" and hook["timeout"] == "10s"
    token = hook["metadata"]["token"]
    flagger = ReleaseFlagger(canary["metadata"]["name"], canary["metadata"]["namespace"])
    outcomes = {}
    for name, budgets in (("spent", {"availability": -0.5}), ("fine", {})):
        with serving(ServiceView(service(**budgets)), FakeHistory(), token=token) as base:  # type: ignore[arg-type]
            outcomes[name] = flagger.call(
                "confirm-rollout", _served(hook["url"], base), hook["metadata"]
            ).decision
            fix = {**hook["metadata"], "change": "security-fix"}
            outcomes[f"{name}, security fix"] = flagger.call(
                "confirm-rollout", _served(hook["url"], base), fix
            ).decision
    assert outcomes == {
        "spent": "wait",
        "spent, security fix": "start",
        "fine": "start",
        "fine, security fix": "start",
    }


def test_the_argo_release_template_measures_as_documented() -> None:
    template = yaml.safe_load((ROOT / "deploy" / "argo-rollouts" / "release-gate.yaml").read_text())
    assert (template["apiVersion"], template["kind"]) == ("argoproj.io/v1alpha1", "AnalysisTemplate")
    [metric] = template["spec"]["metrics"]
    web = metric["provider"]["web"]
    assert web.get("method", "GET") == "GET" and web["jsonPath"] == "{$.data}"
    defaults = {a["name"]: a.get("value") for a in template["spec"]["args"]}
    secret = next(a["name"] for a in template["spec"]["args"] if "valueFrom" in a)

    def render(text: str, args: Mapping[str, str]) -> str:
        return re.sub(r"\{\{\s*args\.([\w-]+)\s*\}\}", lambda m: args[m.group(1)], text)

    phases = {}
    cases = {
        "spent": ({"availability": -0.5}, {}),
        "spent, security fix": ({"availability": -0.5}, {"change": "security-fix"}),
        "fine, mismatching shadow": ({"shadowing": "mismatching"}, {}),
        "fine": ({}, {}),
    }
    for name, (budgets, extra) in cases.items():
        args = {
            **{k: v or "" for k, v in defaults.items()},
            "service": "checkout",
            "version": "v2",
            secret: TOKEN,
        }
        args.update(extra)
        with serving(ServiceView(service(**budgets)), FakeHistory(), token=TOKEN) as base:  # type: ignore[arg-type]
            fake = FakeArgo(
                url=_served(render(web["url"], args), base),
                headers={h["key"]: render(h["value"], args) for h in web["headers"]},
                json_path=web["jsonPath"],
                success_condition=metric.get("successCondition"),
                failure_condition=metric.get("failureCondition"),
                timeout=float(web["timeoutSeconds"]),
            )
            phases[name] = fake.measure()
    assert phases == {
        "spent": "Failed",
        "spent, security fix": "Successful",
        "fine, mismatching shadow": "Failed",
        "fine": "Successful",
    }
