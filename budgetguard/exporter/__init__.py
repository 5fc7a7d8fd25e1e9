"""budgetguard's own Prometheus metrics: the latest verdicts, read at scrape time, and cycle health.

This is the only module that imports prometheus-client. It owns one ``CollectorRegistry`` per
``Exporter`` (never the process-wide default, so two exporters, or a test and the daemon, never
collide) and the metric names, which are an interface: the Grafana dashboard and the alert rules in
deploy/ query them, and tests/test_deploy.py fails when one of those names is not exported.

It does not evaluate anything and serves no HTTP: the daemon hands it a ``MetricsView`` and reports
finished cycles and source errors; the server calls ``render()`` and sends the bytes. Per-SLO series
are computed from the view at scrape time by a Collector, so an SLO removed by a reload disappears
from the next scrape instead of lingering as a stale child of a labelled gauge.

Unknown values (``None`` in an Evaluation) are not exported: the series is absent for that scrape,
never NaN or -1, so ``absent()``, ``or`` and Grafana's "no data" tell the truth. An SLO's own labels
are copied onto its series when they are valid label names; one that collides with a label this
module sets is renamed ``exported_<name>``, as Prometheus does for target labels. The label set of an
SLO's series is fixed by its declaration, so cardinality is bounded by SLOs x windows x tiers; with
``per_window=False`` the per-window series (burn rate, error ratio and events for each of an SLO's
eight windows, a canary's per window) are left out, for fleets where they are most of the bytes
(docs/reference/metrics-cardinality.md).

Two registries: ``live`` holds what changes between cycles (counters, the cycle histogram, the event
loop's lag, the daemon's health, when the last cycle ended) and is cheap to render on every scrape; the
per-SLO state changes only when a cycle ends, so the daemon renders it once per cycle, off the event loop
(``budgetguard.exporter.prepared``), or has its cycle worker process render it (``SLOLines``).
``render()`` renders both, as one exposition.
"""

from __future__ import annotations

import math
import platform
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from budgetguard.core.durations import format_duration
from budgetguard.core.policy import Evaluation, TierState
from budgetguard.core.spec import SLO, BurnTier
from budgetguard.core.verdict import QueryMode, Verdict
from budgetguard.exporter.encode import escape_label_value, go_float, header

# Evaluation.error_kind is a closed set (policy.Evaluation); anything else is counted as "other", so a
# bug that invents kinds cannot grow the counter's cardinality.
SOURCE_ERROR_REASONS: tuple[str, ...] = (
    "unavailable",
    "timeout",
    "auth",
    "bad_query",
    "protocol",
    "source_error",
    "query_shape",
    "internal",
    "other",
)

# Labels this module sets on some series, plus the ones Prometheus attaches at scrape time (job,
# instance) or reserves for histograms and summaries (le, quantile). ``objective`` is set by
# budgetguard_slo_info. An SLO label with one of these names is exported as exported_<name>.
RESERVED_LABELS: frozenset[str] = frozenset(
    {
        "service",
        "slo",
        "window",
        "verdict",
        "severity",
        "long_window",
        "short_window",
        "reason",
        "le",
        "quantile",
        "job",
        "instance",
        "version",
        "objective",
    }
)

# How late the event loop runs a task that asked to wake up: a handler that holds the loop delays every
# other request by that much. Milliseconds up to the seconds a stuck loop would show.
LOOP_LAG_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

# Cycles run every 30 s by default and should take well under a second against a healthy Prometheus;
# the 30 s bucket tells a cycle that overran the default interval from one that did not.
DURATION_BUCKETS: tuple[float, ...] = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    30.0,
    45.0,
    60.0,
)

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_EXPORTED_PREFIX = "exported_"


class MetricsView(Protocol):
    """What the daemon provides; the exporter only reads it, at scrape time."""

    def latest_evaluations(self) -> Sequence[Evaluation]:
        """The last evaluation of every currently declared SLO."""
        ...

    def config_errors(self) -> int:
        """Problems in the last (re)load of the SLO files; 0 when they were valid."""
        ...


class HealthView(Protocol):
    """What the daemon knows of its own health, for the alerts issue 13 asked for (all read at scrape time).

    Kept apart from ``MetricsView`` so that a view of verdicts alone (a test's, ``budgetguard eval``'s)
    needs none of it; the series below are absent when no ``HealthView`` is given.
    """

    def open_incidents(self) -> Mapping[tuple[str, str], int]:
        """(service, slo) -> canary incidents open now."""
        ...

    def paused(self) -> Sequence[tuple[str, str]]:
        """(service, slo) of every guard paused now."""
        ...

    def store_problem(self) -> str | None:
        """Why the store cannot be written now, or None when the last write (or probe) worked."""
        ...

    def config_file_problems(self) -> int:
        """Problems in the last reload of the config file (0 when it was taken)."""
        ...


