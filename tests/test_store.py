"""The store remembers every evaluation and verdict change across restarts and crashes.

Tests taking ``store`` or ``backend`` run twice: on a real SQLite file and on a real PostgreSQL database
(``tests/conftest.py``). Tests of the SQLite file itself (WAL, pages, vacuum) take ``path``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from budgetguard.core.errors import ConfigError
from budgetguard.core.policy import Evaluation, Observation, evaluate
from budgetguard.core.records import format_time, to_record
from budgetguard.core.spec import SLO, Severity
from budgetguard.core.verdict import Verdict
from budgetguard.store import (
    DOWNSAMPLE_BUCKET,
    MIGRATIONS,
    SCHEMA_VERSION,
    Migration,
    Store,
    StoreError,
    Transaction,
    decode_record,
    encode_record,
    retention,
)
from budgetguard.store import history as history_queries
from budgetguard.store.schema import SLOT
from tests.conftest import Backend
from tests.helpers import slo_from, slos_from

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
S, M, H, D = timedelta(seconds=1), timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
REPO = Path(__file__).resolve().parents[1]

THREE = """
version: budgetguard/v1
service: checkout
slos:
  - name: availability
    objective: 99.9
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="checkout",code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="checkout"}[{{.window}}]))
  - name: latency
    objective: 99
    sli:
      latency:
        metric: http_request_duration_seconds
        selector: job="checkout"
        threshold_seconds: 0.3
  - name: payments
    objective: 99.95
    window: 7d
    sli:
      raw:
        error_ratio_query: checkout:payment_errors:ratio_rate{{.window}}
