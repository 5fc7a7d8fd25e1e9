"""The latency guard (#6): "if the p99 latency of the canary exceeds 500ms for more than two minutes,
revert it". A quantile over a classic histogram is judged as the share of requests slower than the
threshold, with the error ratio's confidence bounds, and acted on once the breach has lasted ``for``
by the evaluation timestamps.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import beta

from budgetguard.core.canary import (
    CanaryEvaluation,
    CanaryKnobs,
    Counts,
    Hold,
    Streak,
    judge,
    judge_latency,
    judge_versions,
)
from budgetguard.core.guard import Decision, Delivery, Incident, decide
from budgetguard.core.policy import Evaluation
from budgetguard.core.ports import EventKind, QueryResult, Sample
from budgetguard.core.queries import PART_LABEL, Part, plan, plan_latency
from budgetguard.core.records import canary_from_record, canary_to_record
from budgetguard.core.spec import SLO
from budgetguard.core.verdict import Verdict
from budgetguard.engine import Engine
from budgetguard.loader import load_text
from budgetguard.recording import RecordingEngine
from tests.helpers import slo_from
from tests.test_recording import Recorded

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

# The article's rule, word for word: p99 of the canary version above 500ms for more than two minutes.
LATENCY = """
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
      baseline: v1
      windows: [1m]
      resolve_after: 2m
      latency:
        metric: http_request_duration_seconds
        selector: job="checkout"
        quantile: 0.99
        threshold_seconds: 0.5
        for: 2m
      on_burn: [abort]
      notify: [pager]
"""
SLO_ = slo_from(LATENCY)
assert SLO_.canary is not None and SLO_.canary.latency is not None
GUARD = SLO_.canary.latency
KNOBS = CanaryKnobs(burn_limit=14.4)
DELIVERY = Delivery(resolvable=frozenset({"pager"}))

# Per minute of traffic: the stable version's requests are all fast; the canary's error ratio is clean.
FAST, SLOW, SPIKE, FEW = Counts(0, 820), Counts(34, 820), Counts(300, 820), Counts(1, 20)
CLEAN = Counts(0, 6_000)


# --- the declaration -----------------------------------------------------------------------------


def test_the_articles_rule_resolves_to_a_share_of_slow_requests_held_for_two_minutes() -> None:
    assert (GUARD.quantile_name, GUARD.threshold_seconds, GUARD.hold) == ("p99", 0.5, timedelta(minutes=2))
    assert GUARD.measured_over == timedelta(minutes=1)  # like histogram_quantile(0.99, rate(...[1m]))
    assert GUARD.slow_ratio_limit == 0.01  # exactly 1 - 0.99, not 0.010000000000000009


def problems(text: str) -> list[str]:
    slos, found = load_text(text, "slos/checkout.yaml")
    assert not slos
    return [str(p) for p in found]


def with_latency(block: str) -> str:
    return LATENCY.replace(
        """        quantile: 0.99
        threshold_seconds: 0.5
        for: 2m
