"""Route group: the pull gates Flagger, Argo Rollouts and `budgetguard gate` ask before and during a release.

    POST /gates/flagger/rollback          Flagger's rollback hook: 200 = roll back now, 403 = carry on
    POST /gates/flagger/confirm-promotion Flagger's confirm-promotion hook: 200 = promote, 403 = wait
    POST /gates/flagger/confirm-rollout   Flagger's confirm-rollout hook: 200 = start, 403 frozen, 503 unknown
    GET /gates/argo/{service}/{slo}       Argo Rollouts web metric: 200 {"data": {"ok", ...}}, 503 no verdict
    GET /gates/release/{service}          the release freeze, for Argo and `budgetguard gate`: 200 {"data"}

The gates decide in ``budgetguard.core.gates``; here they only meet HTTP. A frozen release's answer
says when the budget is expected back (``RecoveryEstimates``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from budgetguard.core import gates
from budgetguard.core.gates import Gate, GuardStatus
from budgetguard.core.latest import LatestEvaluations
from budgetguard.web._auth import Auth, error
from budgetguard.web._ports import ApiView
from budgetguard.web._recovery import RecoveryEstimates
from budgetguard.web.api import latest

log = logging.getLogger("budgetguard.web")


def routes(view: ApiView, auth: Auth, recoveries: RecoveryEstimates) -> list[Route]:
    def decide(gate: Gate, slo_id: str, canary: str | None) -> gates.GateAnswer:
        """Ask a gate about an SLO; an SLO unknown once the first cycle is done is a 404.

        Before the first cycle no SLO has an evaluation and the gate answers "no verdict yet"; the
        guard's pause and incidents are asked only about an SLO the daemon has evaluated.
        """
        found = latest(view, slo_id)
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
                return error(400, str(exc))
            if refused := auth.refusal(request, flagger=True, metadata_token=hook.token):
                return refused
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
        mine = LatestEvaluations.of(view.latest_evaluations()).of_service(service)
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
            return error(400, str(exc))
        if refused := auth.refusal(request, flagger=True, metadata_token=hook.token):
            return refused
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
        if refused := auth.refusal(request):
            return refused
        try:
            labels = gates.caller_labels(dict(request.query_params), gates.RELEASE_RESERVED)
        except ValueError as exc:
            return error(400, str(exc))
        canary = request.query_params.get("canary") or None
        decided = await decide_release(str(request.path_params["service"]), labels, canary)
        answer = decided if isinstance(decided, gates.GateAnswer) else gates.release_metric(decided)
        return JSONResponse(answer.body, status_code=answer.status)

    async def argo_gate(request: Request) -> Response:
        if refused := auth.refusal(request):
            return refused
        slo_id = f"{request.path_params['service']}/{request.path_params['slo']}"
        answer = decide(gates.argo_metric, slo_id, request.query_params.get("canary") or None)
        return JSONResponse(answer.body, status_code=answer.status)

    return [
        Route("/gates/flagger/rollback", flagger_endpoint(gates.flagger_rollback), methods=["POST"]),
        Route(
            "/gates/flagger/confirm-promotion", flagger_endpoint(gates.flagger_promotion), methods=["POST"]
        ),
        Route("/gates/flagger/confirm-rollout", flagger_confirm_rollout, methods=["POST"]),
        Route("/gates/argo/{service}/{slo}", argo_gate),
        Route("/gates/release/{service}", release_gate),
    ]
