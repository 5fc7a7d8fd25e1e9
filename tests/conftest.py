"""Shared fixtures: real Prometheus processes on loopback, and the demo history backfilled once per session.

- ``prometheus_lab``: a factory. ``prometheus_lab(history, scrape_targets=..., ...)`` backfills
  ``history`` (``Series``, OpenMetrics file paths, or both), starts Prometheus and returns the started
  ``lab.prometheus.PrometheusLab``; every lab it made is closed at teardown.
- ``demo_tsdb``: ``lab.history.demo_history`` ending at the session's start, backfilled once into a
  template TSDB; ``prometheus_lab(blocks_from=demo_tsdb.blocks)`` gives a test its own copy in
  milliseconds instead of the ~10 s a fresh generate-and-backfill costs. Evaluate at ``demo_tsdb.end``.

- ``victoria_lab``: a factory. ``victoria_lab(history, latency_offset=...)`` starts a
  ``lab.victoria.VictoriaLab``, imports ``history`` and returns it; every lab it made is closed at teardown.

- ``postgres_server``: one real PostgreSQL (``lab.postgres.PostgresLab``) per session, on a free loopback
  port, run as the ``postgres`` user when the tests run as root; ``postgres_url`` is a fresh empty
  database on it for one test.
- ``backend``: parametrized over SQLite and PostgreSQL, so a store test runs against both: ``open()``
  a store on this test's database, ``peek(sql)`` as another client sees it, ``migrations`` to extend.

Tests that use these fixtures, or ``real_processes`` (which any fixture that starts Prometheus,
VictoriaMetrics, promtool or the daemon itself should ask for), are marked ``e2e`` at collection, so a
new one joins the full run and leaves the fast one (``scripts/test-fast``: ``-m "not e2e"``) by itself;
a test that runs such a process directly carries ``@pytest.mark.e2e``.

A missing ``prometheus``/``promtool``/``victoria-metrics``/``initdb`` binary fails these fixtures (with the
apt-get
hint); it never skips, so CI runs every test or goes red.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import psycopg
import pytest

from budgetguard.store import MIGRATIONS, Migration, Store, open_store
from budgetguard.store.postgres import POSTGRES_MIGRATIONS, PostgresStore
from lab.history import align_end, demo_history
from lab.openmetrics import Series
from lab.postgres import PostgresLab, PostgresNotInstalled
from lab.prometheus import PrometheusLab, PrometheusNotInstalled
from lab.victoria import VictoriaLab, VictoriaMetricsNotInstalled

PathLike = str | os.PathLike[str]

# Fixtures that start real processes; a test that uses any of them, directly or through another
# fixture, is an end-to-end test.
E2E_FIXTURES = frozenset({"prometheus_lab", "victoria_lab", "demo_tsdb", "real_processes"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def real_processes() -> None:
    """Asked for by a fixture that starts real Prometheus, VictoriaMetrics or daemon processes itself,
    so that its tests are marked ``e2e``; it provides nothing."""


class LabFactory(Protocol):
    def __call__(
        self,
        history: Iterable[Series | PathLike] | PathLike = (),
        *,
        blocks_from: PathLike | None = None,
        scrape_targets: Mapping[str, Sequence[str]] | None = None,
        scrape_interval: timedelta = timedelta(seconds=1),
        evaluation_interval: timedelta = timedelta(seconds=1),
        rule_files: Sequence[PathLike] = (),
    ) -> PrometheusLab: ...


@dataclass(frozen=True)
class DemoTsdb:
    """The demo history's blocks (a template: copy them, never start Prometheus on this directory)."""

    blocks: Path
    end: datetime
    samples: int
    backfill_seconds: float
    requests: tuple[Series, ...]  # the http_requests_total series, to compute expected numbers from


