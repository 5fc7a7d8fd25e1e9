"""deploy/: the alert rules and the Grafana dashboard agree with promtool and with the real exporter.

Metric names are an interface between budgetguard/exporter.py and these files. Every expression is
parsed by promtool, and every metric name it uses must be one that a real ``Exporter.render()``
exposes, so renaming a metric fails here, naming the panel or alert to fix.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from budgetguard import __version__
from budgetguard.cli import main
from budgetguard.core import policy
from budgetguard.core.canary import Counts, judge_versions
from budgetguard.core.policy import Evaluation, Observation
from budgetguard.core.verdict import Verdict
from budgetguard.exporter import Exporter
from tests.helpers import slo_from

ROOT = Path(__file__).resolve().parent.parent
PROMTOOL = Path("/usr/bin/promtool")
ALERTS = ROOT / "deploy" / "prometheus" / "budgetguard-alerts.yaml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "budgetguard-alerts.test.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "budgetguard.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

# Concrete values for Grafana's template variables, so the queries become plain PromQL.
VARIABLES = {
    "datasource": "prometheus",
    "service": "checkout",
    "slo": "availability",
    "__rate_interval": "1m",
    "__interval": "30s",
    "__interval_ms": "30000",
    "__range": "1h",
    "__range_s": "3600",
}
_VARIABLE = re.compile(r"\$\{([A-Za-z_]\w*)(?::[^}]*)?\}|\[\[([A-Za-z_]\w*)(?::[^\]]*)?\]\]|\$([A-Za-z_]\w*)")


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL.exists(), "promtool is missing: apt-get install prometheus (tests never skip)"
    return subprocess.run(
        [str(PROMTOOL), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


# --- which metric names does an expression use? ---------------------------------------------------

_TOKEN = re.compile(
    r"""
      (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    | (?P<range>\[[^\]]*\])
    | (?P<number>0[xX][0-9a-fA-F]+|\d[\w.]*|\.\d\w*)
    | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
    | (?P<punct>\S)
    """,
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS |= {"offset", "bool", "inf", "nan", "atan2"}
_LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, keywords, labels or strings)."""
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(expr)]
    names: set[str] = set()
    depth = 0  # inside {...}: label matchers
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if text == "{":
            depth += 1
        elif text == "}":
            depth -= 1
        elif kind == "ident" and depth == 0:
            if text.lower() in _LABEL_LISTS and following == "(":
                i = next(j for j in range(i + 2, len(tokens)) if tokens[j][1] == ")")
            elif following != "(" and following not in ("by", "without") and text.lower() not in _KEYWORDS:
                # followed by "(" it is a function; by "by" or "without", an aggregation (sum by (le) (...))
                names.add(text)
        i += 1
    return names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        pytest.param("a_total", {"a_total"}, id="a bare metric"),
        pytest.param(
            'rate(a_total{job="x", le="1"}[5m] offset 1h)',
            {"a_total"},
            id="labels and ranges are not metrics",
        ),
        pytest.param(
            "histogram_quantile(0.9, sum by (le) (rate(h_bucket[1m])))",
            {"h_bucket"},
            id="aggregation label lists",
        ),
        pytest.param("sum(rate(c[1m])) without (instance)", {"c"}, id="a trailing without clause"),
        pytest.param(
            "x * on (job, instance) group_left (version) y", {"x", "y"}, id="vector matching label lists"
        ),
        pytest.param("time() - t > 90 or absent_over_time(t[5m])", {"t"}, id="functions and set operators"),
        pytest.param('label_replace(up, "dst", "$1", "src", "(.*)")', {"up"}, id="strings are skipped"),
        pytest.param("2 * max by (a) (v) + 1e3 > bool inf", {"v"}, id="numbers and keywords"),
    ],
)
def test_metric_names_finds_the_metrics_an_expression_selects(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


# --- what the exporter really exposes -------------------------------------------------------------


def _evaluations() -> list[Evaluation]:
    at = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    slo = slo_from()
    burning = {timedelta(hours=1): 0.02, timedelta(minutes=5): 0.02}
    observations = {w: Observation(w, burning.get(w, 0.0005), 1e4) for w in slo.windows()}
    other = slo.model_copy(update={"name": "latency"})
    canaried = slo_from(CANARY)
    assert canaried.canary is not None
    counts = {w: {"v1": Counts(0, 60_000), "v2": Counts(30, 300)} for w in canaried.canary.windows}
    versions = judge_versions(canaried.canary, canaried.error_budget, counts, {"v1": 1e6})
    return [
        policy.evaluate(slo, observations, at),
        policy.failed(other, at, "down", "unavailable"),
        Evaluation(canaried, at, Verdict.HEALTHY, "service", canaries=versions),
    ]


CANARY = """
version: budgetguard/v1
service: checkout
slos:
  - name: canary
    objective: 99.9
    sli:
      events:
        error_query: sum by (version) (rate(http_requests_total{code=~"5.."}[{{.window}}]))
        total_query: sum by (version) (rate(http_requests_total[{{.window}}]))
    canary: {label: version, windows: [1m]}
"""


@pytest.fixture(scope="module")
def exported() -> frozenset[str]:
    """Every sample name of a real exposition, histogram _bucket/_count/_sum included."""
    exporter = Exporter(_ListView(_evaluations()), version=__version__, health=_Health())
    exporter.observe_cycle(0.5, 2)
    exporter.count_source_error("unavailable")
    exporter.count_delivery("abort-checkout", "failed")
    body, _ = exporter.render()
    names = frozenset(s.name for f in text_string_to_metric_families(body.decode()) for s in f.samples)
    assert "budgetguard_slo_time_to_exhaustion_seconds" in names  # the fixture exercises every series
    return names


class _ListView:
    def __init__(self, evaluations: list[Evaluation]) -> None:
        self._evaluations = evaluations

    def latest_evaluations(self) -> list[Evaluation]:
        return self._evaluations

    def config_errors(self) -> int:
        return 0


class _Health:
    """A daemon's health with one of everything, so every health series is exported."""

    def open_incidents(self) -> dict[tuple[str, str], int]:
        return {("checkout", "availability"): 1}

    def paused(self) -> list[tuple[str, str]]:
        return [("checkout", "availability")]

    def store_problem(self) -> str | None:
        return None

    def config_file_problems(self) -> int:
        return 0


def unknown_metrics(expr: str, exported: frozenset[str]) -> list[str]:
    return sorted(metric_names(expr) - exported)


# --- alert rules ----------------------------------------------------------------------------------


def _alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


@pytest.mark.e2e  # runs promtool or starts a real Prometheus/VictoriaMetrics
def test_promtool_check_rules_accepts_the_alert_rules() -> None:
    result = promtool("check", "rules", "--lint-fatal", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 14 rules found" in result.stdout


@pytest.mark.e2e  # runs promtool or starts a real Prometheus/VictoriaMetrics
def test_promtool_test_rules_passes_the_alert_unit_tests() -> None:
    result = promtool("test", "rules", ALERT_TESTS.name, cwd=ALERT_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_unit_tested_firing_and_silent() -> None:
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    cases = [case for group in tests for case in group.get("alert_rule_test", [])]
    for alert in {rule["alert"] for rule in _alert_rules()}:
        outcomes = {bool(case["exp_alerts"]) for case in cases if case["alertname"] == alert}
        assert outcomes == {True, False}, f"{alert}: needs a case where it fires and one where it does not"


def test_the_alert_rules_use_only_metrics_the_exporter_exports(exported: frozenset[str]) -> None:
    problems = {
        rule["alert"]: unknown
        for rule in _alert_rules()
        if (unknown := unknown_metrics(rule["expr"], exported))
    }
    assert not problems, f"alert rules use metrics budgetguard does not export: {problems}"


def test_every_alert_has_a_severity_a_summary_a_description_and_a_runbook_hint() -> None:
    rules = _alert_rules()
    assert {rule["alert"] for rule in rules} == {
        "BudgetguardSLOBurning",
        "BudgetguardSLOWarning",
        "BudgetguardErrorBudgetExhausted",
        "BudgetguardEvaluationsStale",
        "BudgetguardSourceErrors",
        "BudgetguardConfigErrors",
        # issue 13: the guard's own failures
        "BudgetguardDeliveryGivenUp",
        "BudgetguardDeliveriesFailing",
        "BudgetguardCanaryIncidentOpen",
        "BudgetguardCanaryBurning",
        "BudgetguardSourceDown",
        "BudgetguardStoreNotWritable",
        "BudgetguardConfigFileRefused",
        # issue 14: the cycle worker process
        "BudgetguardCycleWorkerFailing",
    }
    for rule in rules:
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]
        assert "for" in rule, f"{rule['alert']}: state its `for`, even 0m, with the reason"


# --- the dashboard --------------------------------------------------------------------------------


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # rows, collapsed or not


def _substitute(text: str, where: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        assert name in VARIABLES, f"{where}: unknown template variable ${name} in {text!r}"
        return VARIABLES[name]

    return _VARIABLE.sub(value, text)


def _queries() -> list[tuple[str, str]]:
    """(where, PromQL with variables substituted) for every panel target."""
    out = []
    for panel in _panels(_dashboard()["panels"]):
        for target in panel.get("targets", []):
            where = f"panel {panel.get('id')} {panel.get('title')!r}, query {target.get('refId')}"
            out.append((where, _substitute(target["expr"], where)))
    return out


@pytest.mark.e2e  # runs promtool or starts a real Prometheus/VictoriaMetrics
def test_every_panel_query_parses_as_promql(tmp_path: Path) -> None:
    queries = _queries()
    assert len(queries) >= 10
    rules = [{"record": f"dashboard:query_{n}", "expr": expr} for n, (_, expr) in enumerate(queries)]
    rule_file = tmp_path / "dashboard-queries.yaml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", str(rule_file))
    index = "\n".join(f"dashboard:query_{n} = {where}" for n, (where, _) in enumerate(queries))
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\nwhich query is which:\n{index}"


def test_every_panel_query_uses_only_metrics_the_exporter_exports(exported: frozenset[str]) -> None:
    problems = [
        f"{where} uses {', '.join(unknown)}"
        for where, expr in _queries()
        if (unknown := unknown_metrics(expr, exported))
    ]
    assert not problems, "dashboard queries use metrics budgetguard does not export:\n" + "\n".join(problems)


def test_the_template_variables_read_labels_of_exported_metrics(exported: frozenset[str]) -> None:
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["service"]["query"] == "label_values(budgetguard_slo_info, service)"
    assert variables["slo"]["query"] == 'label_values(budgetguard_slo_info{service=~"$service"}, slo)'
    for name in ("service", "slo"):
        assert variables[name]["datasource"] == DATASOURCE
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variables[name]["query"])
        assert match, variables[name]["query"]
        selector = _substitute(match.group(1), f"variable {name}")
        assert not unknown_metrics(selector, exported), f"variable {name}: {selector}"


def test_every_panel_has_a_title_and_reads_the_datasource_variable() -> None:
    dashboard = _dashboard()
    assert 36 <= dashboard["schemaVersion"] <= 41
    for panel in _panels(dashboard["panels"]):
        assert panel.get("title"), f"panel {panel.get('id')} has no title"
        if panel["type"] == "row":
            continue  # a row groups panels and queries nothing
        assert panel.get("datasource") == DATASOURCE, panel["title"]
        assert panel.get("targets"), f"{panel['title']}: no query"
        for target in panel["targets"]:
            assert target.get("datasource", DATASOURCE) == DATASOURCE, panel["title"]


def test_the_dashboard_has_the_panels_the_operators_need() -> None:
    panels = [p for p in _panels(_dashboard()["panels"]) if p["type"] != "row"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"

    def using(metric: str) -> set[str]:
        return {
            p["type"]
            for p in panels
            for t in p["targets"]
            if metric in metric_names(_substitute(t["expr"], ""))
        }

    assert using("budgetguard_slo_error_budget_remaining_ratio") >= {"stat", "timeseries"}
    assert "state-timeline" in using("budgetguard_slo_verdict")
    for metric in (
        "budgetguard_slo_burn_rate",
        "budgetguard_slo_tier_burn_rate_threshold",
        "budgetguard_slo_time_to_exhaustion_seconds",
        "budgetguard_slo_window_events",
        "budgetguard_evaluation_duration_seconds_bucket",
        "budgetguard_source_errors_total",
    ):
        assert "timeseries" in using(metric), metric
    assert "stat" in using("budgetguard_last_evaluation_timestamp_seconds")
    assert "stat" in using("budgetguard_slo_config_errors")
    # issue 13: deliveries failed or given up, incidents open, canaries burning, the source failing,
    # the store failing, config errors, pauses
    assert "timeseries" in using("budgetguard_action_deliveries_total")
    for metric in (
        "budgetguard_canary_incidents_open",
        "budgetguard_slo_canary_verdict",
        "budgetguard_source_up",
        "budgetguard_store_writable",
        "budgetguard_config_errors",
        "budgetguard_canary_guard_paused",
    ):
        assert "stat" in using(metric), metric
    burn = next(p for p in panels if any("budgetguard_slo_burn_rate" in t["expr"] for t in p["targets"]))
    thresholds = {t["refId"] for t in burn["targets"] if "tier_burn_rate_threshold" in t["expr"]}
    dashed = [
        o
        for o in burn["fieldConfig"]["overrides"]
        if o["matcher"] == {"id": "byFrameRefID", "options": next(iter(thresholds))}
        and {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}} in o["properties"]
    ]
    assert dashed, "the tier thresholds are drawn dashed on the burn-rate panel"


def test_the_canary_example_loads_with_the_actions_its_config_declares(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    examples = Path(__file__).resolve().parent.parent / "deploy" / "examples"
    assert (
        main(["check", str(examples / "canary.yaml"), "--config", str(examples / "config.yaml")], out, err)
        == 0
    )
    broken = tmp_path / "config.yaml"
    broken.write_text((examples / "config.yaml").read_text().replace("abort-checkout:", "abort-other:"))
    assert main(["check", str(examples / "canary.yaml"), "--config", str(broken)], out, err) == 2
    assert "action 'abort-checkout' is not declared" in err.getvalue()
