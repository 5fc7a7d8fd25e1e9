"""Fake feature-flag admin APIs, Unleash and LaunchDarkly, over real loopback HTTP.

They own the wire behaviour of the kill switches in reference integrations.md §6:

- ``UnleashFake``: ``POST /api/admin/projects/{project}/features/{feature}/environments/{env}/off`` (and
  ``/on``) with the raw token in ``Authorization`` (a ``Bearer`` prefix is refused, as before Unleash
  5.11, unless ``accept_bearer``), 200 with an empty body, an audit event only when something changed,
  ``{"id", "name", "message"}`` errors: 401 AuthenticationRequired, 404 NotFoundError for an unknown
  feature or environment, 403 when the environment needs change requests.
- ``LaunchDarklyFake``: ``PATCH /api/v2/flags/{project}/{flag}`` with the raw access token; the body is a
  semantic patch only with ``Content-Type: application/json; domain-model=launchdarkly.semanticpatch``,
  and read as a JSON Patch otherwise, so a semantic-patch body sent without it is a 400. ``turnFlagOff``
  and ``turnFlagOn`` per environment, 200 with the whole flag, ``{"code", "message"}`` errors, and
  scripted 429s carrying ``X-Ratelimit-Reset`` (epoch milliseconds) and/or ``Retry-After``.

They must not be used outside tests; both bind to 127.0.0.1 only.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from lab.fakes.kubernetes import ApiError, FakeServer, RecordedRequest, Reply, TLSFiles, json_patch

__all__ = ["LD_TOKEN", "UNLEASH_TOKEN", "AuditEvent", "LaunchDarklyFake", "UnleashFake"]

JSON = dict[str, Any]

UNLEASH_TOKEN = "*:*.0123456789abcdef0123456789abcdef"
LD_TOKEN = "api-00000000-1111-2222-3333-444444444444"
SEMANTIC_PATCH = "launchdarkly.semanticpatch"


@dataclass(frozen=True)
class AuditEvent:
    """One change a flag service recorded: which flag, where, what and the comment given."""

    project: str
    flag: str
    environment: str
    enabled: bool
    comment: str | None = None


# --- Unleash ---------------------------------------------------------------------------------------


def _unleash_error(status: int, name: str, message: str) -> Reply:
    return Reply.json(status, {"id": str(uuid.uuid4()), "name": name, "message": message})


class UnleashFake(FakeServer):
    """Unleash's admin API for turning a feature on or off in one environment."""

    def __init__(
        self,
        *,
        tokens: Collection[str] = (UNLEASH_TOKEN,),
        accept_bearer: bool = False,
        tls: TLSFiles | None = None,
    ) -> None:
        super().__init__(name="fake-unleash", tls=tls)
        self.tokens = set(tokens)
        self.accept_bearer = accept_bearer  # True: Unleash >= 5.11 strips "Bearer " on /api paths
        self._features: dict[tuple[str, str], dict[str, bool]] = {}
        self._change_requests: set[str] = set()
        self.events: list[AuditEvent] = []

    def add_feature(
        self, feature: str, *, project: str = "default", environments: Mapping[str, bool] | None = None
    ) -> None:
        with self.lock:
            self._features[(project, feature)] = dict(environments or {"production": True})

    def enabled(self, feature: str, environment: str, *, project: str = "default") -> bool:
        with self.lock:
            return self._features[(project, feature)][environment]

    def require_change_requests(self, environment: str) -> None:
        """Changes in ``environment`` need an approved change request: direct toggles get 403."""
        with self.lock:
            self._change_requests.add(environment)

    def failure(self, status: int, message: str | None) -> Reply:
        return _unleash_error(
            status, "InternalError" if status >= 500 else "Error", message or f"HTTP {status}"
        )

    def handle(self, request: RecordedRequest) -> Reply:
        token = request.headers.get("authorization", "")
        if self.accept_bearer:
            token = token.removeprefix("Bearer ")
        if token not in self.tokens:
            return _unleash_error(
                401,
                "AuthenticationRequired",
                "You must log in to use Unleash. Your request had no valid authorization header.",
            )
        parts = request.segments
        if (
            request.method != "POST"
            or len(parts) != 9
            or parts[:3] != ["api", "admin", "projects"]
            or (parts[4], parts[6]) != ("features", "environments")
            or parts[8] not in ("on", "off")
        ):
            return _unleash_error(404, "NotFoundError", "The requested resource could not be found")
        project, feature, environment, switch = parts[3], parts[5], parts[7], parts[8]
        environments = self._features.get((project, feature))
        if environments is None:
            return _unleash_error(404, "NotFoundError", f"Could not find feature with name {feature}")
        if environment not in environments:
            return _unleash_error(
                404, "NotFoundError", f"Could not find environment {environment} for feature: {feature}"
            )
        if environment in self._change_requests:
            return _unleash_error(
                403,
                "PermissionError",
                "You need permission=SKIP_CHANGE_REQUEST to perform this action"
                f" (environment {environment} requires change requests)",
            )
        wanted = switch == "on"
        if environments[environment] != wanted:  # feature-environment-store: WHERE enabled = !enabled
            environments[environment] = wanted
            self.events.append(AuditEvent(project, feature, environment, wanted))
        return Reply(200)  # res.status(200).end(): no body, no content type


# --- LaunchDarkly ----------------------------------------------------------------------------------


def _ld_error(status: int, code: str, message: str) -> Reply:
    return Reply.json(status, {"code": code, "message": message, "id": str(uuid.uuid4())})


