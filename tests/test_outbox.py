"""The outbox worker against a real SQLite file and scripted actions: retries, give-up, dry runs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from budgetguard.control import Control
from budgetguard.core.errors import ControlError
from budgetguard.core.guard import Decision, Delivery, Incident, OutboxEntry, idempotency_key
from budgetguard.core.ports import ActionOutcome, ActionRequest, ActionResult, EventKind
from budgetguard.outbox import OutboxWorker, RetryPolicy
from budgetguard.statelog import StateLog
from budgetguard.store import OutboxStatus, Store
from tests.conftest import Backend

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
INCIDENT = Incident(
    id="inc-1",
    slo_id="checkout/availability",
    service="checkout",
    slo="availability",
    canary_label="version",
    canary_value="v2",
    baseline="v1",
    opened_at=T0,
    reason="burning",
)


def request(action: str, event: EventKind = EventKind.TRIGGER) -> ActionRequest:
    return ActionRequest(
        event=event,
        idempotency_key=idempotency_key(INCIDENT.id, action, event),
        incident_id=INCIDENT.id,
        service="checkout",
        slo="availability",
        reason="burning",
        at=T0,
        canary_label="version",
        canary_value="v2",
    )


class Scripted:
    """An action answering from a script; the last answer repeats."""

    def __init__(self, name: str, *answers: ActionResult, resend: timedelta | None = None) -> None:
        self.name = name
        self.answers = list(answers)
        self.calls: list[ActionRequest] = []
        self.resend = resend

    async def deliver(self, req: ActionRequest) -> ActionResult:
        self.calls.append(req)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    async def aclose(self) -> None:
        return None

    def needs_resend(self) -> timedelta | None:
        return self.resend


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(backend: Backend) -> Iterator[Store]:
    with backend.open() as s:  # a real SQLite file, then a real PostgreSQL database
        yield s


def write(store: Store, *entries: OutboxEntry) -> None:
    store.write_decision(Decision(opened=(INCIDENT,), outbox=entries), T0)


def run_until_quiet(worker: OutboxWorker, clock: Clock, steps: int, step: timedelta) -> None:
    async def go() -> None:
        for _ in range(steps):
            worker.start_due()
            await worker.drain()
            clock.now += step

    asyncio.run(go())


OK = ActionResult(ActionOutcome.DELIVERED, "ok", 200)
DOWN = ActionResult(ActionOutcome.RETRY, "503 Service Unavailable", 503)


def test_retried_with_backoff_until_the_target_recovers_then_never_again(store: Store) -> None:
    action = Scripted("abort", DOWN, DOWN, DOWN, OK)
    write(store, OutboxEntry("abort", request("abort"), dry_run=False))
    clock = Clock()
    worker = OutboxWorker(store, {"abort": action}, clock=clock, jitter=lambda: 0.999)
    run_until_quiet(worker, clock, steps=60, step=timedelta(seconds=1))
    assert len(action.calls) == 4
    assert {c.idempotency_key for c in action.calls} == {"inc-1.abort.trigger"}
    [row] = store.outbox()
    assert (row.status, row.attempts, row.last_status) == (OutboxStatus.DELIVERED, 4, 200)
    # 1 s, 2 s, 4 s apart (jitter at its top): the fourth call comes 7 s after the first
    assert row.done_at == T0 + timedelta(seconds=7)


def test_retry_after_is_honoured_and_a_4xx_is_not_retried(store: Store) -> None:
    slow = Scripted("slow", ActionResult(ActionOutcome.RETRY, "429", 429, timedelta(seconds=30)), OK)
    bad = Scripted("bad", ActionResult(ActionOutcome.FAILED, "404 rollout not found", 404))
    write(store, OutboxEntry("slow", request("slow"), False), OutboxEntry("bad", request("bad"), False))
    clock = Clock()
    worker = OutboxWorker(store, {"slow": slow, "bad": bad}, clock=clock, jitter=lambda: 0.0)
    run_until_quiet(worker, clock, steps=29, step=timedelta(seconds=1))
    assert len(slow.calls) == 1 and len(bad.calls) == 1
    run_until_quiet(worker, clock, steps=3, step=timedelta(seconds=1))
    assert len(slow.calls) == 2 and len(bad.calls) == 1
    statuses = {row.action: row.status for row in store.outbox()}
    assert statuses == {"slow": OutboxStatus.DELIVERED, "bad": OutboxStatus.FAILED}


def test_gives_up_after_the_deadline_and_a_manual_retry_sends_it_again(store: Store) -> None:
    action = Scripted("abort", DOWN)
    write(store, OutboxEntry("abort", request("abort"), False))
    clock = Clock()
    retry = RetryPolicy(
        base=timedelta(seconds=1), cap=timedelta(seconds=10), give_up_after=timedelta(minutes=1)
    )
    worker = OutboxWorker(store, {"abort": action}, retry=retry, clock=clock, jitter=lambda: 0.0)
    run_until_quiet(worker, clock, steps=120, step=timedelta(seconds=1))
    [row] = store.outbox()
    assert row.status is OutboxStatus.FAILED and "gave up after" in (row.last_detail or "")
    calls = len(action.calls)
    assert 10 <= calls <= 20  # backoff (0.5 s doubling to a 5 s cap at this jitter), not one call a second

    control = Control(store, Delivery())
    with pytest.raises(ControlError):
        control.retry(999, clock.now)
    action.answers = [OK]
    assert control.retry(row.id, clock.now)["status"] == "pending"
    run_until_quiet(worker, clock, steps=2, step=timedelta(seconds=1))
    assert len(action.calls) == calls + 1 and store.outbox()[0].status is OutboxStatus.DELIVERED
    with pytest.raises(ControlError, match="only a failed one"):
        control.retry(row.id, clock.now)


def test_dry_run_entries_are_recorded_and_never_called(store: Store) -> None:
    action = Scripted("abort", OK)
    write(store, OutboxEntry("abort", request("abort"), dry_run=True))
    clock = Clock()
    run_until_quiet(OutboxWorker(store, {"abort": action}, clock=clock), clock, 5, timedelta(seconds=1))
    assert action.calls == []
    [row] = store.outbox()
    assert row.status is OutboxStatus.DRY_RUN and row.idempotency_key == "inc-1.abort.trigger"


def test_a_replayed_decision_adds_no_second_row(store: Store) -> None:
    entry = OutboxEntry("abort", request("abort"), False)
    write(store, entry)
    write(store, entry)
    assert len(store.outbox()) == 1 and len(store.incidents()) == 1


def test_triggers_to_forgetful_targets_are_resent_while_the_incident_is_open(store: Store) -> None:
    am = Scripted("am", OK, resend=timedelta(minutes=1))
    write(store, OutboxEntry("am", request("am"), False))
    clock = Clock()
    worker = OutboxWorker(store, {"am": am}, clock=clock)
    run_until_quiet(worker, clock, steps=5 * 60 // 10, step=timedelta(seconds=10))
    assert len(am.calls) == 5  # at 0, 1, 2, 3 and 4 minutes
    Control(store, Delivery(resolvable=frozenset({"am"}))).resolve(INCIDENT.id, "ops", clock.now)
    run_until_quiet(worker, clock, steps=30, step=timedelta(seconds=10))
    assert [c.event for c in am.calls[5:]] == [EventKind.RESOLVE]
    assert [row.status for row in store.outbox()] == [OutboxStatus.DELIVERED, OutboxStatus.DELIVERED]


def test_an_action_no_longer_configured_fails_visibly(store: Store) -> None:
    write(store, OutboxEntry("gone", request("gone"), False))
    clock = Clock()
    run_until_quiet(OutboxWorker(store, {}, clock=clock), clock, 2, timedelta(seconds=1))
    [row] = store.outbox()
    assert row.status is OutboxStatus.FAILED and "no longer configured" in (row.last_detail or "")


def test_retention_drops_incidents_resolved_long_ago_and_keeps_open_ones(store: Store) -> None:
    write(store, OutboxEntry("abort", request("abort"), False))
    later = INCIDENT.opened_at + timedelta(days=100)
    store.prune(later)
    assert len(store.incidents()) == 1 and len(store.outbox()) == 1  # still open: kept
    Control(store, Delivery()).resolve(INCIDENT.id, "ops", INCIDENT.opened_at + timedelta(days=1))
    store.prune(later - timedelta(days=20))  # resolved 79 days before: within the 90 days
    assert len(store.incidents()) == 1
    store.prune(later)
    assert store.incidents() == [] and store.outbox() == []


def test_with_a_state_log_failing_deliveries_log_once_and_their_recovery_once(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 13: a target down for a while logs when it starts failing and when it recovers, not once
    per attempt (the StateLog's interval is longer than the whole outage here)."""
    caplog.set_level(logging.INFO)
    action = Scripted("abort", DOWN, DOWN, DOWN, DOWN, DOWN, OK)
    write(store, OutboxEntry("abort", request("abort"), dry_run=False))
    clock = Clock()
    states = StateLog(logging.getLogger("budgetguard.outbox"), timedelta(hours=1), clock=lambda: 0.0)
    worker = OutboxWorker(store, {"abort": action}, clock=clock, jitter=lambda: 0.0, states=states)
    run_until_quiet(worker, clock, steps=60, step=timedelta(seconds=1))
    assert len(action.calls) == 6
    failing = [r.getMessage() for r in caplog.records if "are failing" in r.getMessage()]
    assert failing == [
        "deliveries of action abort are failing: abort inc-1.abort.trigger: attempt 1 failed "
        "(503 Service Unavailable); retried with backoff (`budgetguard incidents` lists them)"
    ]
    assert not [r for r in caplog.records if "attempt 2 failed" in r.getMessage()]
    states.flush()  # within the interval: the recovery is held, and then logged once it passes
    assert states.state("delivery:abort") == "failing"