"""
CHECKOUT = slo_from()  # checkout/availability, 99.9 over 30d


def observations(slo: SLO, verdict: Verdict) -> dict[timedelta, Observation]:
    """What a source would have said for the policy to reach ``verdict`` (default tiers)."""
    page = min(t.burn_rate for t in slo.tiers if t.severity is Severity.PAGE)
    ticket = min(t.burn_rate for t in slo.tiers if t.severity is Severity.TICKET)
    ratio: float | None = {
        Verdict.HEALTHY: 0.0,
        Verdict.WARNING: (page + ticket) / 2 * float(slo.error_budget),  # a ticket tier fires, no page tier
        Verdict.BURNING: 0.5,
        Verdict.INCONCLUSIVE: None,
        Verdict.ERROR: 2.0,  # more errors than requests: the queries are wrong
    }[verdict]
    return {
        w: Observation(w, ratio, 10_000.0, None if ratio is not None else "no series") for w in slo.windows()
    }


def judged(slo: SLO, verdict: Verdict, at: datetime) -> Evaluation:
    ev = evaluate(slo, observations(slo, verdict), at)
    assert ev.verdict is verdict, ev.reason
    return ev


# evaluate() is pure and costs a little: build each (CHECKOUT, verdict) once and move it in time.
_JUDGED: dict[tuple[str, Verdict], Evaluation] = {}


def at_time(slo: SLO, verdict: Verdict, at: datetime) -> Evaluation:
    key = (slo.id, verdict)
    if key not in _JUDGED:
        _JUDGED[key] = judged(slo, verdict, T0)
    return dataclasses.replace(_JUDGED[key], slo=slo, at=at)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "budgetguard.db"


@pytest.fixture
def store(backend: Backend) -> Iterator[Store]:
    with backend.open() as opened:
        yield opened


@pytest.fixture
def sqlite_store(path: Path) -> Iterator[Store]:
    with Store(path) as opened:
        yield opened


def peek(path: Path, sql: str) -> list[tuple[object, ...]]:
    """What another process (or a curious operator with the sqlite3 shell) sees in the file."""
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        return other.execute(sql).fetchall()


# --- recording and reading back -------------------------------------------------------------------


def test_latest_returns_the_last_evaluation_of_each_slo_as_it_was_recorded(store: Store) -> None:
    slos = slos_from(THREE)
    first = [judged(slo, Verdict.HEALTHY, T0) for slo in slos]
    second = [
        judged(slos[0], Verdict.BURNING, T0 + 30 * S),
        judged(slos[1], Verdict.INCONCLUSIVE, T0 + 30 * S),
        judged(slos[2], Verdict.WARNING, T0 + 30 * S),
    ]
    store.record_cycle(first)
    store.record_cycle(second)

    assert store.latest(slos) == {ev.slo.id: ev for ev in second}


def test_history_is_the_stored_records_oldest_first(store: Store) -> None:
    cycles = [judged(CHECKOUT, verdict, T0 + i * 30 * S) for i, verdict in enumerate(Verdict)]
    for ev in cycles:
        store.record_cycle([ev])

    assert store.history(CHECKOUT.id, T0) == [to_record(ev) for ev in cycles]


@pytest.mark.parametrize(
    ("since", "until", "limit", "expected"),
    [
        pytest.param(T0, None, None, [0, 1, 2, 3, 4], id="since the first evaluation gives all of them"),
        pytest.param(T0 + 60 * S, None, None, [2, 3, 4], id="since is inclusive"),
        pytest.param(T0, T0 + 60 * S, None, [0, 1], id="until is exclusive, so pages do not overlap"),
        pytest.param(T0 + 30 * S, None, 2, [1, 2], id="a limit keeps the oldest, to page forward"),
        pytest.param(T0, None, 0, [], id="a limit of zero gives nothing"),
        pytest.param(T0 + 1 * H, None, None, [], id="nothing after the last evaluation"),
    ],
)
def test_history_selects_by_time_and_limit(
    store: Store, since: datetime, until: datetime | None, limit: int | None, expected: list[int]
) -> None:
    cycles = [judged(CHECKOUT, Verdict.HEALTHY, T0 + i * 30 * S) for i in range(5)]
    for ev in cycles:
        store.record_cycle([ev])

    records = store.history(CHECKOUT.id, since, until, limit)

    assert [r["at"] for r in records] == [format_time(cycles[i].at) for i in expected]


def test_history_of_one_slo_does_not_include_another(store: Store) -> None:
    slos = slos_from(THREE)
    store.record_cycle([judged(slo, Verdict.HEALTHY, T0) for slo in slos])

    assert [r["slo"] for r in store.history(slos[1].id, T0)] == ["latency"]
    assert store.history("checkout/unknown", T0) == []


@settings(max_examples=40, deadline=None)
@given(
    # Ratios below ~3e-11 make budget.time_to_exhaustion overflow timedelta (a core bug, reported).
    ratios=st.lists(
        st.one_of(st.none(), st.just(0.0), st.floats(min_value=1e-9, max_value=1)), min_size=8, max_size=8
    ),
    events=st.floats(min_value=0, max_value=1e12),
    offset_minutes=st.integers(min_value=-14 * 60, max_value=14 * 60),
    at=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
)
def test_any_evaluation_comes_back_equal_whatever_its_numbers_and_time_zone(
    tmp_path_factory: pytest.TempPathFactory,
    ratios: list[float | None],
    events: float,
    offset_minutes: int,
    at: datetime,
) -> None:
    aware = at.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    obs = {
        w: Observation(w, r, events, None if r is not None else "no series")
        for w, r in zip(CHECKOUT.windows(), ratios, strict=True)
    }
    ev = evaluate(CHECKOUT, obs, aware)
    with Store(tmp_path_factory.mktemp("roundtrip") / "budgetguard.db") as store:
        store.record_cycle([ev])

        assert store.latest([CHECKOUT]) == {CHECKOUT.id: ev}
        assert store.history(CHECKOUT.id, aware) == [to_record(ev)]
        assert store.history(CHECKOUT.id, aware + timedelta(microseconds=1)) == []
        assert [c["at"] for c in store.verdict_changes(CHECKOUT.id, aware)] == [format_time(aware)]


@settings(max_examples=40, deadline=None)
@given(
    gaps=st.lists(
        st.tuples(st.sampled_from([0, 1]), st.integers(min_value=0, max_value=3 * 3600)), max_size=40
    ),
    since_offset=st.integers(min_value=-400 * 86400, max_value=30 * 3600),
    span=st.one_of(st.none(), st.integers(min_value=0, max_value=40 * 3600)),
    limit=st.one_of(st.none(), st.integers(min_value=0, max_value=10)),
)
def test_history_is_what_a_plain_filter_of_the_stored_evaluations_gives(
    tmp_path_factory: pytest.TempPathFactory,
    gaps: list[tuple[int, int]],
    since_offset: int,
    span: int | None,
    limit: int | None,
) -> None:
    slos = slos_from(THREE)[:2]
    stored: list[tuple[datetime, str]] = []
    at = T0
    with Store(tmp_path_factory.mktemp("history") / "budgetguard.db") as store:
        for which, gap_seconds in gaps:
            at += gap_seconds * S
            store.record_cycle([at_time(slos[which], HEALTHY, at)])
            stored.append((at, slos[which].id))
        since = T0 + since_offset * S
        until = None if span is None else since + span * S

        for slo in slos:
            expected = [
                format_time(t)
                for t, slo_id in stored
                if slo_id == slo.id and t >= since and (until is None or t < until)
            ][:limit]
            assert [r["at"] for r in store.history(slo.id, since, until, limit)] == expected


def test_a_late_evaluation_does_not_replace_the_newest_in_latest(store: Store) -> None:
    newest = judged(CHECKOUT, BURNING, T0 + 1 * H)
    store.record_cycle([newest])
    # The clock stepped back: this evaluation is older than the one already stored.
    store.record_cycle([judged(CHECKOUT, HEALTHY, T0)])

    assert store.latest([CHECKOUT]) == {CHECKOUT.id: newest}
    assert [r["verdict"] for r in store.history(CHECKOUT.id, T0)] == ["healthy", "burning"]


def test_a_restarted_store_serves_the_same_latest_history_and_changes(backend: Backend) -> None:
    slos = slos_from(THREE)
    with backend.open() as store:
        for i, verdict in enumerate([Verdict.HEALTHY, Verdict.BURNING, Verdict.BURNING]):
            store.record_cycle([judged(slo, verdict, T0 + i * 30 * S) for slo in slos])
        before = (store.latest(slos), store.history(slos[0].id, T0), store.verdict_changes(None, T0))

    with backend.open() as reopened:
        after = (reopened.latest(slos), reopened.history(slos[0].id, T0), reopened.verdict_changes(None, T0))
        reopened.record_cycle([judged(slo, Verdict.BURNING, T0 + 90 * S) for slo in slos])
        changes_after_restart = reopened.verdict_changes(None, T0 + 90 * S)

    assert after == before
    assert changes_after_restart == [], "the verdict before the restart is the one a change is measured from"


def test_rows_serialised_elsewhere_store_what_the_store_would_have_serialised(
    backend: Backend, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A cycle worker process (#14) sends the cycle's rows already serialised (``history.prepare``):
    stored, they read back exactly as the evaluations stored directly do, changes included."""
    if backend.name == "sqlite":
        other = Backend("sqlite", tmp_path / "other.db")
    else:
        other = Backend("postgresql", request.getfixturevalue("postgres_server").database())
    slos = slos_from(THREE)
    verdicts = [Verdict.HEALTHY, Verdict.BURNING, Verdict.BURNING]
    cycles = [[judged(slo, verdict, T0 + i * 30 * S) for slo in slos] for i, verdict in enumerate(verdicts)]
    seen = []
    for where, prepared in ((backend, False), (other, True)):
        with where.open() as store:
            for cycle in cycles:
                store.record_cycle(cycle, pending=history_queries.prepare(cycle) if prepared else None)
            seen.append((store.latest(slos), store.history(slos[0].id, T0), store.verdict_changes(None, T0)))
    assert seen[1] == seen[0]
    assert [c["to"] for c in seen[1][2]] == ["healthy"] * 3 + ["burning"] * 3


