"""What `budgetguard --help`, `gate` and `check` import (#14): only what each needs, so a CI job that runs
them once pays for no web server, HTTP client, database or (for --help and gate) pydantic and YAML.

Measured by the modules a fresh interpreter holds after the command, never by timing it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from budgetguard import loader
from budgetguard.cli.commands import rules as rules_command
from budgetguard.core import rules

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("pydantic", "yaml", "httpx", "starlette", "uvicorn", "sqlite3", "prometheus_client", "apscheduler")


def imported_by(*argv: str, cwd: Path) -> set[str]:
    """The heavy top-level modules a fresh interpreter has imported after ``budgetguard ARGV`` run in
    ``cwd`` (where no ./budgetguard.yaml is, unless the test puts one there)."""
    script = textwrap.dedent(
        f"""
        import io, json, sys
        from budgetguard.cli import main
        main({list(argv)!r}, io.StringIO(), io.StringIO())
        print(json.dumps(sorted({{name.partition(".")[0] for name in sys.modules}} & set({HEAVY!r}))))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=60, check=True
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_help_imports_nothing_heavy(tmp_path: Path) -> None:
    assert imported_by("--help", cwd=tmp_path) == set()


def test_gate_imports_nothing_heavy(tmp_path: Path) -> None:
    # nothing listens there: the gate answers "no verdict" (exit 3) after one refused connection
    url = f"http://127.0.0.1:{unused_port()}"
    assert imported_by("gate", "checkout", "--url", url, cwd=tmp_path) == set()


def test_check_without_settings_to_read_imports_the_slo_model_and_yaml_only(tmp_path: Path) -> None:
    slo = tmp_path / "checkout.yaml"
    slo.write_text((REPO / "slos" / "checkout.yaml").read_text())
    assert imported_by("check", str(slo), cwd=tmp_path) == {"pydantic", "yaml"}


def test_check_with_a_config_file_reads_its_actions(tmp_path: Path) -> None:
    slo = tmp_path / "checkout.yaml"
    slo.write_text((REPO / "slos" / "checkout-canary.yaml").read_text())
    config = tmp_path / "budgetguard.yaml"
    config.write_text("actions: {}\n")
    done = subprocess.run(
        [sys.executable, "-m", "budgetguard", "check", "--config", str(config), str(slo)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # The canary names actions this config does not declare: the config was read, not skipped.
    assert done.returncode == 2, done.stdout + done.stderr
    assert "is not declared in the config file's actions" in done.stderr


def test_the_rules_parser_spells_the_generators_formats_and_default_interval() -> None:
    assert tuple(f.value for f in rules.RuleFormat) == rules_command.FORMATS
    assert rules_command.DEFAULT_INTERVAL == rules.DEFAULT_INTERVAL


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML without libyaml")
def test_slo_files_are_parsed_by_libyaml_and_problems_keep_their_lines() -> None:
    assert loader._Loader is yaml.CSafeLoader
    text = "version: budgetguard/v1\nservice: checkout\nslos:\n  - name: a\n    objective: 120\n"
    _, problems = loader.load_text(text, "checkout.yaml")
    assert sorted((p.line, p.field) for p in problems) == [(4, "slos[0].sli"), (5, "slos[0].objective")]
