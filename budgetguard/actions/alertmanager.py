"""The Alertmanager action: an incident becomes one alert posted to Alertmanager's API v2.

It owns the alert (labels, annotations, ``startsAt``/``endsAt``) and reading Alertmanager's answers
(reference integrations.md §7.2, from prometheus/alertmanager ``api/v2/openapi.yaml`` and
``api/v2/api.go``): ``POST {url}/api/v2/alerts`` with a JSON list; success is 200 with an empty body;
a validation error is 400 whose body is a JSON *string* (the Go error text); 5xx is transient.

An alert's identity is its label set, so posting the same labels again updates the same alert, and the
trigger and the resolve of one incident carry identical labels. Alertmanager resolves an alert on its
own once ``endsAt`` passes, which gives both halves of the lifecycle:

- a trigger sets ``endsAt`` to now + ``validity`` (4 × ``resend_interval``), so the alert stays firing
  only while budgetguard keeps re-sending it, and expires by itself if budgetguard dies;
- a resolve sets ``endsAt`` to now.

So while an incident is open the daemon must re-deliver its trigger every ``needs_resend()``; each
resend also repairs the rare out-of-order case where a previous incident's late resolve, for the same
labels, landed after this incident's trigger.

It must not retry, sleep or decide about dry runs (the outbox and the daemon own them), nor put
credentials into results, reprs or logs.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from budgetguard.actions._config import ActionBase, SecretRef, UrlParts, lazy_module
from budgetguard.actions._http import (
    MIN_SECRET_CHARS,
    HttpAction,
    classify,
    placeholders,
    redact,
    render,
    short,
)
from budgetguard.core.ports import ActionRequest, ActionResult, EventKind
from budgetguard.core.spec import Duration

if TYPE_CHECKING:
    import httpx
else:  # imported when first used: reading a config file needs none of it (#14)
    httpx = lazy_module("httpx")

__all__ = ["VALIDITY_FACTOR", "AlertmanagerAction", "AlertmanagerConfig", "BasicAuth", "alert", "build"]

logger = logging.getLogger(__name__)

ALERTS_PATH = "/api/v2/alerts"
# endsAt = now + VALIDITY_FACTOR × resend_interval: three resends may be lost before the alert lapses.
VALIDITY_FACTOR = 4
# Prometheus/Alertmanager label names (model.LabelNameRE).
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_OWN_LABELS = frozenset({"alertname", "service", "slo", "canary_label", "canary"})


class BasicAuth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str
    password: SecretRef


class AlertmanagerConfig(ActionBase):
    """One Alertmanager (or an HA pair's load balancer) that receives budgetguard's incidents as alerts."""

    type: Literal["alertmanager"] = "alertmanager"
    url: str = Field(description="Base URL, with any path prefix: http://alertmanager:9093.")
    alertname: str = Field(
        default="BudgetguardCanaryBurning", min_length=1, description="The `alertname` label."
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Extra labels for routing, e.g. {severity: page, team: payments}."
    )
    basic_auth: BasicAuth | None = Field(
        default=None, description="For an Alertmanager behind --web.config.file."
    )
    bearer_token: SecretRef | None = Field(
        default=None, description="For an Alertmanager behind an auth proxy."
    )
    generator_url: str | None = Field(
        default=None, description="Link back to budgetguard; `${name}` placeholders filled from the context."
    )
    resend_interval: Duration = Field(
        default=timedelta(minutes=1),
        description="Re-send a firing alert this often. Alertmanager resolves an alert whose endsAt has "
        "passed, and a trigger's endsAt is 4 × this ahead, so an open incident must be re-sent; keep it "
        "well below Alertmanager's resolve_timeout (5m) too.",
    )

    @field_validator("url")
    @classmethod
    def _base_url(cls, url: str) -> str:
        parsed = UrlParts(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError("must be an absolute http(s) URL such as http://alertmanager:9093")
        if parsed.userinfo:
            raise ValueError("must not contain credentials; use basic_auth or bearer_token")
        if parsed.query or parsed.fragment:
            raise ValueError("must not have a query string or fragment; give the base URL only")
        return url

    @field_validator("labels")
    @classmethod
    def _label_names(cls, labels: dict[str, str]) -> dict[str, str]:
        bad = sorted(name for name in labels if not _LABEL_NAME.match(name))
        if bad:
            raise ValueError(f"invalid label names {bad}: use letters, digits and underscores")
        own = sorted(set(labels) & _OWN_LABELS)
        if own:
            # The trigger and the resolve must carry the same identity; these are set from the incident.
            raise ValueError(f"{own} are set by budgetguard (alertname has its own field)")
        return labels

    @model_validator(mode="after")
    def _one_auth(self) -> AlertmanagerConfig:
        if self.basic_auth is not None and self.bearer_token is not None:
            raise ValueError("set either basic_auth or bearer_token, not both")
        if self.resend_interval <= timedelta(0):
            raise ValueError("resend_interval must be longer than zero")
        return self

    @property
    def validity(self) -> timedelta:
        """How long a trigger keeps the alert firing without a resend."""
        return VALIDITY_FACTOR * self.resend_interval


def _rfc3339(at: datetime) -> str:
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _rate(value: float | None) -> str:
    return "no data" if value is None or math.isnan(value) else f"{value:.4g}"


def alert(
    request: ActionRequest,
    config: AlertmanagerConfig,
    now: datetime,
    generator_url: str | None = None,
) -> dict[str, Any]:
    """The ``postableAlert`` for one event at ``now`` (a trigger fires until now + validity)."""
    labels = {
        "alertname": config.alertname,
        "service": request.service,
        "slo": request.slo,
        **config.labels,
    }
    # Identity: only what names the burning thing, never what describes it (a baseline may change
    # between trigger and resolve, and a changed label set would leave the first alert firing).
    # Alertmanager drops empty-valued labels before computing identity; not sending them keeps ours equal.
    for name, value in (("canary_label", request.canary_label), ("canary", request.canary_value)):
        if value:
            labels[name] = value
    subject = f"{request.service}/{request.slo}"
    if request.canary_value:
        subject += f" canary {request.canary_label or 'canary'}={request.canary_value}"
    annotations = {
        "summary": f"{subject} is burning error budget too fast",
        "description": request.reason,
        "incident_id": request.incident_id,
    }
    if request.baseline:
        annotations["baseline"] = request.baseline
    if request.burn_rates:
        annotations["burn_rates"] = ", ".join(f"{w}: {_rate(r)}" for w, r in request.burn_rates.items())
    ends = now + config.validity if request.event is EventKind.TRIGGER else now
    body: dict[str, Any] = {
        "labels": labels,
        "annotations": annotations,
        # Never after endsAt: Alertmanager rejects "end time before start time".
        "startsAt": _rfc3339(min(request.at, ends)),
        "endsAt": _rfc3339(ends),
    }
    if generator_url:
        body["generatorURL"] = generator_url
    return body


def _now() -> datetime:
    return datetime.now(tz=UTC)


class AlertmanagerAction(HttpAction):
    """Posts each incident as an alert to one Alertmanager; see the module docstring.

    Owns one connection pool: use it as an async context manager or call ``aclose``.
    """

    def __init__(
        self,
        name: str,
        config: AlertmanagerConfig,
        *,
        authorization: str | None = None,
        secrets: tuple[str, ...] = (),
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        headers = {} if authorization is None else {"Authorization": authorization}
        super().__init__(
            name, f"alertmanager {name}", timeout=config.timeout, transport=transport, headers=headers
        )
        self._config = config
        self._clock = clock
        self._secrets = tuple(s for s in secrets if len(s) >= MIN_SECRET_CHARS)
        self._url = config.url.rstrip("/") + ALERTS_PATH

    def __repr__(self) -> str:
        return f"AlertmanagerAction(name={self.name!r}, url={self._config.url!r})"

    def needs_resend(self) -> timedelta | None:
        """How often the daemon must re-deliver the trigger of a still-open incident (never None here).

        Alertmanager resolves an alert once its ``endsAt`` passes, and a trigger's ``endsAt`` lies only
        ``validity`` ahead, so an incident that stays open must be re-sent at this interval. Actions that
        need no resend return None (or lack the method).
        """
        return self._config.resend_interval

    def _generator_url(self, request: ActionRequest) -> str | None:
        template = self._config.generator_url
        if template is None:
            return None
        context = {k: quote(v, safe="") for k, v in request.context.items()}
        if not placeholders(template) <= set(context):
            return None  # a missing link is better than a failed alert
        return render(template, context)

    async def deliver(self, request: ActionRequest) -> ActionResult:
        body = [alert(request, self._config, self._clock(), self._generator_url(request))]
        answer = await self._request("POST", self._url, json=body)
        result = answer if isinstance(answer, ActionResult) else self._read(answer)
        result = replace(result, detail=redact(result.detail, self._secrets))
        logger.debug("%s: %s %s -> %s", self._what, request.event, request.incident_id, result.outcome)
        return result

    def _read(self, response: httpx.Response) -> ActionResult:
        result = classify(response, self._what, self._secrets)
        if response.status_code == 400:
            # The body is a JSON string holding the Go error text: show the text, not its quoting.
            try:
                text = response.json()
            except (json.JSONDecodeError, UnicodeDecodeError):
                return result
            if isinstance(text, str):
                return replace(result, detail=short(f"{self._what}: HTTP 400 {redact(text, self._secrets)}"))
        if response.status_code == 410:
            hint = "Alertmanager v0.27+ removed /api/v1; is this an old proxy path?"
            return replace(result, detail=f"{result.detail} ({hint})")
        return result


def build(
    name: str,
    config: AlertmanagerConfig,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], datetime] = _now,
) -> AlertmanagerAction:
    """Resolve the credentials (once) and build the action; ``ConfigError`` if they cannot be read."""
    authorization: str | None = None
    secrets: tuple[str, ...] = ()
    if config.basic_auth is not None:
        password = config.basic_auth.password.resolve(f"alertmanager {name} basic_auth.password")
        userpass = f"{config.basic_auth.username}:{password}".encode()
        encoded = base64.b64encode(userpass).decode("ascii")
        authorization = f"Basic {encoded}"
        secrets = (password, encoded)
    elif config.bearer_token is not None:
        token = config.bearer_token.resolve(f"alertmanager {name} bearer_token")
        authorization = f"Bearer {token}"
        secrets = (token,)
    return AlertmanagerAction(
        name, config, authorization=authorization, secrets=secrets, transport=transport, clock=clock
    )
