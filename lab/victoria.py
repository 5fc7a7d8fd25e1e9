"""``VictoriaLab``: one real VictoriaMetrics (single node, Debian's 1.79) on 127.0.0.1, with imported history.

Owns the life of one ``victoria-metrics`` process and its files: a free loopback port, a work directory
(log and storage); importing ``Series`` (the same values ``PrometheusLab`` backfills) through the
import API with timestamps, then a flush so the next query sees them; start, health wait, stop,
restart on the same port and data, and cleanup. A small ``query`` helper reads what the server
answers without going through budgetguard.

Must not: talk to anything but 127.0.0.1, wait without a deadline, leave a process or an open file
behind (``close()``, the context manager, and a finalizer as the last resort all reap it), or import
budgetguard.

Flags, and why (1.79.5; flag help and app/vmselect/prometheus/prometheus.go):

- ``-httpListenAddr=127.0.0.1:PORT``: the default ``:8428`` listens on every interface. Graphite,
  InfluxDB and OpenTSDB listeners and scraping stay off, as they are unless configured.
- ``-retentionPeriod=3650d``: VictoriaMetrics counts retention back from the clock and silently drops
  older samples at ingestion (``vm_rows_ignored_total{reason="small_timestamp"}``); the default of one
  month would lose part of a 31-day history, and all of one that ended a month ago.
- ``-search.latencyOffset=0s``: an instant query whose ``time`` is less than the offset (default 30s)
  from the server's clock is evaluated at ``now - offset`` instead, and its answer is stamped with the
  time asked for (``QueryHandler``; issue 241: recent scrapes may be half-ingested). Tests ask for
  the newest samples and must get them. 1.79 raises any offset under 1s to 1s
  (``getLatencyOffsetMilliseconds``), so "0s" still moves a query less than a second from the clock
  back to ``now - 1s``; ``nocache=1`` on a query skips the move altogether.
- ``-search.disableCache``: no rollup result cache, so an answer never comes from a cache filled before
  a later import (VictoriaMetrics resets that cache when old samples arrive, but tests should not
  depend on it).

Import: JSON lines on ``/api/v1/import`` (``{"metric": {"__name__": ..., labels}, "values": [...],
"timestamps": [ms, ...]}``): integer milliseconds, and the labels once per line rather than once per
sample, so the 40-day demo history is 40 MB instead of the ~100 MB of Prometheus text. Lines hold at
most ``max_samples_per_line`` samples and requests at most ``max_request_bytes``, far below
``-import.maxLineLen`` (100 MiB). ``/internal/force_flush`` then makes every imported row searchable
(otherwise they appear within about a second). An import request succeeds even when the server drops
rows (older than the retention, more than two days in the future), so the lab waits until
``vm_rows_added_to_storage_total`` has counted every row sent (dropped ones included, about a second
late) and refuses any that ``vm_rows_ignored_total`` counts, naming the reason.

Values: integers (every counter the lab builds) are stored exactly; other floats keep about 15
significant digits (VictoriaMetrics stores decimals: 2219062.505746758 comes back as 2219062.50574676).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import httpx

from lab import _process
from lab.openmetrics import Series
from lab.prometheus import LabError, QuerySample

__all__ = ["ImportReport", "VictoriaLab", "VictoriaMetricsNotInstalled", "import_lines"]

log = logging.getLogger(__name__)

_INSTALL_HINT = "install it with `apt-get install victoria-metrics` (Debian/Ubuntu; scripts/setup does)"
_HTTP_TIMEOUT = timedelta(seconds=60)
_COUNT_TIMEOUT = timedelta(seconds=10)
_ROWS_ADDED = re.compile(r"^vm_rows_added_to_storage_total (\d+)$", re.MULTILINE)
_ROWS_IGNORED = re.compile(r'^vm_rows_ignored_total\{reason="([^"]+)"\} (\d+)$', re.MULTILINE)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class VictoriaMetricsNotInstalled(LabError):
    """The ``victoria-metrics`` binary is not on PATH; the message says how to install it."""


@dataclass(frozen=True)
class _RowCounts:
    """``vm_rows_added_to_storage_total`` and ``vm_rows_ignored_total`` by reason, at one moment."""

    added: int
    ignored: dict[str, int]


@dataclass(frozen=True)
class ImportReport:
    """What one import stored: samples, series, requests, and how long import and flush took."""

    samples: int
    series: int
    requests: int
    seconds: float


def import_lines(series: Iterable[Series], max_samples_per_line: int = 10_000) -> Iterator[str]:
    """``/api/v1/import`` JSON lines for ``series``, a long series split over several lines.

    Timestamps are the integer milliseconds ``Series`` stores; values are written by ``json`` as their
    shortest repr, which parses back to the same double.
    """
    if max_samples_per_line < 1:
        raise ValueError("max_samples_per_line must be at least 1")
    for one in series:
        metric = json.dumps({"__name__": one.metric_name, **one.label_map}, separators=(",", ":"))
        millis, values = one.millis, one.values
        for begin in range(0, len(millis), max_samples_per_line):
            end = begin + max_samples_per_line
            yield (
                f'{{"metric":{metric},'
                f'"values":{json.dumps(values[begin:end], separators=(",", ":"))},'
                f'"timestamps":{json.dumps(millis[begin:end], separators=(",", ":"))}}}'
            )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _whole_days(value: timedelta) -> str:
    days = value // timedelta(days=1)
    if days < 1 or days * timedelta(days=1) != value:
        raise ValueError(f"retention {value} must be a positive whole number of days")
    return f"{days}d"


class VictoriaLab:
    """One VictoriaMetrics process on 127.0.0.1 with storage the lab imports into.

    Typical use::

        with VictoriaLab() as lab:
            lab.start()                  # returns once /health answers 200
            lab.import_series(series)    # while running; as often as needed
            ... lab.url ...
            lab.stop(); lab.start()      # same port, same data

    ``latency_offset`` is ``-search.latencyOffset`` (see the module docstring; 1.79 makes anything under
    1s into 1s). The storage lives in the lab's temporary work directory, deleted by ``close()``.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        retention: timedelta = timedelta(days=3650),
        latency_offset: timedelta = timedelta(0),
        disable_cache: bool = True,
        ready_timeout: timedelta = timedelta(seconds=30),
        max_request_bytes: int = 8 << 20,
        max_samples_per_line: int = 10_000,
        binary: str = "victoria-metrics",
    ) -> None:
        found = shutil.which(binary)
        if found is None:
            raise VictoriaMetricsNotInstalled(f"{binary!r} was not found on PATH: {_INSTALL_HINT}")
        if latency_offset < timedelta(0):
            raise ValueError(f"latency_offset must not be negative, got {latency_offset}")
        if max_request_bytes < 1 or max_samples_per_line < 1:
            raise ValueError("max_request_bytes and max_samples_per_line must be positive")
        self._binary = found
        self._retention = _whole_days(retention)
        self._latency_offset_ms = latency_offset // timedelta(milliseconds=1)
        self._disable_cache = disable_cache
        self._ready_timeout = ready_timeout
        self._max_request_bytes = max_request_bytes
        self._max_samples_per_line = max_samples_per_line
        self._port_given = port is not None
        self._port = port if port is not None else _free_port()
        self._started_once = False

        self._processes: list[subprocess.Popen[bytes]] = []
        self._files: list[IO[bytes]] = []
        self._clients: list[httpx.Client] = []  # at most one; a list so the finalizer can close it
        self._work_dir = Path(tempfile.mkdtemp(prefix="budgetguard-vmlab-"))
        self._finalizer = weakref.finalize(
            self,
            _process.reap,
            "victoria-metrics",
            log,
            processes=self._processes,
            files=self._files,
            clients=self._clients,
            work_dir=self._work_dir,
        )
        self._data_dir = self._work_dir / "data"
        self._log_path = self._work_dir / "victoria-metrics.log"

    # -- what tests read -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123`` (no trailing slash); the Prometheus API is under it."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def running(self) -> bool:
        return bool(self._processes) and self._processes[-1].poll() is None

    def log_text(self) -> str:
        """Everything the process wrote so far (all starts), for diagnosing a test."""
        return self._log_path.read_text(encoding="utf-8", errors="replace") if self._log_path.exists() else ""

    # -- process life ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Start VictoriaMetrics and return once ``/health`` answers 200, within ``ready_timeout``.

        Raises ``LabError`` (with the log's tail) if it exits or is not healthy in time; the process is
        then already reaped. A first start on an automatically chosen port retries on a new port if
        another process took it meanwhile; later starts keep the port.
        """
        if self.running:
            raise LabError(f"VictoriaMetrics is already running on {self.url}")
        for attempt in range(3):
            try:
                self._start_once()
            except LabError as exc:
                if self._started_once or self._port_given or "address already in use" not in str(exc):
                    raise
                log.info(
                    "port %s was taken before VictoriaMetrics bound it (attempt %s)", self._port, attempt + 1
                )
                self._port = _free_port()
            else:
                self._started_once = True
                return
        raise LabError("could not find a free loopback port for VictoriaMetrics in 3 attempts")

    def _start_once(self) -> None:
        command = [
            self._binary,
            f"-httpListenAddr=127.0.0.1:{self._port}",
            f"-storageDataPath={self._data_dir}",
            f"-retentionPeriod={self._retention}",
            f"-search.latencyOffset={self._latency_offset_ms}ms",
        ]
        if self._disable_cache:
            command.append("-search.disableCache")
        process = _process.launch(command, self._log_path, self._work_dir, self._processes, self._files)
        try:
            self._wait_healthy(process)
        except LabError:
            self.stop()
            raise
        log.info("victoria-metrics pid %s healthy on %s", process.pid, self.url)

    def _http(self) -> httpx.Client:
        # trust_env=False: no proxy from the environment may ever see loopback traffic.
        if not self._clients:
            self._clients.append(httpx.Client(trust_env=False, timeout=_HTTP_TIMEOUT.total_seconds()))
        return self._clients[0]

    def _wait_healthy(self, process: subprocess.Popen[bytes]) -> None:
        _process.wait_answering(
            "victoria-metrics",
            "healthy",
            process,
            client=self._http(),
            url=self.url,
            path="/health",
            log_path=self._log_path,
            timeout=self._ready_timeout,
            error=LabError,
        )

    def stop(self) -> None:
        """SIGTERM (it flushes to disk), wait up to 10 s, then SIGKILL. Data and port stay for ``start()``."""
        _process.stop("victoria-metrics", log, self._processes, self._files, self._clients)

    def close(self) -> None:
        """Stop VictoriaMetrics and delete the work directory with the data."""
        self.stop()
        self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- import ----------------------------------------------------------------------------------------

    def import_series(self, series: Iterable[Series]) -> ImportReport:
        """Import ``series`` with their timestamps, flush, and check every sample was stored.

        Raises ``LabError`` quoting the server when a request fails or when fewer rows were stored
        than sent (with the server's own count of ignored rows by reason).
        """
        if not self.running:
            raise LabError("start() VictoriaMetrics before importing: it ingests over HTTP")
        began = time.monotonic()
        before = self._row_counts()
        samples = count = requests = 0
        body: list[str] = []
        size = 0
        for one in series:
            count += 1
            samples += len(one.samples)
            for line in import_lines([one], self._max_samples_per_line):
                if body and size + len(line) + 1 > self._max_request_bytes:
                    self._post_import(body)
                    requests += 1
                    body, size = [], 0
                body.append(line)
                size += len(line) + 1
        if body:
            self._post_import(body)
            requests += 1
        self.flush()
        self._check_stored(before, samples)
        seconds = time.monotonic() - began
        log.info(
            "imported %s samples of %s series in %s requests in %.2f s", samples, count, requests, seconds
        )
        return ImportReport(samples=samples, series=count, requests=requests, seconds=seconds)

    def _post_import(self, lines: list[str]) -> None:
        content = ("\n".join(lines) + "\n").encode()
        try:
            response = self._http().post(f"{self.url}/api/v1/import", content=content)
        except httpx.TransportError as exc:
            raise LabError(f"import of {len(content)} bytes to {self.url} failed: {exc!r}") from exc
        if response.status_code not in (200, 204):
            raise LabError(f"import to {self.url}: HTTP {response.status_code} {response.text[:500]}")

    def flush(self) -> None:
        """``/internal/force_flush``: every row received so far becomes searchable now."""
        try:
            response = self._http().get(f"{self.url}/internal/force_flush")
        except httpx.TransportError as exc:
            raise LabError(f"force_flush on {self.url} failed: {exc!r}") from exc
        if response.status_code != 200:
            raise LabError(f"force_flush on {self.url}: HTTP {response.status_code} {response.text[:500]}")

    def _check_stored(self, before: _RowCounts, sent: int) -> None:
        """Wait until the server has counted every row sent, then refuse any it ignored.

        ``vm_rows_added_to_storage_total`` counts every row that reached the storage, ignored ones
        included, and lags: rows are searchable right after the flush but counted at the storage's next
        pass over its buffers (every second). ``vm_rows_ignored_total`` says which were dropped, and why.
        """
        deadline = time.monotonic() + _COUNT_TIMEOUT.total_seconds()
        while True:
            now = self._row_counts()
            received = now.added - before.added
            if received >= sent or time.monotonic() >= deadline:
                break
            time.sleep(_process.POLL_SECONDS)
        ignored = {
            reason: count - before.ignored.get(reason, 0)
            for reason, count in now.ignored.items()
            if count != before.ignored.get(reason, 0)
        }
        stored = received - sum(ignored.values())
        if stored != sent:
            raise LabError(
                f"VictoriaMetrics stored {stored} of the {sent} samples sent "
                f"(ignored, by vm_rows_ignored_total reason: {ignored}; retention is {self._retention})"
            )

    def _row_counts(self) -> _RowCounts:
        try:
            text = self._http().get(f"{self.url}/metrics").text
        except httpx.TransportError as exc:
            raise LabError(f"reading {self.url}/metrics failed: {exc!r}") from exc
        added = _ROWS_ADDED.search(text)
        if added is None:
            raise LabError(f"{self.url}/metrics has no vm_rows_added_to_storage_total")
        ignored = {reason: int(count) for reason, count in _ROWS_IGNORED.findall(text)}
        return _RowCounts(int(added.group(1)), ignored)

    # -- reading back ----------------------------------------------------------------------------------

    def query(
        self, expr: str, at: float | datetime | None = None, params: Mapping[str, str] | None = None
    ) -> list[QuerySample]:
        """Instant query ``expr`` at ``at`` (Unix seconds or aware datetime; server "now" if None).

        A float is sent as its shortest repr, a datetime as Unix seconds with three decimals (what
        ``lab.metricsql.vm_query_millis`` models). ``params`` adds query arguments (``nocache``, ...).
        """
        form = {"query": expr, **(params or {})}
        if isinstance(at, datetime):
            if at.tzinfo is None:
                raise ValueError("evaluation time must be timezone-aware")
            ms = (at - _EPOCH) // timedelta(milliseconds=1)
            form["time"] = f"{ms // 1000}.{ms % 1000:03d}"
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
        if data["resultType"] != "vector":  # VictoriaMetrics answers scalars as vectors too
            raise LabError(f"query {expr!r} returned a {data['resultType']}, not a vector")
        return [QuerySample(labels=item["metric"], value=float(item["value"][1])) for item in data["result"]]

    def query_value(
        self, expr: str, at: float | datetime | None = None, params: Mapping[str, str] | None = None
    ) -> float | None:
        """The single value of ``expr`` at ``at``; ``None`` for an empty result, ``LabError`` for several."""
        samples = self.query(expr, at, params)
        if not samples:
            return None
        if len(samples) > 1:
            raise LabError(f"query {expr!r} returned {len(samples)} series, expected at most one")
        return samples[0].value
