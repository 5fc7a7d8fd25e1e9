"""How the canary's reasons write numbers: percentages, counts with their unit, p-values.

One place, so the error-ratio, latency and budget-consumption reasons read alike.
"""

from __future__ import annotations

from budgetguard.core.canary.knobs import INTEGER_SLACK


def percent(ratio: float) -> str:
    return f"{ratio * 100:.3g}%"


def count_text(value: float, unit: str) -> str:
    whole = round(value)
    text = f"{whole:,}" if abs(value - whole) <= INTEGER_SLACK * max(1.0, value) else f"{value:,.10g}"
    return f"{text} {unit}" + ("" if text == "1" else "s")


def p_text(value: float) -> str:
    return f"{value:.2g}" if value >= 1e-3 else f"{value:.0e}".replace("e-0", "e-")
