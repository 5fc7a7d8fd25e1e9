"""A real PostgreSQL server on a loopback port, for the tests, the HA lab and the benchmarks.

Debian's ``postgresql`` package (``scripts/setup --dev`` installs it) provides ``initdb`` and
``pg_ctl`` under ``/usr/lib/postgresql/<major>/bin``. initdb refuses to run as root, so when the lab runs
as root the cluster directory is given to the ``postgres`` system user and both commands run through
``runuser``; as any other user they run directly. The server listens on 127.0.0.1 only, with ``trust``
authentication for that address (a throwaway cluster that nothing else can reach), and its socket
directory is the cluster's own, so it never collides with a system PostgreSQL.

``database(name)`` creates a fresh database and returns its URL, so tests share one server (started
once per session, a second or two) and never see each other's tables.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import psycopg

from lab._process import tail

START_TIMEOUT_SECONDS = 60.0
_SEARCH = "/usr/lib/postgresql/*/bin"


class PostgresNotInstalled(RuntimeError):
    """No ``initdb``/``pg_ctl`` found; the message says how to install them."""


def _bin_dir() -> Path:
    found = sorted(glob.glob(_SEARCH), key=lambda p: int(Path(p).parent.name), reverse=True)
    for candidate in found:
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise PostgresNotInstalled(
        "PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin or on PATH): run "
        "scripts/setup --dev, or: sudo apt-get install postgresql"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresLab:
    """One throwaway PostgreSQL cluster: ``start()``, ``database(name)``, ``close()``."""

    def __init__(self, port: int | None = None) -> None:
        self._bin = _bin_dir()
        self._root = Path(tempfile.mkdtemp(prefix="budgetguard-pg-"))
        self.data_dir = self._root / "data"
        self.log_path = self._root / "postgres.log"
        self.port = port or _free_port()
        self._as_root = os.geteuid() == 0
        self._started = False
        self._databases = 0

    @property
    def url(self) -> str:
        """The URL of the ``postgres`` maintenance database."""
        return self.url_of("postgres")

    def url_of(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *command: str) -> subprocess.CompletedProcess[str]:
        full = [str(self._bin / command[0]), *command[1:]]
        if self._as_root:
            full = ["runuser", "-u", "postgres", "--", *full]
        return subprocess.run(
            full, capture_output=True, text=True, check=False, timeout=START_TIMEOUT_SECONDS
        )

    def start(self) -> None:
        if self._as_root:
            shutil.chown(self._root, "postgres", "postgres")
        self._root.chmod(0o700)
        done = self._run(
            "initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}): {done.stderr or done.stdout}")
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self._root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        done = self._run(
            "pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_path), "-o", options, "-w", "start"
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"pg_ctl start failed ({done.returncode}): {done.stderr or done.stdout}\n"
                f"{tail(self.log_path)}"
            )
        self._started = True
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self._accepts():
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"PostgreSQL on port {self.port} did not accept connections\n{tail(self.log_path)}"
                )
            time.sleep(0.05)

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def database(self, name: str | None = None) -> str:
        """Create a new empty database and return its URL."""
        self._databases += 1
        name = name or f"db{self._databases}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_of(name)

    def log_text(self) -> str:
        return tail(self.log_path)

    def close(self) -> None:
        if self._started:
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")
            self._started = False
        shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
