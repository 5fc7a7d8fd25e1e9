"""What an action that talks to the Kubernetes API needs: where the API is, credentials, TLS, object
names, and the API server's own words in an error.

In-cluster by default (reference integrations.md §1.1, §5): the API at ``https://kubernetes.default.svc``,
the pod's service-account CA, and the service-account token, re-read before every request because the
kubelet rotates projected tokens. Or an explicit ``api_url`` and ``token``.

``KubernetesAction`` is the base of the actions that change Kubernetes objects (Argo Rollouts, Istio):
the connection to the API, a request with a fresh token, and the API's refusals worded with the RBAC
rule that would allow the change. It must not put a token into results, reprs or logs, follow
redirects, or decide what a successful answer means for an action (each action reads its own).
"""

from __future__ import annotations

import json
import re
import ssl
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, field_validator, model_validator

from budgetguard.actions._config import ActionBase, SecretRef, UrlParts, lazy_module
from budgetguard.actions._http import HttpAction, classify, short, transport_failure
from budgetguard.core.errors import ConfigError
from budgetguard.core.ports import ActionOutcome, ActionResult

if TYPE_CHECKING:
    import httpx
else:  # imported when first used: reading a config file needs none of it (#14)
    httpx = lazy_module("httpx")

__all__ = [
    "IN_CLUSTER_URL",
    "SERVICE_ACCOUNT_DIR",
    "KubernetesAction",
    "KubernetesApiConfig",
    "bearer_token",
    "connection_failure",
    "is_label",
    "is_object_name",
    "json_object",
    "message",
    "verification",
]

IN_CLUSTER_URL = "https://kubernetes.default.svc"
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# Kubernetes names: most objects' are DNS-1123 subdomains, a namespace's a DNS-1123 label.
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_MAX_SUBDOMAIN = 253


def is_label(name: str) -> bool:
    """A DNS-1123 label: what a namespace (or a Service) may be called."""
    return _DNS1123_LABEL.fullmatch(name) is not None


def is_object_name(name: str) -> bool:
    """A DNS-1123 subdomain: what most objects (a Rollout, a VirtualService) may be called."""
    return len(name) <= _MAX_SUBDOMAIN and _DNS1123_SUBDOMAIN.fullmatch(name) is not None


