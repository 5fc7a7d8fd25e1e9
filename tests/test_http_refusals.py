"""The HTTP answers of issue 13: every careless request is a 400 naming its parameter, never a 500.

The daemon's own app (``create_app``) is served by its own HttpServer on a loopback port, with manual
control on a real SQLite store, and asked over real HTTP: a 500 used to reset the connection, which
only a real server shows.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from budgetguard.control import Control
from budgetguard.core.guard import Delivery
from budgetguard.store import Store
from budgetguard.web import HttpServer, create_app
from tests.test_server import Metrics, View

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_BODY = 1024 * 1024  # the default max_request_body


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def base(tmp_path: Path) -> Iterator[str]:
    store = Store(tmp_path / "bg.db")
    app = create_app(
        View(),
        Metrics(),
        TOKEN,
        control=lambda: Control(store, Delivery(), declared=frozenset({"checkout/availability"})),
        max_body=MAX_BODY,
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    port = free_port()
    server = HttpServer(app, "127.0.0.1", port)
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=15)
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()
        store.close()


@dataclass(frozen=True)
class Ask:
    method: str
    path: str
    body: bytes | None = None


PAUSE = "/api/v1/slos/checkout/availability/pause"

CASES: dict[str, tuple[Ask, int, str | None, str]] = {
    "a negative limit": (
        Ask("GET", "/api/v1/slos/checkout/availability?limit=-5"),
        400,
        "limit",
        "?limit=-5 is out of range: give 1 to 5000",
    ),
    "a limit that is not a number": (
        Ask("GET", "/api/v1/slos/checkout/availability?limit=lots"),
        400,
        "limit",
        "is not a whole number",
    ),
    "a since of 999999999999d": (
        Ask("GET", "/api/v1/slos/checkout/availability?since=999999999999d"),
        400,
        "since",
        "longer than the longest duration Prometheus accepts",
    ),
    "a since longer than anything kept": (
        Ask("GET", "/api/v1/slos/checkout/availability?since=400d"),
        400,
        "since",
        "?since=400d is longer than 366d",
    ),
    "a pause for 99999999999999999d": (
        Ask("POST", PAUSE, b'{"for": "99999999999999999d"}'),
        400,
        "for",
        "'for': '99999999999999999d' is longer than the longest duration Prometheus accepts",
    ),
    "a pause for longer than a year": (
        Ask("POST", PAUSE, b'{"for": "400d"}'),
        400,
        "for",
        "'for': 400d is longer than 366d",
    ),
    "a 100,000-deep JSON body": (
        Ask("POST", PAUSE, b"[" * 100_000 + b"]" * 100_000),
        400,
        "body",
        "the JSON body is nested too deeply",
    ),
    "a body that is not a JSON object": (
        Ask("POST", PAUSE, b"[1, 2]"),
        400,
        "body",
        'the body must be a JSON object, e.g. {"by": "alice"}',
    ),
    "a pause of an SLO that is not declared": (
        Ask("POST", "/api/v1/slos/checkout/nope/pause", b"{}"),
        404,
        None,
        "no SLO 'checkout/nope' is declared, so there is no guard to pause (declared: checkout/availability)",
    ),
    "a body over the limit to a Flagger gate": (
        Ask("POST", "/gates/flagger/rollback", b'{"name": "' + b"a" * (MAX_BODY + 10) + b'"}'),
        413,
        None,
        "more than this server reads (max_request_body: 1,048,576 bytes)",
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_careless_requests_are_refused_naming_the_parameter(
    base: str, case: tuple[Ask, int, str | None, str]
) -> None:
    ask, status, parameter, fragment = case
    response = httpx.request(ask.method, base + ask.path, content=ask.body, headers=AUTH, timeout=10)
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert fragment in body["error"]
    if parameter is not None:
        assert body["parameter"] == parameter


def test_the_pauses_in_force_are_listed(base: str) -> None:
    assert httpx.get(f"{base}/api/v1/pauses", headers=AUTH).json() == {"pauses": []}
    paused = httpx.post(base + PAUSE, json={"for": "1h", "reason": "game day", "by": "ops"}, headers=AUTH)
    assert paused.status_code == 200
    [pause] = httpx.get(f"{base}/api/v1/pauses", headers=AUTH).json()["pauses"]
    assert (pause["slo_id"], pause["by"], pause["reason"]) == ("checkout/availability", "ops", "game day")
    assert pause["until"]
    assert httpx.get(f"{base}/api/v1/pauses").status_code == 401
