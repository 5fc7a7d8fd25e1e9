"""The Slack action: one readable message per incident event, posted to an incoming webhook.

It owns the message (a plain ``text`` that notifications show, plus ``blocks`` for the channel), and
reading Slack's answers (reference integrations.md §7.4): 200 with the text body ``ok`` is success;
errors are plain-text codes (400 ``invalid_payload``, 403 ``action_prohibited``, 404 ``no_team`` /
``no_service`` / ``channel_not_found``, 410 ``channel_is_archived``) and are permanent; 429 carries
``Retry-After``; 5xx (``rollup_error``) is transient.

Slack does not deduplicate: every accepted POST is a new message, and there is no idempotency header to
send. Exactly-once posting is the outbox's job (it records the delivery and never repeats a DELIVERED
one); what remains is the unavoidable case of a request Slack accepted but whose answer was lost (a
timeout after sending), which a retry turns into a second message.

The webhook URL is the credential, so it is a ``SecretRef``, and it must not appear in results, reprs or
logs, including httpx's own request log: the client only ever sees a stand-in URL on the same host,
and the transport swaps in the real path at the last moment (``_SecretPathTransport``).

It must not retry, sleep or decide about dry runs: the outbox owns all three.
"""

from __future__ import annotations

import functools
import logging
import math
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from budgetguard.actions._config import ActionBase, SecretRef, lazy_module
from budgetguard.actions._http import HttpAction, classify, redact
from budgetguard.core import affected
from budgetguard.core.errors import ConfigError
from budgetguard.core.ports import ActionOutcome, ActionRequest, ActionResult, EventKind

if TYPE_CHECKING:
    import httpx
else:  # imported when first used: reading a config file needs none of it (#14)
    httpx = lazy_module("httpx")

__all__ = ["SlackAction", "SlackConfig", "build", "message"]

logger = logging.getLogger(__name__)

_STAND_IN_PATH = "/services/redacted"
# Slack rejects a section text over 3000 characters (Block Kit limits); the reason is the long part.
_REASON_LIMIT = 2000
# Plain-text error codes that mean the webhook itself is gone: a new one has to be created.
_WEBHOOK_GONE = ("no_service", "no_team", "channel_is_archived", "channel_not_found")


class SlackConfig(ActionBase):
    """A Slack incoming webhook.

    ``channel`` and ``username`` are only honoured by legacy (custom integration) webhooks; webhooks of
    Slack apps always post to the channel and as the app chosen when the webhook was created.
    """

    type: Literal["slack"] = "slack"
    webhook_url: SecretRef = Field(
        description="https://hooks.slack.com/services/T…/B…/…; the URL is the credential, so give it by "
        "reference ({env: SLACK_WEBHOOK_URL} or {file: …})."
    )
    channel: str | None = Field(default=None, description="Legacy webhooks only, e.g. #deploys.")
    username: str | None = Field(default=None, description="Legacy webhooks only.")


def _escape(text: str) -> str:
    # Slack mrkdwn: these three are control characters in message text (api.slack.com "Formatting").
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _rate(value: float | None) -> str:
    if value is None:
        return "no data"
    if math.isinf(value):
        return "∞x"
    return f"{value:.3g}x"


def _subject(request: ActionRequest) -> str:
    subject = f"{request.service}/{request.slo}"
    if request.canary_value is not None:
        label = request.canary_label or "canary"
        subject += f" canary {label}={request.canary_value}"
    return subject


