"""Decisions: from measured windows to a verdict with a human reason.

The verdict is a closed set. ``burning`` means a page tier fires, ``warning`` a ticket tier; a tier
fires when both its long and its short window burn faster than its threshold (SRE Workbook ch. 5,
"multiwindow, multi-burn-rate alerts"), so the daemon's verdict agrees with the alerts that
``budgetguard rules`` generates. ``inconclusive`` is never a silent ``healthy``: no traffic (0/0), too
few events, missing series or partial data all say so. ``error`` means the source failed.

Pure: no I/O, no clock (``at`` is an argument), no logging; reasons are returned, not logged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, NamedTuple

from budgetguard.core import budget, calendar
from budgetguard.core.calendar import Period
from budgetguard.core.durations import format_duration
from budgetguard.core.spec import SLO, BurnTier, Severity
from budgetguard.core.verdict import ErrorKind, QueryMode, Verdict

if TYPE_CHECKING:  # canary builds on this module; its results ride on an Evaluation
    from budgetguard.core.canary import CanaryEvaluation

# rate() extrapolates bad and total events separately; a ratio a little above 1 is that artefact.
# Far above 1 the error query counts events the total query does not: a configuration problem.
_RATIO_ARTEFACT_LIMIT = 1.05


# Observation, WindowStat and TierState are named tuples rather than frozen dataclasses: an evaluation
# makes ~20 of them per SLO, 200,000 a cycle at 10,000 SLOs, and a tuple is made about twice as fast.


class Observation(NamedTuple):
    """What the source said about one window: the error ratio and, when known, the event count.

    ``error_ratio`` is ``None`` when the window cannot be judged; ``missing`` then says why.
    """

    window: timedelta
    error_ratio: float | None
    events: float | None = None
    missing: str | None = None


class WindowStat(NamedTuple):
    window: timedelta
    error_ratio: float | None
    burn_rate: float | None
    events: float | None
    missing: str | None = None


class TierState(NamedTuple):
    tier: BurnTier
    long_burn: float | None
    short_burn: float | None
    firing: bool | None  # None: one of the windows could not be judged
    note: str = ""


@dataclass(frozen=True)
class Evaluation:
    """The judgement of one SLO at one instant."""

    slo: SLO
    at: datetime
    verdict: Verdict
    reason: str
    windows: tuple[WindowStat, ...] = ()
    tiers: tuple[TierState, ...] = ()
    budget_remaining: float | None = None
    error_ratio: float | None = None  # over the SLO window
    events: float | None = None  # over the SLO window, when known
    time_to_exhaustion: timedelta | None = None
    warnings: tuple[str, ...] = field(default=())
    # For ERROR verdicts, why (a closed set, for metrics and alerts).
    error_kind: ErrorKind | None = None
    # One per canary version when the SLO declares ``canary:``; the verdict above is the summed service's.
    canaries: tuple[CanaryEvaluation, ...] = ()
    # How the numbers were read: a QueryMode ("raw": the SLI's queries, "recording": recorded series),
    # or QueryMode.fallback(why) when recording-rule mode could not read this SLO's recorded series.
    query_mode: str = QueryMode.RAW

    def window(self, window: timedelta) -> WindowStat | None:
        return next((w for w in self.windows if w.window == window), None)

    # A calendar SLO's period follows from the SLO and the instant, so it is derived, never stored: a
    # record read back after a restart gives the same answers.
    @cached_property
    def period(self) -> Period | None:
        """The calendar period the evaluation falls in (None for a rolling window)."""
        return self.slo.period(self.at)

    @property
    def time_left(self) -> timedelta | None:
        """Until the calendar period ends and its budget resets; None for a rolling window."""
        return None if self.period is None else self.period.left(self.at)

    @property
    def budget_remaining_per_day(self) -> float | None:
        """The period's budget left per remaining day (``calendar.budget_per_day``); None if rolling."""
        left = self.time_left
        return None if left is None else calendar.budget_per_day(self.budget_remaining, left)


def _fmt_burn(value: float) -> str:
    return f"{value:.3g}x"


def _window_stats(slo: SLO, observations: Mapping[timedelta, Observation]) -> list[WindowStat]:
    stats = []
    error_budget = slo.error_budget_float
    for window in slo.windows():
        obs = observations.get(window)
        if obs is None:
            stats.append(WindowStat(window, None, None, None, "not measured"))
            continue
        ratio, events = obs.error_ratio, obs.events
        if events is not None and not math.isfinite(events):
            events = None
        if ratio is not None and not math.isfinite(ratio):
            # NaN or an infinity from a caller's arithmetic is no number to judge (nor to last until).
            stats.append(WindowStat(window, None, None, events, f"a non-finite error ratio ({ratio})"))
            continue
        burn = None if ratio is None else budget.burn_rate(ratio, error_budget)
        stats.append(WindowStat(window, ratio, burn, events, obs.missing))
    return stats


def _judgeable(stat: WindowStat, min_events: float) -> str | None:
    """Why a window cannot be judged, or None when it can."""
    name = format_duration(stat.window)
    if stat.error_ratio is None:
        return f"{stat.missing or 'no data'} in {name}"
    if stat.events is not None and stat.events < min_events:
        return f"{stat.events:.4g} events in {name}, fewer than min_events {min_events:g}"
    return None


def _tier_state(tier: BurnTier, stats: Mapping[timedelta, WindowStat], min_events: float) -> TierState:
    long, short = stats[tier.long_window], stats[tier.short_window]
    long_burn, short_burn = long.burn_rate, short.burn_rate
    if long_burn is None or short_burn is None or _few(long, min_events) or _few(short, min_events):
        problems = [p for p in (_judgeable(long, min_events), _judgeable(short, min_events)) if p]
        return TierState(tier, long_burn, short_burn, None, "; ".join(problems))
    threshold = tier.burn_rate
    return TierState(tier, long_burn, short_burn, long_burn > threshold and short_burn > threshold)


