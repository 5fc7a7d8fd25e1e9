"""Specifications of the deployment and flag actions, spoken over real HTTP to the lab's fakes.

Argo Rollouts (through the Kubernetes API), Argo CD (rollout abort and rollback), Unleash and
LaunchDarkly. Every action goes through its production seam (httpx over a loopback socket) to a fake
that answers as the real service does (reference integrations.md §1, §3, §6); a few tests first prove
the fake itself is faithful where the action relies on it (415 for strategic merge, an abort undone on a
fully promoted rollout, Argo CD's exact content type, LaunchDarkly's semantic-patch content type).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import ValidationError

from budgetguard.actions.argo_rollouts import ArgoRolloutsAction, ArgoRolloutsConfig
from budgetguard.actions.argo_rollouts import build as build_rollouts
from budgetguard.actions.argocd import ArgoCDConfig
from budgetguard.actions.argocd import build as build_argocd
from budgetguard.actions.flags import LaunchDarklyConfig, UnleashConfig, build_launchdarkly, build_unleash
from budgetguard.core.errors import ConfigError
from budgetguard.core.ports import Action, ActionOutcome, ActionRequest, ActionResult, EventKind
from lab.fakes.argocd import ARGOCD_TOKEN, ArgoCDFake
from lab.fakes.flags import LD_TOKEN, UNLEASH_TOKEN, LaunchDarklyFake, UnleashFake
from lab.fakes.kubernetes import K8S_TOKEN, ROLLOUTS, KubernetesFake, TLSFiles, reconcile_rollout

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ROLLOUT_PATH = "/apis/argoproj.io/v1alpha1/namespaces/prod/rollouts/checkout"
MERGE_PATCH = "application/merge-patch+json"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def incident(event: EventKind = EventKind.TRIGGER, /, **context: str) -> ActionRequest:
    return ActionRequest(
        event=event,
        idempotency_key=f"inc-1/deploy/{event}",
        incident_id="inc-1",
        service="checkout",
        slo="availability",
        reason="burn rate 16x over 1h on checkout availability",
        at=AT,
        canary_label="track",
        canary_value="canary",
        baseline="stable",
        context={
            "service": "checkout",
            "slo": "availability",
            "canary_label": "track",
            "canary": "canary",
            "baseline": "stable",
            **context,
        },
    )


async def deliver(action: Action, request: ActionRequest | None = None) -> ActionResult:
    try:
        return await action.deliver(request or incident())
    finally:
        await action.aclose()


@pytest.fixture
def k8s() -> Iterator[KubernetesFake]:
    with KubernetesFake() as fake:
        yield fake


@pytest.fixture
def argocd(k8s: KubernetesFake) -> Iterator[ArgoCDFake]:
    # One cluster: Argo CD's resource actions change the Rollouts the Kubernetes fake serves.
    with ArgoCDFake(cluster=k8s.store) as fake:
        yield fake


@pytest.fixture
def unleash() -> Iterator[UnleashFake]:
    with UnleashFake() as fake:
        yield fake


@pytest.fixture
def launchdarkly() -> Iterator[LaunchDarklyFake]:
    with LaunchDarklyFake() as fake:
        yield fake


@pytest.fixture
async def raw() -> AsyncIterator[httpx.AsyncClient]:
    """A plain client, for proving what the fakes answer to requests budgetguard never sends."""
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


# --- Argo Rollouts ---------------------------------------------------------------------------------


def rollouts(fake: KubernetesFake, **overrides: Any) -> ArgoRolloutsAction:
    config = ArgoRolloutsConfig.model_validate(
        {"rollout": "${service}", "namespace": "prod", "api_url": fake.url, "token": K8S_TOKEN, **overrides}
    )
    return build_rollouts("halt-checkout", config)


@pytest.mark.anyio
async def test_every_action_satisfies_the_action_port_and_keeps_tokens_out_of_its_repr() -> None:
    # The annotation is the check (mypy --strict); building does no I/O.
    actions: list[Action] = [
        build_rollouts(
            "r",
            ArgoRolloutsConfig.model_validate(
                {"rollout": "x", "namespace": "y", "api_url": "http://127.0.0.1:9", "token": K8S_TOKEN}
            ),
        ),
        build_argocd(
            "a",
            ArgoCDConfig.model_validate(
                {"url": "http://127.0.0.1:9", "token": ARGOCD_TOKEN, "application": "x", "mode": "rollback"}
            ),
        ),
        build_unleash(
            "u",
            UnleashConfig.model_validate(
                {"url": "http://127.0.0.1:9", "token": UNLEASH_TOKEN, "feature": "f", "environment": "e"}
            ),
        ),
        build_launchdarkly(
            "l",
            LaunchDarklyConfig.model_validate(
                {"token": LD_TOKEN, "project_key": "p", "flag_key": "f", "environment_key": "e"}
            ),
        ),
    ]
    for action in actions:
        await action.aclose()
        assert not any(token in repr(action) for token in (K8S_TOKEN, ARGOCD_TOKEN, UNLEASH_TOKEN, LD_TOKEN))
    assert [a.name for a in actions] == ["r", "a", "u", "l"]


@pytest.mark.anyio
async def test_abort_reads_the_rollout_then_merge_patches_its_status_once(k8s: KubernetesFake) -> None:
    k8s.add_rollout("prod", "checkout")

    result = await deliver(rollouts(k8s))

    assert result.outcome is ActionOutcome.DELIVERED, result
    assert result.status == 200
    assert [(r.method, r.path) for r in k8s.requests] == [
        ("GET", ROLLOUT_PATH),
        ("PATCH", ROLLOUT_PATH + "/status"),
    ]
    patch = k8s.requests_where("PATCH")[0]
    assert patch.content_type == MERGE_PATCH
    assert patch.json() == {"status": {"abort": True}}
    assert patch.headers["authorization"] == f"Bearer {K8S_TOKEN}"
    status = k8s.rollout("prod", "checkout")["status"]
    assert status["abort"] is True
    assert status["phase"] == "Degraded"
    assert status["canary"]["weights"]["canary"]["weight"] == 0


@dataclass(frozen=True)
class RolloutCase:
    seed: dict[str, Any] | None  # add_rollout keyword arguments; None: no rollout at all
    outcome: ActionOutcome
    detail: str


ROLLOUT_STATES = {
    "an already aborted rollout is already done": RolloutCase(
        {"abort": True}, ActionOutcome.ALREADY_DONE, "already aborted"
    ),
    "a fully promoted rollout is already done, since an abort would be undone": RolloutCase(
        {"stable_rs": "7d9c8b6f5", "current_pod_hash": "7d9c8b6f5"},
        ActionOutcome.ALREADY_DONE,
        "already fully promoted: abort would be undone",
    ),
    "a missing rollout fails": RolloutCase(None, ActionOutcome.FAILED, "no such rollout prod/checkout"),
}


@pytest.mark.anyio
@pytest.mark.parametrize("case", ROLLOUT_STATES.values(), ids=ROLLOUT_STATES.keys())
async def test_the_rollout_state_is_read_and_reported_without_patching(
    k8s: KubernetesFake, case: RolloutCase
) -> None:
    if case.seed is not None:
        k8s.add_rollout("prod", "checkout", **case.seed)

    result = await deliver(rollouts(k8s))

    assert result.outcome is case.outcome, result
    assert case.detail in result.detail
    assert k8s.requests_where("PATCH") == []


@pytest.mark.anyio
async def test_the_fake_undoes_an_abort_of_a_fully_promoted_rollout_as_the_controller_does(
    k8s: KubernetesFake, raw: httpx.AsyncClient
) -> None:
    """Why the action reads first: the PATCH succeeds, and the controller clears it right after."""
    k8s.add_rollout("prod", "checkout", stable_rs="abc", current_pod_hash="abc")
    auth = {"Authorization": f"Bearer {K8S_TOKEN}"}

    patched = await raw.patch(
        k8s.url + ROLLOUT_PATH + "/status",
        content=b'{"status":{"abort":true}}',
        headers={**auth, "Content-Type": MERGE_PATCH},
    )
    assert patched.status_code == 200
    assert patched.json()["status"]["abort"] is True
    live = (await raw.get(k8s.url + ROLLOUT_PATH, headers=auth)).json()
    assert "abort" not in live["status"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "content_type",
    ["application/strategic-merge-patch+json", "application/json"],
    ids=["strategic merge is refused on a custom resource", "plain JSON is no patch type at all"],
)
async def test_the_fake_refuses_patch_types_a_crd_does_not_accept_with_415(
    k8s: KubernetesFake, raw: httpx.AsyncClient, content_type: str
) -> None:
    k8s.add_rollout("prod", "checkout")

    answer = await raw.patch(
        k8s.url + ROLLOUT_PATH + "/status",
        content=b'{"status":{"abort":true}}',
        headers={"Authorization": f"Bearer {K8S_TOKEN}", "Content-Type": content_type},
    )

    assert answer.status_code == 415
    assert answer.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
        "reason": "UnsupportedMediaType",
        "code": 415,
    }
    assert "abort" not in k8s.rollout("prod", "checkout")["status"]


@pytest.mark.anyio
async def test_the_fake_silently_drops_status_from_a_main_resource_patch(
    k8s: KubernetesFake, raw: httpx.AsyncClient
) -> None:
    k8s.add_rollout("prod", "checkout")

    answer = await raw.patch(
        k8s.url + ROLLOUT_PATH,
        content=b'{"status":{"abort":true}}',
        headers={"Authorization": f"Bearer {K8S_TOKEN}", "Content-Type": MERGE_PATCH},
    )

    assert answer.status_code == 200
    assert "abort" not in k8s.rollout("prod", "checkout")["status"]


@pytest.mark.anyio
async def test_the_fake_keeps_the_first_abort_and_its_resource_version_on_a_repeat(
    k8s: KubernetesFake, raw: httpx.AsyncClient
) -> None:
    k8s.add_rollout("prod", "checkout")
    headers = {"Authorization": f"Bearer {K8S_TOKEN}", "Content-Type": MERGE_PATCH}
    url = k8s.url + ROLLOUT_PATH + "/status"

    await raw.patch(url, content=b'{"status":{"abort":true}}', headers=headers)
    first = k8s.rollout("prod", "checkout")
    again = await raw.patch(url, content=b'{"status":{"abort":true}}', headers=headers)

    assert again.status_code == 200
    assert again.json()["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert k8s.rollout("prod", "checkout")["status"]["abortedAt"] == first["status"]["abortedAt"]


@pytest.mark.anyio
async def test_the_fake_requires_a_bearer_token_and_answers_a_status(
    k8s: KubernetesFake, raw: httpx.AsyncClient
) -> None:
    answer = await raw.get(k8s.url + ROLLOUT_PATH)

    assert answer.status_code == 401
    assert answer.json()["reason"] == "Unauthorized"


@pytest.mark.anyio
async def test_a_crd_without_the_status_subresource_gets_the_abort_on_the_main_resource(
    k8s: KubernetesFake,
) -> None:
    """Argo Rollouts < v0.10: /status is 404, so the kubectl plugin's fallback patches the object."""
    k8s.store.register(replace(ROLLOUTS, status_subresource=False), reconcile_rollout)
    k8s.add_rollout("prod", "checkout")

    result = await deliver(rollouts(k8s))

    assert result.outcome is ActionOutcome.DELIVERED, result
    assert [r.path for r in k8s.requests_where("PATCH")] == [ROLLOUT_PATH + "/status", ROLLOUT_PATH]
    assert k8s.rollout("prod", "checkout")["status"]["abort"] is True


