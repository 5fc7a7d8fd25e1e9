"""One SQLite connection shared by the threads of a process: opening, migrating, transactions, health.

The file must survive a crash at any instant, so every write runs in an explicit transaction
(``BEGIN IMMEDIATE`` ... ``COMMIT``) and a lock serialises the threads, so ``write_problem()`` from the HTTP
thread waits for a cycle's transaction rather than failing on it. The file is opened in WAL mode
(readers never block the cycle's writer) with ``synchronous=NORMAL`` (a power loss may lose the last
cycles, never corrupt the file). A new file gets 16 KiB pages and ``auto_vacuum=INCREMENTAL`` before its
first table, the only moment both can be set without rewriting the whole file.

A file whose schema is newer than this code is refused with a ``ConfigError`` and left untouched; so is
a SQLite file that belongs to something else. Every ``sqlite3.Error`` leaves as a ``StoreError`` chained
to it. What the tables hold is the other modules' business.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlite_utils

from budgetguard.core.errors import ConfigError, StoreError
from budgetguard.core.guard import Decision
from budgetguard.store import incidents
from budgetguard.store.schema import Migration

log = logging.getLogger(__name__)

# Positional (``?``) or named (``:name``) statement parameters.
Parameters = Sequence[Any] | dict[str, Any]

# How long a statement waits for another connection's write lock before failing with "locked".
DEFAULT_BUSY_TIMEOUT = timedelta(seconds=5)
# /readyz must answer quickly even when another process holds the write lock.
_PROBE_BUSY_TIMEOUT = timedelta(milliseconds=200)
# A stored row is 0.5-1 KiB compressed (2 KiB as plain JSON): 16 KiB pages leave little slack at the end
# of each page, where SQLite's default 4 KiB pages held a single 2 KiB row and wasted half the file.
_PAGE_SIZE_BYTES = 16384
# The WAL is truncated back to this after a checkpoint, so one large prune does not leave a large file.
_JOURNAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024


@contextmanager
def translated(action: str) -> Iterator[None]:
    """Turn a ``sqlite3.Error`` into a ``StoreError`` that says what was being done."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"{action}: {exc}") from exc


class Transaction:
    """The open write transaction: whatever runs through it commits or rolls back as one.

    Given to ``record_cycle``'s ``extra`` and by ``Store.transaction()``. Unusable once its block ends.
    """

    def __init__(self, db: sqlite_utils.Database) -> None:
        self._db = db
        self._open = True

    def _conn(self) -> sqlite3.Connection:
        if not self._open:
            raise StoreError("this transaction has already ended")
        return self._db.conn

    def _finish(self) -> None:
        self._open = False

    def execute(self, sql: str, parameters: Parameters = ()) -> int:
        """Run one statement; return the number of rows it changed."""
        conn = self._conn()
        with translated("cannot write to the budgetguard database"):
            return conn.execute(sql, parameters).rowcount

    def executemany(self, sql: str, rows: Iterable[Parameters]) -> int:
        conn = self._conn()
        with translated("cannot write to the budgetguard database"):
            return conn.executemany(sql, rows).rowcount

    def query(self, sql: str, parameters: Parameters = ()) -> list[dict[str, Any]]:
        self._conn()
        with translated("cannot read the budgetguard database"):
            return list(self._db.query(sql, parameters))

    def write_decision(self, decision: Decision, now: datetime) -> None:
        """Incidents opened, updated and resolved, and their outbox entries, in this transaction."""
        incidents.write_decision(self, decision, now)