def test_latest_rebuilds_against_the_slo_as_declared_now(store: Store) -> None:
    store.record_cycle([judged(CHECKOUT, Verdict.BURNING, T0)])
    redeclared = CHECKOUT.model_copy(update={"description": "now with a description"})

    restored = store.latest([redeclared])[CHECKOUT.id]

    assert restored.slo is redeclared
    assert restored.verdict is Verdict.BURNING


@pytest.mark.parametrize(
    "declared",
    [
        pytest.param(
            THREE.replace("name: latency", "name: latency-p99"),
            id="a renamed CHECKOUT is absent under its new id",
        ),
        pytest.param(
            THREE.replace("service: checkout", "service: shop"),
            id="a moved CHECKOUT is absent under its new service",
        ),
        pytest.param(THREE.split("  - name: latency", maxsplit=1)[0], id="removed SLOs are absent"),
    ],
)
def test_slos_without_history_are_absent_from_latest(store: Store, declared: str) -> None:
    store.record_cycle([judged(slo, Verdict.HEALTHY, T0) for slo in slos_from(THREE)])
    now = slos_from(declared)

    latest = store.latest(now)

    stored_ids = {slo.id for slo in slos_from(THREE)}
    assert set(latest) == {slo.id for slo in now} & stored_ids


def test_an_empty_cycle_stores_nothing(store: Store, backend: Backend) -> None:
    store.record_cycle([])

    assert backend.peek("SELECT count(*) FROM evaluations") == [(0,)]


def test_the_scalar_columns_hold_the_evaluations_numbers_for_plain_sql(
    store: Store, backend: Backend
) -> None:
    ev = judged(CHECKOUT, Verdict.WARNING, T0)
    store.record_cycle([ev])

    [row] = backend.peek(
        "SELECT at, slo_id, service, slo, verdict, reason, budget_remaining, error_ratio, events, verdict_changed "
        "FROM evaluations",
    )

    assert row == (
        T0.timestamp(),
        "checkout/availability",
        "checkout",
        "availability",
        "warning",
        ev.reason,
        ev.budget_remaining,
        ev.error_ratio,
        ev.events,
        1,
    )


# --- verdict changes -------------------------------------------------------------------------------

HEALTHY, WARNING, BURNING = Verdict.HEALTHY, Verdict.WARNING, Verdict.BURNING
INCONCLUSIVE, ERROR = Verdict.INCONCLUSIVE, Verdict.ERROR


@pytest.mark.parametrize(
    ("verdicts", "changes"),
    [
        pytest.param([HEALTHY], [(None, HEALTHY)], id="the first evaluation is a change from nothing"),
        pytest.param([HEALTHY, HEALTHY, HEALTHY], [(None, HEALTHY)], id="a repeated verdict is no change"),
        pytest.param(
            [HEALTHY, BURNING, BURNING, HEALTHY],
            [(None, HEALTHY), (HEALTHY, BURNING), (BURNING, HEALTHY)],
            id="burning and recovering are two changes",
        ),
        pytest.param(
            [WARNING, BURNING, WARNING],
            [(None, WARNING), (WARNING, BURNING), (BURNING, WARNING)],
            id="a warning that escalates and calms down",
        ),
        pytest.param(
            [HEALTHY, INCONCLUSIVE, HEALTHY],
            [(None, HEALTHY), (HEALTHY, INCONCLUSIVE), (INCONCLUSIVE, HEALTHY)],
            id="losing the data and getting it back are changes",
        ),
        pytest.param(
            [ERROR, ERROR, HEALTHY],
            [(None, ERROR), (ERROR, HEALTHY)],
            id="a source error is a verdict like any other",
        ),
    ],
)
def test_a_verdict_change_is_recorded_only_when_the_verdict_differs(
    store: Store, verdicts: list[Verdict], changes: list[tuple[Verdict | None, Verdict]]
) -> None:
    for i, verdict in enumerate(verdicts):
        store.record_cycle([judged(CHECKOUT, verdict, T0 + i * 30 * S)])

    recorded = store.verdict_changes(CHECKOUT.id, T0)

    assert [(c["from"], c["to"]) for c in recorded] == changes


def test_a_verdict_change_says_when_which_slo_and_why(store: Store) -> None:
    store.record_cycle([judged(CHECKOUT, HEALTHY, T0)])
    burning = judged(CHECKOUT, BURNING, T0 + 30 * S)
    store.record_cycle([burning])

    assert store.verdict_changes(CHECKOUT.id, T0 + 1 * S) == [
        {
            "at": "2026-11-26T12:00:30Z",
            "slo_id": CHECKOUT.id,
            "from": "healthy",
            "to": "burning",
            "reason": burning.reason,
        }
    ]