@pytest.mark.anyio
async def test_templated_names_are_rendered_from_the_incident_context(k8s: KubernetesFake) -> None:
    k8s.add_rollout("shop", "checkout-canary")

    result = await deliver(
        rollouts(k8s, rollout="${service}-${canary}", namespace="${namespace}"), incident(namespace="shop")
    )

    assert result.outcome is ActionOutcome.DELIVERED, result
    assert [r.path for r in k8s.requests_where("PATCH")] == [
        "/apis/argoproj.io/v1alpha1/namespaces/shop/rollouts/checkout-canary/status"
    ]
    assert k8s.rollout("shop", "checkout-canary")["status"]["abort"] is True


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("overrides", "context", "detail"),
    [
        ({"namespace": "${team}"}, {}, "uses ${team}, which this incident's context lacks"),
        ({"rollout": "${canary}"}, {"canary": "../../secrets/x"}, "is not a Kubernetes object name"),
        ({"namespace": "${namespace}"}, {"namespace": "Prod"}, "is not a Kubernetes namespace name"),
    ],
    ids=[
        "a placeholder missing from the context fails",
        "a name that would escape its path segment fails",
        "a namespace that is no DNS label fails",
    ],
)
async def test_unusable_names_fail_before_any_request(
    k8s: KubernetesFake, overrides: dict[str, str], context: dict[str, str], detail: str
) -> None:
    result = await deliver(rollouts(k8s, **overrides), incident(**context))

    assert result.outcome is ActionOutcome.FAILED
    assert detail in result.detail
    assert k8s.requests == []


