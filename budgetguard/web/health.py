"""Route group: /metrics, /healthz and /readyz, for Prometheus and the orchestrator. No auth.

GET /metrics   Prometheus exposition of budgetguard's own metrics
GET /healthz   200 while the process runs
GET /readyz    200 after the first cycle while a real write to the store commits, else 503 saying why
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from budgetguard.web._ports import ApiView, MetricsRenderer, PreparedExposition


def routes(view: ApiView, metrics: MetricsRenderer | PreparedExposition) -> list[Route]:
    async def metrics_endpoint(request: Request) -> Response:
        accept = request.headers.get("accept")
        if isinstance(metrics, PreparedExposition):  # the daemon's: ready bytes, gzip when asked (#14)
            body, content_type, encoding = await metrics.serve(accept, request.headers.get("accept-encoding"))
            headers = {"Vary": "Accept-Encoding"}
            if encoding is not None:
                headers["Content-Encoding"] = encoding
            return Response(body, media_type=content_type, headers=headers)
        body, content_type = metrics.render(accept)
        return Response(body, media_type=content_type)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        ready, why = view.readiness()
        return JSONResponse({"ready": ready, "reason": why}, status_code=200 if ready else 503)

    return [
        Route("/metrics", metrics_endpoint),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
    ]
