"""Request bounds: big bodies are refused before they are read, parameters and deep JSON are 400s.

The middleware is served by the daemon's own HttpServer (uvicorn) on a loopback port and spoken to
over raw sockets, so "refused before the body is read" is observed as a client would: the answer
comes while most of the body is still unsent.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Scope

from budgetguard.web import HttpServer
from budgetguard.web.limits import (
    BadParameter,
    BodyLimit,
    body_duration,
    json_object,
    query_duration,
    query_int,
)

LIMIT = 64 * 1024


class Seen:
    bodies: list[int]

    def __init__(self) -> None:
        self.bodies = []


def app(seen: Seen) -> Starlette:
    async def echo(request: Request) -> Response:
        body = await request.body()
        seen.bodies.append(len(body))
        return JSONResponse({"bytes": len(body)})

    def header_only(scope: Scope) -> str | None:
        path = str(scope["path"])
        headers = dict(scope["headers"])
        if path.startswith("/api/") and headers.get(b"authorization") != b"Bearer t0ken":
            return "this API needs 'Authorization: Bearer <token>'"
        return None

    return Starlette(
        routes=[Route("/api/echo", echo, methods=["POST"]), Route("/gates/echo", echo, methods=["POST"])],
        middleware=[Middleware(BodyLimit, max_bytes=LIMIT, refuse_early=header_only)],
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served() -> Iterator[tuple[str, Seen]]:
    seen = Seen()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    port = free_port()
    server = HttpServer(app(seen), "127.0.0.1", port)
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=15)
        yield f"127.0.0.1:{port}", seen
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()


def raw_exchange(address: str, head: bytes, first_chunk: bytes) -> tuple[bytes, float]:
    """Send the request head and the first piece of its body only; the answer and how long it took."""
    host, port = address.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(head + first_chunk)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            piece = sock.recv(65536)
            if not piece:
                break
            answer += piece
        return answer, time.monotonic() - started


def test_a_50_mb_body_is_refused_from_its_content_length_before_it_is_read(served: tuple[str, Seen]) -> None:
    address, seen = served
    head = (
        b"POST /gates/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 50000000\r\n\r\n"
    )
    answer, took = raw_exchange(address, head, b'{"name": "' + b"a" * 1000)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"50,000,000 bytes is more than this server reads (max_request_body: 65,536 bytes)" in answer
    assert took < 2  # 999 KB of the 50 MB were never sent: nothing waited for them
    assert seen.bodies == []


def test_a_chunked_body_is_cut_off_as_soon_as_it_passes_the_limit(served: tuple[str, Seen]) -> None:
    address, seen = served

    def chunks() -> Iterator[bytes]:
        for _ in range(100):  # 6.4 MB if it were all read
            yield b"x" * 65536

    response = httpx.post(f"http://{address}/gates/echo", content=chunks(), timeout=10)
    assert response.status_code == 413
    assert "max_request_body: 65,536 bytes" in response.json()["error"]
    assert seen.bodies == []


def test_a_body_within_the_limit_is_read_whole(served: tuple[str, Seen]) -> None:
    address, _ = served
    response = httpx.post(f"http://{address}/gates/echo", content=b"y" * LIMIT, timeout=10)
    assert response.status_code == 200
    assert response.json() == {"bytes": LIMIT}


def test_the_token_is_checked_before_the_body_is_read(served: tuple[str, Seen]) -> None:
    address, seen = served
    head = b"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n"
    answer, _ = raw_exchange(address, head, b"z" * 100)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    assert b"www-authenticate: bearer" in answer.lower()
    with_token = httpx.post(
        f"http://{address}/api/echo", content=b"z" * (LIMIT + 1), headers={"Authorization": "Bearer t0ken"}
    )
    assert with_token.status_code == 413  # the token does not buy a bigger body
    assert seen.bodies == []


@pytest.mark.parametrize(
    ("read", "parameter", "fragment"),
    [
        pytest.param(
            lambda: query_int({"limit": "-5"}, "limit", 100, low=1, high=5000),
            "limit",
            "?limit=-5 is out of range: give 1 to 5000",
            id="a negative limit",
        ),
        pytest.param(
            lambda: query_int({"limit": "ten"}, "limit", 100, low=1, high=5000),
            "limit",
            "is not a whole number",
            id="a limit that is not a number",
        ),
        pytest.param(
            lambda: query_duration({"since": "999999999999d"}, "since", "6h", most=timedelta(days=90)),
            "since",
            "?since: '999999999999d' is longer than the longest duration Prometheus accepts",
            id="a since of 999999999999d",
        ),
        pytest.param(
            lambda: query_duration({"since": "400d"}, "since", "6h", most=timedelta(days=90)),
            "since",
            "?since=400d is longer than 90d",
            id="a since longer than anything kept",
        ),
        pytest.param(
            lambda: query_duration(
                {"since": "99999999999999999999d"}, "since", "6h", most=timedelta(days=90)
            ),
            "since",
            "longest duration Prometheus accepts",
            id="a since longer than any duration",
        ),
        pytest.param(
            lambda: body_duration({"for": "99999999999999999d"}, "for", most=timedelta(days=366)),
            "for",
            "'for': '99999999999999999d' is longer than the longest duration Prometheus accepts",
            id="a pause for 99999999999999999d",
        ),
        pytest.param(
            lambda: body_duration({"for": "400d"}, "for", most=timedelta(days=366)),
            "for",
            "'for': 400d is longer than 366d",
            id="a pause for longer than a year",
        ),
        pytest.param(
            lambda: body_duration({"for": 5}, "for", most=timedelta(days=366)),
            "for",
            "must be a duration string",
            id="a pause for a number",
        ),
        pytest.param(
            lambda: json_object(b"[" * 100_000 + b"]" * 100_000, '{"by": "alice"}'),
            "body",
            "nested too deeply",
            id="a 100,000-deep JSON body",
        ),
        pytest.param(
            lambda: json_object(b"[1]", '{"by": "alice"}'),
            "body",
            'must be a JSON object, e.g. {"by": "alice"}',
            id="a JSON body that is not an object",
        ),
    ],
)
def test_bad_parameters_name_themselves(read: object, parameter: str, fragment: str) -> None:
    assert callable(read)
    with pytest.raises(BadParameter) as caught:
        read()
    assert caught.value.parameter == parameter
    assert fragment in str(caught.value)