@pytest.mark.anyio
async def test_resolve_never_un_aborts(k8s: KubernetesFake) -> None:
    k8s.add_rollout("prod", "checkout", abort=True)

    result = await deliver(rollouts(k8s), incident(EventKind.RESOLVE))

    assert result.outcome is ActionOutcome.ALREADY_DONE
    assert "resumed by a human" in result.detail
    assert k8s.requests == []


@dataclass(frozen=True)
class FaultCase:
    arrange: str  # what the fake is told before the delivery
    outcome: ActionOutcome
    detail: tuple[str, ...]


ROLLOUT_FAULTS = {
    "an API server error (500) is retried": FaultCase("fail 500", ActionOutcome.RETRY, ("HTTP 500",)),
    "an unavailable API server (503) is retried": FaultCase("fail 503", ActionOutcome.RETRY, ("HTTP 503",)),
    "a conflict (409) on the patch is retried": FaultCase(
        "fail PATCH 409", ActionOutcome.RETRY, ("HTTP 409",)
    ),
    "a 502 on the patch is retried": FaultCase("fail PATCH 502", ActionOutcome.RETRY, ("HTTP 502",)),
    "RBAC refusing the patch fails, naming the verb and resource": FaultCase(
        "forbid patch rollouts/status", ActionOutcome.FAILED, ("RBAC forbids patch", "rollouts/status")
    ),
    "RBAC refusing the read fails, naming the verb and resource": FaultCase(
        "forbid get rollouts", ActionOutcome.FAILED, ("RBAC forbids get", "rollouts.argoproj.io")
    ),
    "a rejected token fails, naming credentials": FaultCase(
        "rotate token", ActionOutcome.FAILED, ("credentials", "HTTP 401")
    ),
}


@pytest.mark.anyio
@pytest.mark.parametrize("case", ROLLOUT_FAULTS.values(), ids=ROLLOUT_FAULTS.keys())
async def test_answers_of_the_kubernetes_api_are_classified(k8s: KubernetesFake, case: FaultCase) -> None:
    k8s.add_rollout("prod", "checkout")
    words = case.arrange.split()
    if words[0] == "fail":
        method = words[1] if len(words) == 3 else None
        k8s.fail_next(1, int(words[-1]), method=method)
    elif words[0] == "forbid":
        k8s.forbid(words[1], words[2])
    else:
        k8s.tokens = {"a-token-budgetguard-does-not-have"}

    result = await deliver(rollouts(k8s))

    assert result.outcome is case.outcome, result
    for words_expected in case.detail:
        assert words_expected in result.detail
    assert K8S_TOKEN not in result.detail


@pytest.mark.anyio
async def test_a_throttled_api_server_is_retried_after_its_retry_after(k8s: KubernetesFake) -> None:
    """API Priority and Fairness answers 429 with Retry-After; the outbox waits at least that long."""
    k8s.add_rollout("prod", "checkout")
    k8s.fail_next(1, 429, method="PATCH", headers={"Retry-After": "3"})

    result = await deliver(rollouts(k8s))

    assert (result.outcome, result.status, result.retry_after) == (
        ActionOutcome.RETRY,
        429,
        timedelta(seconds=3),
    )
    assert "abort" not in k8s.rollout("prod", "checkout")["status"]


@pytest.mark.anyio
async def test_a_missing_service_account_token_fails_naming_credentials_without_a_request(
    k8s: KubernetesFake, tmp_path: Path
) -> None:
    result = await deliver(rollouts(k8s, token=None, token_file=str(tmp_path / "token")))

    assert result.outcome is ActionOutcome.FAILED
    assert "no credentials" in result.detail
    assert str(tmp_path / "token") in result.detail
    assert k8s.requests == []


@pytest.mark.anyio
async def test_the_service_account_token_is_reread_for_every_delivery(
    k8s: KubernetesFake, tmp_path: Path
) -> None:
    """The kubelet rotates projected tokens; a copy read once at start-up would expire."""
    token_file = tmp_path / "token"
    token_file.write_text("first-projected-token\n")
    k8s.tokens = {"first-projected-token"}
    k8s.add_rollout("prod", "checkout")
    k8s.add_rollout("prod", "search")
    action = rollouts(k8s, token=None, token_file=str(token_file), rollout="${service}")
    try:
        first = await action.deliver(incident())
        token_file.write_text("second-projected-token\n")
        k8s.tokens = {"second-projected-token"}
        second = await action.deliver(incident(service="search"))
    finally:
        await action.aclose()

    assert (first.outcome, second.outcome) == (ActionOutcome.DELIVERED, ActionOutcome.DELIVERED)
    assert [r.headers["authorization"] for r in k8s.requests_where("PATCH")] == [
        "Bearer first-projected-token",
        "Bearer second-projected-token",
    ]


