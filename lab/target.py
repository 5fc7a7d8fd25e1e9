"""A live scrape target: a service's request counters served over HTTP for a real Prometheus to scrape.

Counters grow at a configured rate of requests per second with a configured error ratio, computed from
the clock at each scrape, so tests can change the behaviour of a "service" mid-run (start failing,
recover) and know exactly what Prometheus will see. A stream given a latency distribution also serves a
classic histogram of request durations (``http_request_duration_seconds``), whose distribution can
change mid-run too (a canary getting slow). Serves the Prometheus text format on /metrics from a
thread; binds to 127.0.0.1 only.
"""

from __future__ import annotations

import bisect
import itertools
import random
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# client_golang's and client_python's default buckets (prometheus.DefBuckets), in seconds.
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _distribution(latency: Mapping[float, float]) -> dict[float, float]:
    """``{seconds: share}`` with the shares made to sum to 1 (a request takes exactly one of them)."""
    total = sum(latency.values())
    if not latency or total <= 0 or any(s < 0 or w < 0 for s, w in latency.items()):
        raise ValueError(f"a latency distribution maps seconds >= 0 to shares >= 0, some > 0: {latency!r}")
    return {float(seconds): share / total for seconds, share in sorted(latency.items()) if share > 0}


@dataclass
class _Stream:
    """Cumulative good and bad request counts of one label set, advanced lazily from the clock.

    Fluid by default (exactly ``rps x elapsed`` requests, fractions included); with ``rng`` the requests
    are a Poisson process (exponential gaps) and each fails with probability ``error_ratio``, like real
    traffic, so counters are whole numbers and noisy. With a ``latency`` distribution each request also
    takes one of its durations (``{seconds: share}``): fluidly in proportion, or drawn at random.
    """

    labels: dict[str, str]
    requests_per_second: float
    error_ratio: float
    good: float = 0.0
    bad: float = 0.0
    since: float = field(default_factory=time.monotonic)
    rng: random.Random | None = None
    next_arrival: float | None = None
    latency: dict[float, float] | None = None
    durations: dict[float, float] = field(default_factory=dict)  # requests so far by their duration

    def advance(self, now: float) -> None:
        if self.rng is not None:
            self._arrivals(now, self.rng)
            return
        elapsed = max(now - self.since, 0.0)
        self.good += elapsed * self.requests_per_second * (1 - self.error_ratio)
        self.bad += elapsed * self.requests_per_second * self.error_ratio
        for seconds, share in (self.latency or {}).items():
            added = elapsed * self.requests_per_second * share
            self.durations[seconds] = self.durations.get(seconds, 0.0) + added
        self.since = now

    def _draw_duration(self, rng: random.Random) -> None:
        if not self.latency:
            return
        seconds = list(self.latency)
        cumulative = list(itertools.accumulate(self.latency.values()))
        pick = seconds[min(bisect.bisect_right(cumulative, rng.random() * cumulative[-1]), len(seconds) - 1)]
        self.durations[pick] = self.durations.get(pick, 0.0) + 1

    def histogram(self, buckets: tuple[float, ...]) -> tuple[list[tuple[str, float]], float, float]:
        """(cumulative count per ``le``, +Inf last), the sum of durations and the count."""
        count = sum(self.durations.values())
        cumulative = [
            (repr(le), sum(n for seconds, n in self.durations.items() if seconds <= le)) for le in buckets
        ]
        return [*cumulative, ("+Inf", count)], sum(s * n for s, n in self.durations.items()), count

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
            self._draw_duration(rng)
            self.next_arrival += rng.expovariate(self.requests_per_second)
        self.since = now


def _labels(labels: Mapping[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))


class MetricsTarget:
    """``http_requests_total{<labels>, code="200"|"500"}`` for each configured stream, and
    ``http_request_duration_seconds`` (a classic histogram) for each stream with a latency distribution."""

    def __init__(
        self,
        metric: str = "http_requests_total",
        *,
        seed: int | None = None,
        histogram: str = "http_request_duration_seconds",
        buckets: tuple[float, ...] = DEFAULT_BUCKETS,
    ) -> None:
        """``seed`` makes traffic a seeded Poisson process; without it counters grow smoothly."""
        self.metric = metric
        self.histogram = histogram
        self.buckets = tuple(sorted(buckets))
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

    def set_stream(
        self,
        labels: Mapping[str, str],
        requests_per_second: float,
        error_ratio: float,
        latency: Mapping[float, float] | None = None,
    ) -> None:
        """Create or change a stream; counts so far are kept (counters never go back).

        ``latency`` (``{seconds: share}``, e.g. ``{0.05: 0.97, 0.8: 0.03}``: 3% of requests take 800 ms)
        gives the stream a duration histogram; None keeps the stream's distribution, if any.
        """
        key = _labels(labels)
        shares = None if latency is None else _distribution(latency)
        with self._lock:
            now = time.monotonic()
            stream = self._streams.get(key)
            if stream is None:
                self._streams[key] = _Stream(
                    dict(labels), requests_per_second, error_ratio, since=now, rng=self._rng, latency=shares
                )
            else:
                stream.advance(now)
                stream.requests_per_second = requests_per_second
                stream.error_ratio = error_ratio
                stream.next_arrival = None  # the next gap follows the new rate
                if shares is not None:
                    stream.latency = shares

    def set_latency(self, labels: Mapping[str, str], latency: Mapping[float, float]) -> None:
        """Change only a stream's latency distribution (from now on; durations so far are kept)."""
        shares = _distribution(latency)
        with self._lock:
            stream = self._streams[_labels(labels)]
            stream.advance(time.monotonic())
            stream.latency = shares

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
            timed = [stream for stream in self._streams.values() if stream.latency is not None]
            if timed:
                lines.append(f"# TYPE {self.histogram} histogram")
            for stream in timed:
                cumulative, total_seconds, count = stream.histogram(self.buckets)
                for le, value in cumulative:
                    name = f"{self.histogram}_bucket{{{_labels({**stream.labels, 'le': le})}}}"
                    lines.append(f"{name} {value:.6f}")
                lines.append(f"{self.histogram}_sum{{{_labels(stream.labels)}}} {total_seconds:.6f}")
                lines.append(f"{self.histogram}_count{{{_labels(stream.labels)}}} {count:.6f}")
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
