"""Presenting evaluations in a terminal: the fixed-width table.

The JSON shape lives in ``records`` because the API and the store share it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from budgetguard.core.durations import format_duration
from budgetguard.core.policy import Evaluation
from budgetguard.core.verdict import Verdict


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


def _window(ev: Evaluation) -> str:
    """``30d``; a calendar window as its period and the time left: ``2026-11, 28d13h left``."""
    period = ev.period
    if period is None:
        return format_duration(ev.slo.window)
    left = period.left(ev.at)
    return f"{period.name}, {format_duration(left - left % timedelta(minutes=1))} left"


def _budget(ev: Evaluation) -> str:
    """The budget left; for a calendar window with what is left per remaining day: ``62.0% (2.2%/d)``."""
    per_day = ev.budget_remaining_per_day
    if per_day is None:
        return _pct(ev.budget_remaining)
    return f"{_pct(ev.budget_remaining)} ({_pct(per_day)}/d)"


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
                _window(ev),
                _budget(ev),
                *burns,
                _MARK[ev.verdict],
                ev.reason,
            ]
        )
        for canary in ev.canaries:  # one indented row per canary version, under its SLO
            rows.append(
                [
                    f"  {canary.label}={canary.value}",
                    "",
                    format_duration(canary.window),
                    "",
                    *["" for _ in tier_windows],
                    _MARK[canary.verdict],
                    canary.reason,
                ]
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def history_table(records: Sequence[dict[str, object]]) -> str:
    """Stored records, oldest first: time, verdict, budget left, the fastest tier's burn rates."""
    rows = [["TIME", "VERDICT", "BUDGET LEFT", "BURN", "REASON"]]
    for record in records:
        burns = record.get("burn_rates") or {}
        assert isinstance(burns, dict)
        shown = " ".join(f"{k}={_burn(v)}" for k, v in list(burns.items())[:3])
        remaining = record.get("budget_remaining")
        rows.append(
            [
                str(record.get("at")),
                str(record.get("verdict")),
                _pct(remaining if isinstance(remaining, float | int) else None),
                shown,
                str(record.get("reason") or ""),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join([*(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)), row[4]]).rstrip()
        for row in rows
    )
