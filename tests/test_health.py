"""The daemon's view of itself: what it logs, when it is ready, what its health series say.

``GuardHealth`` is built here with a real store (a temporary SQLite file) and a StateLog on a fake
clock; evaluations come from the policy as the engine makes them.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from budgetguard.core import policy
from budgetguard.core.policy import Evaluation, Observation
from budgetguard.health import GuardHealth
from budgetguard.statelog import StateLog
from budgetguard.store import Store
from tests.helpers import slo_from

AT = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
URL = "http://prometheus.monitoring:9090"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store(tmp_path / "bg.db") as opened:
        yield opened  # type: ignore[misc]


@pytest.fixture
def health(store: Store, clock: Clock) -> GuardHealth:
    states = StateLog(logging.getLogger("budgetguard"), timedelta(seconds=60), clock=clock)
    return GuardHealth(store, states, source_url=URL, clock=lambda: AT, monotonic=clock)


SLO = slo_from()


def healthy() -> Evaluation:
    return policy.evaluate(SLO, {w: Observation(w, 0.0001, 1e4) for w in SLO.windows()}, AT)


def down() -> Evaluation:
    return policy.failed(
        SLO, AT, f"source error (unavailable): cannot reach {URL}: connection refused", "unavailable"
    )


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "budgetguard"]


def test_the_first_verdict_is_logged_then_only_changes(
    health: GuardHealth, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    health.observe_cycle([healthy()])
    health.observe_cycle([healthy()])
    clock.now += 61
    health.observe_cycle([down()])
    lines = messages(caplog)
    assert lines[0].startswith(f"{SLO.id}: healthy: ")
    assert lines[1] == f"the metrics source {URL} answers"
    assert lines[2].startswith(f"{SLO.id}: healthy -> error: source error (unavailable)")
    assert len(lines) == 4  # the source failing is the fourth


def test_a_failing_source_is_logged_once_with_its_url_and_cause_and_its_recovery_too(
    health: GuardHealth, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for _ in range(10):
        health.observe_cycle([down()])
        clock.now += 30
    failing = [m for m in messages(caplog) if "fails for every SLO" in m]
    assert failing == [
        f"the metrics source {URL} fails for every SLO (unavailable): source error (unavailable): cannot "
        f"reach {URL}: connection refused; no SLO is judged and no canary would be halted"
    ]
    health.observe_cycle([healthy()])
    assert messages(caplog)[-1] == f"the metrics source {URL} answers again"


def test_readiness_is_false_while_the_cycles_write_fails_and_says_why(
    health: GuardHealth, clock: Clock, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    assert health.readiness(0) == (False, "the first evaluation cycle has not finished yet")
    assert health.readiness(1) == (True, "1 cycle(s) done")
    health.record_write("cannot commit to the budgetguard database: disk I/O error")
    ready, why = health.readiness(2)
    assert not ready
    assert why.startswith("cannot commit to the budgetguard database: disk I/O error")
    assert "no canary would be halted" in why
    assert any("the store refuses writes: cannot commit" in m for m in messages(caplog))
    clock.now += 61  # the next probe's real write commits: ready again (logged: a minute has passed)
    assert health.readiness(3) == (True, "3 cycle(s) done")
    assert messages(caplog)[-1] == "the store takes writes again"
    store.close()
    clock.now += 2
    assert health.readiness(4) == (
        False,
        f"the store {store.path} is closed: no decision can be stored, so no canary would be halted",
    )


def test_the_health_series_read_incidents_and_pauses_from_the_store(
    health: GuardHealth, store: Store
) -> None:
    store.pause("checkout/availability", AT, until=None, by="ops", reason="game day")
    assert list(health.paused()) == [("checkout", "availability")]
    assert dict(health.open_incidents()) == {}
    assert health.store_problem() is None
    health.config_problems = ["actions.x: unknown setting"]
    assert health.config_file_problems() == 1
