"""The Argo CD action: abort a Rollout through Argo CD's resource actions, or roll an application back.

It owns Argo CD's REST protocol (reference integrations.md §3): a JWT sent as ``Authorization: Bearer``
(Argo CD ignores tokens that are not JWT-shaped, so that is checked at build), exactly
``Content-Type: application/json`` on every request with a body (anything else is a 415), grpc-gateway
error bodies, and reading state before writing (§9.2), so a retry or a redelivery decides from what is
true now rather than from a response code:

- ``rollout-abort``: ``GET .../resource`` reads the live Rollout; an aborted or fully promoted one is
  reported as already done; otherwise ``POST .../resource/actions/v2`` (Argo CD >= 3.1; ``action_api:
  v1`` uses the deprecated query-plus-string form) runs the ``abort`` action. 200 ``{}`` is delivered.
- ``rollback``: ``GET`` the application. Auto-sync enabled is a failure: Argo CD refuses the rollback,
  and the next sync would redeploy Git's revision anyway; the fix is a Git revert, or disabling auto-sync
  first. The target is ``history_id``, or else the entry before the one that was live when the incident
  opened (``request.at``), so a retry after our own rollback finished never "rolls back" to the bad
  revision again. Already at the target, or a running operation to it, is already done; a newer
  deployment made after the incident is never rolled back over; an operation to another revision is
  retried once it finishes.

"another operation is already in progress" (400) on the rollback POST is RETRY, not ALREADY_DONE: the
400 alone cannot tell our own rollback (a lost response) from someone else's sync; the next attempt
re-reads the application and reports already done when the running operation is this rollback.

It must not disable auto-sync, terminate operations, retry, sleep or decide about dry runs (the outbox
owns those), follow redirects, or put the token into results, reprs or logs.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from pydantic import Field, field_validator, model_validator

from budgetguard.actions._config import ActionBase, SecretRef, UrlParts, lazy_module
from budgetguard.actions._http import HttpAction, classify, redact, render, short, transport_failure
from budgetguard.core.errors import ConfigError
from budgetguard.core.ports import ActionOutcome, ActionRequest, ActionResult, EventKind

if TYPE_CHECKING:
    import httpx
else:  # imported when first used: reading a config file needs none of it (#14)
    httpx = lazy_module("httpx")

__all__ = ["ArgoCDAction", "ArgoCDConfig", "build"]

logger = logging.getLogger(__name__)

_JSON = "application/json"  # exactly: "application/json; charset=utf-8" is refused (server.go)
_ROLLOUT = {"version": "v1alpha1", "group": "argoproj.io", "kind": "Rollout"}
_IN_PROGRESS = "another operation is already in progress"
_AUTO_SYNC = "auto-sync is enabled"
_NOT_IN_APP = "not found as part of application"
_K8S_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_K8S_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")

Revision = str | tuple[str, ...]


class ArgoCDConfig(ActionBase):
    """One Argo CD application to act on when an incident opens; names are templates."""

    type: Literal["argocd"] = "argocd"
    url: str = Field(description="Argo CD's API, e.g. https://argocd.example.com (with any path prefix).")
    token: SecretRef = Field(description="An account or project-role token (a JWT).")
    application: str = Field(description="The application's name; `${name}` placeholders are filled.")
    mode: Literal["rollout-abort", "rollback"] = Field(
        description="rollout-abort: run the Rollout's abort action; rollback: redeploy an earlier revision."
    )
    rollout: str | None = Field(default=None, description="rollout-abort: the Rollout's name (a template).")
    namespace: str | None = Field(default=None, description="rollout-abort: its namespace (a template).")
    action_api: Literal["v2", "v1"] = Field(
        default="v2", description="rollout-abort: v2 needs Argo CD >= 3.1; v1 is the deprecated form."
    )
    history_id: int | None = Field(
        default=None,
        description="rollback: the status.history id to deploy. Unset: the deployment before the one "
        "that was live when the incident opened.",
    )
    prune: bool = Field(default=False, description="rollback: delete resources the old revision lacks.")
    project: str | None = Field(
        default=None,
        description="The application's project; with it a missing application is a 404, not a 403.",
    )
    app_namespace: str | None = Field(
        default=None, description="For applications outside argocd's namespace."
    )
    ca_file: Path | None = Field(default=None, description="CA bundle for a private PKI.")
    verify_tls: bool = True

    @field_validator("url")
    @classmethod
    def _absolute_http_url(cls, url: str) -> str:
        parsed = UrlParts(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError("must be an absolute http(s) URL such as https://argocd.example.com")
        if parsed.userinfo or parsed.query:
            raise ValueError("must not carry credentials or a query string; use `token`")
        return url

    @model_validator(mode="after")
    def _fields_fit_the_mode(self) -> ArgoCDConfig:
        if self.mode == "rollout-abort":
            if not self.rollout or not self.namespace:
                raise ValueError("mode rollout-abort needs `rollout` and `namespace`")
            extra = sorted({"history_id", "prune"} & self.model_fields_set)
            if extra:
                raise ValueError(f"{', '.join(extra)} only apply to mode rollback")
        else:
            extra = sorted({"rollout", "namespace", "action_api"} & self.model_fields_set)
            if extra:
                raise ValueError(f"{', '.join(extra)} only apply to mode rollout-abort")
        if self.ca_file is not None and not self.verify_tls:
            raise ValueError("ca_file has no effect with verify_tls: false; drop one of them")
        return self


class ArgoCDAction(HttpAction):
    """Aborts a Rollout or rolls an application back through Argo CD; see the module docstring.

    Owns one connection pool: use it as an async context manager or call ``aclose``.
    """

    def __init__(
        self,
        name: str,
        config: ArgoCDConfig,
        *,
        token: str,
        verify: ssl.SSLContext | bool,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            name,
            f"argocd {name}",
            timeout=config.timeout,
            transport=transport,
            base_url=config.url,
            headers={"Accept": _JSON, "Authorization": f"Bearer {token}"},
            verify=verify,
        )
        self._config = config
        self._token = token

    def __repr__(self) -> str:
        return f"ArgoCDAction(name={self.name!r}, url={self._config.url!r}, mode={self._config.mode!r})"

    async def deliver(self, request: ActionRequest) -> ActionResult:
        if request.event is EventKind.RESOLVE:
            return ActionResult(
                ActionOutcome.ALREADY_DONE,
                f"{self._what}: nothing to do on resolve: an aborted rollout or a rolled-back application "
                "is moved forward by a human (retry, sync) or the next revision, never automatically",
            )
        application = self._render("application", self._config.application, request, _K8S_NAME)
        if isinstance(application, ActionResult):
            result = application
        elif self._config.mode == "rollout-abort":
            result = await self._abort(request, application)
        else:
            result = await self._rollback(request, application)
        result = replace(result, detail=redact(result.detail, (self._token,)))
        logger.debug("%s: %s %s -> %s", self._what, request.event, request.incident_id, result.outcome)
        return result

    # --- rollout-abort ---

    async def _abort(self, request: ActionRequest, application: str) -> ActionResult:
        # Both are set in this mode (ArgoCDConfig._fields_fit_the_mode).
        namespace = self._render("namespace", self._config.namespace or "", request, _K8S_LABEL)
        if isinstance(namespace, ActionResult):
            return namespace
        rollout = self._render("rollout", self._config.rollout or "", request, _K8S_NAME)
        if isinstance(rollout, ActionResult):
            return rollout
        target = f"rollout {namespace}/{rollout} of application {application}"
        resource = {"namespace": namespace, "resourceName": rollout, **_ROLLOUT}
        base = f"/api/v1/applications/{quote(application, safe='')}"

        got = await self._send("GET", f"{base}/resource", params={**resource, **self._scope()})
        if isinstance(got, ActionResult):
            return got
        if got.status_code == 400 and _NOT_IN_APP in _message(got):
            return ActionResult(ActionOutcome.FAILED, f"{self._what}: no {target}: {_message(got)}", 400)
        if not got.is_success:
            return self._refused(got, "get", application, target)
        manifest = _manifest(got)
        if manifest is None:
            return ActionResult(
                ActionOutcome.FAILED,
                f"{self._what}: GET {target} did not answer a manifest: {short(got.text)}",
                got.status_code,
            )
        status = _object(manifest.get("status"))
        if status.get("abort") is True:
            return ActionResult(ActionOutcome.ALREADY_DONE, f"{self._what}: {target} already aborted", 200)
        stable = status.get("stableRS")
        if stable and stable == status.get("currentPodHash"):
            return ActionResult(
                ActionOutcome.ALREADY_DONE,
                f"{self._what}: {target} already fully promoted: abort would be undone "
                f"(stableRS == currentPodHash == {stable}); roll back instead",
                200,
            )

        if self._config.action_api == "v2":
            body = {**resource, "action": "abort", "resourceActionParameters": [], **self._scope()}
            ran = await self._send("POST", f"{base}/resource/actions/v2", body=body)
        else:
            # v1: the body is only the action's name, as a JSON string (proto `body: "action"`).
            ran = await self._send(
                "POST", f"{base}/resource/actions", params={**resource, **self._scope()}, body="abort"
            )
        if isinstance(ran, ActionResult):
            return ran
        if ran.status_code == 404 and _json(ran) is None:
            return ActionResult(
                ActionOutcome.FAILED,
                f"{self._what}: {ran.request.url.path} is not served (HTTP 404): Argo CD before 3.1 has no "
                "resource actions v2; set action_api: v1",
                404,
            )
        if not ran.is_success:
            return self._refused(ran, "action/argoproj.io/Rollout/abort", application, target)
        return ActionResult(ActionOutcome.DELIVERED, f"{self._what}: aborted {target}", ran.status_code)

    # --- rollback ---

    async def _rollback(self, request: ActionRequest, application: str) -> ActionResult:
        base = f"/api/v1/applications/{quote(application, safe='')}"
        got = await self._send("GET", base, params=self._scope())
        if isinstance(got, ActionResult):
            return got
        if not got.is_success:
            return self._refused(got, "get", application, f"application {application}")
        app = _json(got)
        if app is None:
            return ActionResult(
                ActionOutcome.FAILED,
                f"{self._what}: GET application {application} did not answer an Application: "
                f"{short(got.text)}",
                got.status_code,
            )
        if _auto_sync(_object(app.get("spec"))):
            return self._auto_sync_refusal(application)

        history = _history(app)
        chosen = self._choose(history, request.at, application)
        if isinstance(chosen, ActionResult):
            return chosen
        wanted = _revision(chosen)
        label = f"history id {chosen['id']} (revision {_text(wanted)})"

        operation = app.get("operation")
        if isinstance(operation, dict):
            running = _revision(_object(operation.get("sync")))
            if running == wanted:
                return ActionResult(
                    ActionOutcome.ALREADY_DONE,
                    f"{self._what}: a rollback of {application} to {label} is already in progress",
                    got.status_code,
                )
            return ActionResult(
                ActionOutcome.RETRY,
                f"{self._what}: another operation (sync to {_text(running)}) is in progress on "
                f"{application}; the rollback to {label} waits for it to finish",
                got.status_code,
            )
        latest = history[-1]
        if _revision(latest) == wanted:
            return ActionResult(
                ActionOutcome.ALREADY_DONE,
                f"{self._what}: {application} already runs {_text(wanted)} (history id {latest['id']})",
                got.status_code,
            )
        deployed = _deployed_at(latest)
        if deployed is not None and deployed > _aware(request.at):
            return ActionResult(
                ActionOutcome.FAILED,
                f"{self._what}: {application} was redeployed after the incident opened (history id "
                f"{latest['id']}, revision {_text(_revision(latest))} at {latest.get('deployedAt')}); "
                "not rolling back over a newer deployment",
                got.status_code,
            )

        body: dict[str, Any] = {"id": chosen["id"], "prune": self._config.prune, "dryRun": False}
        body.update(self._scope())
        sent = await self._send("POST", f"{base}/rollback", body=body)
        if isinstance(sent, ActionResult):
            return sent
        if sent.status_code == 400 and _IN_PROGRESS in _message(sent):
            return ActionResult(
                ActionOutcome.RETRY,
                f"{self._what}: {_IN_PROGRESS} on {application}; the next attempt re-reads the application "
                "and reports done if it is this rollback",
                400,
            )
        if sent.status_code == 400 and _AUTO_SYNC in _message(sent):
            return self._auto_sync_refusal(application)
        if not sent.is_success:
            return self._refused(sent, "sync", application, f"rollback of {application} to {label}")
        return ActionResult(
            ActionOutcome.DELIVERED,
            f"{self._what}: rollback of {application} to {label} started (Argo CD syncs asynchronously)",
            sent.status_code,
        )

    def _choose(
        self, history: list[dict[str, Any]], at: datetime, application: str
    ) -> dict[str, Any] | ActionResult:
        if self._config.history_id is not None:
            found = next((h for h in history if h["id"] == self._config.history_id), None)
            if found is None:
                known = ", ".join(str(h["id"]) for h in history) or "none"
                return ActionResult(
                    ActionOutcome.FAILED,
                    f"{self._what}: {application} has no deployment with history id "
                    f"{self._config.history_id} (ids: {known})",
                )
            return found
        # The live deployment is the newest one made before the incident opened; entries after it
        # (our own finished rollback among them) must not move the target on a retry.
        moment = _aware(at)
        before = [h for h in history if (_deployed_at(h) or moment) <= moment]
        if len(before) < 2:
            return ActionResult(
                ActionOutcome.FAILED,
                f"{self._what}: nothing to roll {application} back to: {len(before)} deployment(s) in its "
                "history before the incident",
            )
        return before[-2]

    def _auto_sync_refusal(self, application: str) -> ActionResult:
        return ActionResult(
            ActionOutcome.FAILED,
            f"{self._what}: auto-sync is enabled on {application}: Argo CD refuses a rollback then "
            "('rollback cannot be initiated when auto-sync is enabled') and the next sync would redeploy "
            "Git's revision anyway; revert the change in Git, or disable spec.syncPolicy.automated first",
        )

    # --- plumbing ---

    def _scope(self) -> dict[str, str]:
        scope = {}
        if self._config.app_namespace:
            scope["appNamespace"] = self._config.app_namespace
        if self._config.project:
            scope["project"] = self._config.project
        return scope

    def _render(
        self, field_name: str, template: str, request: ActionRequest, pattern: re.Pattern[str]
    ) -> str | ActionResult:
        try:
            value = render(template, request.context)
        except KeyError as exc:
            return ActionResult(
                ActionOutcome.FAILED,
                f"{self._what}: {field_name} uses ${{{exc.args[0]}}}, which this incident's context lacks",
            )
        if not pattern.fullmatch(value):
            return ActionResult(
                ActionOutcome.FAILED,
                f"{self._what}: {value!r} (the {field_name}, from {template!r}) is not a Kubernetes name",
            )
        return value

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: object = None,
    ) -> httpx.Response | ActionResult:
        what = f"{self._what}: {method} {path}"
        content = None if body is None else json.dumps(body).encode()
        # Every request with a body carries exactly application/json (DELETE too, were one sent).
        headers = {} if method == "GET" else {"Content-Type": _JSON}
        return await self._request(method, path, what=what, params=params, content=content, headers=headers)

    def _transport_failure(self, exc: httpx.HTTPError, what: str) -> ActionResult:
        if isinstance(exc, httpx.ConnectError) and "CERTIFICATE_VERIFY_FAILED" in str(exc):
            # Retrying cannot fix trust: name the setting that does.
            return ActionResult(
                ActionOutcome.FAILED, f"{what}: TLS: Argo CD's certificate is not trusted; set `ca_file`"
            )
        return transport_failure(exc, what)

    def _refused(self, response: httpx.Response, rbac: str, application: str, target: str) -> ActionResult:
        status, message = response.status_code, _message(response)
        if status == 401:
            return ActionResult(
                ActionOutcome.FAILED,
                f"{self._what}: Argo CD rejected our credentials (HTTP 401: {message}); "
                "set `token` to a valid account or project-role token",
                status,
            )
        if status == 403:
            scope = (
                ""
                if self._config.project
                else " (or it does not exist: without `project`, Argo CD answers 403 for a missing one)"
            )
            return ActionResult(
                ActionOutcome.FAILED,
                f"{self._what}: permission denied for applications, {rbac} on {application}{scope}: "
                f"{message}",
                status,
            )
        if status == 404:
            return ActionResult(
                ActionOutcome.FAILED, f"{self._what}: no {target} (HTTP 404: {message})", status
            )
        result = classify(response, self._what)
        return replace(result, detail=f"{self._what}: {target}: HTTP {status} {message}".strip())


def _json(response: httpx.Response) -> dict[str, Any] | None:
    try:
        parsed = json.loads(response.content)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _object(value: object) -> dict[str, Any]:
    """A JSON object field, or an empty one when it is missing or not an object."""
    return value if isinstance(value, dict) else {}


def _message(response: httpx.Response) -> str:
    """grpc-gateway's ``message`` (``{"error", "code", "message"}``), else the body text."""
    body = _json(response)
    if body is not None and isinstance(body.get("message"), str):
        return short(body["message"])
    return short(response.text) or (response.reason_phrase or "")


