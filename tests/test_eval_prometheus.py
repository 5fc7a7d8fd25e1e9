"""`budgetguard eval` against a real Prometheus with backfilled history whose exact answers we compute.

The expected numbers come from ``lab.openmetrics.expected_increase``, a re-implementation of
Prometheus 2.42's rate extrapolation proven equal to the real server in tests/test_lab.py; so budget
remaining, burn rates and event counts must match to 1e-9 relative, at any instant (backtesting).
"""

from __future__ import annotations

import io
import json
import math
import textwrap
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from budgetguard.cli import main
from budgetguard.core.durations import parse_duration
from lab.history import align_end
from lab.openmetrics import (
    LogNormalLatency,
    Series,
    counters_from_increments,
    expected_increase,
    histogram_from_steps,
)
from lab.prometheus import PrometheusLab
from tests.conftest import DemoTsdb, LabFactory

REPO = Path(__file__).resolve().parent.parent
STEP = timedelta(minutes=1)
SPAN = timedelta(days=31)
END = align_end(datetime(2026, 11, 20, 12, 0, tzinfo=UTC))
START = (END - SPAN).timestamp()
COUNT = int(SPAN / STEP) + 1

SLO_FILE = """
version: budgetguard/v1
service: exact
slos:
  - name: availability
    objective: 99.9
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="exact",code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="exact"}[{{.window}}]))
  - name: latency
    objective: 99
    window: 7d
    sli:
      latency:
        metric: http_request_duration_seconds
        selector: job="exact"
        threshold_seconds: 0.5
  - name: quiet
    objective: 99
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="quiet",code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="quiet"}[{{.window}}]))
"""


def _traffic(t: float) -> Sequence[float]:
    """Per-minute increments of codes 200, 500, 503: diurnal traffic, errors that come and go."""
    minutes = (t - START) / 60
    total = 600 + 400 * math.sin(minutes / 229)
    error_share = 0.0004 + 0.0006 * (1 + math.sin(minutes / 1709))
    if 20 * 1440 < minutes < 20 * 1440 + 50:  # an incident 11 days before the end
        error_share = 0.3
    if minutes > SPAN / STEP - 90:  # and a fresh one: the last 90 minutes burn at 20x
        error_share = 0.02
    errors = total * error_share
    return (total - errors, errors * 0.7, errors * 0.3)


def _latency(t: float) -> tuple[float, LogNormalLatency]:
    minutes = (t - START) / 60
    slow = minutes > SPAN / STEP - 3 * 1440  # a regression in the last three days
    return 300.0, LogNormalLatency(median_seconds=0.12 if not slow else 0.2, sigma=0.9)


def exact_history() -> list[Series]:
    codes = [{"job": "exact", "code": c} for c in ("200", "500", "503")]
    series = counters_from_increments(
        "http_requests",
        codes,
        start=START,
        step=STEP,
        count=COUNT,
        increments=_traffic,
        resets_at=[START + 86400 * 25 + 600],
    )
    series += counters_from_increments(
        "http_requests",
        [{"job": "quiet", "code": "200"}],
        start=START,
        step=STEP,
        count=COUNT,
        increments=lambda t: (0.0,),
    )
    series += histogram_from_steps(
        "http_request_duration_seconds",
        {"job": "exact"},
        buckets=(0.1, 0.25, 0.5, 1.0, 2.5),
        start=START,
        step=STEP,
        count=COUNT,
        observe=_latency,
    )
    return series


@pytest.fixture(scope="module")
def history() -> list[Series]:
    return exact_history()


@pytest.fixture
def exact_prometheus(prometheus_lab: LabFactory, history: list[Series]) -> PrometheusLab:
    return prometheus_lab(history)


@pytest.fixture
def slo_file(tmp_path: Path) -> Path:
    path = tmp_path / "exact.yaml"
    path.write_text(textwrap.dedent(SLO_FILE))
    return path


