"""The exporter: budgetguard's own metrics, read from the daemon's latest evaluations at scrape time.

Every test parses the real exposition (what Prometheus would scrape), never the registry's internals.
"""

from __future__ import annotations

import math
import platform
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from budgetguard import __version__
from budgetguard.core import policy
from budgetguard.core.durations import format_duration, parse_duration
from budgetguard.core.policy import Evaluation, Observation
from budgetguard.core.spec import SLO
from budgetguard.core.verdict import Verdict
from budgetguard.exporter import DURATION_BUCKETS, RESERVED_LABELS, SOURCE_ERROR_REASONS, Exporter
from tests.helpers import slo_from, slos_from

PROMTOOL = Path("/usr/bin/promtool")
AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
M, H, D = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
B = 0.001  # the error budget of a 99.9% SLO
CHECKOUT = {"service": "checkout", "slo": "availability"}
TIER_KEYS = [
    ("page", "1h", "5m"),
    ("page", "6h", "30m"),
    ("ticket", "1d", "2h"),
    ("ticket", "3d", "6h"),
]


@dataclass
class FakeView:
    """The daemon's side of the seam: whatever it holds now is what the next scrape shows."""

    evaluations: list[Evaluation] = field(default_factory=list)
    errors: int = 0

    def latest_evaluations(self) -> Sequence[Evaluation]:
        return self.evaluations

    def config_errors(self) -> int:
        return self.errors


def observe(
    slo: SLO,
    ratios: Mapping[timedelta, float | None],
    default: float | None = 0.0,
    events: Mapping[timedelta, float | None] | None = None,
) -> dict[timedelta, Observation]:
    """Every window of ``slo``: its ratio (default otherwise) and, unless given, window-seconds events."""
    out = {}
    for window in slo.windows():
        ratio = ratios.get(window, default)
        count = events.get(window, 1e6) if events is not None else window.total_seconds()
        out[window] = Observation(window, ratio, count, None if ratio is not None else "no traffic")
    return out


def burning(slo: SLO | None = None, at: datetime = AT) -> Evaluation:
    """20x over 1h and 5m fires the fast page tier; 0.5x everywhere else, so half the budget is left."""
    slo = slo or slo_from()
    return policy.evaluate(slo, observe(slo, {H: 20 * B, 5 * M: 20 * B}, default=0.5 * B), at)


def exporter_over(*evaluations: Evaluation, errors: int = 0) -> Exporter:
    return Exporter(FakeView(list(evaluations), errors), version=__version__)


def scrape(exporter: Exporter) -> list[Sample]:
    body, content_type = exporter.render()
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    return [s for family in text_string_to_metric_families(body.decode()) for s in family.samples]


