"""Specifications of deploy/kubernetes: what a cluster gets from `kubectl apply -k` of either overlay.

Both overlays are rendered by the real `kubectl kustomize` (scripts/setup --dev installs kubectl where it
is missing) and every object is validated as `kubernetes-validate --strict` does, against the oldest and
the newest Kubernetes it knows. The Prometheus Operator's kinds have no schema there: they are checked
against the operator's own CRD models (cloudcoil's, generated from the CRDs) by a round trip, which
fails on a wrong type and, since the models drop what they do not know, on a misspelt field too.

The rest are the properties the issue asks for, read from the rendered YAML: one replica and Recreate on
SQLite, replicas with a disruption budget and anti-affinity on PostgreSQL, a locked-down pod, probes,
the Service the Flagger and Argo examples call, RBAC derived from the requests the actions really send
(recorded by the lab's fake Kubernetes API), and the ConfigMaps' files loading as a pod would see them:
through the kubelet's `..data` symlinks.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import kubernetes_validate
import pytest
import yaml
from cloudcoil.models.prometheus_operator import v1 as prometheus_operator
from pydantic import BaseModel

from budgetguard.actions.argo_rollouts import ArgoRolloutsConfig
from budgetguard.actions.argo_rollouts import build as build_rollouts
from budgetguard.actions.istio import IstioConfig
from budgetguard.actions.istio import build as build_istio
from budgetguard.cli import build_parser, main
from budgetguard.config import Settings, load_settings
from budgetguard.core.ports import ActionOutcome, ActionRequest, EventKind
from budgetguard.loader import discover
from lab.fakes.kubernetes import K8S_TOKEN, KubernetesFake, weighted_route

REPO = Path(__file__).resolve().parent.parent
KUSTOMIZE = REPO / "deploy" / "kubernetes"
OVERLAYS = ("single", "ha")
SCHEMA_VERSIONS = ("1.25.0", "1.37.0")  # the oldest and the newest kubernetes-validate ships
CRD_MODELS = {
    "ServiceMonitor": prometheus_operator.ServiceMonitor,
    "PrometheusRule": prometheus_operator.PrometheusRule,
}
POD_LABELS = {"app.kubernetes.io/name": "budgetguard", "app.kubernetes.io/instance": "budgetguard"}
Doc = dict[str, Any]


def kubectl() -> str:
    """kubectl on PATH, else the one scripts/setup --dev puts beside the virtual environment's python."""
    found = shutil.which("kubectl") or shutil.which("kubectl", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("kubectl not found: run scripts/setup --dev (it installs one into .venv/bin)")
    return found


def render(path: Path) -> list[Doc]:
    done = subprocess.run(
        [kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Doc]]:
    return {overlay: render(KUSTOMIZE / "overlays" / overlay) for overlay in OVERLAYS}


def the(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''} in the rendered output"
    return found[0]


def pod_spec(docs: list[Doc]) -> Doc:
    spec: Doc = the(docs, "Deployment", "budgetguard")["spec"]["template"]["spec"]
    return spec


def container(docs: list[Doc]) -> Doc:
    [only] = pod_spec(docs)["containers"]
    return only


def env_of(docs: list[Doc]) -> dict[str, Doc]:
    return {e["name"]: e for e in container(docs)["env"]}


def pyproject_version() -> str:
    match = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert match
    return match.group(1)


# --- schemas -------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_passes_its_schema_strictly(
    rendered: dict[str, list[Doc]], overlay: str, version: str
) -> None:
    kinds = set()
    for doc in rendered[overlay]:
        kinds.add(doc["kind"])
        if doc["kind"] in CRD_MODELS:
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                kubernetes_validate.validate(doc, version, strict=True)
            model = CRD_MODELS[doc["kind"]]
            assert model.model_validate(doc).model_dump(by_alias=True, exclude_unset=True, mode="json") == doc
        else:
            kubernetes_validate.validate(doc, version, strict=True)
    assert {
        "Deployment",
        "Service",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "NetworkPolicy",
    } <= kinds
    assert set(CRD_MODELS) <= kinds


