"""One daemon per SQLite file: an exclusive lock on ``<file>.lock``, held for the daemon's life.

SQLite lets any number of processes open one file, and two daemons sharing it would both decide and
both deliver (each opens its own incidents, with different ids, and sends the outbox rows twice). So
``budgetguard run`` on SQLite takes this lock before anything else and a second daemon refuses to start,
naming the file and the first daemon (pid, host, since when), instead of silently sharing it. Several
replicas belong on PostgreSQL, where they elect a leader.

``flock`` locks belong to the open file and vanish with the process (a SIGKILL or a crash frees it at
once; no stale lock to clean up). The command line reads and writes the store without this lock: its
changes are the same ones the API makes. fcntl lives here, the store's package.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from budgetguard.core.errors import ConfigError


class DatabaseInUse(ConfigError):
    """Another budgetguard daemon holds the SQLite file."""


def lock_path(db: Path) -> Path:
    return db.with_name(db.name + ".lock")


class DaemonLock:
    """Held from ``acquire`` to ``release`` (or the process's end)."""

    def __init__(self, db: str | Path) -> None:
        self.db = Path(db)
        self.path = lock_path(self.db)
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the lock file {self.path} beside the database {self.db}: {exc.strerror}; "
                "the database's directory must be writable"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(os.pread(fd, 4096, 0))
            os.close(fd)
            raise DatabaseInUse(
                f"the database {self.db} is in use by another budgetguard daemon ({holder}); a second one "
                "would decide and deliver everything twice. Stop that daemon, give this one its own --db, or "
                "run several replicas on PostgreSQL (--db postgresql://..., docs/how-to/high-availability.md)"
            ) from None
        except OSError:
            os.close(fd)
            raise
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": datetime.now(tz=UTC).isoformat()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        finally:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

    def __enter__(self) -> DaemonLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def _describe(raw: bytes) -> str:
    try:
        found = json.loads(raw)
        return f"pid {found['pid']} on host {found['host']}, since {found['since']}"
    except (ValueError, KeyError, TypeError):
        return "its pid is unknown: the lock file holds no details"
