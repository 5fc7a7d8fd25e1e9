"""Recording-rule mode: the daemon reads recorded series, one query per window for all SLOs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from budgetguard.core import rules
from budgetguard.core.errors import QueryError
from budgetguard.core.policy import Evaluation
from budgetguard.core.ports import QueryResult, Sample
from budgetguard.core.spec import SLO
from budgetguard.core.verdict import Verdict
from budgetguard.engine import Engine
from budgetguard.recording import RecordingEngine, window_query
from budgetguard.sources.prometheus import PrometheusConfig, PrometheusSource
from lab.target import MetricsTarget, metrics_target
from tests.conftest import LabFactory
from tests.helpers import slos_from

AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SLOS = """
version: budgetguard/v1
service: checkout
slos:
  - name: availability
    objective: 99.9
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="checkout",code="500"}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="checkout"}[{{.window}}]))
  - name: by-version
    objective: 99.9
    sli:
      events:
        error_query: sum by (version) (rate(http_requests_total{job="checkout",code="500"}[{{.window}}]))
        total_query: sum by (version) (rate(http_requests_total{job="checkout"}[{{.window}}]))
    canary: {label: version, windows: [10s, 30s]}
"""


class Recorded:
    """A source holding recorded series as Prometheus would, answering the recording engine's queries."""

    def __init__(self, slos: list[SLO], rps: float, ratio: float, loaded: list[SLO] | None = None) -> None:
        self.asked: list[str] = []
        self.broken: set[str] = set()
        self.meta = []
        self.series: dict[str, list[Sample]] = {}
        for slo in loaded if loaded is not None else slos:
            ident = {rules.SERVICE_LABEL: slo.service, rules.SLO_LABEL: slo.name}
            self.meta.append(Sample({**ident, rules.HASH_LABEL: rules.rules_hash(slo)}, 0.999))
            for w in slo.windows():
                query = window_query(w)
                for kind, value in (("errors", rps * ratio), ("requests", rps)):
                    name = rules.series_name(kind, w)
                    self.series.setdefault(query, []).append(Sample({"__name__": name, **ident}, value))

    async def query(self, expr: str, at: datetime) -> QueryResult:
        self.asked.append(expr)
        if expr in self.broken:
            raise QueryError("boom", query=expr, status=422)
        if expr == rules.OBJECTIVE_SERIES:
            return QueryResult(tuple(self.meta))
        if expr in self.series:
            return QueryResult(tuple(self.series[expr]))
        if expr.startswith("{__name__"):
            return QueryResult(())
        raise QueryError("a raw query in this test", query=expr, status=400)

    async def aclose(self) -> None:
        return None


def run(engine: RecordingEngine, slos: list[SLO]) -> list[Evaluation]:
    return asyncio.run(engine.evaluate_all(slos, AT))


def test_one_query_per_window_for_all_slos_and_the_numbers_of_raw_mode() -> None:
    slos = [s for s in slos_from(SLOS) if s.canary is None] * 1
    many = [s.model_copy(update={"name": f"svc-{i}"}) for i in range(50) for s in slos]
    source = Recorded(many, rps=100.0, ratio=0.002)
    evaluations = run(RecordingEngine(source), many)
    windows = {w for s in many for w in s.windows()}
    assert len(source.asked) == 1 + len(windows)  # metadata + one per window, for 50 SLOs
    assert {ev.query_mode for ev in evaluations} == {"recording"}
    ev = evaluations[0]
    assert ev.verdict is Verdict.WARNING  # a 2x burn: the 3d/6h ticket tier
    assert ev.budget_remaining == pytest.approx(1 - 0.002 / 0.001)
    assert ev.window(timedelta(hours=1)).events == pytest.approx(100.0 * 3600)  # type: ignore[union-attr]


def test_slos_without_loaded_or_with_stale_rules_fall_back_to_raw_and_say_so() -> None:
    [plain, canary] = slos_from(SLOS)
    stale = plain.model_copy(update={"objective": plain.objective - 1})
    source = Recorded([plain, canary], 10.0, 0.0, loaded=[stale])
    raw_calls: list[str] = []

    class Fallback(Engine):
        async def evaluate_all(self, slos, at):  # type: ignore[no-untyped-def]
            raw_calls.extend(s.id for s in slos)
            return [Evaluation(s, at, Verdict.HEALTHY, "raw") for s in slos]

    [a, b] = run(RecordingEngine(source, Fallback(source)), [plain, canary])
    assert raw_calls == [plain.id, canary.id]
    assert "recorded by other rules" in a.query_mode and "regenerate" in a.query_mode
    assert "no recorded series" in b.query_mode


