"""The status page's frame and vocabulary: the HTML document around every page, the login form, and
how values are spelled (times, burn rates, ratios, badges).

No template engine and no build chain: f-strings with every value through ``html.escape``. Each page is
a ``Page``: its fixed parts (title, navigation, the overview's filter form) and its ``live`` part, the one
``status.js`` swaps when it refreshes, so a viewer typing in a filter keeps the focus and the caret.
Numbers are spelled as the API's values would be read: the budget remaining through
``burndown.format_budget`` ("42.1%" for 0.421), burn rates as "2.3x", times in UTC.

Must not: read the store, the source or the clock (``now`` is an argument), or decide anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape
from urllib.parse import quote

from budgetguard.core.burndown import BurnState
from budgetguard.core.durations import format_duration

# Everything from the daemon itself: no inline script or style, no other origin. SVG presentation
# attributes are not styles, so the charts need no exception.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


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
        return f"in {span(-seconds)}"
    return f"{span(seconds)} ago"


def span(seconds: float) -> str:
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


def raw_number(value: float | None) -> str:
    """A number for a ``data-`` attribute (tests and scripts read the exact value), empty when unknown."""
    return "" if value is None else repr(value)


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
