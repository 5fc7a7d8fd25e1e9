"""Manual control over HTTP and from the command line, on a real SQLite store."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from budgetguard.cli import main as cli
from budgetguard.control import Control
from budgetguard.core.guard import Decision, Delivery, OutboxEntry
from budgetguard.core.ports import EventKind
from budgetguard.store import OutboxStatus, Store
from budgetguard.web import create_app
from tests.conftest import Backend
from tests.test_outbox import INCIDENT, request
from tests.test_server import Metrics, View

TOKEN = "s3cret-token"
DELIVERY = Delivery(resolvable=frozenset({"pager"}))


@pytest.fixture
def store(backend: Backend) -> Iterator[Store]:
    with backend.open() as s:  # a real SQLite file, then a real PostgreSQL database
        s.write_decision(
            Decision(
                opened=(INCIDENT,),
                outbox=(
                    OutboxEntry("abort", request("abort"), False),
                    OutboxEntry("pager", request("pager"), False),
                ),
            ),
            INCIDENT.opened_at,
        )
        yield s


class Api:
    def __init__(self, store: Store, token: str | None) -> None:
        self.changes = 0

        def changed() -> None:
            self.changes += 1

        self.app = create_app(
            View(), Metrics(), token, control=lambda: Control(store, DELIVERY), on_change=changed
        )

    def call(self, method: str, path: str, body: Any = None, token: str | None = TOKEN) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://budgetguard") as http:
                return await http.request(method, path, json=body, headers=headers)

        return asyncio.run(go())


def test_incidents_are_listed_acknowledged_and_resolved_with_a_resolve_where_understood(store: Store) -> None:
    api = Api(store, TOKEN)
    [listed] = api.call("GET", "/api/v1/incidents?state=open").json()["incidents"]
    assert (listed["id"], listed["canary"], listed["state"]) == ("inc-1", "v2", "open")
    acked = api.call("POST", "/api/v1/incidents/inc-1/ack", {"by": "alice"}).json()
    assert acked["acknowledged_by"] == "alice" and acked["acknowledged_at"]
    resolved = api.call("POST", "/api/v1/incidents/inc-1/resolve", {"by": "alice"}).json()
    assert resolved["state"] == "resolved" and resolved["resolution"] == "resolved by hand by alice"
    assert api.changes == 2
    shown = api.call("GET", "/api/v1/incidents/inc-1").json()
    assert [(d["action"], d["event"]) for d in shown["deliveries"]] == [
        ("abort", "trigger"),
        ("pager", "trigger"),
        ("pager", "resolve"),
    ]
    again = api.call("POST", "/api/v1/incidents/inc-1/resolve", {})
    assert again.status_code == 409 and "already resolved" in again.json()["error"]
    assert api.call("GET", "/api/v1/incidents?state=open").json()["incidents"] == []
    assert api.call("GET", "/api/v1/incidents/nope").status_code == 404


def test_changes_need_a_configured_token_and_reads_follow_the_api_rules(store: Store) -> None:
    open_api = Api(store, None)
    assert open_api.call("GET", "/api/v1/incidents", token=None).status_code == 200
    refused = open_api.call("POST", "/api/v1/incidents/inc-1/ack", {"by": "eve"}, token=None)
    assert refused.status_code == 403 and "needs an api_token" in refused.json()["error"]
    guarded = Api(store, TOKEN)
    assert guarded.call("GET", "/api/v1/incidents", token=None).status_code == 401
    assert (
        guarded.call("POST", "/api/v1/incidents/inc-1/ack", {"by": "eve"}, token="wrong").status_code == 401
    )
    assert store.incident("inc-1").acknowledged_by is None  # type: ignore[union-attr]
    assert guarded.call("POST", "/api/v1/incidents/inc-1/ack", [1, 2]).status_code == 400
    assert guarded.call("POST", "/api/v1/incidents/inc-1/ack", {"by": ""}).status_code == 400


def test_pause_resume_and_retry(store: Store) -> None:
    api = Api(store, TOKEN)
    paused = api.call("POST", "/api/v1/slos/checkout/availability/pause", {"for": "1h", "reason": "game day"})
    assert paused.status_code == 200 and paused.json()["reason"] == "game day" and paused.json()["until"]
    assert "checkout/availability" in store.pauses(INCIDENT.opened_at)
    assert api.call("POST", "/api/v1/slos/checkout/availability/pause", {"for": "soon"}).status_code == 400
    assert api.call("POST", "/api/v1/slos/checkout/availability/resume").json()["resumed"] is True
    assert store.pauses(INCIDENT.opened_at) == {}

    [abort, _] = store.outbox()
    assert api.call("POST", f"/api/v1/deliveries/{abort.id}/retry").status_code == 409  # pending, not failed
    store.record_attempt(
        abort.id, status=OutboxStatus.FAILED, at=INCIDENT.opened_at, last_status=404, detail="gone"
    )
    retried = api.call("POST", f"/api/v1/deliveries/{abort.id}/retry").json()
    assert retried["status"] == "pending" and retried["idempotency_key"] == "inc-1.abort.trigger"


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli(list(args), out, err)
    return code, out.getvalue(), err.getvalue()


def test_the_command_line_does_the_same_on_the_store(
    store: Store, backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No config file: not the checkout's ./budgetguard.yaml, which every command finds from the repo root.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BUDGETGUARD_CONFIG", raising=False)
    db = str(backend.db)
    code, out, _ = run_cli("incidents", "--db", db)
    assert code == 0 and "inc-1" in out and "version=v2" in out
    code, out, _ = run_cli("incidents", "ack", "inc-1", "--by", "bob", "--db", db)
    assert code == 0 and json.loads(out)["acknowledged_by"] == "bob"
    code, out, _ = run_cli("pause", "checkout/availability", "--for", "30m", "--reason", "freeze", "--db", db)
    assert code == 0 and json.loads(out)["by"]
    code, out, _ = run_cli("resume", "checkout/availability", "--db", db)
    assert json.loads(out)["resumed"] is True
    code, out, err = run_cli("incidents", "resolve", "--db", db)
    assert code == 2 and "needs an id" in err
    code, out, _ = run_cli("incidents", "resolve", "inc-1", "--by", "bob", "--db", db)
    assert code == 0 and json.loads(out)["state"] == "resolved"
    # no config: no action is known to understand a resolve, so none is queued
    assert [r.request.event for r in store.outbox()] == [EventKind.TRIGGER, EventKind.TRIGGER]
    code, out, _ = run_cli("incidents", "show", "inc-1", "--db", db)
    assert json.loads(out)["state"] == "resolved"
    code, _, err = run_cli("incidents", "--db", str(tmp_path / "none.db"))
    assert code == 2 and "no store" in err


def test_a_failed_delivery_shows_in_the_incident_list(
    store: Store, backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13: a rollout abort answered 404 showed only as a WARNING line, nothing in the incident list."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BUDGETGUARD_CONFIG", raising=False)
    [abort, pager] = store.outbox()
    store.record_attempt(
        abort.id,
        status=OutboxStatus.FAILED,
        at=INCIDENT.opened_at,
        last_status=404,
        detail="HTTP 404: not found",
    )
    code, out, _ = run_cli("incidents", "--db", str(backend.db))
    assert code == 0
    assert (
        f"    ! delivery {abort.id} abort failed after 1 attempt(s): HTTP 404: not found "
        f"(budgetguard incidents retry {abort.id})"
    ) in out
    assert f"delivery {pager.id}" not in out  # pending and never tried: not a problem yet
    [listed] = Api(store, TOKEN).call("GET", "/api/v1/incidents").json()["incidents"]
    assert [(d["action"], d["status"]) for d in listed["delivery_problems"]] == [("abort", "failed")]
