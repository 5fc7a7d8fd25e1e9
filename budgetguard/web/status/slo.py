"""One SLO's page: the verdict and budget, the release freeze, the burn-down over the window, each tier's
burn rates against its threshold over time, the windows now, canary versions and the verdict changes.
Where the store is younger than a chart's range, the caller's points from Prometheus fill the older part
(dashed), so a daemon started yesterday still shows the month.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from budgetguard.core.burndown import Point, burn_state, format_budget, merge_burndown
from budgetguard.core.freeze import FreezeState, Recovery, SloFreeze
from budgetguard.core.policy import Evaluation
from budgetguard.core.records import to_record
from budgetguard.web.status.charts import Chart, Series, Threshold, budget_bar, line_chart, thin
from budgetguard.web.status.incidents import incident_table
from budgetguard.web.status.layout import (
    Page,
    burn,
    burn_badge,
    duration,
    e,
    ratio_pct,
    raw_number,
    slo_href,
    span,
    verdict_badge,
    when,
)
from budgetguard.web.status.overview import OverviewQuery


@dataclass(frozen=True)
class SloData:
    ev: Evaluation
    now: datetime
    stored: Sequence[Point]
    from_source: Sequence[Point]
    records: Sequence[Mapping[str, Any]]
    burns_from_source: Mapping[str, Sequence[Point]]  # by window name, where the store is too young
    range_name: str
    ranges: Sequence[str]
    changes: Sequence[Mapping[str, Any]]
    paused: bool
    freeze: SloFreeze | None
    recovery: Recovery | None
    incidents: Sequence[Mapping[str, Any]] = field(default=())


def _period_facts(ev: Evaluation) -> list[tuple[str, str]]:
    """A calendar window's period, when its budget resets, and what is left of it per day."""
    period, left = ev.period, ev.time_left
    if period is None or left is None:
        return []
    return [
        (
            "Calendar period",
            f"{e(period.name)}: resets {when(period.end)} "
            f"({e(duration(left - left % timedelta(minutes=1)))} left)",
        ),
        ("Budget left per remaining day", ratio_pct(ev.budget_remaining_per_day)),
    ]


def slo_page(data: SloData, *, can_act: bool) -> Page:
    ev = data.ev
    slo = ev.slo
    record = to_record(ev)
    state = burn_state(ev)
    shown = format_budget(ev.budget_remaining)
    labels = "".join(f'<span class="tag">{e(k)}={e(v)}</span>' for k, v in sorted(slo.labels.items()))
    facts = [
        (
            "Objective",
            f"{e(slo.objective)}% over "
            f"{e(duration(slo.window) if slo.calendar is None else slo.window_name)}",
        ),
        *_period_facts(ev),
        ("Error ratio over the window", ratio_pct(ev.error_ratio)),
        ("Events over the window", "—" if ev.events is None else f"{ev.events:,.0f}"),
        ("Budget runs out", _runs_out(ev)),
        ("Burn (fastest page tier)", burn_badge(state.state)),
        ("Evaluated", when(ev.at, data.now)),
        ("Read by", e(ev.query_mode)),
    ]
    if slo.canary is not None:
        facts.append(("Canary guard", "paused" if data.paused else "on"))
    fact_html = "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in facts)
    warnings = "".join(f"<li>{e(w)}</li>" for w in ev.warnings)
    parts = [
        f"""<section class="hero">
<p class="crumbs"><a href="/{e(OverviewQuery(service=slo.service).params())}"
 data-service>{e(slo.service)}</a></p>
<h1>{e(slo.name)} {verdict_badge(str(ev.verdict))}</h1>
<p class="desc">{e(slo.description)}</p>
<p class="reason">{e(ev.reason)}</p>
<div class="budget-big"><span class="pct" data-budget="{raw_number(ev.budget_remaining)}">{shown}</span>
<span class="muted">of the error budget left</span>
{budget_bar(ev.budget_remaining, f"{shown} of the error budget left")}</div>
<dl class="facts">{fact_html}</dl>
<p>{labels}</p>
{f'<ul class="warnings">{warnings}</ul>' if warnings else ""}
</section>"""
    ]
    parts.append(_freeze_section(data))
    parts.append(_burndown(data))
    parts.append(_burn_rates(data, record))
    parts.append(_windows_table(record))
    if record["canaries"]:
        parts.append(_canaries(record["canaries"]))
    if data.incidents:
        parts.append(incident_table(data.incidents, data.now, "Incidents of this SLO"))
    parts.append(_changes(data.changes, data.now))
    return Page(f"{slo.id}", "".join(parts), nav="overview", can_act=can_act)


