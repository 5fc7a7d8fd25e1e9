"""The outbox worker: delivers what decisions wrote to the outbox, with retries, exactly once per entry.

Decisions never call a target: they write outbox rows in the cycle's transaction (``guard``,
``Store.write_decision``), and this worker delivers them. So a daemon killed between deciding and
delivering finds the row still pending after the restart and delivers it then, with the same
idempotency key; and an entry that was delivered is marked so before the worker looks again, so
budgetguard never sends it twice. (A kill in the instant between the target's answer and the mark
sends it once more after the restart, with the same key: the target's deduplication is the last line,
integrations.md §8.2.)

Retries (integrations.md §8.3): an action classifies each answer (``ActionResult``). RETRY waits an
exponential backoff with jitter, and at least the target's ``Retry-After``; FAILED (a 4xx other than
408, 409, 425, 429, a missing object, bad credentials) is never retried by itself, and neither is a
delivery that kept failing for ``give_up_after``; ``budgetguard incidents retry`` puts either back.
Triggers of open incidents to targets that forget alerts (Alertmanager) are sent again every
``needs_resend()``.

Replicas (issue 12): the worker runs on every replica but delivers only while ``may_act()`` says this
one leads with time to spare on its lease, and it asks again right before each call. It claims the rows
it takes (``claim_due``), so a row is in one delivery at a time; on PostgreSQL the claims and the
recorded attempts are fenced by the lease, and a successor picks up the rows its predecessor had
claimed at once, with the same idempotency keys.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from budgetguard.core.errors import BudgetguardError
from budgetguard.core.ports import Action, ActionOutcome, ActionResult, EventKind
from budgetguard.statelog import StateLog
from budgetguard.store import OutboxRow, OutboxStatus

log = logging.getLogger(__name__)


class OutboxStore(Protocol):
    """What the worker needs of the store: the rows due (claimed for it), when the next falls due, and
    each attempt's end.

    ``budgetguard.store.Store`` (SQLite) and the PostgreSQL store implement it; a test may pass either.
    """

    def claim_due(
        self, now: datetime, *, holder: str, hold_for: timedelta, limit: int = 50
    ) -> list[OutboxRow]: ...

    def next_due(self) -> datetime | None: ...

    def record_attempt(
        self,
        outbox_id: int,
        *,
        status: OutboxStatus,
        at: datetime,
        last_status: int | None,
        detail: str,
        next_attempt_at: datetime | None = None,
        resend_at: datetime | None = None,
        counts: bool = True,
    ) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff between attempts: ``base`` x 2^(attempt-1), at most ``cap``, times a random 0.5..1.

    Defaults: 1 s first, because a halt is urgent and most faults are a restarting pod; 5 minutes at
    most, so a target down for an hour is tried a dozen times an hour, not thousands; and a day before
    giving up, long enough for a human to fix a target, short enough that a stale halt is not sent
    into a release that moved on (and ``retry`` can still send it).
    """

    base: timedelta = timedelta(seconds=1)
    cap: timedelta = timedelta(minutes=5)
    give_up_after: timedelta = timedelta(days=1)

    def delay(self, attempts: int, jitter: float) -> timedelta:
        """The wait after ``attempts`` failed attempts; ``jitter`` in [0, 1) spreads retries out."""
        exponent = min(max(attempts - 1, 0), 32)
        raw: timedelta = min(self.base * (2**exponent), self.cap)
        return raw * (0.5 + 0.5 * jitter)


_FINAL = {
    ActionOutcome.DELIVERED: OutboxStatus.DELIVERED,
    ActionOutcome.ALREADY_DONE: OutboxStatus.ALREADY_DONE,
    ActionOutcome.FAILED: OutboxStatus.FAILED,
}


