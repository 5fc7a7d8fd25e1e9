"""Bounds on what a request may make the daemon do: body size, parameters and JSON nesting.

The HTTP surface runs in the daemon's own event loop, beside the cycle that decides rollbacks. A
50 MB body to a gate was read and parsed there before its token was checked (RSS to 223 MB, /healthz
stalled 1.4 s); ``?limit=-5``, ``?since=999999999999d`` and a 100,000-deep JSON body answered 500 and
reset the connection. This module owns the refusals:

- ``BodyLimit``, ASGI middleware: a body over ``max_bytes`` is refused with 413, from its
  Content-Length before a byte is read, or as soon as a chunked body passes the limit. Where the
  token can only come from a header, a request without it is refused with 401 first, before the
  body is read at all.
- ``query_int``, ``query_duration``, ``json_object``: read one parameter or body, or raise
  ``BadParameter`` naming it, which the routes answer with 400.

It decides nothing about the guard and reads no state.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from budgetguard.core.durations import parse_duration

DEFAULT_MAX_BODY = 1024 * 1024


class BadParameter(ValueError):
    """One query parameter or body field cannot be used; ``parameter`` names it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


class _TooLarge(Exception):
    """Raised from ``receive`` when a body grows past the limit, to stop the app reading it."""


def _json_error(status: int, message: str, **extra: Any) -> tuple[Message, Message]:
    body = json.dumps({"error": message, **extra}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="budgetguard"'))
    if status == 413:
        headers.append((b"connection", b"close"))  # the rest of the body is not read
    return (
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body},
    )


class BodyLimit:
    """ASGI middleware: 401 before the body where only a header can carry the token, 413 over the limit.

    ``refuse_early(scope)`` returns the 401 message for a request that can be refused on its headers
    alone (or None); it is asked before any byte of the body is read.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int = DEFAULT_MAX_BODY,
        refuse_early: Callable[[Scope], str | None] = lambda _scope: None,
    ) -> None:
        self._app = app
        self._max = max_bytes
        self._refuse_early = refuse_early

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        unauthorised = self._refuse_early(scope)
        if unauthorised is not None:
            await self._send(send, 401, unauthorised)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self._max:
            await self._send(send, 413, self._too_large(declared))
            return
        received = 0
        started = False

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self._max:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self._app(scope, bounded_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._send(send, 413, self._too_large(None))

    def _too_large(self, declared: int | None) -> str:
        size = f"{declared:,} bytes" if declared is not None else "a body"
        return (
            f"{size} is more than this server reads (max_request_body: {self._max:,} bytes); "
            "budgetguard's requests are small JSON objects"
        )

    @staticmethod
    async def _send(send: Send, status: int, message: str) -> None:
        start, body = _json_error(status, message)
        await send(start)
        await send(body)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


# --- parameters ------------------------------------------------------------------------------------


def query_int(params: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    """An integer query parameter within [low, high], or ``BadParameter`` naming it."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadParameter(name, f"?{name}={raw!r} is not a whole number; e.g. ?{name}={default}") from None
    if not low <= value <= high:
        raise BadParameter(name, f"?{name}={value} is out of range: give {low} to {high}")
    return value


def query_duration(params: Mapping[str, str], name: str, default: str, *, most: timedelta) -> timedelta:
    """A Prometheus duration query parameter no longer than ``most``, or ``BadParameter`` naming it."""
    raw = params.get(name) or default
    try:
        value = parse_duration(raw)
    except ValueError as exc:
        raise BadParameter(name, f"?{name}: {exc}") from None
    if value > most:
        raise BadParameter(name, f"?{name}={raw} is longer than {_days(most)}, all this server keeps")
    return value


def body_duration(body: Mapping[str, Any], name: str, *, most: timedelta) -> timedelta | None:
    """An optional duration field of a JSON body (``{"for": "1h"}``), or ``BadParameter`` naming it."""
    raw = body.get(name)
    if raw in (None, ""):
        return None
    if not isinstance(raw, str):
        raise BadParameter(name, f"'{name}' must be a duration string such as \"1h\"")
    try:
        value = parse_duration(raw)
    except ValueError as exc:
        raise BadParameter(name, f"'{name}': {exc}") from None
    if value > most:
        raise BadParameter(name, f"'{name}': {raw} is longer than {_days(most)}; give a shorter one")
    return value


def json_object(raw: bytes, example: str) -> dict[str, Any]:
    """The request body as a JSON object (empty for an empty body), or ``BadParameter`` ("body")."""
    if not raw.strip():
        return {}
    try:
        parsed = json.loads(raw)
    except RecursionError:
        raise BadParameter("body", "the JSON body is nested too deeply; send a flat object") from None
    except ValueError:
        raise BadParameter("body", f"the body must be a JSON object, e.g. {example}") from None
    if not isinstance(parsed, dict):
        raise BadParameter("body", f"the body must be a JSON object, e.g. {example}")
    return parsed


def _days(value: timedelta) -> str:
    return f"{value.days}d" if value.days else f"{value.total_seconds():g}s"