def test_the_in_cluster_defaults_are_the_service_account_paths() -> None:
    config = ArgoRolloutsConfig(rollout="${service}", namespace="prod")

    assert config.api_url is None
    assert config.token is None
    assert config.token_file == Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
    assert config.ca_file is None  # in-cluster: the service account's ca.crt beside the token


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[TLSFiles, Path]:
    """A throwaway CA (the cluster's ca.crt) and a server certificate for 127.0.0.1 signed by it."""
    directory = tmp_path_factory.mktemp("tls")
    now = datetime.now(tz=UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "budgetguard test cluster CA")])
    usage = dict.fromkeys(
        (
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, **usage), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "server.crt").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (directory / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return TLSFiles(directory / "server.crt", directory / "server.key"), directory / "ca.crt"


@pytest.mark.anyio
async def test_in_cluster_the_api_is_kubernetes_default_svc_with_the_token_file(
    k8s: KubernetesFake, tmp_path: Path, tls: tuple[TLSFiles, Path]
) -> None:
    """No api_url: requests go to https://kubernetes.default.svc (forwarded here to the fake)."""
    _, ca_file = tls
    token_file = tmp_path / "token"
    token_file.write_text(K8S_TOKEN + "\n")
    k8s.add_rollout("prod", "checkout")
    sent: list[httpx.Request] = []

    async with httpx.AsyncClient(base_url=k8s.url, timeout=5) as upstream:

        async def forward(request: httpx.Request) -> httpx.Response:
            sent.append(request)
            keep = {
                k: v for k, v in request.headers.items() if k in ("authorization", "content-type", "accept")
            }
            answer = await upstream.request(
                request.method, request.url.path, headers=keep, content=request.content
            )
            return httpx.Response(
                answer.status_code, headers={"Content-Type": "application/json"}, content=answer.content
            )

        config = ArgoRolloutsConfig(
            rollout="${service}", namespace="prod", token_file=token_file, ca_file=ca_file
        )
        result = await deliver(build_rollouts("in-cluster", config, transport=httpx.MockTransport(forward)))

    assert result.outcome is ActionOutcome.DELIVERED, result
    assert [str(r.url) for r in sent] == [
        "https://kubernetes.default.svc" + ROLLOUT_PATH,
        "https://kubernetes.default.svc" + ROLLOUT_PATH + "/status",
    ]
    assert {r.headers["authorization"] for r in sent} == {f"Bearer {K8S_TOKEN}"}


@pytest.mark.anyio
async def test_the_ca_file_is_what_makes_the_api_server_trusted(
    tmp_path: Path, tls: tuple[TLSFiles, Path]
) -> None:
    server_files, ca_file = tls
    token_file = tmp_path / "token"
    token_file.write_text(K8S_TOKEN)
    with KubernetesFake(tls=server_files) as k8s:
        k8s.add_rollout("prod", "checkout")
        common = {"api_url": k8s.url, "token": None, "token_file": str(token_file)}

        trusted = await deliver(rollouts(k8s, **common, ca_file=str(ca_file)))
        untrusted = await deliver(rollouts(k8s, **common))

    assert k8s.url.startswith("https://127.0.0.1:")
    assert trusted.outcome is ActionOutcome.DELIVERED, trusted
    assert untrusted.outcome is ActionOutcome.FAILED
    assert "certificate is not trusted; set `ca_file`" in untrusted.detail


def test_an_unreadable_ca_file_is_a_config_error(tmp_path: Path) -> None:
    config = ArgoRolloutsConfig(rollout="x", namespace="y", ca_file=tmp_path / "missing.crt")

    with pytest.raises(ConfigError, match=r"missing\.crt"):
        build_rollouts("halt", config)


@pytest.mark.anyio
async def test_an_unreachable_api_server_is_retried() -> None:
    with KubernetesFake() as closed:
        url = closed.url
    config = ArgoRolloutsConfig.model_validate(
        {"rollout": "x", "namespace": "y", "api_url": url, "token": K8S_TOKEN}
    )
    action = build_rollouts("halt", config)

    result = await deliver(action)

    assert result.outcome is ActionOutcome.RETRY
    assert "could not connect" in result.detail


# --- Argo CD ---------------------------------------------------------------------------------------

BEFORE = [AT - timedelta(days=2), AT - timedelta(hours=3)]  # "good" deployed, then "bad"


def argo(fake: ArgoCDFake, **overrides: Any) -> Action:
    fields: dict[str, Any] = {
        "url": fake.url,
        "token": ARGOCD_TOKEN,
        "application": "${service}",
        **overrides,
    }
    if fields.setdefault("mode", "rollback") == "rollout-abort":
        fields.setdefault("rollout", "${service}")
        fields.setdefault("namespace", "prod")
    return build_argocd("argocd-checkout", ArgoCDConfig.model_validate(fields))


@pytest.mark.anyio
async def test_argocd_aborts_a_rollout_through_the_v2_resource_action(
    k8s: KubernetesFake, argocd: ArgoCDFake
) -> None:
    k8s.add_rollout("prod", "checkout")
    argocd.add_app("checkout", rollouts=[("prod", "checkout")])

    result = await deliver(argo(argocd, mode="rollout-abort"))

    assert result.outcome is ActionOutcome.DELIVERED, result
    read, ran = argocd.requests
    assert (read.method, read.path) == ("GET", "/api/v1/applications/checkout/resource")
    assert (ran.method, ran.path) == ("POST", "/api/v1/applications/checkout/resource/actions/v2")
    assert ran.content_type == "application/json"
    assert ran.headers["authorization"] == f"Bearer {ARGOCD_TOKEN}"
    assert ran.json() == {
        "namespace": "prod",
        "resourceName": "checkout",
        "version": "v1alpha1",
        "group": "argoproj.io",
        "kind": "Rollout",
        "action": "abort",
        "resourceActionParameters": [],
    }
    assert k8s.rollout("prod", "checkout")["status"]["abort"] is True


@pytest.mark.anyio
async def test_argocd_v1_resource_actions_send_the_action_name_as_a_json_string(
    k8s: KubernetesFake, argocd: ArgoCDFake
) -> None:
    k8s.add_rollout("prod", "checkout")
    argocd.add_app("checkout", rollouts=[("prod", "checkout")], project="shop")

    result = await deliver(argo(argocd, mode="rollout-abort", action_api="v1", project="shop"))

    assert result.outcome is ActionOutcome.DELIVERED, result
    ran = argocd.requests_where("POST")[0]
    assert ran.path == "/api/v1/applications/checkout/resource/actions"
    assert ran.body == b'"abort"'
    assert {k: v[0] for k, v in ran.query.items()} == {
        "namespace": "prod",
        "resourceName": "checkout",
        "version": "v1alpha1",
        "group": "argoproj.io",
        "kind": "Rollout",
        "project": "shop",
    }
    assert k8s.rollout("prod", "checkout")["status"]["abort"] is True


ARGOCD_ABORT_STATES = {
    "an already aborted rollout is already done": RolloutCase(
        {"abort": True}, ActionOutcome.ALREADY_DONE, "already aborted"
    ),
    "a fully promoted rollout is already done, since an abort would be undone": RolloutCase(
        {"stable_rs": "abc", "current_pod_hash": "abc"}, ActionOutcome.ALREADY_DONE, "abort would be undone"
    ),
    "a rollout the application does not manage fails": RolloutCase(
        None, ActionOutcome.FAILED, "not found as part of application checkout"
    ),
}


@pytest.mark.anyio
@pytest.mark.parametrize("case", ARGOCD_ABORT_STATES.values(), ids=ARGOCD_ABORT_STATES.keys())
async def test_argocd_reads_the_live_rollout_before_running_the_action(
    k8s: KubernetesFake, argocd: ArgoCDFake, case: RolloutCase
) -> None:
    if case.seed is not None:
        k8s.add_rollout("prod", "checkout", **case.seed)
    argocd.add_app("checkout", rollouts=[("prod", "checkout")] if case.seed is not None else [])

    result = await deliver(argo(argocd, mode="rollout-abort"))

    assert result.outcome is case.outcome, result
    assert case.detail in result.detail
    assert argocd.requests_where("POST") == []


@pytest.mark.anyio
async def test_argocd_before_3_1_without_actions_v2_fails_pointing_at_the_v1_api(k8s: KubernetesFake) -> None:
    k8s.add_rollout("prod", "checkout")
    with ArgoCDFake(cluster=k8s.store, actions_v2=False) as old:
        old.add_app("checkout", rollouts=[("prod", "checkout")])
        result = await deliver(argo(old, mode="rollout-abort"))

    assert result.outcome is ActionOutcome.FAILED
    assert "action_api: v1" in result.detail


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "content_type", "status"),
    [
        ("POST", "application/json; charset=utf-8", 415),
        ("POST", "application/merge-patch+json", 415),
        ("DELETE", None, 415),
        ("DELETE", "application/json", 200),
    ],
    ids=[
        "a charset parameter is refused: the match is exact",
        "another JSON type is refused",
        "a DELETE without a content type is refused",
        "a DELETE with exactly application/json terminates the operation",
    ],
)
async def test_the_argocd_fake_demands_exactly_application_json_on_every_non_get(
    argocd: ArgoCDFake, raw: httpx.AsyncClient, method: str, content_type: str | None, status: int
) -> None:
    argocd.add_app("checkout")
    argocd.start_operation("checkout", "5d6e7f8")
    headers = {"Authorization": f"Bearer {ARGOCD_TOKEN}"}
    if content_type:
        headers["Content-Type"] = content_type
    path = "/rollback" if method == "POST" else "/operation"

    answer = await raw.request(
        method,
        f"{argocd.url}/api/v1/applications/checkout{path}",
        headers=headers,
        content=b'{"id": 0}' if method == "POST" else None,
    )

    assert answer.status_code == status
    if status == 415:
        assert answer.text == "Invalid content type"