def samples_named(samples: Sequence[Sample], name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {frozenset(s.labels.items()): s.value for s in samples if s.name == name}


def value(samples: Sequence[Sample], name: str, **labels: str) -> float | None:
    """The value of the one series with exactly these labels, or None when there is none."""
    return samples_named(samples, name).get(frozenset(labels.items()))


def by_label(samples: Sequence[Sample], name: str, label: str, **base: str) -> dict[str, float]:
    """{value of ``label``: sample value} over the series whose other labels are exactly ``base``."""
    out = {}
    for s in samples:
        if s.name == name and {k: v for k, v in s.labels.items() if k != label} == base:
            out[s.labels[label]] = s.value
    return out


# --- every per-SLO metric -------------------------------------------------------------------------


def test_a_burning_slo_exports_every_metric_with_its_values_and_labels() -> None:
    ev = burning()
    assert ev.verdict is Verdict.BURNING
    samples = scrape(exporter_over(ev))

    assert value(samples, "budgetguard_slo_objective_ratio", **CHECKOUT) == 0.999
    assert value(samples, "budgetguard_slo_error_budget_ratio", **CHECKOUT) == 0.001
    assert value(samples, "budgetguard_slo_window_seconds", **CHECKOUT) == 30 * 86_400
    assert value(samples, "budgetguard_slo_error_budget_remaining_ratio", **CHECKOUT) == pytest.approx(0.5)
    # remaining 0.5 of a 30d budget at the 1h window's 20x: 0.5 * 30d / 20 = 18h
    assert value(samples, "budgetguard_slo_time_to_exhaustion_seconds", **CHECKOUT) == pytest.approx(
        18 * 3600
    )
    assert value(samples, "budgetguard_slo_last_evaluation_timestamp_seconds", **CHECKOUT) == AT.timestamp()

    windows = ["5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"]
    burn = by_label(samples, "budgetguard_slo_burn_rate", "window", **CHECKOUT)
    assert burn == pytest.approx({w: 20.0 if w in ("5m", "1h") else 0.5 for w in windows})
    ratio = by_label(samples, "budgetguard_slo_error_ratio", "window", **CHECKOUT)
    assert ratio == pytest.approx({w: 20 * B if w in ("5m", "1h") else 0.5 * B for w in windows})
    events = by_label(samples, "budgetguard_slo_window_events", "window", **CHECKOUT)
    assert events == {w: parse_duration(w).total_seconds() for w in windows}  # fixture: events = seconds

    tiers = {
        key: dict(CHECKOUT, severity=key[0], long_window=key[1], short_window=key[2]) for key in TIER_KEYS
    }
    thresholds = {
        key: value(samples, "budgetguard_slo_tier_burn_rate_threshold", **tiers[key]) for key in tiers
    }
    assert thresholds == pytest.approx(
        {TIER_KEYS[0]: 14.4, TIER_KEYS[1]: 6.0, TIER_KEYS[2]: 3.0, TIER_KEYS[3]: 1.0}
    )
    firing = {key: value(samples, "budgetguard_slo_tier_firing", **tiers[key]) for key in tiers}
    assert firing == {TIER_KEYS[0]: 1.0, TIER_KEYS[1]: 0.0, TIER_KEYS[2]: 0.0, TIER_KEYS[3]: 0.0}

    assert samples_named(samples, "budgetguard_slo_info") == {
        frozenset({**CHECKOUT, "objective": "99.9", "window": "30d"}.items()): 1.0
    }


def test_exported_values_are_the_evaluations_own_numbers_unrounded() -> None:
    ev = burning()
    samples = scrape(exporter_over(ev))
    assert value(samples, "budgetguard_slo_error_budget_remaining_ratio", **CHECKOUT) == ev.budget_remaining
    assert ev.time_to_exhaustion is not None
    assert (
        value(samples, "budgetguard_slo_time_to_exhaustion_seconds", **CHECKOUT)
        == ev.time_to_exhaustion.total_seconds()
    )
    for stat in ev.windows:
        window = format_duration(stat.window)
        assert value(samples, "budgetguard_slo_burn_rate", **CHECKOUT, window=window) == stat.burn_rate
        assert value(samples, "budgetguard_slo_error_ratio", **CHECKOUT, window=window) == stat.error_ratio


def test_the_info_metric_gives_the_objective_in_percent_as_declared_and_the_window() -> None:
    (slo,) = slos_from(
        """
        version: budgetguard/v1
        service: search
        slos:
          - name: latency
            objective: 99.50
            window: 7d
            sli:
              raw:
                error_ratio_query: sum(rate(errors[{{.window}}])) / sum(rate(requests[{{.window}}]))
        """
    )
    samples = scrape(exporter_over(policy.failed(slo, AT, "down", "unavailable")))
    labels = {"service": "search", "slo": "latency"}
    assert samples_named(samples, "budgetguard_slo_info") == {
        frozenset({**labels, "objective": "99.5", "window": "7d"}.items()): 1.0
    }
    assert value(samples, "budgetguard_slo_objective_ratio", **labels) == 0.995
    assert value(samples, "budgetguard_slo_error_budget_ratio", **labels) == pytest.approx(0.005)
    assert value(samples, "budgetguard_slo_window_seconds", **labels) == 7 * 86_400


# --- unknown values -------------------------------------------------------------------------------


def test_unknown_values_produce_no_series_rather_than_nan_or_minus_one() -> None:
    slo = slo_from()
    # no traffic over 30d and 6h; the 5m window has a ratio but an unknown event count
    ev = policy.evaluate(slo, observe(slo, {30 * D: None, 6 * H: None}, events={5 * M: None}), AT)
    assert ev.budget_remaining is None and ev.time_to_exhaustion is None
    samples = scrape(exporter_over(ev))

    assert value(samples, "budgetguard_slo_error_budget_remaining_ratio", **CHECKOUT) is None
    assert value(samples, "budgetguard_slo_time_to_exhaustion_seconds", **CHECKOUT) is None
    assert "30d" not in by_label(samples, "budgetguard_slo_burn_rate", "window", **CHECKOUT)
    assert "30d" not in by_label(samples, "budgetguard_slo_error_ratio", "window", **CHECKOUT)
    assert "6h" not in by_label(samples, "budgetguard_slo_burn_rate", "window", **CHECKOUT)
    assert "5m" in by_label(samples, "budgetguard_slo_burn_rate", "window", **CHECKOUT)
    assert "5m" not in by_label(samples, "budgetguard_slo_window_events", "window", **CHECKOUT)
    # the tiers that need 6h cannot be judged: no firing series; their thresholds are still declared
    firing = {
        (s.labels["long_window"], s.labels["short_window"])
        for s in samples
        if s.name == "budgetguard_slo_tier_firing"
    }
    assert firing == {("1h", "5m"), ("1d", "2h")}
    assert len(samples_named(samples, "budgetguard_slo_tier_burn_rate_threshold")) == 4
    assert not any(math.isnan(s.value) or s.value == -1 for s in samples)


def test_a_failed_evaluation_exports_its_declaration_and_verdict_but_no_measurements() -> None:
    samples = scrape(exporter_over(policy.failed(slo_from(), AT, "source error (timeout): slow", "timeout")))
    for name in (
        "budgetguard_slo_error_budget_remaining_ratio",
        "budgetguard_slo_burn_rate",
        "budgetguard_slo_error_ratio",
        "budgetguard_slo_window_events",
        "budgetguard_slo_time_to_exhaustion_seconds",
        "budgetguard_slo_tier_firing",
    ):
        assert samples_named(samples, name) == {}, name
    for name in (
        "budgetguard_slo_objective_ratio",
        "budgetguard_slo_error_budget_ratio",
        "budgetguard_slo_window_seconds",
        "budgetguard_slo_last_evaluation_timestamp_seconds",
    ):
        assert value(samples, name, **CHECKOUT) is not None, name
    assert len(samples_named(samples, "budgetguard_slo_tier_burn_rate_threshold")) == 4
    assert by_label(samples, "budgetguard_slo_verdict", "verdict", **CHECKOUT)["error"] == 1.0


# --- verdict --------------------------------------------------------------------------------------


def _verdict_case(name: str) -> Evaluation:
    slo = slo_from()
    if name == "healthy":
        return policy.evaluate(slo, observe(slo, {}), AT)
    if name == "warning":
        return policy.evaluate(slo, observe(slo, {3 * D: 1.5 * B, 6 * H: 1.5 * B}), AT)
    if name == "burning":
        return burning(slo)
    if name == "inconclusive":
        return policy.evaluate(slo, observe(slo, {}), AT, warnings=["partial response"])
    return policy.failed(slo, AT, "source error (unavailable): down", "unavailable")


@pytest.mark.parametrize(
    "verdict", list(Verdict), ids=lambda v: f"a {v} SLO has verdict={v} at 1, the rest at 0"
)
def test_the_verdict_is_one_hot_over_the_closed_set(verdict: Verdict) -> None:
    ev = _verdict_case(verdict.value)
    assert ev.verdict is verdict
    samples = scrape(exporter_over(ev))
    assert by_label(samples, "budgetguard_slo_verdict", "verdict", **CHECKOUT) == {
        v.value: 1.0 if v is verdict else 0.0 for v in Verdict
    }


# --- labels ---------------------------------------------------------------------------------------

_OWN_LABELS = {
    "budgetguard_slo_burn_rate": {"window"},
    "budgetguard_slo_error_ratio": {"window"},
    "budgetguard_slo_window_events": {"window"},
    "budgetguard_slo_verdict": {"verdict"},
    "budgetguard_slo_tier_burn_rate_threshold": {"severity", "long_window", "short_window"},
    "budgetguard_slo_tier_firing": {"severity", "long_window", "short_window"},
    "budgetguard_slo_info": {"objective", "window"},
}


@pytest.mark.parametrize(
    ("slo_labels", "exported"),
    [
        pytest.param({"team": "payments"}, {"team": "payments"}, id="a plain label is copied as it is"),
        pytest.param({"slo": "x"}, {"exported_slo": "x"}, id="slo collides and becomes exported_slo"),
        pytest.param(
            {"job": "j", "instance": "i"},
            {"exported_job": "j", "exported_instance": "i"},
            id="job and instance, which Prometheus sets at scrape time, become exported_",
        ),
        pytest.param(
            {"window": "w", "severity": "s", "verdict": "v", "objective": "o"},
            {
                "exported_window": "w",
                "exported_severity": "s",
                "exported_verdict": "v",
                "exported_objective": "o",
            },
            id="labels the exporter sets on some series collide on every series",
        ),
        pytest.param(
            {"le": "1", "quantile": "0.5", "reason": "r", "version": "2"},
            {"exported_le": "1", "exported_quantile": "0.5", "exported_reason": "r", "exported_version": "2"},
            id="le, quantile, reason and version collide",
        ),
        pytest.param(
            {"slo": "x", "exported_slo": "y"},
            {"exported_slo": "y", "exported_exported_slo": "x"},
            id="an exported_ name that is taken is prefixed again",
        ),
        pytest.param(
            {"bad-name": "x", "__private": "y", "1st": "z", "ok": "1"},
            {"ok": "1"},
            id="invalid label names from other readers are dropped",
        ),
    ],
)
def test_slo_labels_are_copied_where_safe_and_colliding_ones_become_exported(
    slo_labels: dict[str, str], exported: dict[str, str]
) -> None:
    slo = slo_from().model_copy(update={"labels": slo_labels})
    samples = scrape(exporter_over(burning(slo)))
    per_slo = [
        s
        for s in samples
        if s.name.startswith("budgetguard_slo_") and s.name != "budgetguard_slo_config_errors"
    ]
    assert {s.name for s in per_slo} >= set(_OWN_LABELS)
    for s in per_slo:
        own = _OWN_LABELS.get(s.name, set())
        rest = {k: v for k, v in s.labels.items() if k not in own}
        assert rest == {**CHECKOUT, **exported}, s.name


def test_labels_declared_in_the_file_reach_every_series_of_the_slo() -> None:
    (slo,) = slos_from(
        """
        version: budgetguard/v1
        service: checkout
        labels: {team: payments, job: checkout-api}
        slos:
          - name: availability
            objective: 99.9
            labels: {tier: "1"}
            sli:
              events:
                error_query: sum(rate(http_requests_total{code=~"5.."}[{{.window}}]))
                total_query: sum(rate(http_requests_total[{{.window}}]))
        """
    )
    samples = scrape(exporter_over(burning(slo)))
    expected = {**CHECKOUT, "team": "payments", "tier": "1", "exported_job": "checkout-api"}
    assert value(samples, "budgetguard_slo_objective_ratio", **expected) == 0.999
    assert value(samples, "budgetguard_slo_burn_rate", **expected, window="1h") == pytest.approx(20.0)


def test_the_reserved_labels_include_every_label_the_exporter_sets_on_slo_series() -> None:
    assert set().union(*_OWN_LABELS.values()) | {"service", "slo"} <= RESERVED_LABELS
    assert {"job", "instance", "le", "quantile", "reason", "version"} <= RESERVED_LABELS


# --- scrape-time computation ----------------------------------------------------------------------


def test_series_follow_the_view_at_scrape_time() -> None:
    view = FakeView([burning()])
    exporter = Exporter(view, version=__version__)
    assert value(scrape(exporter), "budgetguard_slo_objective_ratio", **CHECKOUT) == 0.999

    slo = slo_from()
    view.evaluations = [policy.evaluate(slo, observe(slo, {}), AT + M)]
    samples = scrape(exporter)
    assert by_label(samples, "budgetguard_slo_verdict", "verdict", **CHECKOUT)["healthy"] == 1.0
    assert (
        value(samples, "budgetguard_slo_last_evaluation_timestamp_seconds", **CHECKOUT)
        == (AT + M).timestamp()
    )

    view.evaluations = []  # the SLO was removed by a reload: its series go with it
    assert not [s for s in scrape(exporter) if s.labels.get("slo") == "availability"]


def test_a_view_that_repeats_an_slo_exports_only_its_latest_evaluation() -> None:
    slo = slo_from()
    older, newer = burning(slo, AT), policy.evaluate(slo, observe(slo, {}), AT + M)
    samples = scrape(exporter_over(newer, older))
    assert samples_named(samples, "budgetguard_slo_last_evaluation_timestamp_seconds") == {
        frozenset(CHECKOUT.items()): (AT + M).timestamp()
    }
    assert by_label(samples, "budgetguard_slo_verdict", "verdict", **CHECKOUT)["healthy"] == 1.0


def test_tiers_sharing_severity_and_windows_export_one_series_with_the_lowest_threshold() -> None:
    (slo,) = slos_from(
        """
        version: budgetguard/v1
        service: checkout
        slos:
          - name: availability
            objective: 99.9
            tiers:
              - {severity: page, long_window: 1h, short_window: 5m, burn_rate: 14.4}
              - {severity: page, long_window: 1h, short_window: 5m, burn_rate: 10}
            sli:
              raw:
                error_ratio_query: sum(rate(errors[{{.window}}])) / sum(rate(requests[{{.window}}]))
        """
    )
    ev = policy.evaluate(slo, observe(slo, {H: 12 * B, 5 * M: 12 * B}), AT)  # fires only the 10x tier
    samples = scrape(exporter_over(ev))
    tier = {**CHECKOUT, "severity": "page", "long_window": "1h", "short_window": "5m"}
    assert samples_named(samples, "budgetguard_slo_tier_burn_rate_threshold") == {
        frozenset(tier.items()): 10.0
    }
    assert samples_named(samples, "budgetguard_slo_tier_firing") == {frozenset(tier.items()): 1.0}


# --- global metrics -------------------------------------------------------------------------------


def test_source_error_reasons_are_precreated_at_zero_and_bounded() -> None:
    exporter = exporter_over()
    assert by_label(scrape(exporter), "budgetguard_source_errors_total", "reason") == dict.fromkeys(
        SOURCE_ERROR_REASONS, 0.0
    )

    exporter.count_source_error("timeout")
    exporter.count_source_error("timeout")
    exporter.count_source_error("query_shape")
    for invented in ("boom", "", "Timeout", "timeout\n", "connection refused by 10.0.0.1"):
        exporter.count_source_error(invented)
    counts = by_label(scrape(exporter), "budgetguard_source_errors_total", "reason")
    assert set(counts) == set(SOURCE_ERROR_REASONS)
    assert counts == {
        **dict.fromkeys(SOURCE_ERROR_REASONS, 0.0),
        "timeout": 2.0,
        "query_shape": 1.0,
        "other": 5.0,
    }


def test_every_error_kind_the_engine_produces_has_its_own_reason() -> None:
    kinds = {
        "unavailable",
        "timeout",
        "auth",
        "bad_query",
        "protocol",
        "source_error",
        "query_shape",
        "internal",
    }
    assert set(SOURCE_ERROR_REASONS) == kinds | {"other"}


def test_the_histogram_counts_cycles_and_the_cycle_gauges_follow_the_last_one() -> None:
    times = iter([1_800_000_000.0, 1_800_000_030.0, 1_800_000_060.5])
    exporter = Exporter(FakeView(), version=__version__, clock=lambda: next(times))
    before = scrape(exporter)
    assert value(before, "budgetguard_evaluation_duration_seconds_count") == 0
    assert value(before, "budgetguard_last_evaluation_timestamp_seconds") is None  # no cycle yet: unknown
    assert value(before, "budgetguard_slos") is None

    exporter.observe_cycle(0.02, 3)
    exporter.observe_cycle(0.3, 3)
    exporter.observe_cycle(45.0, 2)
    samples = scrape(exporter)
    assert value(samples, "budgetguard_evaluation_duration_seconds_count") == 3
    assert value(samples, "budgetguard_evaluation_duration_seconds_sum") == pytest.approx(45.32)
    buckets = by_label(samples, "budgetguard_evaluation_duration_seconds_bucket", "le")
    assert buckets["0.01"] == 0
    assert buckets["0.025"] == 1
    assert buckets["0.5"] == 2
    assert buckets["30.0"] == 2
    assert buckets["45.0"] == 3
    assert buckets["+Inf"] == 3
    assert value(samples, "budgetguard_last_evaluation_timestamp_seconds") == 1_800_000_060.5
    assert value(samples, "budgetguard_slos") == 2


def test_the_buckets_span_fast_cycles_to_ones_that_overrun_the_interval() -> None:
    assert DURATION_BUCKETS[0] <= 0.01
    assert DURATION_BUCKETS[-1] >= 60
    assert 30.0 in DURATION_BUCKETS  # the default interval: did a cycle overrun it?
    assert list(DURATION_BUCKETS) == sorted(set(DURATION_BUCKETS))


@pytest.mark.parametrize(
    ("duration", "count"),
    [
        pytest.param(-1.0, 1, id="a negative duration is refused"),
        pytest.param(math.nan, 1, id="a NaN duration is refused: it would poison the sum for good"),
        pytest.param(math.inf, 1, id="an infinite duration is refused"),
        pytest.param(1.0, -1, id="a negative SLO count is refused"),
    ],
)
def test_a_nonsense_cycle_is_refused_and_recorded_nowhere(duration: float, count: int) -> None:
    exporter = exporter_over()
    with pytest.raises(ValueError):
        exporter.observe_cycle(duration, count)
    samples = scrape(exporter)
    assert value(samples, "budgetguard_evaluation_duration_seconds_count") == 0
    assert value(samples, "budgetguard_slos") is None


def test_config_errors_are_read_from_the_view_at_scrape_time() -> None:
    view = FakeView()
    exporter = Exporter(view, version=__version__)
    assert value(scrape(exporter), "budgetguard_slo_config_errors") == 0
    view.errors = 3
    assert value(scrape(exporter), "budgetguard_slo_config_errors") == 3


def test_build_info_carries_the_version_and_python_version() -> None:
    samples = scrape(Exporter(FakeView(), version="1.2.3"))
    assert samples_named(samples, "budgetguard_build_info") == {
        frozenset({"version": "1.2.3", "python_version": platform.python_version()}.items()): 1.0
    }


# --- exposition -----------------------------------------------------------------------------------


def _busy_exporter() -> Exporter:
    """Every kind of series at once: several SLOs, all verdicts, collisions, cycles and errors."""
    slos = slos_from(
        """
        version: budgetguard/v1
        service: search
        labels: {team: discovery, job: search-api, slo: shadowed}
        slos:
          - name: latency
            objective: 99
            window: 7d
            sli:
              latency: {metric: http_request_duration_seconds, selector: 'job="search"', threshold_seconds: 0.3}
          - name: availability.v2
            objective: 99.95
            sli:
              raw:
                error_ratio_query: sum(rate(errors[{{.window}}])) / sum(rate(requests[{{.window}}]))
        """
    )
    evaluations = [
        burning(),
        policy.evaluate(slos[0], observe(slos[0], {D: None}), AT),  # inconclusive, some series absent
        policy.failed(slos[1], AT, "source error (auth): 401", "auth"),
    ]
    exporter = exporter_over(*evaluations, errors=2)
    exporter.observe_cycle(0.42, 3)
    exporter.count_source_error("auth")
    exporter.observe_loop_lag(0.003)
    return exporter


@pytest.mark.e2e  # runs promtool or starts a real Prometheus/VictoriaMetrics
def test_promtool_check_metrics_passes_on_the_real_exposition() -> None:
    assert PROMTOOL.exists(), "promtool is missing: apt-get install prometheus (tests never skip)"
    body, _ = _busy_exporter().render()
    result = subprocess.run(
        [str(PROMTOOL), "check", "metrics"], input=body, capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout == b"" and result.stderr == b"", result.stdout.decode() + result.stderr.decode()


@pytest.mark.parametrize(
    "accept",
    [None, "", "text/plain", "*/*", "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"],
    ids=lambda a: f"Accept {a!r} gets text format 0.0.4",
)
def test_text_format_is_the_default(accept: str | None) -> None:
    body, content_type = _busy_exporter().render(accept)
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert b"budgetguard_slo_verdict{" in body


def test_openmetrics_when_the_scraper_asks_for_it() -> None:
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    body, content_type = _busy_exporter().render(accept)
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith(b"# EOF\n")
    families = {f.name: f for f in parse_openmetrics(body.decode())}
    assert families["budgetguard_slo"].type == "info"
    assert families["budgetguard_build"].type == "info"
    assert families["budgetguard_source_errors"].type == "counter"
    assert families["budgetguard_evaluation_duration_seconds"].type == "histogram"
    assert families["budgetguard_slo_window_seconds"].unit == "seconds"
    assert families["budgetguard_slo_error_budget_remaining_ratio"].unit == "ratio"


# --- registry -------------------------------------------------------------------------------------


def test_each_exporter_has_its_own_registry_and_the_global_one_stays_untouched() -> None:
    first, second = exporter_over(burning()), exporter_over()
    assert first.registry is not REGISTRY
    assert first.registry is not second.registry
    first.observe_cycle(1.0, 1)
    first.count_source_error("timeout")
    assert value(scrape(second), "budgetguard_evaluation_duration_seconds_count") == 0
    assert value(scrape(second), "budgetguard_source_errors_total", reason="timeout") == 0
    assert value(scrape(first), "budgetguard_source_errors_total", reason="timeout") == 1
    assert not [m for m in REGISTRY.collect() if m.name.startswith("budgetguard")]


def test_leadership_is_a_gauge_and_each_change_is_counted_once() -> None:
    exporter = exporter_over()
    assert value(scrape(exporter), "budgetguard_leader") == 0.0, "a replica follows until it leads"

    exporter.set_leader(True)
    exporter.set_leader(True)  # renewed: no change
    assert value(scrape(exporter), "budgetguard_leader") == 1.0
    exporter.set_leader(False)

    samples = scrape(exporter)
    assert value(samples, "budgetguard_leader") == 0.0
    assert by_label(samples, "budgetguard_leader_changes_total", "change") == {"gained": 1.0, "lost": 1.0}
