"""Which replica leads: a lease in the shared database, renewed in time, given up before it can be taken.

Replicas on one PostgreSQL database all evaluate and serve the API, the gates and /metrics, but only
one may open and resolve incidents and deliver the outbox, or a failing canary gets two rollbacks with
two ids. Why a lease row with a fencing token rather than a session advisory lock: an advisory lock
lives as long as the session, and a session outlives its client when the network is cut (until TCP
keepalives give up, tens of seconds to hours), so a partitioned leader keeps it while it can no longer
write, and nothing bounds when a successor may start. A lease has an expiry judged by the database's one
clock, so a successor starts at a known time; and its token, one higher at every takeover, lets each
write of the leader be conditional on still holding it (``budgetguard.store``'s fence), so a deposed
leader's late write is refused rather than applied.

``Leader`` is the holder's side, a state machine driven by a monotonic clock (tests pass a fake one):
``step()`` acquires or renews once (the daemon calls it every third of the lease, off the event loop).
The lease is trusted locally until ``sent + duration``, where ``sent`` is when the renewing call was
*sent*: the database set its expiry later than that, so this replica always stops believing before the
database lets anyone else take over, whatever the clocks' offsets. ``may_act()`` is the check before each
action: it demands a third of the lease still ahead, room for the action to finish inside it. A step
that fails (database unreachable) keeps the lease until that local deadline, then drops it.

SQLite runs one replica: ``budgetguard.store.lockfile`` makes it the only one, and it always leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Protocol

from budgetguard.core.errors import BudgetguardError
from budgetguard.store import Lease

log = logging.getLogger(__name__)


class LeaseBackend(Protocol):
    """The lease's compare-and-set in the shared database (``budgetguard.store.postgres.LeaseTable``)."""

    def acquire(self, holder: str, duration: timedelta) -> Lease | None: ...

    def renew(self, lease: Lease, duration: timedelta) -> Lease | None: ...

    def release(self, lease: Lease) -> None: ...

    def holder(self) -> tuple[Lease, float] | None:
        """The lease as stored and the seconds it has left (negative: expired); None if never held."""
        ...