@pytest.mark.anyio
async def test_the_argocd_fake_wants_a_jwt_and_answers_grpc_gateway_errors(
    argocd: ArgoCDFake, raw: httpx.AsyncClient
) -> None:
    argocd.add_app("checkout")

    missing = await raw.get(f"{argocd.url}/api/v1/applications/checkout")
    not_jwt = await raw.get(
        f"{argocd.url}/api/v1/applications/checkout", headers={"Authorization": "Bearer x"}
    )
    unknown = await raw.get(
        f"{argocd.url}/api/v1/applications/nope", headers={"Authorization": f"Bearer {ARGOCD_TOKEN}"}
    )
    scoped = await raw.get(
        f"{argocd.url}/api/v1/applications/nope?project=default",
        headers={"Authorization": f"Bearer {ARGOCD_TOKEN}"},
    )

    assert (missing.status_code, missing.json()) == (
        401,
        {"error": "no session information", "code": 16, "message": "no session information"},
    )
    assert not_jwt.status_code == 401
    assert (unknown.status_code, unknown.json()["code"]) == (403, 7)
    assert (scoped.status_code, scoped.json()["code"]) == (404, 5)


@pytest.mark.anyio
async def test_argocd_rolls_back_to_the_deployment_before_the_live_one(argocd: ArgoCDFake) -> None:
    argocd.add_app("checkout", revisions=["good", "bad"], deployed_at=BEFORE)

    result = await deliver(argo(argocd))

    assert result.outcome is ActionOutcome.DELIVERED, result
    assert "history id 0 (revision good)" in result.detail
    read, sent = argocd.requests
    assert (read.method, read.path) == ("GET", "/api/v1/applications/checkout")
    assert (sent.method, sent.path, sent.content_type) == (
        "POST",
        "/api/v1/applications/checkout/rollback",
        "application/json",
    )
    assert sent.json() == {"id": 0, "prune": False, "dryRun": False}
    assert argocd.app("checkout")["operation"]["sync"]["revision"] == "good"


@pytest.mark.anyio
async def test_argocd_rollback_to_a_configured_history_id(argocd: ArgoCDFake) -> None:
    argocd.add_app(
        "checkout", revisions=["older", "good", "bad"], deployed_at=[AT - timedelta(days=9), *BEFORE]
    )

    result = await deliver(argo(argocd, history_id=0, prune=True, project="default"))

    assert result.outcome is ActionOutcome.DELIVERED, result
    assert argocd.requests_where("POST")[0].json() == {
        "id": 0,
        "prune": True,
        "dryRun": False,
        "project": "default",
    }
    assert argocd.app("checkout")["operation"]["sync"]["revision"] == "older"