def message(request: ActionRequest) -> dict[str, Any]:
    """The JSON posted for one event: ``text`` for notifications, ``blocks`` for the channel."""
    subject = _escape(_subject(request))
    reason = _escape(request.reason)
    if len(reason) > _REASON_LIMIT:
        reason = reason[: _REASON_LIMIT - 3] + "..."
    if request.event is EventKind.TRIGGER:
        headline = f":rotating_light: budgetguard: {subject} is burning error budget too fast"
    else:
        headline = f":white_check_mark: budgetguard: resolved: {subject}"
    lines = [f"*{headline}*", reason]
    if request.event is EventKind.TRIGGER:
        if request.burn_rates:
            rates = ", ".join(f"{_escape(w)}: {_rate(r)}" for w, r in request.burn_rates.items())
            lines.append(f"Burn rate {rates}")
        if request.baseline is not None:
            lines.append(f"Baseline: {_escape(request.baseline)}")
        if request.affected is not None:
            lines.append(f"*Who is affected:* {_escape(affected.describe(request.affected))}")
    at = request.at if request.at.tzinfo is not None else request.at.replace(tzinfo=UTC)
    fallback = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    # Slack's date token shows the time in each reader's own time zone, the fallback where it cannot.
    when = f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time_secs}}|{fallback}>"
    context = f"incident {_escape(request.incident_id)} · {when}"
    return {
        "text": f"{headline}: {reason}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    }


@functools.cache
def _secret_path_transport() -> Callable[[httpx.AsyncBaseTransport, httpx.URL], httpx.AsyncBaseTransport]:
    """The transport class, made on first use: its base class is httpx's, imported only then (#14)."""

    class _SecretPathTransport(httpx.AsyncBaseTransport):
        """Sends to the secret URL while the client, its logs and its errors only ever see a stand-in."""

        def __init__(self, inner: httpx.AsyncBaseTransport, secret_url: httpx.URL) -> None:
            self._inner = inner
            self._secret_url = secret_url

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            real = httpx.Request(
                request.method,
                self._secret_url,
                headers=request.headers,
                stream=request.stream,
                extensions=request.extensions,
            )
            return await self._inner.handle_async_request(real)

        async def aclose(self) -> None:
            await self._inner.aclose()

    return _SecretPathTransport


def _environment_transport(url: httpx.URL) -> httpx.AsyncBaseTransport:
    """The proxy httpx would pick from HTTPS_PROXY/ALL_PROXY/NO_PROXY (we bring our own transport)."""
    proxies = urllib.request.getproxies()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass(url.host):
        return httpx.AsyncHTTPTransport(proxy=proxy)
    return httpx.AsyncHTTPTransport()


class SlackAction(HttpAction):
    """Posts incident events to one Slack incoming webhook; see the module docstring.

    Owns one connection pool: use it as an async context manager or call ``aclose``.
    """

    def __init__(
        self,
        name: str,
        config: SlackConfig,
        *,
        webhook_url: str,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        what = f"slack {name}"
        try:
            secret_url = httpx.URL(webhook_url)
        except httpx.InvalidURL as exc:
            # Not chained: httpx's message quotes parts of the URL, which is the secret.
            raise ConfigError(f"{what}: webhook_url is not a valid URL ({type(exc).__name__})") from None
        if secret_url.scheme not in ("http", "https") or not secret_url.host:
            raise ConfigError(f"{what}: webhook_url must be an absolute https URL (not shown: it is secret)")
        # The URL as given and as httpx writes it, and its path alone (the token is in the path).
        self._secrets = tuple(
            sorted({webhook_url, str(secret_url), secret_url.path} - {"", "/"}, key=len, reverse=True)
        )
        self._stand_in = secret_url.copy_with(path=_STAND_IN_PATH, query=None, fragment=None)
        super().__init__(
            name,
            what,
            timeout=config.timeout,
            transport=_secret_path_transport()(transport or _environment_transport(secret_url), secret_url),
        )
        self._config = config

    def __repr__(self) -> str:
        return f"SlackAction(name={self.name!r})"

    def body(self, request: ActionRequest) -> dict[str, Any]:
        body = message(request)
        if self._config.channel is not None:
            body["channel"] = self._config.channel
        if self._config.username is not None:
            body["username"] = self._config.username
        return body

    async def deliver(self, request: ActionRequest) -> ActionResult:
        answer = await self._request("POST", self._stand_in, json=self.body(request))
        result = answer if isinstance(answer, ActionResult) else self._read(answer)
        result = replace(result, detail=redact(result.detail, self._secrets))
        logger.debug("%s: %s %s -> %s", self._what, request.event, request.incident_id, result.outcome)
        return result

    def _read(self, response: httpx.Response) -> ActionResult:
        result = classify(response, self._what, self._secrets)
        if result.outcome is ActionOutcome.FAILED and response.text.strip() in _WEBHOOK_GONE:
            hint = "the webhook or its channel is gone: create a new incoming webhook"
            return replace(result, detail=f"{result.detail} ({hint})")
        return result


def build(
    name: str, config: SlackConfig, *, transport: httpx.AsyncBaseTransport | None = None
) -> SlackAction:
    """Resolve the webhook URL (once) and build the action; ``ConfigError`` if it is missing or invalid."""
    return SlackAction(
        name, config, webhook_url=config.webhook_url.resolve(f"slack {name} webhook_url"), transport=transport
    )
