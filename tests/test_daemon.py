"""The daemon as users run it: a real subprocess, a real Prometheus scraping a live target, real HTTP.

These are slow-ish (a few seconds each) because they wait for real scrapes and cycles; every wait is
bounded.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lab.prometheus import PrometheusLab
from lab.target import MetricsTarget, metrics_target
from tests.conftest import LabFactory

SLO_FILE = """
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
"""

EXTRA_SLO = """
version: budgetguard/v1
service: search
slos:
  - name: availability
    objective: 99
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="checkout",code="500"}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="checkout"}[{{.window}}]))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except httpx.HTTPError:
            last = None
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class DaemonProcess:
    def __init__(
        self,
        slo_dir: Path,
        prometheus_url: str,
        db: Path | str,
        extra_env: dict[str, str] | None = None,
        config: Path | None = None,
        *,
        log_dir: Path | None = None,
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "BUDGETGUARD_RELOAD_POLL": "1s",
            "BUDGETGUARD_LOG_LEVEL": "INFO",
            **(extra_env or {}),
        }
        # Beside a SQLite file; a PostgreSQL URL has no directory, so those tests give ``log_dir``.
        self.log = (
            (log_dir / f"daemon.{self.port}.log") if log_dir else Path(db).with_suffix(f".{self.port}.log")
        )
        self._log_file = self.log.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "budgetguard",
                "run",
                str(slo_dir),
                "--prometheus",
                prometheus_url,
                "--db",
                str(db),
                "--listen",
                f"127.0.0.1:{self.port}",
                "--interval",
                "1s",
                *(["--config", str(config)] if config is not None else []),
            ],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.client = httpx.Client(base_url=self.url, timeout=5)

    def get(self, path: str) -> httpx.Response:
        return self.client.get(path)

    def metrics(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        out: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(self.get("/metrics").text):
            for sample in family.samples:
                out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
        return out

    def wait_ready(self, timeout: float = 30) -> None:
        wait_for(lambda: self.get("/readyz").status_code == 200, timeout, f"readiness; log:\n{self.logs()}")

    def logs(self) -> str:
        return self.log.read_text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.client.close()
        self._log_file.close()


@pytest.fixture
def target() -> Iterator[MetricsTarget]:
    with metrics_target() as live:
        live.set_stream({"job": "checkout"}, requests_per_second=50, error_ratio=0.002)
        yield live


@pytest.fixture
def live_prometheus(prometheus_lab: LabFactory, target: MetricsTarget) -> PrometheusLab:
    lab = prometheus_lab(scrape_targets={"checkout": [target.address]}, scrape_interval=timedelta(seconds=1))
    # rate() needs two samples of every series in the window
    wait_for(
        lambda: lab.query('count_over_time(http_requests_total{job="checkout",code="500"}[1m]) > 2'),
        20,
        "three scrapes",
    )
    return lab


@pytest.fixture
def slo_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "slos"
    directory.mkdir()
    (directory / "checkout.yaml").write_text(textwrap.dedent(SLO_FILE))
    return directory


@pytest.fixture
def daemons(real_processes: None) -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    yield started
    for daemon in started:
        daemon.close()


def one(metrics: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    found = [v for lbls, v in metrics.get(name, []) if all(lbls.get(k) == val for k, val in labels.items())]
    assert len(found) == 1, (name, labels, metrics.get(name))
    return found[0]


# The daemon as it runs a few SLOs, and as it runs a fleet: cycles in a child process (#14).
IN_A_WORKER = {"BUDGETGUARD_CYCLE_WORKER_MIN_SLOS": "0"}
WORKER = pytest.mark.parametrize("env", [{}, IN_A_WORKER], ids=["in the daemon", "in a worker process"])


def worker_pid(daemon: DaemonProcess, env: dict[str, str]) -> int | None:
    """The cycle worker's pid, as the daemon logged it (None when cycles run in the daemon)."""
    found = re.search(r"cycle worker process (\d+) started", daemon.logs())
    assert (found is not None) == (env == IN_A_WORKER), daemon.logs()
    return int(found.group(1)) if found else None


def gone(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")  # exited (a zombie until whoever adopted it reaps it)


@WORKER
def test_the_daemon_exports_exactly_what_prometheus_says(
    slo_dir: Path,
    live_prometheus: PrometheusLab,
    tmp_path: Path,
    daemons: list[DaemonProcess],
    env: dict[str, str],
) -> None:
    daemon = DaemonProcess(slo_dir, live_prometheus.url, tmp_path / "bg.db", env)
    daemons.append(daemon)
    daemon.wait_ready()
    pid = worker_pid(daemon, env)
    metrics = daemon.metrics()
    at = one(
        metrics, "budgetguard_slo_last_evaluation_timestamp_seconds", service="checkout", slo="availability"
    )
    remaining = one(
        metrics, "budgetguard_slo_error_budget_remaining_ratio", service="checkout", slo="availability"
    )
    burn_1h = one(metrics, "budgetguard_slo_burn_rate", service="checkout", slo="availability", window="1h")
    assert one(metrics, "budgetguard_slo_objective_ratio", service="checkout", slo="availability") == 0.999
    assert (
        one(
            metrics,
            "budgetguard_slo_verdict",
            service="checkout",
            slo="availability",
            team="payments",
            verdict="warning",
        )
        == 1
    )

    def expected_ratio(window: str) -> float:
        [sample] = live_prometheus.query(
            f'sum(rate(http_requests_total{{job="checkout",code="500"}}[{window}])) / '
            f'sum(rate(http_requests_total{{job="checkout"}}[{window}]))',
            at=at,
        )
        return float(sample.value)

    assert remaining == pytest.approx(1 - expected_ratio("30d") / 0.001, rel=1e-9)
    assert burn_1h == pytest.approx(expected_ratio("1h") / 0.001, rel=1e-9)
    assert burn_1h == pytest.approx(2.0, rel=0.05)  # the target fails 0.2% of requests: twice the budget

    api = daemon.get("/api/v1/slos").json()
    assert [(s["service"], s["slo"], s["verdict"]) for s in api["slos"]] == [
        ("checkout", "availability", "warning")
    ]
    one_slo = daemon.get("/api/v1/slos/checkout/availability").json()
    assert one_slo["history"] and one_slo["verdict_changes"][0]["to"] == "warning"
    assert daemon.get("/api/v1/slos/checkout/nope").status_code == 404

    check = subprocess.run(
        ["promtool", "check", "metrics"],
        input=daemon.get("/metrics").content,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "the cycle worker process failed" not in daemon.logs()
    assert daemon.stop() == 0
    assert gone(pid)


def test_reload_on_sighup_and_on_file_change_keeps_the_last_good_specs(
    slo_dir: Path, live_prometheus: PrometheusLab, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    daemon = DaemonProcess(
        slo_dir, live_prometheus.url, tmp_path / "bg.db", {"BUDGETGUARD_RELOAD_POLL": "1h"}
    )  # only SIGHUP reloads in the first part
    daemons.append(daemon)
    daemon.wait_ready()

    def ids() -> set[str]:
        return {f"{s['service']}/{s['slo']}" for s in daemon.get("/api/v1/slos").json()["slos"]}

    (slo_dir / "search.yaml").write_text(textwrap.dedent(EXTRA_SLO))
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: ids() == {"checkout/availability", "search/availability"}, 15, "the new SLO")

    (slo_dir / "search.yaml").write_text("version: budgetguard/v1\nservice: search\nslos:\n- name: x\n")
    daemon.process.send_signal(signal.SIGHUP)
    api = wait_for(lambda: (r := daemon.get("/api/v1/slos").json())["config_problems"] and r, 15, "problems")
    assert any("search.yaml" in p and "objective" in p for p in api["config_problems"])
    assert {f"{s['service']}/{s['slo']}" for s in api["slos"]} == {
        "checkout/availability",
        "search/availability",
    }
    assert one(daemon.metrics(), "budgetguard_slo_config_errors") >= 1
    assert "reload (SIGHUP) refused, keeping the last good SLOs" in daemon.logs()
    cycles_before = one(daemon.metrics(), "budgetguard_last_evaluation_timestamp_seconds")
    wait_for(
        lambda: one(daemon.metrics(), "budgetguard_last_evaluation_timestamp_seconds") > cycles_before,
        10,
        "cycles to go on with the last good specs",
    )
    assert daemon.stop() == 0

    # the file watch: a changed file reloads without a signal
    watcher = DaemonProcess(slo_dir, live_prometheus.url, tmp_path / "bg2.db")
    daemons.append(watcher)
    (slo_dir / "search.yaml").unlink()
    watcher.wait_ready()
    (slo_dir / "search.yaml").write_text(textwrap.dedent(EXTRA_SLO))
    wait_for(lambda: len(watcher.get("/api/v1/slos").json()["slos"]) == 2, 15, "the watched file")
    assert watcher.stop() == 0


@WORKER
def test_prometheus_down_mid_run_gives_errors_then_recovers(
    slo_dir: Path,
    live_prometheus: PrometheusLab,
    tmp_path: Path,
    daemons: list[DaemonProcess],
    env: dict[str, str],
) -> None:
    daemon = DaemonProcess(slo_dir, live_prometheus.url, tmp_path / "bg.db", env)
    daemons.append(daemon)
    daemon.wait_ready()
    pid = worker_pid(daemon, env)

    def verdict() -> str:
        return str(daemon.get("/api/v1/slos/checkout/availability").json()["slo"]["verdict"])

    live_prometheus.stop()
    wait_for(lambda: verdict() == "error", 15, "an error verdict")
    errors = one(daemon.metrics(), "budgetguard_source_errors_total", reason="unavailable")
    wait_for(
        lambda: one(daemon.metrics(), "budgetguard_source_errors_total", reason="unavailable") > errors,
        10,
        "the error counter to grow",
    )
    assert daemon.process.poll() is None
    metrics = daemon.metrics()
    assert (
        one(metrics, "budgetguard_slo_verdict", service="checkout", slo="availability", verdict="error") == 1
    )
    assert not [v for lbls, v in metrics.get("budgetguard_slo_error_budget_remaining_ratio", [])]

    live_prometheus.start()
    wait_for(lambda: verdict() == "warning", 30, "recovery")
    # A source down is the source's fault, not the worker's: the same worker throughout.
    assert worker_pid(daemon, env) == pid and "the cycle worker process failed" not in daemon.logs()
    assert daemon.stop() == 0
    assert gone(pid)


class HangingSource:
    """Accepts connections and never answers: a Prometheus stuck behind a dead proxy."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self._held:
            conn.close()


def test_a_restart_serves_the_same_history_and_values_and_sigterm_is_quick(
    slo_dir: Path, live_prometheus: PrometheusLab, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    db = tmp_path / "bg.db"
    first = DaemonProcess(slo_dir, live_prometheus.url, db)
    daemons.append(first)
    first.wait_ready()
    wait_for(
        lambda: len(first.get("/api/v1/slos/checkout/availability").json()["history"]) >= 3, 15, "history"
    )
    before = first.get("/api/v1/slos/checkout/availability").json()
    remaining = one(
        first.metrics(),
        "budgetguard_slo_error_budget_remaining_ratio",
        service="checkout",
        slo="availability",
    )
    assert first.stop() == 0

    # The second daemon's source never answers: whatever it serves comes from the store.
    hanging = HangingSource()
    try:
        second = DaemonProcess(slo_dir, hanging.url, db, {"BUDGETGUARD_PROMETHEUS__TIMEOUT": "60s"})
        daemons.append(second)
        wait_for(lambda: second.get("/healthz").status_code == 200, 20, "the restarted daemon")
        after = second.get("/api/v1/slos/checkout/availability").json()
        assert second.get("/readyz").status_code == 503  # no cycle of its own has finished
        # the latest evaluation is the last one the first daemon stored, and the history is the same
        assert after["slo"] == after["history"][-1]
        assert after["slo"]["at"] >= before["slo"]["at"]
        assert [h["at"] for h in after["history"]][: len(before["history"])] == [
            h["at"] for h in before["history"]
        ]
        restored = one(
            second.metrics(),
            "budgetguard_slo_error_budget_remaining_ratio",
            service="checkout",
            slo="availability",
        )
        assert restored == after["slo"]["budget_remaining"]
        assert restored == pytest.approx(remaining, rel=1e-3)  # the budget barely moves in a second
        started = time.monotonic()
        assert second.stop(timeout=10) == 0  # even with a cycle stuck on the source
        assert time.monotonic() - started < 10
    finally:
        hanging.close()


def test_secrets_stay_out_of_logs_store_and_api(
    slo_dir: Path, live_prometheus: PrometheusLab, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    db = tmp_path / "bg.db"
    daemon = DaemonProcess(
        slo_dir,
        live_prometheus.url,
        db,
        {
            "BUDGETGUARD_PROMETHEUS__BEARER_TOKEN": "s3cr3t-bearer-token",
            "BUDGETGUARD_API_TOKEN": "s3cr3t-api-token",
            "BUDGETGUARD_LOG_LEVEL": "DEBUG",
        },
    )
    daemons.append(daemon)
    daemon.wait_ready()
    assert daemon.get("/api/v1/slos").status_code == 401
    authorised = {"Authorization": "Bearer s3cr3t-api-token"}
    listing = daemon.client.get("/api/v1/slos", headers=authorised)
    one_slo = daemon.client.get("/api/v1/slos/checkout/availability", headers=authorised)
    assert listing.status_code == 200 and one_slo.status_code == 200
    metrics = daemon.get("/metrics").text
    assert daemon.stop() == 0
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("bg.db"))
    for secret in ("s3cr3t-bearer-token", "s3cr3t-api-token"):
        assert secret not in daemon.logs()
        assert secret.encode() not in stored
        assert secret not in listing.text + one_slo.text + metrics


def test_sigterm_the_moment_the_port_answers_still_stops_cleanly(
    slo_dir: Path, live_prometheus: PrometheusLab, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    # uvicorn used to own the signals for a moment after binding; a SIGTERM then killed the process.
    for attempt in range(3):
        daemon = DaemonProcess(slo_dir, live_prometheus.url, tmp_path / f"bg{attempt}.db")
        daemons.append(daemon)
        wait_for(lambda d=daemon: d.get("/healthz").status_code == 200, 20, "the port")
        assert daemon.stop(signal.SIGTERM, timeout=10) == 0
    sigint = DaemonProcess(slo_dir, live_prometheus.url, tmp_path / "bg-int.db")
    daemons.append(sigint)
    sigint.wait_ready()
    assert sigint.stop(signal.SIGINT, timeout=10) == 0
