"""The status page's HTML, written on the server: plain functions from the daemon's values to strings.

No template engine and no build chain: f-strings with every value through ``html.escape``. Each page is
a ``Page``: its fixed parts (title, navigation, the overview's filter form) and its ``live`` part, the one
``status.js`` swaps when it refreshes, so a viewer typing in a filter keeps the focus and the caret.

Numbers are spelled as the API's values would be read: the budget remaining through
``burndown.format_budget`` ("42.1%" for 0.421), burn rates as "2.3x", times in UTC.

Must not: read the store, the source or the clock (``now`` is an argument), or decide anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from budgetguard.core.burndown import BurnState, Point, burn_state, format_budget, merge_burndown
from budgetguard.core.durations import format_duration
from budgetguard.core.freeze import FreezeState, Recovery, SloFreeze
from budgetguard.core.policy import Evaluation
from budgetguard.core.records import to_record
from budgetguard.web.charts import Chart, Series, Threshold, budget_bar, line_chart, thin

# Everything from the daemon itself: no inline script or style, no other origin. SVG presentation
# attributes are not styles, so the charts need no exception.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
VERDICT_ORDER = {"burning": 0, "error": 1, "warning": 2, "inconclusive": 3, "healthy": 4}
BURN_ORDER = {"critical": 0, "increasing": 1, "recovering": 2, "unknown": 3, "fine": 4}


def duration(window: timedelta) -> str:
    return format_duration(window)


def e(value: object) -> str:
    return escape(str(value), quote=True)


def slo_href(service: str, name: str) -> str:
    return f"/slos/{quote(service, safe='')}/{quote(name, safe='')}"


def when(at: datetime | str | None, now: datetime | None = None) -> str:
    """A UTC time as a <time> element, with how long ago when ``now`` is given."""
    if at is None:
        return "—"
    moment = datetime.fromisoformat(at) if isinstance(at, str) else at
    text = moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    ago = "" if now is None else f' <span class="ago">({e(_ago(now - moment))})</span>'
    return f'<time datetime="{e(moment.isoformat())}">{e(text)}</time>{ago}'


def _ago(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds < 0:
        return f"in {_span(-seconds)}"
    return f"{_span(seconds)} ago"


def _span(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f}m"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def burn(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.3g}x"


def ratio_pct(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value * 100:.{digits}g}%"


def _raw(value: float | None) -> str:
    """A number for a ``data-`` attribute (tests and scripts read the exact value), empty when unknown."""
    return "" if value is None else repr(value)


def _acknowledged(incident: Mapping[str, Any]) -> str:
    by = incident.get("acknowledged_by")
    return f" · acknowledged by {e(by)}" if by else ""


def verdict_badge(verdict: str) -> str:
    return f'<span class="badge v-{e(verdict)}">{e(verdict)}</span>'


def burn_badge(state: BurnState) -> str:
    return f'<span class="badge b-{e(state)}">{e(state)}</span>'


@dataclass(frozen=True)
class Page:
    title: str
    live: str
    nav: str = ""  # "overview", "incidents"
    fixed: str = ""  # above the live part, kept across refreshes (the filter form)
    can_act: bool = False
    refreshing: bool = True  # the login form and error pages stay still


def document(page: Page, refresh_seconds: float, *, can_act: bool) -> str:
    def link(href: str, name: str, key: str) -> str:
        current = ' aria-current="page"' if page.nav == key else ""
        return f'<a href="{href}"{current}>{name}</a>'

    session = (
        '<form method="post" action="/logout" class="session"><button type="submit" class="link">'
        "Forget the token</button></form>"
        if can_act
        else ""
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{e(page.title)} · budgetguard</title>
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/status.css">
<script src="/static/status.js" defer></script>
</head>
<body data-refresh="{refresh_seconds:g}">
<a class="skip" href="#live">Skip to content</a>
<header class="top">
  <a class="brand" href="/"><img src="/static/favicon.svg" alt="" width="20" height="20"> budgetguard</a>
  <nav aria-label="Pages">{link("/", "SLOs", "overview")}{link("/incidents", "Incidents", "incidents")}</nav>
  <span class="refreshed" id="refreshed" role="status" aria-live="polite"></span>
  {session}
</header>
<main>
{page.fixed}
<div id="live" tabindex="-1">
{page.live}
</div>
</main>
</body>
</html>
"""


