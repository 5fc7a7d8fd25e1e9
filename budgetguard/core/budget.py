"""Error-budget arithmetic: pure functions of ratios, budgets and durations.

Definitions follow the SRE Workbook ch. 5 ("Alerting on SLOs"), see
../shared/reference/prometheus-and-burn-math.md §2.1:

    budget            b = 1 - objective
    burn rate         B = error_ratio / b
    budget remaining  R = 1 - error_ratio(SLO window) / b     (request-weighted; negative when overspent)
    time to exhaust   T = R * period / B                       (Table 5-4: B=1 and R=1 give T = period)

No I/O, no clock, no logging. "No data" is ``None`` in and ``None`` out; NaN never enters.
"""

from __future__ import annotations

import math
from datetime import timedelta
from fractions import Fraction

NEVER_PERIODS = 1000


def error_ratio(errors: float | None, total: float | None) -> float | None:
    """Bad events over total events; ``None`` when there was no traffic (0/0 is not a ratio).

    A missing error series beside present traffic means no errors happened (Prometheus returns no
    series rather than 0 when a counter such as code="500" was never created).
    """
    if total is None or not math.isfinite(total) or total <= 0:
        return None
    bad = 0.0 if errors is None else errors
    if not math.isfinite(bad):
        return None
    # Not clamped: a ratio above 1 means the error query counts events the total query does not,
    # which the policy reports as a configuration problem instead of hiding it.
    return max(bad, 0.0) / total


def burn_rate(ratio: float, budget: Fraction | float) -> float:
    """How many times faster than sustainable the budget is being spent (1.0 = exactly on budget)."""
    if budget <= 0:
        raise ValueError("the error budget must be positive (objective below 100%)")
    return ratio / float(budget)


def budget_remaining(period_error_ratio: float, budget: Fraction | float) -> float:
    """Share of the SLO window's budget left: 1 untouched, 0 spent, negative overspent."""
    return 1.0 - burn_rate(period_error_ratio, budget)


def time_to_exhaustion(remaining: float, current_burn_rate: float, period: timedelta) -> timedelta | None:
    """How long the remaining budget lasts at ``current_burn_rate``; ``None`` when it never runs out.

    An approximation that ignores old errors leaving the rolling window, as the workbook's Table 5-4
    does. A budget that would outlast ``NEVER_PERIODS`` SLO windows counts as never running out (a burn
    rate of 1e-300 would otherwise overflow any duration type).
    """
    if math.isnan(remaining) or math.isnan(current_burn_rate):
        return None  # unknown, not "now" nor "never": the caller shows no estimate
    if remaining <= 0:
        return timedelta(0)
    if current_burn_rate <= 0 or math.isinf(remaining) or math.isinf(current_burn_rate):
        return None
    periods = remaining / current_burn_rate
    if periods > NEVER_PERIODS:
        return None
    return period * periods


def budget_consumed(burn: float, window: timedelta, period: timedelta) -> float:
    """Share of the period's budget a burn rate sustained over ``window`` consumes (workbook: B x A / P)."""
    return burn * (window / period)


def detection_time(
    error_ratio: float, budget: Fraction, window: timedelta, burn_threshold: float
) -> timedelta:
    """How long a constant ``error_ratio`` takes to push ``window``'s burn rate over ``burn_threshold``.

    Workbook ch. 5: "(1 - SLO) / error ratio x alerting window size x burn rate". Infinite (``None``
    is not used: the caller compares) when the ratio can never reach the threshold is signalled by
    a result longer than the window.
    """
    if error_ratio <= 0:
        raise ValueError("a zero error ratio never fires")
    return window * (float(budget) / error_ratio * burn_threshold)
