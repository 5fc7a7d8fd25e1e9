"""A weight-based canary with no controller, end to end: the article's 90/10 Istio split.

A live service with v1 and v2, a real Prometheus scraping it every second, the daemon as a subprocess,
a faithful fake of the Kubernetes API holding the VirtualService, and a Standard Webhooks receiver for
the people to tell. When v2 starts failing, the VirtualService ends at v1 100 / v2 0 after exactly one
write, and the page, told once, says who is hurt. Every wait is bounded.
"""

from __future__ import annotations

import io
import json
import textwrap
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from budgetguard.cli import main
from lab.fakes import WebhookReceiver
from lab.fakes.kubernetes import K8S_TOKEN, KubernetesFake, weighted_route
from lab.target import MetricsTarget
from tests import test_canary_e2e as canary_e2e
from tests.test_canary_e2e import SECRET, Setup, cycles, incidents
from tests.test_daemon import DaemonProcess, wait_for

# The canary e2e's fixtures, reused by name: the live target (v1 at 50 requests/s), its Prometheus,
# the webhook receiver and the daemon setup.
target, prometheus, hook, setup = canary_e2e.target, canary_e2e.prometheus, canary_e2e.hook, canary_e2e.setup

NAMESPACE, VIRTUAL_SERVICE = "shop", "checkout-route"
DOGFOOD = weighted_route(
    "checkout", {"v2": 100}, name="dogfood", match=[{"headers": {"x-dogfood": {"exact": "1"}}}]
)

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
      AFFECTED
      on_burn: [shift]
      notify: [hook]
"""


def slo_file(affected_by: str | None = None) -> str:
    line = f"affected_by: [{affected_by}]" if affected_by else ""
    return textwrap.dedent(SLO_FILE).replace("AFFECTED", line)


def config(kubernetes: KubernetesFake, hook: WebhookReceiver) -> str:
    return textwrap.dedent(
        f"""
        delivery: {{backoff_base: 1s, backoff_max: 2s}}
        actions:
          shift:
            type: istio
            api_url: {kubernetes.url}
            token: {K8S_TOKEN}
            namespace: {NAMESPACE}
            virtual_service: ${{service}}-route
            route: primary
          hook:
            type: webhook
            url: {hook.endpoint}
            secret: {SECRET}
        """
    )


@pytest.fixture
def kubernetes() -> Iterator[KubernetesFake]:
    """The article's split: 90% to v1, 10% to v2, after a dogfood route that always sends to v2."""
    with KubernetesFake() as fake:
        fake.add_virtual_service(
            NAMESPACE,
            VIRTUAL_SERVICE,
            [DOGFOOD, weighted_route("checkout", {"v1": 90, "v2": 10}, name="primary", timeout="5s")],
        )
        yield fake


def start(
    setup: Setup, kubernetes: KubernetesFake, hook: WebhookReceiver, affected_by: str | None = None
) -> DaemonProcess:
    (setup.dir / "slos" / "checkout.yaml").write_text(slo_file(affected_by))
    return setup.start(config(kubernetes, hook))


def writes(kubernetes: KubernetesFake) -> list[Any]:
    return [r for r in kubernetes.requests if r.method != "GET"]


