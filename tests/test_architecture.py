"""The import contracts hold today, and break for the violations they exist to catch.

The contracts in pyproject.toml are written with wildcards and an exhaustive layers list so that a
module written tomorrow is covered the day it is written; these tests copy the package, add such a
module or import, and check that ``lint-imports`` refuses it, so a contract that can no longer fail
fails here instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


@pytest.fixture(scope="module")
def copy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    shutil.copytree(ROOT / "budgetguard", root / "budgetguard", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root), "COLUMNS": "400"}  # one line per contract
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def with_change(copy_root: Path, tmp_path: Path, relative: str, text: str) -> Path:
    root = tmp_path / "tree"
    shutil.copytree(copy_root, root)
    target = root / relative
    target.write_text(target.read_text() + text if target.exists() else text)
    return root


def test_the_tree_keeps_every_contract() -> None:
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("relative", "text", "broken"),
    [
        pytest.param(
            "budgetguard/outbox.py",
            "\nimport apscheduler, prometheus_client, starlette  # noqa\n",
            ["apscheduler lives in", "prometheus_client lives in", "starlette lives in"],
            id="a shell module importing libraries another layer owns breaks their contracts",
        ),
        pytest.param(
            "budgetguard/cycle_helper.py",
            '"""A module nobody gave a layer."""\n',
            ["Layers:"],
            id="a new top-level module without a layer breaks the exhaustive layers contract",
        ),
        pytest.param(
            "budgetguard/core/new_math.py",
            '"""A new pure module."""\nimport httpx  # noqa\n',
            ["The core does no I/O", "httpx lives in"],
            id="a new core module importing httpx breaks the core and httpx contracts",
        ),
        pytest.param(
            "budgetguard/core/spec.py",
            "\nfrom budgetguard import store  # noqa\n",
            ["Layers:"],
            id="the core importing an adapter breaks the layers contract",
        ),
        pytest.param(
            "budgetguard/store/extra.py",
            '"""An adapter module."""\nfrom budgetguard import sources  # noqa\n',
            ["Layers:"],
            id="one adapter importing another breaks the layers contract",
        ),
    ],
)
def test_a_violation_breaks_its_contract(
    copy_root: Path, tmp_path: Path, relative: str, text: str, broken: list[str]
) -> None:
    result = lint(with_change(copy_root, tmp_path, relative, text))
    assert result.returncode != 0, result.stdout
    for name in broken:
        verdicts = [
            line
            for line in result.stdout.splitlines()
            if line.startswith(name) and (" KEPT" in line or " BROKEN" in line)
        ]
        assert len(verdicts) == 1, f"{name!r} not reported once:\n{result.stdout}"
        assert " BROKEN" in verdicts[0], result.stdout
