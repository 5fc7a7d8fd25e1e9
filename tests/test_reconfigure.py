"""Reloading the config file: what applies at once, what needs a restart, and a refusal keeping the last
good config. ``ConfigReload`` is built with a real cycle, SLO files, store and health; the composition
root's scheduler is stood for by the ``reschedule`` callback it is given."""

from __future__ import annotations

import asyncio
import logging
import textwrap
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from budgetguard.config import ConfigSource, Settings, known_actions
from budgetguard.core.policy import Evaluation
from budgetguard.core.ports import Action
from budgetguard.core.spec import SLO
from budgetguard.cycle import Cycle, delivery_of
from budgetguard.exporter import Exporter
from budgetguard.health import GuardHealth
from budgetguard.readmodel import ReadModel, State
from budgetguard.reconfigure import ConfigReload
from budgetguard.slofiles import SloFiles
from budgetguard.statelog import StateLog
from budgetguard.store import Store
from tests.test_daemon_health import CANARY_SLO


class NoEngine:
    async def evaluate_all(self, slos: Sequence[SLO], at: datetime) -> list[Evaluation]:
        return []


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "bg.db") as opened:
        yield opened


class World:
    def __init__(self, tmp_path: Path, store: Store, config: str) -> None:
        self.config = tmp_path / "config.yaml"
        self.config.write_text(textwrap.dedent(config))
        (tmp_path / "slos").mkdir()
        (tmp_path / "slos" / "shop.yaml").write_text(textwrap.dedent(CANARY_SLO))
        self.source = ConfigSource(self.config, {"slo_paths": [str(tmp_path / "slos")]})
        settings = self.source.load()
        state = State()
        self.files = SloFiles(settings.slo_paths, known_actions(settings), state)
        health = GuardHealth(store, StateLog(logging.getLogger("budgetguard")), source_url="http://p:9090")
        self.health = health
        exporter = Exporter(ReadModel(state, store), version="test")
        self.cycle = Cycle(state, NoEngine(), store, exporter, delivery=delivery_of(settings))
        self.actions: dict[str, Action] = {}
        self.rescheduled: list[Settings] = []
        self.reload = ConfigReload(
            self.source,
            settings,
            actions=self.actions,
            cycle=self.cycle,
            files=self.files,
            health=health,
            reschedule=self.rescheduled.append,
        )

    def write(self, config: str) -> None:
        self.config.write_text(textwrap.dedent(config))


def test_a_changed_interval_and_a_newly_declared_action_apply_at_once(
    tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    world = World(tmp_path, store, "interval: 30s\n")
    assert not world.files.load_initial()  # abort-shop is not declared yet
    world.write(
        """
        interval: 10s
        dry_run: true
        actions:
          abort-shop: {type: webhook, url: "http://127.0.0.1:9/hook"}
        """
    )
    assert world.reload.changed_on_disk()

    async def reload() -> None:
        world.reload.reload("SIGHUP")

    asyncio.run(reload())
    assert [s.interval for s in world.rescheduled] == [timedelta(seconds=10)]
    assert set(world.actions) == {"abort-shop"}
    assert world.cycle.delivery.dry_run is True
    assert world.files.load_initial()  # the SLO file is judged against the new actions
    assert "reload (SIGHUP): config " in caplog.text
    assert "applied interval, actions.abort-shop, dry_run" in caplog.text
    assert not world.reload.changed_on_disk()


def test_what_needs_a_restart_is_named_and_kept_and_a_bad_file_keeps_the_last_good_config(
    tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    world = World(tmp_path, store, "listen: 127.0.0.1:8731\n")
    world.write("listen: 127.0.0.1:9999\nprometheus: {url: 'http://other:9090'}\n")
    world.reload.reload("SIGHUP")
    assert world.reload.settings.listen == "127.0.0.1:8731"
    assert world.reload.settings.prometheus.url == "http://127.0.0.1:9090"
    assert "prometheus.url, listen changed but take effect only after a restart" in caplog.text
    assert world.rescheduled == []

    world.write("interval: soon\n")
    world.reload.reload("files changed")
    assert world.health.config_file_problems() == 1
    assert "setting 'interval'" in world.health.config_problems[0]
    assert "refused, keeping the last good config" in caplog.text
    assert world.reload.settings.interval == timedelta(seconds=30)

    world.write("listen: 127.0.0.1:8731\n")
    world.reload.reload("SIGHUP")
    assert world.health.config_file_problems() == 0
