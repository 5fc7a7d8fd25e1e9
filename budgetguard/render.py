"""Presenting evaluations: the JSON document and the terminal table.

The JSON shape is a public interface (scripts and CI gates parse it), documented in the README:
ratios are ratios (0..1, budget remaining may be negative), the objective is a percent as written,
windows are Prometheus durations, and unknown numbers are ``null``, never -1 or NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import Any

from budgetguard.durations import format_duration
from budgetguard.policy import Evaluation, Verdict


def _num(value: float | None) -> float | None:
    return None if value is None else float(value)


def evaluation_json(ev: Evaluation) -> dict[str, Any]:
    slo = ev.slo
    return {
        "service": slo.service,
        "slo": slo.name,
        "objective": float(slo.objective),
        "window": format_duration(slo.window),
        "at": ev.at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "verdict": str(ev.verdict),
        "reason": ev.reason,
        "budget_remaining": _num(ev.budget_remaining),
        "error_ratio": _num(ev.error_ratio),
        "events": _num(ev.events),
        "time_to_exhaustion_seconds": (
            None if ev.time_to_exhaustion is None else ev.time_to_exhaustion.total_seconds()
        ),
        "burn_rates": {format_duration(w.window): _num(w.burn_rate) for w in ev.windows},
        "error_ratios": {format_duration(w.window): _num(w.error_ratio) for w in ev.windows},
        "events_by_window": {format_duration(w.window): _num(w.events) for w in ev.windows},
        "tiers": [
            {
                "severity": str(t.tier.severity),
                "long_window": format_duration(t.tier.long_window),
                "short_window": format_duration(t.tier.short_window),
                "burn_rate_threshold": t.tier.burn_rate,
                "budget_fraction": t.tier.budget_fraction,
                "long_burn_rate": _num(t.long_burn),
                "short_burn_rate": _num(t.short_burn),
                "firing": t.firing,
                "note": t.note,
            }
            for t in ev.tiers
        ],
        "labels": dict(slo.labels),
        "warnings": list(ev.warnings),
        "source": slo.source,
    }


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