def test_verdict_changes_of_every_slo_or_of_one_since_a_time(store: Store) -> None:
    slos = slos_from(THREE)
    store.record_cycle([judged(slo, HEALTHY, T0) for slo in slos])
    store.record_cycle([judged(slos[1], BURNING, T0 + 30 * S), judged(slos[2], HEALTHY, T0 + 30 * S)])

    assert [c["slo_id"] for c in store.verdict_changes(None, T0)] == [slo.id for slo in slos] + [slos[1].id]
    assert [c["to"] for c in store.verdict_changes(slos[1].id, T0)] == ["healthy", "burning"]
    assert [c["slo_id"] for c in store.verdict_changes(None, T0 + 1 * S)] == [slos[1].id]


def test_two_evaluations_of_one_slo_in_a_cycle_are_compared_in_order(store: Store) -> None:
    store.record_cycle([judged(CHECKOUT, HEALTHY, T0), judged(CHECKOUT, BURNING, T0 + 1 * S)])

    assert [(c["from"], c["to"]) for c in store.verdict_changes(CHECKOUT.id, T0)] == [
        (None, HEALTHY),
        (HEALTHY, BURNING),
    ]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.sampled_from(list(Verdict)), min_size=3, max_size=3), min_size=1, max_size=15))
def test_verdict_changes_are_exactly_the_transitions_of_each_slo(
    tmp_path_factory: pytest.TempPathFactory, cycles: list[list[Verdict]]
) -> None:
    slos = slos_from(THREE)
    expected = []
    last: dict[str, Verdict | None] = {}
    with Store(tmp_path_factory.mktemp("changes") / "budgetguard.db") as store:
        for i, verdicts in enumerate(cycles):
            at = T0 + i * 30 * S
            store.record_cycle([at_time(slo, v, at) for slo, v in zip(slos, verdicts, strict=True)])
            for slo, v in zip(slos, verdicts, strict=True):
                if last.get(slo.id) != v:
                    expected.append((format_time(at), slo.id, last.get(slo.id), str(v)))
                last[slo.id] = v

        recorded = [(c["at"], c["slo_id"], c["from"], c["to"]) for c in store.verdict_changes(None, T0)]

    assert recorded == expected


# --- transactions and crashes ----------------------------------------------------------------------


def test_an_exception_inside_the_cycle_stores_none_of_it(store: Store) -> None:
    store.record_cycle([judged(CHECKOUT, HEALTHY, T0)])

    def fail(tx: Transaction) -> None:
        raise RuntimeError("the action outbox could not be written")

    with pytest.raises(RuntimeError, match="outbox"):
        store.record_cycle([judged(CHECKOUT, BURNING, T0 + 30 * S)], extra=fail)

    assert store.history(CHECKOUT.id, T0) == [to_record(judged(CHECKOUT, HEALTHY, T0))]
    assert len(store.verdict_changes(None, T0)) == 1
    store.record_cycle([judged(CHECKOUT, BURNING, T0 + 60 * S)])
    assert [c["to"] for c in store.verdict_changes(None, T0)] == ["healthy", "burning"]


SCRATCH = Migration(
    len(MIGRATIONS) + 1,
    "a table of a later version, written in the cycle's transaction",
    ("CREATE TABLE scratch (action TEXT)",),
)


def test_extra_statements_commit_with_the_cycle(backend: Backend) -> None:
    scratch = dataclasses.replace(SCRATCH, version=len(backend.migrations) + 1)
    with backend.open(migrations=(*backend.migrations, scratch)) as store:
        store.record_cycle(
            [judged(CHECKOUT, BURNING, T0)],
            extra=lambda tx: tx.execute("INSERT INTO scratch (action) VALUES (?)", ["pause canary"]),
        )

        with pytest.raises(RuntimeError), store.transaction() as tx:
            tx.execute("INSERT INTO scratch (action) VALUES (?)", ["never committed"])
            raise RuntimeError("crash")

        with store.transaction() as tx:
            assert tx.query("SELECT action FROM scratch") == [{"action": "pause canary"}]


def test_a_transaction_cannot_be_used_after_its_block(store: Store) -> None:
    with store.transaction() as tx:
        pass

    with pytest.raises(StoreError, match="ended"):
        tx.execute("SELECT 1")


def test_transactions_do_not_nest(store: Store) -> None:
    with store.transaction(), pytest.raises(RuntimeError, match="nest"):
        store.record_cycle([judged(CHECKOUT, HEALTHY, T0)])


def test_an_sql_error_in_extra_is_a_store_error_and_rolls_back(store: Store) -> None:
    with pytest.raises(StoreError, match=r'no such table|relation "nowhere" does not exist'):
        store.record_cycle(
            [judged(CHECKOUT, HEALTHY, T0)], extra=lambda tx: tx.execute("INSERT INTO nowhere VALUES (1)")
        )

    assert store.latest([CHECKOUT]) == {}


