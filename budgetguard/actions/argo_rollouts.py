"""The Argo Rollouts action: abort a canary through the Kubernetes API, like ``kubectl argo rollouts abort``.

It owns reading the Rollout first and deciding from its state (reference integrations.md §1.1, §9.2):
an already aborted rollout, or one already fully promoted (``status.stableRS == status.currentPodHash``,
where the controller would clear an abort at once), is reported as already done without writing. Only
then does it send the abort: a JSON merge patch ``{"status":{"abort":true}}`` to the ``/status``
subresource (a main-resource patch carrying ``status`` returns 200 and is silently ignored), falling
back to the main resource only when ``/status`` is 404, as the kubectl plugin does for CRDs older than
Argo Rollouts v0.10. It also owns the in-cluster defaults: the API at ``https://kubernetes.default.svc``,
the pod's service-account CA, and the service-account token, re-read before every delivery because the
kubelet rotates projected tokens.

It must not un-abort (a resolved incident leaves the rollout to a human or the next revision), pause,
undo, retry, sleep or decide about dry runs (the outbox owns those), follow redirects, or put a token
into results, reprs or logs.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from pydantic import Field, field_validator

from budgetguard.actions._config import lazy_module
from budgetguard.actions._http import redact, render, short
from budgetguard.actions._kubernetes import (
    IN_CLUSTER_URL,
    SERVICE_ACCOUNT_DIR,
    KubernetesAction,
    KubernetesApiConfig,
    is_label,
    is_object_name,
    json_object,
    message,
    verification,
)
from budgetguard.core.ports import ActionOutcome, ActionRequest, ActionResult, EventKind

if TYPE_CHECKING:
    import httpx
else:  # imported when first used: reading a config file needs none of it (#14)
    httpx = lazy_module("httpx")

__all__ = [
    "IN_CLUSTER_URL",
    "SERVICE_ACCOUNT_DIR",
    "ArgoRolloutsAction",
    "ArgoRolloutsConfig",
    "build",
]

logger = logging.getLogger(__name__)

_ROLLOUT_PATH = "/apis/argoproj.io/v1alpha1/namespaces/{namespace}/rollouts/{name}"
# pkg/kubectl-argo-rollouts/cmd/abort/abort.go, abortPatch.
_ABORT_PATCH = b'{"status":{"abort":true}}'
_MERGE_PATCH = "application/merge-patch+json"


class ArgoRolloutsConfig(KubernetesApiConfig):
    """One Rollout to abort when an incident opens; names are templates over the incident's context."""

    type: Literal["argo-rollouts"] = "argo-rollouts"
    rollout: str = Field(
        description="The Rollout's name, e.g. `${service}` or `checkout-${canary}`; `${name}` placeholders "
        "are filled from the incident's context (service, slo, canary_label, canary, baseline, SLO labels)."
    )
    namespace: str = Field(description="The Rollout's namespace; a template like `rollout`.")

    @field_validator("rollout", "namespace")
    @classmethod
    def _not_blank(cls, template: str) -> str:
        if not template.strip():
            raise ValueError("must not be empty")
        return template