def not_found(message: str) -> Page:
    return Page(
        "Not here",
        f'<section class="panel"><h1>Not here</h1><p>{e(message)}</p>'
        '<p><a href="/">All SLOs</a></p></section>',
    )


def login(back: str, message: str = "") -> Page:
    note = f'<p class="error" role="alert">{e(message)}</p>' if message else ""
    return Page(
        "API token",
        f"""<section class="panel narrow"><h1>This daemon needs its API token</h1>
<p>The pages show what <code>/api/</code> shows, so they ask for the same token
(<code>api_token</code> in the daemon's settings). It stays in this browser as a cookie that scripts cannot
read, and lets you acknowledge, resolve and retry from the incident pages.</p>{note}
<form method="post" action="/login" class="login">
<input type="hidden" name="next" value="{e(back)}">
<label for="token">API token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Open the status page</button>
</form></section>""",
        refreshing=False,
    )


# --- overview ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OverviewQuery:
    service: str = ""
    label: str = ""  # "team=payments"
    verdict: str = ""
    text: str = ""
    sort: str = "attention"
    descending: bool = False

    SORTS = ("attention", "service", "slo", "objective", "window", "verdict", "budget", "burn")

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> OverviewQuery:
        sort = params.get("sort", "attention")
        return cls(
            service=params.get("service", ""),
            label=params.get("label", ""),
            verdict=params.get("verdict", ""),
            text=params.get("q", "").strip(),
            sort=sort if sort in cls.SORTS else "attention",
            descending=params.get("dir") == "desc",
        )

    def params(self, **changes: Any) -> str:
        values = {
            "service": self.service,
            "label": self.label,
            "verdict": self.verdict,
            "q": self.text,
            "sort": self.sort,
            "dir": "desc" if self.descending else "",
        }
        values.update(changes)
        kept = {k: v for k, v in values.items() if v and not (k == "sort" and v == "attention")}
        return "?" + urlencode(kept) if kept else "?"

    def keeps(self, ev: Evaluation) -> bool:
        slo = ev.slo
        if self.service and slo.service != self.service:
            return False
        if self.verdict and str(ev.verdict) != self.verdict:
            return False
        if self.label:
            name, _, value = self.label.partition("=")
            if slo.labels.get(name) != value:
                return False
        if self.text:
            needle = self.text.lower()
            return needle in slo.id.lower() or any(needle in v.lower() for v in slo.labels.values())
        return True


def _budget_key(ev: Evaluation) -> float:
    value = ev.budget_remaining
    return math.inf if value is None or not math.isfinite(value) else value


def _sort_key(sort: str) -> Callable[[tuple[Evaluation, BurnState]], Any]:
    keys: dict[str, Callable[[tuple[Evaluation, BurnState]], Any]] = {
        "attention": lambda p: (
            VERDICT_ORDER.get(str(p[0].verdict), 9),
            BURN_ORDER[p[1]],
            _budget_key(p[0]),
            p[0].slo.id,
        ),
        "service": lambda p: (p[0].slo.service, p[0].slo.name),
        "slo": lambda p: (p[0].slo.name, p[0].slo.service),
        "objective": lambda p: (p[0].slo.objective, p[0].slo.id),
        "window": lambda p: (p[0].slo.window, p[0].slo.id),
        "verdict": lambda p: (VERDICT_ORDER.get(str(p[0].verdict), 9), p[0].slo.id),
        "budget": lambda p: (_budget_key(p[0]), p[0].slo.id),
        "burn": lambda p: (BURN_ORDER[p[1]], p[0].slo.id),
    }
    return keys[sort]


def _options(values: Sequence[str], chosen: str, everything: str) -> str:
    out = [f'<option value="">{e(everything)}</option>']
    for value in values:
        selected = " selected" if value == chosen else ""
        out.append(f'<option value="{e(value)}"{selected}>{e(value)}</option>')
    return "".join(out)


