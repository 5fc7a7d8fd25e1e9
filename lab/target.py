"""A live scrape target: a service's request counters served over HTTP for a real Prometheus to scrape.

Counters grow at a configured rate of requests per second with a configured error ratio, computed from
the clock at each scrape, so tests can change the behaviour of a "service" mid-run (start failing,
recover) and know exactly what Prometheus will see. Serves the Prometheus text format on /metrics from
a thread; binds to 127.0.0.1 only.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class _Stream:
    """Cumulative good and bad request counts of one label set, advanced lazily from the clock.

    Fluid by default (exactly ``rps x elapsed`` requests, fractions included); with ``rng`` the requests
    are a Poisson process (exponential gaps) and each fails with probability ``error_ratio``, like real
    traffic, so counters are whole numbers and noisy.
    """

    labels: dict[str, str]
    requests_per_second: float
    error_ratio: float
    good: float = 0.0
    bad: float = 0.0
    since: float = field(default_factory=time.monotonic)
    rng: random.Random | None = None
    next_arrival: float | None = None

    def advance(self, now: float) -> None:
        if self.rng is not None:
            self._arrivals(now, self.rng)
            return
        elapsed = max(now - self.since, 0.0)
        self.good += elapsed * self.requests_per_second * (1 - self.error_ratio)
        self.bad += elapsed * self.requests_per_second * self.error_ratio
        self.since = now

    def _arrivals(self, now: float, rng: random.Random) -> None:
        if self.requests_per_second <= 0:
            self.next_arrival = None
            self.since = now
            return
        if self.next_arrival is None:
            self.next_arrival = self.since + rng.expovariate(self.requests_per_second)
        while self.next_arrival <= now:
            if rng.random() < self.error_ratio:
                self.bad += 1
            else:
                self.good += 1
            self.next_arrival += rng.expovariate(self.requests_per_second)
        self.since = now


def _labels(labels: Mapping[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))


class MetricsTarget:
    """``http_requests_total{<labels>, code="200"|"500"}`` for each configured stream."""

    def __init__(self, metric: str = "http_requests_total", *, seed: int | None = None) -> None:
        """``seed`` makes traffic a seeded Poisson process; without it counters grow smoothly."""
        self.metric = metric
        self._rng = None if seed is None else random.Random(seed)
        self._streams: dict[str, _Stream] = {}
        self._lock = threading.Lock()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = target.exposition().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # quiet in tests
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-target", daemon=True)

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def set_stream(self, labels: Mapping[str, str], requests_per_second: float, error_ratio: float) -> None:
        """Create or change a stream; counts so far are kept (counters never go back)."""
        key = _labels(labels)
        with self._lock:
            now = time.monotonic()
            stream = self._streams.get(key)
            if stream is None:
                self._streams[key] = _Stream(
                    dict(labels), requests_per_second, error_ratio, since=now, rng=self._rng
                )
            else:
                stream.advance(now)
                stream.requests_per_second = requests_per_second
                stream.error_ratio = error_ratio
                stream.next_arrival = None  # the next gap follows the new rate

    def remove_stream(self, labels: Mapping[str, str]) -> None:
        """The version is gone (its pods deleted): its series vanish from the next scrape."""
        with self._lock:
            self._streams.pop(_labels(labels), None)

    def exposition(self) -> str:
        with self._lock:
            now = time.monotonic()
            lines = [f"# TYPE {self.metric} counter"]
            for stream in self._streams.values():
                stream.advance(now)
                for code, value in (("200", stream.good), ("500", stream.bad)):
                    lines.append(f"{self.metric}{{{_labels({**stream.labels, 'code': code})}}} {value:.6f}")
        return "\n".join(lines) + "\n"

    def start(self) -> MetricsTarget:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@contextmanager
def metrics_target(seed: int | None = None) -> Iterator[MetricsTarget]:
    target = MetricsTarget(seed=seed).start()
    try:
        yield target
    finally:
        target.close()
