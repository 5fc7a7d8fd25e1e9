"""Other tools' SLO files: OpenSLO v1, Sloth's Kubernetes CRD and Pyrra, loaded beside native files.

Each format is held to the native rules: what it says that budgetguard can honour becomes the native SLO
a person would write (checked field by field, by `budgetguard convert` round trips, and by evaluating
both against a real Prometheus); what it cannot is refused with file, line, field and fix.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from budgetguard.cli import main
from budgetguard.core.durations import parse_duration
from budgetguard.core.formats.pyrra import pyrra_tiers
from budgetguard.core.spec import SLO, Severity
from budgetguard.loader import load_paths, load_text
from lab.history import align_end
from lab.openmetrics import LogNormalLatency, Series, counters_from_increments, gauge, histogram_from_steps
from tests.conftest import LabFactory

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "formats"
OPENSLO = FIXTURES / "openslo"
SLOTH = FIXTURES / "sloth" / "search.yaml"
PYRRA = FIXTURES / "pyrra" / "shop.yaml"
# The repository's example files written as budgetguard/v1 (slos/ also holds a Sloth prometheus/v1 one).
NATIVE_FILES = sorted(p for p in (REPO / "slos").glob("*.yaml") if "version: budgetguard/v1" in p.read_text())


def loaded(*paths: Path | str) -> dict[str, SLO]:
    result = load_paths(paths)
    assert result.ok, [str(p) for p in result.problems]
    return {slo.id: slo for slo in result.slos}


def same_slo(slo: SLO) -> dict[str, Any]:
    """An SLO as data, without the file it came from."""
    return slo.model_dump(exclude={"source"})


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


# --- what loads, and as what ----------------------------------------------------------------------


def test_every_format_loads_beside_native_files_with_no_flag() -> None:
    slos = loaded(FIXTURES, REPO / "slos")
    assert set(slos) == {
        "checkout/availability",  # OpenSLO
        "checkout/latency",
        "search-api/requests-availability",  # Sloth CRD
        "search-api/requests-unavailable",
        "shop/checkout-errors",  # Pyrra
        "checkout/checkout-latency",
        "shop/checkout-probe",
        "checkout/requests-availability",  # native
        "checkout/requests-latency",
        "checkout/canary-availability",  # native, the article's latency and budget-consumption rules
        "product-page/availability",  # native, a canary guard with affected_by
        "checkout/shadow-correctness",  # native, a shadow (dark launch) guard
        "search/requests-availability",  # Sloth's prometheus/v1
        "search/requests-not-found",
    }


def test_openslo_slo_with_referenced_sli_and_policies_maps_to_native_fields() -> None:
    slo = loaded(OPENSLO)["checkout/availability"]
    assert slo.objective == Decimal("99.9") and slo.window == timedelta(days=28)
    assert slo.description == "Checkout requests answered without a server error"
    assert slo.labels == {"team": "payments", "tier": "critical,customer-facing"}  # a list is joined
    assert slo.sli.events is not None
    assert (
        slo.sli.events.error_query
        == 'sum(rate(http_requests_total{job="checkout",code=~"5.."}[{{.window}}]))'
    )
    assert slo.sli.events.total_query == 'sum(rate(http_requests_total{job="checkout"}[{{.window}}]))'
    # one tier per policy: threshold -> burn rate, lookbackWindow -> long window, long/12 -> short
    assert [(t.severity, t.long_window, t.short_window, t.burn_rate) for t in slo.tiers] == [
        (Severity.PAGE, timedelta(hours=1), timedelta(minutes=5), 14.4),
        (Severity.TICKET, timedelta(days=1), timedelta(hours=2), 3.0),  # severity "warning"
    ]


def test_openslo_inline_good_total_sli_and_inline_policy_with_a_short_window_annotation() -> None:
    slo = loaded(OPENSLO)["checkout/latency"]
    assert slo.objective == Decimal(99) and slo.window == timedelta(days=7)
    assert slo.sli.events is not None
    total = 'sum(rate(http_request_duration_seconds_count{job="checkout"}[{{.window}}]))'
    good = 'sum(rate(http_request_duration_seconds_bucket{job="checkout",le="0.5"}[{{.window}}]))'
    assert slo.sli.events.total_query == total
    # bad = total - good, and no good series at all (everything slow) means zero good
    assert slo.sli.events.error_query == f"({total}) - (({good}) or vector(0))"
    assert [(t.severity, t.long_window, t.short_window, t.burn_rate) for t in slo.tiers] == [
        (Severity.TICKET, timedelta(hours=12), timedelta(hours=1), 3.0)
    ]


def test_openslo_references_resolve_across_files_in_any_order_but_not_from_one_file_alone() -> None:
    forward = loaded(OPENSLO / "alerting.yaml", OPENSLO / "slis.yaml", OPENSLO / "checkout.yaml")
    assert same_slo(forward["checkout/availability"]) == same_slo(loaded(OPENSLO)["checkout/availability"])

    result = load_paths([OPENSLO / "checkout.yaml"])
    messages = [p.message for p in result.problems]
    assert any("no OpenSLO SLI named 'checkout-server-errors'" in m for m in messages), messages
    assert any("no OpenSLO AlertNotificationTarget named 'checkout-oncall'" in m for m in messages), messages
    slos, problems = load_text((OPENSLO / "checkout.yaml").read_text(), "checkout.yaml")
    assert [s.id for s in slos] == []  # the latency SLO's policy names a target declared elsewhere too
    assert problems


def test_openslo_references_resolve_within_one_multi_document_text() -> None:
    slos, problems = load_text(OPENSLO_BASE, "api.yaml")
    assert not problems, [str(p) for p in problems]
    (slo,) = slos
    assert slo.id == "api/availability" and slo.objective == Decimal("99.5")
    assert [(t.long_window, t.short_window, t.burn_rate) for t in slo.tiers] == [
        (timedelta(hours=1), timedelta(minutes=5), 14.0)
    ]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            "target: 0.995", "targetPercent: 99.5", Decimal("99.5"), id="targetPercent is the objective"
        ),
        pytest.param("target: 0.995", "target: 0.9999", Decimal("99.99"), id="target is a ratio, exactly"),
        pytest.param(
            "  timeWindow:\n    - duration: 28d\n      isRolling: true\n", "", None, id="no window is 30d"
        ),
    ],
)
def test_openslo_objectives_and_windows(old: str, new: str, expected: Decimal | None) -> None:
    (slo,), _ = load_text(OPENSLO_BASE.replace(old, new), "api.yaml")
    if expected is None:
        assert slo.window == timedelta(days=30)
    else:
        assert slo.objective == expected and str(slo.objective) == str(expected)


@pytest.mark.parametrize(
    ("window", "calendar", "timezone"),
    [
        pytest.param(
            "    - duration: 1M\n      isRolling: false\n      calendar:\n"
            "        startTime: 2026-01-01 00:00:00\n        timeZone: Europe/Berlin",
            "month",
            "Europe/Berlin",
            id="a calendar month anchored at a local midnight on the 1st is a calendar month",
        ),
        pytest.param(
            "    - duration: 1w\n      isRolling: false\n      calendar:\n"
            '        startTime: "2026-11-02 00:00:00"\n        timeZone: America/New_York',
            "week",
            "America/New_York",
            id="a week anchored on a Monday's midnight is a calendar week",
        ),
        pytest.param(
            "    - duration: 1Q\n      isRolling: false\n      calendar: {startTime: '2026-04-01 00:00:00'}",
            "quarter",
            "UTC",
            id="a quarter without a time zone is a UTC quarter",
        ),
    ],
)
def test_openslo_calendar_windows_read_into_native_calendar_windows(
    window: str, calendar: str, timezone: str
) -> None:
    (slo,), problems = load_text(
        OPENSLO_BASE.replace("    - duration: 28d\n      isRolling: true", window), "api.yaml"
    )
    assert not problems, [str(p) for p in problems]
    assert slo.calendar is not None
    assert (str(slo.calendar.calendar), slo.calendar.timezone) == (calendar, timezone)
    assert (
        slo.window
        == {"week": timedelta(days=7), "month": timedelta(days=30), "quarter": timedelta(days=90)}[calendar]
    )


def test_openslo_raw_ratio_with_the_placeholder_is_a_raw_sli() -> None:
    text = OPENSLO_BASE.replace(OPENSLO_RATIO, OPENSLO_RAW_SUCCESS)
    (slo,), problems = load_text(text, "api.yaml")
    assert not problems
    assert slo.sli.raw is not None
    assert slo.sli.raw.error_ratio_query == '1 - (avg_over_time(slo:success:ratio{job="api"}[{{.window}}]))'


def test_a_sloth_crd_is_the_sloth_cli_file_renamed() -> None:
    crd = loaded(SLOTH)
    cli, problems = load_text(SLOTH_CLI_EQUIVALENT, "search.sloth.yaml")
    assert not problems, [str(p) for p in problems]
    assert [same_slo(s) for s in crd.values()] == [same_slo(s) for s in cli]
    availability = crd["search-api/requests-availability"]
    assert availability.window == timedelta(days=30)  # Sloth's default period, as for its CLI format
    assert availability.labels == {"owner": "discovery-team", "category": "availability"}
    assert availability.alerting is not None
    assert availability.alerting.page_alert.labels == {"severity": "pageteam", "routing_key": "discovery"}


def test_pyrra_objectives_take_their_id_labels_target_window_and_tiers_from_the_object() -> None:
    slos = loaded(PYRRA)
    errors = slos["shop/checkout-errors"]  # service: the namespace
    assert errors.labels == {"team": "payments"}  # pyrra.dev/ labels, prefix stripped; others not read
    assert errors.objective == Decimal("99.5") and errors.window == timedelta(days=28)
    assert errors.sli.events is not None
    assert (
        errors.sli.events.error_query
        == 'sum(rate(http_requests_total{job="checkout",code=~"5.."}[{{.window}}]))'
    )
    assert [(t.severity, t.burn_rate) for t in errors.tiers] == [
        (Severity.PAGE, 14.0),
        (Severity.PAGE, 7.0),
        (Severity.TICKET, 2.0),
        (Severity.TICKET, 1.0),
    ]
    latency = slos["checkout/checkout-latency"]  # service: the pyrra.dev/service label
    assert latency.sli.latency is not None
    assert latency.sli.latency.model_dump() == {
        "metric": "http_request_duration_seconds",
        "selector": 'job="checkout"',
        "threshold_seconds": 0.5,
    }
    assert latency.alerting is not None and latency.alerting.name == "CheckoutSlow"
    assert latency.alerting.page_alert.labels == {"severity": "critical"}
    probe = slos["shop/checkout-probe"]
    assert probe.sli.raw is not None and "count_over_time(probe_success{" in probe.sli.raw.error_ratio_query


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        # slo/rules.go Windows(), and the values the reference computed for it
        ("28d", [("1h", "5m"), ("6h", "30m"), ("1d", "2h"), ("4d", "6h")]),
        ("2w", [("30m", "3m"), ("3h", "15m"), ("12h", "1h"), ("2d", "3h")]),
        ("7d", [("15m", "1m"), ("1h30m", "8m"), ("6h", "30m"), ("1d", "1h30m")]),
        ("30d", [("1h4m", "5m"), ("6h26m", "32m"), ("1d1h43m", "2h9m"), ("4d6h51m", "6h26m")]),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_pyrra_tiers_scale_with_the_window_and_round_to_the_minute_as_go_does(
    window: str, expected: list[tuple[str, str]]
) -> None:
    tiers = pyrra_tiers(parse_duration(window))
    assert [(t["long_window"], t["short_window"]) for t in tiers] == expected


def test_pyrra_latency_over_two_different_metrics_counts_total_minus_success() -> None:
    text = PYRRA_BASE.replace(
        PYRRA_RATIO,
        """\
    latency:
      success:
        metric: grpc_server_handling_seconds_bucket{job="api",le="0.25"}
      total:
        metric: grpc_server_handled_total{job="api"}
