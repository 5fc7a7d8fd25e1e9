"""`budgetguard rules --labels sloth`: Sloth's series names and labels beside budgetguard's, so dashboards
built for Sloth's rules read budgetguard's numbers unchanged (issue 15).

promtool evaluates the generated rules on synthetic counters; the Sloth-named series must carry Sloth's
labels and the values budgetguard's own series have, and the SLO-window ratio stays request-weighted.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.test_rules import generate, promtool, run_promtool_suite

SLO_TEXT = """\
version: prometheus/v1
service: search
labels:
  owner: discovery
slos:
  - name: requests-availability
    objective: 99.9
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="search",code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="search"}[{{.window}}]))
    alerting:
      name: SearchAvailability
"""

SLOTH_NAMES = {
    "slo:objective:ratio",
    "slo:error_budget:ratio",
    "slo:time_period:days",
    "slo:current_burn_rate:ratio",
    "slo:period_burn_rate:ratio",
    "slo:period_error_budget_remaining:ratio",
    "sloth_slo_info",
}
IDENTITY = {
    "sloth_id": "search-requests-availability",
    "sloth_service": "search",
    "sloth_slo": "requests-availability",
    "owner": "discovery",
}


def records(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["record"]: r for group in document["groups"] for r in group["rules"] if "record" in r}


def test_sloth_labels_add_every_series_sloths_dashboards_read_and_keep_budgetguards(tmp_path: Path) -> None:
    path, document = generate(tmp_path, SLO_TEXT, "--labels", "sloth")
    recorded = records(document)
    assert set(recorded) >= SLOTH_NAMES
    windows = {"5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"}
    assert {f"slo:sli_error:ratio_rate{w}" for w in windows} <= set(recorded)
    assert {f"budgetguard:slo_error_ratio:rate{w}" for w in windows} <= set(recorded)
    for name in SLOTH_NAMES | {f"slo:sli_error:ratio_rate{w}" for w in windows}:
        assert IDENTITY.items() <= recorded[name]["labels"].items(), name
    assert recorded["slo:sli_error:ratio_rate1h"]["labels"]["sloth_window"] == "1h"
    assert recorded["sloth_slo_info"]["labels"]["sloth_objective"] == "99.9"
    result = promtool("check", "rules", "--lint-fatal", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_without_the_option_no_sloth_series_are_written(tmp_path: Path) -> None:
    _, document = generate(tmp_path, SLO_TEXT)
    assert not [name for name in records(document) if name.startswith(("slo:", "sloth"))]


def _counter(labels: str, per_minute: float, minutes: int) -> dict[str, str]:
    return {"series": labels, "values": f"0+{per_minute:g}x{minutes}"}


def test_promtool_reads_sloths_names_with_budgetguards_values(tmp_path: Path) -> None:
    generate(tmp_path, SLO_TEXT, "--labels", "sloth")
    # 10 requests/s, 0.01 errors/s: a 0.1% error ratio, exactly the 99.9% budget: burn 1, nothing left.
    minutes = 120
    series = [
        _counter('http_requests_total{job="search",code="200"}', 599.4, minutes),
        _counter('http_requests_total{job="search",code="500"}', 0.6, minutes),
    ]
    full = {**IDENTITY, "budgetguard_service": "search", "budgetguard_slo": "requests-availability"}
    expect = [
        ("slo:sli_error:ratio_rate5m", {**full, "sloth_window": "5m"}, 0.001),
        ("slo:sli_error:ratio_rate30d", {**full, "sloth_window": "30d"}, 0.001),
        ("slo:error_budget:ratio", IDENTITY, 0.001),
        ("slo:objective:ratio", IDENTITY, 0.999),
        ("slo:time_period:days", IDENTITY, 30),
        # As in Sloth's rules, the burn rates keep the window label of the ratio they divide.
        ("slo:current_burn_rate:ratio", {**full, "sloth_window": "5m"}, 1),
        ("slo:period_burn_rate:ratio", {**full, "sloth_window": "30d"}, 1),
        ("slo:period_error_budget_remaining:ratio", {**full, "sloth_window": "30d"}, 0),
    ]
    tests = [
        {
            "interval": "1m",
            "input_series": series,
            "promql_expr_test": [
                {
                    "expr": f"round({name}, 0.000001)",
                    "eval_time": "1h",
                    "exp_samples": [
                        {
                            "labels": "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}",
                            "value": value,
                        }
                    ],
                }
                for name, labels, value in expect
            ],
        }
    ]
    run_promtool_suite(tmp_path, timedelta(minutes=1), tests)