def _few(stat: WindowStat, min_events: float) -> bool:
    return stat.events is not None and stat.events < min_events


def _tier_name(tier: BurnTier) -> str:
    return f"{tier.severity} tier {format_duration(tier.long_window)}/{format_duration(tier.short_window)}"


def _firing_reason(state: TierState, slo: SLO) -> str:
    tier = state.tier
    assert state.long_burn is not None and state.short_burn is not None
    return (
        f"{_tier_name(tier)} firing: burn {_fmt_burn(state.long_burn)} over "
        f"{format_duration(tier.long_window)} and {_fmt_burn(state.short_burn)} over "
        f"{format_duration(tier.short_window)}, above {_fmt_burn(tier.burn_rate)} "
        f"({tier.budget_fraction * 100:.3g}% of the {format_duration(slo.window)} budget in "
        f"{format_duration(tier.long_window)})"
    )


def _current_burn(tiers: Sequence[TierState]) -> float | None:
    """The burn rate "now": over the shortest long window that could be measured (1h by default)."""
    best: TierState | None = None
    for state in tiers:
        if state.long_burn is not None and (best is None or state.tier.long_window < best.tier.long_window):
            best = state
    return None if best is None else best.long_burn


def evaluate(
    slo: SLO,
    observations: Mapping[timedelta, Observation],
    at: datetime,
    warnings: Sequence[str] = (),
    *,
    canaries: tuple[CanaryEvaluation, ...] = (),
    query_mode: str = QueryMode.RAW,
) -> Evaluation:
    """Judge one SLO from its measured windows.

    ``warnings`` are the source's data-quality warnings (partial responses): they make the verdict
    inconclusive whatever the numbers say, because missing data could hide errors or successes.
    ``canaries`` and ``query_mode`` are carried onto the evaluation as they are.
    """
    stats = _window_stats(slo, observations)
    above_one = False
    for stat in stats:
        ratio = stat.error_ratio
        if ratio is not None and ratio > 1.0:
            if ratio > _RATIO_ARTEFACT_LIMIT:
                return Evaluation(
                    slo,
                    at,
                    Verdict.ERROR,
                    f"the error ratio over {format_duration(stat.window)} is {ratio:.4g}, above 1: "
                    "the error query counts events the total query does not; check that errors are a "
                    "subset of the total",
                    windows=tuple(stats),
                    warnings=tuple(warnings),
                    error_kind=ErrorKind.QUERY_SHAPE,
                    canaries=canaries,
                    query_mode=query_mode,
                )
            above_one = True
    if above_one:  # rate()'s extrapolation artefact: at most every event failed
        full = budget.burn_rate(1.0, slo.error_budget_float)
        stats = [
            s._replace(error_ratio=1.0, burn_rate=full)
            if s.error_ratio is not None and s.error_ratio > 1.0
            else s
            for s in stats
        ]
    by_window = {s.window: s for s in stats}
    min_events = slo.min_events
    tiers = tuple([_tier_state(tier, by_window, min_events) for tier in slo.tiers])

    period = by_window[slo.window]
    remaining = None
    if period.error_ratio is not None:
        remaining = budget.budget_remaining(period.error_ratio, slo.error_budget_float)
    current = _current_burn(tiers)
    exhaustion = None
    if remaining is not None and current is not None:
        exhaustion = budget.time_to_exhaustion(remaining, current, slo.window)

    verdict, reason = _verdict(slo, tiers, warnings)
    return Evaluation(
        slo=slo,
        at=at,
        verdict=verdict,
        reason=reason,
        windows=tuple(stats),
        tiers=tiers,
        budget_remaining=remaining,
        error_ratio=period.error_ratio,
        events=period.events,
        time_to_exhaustion=exhaustion,
        warnings=tuple(warnings),
        canaries=canaries,
        query_mode=query_mode,
    )


def _verdict(slo: SLO, tiers: Sequence[TierState], warnings: Sequence[str]) -> tuple[Verdict, str]:
    firing = [t for t in tiers if t.firing]
    if warnings:
        detail = f" (on that partial data: {_firing_reason(firing[0], slo)})" if firing else ""
        return Verdict.INCONCLUSIVE, f"partial data from the source: {warnings[0]}{detail}"
    pages = [t for t in firing if t.tier.severity is Severity.PAGE]
    if pages:
        return Verdict.BURNING, _firing_reason(pages[0], slo)
    if firing:
        return Verdict.WARNING, _firing_reason(firing[0], slo)
    unknown = [t for t in tiers if t.firing is None]
    if unknown:
        first = unknown[0]
        return Verdict.INCONCLUSIVE, f"cannot judge the {_tier_name(first.tier)}: {first.note}"
    worst = max(tiers, key=lambda t: (t.long_burn or 0.0) / t.tier.burn_rate)
    assert worst.long_burn is not None
    return Verdict.HEALTHY, (
        f"no tier firing; closest is the {_tier_name(worst.tier)} at {_fmt_burn(worst.long_burn)} over "
        f"{format_duration(worst.tier.long_window)} (fires above {_fmt_burn(worst.tier.burn_rate)})"
    )


def failed(slo: SLO, at: datetime, reason: str, kind: ErrorKind) -> Evaluation:
    """The verdict for an SLO whose data could not be read: never healthy, never burning."""
    return Evaluation(slo=slo, at=at, verdict=Verdict.ERROR, reason=reason, error_kind=kind)


def is_finite_ratio(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
