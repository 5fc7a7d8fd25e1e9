"""The overview: every SLO in one table (verdict, budget, burn state, sparkline), what needs attention
above it, filters and sorting from the address, so a view can be bookmarked. Usable at 1,000 SLOs: the
sparklines arrive drawn (``sparklines``) and nothing here reads the store.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from budgetguard.core.burndown import Burn, burn_state, format_budget
from budgetguard.core.freeze import SloFreeze
from budgetguard.core.policy import Evaluation
from budgetguard.web.status.charts import budget_bar
from budgetguard.web.status.layout import (
    Page,
    burn,
    burn_badge,
    duration,
    e,
    raw_number,
    slo_href,
    verdict_badge,
    when,
)

VERDICT_ORDER = {"burning": 0, "error": 1, "warning": 2, "inconclusive": 3, "healthy": 4}
BURN_ORDER = {"critical": 0, "increasing": 1, "recovering": 2, "unknown": 3, "fine": 4}


def _acknowledged(incident: Mapping[str, Any]) -> str:
    by = incident.get("acknowledged_by")
    return f" · acknowledged by {e(by)}" if by else ""


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


def _sort_key(sort: str) -> Callable[[tuple[Evaluation, Burn]], Any]:
    keys: dict[str, Callable[[tuple[Evaluation, Burn]], Any]] = {
        "attention": lambda p: (
            VERDICT_ORDER.get(str(p[0].verdict), 9),
            BURN_ORDER[p[1].state],
            _budget_key(p[0]),
            p[0].slo.id,
        ),
        "service": lambda p: (p[0].slo.service, p[0].slo.name),
        "slo": lambda p: (p[0].slo.name, p[0].slo.service),
        "objective": lambda p: (p[0].slo.objective, p[0].slo.id),
        "window": lambda p: (p[0].slo.window, p[0].slo.id),
        "verdict": lambda p: (VERDICT_ORDER.get(str(p[0].verdict), 9), p[0].slo.id),
        "budget": lambda p: (_budget_key(p[0]), p[0].slo.id),
        "burn": lambda p: (BURN_ORDER[p[1].state], p[0].slo.id),
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
    rows = [(ev, burn_state(ev)) for ev in evaluations if query.keeps(ev)]
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
    rows: Sequence[tuple[Evaluation, Burn]], query: OverviewQuery, spark: Callable[[str], str | None]
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
    for ev, burning in rows:
        slo = ev.slo
        remaining = ev.budget_remaining
        shown = format_budget(remaining)
        tier = burning.tier
        burn_detail = (
            ""
            if tier is None
            else f'<span class="muted">{burn(tier.long_burn)} / {burn(tier.short_burn)} '
            f"vs {tier.tier.burn_rate:.3g}x</span>"
        )
        line = spark(slo.id)
        window = duration(slo.window) if slo.calendar is None else f"calendar {slo.calendar.calendar}"
        body.append(
            f'<tr data-slo="{e(slo.id)}" data-verdict="{e(ev.verdict)}">'
            f'<td class="svc">{e(slo.service)}</td>'
            f'<th scope="row" class="name"><a href="{slo_href(slo.service, slo.name)}">{e(slo.name)}</a></th>'
            f'<td class="num hide-s">{e(slo.objective)}%</td>'
            f'<td class="num hide-s">{e(window)}</td>'
            f'<td class="verdict">{verdict_badge(str(ev.verdict))}</td>'
            '<td class="budget"><span class="pct" '
            f'data-budget="{raw_number(remaining)}">{shown}</span>'
            f"{budget_bar(remaining, f'{shown} of the error budget left')}</td>"
            f'<td class="hide-s">{burn_badge(burning.state)} {burn_detail}</td>'
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
