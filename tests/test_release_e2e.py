"""The release freeze and shadow traffic end to end: a real Prometheus, the daemon as a subprocess, and
fakes that call it as Flagger, Argo Rollouts and a CI pipeline do. Every wait is bounded.

The freeze runs on the demo's 31 days of history (``lab.history``): checkout spent 38-47% of a 99.9%
budget in an incident nine days ago, so at 99.95% its budget is spent, and the recovery estimate is
checked against the history's own per-minute counts. The shadows run against a live target whose
comparisons Prometheus scrapes every second.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lab.fakes import WebhookReceiver
from lab.prometheus import PrometheusLab
from lab.target import MetricsTarget
from tests.conftest import DemoTsdb, LabFactory
from tests.test_daemon import DaemonProcess, wait_for
from tests.test_freeze import ReleaseFlagger
from tests.test_gates import FakeArgo, FakeFlagger

TOKEN = "e2e-t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
REPO = Path(__file__).resolve().parent.parent

CHECKOUT = """
version: budgetguard/v1
service: checkout
freeze:
  except: {change: [security-fix]}
slos:
  - name: availability
    objective: 99.95      # the demo's 0.055-0.067% of errors over 30d spend this budget
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="checkout",code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="checkout"}[{{.window}}]))
"""

SEARCH = """
version: budgetguard/v1
service: search
freeze: true
slos:
  - name: availability
    objective: 99.9       # 0.01% of errors: 90% of the budget left
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="search",code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="search"}[{{.window}}]))
"""


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture
def frozen_daemon(prometheus_lab: LabFactory, demo_tsdb: DemoTsdb, tmp_path: Path) -> Iterator[DaemonProcess]:
    lab = prometheus_lab(blocks_from=demo_tsdb.blocks)
    slos = tmp_path / "slos"
    slos.mkdir()
    (slos / "checkout.yaml").write_text(textwrap.dedent(CHECKOUT))
    (slos / "search.yaml").write_text(textwrap.dedent(SEARCH))
    daemon = DaemonProcess(slos, lab.url, tmp_path / "bg.db", extra_env={"BUDGETGUARD_API_TOKEN": TOKEN})
    try:
        daemon.client.headers.update(AUTH)
        daemon.wait_ready()
        yield daemon
    finally:
        daemon.close()


def expected_recovery(demo: DemoTsdb, record: dict[str, Any]) -> datetime:
    """When the daemon's budget remaining climbs back to zero as the history's own errors leave the window.

    Exact per-minute errors from the series the demo backfilled (counter resets included), weighed by the
    daemon's own request count: what the hourly range query approximates.
    """
    at = _parse_time(record["at"])
    window = timedelta(days=30)
    budget = 0.0005
    increments: dict[float, float] = {}
    for series in demo.requests:
        labels = series.label_map
        if labels.get("job") != "checkout" or not labels.get("code", "").startswith("5"):
            continue
        previous = None
        for millis, value in zip(series.millis, series.values, strict=True):
            if previous is not None:
                t = millis / 1000
                increments[t] = increments.get(t, 0.0) + (value - previous if value >= previous else value)
            previous = value
    need = -record["budget_remaining"] * record["events"] * budget  # errors that must leave
    start = (at - window).timestamp()
    climbed = 0.0
    for t in sorted(increments):
        if t <= start:
            continue
        step = increments[t]
        if climbed + step >= need:
            # this minute's errors leave over the minute a window after (t - 60 s, t]
            share = (need - climbed) / step if step else 0.0
            return datetime.fromtimestamp(t - 60 + 60 * share, tz=at.tzinfo) + window
        climbed += step
    raise AssertionError("the history's errors never bring the budget back")


def gate_process(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """``budgetguard gate`` as a pipeline runs it: its own process, the token from the environment."""
    return subprocess.run(
        [sys.executable, "-m", "budgetguard", "gate", *args, "--url", daemon.url],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "BUDGETGUARD_API_TOKEN": TOKEN},
        check=False,
    )


def confirm_rollout(daemon: DaemonProcess, service: str, **metadata: str) -> Any:
    return ReleaseFlagger(service, "shop").call(
        "confirm-rollout",
        f"{daemon.url}/gates/flagger/confirm-rollout",
        {"service": service, "token": TOKEN, **metadata},
    )


def test_a_spent_budget_freezes_releases_and_says_when_it_recovers(
    frozen_daemon: DaemonProcess, demo_tsdb: DemoTsdb
) -> None:
    daemon = frozen_daemon
    records = {f"{r['service']}/{r['slo']}": r for r in daemon.get("/api/v1/slos").json()["slos"]}
    checkout = records["checkout/availability"]
    assert -0.4 < checkout["budget_remaining"] < 0  # spent: the demo's errors against a 0.05% budget

    # Flagger: the canary waits; the recovery estimate lands within a few asks.
    def estimated() -> Any:
        reply = confirm_rollout(daemon, "checkout")
        return reply if reply.body.get("recoveryAt") else None

    frozen = wait_for(estimated, 30, f"a recovery estimate; log:\n{daemon.logs()}")
    assert (frozen.decision, frozen.status, frozen.body["rollout"]) == ("wait", 403, False)
    assert "releases of checkout are frozen: checkout/availability has -" in frozen.body["reason"]
    assert "assuming no new errors and traffic as steady as over the last 30d" in frozen.body["reason"]
    recovery_at = _parse_time(frozen.body["recoveryAt"])
    at = _parse_time(checkout["at"])
    assert at < recovery_at < at + timedelta(days=30)
    # Hourly steps with Prometheus' extrapolation against exact minutes: within a couple of hours.
    assert abs(recovery_at - expected_recovery(demo_tsdb, checkout)) < timedelta(hours=2)

    # An exempt change goes, through every gate; another service with budget left goes too.
    fix = confirm_rollout(daemon, "checkout", change="security-fix")
    assert (fix.decision, fix.status) == ("start", 200) and "change=security-fix is exempt" in fix.body[
        "reason"
    ]
    search = confirm_rollout(daemon, "search")
    assert (search.decision, search.status) == ("start", 200)
    argo = FakeArgo(
        url=f"{daemon.url}/gates/release/checkout",
        headers=AUTH,
        json_path="{$.data}",
        success_condition="result.ok == true",
    )
    assert argo.measure() == "Failed"
    argo.url += "?change=security-fix"
    assert argo.measure() == "Successful"

    # CI: exit 4 with the reason and the estimate; 0 for the security fix and for search.
    blocked = gate_process(daemon, "checkout")
    assert blocked.returncode == 4, blocked.stderr
    assert blocked.stdout.startswith("frozen: releases of checkout must wait\n")
    assert "\n  frozen   checkout/availability has -" in blocked.stdout
    assert f"expected to recover: {frozen.body['recoveryAt']}" in blocked.stdout
    assert re.search(
        r"recovery: expected back above zero around \S+ \(in about \d+d(\d+h)?\), when the errors of ",
        blocked.stdout,
    )
    allowed = gate_process(daemon, "checkout", "--label", "change=security-fix")
    assert allowed.returncode == 0 and allowed.stdout.startswith("go: releases of checkout may go")
    assert gate_process(daemon, "search").returncode == 0


# --- shadows -------------------------------------------------------------------------------------------

SHADOW_SLO = """
version: budgetguard/v1
service: checkout
slos:
  - name: shadow
    objective: 99
    sli:
      events:
        error_query: sum by (version) (rate(shadow_mismatches_total{job="shadow"}[{{.window}}]))
        total_query: sum by (version) (rate(shadow_requests_total{job="shadow"}[{{.window}}]))
    canary:
      label: version
      kind: shadow
      windows: [10s, 30s]
      notify: [hook]
