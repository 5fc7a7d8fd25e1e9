"""The canary guard end to end: a live service with two versions, a real Prometheus scraping it every
second, the daemon as a subprocess, and faithful fakes of the Kubernetes API (Argo Rollouts) and of a
Standard Webhooks receiver. Every wait is bounded.
"""

from __future__ import annotations

import signal
import sqlite3
import textwrap
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from lab.fakes import Answer, WebhookReceiver
from lab.fakes.kubernetes import K8S_TOKEN, KubernetesFake
from lab.prometheus import PrometheusLab
from lab.target import MetricsTarget, metrics_target
from tests.conftest import LabFactory
from tests.test_daemon import DaemonProcess, wait_for

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NAMESPACE, ROLLOUT = "shop", "checkout"

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
      resolve_after: 1m
      on_burn: [abort]
      notify: [hook]
"""


def config(kubernetes: KubernetesFake, hook: WebhookReceiver, *, dry_run: bool = False) -> str:
    return textwrap.dedent(
        f"""
        dry_run: {str(dry_run).lower()}
        delivery: {{backoff_base: 1s, backoff_max: 2s}}
        actions:
          abort:
            type: argo-rollouts
            api_url: {kubernetes.url}
            token: {K8S_TOKEN}
            namespace: {NAMESPACE}
            rollout: ${{service}}
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
        yield live


@pytest.fixture
def prometheus(prometheus_lab: LabFactory, target: MetricsTarget) -> PrometheusLab:
    return prometheus_lab(scrape_targets={"checkout": [target.address]})


@pytest.fixture
def kubernetes() -> Iterator[KubernetesFake]:
    with KubernetesFake() as fake:
        fake.add_rollout(NAMESPACE, ROLLOUT)
        yield fake


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(secret=SECRET) as fake:
        yield fake


class Setup:
    def __init__(self, tmp_path: Path, prometheus: PrometheusLab) -> None:
        self.dir = tmp_path
        self.prometheus = prometheus
        (tmp_path / "slos").mkdir()
        (tmp_path / "slos" / "checkout.yaml").write_text(textwrap.dedent(SLO_FILE))
        self.db = tmp_path / "bg.db"
        self.daemons: list[DaemonProcess] = []

    def start(self, config_text: str) -> DaemonProcess:
        path = self.dir / "config.yaml"
        path.write_text(config_text)
        daemon = DaemonProcess(self.dir / "slos", self.prometheus.url, self.db, config=path)
        self.daemons.append(daemon)
        daemon.wait_ready()
        return daemon

    def outbox(self) -> list[dict[str, Any]]:
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as conn:
            conn.row_factory = sqlite3.Row
            try:
                return [dict(r) for r in conn.execute("SELECT * FROM outbox ORDER BY id")]
            except sqlite3.OperationalError:  # not migrated yet
                return []


@pytest.fixture
def setup(tmp_path: Path, prometheus: PrometheusLab) -> Iterator[Setup]:
    s = Setup(tmp_path, prometheus)
    yield s
    for daemon in s.daemons:
        daemon.close()


def aborts(kubernetes: KubernetesFake) -> list[Any]:
    return [r for r in kubernetes.requests if r.method == "PATCH"]


def flagger_hook(daemon: DaemonProcess, hook: str, canary: str) -> Any:
    """What Flagger sends (integrations.md §2.2): its JSON payload, no auth headers."""
    payload = {
        "name": "checkout",
        "namespace": NAMESPACE,
        "phase": "Progressing",
        "checksum": "85d557f47b",
        "metadata": {"slo": "checkout/availability", "canary": canary},
    }
    return daemon.client.post(
        f"/gates/flagger/{hook}", json=payload, headers={"User-Agent": "Go-http-client/1.1"}
    )


def cycles(daemon: DaemonProcess) -> float:
    [(_, count)] = daemon.metrics()["budgetguard_evaluation_duration_seconds_count"]
    return count


def incidents(daemon: DaemonProcess) -> list[dict[str, Any]]:
    return list(daemon.get("/api/v1/incidents").json()["incidents"])


def test_a_failing_canary_is_aborted_once_and_people_are_told_once(
    setup: Setup, target: MetricsTarget, kubernetes: KubernetesFake, hook: WebhookReceiver
) -> None:
    target.set_stream({"version": "v2"}, requests_per_second=5, error_ratio=0.2)
    daemon = setup.start(config(kubernetes, hook))
    wait_for(lambda: aborts(kubernetes), 40, f"the abort; log:\n{daemon.logs()}")
    assert kubernetes.rollout(NAMESPACE, ROLLOUT)["status"]["abort"] is True
    [delivery] = hook.wait_for(1, accepted=True)
    event = delivery.json
    [incident] = incidents(daemon)
    assert event["type"] == "budgetguard.incident.triggered"
    assert event["data"]["incident_id"] == incident["id"]
    assert (incident["canary"], incident["baseline"], incident["state"]) == ("v2", "v1", "open")
    assert delivery.header("webhook-id") == f"{incident['id']}.hook.trigger"

    # Later cycles keep seeing it burn and fire nothing more.
    seen = cycles(daemon)
    wait_for(lambda: cycles(daemon) >= seen + 5, 20, "5 more cycles")
    assert len(aborts(kubernetes)) == 1 and len(hook.accepted) == 1
    assert len(incidents(daemon)) == 1
    rows = setup.outbox()
    assert sorted((r["action"], r["status"]) for r in rows) == [("abort", "delivered"), ("hook", "delivered")]

    # The pull gates agree: Flagger is told to roll back (200), Argo's web metric fails the analysis.
    flagger = flagger_hook(daemon, "rollback", "v2")
    assert flagger.status_code == 200 and flagger.json()["rollback"] is True
    argo = daemon.get("/gates/argo/checkout/availability?canary=v2")
    assert argo.status_code == 200 and argo.json()["data"]["ok"] is False

    # The aborted canary's pods go away: once it is gone from every canary window the incident
    # resolves, and the receiver that understands a resolution hears of it; the Rollout stays aborted.
    target.remove_stream({"version": "v2"})
    resolved = hook.wait_for(2, accepted=True, timeout=timedelta(seconds=60))[1]
    assert resolved.json["type"] == "budgetguard.incident.resolved"
    assert resolved.header("webhook-id") == f"{incident['id']}.hook.resolve"
    [closed] = incidents(daemon)
    assert closed["state"] == "resolved" and "gone" in closed["resolution"]
    assert len(aborts(kubernetes)) == 1


