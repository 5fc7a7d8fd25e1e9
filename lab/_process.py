"""The life of a lab server process, shared by ``lab.prometheus`` and ``lab.victoria``: start it with its
output in a log file, wait until its HTTP endpoint answers 200, stop it (SIGTERM, then SIGKILL), and reap
whatever is left when the lab object is collected. Messages name the server and the state waited for."""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import httpx

POLL_SECONDS = 0.05
STOP_TIMEOUT = timedelta(seconds=10)
LOG_TAIL_LINES = 40


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def reap(
    name: str,
    log: logging.Logger,
    *,
    processes: list[subprocess.Popen[bytes]],
    files: list[IO[bytes]],
    clients: list[httpx.Client],
    work_dir: Path,
) -> None:
    """Kill what is still running, close what is open, delete the work directory. Idempotent."""
    for client in clients:
        client.close()
    clients.clear()
    for process in processes:
        if process.poll() is None:
            process.kill()
            try:
                process.wait(timeout=STOP_TIMEOUT.total_seconds())
            except subprocess.TimeoutExpired:
                log.warning("%s pid %s did not die after SIGKILL", name, process.pid)
    processes.clear()
    for handle in files:
        handle.close()
    files.clear()
    shutil.rmtree(work_dir, ignore_errors=True)


def launch(
    command: Sequence[str],
    log_path: Path,
    work_dir: Path,
    processes: list[subprocess.Popen[bytes]],
    files: list[IO[bytes]],
) -> subprocess.Popen[bytes]:
    """Start ``command`` with its output appended to ``log_path``; the process and file are tracked."""
    log_file = open(log_path, "ab")  # noqa: SIM115 (closed by stop() or the finalizer)
    files.append(log_file)
    log_file.write(f"--- lab start {datetime.now(UTC).isoformat()}: {' '.join(command)}\n".encode())
    log_file.flush()
    process = subprocess.Popen(
        list(command), stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, cwd=work_dir
    )
    processes.append(process)
    return process


def wait_answering(
    name: str,
    state: str,
    process: subprocess.Popen[bytes],
    *,
    client: httpx.Client,
    url: str,
    path: str,
    log_path: Path,
    timeout: timedelta,
    error: type[Exception],
) -> None:
    """Until ``url + path`` answers 200 (``name`` is then ``state``); ``error`` if the process exits or the
    time runs out."""
    deadline = time.monotonic() + timeout.total_seconds()
    last = "no answer yet"
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            raise error(f"{name} exited with status {code} before it was {state}:\n{tail(log_path)}")
        try:
            response = client.get(f"{url}{path}", timeout=1.0)
        except httpx.TransportError as exc:
            last = repr(exc)
        else:
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code} {response.text.strip()}"
        time.sleep(POLL_SECONDS)
    raise error(f"{name} was not {state} on {url} within {timeout} ({last}):\n{tail(log_path)}")


def stop(
    name: str,
    log: logging.Logger,
    processes: list[subprocess.Popen[bytes]],
    files: list[IO[bytes]],
    clients: list[httpx.Client],
) -> None:
    """SIGTERM each process, wait up to ``STOP_TIMEOUT``, then SIGKILL; close the log files and clients."""
    while processes:
        process = processes.pop()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT.total_seconds())
            except subprocess.TimeoutExpired:
                log.warning("%s pid %s ignored SIGTERM for %s; killing it", name, process.pid, STOP_TIMEOUT)
                process.kill()
                process.wait(timeout=STOP_TIMEOUT.total_seconds())
        log.info("%s pid %s stopped with status %s", name, process.pid, process.returncode)
    while files:
        files.pop().close()
    while clients:
        clients.pop().close()
