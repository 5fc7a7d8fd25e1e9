"""Specifications of the ``istio`` action, spoken over real HTTP to the lab's fake Kubernetes API.

The action sets a VirtualService's weights (canary to 0, its share to stable) with a JSON patch guarded
by ``test`` operations (reference integrations.md §5). The first tests prove the fake answers as the
API server does where the action relies on it: a merge patch replaces ``http`` whole, a failed
``test`` is 422, a stale resourceVersion is 409, strategic merge is 415, and every served version of
the CRD is one object.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import TypeAdapter, ValidationError

from budgetguard.actions import RESOLVABLE_TYPES, ActionConfig, build_action, placeholders_of
from budgetguard.actions.istio import IstioAction, IstioConfig, Side, build, ownership, plan, shift_patch
from budgetguard.cli import main
from budgetguard.core.ports import ActionOutcome, ActionRequest, ActionResult, EventKind
from lab.fakes.kubernetes import (
    K8S_TOKEN,
    VIRTUAL_SERVICE_VERSIONS,
    VIRTUAL_SERVICES,
    KubernetesFake,
    weighted_route,
)

REPO = Path(__file__).resolve().parent.parent
AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NS, VS = "shop", "checkout-route"
VS_PATH = f"/apis/networking.istio.io/v1beta1/namespaces/{NS}/virtualservices/{VS}"
JSON_PATCH = "application/json-patch+json"
FLAGGER_OWNER = {
    "apiVersion": "flagger.app/v1beta1",
    "kind": "Canary",
    "name": "checkout",
    "uid": "0b9c",
    "controller": True,
    "blockOwnerDeletion": True,
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def k8s() -> Iterator[KubernetesFake]:
    with KubernetesFake() as fake:
        yield fake


@pytest.fixture
async def raw() -> AsyncIterator[httpx.AsyncClient]:
    """A plain client, for proving what the fake answers to requests budgetguard never sends."""
    async with httpx.AsyncClient(timeout=5, headers={"Authorization": f"Bearer {K8S_TOKEN}"}) as client:
        yield client


def the_90_10_split(k8s: KubernetesFake, **metadata: Any) -> None:
    """The article's split, with a dogfood route in front and retries on the weighted one."""
    k8s.add_virtual_service(
        NS,
        VS,
        [
            weighted_route(
                "checkout", {"v2": 100}, name="dogfood", match=[{"headers": {"x-dogfood": {"exact": "1"}}}]
            ),
            weighted_route("checkout", {"v1": 90, "v2": 10}, name="primary", retries={"attempts": 3}),
        ],
        **metadata,
    )


def incident(event: EventKind = EventKind.TRIGGER, **context: str) -> ActionRequest:
    return ActionRequest(
        event=event,
        idempotency_key=f"inc-1.shift.{event}",
        incident_id="inc-1",
        service="checkout",
        slo="availability",
        reason="version=v2 over 30s: 12 errors in 60 requests (20%)",
        at=AT,
        canary_label="version",
        canary_value="v2",
        baseline="v1",
        context={
            "service": "checkout",
            "slo": "availability",
            "canary_label": "version",
            "canary": "v2",
            "baseline": "v1",
            **context,
        },
    )


def istio(fake: KubernetesFake, **overrides: Any) -> IstioAction:
    config = IstioConfig.model_validate(
        {
            "virtual_service": "${service}-route",
            "namespace": NS,
            "api_url": fake.url,
            "token": K8S_TOKEN,
            **overrides,
        }
    )
    return build("shift", config)


async def deliver(action: IstioAction, request: ActionRequest | None = None) -> ActionResult:
    try:
        return await action.deliver(request or incident())
    finally:
        await action.aclose()


def patches(k8s: KubernetesFake) -> list[Any]:
    return [r for r in k8s.requests if r.method == "PATCH"]


# --- the fake answers as the API server does ------------------------------------------------------


