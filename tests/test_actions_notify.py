"""Specification of the notification actions: generic signed webhook, Slack, PagerDuty and Alertmanager.

Every action talks to a faithful fake of its target (``lab.fakes.notify``) over real loopback HTTP, the
seam production uses; ``httpx.MockTransport`` appears only where a real server cannot produce the case
(a connection reset mid-read) or where a test needs a server that echoes secrets back. Signatures are
checked twice: by the fake receiver, and by the Standard Webhooks algorithm recomputed here.

Retries, backoff and dry runs are the outbox's business: an action only classifies one attempt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from budgetguard.actions import alertmanager, pagerduty, slack, webhook
from budgetguard.actions._config import SecretRef
from budgetguard.core.errors import ConfigError
from budgetguard.core.ports import Action, ActionOutcome, ActionRequest, EventKind
from lab.fakes import AlertmanagerFake, Answer, FakeService, PagerDutyFake, SlackFake, WebhookReceiver

AT = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
RAW_KEY = bytes(range(32))
WHSEC = "whsec_" + base64.b64encode(RAW_KEY).decode()
ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"  # 32 characters, like a PagerDuty integration key
TOKEN = "am-bearer-token-5f2b9c"
PASSWORD = "am-password-77e1d0"

TRIGGER = ActionRequest(
    event=EventKind.TRIGGER,
    idempotency_key="inc-42.notify.trigger",
    incident_id="inc-42",
    service="checkout",
    slo="availability",
    reason="canary version=v2 burns budget at 16.2x over 1h and 18x over 5m (baseline v1 at 0.9x)",
    at=AT,
    canary_label="version",
    canary_value="v2",
    baseline="v1",
    burn_rates={"1h": 16.2, "5m": 18.0},
    events=1234.0,
    context={
        "service": "checkout",
        "slo": "availability",
        "canary_label": "version",
        "canary": "v2",
        "baseline": "v1",
        "team": "payments",
    },
)
RESOLVE = replace(
    TRIGGER, event=EventKind.RESOLVE, idempotency_key="inc-42.notify.resolve", reason="burn back under 1x"
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def expected_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """The Standard Webhooks algorithm, written from the spec, independently of budgetguard."""
    key = base64.b64decode(secret.removeprefix("whsec_")) if secret.startswith("whsec_") else secret.encode()
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- one harness for the four targets ------------------------------------------------------------------


@dataclass
class Target:
    kind: str
    fake: FakeService
    action: Action
    secrets: tuple[str, ...]


def make_fake(kind: str, script: list[int | Answer]) -> FakeService:
    if kind == "webhook":
        return WebhookReceiver(WHSEC, script=script)
    if kind == "slack":
        return SlackFake(script=script)
    if kind == "pagerduty":
        return PagerDutyFake(routing_keys=[ROUTING_KEY], script=script)
    return AlertmanagerFake(script=script)


def make_action(
    kind: str, fake: FakeService, transport: httpx.AsyncBaseTransport | None = None, **common: Any
) -> tuple[Action, tuple[str, ...]]:
    """The action for ``kind`` pointed at ``fake``, and the secrets it holds; ``common``: ActionBase fields."""
    if isinstance(fake, WebhookReceiver):
        headers = {"Authorization": "Bearer hook-token-1"}
        config = webhook.WebhookConfig(url=fake.endpoint, secret=WHSEC, headers=headers, **common)
        return webhook.build(kind, config, transport=transport), (WHSEC, "Bearer hook-token-1")
    if isinstance(fake, SlackFake):
        slack_config = slack.SlackConfig(webhook_url=fake.webhook_url, **common)
        return slack.build(kind, slack_config, transport=transport), (fake.webhook_url, fake.path)
    if isinstance(fake, PagerDutyFake):
        pd_config = pagerduty.PagerDutyConfig(routing_key=ROUTING_KEY, url=fake.events_url, **common)
        return pagerduty.build(kind, pd_config, transport=transport), (ROUTING_KEY,)
    am_config = alertmanager.AlertmanagerConfig(url=fake.url, bearer_token=TOKEN, **common)
    return alertmanager.build(kind, am_config, transport=transport), (TOKEN,)


@asynccontextmanager
async def target(
    kind: str,
    *script: int | Answer,
    transport: httpx.AsyncBaseTransport | None = None,
    **common: Any,
) -> AsyncIterator[Target]:
    with make_fake(kind, list(script)) as fake:
        action, secrets = make_action(kind, fake, transport, **common)
        try:
            yield Target(kind, fake, action, secrets)
        finally:
            await action.aclose()


KINDS = ["webhook", "slack", "pagerduty", "alertmanager"]


# --- the port --------------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_each_action_satisfies_the_action_port_and_is_named(kind: str) -> None:
    async with target(kind) as t:
        action: Action = t.action
        assert action.name == kind
        assert kind in repr(action)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_a_trigger_is_delivered_to_a_healthy_target(kind: str) -> None:
    async with target(kind) as t:
        result = await t.action.deliver(TRIGGER)
        assert result.outcome is ActionOutcome.DELIVERED, result
        assert len(t.fake.accepted) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_deliver_sends_even_with_dry_run_set_because_the_outbox_owns_dry_runs(kind: str) -> None:
    # The outbox reads the flag and never calls deliver for a dry run; an action must not guess.
    async with target(kind, dry_run=True) as t:
        assert (await t.action.deliver(TRIGGER)).outcome is ActionOutcome.DELIVERED
        assert len(t.fake.requests) == 1


# --- every outcome class, against every target -------------------------------------------------------

OUTCOMES = [
    pytest.param(500, ActionOutcome.RETRY, id="a 500 is retried"),
    pytest.param(502, ActionOutcome.RETRY, id="a 502 is retried"),
    pytest.param(503, ActionOutcome.RETRY, id="a 503 is retried"),
    pytest.param(504, ActionOutcome.RETRY, id="a 504 is retried"),
    pytest.param(408, ActionOutcome.RETRY, id="a 408 request timeout is retried"),
    pytest.param(409, ActionOutcome.RETRY, id="a 409 conflict is retried"),
    pytest.param(425, ActionOutcome.RETRY, id="a 425 too early is retried"),
    pytest.param(429, ActionOutcome.RETRY, id="a 429 rate limit is retried"),
    pytest.param(400, ActionOutcome.FAILED, id="a 400 fails for good"),
    pytest.param(401, ActionOutcome.FAILED, id="a 401 fails for good"),
    pytest.param(403, ActionOutcome.FAILED, id="a 403 fails for good"),
    pytest.param(404, ActionOutcome.FAILED, id="a 404 fails for good"),
    pytest.param(410, ActionOutcome.FAILED, id="a 410 fails for good"),
    pytest.param(422, ActionOutcome.FAILED, id="a 422 fails for good"),
]


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("status", "outcome"), OUTCOMES)
async def test_the_targets_answer_is_classified(kind: str, status: int, outcome: ActionOutcome) -> None:
    async with target(kind, status) as t:
        result = await t.action.deliver(TRIGGER)
        assert (result.outcome, result.status) == (outcome, status)
        assert f"HTTP {status}" in result.detail
        assert t.fake.accepted == []  # a failed attempt had no effect


RETRY_AFTER = [
    pytest.param("1", timedelta(seconds=1), id="Retry-After in seconds"),
    pytest.param("http-date", timedelta(seconds=120), id="Retry-After as an HTTP date"),
]


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("header", "expected"), RETRY_AFTER)
async def test_retry_after_is_honoured_in_both_forms(kind: str, header: str, expected: timedelta) -> None:
    if header == "http-date":
        header = format_datetime(datetime.now(tz=UTC) + expected, usegmt=True)
    async with target(kind, Answer(429, "rate_limited", {"Retry-After": header})) as t:
        result = await t.action.deliver(TRIGGER)
    assert result.outcome is ActionOutcome.RETRY
    assert result.retry_after is not None
    # The HTTP date has one-second resolution and is read a moment after it was written.
    assert expected - timedelta(seconds=2) <= result.retry_after <= expected


NETWORK_FAULTS = [
    pytest.param("refused", id="connection refused is retried"),
    pytest.param("timeout", id="a server slower than the timeout is retried"),
    pytest.param("dropped", id="a connection closed without an answer is retried"),
]


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fault", NETWORK_FAULTS)
async def test_network_faults_are_retried(kind: str, fault: str) -> None:
    started = time.monotonic()
    if fault == "refused":
        action = _action_on_dead_port(kind)
        try:
            result = await action.deliver(TRIGGER)
        finally:
            await action.aclose()
    else:
        answer = Answer(200, delay=timedelta(seconds=5)) if fault == "timeout" else Answer(0, drop=True)
        async with target(kind, answer, timeout="300ms") as t:
            result = await t.action.deliver(TRIGGER)
    assert result.outcome is ActionOutcome.RETRY, result
    assert result.status is None
    assert time.monotonic() - started < 3  # the fake's close cut its 5 s delay short
    expected = "timed out" if fault == "timeout" else "could not connect"
    assert expected in result.detail


def _action_on_dead_port(kind: str) -> Action:
    dead = f"http://127.0.0.1:{free_port()}"
    configs: dict[str, Callable[[], Action]] = {
        "webhook": lambda: webhook.build(kind, webhook.WebhookConfig(url=dead + "/hook")),
        "slack": lambda: slack.build(
            kind, slack.SlackConfig(webhook_url=SecretRef(value=dead + "/services/x"))
        ),
        "pagerduty": lambda: pagerduty.build(
            kind,
            pagerduty.PagerDutyConfig(routing_key=SecretRef(value=ROUTING_KEY), url=dead + "/v2/enqueue"),
        ),
        "alertmanager": lambda: alertmanager.build(kind, alertmanager.AlertmanagerConfig(url=dead)),
    }
    return configs[kind]()


RESETS = [
    pytest.param(httpx.ReadError("[Errno 104] Connection reset by peer"), id="a connection reset is retried"),
    pytest.param(httpx.RemoteProtocolError("Server disconnected"), id="a half-written answer is retried"),
    pytest.param(httpx.ConnectTimeout("timed out"), id="a connect timeout is retried"),
    pytest.param(httpx.ReadTimeout("timed out"), id="a read timeout is retried"),
]


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fault", RESETS)
async def test_transport_errors_a_real_server_cannot_stage_are_retried(
    kind: str, fault: httpx.HTTPError
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise fault

    async with target(kind, transport=httpx.MockTransport(handler)) as t:
        result = await t.action.deliver(TRIGGER)
    assert result.outcome is ActionOutcome.RETRY
    assert type(fault).__name__ in result.detail


# --- generic webhooks: Standard Webhooks signing and idempotency -------------------------------------

SECRETS = [
    pytest.param(WHSEC, id="a whsec_ secret signs with its base64-decoded key"),
    pytest.param("a plain shared secret", id="any other secret signs with its UTF-8 bytes"),
]


@pytest.mark.anyio
@pytest.mark.parametrize("secret", SECRETS)
async def test_a_signed_webhook_verifies_at_the_receiver_and_by_the_spec(secret: str) -> None:
    with WebhookReceiver(secret) as receiver:
        config = webhook.WebhookConfig(url=receiver.endpoint, secret=SecretRef(value=secret))
        async with webhook.build("hook", config) as action:
            result = await action.deliver(TRIGGER)
        assert result.outcome is ActionOutcome.DELIVERED, result
        [delivery] = receiver.deliveries
    msg_id, timestamp = delivery.header("webhook-id"), delivery.header("webhook-timestamp")
    assert msg_id == TRIGGER.idempotency_key
    assert timestamp is not None and abs(int(timestamp) - time.time()) < 5
    assert delivery.header("webhook-signature") == expected_signature(
        secret, msg_id, timestamp, delivery.body
    )
    assert delivery.header("idempotency-key") == f'"{TRIGGER.idempotency_key}"'
    assert delivery.header("content-type") == "application/json"


@pytest.mark.anyio
async def test_a_whsec_secret_is_not_used_as_its_literal_text() -> None:
    with WebhookReceiver(WHSEC) as receiver:
        config = webhook.WebhookConfig(url=receiver.endpoint, secret=SecretRef(value=WHSEC))
        async with webhook.build("hook", config) as action:
            await action.deliver(TRIGGER)
        [delivery] = receiver.deliveries
    signed = (
        f"{delivery.header('webhook-id')}.{delivery.header('webhook-timestamp')}.".encode() + delivery.body
    )
    literal = "v1," + base64.b64encode(hmac.new(WHSEC.encode(), signed, hashlib.sha256).digest()).decode()
    decoded = "v1," + base64.b64encode(hmac.new(RAW_KEY, signed, hashlib.sha256).digest()).decode()
    assert delivery.header("webhook-signature") == decoded != literal


@pytest.mark.anyio
async def test_a_receiver_with_another_secret_rejects_the_signature_for_good() -> None:
    with WebhookReceiver("the receiver's secret") as receiver:
        config = webhook.WebhookConfig(url=receiver.endpoint, secret=SecretRef(value="our secret"))
        async with webhook.build("hook", config) as action:
            result = await action.deliver(TRIGGER)
        assert (result.outcome, result.status) == (ActionOutcome.FAILED, 401)
        assert receiver.deliveries == []


@pytest.mark.anyio
async def test_the_body_names_the_event_and_carries_the_incident() -> None:
    with WebhookReceiver(WHSEC) as receiver:
        config = webhook.WebhookConfig(url=receiver.endpoint, secret=SecretRef(value=WHSEC))
        async with webhook.build("hook", config) as action:
            await action.deliver(TRIGGER)
            await action.deliver(RESOLVE)
        trigger, resolve = (d.json for d in receiver.deliveries)
    assert trigger == {
        "type": "budgetguard.incident.triggered",
        "timestamp": "2024-05-01T10:00:00Z",
        "data": {
            "incident_id": "inc-42",
            "idempotency_key": "inc-42.notify.trigger",
            "service": "checkout",
            "slo": "availability",
            "canary_label": "version",
            "canary": "v2",
            "baseline": "v1",
            "burn_rates": {"1h": 16.2, "5m": 18.0},
            "events": 1234.0,
            "reason": TRIGGER.reason,
            "at": "2024-05-01T10:00:00Z",
            "affected": None,  # who is hurt: only for SLOs with canary.affected_by (#6)
        },
    }
    assert resolve["type"] == "budgetguard.incident.resolved"
    assert resolve["data"]["idempotency_key"] == "inc-42.notify.resolve"


def test_an_infinite_burn_rate_becomes_null_because_json_has_no_infinity() -> None:
    body = webhook.payload(replace(TRIGGER, burn_rates={"1h": float("inf"), "5m": None}))
    assert body["data"]["burn_rates"] == {"1h": None, "5m": None}
    json.dumps(body, allow_nan=False)


@pytest.mark.anyio
async def test_a_redelivery_carries_the_same_webhook_id_and_the_receiver_keeps_one() -> None:
    with WebhookReceiver(WHSEC) as receiver:
        config = webhook.WebhookConfig(url=receiver.endpoint, secret=SecretRef(value=WHSEC))
        async with webhook.build("hook", config) as action:
            first = await action.deliver(TRIGGER)
            again = await action.deliver(TRIGGER)  # e.g. the outbox crashed before recording success
        assert first.outcome is again.outcome is ActionOutcome.DELIVERED
        ids = [r.header("webhook-id") for r in receiver.requests]
        assert ids == [TRIGGER.idempotency_key] * 2
        assert len(receiver.deliveries) == 1


@pytest.mark.anyio
async def test_the_outbox_retrying_503_503_200_lands_one_delivery() -> None:
    with WebhookReceiver(WHSEC, script=[503, 503, 200]) as receiver:
        config = webhook.WebhookConfig(url=receiver.endpoint, secret=SecretRef(value=WHSEC))
        async with webhook.build("hook", config) as action:
            outcomes = [(await action.deliver(TRIGGER)).outcome for _ in range(3)]
        assert outcomes == [ActionOutcome.RETRY, ActionOutcome.RETRY, ActionOutcome.DELIVERED]
        assert {r.header("webhook-id") for r in receiver.requests} == {TRIGGER.idempotency_key}
        assert [r.status for r in receiver.requests] == [503, 503, 200]
        assert len(receiver.deliveries) == 1


STALE = [
    pytest.param(timedelta(minutes=-6), id="a timestamp 6 minutes old is rejected"),
    pytest.param(timedelta(minutes=6), id="a timestamp 6 minutes ahead is rejected"),
]


@pytest.mark.anyio
@pytest.mark.parametrize("skew", STALE)
async def test_the_receiver_rejects_a_stale_timestamp_with_400(skew: timedelta) -> None:
    with WebhookReceiver(WHSEC) as receiver:
        config = webhook.WebhookConfig(url=receiver.endpoint, secret=SecretRef(value=WHSEC))
        clock = lambda: datetime.now(tz=UTC) + skew  # noqa: E731 - a one-line fake clock
        async with webhook.build("hook", config, clock=clock) as action:
            result = await action.deliver(TRIGGER)
        assert (result.outcome, result.status) == (ActionOutcome.FAILED, 400)
        assert receiver.deliveries == []


@pytest.mark.anyio
async def test_a_410_says_the_endpoint_asked_to_be_disabled() -> None:
    with WebhookReceiver(WHSEC, script=[410]) as receiver:
        config = webhook.WebhookConfig(url=receiver.endpoint, secret=SecretRef(value=WHSEC))
        async with webhook.build("hook", config) as action:
            result = await action.deliver(TRIGGER)
    assert result.outcome is ActionOutcome.FAILED
    assert "asked to be disabled" in result.detail


@pytest.mark.anyio
async def test_a_redirect_is_a_failure_and_is_not_followed() -> None:
    with WebhookReceiver(WHSEC) as receiver:
        receiver.script(Answer(307, headers={"Location": receiver.endpoint}))
        config = webhook.WebhookConfig(url=receiver.endpoint, secret=SecretRef(value=WHSEC))
        async with webhook.build("hook", config) as action:
            result = await action.deliver(TRIGGER)
        assert result.outcome is ActionOutcome.FAILED
        assert "redirects are not followed" in result.detail
        assert len(receiver.requests) == 1


@pytest.mark.anyio
async def test_an_unsigned_webhook_still_carries_the_idempotency_key() -> None:
    with WebhookReceiver() as receiver:
        config = webhook.WebhookConfig(url=receiver.endpoint)
        async with webhook.build("hook", config) as action:
            await action.deliver(TRIGGER)
            await action.deliver(TRIGGER)
        assert len(receiver.requests) == 2
        [delivery] = receiver.deliveries
    assert delivery.header("webhook-signature") is None
    assert delivery.header("idempotency-key") == f'"{TRIGGER.idempotency_key}"'


@pytest.mark.anyio
async def test_url_placeholders_are_filled_from_the_context_and_escaped() -> None:
    request = replace(TRIGGER, context={**TRIGGER.context, "canary": "v2 beta/1"})
    with WebhookReceiver(path="/hooks/checkout/v2%20beta%2F1") as receiver:
        config = webhook.WebhookConfig(url=receiver.url + "/hooks/${service}/${canary}")
        async with webhook.build("hook", config) as action:
            result = await action.deliver(request)
        assert result.outcome is ActionOutcome.DELIVERED, result
        assert receiver.requests[0].path == "/hooks/checkout/v2%20beta%2F1"


@pytest.mark.anyio
async def test_a_placeholder_missing_from_the_context_fails_without_a_request() -> None:
    with WebhookReceiver() as receiver:
        config = webhook.WebhookConfig(url=receiver.url + "/hooks/${region}")
        async with webhook.build("hook", config) as action:
            result = await action.deliver(TRIGGER)
        assert result.outcome is ActionOutcome.FAILED
        assert "${region}" in result.detail
        assert receiver.requests == []


WEBHOOK_CONFIG_ERRORS = [
    pytest.param({"url": "hooks.example.com/x"}, "absolute", id="a relative url is refused"),
    pytest.param(
        {"url": "https://user:pw@hooks.example.com/x"}, "credentials", id="credentials in the url are refused"
    ),
    pytest.param(
        {"url": "https://hooks.example.com", "headers": {"Webhook-Signature": "v1,x"}},
        "set by budgetguard",
        id="a header budgetguard signs with cannot be overridden",
    ),
    pytest.param({"url": "https://h.example", "dry-run": True}, "extra", id="unknown fields are refused"),
]


@pytest.mark.parametrize(("fields", "message"), WEBHOOK_CONFIG_ERRORS)
def test_webhook_config_mistakes_are_caught_at_load(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        webhook.WebhookConfig.model_validate(fields)


def test_a_whsec_secret_that_is_not_base64_is_a_config_error_without_the_secret() -> None:
    config = webhook.WebhookConfig(
        url="https://hooks.example.com", secret=SecretRef(value="whsec_not*base64!")
    )
    with pytest.raises(ConfigError) as caught:
        webhook.build("hook", config)
    assert "not*base64" not in str(caught.value)


# --- Slack ---------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_slack_posts_a_readable_trigger_and_a_resolved_message() -> None:
    with SlackFake() as fake:
        config = slack.SlackConfig(webhook_url=SecretRef(value=fake.webhook_url))
        async with slack.build("chat", config) as action:
            trigger = await action.deliver(TRIGGER)
            resolve = await action.deliver(RESOLVE)
        assert (trigger.status, resolve.status) == (200, 200)
        assert "HTTP 200 ok" in trigger.detail
        first, second = fake.messages
    assert "checkout/availability canary version=v2 is burning error budget too fast" in first["text"]
    assert TRIGGER.reason in first["text"]
    section = first["blocks"][0]["text"]["text"]
    assert "Burn rate 1h: 16.2x, 5m: 18x" in section
    assert "Baseline: v1" in section
    assert "inc-42" in first["blocks"][1]["elements"][0]["text"]
    assert "resolved: checkout/availability canary version=v2" in second["text"]
    assert "burn back under 1x" in second["text"]


def test_slack_escapes_its_control_characters_in_names_and_reasons() -> None:
    body = slack.message(replace(TRIGGER, reason="errors <5% & rising", service="a<b>"))
    assert "errors &lt;5% &amp; rising" in body["text"]
    assert "a&lt;b&gt;/availability" in body["text"]


@pytest.mark.anyio
async def test_slack_sends_channel_and_username_for_legacy_webhooks() -> None:
    with SlackFake() as fake:
        config = slack.SlackConfig(
            webhook_url=SecretRef(value=fake.webhook_url), channel="#deploys", username="budgetguard"
        )
        async with slack.build("chat", config) as action:
            await action.deliver(TRIGGER)
        [posted] = fake.messages
    assert (posted["channel"], posted["username"]) == ("#deploys", "budgetguard")


@pytest.mark.anyio
async def test_slack_does_not_deduplicate_so_each_delivery_is_a_message() -> None:
    with SlackFake() as fake:
        config = slack.SlackConfig(webhook_url=SecretRef(value=fake.webhook_url))
        async with slack.build("chat", config) as action:
            await action.deliver(TRIGGER)
            await action.deliver(TRIGGER)
        assert len(fake.messages) == 2  # why the outbox, not Slack, must guarantee once


@pytest.mark.anyio
async def test_slack_a_removed_webhook_fails_with_a_hint() -> None:
    with SlackFake() as fake:
        config = slack.SlackConfig(webhook_url=SecretRef(value=fake.url + "/services/T0/B0/revoked"))
        async with slack.build("chat", config) as action:
            result = await action.deliver(TRIGGER)
    assert (result.outcome, result.status) == (ActionOutcome.FAILED, 404)
    assert "no_service" in result.detail
    assert "create a new incoming webhook" in result.detail


@pytest.mark.anyio
async def test_the_slack_fake_answers_invalid_payload_to_a_body_without_text() -> None:
    with SlackFake() as fake:
        async with httpx.AsyncClient() as client:
            response = await client.post(fake.webhook_url, json={"blocks": []})
        assert (response.status_code, response.text) == (400, "invalid_payload")
        assert fake.messages == []


def test_slack_refuses_a_webhook_url_that_is_not_a_url_without_quoting_it() -> None:
    config = slack.SlackConfig(webhook_url=SecretRef(value="hooks.slack.com/services/T0/B0/s3cr3t"))
    with pytest.raises(ConfigError) as caught:
        slack.build("chat", config)
    assert "s3cr3t" not in str(caught.value)


# --- PagerDuty -----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_pagerduty_trigger_then_resolve_with_one_dedup_key_closes_the_incident() -> None:
    with PagerDutyFake(routing_keys=[ROUTING_KEY]) as fake:
        config = pagerduty.PagerDutyConfig(routing_key=SecretRef(value=ROUTING_KEY), url=fake.events_url)
        async with pagerduty.build("pager", config) as action:
            triggered = await action.deliver(TRIGGER)
            assert [i.status for i in fake.incidents.values()] == ["triggered"]
            resolved = await action.deliver(RESOLVE)
        key = pagerduty.dedup_key(TRIGGER)
        assert (triggered.status, resolved.status) == (202, 202)
        assert f"Event processed dedup_key {key}" in triggered.detail
        incident = fake.incidents[key]
        assert incident.status == "resolved"
        assert incident.actions == ("trigger", "resolve")
        trigger_body, resolve_body = (r.json for r in fake.requests)
    assert trigger_body["dedup_key"] == resolve_body["dedup_key"] == key
    assert resolve_body == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": key}
    assert trigger_body["payload"]["severity"] == "critical"
    assert trigger_body["payload"]["source"] == "budgetguard"
    assert trigger_body["payload"]["component"] == "checkout"
    assert trigger_body["payload"]["timestamp"] == "2024-05-01T10:00:00Z"
    assert trigger_body["payload"]["custom_details"]["burn_rate_1h"] == 16.2
    assert TRIGGER.reason in trigger_body["payload"]["summary"]


@pytest.mark.anyio
async def test_pagerduty_a_redelivered_trigger_pages_once() -> None:
    with PagerDutyFake() as fake:
        config = pagerduty.PagerDutyConfig(routing_key=SecretRef(value=ROUTING_KEY), url=fake.events_url)
        async with pagerduty.build("pager", config) as action:
            results = [await action.deliver(TRIGGER) for _ in range(2)]
        assert [r.outcome for r in results] == [ActionOutcome.DELIVERED] * 2
        assert fake.opened == 1


def test_pagerduty_dedup_key_comes_from_the_incident_and_fits_255_characters() -> None:
    assert pagerduty.dedup_key(TRIGGER) == pagerduty.dedup_key(RESOLVE) == "budgetguard/inc-42"
    long = replace(TRIGGER, incident_id="x" * 300)
    key = pagerduty.dedup_key(long)
    assert len(key) <= 255
    assert key == pagerduty.dedup_key(replace(long, event=EventKind.RESOLVE))


@pytest.mark.anyio
async def test_pagerduty_an_invalid_event_fails_with_the_errors_listed() -> None:
    with PagerDutyFake(routing_keys=["another-integration-key-000000000"]) as fake:
        config = pagerduty.PagerDutyConfig(routing_key=SecretRef(value=ROUTING_KEY), url=fake.events_url)
        async with pagerduty.build("pager", config) as action:
            result = await action.deliver(TRIGGER)
    assert (result.outcome, result.status) == (ActionOutcome.FAILED, 400)
    assert "Event object is invalid (Invalid routing key)" in result.detail
    assert ROUTING_KEY not in result.detail


PAGERDUTY_INVALID = [
    pytest.param({"event_action": "trigger"}, "'routing_key' is missing or blank", id="no routing key"),
    pytest.param(
        {"routing_key": "k", "event_action": "trigger", "payload": {"source": "s", "severity": "info"}},
        "'payload.summary' is missing or blank",
        id="a trigger without a summary",
    ),
    pytest.param(
        {"routing_key": "k", "event_action": "resolve"},
        "'dedup_key' is missing or blank",
        id="a resolve without dedup_key",
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("event", "error"), PAGERDUTY_INVALID)
async def test_the_pagerduty_fake_rejects_invalid_events_like_pagerduty(
    event: dict[str, Any], error: str
) -> None:
    with PagerDutyFake() as fake:
        async with httpx.AsyncClient() as client:
            response = await client.post(fake.events_url, json=event)
        assert response.status_code == 400
        body = response.json()
        assert (body["status"], body["message"]) == ("invalid event", "Event object is invalid")
        assert error in body["errors"]
        assert fake.incidents == {}


# --- Alertmanager --------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_alertmanager_trigger_fires_an_alert_and_resolve_resolves_it() -> None:
    with AlertmanagerFake() as fake:
        config = alertmanager.AlertmanagerConfig(
            url=fake.url, labels={"severity": "page", "team": "payments"}
        )
        async with alertmanager.build("am", config) as action:
            assert (await action.deliver(TRIGGER)).status == 200
            async with httpx.AsyncClient() as client:
                listed = (await client.get(fake.url + "/api/v2/alerts")).json()
            assert [a["labels"] for a in listed] == [
                {
                    "alertname": "BudgetguardCanaryBurning",
                    "service": "checkout",
                    "slo": "availability",
                    "severity": "page",
                    "team": "payments",
                    "canary_label": "version",
                    "canary": "v2",
                }
            ]
            assert listed[0]["annotations"]["baseline"] == "v1"
            assert listed[0]["annotations"]["description"] == TRIGGER.reason
            assert listed[0]["annotations"]["incident_id"] == "inc-42"
            assert (await action.deliver(RESOLVE)).outcome is ActionOutcome.DELIVERED
        assert fake.active() == []
        alert = fake.find(service="checkout")
        assert alert is not None and not alert.active(datetime.now(tz=UTC))
        assert alert.starts_at == AT  # the resolve kept the alert's original start


@pytest.mark.anyio
async def test_alertmanager_a_trigger_expires_unless_resent() -> None:
    now = datetime(2024, 5, 1, 10, 3, tzinfo=UTC)
    with AlertmanagerFake(clock=lambda: now) as fake:
        config = alertmanager.AlertmanagerConfig(url=fake.url, resend_interval="30s")
        async with alertmanager.build("am", config, clock=lambda: now) as action:
            assert action.needs_resend() == timedelta(seconds=30)
            await action.deliver(TRIGGER)
        [posted] = fake.requests[0].json
        [alert] = fake.alerts
    assert posted["startsAt"] == "2024-05-01T10:00:00Z"
    assert posted["endsAt"] == "2024-05-01T10:05:00Z"  # now + 4 x resend_interval
    assert alert.active(now + timedelta(minutes=1)) and not alert.active(now + timedelta(minutes=2))


@pytest.mark.anyio
async def test_alertmanager_a_400_shows_the_go_error_text_not_its_json_quoting() -> None:
    error = 'invalid label set: invalid name "1x"'
    async with target(
        "alertmanager", Answer(400, json.dumps(error), {"Content-Type": "application/json"})
    ) as t:
        result = await t.action.deliver(TRIGGER)
    assert result.outcome is ActionOutcome.FAILED
    assert result.detail == f"alertmanager alertmanager: HTTP 400 {error}"


@pytest.mark.anyio
async def test_alertmanager_sends_basic_auth() -> None:
    with AlertmanagerFake() as fake:
        config = alertmanager.AlertmanagerConfig(
            url=fake.url + "/", basic_auth={"username": "budgetguard", "password": PASSWORD}
        )
        async with alertmanager.build("am", config) as action:
            await action.deliver(TRIGGER)
        [request] = fake.requests
    assert request.path == "/api/v2/alerts"
    assert (
        request.header("authorization")
        == "Basic " + base64.b64encode(f"budgetguard:{PASSWORD}".encode()).decode()
    )


@pytest.mark.anyio
async def test_the_alertmanager_fake_stores_the_valid_alerts_of_a_batch_it_rejects() -> None:
    valid = {"labels": {"alertname": "A"}, "endsAt": "2999-01-01T00:00:00Z"}
    backwards = {
        "labels": {"alertname": "B"},
        "startsAt": "2024-05-01T10:00:00Z",
        "endsAt": "2024-05-01T09:00:00Z",
    }
    with AlertmanagerFake() as fake:
        async with httpx.AsyncClient() as client:
            response = await client.post(fake.url + "/api/v2/alerts", json=[valid, backwards, {"labels": {}}])
        assert response.status_code == 400
        assert isinstance(response.json(), str)
        assert "start time must be before end time" in response.json()
        assert [a.labels for a in fake.active()] == [{"alertname": "A"}]


ALERTMANAGER_CONFIG_ERRORS = [
    pytest.param(
        {"labels": {"service": "x"}}, "set by budgetguard", id="a label budgetguard sets cannot be overridden"
    ),
    pytest.param({"labels": {"1x": "y"}}, "invalid label names", id="an invalid label name is refused"),
    pytest.param(
        {"bearer_token": "t", "basic_auth": {"username": "u", "password": "p"}},
        "not both",
        id="one kind of auth only",
    ),
    pytest.param({"url": "http://am:9093/?x=1"}, "query string", id="a base url with a query is refused"),
]


@pytest.mark.parametrize(("fields", "message"), ALERTMANAGER_CONFIG_ERRORS)
def test_alertmanager_config_mistakes_are_caught_at_load(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        alertmanager.AlertmanagerConfig.model_validate({"url": "http://am:9093", **fields})


# --- secrets -------------------------------------------------------------------------------------------


def test_secrets_are_absent_from_config_reprs() -> None:
    configs: list[tuple[object, str]] = [
        (
            webhook.WebhookConfig(
                url="https://h.example", secret=WHSEC, headers={"Authorization": "Bearer tok-9"}
            ),
            WHSEC,
        ),
        (webhook.WebhookConfig(url="https://h.example", headers={"Authorization": "Bearer tok-9"}), "tok-9"),
        (slack.SlackConfig(webhook_url="https://hooks.slack.com/services/T0/B0/s3cr3t"), "s3cr3t"),
        (pagerduty.PagerDutyConfig(routing_key=ROUTING_KEY), ROUTING_KEY),
        (alertmanager.AlertmanagerConfig(url="http://am:9093", bearer_token=TOKEN), TOKEN),
        (
            alertmanager.AlertmanagerConfig(
                url="http://am:9093", basic_auth={"username": "u", "password": PASSWORD}
            ),
            PASSWORD,
        ),
    ]
    for config, secret in configs:
        assert secret not in repr(config)
        assert secret not in str(config)


def echo(request: httpx.Request) -> httpx.Response:
    """A misbehaving server (or proxy) that echoes the whole request in its error body."""
    text = f"{request.url} {dict(request.headers)} {request.content.decode()}"
    return httpx.Response(400, text=text)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_a_server_echoing_the_request_does_not_put_secrets_in_the_result(kind: str) -> None:
    async with target(kind, transport=httpx.MockTransport(echo)) as t:
        result = await t.action.deliver(TRIGGER)
    assert result.outcome is ActionOutcome.FAILED
    assert "[redacted]" in result.detail
    for secret in t.secrets:
        assert secret not in result.detail


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_a_secret_cut_by_the_detail_length_limit_leaves_no_fragment(kind: str) -> None:
    echoed: dict[str, str] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        # The body is cut at 297 characters: redacting after the cut would leave the secret's first six.
        return httpx.Response(400, text="x" * 291 + echoed["secret"])

    async with target(kind, transport=httpx.MockTransport(handler)) as t:
        echoed["secret"] = t.secrets[-1]
        result = await t.action.deliver(TRIGGER)
    assert result.detail.endswith("x[redac...")
    assert t.secrets[-1][:6] not in result.detail


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_secrets_never_reach_the_logs_not_even_httpx_request_log(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with target(kind, 503) as t:
        results = [await t.action.deliver(TRIGGER), await t.action.deliver(TRIGGER)]
    assert [r.outcome for r in results] == [ActionOutcome.RETRY, ActionOutcome.DELIVERED]
    assert any(r.name == "httpx" for r in caplog.records)  # the request log did run
    for secret in t.secrets:
        assert secret not in caplog.text
        assert all(secret not in r.detail for r in results)


# --- the fakes themselves ------------------------------------------------------------------------------


def test_a_fake_wait_is_bounded() -> None:
    with SlackFake() as fake:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="0 of 1 requests"):
            fake.wait_for(1, timedelta(seconds=0.2))
        assert time.monotonic() - started < 2


def test_a_fake_listens_on_loopback_only_and_releases_its_port() -> None:
    with WebhookReceiver() as fake:
        url = fake.url
    assert url.startswith("http://127.0.0.1:")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", int(url.rsplit(":", 1)[1])))  # free again once the fake closed


def test_the_receiver_rejects_a_body_changed_after_signing() -> None:
    with WebhookReceiver(WHSEC) as receiver:
        timestamp = str(int(time.time()))
        body = b'{"type":"budgetguard.incident.triggered"}'
        headers = {
            "webhook-id": "msg_1",
            "webhook-timestamp": timestamp,
            "webhook-signature": expected_signature(WHSEC, "msg_1", timestamp, body),
        }
        with httpx.Client() as client:
            tampered = client.post(
                receiver.endpoint, content=body.replace(b"triggered", b"resolved"), headers=headers
            )
            genuine = client.post(receiver.endpoint, content=body, headers=headers)
        assert (tampered.status_code, genuine.status_code) == (401, 200)
        assert len(receiver.deliveries) == 1