def run_eval(*args: str) -> tuple[int, Any, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["eval", *args], stdout=out, stderr=err)
    text = out.getvalue()
    return code, (json.loads(text) if "--json" in args and text.strip() else text), err.getvalue()


def increase(history: list[Series], at: datetime, window: timedelta, name: str, **labels: str) -> float:
    total = 0.0
    for series in history:
        if series.metric_name == name and all(series.label_map.get(k) == v for k, v in labels.items()):
            value = expected_increase(series, at, window)
            total += value or 0.0
    return total


AT_END = END
AT_PAST = END - timedelta(days=11) + timedelta(minutes=20, seconds=17, milliseconds=250)  # mid-incident


@pytest.mark.parametrize(
    "at",
    [
        pytest.param(AT_END, id="at the end of the history"),
        pytest.param(AT_PAST, id="backtesting mid-incident at an odd instant"),
    ],
)
def test_budget_and_burn_rates_match_the_exact_answers(
    exact_prometheus: PrometheusLab, slo_file: Path, history: list[Series], at: datetime
) -> None:
    code, result, err = run_eval(
        str(slo_file), "--prometheus", exact_prometheus.url, "--json", "--at", at.isoformat()
    )
    by_name = {r["slo"]: r for r in result}
    availability = by_name["availability"]
    for key, burn in availability["burn_rates"].items():
        window = parse_duration(key)
        bad = increase(history, at, window, "http_requests_total", job="exact", code="500") + increase(
            history, at, window, "http_requests_total", job="exact", code="503"
        )
        total = increase(history, at, window, "http_requests_total", job="exact")
        assert burn == pytest.approx(bad / total / 0.001, rel=1e-9), key
        assert availability["events_by_window"][key] == pytest.approx(total, rel=1e-9), key
    month = timedelta(days=30)
    bad = increase(history, at, month, "http_requests_total", job="exact", code="500") + increase(
        history, at, month, "http_requests_total", job="exact", code="503"
    )
    total = increase(history, at, month, "http_requests_total", job="exact")
    assert availability["budget_remaining"] == pytest.approx(1 - bad / total / 0.001, rel=1e-9)
    assert availability["error_ratio"] == pytest.approx(bad / total, rel=1e-9)
    assert availability["events"] == pytest.approx(total, rel=1e-9)

    latency = by_name["latency"]
    for key, burn in latency["burn_rates"].items():
        window = parse_duration(key)
        good = increase(history, at, window, "http_request_duration_seconds_bucket", job="exact", le="0.5")
        count = increase(history, at, window, "http_request_duration_seconds_count", job="exact")
        assert burn == pytest.approx((count - good) / count / 0.01, rel=1e-9), key
    assert latency["window"] == "7d"

    quiet = by_name["quiet"]
    assert quiet["verdict"] == "inconclusive" and "no traffic" in quiet["reason"]
    if at == AT_END:
        # 20x over the last 90 minutes: the 1h/5m page tier fires
        assert availability["verdict"] == "burning" and "page tier 1h/5m firing" in availability["reason"]
        assert code == 1
    else:
        assert availability["verdict"] == "burning"  # 30% errors for 20 minutes
        assert code == 1
    assert err == ""


