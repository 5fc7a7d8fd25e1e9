"""``PrometheusLab``: one real Prometheus 2.42 on 127.0.0.1, with backfilled history, for tests and demos.

Owns the life of one ``prometheus`` process and its files: a free loopback port, a work directory
(config, log, temporary OpenMetrics files) and a TSDB directory; backfilling OpenMetrics into that TSDB
with ``promtool``; a minimal config (optional loopback scrape targets and rule files); start, ready
wait, stop, restart on the same port and data, and cleanup. A small ``query`` helper lets tests read
what Prometheus answers without going through budgetguard.

Must not: talk to anything but 127.0.0.1, wait without a deadline, leave a process or an open file
behind (``close()``, the context manager, and a finalizer as the last resort all reap it), or import
budgetguard.

Flags, and why (measured on 2.42 with this machine's 2 cores):

- ``promtool tsdb create-blocks-from openmetrics --max-block-duration=744h``: the hidden flag is
  rounded down to promtool's 486h block range. promtool re-reads the whole input once per block, so
  with the default 2h blocks 30 days of 14 series take 157 s; with 486h blocks they take under 3 s.
  Blocks of 486h are also the largest the server's own compactor makes with a long retention, so it
  leaves them alone.
- ``--storage.tsdb.retention.time=3650d``: retention counts back from the newest block (not from the
  clock), and the default 15d deletes the older half of a 30-day backfill at startup, silently.
- Overlapping blocks (two backfills over the same time, or a backfill overlapping the head) need no
  flag since 2.39: ``--storage.tsdb.allow-overlapping-blocks`` is a deprecated no-op in 2.42.
- Backfill only while stopped: the server loads blocks at startup (a running one would only notice at
  its next compaction cycle, up to a minute later). History must end at or before "now": the head
  refuses scraped samples older than the newest block.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import httpx

from lab import _process
from lab.openmetrics import Series, write_openmetrics

__all__ = ["BackfillReport", "LabError", "PrometheusLab", "PrometheusNotInstalled", "QuerySample"]

log = logging.getLogger(__name__)

_INSTALL_HINT = (
    "install it with `apt-get install prometheus` (Debian/Ubuntu; provides prometheus and promtool)"
)
_PROMTOOL_TIMEOUT = timedelta(minutes=5)
_QUERY_TIMEOUT = timedelta(seconds=30)


class LabError(RuntimeError):
    """promtool or prometheus could not do what the lab asked; the message quotes their output."""


class PrometheusNotInstalled(LabError):
    """The ``prometheus`` or ``promtool`` binary is not on PATH; the message says how to install it."""


@dataclass(frozen=True)
class BackfillReport:
    """What one promtool run stored: its block count, its sample count, and how long it took."""

    source: Path
    blocks: int
    samples: int
    seconds: float


@dataclass(frozen=True)
class QuerySample:
    """One element of an instant query result (a scalar result has empty labels)."""

    labels: Mapping[str, str]
    value: float


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _prometheus_duration(value: timedelta) -> str:
    """``timedelta(days=3650)`` -> ``3650d``, 1.5 s -> ``1500ms``: one unit, as Prometheus reads it."""
    ms = value // timedelta(milliseconds=1)
    if ms <= 0 or ms * timedelta(milliseconds=1) != value:
        raise ValueError(f"duration {value} must be a positive whole number of milliseconds")
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _which(binary: str) -> str:
    found = shutil.which(binary)
    if found is None:
        raise PrometheusNotInstalled(f"{binary!r} was not found on PATH: {_INSTALL_HINT}")
    return found


def _check_loopback(target: str) -> None:
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or host != "127.0.0.1":
        raise ValueError(f"scrape target {target!r} must be 127.0.0.1:PORT (the lab stays on loopback)")


class PrometheusLab:
    """One Prometheus process on 127.0.0.1 with a TSDB the lab backfills.

    Typical use::

        with PrometheusLab() as lab:
            lab.backfill(series)         # while stopped; as often as needed
            lab.start()                  # returns once /-/ready answers 200
            ... lab.url ...
            lab.stop(); lab.start()      # same port, same data

    ``scrape_targets`` maps a job name to loopback ``host:port`` targets scraped every
    ``scrape_interval``; ``rule_files`` are evaluated every ``evaluation_interval``. ``data_dir`` keeps
    the TSDB somewhere the caller owns (it is then not deleted); by default it lives in the lab's
    temporary work directory, deleted by ``close()``.
    """

    def __init__(
        self,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        port: int | None = None,
        scrape_targets: Mapping[str, Sequence[str]] | None = None,
        scrape_interval: timedelta = timedelta(seconds=1),
        evaluation_interval: timedelta = timedelta(seconds=1),
        rule_files: Sequence[str | os.PathLike[str]] = (),
        retention: timedelta = timedelta(days=3650),
        ready_timeout: timedelta = timedelta(seconds=30),
        max_block_duration: timedelta = timedelta(hours=744),
        prometheus_binary: str = "prometheus",
        promtool_binary: str = "promtool",
    ) -> None:
        self._prometheus = _which(prometheus_binary)
        self._promtool = _which(promtool_binary)
        targets = {job: list(addresses) for job, addresses in (scrape_targets or {}).items()}
        for addresses in targets.values():
            for address in addresses:
                _check_loopback(address)
        self._scrape_targets = targets
        self._scrape_interval = scrape_interval
        self._evaluation_interval = evaluation_interval
        self._rule_files = [Path(p).resolve() for p in rule_files]
        self._retention = retention
        self._ready_timeout = ready_timeout
        self._max_block_hours = max(2, int(max_block_duration / timedelta(hours=1)))
        self._port_given = port is not None
        self._port = port if port is not None else _free_port()
        self._started_once = False
        self._backfills = 0

        self._processes: list[subprocess.Popen[bytes]] = []
        self._files: list[IO[bytes]] = []
        self._clients: list[httpx.Client] = []  # at most one; a list so the finalizer can close it
        self._work_dir = Path(tempfile.mkdtemp(prefix="budgetguard-lab-"))
        self._finalizer = weakref.finalize(
            self,
            _process.reap,
            "prometheus",
            log,
            processes=self._processes,
            files=self._files,
            clients=self._clients,
            work_dir=self._work_dir,
        )
        self._data_dir = Path(data_dir).resolve() if data_dir is not None else self._work_dir / "data"
        self._data_dir.mkdir(parents=True, exist_ok=True)
        self._config_path = self._work_dir / "prometheus.yml"
        self._log_path = self._work_dir / "prometheus.log"

    # -- what tests read -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123`` (no trailing slash)."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def running(self) -> bool:
        return bool(self._processes) and self._processes[-1].poll() is None

    def log_text(self) -> str:
        """Everything the Prometheus process wrote so far (all starts), for diagnosing a test."""
        return self._log_path.read_text(encoding="utf-8", errors="replace") if self._log_path.exists() else ""

    # -- backfill --------------------------------------------------------------------------------------

    def backfill(self, source: Iterable[Series] | str | os.PathLike[str]) -> BackfillReport:
        """Write blocks into the TSDB with promtool, from series or an OpenMetrics file.

        For series, the sample count promtool reports must equal the count written (promtool drops
        bad samples without failing). Raises ``LabError`` with promtool's output when it fails.
        """
        if self.running:
            raise LabError("stop() Prometheus before backfilling: it only loads new blocks at startup")
        expected: int | None = None
        temporary: Path | None = None
        if isinstance(source, str | os.PathLike):
            path = Path(source)
        else:
            self._backfills += 1
            temporary = path = self._work_dir / f"backfill-{self._backfills}.om"
            expected = write_openmetrics(source, path)
        try:
            return self._run_promtool(path, expected)
        finally:
            if temporary is not None:
                temporary.unlink(missing_ok=True)

    def copy_blocks(self, source_dir: str | os.PathLike[str]) -> int:
        """Copy the TSDB blocks (directories with a ``meta.json``) of ``source_dir`` into the data dir.

        Backfill a large history once into a template directory, then give each test its own copy:
        a copy takes milliseconds where promtool takes seconds. Returns the number of blocks copied.
        """
        if self.running:
            raise LabError("stop() Prometheus before adding blocks: it only loads new blocks at startup")
        blocks = sorted(p for p in Path(source_dir).iterdir() if (p / "meta.json").is_file())
        if not blocks:
            raise LabError(f"{source_dir} holds no TSDB blocks (directories with a meta.json)")
        for block in blocks:
            target = self._data_dir / block.name
            if target.exists():
                raise LabError(f"block {block.name} is already in {self._data_dir}")
            shutil.copytree(block, target)
        return len(blocks)

    def _run_promtool(self, path: Path, expected: int | None) -> BackfillReport:
        command = [
            self._promtool,
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            f"--max-block-duration={self._max_block_hours}h",
            str(path),
            str(self._data_dir),
        ]
        began = time.monotonic()
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=_PROMTOOL_TIMEOUT.total_seconds(),
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"promtool backfill of {path} took longer than {_PROMTOOL_TIMEOUT}") from exc
        seconds = time.monotonic() - began
        if done.returncode != 0:
            raise LabError(
                f"promtool backfill of {path} failed (exit {done.returncode}):\n{done.stderr}{done.stdout}"
            )
        blocks, samples = _parse_block_table(done.stdout)
        if expected is not None and samples != expected:
            raise LabError(
                f"promtool stored {samples} of the {expected} samples written to {path}:\n{done.stderr}"
            )
        log.info("backfilled %s: %s samples in %s blocks in %.2f s", path, samples, blocks, seconds)
        return BackfillReport(source=path, blocks=blocks, samples=samples, seconds=seconds)

    # -- process life ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Start Prometheus and return once ``/-/ready`` answers 200, within ``ready_timeout``.

        Raises ``LabError`` (with the log's tail) if it exits or is not ready in time; the process is
        then already reaped. A first start on an automatically chosen port retries on a new port if
        another process took it meanwhile; later starts keep the port.
        """
        if self.running:
            raise LabError(f"Prometheus is already running on {self.url}")
        self._write_config()
        for attempt in range(3):
            try:
                self._start_once()
            except LabError as exc:
                if self._started_once or self._port_given or "address already in use" not in str(exc):
                    raise
                log.info("port %s was taken before Prometheus bound it (attempt %s)", self._port, attempt + 1)
                self._port = _free_port()
            else:
                self._started_once = True
                return
        raise LabError("could not find a free loopback port for Prometheus in 3 attempts")

    def _start_once(self) -> None:
        command = [
            self._prometheus,
            f"--config.file={self._config_path}",
            f"--storage.tsdb.path={self._data_dir}",
            f"--storage.tsdb.retention.time={_prometheus_duration(self._retention)}",
            f"--web.listen-address=127.0.0.1:{self._port}",
        ]
        process = _process.launch(command, self._log_path, self._work_dir, self._processes, self._files)
        try:
            self._wait_ready(process)
        except LabError:
            self.stop()
            raise
        log.info("prometheus pid %s ready on %s", process.pid, self.url)

    def _http(self) -> httpx.Client:
        # One client per lab: building one costs ~20 ms (TLS context), a query on loopback ~2 ms.
        # trust_env=False: no proxy from the environment may ever see loopback traffic.
        if not self._clients:
            self._clients.append(httpx.Client(trust_env=False, timeout=_QUERY_TIMEOUT.total_seconds()))
        return self._clients[0]

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> None:
        _process.wait_answering(
            "prometheus",
            "ready",
            process,
            client=self._http(),
            url=self.url,
            path="/-/ready",
            log_path=self._log_path,
            timeout=self._ready_timeout,
            error=LabError,
        )

    def stop(self) -> None:
        """SIGTERM, wait up to 10 s, then SIGKILL. Data and port stay for the next ``start()``."""
        _process.stop("prometheus", log, self._processes, self._files, self._clients)

    def close(self) -> None:
        """Stop Prometheus and delete the work directory (and the data, unless ``data_dir`` was given)."""
        self.stop()
        self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _write_config(self) -> None:
        interval = _prometheus_duration(self._scrape_interval)
        config: dict[str, object] = {
            "global": {
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "evaluation_interval": _prometheus_duration(self._evaluation_interval),
            },
            "rule_files": [str(p) for p in self._rule_files],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": addresses}]}
                for job, addresses in self._scrape_targets.items()
            ],
        }
        # JSON is YAML: no YAML library needed, and no quoting surprises.
        self._config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    # -- reading back ----------------------------------------------------------------------------------

    def query(self, expr: str, at: float | datetime | None = None) -> list[QuerySample]:
        """Instant query ``expr`` at ``at`` (Unix seconds or aware datetime; server "now" if None).

        A float ``at`` is sent as its shortest repr, which Prometheus parses to the same double, so
        ``lab.openmetrics.expected_*`` sees exactly the evaluation time Prometheus used.
        """
        form = {"query": expr}
        if isinstance(at, datetime):
            if at.tzinfo is None:
                raise ValueError("evaluation time must be timezone-aware")
            form["time"] = at.isoformat()
        elif at is not None:
            form["time"] = repr(float(at))
        try:
            response = self._http().post(f"{self.url}/api/v1/query", data=form)
        except httpx.TransportError as exc:
            raise LabError(f"query {expr!r} to {self.url} failed: {exc!r}") from exc
        try:
            body = response.json()
        except ValueError as exc:
            raise LabError(f"query {expr!r}: HTTP {response.status_code} {response.text[:500]}") from exc
        if response.status_code != 200 or body.get("status") != "success":
            raise LabError(f"query {expr!r}: HTTP {response.status_code} {body}")
        data = body["data"]
        if data["resultType"] == "scalar":
            return [QuerySample(labels={}, value=float(data["result"][1]))]
        if data["resultType"] != "vector":
            raise LabError(f"query {expr!r} returned a {data['resultType']}, not a vector or scalar")
        return [QuerySample(labels=item["metric"], value=float(item["value"][1])) for item in data["result"]]

    def wait_for_value(self, expr: str, timeout: timedelta = timedelta(seconds=20)) -> float:
        """Poll ``expr`` at server "now" until it has a value, e.g. a scraped or recorded series.

        Allow for Prometheus' pace: the first scrape of a static target comes about 5 s after start
        (the discovery manager batches target updates every 5 s), then every ``scrape_interval``.
        """
        deadline = time.monotonic() + timeout.total_seconds()
        while True:
            value = self.query_value(expr)
            if value is not None:
                return value
            if time.monotonic() >= deadline:
                raise LabError(f"{expr!r} had no value within {timeout}:\n{_process.tail(self._log_path)}")
            time.sleep(0.1)

    def query_value(self, expr: str, at: float | datetime | None = None) -> float | None:
        """The single value of ``expr`` at ``at``; ``None`` for an empty result, ``LabError`` for several."""
        samples = self.query(expr, at)
        if not samples:
            return None
        if len(samples) > 1:
            raise LabError(f"query {expr!r} returned {len(samples)} series, expected at most one")
        return samples[0].value


def _parse_block_table(stdout: str) -> tuple[int, int]:
    """Blocks and samples from promtool's table (``BLOCK ULID  MIN TIME ... NUM SAMPLES ...``)."""
    blocks = samples = 0
    for line in stdout.splitlines():
        fields = line.split()
        # ULID, min time, max time, duration, samples, chunks, series, size
        if len(fields) == 8 and len(fields[0]) == 26 and fields[4].isdigit():
            blocks += 1
            samples += int(fields[4])
    return blocks, samples
