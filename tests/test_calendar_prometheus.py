"""Calendar windows against a real Prometheus with backfilled history across a month boundary and a
daylight-saving change (Europe/Berlin leaves summer time at 01:00 UTC on Sunday 25 October 2026).

The expected numbers are counted here from the synthetic increments, not read back through
Prometheus' extrapolation: the history has a sample on every whole minute and the periods begin on whole
minutes, so ``increase()`` over "since the period began" is exactly the sum of the increments of the
steps after the period's first instant, up to the evaluation instant.
"""

from __future__ import annotations

import io
import json
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from budgetguard.cli import main
from budgetguard.core.calendar import CalendarUnit, period_at, query_range
from budgetguard.core.durations import format_duration
from lab.openmetrics import Series, counters_from_increments
from lab.prometheus import PrometheusLab
from lab.target import MetricsTarget, metrics_target
from tests.conftest import LabFactory
from tests.test_daemon import DaemonProcess, one, wait_for

STEP = timedelta(minutes=1)
START = datetime(2026, 9, 29, tzinfo=UTC)
END = datetime(2026, 11, 4, tzinfo=UTC)
COUNT = int((END - START) / STEP) + 1

# Berlin's November begins at 23:00 UTC on 31 October (CET, +1); the ISO week of 19 October begins at
# 22:00 UTC on the 18th (CEST, +2) and ends at 23:00 UTC on the 25th (CET): 7 days and 1 hour.
NOVEMBER = datetime(2026, 10, 31, 23, tzinfo=UTC)
OCTOBER = datetime(2026, 9, 30, 22, tzinfo=UTC)
WEEK_43 = datetime(2026, 10, 18, 22, tzinfo=UTC)
WEEK_44 = datetime(2026, 10, 25, 23, tzinfo=UTC)

# Two incidents straddle a period's first instant, so a start an hour (or a time zone) off changes the
# answer: 22:30-00:30 UTC around November's start, 21:30-22:30 UTC around week 43's.
INCIDENTS = (
    (datetime(2026, 10, 31, 22, 30, tzinfo=UTC), datetime(2026, 11, 1, 0, 30, tzinfo=UTC), 60),
    (datetime(2026, 10, 18, 21, 30, tzinfo=UTC), datetime(2026, 10, 18, 22, 30, tzinfo=UTC), 120),
)
REQUESTS_PER_MINUTE = 600


