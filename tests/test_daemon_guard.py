"""The daemon's cycle and the guard, in process: decisions are stored with the cycle or not at all."""

from __future__ import annotations

import asyncio
import sqlite3
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from budgetguard.config import Settings, known_actions
from budgetguard.core.guard import IncidentState
from budgetguard.cycle import Cycle, delivery_of
from budgetguard.engine import Engine
from budgetguard.exporter import Exporter
from budgetguard.readmodel import ReadModel, State
from budgetguard.slofiles import SloFiles
from budgetguard.store import Store
from tests.helpers import slo_from
from tests.test_canary_versions import CANARY, OneAnswer, per_version

ACTIONS = {
    "abort": {"type": "webhook", "url": "http://127.0.0.1:9/abort"},
    "slack": {"type": "webhook", "url": "http://127.0.0.1:9/slack"},
}


@dataclass
class Running:
    """A cycle built from its collaborators, over SLO files in a temporary directory."""

    settings: Settings
    files: SloFiles
    store: Store
    source: OneAnswer
    cycle: Cycle


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Running]:
    slos = tmp_path / "slos"
    slos.mkdir()
    (slos / "checkout.yaml").write_text(textwrap.dedent(CANARY))
    settings = Settings(slo_paths=[slos], db=tmp_path / "bg.db", actions=ACTIONS)  # type: ignore[arg-type]
    state = State()
    files = SloFiles(settings.slo_paths, known_actions(settings), state)
    assert files.load_initial()
    store = Store(settings.db, busy_timeout=timedelta(milliseconds=100))
    source = OneAnswer(per_version(slo_from(CANARY), {}))
    exporter = Exporter(ReadModel(state, store), version="test")
    cycle = Cycle(state, Engine(source), store, exporter, delivery=delivery_of(settings))
    yield Running(settings, files, store, source, cycle)
    store.close()


def answer(d: Running, rates: dict[str, tuple[float, float]]) -> None:
    d.source.answer = per_version(slo_from(CANARY), rates)


def cycle(d: Running) -> None:
    asyncio.run(d.cycle.run())


BURNING = {"v1": (995.0, 0.0), "v2": (5.0, 0.2)}


def test_a_decision_that_cannot_be_stored_is_taken_again_next_cycle(daemon: Running) -> None:
    store = daemon.store
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


def test_incidents_of_an_slo_that_drops_its_canary_block_are_resolved(
    daemon: Running, tmp_path: Path
) -> None:
    answer(daemon, BURNING)
    cycle(daemon)
    assert [i.state for i in daemon.store.incidents()] == [IncidentState.OPEN]
    without = CANARY.split("    canary:")[0].replace("sum by (version) ", "sum ")
    (tmp_path / "slos" / "checkout.yaml").write_text(textwrap.dedent(without))
    daemon.files.reload("test", daemon.store)
    answer(daemon, {"": (1000.0, 0.001)})
    cycle(daemon)
    [incident] = daemon.store.incidents()
    assert incident.state is IncidentState.RESOLVED
    assert "no longer declares a canary guard" in (incident.resolution or "")


def test_a_follower_stores_and_decides_nothing_but_acts_at_its_first_cycle_once_promoted(
    tmp_path: Path,
) -> None:
    """Replicas (#12): a follower keeps the canary's streak warm without acting, so when the leader
    dies it does not need ``streak`` more cycles of a burning canary before the abort goes out."""
    slos = tmp_path / "slos"
    slos.mkdir()
    three_in_a_row = CANARY.replace("    canary:\n", "    canary:\n      streak: 3\n")
    (slos / "checkout.yaml").write_text(textwrap.dedent(three_in_a_row))
    settings = Settings(slo_paths=[slos], db=tmp_path / "bg.db", actions=ACTIONS)  # type: ignore[arg-type]
    state = State()
    assert SloFiles(settings.slo_paths, known_actions(settings), state).load_initial()
    source = OneAnswer(per_version(slo_from(three_in_a_row), BURNING))
    leading = False
    with Store(settings.db) as store:
        follower = Cycle(
            state,
            Engine(source),
            store,
            Exporter(ReadModel(state, store), version="test"),
            delivery=delivery_of(settings),
            leads=lambda: leading,
        )
        for _ in range(3):
            asyncio.run(follower.run())
        assert store.incidents() == [] and store.outbox() == []
        assert store.latest(state.slos) == {}, "the leader stores the cycles, not a follower"
        assert state.cycles == 3 and state.latest, "a follower still evaluates and serves its verdicts"

        leading = True
        follower.promoted()
        asyncio.run(follower.run())

        [incident] = store.incidents()
        assert incident.canary_value == "v2"
        assert sorted(row.action for row in store.outbox()) == ["abort", "slack"]


def test_the_gates_view_of_incidents_is_read_after_the_cycles_write_before_its_verdicts(
    tmp_path: Path,
) -> None:
    """#14: the gates read pauses and open incidents from a snapshot, not the store per request. A cycle
    that opens an incident refreshes it before publishing, so no gate sees the burning verdict without
    the incident."""
    slos = tmp_path / "slos"
    slos.mkdir()
    (slos / "checkout.yaml").write_text(textwrap.dedent(CANARY))
    settings = Settings(slo_paths=[slos], db=tmp_path / "bg.db", actions=ACTIONS)  # type: ignore[arg-type]
    state = State()
    files = SloFiles(settings.slo_paths, known_actions(settings), state)
    assert files.load_initial()
    store = Store(settings.db)
    view = ReadModel(state, store)
    seen: list[tuple[bool, frozenset[str]]] = []

    async def stored() -> None:
        await view.refresh_guard()
        seen.append(view.guard_status(slo_id))
        assert slo_id not in state.latest, "the verdicts were published before the incident was read"

    source = OneAnswer(per_version(slo_from(CANARY), BURNING))
    slo_id = slo_from(CANARY).id
    cycle = Cycle(
        state,
        Engine(source),
        store,
        Exporter(view, version="test"),
        delivery=delivery_of(settings),
        stored=stored,
    )
    try:
        asyncio.run(view.refresh_guard())
        assert view.guard_status(slo_id) == (False, frozenset())
        asyncio.run(cycle.run())
        assert seen == [(False, frozenset({"v2"}))]
        assert view.guard_status(slo_id) == (False, frozenset({"v2"}))
    finally:
        store.close()


def test_pauses_made_elsewhere_reach_the_gates_within_the_refresh_and_end_on_time(tmp_path: Path) -> None:

    store = Store(tmp_path / "bg.db")
    now = datetime.now(tz=UTC)
    clock = [now]
    view = ReadModel(State(), store, clock=lambda: clock[0])
    try:
        view.refresh_guard_now()
        store.pause("shop/checkout", now, until=now + timedelta(minutes=5), by="cli", reason="test")
        # Written by another client (the CLI on the host): the snapshot has not seen it yet ...
        assert view.guard_status("shop/checkout") == (False, frozenset())

        async def one_refresh() -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(view.keep_guard_fresh(stop, every=timedelta(milliseconds=20)))
            await asyncio.sleep(0.1)
            stop.set()
            await task

        asyncio.run(one_refresh())
        assert view.guard_status("shop/checkout") == (True, frozenset())  # ... the next refresh has
        clock[0] = now + timedelta(minutes=6)
        assert view.guard_status("shop/checkout") == (False, frozenset())  # its end judged per request
        store.resume("shop/checkout")
        store.pause("shop/checkout", now, until=None, by="api", reason="test")
        view.refresh_guard_now()  # what the daemon does after a change through its own API
        assert view.guard_status("shop/checkout") == (True, frozenset())
    finally:
        store.close()