def test_a_replica_that_does_not_lead_delivers_nothing_and_the_leader_everything_once(store: Store) -> None:
    action = Scripted("abort", OK)
    write(store, OutboxEntry("abort", request("abort"), False))
    clock = Clock()
    follower = OutboxWorker(store, {"abort": action}, clock=clock, may_act=lambda: False, holder="b")
    leader = OutboxWorker(store, {"abort": action}, clock=clock, may_act=lambda: True, holder="a")

    run_until_quiet(follower, clock, steps=3, step=timedelta(seconds=1))
    assert action.calls == []
    run_until_quiet(leader, clock, steps=3, step=timedelta(seconds=1))
    run_until_quiet(follower, clock, steps=3, step=timedelta(seconds=1))

    assert [c.idempotency_key for c in action.calls] == ["inc-1.abort.trigger"]


def test_a_leader_whose_lease_runs_short_before_the_call_leaves_the_row_to_its_successor(
    store: Store,
) -> None:
    action = Scripted("abort", OK)
    write(store, OutboxEntry("abort", request("abort"), False))
    clock = Clock()
    answers = iter([True, False])  # leading when it claims, too little lease left when the call's turn comes
    worker = OutboxWorker(
        store, {"abort": action}, clock=clock, may_act=lambda: next(answers, False), holder="a"
    )

    run_until_quiet(worker, clock, steps=1, step=timedelta(seconds=1))

    assert action.calls == []
    [row] = store.outbox()
    assert (row.status, row.attempts) == (OutboxStatus.PENDING, 0)
    # The claim lapses (a newer lease takes it at once: tests/test_store_postgres.py).
    clock.now += timedelta(minutes=5)
    successor = OutboxWorker(store, {"abort": action}, clock=clock, holder="b")
    run_until_quiet(successor, clock, steps=1, step=timedelta(seconds=1))
    assert [c.idempotency_key for c in action.calls] == ["inc-1.abort.trigger"]
