"""The PagerDuty action: Events API v2 ``trigger`` when an incident opens, ``resolve`` when it closes.

It owns the event body and reading PagerDuty's answers (reference integrations.md §7.3, from
PagerDuty/api-schema ``reference/events-v2/openapiv3.json`` and go-pagerduty ``event_v2.go``):

- success is **202** ``{"status":"success","message":"Event processed","dedup_key":"…"}``;
- 400 (``{"status":"invalid event","message":"Event object is invalid","errors":[…]}``) is permanent;
- 429 (PagerDuty's rate limit) and 5xx are transient, as are network faults (the shared classify).

Both events carry the same ``dedup_key``, derived from the incident alone (``dedup_key``), so a resolve
finds its alert after a restart, and a redelivered trigger updates the open alert instead of paging
twice: PagerDuty deduplicates on it.

It must not retry, sleep or decide about dry runs (the outbox owns them), nor put the routing key
(the integration's credential, sent in the body) into results, reprs or logs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from budgetguard.actions._config import ActionBase, SecretRef, UrlParts, lazy_module
from budgetguard.actions._http import MIN_SECRET_CHARS, HttpAction, classify, redact, short
from budgetguard.core import affected
from budgetguard.core.ports import ActionRequest, ActionResult, EventKind

if TYPE_CHECKING:
    import httpx
else:  # imported when first used: reading a config file needs none of it (#14)
    httpx = lazy_module("httpx")

__all__ = ["EVENTS_URL", "PagerDutyAction", "PagerDutyConfig", "build", "dedup_key", "event"]

logger = logging.getLogger(__name__)

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
# Limits from PagerDuty's docs (as quoted in the reference): summary 1024 characters, dedup_key 255.
_SUMMARY_LIMIT = 1024
_DEDUP_KEY_LIMIT = 255

Severity = Literal["critical", "error", "warning", "info"]


class PagerDutyConfig(ActionBase):
    """One PagerDuty service integration (Events API v2)."""

    type: Literal["pagerduty"] = "pagerduty"
    routing_key: SecretRef = Field(description="The integration key (32 characters) of the service.")
    url: str = Field(
        default=EVENTS_URL, description="Events API v2 enqueue endpoint; EU accounts use events.eu."
    )
    severity: Severity = Field(default="critical", description="Of the alert a trigger opens.")
    source: str = Field(
        default="budgetguard",
        min_length=1,
        description="`payload.source`: where the problem is seen, e.g. budgetguard.prod.",
    )

    @field_validator("url")
    @classmethod
    def _absolute_http_url(cls, url: str) -> str:
        parsed = UrlParts(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"must be an absolute http(s) URL such as {EVENTS_URL}")
        return url


def dedup_key(request: ActionRequest) -> str:
    """``budgetguard/<incident id>``: the same for the trigger and the resolve of one incident.

    Derived from the incident, not from the idempotency key (that one differs between the two events).
    An id too long for PagerDuty's 255 characters is replaced by its SHA-256, which is just as stable.
    """
    key = f"budgetguard/{request.incident_id}"
    if len(key) <= _DEDUP_KEY_LIMIT:
        return key
    return "budgetguard/sha256:" + hashlib.sha256(request.incident_id.encode("utf-8")).hexdigest()


def _rfc3339(at: datetime) -> str:
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _summary(request: ActionRequest) -> str:
    subject = f"{request.service}/{request.slo}"
    if request.canary_value is not None:
        subject += f" canary {request.canary_label or 'canary'}={request.canary_value}"
    hurt = "" if request.affected is None else affected.headline(request.affected)
    # Who is hurt goes before the reason: the summary is cut at 1024 characters, and it is what pages.
    text = f"budgetguard: {subject} is burning error budget too fast"
    text += f", hurting {hurt}: {request.reason}" if hurt else f": {request.reason}"
    return text if len(text) <= _SUMMARY_LIMIT else text[: _SUMMARY_LIMIT - 3] + "..."


def event(request: ActionRequest, *, routing_key: str, severity: str, source: str) -> dict[str, Any]:
    """The Events API v2 body for one request (a resolve needs only the key and the dedup_key)."""
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger" if request.event is EventKind.TRIGGER else "resolve",
        "dedup_key": dedup_key(request),
    }
    if request.event is EventKind.RESOLVE:
        return body
    details: dict[str, Any] = {
        "incident_id": request.incident_id,
        "slo": request.slo,
        "reason": request.reason,
        "canary_label": request.canary_label,
        "canary": request.canary_value,
        "baseline": request.baseline,
        "events": request.events,
        "affected": None if request.affected is None else affected.describe(request.affected),
    }
    for window, rate in request.burn_rates.items():
        details[f"burn_rate_{window}"] = rate
    body["payload"] = {
        "summary": _summary(request),
        "source": source,
        "severity": severity,
        "timestamp": _rfc3339(request.at),
        "component": request.service,
        "class": "slo-burn",
        # JSON has no Infinity/NaN; PagerDuty would reject the whole event.
        "custom_details": {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in details.items()
            if v is not None
        },
    }
    body["client"] = "budgetguard"
    return body


class PagerDutyAction(HttpAction):
    """Sends incident events to one PagerDuty integration; see the module docstring.

    Owns one connection pool: use it as an async context manager or call ``aclose``.
    """

    def __init__(
        self,
        name: str,
        config: PagerDutyConfig,
        *,
        routing_key: str,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(name, f"pagerduty {name}", timeout=config.timeout, transport=transport)
        self._config = config
        self._routing_key = routing_key
        self._secrets = (routing_key,) if len(routing_key) >= MIN_SECRET_CHARS else ()

    def __repr__(self) -> str:
        return f"PagerDutyAction(name={self.name!r}, url={self._config.url!r})"

    async def deliver(self, request: ActionRequest) -> ActionResult:
        body = event(
            request, routing_key=self._routing_key, severity=self._config.severity, source=self._config.source
        )
        answer = await self._request("POST", self._config.url, json=body)
        result = answer if isinstance(answer, ActionResult) else self._read(answer, body["dedup_key"])
        result = replace(result, detail=redact(result.detail, self._secrets))
        logger.debug("%s: %s %s -> %s", self._what, request.event, body["dedup_key"], result.outcome)
        return result

    def _read(self, response: httpx.Response, key: str) -> ActionResult:
        result = classify(response, self._what, self._secrets)
        try:
            answer = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return result
        if not isinstance(answer, dict):
            return result
        # Rewrite the detail from the JSON fields: "HTTP 202 Event processed (dedup_key ...)" reads
        # better in an incident log than the raw body, and the errors list says what to fix.
        words = [f"{self._what}: HTTP {response.status_code}"]
        if isinstance(answer.get("message"), str):
            words.append(answer["message"])
        errors = answer.get("errors")
        if isinstance(errors, list) and errors:
            words.append("(" + "; ".join(str(e) for e in errors) + ")")
        words.append(f"dedup_key {answer.get('dedup_key', key)}")
        return replace(result, detail=short(redact(" ".join(words), self._secrets)))


def build(
    name: str, config: PagerDutyConfig, *, transport: httpx.AsyncBaseTransport | None = None
) -> PagerDutyAction:
    """Resolve the routing key (once) and build the action; ``ConfigError`` if it cannot be read."""
    return PagerDutyAction(
        name,
        config,
        routing_key=config.routing_key.resolve(f"pagerduty {name} routing_key"),
        transport=transport,
    )
