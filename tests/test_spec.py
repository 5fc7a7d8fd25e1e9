"""SLO files: what loads, what is refused, and how every refusal names file, line, SLO, field and fix."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from fractions import Fraction
from pathlib import Path

import pytest

from budgetguard.cli import main
from budgetguard.loader import load_paths, load_text
from tests.helpers import slo_from, slos_from

REPO = Path(__file__).resolve().parent.parent


def problems_of(text: str) -> list[str]:
    slos, problems = load_text(textwrap.dedent(text), "slos/bad.yaml")
    assert not slos
    assert problems
    return [str(p) for p in problems]


def test_the_shipped_examples_are_valid() -> None:
    loaded = load_paths([REPO / "slos"])
    assert loaded.ok, [str(p) for p in loaded.problems]
    ids = {s.id for s in loaded.slos}
    assert {
        "checkout/requests-availability",
        "checkout/requests-latency",
        "search/requests-availability",
        "search/requests-not-found",
    } <= ids


def test_a_sloth_getting_started_file_loads_unchanged() -> None:
    # Sloth's examples/getting-started.yml shape, prometheus/v1, both placeholder spellings.
    slo = slo_from(
        """
        version: "prometheus/v1"
        service: "myservice"
        labels:
          owner: "myteam"
          repo: "myorg/myservice"
          tier: "2"
        slos:
          - name: "requests-availability"
            objective: 99.9
            description: "Common SLO based on availability for HTTP request responses."
            labels:
              category: availability
            sli:
              events:
                error_query: sum(rate(http_request_duration_seconds_count{job="myservice",code=~"(5..|429)"}[{{.window}}]))
                total_query: sum(rate(http_request_duration_seconds_count{job="myservice"}[{{ .window }}]))
            alerting:
              name: MyServiceHighErrorRate
              labels:
                category: "availability"
              annotations:
                summary: "High error rate on 'myservice' requests responses"
              page_alert:
                labels:
                  severity: pageteam
                  routing_key: myteam
              ticket_alert:
                labels:
                  severity: "slack"
                  slack_channel: "#alerts-myteam"
        """
    )
    assert slo.id == "myservice/requests-availability"
    assert slo.window == timedelta(days=30)
    assert slo.labels == {
        "owner": "myteam",
        "repo": "myorg/myservice",
        "tier": "2",
        "category": "availability",
    }
    assert slo.alerting is not None and slo.alerting.page_alert.labels["routing_key"] == "myteam"


def test_objective_99_9_gives_exactly_one_thousandth() -> None:
    assert slo_from().error_budget == Fraction(1, 1000)
    assert slo_from().objective_ratio == Fraction(999, 1000)


def test_native_additions_window_tiers_min_events_and_latency() -> None:
    slo = slo_from(
        """
        version: budgetguard/v1
        service: api
        slos:
          - name: latency
            objective: 99.5
            window: 7d
            min_events: 20
            tiers:
              - {severity: page, long_window: 1h, short_window: 5m, budget_percent: 2}
              - {severity: ticket, long_window: 1d, short_window: 2h, burn_rate: 2.5}
            sli:
              latency:
                metric: http_request_duration_seconds
                selector: '{job="api"}'
                threshold_seconds: 0.25
        """
    )
    assert slo.window == timedelta(days=7)
    assert slo.min_events == 20
    assert [t.burn_rate for t in slo.tiers] == pytest.approx([0.02 * 168, 2.5])
    assert slo.tiers[1].budget_fraction == pytest.approx(2.5 / 7)
    assert slo.sli.latency is not None and slo.sli.latency.selector == 'job="api"'
    assert slo.windows() == (
        timedelta(minutes=5),
        timedelta(hours=1),
        timedelta(hours=2),
        timedelta(days=1),
        timedelta(days=7),
    )


BASE = """
version: budgetguard/v1
service: checkout
slos:
  - name: availability
    objective: {objective}
    sli:
      events:
        error_query: {error_query}
        total_query: sum(rate(http_requests_total[{{{{.window}}}}]))
