"""`budgetguard rules`: rules promtool accepts, series that follow the contract, alerts that fire on time.

The promtool unit-test suites here are generated from synthetic counters. Every expected number comes
from ``lab.openmetrics.expected_rate``/``expected_increase`` (Prometheus 2.42's rate extrapolation,
proven equal to the server bit for bit in tests/test_lab.py) combined with the same float operations
the rules perform, so expected values are exact and every alert time is computed from the window
math, then checked against the workbook's closed form (a burn B trips a tier of threshold T over a
window W after T / B x W), never copied by hand.

promtool 2.42 selects closed ranges ``[t - W, t]`` (3.x: left-open), and every suite samples on the
evaluation grid, so a window's first and last samples sit on its edges and nothing is extrapolated.
"""

from __future__ import annotations

import io
import json
import math
import re
import subprocess
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from budgetguard.cli import main
from budgetguard.core import rules
from budgetguard.core.durations import format_duration
from budgetguard.core.rules import SeriesKind, recorded_windows, rules_hash, series_name, source_window
from budgetguard.core.spec import SLO, Severity
from lab.history import align_end
from lab.openmetrics import (
    LogNormalLatency,
    Series,
    counters_from_increments,
    expected_increase,
    expected_rate,
    histogram_from_steps,
)
from tests.conftest import LabFactory
from tests.helpers import slo_from, slos_from

