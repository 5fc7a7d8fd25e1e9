"""Route group: manual control of the canary guard (incidents, deliveries, pauses) over HTTP.

    GET  /api/v1/incidents                      incidents (?state=open|resolved|all)
    GET  /api/v1/incidents/{id}                 one incident and its deliveries
    POST /api/v1/incidents/{id}/ack             acknowledge     {"by": "alice"}
    POST /api/v1/incidents/{id}/resolve         resolve by hand {"by": "alice"}
    POST /api/v1/deliveries/{id}/retry          retry a failed delivery
    POST /api/v1/slos/{service}/{slo}/pause     pause the guard {"by", "for", "reason"}
    POST /api/v1/slos/{service}/{slo}/resume    resume it
    GET  /api/v1/pauses                         the pauses in force

Reading needs what the JSON API needs; a change also needs an api_token to be configured at all (anyone
who reaches the port could otherwise stop the guard). The rules are ``budgetguard.control``'s, shared
with the command line.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from budgetguard.core.errors import ControlError
from budgetguard.core.guard import IncidentState
from budgetguard.web._auth import Auth, error
from budgetguard.web._ports import ControlApi
from budgetguard.web.limits import BadParameter, body_duration, json_object

INCIDENT_STATES = ("open", "resolved", "all")
BODY_EXAMPLE = '{"by": "alice"}'
# The longest pause: a year. A guard paused longer is off, which `resume` says more honestly.
MAX_PAUSE = timedelta(days=366)

Act = Callable[[ControlApi, dict[str, Any], datetime], Any]


def _by(body: dict[str, Any]) -> str:
    who = body.get("by", "api")
    if not isinstance(who, str) or not who.strip():
        raise ValueError("'by' must be a non-empty string naming who acts")
    return who.strip()


def _incident_id(request: Request) -> str:
    return str(request.path_params["incident"])


def _slo_id(request: Request) -> str:
    return f"{request.path_params['service']}/{request.path_params['slo']}"


def routes(
    auth: Auth, control: Callable[[], ControlApi] | None, on_change: Callable[[], None]
) -> list[Route]:
    """``control`` gives manual control (None: not available here); ``on_change`` runs after a change
    made through it (the daemon wakes its outbox)."""

    async def controlled(request: Request, act: Act, *, changes: bool) -> Response:
        """Run one control operation: reading needs what the API needs, changing needs a token."""
        if control is None:
            return error(404, "manual control is not available here")
        if refused := auth.refusal(request):
            return refused
        if changes and auth.token is None:
            return error(
                403,
                "changing incidents or pauses over HTTP needs an api_token (anyone who reaches the port "
                "could otherwise stop the guard); set api_token, or use `budgetguard incidents` on the host",
            )
        try:
            body = json_object(await request.body(), BODY_EXAMPLE) if changes else {}
            result = act(control(), body, datetime.now(tz=UTC))
        except ControlError as exc:
            return error(exc.status, str(exc))
        except BadParameter as exc:
            return error(400, str(exc), parameter=exc.parameter)
        except ValueError as exc:
            return error(400, str(exc))
        if changes:
            on_change()
        return JSONResponse(result)

    async def list_incidents(request: Request) -> Response:
        state = request.query_params.get("state", "all")
        if state not in INCIDENT_STATES:
            return error(400, f"state must be one of {', '.join(INCIDENT_STATES)}")

        def act(c: ControlApi, _body: dict[str, Any], _at: datetime) -> Any:
            return {"incidents": c.incidents(None if state == "all" else IncidentState(state))}

        return await controlled(request, act, changes=False)

    async def show_incident(request: Request) -> Response:
        return await controlled(request, lambda c, _b, _t: c.show(_incident_id(request)), changes=False)

    async def ack_incident(request: Request) -> Response:
        return await controlled(
            request, lambda c, b, at: c.acknowledge(_incident_id(request), _by(b), at), changes=True
        )

    async def resolve_incident(request: Request) -> Response:
        return await controlled(
            request, lambda c, b, at: c.resolve(_incident_id(request), _by(b), at), changes=True
        )

    async def retry_delivery(request: Request) -> Response:
        raw = str(request.path_params["delivery"])
        if not raw.isdigit():
            return error(400, "a delivery id is a number (see GET /api/v1/incidents/{id})")
        return await controlled(request, lambda c, _b, at: c.retry(int(raw), at), changes=True)

    async def pause_slo(request: Request) -> Response:
        slo_id = _slo_id(request)

        def act(c: ControlApi, body: dict[str, Any], at: datetime) -> Any:
            duration = body_duration(body, "for", most=MAX_PAUSE)
            until = None if duration is None else at + duration
            reason = body.get("reason", "")
            if not isinstance(reason, str):
                raise ValueError("'reason' must be a string")
            return c.pause(slo_id, at, until=until, by=_by(body), reason=reason)

        return await controlled(request, act, changes=True)

    async def resume_slo(request: Request) -> Response:
        slo_id = _slo_id(request)
        return await controlled(
            request, lambda c, _b, _t: {"slo_id": slo_id, "resumed": c.resume(slo_id)}, changes=True
        )

    async def list_pauses(request: Request) -> Response:
        return await controlled(request, lambda c, _b, at: {"pauses": c.pauses(at)}, changes=False)

    return [
        Route("/api/v1/pauses", list_pauses),
        Route("/api/v1/incidents", list_incidents),
        Route("/api/v1/incidents/{incident}", show_incident),
        Route("/api/v1/incidents/{incident}/ack", ack_incident, methods=["POST"]),
        Route("/api/v1/incidents/{incident}/resolve", resolve_incident, methods=["POST"]),
        Route("/api/v1/deliveries/{delivery}/retry", retry_delivery, methods=["POST"]),
        Route("/api/v1/slos/{service}/{slo}/pause", pause_slo, methods=["POST"]),
        Route("/api/v1/slos/{service}/{slo}/resume", resume_slo, methods=["POST"]),
    ]
