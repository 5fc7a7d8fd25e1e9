"""High availability end to end: two daemons on one real PostgreSQL, a real Prometheus scraping a live
service, faithful fakes of the Kubernetes API (Argo Rollouts) and of a Standard Webhooks receiver.

The leader is SIGKILLed at a random instant of a failing canary's life, trial after trial, each trial
aiming at one moment in turn (before the guard decides, between deciding and delivering, during the
webhook's retries, while a delivery is in flight), and a new daemon takes the killed one's place. Each
trial's canary version is new and keeps failing, so each trial is one incident, aborting its own
Rollout. What must hold: exactly one incident per failing canary, every delivery of it under one id,
nothing lost, a healthy canary untouched, and the pull gates answering the same from both replicas.

The figures of the closing note come from here: with ``BUDGETGUARD_HA_REPORT=path.json`` the test writes
each trial's failover time, duplicate sends and lost actions there (and ``BUDGETGUARD_HA_LEASE`` sets the
lease, 3 s by default here to keep the run short). Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from lab.fakes import Answer, WebhookReceiver
from lab.fakes.kubernetes import K8S_TOKEN, KubernetesFake
from lab.postgres import PostgresLab
from lab.prometheus import PrometheusLab
from lab.target import MetricsTarget, metrics_target
from tests.conftest import LabFactory
from tests.test_daemon import DaemonProcess, wait_for

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NAMESPACE = "shop"
TRIALS = 10
# Short, so ten failovers fit in a test run (the default is 15s); BUDGETGUARD_HA_LEASE=15 measures that.
LEASE = timedelta(seconds=int(os.environ.get("BUDGETGUARD_HA_LEASE", "3")))
KILL_WITHIN = 9.0  # seconds after the canary starts failing: it opens at ~3-5 s, delivers over ~3 s more

SLO_FILE = """
version: budgetguard/v1
service: checkout
slos:
  - name: availability
    objective: 99.9
    sli:
      events:
        error_query: sum by (version) (rate(http_requests_total{job="checkout",code="500"}[{{.window}}]))
        total_query: sum by (version) (rate(http_requests_total{job="checkout"}[{{.window}}]))
    canary:
      label: version
      baseline: v1
      windows: [10s, 30s]
      resolve_after: 5m
      on_burn: [abort]
      notify: [hook]
"""


def config(kubernetes: KubernetesFake, hook: WebhookReceiver) -> str:
    return textwrap.dedent(
        f"""
        leader_lease: {int(LEASE.total_seconds())}s
        # One delivery at a time, so while the abort is in flight the webhook is decided and not sent yet.
        delivery: {{backoff_base: 1s, backoff_max: 2s, concurrency: 1}}
        actions:
          abort:
            type: argo-rollouts
            api_url: {kubernetes.url}
            token: {K8S_TOKEN}
            namespace: {NAMESPACE}
            rollout: ${{canary}}
          hook:
            type: webhook
            url: {hook.endpoint}
            secret: {SECRET}
        """
    )


@pytest.fixture
def target() -> Iterator[MetricsTarget]:
    with metrics_target() as live:
        live.set_stream({"version": "v1"}, requests_per_second=50, error_ratio=0.0)
        live.set_stream({"version": "healthy"}, requests_per_second=5, error_ratio=0.0)
        yield live


@pytest.fixture
def prometheus(prometheus_lab: LabFactory, target: MetricsTarget) -> PrometheusLab:
    return prometheus_lab(scrape_targets={"checkout": [target.address]})


class Replicas:
    """Two daemons on one database; ``replace(daemon)`` starts a new one in a killed one's place."""

    def __init__(self, tmp_path: Path, prometheus: PrometheusLab, url: str, config_text: str) -> None:
        self.dir = tmp_path
        (tmp_path / "slos").mkdir()
        (tmp_path / "slos" / "checkout.yaml").write_text(textwrap.dedent(SLO_FILE))
        self.config = tmp_path / "config.yaml"
        self.config.write_text(config_text)
        self.prometheus = prometheus
        self.url = url
        self.all: list[DaemonProcess] = []
        self.live: list[DaemonProcess] = []

    def start(self) -> DaemonProcess:
        daemon = DaemonProcess(
            self.dir / "slos", self.prometheus.url, self.url, config=self.config, log_dir=self.dir
        )
        self.all.append(daemon)
        self.live.append(daemon)
        daemon.wait_ready(timeout=60)
        return daemon

    def kill(self, daemon: DaemonProcess) -> None:
        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait(timeout=10)
        self.live.remove(daemon)

    def leaders(self) -> list[DaemonProcess]:
        return [d for d in self.live if status(d).get("leader")]

    def close(self) -> None:
        for daemon in self.all:
            daemon.close()


