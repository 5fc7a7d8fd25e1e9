"""The daemon's cycle and the guard, in process: decisions are stored with the cycle or not at all."""

from __future__ import annotations

import asyncio
import sqlite3
import textwrap
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from budgetguard.config import Settings
from budgetguard.core.guard import IncidentState
from budgetguard.daemon import Daemon
from budgetguard.engine import Engine
from budgetguard.exporter import Exporter
from budgetguard.store import Store
from tests.helpers import slo_from
from tests.test_canary_versions import CANARY, OneAnswer, per_version

ACTIONS = {
    "abort": {"type": "webhook", "url": "http://127.0.0.1:9/abort"},
    "slack": {"type": "webhook", "url": "http://127.0.0.1:9/slack"},
}


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    slos = tmp_path / "slos"
    slos.mkdir()
    (slos / "checkout.yaml").write_text(textwrap.dedent(CANARY))
    d = Daemon(Settings(slo_paths=[slos], db=tmp_path / "bg.db", actions=ACTIONS))  # type: ignore[arg-type]
    assert d.load_initial()
    d._store = Store(d.settings.db, busy_timeout=timedelta(milliseconds=100))
    d._exporter = Exporter(d, version="test")
    yield d
    d._store.close()


def answer(d: Daemon, rates: dict[str, tuple[float, float]]) -> None:
    d._engine = Engine(OneAnswer(per_version(slo_from(CANARY), rates)))


def cycle(d: Daemon) -> None:
    asyncio.run(d.cycle())


BURNING = {"v1": (995.0, 0.0), "v2": (5.0, 0.2)}


def test_a_decision_that_cannot_be_stored_is_taken_again_next_cycle(daemon: Daemon) -> None:
    assert daemon._store is not None
    store = daemon._store
    answer(daemon, BURNING)
    # Another process holds the file's write lock: the cycle's transaction cannot start (StoreError).
    other = sqlite3.connect(daemon.settings.db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        cycle(daemon)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.incidents() == [] and store.outbox() == []
    cycle(daemon)  # the same canary, still burning, is decided again (the failed write set no cooldown)
    [incident] = store.incidents()
    assert incident.canary_value == "v2"
    assert sorted(row.action for row in store.outbox()) == ["abort", "slack"]
    cycle(daemon)
    assert len(store.outbox()) == 2


def test_incidents_of_an_slo_that_drops_its_canary_block_are_resolved(daemon: Daemon, tmp_path: Path) -> None:
    assert daemon._store is not None
    answer(daemon, BURNING)
    cycle(daemon)
    assert [i.state for i in daemon._store.incidents()] == [IncidentState.OPEN]
    without = CANARY.split("    canary:")[0].replace("sum by (version) ", "sum ")
    (tmp_path / "slos" / "checkout.yaml").write_text(textwrap.dedent(without))
    daemon.reload("test")
    answer(daemon, {"": (1000.0, 0.001)})
    cycle(daemon)
    [incident] = daemon._store.incidents()
    assert incident.state is IncidentState.RESOLVED
    assert "no longer declares a canary guard" in (incident.resolution or "")