# A source error of one of these kinds says the source itself failed, not one SLO's query.
SOURCE_DOWN_REASONS = frozenset({"unavailable", "timeout", "auth", "protocol"})


class Exporter:
    """budgetguard's metrics over a ``MetricsView``, in a registry of its own.

    ``clock`` gives the Unix time a cycle finished (``budgetguard_last_evaluation_timestamp_seconds``);
    tests pass a fake one.
    """

    def __init__(
        self,
        view: MetricsView,
        *,
        version: str,
        clock: Callable[[], float] = time.time,
        health: HealthView | None = None,
        per_window: bool = True,
    ) -> None:
        self._registry = CollectorRegistry()
        self._clock = clock
        self._lock = threading.Lock()
        self._last_cycle_end: float | None = None
        self._last_cycle_slos: int | None = None
        self._durations = Histogram(
            "budgetguard_evaluation_duration_seconds",
            "Wall-clock time of one evaluation cycle over every SLO.",
            buckets=DURATION_BUCKETS,
            registry=self._registry,
        )
        self._source_errors = Counter(
            "budgetguard_source_errors_total",
            "SLO evaluations that ended in an error verdict, by cause (Evaluation.error_kind).",
            ["reason"],
            registry=self._registry,
        )
        for reason in SOURCE_ERROR_REASONS:
            self._source_errors.labels(reason=reason)  # present at 0 from the start, so rate() works
        self._deliveries = Counter(
            "budgetguard_action_deliveries_total",
            "Delivery attempts of canary actions, by action and outcome (delivered, already_done, retry, "
            "failed).",
            ["action", "outcome"],
            registry=self._registry,
        )
        self._incidents = Counter(
            "budgetguard_canary_incidents_total",
            "Canary incidents opened and resolved, by service and SLO.",
            ["service", "slo", "event"],
            registry=self._registry,
        )
        # Leadership (issue 12): the replica that opens incidents and delivers. Absent nowhere: every
        # replica exports 0 until it leads, so sum(budgetguard_leader) counts the leaders (exactly 1).
        self._leader = Gauge(
            "budgetguard_leader",
            "1 on the replica that leads (opens and resolves incidents, delivers actions), 0 on the others.",
            registry=self._registry,
        )
        self._leader_changes = Counter(
            "budgetguard_leader_changes_total",
            "Times this replica gained or lost the leadership, by change (gained, lost).",
            ["change"],
            registry=self._registry,
        )
        for change in ("gained", "lost"):
            self._leader_changes.labels(change=change)
        self._leading = False
        self._worker_failures = Counter(
            "budgetguard_cycle_worker_failures_total",
            "Cycles the cycle worker process failed (could not start, died, answered nonsense or too "
            "late); each was evaluated in the daemon's process instead.",
            registry=self._registry,
        )
        self._loop_lag = Histogram(
            "budgetguard_event_loop_lag_seconds",
            "How late the event loop woke a task that slept: the time a handler, a scrape or a cycle held "
            "the loop that answers the gates.",
            buckets=LOOP_LAG_BUCKETS,
            registry=self._registry,
        )
        self._lag_max = _RecentMax(time.monotonic)
        self._registry.register(self._lag_max)
        self._live = CollectorRegistry()
        self._state = _StateCollector(view, per_window)
        self._registry.register(self._state)
        # After the per-SLO families: what the last cycle and the last reload say, and the build. Live,
        # so the per-SLO part is the same bytes whoever renders it (a cycle worker process, #14).
        tail = _TailCollector(view, self._cycle_state, version)
        self._registry.register(tail)
        live: list[Collector] = [
            tail,
            self._durations,
            self._source_errors,
            self._deliveries,
            self._incidents,
            self._loop_lag,
            self._lag_max,
            self._leader,
            self._leader_changes,
            self._worker_failures,
        ]
        if health is not None:
            health_collector = _HealthCollector(view, health)
            self._registry.register(health_collector)
            live.append(health_collector)
        for collector in live:
            self._live.register(collector)

    @property
    def registry(self) -> CollectorRegistry:
        return self._registry

    def observe_cycle(self, duration_seconds: float, slo_count: int) -> None:
        """One evaluation cycle over ``slo_count`` SLOs finished now, after ``duration_seconds``."""
        if not math.isfinite(duration_seconds) or duration_seconds < 0:
            raise ValueError(
                f"a cycle duration must be a finite number of seconds >= 0, not {duration_seconds!r}"
            )
        if slo_count < 0:
            raise ValueError(f"an SLO count cannot be negative, not {slo_count!r}")
        self._durations.observe(duration_seconds)
        with self._lock:
            self._last_cycle_end = self._clock()
            self._last_cycle_slos = slo_count

    def count_source_error(self, reason: str) -> None:
        """Count one error verdict; ``reason`` outside ``SOURCE_ERROR_REASONS`` is counted as "other"."""
        self._source_errors.labels(reason=reason if reason in SOURCE_ERROR_REASONS else "other").inc()

    def observe_loop_lag(self, lag_seconds: float) -> None:
        """The event loop ran a task ``lag_seconds`` after it was due."""
        self._loop_lag.observe(max(lag_seconds, 0.0))
        self._lag_max.observe(max(lag_seconds, 0.0))

    def set_leader(self, leading: bool) -> None:
        """This replica leads (True) or follows; a change counts in budgetguard_leader_changes_total."""
        with self._lock:
            changed = leading != self._leading
            self._leading = leading
        self._leader.set(1 if leading else 0)
        if changed:
            self._leader_changes.labels(change="gained" if leading else "lost").inc()

    def count_worker_failure(self) -> None:
        self._worker_failures.inc()

    def count_delivery(self, action: str, outcome: str) -> None:
        self._deliveries.labels(action=action, outcome=outcome).inc()

    def count_incident(self, service: str, slo: str, event: str) -> None:
        self._incidents.labels(service=service, slo=slo, event=event).inc()

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition and its content type: OpenMetrics when ``accept`` asks for it, else text 0.0.4."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self._registry), content_type

    def render_state(self, accept: str | None = None) -> tuple[bytes, str]:
        """The per-SLO part alone (no OpenMetrics ``# EOF``): what changes only when a cycle ends.

        Written straight from the evaluations (``_SLOLines``) with each SLO's labels escaped once and kept
        across cycles; it parses to what ``render`` gives for it (tests/test_prepared_metrics.py).
        """
        _, content_type = choose_encoder(accept or "")
        return self._state.render(content_type.startswith("application/openmetrics")), content_type

    def render_live(self, accept: str | None = None) -> tuple[bytes, str]:
        """The rest, which changes between cycles (ends with OpenMetrics' ``# EOF`` when asked for)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self._live), content_type

    def _cycle_state(self) -> tuple[float | None, int | None]:
        with self._lock:
            return self._last_cycle_end, self._last_cycle_slos


class _RecentMax(Collector):
    """The largest event-loop lag of the last ``RECENT`` seconds, whoever scrapes and how often."""

    RECENT = 60

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._by_second: dict[int, float] = {}

    def observe(self, value: float) -> None:
        second = int(self._clock())
        with self._lock:
            if value > self._by_second.get(second, -1.0):
                self._by_second[second] = value
            if len(self._by_second) > self.RECENT * 2:
                self._forget(second)

    def _forget(self, now: int) -> None:
        for old in [s for s in self._by_second if s <= now - self.RECENT]:
            del self._by_second[old]

    def collect(self) -> Iterator[Metric]:
        now = int(self._clock())
        with self._lock:
            self._forget(now)
            values = list(self._by_second.values())
        if values:
            yield GaugeMetricFamily(
                "budgetguard_event_loop_lag_max_seconds",
                f"The longest event-loop lag of the last {self.RECENT} s (absent before the first measure).",
                value=max(values),
                unit="seconds",
            )


class _StateCollector(Collector):
    """The per-SLO series, from the view."""

    def __init__(self, view: MetricsView, per_window: bool = True) -> None:
        self._view = view
        self._per_window = per_window
        self._lines = SLOLines(per_window)

    def collect(self) -> Iterator[Metric]:
        families = _SLOFamilies(self._per_window)
        for evaluation in _one_per_slo(self._view.latest_evaluations()):
            families.add(evaluation)
        yield from families.non_empty()

    def render(self, openmetrics: bool) -> bytes:
        """What ``encode(self.collect())`` gives, written without a sample object per series."""
        return self._lines.render(self._view.latest_evaluations(), openmetrics)


class SLOLines:
    """The per-SLO part of /metrics for given evaluations, the bytes ``Exporter.render_state`` writes for
    them: for a cycle worker process, which renders it beside the evaluations it made (#14)."""

    def __init__(self, per_window: bool = True) -> None:
        self.per_window = per_window
        self._lines = _SLOLines(per_window)

    def render(self, evaluations: Sequence[Evaluation], openmetrics: bool) -> bytes:
        return self._lines.render(_one_per_slo(evaluations), openmetrics)


class _TailCollector(Collector):
    """What the last cycle and the last reload of the SLO files say, and the build."""

    def __init__(
        self, view: MetricsView, cycle_state: Callable[[], tuple[float | None, int | None]], version: str
    ) -> None:
        self._view = view
        self._cycle_state = cycle_state
        self._build = {"version": version, "python_version": platform.python_version()}

    def collect(self) -> Iterator[Metric]:
        last_end, slo_count = self._cycle_state()
        if last_end is not None:
            yield GaugeMetricFamily(
                "budgetguard_last_evaluation_timestamp_seconds",
                "Unix time the last evaluation cycle finished (absent until the first one has).",
                value=last_end,
                unit="seconds",
            )
        if slo_count is not None:
            yield GaugeMetricFamily(
                "budgetguard_slos", "SLOs evaluated in the last evaluation cycle.", value=slo_count
            )
        yield GaugeMetricFamily(
            "budgetguard_slo_config_errors",
            "Problems found in the last load or reload of the SLO files (0 when they are valid).",
            value=self._view.config_errors(),
        )
        yield InfoMetricFamily("budgetguard_build", "budgetguard's version and Python's.", value=self._build)


class _HealthCollector(Collector):
    """The guard's own state: open incidents, pauses, the store, the config file and the source."""

    def __init__(self, view: MetricsView, health: HealthView) -> None:
        self._view = view
        self._health = health

    def collect(self) -> Iterator[Metric]:
        opened = GaugeMetricFamily(
            "budgetguard_canary_incidents_open",
            "Canary incidents open now, by service and SLO (absent for SLOs without one).",
            labels=["service", "slo"],
        )
        for (service, slo), count in sorted(self._health.open_incidents().items()):
            opened.add_metric([service, slo], count)
        yield opened
        paused = GaugeMetricFamily(
            "budgetguard_canary_guard_paused",
            "1 for each SLO whose canary guard is paused now (`budgetguard pause`): it halts nothing.",
            labels=["service", "slo"],
        )
        for service, slo in sorted(self._health.paused()):
            paused.add_metric([service, slo], 1.0)
        yield paused
        yield GaugeMetricFamily(
            "budgetguard_store_writable",
            "1 while the store takes writes, 0 while it does not: decisions are not stored, so no "
            "canary is halted.",
            value=0.0 if self._health.store_problem() else 1.0,
        )
        yield GaugeMetricFamily(
            "budgetguard_config_errors",
            "Problems in the last reload of the config file (0 when it was taken; the last good "
            "config stays in force).",
            value=self._health.config_file_problems(),
        )
        evaluations = list(self._view.latest_evaluations())
        if evaluations:
            down = all(
                ev.verdict is Verdict.ERROR and (ev.error_kind or "") in SOURCE_DOWN_REASONS
                for ev in evaluations
            )
            yield GaugeMetricFamily(
                "budgetguard_source_up",
                "0 when the last evaluation of every SLO failed for a reason of the source itself "
                "(unreachable, timing out, refusing the credentials, answering nonsense), else 1.",
                value=0.0 if down else 1.0,
            )


class _SLOFamilies:
    """The per-SLO families of one scrape, filled SLO by SLO (exposition wants each family contiguous)."""

    def __init__(self, per_window: bool = True) -> None:
        self.per_window = per_window
        self.objective = _gauge(
            "objective_ratio", "The SLO's objective as a ratio (99.9% is 0.999).", "ratio"
        )
        self.budget = _gauge("error_budget_ratio", "The SLO's error budget: 1 - objective.", "ratio")
        self.window_seconds = _gauge("window_seconds", "The SLO's window (its budget period).", "seconds")
        self.remaining = _gauge(
            "error_budget_remaining_ratio",
            "Share of the window's error budget left: 1 untouched, 0 spent, negative overspent.",
            "ratio",
        )
        self.burn_rate = _gauge("burn_rate", "Error ratio over the window divided by the error budget.")
        self.error_ratio = _gauge("error_ratio", "Bad events over total events in the window.", "ratio")
        self.events = _gauge("window_events", "Events (requests) counted in the window.")
        self.exhaustion = _gauge(
            "time_to_exhaustion_seconds",
            "How long the remaining budget lasts at the current burn rate (absent: never runs out).",
            "seconds",
        )
        # Calendar windows only (absent for rolling ones): when the period's budget resets, and what is
        # left of it per remaining day.
        self.period_end = _gauge(
            "period_end_timestamp_seconds",
            "Calendar windows: Unix time the current period ends and its error budget resets.",
            "seconds",
        )
        self.period_left = _gauge(
            "period_left_seconds", "Calendar windows: time left until the current period ends.", "seconds"
        )
        self.per_day = _gauge(
            "error_budget_remaining_per_day_ratio",
            "Calendar windows: share of the period's error budget left per remaining day (0 once spent).",
            "ratio",
        )
        self.verdict = _gauge("verdict", "1 for the SLO's current verdict, 0 for the others.")
        self.threshold = _gauge(
            "tier_burn_rate_threshold", "Burn rate above which a tier fires (both of its windows)."
        )
        self.firing = _gauge("tier_firing", "1 when both windows of the tier burn above its threshold.")
        self.evaluated_at = _gauge(
            "last_evaluation_timestamp_seconds", "Unix time of the SLO's last evaluation.", "seconds"
        )
        self.canary_verdict = _gauge(
            "canary_verdict", "1 for each canary version's current verdict, 0 for the others."
        )
        self.canary_burn = _gauge(
            "canary_burn_rate", "A canary version's burn rate over each canary window (errors / budget)."
        )
        self.canary_burn_lower = _gauge(
            "canary_burn_rate_lower_bound",
            "The lower confidence bound on a canary's burn rate in its deciding window: above the limit "
            "means burning.",
        )
        self.canary_limit = _gauge("canary_burn_rate_limit", "The burn rate a canary must stay under.")
        self.canary_events = _gauge(
            "canary_window_events", "A canary version's requests in each canary window."
        )
        self.fallback = _gauge(
            "recording_fallback",
            "Recording-rule mode only: 1 when the SLO was read with raw queries because its recorded "
            "series are missing or stale, 0 when it was read from them.",
        )
        self.info = InfoMetricFamily(
            "budgetguard_slo",
            "One series per declared SLO: its objective in percent as declared, its window and labels.",
        )

    def add(self, ev: Evaluation) -> None:
        slo = ev.slo
        labels = slo_series_labels(slo)
        self.info.add_metric(
            [], {**labels, "objective": f"{slo.objective.normalize():f}", "window": _w(slo.window)}
        )
        _add(self.objective, labels, float(slo.objective_ratio))
        _add(self.budget, labels, float(slo.error_budget))
        _add(self.window_seconds, labels, slo.window.total_seconds())
        _add(self.remaining, labels, ev.budget_remaining)
        _add(self.exhaustion, labels, _seconds(ev.time_to_exhaustion))
        if ev.period is not None:
            _add(self.period_end, labels, ev.period.end.timestamp())
            _add(self.period_left, labels, _seconds(ev.time_left))
            _add(self.per_day, labels, ev.budget_remaining_per_day)
        _add(self.evaluated_at, labels, ev.at.timestamp())
        for verdict in Verdict:
            _add(self.verdict, {**labels, "verdict": verdict.value}, 1.0 if ev.verdict is verdict else 0.0)
        for stat in ev.windows if self.per_window else ():
            by_window = {**labels, "window": _w(stat.window)}
            _add(self.burn_rate, by_window, stat.burn_rate)
            _add(self.error_ratio, by_window, stat.error_ratio)
            _add(self.events, by_window, stat.events)
        thresholds, firing = _tiers(slo.tiers, ev.tiers)
        for key, threshold in thresholds.items():
            by_tier = {**labels, **dict(zip(("severity", "long_window", "short_window"), key, strict=True))}
            _add(self.threshold, by_tier, threshold)
            _add(self.firing, by_tier, firing.get(key))
        if ev.query_mode != QueryMode.RAW:
            # "recording (...)": a calendar SLO's period read raw beside its recorded windows, no fallback.
            _add(self.fallback, labels, 0.0 if ev.query_mode.startswith(QueryMode.RECORDING) else 1.0)
        for canary in ev.canaries:
            by_canary = {**labels, "canary_label": canary.label, "canary": canary.value}
            for verdict in Verdict:
                value = 1.0 if canary.verdict is verdict else 0.0
                _add(self.canary_verdict, {**by_canary, "verdict": verdict.value}, value)
            _add(self.canary_burn_lower, by_canary, canary.judgement.burn_lower)
            if slo.canary is not None:
                _add(self.canary_limit, by_canary, slo.canary.burn_limit)
            for window in canary.windows if self.per_window else ():
                by_window = {**by_canary, "window": _w(window.window)}
                _add(self.canary_burn, by_window, window.judgement.burn_rate)
                _add(self.canary_events, by_window, window.canary.total)

    def non_empty(self) -> Iterator[Metric]:
        return (family for family in self.ordered() if family.samples)

    def ordered(self) -> tuple[Metric, ...]:
        """Every family, in exposition order (``_SLOLines`` writes its columns in this order too)."""
        return (
            self.info,
            self.objective,
            self.budget,
            self.window_seconds,
            self.remaining,
            self.period_end,
            self.period_left,
            self.per_day,
            self.burn_rate,
            self.error_ratio,
            self.events,
            self.exhaustion,
            self.verdict,
            self.threshold,
            self.firing,
            self.evaluated_at,
            self.canary_verdict,
            self.canary_burn,
            self.canary_burn_lower,
            self.canary_limit,
            self.canary_events,
            self.fallback,
        )


class _SLOLines:
    """The per-SLO families written as text straight from the evaluations, the hot part of a refresh (#14).

    ``_SLOFamilies`` builds a dict and a sample object per series and ``encode`` escapes every label of
    each: ~2 s of CPU per cycle at 10,000 SLOs (``bench/metrics_render_bench.py``). An SLO's labels do not
    change until a reload replaces the SLO, so each SLO's escaped label string, and the lines that depend
    on its declaration alone (info, objective, budget, window, tier thresholds), are made once and kept
    across cycles, keyed by SLO id and dropped when the id's SLO object is another (a reload) or gone.
    The lines are the bytes ``encode(_SLOFamilies)`` writes, family by family in ``ordered()``'s order.
    """

    def __init__(self, per_window: bool) -> None:
        self._per_window = per_window
        self._families = _SLOFamilies(per_window).ordered()  # for their names and headers
        self._names = [family.name for family in self._families]
        self._names[_INFO] += "_info"  # the info family's samples
        self._kept: dict[str, _KeptSLO] = {}

    def render(self, evaluations: Sequence[Evaluation], openmetrics: bool) -> bytes:
        names, per_window = self._names, self._per_window
        columns: list[list[str]] = [[] for _ in names]
        (info, objective, budget, window_seconds, remaining, period_end, period_left, per_day) = columns[:8]
        (burn_rate, error_ratio, events, exhaustion, verdicts, thresholds, firing, evaluated_at) = columns[
            8:16
        ]
        fallback = columns[_FALLBACK]
        isnan = math.isnan
        n_remaining, n_period_end, n_period_left, n_per_day = names[_REMAINING : _PER_DAY + 1]
        n_burn, n_ratio, n_events, n_exhaustion = names[_BURN : _EXHAUSTION + 1]
        n_firing, n_evaluated, n_fallback = names[_FIRING], names[_EVALUATED_AT], names[_FALLBACK]
        kept, self._kept = self._kept, {}
        for ev in evaluations:
            slo = ev.slo
            one = kept.get(slo.id)
            if one is None or one.slo is not slo:
                one = _KeptSLO(slo, names)
            self._kept[slo.id] = one
            labels = one.labels
            info.append(one.info)
            objective.append(one.objective)
            budget.append(one.budget)
            window_seconds.append(one.window_seconds)
            value: float | None = ev.budget_remaining
            if value is not None and not isnan(value):
                remaining.append(f"{n_remaining}{{{labels}}} {go_float(value)}\n")
            value = _seconds(ev.time_to_exhaustion)
            if value is not None and not isnan(value):
                exhaustion.append(f"{n_exhaustion}{{{labels}}} {go_float(value)}\n")
            if ev.period is not None:
                period_end.append(f"{n_period_end}{{{labels}}} {go_float(ev.period.end.timestamp())}\n")
                value = _seconds(ev.time_left)
                if value is not None and not isnan(value):
                    period_left.append(f"{n_period_left}{{{labels}}} {go_float(value)}\n")
                value = ev.budget_remaining_per_day
                if value is not None and not isnan(value):
                    per_day.append(f"{n_per_day}{{{labels}}} {go_float(value)}\n")
            evaluated_at.append(f"{n_evaluated}{{{labels}}} {go_float(ev.at.timestamp())}\n")
            verdicts.append(one.verdict(ev.verdict))
            if per_window:
                for stat in ev.windows:
                    by_window = one.window(stat.window)
                    if (value := stat.burn_rate) is not None and not isnan(value):
                        burn_rate.append(f"{n_burn}{{{by_window}}} {go_float(value)}\n")
                    if (value := stat.error_ratio) is not None and not isnan(value):
                        error_ratio.append(f"{n_ratio}{{{by_window}}} {go_float(value)}\n")
                    if (value := stat.events) is not None and not isnan(value):
                        events.append(f"{n_events}{{{by_window}}} {go_float(value)}\n")
            thresholds.append(one.thresholds)
            fired = _firing(ev.tiers, one.tier_keys)
            for key, by_tier in one.tiers.items():
                if (value := fired.get(key)) is not None:
                    firing.append(f"{n_firing}{{{by_tier}}} {go_float(value)}\n")
            if ev.query_mode != QueryMode.RAW:
                value = 0.0 if ev.query_mode.startswith(QueryMode.RECORDING) else 1.0
                fallback.append(f"{n_fallback}{{{labels}}} {go_float(value)}\n")
            if ev.canaries:
                self._canaries(ev, labels, columns)
        out: list[str] = []
        for family, column in zip(self._families, columns, strict=True):
            if column:
                out.append(header(family, openmetrics))
                out.extend(column)
        return "".join(out).encode("utf-8")

    def _canaries(self, ev: Evaluation, labels: str, columns: list[list[str]]) -> None:
        names = self._names
        for canary in ev.canaries:
            by_canary = (
                f'{labels},canary_label="{escape_label_value(canary.label)}",'
                f'canary="{escape_label_value(canary.value)}"'
            )
            for verdict in Verdict:
                value = 1.0 if canary.verdict is verdict else 0.0
                columns[_CANARY_VERDICT].append(
                    f'{names[_CANARY_VERDICT]}{{{by_canary},verdict="{escape_label_value(verdict.value)}"}} '
                    f"{go_float(value)}\n"
                )
            _line(columns[_CANARY_LOWER], names[_CANARY_LOWER], by_canary, canary.judgement.burn_lower)
            if ev.slo.canary is not None:
                _line(columns[_CANARY_LIMIT], names[_CANARY_LIMIT], by_canary, ev.slo.canary.burn_limit)
            for window in canary.windows if self._per_window else ():
                by_window = f'{by_canary},window="{escape_label_value(_w(window.window))}"'
                _line(columns[_CANARY_BURN], names[_CANARY_BURN], by_window, window.judgement.burn_rate)
                _line(columns[_CANARY_EVENTS], names[_CANARY_EVENTS], by_window, window.canary.total)


# Column of each family in _SLOFamilies.ordered().
(_INFO, _OBJECTIVE, _BUDGET, _WINDOW_SECONDS, _REMAINING, _PERIOD_END, _PERIOD_LEFT, _PER_DAY) = range(8)
(_BURN, _ERROR_RATIO, _EVENTS, _EXHAUSTION, _VERDICT, _THRESHOLD, _FIRING, _EVALUATED_AT) = range(8, 16)
(_CANARY_VERDICT, _CANARY_BURN, _CANARY_LOWER, _CANARY_LIMIT, _CANARY_EVENTS, _FALLBACK) = range(16, 22)


class _KeptSLO:
    """One SLO's escaped labels and the lines that follow from its declaration alone, kept across cycles."""

    __slots__ = (
        "_names",
        "_windows",
        "budget",
        "info",
        "labels",
        "objective",
        "slo",
        "thresholds",
        "tier_keys",
        "tiers",
        "window_seconds",
    )

    def __init__(self, slo: SLO, names: Sequence[str]) -> None:
        self.slo = slo
        self._names = names
        labels = slo_series_labels(slo)
        self.labels = _label_text(labels)
        info = {**labels, "objective": f"{slo.objective.normalize():f}", "window": _w(slo.window)}
        self.info = f"{names[_INFO]}{{{_label_text(info)}}} 1.0\n"
        self.objective = _text(names[_OBJECTIVE], self.labels, float(slo.objective_ratio))
        self.budget = _text(names[_BUDGET], self.labels, float(slo.error_budget))
        self.window_seconds = _text(names[_WINDOW_SECONDS], self.labels, slo.window.total_seconds())
        self.tiers: dict[_TierKey, str] = {}
        # The SLO keeps its tiers alive as long as this entry is kept, so their ids stay theirs.
        keys = {key: key for key in _thresholds(slo.tiers)}  # one tuple per key, shared by both dicts
        self.tier_keys = {id(tier): keys[_tier_key(tier)] for tier in slo.tiers}
        lines = []
        for key, threshold in _thresholds(slo.tiers).items():
            tier = dict(zip(("severity", "long_window", "short_window"), key, strict=True))
            self.tiers[key] = by_tier = _label_text({**labels, **tier})
            lines.append(_text(names[_THRESHOLD], by_tier, threshold))
        self.thresholds = "".join(lines)
        self._windows: dict[timedelta, str] = {}

    def window(self, window: timedelta) -> str:
        """The labels of this SLO's series for ``window``."""
        text = self._windows.get(window)
        if text is None:
            text = self._windows[window] = f'{self.labels},window="{escape_label_value(_w(window))}"'
        return text

    def verdict(self, current: Verdict) -> str:
        """The verdict family's lines when ``current`` is the verdict (not kept: 8 MB at 10,000 SLOs)."""
        name = self._names[_VERDICT]
        return "".join(
            f'{name}{{{self.labels},verdict="{verdict.value}"}} {"1.0" if current is verdict else "0.0"}\n'
            for verdict in Verdict
        )


def _label_text(labels: Mapping[str, str]) -> str:
    return ",".join(f'{name}="{escape_label_value(value)}"' for name, value in labels.items())


def _text(name: str, labels: str, value: float | None) -> str:
    """One line, or none when the value is unknown (None) or NaN, as ``_add`` decides."""
    if value is None or math.isnan(value):
        return ""
    return f"{name}{{{labels}}} {go_float(value)}\n"


def _line(column: list[str], name: str, labels: str, value: float | None) -> None:
    if (text := _text(name, labels, value)) != "":
        column.append(text)


def slo_series_labels(slo: SLO) -> dict[str, str]:
    """The labels on every series of ``slo``: service, slo, and its own labels where safe.

    Invalid label names are dropped (the native loader already rejects them; other readers may not).
    A name in ``RESERVED_LABELS`` becomes ``exported_<name>``, prefixed again while that is taken.
    """
    labels = {"service": slo.service, "slo": slo.name}
    own = {
        name: value
        for name, value in sorted(slo.labels.items())
        if _LABEL_NAME.match(name) and not name.startswith("__")
    }
    labels.update((name, value) for name, value in own.items() if name not in RESERVED_LABELS)
    for name, value in own.items():
        if name in RESERVED_LABELS:
            exported = _EXPORTED_PREFIX + name
            while exported in labels:
                exported = _EXPORTED_PREFIX + exported
            labels[exported] = value
    return labels


_TierKey = tuple[str, str, str]


def _tiers(
    declared: Sequence[BurnTier], states: Sequence[TierState]
) -> tuple[dict[_TierKey, float], dict[_TierKey, float]]:
    """Thresholds and firing (1/0) per (severity, long_window, short_window).

    Two declared tiers may share that key; one series each would be a duplicate, so the key keeps the
    lowest threshold (the one that fires first) and fires when any of its tiers does. A key whose tiers
    could not all be judged, and none fired, has no firing series.
    """
    return _thresholds(declared), _firing(states)


def _thresholds(declared: Sequence[BurnTier]) -> dict[_TierKey, float]:
    thresholds: dict[_TierKey, float] = {}
    for tier in declared:
        key = _tier_key(tier)
        thresholds[key] = min(tier.burn_rate, thresholds.get(key, math.inf))
    return thresholds


def _firing(states: Sequence[TierState], keys: Mapping[int, _TierKey] | None = None) -> dict[_TierKey, float]:
    """``keys``: the key of each declared tier by ``id()``, made once per SLO (``_KeptSLO``)."""
    grouped: dict[_TierKey, list[bool | None]] = {}
    for state in states:
        key = keys.get(id(state.tier)) if keys is not None else None
        grouped.setdefault(key or _tier_key(state.tier), []).append(state.firing)
    firing: dict[_TierKey, float] = {}
    for key, values in grouped.items():
        if any(values):
            firing[key] = 1.0
        elif all(value is False for value in values):
            firing[key] = 0.0
    return firing


def _tier_key(tier: BurnTier) -> _TierKey:
    return (tier.severity.value, _w(tier.long_window), _w(tier.short_window))


def _one_per_slo(evaluations: Sequence[Evaluation]) -> list[Evaluation]:
    """One evaluation per SLO id (the latest), sorted, so a confused view cannot emit duplicate series."""
    latest: dict[str, Evaluation] = {}
    for ev in evaluations:
        seen = latest.get(ev.slo.id)
        if seen is None or ev.at >= seen.at:
            latest[ev.slo.id] = ev
    return [latest[slo_id] for slo_id in sorted(latest)]


def _gauge(name: str, documentation: str, unit: str = "") -> GaugeMetricFamily:
    return GaugeMetricFamily(f"budgetguard_slo_{name}", documentation, unit=unit)


def _add(family: GaugeMetricFamily, labels: Mapping[str, str], value: float | None) -> None:
    """One sample, or none when the value is unknown (None) or not a number a panel can use (NaN)."""
    if value is None or math.isnan(value):
        return
    family.add_sample(family.name, dict(labels), value)


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def _w(window: timedelta) -> str:
    return format_duration(window)