@pytest.mark.anyio
async def test_the_fake_replaces_the_whole_http_list_on_a_merge_patch(
    k8s: KubernetesFake, raw: httpx.AsyncClient
) -> None:
    """RFC 7386: arrays are replaced. A merge patch carrying only the weighted route drops the others."""
    the_90_10_split(k8s)
    partial = {"spec": {"http": [weighted_route("checkout", {"v1": 100, "v2": 0})]}}

    answer = await raw.patch(
        k8s.url + VS_PATH,
        content=json.dumps(partial).encode(),
        headers={"Content-Type": "application/merge-patch+json"},
    )

    assert answer.status_code == 200
    http = k8s.virtual_service(NS, VS)["spec"]["http"]
    assert len(http) == 1 and "retries" not in http[0], "the dogfood route and the retries are gone"


@pytest.mark.anyio
async def test_the_fake_applies_a_json_patch_to_the_paths_it_names_only(
    k8s: KubernetesFake, raw: httpx.AsyncClient
) -> None:
    the_90_10_split(k8s)
    operations = [{"op": "replace", "path": "/spec/http/1/route/1/weight", "value": 0}]

    answer = await raw.patch(
        k8s.url + VS_PATH, content=json.dumps(operations).encode(), headers={"Content-Type": JSON_PATCH}
    )

    assert answer.status_code == 200
    http = k8s.virtual_service(NS, VS)["spec"]["http"]
    assert [r["name"] for r in http] == ["dogfood", "primary"]
    assert http[1]["retries"] == {"attempts": 3}
    assert k8s.weights(NS, VS, route=1) == {"v1": 90, "v2": 0}


@pytest.mark.anyio
async def test_a_failed_json_patch_test_is_422_invalid_and_changes_nothing(
    k8s: KubernetesFake, raw: httpx.AsyncClient
) -> None:
    the_90_10_split(k8s)
    before = k8s.virtual_service(NS, VS)
    operations = [
        {"op": "test", "path": "/spec/http/1/route/1/destination/subset", "value": "v3"},
        {"op": "replace", "path": "/spec/http/1/route/1/weight", "value": 0},
    ]

    answer = await raw.patch(
        k8s.url + VS_PATH, content=json.dumps(operations).encode(), headers={"Content-Type": JSON_PATCH}
    )

    assert answer.status_code == 422
    body = answer.json()
    assert (body["kind"], body["reason"], body["code"]) == ("Status", "Invalid", 422)
    assert body["message"] == "the server rejected our request due to an error in our request"
    assert (
        "testing value /spec/http/1/route/1/destination/subset failed"
        in body["details"]["causes"][0]["message"]
    )
    assert k8s.virtual_service(NS, VS) == before


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        pytest.param(
            "application/merge-patch+json",
            {"metadata": {"resourceVersion": "1"}, "spec": {"hosts": ["x"]}},
            id="a merge patch with a stale resourceVersion",
        ),
        pytest.param(
            JSON_PATCH,
            [{"op": "replace", "path": "/metadata/resourceVersion", "value": "1"}],
            id="a JSON patch that sets a stale resourceVersion",
        ),
    ],
)
async def test_a_stale_resource_version_in_a_patch_is_a_409_conflict(
    k8s: KubernetesFake, raw: httpx.AsyncClient, content_type: str, body: Any
) -> None:
    the_90_10_split(k8s)

    answer = await raw.patch(
        k8s.url + VS_PATH, content=json.dumps(body).encode(), headers={"Content-Type": content_type}
    )

    assert answer.status_code == 409
    assert answer.json()["reason"] == "Conflict"
    assert "the object has been modified" in answer.json()["message"]


@pytest.mark.anyio
async def test_strategic_merge_on_a_virtual_service_is_415(
    k8s: KubernetesFake, raw: httpx.AsyncClient
) -> None:
    the_90_10_split(k8s)

    answer = await raw.patch(
        k8s.url + VS_PATH,
        content=b'{"spec":{"http":[]}}',
        headers={"Content-Type": "application/strategic-merge-patch+json"},
    )

    assert answer.status_code == 415
    assert answer.json()["reason"] == "UnsupportedMediaType"
    assert len(k8s.virtual_service(NS, VS)["spec"]["http"]) == 2


