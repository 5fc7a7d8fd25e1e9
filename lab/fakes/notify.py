"""Faithful fakes of the notification targets: Standard Webhooks receiver, Slack, PagerDuty, Alertmanager.

Owns one loopback HTTP server per fake, the record of what each received, and each service's observable
behaviour (reference integrations.md §7.2–7.4 and §8):

- ``WebhookReceiver``: verifies Standard Webhooks signatures over the raw bytes, rejects a timestamp
  more than 5 minutes off with 400, and answers a repeated ``webhook-id`` with 200 and no second effect.
- ``SlackFake``: one incoming webhook; 200 with the text body ``ok``; plain-text error codes
  (``invalid_payload`` for a body without text, ``no_service`` for an unknown webhook path); posts are
  not deduplicated, exactly like Slack.
- ``PagerDutyFake``: Events API v2; 202 with the ``dedup_key``; incidents kept by ``dedup_key``
  (trigger opens, resolve closes, repeats are no-ops); 400 ``invalid event`` with an ``errors`` list.
- ``AlertmanagerFake``: API v2; alerts kept by label set, resolved once ``endsAt`` passes; 200 with an
  empty body; 400 with a JSON *string* body, valid alerts of the batch still stored; ``/api/v1`` is 410.

Every fake can be scripted (``script=[503, 503, 200]``, ``Answer(429, headers={"Retry-After": "1"})``,
``Answer(200, delay=...)`` for timeouts, ``Answer(0, drop=True)`` for a connection closed without an
answer). A scripted int of 2xx means "answer as the service would"; any other scripted answer replaces
the service's behaviour for that one request, with no effect on its state.

Must not: listen anywhere but 127.0.0.1, wait without a deadline (handler delays end when the fake
closes; socket reads time out), leave a thread or socket behind once closed, or import budgetguard.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from lab.fakes._server import LoopbackServer

__all__ = [
    "AlertmanagerFake",
    "Answer",
    "FakeService",
    "PagerDutyFake",
    "PagerDutyIncident",
    "Recorded",
    "SlackFake",
    "StoredAlert",
    "WebhookReceiver",
]

log = logging.getLogger(__name__)

_DEFAULT_WAIT = timedelta(seconds=5)


def _utcnow() -> datetime:
    return datetime.now(tz=UTC)


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Recorded:
    """One request a fake received, and the status it answered (0: the connection was dropped)."""

    method: str
    path: str  # with the query string, as sent
    headers: Mapping[str, str]  # names lower-cased; a repeated header keeps its last value
    body: bytes  # the raw bytes, exactly as received
    json: Any  # the parsed body, or None when it is not JSON
    status: int = 0

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class Answer:
    """What a fake sends back. ``accepted`` marks an answer that changed the fake's state."""

    status: int
    body: bytes | str = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: timedelta = timedelta(0)  # wait this long before answering (ended early by close())
    drop: bool = False  # close the connection without answering
    accepted: bool = False

    @property
    def content(self) -> bytes:
        return self.body.encode("utf-8") if isinstance(self.body, str) else self.body


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


def _json_answer(status: int, value: Any, *, accepted: bool = False) -> Answer:
    return Answer(status, json.dumps(value), {"Content-Type": "application/json"}, accepted=accepted)


def _text_answer(status: int, text: str, *, accepted: bool = False) -> Answer:
    return Answer(status, text, {"Content-Type": "text/plain; charset=utf-8"}, accepted=accepted)


