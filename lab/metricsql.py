"""What VictoriaMetrics 1.79 answers for ``increase``/``rate``: MetricsQL's rollups re-implemented.

Owns ``expected_vm_increase``/``expected_vm_rate``: a copy, step for step, of what an instant query
``/api/v1/query`` of Debian's VictoriaMetrics 1.79 does for ``increase(m[w])`` and ``rate(m[w])``, so
tests can compute the float it must answer, as ``lab.openmetrics.expected_increase`` does for
Prometheus. Sources: VictoriaMetrics' app/vmselect/prometheus/prometheus.go (``QueryHandler``: an
instant query's 5m default step), searchutils ``GetTime``, app/vmselect/promql/eval.go (the data fetch
range) and rollup.go (``rollupConfig.doInternal``, ``getScrapeInterval``, ``getMaxPrevInterval``,
``removeCounterResets``, ``rollupDelta``, ``rollupDerivFast``) as of 1.79. Two details differ between
releases and were pinned down against the real 1.79: a drop under 1/8 is a partial reset whose lost
part is added back (issue 2787), and with no growth to compare a first value with (a flat start, or a
lone sample) it counts from zero only below 10 (releases with the "d = 10" fallback: below 110).
tests/test_victoria.py proves the whole model equal to the server bit for bit.

Must not: do I/O, read the clock, or import budgetguard (the lab judges budgetguard, it does not share
its code).

How it differs from Prometheus 2.42 (``lab.openmetrics._extrapolated_rate``), on a counter sampled
every ``s`` seconds:

- The window is left-open, ``(t - w, t]``, and the last sample at or before ``t - w`` (the "previous
  value", if it is younger than ``t - w - maxPrevInterval``, ~1.1 scrape intervals) takes part:
  ``increase = last - previous`` and ``rate = (last - previous) / (t_last - t_previous)``.
  Nothing is extrapolated. On an evenly sampled counter ``t_last - t_previous`` is exactly ``w``.
- Prometheus takes the closed window ``[t - w, t]`` alone and extrapolates to its edges. The two meet
  when ``t`` falls on a sample (Prometheus' factor is then exactly 1); between samples Prometheus scales
  the last ``w - s`` seconds of growth up to ``w``, VictoriaMetrics counts the ``w`` seconds up to the
  last sample.
- Without a previous value (the window reaches before the series' first sample): ``increase`` counts
  the first sample from zero when it is "small" (below 10x the next step's growth plus one), else from
  itself; ``rate`` is the slope between the window's first and last samples, so ``rate * w``
  extrapolates that slope over the whole window. Prometheus extrapolates at most half an interval at
  that edge.
- Counter resets: a drop is a reset (its pre-drop value is added back, as in Prometheus) unless it is
  smaller than 1/8 of the value before it; such a drop is taken for a partial reset and only the lost
  part is added back, so no growth is counted across it (Prometheus counts the whole new value). This
  runs over every sample the query fetched, from ``t - 5m - max(w, step)``.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from lab.openmetrics import Series, gauge

__all__ = ["expected_vm_increase", "expected_vm_rate", "vm_query_millis"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
# eval.go maxSilenceInterval: how far before the window the query fetches samples.
_MAX_SILENCE_MS = 5 * 60 * 1000
# prometheus.go defaultStep: an instant query's step when the request names none (budgetguard never does).
_DEFAULT_STEP_MS = 5 * 60 * 1000
# rollup.go getScrapeInterval: the 0.6 quantile of the first 20 intervals between fetched samples.
_SCRAPE_INTERVAL_PHI = 0.6
_SCRAPE_INTERVAL_SAMPLES = 20


def vm_query_millis(at: float | datetime) -> int:
    """The millisecond an instant query for ``at`` evaluates at, as searchutils ``GetTime`` parses ``time=``.

    VictoriaMetrics computes ``int64(ParseFloat(text) * 1e3)``, truncating: ``1085135776.304`` becomes
    ...303 ms (Prometheus rounds to ...304). A float is read as sent by its shortest ``repr``; a
    datetime as Unix seconds with three decimals, the way budgetguard and the lab send it.
    """
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise ValueError("evaluation time must be timezone-aware")
        ms = (at - _EPOCH) // _ONE_MS
        at = float(f"{ms // 1000}.{ms % 1000:03d}")
    return int(at * 1e3)


def expected_vm_increase(
    samples: Series | Iterable[tuple[float, float]], at: float | datetime, window: timedelta
) -> float | None:
    """What VictoriaMetrics 1.79 answers for ``increase(series[window])`` at ``at`` (``None``: no sample)."""
    return _rollup(samples, at, window, is_rate=False)


def expected_vm_rate(
    samples: Series | Iterable[tuple[float, float]], at: float | datetime, window: timedelta
) -> float | None:
    """What VictoriaMetrics 1.79 answers for ``rate(series[window])`` at ``at`` (``None``: no sample)."""
    return _rollup(samples, at, window, is_rate=True)


def _rollup(
    samples: Series | Iterable[tuple[float, float]], at: float | datetime, window: timedelta, *, is_rate: bool
) -> float | None:
    series = samples if isinstance(samples, Series) else gauge("samples", {}, samples)
    window_ms = window // _ONE_MS
    if window_ms <= 0 or window_ms * _ONE_MS != window:
        raise ValueError(f"window {window} must be a positive whole number of milliseconds")
    end = vm_query_millis(at)

    # eval.go: fetch [start - maxSilenceInterval - max(window, step), end], both ends included.
    fetch_from = end - _MAX_SILENCE_MS - max(window_ms, _DEFAULT_STEP_MS)
    lo = bisect.bisect_left(series.millis, fetch_from)
    hi = bisect.bisect_right(series.millis, end)
    timestamps = series.millis[lo:hi]
    values = _remove_counter_resets(series.values[lo:hi])

    max_prev_interval = _max_prev_interval(_scrape_interval(timestamps))
    if is_rate:
        # rollupFuncsCanAdjustWindow: rate's window grows to at least maxPrevInterval.
        window_ms = max(window_ms, max_prev_interval)
    start = end - window_ms

    # rollupConfig.doInternal, for the single point of an instant query.
    i = bisect.bisect_right(timestamps, start)  # first sample after the (open) window start
    j = bisect.bisect_right(timestamps, end)
    prev_value, prev_timestamp = math.nan, start - max_prev_interval
    if i < len(timestamps) and i > 0 and timestamps[i - 1] > prev_timestamp:
        prev_value, prev_timestamp = values[i - 1], timestamps[i - 1]
    real_prev_value = values[i - 1] if i > 0 else math.nan
    real_next_value = values[j] if j < len(values) else math.nan
    in_window = values[i:j]
    if is_rate:
        result = _rollup_deriv_fast(in_window, timestamps[i:j], prev_value, prev_timestamp)
    else:
        result = _rollup_delta(in_window, prev_value, real_prev_value, real_next_value)
    return None if math.isnan(result) else result


def _remove_counter_resets(values: Sequence[float]) -> list[float]:
    """rollup.go removeCounterResets: add back what each drop lost, all of the old value for a reset."""
    out: list[float] = []
    correction = 0.0
    previous = values[0] if values else 0.0
    for value in values:
        if value < previous:
            # A drop under 1/8 is "likely a partial counter reset" (issue 2787, new in 1.79): only the
            # lost part is added back, so the counter reads as flat across the drop.
            correction += previous - value if (previous - value) * 8 < previous else previous
        previous = value
        out.append(value + correction)
    return out


def _scrape_interval(timestamps: Sequence[int]) -> int:
    if len(timestamps) < 2:
        return _MAX_SILENCE_MS
    head = timestamps[: _SCRAPE_INTERVAL_SAMPLES + 1]
    intervals = sorted(float(b - a) for a, b in itertools.pairwise(head))
    # aggr.go quantileSorted: Prometheus' linear interpolation between closest ranks; then int64().
    rank = _SCRAPE_INTERVAL_PHI * (len(intervals) - 1)
    lower = max(0, math.floor(rank))
    upper = min(len(intervals) - 1, lower + 1)
    weight = rank - math.floor(rank)
    interval = int(intervals[lower] * (1 - weight) + intervals[upper] * weight)
    return interval if interval > 0 else _MAX_SILENCE_MS


def _max_prev_interval(scrape_interval: int) -> int:
    """rollup.go getMaxPrevInterval: how old the previous value may be, more slack for short intervals."""
    si = scrape_interval
    if si <= 2000:
        return si + 4 * si
    if si <= 4000:
        return si + 2 * si
    if si <= 8000:
        return si + si
    if si <= 16000:
        return si + si // 2
    if si <= 32000:
        return si + si // 4
    return si + si // 8


def _rollup_delta(
    values: Sequence[float], prev_value: float, real_prev_value: float, real_next_value: float
) -> float:
    if math.isnan(prev_value):
        if not values:
            return math.nan
        if not math.isnan(real_prev_value):
            # A gap longer than maxPrevInterval: assume the value did not change during it (issue 894).
            return values[-1] - real_prev_value
        # No sample before the window: count the first value from zero only if it is "small" next to
        # the following growth (a new counter), else from itself (a counter older than its first sample).
        growth = 0.0
        if len(values) > 1:
            growth = values[1] - values[0]
        elif not math.isnan(real_next_value):
            growth = real_next_value - values[0]
        if abs(values[0]) < 10 * (abs(growth) + 1):
            prev_value = 0.0
        else:
            prev_value = values[0]
            values = values[1:]
    if not values:
        return 0.0
    return values[-1] - prev_value


def _rollup_deriv_fast(
    values: Sequence[float], timestamps: Sequence[int], prev_value: float, prev_timestamp: int
) -> float:
    if math.isnan(prev_value):
        if len(values) < 2:
            return math.nan
        prev_value, prev_timestamp = values[0], timestamps[0]
    elif not values:
        return 0.0
    return (values[-1] - prev_value) / ((timestamps[-1] - prev_timestamp) / 1e3)
