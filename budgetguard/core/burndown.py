"""What the status page shows beside the verdict: the burn state and the budget over time.

Owns the page's small judgements, so they are tested as functions and the HTML only lays them out:

- ``burn_state``: the fastest page tier's two windows read as one of four states (the SRE workbook's
  multiwindow alert, ch. 5): both above the threshold is ``critical``; the long window above and the
  short below is ``recovering`` (the burn stopped, the long window still remembers it); the short above
  and the long below is ``increasing`` (a burn that started recently); neither is ``fine``.
- ``burndown_query``: the range query that gives the budget remaining over the SLO window at each step,
  for the part of the window older than the daemon's store.
- ``merge_burndown``: the store's points where it has them, the source's before that.
- ``burn_history_query``: every window's burn rate over a range, in one range query, for the same reason.
- ``format_budget``: "42.1%", the one spelling of the API's ``budget_remaining`` on every page.

Pure: no I/O, no clock (``at`` is an argument).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from budgetguard.core import queries
from budgetguard.core.durations import format_duration
from budgetguard.core.policy import Evaluation, TierState
from budgetguard.core.queries import Part
from budgetguard.core.spec import SLO, Severity

BURNDOWN_POINTS = 120


class BurnState(StrEnum):
    CRITICAL = "critical"  # both windows above the threshold: the page fires
    RECOVERING = "recovering"  # long above, short below
    INCREASING = "increasing"  # short above, long below
    FINE = "fine"  # both below
    UNKNOWN = "unknown"  # no page tier, or a window that cannot be judged


@dataclass(frozen=True)
class Burn:
    state: BurnState
    tier: TierState | None  # the fastest page tier's state, when the SLO has one


def fastest_page_tier(ev: Evaluation) -> TierState | None:
    """The page tier with the shortest long window: the one that notices a fast burn first."""
    pages = [t for t in ev.tiers if t.tier.severity is Severity.PAGE]
    return min(pages, key=lambda t: (t.tier.long_window, t.tier.short_window), default=None)


def burn_state(ev: Evaluation) -> Burn:
    tier = fastest_page_tier(ev)
    if tier is None or tier.long_burn is None or tier.short_burn is None:
        return Burn(BurnState.UNKNOWN, tier)
    threshold = tier.tier.burn_rate
    long_above, short_above = tier.long_burn > threshold, tier.short_burn > threshold
    if long_above and short_above:
        return Burn(BurnState.CRITICAL, tier)
    if long_above:
        return Burn(BurnState.RECOVERING, tier)
    if short_above:
        return Burn(BurnState.INCREASING, tier)
    return Burn(BurnState.FINE, tier)


def format_budget(ratio: float | None) -> str:
    """The budget remaining as people read it: 0.4213 is "42.1%"; unknown is an em dash."""
    if ratio is None or not math.isfinite(ratio):
        return "—"
    return f"{ratio * 100:.1f}%"


@dataclass(frozen=True)
class BurndownQuery:
    """The error ratio over the SLO window at each step; ``budget`` turns a ratio into budget left."""

    expr: str
    start: datetime
    end: datetime
    step: timedelta
    error_budget: float

    def budget(self, error_ratio: float | None) -> float | None:
        if error_ratio is None or not math.isfinite(error_ratio):
            return None
        return 1.0 - error_ratio / self.error_budget


def burndown_query(slo: SLO, at: datetime, points: int = BURNDOWN_POINTS) -> BurndownQuery:
    """The SLO window's error ratio at ``points`` instants of the window ending at ``at``.

    Each point is the rolling window's ratio as the daemon would have judged it then, so the line joins
    the store's ``budget_remaining`` where the store begins.
    """
    planned = {q.part: q for q in queries.plan(slo, [slo.window])}
    expr = _ratio_expr(planned)
    step = slo.window / points
    return BurndownQuery(expr, at - slo.window, at, step, slo.error_budget_float)


Point = tuple[datetime, float | None]


def merge_burndown(stored: Sequence[Point], from_source: Sequence[Point]) -> tuple[list[Point], list[Point]]:
    """(the source's points before the store's first, the store's points): the store wins where both are."""
    if not stored:
        return list(from_source), []
    first = stored[0][0]
    return [p for p in from_source if p[0] < first], list(stored)


# --- burn rates over time, for the part of a range older than the store -----------------------------

WINDOW_LABEL = "budgetguard_window"


@dataclass(frozen=True)
class BurnHistoryQuery:
    """Each window's error ratio at ``points`` instants, tagged with ``WINDOW_LABEL``, in one query."""

    expr: str
    start: datetime
    end: datetime
    step: timedelta
    error_budget: float

    def burn_rates(
        self, series: Sequence[tuple[Mapping[str, str], Sequence[Point]]]
    ) -> dict[str, list[Point]]:
        """The burn rate of each window (by its duration's name, "5m"), oldest first."""
        out: dict[str, list[Point]] = {}
        for labels, points in series:
            window = labels.get(WINDOW_LABEL)
            if window is None:
                continue
            out[window] = [
                (at, None if v is None or not math.isfinite(v) else v / self.error_budget) for at, v in points
            ]
        return out


def _ratio_expr(parts: Mapping[Part, queries.PlannedQuery]) -> str:
    if Part.RATIO in parts:
        return f"({parts[Part.RATIO].expr})"
    if Part.ERRORS in parts:
        return f"sum(({parts[Part.ERRORS].expr})) / sum(({parts[Part.TOTAL].expr}))"
    return f"1 - sum(({parts[Part.GOOD].expr})) / sum(({parts[Part.TOTAL].expr}))"


def burn_history_query(
    slo: SLO, windows: Sequence[timedelta], start: datetime, end: datetime, points: int = BURNDOWN_POINTS
) -> BurnHistoryQuery:
    by_window = queries.by_window(queries.plan(slo, windows))
    expr = " or ".join(
        f'label_replace({_ratio_expr(parts)}, "{WINDOW_LABEL}", "{format_duration(window)}", "", "")'
        for window, parts in sorted(by_window.items())
    )
    return BurnHistoryQuery(expr, start, end, (end - start) / points, slo.error_budget_float)