def test_a_failing_v2_is_shifted_to_stable_with_one_write_and_people_are_told_once(
    setup: Setup, target: MetricsTarget, kubernetes: KubernetesFake, hook: WebhookReceiver
) -> None:
    target.set_stream({"version": "v1"}, requests_per_second=45, error_ratio=0.0)
    target.set_stream({"version": "v2"}, requests_per_second=5, error_ratio=0.0)
    daemon = start(setup, kubernetes, hook)

    def judged_v2() -> list[dict[str, Any]]:
        [slo] = daemon.get("/api/v1/slos").json()["slos"]
        return [c for c in slo.get("canaries", []) if c["value"] == "v2"]

    wait_for(judged_v2, 30, "a judgement of the healthy v2")
    assert writes(kubernetes) == [] and kubernetes.weights(NAMESPACE, VIRTUAL_SERVICE, route=1) == {
        "v1": 90,
        "v2": 10,
    }

    target.set_stream({"version": "v2"}, requests_per_second=5, error_ratio=0.2)  # v2 starts failing
    wait_for(lambda: writes(kubernetes), 40, f"the shift; log:\n{daemon.logs()}")
    assert kubernetes.weights(NAMESPACE, VIRTUAL_SERVICE, route=1) == {"v1": 100, "v2": 0}
    spec = kubernetes.virtual_service(NAMESPACE, VIRTUAL_SERVICE)["spec"]
    assert spec["http"][0] == DOGFOOD and spec["http"][1]["timeout"] == "5s"  # nothing else touched
    [delivery] = hook.wait_for(1, accepted=True)
    [incident] = incidents(daemon)
    assert delivery.json["type"] == "budgetguard.incident.triggered"
    assert delivery.json["data"]["incident_id"] == incident["id"]
    assert (incident["canary"], incident["baseline"], incident["state"]) == ("v2", "v1", "open")

    # The lab's traffic does not follow the VirtualService, so v2 keeps burning: later cycles change nothing.
    seen = cycles(daemon)
    wait_for(lambda: cycles(daemon) >= seen + 5, 20, "5 more cycles")
    [write] = writes(kubernetes)
    assert (write.method, write.content_type) == ("PATCH", "application/json-patch+json")
    assert len(hook.accepted) == 1 and len(incidents(daemon)) == 1
    rows = setup.outbox()
    assert sorted((r["action"], r["status"]) for r in rows) == [("hook", "delivered"), ("shift", "delivered")]
    shift = next(r for r in rows if r["action"] == "shift")
    assert "route primary: canary 10% -> 0%, stable 90% -> 100%" in shift["last_detail"]
    assert "is owned" not in daemon.logs() and "managed by" not in daemon.logs()


def test_a_virtual_service_a_controller_owns_is_warned_about_at_start_up(
    setup: Setup, kubernetes: KubernetesFake, hook: WebhookReceiver
) -> None:
    owner = {"apiVersion": "flagger.app/v1beta1", "kind": "Canary", "name": "checkout", "controller": True}
    kubernetes.add_virtual_service(
        NAMESPACE, VIRTUAL_SERVICE, [weighted_route("checkout", {"v1": 90, "v2": 10})], owner=owner
    )
    daemon = start(setup, kubernetes, hook)
    wait_for(lambda: "owned by the Flagger Canary checkout" in daemon.logs(), 20, "the start-up warning")
    assert writes(kubernetes) == []  # a warning, not a write and not a refusal
    assert daemon.get("/readyz").status_code == 200


def test_the_incident_and_the_page_say_who_is_hurt(
    setup: Setup, target: MetricsTarget, kubernetes: KubernetesFake, hook: WebhookReceiver
) -> None:
    """v2's errors come almost all from eu-west: the incident shows that region first, with its share."""
    v2 = {"version": "v2", "route": "/pay"}
    target.set_stream({**v2, "region": "eu-west"}, requests_per_second=3, error_ratio=0.5)
    target.set_stream({**v2, "region": "us-east"}, requests_per_second=3, error_ratio=0.02)
    target.set_stream({**v2, "region": "us-east", "route": "/cart"}, requests_per_second=2, error_ratio=0.0)
    daemon = start(setup, kubernetes, hook, affected_by="region, route")

    wait_for(lambda: writes(kubernetes), 40, f"the shift; log:\n{daemon.logs()}")
    [incident] = incidents(daemon)
    shown = wait_for(
        lambda: daemon.get(f"/api/v1/incidents/{incident['id']}").json().get("affected"), 20, "the breakdown"
    )
    first = shown["slices"][0]
    assert first["labels"] == {"region": "eu-west", "route": "/pay"} and first["share"] > 0.8, shown
    assert (
        shown["top"]["region"][0]["labels"] == {"region": "eu-west"}
        and shown["top"]["region"][0]["share"] > 0.8
    )
    assert shown["by"] == ["region", "route"] and shown["window"] in ("10s", "30s")

    [page] = hook.wait_for(1, accepted=True, timeout=timedelta(seconds=30))
    told = page.json["data"]["affected"]
    assert told["slices"][0]["labels"] == {"region": "eu-west", "route": "/pay"}
    assert told["summary"].startswith("region eu-west 9")

    out, err = io.StringIO(), io.StringIO()
    assert main(["incidents", "show", incident["id"], "--db", str(setup.db)], out, err) == 0, err.getvalue()
    assert json.loads(out.getvalue())["affected"]["slices"][0]["labels"]["region"] == "eu-west"

    seen = cycles(daemon)
    wait_for(lambda: cycles(daemon) >= seen + 3, 20, "3 more cycles")
    assert len(writes(kubernetes)) == 1 and len(hook.accepted) == 1
    assert "who is affected: region eu-west" in daemon.logs()