@pytest.mark.anyio
async def test_a_retry_after_our_rollback_finished_is_already_done_not_a_second_rollback(
    argocd: ArgoCDFake,
) -> None:
    """The target is fixed by the incident's time, so the history our rollback adds cannot move it."""
    argocd.add_app("checkout", revisions=["good", "bad"], deployed_at=BEFORE)
    first = await deliver(argo(argocd))
    during = await deliver(argo(argocd))
    argocd.finish_operation("checkout", at=AT + timedelta(minutes=2))

    after = await deliver(argo(argocd))

    assert [first.outcome, during.outcome, after.outcome] == [
        ActionOutcome.DELIVERED,
        ActionOutcome.ALREADY_DONE,
        ActionOutcome.ALREADY_DONE,
    ]
    assert "already in progress" in during.detail
    assert "already runs good" in after.detail
    assert len(argocd.requests_where("POST")) == 1


@dataclass(frozen=True)
class RollbackCase:
    revisions: tuple[str, ...]
    deployed_at: tuple[datetime, ...]
    arrange: str  # "", "auto-sync", "running <revision>"
    outcome: ActionOutcome
    detail: str
    overrides: tuple[tuple[str, Any], ...] = ()


ROLLBACKS = {
    "auto-sync enabled fails with a clear detail and no rollback": RollbackCase(
        ("good", "bad"), tuple(BEFORE), "auto-sync", ActionOutcome.FAILED, "auto-sync is enabled on checkout"
    ),
    "a running rollback to the same revision is already done": RollbackCase(
        ("good", "bad"), tuple(BEFORE), "running good", ActionOutcome.ALREADY_DONE, "already in progress"
    ),
    "another operation in progress is retried": RollbackCase(
        ("good", "bad"),
        tuple(BEFORE),
        "running other",
        ActionOutcome.RETRY,
        "another operation (sync to other)",
    ),
    "already back at the target revision is already done": RollbackCase(
        ("good", "bad", "good"),
        (*BEFORE, AT + timedelta(minutes=5)),
        "",
        ActionOutcome.ALREADY_DONE,
        "already runs good",
    ),
    "a deployment made after the incident is not rolled back over": RollbackCase(
        ("good", "bad", "fix"),
        (*BEFORE, AT + timedelta(minutes=5)),
        "",
        ActionOutcome.FAILED,
        "redeployed after",
    ),
    "a single deployment leaves nothing to roll back to": RollbackCase(
        ("bad",), (BEFORE[1],), "", ActionOutcome.FAILED, "nothing to roll checkout back to"
    ),
    "an unknown history id fails": RollbackCase(
        ("good", "bad"),
        tuple(BEFORE),
        "",
        ActionOutcome.FAILED,
        "no deployment with history id 7",
        (("history_id", 7),),
    ),
}


@pytest.mark.anyio
@pytest.mark.parametrize("case", ROLLBACKS.values(), ids=ROLLBACKS.keys())
async def test_argocd_rollback_decides_from_the_application_state(
    argocd: ArgoCDFake, case: RollbackCase
) -> None:
    argocd.add_app(
        "checkout",
        revisions=case.revisions,
        deployed_at=case.deployed_at,
        automated=case.arrange == "auto-sync",
    )
    if case.arrange.startswith("running"):
        argocd.start_operation("checkout", case.arrange.split()[1])

    result = await deliver(argo(argocd, **dict(case.overrides)))

    assert result.outcome is case.outcome, result
    assert case.detail in result.detail
    assert argocd.requests_where("POST") == []


@pytest.mark.anyio
async def test_the_argocd_fake_itself_refuses_a_rollback_under_auto_sync_and_a_string_id(
    argocd: ArgoCDFake, raw: httpx.AsyncClient
) -> None:
    argocd.add_app("checkout", automated=True)
    argocd.add_app("search")
    headers = {"Authorization": f"Bearer {ARGOCD_TOKEN}", "Content-Type": "application/json"}

    auto = await raw.post(
        f"{argocd.url}/api/v1/applications/checkout/rollback", headers=headers, json={"id": 0}
    )
    text_id = await raw.post(
        f"{argocd.url}/api/v1/applications/search/rollback", headers=headers, json={"id": "0"}
    )

    assert (auto.status_code, auto.json()["code"]) == (400, 9)
    assert auto.json()["message"] == "rollback cannot be initiated when auto-sync is enabled"
    assert (text_id.status_code, text_id.json()["code"]) == (400, 3)


@pytest.mark.anyio
async def test_operation_in_progress_on_the_rollback_post_is_retried_for_a_re_read(
    argocd: ArgoCDFake,
) -> None:
    """The 400 cannot tell our lost rollback from someone else's sync: the next attempt reads and decides."""
    argocd.add_app("checkout", revisions=["good", "bad"], deployed_at=BEFORE)
    argocd.fail_next(1, 400, message="another operation is already in progress", method="POST")

    result = await deliver(argo(argocd))

    assert result.outcome is ActionOutcome.RETRY
    assert "re-reads the application" in result.detail


ARGOCD_FAULTS = {
    "a token Argo CD does not know fails, naming credentials": FaultCase(
        "tokens", ActionOutcome.FAILED, ("credentials", "HTTP 401")
    ),
    "RBAC refusing sync fails as permission denied": FaultCase(
        "forbid sync", ActionOutcome.FAILED, ("permission denied for applications, sync",)
    ),
    "a missing application fails, saying 403 may mean missing": FaultCase(
        "no app", ActionOutcome.FAILED, ("or it does not exist",)
    ),
    "a missing application in a named project fails as not found": FaultCase(
        "no app, project", ActionOutcome.FAILED, ("no application checkout",)
    ),
    "a bad gateway (502) is retried": FaultCase("fail 502", ActionOutcome.RETRY, ("HTTP 502",)),
    "an unavailable server (503) on the rollback is retried": FaultCase(
        "fail POST 503", ActionOutcome.RETRY, ("HTTP 503",)
    ),
}


@pytest.mark.anyio
@pytest.mark.parametrize("case", ARGOCD_FAULTS.values(), ids=ARGOCD_FAULTS.keys())
async def test_answers_of_argocd_are_classified(argocd: ArgoCDFake, case: FaultCase) -> None:
    overrides: dict[str, Any] = {}
    if not case.arrange.startswith("no app"):
        argocd.add_app("checkout", revisions=["good", "bad"], deployed_at=BEFORE)
    if case.arrange.endswith("project"):
        overrides["project"] = "default"
    if case.arrange == "tokens":
        argocd.tokens = {"eyJ.other.token"}
    elif case.arrange.startswith("forbid"):
        argocd.forbid(case.arrange.split()[1])
    elif case.arrange.startswith("fail"):
        words = case.arrange.split()
        argocd.fail_next(1, int(words[-1]), method=words[1] if len(words) == 3 else None)

    result = await deliver(argo(argocd, **overrides))

    assert result.outcome is case.outcome, result
    for expected in case.detail:
        assert expected in result.detail
    assert ARGOCD_TOKEN not in result.detail