""",
        block,
    )


@pytest.mark.parametrize(
    ("block", "fragments"),
    [
        pytest.param(
            "        quantile: 99\n        threshold_seconds: 0.5\n        for: 2m\n",
            [":19", "canary.latency.quantile", "not a percent: write 0.99 for p99"],
            id="a quantile written as a percent is refused with the fraction to write",
        ),
        pytest.param(
            "        quantile: 0.99\n        threshold_seconds: 0.5\n        for: 30s\n",
            [":16", "slos[0].canary.latency", "must be shorter than 'for' (30s)", "window: 15s"],
            id="a window as long as for would act on shorter breaches, so it is refused with a window",
        ),
        pytest.param(
            "        quantile: 0.99\n        threshold_seconds: 0.5\n        for: 2m\n        window: 2m\n",
            ["latency window (2m) must be shorter than 'for' (2m)"],
            id="an explicit window as long as for is refused too",
        ),
        pytest.param(
            "        quantile: 0.99\n        threshold_seconds: 0\n        for: 2m\n",
            [":20", "canary.latency.threshold_seconds", "greater than 0"],
            id="a zero threshold is refused",
        ),
        pytest.param(
            "        quantile: 0.99\n        threshold_seconds: 0.5\n        for: soon\n",
            [":21", "canary.latency.for", "'soon' is not a Prometheus duration"],
            id="for must be a duration",
        ),
        pytest.param(
            "        quantile: 0.99\n        threshold_seconds: 0.5\n        hold: 2m\n",
            [
                ":21",
                "unknown field 'hold'",
                "allowed here: metric, selector, threshold_seconds, quantile, for",
            ],
            id="an unknown field lists the allowed ones as written in files",
        ),
        pytest.param(
            "        threshold_seconds: 0.5\n        for: 2m\n",
            ["canary.latency.quantile", "required field 'quantile' is missing"],
            id="the quantile is required",
        ),
    ],
)
def test_latency_fields_are_validated_with_file_line_field_and_fix(block: str, fragments: list[str]) -> None:
    [message] = problems(with_latency(block))
    assert message.startswith("slos/checkout.yaml:") and "slo 'availability'" in message
    for fragment in fragments:
        assert fragment in message


def test_the_histogram_is_named_and_selected_as_for_the_latency_sli() -> None:
    text = LATENCY.replace(
        "metric: http_request_duration_seconds", "metric: http_request_duration_seconds_bucket"
    )
    [message] = problems(text)
    assert "canary.latency.metric" in message and "without '_bucket'" in message
    text = LATENCY.replace('selector: job="checkout"', 'selector: job="checkout", le="0.5"')
    [message] = problems(text)
    assert "do not match on 'le'" in message


def test_for_may_be_zero_to_act_on_the_first_burning_verdict() -> None:
    slo = slo_from(with_latency("        quantile: 0.99\n        threshold_seconds: 0.5\n        for: 0s\n"))
    assert slo.canary is not None and slo.canary.latency is not None
    assert slo.canary.latency.hold == timedelta(0)


# --- judging one version -------------------------------------------------------------------------


def test_p99_above_500ms_is_more_than_one_percent_slower_with_confidence() -> None:
    check = judge_latency(SLOW, FAST, GUARD, KNOBS, name="version=v2")
    assert check.verdict is Verdict.BURNING
    # 34 of 820 slower than 500ms: 4.15%; the exact one-sided 95% lower bound is above 1%
    assert check.slow_ratio == pytest.approx(34 / 820)
    assert check.lower_bound == pytest.approx(float(beta.ppf(0.05, 34, 820 - 34 + 1)), rel=1e-9)
    assert check.held_reason(timedelta(minutes=2, microseconds=4_000)) == (
        "p99 latency of version=v2 above 500ms for 2m: 4.15% of 820 requests in the last 1m slower than "
        "500ms, at least 3.07% with 95% confidence (p99 allows 1%); and worse than the baseline's 0% (p=4e-11)"
    )


@settings(max_examples=200, deadline=None)
@given(total=st.integers(1, 5_000), share=st.floats(0, 0.2))
def test_the_latency_verdict_is_the_error_ratio_judgement_of_the_slow_share(total: int, share: float) -> None:
    slow = Counts(math.floor(total * share), total)
    check = judge_latency(slow, None, GUARD, KNOBS)
    same = judge(slow, None, 0.01, replace(KNOBS, burn_limit=1.0))
    assert (check.verdict, check.lower_bound, check.upper_bound) == (
        same.verdict,
        same.lower_bound,
        same.upper_bound,
    )
    assert (check.verdict is Verdict.BURNING) == (check.lower_bound > 0.01)
    assert (check.verdict is Verdict.HEALTHY) == (check.upper_bound <= 0.01)


@pytest.mark.parametrize(
    ("slow", "verdict", "fragment"),
    [
        pytest.param(
            Counts(2, 100),
            Verdict.INCONCLUSIVE,
            "2% of 100 requests in the last 1m slower than 500ms, between 0.357% and 6.16%",
            id="2 slow in 100 is above 1% but proves nothing: inconclusive",
        ),
        pytest.param(
            Counts(0, 298),
            Verdict.INCONCLUSIVE,
            "about 1 more request at this share would decide",
            id="298 fast requests are one short of showing p99 within 500ms",
        ),
        pytest.param(
            Counts(0, 299),
            Verdict.HEALTHY,
            "p99 latency of canary within 500ms: 0% of 299 requests",
            id="299 fast requests show it (0.99^299 <= 5%)",
        ),
        pytest.param(
            Counts(0, 0),
            Verdict.INCONCLUSIVE,
            "no requests in the last 1m; 299 requests all faster than 500ms would show",
            id="no requests are not judged, with the requests that would decide",
        ),
        pytest.param(
            None,
            Verdict.INCONCLUSIVE,
            "no http_request_duration_seconds_bucket series at le=0.5; threshold_seconds must be one of",
            id="a histogram without a bucket at the threshold cannot be judged",
        ),
    ],
)
def test_too_few_requests_are_inconclusive_with_the_requests_needed(
    slow: Counts | None, verdict: Verdict, fragment: str
) -> None:
    check = judge_latency(slow, None, GUARD, KNOBS)
    assert check.verdict is verdict
    assert fragment in check.reason


def test_a_whole_service_slow_is_not_blamed_on_the_canary() -> None:
    check = judge_latency(SLOW, Counts(2_000, 50_000), GUARD, KNOBS, name="version=v2")
    assert check.verdict is Verdict.INCONCLUSIVE
    assert "above 500ms, but so is the baseline's" in check.reason
    assert "the service as a whole is slow" in check.reason


def versions(slo: SLO, *, v2: Counts = CLEAN, latency: Counts | None = FAST) -> tuple[CanaryEvaluation, ...]:
    assert slo.canary is not None
    counts = {w: {"v1": Counts(0, 60_000), "v2": v2} for w in slo.canary.windows}
    return judge_versions(
        slo.canary, slo.error_budget, counts, {"v1": 1e6}, {"v1": Counts(0, 50_000), "v2": latency}
    )


def test_a_breach_that_must_last_leaves_the_version_inconclusive_until_the_guard_acts() -> None:
    [v2] = versions(SLO_, latency=SLOW)
    assert v2.verdict is Verdict.INCONCLUSIVE and not v2.healthy_enough  # neither halted nor promoted
    assert v2.latency is not None and v2.latency.verdict is Verdict.BURNING
    assert v2.reason.endswith("; acting once it has lasted 2m")
    assert v2.judgement.verdict is Verdict.HEALTHY  # the error ratio's own judgement is untouched
    at_once = slo_from(
        with_latency("        quantile: 0.99\n        threshold_seconds: 0.5\n        for: 0s\n")
    )
    [now] = versions(at_once, latency=SLOW)
    assert now.verdict is Verdict.BURNING and now.reason.startswith("p99 latency of version=v2 above 500ms")


def test_healthy_needs_both_checks_healthy() -> None:
    [v2] = versions(SLO_, latency=Counts(0, 5_000))
    assert v2.verdict is Verdict.HEALTHY and v2.healthy_enough
    assert "p99 latency of version=v2 within 500ms" in v2.reason
    [few] = versions(SLO_, latency=FEW)
    assert few.verdict is Verdict.INCONCLUSIVE and not few.healthy_enough
    [burning] = versions(SLO_, v2=Counts(600, 6_000), latency=Counts(0, 5_000))
    assert burning.verdict is Verdict.BURNING and burning.reason.startswith("version=v2 over 1m")


def test_the_latency_check_survives_the_record_round_trip() -> None:
    [v2] = versions(SLO_, latency=SLOW)
    record = canary_to_record(v2)
    assert record["latency"]["for"] == "2m" and record["latency"]["slow"] == 34
    assert canary_from_record(record) == v2


# --- the duration clock ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        pytest.param([(0, True), (30, True), (90, True)], (0, 90), id="an unbroken run holds from its first"),
        pytest.param([(0, True), (30, False), (60, True)], (60, 60), id="an interruption starts it again"),
        pytest.param(
            [(0, True), (90, True), (30, True)], (30, 30), id="time going backwards starts it again"
        ),
        pytest.param([(0, True), (0, True)], (0, 0), id="the same instant twice holds for nothing"),
        pytest.param([(0, False)], None, id="no breach, no clock"),
    ],
)
def test_the_hold_is_measured_by_the_evaluation_timestamps(
    script: list[tuple[int, bool]], expected: tuple[int, int] | None
) -> None:
    hold = Hold()
    for second, burning in script:
        hold = hold.advance(burning, T0 + timedelta(seconds=second))
    if expected is None:
        assert hold == Hold() and hold.held == timedelta(0)
    else:
        assert (hold.since, hold.last) == tuple(T0 + timedelta(seconds=s) for s in expected)
        assert hold.held == timedelta(seconds=expected[1] - expected[0])


def evaluation(at: datetime, latency: Counts | None = SLOW, v2: Counts = CLEAN) -> Evaluation:
    return Evaluation(SLO_, at, Verdict.HEALTHY, "service", canaries=versions(SLO_, v2=v2, latency=latency))


class Guard:
    """Drives decide() cycle after cycle, keeping incidents and streaks like the daemon does."""

    def __init__(self) -> None:
        self.open: dict[str, Incident] = {}
        self.streaks: dict[tuple[str, str], Streak] = {}
        self.decisions: list[Decision] = []
        self.paused = False

    def step(self, ev: Evaluation) -> Decision:
        decision, self.streaks = decide(
            ev, list(self.open.values()), self.streaks, paused=self.paused, delivery=DELIVERY
        )
        for incident in (*decision.opened, *decision.updated):
            self.open[incident.id] = incident
        for incident in decision.resolved:
            self.open.pop(incident.id)
        self.decisions.append(decision)
        return decision

    def run(self, seconds: list[float], latency: Counts | None = SLOW) -> list[float]:
        """Evaluate at each offset; the offsets at which an incident opened."""
        return [s for s in seconds if self.step(evaluation(T0 + timedelta(seconds=s), latency)).opened]

    @property
    def sent(self) -> list[tuple[str, EventKind]]:
        return [(e.action, e.request.event) for d in self.decisions for e in d.outbox]


@pytest.mark.parametrize(
    "every",
    [pytest.param(10, id="every 10s"), pytest.param(60, id="every minute"), pytest.param(45, id="every 45s")],
)
def test_an_incident_opens_once_the_breach_has_lasted_for_however_often_it_is_evaluated(every: int) -> None:
    g = Guard()
    opened = g.run([every * i for i in range(20)])
    # the first evaluation at least 2m after the first burning one; then nothing more (one incident)
    assert opened == [math.ceil(120 / every) * every]
    assert g.sent == [("abort", EventKind.TRIGGER), ("pager", EventKind.TRIGGER)]


def test_the_incident_reads_in_the_articles_terms() -> None:
    g = Guard()
    notes = [g.step(evaluation(T0 + timedelta(seconds=s))).notes for s in (0, 60)]
    assert notes[1] == (
        "checkout/availability: p99 latency of version=v2 above 500ms for 1m of the 2m needed",
    )
    [incident] = g.step(evaluation(T0 + timedelta(minutes=2))).opened
    assert incident.reason.startswith("p99 latency of version=v2 above 500ms for 2m: 4.15% of 820 requests")
    assert g.decisions[-1].outbox[0].request.reason == incident.reason


def test_a_breach_shorter_than_for_opens_nothing_and_an_interruption_restarts_the_clock() -> None:
    g = Guard()
    script = [(0, SPIKE), (30, SPIKE), (60, SPIKE), (90, FAST), (120, SLOW), (150, SLOW), (180, SLOW)]
    for second, latency in script:
        assert not g.step(evaluation(T0 + timedelta(seconds=second), latency)).opened
    assert g.run([239]) == []  # 1m59s since the breach started again at 120s
    assert g.run([240]) == [240]


def test_an_undecided_verdict_interrupts_the_breach_too() -> None:
    g = Guard()
    g.run([0, 60])
    g.step(evaluation(T0 + timedelta(seconds=90), FEW))  # too few requests to say it is still slow
    assert g.run([120, 180, 239]) == []
    assert g.run([240]) == [240]


def test_the_clock_going_backwards_never_acts_early() -> None:
    g = Guard()
    assert g.run([0, 90]) == []
    assert g.run([30]) == []  # the clock stepped back a minute: the run starts again at 30s
    assert g.run([100, 149]) == []
    assert g.run([150]) == [150]


def test_a_failed_evaluation_leaves_the_clock_running() -> None:
    g = Guard()
    g.run([0, 60])
    assert g.step(Evaluation(SLO_, T0 + timedelta(seconds=90), Verdict.ERROR, "source down")).empty
    assert g.run([120]) == [120]


def test_paused_the_clock_runs_and_resumed_past_for_it_acts_at_once() -> None:
    g = Guard()
    g.paused = True
    g.run([0, 60])
    assert "paused" in g.step(evaluation(T0 + timedelta(minutes=2))).notes[0]
    g.paused = False
    assert g.run([150]) == [150]


def test_the_incident_resolves_after_staying_healthy_for_resolve_after() -> None:
    g = Guard()
    g.run([0, 60, 120])
    assert len(g.open) == 1
    g.run([180, 240], latency=Counts(0, 5_000))
    assert not g.decisions[-1].resolved
    g.run([300], latency=Counts(0, 5_000))
    [done] = g.decisions[-1].resolved
    assert "p99 latency of version=v2 within 500ms" in (done.resolution or "")
    assert g.sent[-1] == ("pager", EventKind.RESOLVE)


def test_the_error_ratio_still_acts_at_once_and_takes_the_latency_clock_with_it() -> None:
    g = Guard()
    g.run([0])
    [incident] = g.step(evaluation(T0 + timedelta(seconds=30), SLOW, v2=Counts(600, 6_000))).opened
    assert incident.reason.startswith("version=v2 over 1m: 600 errors")
    assert g.streaks[("checkout/availability", "v2")].breach == Hold()


def test_streak_advance_latency_is_immutable_and_respects_the_cooldown() -> None:
    [v2] = versions(SLO_, latency=SLOW)
    assert v2.latency is not None
    before = Streak(cooldown=timedelta(minutes=5), acted_at=T0)
    state, held = before.advance_latency(v2.latency, T0 + timedelta(minutes=1))
    assert held is None and before.breach == Hold()
    state, held = state.advance_latency(v2.latency, T0 + timedelta(minutes=3, seconds=30))
    assert held is None  # held 2m30s, but within the cooldown of the last action
    state, held = state.advance_latency(v2.latency, T0 + timedelta(minutes=5))
    assert held == timedelta(minutes=4) and state.breach == Hold()
    assert state.acted_at == T0 + timedelta(minutes=5)


# --- the queries and the engine ------------------------------------------------------------------


def test_the_guard_asks_for_the_bucket_at_the_threshold_and_the_count_per_version() -> None:
    fast, total = plan_latency(SLO_)
    assert (fast.part, fast.window, total.part) == (
        Part.LATENCY_FAST,
        timedelta(minutes=1),
        Part.LATENCY_TOTAL,
    )
    assert fast.expr == (
        'sum by (version) (rate(http_request_duration_seconds_bucket{job="checkout", le=~"0\\\\.5"}[1m]))'
    )
    assert total.expr == 'sum by (version) (rate(http_request_duration_seconds_count{job="checkout"}[1m]))'
    assert (
        plan_latency(slo_from(LATENCY.split("      latency:", maxsplit=1)[0] + "      on_burn: [abort]\n"))
        == ()
    )


class OneAnswer:
    def __init__(self, answer: QueryResult) -> None:
        self.answer = answer

    async def query(self, expr: str, at: datetime) -> QueryResult:
        return self.answer

    async def aclose(self) -> None:
        return None


def test_the_engine_reads_slow_requests_as_count_minus_bucket_per_version() -> None:
    per_second = {"v1": (100.0, 100.0), "v2": (10.0, 9.5)}  # (count, bucket at le=0.5) per second
    samples = []
    for q in (*plan(SLO_), *plan_latency(SLO_)):
        for version, (count, fast) in per_second.items():
            value = {Part.ERRORS: 0.0, Part.TOTAL: count, Part.LATENCY_TOTAL: count}.get(q.part, fast)
            samples.append(Sample({PART_LABEL: q.tag, "version": version}, value))
    samples.append(Sample({PART_LABEL: "latency_total:1m", "version": "v3"}, 1.0))  # no bucket for v3
    ev = asyncio.run(Engine(OneAnswer(QueryResult(tuple(samples)))).evaluate(SLO_, T0))
    v2, v3 = ev.canaries
    assert v2.latency is not None and v2.latency.slow is not None
    assert v2.latency.slow.errors == pytest.approx(30.0) and v2.latency.slow.total == pytest.approx(600.0)
    assert v2.latency.verdict is Verdict.BURNING  # 5% of 600 requests slower than 500ms
    assert v3.latency is not None and v3.latency.slow is None and "threshold_seconds must be" in v3.reason
    assert ev.verdict is Verdict.HEALTHY  # the service's own SLI is unaffected by the guard


def test_recording_rule_mode_reads_an_slo_with_a_latency_guard_raw() -> None:
    source = Recorded([SLO_], rps=10.0, ratio=0.0)  # its rules are loaded, but none records the histogram
    raw: list[str] = []

    class Fallback(Engine):
        async def evaluate_all(self, slos: Sequence[SLO], at: datetime) -> list[Evaluation]:
            raw.extend(s.id for s in slos)
            return [Evaluation(s, at, Verdict.HEALTHY, "raw") for s in slos]

    [ev] = asyncio.run(RecordingEngine(source, Fallback(source)).evaluate_all([SLO_], T0))
    assert raw == [SLO_.id] and "canary latency guard reads the histogram itself" in ev.query_mode