@pytest.mark.anyio
async def test_every_served_version_is_one_object(k8s: KubernetesFake, raw: httpx.AsyncClient) -> None:
    the_90_10_split(k8s)
    seen = {}
    for version in VIRTUAL_SERVICE_VERSIONS:
        answer = await raw.get(
            f"{k8s.url}/apis/networking.istio.io/{version}/namespaces/{NS}/virtualservices/{VS}"
        )
        seen[version] = answer.json()
    assert {v: o["apiVersion"] for v, o in seen.items()} == {
        v: f"networking.istio.io/{v}" for v in VIRTUAL_SERVICE_VERSIONS
    }
    assert len({o["metadata"]["resourceVersion"] for o in seen.values()}) == 1


# --- the shift ---------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_shift_reads_then_sends_one_guarded_json_patch_of_the_weights(k8s: KubernetesFake) -> None:
    the_90_10_split(k8s)
    version = k8s.virtual_service(NS, VS)["metadata"]["resourceVersion"]

    result = await deliver(istio(k8s))

    assert result.outcome is ActionOutcome.DELIVERED, result
    assert "route primary: canary 10% -> 0%, stable 90% -> 100%" in result.detail
    assert "route dogfood sends to the canary with no stable destination: left as is" in result.detail
    assert [(r.method, r.path) for r in k8s.requests] == [("GET", VS_PATH), ("PATCH", VS_PATH)]
    [patch] = patches(k8s)
    assert patch.content_type == JSON_PATCH
    assert patch.json() == [
        {"op": "test", "path": "/metadata/resourceVersion", "value": version},
        {
            "op": "test",
            "path": "/spec/http/1/route/1/destination",
            "value": {"host": "checkout", "subset": "v2"},
        },
        {
            "op": "test",
            "path": "/spec/http/1/route/0/destination",
            "value": {"host": "checkout", "subset": "v1"},
        },
        {"op": "replace", "path": "/spec/http/1/route/1/weight", "value": 0},
        {"op": "replace", "path": "/spec/http/1/route/0/weight", "value": 100},
    ]
    after = k8s.virtual_service(NS, VS)
    assert k8s.weights(NS, VS, route=1) == {"v1": 100, "v2": 0}
    assert after["spec"]["http"][0] == weighted_route(
        "checkout", {"v2": 100}, name="dogfood", match=[{"headers": {"x-dogfood": {"exact": "1"}}}]
    )
    assert after["spec"]["http"][1]["retries"] == {"attempts": 3}


@pytest.mark.anyio
async def test_a_canary_already_at_zero_is_already_done_without_a_write(k8s: KubernetesFake) -> None:
    k8s.add_virtual_service(NS, VS, [weighted_route("checkout", {"v1": 100, "v2": 0})])

    result = await deliver(istio(k8s))

    assert result.outcome is ActionOutcome.ALREADY_DONE
    assert "already gets 0%" in result.detail and "canary 0%, stable 100%" in result.detail
    assert patches(k8s) == []


@pytest.mark.anyio
async def test_a_second_delivery_finds_the_shift_done(k8s: KubernetesFake) -> None:
    the_90_10_split(k8s)
    first = await deliver(istio(k8s))
    second = await deliver(istio(k8s))
    assert (first.outcome, second.outcome) == (ActionOutcome.DELIVERED, ActionOutcome.ALREADY_DONE)
    assert len(patches(k8s)) == 1


@pytest.mark.anyio
async def test_an_edit_between_the_read_and_the_patch_fails_the_test_and_is_decided_again(
    k8s: KubernetesFake,
) -> None:
    """Someone moved the split to 80/20 after our read: our guarded patch gets 422, we read the new
    object and shift from there, never writing weights computed from the old one."""
    the_90_10_split(k8s)

    def rebalance(vs: dict[str, Any]) -> None:
        vs["spec"]["http"][1]["route"][0]["weight"] = 80
        vs["spec"]["http"][1]["route"][1]["weight"] = 20

    k8s.before_next("PATCH", lambda: k8s.store.update(VIRTUAL_SERVICES, NS, VS, rebalance))

    result = await deliver(istio(k8s))

    assert result.outcome is ActionOutcome.DELIVERED, result
    assert "canary 20% -> 0%, stable 80% -> 100%" in result.detail
    assert [r.method for r in k8s.requests] == ["GET", "PATCH", "GET", "PATCH"]
    assert k8s.weights(NS, VS, route=1) == {"v1": 100, "v2": 0}


