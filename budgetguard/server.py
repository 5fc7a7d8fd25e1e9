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

With an API token configured, /api/ requires ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from budgetguard.durations import parse_duration
from budgetguard.policy import Evaluation
from budgetguard.records import format_time, to_record

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


class MetricsRenderer(Protocol):
    def render(self, accept: str | None = None) -> tuple[bytes, str]: ...


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def create_app(view: ApiView, metrics: MetricsRenderer, api_token: str | None = None) -> Starlette:
    def authorised(request: Request) -> bool:
        if api_token is None:
            return True
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), api_token.encode())

    def unauthorised() -> JSONResponse:
        response = _error(401, "this API needs 'Authorization: Bearer <token>' (the configured api_token)")
        response.headers["WWW-Authenticate"] = 'Bearer realm="budgetguard"'
        return response

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
        found = next((ev for ev in view.latest_evaluations() if ev.slo.id == slo_id), None)
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

    routes = [
        Route("/metrics", metrics_endpoint),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/api/v1/slos", list_slos),
        Route("/api/v1/slos/{service}/{slo}", one_slo),
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