def test_a_process_killed_in_the_middle_of_a_cycle_leaves_no_partial_cycle(path: Path) -> None:
    slos = slos_from(THREE)
    with Store(path) as store:
        store.record_cycle([judged(slo, HEALTHY, T0) for slo in slos])
        before = store.latest(slos)
    # The child writes a whole cycle, then dies inside the transaction, before COMMIT: no cleanup runs.
    child = textwrap.dedent(
        """
        import os, sys
        from datetime import datetime, timedelta
        from budgetguard.store import Store
        from tests.test_store import BURNING, THREE, T0, judged
        from tests.helpers import slos_from
        store = Store(sys.argv[1])
        store.record_cycle(
            [judged(slo, BURNING, T0 + timedelta(seconds=30)) for slo in slos_from(THREE)],
            extra=lambda tx: os._exit(17),
        )
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", child, str(path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 17, done.stderr

    with Store(path) as reopened:
        assert reopened.latest(slos) == before
        assert len(reopened.verdict_changes(None, T0)) == len(slos)


# --- the file: WAL, migrations, refusals -----------------------------------------------------------


def test_a_new_file_uses_wal_incremental_vacuum_large_pages_and_the_current_schema(
    sqlite_store: Store, path: Path
) -> None:
    assert peek(path, "PRAGMA journal_mode") == [("wal",)]
    assert peek(path, "PRAGMA auto_vacuum") == [(2,)]  # INCREMENTAL
    assert peek(path, "PRAGMA page_size") == [(16384,)]  # seven ~2 KiB evaluations per page, not one
    assert peek(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert {"evaluations", "verdict_changes", "retention_state"} <= {
        name for (name,) in peek(path, "SELECT name FROM sqlite_master WHERE type = 'table'")
    }


@pytest.mark.parametrize(
    ("sql", "parameters"),
    [
        pytest.param(history_queries._PREVIOUS_VERDICTS, ["[]"], id="the previous verdicts of a cycle"),
        pytest.param(history_queries._LATEST_RECORDS, ["[]"], id="latest"),
        pytest.param(
            history_queries._HISTORY,
            {"first_slot": 0, "last_slot": 1, "slo_id": "", "since": 0, "until": 1, "limit": -1},
            id="history of one SLO",
        ),
        pytest.param(
            retention._DOWNSAMPLE,
            {"bucket": 300, "lo": 0, "hi": 1, "lo_slot": 0, "hi_slot": 1},
            id="downsampling",
        ),
        pytest.param(f"DELETE FROM evaluations WHERE {SLOT} <= 0 AND at < 1", [], id="deleting by age"),
    ],
)
def test_no_query_scans_the_evaluations_table(
    sqlite_store: Store, path: Path, sql: str, parameters: object
) -> None:
    # A scan of a 60 GB file takes minutes: every query must seek through an index.
    with closing(sqlite3.connect(path)) as conn:
        plan = [row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", parameters)]  # type: ignore[arg-type]

    assert plan and not [step for step in plan if step.startswith("SCAN") and "evaluations" in step], plan
    assert not [step for step in plan if step.startswith("SCAN e ")], plan


def test_migrations_run_once_and_later_ones_apply_to_an_existing_file(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="budgetguard.store")
    with Store(path, migrations=MIGRATIONS[:1]) as store:  # a file written by the first release
        store.record_cycle([judged(CHECKOUT, BURNING, T0)])
    with Store(path, migrations=MIGRATIONS[:1]):
        pass
    assert [r.getMessage() for r in caplog.records if "applied migration" in r.getMessage()] == [
        f"applied migration 1 to {path}: {MIGRATIONS[0].description}"
    ]

    with Store(path) as upgraded:
        assert upgraded.latest([CHECKOUT])[CHECKOUT.id].verdict is BURNING
        assert upgraded.incidents() == []
    assert [r.getMessage() for r in caplog.records if "applied migration" in r.getMessage()][1:] == [
        f"applied migration {m.version} to {path}: {m.description}" for m in MIGRATIONS[1:]
    ]
    assert peek(path, "PRAGMA user_version") == [(len(MIGRATIONS),)]


def test_a_file_written_by_a_newer_budgetguard_is_refused_and_left_untouched(path: Path) -> None:
    with Store(path, migrations=(*MIGRATIONS, SCRATCH)) as newer:
        newer.record_cycle([judged(CHECKOUT, BURNING, T0)])
    digest = hashlib.sha256(path.read_bytes()).hexdigest()

    newest, known = len(MIGRATIONS) + 1, len(MIGRATIONS)
    with pytest.raises(
        ConfigError, match=rf"schema version {newest}, written by a newer budgetguard.*up to {known}"
    ):
        Store(path)

    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    with Store(path, migrations=(*MIGRATIONS, SCRATCH)) as again:
        assert again.latest([CHECKOUT])[CHECKOUT.id].verdict is BURNING


def test_a_sqlite_file_of_another_application_is_refused(path: Path) -> None:
    peek(path, "CREATE TABLE customers (id INTEGER PRIMARY KEY)")

    with pytest.raises(ConfigError, match="not a budgetguard database: it has the tables customers"):
        Store(path)


def test_a_file_that_is_not_sqlite_is_a_store_error(path: Path) -> None:
    path.write_text("slos:\n  - name: oops, this is YAML\n" * 100)

    with pytest.raises(StoreError, match="not a database"):
        Store(path)


def test_a_directory_that_does_not_exist_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open"):
        Store(tmp_path / "missing" / "budgetguard.db")


def test_migrations_must_be_numbered_in_order(path: Path) -> None:
    with pytest.raises(ValueError, match="numbered"):
        Store(path, migrations=(*MIGRATIONS, dataclasses.replace(SCRATCH, version=len(MIGRATIONS) + 2)))


# --- health and lifecycle --------------------------------------------------------------------------


def test_the_store_is_writable_until_another_writer_holds_the_lock_or_it_is_closed(
    sqlite_store: Store, path: Path
) -> None:
    assert sqlite_store.writable()

    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")  # another process is writing
        assert not sqlite_store.writable()
        other.execute("ROLLBACK")
    assert sqlite_store.writable()

    sqlite_store.close()
    assert not sqlite_store.writable()


def test_a_closed_store_raises_store_errors_and_closing_twice_is_harmless(store: Store) -> None:
    store.close()
    store.close()

    with pytest.raises(StoreError, match="closed"):
        store.record_cycle([judged(CHECKOUT, HEALTHY, T0)])
    with pytest.raises(StoreError, match="closed"):
        store.latest([CHECKOUT])


def test_closing_checkpoints_the_wal_into_the_file(path: Path) -> None:
    with Store(path) as store:
        store.record_cycle([judged(slo, HEALTHY, T0) for slo in slos_from(THREE)])

    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0


NAIVE = datetime(2026, 11, 26, 12, 0)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(
            lambda s: s.record_cycle([judged(CHECKOUT, HEALTHY, NAIVE)]), id="an evaluation at a naive time"
        ),
        pytest.param(lambda s: s.history(CHECKOUT.id, NAIVE), id="history since a naive time"),
        pytest.param(lambda s: s.history(CHECKOUT.id, T0, NAIVE), id="history until a naive time"),
        pytest.param(lambda s: s.verdict_changes(None, NAIVE), id="verdict changes since a naive time"),
        pytest.param(lambda s: s.prune(NAIVE), id="pruning at a naive now"),
    ],
)
def test_a_naive_datetime_is_a_value_error(store: Store, call: Callable[[Store], object]) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        call(store)


# --- retention -------------------------------------------------------------------------------------


def record_every(
    store: Store, slo: SLO, span: tuple[datetime, datetime], verdict_at: Callable[[datetime], Verdict]
) -> None:
    """One evaluation every 30 s in [start, end), its verdict from ``verdict_at(at)``."""
    at, end = span
    while at < end:
        store.record_cycle([at_time(slo, verdict_at(at), at)])
        at += 30 * S


def survivors(
    rows: Sequence[tuple[datetime, str, Verdict]], now: datetime, raw_for: timedelta, keep_for: timedelta
) -> list[tuple[datetime, str]]:
    """The retention rule, written plainly: what prune must keep of rows recorded in time order."""
    bucket = DOWNSAMPLE_BUCKET.total_seconds()
    raw_cutoff = math.floor((now - raw_for).timestamp() / bucket) * bucket
    keep_cutoff = (now - keep_for).timestamp()
    previous: dict[str, Verdict] = {}
    last_of_bucket: dict[tuple[str, int], datetime] = {}
    changed = set()
    for at, slo_id, verdict in rows:
        if previous.get(slo_id) != verdict:
            changed.add((at, slo_id))
        previous[slo_id] = verdict
        last_of_bucket[(slo_id, math.floor(at.timestamp() / bucket))] = at
    kept = []
    for at, slo_id, _ in rows:
        t = at.timestamp()
        if t < keep_cutoff:
            continue
        if (
            t >= raw_cutoff
            or (at, slo_id) in changed
            or last_of_bucket[(slo_id, math.floor(t / bucket))] == at
        ):
            kept.append((at, slo_id))
    return kept


def stored_times(store: Store, slo: SLO) -> list[datetime]:
    return [datetime.fromisoformat(r["at"]) for r in store.history(slo.id, T0 - 365 * D)]


def test_prune_keeps_the_last_of_each_five_minutes_and_every_change_after_raw_for(store: Store) -> None:
    burning_from, burning_until = T0 + 7 * M + 30 * S, T0 + 8 * M + 30 * S

    def verdict(at: datetime) -> Verdict:
        return BURNING if burning_from <= at < burning_until else HEALTHY

    record_every(store, CHECKOUT, (T0, T0 + 1 * H), verdict)
    now = T0 + 1 * H

    report = store.prune(now, raw_for=30 * M, keep_for=1 * D)

    times = stored_times(store, CHECKOUT)
    older = [t - T0 for t in times if t < T0 + 30 * M]
    assert older == [
        0 * S,  # the first evaluation: a change from nothing
        4 * M + 30 * S,  # last of 12:00-12:05
        7 * M + 30 * S,  # healthy -> burning
        8 * M + 30 * S,  # burning -> healthy
        9 * M + 30 * S,  # last of 12:05-12:10
        *[(5 * k + 4) * M + 30 * S for k in range(2, 6)],  # last of each later bucket
    ]
    assert [t for t in times if t >= T0 + 30 * M] == [T0 + 30 * M + i * 30 * S for i in range(60)]
    assert report.downsampled == 60 - len(older) and report.deleted == 0
    assert [(c["from"], c["to"]) for c in store.verdict_changes(CHECKOUT.id, T0)] == [
        (None, "healthy"),
        ("healthy", "burning"),
        ("burning", "healthy"),
    ]


def test_the_first_evaluation_is_kept_as_a_change_even_mid_bucket(store: Store) -> None:
    record_every(store, CHECKOUT, (T0, T0 + 10 * M), lambda at: HEALTHY)

    store.prune(T0 + 2 * H, raw_for=1 * H, keep_for=1 * D)

    assert [t - T0 for t in stored_times(store, CHECKOUT)] == [0 * S, 4 * M + 30 * S, 9 * M + 30 * S]


def test_prune_deletes_evaluations_and_verdict_changes_older_than_keep_for(store: Store) -> None:
    slos = slos_from(THREE)
    record_every(store, slos[0], (T0, T0 + 10 * M), lambda at: HEALTHY if at < T0 + 5 * M else BURNING)
    record_every(store, slos[1], (T0 + 1 * D, T0 + 1 * D + 10 * M), lambda at: WARNING)
    now = T0 + 1 * D + 1 * H

    report = store.prune(now, raw_for=1 * H, keep_for=1 * D)

    assert stored_times(store, slos[0]) == []
    assert report.deleted == 20 and report.verdict_changes_deleted == 2
    assert [c["slo_id"] for c in store.verdict_changes(None, T0)] == [slos[1].id]
    assert store.latest(slos) == {slos[1].id: at_time(slos[1], WARNING, T0 + 1 * D + 9 * M + 30 * S)}


def test_pruning_again_at_the_same_time_changes_nothing(store: Store) -> None:
    record_every(store, CHECKOUT, (T0, T0 + 2 * H), lambda at: HEALTHY)
    first = store.prune(T0 + 2 * H, raw_for=1 * H, keep_for=1 * D)

    again = store.prune(T0 + 2 * H, raw_for=1 * H, keep_for=1 * D)

    assert first.downsampled > 0
    assert (again.downsampled, again.deleted, again.verdict_changes_deleted) == (0, 0, 0)


def test_an_evaluation_recorded_behind_the_retention_point_is_downsampled_too(store: Store) -> None:
    record_every(store, CHECKOUT, (T0, T0 + 2 * H), lambda at: HEALTHY)
    store.prune(T0 + 2 * H, raw_for=1 * H, keep_for=1 * D)
    # The clock stepped back: an evaluation lands inside a bucket that was already downsampled.
    store.record_cycle([at_time(CHECKOUT, HEALTHY, T0 + 12 * M)])

    report = store.prune(T0 + 2 * H, raw_for=1 * H, keep_for=1 * D)

    assert report.downsampled == 1
    assert T0 + 12 * M not in stored_times(store, CHECKOUT)
    assert T0 + 14 * M + 30 * S in stored_times(store, CHECKOUT), "the bucket's last evaluation stays"


@pytest.mark.parametrize(
    ("raw_for", "keep_for"),
    [
        pytest.param(0 * S, 1 * D, id="raw_for must be positive"),
        pytest.param(2 * D, 1 * D, id="keep_for cannot be shorter than raw_for"),
    ],
)
def test_prune_refuses_inconsistent_periods(store: Store, raw_for: timedelta, keep_for: timedelta) -> None:
    with pytest.raises(ValueError, match="raw_for"):
        store.prune(T0, raw_for, keep_for)


@settings(max_examples=40, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from([0, 1]), st.integers(min_value=1, max_value=400), st.sampled_from(list(Verdict))
        ),
        min_size=1,
        max_size=60,
    ),
    raw_minutes=st.integers(min_value=1, max_value=120),
    extra_keep_minutes=st.integers(min_value=0, max_value=240),
    prunes=st.lists(st.integers(min_value=0, max_value=300), min_size=1, max_size=3),
)
def test_prune_keeps_exactly_what_the_retention_rule_says(
    tmp_path_factory: pytest.TempPathFactory,
    steps: list[tuple[int, int, Verdict]],
    raw_minutes: int,
    extra_keep_minutes: int,
    prunes: list[int],
) -> None:
    slos = slos_from(THREE)[:2]
    raw_for, keep_for = raw_minutes * M, (raw_minutes + extra_keep_minutes) * M
    rows = []
    at = T0
    for which, gap_seconds, verdict in steps:
        at += gap_seconds * S
        rows.append((at, slos[which].id, verdict))
    with Store(tmp_path_factory.mktemp("retention") / "budgetguard.db") as store:
        for row_at, slo_id, verdict in rows:
            store.record_cycle([at_time(next(s for s in slos if s.id == slo_id), verdict, row_at)])
        latest_before = store.latest(slos)
        # Pruning several times, later and later, must end where one prune at the last time would.
        now = at
        for minutes in sorted(prunes):
            now = at + minutes * M
            store.prune(now, raw_for, keep_for)

        kept = sorted(
            (datetime.fromisoformat(r["at"]), slo.id) for slo in slos for r in store.history(slo.id, T0)
        )
        expected = sorted(survivors(rows, now, raw_for, keep_for))
        assert kept == expected
        alive = now - keep_for
        assert store.latest(slos) == {k: v for k, v in latest_before.items() if v.at >= alive}


def test_prune_gives_the_freed_space_back_to_the_file_system(path: Path) -> None:
    # Enough cycles that the rows, compressed as they are, outweigh the file's fixed pages.
    slos = slos_from(THREE)
    with Store(path) as store:
        for i in range(2400):
            store.record_cycle([at_time(slo, HEALTHY, T0 + i * 30 * S) for slo in slos])
    before = file_bytes(path)
    with Store(path) as store:
        report = store.prune(T0 + 20 * H, raw_for=10 * M, keep_for=20 * M)
        after = file_bytes(path)

    assert report.deleted == 3 * 2360
    assert after < before / 3
    assert report.reclaimed_bytes >= (before - after) * 0.9


def file_bytes(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def test_the_file_stops_growing_under_a_steady_workload_once_pruned(path: Path) -> None:
    slos = [
        slo_from(THREE.split("  - name: latency", maxsplit=1)[0].replace("checkout", f"svc{i}"))
        for i in range(8)
    ]
    raw_for, keep_for = 1 * H, 3 * H
    sizes = []
    with Store(path) as store:
        at = T0
        for hour in range(8):
            end = T0 + (hour + 1) * H
            while at < end:
                minute = int((at - T0) / M)
                verdict = BURNING if minute % 47 == 0 else HEALTHY  # a change now and then, as in life
                store.record_cycle([at_time(slo, verdict, at) for slo in slos])
                at += 30 * S
            store.prune(at, raw_for, keep_for)
            sizes.append(file_bytes(path))

    # Hours 1-3 still fill the retained span; from hour 5 on, each prune gives back what an hour added.
    steady = sizes[4:]
    assert max(steady) <= min(steady) * 1.1, sizes
    assert sizes[-1] < 2 * sizes[0], "8 hours kept raw would be about 8 times the first hour"


def test_records_are_stored_compressed_and_plain_json_rows_still_read(path: Path) -> None:
    slo = slo_from()
    ev = evaluate(
        slo,
        {w: Observation(w, 0.000123456789 * (i + 1), 98765.4321) for i, w in enumerate(slo.windows())},
        T0,
    )
    record = to_record(ev)
    encoded = encode_record(record)
    assert decode_record(encoded) == record
    plain = json.dumps(record, separators=(",", ":")).encode()
    assert len(encoded) < len(plain) / 2, (len(encoded), len(plain))
    assert decode_record(plain.decode()) == record  # rows written before compression

    with Store(path) as store:
        store.record_cycle([ev])
    with closing(sqlite3.connect(path)) as conn:  # a row as an older budgetguard wrote it
        conn.execute("UPDATE evaluations SET record = ?", (plain.decode(),))
        conn.commit()
    with Store(path) as store:
        assert store.latest([slo]) == {slo.id: ev}
        assert store.history(slo.id, T0) == [record]


def test_a_corrupted_record_is_skipped_not_fatal(path: Path) -> None:
    slo = slo_from()
    with Store(path) as store:
        store.record_cycle([evaluate(slo, {w: Observation(w, 0.0, 10.0) for w in slo.windows()}, T0)])
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("UPDATE evaluations SET record = ?", (b"Z1not-deflate",))
        conn.commit()
    with Store(path) as store:
        assert store.latest([slo]) == {}


def test_the_write_probe_is_a_real_write_and_says_why_it_failed(tmp_path: Path) -> None:
    """Issue 13: the probe took the write lock and rolled back, which works on a store that can no
    longer write a page. A process whose files may not grow past 4 KiB (RLIMIT_FSIZE, a real limit the
    kernel enforces, even for root) can still take the lock; only a committed write shows the
    failure. Run in a child process so the limit never touches pytest's own files."""
    script = textwrap.dedent(
        """
        import resource, signal, sys
        from budgetguard.store import Store

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        store = Store(sys.argv[1])
        print("before:", store.write_problem())
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
        print("limited:", store.write_problem())
        print("writable:", store.writable())
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        print("after:", store.write_problem())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "bg.db")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "before: None"
    assert lines[1].startswith(f"limited: the store {tmp_path / 'bg.db'} refuses writes: ")
    assert lines[2] == "writable: False"
    assert lines[3] == "after: None"


def test_a_closed_store_says_so_as_its_write_problem(store: Store) -> None:
    assert store.write_problem() is None
    store.close()
    assert store.write_problem() == f"the store {store.path} is closed"


def test_the_budget_series_is_the_last_evaluation_of_each_step(store: Store) -> None:
    healthy, burning = at_time(CHECKOUT, HEALTHY, T0), at_time(CHECKOUT, BURNING, T0)
    for offset, ev in [(0, healthy), (30, burning), (60, healthy), (150, burning)]:
        store.record_cycle([dataclasses.replace(ev, at=T0 + offset * S)])

    series = store.budget_series(CHECKOUT.id, T0, timedelta(minutes=1))

    assert series == [
        (T0 + 30 * S, burning.budget_remaining),
        (T0 + 60 * S, healthy.budget_remaining),
        (T0 + 150 * S, burning.budget_remaining),
    ]


def test_a_read_while_another_thread_writes_answers_the_committed_state_without_waiting(
    sqlite_store: Store,
) -> None:
    """#14: the API's history is read while a cycle's write holds the store (most of a second at 10,000
    SLOs). It reads the last committed rows on a second connection instead of waiting for the write."""

    sqlite_store.record_cycle([judged(CHECKOUT, HEALTHY, T0)])
    inside, release = threading.Event(), threading.Event()

    def slow_write(tx: Transaction) -> None:
        inside.set()
        assert release.wait(10)

    writer = threading.Thread(
        target=lambda: sqlite_store.record_cycle(
            [judged(CHECKOUT, HEALTHY, T0 + timedelta(minutes=1))], extra=slow_write
        )
    )
    writer.start()
    try:
        assert inside.wait(10)
        # The writer holds the store until released: this read must answer meanwhile.
        read: list[list[dict[str, object]]] = []
        reader = threading.Thread(
            target=lambda: read.append(sqlite_store.history(CHECKOUT.id, T0 - timedelta(hours=1)))
        )
        reader.start()
        reader.join(5)
        assert read, "the read waited for the write"
        assert [row["at"] for row in read[0]] == [format_time(T0)]  # the uncommitted row is not seen
    finally:
        release.set()
        writer.join(10)
    assert len(sqlite_store.history(CHECKOUT.id, T0 - timedelta(hours=1))) == 2
    sqlite_store.close()
    with pytest.raises(StoreError, match="closed"):
        sqlite_store.history(CHECKOUT.id, T0 - timedelta(hours=1))