def overview(
    evaluations: Sequence[Evaluation],
    query: OverviewQuery,
    *,
    spark: Callable[[str], str | None],
    open_incidents: Sequence[Mapping[str, Any]],
    freezes: Sequence[SloFreeze],
    problems: Sequence[str],
    now: datetime,
    can_act: bool,
) -> Page:
    services = sorted({ev.slo.service for ev in evaluations})
    labels = sorted({f"{k}={v}" for ev in evaluations for k, v in ev.slo.labels.items()})
    counts: dict[str, int] = {}
    for ev in evaluations:
        counts[str(ev.verdict)] = counts.get(str(ev.verdict), 0) + 1
    fixed = f"""<form class="filters" method="get" action="/" role="search" aria-label="Filter SLOs">
<label>Search <input type="search" name="q" value="{e(query.text)}"
 placeholder="service, SLO or label"></label>
<label>Service <select name="service">{_options(services, query.service, "all services")}</select></label>
<label>Label <select name="label">{_options(labels, query.label, "any label")}</select></label>
<label>Verdict <select name="verdict">{_options(list(VERDICT_ORDER), query.verdict, "any verdict")}
</select></label>
<input type="hidden" name="sort" value="{e(query.sort if query.sort != "attention" else "")}">
<input type="hidden" name="dir" value="{"desc" if query.descending else ""}">
<noscript><button type="submit">Filter</button></noscript>
</form>"""
    rows = [(ev, burn_state(ev).state) for ev in evaluations if query.keeps(ev)]
    rows.sort(key=_sort_key(query.sort), reverse=query.descending)
    live = [
        _attention(open_incidents, freezes, problems, now),
        _summary(counts, len(evaluations), len(rows), query),
    ]
    live.append(_table(rows, query, spark))
    return Page("SLOs", "".join(live), nav="overview", fixed=fixed, can_act=can_act)


def _attention(
    open_incidents: Sequence[Mapping[str, Any]],
    freezes: Sequence[SloFreeze],
    problems: Sequence[str],
    now: datetime,
) -> str:
    if not open_incidents and not freezes and not problems:
        return (
            '<section class="calm" aria-label="Attention">'
            "<p>No open incident, no release frozen.</p></section>"
        )
    items = []
    for incident in open_incidents:
        items.append(
            f'<li class="incident"><a href="/incidents/{quote(incident["id"], safe="")}">'
            f"<strong>Incident</strong> {e(incident['slo_id'])} "
            f"{e(incident['canary_label'])}={e(incident['canary'])}</a>"
            f' <span class="muted">opened {when(incident["opened_at"], now)}'
            f"{_acknowledged(incident)}</span>"
            f'<div class="reason">{e(incident["reason"])}</div></li>'
        )
    for frozen in freezes:
        service, _, name = frozen.slo_id.partition("/")
        items.append(
            f'<li class="freeze"><a href="{slo_href(service, name)}"><strong>Releases '
            f"{e(frozen.state)}</strong> "
            f'{e(frozen.slo_id)}</a><div class="reason">{e(frozen.reason)}</div></li>'
        )
    for problem in problems:
        items.append(
            f'<li class="problem"><strong>Config problem</strong> <div class="reason">{e(problem)}</div></li>'
        )
    return f'<section class="attention" aria-label="Attention"><ul>{"".join(items)}</ul></section>'


def _summary(counts: Mapping[str, int], total: int, shown: int, query: OverviewQuery) -> str:
    chips = []
    for verdict in VERDICT_ORDER:
        n = counts.get(verdict, 0)
        if n == 0:
            continue
        pressed = "true" if query.verdict == verdict else "false"
        target = query.params(verdict="" if query.verdict == verdict else verdict)
        chips.append(
            f'<a class="chip v-{verdict}" href="/{e(target)}" data-live aria-pressed="{pressed}">'
            f"{n} {verdict}</a>"
        )
    filtered = f" · {shown} shown" if shown != total else ""
    return (
        f'<div class="summary"><h1>{total} SLO{"s" if total != 1 else ""}<span class="muted">'
        f"{filtered}</span></h1>"
        f'<div class="chips">{"".join(chips)}</div></div>'
    )


