"""The generic webhook action: one signed JSON POST per incident event, in the Standard Webhooks format.

It owns the body budgetguard sends to any HTTP endpoint (``type``, ``timestamp``, ``data``, the payload
structure the Standard Webhooks spec recommends), the signature over the exact bytes sent, the
idempotency headers, and reading the receiver's answer into an ``ActionResult``.

Signing follows standard-webhooks/standard-webhooks ``spec/standard-webhooks.md`` (reference
integrations.md §8.1): ``webhook-id`` is the request's idempotency key, so a retry or a redelivery after
a crash carries the same id and the receiver can drop the duplicate; ``webhook-timestamp`` is the time of
*this* attempt (the receiver rejects stale ones, so a retry is signed afresh); ``webhook-signature`` is
``v1,`` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")) where a ``whsec_`` secret's key is the
base64-decoded rest. ``Idempotency-Key`` (IETF draft-ietf-httpapi-idempotency-key-header, §8.2) carries
the same key as a quoted structured-field string for receivers that know that header instead.

It must not retry, sleep or decide about dry runs (the outbox owns all three), follow redirects (a 3xx
is a failure, as the spec says), or put the signing secret, header values or the URL (which may carry
a token) into results, reprs or logs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from pydantic import Field, field_validator

from budgetguard.actions._config import ActionBase, SecretRef, UrlParts, lazy_module
from budgetguard.actions._http import (
    MIN_SECRET_CHARS,
    HttpAction,
    classify,
    placeholders,
    redact,
    render,
)
from budgetguard.core import affected
from budgetguard.core.errors import ConfigError
from budgetguard.core.ports import ActionOutcome, ActionRequest, ActionResult, Affected, EventKind

if TYPE_CHECKING:
    import httpx
else:  # imported when first used: reading a config file needs none of it (#14)
    httpx = lazy_module("httpx")

__all__ = ["EVENT_TYPES", "WebhookAction", "WebhookConfig", "build", "payload", "sign", "signing_key"]

logger = logging.getLogger(__name__)

EVENT_TYPES: Mapping[EventKind, str] = {
    EventKind.TRIGGER: "budgetguard.incident.triggered",
    EventKind.RESOLVE: "budgetguard.incident.resolved",
}
# Set by the action itself; a configured header of the same name would break signing or dedup.
_RESERVED_HEADERS = frozenset(
    {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "idempotency-key",
        "content-type",
        "content-length",
    }
)
_WHSEC_PREFIX = "whsec_"


class WebhookConfig(ActionBase):
    """An HTTP endpoint that receives budgetguard's incident events as signed JSON."""

    type: Literal["webhook"] = "webhook"
    url: str = Field(
        description="Absolute http(s) URL; `${name}` placeholders are filled (URL-escaped) from the "
        "request's context: service, slo, canary_label, canary, baseline and the SLO's labels."
    )
    secret: SecretRef | None = Field(
        default=None,
        description="Standard Webhooks signing secret; `whsec_<base64>` is decoded, anything else is "
        "used as UTF-8 bytes. Without it the request is sent unsigned.",
    )
    # Values may be credentials (Authorization), so they stay out of reprs.
    headers: dict[str, str] = Field(default_factory=dict, repr=False, description="Extra request headers.")

    @field_validator("url")
    @classmethod
    def _absolute_http_url(cls, url: str) -> str:
        # Placeholders are checked against the context at load time; here only the URL's shape.
        probe = render(url, dict.fromkeys(placeholders(url), "x"))
        parsed = UrlParts(probe)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError("must be an absolute http(s) URL such as https://hooks.example.com/budgetguard")
        if parsed.userinfo:
            raise ValueError("must not contain credentials; send them in `headers` instead")
        return url

    @field_validator("headers")
    @classmethod
    def _not_reserved(cls, headers: dict[str, str]) -> dict[str, str]:
        clash = sorted(name for name in headers if name.lower() in _RESERVED_HEADERS)
        if clash:
            raise ValueError(f"{', '.join(clash)} set by budgetguard itself; remove them from headers")
        return headers


