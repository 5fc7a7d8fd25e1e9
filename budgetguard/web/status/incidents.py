"""The incident pages: the list, and one incident's timeline, who is affected and its deliveries, with
the acknowledge, resolve and retry buttons for a viewer who gave the API token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from budgetguard.web.status.layout import (
    Page,
    burn,
    e,
    slo_href,
    when,
)


def incident_table(items: Sequence[Mapping[str, Any]], now: datetime, title: str) -> str:
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
        '<th scope="col" class="hide-s">Why</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div></section>"
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
        parts.append(incident_table(open_, now, "Open"))
    else:
        parts.append('<section class="calm"><p>No open incident.</p></section>')
    if closed:
        parts.append(incident_table(closed, now, "Resolved"))
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


def errors(count: float) -> str:
    """Counts read from rates are fractional: a handful keeps two digits, more are whole numbers."""
    return f"{count:.2g}" if count < 10 else f"{count:,.0f}"


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
        f'<td class="num">{errors(s["errors"])}</td><td class="num">{s["share"] * 100:.0f}%</td></tr>'
        for s in affected.get("slices") or []
    )
    note = f'<p class="muted">{e(affected["note"])}</p>' if affected.get("note") else ""
    table = (
        '<div class="table-wrap"><table><thead><tr><th scope="col">Slice</th>'
        '<th scope="col" class="num">Errors</th><th scope="col" class="num">Share</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></div>"
        if rows
        else ""
    )
    return (
        '<section class="panel"><h2>Who is affected</h2>'
        f'<p class="muted">{errors(affected["errors"])} errors over {e(affected["window"])} '
        f"by {e(', '.join(affected['by']))}</p>{table}{note}</section>"
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
        '<section class="panel"><h2>Deliveries</h2>'
        '<div class="table-wrap"><table class="deliveries"><thead><tr>'
        '<th scope="col">Action</th><th scope="col">Event</th><th scope="col">Outcome</th>'
        '<th scope="col" class="num">Attempts</th><th scope="col">Last answer</th>'
        '<th scope="col" class="hide-s">Done / next attempt</th><th scope="col"><span class="sr-only">'
        "Retry</span></th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div></section>"
    )