def _bad(t: float) -> int:
    """Bad events of the step that ends at ``t``: 1 a minute, more during an incident."""
    at = datetime.fromtimestamp(t, UTC)
    for begin, end, bad in INCIDENTS:
        if begin < at <= end:
            return bad
    # A little daily variation, so ratios are not one number.
    return 1 + (int(t // 60) % 1440 // 480)


def _increments(t: float) -> tuple[float, float]:
    bad = _bad(t)
    return float(REQUESTS_PER_MINUTE - bad), float(bad)


def _history() -> list[Series]:
    return counters_from_increments(
        "http_requests",
        [{"job": "cal", "code": "200"}, {"job": "cal", "code": "500"}],
        start=START.timestamp(),
        step=STEP,
        count=COUNT,
        increments=_increments,
    )


def since(begin: datetime, at: datetime) -> tuple[float, float]:
    """(bad, total) events of the steps ending in (begin, at], counted from the increments."""
    first = int((begin - START) / STEP) + 1
    last = int((at - START) / STEP)
    bad = sum(_bad((START + i * STEP).timestamp()) for i in range(first, last + 1))
    return float(bad), float(REQUESTS_PER_MINUTE * (last - first + 1))


SLO_FILE = """
version: budgetguard/v1
service: cal
slos:
  - name: monthly
    objective: 99.5
    window: {calendar: month, timezone: Europe/Berlin}
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="cal",code="500"}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="cal"}[{{.window}}]))
  - name: weekly
    objective: 99.5
    window: {calendar: week, timezone: Europe/Berlin}
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="cal",code="500"}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="cal"}[{{.window}}]))
"""
BUDGET = 0.005


@pytest.fixture(scope="module")
def history() -> list[Series]:
    return _history()


@pytest.fixture
def prometheus(prometheus_lab: LabFactory, history: list[Series]) -> PrometheusLab:
    return prometheus_lab(history)


def evaluate(tmp_path: Path, url: str, at: datetime) -> dict[str, dict[str, Any]]:
    path = tmp_path / "cal.yaml"
    path.write_text(textwrap.dedent(SLO_FILE))
    out, err = io.StringIO(), io.StringIO()
    main(["eval", str(path), "--prometheus", url, "--json", "--at", at.isoformat()], stdout=out, stderr=err)
    assert err.getvalue() == ""
    return {r["slo"]: r for r in json.loads(out.getvalue())}


class Case(NamedTuple):
    slo: str
    at: datetime
    start: datetime  # of the period, by hand from the zone's offsets
    end: datetime
    span: str  # the range the SLO window's queries read


CASES = [
    pytest.param(
        Case(
            "monthly",
            datetime(2026, 11, 2, 10, tzinfo=UTC),
            NOVEMBER,
            datetime(2026, 11, 30, 23, tzinfo=UTC),
            "1d11h",
        ),
        id="a month begins at Berlin's midnight, an hour before UTC's, with part of an incident",
    ),
    pytest.param(
        Case(
            "monthly",
            datetime(2026, 10, 28, 12, 0, tzinfo=UTC),
            OCTOBER,
            NOVEMBER,
            "27d14h",
        ),
        id="October began in summer time and ends in winter time: 31 days and 1 hour",
    ),
    pytest.param(
        Case(
            "weekly",
            datetime(2026, 10, 25, 22, 30, tzinfo=UTC),
            WEEK_43,
            WEEK_44,
            "7d30m",
        ),
        id="the week of the change lasts 7 days and 1 hour: 30 minutes left at 7 days 30 minutes",
    ),
    pytest.param(
        Case(
            "weekly",
            datetime(2026, 10, 26, 0, 15, tzinfo=UTC),
            WEEK_44,
            datetime(2026, 11, 1, 23, tzinfo=UTC),
            "1h15m",
        ),
        id="the next week begins on Monday at midnight in winter time",
    ),
]


@pytest.mark.parametrize("case", CASES)
def test_the_period_so_far_matches_the_events_counted_since_it_began(
    prometheus: PrometheusLab, tmp_path: Path, case: Case
) -> None:
    name, at, start, end, span = case
    record = evaluate(tmp_path, prometheus.url, at)[name]
    bad, total = since(start, at)
    assert record["calendar"]["start"] == start.isoformat().replace("+00:00", "Z")
    assert record["calendar"]["end"] == end.isoformat().replace("+00:00", "Z")
    assert record["calendar"]["range"] == span
    assert record["calendar"]["timezone"] == "Europe/Berlin"
    nominal = "30d" if name == "monthly" else "7d"
    assert record["window"] == nominal
    assert record["error_ratio"] == pytest.approx(bad / total, rel=1e-9)
    assert record["events"] == pytest.approx(total, rel=1e-9)
    assert record["events_by_window"][nominal] == pytest.approx(total, rel=1e-9)
    assert record["burn_rates"][nominal] == pytest.approx(bad / total / BUDGET, rel=1e-9)
    assert record["calendar"]["burn_rate"] == record["burn_rates"][nominal]
    remaining = 1 - bad / total / BUDGET
    assert record["budget_remaining"] == pytest.approx(remaining, rel=1e-9)
    left = (end - at).total_seconds()
    assert record["time_left_seconds"] == left
    assert record["budget_remaining_per_day"] == pytest.approx(
        max(remaining, 0) / max(left / 86400, 1), rel=1e-9
    )


def test_tiers_stay_rolling_windows_scaled_to_the_nominal_period(
    prometheus: PrometheusLab, tmp_path: Path
) -> None:
    at = datetime(2026, 11, 1, 0, 30, tzinfo=UTC)  # 90 minutes into November, as the incident ends
    record = evaluate(tmp_path, prometheus.url, at)["monthly"]
    assert record["calendar"]["range"] == "1h30m"
    # The 6h window reaches back into October, incident's first half included: it rolls.
    bad, total = since(at - timedelta(hours=6), at)
    assert record["burn_rates"]["6h"] == pytest.approx(bad / total / BUDGET, rel=1e-9)
    november_bad, november_total = since(NOVEMBER, at)
    assert bad - november_bad > 30 * 60  # October's 30 incident minutes count in the 6h, not the month
    assert record["error_ratio"] == pytest.approx(november_bad / november_total, rel=1e-9)
    # A month's tiers are the workbook's 30-day ones: 14.4x over 1h/5m pages.
    page = next(t for t in record["tiers"] if t["long_window"] == "1h")
    assert page["burn_rate_threshold"] == pytest.approx(14.4)


# --- the daemon: metrics, API and the freeze gate on a live Prometheus --------------------------------

LIVE_SLO = """
version: budgetguard/v1
service: checkout
slos:
  - name: monthly
    objective: 99.9
    window: {calendar: month, timezone: Europe/Berlin}
    freeze: true
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="checkout",code="500"}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="checkout"}[{{.window}}]))
"""


@pytest.fixture
def live_target() -> Iterator[MetricsTarget]:
    with metrics_target() as live:
        live.set_stream({"job": "checkout"}, requests_per_second=50, error_ratio=0.01)
        yield live


def test_the_daemon_serves_the_period_so_far_and_freezes_until_the_month_ends(
    prometheus_lab: LabFactory, live_target: MetricsTarget, tmp_path: Path
) -> None:
    lab = prometheus_lab(
        scrape_targets={"checkout": [live_target.address]}, scrape_interval=timedelta(seconds=1)
    )
    wait_for(
        lambda: lab.query('count_over_time(http_requests_total{job="checkout",code="500"}[1m]) > 2'),
        20,
        "three scrapes",
    )
    slos = tmp_path / "slos"
    slos.mkdir()
    (slos / "checkout.yaml").write_text(textwrap.dedent(LIVE_SLO))
    daemon = DaemonProcess(slos, lab.url, tmp_path / "bg.db")
    try:
        daemon.wait_ready()
        record = daemon.get("/api/v1/slos/checkout/monthly").json()["slo"]
        at = datetime.fromisoformat(record["at"])
        period = period_at(at, CalendarUnit.MONTH, "Europe/Berlin")
        assert record["calendar"]["start"] == period.start.isoformat().replace("+00:00", "Z")
        assert record["calendar"]["range"] == format_duration(query_range(period, at))
        assert record["time_left_seconds"] == pytest.approx((period.end - at).total_seconds())
        span = record["calendar"]["range"]
        [sample] = lab.query(
            f'sum(rate(http_requests_total{{job="checkout",code="500"}}[{span}])) / '
            f'sum(rate(http_requests_total{{job="checkout"}}[{span}]))',
            at=at.timestamp(),
        )
        assert record["budget_remaining"] == pytest.approx(1 - float(sample.value) / 0.001, rel=1e-9)
        assert record["budget_remaining"] < 0  # 1% errors against a 0.1% budget: spent

        metrics = daemon.metrics()
        labels = {"service": "checkout", "slo": "monthly"}
        assert (
            one(metrics, "budgetguard_slo_period_end_timestamp_seconds", **labels) == period.end.timestamp()
        )
        assert one(metrics, "budgetguard_slo_error_budget_remaining_per_day_ratio", **labels) == 0.0

        gate = daemon.get("/gates/release/checkout").json()["data"]
        assert gate["ok"] is False and gate["frozen"] is True
        assert gate["recoveryAt"] == period.end.isoformat().replace("+00:00", "Z")
        assert "calendar month" in gate["slos"][0]["recovery"] and "ends" in gate["slos"][0]["recovery"]
        assert daemon.stop() == 0
    finally:
        daemon.close()