"""


class ShadowTarget(MetricsTarget):
    """What a comparing proxy exports: ``shadow_requests_total{version}`` (responses compared) and
    ``shadow_mismatches_total{version}`` (the shadow's differed), from the streams' good and bad counts."""

    def exposition(self) -> str:
        compared: dict[str, float] = {}
        mismatched: dict[str, float] = {}
        for line in super().exposition().splitlines():
            if not line or line.startswith("#"):
                continue
            series, value = line.rsplit(" ", 1)
            labels = dict(re.findall(r'(\w+)="([^"]*)"', series))
            code = labels.pop("code")
            key = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            compared[key] = compared.get(key, 0.0) + float(value)
            mismatched[key] = mismatched.get(key, 0.0) + (float(value) if code == "500" else 0.0)
        lines = ["# TYPE shadow_requests_total counter"]
        lines += [f"shadow_requests_total{{{k}}} {v:.6f}" for k, v in compared.items()]
        lines += ["# TYPE shadow_mismatches_total counter"]
        lines += [f"shadow_mismatches_total{{{k}}} {v:.6f}" for k, v in mismatched.items()]
        return "\n".join(lines) + "\n"


@pytest.fixture
def shadow_target() -> Iterator[ShadowTarget]:
    target = ShadowTarget()
    target.start()
    try:
        yield target
    finally:
        target.close()


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(secret=SECRET) as fake:
        yield fake


@pytest.fixture
def shadow_lab(prometheus_lab: LabFactory, shadow_target: ShadowTarget) -> PrometheusLab:
    return prometheus_lab(scrape_targets={"shadow": [shadow_target.address]})


def start_shadow_daemon(tmp_path: Path, lab: PrometheusLab, hook: WebhookReceiver) -> DaemonProcess:
    slos = tmp_path / "slos"
    slos.mkdir()
    (slos / "checkout.yaml").write_text(textwrap.dedent(SHADOW_SLO))
    config = tmp_path / "config.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            delivery: {{backoff_base: 1s, backoff_max: 2s}}
            actions:
              hook: {{type: webhook, url: "{hook.endpoint}", secret: {SECRET}}}
            """
        )
    )
    daemon = DaemonProcess(slos, lab.url, tmp_path / "bg.db", config=config)
    daemon.wait_ready()
    return daemon


