"""The engine, through the MetricsSource port: isolation, fallbacks and reading answers."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from budgetguard.core.errors import QueryError, SourceUnavailable
from budgetguard.core.policy import Evaluation
from budgetguard.core.ports import QueryResult, Sample
from budgetguard.core.queries import PART_LABEL, combine, plan
from budgetguard.core.spec import SLO
from budgetguard.core.verdict import Verdict
from budgetguard.engine import Engine
from budgetguard.sources.prometheus import PrometheusConfig, PrometheusSource
from tests.helpers import AVAILABILITY, slo_from

AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


class TableSource:
    """A MetricsSource answering from a table of exact expressions (anything else is a bad query)."""

    def __init__(self, answers: dict[str, QueryResult | Exception]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, datetime]] = []

    async def query(self, expr: str, at: datetime) -> QueryResult:
        self.asked.append((expr, at))
        answer = self.answers.get(expr, QueryError("unknown query", query=expr, status=400))
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def aclose(self) -> None:
        return None


def tagged(slo: SLO, values: Callable[[str, timedelta], float | str | None]) -> QueryResult:
    """The combined answer for ``slo``; ``values(part, window)`` gives each value, "absent" for no series."""
    samples = []
    for q in plan(slo):
        value = values(q.part, q.window)
        if value != "absent":
            samples.append(Sample({PART_LABEL: q.tag}, value if not isinstance(value, str) else None))
    return QueryResult(tuple(samples))


def run(engine: Engine, slos: list[SLO]) -> list:  # type: ignore[type-arg]
    return asyncio.run(engine.evaluate_all(slos, AT))


def test_one_query_per_slo_at_one_instant() -> None:
    slo = slo_from()
    source = TableSource({combine(plan(slo)): tagged(slo, lambda p, w: 100.0 if p == "total" else 0.01)})
    [ev] = run(Engine(source), [slo])
    assert ev.verdict is Verdict.HEALTHY
    assert source.asked == [(combine(plan(slo)), AT)]
    assert ev.budget_remaining == pytest.approx(1 - 0.0001 / 0.001)
    assert ev.events == pytest.approx(100.0 * 30 * 86400)


def test_a_missing_error_series_beside_traffic_is_zero_errors() -> None:
    slo = slo_from()
    source = TableSource({combine(plan(slo)): tagged(slo, lambda p, w: 5.0 if p == "total" else "absent")})
    [ev] = run(Engine(source), [slo])
    assert ev.verdict is Verdict.HEALTHY
    assert ev.error_ratio == 0.0 and ev.budget_remaining == 1.0


def test_no_traffic_is_inconclusive() -> None:
    slo = slo_from()
    source = TableSource({combine(plan(slo)): tagged(slo, lambda p, w: 0.0)})
    [ev] = run(Engine(source), [slo])
    assert ev.verdict is Verdict.INCONCLUSIVE
    assert "no traffic (0 events) in 5m" in ev.reason


def test_one_failing_slo_does_not_affect_the_others() -> None:
    good = slo_from()
    bad = slo_from(
        AVAILABILITY.replace('job="checkout"', 'job="cart"').replace("service: checkout", "service: cart")
    )
    source = TableSource(
        {
            combine(plan(good)): tagged(good, lambda p, w: 10.0 if p == "total" else 0.0),
            combine(plan(bad)): SourceUnavailable("Service Unavailable", query="...", status=503),
        }
    )
    evs = run(Engine(source), [good, bad])
    assert [ev.verdict for ev in evs] == [Verdict.HEALTHY, Verdict.ERROR]
    assert "source error (unavailable): Service Unavailable (HTTP 503)" in evs[1].reason


def test_a_rejected_combined_query_falls_back_to_parts_and_blames_the_right_one() -> None:
    slo = slo_from()
    planned = plan(slo)
    answers: dict[str, QueryResult | Exception] = {
        combine(planned): QueryError("parse error in combined", status=400, error_type="bad_data"),
    }
    for q in planned:
        answers[q.expr] = QueryResult((Sample({}, 2.0 if q.part == "total" else 0.0),))
    broken = planned[3]
    answers[broken.expr] = QueryError('1:8: parse error: unexpected "}"', status=400, error_type="bad_data")
    [ev] = run(Engine(TableSource(answers)), [slo])
    assert ev.verdict is Verdict.ERROR
    assert 'parse error: unexpected "}"' in ev.reason and broken.expr in ev.reason


def test_scalar_queries_work_part_by_part() -> None:
    slo = slo_from()
    planned = plan(slo)
    answers: dict[str, QueryResult | Exception] = {
        combine(planned): QueryError("expected vector", status=400)
    }
    for q in planned:
        answers[q.expr] = QueryResult((Sample({}, 4.0 if q.part == "total" else 0.002),))
    [ev] = run(Engine(TableSource(answers)), [slo])
    assert ev.verdict is Verdict.HEALTHY
    assert ev.error_ratio == pytest.approx(0.0005)


def test_several_series_for_one_part_is_an_error_that_says_to_aggregate() -> None:
    slo = slo_from()
    result = tagged(slo, lambda p, w: 1.0)
    extra = Sample({PART_LABEL: "total:5m", "instance": "b"}, 1.0)
    source = TableSource({combine(plan(slo)): QueryResult((*result.samples, extra))})
    [ev] = run(Engine(source), [slo])
    assert ev.verdict is Verdict.ERROR
    assert "returned 2 series" in ev.reason and "sum(...)" in ev.reason


def test_warnings_make_the_verdict_inconclusive() -> None:
    slo = slo_from()
    result = tagged(slo, lambda p, w: 10.0 if p == "total" else 0.0)
    source = TableSource({combine(plan(slo)): QueryResult(result.samples, ("store gateway down",))})
    [ev] = run(Engine(source), [slo])
    assert ev.verdict is Verdict.INCONCLUSIVE and "store gateway down" in ev.reason


def test_a_latency_threshold_off_the_bucket_boundaries_is_explained() -> None:
    slo = slo_from(
        """
        version: budgetguard/v1
        service: api
        slos:
          - name: latency
            objective: 99
            sli: {latency: {metric: h, selector: 'job="api"', threshold_seconds: 0.3}}
        """
    )
    source = TableSource({combine(plan(slo)): tagged(slo, lambda p, w: 10.0 if p == "total" else "absent")})
    [ev] = run(Engine(source), [slo])
    assert ev.verdict is Verdict.ERROR
    assert "must be one of the histogram's bucket boundaries" in ev.reason


class SlowForSomeQueries(BaseHTTPRequestHandler):
    """A Prometheus that answers at once, except for queries naming job="slow", which hang for 5 s."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        form = parse_qs(self.rfile.read(length).decode())
        if 'job="slow"' in form["query"][0]:
            time.sleep(5)
        body = b'{"status":"success","data":{"resultType":"vector","result":[]}}'
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client gave up on the slow query
            pass

    def log_message(self, format: str, *args: object) -> None:
        return


def test_a_slow_slo_delays_no_other_beyond_its_own_timeout() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowForSomeQueries)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    slow = slo_from(AVAILABILITY.replace('job="checkout"', 'job="slow"').replace("checkout", "slow"))
    fast = [slo_from(AVAILABILITY.replace("service: checkout", f"service: fast{i}")) for i in range(5)]
    config = PrometheusConfig(
        url=f"http://127.0.0.1:{server.server_address[1]}",
        timeout=timedelta(milliseconds=500),
        max_concurrency=4,
    )

    async def cycle() -> list[Evaluation]:
        async with PrometheusSource(config) as source:
            return await Engine(source).evaluate_all([slow, *fast], AT)

    try:
        started = time.monotonic()
        evaluations = asyncio.run(cycle())
        elapsed = time.monotonic() - started
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert evaluations[0].verdict is Verdict.ERROR and evaluations[0].error_kind == "timeout"
    assert all(ev.verdict is Verdict.INCONCLUSIVE for ev in evaluations[1:])  # no series: answered at once
    assert elapsed < 2.0  # the slow SLO's 0.5 s timeout, not its 5 s hang