def test_the_checks_reject_a_misspelt_field_in_core_and_operator_kinds(
    rendered: dict[str, list[Doc]],
) -> None:
    """Strictness is what makes the test above worth anything: a typo is an error, not a no-op."""
    deployment = the(rendered["single"], "Deployment")
    typo = yaml.safe_load(yaml.safe_dump(deployment))
    typo["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/readyz"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, SCHEMA_VERSIONS[-1], strict=True)

    monitor = yaml.safe_load(yaml.safe_dump(the(rendered["single"], "ServiceMonitor")))
    monitor["spec"]["endpoints"][0]["intervall"] = "1m"
    assert (
        CRD_MODELS["ServiceMonitor"]
        .model_validate(monitor)
        .model_dump(by_alias=True, exclude_unset=True, mode="json")
        != monitor
    )


# --- the two ways to run ---------------------------------------------------------------------------


def test_single_runs_one_replica_on_a_volume_and_never_two_at_once(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["single"]
    spec = the(docs, "Deployment")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}  # no rollingUpdate left over: the API would refuse it
    claim = the(docs, "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    [store] = [v for v in pod_spec(docs)["volumes"] if v["name"] == "store"]
    assert store == {"name": "store", "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]}}
    [mount] = [m for m in container(docs)["volumeMounts"] if m["name"] == "store"]
    assert Path(env_of(docs)["BUDGETGUARD_DB"]["value"]).parent == Path(mount["mountPath"])
    assert not [d for d in docs if d["kind"] == "PodDisruptionBudget"]


def test_ha_runs_replicas_on_postgresql_with_a_disruption_budget_and_spread(
    rendered: dict[str, list[Doc]],
) -> None:
    docs = rendered["ha"]
    spec = the(docs, "Deployment")["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    budget = the(docs, "PodDisruptionBudget")["spec"]
    assert budget["minAvailable"] == 1
    assert budget["selector"]["matchLabels"] == POD_LABELS
    [term] = pod_spec(docs)["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == POD_LABELS
    assert env_of(docs)["BUDGETGUARD_DB"] == {
        "name": "BUDGETGUARD_DB",
        "valueFrom": {"secretKeyRef": {"name": "budgetguard-db", "key": "url"}},
    }
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]


# --- the pod ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_pod_runs_locked_down_as_the_images_user(rendered: dict[str, list[Doc]], overlay: str) -> None:
    docs = rendered[overlay]
    pod = pod_spec(docs)["securityContext"]
    uid = int(re.search(r"^ARG UID=(\d+)$", (REPO / "Dockerfile").read_text(), re.M).group(1))  # type: ignore[union-attr]
    assert pod["runAsNonRoot"] is True
    assert (pod["runAsUser"], pod["runAsGroup"], pod["fsGroup"]) == (uid, uid, uid)
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    own = container(docs)["securityContext"]
    assert own["allowPrivilegeEscalation"] is False
    assert own["readOnlyRootFilesystem"] is True
    assert own["capabilities"] == {"drop": ["ALL"]}
    assert own["runAsNonRoot"] is True
    assert own["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod_spec(docs)["serviceAccountName"] == the(docs, "ServiceAccount")["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_path_the_daemon_writes_is_a_writable_volume(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    writable = [Path(m["mountPath"]) for m in container(docs)["volumeMounts"] if not m.get("readOnly")]
    env = env_of(docs)
    writes = [Path(env["TMPDIR"]["value"])]
    if "value" in env["BUDGETGUARD_DB"]:
        writes.append(Path(env["BUDGETGUARD_DB"]["value"]).parent)
    for path in writes:
        assert path in writable, f"{path} is on the read-only root"
    assert sorted(map(str, writable)) == sorted({"/tmp", "/var/lib/budgetguard"})


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_ports_and_resources(rendered: dict[str, list[Doc]], overlay: str) -> None:
    docs = rendered[overlay]
    own = container(docs)
    assert own["ports"] == [{"name": "http", "containerPort": 8731, "protocol": "TCP"}]
    assert own["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert own["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert env_of(docs)["BUDGETGUARD_LISTEN"]["value"] == "0.0.0.0:8731"
    assert own["resources"]["requests"].keys() == {"cpu", "memory"}
    assert "memory" in own["resources"]["limits"]
    assert own["image"] == f"budgetguard:{pyproject_version()}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_service_is_what_the_flagger_and_argo_examples_call(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    service = the(docs, "Service")
    assert service["spec"]["selector"] == POD_LABELS
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8731, "targetPort": "http", "protocol": "TCP"}
    ]
    assert the(docs, "Deployment")["spec"]["selector"]["matchLabels"] == POD_LABELS
    assert the(docs, "Deployment")["spec"]["template"]["metadata"]["labels"] == POD_LABELS
    called = set()
    for example in [
        *(REPO / "deploy" / "flagger").glob("*.yaml"),
        *(REPO / "deploy" / "argo-rollouts").glob("*.yaml"),
    ]:
        called |= set(re.findall(r"http://([a-z0-9.-]+:\d+)/", example.read_text()))
    name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
    assert called == {f"{name}.{namespace}:{service['spec']['ports'][0]['port']}"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_everything_lands_in_monitoring_but_the_rbac_for_the_releases(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    namespaces = {
        (d["kind"], d["metadata"]["name"]): d["metadata"].get("namespace") for d in rendered[overlay]
    }
    config = yaml.safe_load((KUSTOMIZE / "base" / "config.yaml").read_text())
    releases = {action["namespace"] for action in config["actions"].values() if "namespace" in action}
    assert releases == {"shop"}
    for (kind, name), namespace in namespaces.items():
        expected = "shop" if kind in ("Role", "RoleBinding") else "monitoring"
        assert namespace == expected, f"{kind} {name} is in {namespace}"
    binding = the(rendered[overlay], "RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "budgetguard-actions",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "budgetguard", "namespace": "monitoring"}
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_referenced_never_shipped(rendered: dict[str, list[Doc]], overlay: str) -> None:
    docs = rendered[overlay]
    assert not [d for d in docs if d["kind"] == "Secret"]
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    assert volumes["api-token"]["secret"] == {
        "secretName": "budgetguard-api"
    }  # required: the API halts rollouts
    assert volumes["action-secrets"]["secret"] == {"secretName": "budgetguard-actions", "optional": True}
    mounts = {m["name"]: m["mountPath"] for m in container(docs)["volumeMounts"]}
    assert env_of(docs)["BUDGETGUARD_API_TOKEN__FILE"]["value"] == mounts["api-token"] + "/token"
    # The config's secret files are read from the mounted Secret.
    config = yaml.safe_load((KUSTOMIZE / "base" / "config.yaml").read_text())
    files = [a["secret"]["file"] for a in config["actions"].values() if isinstance(a.get("secret"), dict)]
    assert files and all(Path(f).parent == Path(mounts["action-secrets"]) for f in files)


# --- settings: real names, real flags ----------------------------------------------------------------


def setting_env_names() -> set[str]:
    """Every environment variable the settings read: BUDGETGUARD_<FIELD>, and BUDGETGUARD_<FIELD>__<SUB>
    for a field that is a model (or a model or None, as secrets are)."""
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(f"BUDGETGUARD_{name.upper()}")
        for model in (field.annotation, *get_args(field.annotation)):
            if isinstance(model, type) and issubclass(model, BaseModel):
                names |= {f"BUDGETGUARD_{name.upper()}__{sub.upper()}" for sub in model.model_fields}
    return names


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_pods_settings_are_real_settings_and_land_where_the_volumes_are(
    rendered: dict[str, list[Doc]], overlay: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    docs = rendered[overlay]
    env = env_of(docs)
    ours = {name for name in env if name.startswith("BUDGETGUARD_")}
    assert ours <= setting_env_names(), ours - setting_env_names()

    args = build_parser().parse_args(["run", *container(docs)["args"]])
    mounts = {m["name"]: Path(m["mountPath"]) for m in container(docs)["volumeMounts"]}
    assert args.config.parent == mounts["config"]
    assert [Path(p) for p in args.paths] == [mounts["slos"]]

    # The settings the daemon builds from the pod's environment and the ConfigMap's config file.
    config_map = the(docs, "ConfigMap", volume_source(docs, "config"))
    config_file = tmp_path / args.config.name
    config_file.write_text(config_map["data"][args.config.name])
    for name in ours:
        monkeypatch.setenv(name, env[name].get("value", "postgresql://from-the-secret"))
    settings = load_settings(config_file, {"slo_paths": args.paths})
    assert settings.listen == "0.0.0.0:8731"
    assert settings.api_token is not None
    assert settings.api_token.file == Path("/var/run/secrets/budgetguard-api/token")
    if overlay == "single":
        assert settings.db.parent == mounts["store"]
    assert settings.slo_paths == [mounts["slos"]]


def volume_source(docs: list[Doc], volume: str) -> str:
    [found] = [v for v in pod_spec(docs)["volumes"] if v["name"] == volume]
    name: str = found["configMap"]["name"]
    return name


def mount_like_the_kubelet(data: dict[str, str], directory: Path) -> Path:
    """A ConfigMap volume as the kubelet writes it: files in a timestamped directory, ``..data`` pointing
    at it, and one symlink per key through ``..data``."""
    stamp = directory / datetime(2026, 12, 4, tzinfo=UTC).strftime("..%Y_%m_%d_%H_%M_%S.000000001")
    stamp.mkdir(parents=True)
    for key, text in data.items():
        (stamp / key).write_text(text)
    (directory / "..data").symlink_to(stamp.name)
    for key in data:
        (directory / key).symlink_to(Path("..data") / key)
    return directory


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_configmaps_load_as_the_pod_sees_them(
    rendered: dict[str, list[Doc]], overlay: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = rendered[overlay]
    config_dir = mount_like_the_kubelet(
        the(docs, "ConfigMap", volume_source(docs, "config"))["data"], tmp_path / "config"
    )
    slos_dir = mount_like_the_kubelet(
        the(docs, "ConfigMap", volume_source(docs, "slos"))["data"], tmp_path / "slos"
    )

    settings = load_settings(config_dir / "config.yaml")
    assert set(settings.actions) == {"abort-checkout", "release-hook"}
    assert main(["check", str(slos_dir), "--config", str(config_dir / "config.yaml")]) == 0
    out = capsys.readouterr().out
    assert "1 SLO(s) in 1 file(s): all valid" in out  # each file once, not again under ..data's target


def test_hidden_names_inside_an_slo_directory_are_skipped_but_a_hidden_file_named_is_read(
    tmp_path: Path,
) -> None:
    example = (KUSTOMIZE / "base" / "slos" / "checkout.yaml").read_text()
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "checkout.yaml").write_text(example)
    (tmp_path / ".checkout.yaml").write_text(example)
    (tmp_path / "checkout.yaml").write_text(example)
    files, problems = discover([tmp_path, tmp_path / ".checkout.yaml"])
    assert (files, problems) == ([tmp_path / "checkout.yaml", tmp_path / ".checkout.yaml"], [])


def test_the_slo_configmap_keeps_its_name_so_edits_reach_running_pods(rendered: dict[str, list[Doc]]) -> None:
    """SLO files reload live; settings are read at start, so their ConfigMap's hashed name rolls the pods."""
    docs = rendered["single"]
    assert volume_source(docs, "slos") == "budgetguard-slos"
    assert re.fullmatch(r"budgetguard-config-[a-z0-9]{10}", volume_source(docs, "config"))
    slos = the(docs, "ConfigMap", "budgetguard-slos")["data"]
    assert slos.keys() == {p.name for p in (KUSTOMIZE / "base" / "slos").glob("*.yaml")}


# --- RBAC: exactly what the actions send --------------------------------------------------------------


RBAC_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/[^/]+)/namespaces/(?P<namespace>[^/]+)/"
    r"(?P<resource>[^/]+)/[^/]+(?:/(?P<sub>[^/]+))?$"
)
VERBS = {"GET": "get", "PATCH": "patch", "PUT": "update", "POST": "create", "DELETE": "delete"}


def rbac_of(method: str, path: str) -> tuple[str, str, str, str]:
    """(namespace, API group, resource[/subresource], verb) a request needs, as the API server reads it."""
    match = RBAC_PATH.match(path)
    assert match, path
    resource = match["resource"] + (f"/{match['sub']}" if match["sub"] else "")
    return match["namespace"], match["group"] or "", resource, VERBS[method]


def request(**context: str) -> ActionRequest:
    full = {"service": "checkout", "slo": "availability", "canary_label": "version", "canary": "v2",
            "baseline": "v1", **context}  # fmt: skip
    return ActionRequest(
        event=EventKind.TRIGGER,
        idempotency_key="inc-1.halt.trigger",
        incident_id="inc-1",
        service="checkout",
        slo="availability",
        reason="version=v2 burns",
        at=datetime(2026, 12, 4, tzinfo=UTC),
        canary_label="version",
        canary_value="v2",
        baseline="v1",
        context=full,
    )


async def requests_of_every_kubernetes_action(k8s: KubernetesFake, namespace: str) -> None:
    """Abort a Rollout; check, then shift, a VirtualService whose routes name Services."""
    k8s.add_rollout(namespace, "checkout")
    k8s.add_virtual_service(namespace, "checkout-route", [weighted_route("checkout", {"v1": 90, "v2": 10})])
    k8s.add_service(namespace, "checkout")
    common = {"namespace": namespace, "api_url": k8s.url, "token": K8S_TOKEN}
    rollouts = build_rollouts("halt", ArgoRolloutsConfig.model_validate({"rollout": "${service}", **common}))
    istio = build_istio(
        "shift", IstioConfig.model_validate({"virtual_service": "${service}-route", **common})
    )
    try:
        assert (await rollouts.deliver(request())).outcome is ActionOutcome.DELIVERED
        assert await istio.check([request().context]) == []
        assert (await istio.deliver(request())).outcome is ActionOutcome.DELIVERED
    finally:
        await rollouts.aclose()
        await istio.aclose()


@pytest.fixture
def k8s() -> Iterator[KubernetesFake]:
    with KubernetesFake() as fake:
        yield fake


def test_the_role_grants_exactly_what_the_actions_send(
    rendered: dict[str, list[Doc]], k8s: KubernetesFake
) -> None:
    role = the(rendered["single"], "Role")
    namespace = role["metadata"]["namespace"]
    asyncio.run(requests_of_every_kubernetes_action(k8s, namespace))

    needed = {rbac_of(r.method, r.path) for r in k8s.requests}
    granted = {
        (namespace, group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert needed == granted
    assert granted == {
        (namespace, "argoproj.io", "rollouts", "get"),
        (namespace, "argoproj.io", "rollouts/status", "patch"),
        (namespace, "networking.istio.io", "virtualservices", "get"),
        (namespace, "networking.istio.io", "virtualservices", "patch"),
        (namespace, "", "services", "get"),
    }
    assert the(rendered["ha"], "Role") == role


# --- Prometheus Operator and the network ---------------------------------------------------------------


def test_the_prometheusrule_carries_exactly_the_alerts_file(rendered: dict[str, list[Doc]]) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "prometheusrule"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    alerts = yaml.safe_load((REPO / "deploy" / "prometheus" / "budgetguard-alerts.yaml").read_text())
    for overlay in OVERLAYS:
        assert the(rendered[overlay], "PrometheusRule")["spec"] == {"groups": alerts["groups"]}


def test_a_stale_prometheusrule_fails_the_check(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    for part in ("scripts/prometheusrule", "deploy/prometheus/budgetguard-alerts.yaml",
                 "deploy/kubernetes/base/prometheusrule.yaml"):  # fmt: skip
        (copy / part).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / part, copy / part)
    alerts = copy / "deploy/prometheus/budgetguard-alerts.yaml"
    alerts.write_text(alerts.read_text().replace("severity: page", "severity: critical", 1))
    check = [sys.executable, str(copy / "scripts/prometheusrule"), "--check"]
    stale = subprocess.run(check, capture_output=True, text=True, check=False)
    assert stale.returncode == 1
    assert "prometheusrule.yaml is stale: run scripts/prometheusrule" in stale.stderr
    subprocess.run([sys.executable, str(copy / "scripts/prometheusrule")], check=True)
    assert subprocess.run(check, check=False).returncode == 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_servicemonitor_scrapes_the_services_metrics_port(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    monitor = the(docs, "ServiceMonitor")["spec"]
    service = the(docs, "Service")
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
    assert monitor["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_network_policy_admits_prometheus_and_the_delivery_controllers_only(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    policy = the(rendered[overlay], "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"] == POD_LABELS
    assert policy["policyTypes"] == ["Ingress"]
    [rule] = policy["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8731}]
    peers = {
        (
            p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            p["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        )
        for p in rule["from"]
    }
    assert peers == {
        ("monitoring", "prometheus"),
        ("istio-system", "flagger"),
        ("argo-rollouts", "argo-rollouts"),
    }
    assert len(rule["from"]) == 3  # no peer without both selectors (which would admit a whole namespace)


def test_kubectl_embeds_a_kustomize_that_reads_this_layout() -> None:
    """The base keeps the RBAC in the releases' namespace with the NamespaceTransformer's unsetOnly
    (kustomize 5); Debian's kubernetes-client (1.20, kustomize 2) cannot, so setup installs a newer one."""
    version = subprocess.run([kubectl(), "version", "--client"], capture_output=True, text=True, check=True)
    assert re.search(r"Kustomize Version: v5\.", version.stdout), version.stdout
