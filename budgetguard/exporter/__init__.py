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
loop's lag, the daemon's health) and is cheap to render on every scrape; the per-SLO state changes only
when a cycle ends, so the daemon renders it once per cycle, off the event loop
(``budgetguard.exporter.prepared``). ``render()`` renders both, as one exposition.
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
from budgetguard.exporter.encode import encode

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
        live: list[Collector] = [
            self._durations,
            self._source_errors,
            self._deliveries,
            self._incidents,
            self._loop_lag,
            self._lag_max,
            self._leader,
            self._leader_changes,
        ]
        self._state = _StateCollector(view, self._cycle_state, version, per_window)
        self._registry.register(self._state)
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

        Encoded by ``budgetguard.exporter.encode``, which parses to what ``render`` gives for it.
        """
        _, content_type = choose_encoder(accept or "")
        return encode(self._state.collect(), content_type.startswith("application/openmetrics")), content_type

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
    """Everything read at scrape time: per-SLO series from the view, cycle state, build info."""

    def __init__(
        self,
        view: MetricsView,
        cycle_state: Callable[[], tuple[float | None, int | None]],
        version: str,
        per_window: bool = True,
    ) -> None:
        self._view = view
        self._cycle_state = cycle_state
        self._build = {"version": version, "python_version": platform.python_version()}
        self._per_window = per_window

    def collect(self) -> Iterator[Metric]:
        families = _SLOFamilies(self._per_window)
        for evaluation in _one_per_slo(self._view.latest_evaluations()):
            families.add(evaluation)
        yield from families.non_empty()

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
        families: tuple[Metric, ...] = (
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
        return (family for family in families if family.samples)


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
    thresholds: dict[_TierKey, float] = {}
    for tier in declared:
        key = _tier_key(tier)
        thresholds[key] = min(tier.burn_rate, thresholds.get(key, math.inf))
    grouped: dict[_TierKey, list[bool | None]] = {}
    for state in states:
        grouped.setdefault(_tier_key(state.tier), []).append(state.firing)
    firing: dict[_TierKey, float] = {}
    for key, values in grouped.items():
        if any(values):
            firing[key] = 1.0
        elif all(value is False for value in values):
            firing[key] = 0.0
    return thresholds, firing


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
