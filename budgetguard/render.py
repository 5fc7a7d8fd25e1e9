"""Presenting evaluations in a terminal: the fixed-width table.

The JSON shape lives in ``records`` because the API and the store share it.
"""

from __future__ import annotations

from collections.abc import Sequence

from budgetguard.durations import format_duration
from budgetguard.policy import Evaluation, Verdict


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _burn(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


_MARK = {
    Verdict.HEALTHY: "healthy",
    Verdict.WARNING: "WARNING",
    Verdict.BURNING: "BURNING",
    Verdict.INCONCLUSIVE: "inconclusive",
    Verdict.ERROR: "ERROR",
}


def table(evaluations: Sequence[Evaluation]) -> str:
    """A fixed-width table: one row per SLO, one burn-rate column per tier window."""
    tier_windows = sorted(
        {w for ev in evaluations for t in ev.slo.tiers for w in (t.short_window, t.long_window)}
    )
    header = [
        "SLO",
        "OBJECTIVE",
        "WINDOW",
        "BUDGET LEFT",
        *[f"BURN {format_duration(w)}" for w in tier_windows],
        "VERDICT",
        "REASON",
    ]
    rows = [header]
    for ev in evaluations:
        burns = []
        for window in tier_windows:
            stat = ev.window(window)
            burns.append(_burn(stat.burn_rate) if stat is not None else "")
        rows.append(
            [
                ev.slo.id,
                f"{ev.slo.objective}%",
                format_duration(ev.slo.window),
                _pct(ev.budget_remaining),
                *burns,
                _MARK[ev.verdict],
                ev.reason,
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)