@pytest.mark.anyio
async def test_argocd_resolve_does_nothing(argocd: ArgoCDFake) -> None:
    result = await deliver(argo(argocd), incident(EventKind.RESOLVE))

    assert result.outcome is ActionOutcome.ALREADY_DONE
    assert argocd.requests == []


def test_argocd_accepts_only_jwt_tokens() -> None:
    config = ArgoCDConfig.model_validate(
        {"url": "https://argocd.example", "token": "not-a-jwt", "application": "x", "mode": "rollback"}
    )

    with pytest.raises(ConfigError, match="not a JWT"):
        build_argocd("argocd", config)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"mode": "rollout-abort"}, "needs `rollout` and `namespace`"),
        (
            {"mode": "rollout-abort", "rollout": "x", "namespace": "y", "history_id": 3},
            "only apply to mode rollback",
        ),
        ({"mode": "rollback", "rollout": "x"}, "only apply to mode rollout-abort"),
        ({"mode": "rollback", "url": "argocd.example"}, "absolute http(s) URL"),
    ],
    ids=[
        "rollout-abort needs the rollout and its namespace",
        "a history id makes no sense for an abort",
        "a rollout makes no sense for a rollback",
        "the url must be absolute",
    ],
)
def test_argocd_config_fields_must_fit_the_mode(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ArgoCDConfig.model_validate(
            {"url": "https://argocd.example", "token": ARGOCD_TOKEN, "application": "x", **fields}
        )


# --- Unleash ---------------------------------------------------------------------------------------


def unleash_action(fake: UnleashFake, **overrides: Any) -> Action:
    config = UnleashConfig.model_validate(
        {
            "url": fake.url,
            "token": UNLEASH_TOKEN,
            "feature": "${service}-v2",
            "environment": "production",
            **overrides,
        }
    )
    return build_unleash("kill-checkout-v2", config)


@pytest.mark.anyio
async def test_unleash_turns_the_feature_off_with_the_raw_token_and_no_body(unleash: UnleashFake) -> None:
    unleash.add_feature("checkout-v2", environments={"production": True, "staging": True})

    first = await deliver(unleash_action(unleash))
    again = await deliver(unleash_action(unleash))

    assert (first.outcome, again.outcome) == (ActionOutcome.DELIVERED, ActionOutcome.DELIVERED)
    assert unleash.enabled("checkout-v2", "production") is False
    assert unleash.enabled("checkout-v2", "staging") is True
    request = unleash.requests[0]
    assert (request.method, request.path) == (
        "POST",
        "/api/admin/projects/default/features/checkout-v2/environments/production/off",
    )
    assert request.headers["authorization"] == UNLEASH_TOKEN
    assert request.body == b""
    assert len(unleash.events) == 1  # the repeat changed nothing, so Unleash recorded nothing


@pytest.mark.anyio
async def test_the_unleash_fake_refuses_a_bearer_prefix_like_unleash_before_5_11(
    unleash: UnleashFake, raw: httpx.AsyncClient
) -> None:
    unleash.add_feature("checkout-v2")
    url = f"{unleash.url}/api/admin/projects/default/features/checkout-v2/environments/production/off"

    refused = await raw.post(url, headers={"Authorization": f"Bearer {UNLEASH_TOKEN}"})
    unleash.accept_bearer = True
    accepted = await raw.post(url, headers={"Authorization": f"Bearer {UNLEASH_TOKEN}"})

    assert (refused.status_code, refused.json()["name"]) == (401, "AuthenticationRequired")
    assert (accepted.status_code, accepted.content) == (200, b"")


UNLEASH_FAULTS = {
    "an unknown feature fails": FaultCase(
        "feature nope", ActionOutcome.FAILED, ("HTTP", "Could not find feature")
    ),
    "an unknown environment fails": FaultCase(
        "environment nowhere", ActionOutcome.FAILED, ("Could not find environment nowhere",)
    ),
    "an environment needing change requests fails": FaultCase(
        "change requests", ActionOutcome.FAILED, ("forbidden", "change requests")
    ),
    "a rejected token fails, naming credentials": FaultCase(
        "tokens", ActionOutcome.FAILED, ("credentials", "HTTP 401")
    ),
    "an unavailable Unleash (503) is retried": FaultCase("fail 503", ActionOutcome.RETRY, ("HTTP 503",)),
}


@pytest.mark.anyio
@pytest.mark.parametrize("case", UNLEASH_FAULTS.values(), ids=UNLEASH_FAULTS.keys())
async def test_answers_of_unleash_are_classified(unleash: UnleashFake, case: FaultCase) -> None:
    unleash.add_feature("checkout-v2")
    overrides: dict[str, str] = {}
    kind, _, value = case.arrange.partition(" ")
    if kind == "feature":
        overrides["feature"] = value
    elif kind == "environment":
        overrides["environment"] = value
    elif kind == "change":
        unleash.require_change_requests("production")
    elif kind == "tokens":
        unleash.tokens = {"*:*.another"}
    else:
        unleash.fail_next(1, int(value))

    result = await deliver(unleash_action(unleash, **overrides))

    assert result.outcome is case.outcome, result
    for expected in case.detail:
        assert expected in result.detail
    assert UNLEASH_TOKEN not in result.detail
    assert unleash.enabled("checkout-v2", "production") is True


@pytest.mark.anyio
async def test_unleash_honours_retry_after_on_429(unleash: UnleashFake) -> None:
    unleash.add_feature("checkout-v2")
    unleash.fail_next(1, 429, headers={"Retry-After": "12"})

    result = await deliver(unleash_action(unleash))

    assert (result.outcome, result.retry_after) == (ActionOutcome.RETRY, timedelta(seconds=12))


# --- LaunchDarkly ----------------------------------------------------------------------------------

NOW = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)


