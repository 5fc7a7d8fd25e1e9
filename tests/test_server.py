"""The HTTP surface's contract: routes, status codes, the API token, the documented JSON shape."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from budgetguard.core.policy import Evaluation, Observation, evaluate
from budgetguard.leadership import Sole
from budgetguard.readmodel import ReadModel, State
from budgetguard.store import Store
from budgetguard.web import create_app
from tests.helpers import slo_from

SLO = slo_from()
AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
EV = evaluate(SLO, {w: Observation(w, 0.0005, 1000.0) for w in SLO.windows()}, AT)


class View:
    def __init__(self, ready: bool = True) -> None:
        self.ready = ready
        self.asked: list[tuple[str, datetime, int]] = []

    def latest_evaluations(self) -> Sequence[Evaluation]:
        return [EV]

    def config_problems(self) -> Sequence[str]:
        return ["slos/x.yaml:3: slo 'y': field 'objective': must be below 100"]

    def readiness(self) -> tuple[bool, str]:
        return self.ready, "ok" if self.ready else "the first evaluation cycle has not finished yet"

    def history(self, slo_id: str, since: datetime, limit: int) -> list[dict[str, Any]]:
        self.asked.append((slo_id, since, limit))
        return [{"at": "2026-11-26T11:59:00Z", "verdict": "healthy"}]

    def verdict_changes(self, slo_id: str, since: datetime) -> list[dict[str, Any]]:
        return [
            {"at": "2026-11-26T11:00:00Z", "slo_id": slo_id, "from": None, "to": "healthy", "reason": "r"}
        ]

    def guard_status(self, slo_id: str) -> tuple[bool, frozenset[str]]:
        return False, frozenset()

    def status(self) -> dict[str, Any]:
        return {"replica": "pod-b:1", "leader": False, "leader_replica": "pod-a:1", "mode": "lease"}


class Metrics:
    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        return b"budgetguard_slos 1\n", "text/plain; version=0.0.4; charset=utf-8"


class Client:
    """Requests straight into the ASGI app through httpx's ASGI transport (the daemon tests use real HTTP)."""

    def __init__(self, token: str | None, view: View | None) -> None:
        self.app = create_app(view or View(), Metrics(), token)

    def get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://budgetguard") as http:
                return await http.get(path, headers=headers)

        return asyncio.run(call())

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def client(token: str | None = None, view: View | None = None) -> Client:
    return Client(token, view)


def test_health_readiness_and_metrics_need_no_token() -> None:
    with client(token="t0ken") as http:
        assert http.get("/healthz").text == "ok\n"
        assert http.get("/readyz").json() == {"ready": True, "reason": "ok"}
        metrics = http.get("/metrics")
        assert metrics.text == "budgetguard_slos 1\n"
        assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")


def test_not_ready_is_503_with_the_reason() -> None:
    with client(view=View(ready=False)) as http:
        response = http.get("/readyz")
    assert response.status_code == 503
    assert "first evaluation cycle" in response.json()["reason"]


@pytest.mark.parametrize(
    ("header", "status"),
    [
        pytest.param(None, 401, id="no token is refused"),
        pytest.param("Bearer wrong", 401, id="a wrong token is refused"),
        pytest.param("Basic dDBrZW4=", 401, id="another scheme is refused"),
        pytest.param("Bearer t0ken", 200, id="the configured token is accepted"),
        pytest.param("bearer t0ken", 200, id="the scheme is case-insensitive"),
    ],
)
def test_the_api_needs_the_token_when_one_is_configured(header: str | None, status: int) -> None:
    headers = {"Authorization": header} if header else {}
    with client(token="t0ken") as http:
        for path in ("/api/v1/slos", "/api/v1/slos/checkout/availability"):
            response = http.get(path, headers=headers)
            assert response.status_code == status, path
            if status == 401:
                assert response.headers["www-authenticate"] == 'Bearer realm="budgetguard"'
                assert "t0ken" not in response.text


def test_the_slo_list_is_the_documented_shape() -> None:
    with client() as http:
        body = http.get("/api/v1/slos").json()
    assert body["api_version"] == "v1"
    assert body["config_problems"] == ["slos/x.yaml:3: slo 'y': field 'objective': must be below 100"]
    [record] = body["slos"]
    assert record["service"] == "checkout" and record["slo"] == "availability"
    assert record["budget_remaining"] == pytest.approx(0.5)
    assert record["burn_rates"]["1h"] == pytest.approx(0.5)


def test_one_slo_with_history_and_changes() -> None:
    view = View()
    with client(view=view) as http:
        body = http.get("/api/v1/slos/checkout/availability?since=1d&limit=10").json()
        missing = http.get("/api/v1/slos/checkout/nope")
        bad = http.get("/api/v1/slos/checkout/availability?since=yesterday")
    assert body["slo"]["verdict"] == "healthy"
    assert body["history"] == [{"at": "2026-11-26T11:59:00Z", "verdict": "healthy"}]
    assert body["verdict_changes"][0]["to"] == "healthy"
    assert view.asked[0][0] == "checkout/availability" and view.asked[0][2] == 10
    assert missing.status_code == 404 and "checkout/nope" in missing.json()["error"]
    assert bad.status_code == 400 and "since" in bad.json()["error"]


def test_status_says_whether_this_replica_leads_and_which_one_does_behind_the_token() -> None:
    with client(token="t0ken") as http:
        assert http.get("/api/v1/status").status_code == 401
        answer = http.get("/api/v1/status", headers={"Authorization": "Bearer t0ken"}).json()
    assert answer["api_version"] == "v1"
    assert (answer["replica"], answer["leader"], answer["leader_replica"]) == ("pod-b:1", False, "pod-a:1")


def test_the_read_model_reports_the_sole_sqlite_replica_as_leading(tmp_path: Path) -> None:
    with Store(tmp_path / "bg.db") as store:
        status = ReadModel(State(), store, leadership=Sole("host:42")).status()
    assert status == {
        "replica": "host:42",
        "leader": True,
        "mode": "single",
        "leader_replica": "host:42",
        "store": str(tmp_path / "bg.db"),
        "cycles": 0,
        "slos": 0,
    }