"""


@pytest.mark.parametrize(
    ("objective", "error_query", "fragments"),
    [
        pytest.param(
            "100",
            "sum(rate(e[{{.window}}]))",
            ["slos[0].objective", "strictly between 0 and 100", ":6"],
            id="an objective of 100 is refused because it leaves no budget",
        ),
        pytest.param(
            "0",
            "sum(rate(e[{{.window}}]))",
            ["strictly between 0 and 100"],
            id="an objective of 0 is refused",
        ),
        pytest.param(
            "'high'",
            "sum(rate(e[{{.window}}]))",
            ["slos[0].objective", "write a number"],
            id="a non-numeric objective says to write a number",
        ),
        pytest.param(
            "99.9",
            "sum(rate(e[5m]))",
            ["slos[0].sli.events.error_query", "{{.window}}", ":9"],
            id="a query without the window placeholder is refused with an example",
        ),
    ],
)
def test_field_errors_name_file_line_slo_field_and_fix(
    objective: str, error_query: str, fragments: list[str]
) -> None:
    messages = problems_of(BASE.format(objective=objective, error_query=error_query))
    assert len(messages) == 1
    text = messages[0]
    assert text.startswith("slos/bad.yaml:")
    assert "slo 'availability'" in text
    for fragment in fragments:
        assert fragment in text


def test_an_unknown_field_lists_the_allowed_ones() -> None:
    [text] = problems_of(
        """
        version: budgetguard/v1
        service: checkout
        slos:
          - name: availability
            objective: 99.9
            objectve: 99.9
            sli:
              raw: {error_ratio_query: 'x[{{.window}}]'}
        """
    )
    assert "slos/bad.yaml:7" in text and "unknown field 'objectve'" in text
    assert "allowed here: name, objective" in text


def test_every_problem_is_listed_not_only_the_first() -> None:
    messages = problems_of(
        """
        version: budgetguard/v1
        service: checkout
        slos:
          - name: a
            objective: 120
            sli: {raw: {error_ratio_query: 'x'}}
          - name: b
            objective: 99
            sli: {}
        """
    )
    assert len(messages) == 3
    assert any("slo 'a'" in m and "objective" in m for m in messages)
    assert any("slo 'a'" in m and "error_ratio_query" in m for m in messages)
    assert any("slo 'b'" in m and "exactly one SLI kind" in m for m in messages)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param(
            "version: budgetguard/v2\nservice: a\nslos: []\n",
            "unknown version 'budgetguard/v2'",
            id="an unknown version says which versions exist",
        ),
        pytest.param("service: a\nslos: []\n", "'version' field is missing", id="a missing version is named"),
        pytest.param("version: budgetguard/v1\nservice: a\nslos: [\n", "not valid YAML", id="broken YAML"),
        pytest.param("- a\n- b\n", "must be a mapping", id="a list instead of a mapping"),
        pytest.param(
            "version: prometheus/v1\nservice: a\nslos:\n- name: x\n  objective: 99\n  window: 7d\n"
            "  sli: {raw: {error_ratio_query: 'q[{{.window}}]'}}\n",
            "'window' is a budgetguard/v1 addition",
            id="native fields in a Sloth file would break Sloth",
        ),
        pytest.param(
            "version: prometheus/v1\nservice: a\nslos:\n- name: x\n  objective: 99\n"
            "  sli: {plugin: {id: sloth-common/kubernetes/apiserver/availability}}\n",
            "SLI plugins",
            id="Sloth SLI plugins are refused with the way out",
        ),
        pytest.param(
            "version: budgetguard/v1\nservice: a\nslos:\n- name: x\n  objective: 99\n  window: 30m\n"
            "  sli: {raw: {error_ratio_query: 'q[{{.window}}]'}}\n",
            "no default burn-rate tier fits",
            id="a window too short for any tier asks for tiers",
        ),
        pytest.param(
            "version: budgetguard/v1\nservice: a\nslos:\n- name: x\n  objective: 99\n  window: 1d\n"
            "  tiers: [{severity: page, long_window: 3d, short_window: 1h, burn_rate: 2}]\n"
            "  sli: {raw: {error_ratio_query: 'q[{{.window}}]'}}\n",
            "longer than the SLO window",
            id="a tier longer than the SLO window",
        ),
        pytest.param(
            "version: budgetguard/v1\nservice: a\nslos:\n- name: x\n  objective: 99\n"
            "  tiers: [{severity: page, long_window: 1h, short_window: 5m}]\n"
            "  sli: {raw: {error_ratio_query: 'q[{{.window}}]'}}\n",
            "exactly one of burn_rate",
            id="a tier without a threshold",
        ),
        pytest.param(
            "version: budgetguard/v1\nservice: a\nslos:\n- name: x\n  objective: 99\n  labels: {Bad-Label: v}\n"
            "  sli: {raw: {error_ratio_query: 'q[{{.window}}]'}}\n",
            "not a valid Prometheus label name",
            id="label names must be Prometheus label names",
        ),
        pytest.param(
            "version: budgetguard/v1\nservice: a\nslos:\n- name: x\n  objective: 99\n"
            "  sli: {latency: {metric: h_bucket, threshold_seconds: 0.5}}\n",
            "base name without '_bucket'",
            id="a latency SLI wants the histogram's base name",
        ),
        pytest.param(
            "version: budgetguard/v1\nservice: a\nslos:\n- name: x\n  objective: 99\n"
            "  sli: {latency: {metric: h, selector: 'le=\"0.5\"', threshold_seconds: 0.5}}\n",
            "do not match on 'le'",
            id="a latency selector must not pick the bucket itself",
        ),
        pytest.param(
            "version: budgetguard/v1\nservice: a\nslos:\n- name: x\n  objective: 99\n  window: 5x\n"
            "  sli: {raw: {error_ratio_query: 'q[{{.window}}]'}}\n",
            "not a Prometheus duration",
            id="a window must be a Prometheus duration",
        ),
    ],
)
def test_file_level_problems(text: str, fragment: str) -> None:
    messages = problems_of(text)
    assert any(fragment in m for m in messages), messages
    assert all(m.startswith("slos/bad.yaml") for m in messages)


def test_duplicate_ids_across_files_are_reported(tmp_path: Path) -> None:
    text = textwrap.dedent(BASE.format(objective="99.9", error_query="sum(rate(e[{{.window}}]))"))
    (tmp_path / "a.yaml").write_text(text)
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "b.yml").write_text(text)
    (tmp_path / "notes.txt").write_text("not an SLO file")
    loaded = load_paths([tmp_path])
    assert len(loaded.files) == 2
    assert [p.message for p in loaded.problems] == [
        f"SLO id 'checkout/availability' is declared twice (also in {tmp_path / 'a.yaml'})"
    ]


def test_several_documents_in_one_file() -> None:
    one = textwrap.dedent(BASE.format(objective="99.9", error_query="sum(rate(e[{{.window}}]))"))
    slos = slos_from(one + "---\n" + one.replace("service: checkout", "service: cart"))
    assert [s.id for s in slos] == ["checkout/availability", "cart/availability"]


def test_check_command_exit_codes_and_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(REPO / "slos")]) == 0
    assert "all valid" in capsys.readouterr().out

    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent(BASE.format(objective="101", error_query="sum(rate(e[5m]))")))
    assert main(["check", str(REPO / "slos"), str(bad), str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:6: slo 'availability': field 'slos[0].objective'" in err
    assert "missing.yaml: no such file or directory" in err
    assert "3 problem(s)" in err