class FakeService(LoopbackServer):
    """A loopback HTTP server that records requests and answers through ``_respond`` (or a script).

    Use it as a context manager (or ``start()`` and ``close()``). Thread-safe: handlers run in their own
    threads, and ``_respond`` is called with the fake's lock held, so subclasses keep simple state.
    """

    service = "fake"

    def __init__(
        self, *, script: Iterable[int | Answer] = (), clock: Callable[[], datetime] = _utcnow
    ) -> None:
        super().__init__(name=f"fake-{self.service}")
        self.clock = clock
        self._script: deque[int | Answer] = deque(script)
        self._requests: list[Recorded] = []
        self._accepted: list[Recorded] = []
        self._changed = threading.Condition()

    # --- what tests read and steer --------------------------------------------------------------------

    @property
    def requests(self) -> list[Recorded]:
        """Every request received, in order, whatever was answered."""
        with self._changed:
            return list(self._requests)

    @property
    def accepted(self) -> list[Recorded]:
        """The requests that had an effect (a delivery, a message, an event, stored alerts)."""
        with self._changed:
            return list(self._accepted)

    def script(self, *answers: int | Answer) -> None:
        """Queue answers for the next requests, before the service's own behaviour resumes."""
        with self._changed:
            self._script.extend(answers)

    def wait_for(
        self, count: int, timeout: timedelta = _DEFAULT_WAIT, *, accepted: bool = False
    ) -> list[Recorded]:
        """Block until ``count`` requests (or accepted ones) arrived; TimeoutError after ``timeout``."""
        with self._changed:
            seen = self._accepted if accepted else self._requests
            if not self._changed.wait_for(lambda: len(seen) >= count, timeout.total_seconds()):
                kind = "accepted requests" if accepted else "requests"
                raise TimeoutError(
                    f"the {self.service} fake saw {len(seen)} of {count} {kind} within {timeout}"
                )
            return list(seen)

    # --- what subclasses implement ------------------------------------------------------------------

    def _respond(self, request: Recorded) -> Answer:
        """The service's own answer to a request (called with the lock held)."""
        return _text_answer(404, "404 page not found")

    def _canned(self, status: int) -> Answer:
        """The answer to a scripted bare status: the body the service sends with it."""
        return _text_answer(status, _phrase(status))

    # --- plumbing -------------------------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length > 0 else b""
        try:
            parsed: Any = json.loads(body) if body else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            parsed = None
        incoming = Recorded(
            method=handler.command,
            path=handler.path,
            headers={name.lower(): value for name, value in handler.headers.items()},
            body=body,
            json=parsed,
        )
        with self._changed:
            entry = self._script.popleft() if self._script else None
            if isinstance(entry, Answer):
                answer = replace(entry, accepted=False)
            elif entry is not None and not 200 <= entry < 300:
                answer = self._canned(entry)
            else:
                answer = self._respond(incoming)
            record = replace(incoming, status=0 if answer.drop else answer.status)
            self._requests.append(record)
            if answer.accepted:
                self._accepted.append(record)
            self._changed.notify_all()
        if answer.delay > timedelta(0) and self.closing.wait(answer.delay.total_seconds()):
            answer = replace(answer, drop=True)
        if answer.drop:
            # Linger 0: the close resets the connection instead of a graceful FIN where it can.
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            handler.close_connection = True
            return
        content = answer.content
        try:
            handler.send_response(answer.status)
            for name, value in answer.headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(content)))
            handler.end_headers()
            handler.wfile.write(content)
        except OSError:
            log.debug("the %s fake's client hung up before the answer", self.service)


# --- Standard Webhooks receiver ------------------------------------------------------------------------


def _webhook_key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode("utf-8")


