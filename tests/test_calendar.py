"""Calendar windows: the period arithmetic (with Hypothesis over daylight-saving zones), the native and
OpenSLO spellings, and what an evaluation of a calendar SLO says in records, metrics and the freeze gate.

The numbers against a real Prometheus are in tests/test_calendar_prometheus.py.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from budgetguard.cli.render import table
from budgetguard.core import freeze, policy, queries, records
from budgetguard.core.calendar import (
    CalendarUnit,
    budget_per_day,
    day_start,
    period_at,
    query_range,
    zone,
)
from budgetguard.core.errors import QueryError
from budgetguard.core.policy import Observation
from budgetguard.core.ports import QueryResult, Sample
from budgetguard.core.queries import PART_LABEL
from budgetguard.core.spec import SLO
from budgetguard.core.verdict import Verdict
from budgetguard.engine import Engine
from budgetguard.loader import load_paths, load_text
from budgetguard.recording import RECORDING_CALENDAR, RecordingEngine
from budgetguard.store import Store
from budgetguard.web import create_app
from tests.helpers import slo_from
from tests.test_exporter import exporter_over, scrape, value
from tests.test_formats import OPENSLO_BASE, run, same_slo
from tests.test_recording import Recorded
from tests.test_status_page import Metrics, View

# Zones whose changes are awkward: at midnight (Havana, Santiago, Beirut), by half an hour (Lord Howe),
# a skipped day (Apia, 30 December 2011), across midnight (Toronto, 1919), south of the equator
# (Sydney), and the ordinary ones.
ZONES = (
    "UTC",
    "America/Toronto",
    "Europe/Berlin",
    "America/New_York",
    "America/Havana",
    "America/Santiago",
    "Asia/Beirut",
    "Australia/Lord_Howe",
    "Pacific/Apia",
    "Australia/Sydney",
    "Asia/Kolkata",
)
INSTANTS = st.datetimes(min_value=datetime(1910, 1, 1), max_value=datetime(2037, 12, 31)).map(
    lambda naive: naive.replace(tzinfo=UTC)
)


@settings(max_examples=400, deadline=None)
@given(at=INSTANTS, unit=st.sampled_from(CalendarUnit), timezone=st.sampled_from(ZONES))
def test_every_instant_falls_in_one_period_that_begins_where_the_previous_ends(
    at: datetime, unit: CalendarUnit, timezone: str
) -> None:
    period = period_at(at, unit, timezone)
    assert period.start <= at < period.end
    assert period_at(period.start, unit, timezone) == period
    following = period_at(period.end, unit, timezone)
    assert following.start == period.end
    assert period_at(period.start - timedelta(microseconds=1), unit, timezone).end == period.start


@settings(max_examples=400, deadline=None)
@given(at=INSTANTS, unit=st.sampled_from(CalendarUnit), timezone=st.sampled_from(ZONES))
def test_a_period_begins_on_its_first_local_day_and_lasts_its_days_give_or_take_a_change(
    at: datetime, unit: CalendarUnit, timezone: str
) -> None:
    tz = ZoneInfo(timezone)
    period = period_at(at, unit, timezone)
    first = period.start.astimezone(tz).date()
    before = (period.start - timedelta(seconds=1)).astimezone(tz).date()
    assert before < first
    if unit is CalendarUnit.WEEK:
        assert first.weekday() == 0 or timezone == "Pacific/Apia"  # Apia skipped a Friday, not a Monday
        days = {7}
    elif unit is CalendarUnit.MONTH:
        assert first.day == 1
        days = {28, 29, 30, 31}
    else:
        assert first.day == 1 and first.month in (1, 4, 7, 10)
        days = {90, 91, 92}
    # Daylight-saving changes add or remove at most an hour (Lord Howe half an hour) per period; Apia's
    # skipped day and the old offset changes of some zones are whole days or odd minutes away.
    whole_days = round(period.length / timedelta(days=1))
    drift = abs(period.length - timedelta(days=whole_days))
    if timezone in ("UTC", "Europe/Berlin", "America/New_York", "Australia/Sydney") and at.year >= 1996:
        assert whole_days in days and drift <= timedelta(hours=1)


@pytest.mark.parametrize(
    ("at", "unit", "timezone", "start", "end"),
    [
        pytest.param(
            datetime(2026, 3, 15, tzinfo=UTC),
            CalendarUnit.MONTH,
            "Europe/Berlin",
            datetime(2026, 2, 28, 23, tzinfo=UTC),
            datetime(2026, 3, 31, 22, tzinfo=UTC),
            id="Berlin's March loses an hour: 30 days 23 hours",
        ),
        pytest.param(
            datetime(2026, 10, 15, tzinfo=UTC),
            CalendarUnit.MONTH,
            "Europe/Berlin",
            datetime(2026, 9, 30, 22, tzinfo=UTC),
            datetime(2026, 10, 31, 23, tzinfo=UTC),
            id="Berlin's October gains one: 31 days 1 hour",
        ),
        pytest.param(
            datetime(2026, 11, 4, 12, tzinfo=UTC),
            CalendarUnit.WEEK,
            "America/New_York",
            datetime(2026, 11, 2, 5, tzinfo=UTC),
            datetime(2026, 11, 9, 5, tzinfo=UTC),
            id="a New York week begins on Monday at midnight, after its change on Sunday",
        ),
        pytest.param(
            datetime(2026, 12, 4, 16, tzinfo=UTC),
            CalendarUnit.QUARTER,
            "UTC",
            datetime(2026, 10, 1, tzinfo=UTC),
            datetime(2027, 1, 1, tzinfo=UTC),
            id="the fourth quarter runs from October to the new year",
        ),
        pytest.param(
            datetime(2026, 12, 31, 23, 30, tzinfo=UTC),
            CalendarUnit.MONTH,
            "Asia/Kolkata",
            datetime(2026, 12, 31, 18, 30, tzinfo=UTC),
            datetime(2027, 1, 31, 18, 30, tzinfo=UTC),
            id="in Kolkata January begins at 18:30 UTC on New Year's Eve",
        ),
    ],
)
def test_periods_of_known_months_weeks_and_quarters(
    at: datetime, unit: CalendarUnit, timezone: str, start: datetime, end: datetime
) -> None:
    period = period_at(at, unit, timezone)
    assert (period.start, period.end) == (start, end)


def test_a_day_that_never_was_begins_when_the_clocks_jumped_over_it() -> None:
    apia = zone("Pacific/Apia")  # 29 December 2011 23:59:59 was followed by 31 December 00:00:00
    jump = datetime(2011, 12, 30, 10, tzinfo=UTC)
    assert day_start(date(2011, 12, 30), apia) == jump
    assert day_start(date(2011, 12, 31), apia) == jump
    week = period_at(jump, CalendarUnit.WEEK, "Pacific/Apia")
    assert week.start == datetime(2011, 12, 26, 10, tzinfo=UTC)  # Monday at midnight, UTC-10
    assert week.length == timedelta(days=6)  # and Monday 2 January at midnight, UTC+14


def test_a_day_whose_midnight_was_skipped_begins_at_the_jump() -> None:
    # Toronto, 30 March 1919: 23:30 EST was followed by 00:30 EDT, so 31 March had no midnight.
    start = day_start(date(1919, 3, 31), zone("America/Toronto"))
    assert start == datetime(1919, 3, 31, 4, 30, tzinfo=UTC)
    assert period_at(start, CalendarUnit.WEEK, "America/Toronto").start == start  # a Monday


def test_the_period_names_are_how_people_say_them() -> None:
    at = datetime(2026, 11, 2, 10, tzinfo=UTC)
    assert period_at(at, CalendarUnit.MONTH, "Europe/Berlin").name == "2026-11"
    assert period_at(at, CalendarUnit.WEEK, "Europe/Berlin").name == "2026-W45"
    assert period_at(at, CalendarUnit.QUARTER, "Europe/Berlin").name == "2026-Q4"


def test_the_query_range_is_the_time_since_the_period_began_to_the_millisecond() -> None:
    period = period_at(datetime(2026, 11, 4, tzinfo=UTC), CalendarUnit.MONTH, "UTC")
    at = datetime(2026, 11, 4, 4, 12, 5, 123_999, tzinfo=UTC)
    assert query_range(period, at) == timedelta(days=3, hours=4, minutes=12, seconds=5, milliseconds=123)
    assert query_range(period, period.start) == timedelta(milliseconds=1)  # a range is never empty


@pytest.mark.parametrize(
    ("remaining", "left", "expected"),
    [
        pytest.param(0.6, timedelta(days=12), 0.05, id="0.6 left over 12 days is 0.05 a day"),
        pytest.param(-0.2, timedelta(days=12), 0.0, id="nothing is left per day once spent"),
        pytest.param(0.3, timedelta(hours=2), 0.3, id="the last day counts whole"),
        pytest.param(None, timedelta(days=3), None, id="no budget measured, no figure"),
    ],
)
def test_budget_left_per_remaining_day(
    remaining: float | None, left: timedelta, expected: float | None
) -> None:
    assert budget_per_day(remaining, left) == (None if expected is None else pytest.approx(expected))


def test_an_unknown_time_zone_says_how_to_write_one() -> None:
    with pytest.raises(ValueError, match="IANA time zone name; write one such as Europe/Berlin"):
        zone("CET+1")


# --- the native spelling ---------------------------------------------------------------------------

CALENDAR = """
version: budgetguard/v1
service: checkout
slos:
  - name: availability
    objective: 99.9
    window: {calendar: month, timezone: Europe/Berlin}
    freeze: {below: 0.25}
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="checkout",code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="checkout"}[{{.window}}]))
"""


def calendar_slo(window: str = "{calendar: month, timezone: Europe/Berlin}") -> SLO:
    return slo_from(CALENDAR.replace("{calendar: month, timezone: Europe/Berlin}", window))


def test_a_calendar_month_has_the_nominal_30_days_and_the_workbook_tiers_of_a_30d_window() -> None:
    slo = calendar_slo()
    rolling = slo_from(CALENDAR.replace("window: {calendar: month, timezone: Europe/Berlin}", "window: 30d"))
    assert slo.calendar is not None and slo.calendar.timezone == "Europe/Berlin"
    assert slo.window == timedelta(days=30)
    assert slo.tiers == rolling.tiers
    assert slo.window_name == "calendar month (Europe/Berlin)"
    assert calendar_slo("{calendar: week}").window == timedelta(days=7)
    assert calendar_slo("{calendar: quarter}").window == timedelta(days=90)
    assert calendar_slo("{calendar: week}").calendar.timezone == "UTC"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("window", "field", "fragment"),
    [
        pytest.param(
            "{calendar: fortnight}",
            "slos[0].window.calendar",
            "'week', 'month' or 'quarter'",
            id="an unknown period names the three there are",
        ),
        pytest.param(
            "{calendar: month, timezone: Europe/Berln}",
            "slos[0].window.timezone",
            "is not an IANA time zone name",
            id="a misspelt time zone is named with the fix",
        ),
        pytest.param(
            "{calendar: month, tz: UTC}",
            "slos[0].window.tz",
            "unknown field 'tz'",
            id="an unknown key lists the allowed ones",
        ),
        pytest.param(
            "30x", "slos[0].window", "is not a Prometheus duration", id="a bad duration is still one"
        ),
    ],
)
def test_a_wrong_calendar_window_names_file_field_and_fix(window: str, field: str, fragment: str) -> None:
    text = CALENDAR.replace("{calendar: month, timezone: Europe/Berlin}", window)
    _, problems = load_text(text, "slos/checkout.yaml")
    (problem,) = problems
    assert problem.field == field and fragment in problem.message, str(problem)
    assert problem.line == 7
    if fragment.startswith("unknown field"):
        assert "allowed here: calendar, timezone" in problem.fix


def test_a_calendar_slos_tiers_must_be_shorter_than_its_period() -> None:
    text = CALENDAR.replace(
        "    freeze: {below: 0.25}\n",
        "    tiers: [{severity: page, long_window: 7d, short_window: 1h, burn_rate: 2}]\n",
    ).replace("calendar: month", "calendar: week")
    _, problems = load_text(text, "w.yaml")
    (problem,) = problems
    assert (
        problem.field == "slos[0].tiers"
        and "tiers are rolling windows shorter than the period" in problem.message
    )


def test_sloths_format_has_no_calendar_windows() -> None:
    text = CALENDAR.replace("budgetguard/v1", "prometheus/v1").replace("    freeze: {below: 0.25}\n", "")
    _, problems = load_text(text, "sloth.yaml")
    assert problems and all("window" in (p.field or "") or "window" in p.message for p in problems)


# --- what an evaluation says -----------------------------------------------------------------------

AT = datetime(2026, 11, 4, 4, 12, 5, tzinfo=UTC)  # Berlin's November began at 23:00 UTC on 31 October


def evaluated(slo: SLO, ratio: float, at: datetime = AT) -> policy.Evaluation:
    observations = {w: Observation(w, ratio, 1e6) for w in slo.windows()}
    return policy.evaluate(slo, observations, at)


def test_the_period_window_reads_the_time_since_the_period_began() -> None:
    slo = calendar_slo()
    planned = queries.plan(slo, period_range=queries.calendar_range(slo, AT))
    period = [q for q in planned if q.window == slo.window]
    assert {q.span for q in period} == {timedelta(days=3, hours=5, minutes=12, seconds=5)}
    assert all("[3d5h12m5s]" in q.expr for q in period)
    assert all(q.span is None and "[3d5h12m5s]" not in q.expr for q in planned if q.window != slo.window)
    assert queries.calendar_range(slo_from(), AT) is None  # a rolling window reads itself


def test_a_calendar_record_adds_the_period_the_time_left_and_the_budget_per_day() -> None:
    ev = evaluated(calendar_slo(), 0.0004)  # 40% of the budget spent so far
    record = records.to_record(ev)
    assert record["calendar"] == {
        "calendar": "month",
        "timezone": "Europe/Berlin",
        "period": "2026-11",
        "start": "2026-10-31T23:00:00Z",
        "end": "2026-11-30T23:00:00Z",
        "range": "3d5h12m5s",
        "burn_rate": pytest.approx(0.4),
    }
    left = datetime(2026, 11, 30, 23, tzinfo=UTC) - AT
    assert record["time_left_seconds"] == left.total_seconds()
    assert record["budget_remaining"] == pytest.approx(0.6)
    assert record["budget_remaining_per_day"] == pytest.approx(0.6 / (left / timedelta(days=1)))
    assert record["window"] == "30d" and "30d" in record["burn_rates"]  # the existing fields stay
    again = records.to_record(records.from_record(record, ev.slo))
    assert again == record  # derived from the SLO and the instant: the same after a restart

    rolling = records.to_record(evaluated(slo_from(), 0.0004))
    assert (rolling["calendar"], rolling["time_left_seconds"], rolling["budget_remaining_per_day"]) == (
        None,
        None,
        None,
    )


def test_metrics_say_when_the_period_ends_and_the_budget_left_per_day() -> None:
    calendar, rolling = evaluated(calendar_slo(), 0.0004), evaluated(slo_from(), 0.0004)
    samples = scrape(exporter_over(calendar))
    labels = {"service": "checkout", "slo": "availability"}
    end = datetime(2026, 11, 30, 23, tzinfo=UTC)
    assert value(samples, "budgetguard_slo_period_end_timestamp_seconds", **labels) == end.timestamp()
    assert value(samples, "budgetguard_slo_period_left_seconds", **labels) == (end - AT).total_seconds()
    assert value(samples, "budgetguard_slo_error_budget_remaining_per_day_ratio", **labels) == pytest.approx(
        0.6 / ((end - AT) / timedelta(days=1))
    )
    assert value(samples, "budgetguard_slo_window_seconds", **labels) == 30 * 86400
    plain = scrape(exporter_over(rolling))
    assert value(plain, "budgetguard_slo_period_end_timestamp_seconds", **labels) is None


def test_a_frozen_calendar_slo_recovers_when_its_period_ends() -> None:
    ev = evaluated(calendar_slo(), 0.0008)  # 20% left, under the 25% floor
    judged = freeze.judge(ev, {})
    assert judged is not None and judged.state is freeze.FreezeState.FROZEN
    assert "of its calendar month (Europe/Berlin) error budget left" in judged.reason
    recovery = freeze.calendar_recovery(ev)
    assert recovery is not None and recovery.at == datetime(2026, 11, 30, 23, tzinfo=UTC)
    assert not recovery.upper_bound
    assert "calendar month 2026-11 ends" in recovery.reason and "2026-11-30T23:00:00Z" in recovery.reason
    assert freeze.calendar_recovery(evaluated(slo_from(), 0.0008)) is None  # rolling: errors age out
    healthy = freeze.calendar_recovery(evaluated(calendar_slo(), 0.0001))
    assert healthy is not None and healthy.reason == "not frozen"


# --- recording-rule mode ---------------------------------------------------------------------------


class RecordedWithPeriod(Recorded):
    """Recorded series for the rolling windows, and raw answers for the calendar period so far."""

    def __init__(self, slos: list[SLO], period_rates: tuple[float, float] | None) -> None:
        super().__init__(slos, rps=100.0, ratio=0.002)
        self.period_rates = period_rates

    async def query(self, expr: str, at: datetime) -> QueryResult:
        if "[3d5h12m5s]" not in expr:
            return await super().query(expr, at)
        self.asked.append(expr)
        if self.period_rates is None:
            raise QueryError("the period query failed", query=expr, status=422)
        errors, total = self.period_rates
        return QueryResult(
            (Sample({PART_LABEL: "errors:30d"}, errors), Sample({PART_LABEL: "total:30d"}, total))
        )


def test_recording_mode_reads_the_tiers_recorded_and_the_period_raw() -> None:
    slo = calendar_slo()
    source = RecordedWithPeriod([slo], period_rates=(0.03, 100.0))  # 0.03% so far; 0.2% recorded
    (ev,) = asyncio.run(RecordingEngine(source).evaluate_all([slo], AT))
    assert ev.query_mode == RECORDING_CALENDAR
    assert ev.budget_remaining == pytest.approx(1 - 0.0003 / 0.001)  # the period, read raw
    span = timedelta(days=3, hours=5, minutes=12, seconds=5)
    assert ev.events == pytest.approx(100.0 * span.total_seconds())
    assert ev.window(timedelta(hours=1)).burn_rate == pytest.approx(2.0)  # type: ignore[union-attr]
    raw = [q for q in source.asked if "[3d5h12m5s]" in q]
    assert len(raw) == 1 and "[1h]" not in raw[0]  # only the period window is asked raw
    samples = scrape(exporter_over(ev))
    assert value(samples, "budgetguard_slo_recording_fallback", service="checkout", slo="availability") == 0


def test_recording_mode_sends_a_calendar_slo_to_raw_when_its_period_query_fails() -> None:
    slo = calendar_slo()
    source = RecordedWithPeriod([slo], period_rates=None)
    fallback: list[str] = []

    class Fallback(Engine):
        async def evaluate_all(self, slos, at):  # type: ignore[no-untyped-def]
            fallback.extend(s.id for s in slos)
            return [policy.Evaluation(s, at, Verdict.HEALTHY, "raw") for s in slos]

    (ev,) = asyncio.run(RecordingEngine(source, Fallback(source)).evaluate_all([slo], AT))
    assert fallback == [slo.id]
    assert ev.query_mode.startswith("raw (fallback: the calendar period's query failed")


# --- convert and the eval table ----------------------------------------------------------------------


def test_convert_prints_an_openslo_calendar_month_as_a_native_calendar_window(tmp_path: Path) -> None:
    source = tmp_path / "openslo.yaml"
    source.write_text(
        OPENSLO_BASE.replace(
            "    - duration: 28d\n      isRolling: true",
            "    - duration: 1M\n      isRolling: false\n      calendar:\n"
            "        startTime: 2026-01-01 00:00:00\n        timeZone: Europe/Berlin",
        )
    )
    code, out, err = run("convert", str(source))
    assert code == 0, err
    assert "  window:\n    calendar: month\n    timezone: Europe/Berlin\n" in out
    converted = tmp_path / "native.yaml"
    converted.write_text(out)
    (again,) = load_paths([converted]).slos
    (original,) = load_paths([source]).slos
    assert again.calendar == original.calendar and again.window == timedelta(days=30)
    assert same_slo(again) == same_slo(original)


def test_the_eval_table_shows_the_period_the_time_left_and_the_budget_per_day() -> None:
    text = table([evaluated(calendar_slo(), 0.0004), evaluated(slo_from(), 0.0004)])
    calendar_row, rolling_row = text.splitlines()[1:]
    # 26 days 18 hours 47 minutes 55 seconds left, shown to the minute; 60% over 26.78 days is 2.2% a day
    assert "2026-11, 26d18h47m left" in calendar_row and "60.0% (2.2%/d)" in calendar_row
    assert " 30d " in rolling_row and "60.0% " in rolling_row and "/d)" not in rolling_row


def test_time_zones_come_from_the_tzdata_package_where_the_system_has_none() -> None:
    # A slim container image has no /usr/share/zoneinfo: zoneinfo then reads the tzdata package, a
    # runtime dependency. An empty PYTHONTZPATH is such a system.
    script = (
        "from datetime import UTC, datetime\n"
        "from budgetguard.core.calendar import CalendarUnit, period_at\n"
        "import zoneinfo\n"
        "assert zoneinfo.TZPATH == (), zoneinfo.TZPATH\n"
        "p = period_at(datetime(2026, 11, 2, tzinfo=UTC), CalendarUnit.MONTH, 'Europe/Berlin')\n"
        "print(p.start.isoformat())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONTZPATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2026-10-31T23:00:00+00:00"


def test_the_status_page_shows_the_period_and_that_a_freeze_lasts_until_it_ends(tmp_path: Path) -> None:
    ev = evaluated(calendar_slo(), 0.0008)  # 20% left, under the 25% floor

    async def scenario() -> httpx.Response:
        with Store(tmp_path / "bg.db") as store:
            store.record_cycle([ev])
            app = create_app(View(store, [ev]), Metrics(), None)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://status.test") as c:
                return await c.get("/slos/checkout/availability")

    page = asyncio.run(scenario()).text
    assert "99.9% over calendar month (Europe/Berlin)" in page
    assert "2026-11: resets" in page and "2026-11-30 23:00:00 UTC" in page and "26d18h47m left" in page
    assert "Budget left per remaining day" in page
    assert "back when the calendar month 2026-11 ends and its budget resets" in page
