"""The daemon says what is wrong with itself (issue 13): logs by change of state, honest readiness, and
a config file that SIGHUP and the file watch reload.

A real ``budgetguard run`` subprocess with real HTTP. The source is a loopback port where nothing
listens, which is all these need: every cycle finishes (with error verdicts), so readiness, the logs
and reloads can be watched without a Prometheus.
"""

from __future__ import annotations

import signal
import sqlite3
import textwrap
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from tests.test_daemon import SLO_FILE, DaemonProcess, free_port, wait_for

pytestmark = pytest.mark.e2e

CANARY_SLO = """
version: budgetguard/v1
service: shop
slos:
  - name: canary
    objective: 99.9
    sli:
      events:
        error_query: sum by (version) (rate(http_requests_total{code="500"}[{{.window}}]))
        total_query: sum by (version) (rate(http_requests_total[{{.window}}]))
    canary: {label: version, on_burn: [abort-shop]}
"""


@pytest.fixture
def nowhere() -> str:
    """A Prometheus URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    yield started
    for daemon in started:
        daemon.close()


def start(tmp_path: Path, url: str, config: str, daemons: list[DaemonProcess], **env: str) -> DaemonProcess:
    slos = tmp_path / "slos"
    slos.mkdir(exist_ok=True)
    (slos / "checkout.yaml").write_text(textwrap.dedent(SLO_FILE))
    (tmp_path / "config.yaml").write_text(textwrap.dedent(config))
    daemon = DaemonProcess(slos, url, tmp_path / "bg.db", env, config=tmp_path / "config.yaml")
    daemons.append(daemon)
    return daemon


def test_an_unreachable_source_and_the_first_verdict_are_logged_once(
    tmp_path: Path, nowhere: str, daemons: list[DaemonProcess]
) -> None:
    daemon = start(tmp_path, nowhere, "log_min_interval: 1h\n", daemons)
    daemon.wait_ready()
    wait_for(lambda: "fails for every SLO" in daemon.logs(), 10, "the source failure in the log")
    wait_for(lambda: daemon.get("/api/v1/slos").json()["slos"], 10, "a verdict")
    # several cycles (1s interval) later, still one line each
    first = daemon.get("/metrics").text
    wait_for(lambda: daemon.get("/metrics").text != first, 10, "more cycles")
    logs = daemon.logs()
    assert logs.count("fails for every SLO") == 1, logs
    failing = next(line for line in logs.splitlines() if "fails for every SLO" in line)
    assert f"the metrics source {nowhere} fails for every SLO (unavailable)" in failing
    assert "connection refused" in failing.lower() or "cannot reach" in failing
    assert logs.count("checkout/availability: error: ") == 1, logs  # the first verdict, once
    metrics = daemon.metrics()
    assert metrics["budgetguard_source_up"] == [({}, 0.0)]
    assert metrics["budgetguard_store_writable"] == [({}, 1.0)]
    assert daemon.stop() == 0


def test_readiness_is_false_while_the_store_refuses_writes_and_says_why(
    tmp_path: Path, nowhere: str, daemons: list[DaemonProcess]
) -> None:
    daemon = start(tmp_path, nowhere, "log_min_interval: 1s\n", daemons)
    daemon.wait_ready()
    with closing(sqlite3.connect(tmp_path / "bg.db", isolation_level=None, timeout=1)) as other:
        other.execute("BEGIN EXCLUSIVE")  # another process holds the store: no write can commit
        answer = wait_for(
            lambda: (r := daemon.get("/readyz")).status_code == 503 and r.json(), 30, "readiness to drop"
        )
        assert answer["ready"] is False
        assert "refuses writes" in answer["reason"] and "database is locked" in answer["reason"]
        assert "no canary would be halted" in answer["reason"]
        wait_for(lambda: daemon.metrics()["budgetguard_store_writable"] == [({}, 0.0)], 15, "the metric")
        other.execute("ROLLBACK")
    daemon.wait_ready()
    wait_for(lambda: "the store takes writes again" in daemon.logs(), 15, "the recovery in the log")
    assert "the store refuses writes: " in daemon.logs()
    assert daemon.stop() == 0


def test_sighup_reloads_the_config_file_keeps_the_last_good_one_and_names_what_needs_a_restart(
    tmp_path: Path, nowhere: str, daemons: list[DaemonProcess]
) -> None:
    config = tmp_path / "config.yaml"
    daemon = start(tmp_path, nowhere, "log_min_interval: 1s\n", daemons, BUDGETGUARD_RELOAD_POLL="1h")
    daemon.wait_ready()
    slos = tmp_path / "slos"
    (slos / "shop.yaml").write_text(textwrap.dedent(CANARY_SLO))
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: daemon.get("/api/v1/slos").json()["config_problems"], 15, "the undeclared action")
    assert "action 'abort-shop' is not declared" in " ".join(
        daemon.get("/api/v1/slos").json()["config_problems"]
    )

    # a config that cannot be read is refused and the last good one kept
    config.write_text("log_min_interval: 1s\nactions: {abort-shop: {type: nonsense}}\n")
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: "refused, keeping the last good config" in daemon.logs(), 15, "the refusal")
    wait_for(lambda: daemon.metrics()["budgetguard_config_errors"][0][1] >= 1, 10, "the config error metric")

    # declaring the action takes the new SLO; a new API token needs a restart and says so
    config.write_text(
        "log_min_interval: 1s\n"
        "api_token: s3cret\n"
        "actions:\n  abort-shop: {type: webhook, url: 'http://127.0.0.1:9/hook', dry_run: true}\n"
    )
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(
        lambda: {s["slo"] for s in daemon.get("/api/v1/slos").json()["slos"]} == {"availability", "canary"},
        20,
        "the canary SLO taken with its newly declared action",
    )
    logs = daemon.logs()
    assert "applied actions.abort-shop" in logs
    assert "api_token changed but take effect only after a restart" in logs
    assert "s3cret" not in logs
    assert daemon.get("/api/v1/slos").json()["config_problems"] == []
    assert daemon.metrics()["budgetguard_config_errors"] == [({}, 0.0)]
    assert daemon.stop() == 0


def test_the_file_watch_reloads_a_changed_config_file(
    tmp_path: Path, nowhere: str, daemons: list[DaemonProcess]
) -> None:
    daemon = start(tmp_path, nowhere, "log_min_interval: 1s\n", daemons, BUDGETGUARD_RELOAD_POLL="1s")
    daemon.wait_ready()
    (tmp_path / "config.yaml").write_text("log_min_interval: 1s\nretention: 30d\n")  # --interval is a flag
    wait_for(lambda: "applied retention" in daemon.logs(), 15, "the watched config file")
    assert "config file changed" in daemon.logs()
    assert daemon.stop() == 0


def test_the_readmes_run_line_starts_from_a_checkout(
    tmp_path: Path, nowhere: str, daemons: list[DaemonProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13: `budgetguard run slos/ ...` as the README writes it refused the example SLOs (their
    canary actions were undeclared). From the checkout, ./budgetguard.yaml declares them; only the
    source, store and port differ here (a free port, a temporary file)."""
    checkout = Path(__file__).resolve().parent.parent
    monkeypatch.chdir(checkout)  # the daemon starts here, as a user in the checkout would
    monkeypatch.delenv("BUDGETGUARD_CONFIG", raising=False)
    readme = (checkout / "README.md").read_text()
    line = next(line for line in readme.splitlines() if line.startswith("budgetguard run slos/ "))
    assert line.split()[:4] == ["budgetguard", "run", "slos/", "--prometheus"]
    assert "--config" not in line
    daemon = DaemonProcess(Path("slos"), nowhere, tmp_path / "budgetguard.db")
    daemons.append(daemon)
    daemon.wait_ready()
    assert len(daemon.get("/api/v1/slos").json()["slos"]) >= 7
    assert daemon.stop() == 0