def ld_action(fake: LaunchDarklyFake, **overrides: Any) -> Action:
    config = LaunchDarklyConfig.model_validate(
        {
            "url": fake.url,
            "token": LD_TOKEN,
            "project_key": "default",
            "flag_key": "${service}-v2",
            "environment_key": "production",
            **overrides,
        }
    )
    return build_launchdarkly("kill-checkout-v2", config, clock=lambda: NOW)


@pytest.mark.anyio
async def test_launchdarkly_turns_the_flag_off_with_a_semantic_patch(launchdarkly: LaunchDarklyFake) -> None:
    launchdarkly.add_flag("default", "checkout-v2", environments={"production": True, "test": True})

    result = await deliver(ld_action(launchdarkly))

    assert result.outcome is ActionOutcome.DELIVERED, result
    assert launchdarkly.is_on("default", "checkout-v2", "production") is False
    assert launchdarkly.is_on("default", "checkout-v2", "test") is True
    [request] = launchdarkly.requests
    assert (request.method, request.path) == ("PATCH", "/api/v2/flags/default/checkout-v2")
    assert request.content_type == "application/json; domain-model=launchdarkly.semanticpatch"
    assert request.headers["authorization"] == LD_TOKEN
    body = request.json()
    assert body["environmentKey"] == "production"
    assert body["instructions"] == [{"kind": "turnFlagOff"}]
    assert "inc-1" in body["comment"]
    assert launchdarkly.audit[0].comment == body["comment"]


@pytest.mark.anyio
async def test_the_launchdarkly_fake_reads_a_semantic_patch_without_its_content_type_as_json_patch(
    launchdarkly: LaunchDarklyFake, raw: httpx.AsyncClient
) -> None:
    launchdarkly.add_flag("default", "checkout-v2")
    body = {"environmentKey": "production", "instructions": [{"kind": "turnFlagOff"}]}

    answer = await raw.patch(
        f"{launchdarkly.url}/api/v2/flags/default/checkout-v2",
        headers={"Authorization": LD_TOKEN, "Content-Type": "application/json"},
        content=json.dumps(body).encode(),
    )

    assert (answer.status_code, answer.json()["code"]) == (400, "invalid_request")
    assert launchdarkly.is_on("default", "checkout-v2", "production") is True


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("reset_in", "retry_after", "expected"),
    [
        (timedelta(seconds=30), None, timedelta(seconds=30)),
        (None, 7, timedelta(seconds=7)),
        (timedelta(seconds=3), 20, timedelta(seconds=20)),
        (timedelta(seconds=-5), None, timedelta(0)),
    ],
    ids=[
        "X-Ratelimit-Reset in epoch milliseconds sets the wait",
        "Retry-After alone sets the wait",
        "with both, the later one wins",
        "a reset already past means retry now",
    ],
)
async def test_launchdarkly_rate_limits_are_retried_after_the_announced_wait(
    launchdarkly: LaunchDarklyFake, reset_in: timedelta | None, retry_after: int | None, expected: timedelta
) -> None:
    launchdarkly.add_flag("default", "checkout-v2")
    reset_ms = None if reset_in is None else int((NOW + reset_in).timestamp() * 1000)
    launchdarkly.rate_limit_next(reset_at_ms=reset_ms, retry_after_seconds=retry_after)

    result = await deliver(ld_action(launchdarkly))

    assert (result.outcome, result.status, result.retry_after) == (ActionOutcome.RETRY, 429, expected)
    assert launchdarkly.is_on("default", "checkout-v2", "production") is True


LD_FAULTS = {
    "an unknown flag fails": FaultCase("flag nope", ActionOutcome.FAILED, ("HTTP 404", "Unknown resource")),
    "an unknown environment fails": FaultCase("environment nowhere", ActionOutcome.FAILED, ("HTTP 400",)),
    "a rejected token fails, naming credentials": FaultCase(
        "tokens", ActionOutcome.FAILED, ("credentials", "HTTP 401")
    ),
    "a concurrent update (409) is retried": FaultCase("fail 409", ActionOutcome.RETRY, ("HTTP 409",)),
    "a LaunchDarkly outage (500) is retried": FaultCase("fail 500", ActionOutcome.RETRY, ("HTTP 500",)),
}


@pytest.mark.anyio
@pytest.mark.parametrize("case", LD_FAULTS.values(), ids=LD_FAULTS.keys())
async def test_answers_of_launchdarkly_are_classified(
    launchdarkly: LaunchDarklyFake, case: FaultCase
) -> None:
    launchdarkly.add_flag("default", "checkout-v2")
    overrides: dict[str, str] = {}
    kind, _, value = case.arrange.partition(" ")
    if kind == "flag":
        overrides["flag_key"] = value
    elif kind == "environment":
        overrides["environment_key"] = value
    elif kind == "tokens":
        launchdarkly.tokens = {"api-another"}
    else:
        launchdarkly.fail_next(1, int(value))

    result = await deliver(ld_action(launchdarkly, **overrides))

    assert result.outcome is case.outcome, result
    for expected in case.detail:
        assert expected in result.detail
    assert LD_TOKEN not in result.detail


@pytest.mark.anyio
@pytest.mark.parametrize("which", ["unleash", "launchdarkly"])
async def test_resolving_turns_no_flag_back_on(
    unleash: UnleashFake, launchdarkly: LaunchDarklyFake, which: str
) -> None:
    action = unleash_action(unleash) if which == "unleash" else ld_action(launchdarkly)

    result = await deliver(action, incident(EventKind.RESOLVE))

    assert result.outcome is ActionOutcome.ALREADY_DONE
    assert "turned back on by a human" in result.detail
    assert unleash.requests == launchdarkly.requests == []


@pytest.mark.anyio
async def test_a_flag_key_from_the_context_cannot_leave_its_path_segment(
    launchdarkly: LaunchDarklyFake,
) -> None:
    result = await deliver(ld_action(launchdarkly, flag_key="${canary}"), incident(canary="../../members"))

    assert result.outcome is ActionOutcome.FAILED
    assert "is not a valid key" in result.detail
    assert launchdarkly.requests == []