class WebhookReceiver(FakeService):
    """A receiver of budgetguard's signed webhooks, as the Standard Webhooks spec asks receivers to be.

    With a ``secret``: requires ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``
    (400 if missing), rejects a timestamp further than ``tolerance`` from now (400), verifies any of the
    space-separated ``v1,`` signatures over ``{id}.{timestamp}.{raw body}`` in constant time (401). A
    ``webhook-id`` (or, unsigned, an ``Idempotency-Key``) seen before gets 200 without a second
    delivery. Deliveries are answered 200 and listed in ``deliveries``.
    """

    service = "webhook"

    def __init__(
        self,
        secret: str | None = None,
        *,
        path: str = "/hooks/budgetguard",
        tolerance: timedelta = timedelta(minutes=5),
        script: Iterable[int | Answer] = (),
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        super().__init__(script=script, clock=clock)
        self.path = path
        self.tolerance = tolerance
        self._key = _webhook_key(secret) if secret is not None else None
        self._seen: set[str] = set()

    @property
    def endpoint(self) -> str:
        """The URL to configure: ``url`` + ``path``."""
        return self.url + self.path

    @property
    def deliveries(self) -> list[Recorded]:
        """One record per distinct delivery accepted (duplicates and rejections excluded)."""
        return self.accepted

    def _respond(self, request: Recorded) -> Answer:
        if urlsplit(request.path).path != self.path:
            return _text_answer(404, "not found")
        if request.method != "POST":
            return _text_answer(405, "method not allowed")
        delivery_id = request.header("webhook-id")
        if self._key is not None:
            problem = self._verify(request)
            if problem is not None:
                return problem
        elif delivery_id is None and (key := request.header("idempotency-key")) is not None:
            delivery_id = key.strip('"')
        if delivery_id is not None:
            if delivery_id in self._seen:
                return _text_answer(200, "duplicate: already processed")
            self._seen.add(delivery_id)
        return _text_answer(200, "", accepted=True)

    def _verify(self, request: Recorded) -> Answer | None:
        assert self._key is not None
        msg_id = request.header("webhook-id")
        timestamp = request.header("webhook-timestamp")
        signatures = request.header("webhook-signature")
        if not msg_id or not timestamp or not signatures:
            return _text_answer(400, "missing webhook-id, webhook-timestamp or webhook-signature")
        if not re.fullmatch(r"\d+", timestamp):
            return _text_answer(400, "invalid webhook-timestamp")
        sent = datetime.fromtimestamp(int(timestamp), tz=UTC)
        if abs(self.clock() - sent) > self.tolerance:
            return _text_answer(400, "webhook-timestamp is too old or too new")
        signed = f"{msg_id}.{timestamp}.".encode() + request.body
        expected = base64.b64encode(hmac.new(self._key, signed, hashlib.sha256).digest())
        for candidate in signatures.split(" "):
            version, _, value = candidate.partition(",")
            if version == "v1" and hmac.compare_digest(value.encode("ascii", "replace"), expected):
                return None
        return _text_answer(401, "no matching signature")


# --- Slack incoming webhook ----------------------------------------------------------------------------

_SLACK_ERRORS = {
    400: "invalid_payload",
    403: "action_prohibited",
    404: "no_service",
    410: "channel_is_archived",
    429: "rate_limited",
    500: "rollup_error",
}


class SlackFake(FakeService):
    """One Slack incoming webhook at ``webhook_url`` (``/services/T…/B…/<token>``).

    A JSON body (or a form with ``payload=``) with a non-empty ``text`` is posted and answered 200
    ``ok``; without text, or not JSON, 400 ``invalid_payload``; any other path 404 ``no_service``.
    Every accepted post is a new message, duplicates included (Slack does not deduplicate).
    """

    service = "slack"

    def __init__(
        self, *, script: Iterable[int | Answer] = (), clock: Callable[[], datetime] = _utcnow
    ) -> None:
        super().__init__(script=script, clock=clock)
        self.path = f"/services/TFAKE0001/BFAKE0001/{secrets.token_urlsafe(18)}"

    @property
    def webhook_url(self) -> str:
        """The secret URL to configure."""
        return self.url + self.path

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The bodies of the posted messages, in order."""
        return [self._message(r) or {} for r in self.accepted]

    @staticmethod
    def _message(request: Recorded) -> dict[str, Any] | None:
        if isinstance(request.json, dict):
            return request.json
        if (request.header("content-type") or "").startswith("application/x-www-form-urlencoded"):
            payload = parse_qs(request.body.decode("utf-8", "replace")).get("payload")
            if payload:
                try:
                    value = json.loads(payload[0])
                except json.JSONDecodeError:
                    return None
                return value if isinstance(value, dict) else None
        return None

    def _canned(self, status: int) -> Answer:
        return _text_answer(status, _SLACK_ERRORS.get(status, "unknown_error"))

    def _respond(self, request: Recorded) -> Answer:
        if request.path != self.path:
            return _text_answer(404, "no_service")
        if request.method != "POST":
            return _text_answer(405, "invalid_method")
        message = self._message(request)
        text = message.get("text") if message is not None else None
        if not isinstance(text, str) or not text.strip():
            return _text_answer(400, "invalid_payload")
        return _text_answer(200, "ok", accepted=True)


# --- PagerDuty Events API v2 ---------------------------------------------------------------------------

_PD_SEVERITIES = frozenset({"critical", "error", "warning", "info"})
_PD_ACTIONS = frozenset({"trigger", "acknowledge", "resolve"})


@dataclass(frozen=True)
class PagerDutyIncident:
    """The state of the alert behind one ``dedup_key`` (the latest one, if it was re-opened)."""

    dedup_key: str
    status: str  # "triggered" | "acknowledged" | "resolved"
    summary: str
    severity: str
    source: str
    routing_key: str
    custom_details: Mapping[str, Any]
    actions: tuple[str, ...]  # the event actions that changed it, in order


class PagerDutyFake(FakeService):
    """PagerDuty's Events API v2 at ``events_url`` (``/v2/enqueue``).

    Validates like PagerDuty: 400 ``{"status":"invalid event","message":"Event object is invalid",
    "errors":[…]}`` for a missing ``routing_key``, ``event_action``, trigger ``payload.summary`` /
    ``source`` / ``severity``, or a resolve without ``dedup_key``; 400 ``Unrecognized object`` for a
    body that is not JSON. Otherwise 202 ``{"status":"success","message":"Event processed",
    "dedup_key":…}``. A trigger opens an incident (or is a no-op on an open one), a resolve closes it
    (a no-op on an unknown or resolved one); a trigger on a resolved key opens a new incident.
    ``routing_keys``, when given, are the only integration keys that exist.
    """

    service = "pagerduty"
    path = "/v2/enqueue"

    def __init__(
        self,
        *,
        routing_keys: Iterable[str] | None = None,
        script: Iterable[int | Answer] = (),
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        super().__init__(script=script, clock=clock)
        self.routing_keys = frozenset(routing_keys) if routing_keys is not None else None
        self._incidents: dict[str, PagerDutyIncident] = {}
        self.opened = 0  # incidents ever opened: a re-opened key counts again

    @property
    def events_url(self) -> str:
        return self.url + self.path

    @property
    def incidents(self) -> dict[str, PagerDutyIncident]:
        with self._changed:
            return dict(self._incidents)

    def _canned(self, status: int) -> Answer:
        if status >= 500:
            return _text_answer(status, _phrase(status))
        return _json_answer(status, {"status": _phrase(status), "message": _phrase(status), "errors": []})

    def _respond(self, request: Recorded) -> Answer:
        if urlsplit(request.path).path != self.path:
            return _json_answer(404, {"status": "not found", "message": "Not Found"})
        if request.method != "POST":
            return _json_answer(405, {"status": "method not allowed", "message": "Method Not Allowed"})
        event = request.json
        if not isinstance(event, dict):
            return _json_answer(
                400,
                {
                    "status": "Unrecognized object",
                    "message": "Event object format is unrecognized",
                    "errors": ["JSON parse error"],
                },
            )
        errors = self._validate(event)
        if errors:
            return _json_answer(
                400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
            )
        action = event["event_action"]
        key = event.get("dedup_key") or secrets.token_hex(16)
        changed = self._apply(action, key, event)
        return _json_answer(
            202, {"status": "success", "message": "Event processed", "dedup_key": key}, accepted=changed
        )

    def _validate(self, event: dict[str, Any]) -> list[str]:
        errors: list[str] = []
        routing_key = event.get("routing_key")
        if not isinstance(routing_key, str) or not routing_key:
            errors.append("'routing_key' is missing or blank")
        elif self.routing_keys is not None and routing_key not in self.routing_keys:
            errors.append("Invalid routing key")
        action = event.get("event_action")
        if action not in _PD_ACTIONS:
            errors.append("'event_action' is missing or invalid")
        dedup = event.get("dedup_key")
        if dedup is not None and (not isinstance(dedup, str) or len(dedup) > 255):
            errors.append("'dedup_key' must be a string of at most 255 characters")
        if action in ("acknowledge", "resolve") and not dedup:
            errors.append("'dedup_key' is missing or blank")
        if action == "trigger":
            payload = event.get("payload")
            if not isinstance(payload, dict):
                errors.append("'payload' is missing or invalid")
            else:
                for name in ("summary", "source"):
                    value = payload.get(name)
                    if not isinstance(value, str) or not value.strip():
                        errors.append(f"'payload.{name}' is missing or blank")
                if payload.get("severity") not in _PD_SEVERITIES:
                    errors.append("'payload.severity' is missing or invalid")
        return errors

    def _apply(self, action: str, key: str, event: dict[str, Any]) -> bool:
        current = self._incidents.get(key)
        is_open = current is not None and current.status != "resolved"
        if action == "trigger":
            if is_open:
                return False  # deduplicated into the open alert
            payload = event["payload"]
            details = payload.get("custom_details")
            self._incidents[key] = PagerDutyIncident(
                dedup_key=key,
                status="triggered",
                summary=payload["summary"],
                severity=payload["severity"],
                source=payload["source"],
                routing_key=event["routing_key"],
                custom_details=dict(details) if isinstance(details, dict) else {},
                actions=("trigger",),
            )
            self.opened += 1
            return True
        if current is None or not is_open:
            return False
        if action == "acknowledge" and current.status == "acknowledged":
            return False
        status = "acknowledged" if action == "acknowledge" else "resolved"
        self._incidents[key] = replace(current, status=status, actions=(*current.actions, action))
        return True


# --- Alertmanager API v2 -------------------------------------------------------------------------------

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


@dataclass(frozen=True)
class StoredAlert:
    """One alert as Alertmanager keeps it: identity is the label set."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime
    updated_at: datetime
    generator_url: str = ""
    timeout: bool = False  # endsAt was missing and set to now + resolve_timeout

    @property
    def fingerprint(self) -> str:
        text = "\xff".join(f"{k}\xff{v}" for k, v in sorted(self.labels.items()))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def active(self, now: datetime) -> bool:
        return self.ends_at > now


def _parse_time(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{what}: not a string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f'parsing time "{value}" as "2006-01-02T15:04:05Z07:00": cannot parse') from exc
    if parsed.tzinfo is None:
        raise ValueError(f'parsing time "{value}": missing time zone')
    return parsed


class AlertmanagerFake(FakeService):
    """Alertmanager's API v2 for alerts, with its validation and its lifecycle.

    ``POST /api/v2/alerts`` takes a JSON list of postable alerts. Empty-valued labels are dropped;
    an alert without labels, with an invalid label name, an unparsable time or ``endsAt`` before
    ``startsAt`` is rejected, and the batch is answered 400 with a JSON string joining the errors, while
    its valid alerts are still stored (the handler's "best effort"). A missing ``startsAt`` is now; a
    missing ``endsAt`` is now + ``resolve_timeout``. The same label set updates one alert (earliest
    ``startsAt`` kept while it is active); an alert is resolved once ``endsAt`` is not after now.
    ``GET /api/v2/alerts`` lists active alerts (``filter=name="value"`` matchers supported).
    ``/api/v1/*`` answers 410, as since v0.27.0.
    """

    service = "alertmanager"

    def __init__(
        self,
        *,
        resolve_timeout: timedelta = timedelta(minutes=5),
        script: Iterable[int | Answer] = (),
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        super().__init__(script=script, clock=clock)
        self.resolve_timeout = resolve_timeout
        self._alerts: dict[tuple[tuple[str, str], ...], StoredAlert] = {}

    @property
    def alerts(self) -> list[StoredAlert]:
        """Every alert kept, resolved ones included."""
        with self._changed:
            return list(self._alerts.values())

    def active(self) -> list[StoredAlert]:
        now = self.clock()
        return [a for a in self.alerts if a.active(now)]

    def find(self, **labels: str) -> StoredAlert | None:
        """The one alert whose labels include these, or None (ValueError if several match)."""
        found = [a for a in self.alerts if all(a.labels.get(k) == v for k, v in labels.items())]
        if len(found) > 1:
            raise ValueError(f"{len(found)} alerts match {labels}")
        return found[0] if found else None

    def _canned(self, status: int) -> Answer:
        return _json_answer(status, _phrase(status))

    def _respond(self, request: Recorded) -> Answer:
        path = urlsplit(request.path).path
        if path.startswith("/api/v1/"):
            return _json_answer(410, {"status": "deprecated", "error": "The Alertmanager v1 API was removed"})
        if path in {"/-/ready", "/-/healthy"}:
            return _text_answer(200, "OK")
        if path != "/api/v2/alerts":
            return _text_answer(404, "404 page not found")
        if request.method == "GET":
            return self._list(request)
        if request.method != "POST":
            return _text_answer(405, "method not allowed")
        if not isinstance(request.json, list):
            return _json_answer(400, "json: cannot unmarshal into Go value of type models.PostableAlerts")
        now = self.clock()
        errors: list[str] = []
        stored = 0
        for item in request.json:
            try:
                alert = self._validated(item, now)
            except ValueError as exc:
                errors.append(str(exc))
                continue
            self._store(alert, now)
            stored += 1
        if errors:
            return _json_answer(400, "; ".join(errors), accepted=stored > 0)
        return Answer(200, b"", accepted=stored > 0)

    def _validated(self, item: Any, now: datetime) -> StoredAlert:
        if not isinstance(item, dict):
            raise ValueError("alert is not an object")
        raw_labels = item.get("labels")
        if not isinstance(raw_labels, dict):
            raise ValueError("labels.required: labels in body is required")
        labels = {str(k): str(v) for k, v in raw_labels.items() if v not in ("", None)}
        if not labels:
            raise ValueError("at least one label pair required")
        for name in labels:
            if not _LABEL_NAME.match(name):
                raise ValueError(f'invalid label set: invalid name "{name}"')
        starts = _parse_time(item["startsAt"], "startsAt") if item.get("startsAt") else now
        timeout = not item.get("endsAt")
        ends = now + self.resolve_timeout if timeout else _parse_time(item["endsAt"], "endsAt")
        if ends < starts:
            raise ValueError("start time must be before end time")
        annotations = item.get("annotations") or {}
        return StoredAlert(
            labels=labels,
            annotations={str(k): str(v) for k, v in annotations.items()}
            if isinstance(annotations, dict)
            else {},
            starts_at=starts,
            ends_at=ends,
            updated_at=now,
            generator_url=str(item.get("generatorURL") or ""),
            timeout=timeout,
        )

    def _store(self, alert: StoredAlert, now: datetime) -> None:
        identity = tuple(sorted(alert.labels.items()))
        old = self._alerts.get(identity)
        if old is not None and old.active(now) and old.starts_at < alert.starts_at:
            alert = replace(alert, starts_at=old.starts_at)
        self._alerts[identity] = alert

    def _list(self, request: Recorded) -> Answer:
        now = self.clock()
        matchers: list[tuple[str, str]] = []
        for text in parse_qs(urlsplit(request.path).query).get("filter", []):
            match = re.fullmatch(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"([^"]*)"\s*', text)
            if match is None:
                return _json_answer(400, f"bad matcher format: {text}")
            matchers.append((match.group(1), match.group(2)))
        listed = [
            {
                "labels": dict(a.labels),
                "annotations": dict(a.annotations),
                "startsAt": _rfc3339(a.starts_at),
                "endsAt": _rfc3339(a.ends_at),
                "updatedAt": _rfc3339(a.updated_at),
                "fingerprint": a.fingerprint,
                "receivers": [{"name": "default"}],
                "status": {"state": "active", "silencedBy": [], "inhibitedBy": [], "mutedBy": []},
                "generatorURL": a.generator_url,
            }
            for a in self._alerts.values()
            if a.active(now) and all(a.labels.get(k) == v for k, v in matchers)
        ]
        return _json_answer(200, listed)
