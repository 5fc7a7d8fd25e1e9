"""The demo's 31 days of history: two services, an old incident, a restart and a fresh latency regression.

Owns ``demo_history(end, seed)``, a deterministic list of ``Series`` (same ``end`` and ``seed``, same
floats), and ``demo_timeline(end)``, which says what happened when. Tests, the bench and the
tutorial's demo (docs/tutorial/getting-started.md) all backfill this. Must not: read the clock except
for the default ``end``, do I/O, or describe SLOs (the lead's ``slos/`` does that; it references the
metrics below).

Metrics (step 60 s, from ``end - 31d`` to ``end`` inclusive; 31 days so a 30d window evaluated up to a
day after ``end`` is fully covered):

- ``http_requests_total{job="checkout",code="200"|"404"|"500"|"503"}``: counters.
  Errors for an availability SLO: ``http_requests_total{job="checkout",code=~"5.."}``;
  total: ``http_requests_total{job="checkout"}``.
- ``http_request_duration_seconds_bucket{job="checkout",le=...}`` with ``le`` in ``0.05 0.1 0.25 0.5
  1 2.5 5 +Inf`` (Go client spelling: ``1``, not ``1.0``), plus ``http_request_duration_seconds_count``
  and ``_sum`` with the same ``job`` label. Latency SLO "99% under 0.5 s": good is
  ``http_request_duration_seconds_bucket{job="checkout",le="0.5"}``, total is the ``_count``.
- The same two families with ``job="search"``.

What happened (``end`` is the newest sample; see ``demo_timeline``):

- Always: diurnal traffic peaking at 15:00 UTC (checkout, ~25-60 req/s on weekdays, ~20% less on
  weekends) and 13:00 UTC (search, ~35-90 req/s on weekdays). Checkout: 1% 404s (not errors), 0.02% 5xx
  (availability burn 0.2 against 99.9%), 0.3% of requests slower than 0.5 s (latency burn 0.3 against
  99%). Search: 1.5% 404s, 0.01% 5xx, practically nothing slower than 0.5 s.
- 14:00 UTC on the day ``end - 9d`` falls on (8.4 to 9.4 days before ``end``), for 45 minutes:
  checkout incident, 30% of requests answer 5xx (two thirds of them 503). At that hour it costs
  38-47% of checkout's 30-day error budget at 99.9% (less if that day is a weekend); with the steady
  0.02% the 30d error ratio ends between about 0.055% and 0.067%: a third or more of the budget left.
- ``end - 5d``: checkout restarts (a deploy): all its counters and histogram series reset to zero.
- From ``end - 36h``, ramping over 2 hours: checkout's median latency doubles (80 ms to 160 ms), so
  ~4.4% of requests exceed 0.5 s: a burn of ~4.4 against "99% under 0.5 s". The 1d/2h ticket tier
  at 3x (and 3d/6h at 1x) fires; the 1h/5m (14.4x) and 6h/30m (6x) page tiers do not.
- Search is healthy throughout.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from lab.openmetrics import (
    LogNormalLatency,
    Series,
    counters_from_increments,
    histogram_from_steps,
    step_times,
)

__all__ = [
    "CODES",
    "HISTORY_SPAN",
    "LATENCY_BUCKETS",
    "STEP",
    "DemoEvent",
    "align_end",
    "demo_history",
    "demo_timeline",
]

STEP = timedelta(seconds=60)
HISTORY_SPAN = timedelta(days=31)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CODES = ("200", "404", "500", "503")

INCIDENT_DAYS_AGO = 9
INCIDENT_HOUR_UTC = 14  # near checkout's daily peak, so its cost does not depend on when `end` falls
INCIDENT_LENGTH = timedelta(minutes=45)
INCIDENT_ERROR_RATIO = 0.30
RESTART_AGO = timedelta(days=5)
REGRESSION_AGO = timedelta(hours=36)
REGRESSION_RAMP = timedelta(hours=2)


@dataclass(frozen=True)
class _Service:
    job: str
    mean_rps: float
    diurnal_amplitude: float
    peak_hour_utc: float
    ratio_404: float
    ratio_500: float
    ratio_503: float
    median_seconds: float
    sigma: float
    seed_offset: int


_CHECKOUT = _Service("checkout", 42.0, 0.40, 15.0, 0.01, 0.00015, 0.00005, 0.08, 0.667, 1)
_SEARCH = _Service("search", 60.0, 0.45, 13.0, 0.015, 0.00008, 0.00002, 0.04, 0.6, 2)
_REGRESSED_MEDIAN_SECONDS = 0.16


@dataclass(frozen=True)
class DemoEvent:
    """Something that happened in the demo history, for the tutorial and for tests' windows."""

    name: str
    job: str
    start: datetime
    end: datetime
    summary: str


def align_end(at: datetime | None = None) -> datetime:
    """``at`` (default: now) rounded down to the step, as an aware UTC datetime."""
    at = datetime.now(UTC) if at is None else at
    if at.tzinfo is None:
        raise ValueError("end must be timezone-aware")
    seconds = int(at.timestamp())
    step = int(STEP.total_seconds())
    return datetime.fromtimestamp(seconds - seconds % step, UTC)


def _incident_start(end: datetime) -> datetime:
    day = (end - timedelta(days=INCIDENT_DAYS_AGO)).replace(hour=0, minute=0, second=0, microsecond=0)
    return day + timedelta(hours=INCIDENT_HOUR_UTC)