""",
    )
    (slo,), problems = load_text(text, "api.yaml")
    assert not problems
    assert slo.sli.events is not None
    assert slo.sli.events.error_query == (
        '(sum(rate(grpc_server_handled_total{job="api"}[{{.window}}]))) - '
        '((sum(rate(grpc_server_handling_seconds_bucket{job="api", le="0.25"}[{{.window}}]))) or vector(0))'
    )


def test_pyrra_native_histogram_latency_is_pyrras_histogram_fraction() -> None:
    text = PYRRA_BASE.replace(
        PYRRA_RATIO,
        '    latencyNative:\n      latency: 250ms\n      total:\n        metric: http_request_duration_seconds{job="api"}\n',
    )
    (slo,), problems = load_text(text, "api.yaml")
    assert not problems
    assert slo.sli.raw is not None
    assert slo.sli.raw.error_ratio_query == (
        '1 - histogram_fraction(0, 0.25, sum(rate(http_request_duration_seconds{job="api"}[{{.window}}])))'
    )


def test_accepted_fields_without_effect_are_listed_as_notes(tmp_path: Path) -> None:
    result = load_paths([OPENSLO, PYRRA])
    notes = [str(n) for n in result.notes]
    assert any("connectionDetails are not used" in n and "checkout.yaml:12:" in n for n in notes), notes
    assert any("notification targets are not used" in n for n in notes)
    path = tmp_path / "probe.yaml"
    path.write_text(PYRRA_BASE.replace("  window: 4w\n", "  window: 4w\n  alerting:\n    absent: true\n"))
    code, out, _ = run("check", str(path))
    assert code == 0
    assert "note: " in out and "spec.alerting.absent" in out and "no absent-metric alert" in out


# --- what is refused ------------------------------------------------------------------------------

OPENSLO_RATIO = """\
      ratioMetric:
        counter: true
        bad:
          metricSource:
            metricSourceRef: prom
            spec:
              query: http_requests_total{job="api",code=~"5.."}
        total:
          metricSource:
            metricSourceRef: prom
            spec:
              query: http_requests_total{job="api"}