class ArgoRolloutsAction(KubernetesAction):
    """Aborts one templated Rollout per incident; see the module docstring for the protocol.

    Owns one connection pool: use it as an async context manager or call ``aclose``.
    """

    patch_content_type = _MERGE_PATCH

    def __init__(
        self,
        name: str,
        config: ArgoRolloutsConfig,
        *,
        token: str | None,
        verify: ssl.SSLContext | bool,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            name, f"argo-rollouts {name}", config, token=token, verify=verify, transport=transport
        )
        self._config = config

    def __repr__(self) -> str:
        return f"ArgoRolloutsAction(name={self.name!r}, api_url={self._config.api_url or IN_CLUSTER_URL!r})"

    async def deliver(self, request: ActionRequest) -> ActionResult:
        if request.event is EventKind.RESOLVE:
            return ActionResult(
                ActionOutcome.ALREADY_DONE,
                f"{self._what}: nothing to do on resolve: an aborted rollout is resumed by a human "
                "(kubectl argo rollouts retry) or by the next revision, never automatically",
            )
        token = self._bearer_token()
        if isinstance(token, ActionResult):
            return token
        result = await self._abort(request, token)
        result = replace(result, detail=redact(result.detail, (token,)))
        logger.debug("%s: %s %s -> %s", self._what, request.event, request.incident_id, result.outcome)
        return result

    async def _abort(self, request: ActionRequest, token: str) -> ActionResult:
        names = self._names(request)
        if isinstance(names, ActionResult):
            return names
        namespace, rollout = names
        target = f"rollout {namespace}/{rollout}"
        path = _ROLLOUT_PATH.format(namespace=quote(namespace, safe=""), name=quote(rollout, safe=""))

        got = await self._send("GET", path, token)
        if isinstance(got, ActionResult):
            return got
        if got.status_code == 404:
            return ActionResult(
                ActionOutcome.FAILED,
                f"{self._what}: no such rollout {namespace}/{rollout} (HTTP 404: {message(got)})",
                404,
            )
        if not got.is_success:
            return self._refused(got, "get", "rollouts", namespace, target)
        status = _status_of(got)
        if status is None:
            return ActionResult(
                ActionOutcome.FAILED,
                f"{self._what}: GET {target} did not answer a Rollout object: {short(got.text)}",
                got.status_code,
            )
        if status.get("abort") is True:
            since = status.get("abortedAt")
            return ActionResult(
                ActionOutcome.ALREADY_DONE,
                f"{self._what}: {target} already aborted" + (f" (since {since})" if since else ""),
                got.status_code,
            )
        stable, current = status.get("stableRS"), status.get("currentPodHash")
        if stable and stable == current:
            # rollout/controller.go:596: the controller removes an abort from a fully promoted rollout.
            return ActionResult(
                ActionOutcome.ALREADY_DONE,
                f"{self._what}: {target} already fully promoted: abort would be undone "
                f"(stableRS == currentPodHash == {stable}); roll back with an undo or a Git revert instead",
                got.status_code,
            )

        patched = await self._send("PATCH", f"{path}/status", token, content=_ABORT_PATCH)
        if isinstance(patched, ActionResult):
            return patched
        if patched.status_code == 404:
            # A CRD without the status subresource (Argo Rollouts < v0.10): kubectl's fallback.
            patched = await self._send("PATCH", path, token, content=_ABORT_PATCH)
            if isinstance(patched, ActionResult):
                return patched
            if patched.status_code == 404:
                return ActionResult(
                    ActionOutcome.FAILED,
                    f"{self._what}: no such rollout {namespace}/{rollout} (gone before the abort; "
                    f"HTTP 404: {message(patched)})",
                    404,
                )
        if not patched.is_success:
            return self._refused(patched, "patch", "rollouts/status", namespace, target)
        version = (json_object(patched) or {}).get("metadata", {}).get("resourceVersion")
        return ActionResult(
            ActionOutcome.DELIVERED,
            f"{self._what}: aborted {target}" + (f" (resourceVersion {version})" if version else ""),
            patched.status_code,
        )

    def _names(self, request: ActionRequest) -> tuple[str, str] | ActionResult:
        try:
            namespace = render(self._config.namespace, request.context)
            rollout = render(self._config.rollout, request.context)
        except KeyError as exc:
            return ActionResult(
                ActionOutcome.FAILED,
                f"{self._what}: the rollout's name uses ${{{exc.args[0]}}}, "
                "which this incident's context lacks",
            )
        if not is_label(namespace):
            return ActionResult(
                ActionOutcome.FAILED,
                f"{self._what}: {namespace!r} (from {self._config.namespace!r}) "
                "is not a Kubernetes namespace name",
            )
        if not is_object_name(rollout):
            return ActionResult(
                ActionOutcome.FAILED,
                f"{self._what}: {rollout!r} (from {self._config.rollout!r}) is not a Kubernetes object name",
            )
        return namespace, rollout

    def _refused(
        self, response: httpx.Response, verb: str, resource: str, namespace: str, target: str
    ) -> ActionResult:
        return self._refusal(
            response,
            verb,
            target,
            resource=f"{resource}.argoproj.io",
            namespace=namespace,
            grant="grant get on rollouts and patch on rollouts/status",
        )


def _status_of(response: httpx.Response) -> dict[str, Any] | None:
    obj = json_object(response)
    if obj is None or obj.get("kind", "Rollout") != "Rollout":
        return None
    status = obj.get("status")
    return status if isinstance(status, dict) else {}


def build(
    name: str, config: ArgoRolloutsConfig, *, transport: httpx.AsyncBaseTransport | None = None
) -> ArgoRolloutsAction:
    """Resolve an explicit token and load the CA (once); raises ``ConfigError`` when either is unusable.

    The service-account token file is not read here but before each delivery (it rotates).
    """
    token = config.token.resolve(f"argo-rollouts {name} token") if config.token is not None else None
    return ArgoRolloutsAction(
        name, config, token=token, verify=verification(f"argo-rollouts {name}", config), transport=transport
    )