def demo_timeline(end: datetime | None = None) -> tuple[DemoEvent, ...]:
    """What ``demo_history(end)`` contains, in time order."""
    end = align_end(end)
    incident = _incident_start(end)
    regression = end - REGRESSION_AGO
    return (
        DemoEvent(
            "checkout-incident",
            "checkout",
            incident,
            incident + INCIDENT_LENGTH,
            f"{INCIDENT_ERROR_RATIO:.0%} of checkout requests answer 5xx for 45 minutes",
        ),
        DemoEvent(
            "checkout-restart",
            "checkout",
            end - RESTART_AGO,
            end - RESTART_AGO,
            "checkout restarts: its counters reset to zero",
        ),
        DemoEvent(
            "checkout-latency-regression",
            "checkout",
            regression,
            end,
            "checkout median latency doubles (80 ms to 160 ms): ~4.4% of requests exceed 0.5 s",
        ),
    )


def demo_history(
    end: datetime | None = None, seed: int = 1, *, span: timedelta = HISTORY_SPAN
) -> list[Series]:
    """The demo's series, ending at ``end`` (default: now rounded down to the step).

    ``span`` shortens (or lengthens) the history for quick tests: the result is still deterministic,
    but counters start at its beginning and the noise differs, and events before it are not in it.
    What the module docstring promises holds for the default span.
    """
    end = align_end(end)
    if span < STEP or span % STEP:
        raise ValueError(f"span {span} must be a positive multiple of the {STEP} step")
    end_s = end.timestamp()
    start_s = (end - span).timestamp()
    count = int(span / STEP) + 1
    incident_start = _incident_start(end).timestamp()
    incident_end = incident_start + INCIDENT_LENGTH.total_seconds()
    regression_start = (end - REGRESSION_AGO).timestamp()
    ramp_s = REGRESSION_RAMP.total_seconds()

    def checkout_error_ratios(t: float) -> tuple[float, float]:
        if incident_start <= t < incident_end:
            return INCIDENT_ERROR_RATIO / 3, INCIDENT_ERROR_RATIO * 2 / 3
        return _CHECKOUT.ratio_500, _CHECKOUT.ratio_503

    baseline = LogNormalLatency(_CHECKOUT.median_seconds, _CHECKOUT.sigma)
    regressed = LogNormalLatency(_REGRESSED_MEDIAN_SECONDS, _CHECKOUT.sigma)

    def checkout_latency(t: float) -> LogNormalLatency:
        progress = (t - regression_start) / ramp_s
        if progress <= 0:
            return baseline
        if progress >= 1:
            return regressed
        median = _CHECKOUT.median_seconds + progress * (_REGRESSED_MEDIAN_SECONDS - _CHECKOUT.median_seconds)
        return LogNormalLatency(median, _CHECKOUT.sigma)

    def search_error_ratios(_t: float) -> tuple[float, float]:
        return _SEARCH.ratio_500, _SEARCH.ratio_503

    search_latency = LogNormalLatency(_SEARCH.median_seconds, _SEARCH.sigma)
    restart = [(end - RESTART_AGO).timestamp()]
    times = step_times(start_s, STEP, count)
    if times[-1] != end_s:
        raise AssertionError("the step grid must end exactly at end")

    out: list[Series] = []
    out += _service_series(
        _CHECKOUT,
        seed=seed,
        times=times,
        error_ratios=checkout_error_ratios,
        latency=checkout_latency,
        resets_at=restart,
    )
    out += _service_series(
        _SEARCH,
        seed=seed,
        times=times,
        error_ratios=search_error_ratios,
        latency=lambda _t: search_latency,
        resets_at=[],
    )
    return out


def _service_series(
    service: _Service,
    *,
    seed: int,
    times: list[float],
    error_ratios: Callable[[float], tuple[float, float]],
    latency: Callable[[float], LogNormalLatency],
    resets_at: list[float],
) -> list[Series]:
    rng = random.Random(seed * 1000 + service.seed_offset)
    step_s = STEP.total_seconds()
    requests: dict[float, float] = {}
    by_code: dict[float, tuple[float, float, float, float]] = {}
    for t in times:
        total = _requests_per_second(service, t) * step_s * max(0.0, rng.gauss(1.0, 0.03))
        ratio_500, ratio_503 = error_ratios(t)
        n404 = _poisson(rng, total * service.ratio_404)
        n500 = _poisson(rng, total * ratio_500)
        n503 = _poisson(rng, total * ratio_503)
        n200 = max(0.0, total - n404 - n500 - n503)
        requests[t] = n200 + n404 + n500 + n503
        by_code[t] = (n200, float(n404), float(n500), float(n503))

    labels = {"job": service.job}
    start, count = times[0], len(times)
    counters = counters_from_increments(
        "http_requests",
        [{**labels, "code": code} for code in CODES],
        start=start,
        step=STEP,
        count=count,
        increments=by_code.__getitem__,
        resets_at=resets_at,
    )
    histogram = histogram_from_steps(
        "http_request_duration_seconds",
        labels,
        buckets=LATENCY_BUCKETS,
        start=start,
        step=STEP,
        count=count,
        observe=lambda t: (requests[t], latency(t)),
        resets_at=resets_at,
    )
    return counters + histogram


def _requests_per_second(service: _Service, t: float) -> float:
    hour = (t % 86_400) / 3600
    diurnal = 1.0 + service.diurnal_amplitude * math.cos(2 * math.pi * (hour - service.peak_hour_utc) / 24)
    weekday = (int(t // 86_400) + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
    weekly = 0.8 if weekday >= 5 else 1.0
    return service.mean_rps * diurnal * weekly


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw: Knuth's method for small means, a rounded normal for large ones."""
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit = math.exp(-mean)
    k, product = 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k