def test_a_healthy_canary_is_left_alone(
    setup: Setup, target: MetricsTarget, kubernetes: KubernetesFake, hook: WebhookReceiver
) -> None:
    target.set_stream({"version": "v2"}, requests_per_second=5, error_ratio=0.0)
    daemon = setup.start(config(kubernetes, hook))

    def judged_v2() -> list[dict[str, Any]]:
        [slo] = daemon.get("/api/v1/slos").json()["slos"]
        return [c for c in slo.get("canaries", []) if c["value"] == "v2"]

    wait_for(judged_v2, 30, "a judgement of v2")
    seen = cycles(daemon)
    wait_for(lambda: cycles(daemon) >= seen + 10, 30, "10 cycles")
    [v2] = judged_v2()
    assert v2["verdict"] in ("healthy", "inconclusive")
    assert kubernetes.requests == [] and hook.requests == [] and incidents(daemon) == []
    assert flagger_hook(daemon, "rollback", "v2").status_code == 403  # Flagger: no rollback
    assert daemon.get("/gates/argo/checkout/availability?canary=v2").json()["data"]["ok"] is True


def test_a_target_answering_500_gets_the_event_once_after_it_recovers(
    setup: Setup, target: MetricsTarget, kubernetes: KubernetesFake, hook: WebhookReceiver
) -> None:
    hook.script(500, 500, 500)
    target.set_stream({"version": "v2"}, requests_per_second=5, error_ratio=0.2)
    setup.start(config(kubernetes, hook))
    [delivery] = hook.wait_for(1, accepted=True, timeout=timedelta(seconds=60))
    requests = hook.requests
    assert [r.status for r in requests] == [500, 500, 500, 200]
    assert {r.header("webhook-id") for r in requests} == {delivery.header("webhook-id")}
    wait_for(
        lambda: [r for r in setup.outbox() if r["action"] == "hook" and r["status"] == "delivered"],
        10,
        "mark",
    )
    [row] = [r for r in setup.outbox() if r["action"] == "hook"]
    assert row["attempts"] == 4 and row["idempotency_key"] == delivery.header("webhook-id")


def test_killed_after_deciding_it_delivers_after_the_restart_with_the_same_key(
    setup: Setup, target: MetricsTarget, kubernetes: KubernetesFake, hook: WebhookReceiver
) -> None:
    hook.script(*[Answer(503)] * 2)
    target.set_stream({"version": "v2"}, requests_per_second=5, error_ratio=0.2)
    first = setup.start(config(kubernetes, hook))
    wait_for(
        lambda: [r for r in setup.outbox() if r["action"] == "hook" and r["attempts"] >= 1],
        40,
        f"a failed first attempt; log:\n{first.logs()}",
    )
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(timeout=10)
    [pending] = [r for r in setup.outbox() if r["action"] == "hook"]
    assert pending["status"] == "pending" and hook.accepted == []

    second = setup.start(config(kubernetes, hook))
    [delivery] = hook.wait_for(1, accepted=True, timeout=timedelta(seconds=30))
    assert delivery.header("webhook-id") == pending["idempotency_key"]
    seen = cycles(second)
    wait_for(lambda: cycles(second) >= seen + 3, 20, "3 more cycles")
    assert len(hook.accepted) == 1 and len(aborts(kubernetes)) == 1
    assert len(incidents(second)) == 1


def test_dry_run_decides_and_records_but_calls_nothing(
    setup: Setup, target: MetricsTarget, kubernetes: KubernetesFake, hook: WebhookReceiver
) -> None:
    target.set_stream({"version": "v2"}, requests_per_second=5, error_ratio=0.2)
    daemon = setup.start(config(kubernetes, hook, dry_run=True))
    wait_for(lambda: len(setup.outbox()) == 2, 40, f"the decision; log:\n{daemon.logs()}")
    assert {r["status"] for r in setup.outbox()} == {"dry_run"}
    seen = cycles(daemon)
    wait_for(lambda: cycles(daemon) >= seen + 3, 20, "3 more cycles")
    assert kubernetes.requests == [] and hook.requests == []
    assert [i["state"] for i in incidents(daemon)] == ["open"]