"""

OPENSLO_RAW_SUCCESS = """\
      ratioMetric:
        rawType: success
        raw:
          metricSource:
            type: Prometheus
            spec:
              query: avg_over_time(slo:success:ratio{job="api"}[{{.window}}])
"""

OPENSLO_BASE = (
    """\
apiVersion: openslo/v1
kind: DataSource
metadata:
  name: prom
spec:
  type: Prometheus
---
apiVersion: openslo/v1
kind: SLO
metadata:
  name: availability
spec:
  service: api
  indicator:
    metadata:
      name: api-errors
    spec:
"""
    + OPENSLO_RATIO
    + """\
  timeWindow:
    - duration: 28d
      isRolling: true
  budgetingMethod: Occurrences
  objectives:
    - target: 0.995
  alertPolicies:
    - alertPolicyRef: page
---
apiVersion: openslo/v1
kind: AlertPolicy
metadata:
  name: page
spec:
  alertWhenBreaching: true
  conditions:
    - conditionRef: fast-burn
---
apiVersion: openslo/v1
kind: AlertCondition
metadata:
  name: fast-burn
spec:
  severity: page
  condition:
    kind: burnrate
    op: gte
    threshold: 14
    lookbackWindow: 1h
    alertAfter: 0m
"""
)

SLOTH_BASE = """\
apiVersion: sloth.slok.dev/v1
kind: PrometheusServiceLevel
metadata:
  name: api
spec:
  service: api
  slos:
    - name: availability
      objective: 99.9
      sli:
        events:
          errorQuery: sum(rate(http_requests_total{job="api",code=~"5.."}[{{.window}}]))
          totalQuery: sum(rate(http_requests_total{job="api"}[{{.window}}]))
      alerting:
        name: ApiErrors
"""

PYRRA_RATIO = """\
    ratio:
      errors:
        metric: http_requests_total{job="api",code=~"5.."}
      total:
        metric: http_requests_total{job="api"}
"""

PYRRA_BASE = (
    """\
apiVersion: pyrra.dev/v1alpha1
kind: ServiceLevelObjective
metadata:
  name: api-errors
  namespace: api
spec:
  target: "99.5"
  window: 4w
  indicator:
"""
    + PYRRA_RATIO
)


def _with(base: str, old: str, new: str) -> str:
    assert base.count(old) >= 1, old
    return base.replace(old, new, 1)


def openslo(old: str, new: str) -> str:
    return _with(OPENSLO_BASE, old, new)


def sloth(old: str, new: str) -> str:
    return _with(SLOTH_BASE, old, new)


def pyrra(old: str, new: str) -> str:
    return _with(PYRRA_BASE, old, new)


REFUSALS = [
    # OpenSLO
    pytest.param(
        openslo("ratioMetric:", "thresholdMetric:"),
        "thresholdMetric (a metric compared",
        "thresholdMetric:",
        id="an OpenSLO thresholdMetric is refused",
    ),
    pytest.param(
        openslo(
            "    - duration: 28d\n      isRolling: true",
            '    - duration: 2M\n      isRolling: false\n      calendar: {startTime: "2026-01-01 00:00:00"}',
        ),
        "budgetguard's calendar periods are one week, month or quarter",
        "duration: 2M",
        id="an OpenSLO calendar window of two months is refused",
    ),
    pytest.param(
        openslo(
            "    - duration: 28d\n      isRolling: true",
            "    - duration: 1M\n      isRolling: false\n      calendar:\n"
            '        startTime: "2020-01-21 12:30:00"\n        timeZone: America/New_York',
        ),
        "the months would begin at 2020-01-21 12:30:00 (America/New_York)",
        "startTime:",
        id="an OpenSLO calendar anchored off a month's first instant is refused",
    ),
    pytest.param(
        openslo(
            "    - duration: 28d\n      isRolling: true",
            "    - duration: 1w\n      isRolling: true\n      calendar: {timeZone: UTC}",
        ),
        "a calendar window does not roll",
        "isRolling: true",
        id="an OpenSLO calendar window that claims to roll is refused",
    ),
    pytest.param(
        openslo(
            "    - duration: 28d\n      isRolling: true",
            "    - duration: 1M\n      isRolling: false\n      calendar: {timeZone: Europe/Berln}",
        ),
        "'Europe/Berln' is not an IANA time zone name",
        "Europe/Berln",
        id="an OpenSLO calendar in an unknown time zone is refused",
    ),
    pytest.param(
        openslo("isRolling: true", "isRolling: false"),
        "only rolling windows",
        "isRolling: false",
        id="an OpenSLO window that does not roll is refused",
    ),
    pytest.param(
        openslo("duration: 28d", "duration: 1M"),
        "a month has no fixed length",
        "duration: 1M",
        id="an OpenSLO month-long window is refused",
    ),
    pytest.param(
        openslo("budgetingMethod: Occurrences", "budgetingMethod: Timeslices"),
        "counts good time slices",
        "budgetingMethod: Timeslices",
        id="OpenSLO Timeslices budgeting is refused",
    ),
    pytest.param(
        openslo("    - target: 0.995", "    - target: 0.995\n    - target: 0.999"),
        "2 objectives",
        "objectives:",
        id="an OpenSLO SLO with two objectives is refused",
    ),
    pytest.param(
        openslo("    - target: 0.995", "    - target: 0.995\n      op: lte\n      value: 200"),
        "objective op is not supported",
        "op: lte",
        id="an OpenSLO threshold objective is refused",
    ),
    pytest.param(
        openslo("target: 0.995", "target: 99.5"),
        "is a ratio between 0 and 1",
        "target: 99.5",
        id="an OpenSLO target written as a percentage is refused",
    ),
    pytest.param(
        openslo("    - target: 0.995", "    - target: 0.995\n      targetPercent: 99.5"),
        "exactly one of target",
        "- target: 0.995",
        id="an OpenSLO objective with both target and targetPercent is refused",
    ),
    pytest.param(
        openslo("  type: Prometheus", "  type: Datadog"),
        "is of type 'Datadog'",
        "type: Datadog",
        id="a non-Prometheus OpenSLO DataSource is refused",
    ),
    pytest.param(
        openslo("            metricSourceRef: prom\n", "            type: CloudWatch\n"),
        "is of type 'CloudWatch'",
        "type: CloudWatch",
        id="a non-Prometheus OpenSLO metric source is refused",
    ),
    pytest.param(
        openslo("counter: true", "counter: false"),
        "without the {{.window}} placeholder and without counter",
        'query: http_requests_total{job="api"}',
        id="an OpenSLO gauge query without a window is refused",
    ),
    pytest.param(
        openslo(
            'query: http_requests_total{job="api"}', 'query: sum by (code) (http_requests_total{job="api"})'
        ),
        "is not a bare selector",
        "query: sum by (code)",
        id="an OpenSLO counter that is not a selector is refused",
    ),
    pytest.param(
        openslo(OPENSLO_RATIO, OPENSLO_RAW_SUCCESS.replace("[{{.window}}]", "[5m]")),
        "a precomputed ratio has one fixed window",
        "query: avg_over_time",
        id="an OpenSLO raw ratio without the placeholder is refused",
    ),
    pytest.param(
        openslo(
            "        total:\n",
            "        good:\n          metricSource: {type: Prometheus, spec: {query: x}}\n        total:\n",
        ),
        "give exactly one of good or bad",
        "ratioMetric:",
        id="an OpenSLO ratio with both good and bad is refused",
    ),
    pytest.param(
        openslo("        counter: true\n", "        counter: true\n        rawType: failure\n"),
        "raw cannot be combined with good, bad or total",
        "bad:",
        id="an OpenSLO ratio mixing raw with bad and total is refused",
    ),
    pytest.param(
        openslo("alertAfter: 0m", "alertAfter: 5m"),
        "alertAfter (a hold time before alerting) has no equivalent",
        "alertAfter: 5m",
        id="an OpenSLO alertAfter is refused",
    ),
    pytest.param(
        openslo("op: gte", "op: lte"),
        "op 'lte' would alert while the burn rate stays below",
        "op: lte",
        id="an OpenSLO burn-rate condition with op lte is refused",
    ),
    pytest.param(
        openslo("kind: burnrate", "kind: errorbudget"),
        "condition kind 'errorbudget' is not supported",
        "kind: errorbudget",
        id="an OpenSLO condition other than burnrate is refused",
    ),
    pytest.param(
        openslo("severity: page", "severity: sev1"),
        "does not map to a budgetguard tier severity",
        "severity: sev1",
        id="an OpenSLO severity budgetguard cannot place is refused",
    ),
    pytest.param(
        openslo(
            "    - conditionRef: fast-burn", "    - conditionRef: fast-burn\n    - conditionRef: fast-burn"
        ),
        "2 conditions; an OpenSLO v1 AlertPolicy has exactly one",
        "conditions:",
        id="an OpenSLO policy with two conditions is refused",
    ),
    pytest.param(
        openslo("alertWhenBreaching: true", "alertWhenBreaching: false"),
        "does not alert on breaches",
        "alertWhenBreaching: false",
        id="an OpenSLO policy that does not alert on breaches is refused",
    ),
    pytest.param(
        openslo("alertPolicyRef: page", "alertPolicyRef: pager"),
        "no OpenSLO AlertPolicy named 'pager'",
        "alertPolicyRef: pager",
        id="an unresolved OpenSLO policy reference is refused",
    ),
    pytest.param(
        openslo("  name: prom\n", "  name: prometheus\n"),
        "no OpenSLO DataSource named 'prom' in the files",
        "metricSourceRef: prom",
        id="an unresolved OpenSLO DataSource reference is refused",
    ),
    pytest.param(
        openslo("lookbackWindow: 1h", "lookbackWindow: 30d"),
        "is longer than the SLO window",
        "alertPolicies:",
        id="an OpenSLO lookback window longer than the SLO window is refused",
    ),
    pytest.param(
        openslo(
            "  name: fast-burn\n", "  name: fast-burn\n  annotations:\n    budgetguard.dev/short-window: 2h\n"
        ),
        "short_window must be shorter than long_window",
        "condition:",
        id="an OpenSLO short-window annotation longer than the lookback is refused",
    ),
    pytest.param(
        openslo("  budgetingMethod: Occurrences", "  budgetingMethod: Occurrences\n  budgetMethod: x"),
        "unknown field 'budgetMethod'",
        "budgetMethod: x",
        id="an unknown OpenSLO field is refused",
    ),
    pytest.param(
        openslo(
            "  name: availability\n", "  name: availability\n  labels:\n    app.kubernetes.io/team: api\n"
        ),
        "not a valid Prometheus label name",
        "labels:",
        id="an OpenSLO label Prometheus would refuse is refused",
    ),
    pytest.param(
        OPENSLO_BASE + "---\napiVersion: openslo/v1\nkind: AlertCondition\nmetadata:\n  name: fast-burn\n"
        "spec:\n  severity: page\n  condition: {threshold: 6, lookbackWindow: 6h}\n",
        "OpenSLO AlertCondition 'fast-burn' is declared twice",
        "name: fast-burn",
        id="an OpenSLO name declared twice is refused",
    ),
    pytest.param(
        OPENSLO_BASE + "---\napiVersion: openslo/v1\nkind: Project\nmetadata:\n  name: shop\nspec: {}\n",
        "unknown OpenSLO kind 'Project'",
        "kind: Project",
        id="an unknown OpenSLO kind is refused",
    ),
    pytest.param(
        OPENSLO_BASE.replace("openslo/v1", "openslo/v1alpha"),
        "OpenSLO v1alpha is not read",
        "apiVersion: openslo/v1alpha",
        id="OpenSLO v1alpha is refused",
    ),
    pytest.param(
        "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata: {name: x}\nspec: {}\n",
        "is not an SLO format budgetguard reads",
        "apiVersion: monitoring.coreos.com/v1",
        id="a Kubernetes object of another kind is refused",
    ),
    # Sloth CRD
    pytest.param(
        sloth(
            "        events:\n",
            "        plugin:\n          id: sloth-common/coredns/availability\n        events:\n",
        ),
        "Sloth SLI plugins (sli.plugin) are Go code",
        "plugin:",
        id="a Sloth CRD SLI plugin is refused",
    ),
    pytest.param(
        sloth(
            "  service: api\n",
            "  service: api\n  sloPlugins:\n    chain:\n      - id: sloth.dev/contrib/info_labels/v1\n",
        ),
        "Sloth SLO plugins (spec.sloPlugins)",
        "sloPlugins:",
        id="Sloth CRD SLO plugins are refused",
    ),
    pytest.param(
        sloth(
            "      objective: 99.9\n",
            "      objective: 99.9\n      plugins:\n        chain:\n          - id: x\n",
        ),
        "Sloth SLO plugins (spec.slos[0].plugins)",
        "plugins:",
        id="Sloth CRD per-SLO plugins are refused",
    ),
    pytest.param(
        sloth("objective: 99.9", "objective: 100"),
        "objective is a percentage strictly between 0 and 100",
        "objective: 100",
        id="a Sloth CRD objective of 100 is refused by the native rule",
    ),
    pytest.param(
        sloth('code=~"5.."}[{{.window}}]', 'code=~"5.."}[5m]'),
        "must contain the window placeholder",
        "errorQuery:",
        id="a Sloth CRD query without the placeholder is refused by the native rule",
    ),
    pytest.param(
        sloth("errorQuery:", "error_query:"),
        "unknown field 'error_query'",
        "error_query:",
        id="a Sloth CRD with the CLI format's snake_case is refused",
    ),
    pytest.param(
        sloth("        name: ApiErrors", "        labels: {team: api}"),
        "alerting has no name",
        "alerting:",
        id="a Sloth CRD alerting block without a name is refused",
    ),
    pytest.param(
        sloth("  service: api", "  service: the api"),
        "use letters, digits",
        "service: the api",
        id="a Sloth CRD service name budgetguard ids cannot hold is refused",
    ),
    pytest.param(
        "apiVersion: sloth.slok.dev/v1\nkind: AlertWindows\nspec: {sloPeriod: 7d}\n",
        "AlertWindows",
        "kind: AlertWindows",
        id="Sloth AlertWindows are refused",
    ),
    # Pyrra
    pytest.param(
        pyrra(
            '        metric: http_requests_total{job="api"}\n',
            '        metric: http_requests_total{job="api"}\n      grouping: [route]\n',
        ),
        "grouping (one SLO per value",
        "grouping:",
        id="Pyrra grouping is refused",
    ),
    pytest.param(
        pyrra('target: "99.5"', 'target: "0.995"'),
        "is a percentage",
        'target: "0.995"',
        id="a Pyrra target below 1 is refused",
    ),
    pytest.param(
        pyrra('target: "99.5"', 'target: "100"'),
        "objective is a percentage strictly between 0 and 100",
        'target: "100"',
        id="a Pyrra target of 100 is refused by the native rule",
    ),
    pytest.param(
        pyrra('target: "99.5"', 'target: "high"'),
        "'high' is not a number",
        'target: "high"',
        id="a Pyrra target that is not a number is refused",
    ),
    pytest.param(
        pyrra(
            'metric: http_requests_total{job="api"}\n', 'metric: rate(http_requests_total{job="api"}[5m])\n'
        ),
        "is not a bare vector selector",
        "metric: rate(",
        id="a Pyrra metric that is not a selector is refused",
    ),
    pytest.param(
        pyrra("window: 4w", "window: 1d"),
        "too short for Pyrra's burn-rate tiers",
        "window: 1d",
        id="a Pyrra window too short for its tiers is refused",
    ),
    pytest.param(
        pyrra("window: 4w", "window: 1 month"),
        "is not a Prometheus duration",
        "window: 1 month",
        id="a Pyrra window that is not a duration is refused",
    ),
    pytest.param(
        pyrra("  window: 4w\n", "  window: 4w\n  windows: 4w\n"),
        "unknown field 'windows'",
        "windows: 4w",
        id="an unknown Pyrra field is refused",
    ),
    pytest.param(
        pyrra(
            PYRRA_RATIO,
            '    latency:\n      success:\n        metric: http_request_duration_seconds_bucket{job="api"}\n'
            '      total:\n        metric: http_request_duration_seconds_count{job="api"}\n',
        ),
        'needs an le="<seconds>" matcher',
        "metric: http_request_duration_seconds_bucket",
        id="a Pyrra latency success metric without le is refused",
    ),
    pytest.param(
        pyrra(
            "  window: 4w\n",
            "  window: 4w\n  alerting:\n    severities: {fastBurn: critical, mediumBurn: high}\n",
        ),
        "fastBurn (critical) and mediumBurn (high) differ",
        "severities:",
        id="Pyrra page severities that differ are refused",
    ),
    pytest.param(
        pyrra("kind: ServiceLevelObjective", "kind: ServiceLevelObjectiveList"),
        "Pyrra kind",
        "kind:",
        id="a Pyrra kind other than ServiceLevelObjective is refused",
    ),
]


@pytest.mark.parametrize(("text", "fragment", "token"), REFUSALS)
def test_refusals_name_the_construct_file_line_and_field(text: str, fragment: str, token: str) -> None:
    _, problems = load_text(text, "slos/other.yaml")
    matching = [p for p in problems if fragment in p.message]
    assert matching, [str(p) for p in problems]
    problem = matching[0]
    assert problem.file == "slos/other.yaml"
    assert problem.field, problem
    assert problem.line is not None, problem
    assert token in text.splitlines()[problem.line - 1], (problem, text.splitlines()[problem.line - 1])
    assert str(problem).startswith(f"slos/other.yaml:{problem.line}: ")
    assert not [p for p in problems if "Tuple should have" in p.message]


def test_every_problem_of_one_slo_is_listed_at_once() -> None:
    text = openslo("isRolling: true", "isRolling: false").replace(
        "budgetingMethod: Occurrences", "budgetingMethod: Timeslices"
    )
    _, problems = load_text(text, "api.yaml")
    messages = [p.message for p in problems]
    assert any("only rolling windows" in m for m in messages) and any("time slices" in m for m in messages)


def test_a_broken_sli_shared_by_two_slos_is_reported_once() -> None:
    data_source, slo, policy, condition = OPENSLO_BASE.split("---\n")
    indicator = slo[slo.index("  indicator:\n") : slo.index("  timeWindow:")]
    by_ref = slo.replace(indicator, "  indicatorRef: shared\n")
    shared = (
        "apiVersion: openslo/v1\nkind: SLI\nmetadata:\n  name: shared\nspec:\n  thresholdMetric:\n"
        "    metricSource: {type: Prometheus, spec: {query: up}}\n"
    )
    copy = by_ref.replace("name: availability", "name: availability-copy")
    text = "---\n".join([data_source, shared, by_ref, copy, policy, condition])
    slos, problems = load_text(text, "api.yaml")
    assert not slos
    assert [p.message.split(" (")[0] for p in problems] == ["thresholdMetric"]


def test_problems_name_the_slo_they_belong_to() -> None:
    _, problems = load_text(openslo("isRolling: true", "isRolling: false"), "api.yaml")
    assert [p.slo for p in problems] == ["availability"]
    _, problems = load_text(pyrra('target: "99.5"', 'target: "0.995"'), "api.yaml")
    assert [p.slo for p in problems] == ["api-errors"]


# --- budgetguard convert --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "paths",
    [
        pytest.param(
            [OPENSLO / "checkout.yaml", OPENSLO / "slis.yaml", OPENSLO / "alerting.yaml"], id="openslo"
        ),
        pytest.param([SLOTH], id="sloth crd"),
        pytest.param([PYRRA], id="pyrra"),
        pytest.param([FIXTURES, REPO / "slos"], id="every format beside native files"),
    ],
)
def test_convert_prints_native_yaml_that_loads_back_to_the_same_slos(
    paths: list[Path], tmp_path: Path
) -> None:
    code, out, err = run("convert", *map(str, paths))
    assert code == 0, err
    assert out.startswith("# budgetguard/v1 written by budgetguard")
    converted = tmp_path / "converted.yaml"
    converted.write_text(out)
    code, checked, err = run("check", str(converted))
    assert code == 0, err
    assert "note:" not in checked  # every note was about the foreign file, none about the native one
    original = load_paths(paths)
    # Everything but budgetguard/v1 files converts; Sloth's prometheus/v1 (slos/search.sloth.yaml) does.
    foreign = [s for s in original.slos if s.source not in map(str, NATIVE_FILES)]
    again = load_paths([converted]).slos
    assert [same_slo(s) for s in again] == [same_slo(s) for s in foreign]
    assert all(s.source == str(converted) for s in again)


def test_convert_writes_notes_as_comments_and_each_document_says_where_it_came_from() -> None:
    code, out, _ = run("convert", str(OPENSLO))
    assert code == 0
    assert "# note: " in out and "connectionDetails are not used" in out
    assert f"# OpenSLO SLO 'availability' in {OPENSLO / 'checkout.yaml'}\nversion: budgetguard/v1\n" in out
    assert out.count("version: budgetguard/v1") == 2


def test_convert_of_invalid_input_prints_the_problems_and_exits_2() -> None:
    code, out, err = run("convert", str(OPENSLO / "checkout.yaml"))
    assert code == 2 and out == ""
    assert "no OpenSLO SLI named 'checkout-server-errors'" in err
    assert "problem(s) in 1 file(s)" in err


def test_convert_of_native_files_has_nothing_to_do() -> None:
    code, out, err = run("convert", *map(str, NATIVE_FILES))
    assert code == 0 and out == ""
    assert "nothing to convert" in err


def test_convert_is_documented(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "convert" in capsys.readouterr().out
    # The README's "Other formats" section moved to the docs site (issue 11).
    migrate = (REPO / "docs" / "how-to" / "migrate.md").read_text()
    formats = (REPO / "docs" / "reference" / "slo-format.md").read_text()
    assert "budgetguard convert" in migrate and "## Other formats" in formats


# --- the same numbers as the native equivalent, from a real Prometheus ----------------------------

STEP = timedelta(minutes=1)
SPAN = timedelta(days=8)
END = align_end(datetime(2026, 11, 20, 12, 0, tzinfo=UTC))
START = (END - SPAN).timestamp()
COUNT = int(SPAN / STEP) + 1


def _traffic(t: float) -> Sequence[float]:
    """Per-minute increments of codes 200, 500, 503: diurnal traffic, a past incident and a fresh one."""
    minutes = (t - START) / 60
    total = 500 + 300 * math.sin(minutes / 229)
    share = 0.0005 + 0.0005 * (1 + math.sin(minutes / 1709))
    if 3 * 1440 < minutes < 3 * 1440 + 40:
        share = 0.25
    if minutes > SPAN / STEP - 60:
        share = 0.03
    errors = total * share
    return (total - errors, errors * 0.6, errors * 0.4)


def _latency(t: float) -> tuple[float, LogNormalLatency]:
    slow = (t - START) / 60 > SPAN / STEP - 2 * 1440
    return 200.0, LogNormalLatency(median_seconds=0.15 if slow else 0.1, sigma=0.9)


def shop_history() -> list[Series]:
    series: list[Series] = []
    for job in ("checkout", "search"):
        series += counters_from_increments(
            "http_requests",
            [{"job": job, "code": code} for code in ("200", "500", "503")],
            start=START,
            step=STEP,
            count=COUNT,
            increments=_traffic,
        )
    series += histogram_from_steps(
        "http_request_duration_seconds",
        {"job": "checkout"},
        buckets=(0.1, 0.25, 0.5, 1.0, 2.5),
        start=START,
        step=STEP,
        count=COUNT,
        observe=_latency,
    )
    probe = [(START + i * 60, 0.0 if i % 97 == 0 or COUNT - i < 30 else 1.0) for i in range(COUNT)]
    series.append(gauge("probe_success", {"job": "blackbox", "instance": "checkout"}, probe))
    return series


# What a person writes natively for the fixtures' SLOs (same ids, windows, tiers and labels).
NATIVE_EQUIVALENTS = """\
version: budgetguard/v1
service: checkout
slos:
  - name: availability
    objective: 99.9
    description: Checkout requests answered without a server error
    labels: {team: payments, tier: "critical,customer-facing"}
    window: 28d
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="checkout", code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="checkout"}[{{.window}}]))
    tiers:
      - {severity: page, long_window: 1h, short_window: 5m, burn_rate: 14.4}
      - {severity: ticket, long_window: 1d, short_window: 2h, burn_rate: 3}
  - name: latency
    objective: 99
    description: Checkout requests served within half a second
    window: 7d
    sli:
      latency: {metric: http_request_duration_seconds, selector: 'job="checkout"', threshold_seconds: 0.5}
    tiers:
      - {severity: ticket, long_window: 12h, short_window: 1h, burn_rate: 3}
  - name: checkout-latency
    objective: 95
    labels: {service: checkout}
    window: 2w
    sli:
      latency: {metric: http_request_duration_seconds, selector: 'job="checkout"', threshold_seconds: 0.5}
    tiers: &pyrra-2w
      - {severity: page, long_window: 30m, short_window: 3m, burn_rate: 14}
      - {severity: page, long_window: 3h, short_window: 15m, burn_rate: 7}
      - {severity: ticket, long_window: 12h, short_window: 1h, burn_rate: 2}
      - {severity: ticket, long_window: 2d, short_window: 3h, burn_rate: 1}
