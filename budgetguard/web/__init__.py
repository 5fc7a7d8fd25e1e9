"""The HTTP surface: /metrics, health, the JSON API, manual control and the pull gates.

Starlette routes and uvicorn serve them inside the daemon's own event loop, so a request reads the
same in-memory state the scheduler writes, without locks or copies. The web layer decides nothing: it
reads an ``ApiView`` the daemon provides (``budgetguard.readmodel``) and asks ``budgetguard.core.gates``.

``create_app`` composes the route groups, each in its own module with its endpoint table:
``health`` (/metrics, /healthz, /readyz, no auth), ``api`` (the read-only JSON API), ``control``
(incidents and pauses), ``gates`` (Flagger, Argo Rollouts, the release freeze) and ``status`` (the
status page for people at /, a package of its own). ``_auth`` is the one
auth helper: with an API token configured, /api/ and the gates require ``Authorization: Bearer
<token>``; Flagger sends no headers, so its gates also accept the token as the webhook's
``metadata.token``. ``limits`` bounds every request: a body over ``max_request_body`` is refused with
413 before it is read (401 first where only a header can carry the token), and a parameter or body
the routes cannot use is a 400 that names it.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.applications import Starlette
from starlette.middleware import Middleware

from budgetguard.web import api, gates, health, status
from budgetguard.web import control as manual
from budgetguard.web._auth import Auth
from budgetguard.web._ports import ApiView, ControlApi, MetricsRenderer, PreparedExposition, RangeSource
from budgetguard.web._recovery import RecoveryEstimates
from budgetguard.web._server import HttpServer
from budgetguard.web.limits import DEFAULT_MAX_BODY, BodyLimit

__all__ = [
    "ApiView",
    "ControlApi",
    "HttpServer",
    "MetricsRenderer",
    "PreparedExposition",
    "RangeSource",
    "RecoveryEstimates",
    "create_app",
]


def create_app(
    view: ApiView,
    metrics: MetricsRenderer | PreparedExposition,
    api_token: str | None = None,
    control: Callable[[], ControlApi] | None = None,
    on_change: Callable[[], None] = lambda: None,
    *,
    history: RangeSource | None = None,
    max_body: int = DEFAULT_MAX_BODY,
) -> Starlette:
    """The HTTP surface. ``control`` gives manual control (incidents, pauses); ``on_change`` runs after
    a change made through it (the daemon wakes its outbox); ``history`` answers the range queries that
    estimate when a frozen release's budget recovers; ``max_body`` bounds request bodies (bytes)."""
    auth = Auth(api_token)
    recoveries = RecoveryEstimates(history)
    return Starlette(
        routes=[
            *health.routes(view, metrics),
            *api.routes(view, auth),
            *gates.routes(view, auth, recoveries),
            *manual.routes(auth, control, on_change),
            *status.routes(
                view, auth, control=control, recoveries=recoveries, source=history, on_change=on_change
            ),
        ],
        middleware=[Middleware(BodyLimit, max_bytes=max_body, refuse_early=auth.refusal_before_body)],
    )
