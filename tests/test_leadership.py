"""The leader lease, driven by fake time: one leader at a time, a deposed leader stops before a takeover.

``Table`` is the lease row as the database keeps it (the same compare-and-set as
``budgetguard.store.postgres.LeaseTable``, judged by the database's clock), so these tests drive
``Leader`` through the seam it uses in production; the SQL itself is tested on a real PostgreSQL in
tests/test_store_postgres.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from budgetguard.leadership import Leader
from budgetguard.store import Lease, StoreError

LEASE = timedelta(seconds=15)


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Table:
    """The lease row. ``latency`` is how long a call takes before the database executes it; ``down``
    makes every call fail as an unreachable database does."""

    clock: Clock
    owner: str | None = None
    token: int = 0
    expires_at: float = 0.0
    latency: float = 0.0
    down: set[str] = field(default_factory=set)

    def _reach(self, who: str) -> None:
        if who in self.down:
            raise StoreError(f"{who} cannot reach the database")
        self.clock.advance(self.latency)

    def acquire(self, holder: str, duration: timedelta) -> Lease | None:
        self._reach(holder)
        if self.owner is not None and self.expires_at > self.clock():
            return None
        self.owner, self.token = holder, self.token + 1
        self.expires_at = self.clock() + duration.total_seconds()
        return Lease(holder, self.token)

    def renew(self, lease: Lease, duration: timedelta) -> Lease | None:
        self._reach(lease.holder)
        if (self.owner, self.token) != (lease.holder, lease.token):
            return None
        self.expires_at = self.clock() + duration.total_seconds()
        return lease

    def release(self, lease: Lease) -> None:
        self._reach(lease.holder)
        if (self.owner, self.token) == (lease.holder, lease.token):
            self.expires_at = self.clock()

    def holder(self) -> tuple[Lease, float] | None:
        if self.owner is None:
            return None
        return Lease(self.owner, self.token), self.expires_at - self.clock()


def replicas(names: str = "ab", latency: float = 0.0) -> tuple[Clock, Table, dict[str, Leader], list[str]]:
    clock = Clock()
    table = Table(clock, latency=latency)
    changes: list[str] = []
    leaders = {
        name: Leader(
            table,
            name,
            LEASE,
            clock=clock,
            on_change=lambda lease, name=name: changes.append(f"{name}:{lease.token if lease else '-'}"),
        )
        for name in names
    }
    return clock, table, leaders, changes


def test_the_first_replica_to_ask_leads_and_the_second_follows() -> None:
    _, _, leaders, changes = replicas()

    leaders["a"].step()
    leaders["b"].step()

    assert leaders["a"].leading and leaders["a"].may_act()
    assert not leaders["b"].leading and not leaders["b"].may_act()
    assert changes == ["a:1"]


def test_a_leader_that_renews_in_time_leads_for_as_long_as_it_runs() -> None:
    clock, _, leaders, changes = replicas()
    for _ in range(100):
        for leader in leaders.values():
            leader.step()
        clock.advance(leaders["a"].renew_every.total_seconds())

    assert leaders["a"].leading and not leaders["b"].leading
    assert changes == ["a:1"]


def test_a_leader_cut_off_from_the_database_stops_acting_before_anyone_can_take_over() -> None:
    clock, table, leaders, changes = replicas()
    a, b = leaders["a"], leaders["b"]
    a.step()
    b.step()
    table.down.add("a")
    stopped_acting = took_over = None
    while took_over is None:
        clock.advance(0.5)
        a.step()
        b.step()
        if stopped_acting is None and not a.may_act():
            stopped_acting = clock()
        if b.leading:
            took_over = clock()

    assert stopped_acting is not None and stopped_acting < took_over
    assert took_over - 1000.0 <= LEASE.total_seconds() + 0.5, "the successor leads within the lease"
    assert not a.leading
    assert changes == ["a:1", "a:-", "b:2"]


def test_a_deposed_leader_that_comes_back_finds_the_lease_taken_and_follows() -> None:
    clock, table, leaders, changes = replicas()
    a, b = leaders["a"], leaders["b"]
    a.step()
    table.down.add("a")  # a is frozen (a long GC pause, a cut network) and b takes over
    clock.advance(LEASE.total_seconds() + 1)
    b.step()
    table.down.clear()

    a.step()

    assert b.leading and not a.leading
    assert b.lease == Lease("b", 2)
    assert changes == ["a:1", "b:2", "a:-"]


def test_a_slow_renewal_counts_the_lease_from_when_it_was_sent() -> None:
    clock, _, leaders, _ = replicas("a", latency=4.0)
    a = leaders["a"]

    a.step()  # sent at 1000, executed at 1004: the database says until 1019, a believes until 1015

    clock.advance(15.0 - 4.0 - 0.01)
    assert a.leading
    clock.advance(0.02)
    assert not a.leading


def test_acting_needs_a_third_of_the_lease_ahead() -> None:
    clock, table, leaders, _ = replicas("a")
    a = leaders["a"]
    a.step()
    table.down.add("a")

    clock.advance(9.9)
    assert a.may_act()
    clock.advance(0.2)
    assert a.leading and not a.may_act(), "too little lease left to finish an action inside it"


def test_a_leader_that_resigns_is_replaced_at_once() -> None:
    _, _, leaders, changes = replicas()
    leaders["a"].step()

    leaders["a"].resign()
    leaders["b"].step()

    assert leaders["b"].leading and not leaders["a"].leading
    assert changes == ["a:1", "a:-", "b:2"]


def test_the_lease_must_last_at_least_a_second() -> None:
    with pytest.raises(ValueError, match="at least 1s"):
        Leader(Table(Clock()), "a", timedelta(milliseconds=500))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from("abc"),  # who steps
            st.floats(min_value=0.0, max_value=8.0),  # time passing before it does
            st.sampled_from(["up", "down", "slow"]),  # how its database call goes
        ),
        min_size=1,
        max_size=60,
    )
)
def test_never_two_replicas_may_act_at_once_whatever_fails_and_whenever(
    script: list[tuple[str, float, str]],
) -> None:
    clock, table, leaders, _ = replicas("abc")
    tokens_seen: list[int] = []
    for who, wait, network in script:
        clock.advance(wait)
        table.down = {who} if network == "down" else set()
        table.latency = 3.0 if network == "slow" else 0.0
        leaders[who].step()
        table.latency = 0.0
        acting = [name for name, leader in leaders.items() if leader.leading]
        assert len(acting) <= 1, acting
        for name in acting:
            # whoever believes it leads holds the row in the database too, with the newest token
            assert (table.owner, table.token) == (name, leaders[name].lease.token)  # type: ignore[union-attr]
            assert table.expires_at >= clock()
            tokens_seen.append(table.token)
    assert tokens_seen == sorted(tokens_seen), "fencing tokens only go up"


def test_a_follower_steps_again_when_the_current_lease_runs_out() -> None:
    clock, _, leaders, _ = replicas()
    a, b = leaders["a"], leaders["b"]
    a.step()
    b.step()
    clock.advance(2.0)

    assert a.next_step_in() == a.renew_every
    assert b.next_step_in() == a.renew_every, "at most a third of the lease"
    clock.advance(9.0)  # 4 s of a's lease left
    assert b.next_step_in() == timedelta(seconds=4.05)
    assert b.status()["leader_replica"] == "a" and not b.status()["leader"]
    assert a.status()["leader"] and a.status()["token"] == 1
