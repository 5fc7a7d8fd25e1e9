"""`budgetguard history` reads what the daemon stored; and the daemon's exposure warning."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from budgetguard.cli import main
from budgetguard.core.policy import Observation, evaluate
from budgetguard.daemon import exposure_warning
from budgetguard.logs import configure_logging
from budgetguard.store import Store
from tests.helpers import slo_from

SLO = slo_from()


def stored(tmp_path: Path) -> Path:
    db = tmp_path / "bg.db"
    now = datetime.now(tz=UTC).replace(microsecond=0)
    with Store(db) as store:
        for minutes, ratio in ((30, 0.0005), (20, 0.02), (10, 0.0005)):
            observations = {w: Observation(w, ratio, 1e4) for w in SLO.windows()}
            store.record_cycle([evaluate(SLO, observations, now - timedelta(minutes=minutes))])
        old = {w: Observation(w, 0.0, 1e4) for w in SLO.windows()}
        store.record_cycle([evaluate(SLO, old, now - timedelta(days=3))])
    return db


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(["history", *args], stdout=out, stderr=err), out.getvalue(), err.getvalue()


def test_history_prints_evaluations_and_verdict_changes(tmp_path: Path) -> None:
    code, out, _ = run("checkout/availability", "--db", str(stored(tmp_path)), "--since", "1h")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["TIME", "VERDICT", "BUDGET", "LEFT"]
    assert [line.split()[1] for line in lines[1:4]] == ["healthy", "burning", "healthy"]
    assert "verdict changes:" in out
    assert "healthy -> burning" in out and "burning -> healthy" in out


def test_history_json_is_the_stored_records_oldest_first(tmp_path: Path) -> None:
    code, out, _ = run("checkout/availability", "--db", str(stored(tmp_path)), "--json", "--since", "7d")
    records = json.loads(out)
    assert code == 0 and len(records) == 4
    assert [r["verdict"] for r in records] == ["healthy", "healthy", "burning", "healthy"]
    assert records == sorted(records, key=lambda r: r["at"])


def test_history_without_a_store_says_so(tmp_path: Path) -> None:
    code, _, err = run("checkout/availability", "--db", str(tmp_path / "none.db"))
    assert code == 2 and "no store" in err


@pytest.mark.parametrize(
    ("host", "token", "warns"),
    [
        pytest.param("127.0.0.1", False, False, id="loopback without a token is fine"),
        pytest.param("::1", False, False, id="IPv6 loopback too"),
        pytest.param("0.0.0.0", False, True, id="all interfaces without a token warns"),
        pytest.param("0.0.0.0", True, False, id="all interfaces with a token is fine"),
    ],
)
def test_binding_beyond_loopback_without_a_token_warns(host: str, token: bool, warns: bool) -> None:
    assert (exposure_warning(host, token) is not None) is warns


def test_json_logs_are_one_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("INFO", as_json=True)
        logging.getLogger("budgetguard").info("reloaded %d SLO(s)", 3)
        logging.getLogger("budgetguard").debug("not shown at INFO")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["message"] == "reloaded 3 SLO(s)"
    assert entry["level"] == "info" and entry["logger"] == "budgetguard"
    assert entry["time"].endswith("+00:00")