def shadow_hook(daemon: DaemonProcess, kind: str, canary: str) -> Any:
    return FakeFlagger("checkout", "shop").call(
        kind, f"{daemon.url}/gates/flagger/{kind}", {"slo": "checkout/shadow", "canary": canary}
    )


def cycles(daemon: DaemonProcess) -> float:
    [(_, count)] = daemon.metrics()["budgetguard_evaluation_duration_seconds_count"]
    return count


def test_a_mismatching_shadow_is_refused_promotion_never_rolled_back_and_told_once(
    tmp_path: Path, shadow_target: ShadowTarget, shadow_lab: PrometheusLab, hook: WebhookReceiver
) -> None:
    shadow_target.set_stream({"version": "v2"}, requests_per_second=20, error_ratio=0.2)
    daemon = start_shadow_daemon(tmp_path, shadow_lab, hook)
    try:
        [delivery] = hook.wait_for(1, timedelta(seconds=40), accepted=True)
        assert delivery.json["type"] == "budgetguard.incident.triggered"
        [incident] = daemon.get("/api/v1/incidents").json()["incidents"]
        assert (incident["slo_id"], incident["canary"], incident["baseline"]) == (
            "checkout/shadow",
            "v2",
            None,
        )

        rollback = shadow_hook(daemon, "rollback", "v2")
        assert (rollback.decision, rollback.status) == ("no rollback", 403)
        assert "never rolled back" in rollback.body["reason"]
        assert "its promotion is refused instead" in rollback.body["reason"]
        promotion = shadow_hook(daemon, "confirm-promotion", "v2")
        assert (promotion.decision, promotion.status) == ("wait", 403)
        release = daemon.get("/gates/release/checkout?canary=v2")
        assert release.status_code == 200 and release.json()["data"]["ok"] is False
        assert "shadow checkout/shadow refuses version=v2" in release.json()["data"]["reason"]
        blocked = gate_process_plain(daemon, "checkout", "--canary", "v2")
        assert (
            blocked.returncode == 4 and "refused  shadow checkout/shadow refuses version=v2" in blocked.stdout
        )

        # Later cycles keep seeing it burn: nothing more is sent, and nothing but the notice ever was.
        seen = cycles(daemon)
        wait_for(lambda: cycles(daemon) >= seen + 5, 20, "5 more cycles")
        assert len(hook.accepted) == 1 and len(daemon.get("/api/v1/incidents").json()["incidents"]) == 1
        assert shadow_hook(daemon, "rollback", "v2").status == 403
    finally:
        daemon.close()


def gate_process_plain(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "budgetguard", "gate", *args, "--url", daemon.url],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "BUDGETGUARD_API_TOKEN"},
        check=False,
    )


def test_a_clean_shadow_is_promoted_once_it_has_enough_comparisons(
    tmp_path: Path, shadow_target: ShadowTarget, shadow_lab: PrometheusLab, hook: WebhookReceiver
) -> None:
    shadow_target.set_stream({"version": "v3"}, requests_per_second=20, error_ratio=0.0)
    daemon = start_shadow_daemon(tmp_path, shadow_lab, hook)
    try:
        answers = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            reply = shadow_hook(daemon, "confirm-promotion", "v3")
            answers.append(reply)
            if reply.status == 200:
                break
            time.sleep(0.5)
        assert answers[-1].decision == "promote", answers[-1].body
        assert answers[0].decision == "wait"  # at first too few comparisons prove anything
        waiting = answers[0].body["reason"]
        assert (
            "requests a promotion needs" in waiting or "no traffic" in waiting or "more requests" in waiting
        )
        assert "enough requests to promote" in answers[-1].body["reason"]
        release = daemon.get("/gates/release/checkout?canary=v3").json()["data"]
        assert release["ok"] is True and release["shadows"][0]["refused"] is False
        assert gate_process_plain(daemon, "checkout", "--canary", "v3").returncode == 0
        assert shadow_hook(daemon, "rollback", "v3").status == 403
        assert hook.requests == [] and daemon.get("/api/v1/incidents").json()["incidents"] == []
    finally:
        daemon.close()