ROOT = Path(__file__).resolve().parent.parent
PROMTOOL = Path("/usr/bin/promtool")


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL.exists(), "promtool is missing: apt-get install prometheus (tests never skip)"
    return subprocess.run(
        [str(PROMTOOL), *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def run_rules(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["rules", *args], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def generate(tmp_path: Path, slo_text: str, *options: str) -> tuple[Path, dict[str, Any]]:
    """Write the SLO file, run ``budgetguard rules -o rules.yaml``, return the file and its YAML."""
    source = tmp_path / "slos.yaml"
    source.write_text(textwrap.dedent(slo_text))
    target = tmp_path / "rules.yaml"
    code, _, err = run_rules(str(source), "-o", str(target), *options)
    assert code == 0, err
    return target, yaml.safe_load(target.read_text())


def group_of(document: Mapping[str, Any], slo: SLO) -> dict[str, Any]:
    group: dict[str, Any] = next(g for g in document["groups"] if g["name"] == rules.group_name(slo))
    return group


# --- SLOs the tests use ---------------------------------------------------------------------------

AVAILABILITY = """
version: budgetguard/v1
service: checkout
labels: {team: payments}
slos:
  - name: availability
    objective: 99.9
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="checkout",code="500"}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="checkout"}[{{.window}}]))
    alerting:
      name: CheckoutBudgetBurn
      labels: {routing: payments}
      annotations: {runbook: https://runbooks.example/checkout}
      page_alert: {labels: {severity: page}}
      ticket_alert: {labels: {severity: ticket}, annotations: {runbook: https://runbooks.example/tickets}}
"""

LATENCY_CANARY = """
version: budgetguard/v1
service: checkout
slos:
  - name: latency
    objective: 99
    sli:
      latency: {metric: http_request_duration_seconds, selector: 'job="checkout"', threshold_seconds: 0.5}
    canary: {label: version}
    alerting: {name: CheckoutSlow}
"""

RAW = """
version: prometheus/v1
service: search
slos:
  - name: not-found
    objective: 95
    sli:
      raw:
        error_ratio_query: |
          sum(rate(http_requests_total{job="search",code="404"}[{{.window}}]))
          /
          sum(rate(http_requests_total{job="search"}[{{.window}}]))
    alerting: {name: SearchNotFound}
"""

CUSTOM_TIERS = """
version: budgetguard/v1
service: checkout
slos:
  - name: availability
    objective: 99.5
    window: 7d
    min_events: 100
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="checkout",code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="checkout"}[{{.window}}]))
    tiers:
      - {severity: page, long_window: 30m, short_window: 2m, budget_percent: 1}
      - {severity: page, long_window: 3h, short_window: 15m, burn_rate: 5}
    alerting: {name: CheckoutBurn}
"""

ALERTING_DISABLED = """
version: budgetguard/v1
service: checkout
slos:
  - name: no-page
    objective: 99.9
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="checkout",code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="checkout"}[{{.window}}]))
    alerting: {name: CheckoutBurn, page_alert: {disable: true}}
  - name: silent
    objective: 99.9
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="checkout",code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="checkout"}[{{.window}}]))
    alerting: {name: CheckoutBurn, page_alert: {disable: true}, ticket_alert: {disable: true}}
  - name: no-alerting-block
    objective: 99.9
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="checkout",code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="checkout"}[{{.window}}]))
"""

COUNTED = """
version: budgetguard/v1
service: jobs
slos:
  - name: runs
    objective: 99
    window: 28d
    sli:
      events:
        error_query: sum(increase(job_runs_total{outcome="failed"}[{{.window}}]))
        total_query: sum(increase(job_runs_total[{{.window}}]))
    alerting: {name: JobRunsFailing}
"""


def _file(path: str) -> str:
    return (ROOT / path).read_text()


# --- every example passes promtool ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("slo_text", "alerts"),
    [
        pytest.param(_file("slos/checkout.yaml"), 4, id="the native example: events and latency SLIs"),
        pytest.param(_file("slos/search.sloth.yaml"), 2, id="the Sloth example: events and a raw SLI"),
        pytest.param(_file("deploy/examples/canary.yaml"), 0, id="the canary example, no alerting block"),
        pytest.param(LATENCY_CANARY, 2, id="a latency SLI summed by the canary label"),
        pytest.param(RAW, 2, id="a raw SLI"),
        pytest.param(CUSTOM_TIERS, 1, id="custom page-only tiers, a 7d window and min_events"),
        pytest.param(ALERTING_DISABLED, 1, id="disabled page and ticket alerts"),
        pytest.param(COUNTED, 2, id="increase() queries and a 28d window"),
    ],
)
@pytest.mark.e2e  # runs promtool or starts a real Prometheus/VictoriaMetrics
def test_promtool_accepts_the_rules_of_every_kind_of_slo(tmp_path: Path, slo_text: str, alerts: int) -> None:
    path, document = generate(tmp_path, slo_text)
    result = promtool("check", "rules", "--lint-fatal", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    every = [rule for group in document["groups"] for rule in group["rules"]]
    assert f"SUCCESS: {len(every)} rules found" in result.stdout
    assert sum("alert" in rule for rule in every) == alerts


@pytest.mark.e2e  # runs promtool or starts a real Prometheus/VictoriaMetrics
def test_the_prometheus_operator_format_is_a_prometheus_rule_around_the_same_groups(tmp_path: Path) -> None:
    source = tmp_path / "slos.yaml"
    source.write_text(textwrap.dedent(AVAILABILITY))
    plain, operator = tmp_path / "rules.yaml", tmp_path / "prometheusrule.yaml"
    assert run_rules(str(source), "-o", str(plain))[0] == 0
    code, _, err = run_rules(
        str(source),
        "-o",
        str(operator),
        "--format",
        "prometheus-operator",
        "--namespace",
        "monitoring",
        "--label",
        "release=kube-prometheus-stack",
        "--name",
        "checkout-slos",
    )
    assert code == 0, err
    manifest = yaml.safe_load(operator.read_text())
    assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
    assert manifest["kind"] == "PrometheusRule"
    assert manifest["metadata"] == {
        "name": "checkout-slos",
        "namespace": "monitoring",
        "labels": {"app.kubernetes.io/managed-by": "budgetguard", "release": "kube-prometheus-stack"},
    }
    assert set(manifest) == {"apiVersion", "kind", "metadata", "spec"}
    assert manifest["spec"] == yaml.safe_load(plain.read_text())
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(manifest["spec"]))
    result = promtool("check", "rules", "--lint-fatal", str(spec), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_without_output_file_the_rules_go_to_stdout_with_a_do_not_edit_header(tmp_path: Path) -> None:
    source = tmp_path / "slos.yaml"
    source.write_text(textwrap.dedent(AVAILABILITY))
    code, out, err = run_rules(str(source), "--interval", "1m")
    assert code == 0 and err == ""
    assert out.startswith("# Generated by budgetguard") and "Do not edit" in out
    document = yaml.safe_load(out)
    assert [g["interval"] for g in document["groups"]] == ["1m"]
    assert "expr: |" in out  # multi-line PromQL is written as literal blocks, readable in review


def test_invalid_slo_files_exit_2_with_every_problem_and_write_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: budgetguard/v1\nservice: a\nslos:\n- name: x\n  objective: 100\n")
    target = tmp_path / "rules.yaml"
    code, out, err = run_rules(str(bad), "-o", str(target))
    assert code == 2
    assert "bad.yaml:5" in err and "objective" in err
    assert not target.exists() and out == ""


def test_two_slos_whose_group_names_collide_are_refused(tmp_path: Path) -> None:
    source = tmp_path / "slos.yaml"
    source.write_text(
        textwrap.dedent(AVAILABILITY)
        .replace("service: checkout", "service: a-b")
        .replace("name: availability", "name: c")
        + "---\n"
        + textwrap.dedent(AVAILABILITY)
        .replace("service: checkout", "service: a")
        .replace("name: availability", "name: b-c")
    )
    code, _, err = run_rules(str(source))
    assert code == 2
    assert "budgetguard-a-b-c" in err


# --- the recorded-series contract -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "window", "name"),
    [
        pytest.param("errors", timedelta(minutes=5), "budgetguard:slo_errors:rate5m", id="errors over 5m"),
        pytest.param(
            SeriesKind.REQUESTS, timedelta(hours=1), "budgetguard:slo_requests:rate1h", id="requests"
        ),
        pytest.param(
            "error_ratio", timedelta(days=30), "budgetguard:slo_error_ratio:rate30d", id="the 30d ratio"
        ),
        pytest.param("errors", timedelta(minutes=90), "budgetguard:slo_errors:rate1h30m", id="90 minutes"),
    ],
)
def test_series_names_carry_the_kind_and_the_window(kind: str, window: timedelta, name: str) -> None:
    assert series_name(kind, window) == name


def test_every_window_of_an_events_slo_gets_errors_requests_and_their_ratio() -> None:
    slo = slo_from(AVAILABILITY)
    group = rules.rule_group(slo)
    assert group["name"] == "budgetguard-checkout-availability"
    assert group["interval"] == "30s"
    recorded = {rule["record"]: rule for rule in group["rules"] if "record" in rule}
    windows = recorded_windows(slo)
    assert windows == slo.windows() and windows[-1] == slo.window == timedelta(days=30)
    expected = {series_name(kind, w) for w in windows for kind in SeriesKind}
    expected |= {rules.OBJECTIVE_SERIES, rules.ERROR_BUDGET_SERIES, rules.PERIOD_SERIES}
    assert set(recorded) == expected
    for rule in recorded.values():
        assert rule["labels"]["budgetguard_service"] == "checkout"
        assert rule["labels"]["budgetguard_slo"] == "availability"
    # the SLO window averages the shortest window's rates: bad events over all events, request-weighted
    assert source_window(slo) == timedelta(minutes=5)
    selector = '{budgetguard_service="checkout", budgetguard_slo="availability"}'
    assert recorded["budgetguard:slo_errors:rate30d"]["expr"] == (
        f"avg_over_time(budgetguard:slo_errors:rate5m{selector}[30d])"
    )
    assert recorded["budgetguard:slo_requests:rate30d"]["expr"] == (
        f"avg_over_time(budgetguard:slo_requests:rate5m{selector}[30d])"
    )
    assert recorded["budgetguard:slo_error_ratio:rate30d"]["expr"] == (
        f"budgetguard:slo_errors:rate30d{selector}\n/\nbudgetguard:slo_requests:rate30d{selector}"
    )
    # the windows come from budgetguard.core.queries, exactly as `eval` renders them
    assert 'code="500"}[1h]' in recorded["budgetguard:slo_errors:rate1h"]["expr"]


def test_a_raw_slo_records_only_its_ratio_and_averages_it_over_the_slo_window() -> None:
    slo = slo_from(RAW)
    recorded = {r["record"]: r for r in rules.recording_rules(slo)}
    assert set(recorded) == {series_name(SeriesKind.ERROR_RATIO, w) for w in slo.windows()}
    assert recorded["budgetguard:slo_error_ratio:rate30d"]["expr"] == (
        "avg_over_time(budgetguard:slo_error_ratio:rate5m"
        '{budgetguard_service="search", budgetguard_slo="not-found"}[30d])'
    )


def test_the_canary_windows_are_recorded_and_the_shortest_one_feeds_the_slo_window() -> None:
    slo = slo_from(LATENCY_CANARY)
    assert timedelta(minutes=1) in recorded_windows(slo)
    assert source_window(slo) == timedelta(minutes=1)
    recorded = {r["record"]: r["expr"] for r in rules.recording_rules(slo)}
    assert (
        "sum by (version) (rate(http_request_duration_seconds_count"
        in recorded["budgetguard:slo_errors:rate1m"]
    )
    assert "budgetguard:slo_errors:rate1m{" in recorded["budgetguard:slo_errors:rate30d"]


def test_increase_queries_are_turned_into_per_second_rates() -> None:
    slo = slo_from(COUNTED)
    recorded = {r["record"]: r["expr"] for r in rules.recording_rules(slo)}
    assert recorded["budgetguard:slo_requests:rate1h"] == "(sum(increase(job_runs_total[1h]))) / 3600"


def _alerts(slo: SLO) -> dict[str, dict[str, Any]]:
    return {rule["labels"]["budgetguard_severity"]: rule for rule in rules.alert_rules(slo)}


def test_alert_labels_and_annotations_merge_as_sloths_do() -> None:
    alerts = _alerts(slo_from(AVAILABILITY))
    assert set(alerts) == {"page", "ticket"}
    assert {a["alert"] for a in alerts.values()} == {"CheckoutBudgetBurn"}
    assert alerts["page"]["labels"] == {
        "routing": "payments",
        "severity": "page",
        "budgetguard_severity": "page",
    }
    assert alerts["ticket"]["annotations"]["runbook"] == "https://runbooks.example/tickets"
    assert alerts["page"]["annotations"]["runbook"] == "https://runbooks.example/checkout"
    assert alerts["page"]["annotations"]["title"] == (
        "(page) {{$labels.budgetguard_service}} {{$labels.budgetguard_slo}} SLO error budget burn rate is too fast."
    )
    assert "for" not in alerts["page"]  # both windows must agree already (workbook, iteration 6)


def test_each_alert_is_the_or_of_its_severitys_tiers_with_both_windows_above_the_threshold() -> None:
    slo = slo_from(AVAILABILITY)
    page = _alerts(slo)["page"]["expr"]
    selector = '{budgetguard_service="checkout", budgetguard_slo="availability"}'
    tiers = page.split("\nor\n")
    assert len(tiers) == 2
    assert f"budgetguard:slo_error_ratio:rate5m{selector} / 0.001 > 14.4" in tiers[0]
    assert f"budgetguard:slo_error_ratio:rate1h{selector} / 0.001 > 14.4" in tiers[0]
    assert f"budgetguard:slo_error_ratio:rate30m{selector} / 0.001 > 6" in tiers[1]
    assert f"budgetguard:slo_error_ratio:rate6h{selector} / 0.001 > 6" in tiers[1]


def test_disabled_alerts_missing_alerting_and_severities_without_tiers_give_no_alert() -> None:
    no_page, silent, no_block = slos_from(ALERTING_DISABLED)
    assert set(_alerts(no_page)) == {"ticket"}
    assert _alerts(silent) == {}
    assert _alerts(no_block) == {}
    assert set(_alerts(slo_from(CUSTOM_TIERS))) == {"page"}  # custom tiers without a ticket tier


def test_min_events_above_one_is_honoured_by_the_alerts_as_by_the_daemon() -> None:
    page = _alerts(slo_from(CUSTOM_TIERS))["page"]["expr"]
    assert "budgetguard:slo_requests:rate2m{" in page and "* 120 >= 100" in page
    assert ">= " not in _alerts(slo_from(AVAILABILITY))["page"]["expr"]


def test_a_canary_slos_alerts_judge_the_service_summed_over_versions() -> None:
    page = _alerts(slo_from(LATENCY_CANARY))["page"]["expr"]
    assert "sum without (version) (budgetguard:slo_errors:rate5m{" in page
    assert "sum without (version) (budgetguard:slo_requests:rate5m{" in page


# --- rules_hash -------------------------------------------------------------------------------------


def test_rules_hash_is_short_stable_and_pinned() -> None:
    slo = slo_from(AVAILABILITY)
    assert re.fullmatch(r"[0-9a-f]{16}", rules_hash(slo))
    assert rules_hash(slo) == rules_hash(slo_from(AVAILABILITY))
    # Pinned: rules already loaded into rulers carry this value. If it changes on purpose, bump
    # RULES_SCHEMA so that readers of older rules notice, and update it here.
    assert rules_hash(slo) == "d6cdeb92d93c4a53"


@pytest.mark.parametrize(
    ("old", "new", "changes"),
    [
        pytest.param('code="500"', 'code=~"5.."', True, id="a query changes it"),
        pytest.param("objective: 99.9", "objective: 99.95", True, id="the objective changes it"),
        pytest.param(
            "    objective: 99.9", "    objective: 99.9\n    window: 28d", True, id="the window changes it"
        ),
        pytest.param(
            "    objective: 99.9",
            "    objective: 99.9\n    tiers: [{severity: page, long_window: 2h, short_window: 10m, burn_rate: 10}]",
            True,
            id="tiers with other windows change it",
        ),
        pytest.param(
            "    objective: 99.9",
            "    objective: 99.9\n    description: Checkout works.",
            False,
            id="not a description",
        ),
        pytest.param("labels: {team: payments}", "labels: {team: shop}", False, id="not labels"),
        pytest.param("name: CheckoutBudgetBurn", "name: Other", False, id="not the alerting block"),
        pytest.param(
            "    objective: 99.9", "    objective: 99.9\n    min_events: 30", False, id="not min_events"
        ),
    ],
)
def test_rules_hash_changes_exactly_when_the_recorded_numbers_would(
    old: str, new: str, changes: bool
) -> None:
    before = slo_from(AVAILABILITY)
    text = AVAILABILITY.replace(old, new)
    assert text != AVAILABILITY
    after = slo_from(text)
    assert (rules_hash(after) != rules_hash(before)) is changes


# --- promtool unit tests, generated ----------------------------------------------------------------


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def running(increments: Iterable[float]) -> tuple[float, ...]:
    """Counter values at t = 0, 1, 2... steps: 0, then each step's increment added."""
    values = [0.0]
    for increment in increments:
        values.append(values[-1] + increment)
    return tuple(values)


@dataclass(frozen=True)
class Counter:
    """One promtool input series, sampled every ``step`` from t=0."""

    series: str
    values: tuple[float, ...]
    step: timedelta

    @property
    def samples(self) -> list[tuple[float, float]]:
        seconds = self.step.total_seconds()
        return [(i * seconds, v) for i, v in enumerate(self.values)]

    def input(self) -> dict[str, str]:
        return {"series": self.series, "values": " ".join(_num(v) for v in self.values)}

    def rate(self, at: timedelta, window: timedelta) -> float | None:
        return expected_rate(self.samples, at.total_seconds(), window)

    def increase(self, at: timedelta, window: timedelta) -> float | None:
        return expected_increase(self.samples, at.total_seconds(), window)


def summed(values: Iterable[float | None]) -> float | None:
    """PromQL ``sum``: adds in series order (callers pass the series sorted by their labels)."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    total = present[0]
    for value in present[1:]:
        total += value
    return total


@dataclass(frozen=True)
class Service:
    """A service's ``http_requests_total{job="checkout"}`` counters: code 200 and code 500."""

    ok: Counter
    failed: Counter

    @classmethod
    def steady(
        cls, step: timedelta, end: timedelta, requests_per_step: int, errors_at: Callable[[timedelta], float]
    ) -> Service:
        """``errors_at(t)``: errors in the step ending at ``t``, out of ``requests_per_step``."""
        steps = [step * i for i in range(1, end // step + 1)]
        errors = [errors_at(t) for t in steps]
        assert all(e == int(e) for e in errors), "keep counters whole: the workbook counts events"
        ok = running(requests_per_step - e for e in errors)
        failed = running(errors)
        return cls(
            Counter('http_requests_total{job="checkout",code="200"}', ok, step),
            Counter('http_requests_total{job="checkout",code="500"}', failed, step),
        )

    def inputs(self) -> list[dict[str, str]]:
        return [self.ok.input(), self.failed.input()]

    def burn(self, slo: SLO, at: timedelta, window: timedelta) -> float | None:
        """What the rules compute: errors / (sum over codes) / budget, in the rules' float operations."""
        errors = self.failed.rate(at, window)
        total = summed([self.ok.rate(at, window), errors])  # code="200" sorts before code="500"
        if errors is None or not total:
            return None
        return errors / total / slo.error_budget_float

    def firing(self, slo: SLO, severity: Severity, at: timedelta) -> bool:
        for tier in slo.tiers:
            if tier.severity is not severity:
                continue
            burns = [self.burn(slo, at, w) for w in (tier.short_window, tier.long_window)]
            if all(b is not None and b > tier.burn_rate for b in burns):
                return True
        return False


_TEMPLATE_LABEL = re.compile(r"\{\{\s*\$labels\.(\w+)\s*\}\}")


def expand(template: str, labels: Mapping[str, str]) -> str:
    """What Prometheus makes of ``{{$labels.name}}`` in an annotation (the only template they use)."""
    return _TEMPLATE_LABEL.sub(lambda m: labels[m.group(1)], template)


def expected_alerts(
    group: Mapping[str, Any], firing: Iterable[Severity], series_labels: Mapping[str, str]
) -> list[dict[str, dict[str, str]]]:
    """promtool's ``exp_alerts`` for the severities firing: series labels, rule labels, expanded annotations."""
    out = []
    for severity in firing:
        rule = next(r for r in group["rules"] if r.get("labels", {}).get("budgetguard_severity") == severity)
        labels = {**series_labels, **rule["labels"]}
        annotations = {k: expand(v, labels) for k, v in rule["annotations"].items()}
        out.append({"exp_labels": labels, "exp_annotations": annotations})
    return out


def run_promtool_suite(tmp_path: Path, evaluation_interval: timedelta, tests: list[dict[str, Any]]) -> None:
    suite = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": format_duration(evaluation_interval),
        "tests": tests,
    }
    path = tmp_path / "rules.test.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False, width=2**20))
    result = promtool("test", "rules", path.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "SUCCESS" in result.stdout


def minutes(value: timedelta) -> str:
    return format_duration(value) if value else "0m"


def ideal_fire(slo: SLO, severity: Severity, burn: float, start: timedelta) -> timedelta:
    """Workbook: a constant burn B from ``start`` over clean history trips a tier of threshold T when
    its long window's average passes T, after T / B x the long window (the short one passes sooner)."""
    reachable = [t for t in slo.tiers if t.severity is severity and t.burn_rate < burn]
    return start + min(t.long_window * (t.burn_rate / burn) for t in reachable)


def ideal_resolve(slo: SLO, severity: Severity, burn: float, stop: timedelta, lasted: timedelta) -> timedelta:
    """After a burn B that lasted at least each tier's short window stops, the short window's average
    falls under T after (1 - T / B) x the short window, and the tier stops (its long window still burns)."""
    firing = [
        t
        for t in slo.tiers
        if t.severity is severity
        and all(burn * min(lasted, w) / w > t.burn_rate for w in (t.short_window, t.long_window))
    ]
    assert firing and all(lasted >= t.short_window for t in firing)
    return stop + max(t.short_window * (1 - t.burn_rate / burn) for t in firing)


def first(times: Iterable[timedelta], predicate: Callable[[timedelta], bool]) -> timedelta:
    return next(t for t in times if predicate(t))


@pytest.mark.e2e  # runs promtool or starts a real Prometheus/VictoriaMetrics
def test_a_15x_burn_pages_when_the_windows_say_and_resolves_once_the_short_window_clears(
    tmp_path: Path,
) -> None:
    """99.9% over 30d: three clean days, then 1.5% errors (15x) for 90 minutes, then clean again."""
    slo = slo_from(AVAILABILITY)
    _, document = generate(tmp_path, AVAILABILITY, "--interval", "5m")
    step, evaluation = timedelta(minutes=1), timedelta(minutes=5)
    burn, requests = 15, 1000
    start, lasted = timedelta(days=3), timedelta(minutes=90)
    stop, end = start + lasted, start + lasted + timedelta(minutes=30)
    errors = burn * requests * slo.error_budget  # 15 a minute, exactly
    service = Service.steady(step, end, requests, lambda t: float(errors) if start < t <= stop else 0.0)

    evaluations = [evaluation * i for i in range(start // evaluation, end // evaluation + 1)]
    pages = first(evaluations, lambda t: service.firing(slo, Severity.PAGE, t))
    resolves = first(
        [t for t in evaluations if t > pages], lambda t: not service.firing(slo, Severity.PAGE, t)
    )
    # The exact model agrees with the workbook's closed form, to one evaluation:
    # 14.4 / 15 x 1h = 57.6 minutes in, and 5m x (1 - 14.4 / 15) = 12 seconds after the errors stop.
    fire_after = ideal_fire(slo, Severity.PAGE, burn, start)
    assert fire_after == start + timedelta(minutes=57.6)
    assert fire_after <= pages <= fire_after + evaluation
    resolve_after = ideal_resolve(slo, Severity.PAGE, burn, stop, lasted)
    assert resolve_after == stop + timedelta(seconds=12)
    assert resolve_after <= resolves <= resolve_after + evaluation
    assert not any(service.firing(slo, Severity.TICKET, t) for t in evaluations)  # 90 minutes: no ticket

    group = group_of(document, slo)
    series_labels = {"budgetguard_service": "checkout", "budgetguard_slo": "availability", "team": "payments"}
    checks = [start, pages - evaluation, pages, stop, resolves - evaluation, resolves, end]
    run_promtool_suite(
        tmp_path,
        evaluation,
        [
            {
                "name": "15x burn for 90 minutes after three clean days",
                "interval": format_duration(step),
                "input_series": service.inputs(),
                "alert_rule_test": [
                    {
                        "eval_time": minutes(at),
                        "alertname": "CheckoutBudgetBurn",
                        "exp_alerts": expected_alerts(
                            group,
                            [s for s in Severity if service.firing(slo, s, at)],
                            series_labels,
                        ),
                    }
                    for at in checks
                ],
            }
        ],
    )
    assert service.firing(slo, Severity.PAGE, pages) and not service.firing(
        slo, Severity.PAGE, pages - evaluation
    )


@pytest.mark.e2e  # runs promtool or starts a real Prometheus/VictoriaMetrics
def test_a_2x_burn_fires_only_the_ticket_tier_and_resolves_after_it_stops(tmp_path: Path) -> None:
    """99.9% over 30d: three clean days, then 0.2% errors (2x) for 40 hours, then clean for 6 hours."""
    slo = slo_from(AVAILABILITY)
    _, document = generate(tmp_path, AVAILABILITY, "--interval", "30m")
    step, evaluation = timedelta(minutes=5), timedelta(minutes=30)
    burn, requests = 2, 5000
    start, lasted = timedelta(days=3), timedelta(hours=40)
    stop, end = start + lasted, start + lasted + timedelta(hours=6)
    errors = burn * requests * slo.error_budget  # 10 every 5 minutes
    service = Service.steady(step, end, requests, lambda t: float(errors) if start < t <= stop else 0.0)

    evaluations = [evaluation * i for i in range(start // evaluation, end // evaluation + 1)]
    tickets = first(evaluations, lambda t: service.firing(slo, Severity.TICKET, t))
    resolves = first(
        [t for t in evaluations if t > tickets], lambda t: not service.firing(slo, Severity.TICKET, t)
    )
    # 1 / 2 x 3d = 36 hours in (the 1d/2h tier needs 3x: never); 6h x (1 - 1/2) = 3 hours after the stop.
    fire_after = ideal_fire(slo, Severity.TICKET, burn, start)
    assert fire_after == start + timedelta(hours=36)
    assert fire_after <= tickets <= fire_after + evaluation  # at exactly 36h the burn equals 1, not above
    resolve_after = ideal_resolve(slo, Severity.TICKET, burn, stop, lasted)
    assert resolve_after == stop + timedelta(hours=3)
    assert resolve_after <= resolves <= resolve_after + evaluation
    assert not any(service.firing(slo, Severity.PAGE, t) for t in evaluations)  # 2x never pages

    group = group_of(document, slo)
    series_labels = {"budgetguard_service": "checkout", "budgetguard_slo": "availability", "team": "payments"}
    checks = [
        start,
        start + timedelta(hours=12),
        tickets - evaluation,
        tickets,
        resolves - evaluation,
        resolves,
        end,
    ]
    run_promtool_suite(
        tmp_path,
        evaluation,
        [
            {
                "name": "2x burn for 40 hours after three clean days",
                "interval": format_duration(step),
                "input_series": service.inputs(),
                "alert_rule_test": [
                    {
                        "eval_time": minutes(at),
                        "alertname": "CheckoutBudgetBurn",
                        "exp_alerts": expected_alerts(
                            group, [s for s in Severity if service.firing(slo, s, at)], series_labels
                        ),
                    }
                    for at in checks
                ],
            }
        ],
    )


@pytest.mark.e2e  # runs promtool or starts a real Prometheus/VictoriaMetrics
def test_the_slo_window_ratio_weighs_every_request_the_same_not_every_five_minutes(tmp_path: Path) -> None:
    """A quiet night (10 requests a minute, 10% errors), then a busy morning (1000 a minute, 0.1%)."""
    slo = slo_from(AVAILABILITY)
    _, document = generate(tmp_path, AVAILABILITY, "--interval", "1m")
    step = timedelta(minutes=1)
    night, end = timedelta(hours=2), timedelta(hours=4)
    steps = range(1, end // step + 1)
    ok = running(9.0 if step * i <= night else 999.0 for i in steps)
    failed = running(1.0 for _ in steps)
    service = Service(
        Counter('http_requests_total{job="checkout",code="200"}', ok, step),
        Counter('http_requests_total{job="checkout",code="500"}', failed, step),
    )
    five = timedelta(minutes=5)
    # the recorded 5m series at every evaluation since the first one that has two samples
    recorded = [
        (
            service.failed.rate(step * i, five),
            summed([service.ok.rate(step * i, five), service.failed.rate(step * i, five)]),
        )
        for i in steps
    ]
    errors = [e for e, _ in recorded if e is not None]
    totals = [t for _, t in recorded if t is not None]
    weighted = math.fsum(errors) / math.fsum(totals)
    average_of_ratios = math.fsum(e / t for e, t in zip(errors, totals, strict=True)) / len(errors)
    assert weighted == pytest.approx(failed[-1] / (ok[-1] + failed[-1]), rel=0.02)  # 240 in 121,200
    assert average_of_ratios > 20 * weighted  # the night's 120 five-minute ratios count as much as the day's

    selector = '{budgetguard_service="checkout",budgetguard_slo="availability"}'
    run_promtool_suite(
        tmp_path,
        step,
        [
            {
                "name": "quiet night, busy morning",
                "interval": format_duration(step),
                "input_series": service.inputs(),
                "promql_expr_test": [
                    {
                        "expr": f"count(abs(budgetguard:slo_error_ratio:rate30d{selector} / {weighted!r} - 1) < 1e-9)",
                        "eval_time": minutes(end),
                        "exp_samples": [{"labels": "{}", "value": 1}],
                    },
                    {
                        "expr": f"count(abs(avg_over_time(budgetguard:slo_error_ratio:rate5m{selector}[30d]) / {average_of_ratios!r} - 1) < 1e-9)",
                        "eval_time": minutes(end),
                        "exp_samples": [{"labels": "{}", "value": 1}],
                    },
                ],
            }
        ],
    )
    assert group_of(document, slo)["interval"] == "1m"


SHOP = """
version: budgetguard/v1
service: shop
labels: {team: payments, version: from-the-slo, budgetguard_slo: never-this}
slos:
  - name: availability
    objective: 99.9
    sli:
      events:
        error_query: sum by (version) (rate(http_requests_total{job="shop",code="500"}[{{.window}}]))
        total_query: sum by (version) (rate(http_requests_total{job="shop"}[{{.window}}]))
  - name: latency
    objective: 99
    window: 7d
    sli:
      latency: {metric: http_request_duration_seconds, selector: 'job="shop"', threshold_seconds: 0.5}
  - name: not-found
    objective: 95
    sli:
      raw:
        error_ratio_query: sum(rate(http_requests_total{job="shop",code="404"}[{{.window}}])) / sum(rate(http_requests_total{job="shop"}[{{.window}}]))
  - name: counted
    objective: 99
    sli:
      events:
        error_query: sum(increase(http_requests_total{job="shop",code="500"}[{{.window}}]))
        total_query: sum(increase(http_requests_total{job="shop"}[{{.window}}]))
  - name: quiet
    objective: 99.9
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="quiet",code="500"}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="quiet"}[{{.window}}]))
    alerting: {name: QuietBurn}
  - name: ghost
    objective: 99.9
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="ghost",code="500"}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="ghost"}[{{.window}}]))
"""


def _series(name: str, labels: Mapping[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


@pytest.mark.e2e  # runs promtool or starts a real Prometheus/VictoriaMetrics
def test_recorded_series_equal_prometheus_own_math_and_carry_the_contracts_labels(tmp_path: Path) -> None:
    """Events by version (v2 never failed: no error series), a latency histogram, a raw ratio, increase()
    queries, a service without traffic and one without series; at 5m and 1h, to the last bit."""
    slos = {slo.name: slo for slo in slos_from(SHOP)}
    _, document = generate(tmp_path, SHOP, "--interval", "1m")
    step, end = timedelta(minutes=1), timedelta(hours=2)
    count = end // step

    def counter(series: str, per_step: float) -> Counter:
        return Counter(series, running(per_step for _ in range(count)), step)

    # Sorted as Prometheus sorts series (by label values in label-name order), which is how sum() adds.
    shop = [
        counter('http_requests_total{code="200",job="shop",version="v1"}', 57),
        counter('http_requests_total{code="200",job="shop",version="v2"}', 20),
        counter('http_requests_total{code="404",job="shop",version="v1"}', 6),
        counter('http_requests_total{code="500",job="shop",version="v1"}', 3),
    ]
    good = counter('http_request_duration_seconds_bucket{job="shop",le="0.5"}', 55)
    slow = counter('http_request_duration_seconds_bucket{job="shop",le="+Inf"}', 60)
    latency_count = counter('http_request_duration_seconds_count{job="shop"}', 60)
    quiet = counter('http_requests_total{code="200",job="quiet"}', 0)
    inputs = [c.input() for c in (*shop, good, slow, latency_count, quiet)]

    identity = {"team": "payments", "version": "from-the-slo", "budgetguard_service": "shop"}
    samples: list[dict[str, Any]] = []

    def expect(
        kind: SeriesKind, window: timedelta, slo: str, values: list[tuple[dict[str, str], float]]
    ) -> None:
        name = series_name(kind, window)
        samples.append(
            {
                "expr": f'{name}{{budgetguard_slo="{slo}"}}',
                "eval_time": minutes(end),
                "exp_samples": [
                    {"labels": _series(name, {**identity, "budgetguard_slo": slo, **extra}), "value": value}
                    for extra, value in values
                ],
            }
        )

    for window in (timedelta(minutes=5), timedelta(hours=1)):

        def rate(c: Counter, w: timedelta = window) -> float:
            value = c.rate(end, w)
            assert value is not None
            return value

        # events by version: the query keeps `version`, which wins over the SLO's own version label
        v1_total = summed([rate(shop[0]), rate(shop[2]), rate(shop[3])])
        v2_total = rate(shop[1])
        assert v1_total is not None
        v1 = {"version": "v1"}
        v2 = {"version": "v2"}
        expect(SeriesKind.ERRORS, window, "availability", [(v1, rate(shop[3])), (v2, 0.0)])
        expect(SeriesKind.REQUESTS, window, "availability", [(v1, v1_total), (v2, v2_total)])
        expect(SeriesKind.ERROR_RATIO, window, "availability", [(v1, rate(shop[3]) / v1_total), (v2, 0.0)])
        # latency: total - good, never below 0
        bad = max(rate(latency_count) - rate(good), 0.0)
        expect(SeriesKind.ERRORS, window, "latency", [({}, bad)])
        expect(SeriesKind.ERROR_RATIO, window, "latency", [({}, bad / rate(latency_count))])
        # raw: the query's own ratio, and nothing else
        all_shop = summed([rate(c) for c in shop])
        assert all_shop is not None
        expect(SeriesKind.ERROR_RATIO, window, "not-found", [({}, rate(shop[2]) / all_shop)])
        # increase(): events per window, divided back into events per second
        increases = [c.increase(end, window) for c in shop]
        seconds = window.total_seconds()
        counted_total = summed(increases)
        counted_errors = increases[3]
        assert counted_total is not None and counted_errors is not None
        expect(SeriesKind.ERRORS, window, "counted", [({}, counted_errors / seconds)])
        expect(SeriesKind.REQUESTS, window, "counted", [({}, counted_total / seconds)])
        expect(
            SeriesKind.ERROR_RATIO,
            window,
            "counted",
            [({}, (counted_errors / seconds) / (counted_total / seconds))],
        )
        # a service with series but no traffic: 0 errors of 0 requests, a NaN ratio (never alerts)
        expect(SeriesKind.REQUESTS, window, "quiet", [({}, 0.0)])
        expect(SeriesKind.ERRORS, window, "quiet", [({}, 0.0)])
        samples.append(
            {
                "expr": f'count({series_name("error_ratio", window)}{{budgetguard_slo="quiet"}} != {series_name("error_ratio", window)}{{budgetguard_slo="quiet"}})',
                "eval_time": minutes(end),
                "exp_samples": [{"labels": "{}", "value": 1}],
            }
        )
        # no series at all: nothing recorded
        samples.append(
            {
                "expr": f'{series_name("requests", window)}{{budgetguard_slo="ghost"}}',
                "eval_time": minutes(end),
                "exp_samples": [],
            }
        )

    # metadata is there whatever the traffic: how a reader tells "rules loaded" from "no traffic"
    for name, slo in (("quiet", slos["quiet"]), ("ghost", slos["ghost"])):
        labels = {**identity, "budgetguard_slo": name, "budgetguard_rules_hash": rules_hash(slo)}
        for series, value in (
            (rules.OBJECTIVE_SERIES, 0.999),
            (rules.ERROR_BUDGET_SERIES, 0.001),
            (rules.PERIOD_SERIES, 2592000),
        ):
            samples.append(
                {
                    "expr": f'{series}{{budgetguard_slo="{name}"}}',
                    "eval_time": minutes(end),
                    "exp_samples": [{"labels": _series(series, labels), "value": value}],
                }
            )

    run_promtool_suite(
        tmp_path,
        step,
        [
            {
                "name": "every SLI kind, to the last bit",
                "interval": format_duration(step),
                "input_series": inputs,
                "promql_expr_test": samples,
                "alert_rule_test": [{"eval_time": minutes(end), "alertname": "QuietBurn", "exp_alerts": []}],
            }
        ],
    )
    assert group_of(document, slos["quiet"])["rules"][-1]["alert"] == "QuietBurn"


# --- against a real Prometheus ------------------------------------------------------------------------

LIVE = """
version: budgetguard/v1
service: live
labels: {team: payments}
slos:
  - name: availability
    objective: 99.9
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="live",code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="live"}[{{.window}}]))
  - name: latency
    objective: 99
    window: 7d
    sli:
      latency: {metric: http_request_duration_seconds, selector: 'job="live"', threshold_seconds: 0.5}
  - name: raw
    objective: 99.5
    sli:
      raw:
        error_ratio_query: sum(rate(http_requests_total{job="live",code="503"}[{{.window}}])) / sum(rate(http_requests_total{job="live"}[{{.window}}]))
"""


def live_history(end: datetime) -> list[Series]:
    """Three and a half days of diurnal traffic with errors that come and go, and a counter reset."""
    step = timedelta(minutes=1)
    span = timedelta(days=3, hours=12)
    start = (end - span).timestamp()
    count = span // step + 1

    def traffic(t: float) -> Sequence[float]:
        minutes_in = (t - start) / 60
        total = 600 + 400 * math.sin(minutes_in / 229)
        share = 0.0004 + 0.0006 * (1 + math.sin(minutes_in / 1709))
        if minutes_in > span / step - 45:  # a fresh incident at the end
            share = 0.03
        errors = total * share
        return (total - errors, errors * 0.7, errors * 0.3)

    def latency(t: float) -> tuple[float, LogNormalLatency]:
        return 300.0, LogNormalLatency(median_seconds=0.15, sigma=0.9)

    codes = [{"job": "live", "code": c} for c in ("200", "500", "503")]
    series = counters_from_increments(
        "http_requests",
        codes,
        start=start,
        step=step,
        count=count,
        increments=traffic,
        resets_at=[start + 86400],
    )
    series += histogram_from_steps(
        "http_request_duration_seconds",
        {"job": "live"},
        buckets=(0.1, 0.25, 0.5, 1.0, 2.5),
        start=start,
        step=step,
        count=count,
        observe=latency,
    )
    return series


def test_a_real_prometheus_records_the_ratios_budgetguard_eval_computes(
    prometheus_lab: LabFactory, tmp_path: Path
) -> None:
    """Rules loaded into Prometheus 2.42 next to backfilled history: at a rule evaluation's own instant,
    every recorded window but the SLO window (which only averages since the rules were loaded) equals
    `budgetguard eval --at` that instant. Both evaluate the same PromQL at the same millisecond, and
    the ratio is one IEEE division of the same two numbers, so they agree to the last bit."""
    rule_file, _ = generate(tmp_path, LIVE, "--interval", "1s")
    lab = prometheus_lab(live_history(align_end()), rule_files=[rule_file])
    slo_file = tmp_path / "slos.yaml"
    slos = {slo.name: slo for slo in slos_from(LIVE)}
    for name, slo in slos.items():
        # The metadata follows every recorded series in the group, and a rule's samples are stored
        # before the next rule runs: metadata at an instant means the whole evaluation is stored.
        metadata = f'budgetguard:slo_objective_ratio{{budgetguard_slo="{name}"}}'
        lab.wait_for_value(metadata)
        at = lab.query_value(f"timestamp({metadata})")
        assert at is not None
        recorded = {
            s.labels["__name__"]: s
            for s in lab.query(f'{{__name__=~"budgetguard:.+", budgetguard_slo="{name}"}}', at)
        }
        assert recorded[rules.OBJECTIVE_SERIES].labels["budgetguard_rules_hash"] == rules_hash(slo)
        assert recorded[rules.ERROR_BUDGET_SERIES].value == slo.error_budget_float

        out, err = io.StringIO(), io.StringIO()
        main(["eval", str(slo_file), "--prometheus", lab.url, "--json", "--at", repr(at)], out, err)
        evaluated = next(r for r in json.loads(out.getvalue()) if r["slo"] == name)
        compared = 0
        for window in recorded_windows(slo):
            if window == slo.window:
                continue
            key = format_duration(window)
            ratio = recorded[series_name("error_ratio", window)].value
            assert ratio == pytest.approx(evaluated["error_ratios"][key], rel=1e-9, abs=0), (name, key)
            assert ratio == evaluated["error_ratios"][key], (name, key)  # in fact, bit for bit
            if slo.sli.raw is None:
                events = recorded[series_name("requests", window)].value * window.total_seconds()
                assert events == pytest.approx(evaluated["events_by_window"][key], rel=1e-12), (name, key)
            compared += 1
        assert compared == len(slo.windows()) - 1
    availability = slos["availability"]
    assert len(recorded_windows(availability)) == 8  # 5m 30m 1h 2h 6h 1d 3d, and 30d