def _table(
    rows: Sequence[tuple[Evaluation, BurnState]], query: OverviewQuery, spark: Callable[[str], str | None]
) -> str:
    def header(key: str, name: str, css: str = "") -> str:
        active = query.sort == key
        descending = active and query.descending
        aria = f' aria-sort="{"descending" if descending else "ascending"}"' if active else ""
        target = query.params(sort=key, dir="" if descending or not active else "desc")
        arrow = ("▼" if descending else "▲") if active else ""
        return (
            f'<th scope="col" class="{css}"{aria}><a href="/{e(target)}" data-live>{name}'
            f'<span class="arrow" aria-hidden="true">{arrow}</span></a></th>'
        )

    head = (
        header("service", "Service")
        + header("slo", "SLO")
        + header("objective", "Objective", "num hide-s")
        + header("window", "Window", "num hide-s")
        + header("verdict", "Verdict")
        + header("budget", "Budget left", "budget")
        + header("burn", "Burn (fastest page tier)", "hide-s")
        + '<th scope="col" class="hide-s">Budget over the window</th>'
    )
    body = []
    for ev, state in rows:
        slo = ev.slo
        remaining = ev.budget_remaining
        shown = format_budget(remaining)
        tier = burn_state(ev).tier
        burn_detail = (
            ""
            if tier is None
            else f'<span class="muted">{burn(tier.long_burn)} / {burn(tier.short_burn)} '
            f"vs {tier.tier.burn_rate:.3g}x</span>"
        )
        line = spark(slo.id)
        body.append(
            f'<tr data-slo="{e(slo.id)}" data-verdict="{e(ev.verdict)}">'
            f'<td class="svc">{e(slo.service)}</td>'
            f'<th scope="row" class="name"><a href="{slo_href(slo.service, slo.name)}">{e(slo.name)}</a></th>'
            f'<td class="num hide-s">{e(slo.objective)}%</td>'
            f'<td class="num hide-s">{e(duration(slo.window))}</td>'
            f'<td class="verdict">{verdict_badge(str(ev.verdict))}</td>'
            '<td class="budget"><span class="pct" '
            f'data-budget="{_raw(remaining)}">{shown}</span>'
            f"{budget_bar(remaining, f'{shown} of the error budget left')}</td>"
            f'<td class="hide-s">{burn_badge(state)} {burn_detail}</td>'
            f'<td class="hide-s">{line if line is not None else "<span class=muted>reading…</span>"}</td>'
            "</tr>"
        )
    if not body:
        body.append('<tr><td colspan="8" class="muted">No SLO matches these filters.</td></tr>')
    return (
        '<div class="table-wrap"><table class="slos"><caption class="sr-only">Every SLO, its verdict and '
        "its budget</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


# --- one SLO ---------------------------------------------------------------------------------------


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


def slo_page(data: SloData, *, can_act: bool) -> Page:
    ev = data.ev
    slo = ev.slo
    record = to_record(ev)
    state = burn_state(ev)
    shown = format_budget(ev.budget_remaining)
    labels = "".join(f'<span class="tag">{e(k)}={e(v)}</span>' for k, v in sorted(slo.labels.items()))
    facts = [
        ("Objective", f"{e(slo.objective)}% over {e(duration(slo.window))}"),
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
<div class="budget-big"><span class="pct" data-budget="{_raw(ev.budget_remaining)}">{shown}</span>
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
        parts.append(_incident_list(data.incidents, data.now, "Incidents of this SLO"))
    parts.append(_changes(data.changes, data.now))
    return Page(f"{slo.id}", "".join(parts), nav="overview", can_act=can_act)


def _runs_out(ev: Evaluation) -> str:
    remaining = ev.budget_remaining
    if remaining is not None and remaining <= 0:
        return "already spent"
    tte = ev.time_to_exhaustion
    return "not at this burn" if tte is None else f"in {_span(tte.total_seconds())}"


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
    if older:
        series.append(Series("from Prometheus (before the store's history)", older, "c1", dashed=True))
    series.append(Series("from budgetguard's store", stored, "c0"))
    floor = [Threshold("spent", 0.0, "threshold-zero")]
    if slo.freeze is not None and slo.freeze.below > 0:
        floor.append(Threshold(f"freeze floor {slo.freeze.below * 100:g}%", slo.freeze.below))
    chart = Chart(
        f"Error budget left over the last {duration(slo.window)}",
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
            if older:
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
                f'<p class="latency">{verdict_badge(lat["verdict"])} latency p{lat["quantile"] * 100:g} '
                "under "
                f"{lat['threshold_seconds']:g}s for {e(lat['for'])}: {e(lat['reason'])}</p>"
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


# --- incidents -------------------------------------------------------------------------------------


def _incident_list(items: Sequence[Mapping[str, Any]], now: datetime, title: str) -> str:
    rows = []
    for i in items:
        rows.append(
            f'<tr data-incident="{e(i["id"])}" data-state="{e(i["state"])}">'
            f'<th scope="row"><a href="/incidents/{quote(i["id"], safe="")}">{e(i["slo_id"])} '
            f"{e(i['canary_label'])}={e(i['canary'])}</a></th>"
            f'<td><span class="badge s-{e(i["state"])}">{e(i["state"])}</span>'
            f"{' <span class=badge>acknowledged</span>' if i.get('acknowledged_at') else ''}</td>"
            f"<td>{when(i['opened_at'], now)}</td>"
            f'<td class="hide-s">{e(i["reason"])}</td></tr>'
        )
    return (
        f'<section class="panel"><h2>{e(title)}</h2><div class="table-wrap"><table class="incidents">'
        '<thead><tr><th scope="col">Incident</th><th scope="col">State</th><th scope="col">Opened</th>'
        f'<th scope="col" class="hide-s">Why</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div>'
        "</section>"
    )


def incidents(items: Sequence[Mapping[str, Any]], available: bool, now: datetime, *, can_act: bool) -> Page:
    if not available:
        return Page(
            "Incidents",
            '<section class="panel"><h1>Incidents</h1><p>Not available here.</p></section>',
            "incidents",
        )
    open_ = [i for i in items if i["state"] == "open"]
    closed = [i for i in items if i["state"] != "open"]
    parts = [
        f'<div class="summary"><h1>Incidents</h1><p class="muted">{len(open_)} open, {len(closed)} '
        "resolved</p></div>"
    ]
    if open_:
        parts.append(_incident_list(open_, now, "Open"))
    else:
        parts.append('<section class="calm"><p>No open incident.</p></section>')
    if closed:
        parts.append(_incident_list(closed, now, "Resolved"))
    return Page("Incidents", "".join(parts), nav="incidents", can_act=can_act)


def _button(action: str, label: str, hidden: Mapping[str, str] | None = None) -> str:
    fields = "".join(f'<input type="hidden" name="{e(k)}" value="{e(v)}">' for k, v in (hidden or {}).items())
    return (
        f'<form method="post" action="{e(action)}" class="inline">{fields}'
        f'<button type="submit">{e(label)}</button></form>'
    )


def incident(shown: Mapping[str, Any], now: datetime, *, can_act: bool) -> Page:
    incident_id = shown["id"]
    slo_service, _, slo_name = shown["slo_id"].partition("/")
    href = f"/incidents/{quote(incident_id, safe='')}"
    deliveries = shown.get("deliveries") or []
    events: list[tuple[str, str, str]] = [(shown["opened_at"], "opened", shown["reason"])]
    affected = shown.get("affected")
    for d in deliveries:
        events.append((d["created_at"], "queued", f"{d['event']} to {d['action']}"))
        if d.get("last_attempt_at"):
            answer = "" if d.get("last_status") is None else f" (HTTP {d['last_status']})"
            events.append(
                (
                    d["last_attempt_at"],
                    "attempt",
                    f"{d['action']}: attempt {d['attempts']}, {d['status']}{answer}",
                )
            )
    if shown.get("healthy_since"):
        events.append((shown["healthy_since"], "healthy", "the canary looks healthy again"))
    if shown.get("acknowledged_at"):
        events.append((shown["acknowledged_at"], "acknowledged", f"by {shown['acknowledged_by']}"))
    if shown.get("resolved_at"):
        events.append((shown["resolved_at"], "resolved", shown.get("resolution") or ""))
    events.sort(key=lambda item: item[0])
    timeline = "".join(
        f'<li class="t-{e(kind)}"><span class="when">{when(at, now)}</span> <strong>{e(kind)}</strong>'
        f'<div class="reason">{e(what)}</div></li>'
        for at, kind, what in events
    )
    buttons = ""
    if can_act and shown["state"] == "open":
        ack = "" if shown.get("acknowledged_at") else _button(f"{href}/ack", "Acknowledge")
        buttons = f'<div class="actions">{ack}{_button(f"{href}/resolve", "Resolve")}</div>'
    burn_rates = ", ".join(f"{e(k)} {burn(v)}" for k, v in (shown.get("burn_rates") or {}).items())
    parts = [
        f"""<section class="hero"><p class="crumbs"><a href="/incidents">Incidents</a> ·
<a href="{slo_href(slo_service, slo_name)}">{e(shown["slo_id"])}</a></p>
<h1>{e(shown["canary_label"])}={e(shown["canary"])}
 <span class="badge s-{e(shown["state"])}">{e(shown["state"])}</span></h1>
<p class="reason">{e(shown["reason"])}</p>
<dl class="facts"><div><dt>Baseline</dt><dd>{e(shown["baseline"])}</dd></div>
<div><dt>Burn rates when opened</dt><dd>{burn_rates or "—"}</dd></div>
<div><dt>Opened</dt><dd>{when(shown["opened_at"], now)}</dd></div>
<div><dt>Id</dt><dd><code>{e(incident_id)}</code></dd></div></dl>{buttons}</section>""",
        f'<section class="panel"><h2>Timeline</h2><ol class="timeline">{timeline}</ol></section>',
        _affected(affected),
        _deliveries(deliveries, href, now, can_act=can_act),
    ]
    return Page(f"Incident {incident_id}", "".join(parts), nav="incidents", can_act=can_act)


def _affected(affected: Mapping[str, Any] | None) -> str:
    if affected is None:
        return (
            '<section class="panel"><h2>Who is affected</h2><p class="muted">Not broken down (the SLO names '
            "no <code>canary.affected_by</code>, or the answer is still on its way).</p></section>"
        )

    def named(labels: Mapping[str, str]) -> str:
        return ", ".join(f"{k}={v or '(none)'}" for k, v in labels.items())

    rows = "".join(
        f'<tr><th scope="row">{e(named(s["labels"]))}</th>'
        f'<td class="num">{s["errors"]:,.0f}</td><td class="num">{s["share"] * 100:.0f}%</td></tr>'
        for s in affected.get("slices") or []
    )
    note = f'<p class="muted">{e(affected["note"])}</p>' if affected.get("note") else ""
    table = (
        '<div class="table-wrap"><table><thead><tr><th scope="col">Slice</th><th scope="col" class="num">'
        "Errors</th>"
        f'<th scope="col" class="num">Share</th></tr></thead><tbody>{rows}</tbody></table></div>'
        if rows
        else ""
    )
    return (
        f'<section class="panel"><h2>Who is affected</h2><p class="muted">{affected["errors"]:,.0f} errors '
        "over "
        f"{e(affected['window'])} by {e(', '.join(affected['by']))}</p>{table}{note}</section>"
    )


def _deliveries(deliveries: Sequence[Mapping[str, Any]], back: str, now: datetime, *, can_act: bool) -> str:
    if not deliveries:
        return '<section class="panel"><h2>Deliveries</h2><p class="muted">None.</p></section>'
    rows = []
    for d in deliveries:
        retry = ""
        if can_act and d["status"] == "failed":
            retry = _button(f"/deliveries/{d['id']}/retry", "Retry", {"back": back})
        detail = d.get("last_detail") or ""
        rows.append(
            f'<tr data-delivery="{d["id"]}"><th scope="row">{e(d["action"])}</th><td>{e(d["event"])}</td>'
            f'<td><span class="badge d-{e(d["status"])}">{e(d["status"])}</span></td>'
            f'<td class="num">{d["attempts"]}</td>'
            f'<td>{"—" if d.get("last_status") is None else e(d["last_status"])} <span class="muted">'
            f"{e(detail[:200])}</span></td>"
            f'<td class="hide-s">{when(d.get("done_at") or d.get("next_attempt_at"), now)}</td><td>'
            f"{retry}</td></tr>"
        )
    return (
        '<section class="panel"><h2>Deliveries</h2><div class="table-wrap"><table class="deliveries"><thead>'
        "<tr>"
        '<th scope="col">Action</th><th scope="col">Event</th><th scope="col">Outcome</th>'
        '<th scope="col" class="num">Attempts</th><th scope="col">Last answer</th>'
        '<th scope="col" class="hide-s">Done / next attempt</th><th scope="col"><span class="sr-only">'
        "Retry</span></th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div></section>"
    )