def _manifest(response: httpx.Response) -> dict[str, Any] | None:
    body = _json(response)
    if body is None or not isinstance(body.get("manifest"), str):
        return None
    try:
        manifest = json.loads(body["manifest"])
    except ValueError:
        return None
    return manifest if isinstance(manifest, dict) else None


def _auto_sync(spec: Mapping[str, Any]) -> bool:
    policy = spec.get("syncPolicy")
    automated = policy.get("automated") if isinstance(policy, dict) else None
    # Argo CD 3.x may carry `enabled: false` inside a present `automated` block.
    return isinstance(automated, dict) and automated.get("enabled", True) is not False


def _history(app: Mapping[str, Any]) -> list[dict[str, Any]]:
    status = app.get("status")
    raw = status.get("history") if isinstance(status, dict) else None
    entries = [h for h in raw or [] if isinstance(h, dict) and isinstance(h.get("id"), int)]
    return sorted(entries, key=lambda h: int(h["id"]))


def _revision(entry: Mapping[str, Any]) -> Revision:
    """``revision``, or ``revisions`` for a multi-source application."""
    revisions = entry.get("revisions")
    if isinstance(revisions, list) and revisions:
        return tuple(str(r) for r in revisions)
    return str(entry.get("revision") or "")


def _text(revision: Revision) -> str:
    return revision if isinstance(revision, str) else ",".join(revision)


def _deployed_at(entry: Mapping[str, Any]) -> datetime | None:
    raw = entry.get("deployedAt")
    if not isinstance(raw, str):
        return None
    try:
        return _aware(datetime.fromisoformat(raw.replace("Z", "+00:00")))
    except ValueError:
        return None


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _verification(name: str, config: ArgoCDConfig) -> ssl.SSLContext | bool:
    if not config.verify_tls:
        return False
    if config.ca_file is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(config.ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"argocd {name}: cannot load the CA bundle {config.ca_file}: {exc}") from exc


def build(
    name: str, config: ArgoCDConfig, *, transport: httpx.AsyncBaseTransport | None = None
) -> ArgoCDAction:
    """Resolve the token and load the CA (once); raises ``ConfigError`` when either is unusable."""
    token = config.token.resolve(f"argocd {name} token")
    if len(token.split(".")) != 3:
        # util/jwt/jwt.go: a bearer token that does not look like a JWT is ignored (then 401).
        raise ConfigError(
            f"argocd {name}: the token is not a JWT (header.payload.signature); use an account or "
            "project-role token (argocd account generate-token)"
        )
    return ArgoCDAction(name, config, token=token, verify=_verification(name, config), transport=transport)