def test_a_failed_window_query_sends_only_the_slos_that_need_it_to_raw() -> None:
    [plain, canary] = slos_from(SLOS)
    source = Recorded([plain, canary], 10.0, 0.0)
    source.broken.add(window_query(timedelta(seconds=10)))  # only the canary SLO has a 10s window
    fallback: list[str] = []

    class Fallback(Engine):
        async def evaluate_all(self, slos, at):  # type: ignore[no-untyped-def]
            fallback.extend(s.id for s in slos)
            return [Evaluation(s, at, Verdict.HEALTHY, "raw") for s in slos]

    [a, b] = run(RecordingEngine(source, Fallback(source)), [plain, canary])
    assert a.query_mode == "recording" and fallback == [canary.id]
    assert "the 10s query failed" in b.query_mode


# --- against a real Prometheus evaluating the generated rules -----------------------------------------


@pytest.fixture
def target() -> Iterator[MetricsTarget]:
    with metrics_target() as live:
        live.set_stream({"version": "v1"}, requests_per_second=100, error_ratio=0.002)
        live.set_stream({"version": "v2"}, requests_per_second=10, error_ratio=0.3)
        yield live


def test_real_prometheus_recording_mode_agrees_with_raw_mode(
    prometheus_lab: LabFactory, target: MetricsTarget, tmp_path: Path
) -> None:
    slos = slos_from(SLOS)
    rule_file = tmp_path / "rules.yaml"
    rule_file.write_text(yaml.safe_dump(rules.rule_file(slos, interval=timedelta(seconds=1))))
    lab = prometheus_lab(scrape_targets={"checkout": [target.address]}, rule_files=[rule_file])

    async def both(at: datetime) -> tuple[list[Evaluation], list[Evaluation], list[str]]:
        async with PrometheusSource(PrometheusConfig(url=lab.url)) as source:
            asked: list[str] = []
            original = source.query

            async def counting(expr: str, when: datetime) -> QueryResult:
                asked.append(expr)
                return await original(expr, when)

            source.query = counting  # type: ignore[method-assign]
            recorded = await RecordingEngine(source).evaluate_all(slos, at)
            by_recording = list(asked)
            raw = await Engine(source).evaluate_all(slos, at)
            return recorded, raw, by_recording

    deadline = time.monotonic() + 40
    while True:  # until the rules have run on a 30s window's worth of samples
        recorded, raw, asked = asyncio.run(both(datetime.now(tz=UTC) - timedelta(seconds=1)))
        ready = all(ev.query_mode == "recording" for ev in recorded) and recorded[1].canaries
        if ready and all(c.windows[-1].canary.total > 250 for c in recorded[1].canaries):
            break
        assert time.monotonic() < deadline, [ev.query_mode for ev in recorded]
        time.sleep(1)
    windows = {w for s in slos for w in s.windows()}
    assert sorted(asked) == sorted([rules.OBJECTIVE_SERIES, *(window_query(w) for w in windows)])
    for rec, r in zip(recorded, raw, strict=True):
        assert rec.verdict is r.verdict, (rec.reason, r.reason)
        # The 1h window holds the same samples either way; rules evaluate a rule-interval apart from the
        # query instant, so allow one scrape's worth of drift.
        for w in (timedelta(minutes=5), timedelta(hours=1)):
            assert rec.window(w).error_ratio == pytest.approx(r.window(w).error_ratio, rel=0.05)  # type: ignore[union-attr]
    [v2] = recorded[1].canaries
    assert (v2.value, v2.verdict) == ("v2", Verdict.BURNING)
    assert [c.verdict for c in raw[1].canaries] == [Verdict.BURNING]


def test_two_recorded_label_sets_for_one_slo_fall_back_to_raw() -> None:
    [plain, _] = slos_from(SLOS)
    source = Recorded([plain], 10.0, 0.0)
    query = window_query(timedelta(days=30))
    [first] = [s for s in source.series[query] if "requests" in s.labels["__name__"]]
    source.series[query].append(Sample({**first.labels, "team": "old-label"}, 10.0))
    fallback: list[str] = []

    class Fallback(Engine):
        async def evaluate_all(self, slos, at):  # type: ignore[no-untyped-def]
            fallback.extend(s.id for s in slos)
            return [Evaluation(s, at, Verdict.HEALTHY, "raw") for s in slos]

    [ev] = run(RecordingEngine(source, Fallback(source)), [plain])
    assert fallback == [plain.id] and "do not add up to one SLO" in ev.query_mode
