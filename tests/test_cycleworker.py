"""The cycle worker process (#14): the same evaluations as in the daemon's process, bound to the daemon's
own SLOs, with the store's rows and /metrics made beside them; a worker that dies, hangs or lies costs
no cycle."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from budgetguard.core import policy
from budgetguard.core.policy import Evaluation
from budgetguard.core.spec import SLO
from budgetguard.core.verdict import ErrorKind, QueryMode, Verdict
from budgetguard.cycleworker import CycleWorker
from budgetguard.engine import Engine
from budgetguard.exporter import SLOLines
from budgetguard.exporter.prepared import prepare_part, text_of
from budgetguard.sources.prometheus import PrometheusConfig, PrometheusSource
from budgetguard.store import history
from lab.prometheus import PrometheusLab
from lab.target import MetricsTarget, metrics_target
from tests.conftest import LabFactory
from tests.helpers import slos_from

SLOS = """
version: budgetguard/v1
service: checkout
slos:
  - name: availability
    objective: 99.9
    labels: {team: payments}
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
  - name: nobody-home
    objective: 99
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="nobody",code="500"}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="nobody"}[{{.window}}]))
"""


@pytest.fixture
def target() -> Iterator[MetricsTarget]:
    with metrics_target() as live:
        live.set_stream({"version": "v1"}, requests_per_second=100, error_ratio=0.002)
        live.set_stream({"version": "v2"}, requests_per_second=10, error_ratio=0.3)
        yield live


@pytest.fixture
def lab(prometheus_lab: LabFactory, target: MetricsTarget) -> PrometheusLab:
    lab = prometheus_lab(scrape_targets={"checkout": [target.address]})
    deadline = time.monotonic() + 30
    while not lab.query('count_over_time(http_requests_total{job="checkout",code="500"}[1m]) > 3'):
        assert time.monotonic() < deadline, "no scrapes"
        time.sleep(0.3)
    return lab


def worker(inner: object, url: str = "http://127.0.0.1:9", **kwargs: object) -> CycleWorker:
    defaults: dict[str, object] = {
        "query_mode": QueryMode.RAW,
        "per_window": True,
        "formats": lambda: (True,),
        "min_slos": 0,
    }
    return CycleWorker(inner, PrometheusConfig(url=url), **{**defaults, **kwargs})  # type: ignore[arg-type]


def test_the_child_evaluates_what_the_daemon_would_and_makes_the_rows_and_metrics(lab: PrometheusLab) -> None:
    slos = slos_from(SLOS)
    at = datetime.now(tz=UTC) - timedelta(seconds=2)  # both read the same settled samples

    async def both() -> tuple[list[Evaluation], list[Evaluation], CycleWorker]:
        async with PrometheusSource(PrometheusConfig(url=lab.url)) as source:
            here = await Engine(source).evaluate_all(slos, at)
            # One evaluation and two rows per message: every message kind arrives in several parts.
            cycles = worker(
                Engine(source),
                lab.url,
                formats=lambda: (True, False),
                evaluations_per_message=1,
                rows_per_message=2,
            )
            try:
                there = await cycles.evaluate_all(slos, at)
                prepared = cycles.prepared(there)
                assert prepared is not None
                assert cycles.prepared(list(there)) is None  # only for the list it returned
                assert prepared.pending == history.prepare(here)
                for openmetrics in (True, False):
                    text = SLOLines(True).render(here, openmetrics)
                    part = prepared.metrics[openmetrics]
                    # Sent deflated alone; the text comes back when a scraper does not take gzip.
                    assert part.text is None and part == prepare_part(text, keep_text=False)
                    assert await text_of(part) == text and part.text == text
            finally:
                await cycles.aclose()
            return here, there, cycles

    here, there, cycles = asyncio.run(both())
    assert cycles.cycles_in_child == 1
    assert there == here
    assert [ev.verdict for ev in there] == [Verdict.BURNING, Verdict.BURNING, Verdict.INCONCLUSIVE]
    for ev, slo in zip(there, slos, strict=True):
        assert ev.slo is slo  # the daemon's own objects, not copies
        assert all(any(state.tier is tier for tier in slo.tiers) for state in ev.tiers)
    [v2] = there[1].canaries
    assert (v2.value, v2.verdict) == ("v2", Verdict.BURNING)


class Counting:
    """An evaluator in this process that says which SLOs it was asked about."""

    def __init__(self) -> None:
        self.asked: list[list[str]] = []

    async def evaluate_all(self, slos: Sequence[SLO], at: datetime) -> list[Evaluation]:
        self.asked.append([slo.id for slo in slos])
        return [policy.failed(slo, at, "evaluated here", ErrorKind.UNAVAILABLE) for slo in slos]


AT = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
WRITE, FLUSH, SLEEP = "import sys, time; sys.stdout.buffer.write", "sys.stdout.flush()", "time.sleep(30)"
LENGTH = "".join(f"\\x{byte:02x}" for byte in (10).to_bytes(8, "little"))


def test_below_min_slos_the_cycle_stays_in_this_process() -> None:
    slos = slos_from(SLOS)
    inner = Counting()
    cycles = worker(inner, min_slos=4)
    evaluations = asyncio.run(cycles.evaluate_all(slos, AT))
    assert inner.asked == [[slo.id for slo in slos]]
    assert cycles.pid is None and cycles.cycles_in_child == 0
    assert cycles.prepared(evaluations) is None
    assert asyncio.run(worker(inner, min_slos=None).evaluate_all(slos, AT))[0].reason == "evaluated here"


@pytest.mark.parametrize(
    ("command", "timeout", "why"),
    [
        ([sys.executable, "-c", "import sys; sys.exit(3)"], 30.0, "it exited (status 3)"),
        ([sys.executable, "-c", "import time; time.sleep(60)"], 1.0, "silent for 1s"),
        ([sys.executable, "-c", f"{WRITE}(b'{LENGTH}notapickle'); {FLUSH}; {SLEEP}"], 30.0, "cannot be read"),
        ([sys.executable, "-c", f"{WRITE}(b'x' * 64); {FLUSH}; {SLEEP}"], 30.0, "bytes, over"),
        (["/nonexistent/python"], 30.0, "cannot start /nonexistent/python"),
    ],
    ids=["dies", "hangs", "answers nonsense", "breaks the stream", "cannot start"],
)
def test_a_failing_worker_costs_no_cycle(
    command: list[str], timeout: float, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    slos = slos_from(SLOS)
    inner = Counting()
    failures: list[str] = []
    cycles = worker(
        inner,
        command=command,
        timeout=timedelta(seconds=timeout),
        on_failure=failures.append,
        retry_after=timedelta(seconds=2),
    )

    async def three_cycles() -> list[list[Evaluation]]:
        try:
            first = await cycles.evaluate_all(slos, AT)
            second = await cycles.evaluate_all(slos, AT)  # within retry_after: no new worker tried
            await asyncio.sleep(2)
            return [first, second, await cycles.evaluate_all(slos, AT)]  # a new worker, failing again
        finally:
            await cycles.aclose()

    started = time.monotonic()
    with caplog.at_level(logging.ERROR, "budgetguard"):
        results = asyncio.run(three_cycles())
    assert time.monotonic() - started < 2 * timeout + 12
    # Two workers tried, each failed loudly; every cycle was evaluated here: no cycle lost.
    assert len(failures) == 2 and all(why in failure for failure in failures), failures
    assert inner.asked == [[slo.id for slo in slos]] * 3
    assert all([ev.reason for ev in result] == ["evaluated here"] * 3 for result in results)
    assert caplog.text.count("the cycle worker process failed") == 2
    assert "until a new worker is tried in 2s" in caplog.text
    assert cycles.pid is None


def test_new_slos_reach_the_child_and_it_stops_when_closed(lab: PrometheusLab) -> None:
    first = slos_from(SLOS)
    second = slos_from(SLOS.replace("objective: 99\n", "objective: 98\n"))  # a reload: new objects

    async def scenario() -> None:
        async with PrometheusSource(PrometheusConfig(url=lab.url)) as source:
            cycles = worker(Engine(source), lab.url)
            at = datetime.now(tz=UTC) - timedelta(seconds=2)
            try:
                before = await cycles.evaluate_all(first, at)
                pid = cycles.pid
                after = await cycles.evaluate_all(second[:2], at)
                assert cycles.pid == pid  # the same child, told the new SLOs
                again = await cycles.evaluate_all(second, at)
                assert cycles.pid == pid
                cycles._min_slos = 3  # a reload leaves two SLOs, under the threshold: the child leaves
                fewer = await cycles.evaluate_all(second[:2], at)
                assert cycles.pid is None and fewer == after
            finally:
                await cycles.aclose()
            assert all(ev.slo is slo for ev, slo in zip(before, first, strict=True))
            assert all(ev.slo is slo for ev, slo in zip(after, second[:2], strict=True))
            assert all(ev.slo is slo for ev, slo in zip(again, second, strict=True))
            assert again[2].slo.objective_ratio != before[2].slo.objective_ratio
            assert cycles.cycles_in_child == 3 and cycles.pid is None
            assert pid is not None
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)  # waited for: gone, not a zombie

    asyncio.run(scenario())


class Silent:
    """A Prometheus that takes connections and never answers (stuck behind a dead proxy)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def test_a_slow_source_is_no_fault_of_the_worker() -> None:
    """The child waits for its source longer than the daemon's patience with a silent child: it says it
    is alive meanwhile, so the cycle is the worker's, its verdicts the source's errors."""
    slos = slos_from(SLOS)
    silent = Silent()
    failures: list[str] = []
    config = PrometheusConfig(url=silent.url, timeout=timedelta(seconds=3))
    cycles = CycleWorker(
        Counting(),
        config,
        query_mode=QueryMode.RAW,
        per_window=True,
        formats=lambda: (True,),
        min_slos=0,
        timeout=timedelta(seconds=1),
        on_failure=failures.append,
    )

    async def one() -> list[Evaluation]:
        try:
            return await cycles.evaluate_all(slos, AT)
        finally:
            await cycles.aclose()

    try:
        evaluations = asyncio.run(one())
    finally:
        silent.close()
    assert failures == [] and cycles.cycles_in_child == 1
    assert [ev.verdict for ev in evaluations] == [Verdict.ERROR] * 3
    assert all(ev.error_kind == ErrorKind.TIMEOUT for ev in evaluations), [ev.reason for ev in evaluations]
