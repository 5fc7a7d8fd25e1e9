"""The release freeze: the SRE workbook's error budget policy (Appendix B) as pure decisions.

"If the service has exceeded its error budget for the preceding four-week window, we will halt all
changes and releases other than P0 issues or security fixes until the service is back within its SLO."
An SLO that declares ``freeze:`` freezes its service's releases while its budget remaining is spent
(at or under zero) or under the policy's ``below``; a caller whose labels match the policy's
``except`` (``change: security-fix``) is exempt. A service is frozen when any of its SLOs freezes it
and does not exempt the caller.

Owns: one SLO's part in that decision (``judge``), and when a frozen SLO's budget is expected back
above its floor (``estimate_recovery``) with the range query that estimate reads (``recovery_query``);
for a calendar window, the period's end (``calendar_recovery``), when its budget resets.
``budgetguard.core.gates`` turns decisions into answers for Flagger, Argo Rollouts and the command line.

The recovery estimate: the budget of a rolling window comes back as old errors leave it. A range query
gives the errors of each step of the window (an hour for a 30-day window), oldest first; assuming **no
new errors** and **traffic as steady as over the window** (each request that leaves is replaced by a
good one, so the total stays what it is), the budget remaining climbs by ``errors / (total x budget)``
as each step leaves, and the estimate is the moment it passes the floor, interpolated within the step.
A new error postpones it; a traffic drop postpones it too (fewer requests make each remaining error
weigh more). When the steps do not account for all the budget spent (counter resets, extrapolation),
the answer is only the upper bound "one window from now", said as such.

Pure: no I/O, no clock (``at`` is an argument), no logging.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from budgetguard.core import queries
from budgetguard.core.durations import format_duration
from budgetguard.core.policy import Evaluation
from budgetguard.core.ports import RangeSeries
from budgetguard.core.queries import Part
from budgetguard.core.records import format_time
from budgetguard.core.spec import SLO, FreezePolicy
from budgetguard.core.verdict import Verdict

# Steps of the recovery range query: an hour for a 30-day window, never under a minute (a rate needs
# a few scrapes in its range) and never more than Prometheus' 11,000 points.
RECOVERY_STEPS = 720
MIN_RECOVERY_STEP = timedelta(minutes=1)


class FreezeState(StrEnum):
    OPEN = "open"  # budget above the floor: this SLO does not hold releases
    FROZEN = "frozen"  # budget spent or under the floor: releases wait
    EXEMPT = "exempt"  # frozen (or unknown), but the caller's labels match an exception
    UNKNOWN = "unknown"  # no evaluation, or the latest one failed: no budget to judge


@dataclass(frozen=True)
class Recovery:
    """When a frozen SLO's budget is expected back above its floor; ``at`` None when nobody can tell."""

    at: datetime | None
    reason: str
    upper_bound: bool = False  # only "no later than": the steps did not account for every error


@dataclass(frozen=True)
class SloFreeze:
    """One SLO's part in a release decision."""

    slo_id: str
    state: FreezeState
    below: float
    budget_remaining: float | None
    reason: str
    exempt_by: str | None = None  # the caller's label that matched an exception, "change=security-fix"
    recovery: Recovery | None = None


def is_frozen(policy: FreezePolicy, budget_remaining: float) -> bool:
    """Spent (at or under zero) always freezes; ``below`` raises the floor."""
    return budget_remaining <= 0.0 or budget_remaining < policy.below


def floor_text(policy: FreezePolicy) -> str:
    if policy.below <= 0.0:
        return "freezes once spent"
    return f"freezes under {_pct(policy.below)} left"


def exemption(policy: FreezePolicy, labels: Mapping[str, str]) -> str | None:
    """The caller's label that the policy exempts, as ``name=value``, or None."""
    for name in sorted(policy.exceptions):
        value = labels.get(name)
        if value is not None and value in policy.exceptions[name]:
            return f"{name}={value}"
    return None


def exceptions_text(policy: FreezePolicy) -> str:
    return ", ".join(f"{name}={'|'.join(values)}" for name, values in sorted(policy.exceptions.items()))


def _pct(ratio: float) -> str:
    return f"{ratio * 100:.3g}%"


def judge(ev: Evaluation, labels: Mapping[str, str]) -> SloFreeze | None:
    """This SLO's part in a release of its service; None when it declares no ``freeze:``."""
    policy = ev.slo.freeze
    if policy is None:
        return None
    slo_id = ev.slo.id
    exempt = exemption(policy, labels)
    remaining = ev.budget_remaining
    if ev.verdict is Verdict.ERROR:
        state, reason = FreezeState.UNKNOWN, f"{slo_id}: its latest evaluation failed ({ev.reason})"
    elif remaining is None or not math.isfinite(remaining):
        # No traffic (or no series) over the SLO window: nothing is known to be spent.
        missing = ev.window(ev.slo.window)
        why = missing.missing if missing is not None and missing.missing else "no data"
        return SloFreeze(
            slo_id,
            FreezeState.OPEN,
            policy.below,
            None,
            f"{slo_id}: no budget measured over {ev.slo.window_name} ({why}); nothing known to be spent",
        )
    elif is_frozen(policy, remaining):
        state = FreezeState.FROZEN
        reason = (
            f"{slo_id} has {_pct(remaining)} of its {ev.slo.window_name} error budget left "
            f"({floor_text(policy)})"
        )
    else:
        return SloFreeze(
            slo_id,
            FreezeState.OPEN,
            policy.below,
            remaining,
            f"{slo_id} has {_pct(remaining)} of its error budget left ({floor_text(policy)})",
        )
    if exempt is not None:
        return SloFreeze(
            slo_id, FreezeState.EXEMPT, policy.below, remaining, f"{reason}; {exempt} is exempt", exempt
        )
    if policy.exceptions:
        reason += f"; exempt: {exceptions_text(policy)}"
    return SloFreeze(slo_id, state, policy.below, remaining, reason)