def signing_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: ``whsec_<base64>`` decoded, else the UTF-8 bytes."""
    if secret.startswith(_WHSEC_PREFIX):
        try:
            return base64.b64decode(secret[len(_WHSEC_PREFIX) :], validate=True)
        except binascii.Error as exc:
            # The secret itself is never echoed.
            raise ConfigError("webhook secret starts with whsec_ but the rest is not valid base64") from exc
    return secret.encode("utf-8")


def sign(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64(HMAC-SHA256 over ``{id}.{timestamp}.{body}``)."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")


def _rfc3339(at: datetime) -> str:
    """UTC with a ``Z``; a naive time is taken to be UTC already."""
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _number(value: float | None) -> float | None:
    # JSON has no Infinity or NaN (json.dumps would write invalid JSON); the reason text says why.
    return value if value is not None and math.isfinite(value) else None


def payload(request: ActionRequest) -> dict[str, Any]:
    """The JSON document sent for one event (Standard Webhooks' recommended type/timestamp/data)."""
    return {
        "type": EVENT_TYPES[request.event],
        "timestamp": _rfc3339(request.at),
        "data": {
            "incident_id": request.incident_id,
            "idempotency_key": request.idempotency_key,
            "service": request.service,
            "slo": request.slo,
            "canary_label": request.canary_label,
            "canary": request.canary_value,
            "baseline": request.baseline,
            "burn_rates": {window: _number(rate) for window, rate in request.burn_rates.items()},
            "events": _number(request.events),
            "reason": request.reason,
            "at": _rfc3339(request.at),
            # Who is hurt (canary.affected_by), null until known or when the SLO names no labels.
            "affected": None if request.affected is None else _affected(request.affected),
        },
    }


def _affected(found: Affected) -> dict[str, Any]:
    record = affected.to_record(found)
    record["errors"] = _number(found.errors)
    record["summary"] = affected.describe(found)
    return record


def _sf_string(value: str) -> str:
    """An RFC 8941 sf-string, as the Idempotency-Key draft requires (quoted, with \\ and " escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _now() -> datetime:
    return datetime.now(tz=UTC)


class WebhookAction(HttpAction):
    """Posts each incident event to one endpoint; see the module docstring for the wire format.

    Owns one connection pool: use it as an async context manager or call ``aclose``.
    """

    def __init__(
        self,
        name: str,
        config: WebhookConfig,
        *,
        key: bytes | None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        super().__init__(
            name, f"webhook {name}", timeout=config.timeout, transport=transport, headers=config.headers
        )
        self._config = config
        self._key = key
        self._clock = clock
        # A receiver or proxy that echoes the request must not leak header values into the incident log.
        self._secrets = tuple(v for v in config.headers.values() if len(v) >= MIN_SECRET_CHARS)

    def __repr__(self) -> str:
        return f"WebhookAction(name={self.name!r}, signed={self._key is not None})"

    def headers_for(self, request: ActionRequest, body: bytes) -> dict[str, str]:
        """The per-delivery headers: idempotency always, Standard Webhooks' three when signing."""
        headers = {"Content-Type": "application/json", "Idempotency-Key": _sf_string(request.idempotency_key)}
        if self._key is not None:
            timestamp = int(self._clock().timestamp())
            headers["webhook-id"] = request.idempotency_key
            headers["webhook-timestamp"] = str(timestamp)
            headers["webhook-signature"] = sign(self._key, request.idempotency_key, timestamp, body)
        return headers

    async def deliver(self, request: ActionRequest) -> ActionResult:
        try:
            url = render(self._config.url, {k: quote(v, safe="") for k, v in request.context.items()})
        except KeyError as exc:
            return ActionResult(
                ActionOutcome.FAILED, f"{self._what}: the url uses ${{{exc.args[0]}}}, which this SLO lacks"
            )
        body = json.dumps(payload(request), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        try:
            answer = await self._request("POST", url, content=body, headers=self.headers_for(request, body))
        except httpx.InvalidURL:
            answer = ActionResult(ActionOutcome.FAILED, f"{self._what}: the rendered url is not valid")
        result = answer if isinstance(answer, ActionResult) else self._read(answer)
        result = replace(result, detail=redact(result.detail, self._secrets))
        logger.debug("%s: %s %s -> %s", self._what, request.event, request.incident_id, result.outcome)
        return result

    def _read(self, response: httpx.Response) -> ActionResult:
        result = classify(response, self._what, self._secrets)
        if response.status_code == 410:
            # Standard Webhooks: 410 Gone means the receiver wants no more deliveries.
            return replace(
                result, detail=f"{result.detail} (the endpoint asked to be disabled: remove or fix it)"
            )
        if 300 <= response.status_code < 400:
            return replace(
                result, detail=f"{result.detail} (redirects are not followed: configure the final url)"
            )
        return result


def build(
    name: str,
    config: WebhookConfig,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], datetime] = _now,
) -> WebhookAction:
    """Resolve the secret (once) and build the action; raises ``ConfigError`` for an unusable secret."""
    key = signing_key(config.secret.resolve(f"webhook {name} secret")) if config.secret is not None else None
    return WebhookAction(name, config, key=key, transport=transport, clock=clock)
