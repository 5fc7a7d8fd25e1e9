"""Feature-flag kill switches: turn a flag off in one environment of Unleash or LaunchDarkly.

It owns the two admin APIs' wire details (reference integrations.md §6, §9.5):

- Unleash: ``POST /api/admin/projects/{project}/features/{feature}/environments/{env}/off`` without a
  body, the token **raw** in ``Authorization`` (Unleash before 5.11 refuses ``Bearer``), 200 with an
  empty body; a 404 means an unknown feature or environment, a 403 also change requests being required.
- LaunchDarkly: ``PATCH /api/v2/flags/{project}/{flag}`` as a semantic patch (``turnFlagOff`` in one
  environment, with the incident in the audit comment), which needs
  ``Content-Type: application/json; domain-model=launchdarkly.semanticpatch`` (without it LaunchDarkly
  reads the body as a JSON Patch and answers 400), the access token raw, the API version pinned, and
  429's wait read from ``X-Ratelimit-Reset`` (epoch milliseconds) or ``Retry-After``.

Both switches are idempotent (turning off a flag that is off is a 200 and changes nothing), so a retry
or a redelivery is safe. Resolving an incident turns nothing back on: a human does, after looking.

It must not retry, sleep or decide about dry runs (the outbox owns those), turn flags on, follow
redirects, or put a token into results, reprs or logs.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import quote

from pydantic import AfterValidator, Field

from budgetguard.actions._config import ActionBase, SecretRef, UrlParts, lazy_module
from budgetguard.actions._http import (
    HttpAction,
    classify,
    redact,
    render,
    retry_after,
    short,
)
from budgetguard.core.ports import ActionOutcome, ActionRequest, ActionResult, EventKind

if TYPE_CHECKING:
    import httpx
else:  # imported when first used: reading a config file needs none of it (#14)
    httpx = lazy_module("httpx")

__all__ = [
    "LaunchDarklyAction",
    "LaunchDarklyConfig",
    "UnleashAction",
    "UnleashConfig",
    "build_launchdarkly",
    "build_unleash",
]

logger = logging.getLogger(__name__)

LAUNCHDARKLY_URL = "https://app.launchdarkly.com"
_SEMANTIC_PATCH = "application/json; domain-model=launchdarkly.semanticpatch"
_LD_API_VERSION = "20220603"  # pinned per request, as LaunchDarkly recommends (reference §6.2)
# Unleash names are URL-friendly and LaunchDarkly keys are [A-Za-z0-9._-]; anything else is refused
# rather than sent, so a context value can never reach another path.
_KEY = re.compile(r"[A-Za-z0-9._~-]+")
_RESOLVE_DETAIL = "nothing to do on resolve: flags are turned back on by a human"


def _absolute_http_url(url: str) -> str:
    parsed = UrlParts(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError("must be an absolute http(s) URL such as https://unleash.example.com")
    if parsed.userinfo or parsed.query:
        raise ValueError("must not carry credentials or a query string; use `token`")
    return url


HttpURL = Annotated[str, AfterValidator(_absolute_http_url)]


class UnleashConfig(ActionBase):
    """An Unleash feature to turn off in one environment when an incident opens."""

    type: Literal["unleash"] = "unleash"
    url: HttpURL = Field(
        description="Unleash's base URL, with any path prefix (https://unleash.example.com)."
    )
    token: SecretRef = Field(description="An admin API token or a personal access token, sent raw.")
    project: str = Field(default="default", description="The feature's project.")
    feature: str = Field(
        description="The feature's name; `${name}` placeholders are filled from the context."
    )
    environment: str = Field(description="The environment to turn the feature off in, e.g. production.")


class LaunchDarklyConfig(ActionBase):
    """A LaunchDarkly flag to turn off in one environment when an incident opens."""

    type: Literal["launchdarkly"] = "launchdarkly"
    url: HttpURL = Field(default=LAUNCHDARKLY_URL, description="The REST API (federal/EU instances differ).")
    token: SecretRef = Field(description="A personal or service access token (api-...), sent raw.")
    project_key: str
    flag_key: str = Field(description="The flag's key; `${name}` placeholders are filled from the context.")
    environment_key: str = Field(description="The environment to turn the flag off in, e.g. production.")


def _now() -> datetime:
    return datetime.now(tz=UTC)


class _FlagAction(HttpAction):
    """What both switches share: one client with the raw token, bounded sends, no leaked token."""

    kind = "flags"

    def __init__(
        self,
        name: str,
        url: str,
        *,
        token: str,
        timeout: timedelta,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        super().__init__(
            name,
            f"{self.kind} {name}",
            timeout=timeout,
            transport=transport,
            base_url=url,
            headers={"Accept": "application/json", "Authorization": token},
        )
        self._token = token

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    async def deliver(self, request: ActionRequest) -> ActionResult:
        if request.event is EventKind.RESOLVE:
            return ActionResult(ActionOutcome.ALREADY_DONE, f"{self._what}: {_RESOLVE_DETAIL}")
        result = await self._turn_off(request)
        result = replace(result, detail=redact(result.detail, (self._token,)))
        logger.debug("%s: %s %s -> %s", self._what, request.event, request.incident_id, result.outcome)
        return result

    async def _turn_off(self, request: ActionRequest) -> ActionResult:
        raise NotImplementedError

    def _key(self, field_name: str, template: str, request: ActionRequest) -> str | ActionResult:
        try:
            value = render(template, request.context)
        except KeyError as exc:
            return ActionResult(
                ActionOutcome.FAILED,
                f"{self._what}: {field_name} uses ${{{exc.args[0]}}}, which this incident's context lacks",
            )
        if not _KEY.fullmatch(value) or value in (".", ".."):
            return ActionResult(
                ActionOutcome.FAILED,
                f"{self._what}: {value!r} (the {field_name}, from {template!r}) is not a valid key",
            )
        return value

    async def _send(
        self, method: str, path: str, *, content: bytes | None = None, headers: dict[str, str] | None = None
    ) -> httpx.Response | ActionResult:
        return await self._request(
            method, path, what=f"{self._what}: {method} {path}", content=content, headers=headers
        )

    def _refused(self, response: httpx.Response, target: str, forbidden_hint: str) -> ActionResult:
        status, message = response.status_code, _message(response)
        if status == 401:
            return ActionResult(
                ActionOutcome.FAILED,
                f"{self._what}: our credentials were rejected (HTTP 401: {message}); check `token` "
                "(sent raw in Authorization, without Bearer)",
                status,
            )
        if status == 403:
            return ActionResult(
                ActionOutcome.FAILED,
                f"{self._what}: forbidden to change {target} ({message}); {forbidden_hint}",
                status,
            )
        if status == 404:
            return ActionResult(
                ActionOutcome.FAILED, f"{self._what}: no {target} (HTTP 404: {message})", status
            )
        result = classify(response, self._what)
        return replace(result, detail=f"{self._what}: {target}: HTTP {status} {message}".strip())


class UnleashAction(_FlagAction):
    """Turns one Unleash feature off in one environment; see the module docstring."""

    kind = "unleash"

    def __init__(
        self,
        name: str,
        config: UnleashConfig,
        *,
        token: str,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(name, config.url, token=token, timeout=config.timeout, transport=transport)
        self._config = config

    async def _turn_off(self, request: ActionRequest) -> ActionResult:
        feature = self._key("feature", self._config.feature, request)
        if isinstance(feature, ActionResult):
            return feature
        project, environment = self._config.project, self._config.environment
        target = f"feature {feature} in environment {environment} (project {project})"
        path = (
            f"/api/admin/projects/{quote(project, safe='')}/features/{quote(feature, safe='')}"
            f"/environments/{quote(environment, safe='')}/off"
        )
        response = await self._send("POST", path)
        if isinstance(response, ActionResult):
            return response
        if response.is_success:
            return ActionResult(
                ActionOutcome.DELIVERED, f"{self._what}: turned off {target}", response.status_code
            )
        return self._refused(
            response,
            target,
            "the token needs UPDATE_FEATURE_ENVIRONMENT, and environments with change requests refuse "
            "direct changes",
        )


class LaunchDarklyAction(_FlagAction):
    """Turns one LaunchDarkly flag off in one environment; see the module docstring."""

    kind = "launchdarkly"

    def __init__(
        self,
        name: str,
        config: LaunchDarklyConfig,
        *,
        token: str,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        super().__init__(name, config.url, token=token, timeout=config.timeout, transport=transport)
        self._config = config
        self._clock = clock

    async def _turn_off(self, request: ActionRequest) -> ActionResult:
        flag = self._key("flag_key", self._config.flag_key, request)
        if isinstance(flag, ActionResult):
            return flag
        project, environment = self._config.project_key, self._config.environment_key
        target = f"flag {flag} in environment {environment} (project {project})"
        body = {
            "environmentKey": environment,
            "comment": short(f"budgetguard incident {request.incident_id}: {request.reason}"),
            "instructions": [{"kind": "turnFlagOff"}],
        }
        response = await self._send(
            "PATCH",
            f"/api/v2/flags/{quote(project, safe='')}/{quote(flag, safe='')}",
            content=json.dumps(body).encode(),
            headers={"Content-Type": _SEMANTIC_PATCH, "LD-API-Version": _LD_API_VERSION},
        )
        if isinstance(response, ActionResult):
            return response
        if response.status_code == 429:
            return ActionResult(
                ActionOutcome.RETRY,
                f"{self._what}: rate limited (HTTP 429: {_message(response)})",
                429,
                self._rate_limit_wait(response),
            )
        if response.status_code == 405:
            return ActionResult(
                ActionOutcome.FAILED,
                f"{self._what}: {environment} requires approvals for {flag} "
                f"(HTTP 405: {_message(response)}); budgetguard does not file approval requests",
                405,
            )
        if not response.is_success:
            return self._refused(response, target, "the token's role needs updateOn for this flag")
        state = (_json(response) or {}).get("environments", {}).get(environment, {})
        if isinstance(state, dict) and state.get("on") is True:
            return ActionResult(
                ActionOutcome.RETRY,
                f"{self._what}: LaunchDarkly answered 200 but {target} is still on",
                response.status_code,
            )
        return ActionResult(
            ActionOutcome.DELIVERED, f"{self._what}: turned off {target}", response.status_code
        )

    def _rate_limit_wait(self, response: httpx.Response) -> timedelta | None:
        """The later of ``X-Ratelimit-Reset`` (epoch milliseconds) and ``Retry-After`` (IP limits)."""
        now = self._clock()
        waits = [wait for wait in (retry_after(response, now),) if wait is not None]
        reset = response.headers.get("x-ratelimit-reset", "").strip()
        if reset.isdigit():
            waits.append(max(datetime.fromtimestamp(int(reset) / 1000, tz=UTC) - now, timedelta(0)))
        return max(waits) if waits else None


def _json(response: httpx.Response) -> dict[str, Any] | None:
    try:
        parsed = json.loads(response.content)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _message(response: httpx.Response) -> str:
    """Both services put their words in ``message`` (Unleash next to ``name``, LaunchDarkly to ``code``)."""
    body = _json(response)
    if body is not None and isinstance(body.get("message"), str):
        return short(body["message"])
    return short(response.text) or (response.reason_phrase or "")


def build_unleash(
    name: str, config: UnleashConfig, *, transport: httpx.AsyncBaseTransport | None = None
) -> UnleashAction:
    """Resolve the token (once); raises ``ConfigError`` when it is unavailable."""
    token = config.token.resolve(f"unleash {name} token")
    return UnleashAction(name, config, token=token, transport=transport)


def build_launchdarkly(
    name: str,
    config: LaunchDarklyConfig,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], datetime] = _now,
) -> LaunchDarklyAction:
    """Resolve the token (once); raises ``ConfigError`` when it is unavailable."""
    token = config.token.resolve(f"launchdarkly {name} token")
    return LaunchDarklyAction(name, config, token=token, transport=transport, clock=clock)