def _runs_out(ev: Evaluation) -> str:
    remaining = ev.budget_remaining
    if remaining is not None and remaining <= 0:
        return "already spent"
    tte = ev.time_to_exhaustion
    return "not at this burn" if tte is None else f"in {span(tte.total_seconds())}"


def _freeze_section(data: SloData) -> str:
    judged = data.freeze
    if judged is None:
        return ""
    if judged.state is FreezeState.OPEN:
        return (
            '<section class="panel"><h2>Release freeze</h2>'
            f"<p>Releases are open: {e(judged.reason)}.</p></section>"
        )
    back = ""
    if data.recovery is not None:
        at = data.recovery.at
        bound = "no later than " if data.recovery.upper_bound else ""
        back = (
            f"<p><strong>Budget expected back {bound}{when(at, data.now)}</strong></p>"
            if at is not None
            else ""
        ) + f'<p class="muted">{e(data.recovery.reason)}</p>'
    return (
        f'<section class="panel frozen"><h2>Release freeze: {e(judged.state)}</h2>'
        f"<p>{e(judged.reason)}</p>{back}</section>"
    )


def _burndown(data: SloData) -> str:
    slo = data.ev.slo
    older, stored = merge_burndown(data.stored, data.from_source)
    series = []
    if any(value is not None for _, value in older):  # a legend only for a line that is drawn
        series.append(Series("from Prometheus (before the store's history)", older, "c1", dashed=True))
    series.append(Series("from budgetguard's store", stored, "c0"))
    floor = [Threshold("spent", 0.0, "threshold-zero")]
    if slo.freeze is not None and slo.freeze.below > 0:
        floor.append(Threshold(f"freeze floor {slo.freeze.below * 100:g}%", slo.freeze.below))
    chart = Chart(
        f"Error budget left over the last {duration(slo.window)}"
        + ("" if slo.calendar is None else f" (the SLO budgets per {slo.window_name})"),
        data.now - slo.window,
        data.now,
        series,
        floor,
        y_max=1.0,
        percent=True,
    )
    return f'<section class="panel">{line_chart(chart)}</section>'


def _burn_rates(data: SloData, record: Mapping[str, Any]) -> str:
    span = {
        "1h": timedelta(hours=1),
        "6h": timedelta(hours=6),
        "1d": timedelta(days=1),
        "3d": timedelta(days=3),
    }
    start = data.now - span.get(data.range_name, timedelta(hours=6))
    slo = data.ev.slo
    picker = "".join(
        f'<a href="{slo_href(slo.service, slo.name)}?range={r}" data-live'
        f"{' aria-current=true' if r == data.range_name else ''}>{r}</a>"
        for r in data.ranges
    )
    rows = [(datetime.fromisoformat(r["at"]), r.get("burn_rates") or {}) for r in data.records]
    rows = [(at, rates) for at, rates in rows if at >= start]
    charts = []
    for tier in record["tiers"]:
        long_w, short_w = tier["long_window"], tier["short_window"]
        series = []
        first = rows[0][0] if rows else data.now
        for window, css in ((long_w, "c0"), (short_w, "c2")):
            older = [p for p in data.burns_from_source.get(window, ()) if p[0] < first]
            if any(value is not None for _, value in older):
                series.append(Series(f"{window} (Prometheus)", thin(older, 240), css, dashed=True))
            series.append(
                Series(f"{window} burn rate", thin([(at, r.get(window)) for at, r in rows], 360), css)
            )
        firing = " · firing" if tier["firing"] else ""
        chart = Chart(
            f"{tier['severity']} tier {long_w}/{short_w}{firing}",
            start,
            data.now,
            series,
            [Threshold(f"threshold {tier['burn_rate_threshold']:.3g}x", tier["burn_rate_threshold"])],
            y_min=0.0,
            width=480.0,
        )
        charts.append(line_chart(chart))
    return (
        f'<section class="panel"><div class="panel-head"><h2>Burn rate per window against each tier</h2>'
        f'<nav class="range" aria-label="Time range">{picker}</nav></div>'
        f'<div class="charts">{"".join(charts)}</div></section>'
    )