@pytest.mark.anyio
async def test_a_shift_someone_else_made_meanwhile_is_already_done(k8s: KubernetesFake) -> None:
    the_90_10_split(k8s)

    def shift(vs: dict[str, Any]) -> None:
        vs["spec"]["http"][1]["route"][0]["weight"] = 100
        vs["spec"]["http"][1]["route"][1]["weight"] = 0

    k8s.before_next("PATCH", lambda: k8s.store.update(VIRTUAL_SERVICES, NS, VS, shift))

    result = await deliver(istio(k8s))

    assert result.outcome is ActionOutcome.ALREADY_DONE, result
    assert [r.method for r in k8s.requests] == ["GET", "PATCH", "GET"]


@pytest.mark.anyio
async def test_a_409_conflict_is_read_again_and_retried_in_the_same_delivery(k8s: KubernetesFake) -> None:
    the_90_10_split(k8s)
    k8s.fail_next(1, 409, method="PATCH")

    result = await deliver(istio(k8s))

    assert result.outcome is ActionOutcome.DELIVERED, result
    assert [r.method for r in k8s.requests] == ["GET", "PATCH", "GET", "PATCH"]


@pytest.mark.anyio
async def test_an_object_that_keeps_changing_is_left_to_the_outbox_to_retry(k8s: KubernetesFake) -> None:
    the_90_10_split(k8s)
    k8s.fail_next(3, 409, method="PATCH")

    result = await deliver(istio(k8s))

    assert (result.outcome, result.status) == (ActionOutcome.RETRY, 409)
    assert "kept changing" in result.detail
    assert k8s.weights(NS, VS, route=1) == {"v1": 90, "v2": 10}


@pytest.mark.anyio
async def test_a_422_on_an_unchanged_object_is_the_patch_refused_for_good(k8s: KubernetesFake) -> None:
    """Not a race: the object is as we read it, so the API server (or an admission webhook) refuses
    the patch itself. Reading and patching again would get the same answer."""
    the_90_10_split(k8s)
    k8s.fail_next(
        1, 422, method="PATCH", message='admission webhook "validation.istio.io" denied the request'
    )

    result = await deliver(istio(k8s))

    assert (result.outcome, result.status) == (ActionOutcome.FAILED, 422)
    assert "validation.istio.io" in result.detail
    assert [r.method for r in k8s.requests] == ["GET", "PATCH", "GET"]


@pytest.mark.anyio
async def test_a_415_names_the_content_type_and_is_not_retried(k8s: KubernetesFake) -> None:
    the_90_10_split(k8s)
    k8s.fail_next(1, 415, method="PATCH")

    result = await deliver(istio(k8s))

    assert (result.outcome, result.status) == (ActionOutcome.FAILED, 415)
    assert "content type" in result.detail


FAULTS = {
    "an unavailable API server is retried": ("fail 503", ActionOutcome.RETRY, "HTTP 503"),
    "a missing VirtualService fails": (
        "missing",
        ActionOutcome.FAILED,
        "no such VirtualService shop/checkout-route",
    ),
    "RBAC refusing the patch fails, naming the resource": (
        "forbid patch",
        ActionOutcome.FAILED,
        "RBAC forbids patch on virtualservices.networking.istio.io",
    ),
    "RBAC refusing the read fails": ("forbid get", ActionOutcome.FAILED, "RBAC forbids get"),
    "a rejected token fails, naming credentials": ("rotate", ActionOutcome.FAILED, "credentials"),
}


@pytest.mark.anyio
@pytest.mark.parametrize(("arrange", "outcome", "words"), FAULTS.values(), ids=FAULTS.keys())
async def test_answers_of_the_kubernetes_api_are_classified(
    k8s: KubernetesFake, arrange: str, outcome: ActionOutcome, words: str
) -> None:
    if arrange != "missing":
        the_90_10_split(k8s)
    if arrange.startswith("fail"):
        k8s.fail_next(1, int(arrange.split()[1]))
    elif arrange.startswith("forbid"):
        k8s.forbid(arrange.split()[1], "virtualservices", group="networking.istio.io")
    elif arrange == "rotate":
        k8s.tokens = {"another-token"}

    result = await deliver(istio(k8s))

    assert result.outcome is outcome, result
    assert words in result.detail
    assert K8S_TOKEN not in result.detail