def test_the_shipped_examples_evaluate_on_the_demo_history(
    prometheus_lab: LabFactory, demo_tsdb: DemoTsdb
) -> None:
    lab = prometheus_lab(blocks_from=demo_tsdb.blocks)
    code, result, _ = run_eval(
        str(REPO / "slos"), "--prometheus", lab.url, "--json", "--at", demo_tsdb.end.isoformat()
    )
    verdicts = {f"{r['service']}/{r['slo']}": r["verdict"] for r in result}
    assert verdicts == {
        "checkout/requests-availability": "healthy",
        "checkout/requests-latency": "warning",  # the slow latency regression fires the 1d/2h ticket tier
        "checkout/canary-availability": "healthy",  # the canary rules' example: no version label, no canary
        "product-page/availability": "inconclusive",  # the Istio canary example: no such job in the demo
        "checkout/shadow-correctness": "inconclusive",  # the shadow example: no mirrored traffic in the demo
        "search/requests-availability": "healthy",  # the Sloth file, unchanged
        "search/requests-not-found": "healthy",  # a raw ratio SLI
    }
    checkout = next(r for r in result if r["slo"] == "requests-availability" and r["service"] == "checkout")
    assert 0.3 < checkout["budget_remaining"] < 0.5  # the incident nine days ago spent most of it
    assert code == 0

    code, table, _ = run_eval(str(REPO / "slos"), "--prometheus", lab.url, "--at", demo_tsdb.end.isoformat())
    assert code == 0
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["SLO", "OBJECTIVE", "WINDOW", "BUDGET"]
    assert any(line.startswith("checkout/requests-latency") and "WARNING" in line for line in lines)


def test_prometheus_stopped_is_an_error_verdict_and_exit_3(
    exact_prometheus: PrometheusLab, slo_file: Path
) -> None:
    exact_prometheus.stop()
    code, result, _ = run_eval(
        str(slo_file),
        "--prometheus",
        exact_prometheus.url,
        "--json",
        "--at",
        AT_END.isoformat(),
        "--timeout",
        "2s",
    )
    assert code == 3
    assert {r["verdict"] for r in result} == {"error"}
    assert all("source error (unavailable)" in r["reason"] for r in result)
    assert all(r["budget_remaining"] is None for r in result)


def test_bad_promql_is_reported_with_the_servers_message(
    exact_prometheus: PrometheusLab, tmp_path: Path
) -> None:
    # A syntax error is refused at load since issue 13 (budgetguard parses every query); a query the
    # parser takes and this server refuses still reaches the user in the server's words: info() is
    # Prometheus 3's, unknown to 2.42.
    path = tmp_path / "bad.yaml"
    path.write_text(
        textwrap.dedent(SLO_FILE).replace(
            'sum(rate(http_requests_total{job="exact",code=~"5.."}[{{.window}}]))',
            'sum(info(rate(http_requests_total{job="exact",code=~"5.."}[{{.window}}])))',
        )
    )
    code, result, _ = run_eval(
        str(path), "--prometheus", exact_prometheus.url, "--json", "--at", AT_END.isoformat()
    )
    by_name = {r["slo"]: r for r in result}
    broken = by_name["availability"]
    assert broken["verdict"] == "error"
    assert "parse error" in broken["reason"]  # Prometheus' own words
    assert "unknown function with name" in broken["reason"]
    assert (
        'sum(info(rate(http_requests_total{job="exact",code=~"5.."}[5m])))' in broken["reason"]
    )  # the user's query
    assert by_name["latency"]["verdict"] != "error"  # the others are unaffected
    # exit 3 says the source could not be read, unless another SLO is burning, which says more
    assert code == (1 if any(r["verdict"] == "burning" for r in result) else 3)


class NotReady(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = b"Service Unavailable"
        self.send_response(503)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def not_ready_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), NotReady)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_a_prometheus_that_is_not_ready_is_an_error_not_a_crash(
    not_ready_server: str, slo_file: Path
) -> None:
    code, result, _ = run_eval(str(slo_file), "--prometheus", not_ready_server, "--json")
    assert code == 3
    assert {r["verdict"] for r in result} == {"error"}
    assert all("Service Unavailable (HTTP 503)" in r["reason"] for r in result)


def test_invalid_files_exit_2_before_any_query(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("version: budgetguard/v1\nservice: a\nslos:\n- name: x\n  objective: 100\n")
    code, _, err = run_eval(str(path), "--prometheus", "http://127.0.0.1:9")
    assert code == 2
    assert "bad.yaml:5" in err and "objective" in err