class Connection:
    """The SQLite file, opened and migrated; ``transaction`` writes, ``query`` reads, both thread-safe."""

    def __init__(self, path: Path, busy_timeout: timedelta, migrations: Sequence[Migration]) -> None:
        self.path = path
        self._busy_timeout_ms = int(busy_timeout / timedelta(milliseconds=1))
        self._lock = threading.RLock()
        # The second connection ``query`` reads on while a write holds the first (opened when needed).
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()
        try:
            # isolation_level=None: the driver opens no transaction of its own; every one is explicit.
            conn = sqlite3.connect(
                self.path,
                timeout=busy_timeout.total_seconds(),
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the budgetguard database {self.path}: {exc}") from exc
        self._closed = False
        self._db = sqlite_utils.Database(conn, execute_plugins=False)
        try:
            self._open(migrations)
        except BaseException:
            conn.close()
            self._closed = True
            raise

    # -- opening -----------------------------------------------------------------------------------
    def _open(self, migrations: Sequence[Migration]) -> None:
        conn = self._db.conn
        known = len(migrations)
        with translated(f"cannot open the budgetguard database {self.path}"):
            conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            # Read before anything is written: a file we must refuse is left exactly as it was.
            found = self._user_version()
            if found > known:
                raise ConfigError(
                    f"the database {self.path} has schema version {found}, written by a newer budgetguard; "
                    f"this version knows schema versions up to {known}. Upgrade budgetguard or point it at "
                    "another database file; the file was not changed"
                )
            if found == 0:
                self._prepare_new_file()
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning(
                    "the database %s cannot use WAL (journal mode %s): readers will block", self.path, mode
                )
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(f"PRAGMA journal_size_limit = {_JOURNAL_SIZE_LIMIT_BYTES}")
        for migration in migrations[found:]:
            self._migrate(migration)

    def _user_version(self) -> int:
        return int(self._db.conn.execute("PRAGMA user_version").fetchone()[0])

    def _prepare_new_file(self) -> None:
        tables = [name for name in self._db.table_names() if not name.startswith("sqlite_")]
        if tables:
            raise ConfigError(
                f"the database {self.path} is not a budgetguard database: it has the tables "
                f"{', '.join(sorted(tables))} but no budgetguard schema version. Point budgetguard at its "
                "own database file (a new path is created); the file was not changed"
            )
        conn = self._db.conn
        conn.execute(f"PRAGMA page_size = {_PAGE_SIZE_BYTES}")
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            # The file already has a header (a journal mode was set first): only VACUUM applies it now.
            conn.execute("VACUUM")

    def _migrate(self, migration: Migration) -> None:
        with self.transaction() as tx:
            # Another process may have migrated while we waited for the write lock.
            if self._user_version() >= migration.version:
                return
            for statement in migration.statements:
                tx.execute(statement)
            tx.execute(f"PRAGMA user_version = {int(migration.version)}")
        log.info("applied migration %s to %s: %s", migration.version, self.path, migration.description)

    # -- transactions ------------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"the budgetguard database {self.path} is closed")
        return self._db.conn

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One write transaction: committed when the block ends, rolled back if it raises.

        ``BEGIN IMMEDIATE`` takes the write lock up front, so a transaction that reads before it
        writes waits for another writer instead of failing halfway. Transactions do not nest.
        """
        with self._lock:
            conn = self._connection()
            if conn.in_transaction:
                raise RuntimeError("a Store transaction is already open; transactions do not nest")
            with translated(f"cannot start a write transaction on {self.path}"):
                conn.execute("BEGIN IMMEDIATE")
            tx = Transaction(self._db)
            try:
                yield tx
            except BaseException:
                tx._finish()
                self._rollback()
                raise
            tx._finish()
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise StoreError(f"cannot commit to the budgetguard database {self.path}: {exc}") from exc

    def _rollback(self) -> None:
        conn = self._db.conn
        if not conn.in_transaction:
            return
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            # The original exception is the one worth raising; SQLite rolls back on close anyway.
            log.warning("rollback failed on %s", self.path, exc_info=True)

    def query(self, sql: str, parameters: Parameters) -> list[dict[str, Any]]:
        """Rows, read on the main connection; while another thread holds it (a cycle's write, most of a
        second at 10,000 SLOs) on a second connection instead, which in WAL mode reads the last
        committed state at once rather than waiting for the write to end (#14: the API's history)."""
        if not self._lock.acquire(blocking=False):
            return self._query_beside(sql, parameters)
        try:
            self._connection()
            with translated(f"cannot read the budgetguard database {self.path}"):
                return list(self._db.query(sql, parameters))
        finally:
            self._lock.release()

    def _query_beside(self, sql: str, parameters: Parameters) -> list[dict[str, Any]]:
        with self._reader_lock:
            if self._closed:
                raise StoreError(f"the budgetguard database {self.path} is closed")
            with translated(f"cannot read the budgetguard database {self.path}"):
                if self._reader is None:
                    self._reader = sqlite3.connect(
                        self.path,
                        timeout=self._busy_timeout_ms / 1000,
                        isolation_level=None,
                        check_same_thread=False,
                    )
                    self._reader.row_factory = sqlite3.Row
                    self._reader.execute("PRAGMA query_only = 1")
                return [dict(row) for row in self._reader.execute(sql, parameters)]

    def page_count(self) -> int:
        with self._lock, translated(f"cannot read the budgetguard database {self.path}"):
            return int(self._connection().execute("PRAGMA page_count").fetchone()[0])

    def page_size(self) -> int:
        with self._lock, translated(f"cannot read the budgetguard database {self.path}"):
            return int(self._connection().execute("PRAGMA page_size").fetchone()[0])

    def reclaim(self, step_pages: int) -> int:
        """Give free pages back in steps, truncate the WAL; return the page count after."""
        while True:
            with self._lock, translated(f"cannot reclaim space in {self.path}"):
                conn = self._connection()
                free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
                if free == 0:
                    break
                # executescript steps the pragma to completion; execute() frees a single page and stops.
                conn.executescript(f"PRAGMA incremental_vacuum({min(free, step_pages)});")
        with self._lock, translated(f"cannot checkpoint {self.path}"):
            self._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return self.page_count()

    # -- health and lifecycle ----------------------------------------------------------------------

    def writable(self) -> bool:
        """Whether a real write commits now (``write_problem`` is None)."""
        return self.write_problem() is None

    def write_problem(self) -> str | None:
        """None when a real write commits now, else why not, in words for /readyz.

        A real write, committed: the probe's row gets the time of the probe (a new value, since
        SQLite skips writing a row that does not change). Taking the write lock and rolling back (what
        this probe did before) succeeds on a file that became read-only or a full disk, and a pod that
        can store no decision must not look ready. Detects a closed store, a read-only file or file
        system, a file that may not grow, and another process holding the lock.
        """
        with self._lock:
            if self._closed:
                return f"the store {self.path} is closed"
            conn = self._db.conn
            if conn.in_transaction:  # this thread is inside a transaction: it holds the lock
                return None
            probe_ms = int(_PROBE_BUSY_TIMEOUT / timedelta(milliseconds=1))
            try:
                conn.execute(f"PRAGMA busy_timeout = {min(probe_ms, self._busy_timeout_ms)}")
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "INSERT OR REPLACE INTO write_probe (id, probed_at) VALUES (1, ?)", [time.time()]
                )
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                return f"the store {self.path} refuses writes: {exc}"
            finally:
                try:
                    conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
                except sqlite3.Error:
                    log.warning("cannot restore the busy timeout on %s", self.path, exc_info=True)
            return None

    def close(self) -> None:
        """Checkpoint the WAL into the file and close; closing twice is harmless."""
        with self._lock:
            if self._closed:
                return
            conn = self._db.conn
            self._rollback()
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.Error:
                log.warning("cannot checkpoint %s before closing", self.path, exc_info=True)
            self._closed = True
            conn.close()
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