---
version: prometheus/v1
service: search-api
labels: {owner: discovery-team}
slos:
  - name: requests-availability
    objective: 99.5
    labels: {category: availability}
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="search",code=~"(5..|429)"}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="search"}[{{.window}}]))
  - name: requests-unavailable
    objective: 99
    sli:
      raw:
        error_ratio_query: >-
          sum(rate(http_requests_total{job="search",code="503"}[{{.window}}]))
          / sum(rate(http_requests_total{job="search"}[{{.window}}]))
---
version: budgetguard/v1
service: shop
slos:
  - name: checkout-errors
    objective: 99.5
    labels: {team: payments}
    window: 4w
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="checkout",code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="checkout"}[{{.window}}]))
    tiers:
      - {severity: page, long_window: 1h, short_window: 5m, burn_rate: 14}
      - {severity: page, long_window: 6h, short_window: 30m, burn_rate: 7}
      - {severity: ticket, long_window: 1d, short_window: 2h, burn_rate: 2}
      - {severity: ticket, long_window: 4d, short_window: 6h, burn_rate: 1}
  - name: checkout-probe
    objective: 99
    window: 1w
    sli:
      raw:
        error_ratio_query: 1 - avg(avg_over_time(probe_success{job="blackbox",instance="checkout"}[{{.window}}]))
    tiers:
      - {severity: page, long_window: 15m, short_window: 1m, burn_rate: 14}
      - {severity: page, long_window: 1h30m, short_window: 8m, burn_rate: 7}
      - {severity: ticket, long_window: 6h, short_window: 30m, burn_rate: 2}
      - {severity: ticket, long_window: 1d, short_window: 1h30m, burn_rate: 1}