@pytest.mark.anyio
async def test_resolve_shifts_nothing_back(k8s: KubernetesFake) -> None:
    the_90_10_split(k8s)
    result = await deliver(istio(k8s), incident(EventKind.RESOLVE))
    assert result.outcome is ActionOutcome.ALREADY_DONE and "stays at 0%" in result.detail
    assert k8s.requests == []


@pytest.mark.anyio
async def test_a_named_route_by_host_in_the_v1_api(k8s: KubernetesFake) -> None:
    """Routing by host (a Service per version, fully qualified) and a route chosen by its name."""
    k8s.add_virtual_service(
        NS,
        VS,
        [
            {
                "name": "web",
                "route": [
                    {"destination": {"host": "checkout-stable.shop.svc.cluster.local"}, "weight": 75},
                    {"destination": {"host": "checkout-canary.shop.svc.cluster.local"}, "weight": 25},
                ],
            }
        ],
    )
    action = istio(
        k8s, route="web", canary_host="${service}-canary", stable_host="${service}-stable", api_version="v1"
    )

    result = await deliver(action)

    assert result.outcome is ActionOutcome.DELIVERED, result
    assert {r.path for r in k8s.requests} == {
        f"/apis/networking.istio.io/v1/namespaces/{NS}/virtualservices/{VS}"
    }
    assert k8s.weights(NS, VS) == {
        "checkout-stable.shop.svc.cluster.local": 100,
        "checkout-canary.shop.svc.cluster.local": 0,
    }


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        pytest.param(
            {"route": "checkout"},
            "no http route named 'checkout' (named: dogfood, primary)",
            id="an unknown route name",
        ),
        pytest.param({"route": 5}, "there is no index 5", id="an index past the end"),
        pytest.param(
            {"route": "dogfood"}, "route dogfood has no stable destination", id="a route without stable"
        ),
        pytest.param({"canary_subset": "v3"}, "no http route sends to both", id="a canary no route sends to"),
    ],
)
async def test_a_virtual_service_without_the_route_fails_without_a_write(
    k8s: KubernetesFake, overrides: dict[str, Any], words: str
) -> None:
    the_90_10_split(k8s)
    result = await deliver(istio(k8s, **overrides))
    assert result.outcome is ActionOutcome.FAILED
    assert words in result.detail
    assert patches(k8s) == []


@pytest.mark.anyio
async def test_a_controller_owning_the_weights_is_a_warning_in_the_detail_not_a_refusal(
    k8s: KubernetesFake,
) -> None:
    the_90_10_split(k8s, owner=FLAGGER_OWNER)

    result = await deliver(istio(k8s))

    assert result.outcome is ActionOutcome.DELIVERED
    assert "warning: owned by the Flagger Canary checkout" in result.detail
    assert k8s.weights(NS, VS, route=1) == {"v1": 100, "v2": 0}


@pytest.mark.anyio
async def test_unusable_names_fail_before_any_request(k8s: KubernetesFake) -> None:
    result = await deliver(istio(k8s, virtual_service="${service}_Route"))
    assert result.outcome is ActionOutcome.FAILED and "not a Kubernetes object name" in result.detail
    result = await deliver(istio(k8s), incident(baseline=""))
    assert result.outcome is ActionOutcome.FAILED and "stable destination renders empty" in result.detail
    assert k8s.requests == []


# --- the start-up check --------------------------------------------------------------------------