def _windows_table(record: Mapping[str, Any]) -> str:
    rows = []
    for window, rate in record["burn_rates"].items():
        ratio = record["error_ratios"].get(window)
        events = record["events_by_window"].get(window)
        missing = record["missing"].get(window, "")
        rows.append(
            f'<tr><th scope="row">{e(window)}</th><td class="num">{ratio_pct(ratio)}</td>'
            f'<td class="num">{burn(rate)}</td><td class="num">'
            f"{'—' if events is None else f'{events:,.0f}'}</td>"
            f'<td class="muted">{e(missing)}</td></tr>'
        )
    return (
        '<section class="panel"><h2>Windows now</h2><div class="table-wrap"><table>'
        '<thead><tr><th scope="col">Window</th><th scope="col" class="num">Error ratio</th>'
        '<th scope="col" class="num">Burn rate</th><th scope="col" class="num">Events</th><th scope="col">'
        "Note</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _bounds(lower: float | None, upper: float | None) -> str:
    if lower is None or upper is None:
        return "—"
    return f"{ratio_pct(lower)} – {ratio_pct(upper)}"


def _canaries(canaries: Sequence[Mapping[str, Any]]) -> str:
    cards = []
    for c in canaries:
        rows = []
        for w in c["windows"]:
            needed = w.get("events_needed")
            rows.append(
                f'<tr><th scope="row">{e(w["window"])}{" ★" if w["window"] == c["window"] else ""}</th>'
                f'<td class="num">{w["errors"]:,.0f} / {w["requests"]:,.0f}</td>'
                f'<td class="num">{ratio_pct(w["error_ratio"])}</td>'
                f'<td class="num">{_bounds(w["lower_bound"], w["upper_bound"])}</td>'
                f'<td class="num">{ratio_pct(w["limit_ratio"])}</td>'
                f'<td class="num">{ratio_pct(w["baseline_error_ratio"])}</td>'
                f'<td class="num">{"—" if needed is None else f"{needed:,}"}</td>'
                f"<td>{verdict_badge(w['verdict'])}</td></tr>"
            )
        latency = ""
        if c.get("latency"):
            lat = c["latency"]
            latency = (
                f'<p class="latency">{verdict_badge(lat["verdict"])} '
                f"latency p{lat['quantile'] * 100:g} under {lat['threshold_seconds']:g}s "
                f"for {e(lat['for'])}: {e(lat['reason'])}</p>"
            )
        cards.append(
            f'<article class="canary" data-canary="{e(c["value"])}"><h3>{e(c["label"])}={e(c["value"])} '
            f'{verdict_badge(c["verdict"])} <span class="muted">against {e(c["baseline"])}</span></h3>'
            f'<p class="reason">{e(c["reason"])}</p>'
            '<div class="table-wrap"><table><thead><tr><th scope="col">Window</th>'
            '<th scope="col" class="num">Errors / requests</th><th scope="col" class="num">Error ratio</th>'
            '<th scope="col" class="num">95% bounds</th><th scope="col" class="num">Limit</th>'
            '<th scope="col" class="num">Baseline</th><th scope="col" class="num">Requests still needed</th>'
            f'<th scope="col">Verdict</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div>'
            f"{latency}</article>"
        )
    return (
        '<section class="panel"><h2>Canary versions</h2><p class="muted">★ the deciding window</p>'
        f"{''.join(cards)}</section>"
    )


def _changes(changes: Sequence[Mapping[str, Any]], now: datetime) -> str:
    if not changes:
        return (
            '<section class="panel"><h2>Verdict changes</h2>'
            '<p class="muted">None over the window.</p></section>'
        )
    items = "".join(
        f'<li><span class="when">{when(c["at"], now)}</span> '
        f"{verdict_badge(c['from']) if c['from'] else '<span class=muted>first</span>'} → "
        f"{verdict_badge(c['to'])}"
        f'<div class="reason">{e(c["reason"])}</div></li>'
        for c in reversed(changes[-200:])
    )
    return f'<section class="panel"><h2>Verdict changes</h2><ol class="timeline">{items}</ol></section>'
