"""The state-change log: first states and changes are logged, repeats are not, and no subject logs more
often than its interval, while the line after a quiet spell still says where the subject ended up."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from budgetguard.statelog import StateLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def states(clock: Clock) -> StateLog:
    return StateLog(logging.getLogger("test.statelog"), timedelta(seconds=60), clock=clock)


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "test.statelog"]


def test_the_first_state_of_each_subject_is_logged_and_a_repeat_is_not(
    states: StateLog, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    assert states.observe("slo:a", "healthy", logging.INFO, "%s: first verdict %s", "a", "healthy")
    assert states.observe("slo:b", "error", logging.WARNING, "%s: first verdict %s", "b", "error")
    assert not states.observe("slo:a", "healthy", logging.INFO, "again")
    assert lines(caplog) == ["a: first verdict healthy", "b: first verdict error"]
    assert states.state("slo:a") == "healthy"


def test_changes_within_the_interval_are_held_and_the_latest_is_logged_once_it_passes(
    states: StateLog, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    states.observe("source", "ok", logging.INFO, "source answers")
    clock.now += 10
    assert not states.observe("source", "down", logging.WARNING, "source down: %s", "refused")
    clock.now += 10
    assert not states.observe("source", "timeout", logging.WARNING, "source down: %s", "timeout")
    assert states.flush() == 0  # still within the interval
    clock.now += 41
    assert states.flush() == 1
    assert lines(caplog) == [
        "source answers",
        "source down: timeout (2 changes within 60s, this is the latest)",
    ]
    assert states.state("source") == "timeout"


def test_a_change_undone_within_the_interval_logs_nothing(
    states: StateLog, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    states.observe("store", "ok", logging.INFO, "store writable")
    clock.now += 5
    states.observe("store", "failing", logging.ERROR, "store refuses writes")
    clock.now += 5
    states.observe("store", "ok", logging.INFO, "store writable")
    clock.now += 100
    assert states.flush() == 0
    assert lines(caplog) == ["store writable"]


def test_a_change_after_the_interval_is_logged_at_once_and_a_forgotten_subject_starts_over(
    states: StateLog, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    states.observe("slo:a", "healthy", logging.INFO, "a healthy")
    clock.now += 61
    assert states.observe("slo:a", "burning", logging.WARNING, "a burning")
    states.forget("slo:a")
    assert states.observe("slo:a", "burning", logging.INFO, "a burning, first verdict again")
    assert lines(caplog) == ["a healthy", "a burning", "a burning, first verdict again"]


def test_settling_back_to_a_quiet_state_writes_nothing_and_keeps_the_interval_free(
    states: StateLog, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    states.settle("note:a", "")
    assert states.observe("note:a", "held 0s", logging.INFO, "held for 0s")  # logged at once
    clock.now += 1
    states.settle("note:a", "")
    assert not states.observe("note:a", "held 2s", logging.INFO, "held for 2s")  # within the interval
    assert lines(caplog) == ["held for 0s"]