"""

SLOTH_CLI_EQUIVALENT = """\
version: prometheus/v1
service: search-api
labels: {owner: discovery-team}
slos:
  - name: requests-availability
    objective: 99.5
    description: Search answers without a server error.
    labels: {category: availability}
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="search",code=~"(5..|429)"}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="search"}[{{ .window }}]))
    alerting:
      name: SearchHighErrorRate
      labels: {category: availability}
      annotations: {summary: High error rate on search requests}
      page_alert: {labels: {severity: pageteam, routing_key: discovery}}
      ticket_alert: {labels: {severity: slack, slack_channel: "#alerts-search"}}
  - name: requests-unavailable
    objective: 99
    description: Raw SLI, the share of searches answered 503 by an overloaded index.
    sli:
      raw:
        error_ratio_query: |
          sum(rate(http_requests_total{job="search",code="503"}[{{.window}}]))
          /
          sum(rate(http_requests_total{job="search"}[{{.window}}]))
    alerting:
      name: SearchUnavailable
      page_alert: {disable: true}
      ticket_alert: {disable: true}
"""

# Fields that say where an SLO came from or how it was written, not what was measured.
_PROVENANCE = {"source", "description"}


def assert_close(got: Any, expected: Any, where: str) -> None:
    """Equal, numbers to 1e-12 relative: the same events counted by differently written queries."""
    if isinstance(expected, float) and isinstance(got, float):
        assert got == pytest.approx(expected, rel=1e-12), where
    elif isinstance(expected, dict) and isinstance(got, dict):
        assert got.keys() == expected.keys(), where
        for key in expected:
            if key != "reason":  # it quotes the numbers, which may differ in the last digit
                assert_close(got[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list) and isinstance(got, list):
        assert len(got) == len(expected), where
        for index, (one, other) in enumerate(zip(got, expected, strict=True)):
            assert_close(one, other, f"{where}[{index}]")
    else:
        assert got == expected, where


def _records(*argv: str) -> dict[str, dict[str, Any]]:
    code, out, err = run("eval", *argv, "--json")
    assert code in (0, 1), err
    return {
        f"{r['service']}/{r['slo']}": {k: v for k, v in r.items() if k not in _PROVENANCE}
        for r in json.loads(out)
    }


@pytest.mark.prometheus
@pytest.mark.parametrize(
    "at",
    [
        pytest.param(END, id="at the end, during a fresh incident"),
        pytest.param(
            END - timedelta(days=5) + timedelta(minutes=20, seconds=13), id="backtesting an old incident"
        ),
    ],
)
def test_foreign_slos_evaluate_like_their_native_equivalents(
    prometheus_lab: LabFactory, tmp_path: Path, at: datetime
) -> None:
    lab = prometheus_lab(shop_history())
    native = tmp_path / "native.yaml"
    native.write_text(NATIVE_EQUIVALENTS)
    common = ("--prometheus", lab.url, "--at", at.isoformat())
    foreign = _records(str(FIXTURES), *common)
    expected = _records(str(native), *common)
    assert set(foreign) == set(expected)
    for slo_id, record in expected.items():
        assert_close(foreign[slo_id], record, slo_id)
    # the history has something to say: an incident burns, the probe fails, latency has a budget left
    assert foreign["checkout/availability"]["burn_rates"]["1h"] > 0
    assert foreign["shop/checkout-probe"]["error_ratio"] > 0
    converted = tmp_path / "converted.yaml"
    code, out, _ = run("convert", str(FIXTURES))
    assert code == 0
    converted.write_text(out)
    assert _records(str(converted), *common) == foreign