class OutboxWorker:
    """Delivers due outbox rows concurrently; one delivery per row at a time."""

    def __init__(
        self,
        store: OutboxStore,
        actions: Mapping[str, Action],
        *,
        retry: RetryPolicy | None = None,
        concurrency: int = 8,
        clock: Callable[[], datetime] = lambda: datetime.now(tz=UTC),
        jitter: Callable[[], float] = random.random,
        poll: timedelta = timedelta(seconds=1),
        on_result: Callable[[str, ActionOutcome], None] | None = None,
        states: StateLog | None = None,
        may_act: Callable[[], bool] = lambda: True,
        holder: str = "budgetguard",
        claim_for: timedelta = timedelta(minutes=5),
    ) -> None:
        self._store = store
        # With a StateLog, an action's retries log when its deliveries start or stop failing, at most
        # once per interval, rather than one line per attempt (issue 13); a delivery given up always logs.
        self._states = states
        self._actions = actions
        self._retry = retry or RetryPolicy()
        self._limit = asyncio.Semaphore(concurrency)
        self._clock = clock
        self._jitter = jitter
        self._poll = poll
        self._on_result = on_result
        self._wake = asyncio.Event()
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._may_act = may_act
        self._holder = holder
        self._claim_for = claim_for

    def wake(self) -> None:
        """Look for due rows now (a cycle just wrote some)."""
        self._wake.set()

    @property
    def busy(self) -> int:
        return len(self._inflight)

    def start_due(self) -> int:
        """Claim every due row not already in flight and start its delivery; returns how many started.

        Nothing while this replica does not lead (``may_act``)."""
        if not self._may_act():
            return 0
        try:
            rows = self._store.claim_due(self._clock(), holder=self._holder, hold_for=self._claim_for)
        except BudgetguardError:
            log.exception("cannot read the outbox; deliveries wait for the next look")
            return 0
        started = 0
        for row in rows:
            if row.id in self._inflight:
                continue
            task = asyncio.create_task(self._deliver(row), name=f"deliver-{row.id}")
            self._inflight[row.id] = task
            task.add_done_callback(self._forget(row.id))
            started += 1
        return started

    def _forget(self, row_id: int) -> Callable[[asyncio.Task[None]], None]:
        def done(_task: asyncio.Task[None]) -> None:
            self._inflight.pop(row_id, None)

        return done

    async def drain(self) -> None:
        """Wait for the deliveries in flight (tests, and a clean stop)."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight.values()), return_exceptions=True)

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``: deliver due rows, then sleep until the next is due, a wake-up or ``poll``."""
        while not stop.is_set():
            self.start_due()
            self._wake.clear()
            timeout = self._poll.total_seconds()
            try:
                upcoming = self._store.next_due()
            except BudgetguardError:
                upcoming = None
            if upcoming is not None:
                timeout = min(timeout, max((upcoming - self._clock()).total_seconds(), 0.0))
            waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            try:
                await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waits:
                    waiter.cancel()

    async def _call(self, action: Action, row: OutboxRow) -> ActionResult | None:
        """The action's answer, or None when this replica stopped leading before its turn came."""
        async with self._limit:
            if not self._may_act():
                # The lease is ending: leave the row claimed; the next leader's claim takes it over.
                log.info("%s %s: not sent, this replica no longer leads", row.action, row.idempotency_key)
                return None
            try:
                return await action.deliver(row.request)
            except Exception as exc:  # an action must classify, but a bug in one must not stop the rest
                log.exception("action %s raised while delivering %s", row.action, row.idempotency_key)
                return ActionResult(ActionOutcome.RETRY, f"internal error in the action: {exc!r}")

    async def _deliver(self, row: OutboxRow) -> None:
        action = self._actions.get(row.action)
        if action is None:
            self._record(
                row,
                OutboxStatus.FAILED,
                None,
                f"action {row.action!r} is no longer configured; declare it again and retry",
            )
            return
        if row.status is OutboxStatus.DELIVERED:  # a resend of an open incident's trigger
            result = await self._call(action, row)
            if result is not None:
                self._resend_done(action, row, result)
            return
        result = await self._call(action, row)
        if result is None:
            return
        if self._on_result is not None:
            self._on_result(row.action, result.outcome)
        now = self._clock()
        status = _FINAL.get(result.outcome)
        if status is not None:
            log_at = logging.WARNING if status is OutboxStatus.FAILED else logging.INFO
            log.log(log_at, "%s %s: %s (%s)", row.action, row.idempotency_key, status, result.detail)
            if self._states is not None and status is not OutboxStatus.FAILED:
                self._states.observe(
                    f"delivery:{row.action}",
                    "ok",
                    logging.INFO,
                    "deliveries of action %s succeed",
                    row.action,
                )
            resend = _resend_after(action) if status is OutboxStatus.DELIVERED else None
            wants_resend = resend is not None and row.request.event is EventKind.TRIGGER
            self._record(
                row,
                status,
                result.status,
                result.detail,
                resend_at=now + resend if wants_resend and resend is not None else None,
            )
            return
        attempts = row.attempts + 1
        if now - row.created_at >= self._retry.give_up_after:
            detail = f"gave up after {attempts} attempts over {now - row.created_at}; last: {result.detail}"
            log.error("%s %s: %s", row.action, row.idempotency_key, detail)
            self._record(row, OutboxStatus.FAILED, result.status, detail)
            return
        wait = self._retry.delay(attempts, self._jitter())
        if result.retry_after is not None:
            wait = max(wait, result.retry_after)
        if self._states is None:
            log.warning(
                "%s %s: attempt %d failed (%s); next in %.1fs",
                row.action,
                row.idempotency_key,
                attempts,
                result.detail,
                wait.total_seconds(),
            )
        else:
            self._states.observe(
                f"delivery:{row.action}",
                "failing",
                logging.WARNING,
                "deliveries of action %s are failing: %s %s: attempt %d failed (%s); retried with backoff "
                "(`budgetguard incidents` lists them)",
                row.action,
                row.action,
                row.idempotency_key,
                attempts,
                result.detail,
            )
        self._record(row, OutboxStatus.PENDING, result.status, result.detail, next_attempt_at=now + wait)

    def _resend_done(self, action: Action, row: OutboxRow, result: ActionResult) -> None:
        interval = _resend_after(action) or self._retry.cap
        now = self._clock()
        ok = result.outcome in (ActionOutcome.DELIVERED, ActionOutcome.ALREADY_DONE)
        wait = interval if ok else min(interval, self._retry.delay(1, self._jitter()))
        try:
            self._store.record_attempt(
                row.id,
                status=OutboxStatus.DELIVERED,
                at=now,
                last_status=result.status,
                detail=f"resent: {result.detail}",
                resend_at=now + wait,
                counts=False,
            )
        except BudgetguardError:
            log.exception("cannot record the resend of %s", row.idempotency_key)

    def _record(
        self,
        row: OutboxRow,
        status: OutboxStatus,
        http_status: int | None,
        detail: str,
        *,
        next_attempt_at: datetime | None = None,
        resend_at: datetime | None = None,
    ) -> None:
        try:
            self._store.record_attempt(
                row.id,
                status=status,
                at=self._clock(),
                last_status=http_status,
                detail=detail,
                next_attempt_at=next_attempt_at,
                resend_at=resend_at,
            )
        except BudgetguardError:
            # The row stays pending and is delivered again with the same key: at least once, never lost.
            log.exception("cannot record the delivery of %s; it will be retried", row.idempotency_key)


def _resend_after(action: Action) -> timedelta | None:
    needs = getattr(action, "needs_resend", None)
    return needs() if callable(needs) else None
