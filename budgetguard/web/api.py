"""Route group: the read-only JSON API over the latest verdicts (its schema: docs/reference/http-api.md).

GET /api/v1/slos                   every SLO's latest evaluation and the current config problems
GET /api/v1/slos/{service}/{slo}   one SLO: latest evaluation, recent history, verdict changes
GET /api/v1/status                 this replica: whether it leads, which one does, the lease, the store
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from budgetguard.core.latest import LatestEvaluations
from budgetguard.core.policy import Evaluation
from budgetguard.core.records import format_time, to_record
from budgetguard.web._auth import Auth, error
from budgetguard.web._ports import ApiView
from budgetguard.web.limits import BadParameter, query_duration, query_int

API_VERSION = "v1"
DEFAULT_HISTORY = timedelta(hours=6)
MAX_HISTORY_ROWS = 5000
# The longest ?since= served: the default retention keeps nothing older (config.Settings.retention).
MAX_HISTORY = timedelta(days=366)


def latest(view: ApiView, slo_id: str) -> Evaluation | None:
    # The daemon hands out an index (``LatestEvaluations``): a lookup, whatever the number of SLOs.
    return LatestEvaluations.of(view.latest_evaluations()).get(slo_id)


@functools.cache
def _reads() -> ThreadPoolExecutor:
    """The API's store reads' own threads, made at the first read (two: reads are short)."""
    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="api-read")


def _history_and_changes(
    view: ApiView, slo_id: str, since: datetime, limit: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return view.history(slo_id, since, limit), view.verdict_changes(slo_id, since)


def routes(view: ApiView, auth: Auth) -> list[Route]:
    async def list_slos(request: Request) -> Response:
        if refused := auth.refusal(request):
            return refused
        return JSONResponse(
            {
                "api_version": API_VERSION,
                "generated_at": format_time(datetime.now(tz=UTC)),
                "slos": [to_record(ev) for ev in view.latest_evaluations()],
                "config_problems": list(view.config_problems()),
            }
        )

    async def one_slo(request: Request) -> Response:
        if refused := auth.refusal(request):
            return refused
        slo_id = f"{request.path_params['service']}/{request.path_params['slo']}"
        found = latest(view, slo_id)
        if found is None:
            return error(404, f"no SLO {slo_id!r} is declared (or it has not been evaluated yet)")
        try:
            window = query_duration(request.query_params, "since", "6h", most=MAX_HISTORY)
            limit = query_int(request.query_params, "limit", MAX_HISTORY_ROWS, low=1, high=MAX_HISTORY_ROWS)
        except BadParameter as exc:
            return error(400, f"{exc}; e.g. ?since=1d&limit=100", parameter=exc.parameter)
        since = datetime.now(tz=UTC) - window
        # The store is read in a worker thread: its lock may be held by a cycle's write, which the event
        # loop answering the gates must not wait for (#14). Threads of the API's own, both reads in one
        # hand-off: in the loop's default pool they queued behind a cycle's work (p99 1.7 s at 10,000).
        history, changes = await asyncio.get_running_loop().run_in_executor(
            _reads(), _history_and_changes, view, slo_id, since, limit
        )
        return JSONResponse(
            {
                "api_version": API_VERSION,
                "slo": to_record(found),
                "history": history,
                "verdict_changes": changes,
            }
        )

    async def status(request: Request) -> Response:
        if refused := auth.refusal(request):
            return refused
        return JSONResponse(
            {"api_version": API_VERSION, "generated_at": format_time(datetime.now(tz=UTC)), **view.status()}
        )

    return [
        Route("/api/v1/status", status),
        Route("/api/v1/slos", list_slos),
        Route("/api/v1/slos/{service}/{slo}", one_slo),
    ]
