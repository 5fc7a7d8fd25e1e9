"""The status page's routes: who may see and act, what each page reads, and the answer it sends.

Routes (HTML; each page answers a request carrying ``X-Budgetguard-Fragment: 1`` with just its live
part, which ``static/status.js`` fetches to refresh the page without reloading it):

    GET  /                                   every SLO: verdict, budget, burn state, sparkline; filters
    GET  /slos/{service}/{slo}               one SLO: burn-down, burn rates per tier, canaries, changes
    GET  /incidents, /incidents/{id}         incidents: timeline, affected slices, deliveries
    POST /incidents/{id}/ack, .../resolve    buttons, shown only to a viewer who gave the API token
    POST /deliveries/{id}/retry
    GET, POST /login; POST /logout           give (or forget) the API token for this browser
    GET  /static/...                         CSS, JS and the icon: nothing is fetched from elsewhere

Auth follows ``/api/``: with an ``api_token`` configured the pages need it, as a Bearer header or as
the cookie ``/login`` sets after checking it (HttpOnly, SameSite=Strict, so another site can neither
read it nor make a browser send it with a form). Without a token the pages are open like the API, and
nothing can be changed from them: changes over HTTP need a token (``web.control``'s rule). The token is
checked by the web layer's one helper (``web._auth.Auth``).

Reads that can be slow are bounded: sparklines come from ``sparklines``' cache, Prometheus' ranges (the
burn-down and burn rates older than the store) wait at most ten seconds and are cached for a while.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from budgetguard.core import burndown, freeze
from budgetguard.core.errors import BudgetguardError, ControlError
from budgetguard.core.guard import IncidentState
from budgetguard.web._auth import Auth
from budgetguard.web._ports import ApiView, ControlApi, RangeSource
from budgetguard.web._recovery import RecoveryEstimates
from budgetguard.web.status import incidents as incident_pages
from budgetguard.web.status import layout
from budgetguard.web.status import overview as overview_page
from budgetguard.web.status import slo as slo_pages
from budgetguard.web.status.older import OlderThanStore
from budgetguard.web.status.sparklines import Sparklines

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
COOKIE = "budgetguard_token"
FRAGMENT_HEADER = "x-budgetguard-fragment"
BURN_RANGES = {
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "1d": timedelta(days=1),
    "3d": timedelta(days=3),
}
MAX_CHART_ROWS = 5000


@dataclass(frozen=True)
class Viewer:
    """Who is looking: may they see the pages, and may they change things (gave the token)?"""

    allowed: bool
    can_act: bool


def routes(
    view: ApiView,
    auth: Auth,
    *,
    control: Callable[[], ControlApi] | None,
    recoveries: RecoveryEstimates,
    source: RangeSource | None,
    on_change: Callable[[], None] = lambda: None,
    refresh: timedelta = timedelta(seconds=10),
) -> list[BaseRoute]:
    """The page's routes, for ``create_app`` to mount beside the API's."""
    sparks = Sparklines(view)
    older_than_store = OlderThanStore(source)

    def viewer(request: Request) -> Viewer:
        if auth.token is None:
            return Viewer(allowed=True, can_act=False)
        ok = auth.authorised(request) or auth.matches(request.cookies.get(COOKIE, "").strip())
        return Viewer(allowed=ok, can_act=ok)

    def fragment(request: Request) -> bool:
        return request.headers.get(FRAGMENT_HEADER) == "1"

    def seconds(request: Request) -> float:
        raw = request.query_params.get("refresh", "")
        try:
            return max(1.0, float(raw)) if raw else refresh.total_seconds()
        except ValueError:
            return refresh.total_seconds()

    def respond(request: Request, page: layout.Page, status: int = 200) -> Response:
        every = seconds(request) if page.refreshing else 0.0  # the login form and errors stay still
        body = page.live if fragment(request) else layout.document(page, every, can_act=page.can_act)
        response = HTMLResponse(body, status_code=status)
        response.headers["Content-Security-Policy"] = layout.CSP
        response.headers["Cache-Control"] = "no-store"
        return response

    def login_page(request: Request, message: str = "") -> Response:
        # The login form is a page, not an error (a browser logs any 4xx as a console error). A refresh
        # of the live part gets no content and a header, and the script reloads into the form.
        if fragment(request):
            return Response(status_code=204, headers={"X-Budgetguard-Login": "required"})
        back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return respond(request, layout.login(back, message))

    def incidents_of(c: ControlApi | None, state: IncidentState | None) -> list[dict[str, Any]]:
        if c is None:
            return []
        try:
            return c.incidents(state, limit=500)
        except (ControlError, BudgetguardError) as exc:
            log.warning("status page: cannot read incidents: %s", exc)
            return []

    async def overview(request: Request) -> Response:
        who = viewer(request)
        if not who.allowed:
            return login_page(request)
        evaluations = view.latest_evaluations()
        sparks.request(evaluations)
        c = control() if control is not None else None
        open_incidents = incidents_of(c, IncidentState.OPEN)
        freezes = [
            f
            for ev in evaluations
            if (f := freeze.judge(ev, {})) is not None and f.state is not freeze.FreezeState.OPEN
        ]
        query = overview_page.OverviewQuery.parse(dict(request.query_params))
        # At 1,000 SLOs the live part is ~1 MB: a refresh between two cycles gets a 304 and no body.
        version = hash(
            (
                tuple((ev.slo.id, ev.at, ev.verdict) for ev in evaluations),
                tuple((i["id"], i.get("acknowledged_at")) for i in open_incidents),
                tuple(f.slo_id for f in freezes),
                tuple(view.config_problems()),
                sparks.generation,
                str(request.url.query),
                who.can_act,
                int(time.time() // 60),  # "opened 3m ago" moves on
            )
        )
        tag = f'W/"{version & 0xFFFFFFFFFFFF:x}"'
        if fragment(request) and request.headers.get("if-none-match") == tag:
            return Response(status_code=304, headers={"ETag": tag, "Cache-Control": "no-store"})
        page = overview_page.overview(
            evaluations,
            query,
            spark=sparks.get,
            open_incidents=open_incidents,
            freezes=freezes,
            problems=view.config_problems(),
            now=datetime.now(tz=UTC),
            can_act=who.can_act,
        )
        response = respond(request, page)
        response.headers["ETag"] = tag
        return response

    async def one_slo(request: Request) -> Response:
        who = viewer(request)
        if not who.allowed:
            return login_page(request)
        slo_id = f"{request.path_params['service']}/{request.path_params['slo']}"
        ev = next((e for e in view.latest_evaluations() if e.slo.id == slo_id), None)
        if ev is None:
            return respond(
                request,
                layout.not_found(f"No SLO {slo_id} is declared (or it has not been evaluated yet)."),
                404,
            )
        now = datetime.now(tz=UTC)
        range_name = request.query_params.get("range", "6h")
        if range_name not in BURN_RANGES:
            range_name = "6h"
        span = BURN_RANGES[range_name]
        try:
            stored = view.budget_series(slo_id, now - ev.slo.window, ev.slo.window / burndown.BURNDOWN_POINTS)
            records = view.history(slo_id, now - span, MAX_CHART_ROWS)
            changes = view.verdict_changes(slo_id, now - ev.slo.window)
            paused, _ = view.guard_status(slo_id)
        except BudgetguardError as exc:
            return respond(request, layout.not_found(f"Cannot read {slo_id}'s history: {exc}"), 503)
        older = await older_than_store.budget(ev, stored)
        burns = await older_than_store.burn_rates(ev, range_name, now - span, records)
        judged = freeze.judge(ev, {})
        recovered = None
        if judged is not None and judged.state is freeze.FreezeState.FROZEN:
            recovered = await recoveries.get(ev)
        c = control() if control is not None else None
        mine = [i for i in incidents_of(c, None) if i["slo_id"] == slo_id]
        page = slo_pages.slo_page(
            slo_pages.SloData(
                ev=ev,
                now=now,
                stored=stored,
                from_source=older,
                records=records,
                burns_from_source=burns,
                range_name=range_name,
                ranges=tuple(BURN_RANGES),
                changes=changes,
                paused=paused,
                freeze=judged,
                recovery=recovered,
                incidents=mine,
            ),
            can_act=who.can_act,
        )
        return respond(request, page)

    async def incident_list(request: Request) -> Response:
        who = viewer(request)
        if not who.allowed:
            return login_page(request)
        c = control() if control is not None else None
        page = incident_pages.incidents(
            incidents_of(c, None), c is not None, datetime.now(tz=UTC), can_act=who.can_act
        )
        return respond(request, page)

    async def incident_detail(request: Request) -> Response:
        who = viewer(request)
        if not who.allowed:
            return login_page(request)
        if control is None:
            return respond(request, layout.not_found("Incidents are not available here."), 404)
        try:
            shown = control().show(str(request.path_params["incident"]))
        except ControlError as exc:
            return respond(request, layout.not_found(str(exc)), exc.status)
        return respond(request, incident_pages.incident(shown, datetime.now(tz=UTC), can_act=who.can_act))

    def same_origin(request: Request) -> bool:
        """A form posted from this page, not from another site (the SameSite cookie is the first guard)."""
        site = request.headers.get("sec-fetch-site")
        if site is not None:
            return site in ("same-origin", "none")
        origin = request.headers.get("origin")
        return origin is None or origin == f"{request.url.scheme}://{request.url.netloc}"

    async def act(request: Request, doing: Callable[[ControlApi, datetime], Any], back: str) -> Response:
        who = viewer(request)
        if not who.can_act or control is None:
            return respond(
                request,
                layout.not_found("Changing incidents needs the API token: give it on the login page."),
                403,
            )
        if not same_origin(request):
            return respond(
                request, layout.not_found("This form must be sent from the status page itself."), 403
            )
        try:
            doing(control(), datetime.now(tz=UTC))
        except ControlError as exc:
            return respond(request, layout.not_found(str(exc)), exc.status)
        on_change()
        return RedirectResponse(back, status_code=303)

    def local(path: str) -> bool:
        """A path on this daemon: browsers read "//host" and "/\\host" as another site."""
        return path.startswith("/") and not path.startswith(("//", "/\\")) and "\\" not in path

    async def form_of(request: Request) -> dict[str, str]:
        # URL-encoded forms only (the page sends nothing else): no multipart parser needed.
        pairs = parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
        return dict(pairs)

    async def by_of(request: Request) -> str:
        who = (await form_of(request)).get("by", "").strip()
        return who or "status page"

    async def ack(request: Request) -> Response:
        incident_id = str(request.path_params["incident"])
        by = await by_of(request)
        return await act(
            request, lambda c, at: c.acknowledge(incident_id, by, at), f"/incidents/{incident_id}"
        )

    async def resolve(request: Request) -> Response:
        incident_id = str(request.path_params["incident"])
        by = await by_of(request)
        return await act(request, lambda c, at: c.resolve(incident_id, by, at), f"/incidents/{incident_id}")

    async def retry(request: Request) -> Response:
        raw = str(request.path_params["delivery"])
        back = (await form_of(request)).get("back") or "/incidents"
        if not raw.isdigit() or not local(back) or not back.startswith("/incidents"):
            return respond(request, layout.not_found("A delivery id is a number."), 400)
        return await act(request, lambda c, at: c.retry(int(raw), at), back)

    async def login(request: Request) -> Response:
        if request.method == "GET":
            if auth.token is None:
                return RedirectResponse("/", status_code=303)
            return login_page(request)
        form = await form_of(request)
        given = form.get("token", "")
        back = form.get("next") or "/"
        if not local(back):
            back = "/"
        if auth.token is None or not auth.matches(given.strip()):
            return respond(request, layout.login(back, "That is not the API token."))
        response = RedirectResponse(back if back != "/login" else "/", status_code=303)
        response.set_cookie(
            COOKIE, given.strip(), httponly=True, samesite="strict", secure=request.url.scheme == "https"
        )
        return response

    async def logout(request: Request) -> Response:
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    return [
        Route("/", overview),
        Route("/slos/{service}/{slo}", one_slo),
        Route("/incidents", incident_list),
        Route("/incidents/{incident}", incident_detail),
        Route("/incidents/{incident}/ack", ack, methods=["POST"]),
        Route("/incidents/{incident}/resolve", resolve, methods=["POST"]),
        Route("/deliveries/{delivery}/retry", retry, methods=["POST"]),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