START_CONTEXT = {
    "service": "checkout",
    "slo": "availability",
    "canary_label": "version",
    "canary": "",
    "baseline": "v1",
}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("metadata", "words"),
    [
        pytest.param(
            {"owner": FLAGGER_OWNER}, "owned by the Flagger Canary checkout", id="Flagger's ownerReference"
        ),
        pytest.param(
            {"owner": {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "checkout"}},
            "owned by the Argo Rollouts Rollout checkout",
            id="a Rollout's ownerReference",
        ),
        pytest.param(
            {"annotations": {"flagger.kubernetes.app/original-configuration": "{}"}},
            "managed by Flagger",
            id="Flagger's annotation",
        ),
        pytest.param(
            {
                "annotations": {
                    "argocd.argoproj.io/tracking-id": "shop:networking.istio.io/VirtualService:shop/x"
                }
            },
            "tracked by Argo CD: self-heal reverts the weights",
            id="Argo CD's tracking annotation",
        ),
    ],
)
async def test_the_start_up_check_warns_about_whoever_rewrites_the_weights(
    k8s: KubernetesFake, metadata: dict[str, Any], words: str
) -> None:
    the_90_10_split(k8s, **metadata)
    action = istio(k8s)
    try:
        warnings = await action.check([START_CONTEXT])
    finally:
        await action.aclose()
    [warning] = warnings
    assert "VirtualService shop/checkout-route is " in warning and words in warning


@pytest.mark.anyio
async def test_the_start_up_check_sees_argo_rollouts_through_the_services_it_manages(
    k8s: KubernetesFake,
) -> None:
    """Argo Rollouts leaves no mark on the VirtualService; it annotates its canary and stable Services."""
    k8s.add_virtual_service(
        NS,
        VS,
        [
            {
                "route": [
                    {"destination": {"host": "checkout-stable"}, "weight": 90},
                    {"destination": {"host": "checkout-canary"}, "weight": 10},
                ]
            }
        ],
    )
    k8s.add_service(
        NS, "checkout-stable", annotations={"argo-rollouts.argoproj.io/managed-by-rollouts": "checkout"}
    )
    action = istio(k8s)
    try:
        [warning] = await action.check([START_CONTEXT])
    finally:
        await action.aclose()
    assert "the Service shop/checkout-stable that the Argo Rollouts Rollout checkout manages" in warning


@pytest.mark.anyio
async def test_the_start_up_check_is_quiet_about_a_plain_virtual_service(k8s: KubernetesFake) -> None:
    the_90_10_split(k8s)
    action = istio(k8s)
    try:
        assert await action.check([START_CONTEXT, START_CONTEXT]) == []
    finally:
        await action.aclose()
    assert [r.method for r in k8s.requests if "virtualservices" in r.path] == ["GET"]  # one read per object


@pytest.mark.anyio
async def test_the_start_up_check_warns_when_the_object_cannot_be_read_and_skips_canary_names(
    k8s: KubernetesFake,
) -> None:
    action = istio(k8s)
    per_canary = istio(k8s, virtual_service="${service}-${canary}")
    try:
        [missing] = await action.check([START_CONTEXT])
        assert await per_canary.check([START_CONTEXT]) == []  # unknown before a release: not read
    finally:
        await action.aclose()
        await per_canary.aclose()
    assert "no such VirtualService shop/checkout-route" in missing and "will fail" in missing
    assert len(k8s.requests) == 1


# --- planning, pure ------------------------------------------------------------------------------

CANARY, STABLE = Side("v2", None), Side("v1", None)


def vs(*routes: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"resourceVersion": "7"}, "spec": {"http": list(routes)}}


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        pytest.param(
            {
                "route": [
                    {"destination": {"host": "a", "subset": "v1"}, "weight": 80},
                    {"destination": {"host": "a", "subset": "v2"}, "weight": 10},
                    {"destination": {"host": "a", "subset": "v3"}, "weight": 10},
                ]
            },
            [("replace", "/spec/http/0/route/1/weight", 0), ("replace", "/spec/http/0/route/0/weight", 90)],
            id="a third destination keeps its weight and the sum stays 100",
        ),
        pytest.param(
            {
                "route": [
                    {"destination": {"host": "a", "subset": "v1"}},
                    {"destination": {"host": "a", "subset": "v2"}, "weight": 30},
                ]
            },
            [("replace", "/spec/http/0/route/1/weight", 0), ("add", "/spec/http/0/route/0/weight", 30)],
            id="an unset weight is added, not replaced",
        ),
    ],
)
def test_the_patch_moves_the_canary_share_to_stable(
    route: dict[str, Any], expected: list[tuple[str, str, int]]
) -> None:
    found = plan(vs(route), None, CANARY, STABLE)
    assert not isinstance(found, str)
    operations = shift_patch("7", found.shifts)
    assert operations[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "7"}
    assert [(o["op"], o["path"], o["value"]) for o in operations if o["op"] != "test"] == expected