class KubernetesApiConfig(ActionBase):
    """Where the Kubernetes API is and how to authenticate; in-cluster when nothing is given."""

    api_url: str | None = Field(
        default=None,
        description=f"The Kubernetes API. Unset: in-cluster, {IN_CLUSTER_URL} with the pod's service "
        "account.",
    )
    token: SecretRef | None = Field(
        default=None,
        description="A bearer token. Unset: `token_file` is read before every request, because the kubelet "
        "rotates projected service-account tokens and a copy read at start-up expires.",
    )
    token_file: Path = Field(
        default=SERVICE_ACCOUNT_DIR / "token",
        description="The service-account token used when `token` is unset.",
    )
    ca_file: Path | None = Field(
        default=None,
        description="CA bundle for the API's certificate. Unset: the service account's ca.crt in-cluster "
        "(api_url unset), the system trust store with an explicit api_url.",
    )
    verify_tls: bool = Field(default=True, description="Never turn this off outside a throwaway lab.")

    @field_validator("api_url")
    @classmethod
    def _absolute_http_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parsed = UrlParts(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError("must be an absolute http(s) URL such as https://10.0.0.1:6443")
        if parsed.userinfo or parsed.query:
            raise ValueError("must not carry credentials or a query string; use `token`")
        return url

    @model_validator(mode="after")
    def _tls_consistent(self) -> KubernetesApiConfig:
        if self.ca_file is not None and not self.verify_tls:
            raise ValueError("ca_file has no effect with verify_tls: false; drop one of them")
        return self


def bearer_token(config: KubernetesApiConfig, token: str | None, what: str) -> str | ActionResult:
    """The explicit token, else the service-account token file read now (a FAILED result without one)."""
    if token is not None:
        return token
    path = config.token_file
    try:
        found = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        return ActionResult(
            ActionOutcome.FAILED,
            f"{what}: no credentials: cannot read the service-account token {path} "
            f"({exc.strerror}); run in a pod with a mounted service account, or set `token`",
        )
    if not found:
        return ActionResult(
            ActionOutcome.FAILED, f"{what}: no credentials: the service-account token {path} is empty"
        )
    return found


def verification(what: str, config: KubernetesApiConfig) -> ssl.SSLContext | bool:
    """How to trust the API server: ``ca_file``, the service account's CA in-cluster, or the system's."""
    if not config.verify_tls:
        return False
    ca_file = config.ca_file
    if ca_file is None and config.api_url is None:
        ca_file = SERVICE_ACCOUNT_DIR / "ca.crt"
    if ca_file is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        where = "" if config.api_url else " (in-cluster default: is this running in a pod? else set api_url)"
        raise ConfigError(f"{what}: cannot load the CA bundle {ca_file}{where}: {exc}") from exc


def json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        parsed = json.loads(response.content)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def message(response: httpx.Response) -> str:
    """The API server's own words: a ``Status`` object's ``message``, else the body."""
    obj = json_object(response)
    if obj is not None and isinstance(obj.get("message"), str):
        return short(obj["message"])
    return short(response.text) or (response.reason_phrase or "")


def connection_failure(exc: httpx.HTTPError, what: str) -> ActionResult:
    if isinstance(exc, httpx.ConnectError) and "CERTIFICATE_VERIFY_FAILED" in str(exc):
        # Retrying cannot fix trust: name the setting that does.
        return ActionResult(
            ActionOutcome.FAILED, f"{what}: TLS: the API server's certificate is not trusted; set `ca_file`"
        )
    return transport_failure(exc, what)


class KubernetesAction(HttpAction):
    """An action on Kubernetes objects: the API's address, a token read per request, the API's refusals.

    ``patch_content_type`` is the patch flavour the subclass sends (merge patch, JSON patch).
    """

    patch_content_type: ClassVar[str]

    def __init__(
        self,
        name: str,
        what: str,
        config: KubernetesApiConfig,
        *,
        token: str | None,
        verify: ssl.SSLContext | bool,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        super().__init__(
            name,
            what,
            timeout=config.timeout,
            transport=transport,
            base_url=config.api_url or IN_CLUSTER_URL,
            headers={"Accept": "application/json"},
            verify=verify,
        )
        self._api = config
        self._token = token

    def _bearer_token(self) -> str | ActionResult:
        return bearer_token(self._api, self._token, self._what)

    async def _send(
        self, method: str, path: str, token: str, *, content: bytes | None = None
    ) -> httpx.Response | ActionResult:
        headers = {"Authorization": f"Bearer {token}"}
        if content is not None:
            headers["Content-Type"] = self.patch_content_type
        return await self._request(
            method, path, what=f"{self._what}: {method} {path}", content=content, headers=headers
        )

    def _transport_failure(self, exc: httpx.HTTPError, what: str) -> ActionResult:
        return connection_failure(exc, what)

    def _refusal(
        self, response: httpx.Response, verb: str, target: str, *, resource: str, namespace: str, grant: str
    ) -> ActionResult:
        """What a non-2xx answer to ``verb`` on ``target`` means, naming the RBAC rule a 403 lacks."""
        status = response.status_code
        if status == 401:
            return ActionResult(
                ActionOutcome.FAILED,
                f"{self._what}: the Kubernetes API rejected our credentials (HTTP 401) to {verb} {target}: "
                "check `token`, or the service-account token file",
                status,
            )
        if status == 403:
            return ActionResult(
                ActionOutcome.FAILED,
                f"{self._what}: RBAC forbids {verb} on {resource} in namespace {namespace} "
                f"(HTTP 403: {message(response)}); {grant}",
                status,
            )
        result = classify(response, self._what)
        return replace(
            result, detail=f"{self._what}: {verb} {target}: HTTP {status} {message(response)}".strip()
        )