def flagger_rollback(daemon: DaemonProcess, canary: str) -> int:
    """Flagger's rollback webhook (integrations.md §2.2): 200 means roll back."""
    payload = {
        "name": "checkout",
        "namespace": NAMESPACE,
        "phase": "Progressing",
        "metadata": {"slo": "checkout/availability", "canary": canary},
    }
    return daemon.client.post("/gates/flagger/rollback", json=payload).status_code


def status(daemon: DaemonProcess) -> dict[str, Any]:
    try:
        answer = daemon.get("/api/v1/status")
    except Exception:  # a daemon being killed answers nothing
        return {}
    return dict(answer.json()) if answer.status_code == 200 else {}


def incidents_of(daemon: DaemonProcess, canary: str) -> list[dict[str, Any]]:
    return [i for i in daemon.get("/api/v1/incidents").json()["incidents"] if i["canary"] == canary]


def hook_ids(hook: WebhookReceiver, canary: str) -> list[str]:
    """The webhook-id of every trigger request that reached the receiver for this canary."""
    found = []
    for request in hook.requests:
        body = request.json
        if body.get("type") == "budgetguard.incident.triggered" and body["data"].get("canary") == canary:
            found.append(request.header("webhook-id"))
    return found


def patches(kubernetes: KubernetesFake, rollout: str) -> int:
    return len([r for r in kubernetes.requests if r.method == "PATCH" and f"/rollouts/{rollout}/" in r.path])


@pytest.mark.prometheus
def test_the_leader_killed_at_random_moments_aborts_each_failing_canary_once_under_one_id(
    tmp_path: Path,
    prometheus: PrometheusLab,
    target: MetricsTarget,
    postgres_server: PostgresLab,
) -> None:
    rng = random.Random(int(os.environ.get("BUDGETGUARD_HA_SEED", "12")))
    with KubernetesFake() as kubernetes, WebhookReceiver(secret=SECRET) as hook:
        replicas = Replicas(tmp_path, prometheus, postgres_server.database(), config(kubernetes, hook))
        figures: list[dict[str, Any]] = []
        try:
            replicas.start()
            replicas.start()
            wait_for(lambda: len(replicas.leaders()) == 1, 30, "one leader")
            started = time.monotonic()
            for trial in range(TRIALS):
                figures.append(
                    run_trial(trial, rng, replicas=replicas, target=target, kubernetes=kubernetes, hook=hook)
                )
                assert time.monotonic() - started < 60 * 8, "the trials are bounded"

            # A healthy canary beside all this got nothing, and both replicas' gates say so.
            last = replicas.live
            for daemon in last:
                assert incidents_of(daemon, "healthy") == []
                assert daemon.get("/gates/argo/checkout/availability?canary=healthy").json()["data"]["ok"]
            assert hook_ids(hook, "healthy") == [] and patches(kubernetes, "healthy") == 0
            # The gates answer alike from either replica, for every trial's canary: the last one is still
            # failing (its incident open: roll back), the earlier ones are gone and their incidents resolved.
            for trial in range(TRIALS):
                answers = {
                    d.get(f"/gates/argo/checkout/availability?canary=t{trial}").json()["data"]["ok"]
                    for d in last
                }
                assert len(answers) == 1, (trial, answers)
            for daemon in last:
                assert (
                    daemon.get(f"/gates/argo/checkout/availability?canary=t{TRIALS - 1}").json()["data"]["ok"]
                    is False
                )
            assert len(replicas.leaders()) == 1
        finally:
            replicas.close()
            report(figures)


MOMENTS = (
    "before deciding",
    "between deciding and delivering",
    "during retries",
    "while a delivery is in flight",
)


