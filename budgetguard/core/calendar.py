"""Calendar windows: where a calendar week, month or quarter begins and ends, in a time zone.

An SLO reported per calendar month (an SLA, a monthly review) has a budget that resets when the month
begins at midnight in the team's time zone: not at midnight UTC, and not every 30 days. This module owns
that arithmetic and nothing else: the period an instant falls in, its start and end as UTC instants, the
range a query reads to cover "since the period began", and the budget left per remaining day. Weeks
begin on Monday (ISO 8601); quarters in January, April, July and October.

Daylight-saving changes come from the IANA zone database through ``zoneinfo`` (the ``tzdata`` package
ships it where the system has none): a month holding a change is an hour shorter or longer than its days
times 24 hours. A period begins at the first instant whose local date is its first day: local midnight,
or, where a change skips midnight (clocks jumping from 23:30 to 00:30), the instant of the jump.

Must not: read the clock (the instant is an argument), log, or know about SLOs and queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_SECOND = timedelta(seconds=1)
_MILLISECOND = timedelta(milliseconds=1)
_DAY = timedelta(days=1)


class CalendarUnit(StrEnum):
    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"


# The length burn-rate tiers, thresholds and generated rules use for a calendar period: one fixed number
# per unit, so a tier fires at the same burn rate in February as in March and in the daemon as in the
# Prometheus rules (which cannot know which month it is). 30d is the workbook's (and Sloth's) month, so
# `calendar: month` alerts exactly as `window: 30d` does; a real month is within -7%/+3.3% of it.
NOMINAL_LENGTH: dict[CalendarUnit, timedelta] = {
    CalendarUnit.WEEK: timedelta(days=7),
    CalendarUnit.MONTH: timedelta(days=30),
    CalendarUnit.QUARTER: timedelta(days=90),
}


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; ValueError with the fix when there is none by that name."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"{name!r} is not an IANA time zone name; write one such as Europe/Berlin, America/New_York "
            "or UTC (offsets such as +01:00 do not follow daylight-saving changes)"
        ) from exc


@dataclass(frozen=True)
class Period:
    """One calendar period: ``start`` (inclusive) and ``end`` (exclusive) as aware UTC instants."""

    unit: CalendarUnit
    timezone: str
    start: datetime
    end: datetime

    @property
    def length(self) -> timedelta:
        """The real length: a Berlin October is 31 days and one hour."""
        return self.end - self.start

    def elapsed(self, at: datetime) -> timedelta:
        return at - self.start

    def left(self, at: datetime) -> timedelta:
        return self.end - at

    @property
    def name(self) -> str:
        """How people name the period: ``2026-11``, ``2026-W44`` (ISO week), ``2026-Q4``."""
        first = self.start.astimezone(zone(self.timezone)).date()
        if self.unit is CalendarUnit.MONTH:
            return f"{first.year:04d}-{first.month:02d}"
        if self.unit is CalendarUnit.QUARTER:
            return f"{first.year:04d}-Q{(first.month - 1) // 3 + 1}"
        year, week, _ = first.isocalendar()
        return f"{year:04d}-W{week:02d}"


def _first_day(day: date, unit: CalendarUnit) -> date:
    if unit is CalendarUnit.WEEK:
        return day - timedelta(days=day.weekday())
    if unit is CalendarUnit.MONTH:
        return day.replace(day=1)
    return date(day.year, (day.month - 1) // 3 * 3 + 1, 1)


def _next_first_day(first: date, unit: CalendarUnit) -> date:
    if unit is CalendarUnit.WEEK:
        return first + timedelta(days=7)
    months = 1 if unit is CalendarUnit.MONTH else 3
    index = first.year * 12 + first.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _previous_first_day(first: date, unit: CalendarUnit) -> date:
    return _first_day(first - _DAY, unit)


def day_start(day: date, tz: ZoneInfo) -> datetime:
    """The first instant (UTC) whose local date in ``tz`` is ``day`` or later.

    ``fold=0`` gives local midnight, the earlier one when a change repeats it. When a change skips
    midnight, ``fold=0`` reads it with the offset before the change and lands after the jump; the day
    then began at the jump, found by bisecting whole seconds (zone transitions fall on whole seconds).
    """
    candidate = datetime.combine(day, time(), tzinfo=tz).astimezone(UTC)
    if (candidate - _SECOND).astimezone(tz).date() < day:
        return candidate
    low, high = candidate - _DAY, candidate  # low is in an earlier day, high in this one
    while high - low > _SECOND:
        middle = low + (high - low) // 2
        middle -= timedelta(microseconds=middle.microsecond)
        if middle <= low:
            break
        if middle.astimezone(tz).date() >= day:
            high = middle
        else:
            low = middle
    return high


def period_at(at: datetime, unit: CalendarUnit, timezone: str) -> Period:
    """The period of ``unit`` in ``timezone`` that ``at`` (an aware instant) falls in."""
    if at.tzinfo is None:
        raise ValueError("the instant must be timezone-aware")
    tz = zone(timezone)
    first = _first_day(at.astimezone(tz).date(), unit)
    start, end = day_start(first, tz), day_start(_next_first_day(first, unit), tz)
    # Where a change repeats the hour around midnight, the local date can step back after midnight
    # passed; the instant then belongs to the period its UTC instant lies in.
    while at >= end:
        first = _next_first_day(first, unit)
        start, end = end, day_start(_next_first_day(first, unit), tz)
    while at < start:
        first = _previous_first_day(first, unit)
        start, end = day_start(first, tz), start
    return Period(unit, timezone, start, end)


def query_range(period: Period, at: datetime) -> timedelta:
    """The range a query evaluated at ``at`` reads to cover the period so far: the time since its start,
    floored to the millisecond (Prometheus' resolution), at least 1ms (a range cannot be empty)."""
    elapsed = period.elapsed(at)
    return max(elapsed // _MILLISECOND * _MILLISECOND, _MILLISECOND)


def budget_per_day(budget_remaining: float | None, left: timedelta) -> float | None:
    """The share of the period's budget left per remaining day (0 once spent); None when unknown.

    What a team may still spend each day until the period ends: 0.6 left with 12 days to go is 0.05 a
    day. The last day counts as a whole day, so the figure never explodes in the period's final hours.
    """
    if budget_remaining is None:
        return None
    days = max(left / _DAY, 1.0)
    return max(budget_remaining, 0.0) / days
