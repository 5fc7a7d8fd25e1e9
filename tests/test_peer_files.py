"""Files written the way the peers write them load as the peers read them (issue 15).

Each fixture under tests/fixtures/peers follows a layout from a peer's documentation or examples (Sloth's
no-alerts example, OpenSLO's list layout, Pyrra's filesystem mode). A test here pins what that file
MEANS, so a change in how budgetguard reads a peer's file fails here, not in a user's pipeline.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml

from budgetguard.cli import main
from budgetguard.loader import load_paths, load_text

PEERS = Path(__file__).resolve().parent / "fixtures" / "peers"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def rules_of(path: Path) -> list[dict[str, object]]:
    code, out, err = run("rules", str(path))
    assert code == 0, err
    return [rule for group in yaml.safe_load(out)["groups"] for rule in group["rules"]]


# --- Sloth prometheus/v1 ------------------------------------------------------------------------------


def test_a_sloth_file_whose_alerts_are_all_disabled_needs_no_alert_name() -> None:
    result = load_paths([PEERS / "sloth-no-alerts.yml"])
    assert result.ok, [str(p) for p in result.problems]
    assert sorted(slo.id for slo in result.slos) == [
        "myservice/requests-availability",
        "myservice/requests-latency",
    ]
    rules = rules_of(PEERS / "sloth-no-alerts.yml")
    assert rules and not [r for r in rules if "alert" in r]  # recordings only, as Sloth generates


def test_an_enabled_alert_without_a_name_is_refused_naming_the_field_and_the_fix() -> None:
    text = (
        (PEERS / "sloth-no-alerts.yml")
        .read_text()
        .replace("        disable: true\n", "        disable: false\n", 1)
    )
    slos, problems = load_text(text, "sloth.yml")
    assert not slos
    assert len(problems) == 1
    message = str(problems[0])
    assert "sloth.yml:" in message and "alerting" in message
    assert "alerting.name is required while page_alert or ticket_alert is enabled" in message
    assert "disable both" in message


def test_label_values_that_are_not_strings_are_read_as_sloth_reads_them() -> None:
    slo = next(
        s for s in load_paths([PEERS / "sloth-no-alerts.yml"]).slos if s.name == "requests-availability"
    )
    assert slo.labels["tier"] == "2"
    assert slo.labels["critical"] == "true"
    assert slo.labels["version"] == "3"
    assert slo.labels["owner"] == "myteam"


def test_convert_prints_a_sloth_file_as_the_native_document_that_loads_to_the_same_slos(
    tmp_path: Path,
) -> None:
    code, out, err = run("convert", str(PEERS / "sloth-no-alerts.yml"))
    assert code == 0, err
    assert "version: budgetguard/v1" in out and "prometheus/v1" in out.split("\n", 2)[1]
    converted = tmp_path / "converted.yaml"
    converted.write_text(out)
    before = load_paths([PEERS / "sloth-no-alerts.yml"]).slos
    after = load_paths([converted]).slos
    assert [s.model_dump(exclude={"source"}) for s in after] == [
        s.model_dump(exclude={"source"}) for s in before
    ]


# --- OpenSLO ------------------------------------------------------------------------------------------


def test_openslo_objects_written_as_a_yaml_list_load_like_the_same_objects_as_documents() -> None:
    as_list = load_paths([PEERS / "openslo-list.yaml"])
    as_documents = load_paths([PEERS / "openslo-documents.yaml"])
    assert as_list.ok and as_documents.ok, [str(p) for p in as_list.problems + as_documents.problems]
    assert [s.id for s in as_list.slos] == ["web/web-availability"]
    assert [s.model_dump(exclude={"source"}) for s in as_list.slos] == [
        s.model_dump(exclude={"source"}) for s in as_documents.slos
    ]


def test_a_problem_inside_a_yaml_list_names_the_line_of_the_item() -> None:
    text = (PEERS / "openslo-list.yaml").read_text().replace("target: 0.995", "target: 1.5")
    _, problems = load_text(text, "list.yaml")
    assert problems
    line = text.splitlines().index("      - displayName: good") + 1
    assert any(p.line is not None and line <= p.line <= line + 1 for p in problems), [
        str(p) for p in problems
    ]


# --- Pyrra --------------------------------------------------------------------------------------------


def test_a_pyrra_file_without_a_namespace_loads_into_the_default_namespace_with_a_note() -> None:
    result = load_paths([PEERS / "pyrra-no-namespace.yaml"])
    assert result.ok, [str(p) for p in result.problems]
    assert [s.id for s in result.slos] == ["default/pyrra-api-errors"]
    assert any("no metadata.namespace" in str(n) and "'default'" in str(n) for n in result.notes)


def test_pyrra_files_get_pyrras_burn_rate_alerts_unless_they_turn_them_off(tmp_path: Path) -> None:
    alerts = [r for r in rules_of(PEERS / "pyrra-no-namespace.yaml") if "alert" in r]
    assert sorted((a["alert"], a["labels"]["severity"]) for a in alerts) == [  # type: ignore[index]
        ("ErrorBudgetBurn", "critical"),
        ("ErrorBudgetBurn", "warning"),
    ]
    off = tmp_path / "off.yaml"
    off.write_text((PEERS / "pyrra-no-namespace.yaml").read_text() + "  alerting:\n    burnrates: false\n")
    assert not [r for r in rules_of(off) if "alert" in r]


@pytest.mark.parametrize(
    ("alerting", "severities"),
    [
        pytest.param(
            "    name: APIBudgetBurn\n", ("critical", "warning"), id="a renamed alert keeps the severities"
        ),
        pytest.param(
            "    severities: {fastBurn: page, mediumBurn: page, slowBurn: ticket, longTermBurn: ticket}\n",
            ("page", "ticket"),
            id="custom severities label the two alerts",
        ),
    ],
)
def test_pyrra_alerting_settings_shape_the_generated_alerts(
    tmp_path: Path, alerting: str, severities: tuple[str, str]
) -> None:
    path = tmp_path / "slo.yaml"
    path.write_text((PEERS / "pyrra-no-namespace.yaml").read_text() + "  alerting:\n" + alerting)
    alerts = [r for r in rules_of(path) if "alert" in r]
    assert sorted(a["labels"]["severity"] for a in alerts) == sorted(severities)  # type: ignore[index]
    if "name:" in alerting:
        assert {a["alert"] for a in alerts} == {"APIBudgetBurn"}
