"""What every HTTP action shares: one connection pool and its lifecycle, one bounded request,
classifying a target's answer, and templated names.

Retry policy (issue #4, reference integrations.md §8.3): network errors, timeouts and 5xx are
transient; of the 4xx only 408 (timeout), 409 (conflict, e.g. a concurrent idempotent request), 425
(too early) and 429 (rate limited) are retried; every other 4xx is permanent. ``Retry-After`` is
honoured in both of its forms (seconds, or an HTTP date).
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from budgetguard.actions._config import lazy_module
from budgetguard.core.ports import ActionOutcome, ActionResult

if TYPE_CHECKING:
    import httpx
else:  # imported when first used: reading a config file needs none of it (#14)
    httpx = lazy_module("httpx")

RETRYABLE_4XX = frozenset({408, 409, 425, 429})
DETAIL_LIMIT = 300
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def retry_after(response: httpx.Response, now: datetime | None = None) -> timedelta | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return timedelta(seconds=int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when - (now or datetime.now(tz=UTC)), timedelta(0))


REDACTED = "[redacted]"
# Shorter values (a "1", a "true") would redact ordinary words; no real credential is this short.
MIN_SECRET_CHARS = 6
# The shortest tail of a secret that is still worth hiding when truncation cut the secret in half.
_MIN_SECRET_PREFIX = 4
_CUT = "..."


def redact(text: str, secrets: Iterable[str]) -> str:
    """Hide every secret in ``text``, including the first part of one that ``short`` cut at the limit."""
    for secret in secrets:
        if len(secret) < MIN_SECRET_CHARS:
            continue
        text = text.replace(secret, REDACTED)
        start = text.find(_CUT)
        while start != -1:
            before = text[:start]
            for size in range(min(len(secret) - 1, len(before)), _MIN_SECRET_PREFIX - 1, -1):
                if before.endswith(secret[:size]):
                    text = before[:-size] + REDACTED + text[start:]
                    start += len(REDACTED) - size
                    break
            start = text.find(_CUT, start + len(_CUT))
    return text


def short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= DETAIL_LIMIT else text[: DETAIL_LIMIT - 3] + "..."


def classify(response: httpx.Response, what: str, secrets: Iterable[str] = ()) -> ActionResult:
    """A generic reading of an HTTP answer: 2xx delivered, retryable codes retried, the rest failed.

    ``secrets`` are taken out of the body *before* it is shortened into the detail: a secret the length
    limit cut in half would no longer match afterwards.
    """
    status = response.status_code
    detail = f"{what}: HTTP {status} {short(redact(response.text, secrets))}".rstrip()
    if 200 <= status < 300:
        return ActionResult(ActionOutcome.DELIVERED, detail, status)
    if status >= 500 or status in RETRYABLE_4XX:
        return ActionResult(ActionOutcome.RETRY, detail, status, retry_after(response))
    return ActionResult(ActionOutcome.FAILED, detail, status)


def transport_failure(exc: httpx.HTTPError, what: str) -> ActionResult:
    """Network faults and timeouts are transient: the outbox retries them."""
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "could not connect"
    return ActionResult(ActionOutcome.RETRY, f"{what}: {kind} ({type(exc).__name__})")


def placeholders(template: str) -> set[str]:
    """The names a template uses: ``rollout-${canary}`` uses {"canary"}."""
    return set(_PLACEHOLDER.findall(template))


def render(template: str, context: Mapping[str, str]) -> str:
    """Fill ``${name}`` placeholders; a name missing from the context is a KeyError (checked at load)."""
    return _PLACEHOLDER.sub(lambda m: context[m.group(1)], template)


class HttpAction:
    """One target over HTTP: its connection pool, the pool's lifecycle, and one request bounded in time.

    Every action owns one pool: use it as an async context manager or call ``aclose``. Redirects are
    never followed (a redirected halt would go to a place nobody configured, and could carry a token).
    ``_request`` never raises for the network: a timeout or a transport fault comes back as a RETRY
    result, which the outbox retries; the subclass reads every answer that did arrive.
    """

    def __init__(
        self,
        name: str,
        what: str,
        *,
        timeout: timedelta,
        transport: httpx.AsyncBaseTransport | None,
        base_url: str = "",
        headers: Mapping[str, str] | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.name = name
        self._what = what
        self._timeout_seconds = timeout.total_seconds()
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers={"User-Agent": "budgetguard", **(headers or {})},
            timeout=httpx.Timeout(self._timeout_seconds),
            verify=verify,
            transport=transport,
            follow_redirects=False,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _request(
        self, method: str, url: str | httpx.URL, *, what: str | None = None, **kwargs: Any
    ) -> httpx.Response | ActionResult:
        """Send one request within the action's timeout; the answer, or why there is none."""
        what = what or self._what
        try:
            async with asyncio.timeout(self._timeout_seconds):
                return await self._client.request(method, url, **kwargs)
        except TimeoutError:
            return ActionResult(
                ActionOutcome.RETRY, f"{what}: timed out (no answer within {self._timeout_seconds:g}s)"
            )
        except httpx.HTTPError as exc:
            return self._transport_failure(exc, what)

    def _transport_failure(self, exc: httpx.HTTPError, what: str) -> ActionResult:
        return transport_failure(exc, what)
