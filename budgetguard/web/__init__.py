"""The HTTP surface: /metrics, health, and the JSON API over the daemon's latest verdicts.

Starlette routes and uvicorn serve them inside the daemon's own event loop, so a request reads the
same in-memory state the scheduler writes, without locks or copies. The server decides nothing: it
reads an ``ApiView`` the daemon provides.

Endpoints (the JSON schema is documented in the README, "HTTP API"):

    GET /metrics                          Prometheus exposition of budgetguard's own metrics (no auth)
    GET /healthz                          200 while the process runs (no auth)
    GET /readyz                           200 after the first cycle while the store is writable, else 503
    GET /api/v1/slos                      every SLO's latest evaluation and the current config problems
    GET /api/v1/slos/{service}/{slo}      one SLO: latest evaluation, recent history, verdict changes
    POST /gates/flagger/rollback          Flagger's rollback hook: 200 = roll back now, 403 = carry on
    POST /gates/flagger/confirm-promotion Flagger's confirm-promotion hook: 200 = promote, 403 = wait
    POST /gates/flagger/confirm-rollout   Flagger's confirm-rollout hook: 200 = start, 403 frozen, 503 unknown
    GET /gates/argo/{service}/{slo}       Argo Rollouts web metric: 200 {"data": {"ok", ...}}, 503 no verdict
    GET /gates/release/{service}          the release freeze, for Argo and `budgetguard gate`: 200 {"data"}

The gates decide in ``budgetguard.core.gates``; here they only meet HTTP. With an API token configured,
/api/, /gates/argo/ and /gates/release/ require ``Authorization: Bearer <token>``; Flagger sends no
headers, so its gates also accept the token as the webhook's ``metadata.token``.

A frozen release's answer says when the budget is expected back (``budgetguard.core.freeze``), from a range
query the server sends through the ``RangeSource`` it is given: at most every few minutes per SLO, and
never holding a gate's answer more than a couple of seconds (a slow source leaves it "being estimated").
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from budgetguard.core import freeze, gates
from budgetguard.core.durations import parse_duration
from budgetguard.core.errors import BudgetguardError, ControlError
from budgetguard.core.freeze import Recovery
from budgetguard.core.gates import Gate, GuardStatus
from budgetguard.core.guard import IncidentState
from budgetguard.core.policy import Evaluation
from budgetguard.core.ports import RangeResult
from budgetguard.core.records import format_time, to_record

log = logging.getLogger(__name__)

API_VERSION = "v1"
DEFAULT_HISTORY = timedelta(hours=6)
MAX_HISTORY_ROWS = 5000


class ApiView(Protocol):
    def latest_evaluations(self) -> Sequence[Evaluation]: ...

    def config_problems(self) -> Sequence[str]: ...

    def readiness(self) -> tuple[bool, str]: ...

    def history(self, slo_id: str, since: datetime, limit: int) -> list[dict[str, Any]]: ...

    def verdict_changes(self, slo_id: str, since: datetime) -> list[dict[str, Any]]: ...

    def guard_status(self, slo_id: str) -> tuple[bool, frozenset[str]]:
        """(paused, the canary label values with an open incident) for one SLO."""
        ...


class ControlApi(Protocol):
    """Manual control of the canary guard (``budgetguard.control.Control``); raises ``ControlError``."""

    def incidents(self, state: Any = None, limit: int = 100) -> list[dict[str, Any]]: ...

    def show(self, incident_id: str) -> dict[str, Any]: ...

    def acknowledge(self, incident_id: str, by: str, at: datetime) -> dict[str, Any]: ...

    def resolve(self, incident_id: str, by: str, at: datetime) -> dict[str, Any]: ...

    def retry(self, outbox_id: int, at: datetime) -> dict[str, Any]: ...

    def pause(
        self, slo_id: str, at: datetime, *, until: datetime | None, by: str, reason: str
    ) -> dict[str, Any]: ...

    def resume(self, slo_id: str) -> bool: ...


class MetricsRenderer(Protocol):
    def render(self, accept: str | None = None) -> tuple[bytes, str]: ...


class RangeSource(Protocol):
    """Range queries, for the recovery estimate of a frozen release (``PrometheusSource`` is one)."""

    async def query_range(
        self, expr: str, start: datetime, end: datetime, step: timedelta
    ) -> RangeResult: ...


class RecoveryEstimates:
    """When each frozen SLO's budget is expected back, read from the source at most every ``ttl``.

    A gate never waits more than ``wait`` for a fresh estimate: a slow source answers "being estimated"
    and the estimate lands in the cache for the next ask (Flagger and Argo ask every interval).
    """

    def __init__(
        self, source: RangeSource | None, ttl: timedelta = timedelta(minutes=5), wait: float = 2.0
    ) -> None:
        self._source = source
        self._ttl = ttl.total_seconds()
        self._wait = wait
        self._done: dict[tuple[object, ...], tuple[float, Recovery]] = {}
        self._running: dict[tuple[object, ...], asyncio.Task[Recovery]] = {}

    async def get(self, ev: Evaluation) -> Recovery:
        if self._source is None:
            return Recovery(None, "not estimated: no metrics source to read the window's errors from")
        # A reloaded SLO with another objective, window or floor is another estimate.
        policy = ev.slo.freeze
        key = (ev.slo.id, ev.slo.objective, ev.slo.window, None if policy is None else policy.below)
        cached = self._done.get(key)
        if cached is not None and time.monotonic() - cached[0] < self._ttl:
            return cached[1]
        task = self._running.get(key)
        if task is None:
            task = asyncio.create_task(self._estimate(self._source, ev, key), name=f"recovery {ev.slo.id}")
            self._running[key] = task
        try:
            return await asyncio.wait_for(asyncio.shield(task), self._wait)
        except TimeoutError:
            return Recovery(None, "still being estimated from the metrics source; ask again shortly")

    async def _estimate(self, source: RangeSource, ev: Evaluation, key: tuple[object, ...]) -> Recovery:
        query = freeze.recovery_query(ev.slo, ev.at)
        try:
            result = await source.query_range(query.expr, query.start, query.end, query.step)
            recovery = freeze.estimate_recovery(ev, query, result.series, ev.at)
            if result.warnings or result.partial:
                note = f"{recovery.reason} (from partial data)"
                recovery = Recovery(recovery.at, note, recovery.upper_bound)
        except BudgetguardError as exc:
            log.warning("cannot estimate when %s's budget recovers: %s", ev.slo.id, exc)
            recovery = Recovery(None, f"not estimated: the metrics source failed ({exc})")
        except Exception as exc:  # the estimate is an extra: a bug in it must not fail the gate
            log.exception("estimating when %s's budget recovers failed unexpectedly", ev.slo.id)
            recovery = Recovery(None, f"not estimated: internal error ({exc!r})")
        finally:
            self._running.pop(key, None)
        self._done[key] = (time.monotonic(), recovery)
        return recovery


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


INCIDENT_STATES = ("open", "resolved", "all")


def create_app(
    view: ApiView,
    metrics: MetricsRenderer,
    api_token: str | None = None,
    control: Callable[[], ControlApi] | None = None,
    on_change: Callable[[], None] = lambda: None,
    *,
    history: RangeSource | None = None,
) -> Starlette:
    """The HTTP surface. ``control`` gives manual control (incidents, pauses); ``on_change`` runs after
    a change made through it (the daemon wakes its outbox); ``history`` answers the range queries that
    estimate when a frozen release's budget recovers."""
    recoveries = RecoveryEstimates(history)

    def token_matches(given: str) -> bool:
        return api_token is not None and hmac.compare_digest(given.encode(), api_token.encode())

    def authorised(request: Request) -> bool:
        if api_token is None:
            return True
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        return scheme.lower() == "bearer" and token_matches(given.strip())

    def unauthorised(
        message: str = "this API needs 'Authorization: Bearer <token>' (the configured api_token)",
    ) -> JSONResponse:
        response = _error(401, message)
        response.headers["WWW-Authenticate"] = 'Bearer realm="budgetguard"'
        return response

    def latest(slo_id: str) -> Evaluation | None:
        return next((ev for ev in view.latest_evaluations() if ev.slo.id == slo_id), None)

    def decide(gate: Gate, slo_id: str, canary: str | None) -> gates.GateAnswer:
        """Ask a gate about an SLO; an SLO unknown once the first cycle is done is a 404.

        Before the first cycle no SLO has an evaluation and the gate answers "no verdict yet"; the
        guard's pause and incidents are asked only about an SLO the daemon has evaluated.
        """
        found = latest(slo_id)
        if found is None and view.readiness()[0]:
            return gates.GateAnswer(
                404, {"error": f"no SLO {slo_id!r} is declared (or it has not been evaluated yet)"}
            )
        guard = GuardStatus() if found is None else GuardStatus(*view.guard_status(slo_id))
        return gate(slo_id, found, guard, canary)

    def flagger_endpoint(gate: Gate) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                hook = gates.parse_flagger_hook(await request.body())
            except ValueError as exc:
                return _error(400, str(exc))
            if not (authorised(request) or (hook.token is not None and token_matches(hook.token))):
                return unauthorised(
                    "this gate needs the configured api_token as the webhook's metadata.token "
                    "(Flagger sends no headers) or as 'Authorization: Bearer <token>'"
                )
            answer = decide(gate, hook.slo_id, hook.canary)
            if gate is gates.flagger_rollback and answer.status == gates.OK:
                log.warning(
                    "asking Flagger to roll back %s.%s (checksum %s, phase %s) for %s: %s",
                    hook.name,
                    hook.namespace,
                    hook.checksum,
                    hook.phase,
                    hook.slo_id,
                    answer.body["reason"],
                )
            return JSONResponse(answer.body, status_code=answer.status)

        return endpoint

    async def decide_release(
        service: str, labels: Mapping[str, str], canary: str | None
    ) -> gates.Release | gates.GateAnswer:
        """The release decision for a service, or the answer when there is none to make (404, 503)."""
        mine = [ev for ev in view.latest_evaluations() if ev.slo.service == service]
        if not mine:
            if view.readiness()[0]:
                return gates.GateAnswer(404, {"error": f"no SLO of service {service!r} is declared"})
            return gates.GateAnswer(
                gates.NO_VERDICT, {"error": f"no evaluation of {service}'s SLOs yet: no verdict to give"}
            )
        guards = {
            ev.slo.id: GuardStatus(*view.guard_status(ev.slo.id))
            for ev in mine
            if ev.slo.canary is not None and ev.slo.canary.shadow and canary is not None
        }
        by_id = {ev.slo.id: ev for ev in mine}
        frozen = gates.frozen_slos(service, mine, labels)
        estimates = await asyncio.gather(*(recoveries.get(by_id[slo_id]) for slo_id in frozen))
        estimated = dict(zip(frozen, estimates, strict=True))
        return gates.release(service, mine, guards, labels, canary=canary, recoveries=estimated)

    async def flagger_confirm_rollout(request: Request) -> Response:
        try:
            hook = gates.parse_flagger_release_hook(await request.body())
        except ValueError as exc:
            return _error(400, str(exc))
        if not (authorised(request) or (hook.token is not None and token_matches(hook.token))):
            return unauthorised(
                "this gate needs the configured api_token as the webhook's metadata.token "
                "(Flagger sends no headers) or as 'Authorization: Bearer <token>'"
            )
        decided = await decide_release(hook.service, hook.labels, hook.canary)
        answer = decided if isinstance(decided, gates.GateAnswer) else gates.flagger_confirm_rollout(decided)
        if answer.status == gates.NOT_NOW:
            log.info(
                "holding Flagger's rollout of %s.%s (checksum %s): %s",
                hook.name,
                hook.namespace,
                hook.checksum,
                answer.body["reason"],
            )
        return JSONResponse(answer.body, status_code=answer.status)

    async def release_gate(request: Request) -> Response:
        if not authorised(request):
            return unauthorised()
        try:
            labels = gates.caller_labels(dict(request.query_params), gates.RELEASE_RESERVED)
        except ValueError as exc:
            return _error(400, str(exc))
        canary = request.query_params.get("canary") or None
        decided = await decide_release(str(request.path_params["service"]), labels, canary)
        answer = decided if isinstance(decided, gates.GateAnswer) else gates.release_metric(decided)
        return JSONResponse(answer.body, status_code=answer.status)

    async def argo_gate(request: Request) -> Response:
        if not authorised(request):
            return unauthorised()
        slo_id = f"{request.path_params['service']}/{request.path_params['slo']}"
        answer = decide(gates.argo_metric, slo_id, request.query_params.get("canary") or None)
        return JSONResponse(answer.body, status_code=answer.status)

    async def metrics_endpoint(request: Request) -> Response:
        body, content_type = metrics.render(request.headers.get("accept"))
        return Response(body, media_type=content_type)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        ready, why = view.readiness()
        return JSONResponse({"ready": ready, "reason": why}, status_code=200 if ready else 503)

    async def list_slos(request: Request) -> Response:
        if not authorised(request):
            return unauthorised()
        return JSONResponse(
            {
                "api_version": API_VERSION,
                "generated_at": format_time(datetime.now(tz=UTC)),
                "slos": [to_record(ev) for ev in view.latest_evaluations()],
                "config_problems": list(view.config_problems()),
            }
        )

    async def one_slo(request: Request) -> Response:
        if not authorised(request):
            return unauthorised()
        slo_id = f"{request.path_params['service']}/{request.path_params['slo']}"
        found = latest(slo_id)
        if found is None:
            return _error(404, f"no SLO {slo_id!r} is declared (or it has not been evaluated yet)")
        try:
            window = parse_duration(request.query_params.get("since", "6h"))
            limit = min(int(request.query_params.get("limit", str(MAX_HISTORY_ROWS))), MAX_HISTORY_ROWS)
        except ValueError as exc:
            return _error(400, f"bad query parameter: {exc}; e.g. ?since=1d&limit=100")
        since = datetime.now(tz=UTC) - window
        return JSONResponse(
            {
                "api_version": API_VERSION,
                "slo": to_record(found),
                "history": view.history(slo_id, since, limit),
                "verdict_changes": view.verdict_changes(slo_id, since),
            }
        )

    async def controlled(
        request: Request, act: Callable[[ControlApi, dict[str, Any], datetime], Any], *, changes: bool
    ) -> Response:
        """Run one control operation: reading needs what the API needs, changing needs a token."""
        if control is None:
            return _error(404, "manual control is not available here")
        if not authorised(request):
            return unauthorised()
        if changes and api_token is None:
            return _error(
                403,
                "changing incidents or pauses over HTTP needs an api_token (anyone who reaches the port "
                "could otherwise stop the guard); set api_token, or use `budgetguard incidents` on the host",
            )
        body: dict[str, Any] = {}
        if changes:
            raw = await request.body()
            try:
                parsed = json.loads(raw) if raw.strip() else {}
            except ValueError:
                return _error(400, 'the body must be a JSON object, e.g. {"by": "alice"}')
            if not isinstance(parsed, dict):
                return _error(400, 'the body must be a JSON object, e.g. {"by": "alice"}')
            body = parsed
        try:
            result = act(control(), body, datetime.now(tz=UTC))
        except ControlError as exc:
            return _error(exc.status, str(exc))
        except ValueError as exc:
            return _error(400, str(exc))
        if changes:
            on_change()
        return JSONResponse(result)

    def by(body: dict[str, Any]) -> str:
        who = body.get("by", "api")
        if not isinstance(who, str) or not who.strip():
            raise ValueError("'by' must be a non-empty string naming who acts")
        return who.strip()

    def incident_id(request: Request) -> str:
        return str(request.path_params["incident"])

    async def list_incidents(request: Request) -> Response:
        state = request.query_params.get("state", "all")
        if state not in INCIDENT_STATES:
            return _error(400, f"state must be one of {', '.join(INCIDENT_STATES)}")

        def act(c: ControlApi, _body: dict[str, Any], _at: datetime) -> Any:
            return {"incidents": c.incidents(None if state == "all" else IncidentState(state))}

        return await controlled(request, act, changes=False)

    async def show_incident(request: Request) -> Response:
        return await controlled(request, lambda c, _b, _t: c.show(incident_id(request)), changes=False)

    async def ack_incident(request: Request) -> Response:
        return await controlled(
            request, lambda c, b, at: c.acknowledge(incident_id(request), by(b), at), changes=True
        )

    async def resolve_incident(request: Request) -> Response:
        return await controlled(
            request, lambda c, b, at: c.resolve(incident_id(request), by(b), at), changes=True
        )

    async def retry_delivery(request: Request) -> Response:
        raw = str(request.path_params["delivery"])
        if not raw.isdigit():
            return _error(400, "a delivery id is a number (see GET /api/v1/incidents/{id})")
        return await controlled(request, lambda c, _b, at: c.retry(int(raw), at), changes=True)

    async def pause_slo(request: Request) -> Response:
        slo_id = f"{request.path_params['service']}/{request.path_params['slo']}"

        def act(c: ControlApi, body: dict[str, Any], at: datetime) -> Any:
            duration = body.get("for")
            until = None if duration in (None, "") else at + parse_duration(str(duration))
            reason = body.get("reason", "")
            if not isinstance(reason, str):
                raise ValueError("'reason' must be a string")
            return c.pause(slo_id, at, until=until, by=by(body), reason=reason)

        return await controlled(request, act, changes=True)

    async def resume_slo(request: Request) -> Response:
        slo_id = f"{request.path_params['service']}/{request.path_params['slo']}"
        return await controlled(
            request, lambda c, _b, _t: {"slo_id": slo_id, "resumed": c.resume(slo_id)}, changes=True
        )

    routes = [
        Route("/metrics", metrics_endpoint),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/api/v1/slos", list_slos),
        Route("/api/v1/slos/{service}/{slo}", one_slo),
        Route("/gates/flagger/rollback", flagger_endpoint(gates.flagger_rollback), methods=["POST"]),
        Route(
            "/gates/flagger/confirm-promotion", flagger_endpoint(gates.flagger_promotion), methods=["POST"]
        ),
        Route("/gates/flagger/confirm-rollout", flagger_confirm_rollout, methods=["POST"]),
        Route("/gates/argo/{service}/{slo}", argo_gate),
        Route("/gates/release/{service}", release_gate),
        Route("/api/v1/incidents", list_incidents),
        Route("/api/v1/incidents/{incident}", show_incident),
        Route("/api/v1/incidents/{incident}/ack", ack_incident, methods=["POST"]),
        Route("/api/v1/incidents/{incident}/resolve", resolve_incident, methods=["POST"]),
        Route("/api/v1/deliveries/{delivery}/retry", retry_delivery, methods=["POST"]),
        Route("/api/v1/slos/{service}/{slo}/pause", pause_slo, methods=["POST"]),
        Route("/api/v1/slos/{service}/{slo}/resume", resume_slo, methods=["POST"]),
    ]
    return Starlette(routes=routes)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the daemon owns SIGTERM, SIGINT and SIGHUP.

    Left to itself, uvicorn swaps in its handlers while it serves and, on the way out, restores the
    previous ones and raises again any signal it caught; a SIGTERM arriving while uvicorn's handler is
    in place would kill the process instead of stopping it cleanly.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    """uvicorn in the caller's event loop, started and stopped by the daemon."""

    def __init__(self, app: Starlette, host: str, port: int) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=3,
        )
        self._server = _EmbeddedServer(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve())
        for _ in range(200):  # bounded: up to 10 s for the socket to bind
            if self._server.started or self._task.done():
                break
            await asyncio.sleep(0.05)
        if self._task.done():
            self._task.result()  # re-raises the bind error
            raise OSError("the HTTP server stopped while starting")

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=5)
            except TimeoutError:
                self._task.cancel()