def run_trial(
    trial: int,
    rng: random.Random,
    *,
    replicas: Replicas,
    target: MetricsTarget,
    kubernetes: KubernetesFake,
    hook: WebhookReceiver,
) -> dict[str, Any]:
    """One failing canary, one kill of the leader at a random instant of the moment this trial aims at."""
    canary = f"t{trial}"
    aim = MOMENTS[trial % len(MOMENTS)]
    kubernetes.add_rollout(NAMESPACE, canary)
    if aim == "during retries":
        hook.script(503, 503)
    elif aim == "while a delivery is in flight":
        hook.script(Answer(200, delay=timedelta(seconds=2)))  # answered too late: the leader dies first
    [leader] = replicas.leaders()
    target.set_stream({"version": canary}, requests_per_second=5, error_ratio=0.3)
    began = time.monotonic()
    if aim == "before deciding":
        time.sleep(rng.uniform(0, 1.5))
    elif aim == "between deciding and delivering":
        # The abort's first request is held 2 s in the fake Kubernetes; the webhook waits behind it.
        kubernetes.before_next("GET", lambda: time.sleep(2.0))
        wait_for(lambda: incidents_of(leader, canary), 30, f"{canary}'s incident")
    else:
        wait_for(lambda: hook_ids(hook, canary), 30, f"{canary}'s first webhook")
        time.sleep(rng.uniform(0, 1.0))
    kill_after = time.monotonic() - began
    phase = phase_of(leader, hook, canary)
    replicas.kill(leader)
    killed_at = time.monotonic()
    [survivor] = replicas.live
    wait_for(lambda: status(survivor).get("leader"), 30, f"a new leader; log:\n{survivor.logs()}")
    failover = time.monotonic() - killed_at
    replicas.start()  # back to two replicas for the next trial

    wait_for(lambda: incidents_of(survivor, canary), 40, f"the incident of {canary}; log:\n{survivor.logs()}")
    told = within(lambda: canary in {r.json["data"].get("canary") for r in hook.accepted}, 40)
    aborted = within(lambda: kubernetes.rollout(NAMESPACE, canary)["status"].get("abort"), 40)
    time.sleep(6.0)  # anything sent late or twice would show by now (retries are 1-2 s apart)

    incidents = incidents_of(survivor, canary)
    sent = [r for r in hook.requests if r.json.get("data", {}).get("canary") == canary]
    ids = {r.header("webhook-id") for r in sent}
    # Sent again with the same id though the receiver had not asked (asking is answering 5xx).
    unasked = [r for r in sent if not 500 <= r.status < 600]
    figure = {
        "trial": trial,
        "aimed_at": aim,
        "phase_at_kill": phase,
        "killed_after_seconds": round(kill_after, 2),
        "failover_seconds": round(failover, 2),
        "duplicate_sends": max(len(unasked) - 1, 0) + max(patches(kubernetes, canary) - 1, 0),
        "lost_actions": int(not told) + int(not aborted),
    }
    assert len(incidents) == 1, incidents
    assert ids == {f"{incidents[0]['id']}.hook.trigger"}, ids
    assert figure["lost_actions"] == 0, figure
    return figure


def within(condition: Callable[[], Any], seconds: float) -> bool:
    try:
        wait_for(condition, seconds, "")
    except AssertionError:
        return False
    return True


def phase_of(leader: DaemonProcess, hook: WebhookReceiver, canary: str) -> str:
    """Where the canary's life stands as the leader is killed."""
    if not incidents_of(leader, canary):
        return "before deciding"
    if not hook_ids(hook, canary):
        return "between deciding and delivering"
    if canary not in {r.json["data"].get("canary") for r in hook.accepted}:
        return "during retries or a delivery in flight"
    return "after delivering"


def report(figures: list[dict[str, Any]]) -> None:
    path = os.environ.get("BUDGETGUARD_HA_REPORT")
    if not path or not figures:
        return
    failovers = sorted(f["failover_seconds"] for f in figures)
    summary = {
        "trials": figures,
        "failover_median_seconds": statistics.median(failovers),
        "failover_p95_seconds": failovers[min(len(failovers) - 1, round(0.95 * (len(failovers) - 1)))],
        "duplicate_sends": sum(f["duplicate_sends"] for f in figures),
        "lost_actions": sum(f["lost_actions"] for f in figures),
    }
    Path(path).write_text(json.dumps(summary, indent=2))


def test_a_second_daemon_on_one_sqlite_file_refuses_to_start_naming_the_first(
    tmp_path: Path, prometheus: PrometheusLab
) -> None:
    slos = tmp_path / "slos"
    slos.mkdir()
    (slos / "checkout.yaml").write_text(
        textwrap.dedent(SLO_FILE).replace("on_burn: [abort]\n      notify: [hook]\n", "")
    )
    db = tmp_path / "bg.db"
    first = DaemonProcess(slos, prometheus.url, db)
    try:
        first.wait_ready()
        second = DaemonProcess(slos, prometheus.url, db)
        try:
            assert second.process.wait(timeout=30) == 2
            log = second.logs()
            assert f"the database {db} is in use by another budgetguard daemon" in log
            assert f"pid {first.process.pid} on host" in log
            assert "Traceback" not in log
        finally:
            second.close()
        assert first.get("/readyz").status_code == 200, "the first daemon carries on"
    finally:
        first.close()
