"""The lab is trustworthy: its numbers are Prometheus' numbers, its history is what it says, its process behaves.

Other tests compare budgetguard's answers from a real Prometheus with ``expected_increase``, so the
first thing proved here is that ``expected_increase``/``expected_rate`` equal Prometheus 2.42's own
``increase``/``rate`` bit for bit on series built to hit every branch of ``extrapolatedRate``.
"""

from __future__ import annotations

import io
import logging
import math
import random
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.history import CODES, HISTORY_SPAN, STEP, demo_history, demo_timeline
from lab.openmetrics import (
    LogNormalLatency,
    MetricType,
    Series,
    counter,
    expected_increase,
    expected_rate,
    gauge,
    histogram_from_steps,
    write_openmetrics,
)
from lab.prometheus import LabError, PrometheusLab, PrometheusNotInstalled
from lab.target import metrics_target as live_target

if TYPE_CHECKING:
    from tests.conftest import DemoTsdb, LabFactory

log = logging.getLogger(__name__)

T0 = 1_760_000_000  # 2025-10-09T08:53:20Z: fixed, so these tests do not depend on the clock
MINUTE = 60


# ---------------------------------------------------------------------------------------------------
# Pure: the writer and the Series value refuse what promtool would silently get wrong.


def test_openmetrics_text_is_what_promtool_reads() -> None:
    out = io.StringIO()
    written = write_openmetrics(
        [
            counter("http_requests", {"job": "a", "code": "200"}, [(T0, 1.0), (T0 + 60.5, 2.0)]),
            gauge("temperature_celsius", {}, [(T0, -3.25)]),
            counter("http_requests", {"job": "a", "code": "500"}, [(T0, 0.0)]),
        ],
        out,
    )
    assert written == 4
    assert out.getvalue() == (
        "# TYPE http_requests counter\n"
        f'http_requests_total{{code="200",job="a"}} 1.0 {T0}\n'
        f'http_requests_total{{code="200",job="a"}} 2.0 {T0 + 60}.500\n'
        f'http_requests_total{{code="500",job="a"}} 0.0 {T0}\n'
        "# TYPE temperature_celsius gauge\n"
        f"temperature_celsius{{}} -3.25 {T0}\n"
        "# EOF\n"
    )


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        pytest.param([(T0 + 60, 1.0), (T0, 2.0)], "strictly increase", id="out of order samples are refused"),
        pytest.param([(T0, 1.0), (T0, 2.0)], "strictly increase", id="a repeated timestamp is refused"),
        pytest.param([(T0 * 1000, 1.0)], "not Unix seconds", id="milliseconds passed as seconds are refused"),
        pytest.param([(T0 + 0.0005, 1.0)], "whole millisecond", id="sub-millisecond timestamps are refused"),
        pytest.param([(T0, math.nan)], "not finite", id="NaN values are refused"),
        pytest.param([], "no samples", id="an empty series is refused"),
    ],
)
def test_series_refuses_samples_promtool_would_drop_or_misplace(
    samples: list[tuple[float, float]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        counter("x", {"job": "a"}, samples)


def test_counter_family_names_exclude_the_total_suffix() -> None:
    with pytest.raises(ValueError, match="without _total"):
        counter("http_requests_total", {}, [(T0, 1.0)])


def test_writer_refuses_the_same_series_twice() -> None:
    one = counter("x", {"job": "a"}, [(T0, 1.0)])
    with pytest.raises(ValueError, match="given twice"):
        write_openmetrics([one, one], io.StringIO())


@given(st.integers(min_value=0, max_value=10**14 - 1))
def test_every_millisecond_survives_promtools_truncating_parse(ms: int) -> None:
    # promtool stores int64(ParseFloat(text) * 1000); Python's float arithmetic is the same IEEE.
    out = io.StringIO()
    write_openmetrics([gauge("g", {}, [(ms / 1000, 1.0)])], out)
    stamp = out.getvalue().splitlines()[1].split()[-1]
    assert int(float(stamp) * 1000) == ms


def test_histogram_builder_keeps_buckets_cumulative_and_count_equal_to_inf() -> None:
    parts = histogram_from_steps(
        "latency_seconds",
        {"job": "a"},
        buckets=[0.1, 0.5, 1.0],
        start=T0,
        step=timedelta(seconds=60),
        count=50,
        observe=lambda t: (37.3, LogNormalLatency(0.2, 0.8)),
    )
    names = [(p.metric_name, p.label_map.get("le")) for p in parts]
    assert names == [
        ("latency_seconds_bucket", "0.1"),
        ("latency_seconds_bucket", "0.5"),
        ("latency_seconds_bucket", "1"),
        ("latency_seconds_bucket", "+Inf"),
        ("latency_seconds_count", None),
        ("latency_seconds_sum", None),
    ]
    buckets = [p.values for p in parts[:4]]
    for step in range(50):
        column = [b[step] for b in buckets]
        assert column == sorted(column)
    assert parts[3].values == parts[4].values
    assert parts[4].values[-1] == round(37.3 * 50)


# ---------------------------------------------------------------------------------------------------
# Pure: expected_increase on cases small enough to work out by hand.


def _every(step: int, values: list[float], start: float = T0) -> list[tuple[float, float]]:
    return [(start + i * step, v) for i, v in enumerate(values)]


@pytest.mark.parametrize(
    ("samples", "at", "window", "expected"),
    [
        pytest.param(
            _every(60, [60.0 * i for i in range(11)]),
            T0 + 600,
            timedelta(minutes=5),
            300.0,
            id="a closed window on the scrape grid holds six samples and needs no extrapolation",
        ),
        pytest.param(
            _every(60, [80.0, 90.0, 100.0, 5.0, 15.0, 25.0]),
            T0 + 300,
            timedelta(minutes=5),
            45.0,
            id="a reset counts the drop from 100 to 5 as +5, so 45 and not 50",
        ),
        pytest.param(
            _every(60, [10.0, 11.0, 12.0, 13.0], start=T0 + 120),
            T0 + 300,
            timedelta(minutes=5),
            3.5,
            id="a series starting mid-window extrapolates only half a step back",
        ),
        pytest.param(
            _every(60, [0.5, 2.5, 4.5]),
            T0 + 150,
            timedelta(minutes=5),
            5.5,
            id="the zero point caps extrapolation before the first sample: 5.5 and not 6",
        ),
        pytest.param(
            _every(60, [1.0, 2.0]),
            T0 + 600,
            timedelta(minutes=5),
            None,
            id="fewer than two samples in the window give no answer",
        ),
    ],
)
def test_expected_increase_by_hand(
    samples: list[tuple[float, float]], at: float, window: timedelta, expected: float | None
) -> None:
    assert expected_increase(samples, at, window) == expected


@given(
    st.lists(st.floats(min_value=0, max_value=1e6), min_size=2, max_size=40),
    st.integers(min_value=1, max_value=90),
    st.integers(min_value=0, max_value=4000_000),
    st.integers(min_value=1, max_value=3600_000),
)
def test_rate_is_increase_over_the_window(
    values: list[float], step_s: int, at_ms: int, window_ms: int
) -> None:
    samples = _every(step_s, values)
    at = T0 + at_ms / 1000
    window = timedelta(milliseconds=window_ms)
    increase = expected_increase(samples, at, window)
    rate = expected_rate(samples, at, window)
    if increase is None:
        assert rate is None
    else:
        assert rate is not None
        assert rate == pytest.approx(increase / window.total_seconds(), rel=1e-12, abs=1e-300)


# ---------------------------------------------------------------------------------------------------
# Against the real Prometheus 2.42: the proof that the lab's arithmetic is Prometheus' arithmetic.


def _odd_series() -> list[Series]:
    """Series built to reach every branch of extrapolatedRate, plus seeded random irregular ones."""
    rng = random.Random(20240607)

    def case(name: str, samples: list[tuple[float, float]]) -> Series:
        return counter("lab_case", {"case": name}, samples)

    def irregular(
        start: float, end: float, gap: tuple[float, float], reset_chance: float
    ) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        t, value = start, rng.uniform(0, 500)
        while t <= end:
            out.append((round(t, 3), value))
            t += rng.uniform(*gap)
            value = rng.uniform(0, 40) if rng.random() < reset_chance else value + rng.uniform(0, 90)
        return out

    two_hours = 2 * 3600
    out = [
        case("regular", _every(15, [22.5 * i for i in range(two_hours // 15 + 1)])),
        case("jittered", [(T0 + 30 * i + rng.randint(-4321, 4321) / 1000, 7.0 * i * i) for i in range(241)]),
        case(
            "resets",
            _every(
                37,
                [float(v) for v in [5, 50, 120, 0, 30, 31, 200, 3, 3, 90, 400, 410, 10, 11, 12] * 13],
                start=T0 + 0.25,
            ),
        ),
        case(
            "late-start-big", _every(60, [5000.0 + 17 * i for i in range(60)], start=T0 + 47 * MINUTE + 13.5)
        ),
        case(
            "late-start-small", _every(60, [1.0 + 17 * i for i in range(60)], start=T0 + 47 * MINUTE + 13.5)
        ),
        case(
            "gap",
            _every(10, [3.0 * i for i in range(180)])
            + _every(10, [700.0 + i for i in range(300)], T0 + 4500),
        ),
        case("ends-early", _every(20, [float(i) for i in range(241)])),
        case("two-samples", [(T0 + 600, 3.0), (T0 + 607.25, 9.5)]),
        case("flat", _every(60, [7.0] * 121)),
        case("fractional", [(T0 + 12.345 * i, 0.1 * i + 0.05 * (i % 3)) for i in range(580)]),
        case("negative-start", _every(45, [-5.0 + 0.75 * i for i in range(160)])),
    ]
    for i in range(12):
        start = T0 + rng.uniform(0, 90 * MINUTE)
        end = start + rng.uniform(5 * MINUTE, 60 * MINUTE)
        out.append(case(f"random-{i}", irregular(start, end, (1.0, 90.0), reset_chance=0.05)))
    return out


_INSTANTS = [
    T0 + 0.5,  # the window reaches before any data
    T0 + 3 * MINUTE,
    T0 + 13 * MINUTE + 7.089,
    T0 + 47 * MINUTE + 13.5,  # exactly on the late series' first sample
    T0 + 50 * MINUTE,
    T0 + 61 * MINUTE + 0.001,
    T0 + 80 * MINUTE,  # exactly on ends-early's last sample
    T0 + 95 * MINUTE + 59.999,
    T0 + 120 * MINUTE,
    T0 + 123 * MINUTE + 0.7,  # after most series ended
]
# PromQL range text and the same window as a timedelta; 90500ms checks rate()'s division by 90.5 s.
_WINDOWS = [
    ("1m", timedelta(minutes=1)),
    ("90500ms", timedelta(milliseconds=90_500)),
    ("5m", timedelta(minutes=5)),
    ("7m30s", timedelta(minutes=7, seconds=30)),
    ("1h", timedelta(hours=1)),
    ("3h", timedelta(hours=3)),
]


def test_expected_increase_and_rate_equal_prometheus_bit_for_bit(prometheus_lab: LabFactory) -> None:
    # Together these instants, windows and series reach every branch of extrapolatedRate: fewer than
    # two samples, resets, the zero-point clamp and its negative-start bypass, full and half-step
    # extrapolation at both ends, and samples exactly on both (closed) window boundaries.
    series = _odd_series()
    lab = prometheus_lab(series)
    by_case = {s.label_map["case"]: s for s in series}
    mismatches: list[str] = []
    compared = absent = 0
    for function, expected_fn in (("increase", expected_increase), ("rate", expected_rate)):
        for at in _INSTANTS:
            for window_text, window in _WINDOWS:
                answer = {
                    sample.labels["case"]: sample.value
                    for sample in lab.query(f"{function}(lab_case_total[{window_text}])", at)
                }
                for name, one in by_case.items():
                    expected = expected_fn(one, at, window)
                    actual = answer.get(name)
                    if expected is None:
                        absent += 1
                    else:
                        compared += 1
                    if actual != expected:
                        mismatches.append(
                            f"{function}({name}[{window_text}]) at {at!r}: prometheus {actual!r}, lab {expected!r}"
                        )
    assert mismatches == []
    assert compared > 1000
    assert absent > 100


def test_writer_keeps_milliseconds_that_promtool_would_truncate(prometheus_lab: LabFactory) -> None:
    # 1085135776.304 parses to a double just below ...304 ms: written naively, promtool stores ...303.
    times = [1_085_135_776.304, 1_085_135_777.333, 1_085_135_778.001]
    lab = prometheus_lab([gauge("lab_stamp", {}, [(t, 1.0) for t in times])])
    stored = [lab.query_value("timestamp(lab_stamp)", t) for t in times]
    assert stored == times


# ---------------------------------------------------------------------------------------------------
# The process: ports, restarts, failures.


def test_thirty_days_are_queryable_at_both_ends_and_survive_a_restart(
    prometheus_lab: LabFactory, demo_tsdb: DemoTsdb
) -> None:
    log.info("demo backfill: %s samples in %.2f s", demo_tsdb.samples, demo_tsdb.backfill_seconds)
    lab = prometheus_lab(blocks_from=demo_tsdb.blocks)
    end = demo_tsdb.end.timestamp()
    first = (demo_tsdb.end - HISTORY_SPAN).timestamp()
    per_series = int(HISTORY_SPAN / STEP) + 1

    names = ["http_requests_total"] + [
        f"http_request_duration_seconds_{p}" for p in ("bucket", "count", "sum")
    ]

    def observations() -> tuple[object, ...]:
        counts = {
            (name, s.labels.get("code", s.labels.get("le", ""))): s.value
            for name in names
            for s in lab.query(f'count_over_time({name}{{job="checkout"}}[31d])', end)
        }
        return (
            counts,
            lab.query_value('http_requests_total{job="search",code="200"}', first),
            lab.query_value('http_requests_total{job="search",code="200"}', first - 1),
            lab.query_value('count(http_requests_total{job="search"})'),  # server time: now
        )

    before = observations()
    counts = before[0]
    assert isinstance(counts, dict)
    assert len(counts) == 14
    assert set(counts.values()) == {per_series}
    assert before[1] is not None
    assert before[2] is None
    assert before[3] == len(CODES)

    port, data = lab.port, lab.data_dir
    lab.stop()
    assert not lab.running
    with pytest.raises(LabError):
        lab.query_value("up")
    lab.start()
    assert (lab.port, lab.data_dir) == (port, data)
    assert observations() == before


def test_backfill_is_refused_while_prometheus_runs(prometheus_lab: LabFactory) -> None:
    lab = prometheus_lab([gauge("g", {}, [(T0, 1.0)])])
    with pytest.raises(LabError, match="stop"):
        lab.backfill([gauge("h", {}, [(T0, 1.0)])])


@pytest.mark.e2e  # runs promtool or starts a real Prometheus/VictoriaMetrics
def test_promtool_errors_are_quoted(tmp_path: Path) -> None:
    bad = tmp_path / "bad.om"
    bad.write_text("# TYPE x gauge\nx 1 1700000000\n", encoding="utf-8")
    with PrometheusLab() as lab, pytest.raises(LabError, match="does not end with # EOF"):
        lab.backfill(bad)


@pytest.mark.e2e  # runs promtool or starts a real Prometheus/VictoriaMetrics
def test_a_prometheus_that_cannot_start_is_reported_with_its_log(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text("groups: [{name: g, rules: [{record: r, expr: 'rate(x[5m'}]}]\n", encoding="utf-8")
    with PrometheusLab(rule_files=[rules], ready_timeout=timedelta(seconds=20)) as lab:
        with pytest.raises(LabError, match="parse error") as raised:
            lab.start()
        assert "exited with status" in str(raised.value)
        assert not lab.running


def test_a_missing_binary_says_how_to_install_it() -> None:
    with pytest.raises(PrometheusNotInstalled, match="apt-get install prometheus"):
        PrometheusLab(prometheus_binary="prometheus-not-installed-here")


def test_scrape_targets_outside_loopback_are_refused() -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        PrometheusLab(scrape_targets={"x": ["10.0.0.1:9100"]})


class _MetricsHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"# TYPE lab_target_answer gauge\nlab_target_answer 42\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def metrics_target() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _MetricsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_scrape_targets_and_rule_files_are_live(
    prometheus_lab: LabFactory, metrics_target: str, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(
        "groups: [{name: lab, rules: [{record: 'lab:answer:doubled', expr: '2 * lab_target_answer'}]}]\n",
        encoding="utf-8",
    )
    lab = prometheus_lab(scrape_targets={"target": [metrics_target]}, rule_files=[rules])
    assert lab.wait_for_value('lab:answer:doubled{job="target"}') == 84
    assert lab.query_value('up{job="target"}') == 1


# ---------------------------------------------------------------------------------------------------
# The demo history does what its docstring says.


def _ratio(lab: PrometheusLab, bad: str, total: str, window: str, at: float) -> float:
    value = lab.query_value(f"sum(increase({bad}[{window}])) / sum(increase({total}[{window}]))", at)
    assert value is not None
    return value


def _slow_ratio(lab: PrometheusLab, job: str, window: str, at: float) -> float:
    good = f'http_request_duration_seconds_bucket{{job="{job}",le="0.5"}}'
    total = f'http_request_duration_seconds_count{{job="{job}"}}'
    return 1 - _ratio(lab, good, total, window, at)


def test_demo_history_has_the_advertised_incident_regression_and_healthy_search(
    prometheus_lab: LabFactory, demo_tsdb: DemoTsdb
) -> None:
    lab = prometheus_lab(blocks_from=demo_tsdb.blocks)
    end = demo_tsdb.end.timestamp()
    errors = 'http_requests_total{job="checkout",code=~"5.."}'
    total = 'http_requests_total{job="checkout"}'
    incident, restart, regression = demo_timeline(demo_tsdb.end)
    availability_budget, latency_budget = 0.001, 0.01

    # The incident: 30% errors while it lasted, and a visible share of the 30-day budget now.
    mid_incident = (incident.start + (incident.end - incident.start) / 2).timestamp()
    assert _ratio(lab, errors, total, "10m", mid_incident) == pytest.approx(0.30, abs=0.02)
    budget_used_30d = _ratio(lab, errors, total, "30d", end) / availability_budget
    assert 0.5 < budget_used_30d < 0.75
    used_before_incident = (
        _ratio(lab, errors, total, "30d", incident.start.timestamp() - 1) / availability_budget
    )
    assert 0.3 < budget_used_30d - used_before_incident < 0.55  # the incident's own share
    assert _ratio(lab, errors, total, "1h", end) / availability_budget < 1  # healthy now

    # The restart: every checkout series reset once, search never did.
    for name in (
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "http_request_duration_seconds_sum",
    ):
        resets = lab.query(f"resets({name}[31d])", end)
        assert {(s.labels["job"], s.value) for s in resets} == {("checkout", 1.0), ("search", 0.0)}, name
    assert restart.start.timestamp() == end - 5 * 86400

    # The latency regression: the 1d/2h ticket tier at 3x fires, the page tiers do not.
    burn = {
        w: _slow_ratio(lab, "checkout", w, end) / latency_budget
        for w in ("1d", "2h", "6h", "30m", "1h", "5m")
    }
    assert burn["1d"] > 3 and burn["2h"] > 3, burn
    assert not (burn["6h"] > 6 and burn["30m"] > 6), burn
    assert not (burn["1h"] > 14.4 and burn["5m"] > 14.4), burn
    assert 3.5 < burn["1d"] < 5.5, burn
    before = regression.start.timestamp() - 1
    assert _slow_ratio(lab, "checkout", "1d", before) / latency_budget < 0.5

    # Search: healthy on both SLIs, over the whole period.
    search_errors = 'http_requests_total{job="search",code=~"5.."}'
    search_total = 'http_requests_total{job="search"}'
    assert _ratio(lab, search_errors, search_total, "30d", end) / availability_budget < 0.2
    assert _slow_ratio(lab, "search", "30d", end) / latency_budget < 0.01

    # Traffic is in the advertised range.
    rates = [lab.query_value(f"sum(rate({total}[5m]))", end - h * 3600) for h in range(0, 7 * 24, 5)]
    assert all(r is not None and 15 < r < 65 for r in rates), rates


def test_demo_history_is_deterministic_given_end_and_seed() -> None:
    end = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    day = timedelta(days=1)
    first = demo_history(end, seed=3, span=day)
    assert first == demo_history(end, seed=3, span=day)
    assert first != demo_history(end, seed=4, span=day)
    assert {s.metric_type for s in first} == {MetricType.COUNTER, MetricType.HISTOGRAM}
    assert all(s.samples[-1][0] == end.timestamp() for s in first)
    assert all(len(s.samples) == 24 * 60 + 1 for s in first)


def test_lab_numbers_for_the_demo_match_prometheus(prometheus_lab: LabFactory, demo_tsdb: DemoTsdb) -> None:
    lab = prometheus_lab(blocks_from=demo_tsdb.blocks)
    # Off the step grid, and as a datetime with sub-millisecond digits that both sides must floor.
    at = demo_tsdb.end - timedelta(seconds=17, microseconds=500_999)
    for window in (timedelta(days=30), timedelta(hours=1), timedelta(minutes=5)):
        text = f"{int(window.total_seconds())}s"
        for one in demo_tsdb.requests:
            expected = expected_increase(one, at, window)
            assert expected is not None
            assert lab.query_value(f"increase({one.selector()}[{text}])", at) == expected


def test_a_seeded_target_serves_poisson_traffic_and_a_removed_stream_vanishes() -> None:
    with live_target(seed=3) as target:
        target.set_stream({"version": "v1"}, requests_per_second=2000, error_ratio=0.1)
        target.set_stream({"version": "v2"}, requests_per_second=10, error_ratio=0.0)
        time.sleep(0.5)
        text = target.exposition()
        target.remove_stream({"version": "v2"})
        after = target.exposition()
    values = {
        (m.group(1), m.group(2)): float(m.group(3))
        for m in re.finditer(r'code="(\d+)",version="(v\d)"} ([0-9.]+)', text)
    }
    assert all(v == int(v) for v in values.values())  # whole requests, not fluid counts
    total = values[("200", "v1")] + values[("500", "v1")]
    assert 500 < total < 1500 and 0.05 < values[("500", "v1")] / total < 0.15
    assert values[("500", "v2")] == 0
    assert 'version="v2"' not in after