class _Invalid(Exception):
    pass


def _media(content_type: str) -> tuple[str, dict[str, str]]:
    media, *params = (part.strip() for part in content_type.split(";"))
    parsed = {}
    for param in params:
        key, _, value = param.partition("=")
        parsed[key.strip().lower()] = value.strip().strip('"')
    return media.lower(), parsed


class LaunchDarklyFake(FakeServer):
    """LaunchDarkly's REST API v2 for updating one flag, semantic patch or JSON Patch."""

    def __init__(self, *, tokens: Collection[str] = (LD_TOKEN,), tls: TLSFiles | None = None) -> None:
        super().__init__(name="fake-launchdarkly", tls=tls)
        self.tokens = set(tokens)
        self._flags: dict[tuple[str, str], JSON] = {}
        self.audit: list[AuditEvent] = []

    def add_flag(self, project: str, key: str, *, environments: Mapping[str, bool] | None = None) -> None:
        envs = environments or {"production": True, "test": True}
        with self.lock:
            self._flags[(project, key)] = {
                "key": key,
                "name": key,
                "kind": "boolean",
                "_version": 1,
                "environments": {
                    env: {"_environmentName": env, "on": on, "version": 1} for env, on in envs.items()
                },
            }

    def flag(self, project: str, key: str) -> JSON:
        with self.lock:
            return copy.deepcopy(self._flags[(project, key)])

    def is_on(self, project: str, key: str, environment: str) -> bool:
        return bool(self.flag(project, key)["environments"][environment]["on"])

    def rate_limit_next(
        self, count: int = 1, *, reset_at_ms: int | None = None, retry_after_seconds: int | None = None
    ) -> None:
        """The next ``count`` requests get 429 with LaunchDarkly's rate-limit headers."""
        headers = {"X-Ratelimit-Route-Remaining": "0"}
        if reset_at_ms is not None:
            headers["X-Ratelimit-Reset"] = str(reset_at_ms)
        if retry_after_seconds is not None:
            headers["Retry-After"] = str(retry_after_seconds)
        self.fail_next(count, 429, message="Rate limit exceeded", headers=headers)

    def failure(self, status: int, message: str | None) -> Reply:
        code = "rate_limited" if status == 429 else "internal_server_error" if status >= 500 else "error"
        return _ld_error(status, code, message or f"HTTP {status}")

    def handle(self, request: RecordedRequest) -> Reply:
        if request.headers.get("authorization", "") not in self.tokens:  # raw token; "Bearer x" fails too
            return _ld_error(401, "unauthorized", "Invalid access token")
        parts = request.segments
        if len(parts) != 5 or parts[:3] != ["api", "v2", "flags"]:
            return _ld_error(404, "not_found", "Unknown resource")
        flag = self._flags.get((parts[3], parts[4]))
        if flag is None:
            return _ld_error(404, "not_found", "Unknown resource")
        if request.method == "GET":
            return Reply.json(200, flag)
        if request.method != "PATCH":
            return _ld_error(405, "method_not_allowed", "Method not allowed")
        try:
            body = request.json()
        except ValueError:
            return _ld_error(400, "invalid_request", "Invalid JSON body")
        media, params = _media(request.content_type)
        try:
            if media == "application/json" and params.get("domain-model") == SEMANTIC_PATCH:
                self._semantic_patch(parts[3], flag, body)
            else:
                self._json_patch(parts[3], flag, body)
        except _Invalid as exc:
            return _ld_error(400, "invalid_request", str(exc))
        return Reply.json(200, flag)

    def _semantic_patch(self, project: str, flag: JSON, body: object) -> None:
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("instructions"), list)
            or not body["instructions"]
        ):
            raise _Invalid("a semantic patch needs a non-empty list of instructions")
        environment = body.get("environmentKey")
        comment = body.get("comment") if isinstance(body.get("comment"), str) else None
        for instruction in body["instructions"]:
            kind = instruction.get("kind") if isinstance(instruction, dict) else None
            if kind not in ("turnFlagOff", "turnFlagOn"):
                raise _Invalid(f"unsupported instruction kind {kind!r}")
            if not isinstance(environment, str):
                raise _Invalid(f"environmentKey is required for {kind}")
            if environment not in flag["environments"]:
                raise _Invalid(f"unknown environment key {environment!r}")
            # "each instruction silently does nothing if the resource is already in the state you request"
            self._set(project, flag, environment, kind == "turnFlagOn", comment)

    def _json_patch(self, project: str, flag: JSON, body: object) -> None:
        comment = None
        if isinstance(body, dict) and isinstance(body.get("patch"), list):
            comment = body.get("comment") if isinstance(body.get("comment"), str) else None
            body = body["patch"]
        if not isinstance(body, list):
            raise _Invalid(
                "Invalid JSON Patch: the body must be an array of operations (or {comment, patch})"
            )
        try:
            patched = json_patch(flag, body)
        except ApiError as exc:
            raise _Invalid(f"Invalid JSON Patch: {exc.message}") from exc
        for environment, state in patched.get("environments", {}).items():
            if environment in flag["environments"]:
                self._set(project, flag, environment, bool(state.get("on")), comment)

    def _set(self, project: str, flag: JSON, environment: str, on: bool, comment: str | None) -> None:
        state = flag["environments"][environment]
        if state["on"] == on:
            return
        state["on"] = on
        state["version"] += 1
        flag["_version"] += 1
        self.audit.append(AuditEvent(project, flag["key"], environment, on, comment))
