"""What only PostgreSQL adds to the store, on a real server: one schema with SQLite, replicas that open it
together, the leader lease's SQL, fenced writes and delivery claims; and the SQLite daemon lock.

The behaviour both backends share is specified once, in tests/test_store.py, test_outbox.py and
test_control_api.py, which run on both.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from budgetguard.core.errors import ConfigError
from budgetguard.core.guard import Decision, Incident, OutboxEntry, idempotency_key
from budgetguard.core.ports import ActionRequest, EventKind
from budgetguard.store import MIGRATIONS, Lease, NotLeader, Store, open_store
from budgetguard.store.lockfile import DaemonLock, DatabaseInUse
from budgetguard.store.postgres import POSTGRES_MIGRATIONS, LeaseTable, PostgresStore, redact, to_psycopg

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


def entry(action: str) -> OutboxEntry:
    request = ActionRequest(
        event=EventKind.TRIGGER,
        idempotency_key=idempotency_key(INCIDENT.id, action, EventKind.TRIGGER),
        incident_id=INCIDENT.id,
        service="checkout",
        slo="availability",
        reason="burning",
        at=T0,
        canary_label="version",
        canary_value="v2",
    )
    return OutboxEntry(action, request, False)


@pytest.fixture
def store(postgres_url: str) -> Iterator[PostgresStore]:
    with PostgresStore(postgres_url) as opened:
        yield opened


# --- one schema, two dialects ----------------------------------------------------------------------


def test_both_backends_run_the_same_numbered_migrations() -> None:
    assert [(m.version, m.description) for m in POSTGRES_MIGRATIONS] == [
        (m.version, m.description) for m in MIGRATIONS
    ]


def test_both_backends_have_the_same_tables_and_columns(postgres_url: str, tmp_path: Path) -> None:
    Store(tmp_path / "bg.db").close()
    with closing(sqlite3.connect(tmp_path / "bg.db")) as conn:
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        in_sqlite = {
            (table, column)
            for table in tables
            for (_, column, *_) in conn.execute(f"PRAGMA table_info({table})")
        }
    PostgresStore(postgres_url).close()
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
        ).fetchall()
        in_postgres = {(table, column) for table, column in rows if table != "budgetguard_schema"}

    assert in_postgres == in_sqlite


def test_replicas_opening_a_new_database_together_migrate_it_once(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="budgetguard.store.postgres")
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            PostgresStore(postgres_url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    applied = [r.getMessage() for r in caplog.records if "applied migration" in r.getMessage()]
    assert len(applied) == len(POSTGRES_MIGRATIONS)


def test_a_database_of_another_application_is_refused_and_left_alone(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")

    with pytest.raises(ConfigError, match="not a budgetguard database: it has the tables customers"):
        PostgresStore(postgres_url)
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT to_regclass('evaluations')").fetchone() == (None,)


def test_a_database_written_by_a_newer_budgetguard_is_refused(postgres_url: str) -> None:
    PostgresStore(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE budgetguard_schema SET version = version + 1")

    with pytest.raises(ConfigError, match=rf"schema version {len(MIGRATIONS) + 1}, written by a newer"):
        PostgresStore(postgres_url)


def test_an_unreachable_server_is_a_store_error_without_the_password() -> None:
    with pytest.raises(Exception, match=r"cannot connect to postgresql://bg@127\.0\.0\.1:1/x") as raised:
        open_store("postgresql://bg:hunter2@127.0.0.1:1/x")

    assert "hunter2" not in str(raised.value)
    assert redact("postgresql://bg:hunter2@db:5433/guard") == "postgresql://bg@db:5433/guard"


@pytest.mark.parametrize(
    ("sqlite", "psycopg_style"),
    [
        pytest.param("SELECT ? , ?", "SELECT %s , %s", id="positional parameters"),
        pytest.param("WHERE a = :a AND b = :b_2", "WHERE a = %(a)s AND b = %(b_2)s", id="named parameters"),
        pytest.param("SELECT '?', ':a', 'x%'", "SELECT '?', ':a', 'x%%'", id="quoted text is left alone"),
        pytest.param(
            "SELECT 1::text LIKE 'a%' OR 2 % 3", "SELECT 1::text LIKE 'a%%' OR 2 %% 3", id="casts, percent"
        ),
    ],
)
def test_statements_take_sqlite_style_parameters_on_both_backends(sqlite: str, psycopg_style: str) -> None:
    assert to_psycopg(sqlite) == psycopg_style


# --- the leader lease ------------------------------------------------------------------------------

SHORT = timedelta(seconds=1)


def test_the_lease_goes_to_one_replica_and_to_another_only_once_it_expired(store: PostgresStore) -> None:
    a, b = LeaseTable(store.url), LeaseTable(store.url)
    try:
        first = a.acquire("a", SHORT)
        assert first == Lease("a", 1)
        assert b.acquire("b", SHORT) is None
        assert a.renew(first, SHORT) == first

        time.sleep(1.1)
        second = b.acquire("b", timedelta(seconds=30))

        assert second == Lease("b", 2), "a takeover raises the fencing token"
        assert a.renew(first, SHORT) is None, "the old holder cannot renew a lease taken over"
        holder = b.holder()
        assert holder is not None and holder[0] == second and 29 < holder[1] <= 30
    finally:
        a.close()
        b.close()


def test_a_released_lease_is_free_at_once(store: PostgresStore) -> None:
    a, b = LeaseTable(store.url), LeaseTable(store.url)
    try:
        lease = a.acquire("a", timedelta(seconds=30))
        assert lease is not None
        a.release(lease)
        assert b.acquire("b", timedelta(seconds=30)) == Lease("b", 2)
    finally:
        a.close()
        b.close()


def test_a_fenced_decision_commits_only_while_its_lease_holds(store: PostgresStore) -> None:
    lease_a, lease_b = LeaseTable(store.url), LeaseTable(store.url)
    try:
        a = lease_a.acquire("a", SHORT)
        store.fence = a
        store.record_cycle([], extra=lambda tx: tx.write_decision(Decision(opened=(INCIDENT,)), T0))
        assert [i.id for i in store.incidents()] == ["inc-1"]

        time.sleep(1.1)
        assert lease_b.acquire("b", timedelta(seconds=30)) == Lease("b", 2)
        late = Decision(updated=(INCIDENT,), outbox=(entry("abort"),))
        with pytest.raises(NotLeader, match="a no longer holds the leader lease with token 1"):
            store.record_cycle([], extra=lambda tx: tx.write_decision(late, T0))

        assert store.outbox() == [], "the deposed leader's decision left nothing behind"
        with pytest.raises(NotLeader):
            store.claim_due(T0, holder="a", hold_for=timedelta(minutes=1))
    finally:
        lease_a.close()
        lease_b.close()


def test_a_takeover_waits_for_a_fenced_write_in_flight(store: PostgresStore) -> None:
    """The fenced write holds the lease row: the successor's takeover lands after its commit, never
    before, so a write the old leader began in time is never interleaved with the new leader's."""
    table, rival = LeaseTable(store.url), LeaseTable(store.url)
    try:
        store.fence = table.acquire("a", SHORT)
        order: list[str] = []
        inside = threading.Event()

        def slow_decision(tx: object) -> None:
            tx.write_decision(Decision(opened=(INCIDENT,)), T0)  # type: ignore[attr-defined]
            inside.set()
            time.sleep(1.5)  # the lease runs out while the transaction is open
            order.append("a committed")

        writer = threading.Thread(target=lambda: store.record_cycle([], extra=slow_decision))
        writer.start()
        inside.wait(5)
        time.sleep(1.0)  # past the lease
        taken = rival.acquire("b", timedelta(seconds=30))
        order.append("b took over")
        writer.join()

        assert taken == Lease("b", 2)
        assert order == ["a committed", "b took over"]
    finally:
        table.close()
        rival.close()