def test_an_unset_canary_weight_beside_another_destination_is_zero_already() -> None:
    """Istio: only a lone destination takes all traffic without a weight; otherwise unset is 0."""
    found = plan(
        vs(
            {
                "route": [
                    {"destination": {"host": "a", "subset": "v1"}, "weight": 100},
                    {"destination": {"host": "a", "subset": "v2"}},
                ]
            }
        ),
        None,
        CANARY,
        STABLE,
    )
    assert not isinstance(found, str) and found.done


def test_ownership_of_an_unmarked_object_is_nobody() -> None:
    assert ownership({"metadata": {"name": "x", "labels": {"app": "x"}}}) == []


# --- configuration and registry ------------------------------------------------------------------


def test_the_registry_builds_it_and_resolve_is_not_sent_to_it() -> None:
    config = TypeAdapter(ActionConfig).validate_python(
        {
            "type": "istio",
            "virtual_service": "${service}-route",
            "namespace": "shop",
            "api_url": "http://127.0.0.1:9",
            "token": "t0ken",
        }
    )
    action = build_action("shift", config)
    assert action.name == "shift" and "t0ken" not in repr(action)
    assert placeholders_of(config) == {"service", "canary", "baseline"}  # the default subsets
    assert "istio" not in RESOLVABLE_TYPES


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        pytest.param({"route": -1}, "an index counts from 0", id="a negative route index"),
        pytest.param({"namespace": " "}, "must not be empty", id="a blank namespace"),
        pytest.param({"api_version": "v2"}, "v1beta1", id="an api version Istio does not serve"),
        pytest.param(
            {"ca_file": "/ca.pem", "verify_tls": False},
            "ca_file has no effect",
            id="TLS settings that contradict",
        ),
    ],
)
def test_settings_that_cannot_work_are_refused_at_load(fields: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError) as caught:
        IstioConfig.model_validate({"virtual_service": "x", "namespace": "shop", **fields})
    assert words in str(caught.value)


def test_a_host_side_has_no_default_subset() -> None:
    config = IstioConfig.model_validate({"virtual_service": "x", "namespace": "y", "canary_host": "c"})
    assert (config.canary_subset, config.canary_host, config.stable_subset) == (None, "c", "${baseline}")


# --- the shipped example -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_shipped_example_shifts_the_shipped_90_10_virtual_service(k8s: KubernetesFake) -> None:
    examples = REPO / "deploy" / "examples"
    documents = list(yaml.safe_load_all((examples / "istio-virtualservice.yaml").read_text()))
    [manifest] = [d for d in documents if d["kind"] == "VirtualService"]
    namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    k8s.add_virtual_service(namespace, name, manifest["spec"]["http"], hosts=manifest["spec"]["hosts"])
    settings = yaml.safe_load((examples / "istio-config.yaml").read_text())["actions"]["shift-to-stable"]
    action = build(
        "shift-to-stable", IstioConfig.model_validate({**settings, "api_url": k8s.url, "token": K8S_TOKEN})
    )

    result = await deliver(action, incident(service="product-page"))

    assert result.outcome is ActionOutcome.DELIVERED, result
    assert k8s.weights(namespace, name, route=1) == {"v1": 100, "v2": 0}
    assert k8s.virtual_service(namespace, name)["spec"]["http"][0] == manifest["spec"]["http"][0]


def test_the_shipped_slo_loads_with_the_actions_the_example_config_declares() -> None:
    out, err = io.StringIO(), io.StringIO()
    code = main(
        [
            "check",
            str(REPO / "slos" / "product-page.yaml"),
            "--config",
            str(REPO / "deploy" / "examples" / "istio-config.yaml"),
        ],
        out,
        err,
    )
    assert code == 0, err.getvalue()
    assert main(["check", str(REPO / "slos")], out, err) == 0