def replica_id() -> str:
    """This replica's name in the lease: the host (a pod's name on Kubernetes) and the process."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Sole:
    """The leadership of the only replica (SQLite, held by ``budgetguard.store.lockfile``): always leads."""

    def __init__(self, holder: str) -> None:
        self.holder = holder

    @property
    def leading(self) -> bool:
        return True

    def may_act(self) -> bool:
        return True

    def status(self) -> dict[str, Any]:
        return {"replica": self.holder, "leader": True, "mode": "single", "leader_replica": self.holder}


class Leader:
    """This replica's view of the lease: ``leading``, ``may_act()``, ``step()``.

    ``on_change(lease or None)`` is called at every change of leadership, after the state changed.
    """

    def __init__(
        self,
        backend: LeaseBackend,
        holder: str,
        duration: timedelta = timedelta(seconds=15),
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[Lease | None], None] | None = None,
    ) -> None:
        if duration < timedelta(seconds=1):
            raise ValueError(f"the lease must last at least 1s, got {duration}")
        self.backend = backend
        self.holder = holder
        self.duration = duration
        self._clock = clock
        self._on_change = on_change
        self.lease: Lease | None = None
        self._deadline = 0.0
        self._seen: tuple[Lease, float] | None = None
        self.changes = 0

    @property
    def renew_every(self) -> timedelta:
        """A third of the lease: two renewals in a row may fail before the lease runs out."""
        return self.duration / 3

    @property
    def margin(self) -> timedelta:
        """What must remain of the lease to start an action: room for it to finish inside the lease."""
        return self.duration / 3

    @property
    def leading(self) -> bool:
        """Whether this replica holds a lease that has not run out by its own clock."""
        return self.lease is not None and self._clock() < self._deadline

    def remaining(self) -> timedelta:
        """How much of the lease is left by this replica's clock (zero when not leading)."""
        if self.lease is None:
            return timedelta(0)
        return timedelta(seconds=max(self._deadline - self._clock(), 0.0))

    def may_act(self) -> bool:
        """The check before each action: leading with at least ``margin`` of the lease ahead."""
        return self.lease is not None and self.remaining() >= self.margin

    def step(self) -> None:
        """Acquire the lease, or renew the one held; drop it if it ran out. Never raises."""
        sent = self._clock()
        held = self.lease
        try:
            got = (
                self.backend.renew(held, self.duration)
                if held
                else self.backend.acquire(self.holder, self.duration)
            )
        except BudgetguardError as exc:
            if held is not None:
                log.warning(
                    "cannot renew the leader lease (token %d): %s; leading %.1fs more at most",
                    held.token,
                    exc,
                    self.remaining().total_seconds(),
                )
            else:
                log.warning("cannot reach the database to seek the leader lease: %s", exc)
            self._expire()
            return
        if got is None:
            if held is not None:
                log.warning("the leader lease (token %d) was taken over by another replica", held.token)
                self._set(None)
            return
        self._deadline = sent + self.duration.total_seconds()
        if held is None or held.token != got.token:
            self._set(got)

    def next_step_in(self) -> timedelta:
        """When to step again: a third of the lease while leading; while following, when the current
        lease runs out (so a successor takes over within one lease of its holder's last renewal), and a
        third of the lease at most."""
        if self.lease is not None:
            return self.renew_every
        try:
            held = self.backend.holder()
        except BudgetguardError:
            return self.renew_every
        self._seen = held
        if held is None:
            return timedelta(0)
        return min(self.renew_every, timedelta(seconds=max(held[1], 0.0) + 0.05))

    def status(self) -> dict[str, Any]:
        """For the API: this replica, whether it leads, and the lease as last seen."""
        seen = self._seen
        return {
            "replica": self.holder,
            "leader": self.leading,
            "mode": "lease",
            "lease_seconds": self.duration.total_seconds(),
            "token": self.lease.token if self.lease is not None else None,
            "lease_remaining_seconds": round(self.remaining().total_seconds(), 3) if self.lease else None,
            "leader_replica": self.holder if self.leading else (seen[0].holder if seen else None),
            "changes": self.changes,
        }

    def _expire(self) -> None:
        if self.lease is not None and self._clock() >= self._deadline:
            log.warning("the leader lease (token %d) ran out: no longer leading", self.lease.token)
            self._set(None)

    def resign(self) -> None:
        """Give the lease up (a clean stop), so another replica takes over at once, not after expiry."""
        held = self.lease
        if held is None:
            return
        self._set(None)
        try:
            self.backend.release(held)
        except BudgetguardError as exc:
            log.warning(
                "cannot release the leader lease (token %d): %s; it runs out by itself", held.token, exc
            )

    def _set(self, lease: Lease | None) -> None:
        self.lease = lease
        self.changes += 1
        if lease is not None:
            log.info("leading: %s holds the leader lease, token %d", lease.holder, lease.token)
        else:
            log.warning("%s is no longer the leader", self.holder)
        if self._on_change is not None:
            self._on_change(lease)


async def keep(leader: Leader, stop: asyncio.Event, changed: Callable[[Lease | None], None]) -> None:
    """Until ``stop``: step the lease off the event loop (a database that hangs must not stall the
    API), then call ``changed`` on the loop when leadership changed; resign at the end."""
    while not stop.is_set():
        before = leader.lease
        await asyncio.to_thread(leader.step)
        if leader.lease != before:
            changed(leader.lease)
        wait = await asyncio.to_thread(leader.next_step_in)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=max(wait.total_seconds(), 0.01))
    if leader.lease is not None:
        await asyncio.to_thread(leader.resign)
        changed(None)