# --- claiming deliveries ---------------------------------------------------------------------------


def test_two_claimers_never_take_the_same_row(postgres_url: str) -> None:
    with PostgresStore(postgres_url) as one, PostgresStore(postgres_url) as two:
        one.write_decision(Decision(opened=(INCIDENT,), outbox=tuple(entry(f"a{i}") for i in range(40))), T0)
        claimed: dict[str, list[int]] = {"one": [], "two": []}

        def claim(name: str, store: PostgresStore) -> None:
            for _ in range(10):
                rows = store.claim_due(T0, holder=name, hold_for=timedelta(minutes=1), limit=3)
                claimed[name].extend(row.id for row in rows)

        threads = [threading.Thread(target=claim, args=item) for item in (("one", one), ("two", two))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert not set(claimed["one"]) & set(claimed["two"])
        assert sorted(claimed["one"] + claimed["two"]) == sorted(row.id for row in one.outbox())


def test_a_claim_lapses_when_its_time_is_up_or_a_newer_leader_looks(store: PostgresStore) -> None:
    store.write_decision(Decision(opened=(INCIDENT,), outbox=(entry("abort"),)), T0)
    table = LeaseTable(store.url)
    try:
        store.fence = table.acquire("a", SHORT)
        assert [r.action for r in store.claim_due(T0, holder="a", hold_for=timedelta(minutes=1))] == ["abort"]
        assert store.claim_due(T0, holder="a", hold_for=timedelta(minutes=1)) == [], "claimed: in flight"
        assert [r.action for r in store.due(T0)] == ["abort"], "still due, as the API shows it"

        time.sleep(1.1)
        store.fence = table.acquire("b", timedelta(seconds=30))  # the next leader, token 2

        assert [r.action for r in store.claim_due(T0, holder="b", hold_for=timedelta(minutes=1))] == ["abort"]
    finally:
        table.close()


def test_a_sqlite_claim_hides_the_row_until_it_lapses_or_the_daemon_restarts(tmp_path: Path) -> None:
    hold = timedelta(minutes=1)
    with Store(tmp_path / "bg.db") as store:
        store.write_decision(Decision(opened=(INCIDENT,), outbox=(entry("abort"),)), T0)
        [row] = store.claim_due(T0, holder="me", hold_for=hold)
        assert store.claim_due(T0 + timedelta(seconds=59), holder="me", hold_for=hold) == []
        assert [r.id for r in store.claim_due(T0 + hold, holder="me", hold_for=hold)] == [row.id]
        # a restarted daemon (another holder: host and pid) takes over what the crashed one had claimed
        assert [r.id for r in store.claim_due(T0 + hold, holder="me again", hold_for=hold)] == [row.id]


# --- one daemon per SQLite file --------------------------------------------------------------------


def test_a_second_daemon_on_one_sqlite_file_is_refused_naming_the_file_and_the_first(tmp_path: Path) -> None:
    db = tmp_path / "bg.db"
    with DaemonLock(db):
        with pytest.raises(DatabaseInUse) as refused:
            DaemonLock(db).acquire()
        message = str(refused.value)
        assert str(db) in message and "another budgetguard daemon" in message
        assert f"pid {__import__('os').getpid()} on host" in message
    with DaemonLock(db):  # released: the next daemon starts
        pass


def test_the_sqlite_lock_dies_with_its_daemon(tmp_path: Path) -> None:
    db = tmp_path / "bg.db"
    child = textwrap.dedent(
        """
        import sys, time
        from budgetguard.store.lockfile import DaemonLock
        DaemonLock(sys.argv[1]).acquire()
        print("locked", flush=True)
        time.sleep(60)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", child, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "locked"
        with pytest.raises(DatabaseInUse, match=f"pid {process.pid}"):
            DaemonLock(db).acquire()
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()

    with DaemonLock(db):  # SIGKILLed: no stale lock to clean up
        pass