@contextmanager
def _fail_if_not_installed() -> Iterator[None]:
    """Turn a missing binary into a test failure with the install hint (never a skip)."""
    try:
        yield
    except (PrometheusNotInstalled, VictoriaMetricsNotInstalled, PostgresNotInstalled) as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def prometheus_lab() -> Iterator[LabFactory]:
    labs: list[PrometheusLab] = []

    def factory(
        history: Iterable[Series | PathLike] | PathLike = (),
        *,
        blocks_from: PathLike | None = None,
        scrape_targets: Mapping[str, Sequence[str]] | None = None,
        scrape_interval: timedelta = timedelta(seconds=1),
        evaluation_interval: timedelta = timedelta(seconds=1),
        rule_files: Sequence[PathLike] = (),
    ) -> PrometheusLab:
        with _fail_if_not_installed():
            lab = PrometheusLab(
                scrape_targets=scrape_targets,
                scrape_interval=scrape_interval,
                evaluation_interval=evaluation_interval,
                rule_files=rule_files,
            )
        labs.append(lab)
        if blocks_from is not None:
            lab.copy_blocks(blocks_from)
        items = [history] if isinstance(history, str | os.PathLike) else list(history)
        series = [item for item in items if isinstance(item, Series)]
        if series:
            lab.backfill(series)
        for item in items:
            if not isinstance(item, Series):
                lab.backfill(item)
        lab.start()
        return lab

    yield factory
    for lab in labs:
        lab.close()


class VictoriaFactory(Protocol):
    def __call__(
        self, history: Iterable[Series] = (), *, latency_offset: timedelta = timedelta(0)
    ) -> VictoriaLab: ...


@pytest.fixture
def victoria_lab() -> Iterator[VictoriaFactory]:
    labs: list[VictoriaLab] = []

    def factory(history: Iterable[Series] = (), *, latency_offset: timedelta = timedelta(0)) -> VictoriaLab:
        with _fail_if_not_installed():
            lab = VictoriaLab(latency_offset=latency_offset)
        labs.append(lab)
        lab.start()
        series = list(history)
        if series:
            lab.import_series(series)
        return lab

    yield factory
    for lab in labs:
        lab.close()


@pytest.fixture(scope="session")
def demo_tsdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoTsdb]:
    end = align_end()
    blocks = tmp_path_factory.mktemp("demo-tsdb")
    with _fail_if_not_installed():
        template = PrometheusLab(data_dir=blocks)
    try:
        history = demo_history(end, seed=1)
        report = template.backfill(history)
    finally:
        template.close()
    requests = tuple(s for s in history if s.metric_name == "http_requests_total")
    del history  # 1.25 million samples: keep only what tests compute expectations from
    yield DemoTsdb(blocks, end, report.samples, report.seconds, requests)
    shutil.rmtree(blocks, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresLab]:
    with _fail_if_not_installed():
        server = PostgresLab()
    server.start()
    yield server
    server.close()


@pytest.fixture
def postgres_url(postgres_server: PostgresLab) -> str:
    return postgres_server.database()


@dataclass
class Backend:
    """One test's database on one backend: SQLite (a file) or PostgreSQL (a fresh database)."""

    name: str
    db: str | Path

    @property
    def migrations(self) -> tuple[Migration, ...]:
        if self.name == "sqlite":
            return MIGRATIONS
        return POSTGRES_MIGRATIONS

    def open(self, migrations: Sequence[Migration] | None = None) -> Any:
        if migrations is None:
            return open_store(self.db)
        if self.name == "sqlite":
            return Store(self.db, migrations=migrations)
        return PostgresStore(str(self.db), migrations=migrations)

    def peek(self, sql: str) -> list[tuple[object, ...]]:
        """What another client sees in the database (plain SQL both dialects understand)."""
        if self.name == "sqlite":
            with closing(sqlite3.connect(self.db, isolation_level=None)) as other:
                return other.execute(sql).fetchall()
        with psycopg.connect(str(self.db), autocommit=True) as other:
            cursor = other.execute(sql.encode())
            return cursor.fetchall() if cursor.description is not None else []


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", tmp_path / "budgetguard.db")
    server: PostgresLab = request.getfixturevalue("postgres_server")
    return Backend("postgresql", server.database())
