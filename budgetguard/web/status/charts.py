"""Charts drawn on the server as SVG: the status page's sparklines, budget bars and line charts.

SVG written here needs no script, no library and no request beyond the page itself, renders before any
JavaScript runs and prints. Colours are CSS classes (``status.css`` gives them light and dark values),
never inline styles, so the page's Content-Security-Policy can forbid inline styles outright.

Must not: read the clock, the store or the source; it draws the numbers it is given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html import escape

Point = tuple[datetime, float | None]


def _f(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def budget_bar(ratio: float | None, label: str) -> str:
    """The budget left as a bar: full is untouched, empty is spent, an overspent budget shows red."""
    width = 100.0
    if ratio is None or not math.isfinite(ratio):
        return (
            f'<svg class="bar" viewBox="0 0 100 8" role="img" aria-label="{escape(label)}">'
            '<rect class="bar-bg" width="100" height="8" rx="4"/></svg>'
        )
    shown = max(0.0, min(1.0, ratio))
    tone = "bar-ok" if ratio >= 0.5 else "bar-mid" if ratio >= 0.2 else "bar-low" if ratio > 0 else "bar-out"
    fill = "" if shown <= 0 else f'<rect class="{tone}" width="{_f(width * shown)}" height="8" rx="4"/>'
    return (
        f'<svg class="bar" viewBox="0 0 100 8" role="img" aria-label="{escape(label)}">'
        f'<rect class="bar-bg" width="100" height="8" rx="4"/>{fill}</svg>'
    )


def sparkline(points: Sequence[Point], start: datetime, end: datetime, label: str) -> str:
    """The budget over the SLO window in a small box: y from 0% (bottom) to 100% (top), clipped.

    Gaps (no evaluation in a stretch) break the line rather than bridging it with a guess.
    """
    w, h, pad = 120.0, 24.0, 3.0  # pad: room for the end dot at the right edge
    span = (end - start).total_seconds() or 1.0
    runs: list[list[str]] = [[]]
    last_xy = (0.0, 0.0)
    for at, value in points:
        if value is None or not math.isfinite(value):
            runs.append([])
            continue
        x = (at - start).total_seconds() / span * (w - pad)
        y = h - pad - max(0.0, min(1.0, value)) * (h - 2 * pad)
        runs[-1].append(f"{_f(x)},{_f(y)}")
        last_xy = (x, y)
    lines = "".join(f'<polyline class="spark-line" points="{" ".join(r)}"/>' for r in runs if len(r) > 1)
    dots = "".join(
        f'<circle class="spark-line" cx="{r[0].split(",")[0]}" cy="{r[0].split(",")[1]}" r="1"/>'
        for r in runs
        if len(r) == 1
    )
    if not lines and not dots:
        return (
            f'<svg class="spark" viewBox="0 0 {_f(w)} {_f(h)}" role="img" aria-label="{escape(label)}"></svg>'
        )
    end_dot = f'<circle class="spark-end" cx="{_f(last_xy[0])}" cy="{_f(last_xy[1])}" r="2"/>'
    return (
        f'<svg class="spark" viewBox="0 0 {_f(w)} {_f(h)}" role="img" aria-label="{escape(label)}">'
        f'<line class="spark-zero" x1="0" x2="{_f(w - pad)}" y1="{_f(h - pad)}" y2="{_f(h - pad)}"/>'
        f"{lines}{dots}{end_dot}</svg>"
    )


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[Point]
    css: str  # a class of status.css: "c0".."c5", "muted"
    dashed: bool = False


@dataclass(frozen=True)
class Threshold:
    name: str
    value: float
    css: str = "threshold"


@dataclass(frozen=True)
class Chart:
    """A line chart over a time range; ``y_format`` turns a value into an axis label."""

    title: str
    start: datetime
    end: datetime
    series: Sequence[Series]
    thresholds: Sequence[Threshold] = field(default=())
    y_min: float | None = None
    y_max: float | None = None
    percent: bool = False
    log_hint: str = ""
    width: float = 720.0  # in the SVG's units: a narrower chart draws its text larger on the same space


def _nice_step(span: float, ticks: int) -> float:
    raw = span / max(1, ticks)
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _axis_value(value: float, percent: bool) -> str:
    if percent:
        return f"{value * 100:.0f}%"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def _time_label(at: datetime, span: timedelta) -> str:
    if span > timedelta(days=2):
        return at.strftime("%d %b")
    return at.strftime("%H:%M")


def line_chart(chart: Chart) -> str:
    """A responsive SVG line chart with a y axis, a time axis, threshold lines and a legend."""
    w, h = chart.width, 220.0 if chart.width >= 720 else 200.0
    left, right, top, bottom = 52.0, 12.0, 10.0, 26.0
    plot_w, plot_h = w - left - right, h - top - bottom
    values = [v for s in chart.series for _, v in s.points if v is not None and math.isfinite(v)]
    values += [t.value for t in chart.thresholds]
    lo = chart.y_min if chart.y_min is not None else min(values, default=0.0)
    hi = chart.y_max if chart.y_max is not None else max(values, default=1.0)
    if chart.y_min is None and values:
        lo = min(lo, 0.0)
    if hi <= lo:
        hi = lo + 1.0
    step = _nice_step(hi - lo, 4)
    # A bound the caller gave is kept (a budget never shows above 100%); the others round to a tick.
    if chart.y_min is None:
        lo = math.floor(lo / step) * step
    if chart.y_max is None:
        hi = math.ceil(hi / step) * step
    span_s = (chart.end - chart.start).total_seconds() or 1.0

    def x_of(at: datetime) -> float:
        return left + (at - chart.start).total_seconds() / span_s * plot_w

    def y_of(value: float) -> float:
        clipped = max(lo, min(hi, value))
        return top + plot_h - (clipped - lo) / (hi - lo) * plot_h

    parts: list[str] = []
    tick = math.ceil(lo / step - 1e-9) * step
    while tick <= hi + step / 1000:
        y = y_of(tick)
        parts.append(f'<line class="grid" x1="{_f(left)}" x2="{_f(w - right)}" y1="{_f(y)}" y2="{_f(y)}"/>')
        parts.append(
            f'<text class="axis" x="{_f(left - 6)}" y="{_f(y + 4)}" text-anchor="end">'
            f"{_axis_value(tick, chart.percent)}</text>"
        )
        tick += step
    span = chart.end - chart.start
    for i in range(5):
        at = chart.start + span * i / 4
        x = x_of(at)
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        parts.append(
            f'<text class="axis" x="{_f(x)}" y="{_f(h - 8)}" text-anchor="{anchor}">'
            f"{_time_label(at, span)}</text>"
        )
    for threshold in chart.thresholds:
        y = y_of(threshold.value)
        parts.append(
            f'<line class="{threshold.css}" x1="{_f(left)}" x2="{_f(w - right)}" y1="{_f(y)}" y2="{_f(y)}">'
            f"<title>{escape(threshold.name)}</title></line>"
        )
    drawn = 0
    for series in chart.series:
        runs: list[list[str]] = [[]]
        for at, value in series.points:
            if value is None or not math.isfinite(value) or at < chart.start or at > chart.end:
                runs.append([])
                continue
            runs[-1].append(f"{_f(x_of(at))},{_f(y_of(value))}")
        dash = " dashed" if series.dashed else ""
        for run in runs:
            if len(run) > 1:
                parts.append(f'<polyline class="line {series.css}{dash}" points="{" ".join(run)}"/>')
                drawn += 1
            elif len(run) == 1:
                cx, cy = run[0].split(",")
                parts.append(f'<circle class="dot {series.css}" cx="{cx}" cy="{cy}" r="2.5"/>')
                drawn += 1
    if drawn == 0:
        parts.append(
            f'<text class="axis empty" x="{_f(left + plot_w / 2)}" y="{_f(top + plot_h / 2)}" '
            'text-anchor="middle">no data in this range yet</text>'
        )
    legend = "".join(
        f'<li><span class="key {s.css}{" dashed" if s.dashed else ""}"></span>{escape(s.name)}</li>'
        for s in chart.series
    ) + "".join(f'<li><span class="key {t.css}"></span>{escape(t.name)}</li>' for t in chart.thresholds)
    described = "; ".join([s.name for s in chart.series] + [t.name for t in chart.thresholds])
    return (
        f'<figure class="chart"><figcaption>{escape(chart.title)}'
        f"{f' <small>{escape(chart.log_hint)}</small>' if chart.log_hint else ''}</figcaption>"
        f'<svg class="w{w:.0f}" viewBox="0 0 {_f(w)} {_f(h)}" role="img" aria-label="{escape(chart.title)}: '
        f'{escape(described)}">'
        f'{"".join(parts)}</svg><ul class="legend">{legend}</ul></figure>'
    )


def thin(points: Sequence[Point], most: int) -> list[Point]:
    """At most ``most`` points, evenly picked, the newest always kept: a chart needs no more pixels."""
    if len(points) <= most:
        return list(points)
    stride = len(points) / most
    picked = [points[int(i * stride)] for i in range(most)]
    if picked[-1] is not points[-1]:
        picked[-1] = points[-1]
    return picked