# --- when the budget comes back --------------------------------------------------------------------


@dataclass(frozen=True)
class RecoveryQuery:
    """The range query that gives a window's errors step by step, oldest first."""

    expr: str
    start: datetime
    end: datetime
    step: timedelta
    ratio: bool  # the points are error ratios (a raw SLI), not error counts
    per_second: bool  # the points are rates: times the step's seconds gives errors


def recovery_step(window: timedelta) -> timedelta:
    steps = max(1, min(RECOVERY_STEPS, int(window // MIN_RECOVERY_STEP)))
    return timedelta(milliseconds=math.ceil(window / timedelta(milliseconds=1) / steps))


def recovery_query(slo: SLO, at: datetime) -> RecoveryQuery:
    """The errors (or, for a raw SLI, the error ratio) of every step of the SLO window ending at ``at``.

    The point at ``t`` covers the step ``(t - step, t]``, so the first step starts where the window does.
    """
    step = recovery_step(slo.window)
    planned = {q.part: q for q in queries.plan(slo, [step])}
    start = at - slo.window + step
    if Part.RATIO in planned:
        q = planned[Part.RATIO]
        return RecoveryQuery(q.expr, start, at, step, ratio=True, per_second=False)
    if Part.ERRORS in planned:
        q = planned[Part.ERRORS]
        return RecoveryQuery(f"sum(({q.expr}))", start, at, step, ratio=False, per_second=not q.counts)
    good, total = planned[Part.GOOD], planned[Part.TOTAL]
    expr = f"sum(({total.expr})) - sum(({good.expr}))"
    return RecoveryQuery(expr, start, at, step, ratio=False, per_second=not total.counts)


def _to_minute(at: datetime) -> datetime:
    """An estimate is no surer than a minute: say it to the nearest one."""
    return (at + timedelta(seconds=30)).replace(second=0, microsecond=0)


def _minute(at: datetime) -> str:
    return format_time(_to_minute(at)).replace(":00Z", "Z")


def _about(delta: timedelta) -> str:
    """A duration as people plan with it: to the hour beyond a day, to the minute below."""
    unit = timedelta(hours=1) if delta >= timedelta(days=1) else timedelta(minutes=1)
    rounded = unit * max(1, round(delta / unit))
    return format_duration(rounded)


def calendar_recovery(ev: Evaluation) -> Recovery | None:
    """A frozen calendar SLO's budget comes back when its period ends and the budget resets (errors
    never leave a calendar period early); None for a rolling window, whose errors age out instead."""
    period = ev.period
    if period is None:
        return None
    policy = ev.slo.freeze
    remaining = ev.budget_remaining
    if policy is None or remaining is None or not is_frozen(policy, remaining):
        return Recovery(ev.at, "not frozen")
    return Recovery(
        period.end,
        f"back when the calendar {period.unit} {period.name} ends and its budget resets, at "
        f"{format_time(period.end)} (midnight in {period.timezone}; in about {_about(period.left(ev.at))}); "
        "good traffic until then only dilutes the errors",
    )


def estimate_recovery(
    ev: Evaluation, query: RecoveryQuery, series: Sequence[RangeSeries], at: datetime
) -> Recovery:
    """When ``ev``'s budget is expected back above its freeze floor (see the module docstring)."""
    slo = ev.slo
    policy = slo.freeze
    remaining = ev.budget_remaining
    if policy is None or remaining is None or not is_frozen(policy, remaining):
        return Recovery(at, "not frozen")
    window = format_duration(slo.window)
    assumption = f"assuming no new errors and traffic as steady as over the last {window}"
    budget = slo.error_budget_float
    if query.ratio:
        if len(series) > 1:
            return Recovery(None, f"the error ratio query returned {len(series)} series; cannot tell")
        scale = (query.step / slo.window) / budget  # each step's share of the window, in budgets
    else:
        if ev.events is None or ev.events <= 0:
            return Recovery(None, f"no request count over {window} to weigh the errors by; cannot tell")
        scale = (query.step.total_seconds() if query.per_second else 1.0) / (ev.events * budget)
    gains: dict[datetime, float] = {}
    for one in series:
        for t, value in one.points:
            if value is not None and math.isfinite(value) and value > 0:
                gains[t] = gains.get(t, 0.0) + value * scale
    need = policy.below - remaining  # how far the budget remaining must climb
    climbed = 0.0
    for t in sorted(gains):
        gain = gains[t]
        if climbed + gain >= need:
            leaves_from = t - query.step + slo.window
            moment = _to_minute(max(leaves_from + query.step * ((need - climbed) / gain), at))
            floor = "zero" if policy.below <= 0 else _pct(policy.below)
            return Recovery(
                moment,
                f"expected back above {floor} around {format_time(moment)} (in about "
                f"{_about(moment - at)}), when the errors of {_minute(t - query.step)}..{_minute(t)} "
                f"leave the {window} window; {assumption}",
            )
        climbed += gain
    latest = _to_minute(at + slo.window)
    return Recovery(
        latest,
        f"back above the floor by {format_time(latest)} at the latest (one {window} window from now, "
        f"when every error now in it has left); the errors read step by step do not account for all "
        f"the budget spent, so no closer estimate; {assumption}",
        upper_bound=True,
    )
