"""The Istio action: send a burning canary's traffic back to stable by its VirtualService's weights.

For a weight-based canary without a controller (plain Istio, the article's 90/10 split): no Argo
Rollouts or Flagger to abort, so budgetguard sets the weights itself, through the Kubernetes API
(reference integrations.md §5).

It owns the exact patch. A JSON merge patch replaces arrays whole, so a merge patch of ``spec.http``
would have to carry every route, match rule, retry and timeout, and would drop whatever changed since
we read it; strategic merge is refused for custom resources (415). So it reads the VirtualService,
finds the routes that send to both the canary and the stable destination, and sends a JSON patch
(RFC 6902) that first ``test``s the resourceVersion it read and each destination at the index it
read, then sets the canary's weight to 0 and gives its share to stable (90/10 becomes 100/0; with
more destinations their sum stays as it was). Nothing else in the object is touched. A canary
already at 0% is reported as already done without writing. When the object changed between the read
and the write the API server answers 422 (a failed ``test``) or 409 (a stale resourceVersion): the
action reads again and decides again, a few times, and then leaves the retry to the outbox. A 422 on
an object that did not change is the API server refusing the patch itself: a failure, with its words.

It also owns the warning that someone else owns the weights (§5): Argo Rollouts and Flagger rewrite
a VirtualService they manage on every reconcile, and Argo CD's self-heal reverts a weight it tracks;
patching such an object is undone within seconds. ``check`` reads the VirtualService once at start-up
and returns such warnings (the daemon logs them); a delivery repeats them in its detail. It warns and
never refuses: the patch still buys the seconds until the controller acts.

It must not shift traffic back to the canary on resolve (a human or the next release does), write
anything but the weights, retry with sleeps (the outbox owns retries), follow redirects, or put the
token into results, reprs or logs.
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from pydantic import Field, field_validator, model_validator

from budgetguard.actions._config import lazy_module
from budgetguard.actions._http import placeholders, redact, render
from budgetguard.actions._kubernetes import (
    IN_CLUSTER_URL,
    KubernetesAction,
    KubernetesApiConfig,
    is_label,
    is_object_name,
    json_object,
    message,
    verification,
)
from budgetguard.core.ports import ActionOutcome, ActionRequest, ActionResult, EventKind

if TYPE_CHECKING:
    import httpx
else:  # imported when first used: reading a config file needs none of it (#14)
    httpx = lazy_module("httpx")

__all__ = ["IstioAction", "IstioConfig", "Plan", "Shift", "Side", "build", "ownership", "plan", "shift_patch"]

logger = logging.getLogger(__name__)

JSON = dict[str, Any]

_VS_PATH = "/apis/networking.istio.io/{version}/namespaces/{namespace}/virtualservices/{name}"
_SERVICE_PATH = "/api/v1/namespaces/{namespace}/services/{name}"
_JSON_PATCH = "application/json-patch+json"
# Reads and writes per delivery when the object keeps changing under us; then the outbox backs off.
_ATTEMPTS = 3
# Marks of the tools that rewrite a VirtualService (reference §5): Flagger owns the one it generates
# (ownerReferences to its Canary, and flagger.kubernetes.app/original-configuration, pkg/router/istio.go);
# Argo Rollouts updates the one it is given without a mark on it, but annotates the Services and
# DestinationRules it manages with argo-rollouts.argoproj.io/managed-by-rollouts.
_ARGO_ROLLOUTS_PREFIX = "argo-rollouts.argoproj.io/"
_FLAGGER_PREFIXES = ("flagger.kubernetes.app/", "flagger.app/")
_ARGO_ROLLOUTS_MANAGED = "argo-rollouts.argoproj.io/managed-by-rollouts"
_ARGOCD_TRACKING = "argocd.argoproj.io/tracking-id"


class IstioConfig(KubernetesApiConfig):
    """One VirtualService whose canary weight goes to 0 when an incident opens.

    Names are templates over the incident's context (service, slo, canary_label, canary, baseline and
    the SLO's labels). A side (canary, stable) is a destination ``subset``, a destination ``host``, or
    both; unset, the canary is the subset named like the canary's version (``${canary}``) and stable
    the one named like the baseline (``${baseline}``), as in the article's v1/v2 DestinationRule.
    """

    type: Literal["istio"] = "istio"
    virtual_service: str = Field(description="The VirtualService's name, e.g. `${service}`.")
    namespace: str = Field(description="Its namespace; a template like `virtual_service`.")
    route: int | str | None = Field(
        default=None,
        description="The `spec.http` route to change: its `name`, or its index. Unset: every route that "
        "sends to both the canary and the stable destination.",
    )
    canary_subset: str | None = Field(default=None, description="Default `${canary}` (with no host).")
    canary_host: str | None = Field(default=None, description="e.g. `${service}-canary` for host routing.")
    stable_subset: str | None = Field(default=None, description="Default `${baseline}` (with no host).")
    stable_host: str | None = Field(default=None, description="e.g. `${service}-stable`.")
    api_version: Literal["v1", "v1beta1", "v1alpha3"] = Field(
        default="v1beta1",
        description="networking.istio.io version in the path: v1beta1 is served by every supported Istio, "
        "v1 from 1.22; all serve the same object.",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_subsets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for side, version in (("canary", "${canary}"), ("stable", "${baseline}")):
                if data.get(f"{side}_subset") is None and data.get(f"{side}_host") is None:
                    data[f"{side}_subset"] = version
        return data

    @field_validator("virtual_service", "namespace")
    @classmethod
    def _not_blank(cls, template: str) -> str:
        if not template.strip():
            raise ValueError("must not be empty")
        return template

    @field_validator("route")
    @classmethod
    def _route(cls, route: int | str | None) -> int | str | None:
        if isinstance(route, int) and route < 0:
            raise ValueError("an index counts from 0")
        if isinstance(route, str) and not route.strip():
            raise ValueError("give the route's name, or leave it out for every route with both sides")
        return route


# --- reading a VirtualService: pure -------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """How one side's destination is recognised: its subset, its host, or both."""

    subset: str | None
    host: str | None

    def matches(self, destination: object) -> bool:
        if not isinstance(destination, dict):
            return False
        if self.subset is not None and destination.get("subset") != self.subset:
            return False
        return self.host is None or _same_host(str(destination.get("host", "")), self.host)

    def __str__(self) -> str:
        parts = ([f"host {self.host}"] if self.host else []) + (
            [f"subset {self.subset}"] if self.subset else []
        )
        return " ".join(parts)


def _same_host(found: str, wanted: str) -> bool:
    """``checkout`` is ``checkout.shop.svc.cluster.local`` (Istio resolves short names in the namespace)."""
    if found == wanted:
        return True
    return "." not in wanted and found.split(".", 1)[0] == wanted


@dataclass(frozen=True)
class Shift:
    """One route's move: its canary destination to 0, its stable one to the sum of both."""

    route: int  # index in spec.http
    name: str  # the route's name, or "#index"
    canary: int  # index in the route's destinations
    stable: int
    canary_weight: int
    stable_weight: int
    canary_destination: JSON
    stable_destination: JSON
    canary_weighted: bool  # whether a weight field exists (JSON patch: replace, else add)
    stable_weighted: bool

    @property
    def done(self) -> bool:
        return self.canary_weight == 0

    def describe(self) -> str:
        return f"route {self.name}: canary {self.canary_weight}%, stable {self.stable_weight}%"


@dataclass(frozen=True)
class Plan:
    shifts: tuple[Shift, ...]
    notes: tuple[str, ...]  # routes left alone, and why

    @property
    def done(self) -> bool:
        return all(s.done for s in self.shifts)


def _weight(destinations: list[Any], index: int) -> tuple[int, bool]:
    """(weight, present). Istio: a lone destination takes all traffic; otherwise unset is 0."""
    raw = destinations[index].get("weight") if isinstance(destinations[index], dict) else None
    if raw is None:
        return (100 if len(destinations) == 1 else 0), False
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw != int(raw):
        raise ValueError(f"weight {raw!r} is not a whole number")
    return int(raw), True


def plan(obj: Mapping[str, Any], route: int | str | None, canary: Side, stable: Side) -> Plan | str:
    """The routes to shift in a VirtualService as read, or why none can be."""
    spec = obj.get("spec")
    http = spec.get("http") if isinstance(spec, dict) else None
    if not isinstance(http, list) or not http:
        return "it has no spec.http routes (TCP and TLS routes are not shifted)"
    if isinstance(route, int):
        if route >= len(http):
            return f"it has {len(http)} http route(s); there is no index {route}"
        candidates = [route]
    elif isinstance(route, str):
        candidates = [i for i, r in enumerate(http) if isinstance(r, dict) and r.get("name") == route]
        if not candidates:
            names = [str(r.get("name")) for r in http if isinstance(r, dict) and r.get("name")]
            return f"it has no http route named {route!r} (named: {', '.join(names) or 'none'})"
    else:
        candidates = list(range(len(http)))
    shifts: list[Shift] = []
    notes: list[str] = []
    for index in candidates:
        entry = http[index]
        name = str(entry.get("name") or f"#{index}") if isinstance(entry, dict) else f"#{index}"
        destinations = entry.get("route") if isinstance(entry, dict) else None
        if not isinstance(destinations, list):
            notes.append(f"route {name} has no destinations")
            continue
        found = {
            side: [
                j
                for j, d in enumerate(destinations)
                if isinstance(d, dict) and who.matches(d.get("destination"))
            ]
            for side, who in (("canary", canary), ("stable", stable))
        }
        if not found["canary"]:
            if route is not None:
                return f"route {name} has no canary destination ({canary})"
            continue
        if not found["stable"]:
            if route is not None:
                return f"route {name} has no stable destination ({stable})"
            notes.append(f"route {name} sends to the canary with no stable destination: left as is")
            continue
        c, s = found["canary"][0], found["stable"][0]
        if c == s:
            return f"route {name}: the canary and stable sides ({canary}; {stable}) are the same destination"
        try:
            canary_weight, canary_weighted = _weight(destinations, c)
            stable_weight, stable_weighted = _weight(destinations, s)
        except ValueError as exc:
            return f"route {name}: {exc}"
        shifts.append(
            Shift(
                route=index,
                name=name,
                canary=c,
                stable=s,
                canary_weight=canary_weight,
                stable_weight=stable_weight,
                canary_destination=dict(destinations[c]["destination"]),
                stable_destination=dict(destinations[s]["destination"]),
                canary_weighted=canary_weighted,
                stable_weighted=stable_weighted,
            )
        )
    if not shifts:
        return f"no http route sends to both the canary ({canary}) and the stable destination ({stable})"
    return Plan(tuple(shifts), tuple(notes))


def shift_patch(resource_version: str, shifts: Sequence[Shift]) -> list[JSON]:
    """The JSON patch: guarded by the resourceVersion and each destination as read, then the weights."""
    operations: list[JSON] = [{"op": "test", "path": "/metadata/resourceVersion", "value": resource_version}]
    for shift in shifts:
        if shift.done:
            continue
        base = f"/spec/http/{shift.route}/route"
        operations += [
            {"op": "test", "path": f"{base}/{shift.canary}/destination", "value": shift.canary_destination},
            {"op": "test", "path": f"{base}/{shift.stable}/destination", "value": shift.stable_destination},
            {
                "op": "replace" if shift.canary_weighted else "add",
                "path": f"{base}/{shift.canary}/weight",
                "value": 0,
            },
            {
                "op": "replace" if shift.stable_weighted else "add",
                "path": f"{base}/{shift.stable}/weight",
                "value": shift.stable_weight + shift.canary_weight,
            },
        ]
    return operations


def ownership(obj: Mapping[str, Any]) -> list[str]:
    """Who else writes this VirtualService's weights, from its ownerReferences, annotations and labels."""
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        return []
    found: list[str] = []
    for owner in metadata.get("ownerReferences") or ():
        if not isinstance(owner, dict):
            continue
        group = str(owner.get("apiVersion", "")).split("/", 1)[0]
        kind, name = owner.get("kind"), owner.get("name")
        if group == "argoproj.io" and kind == "Rollout":
            found.append(
                f"owned by the Argo Rollouts Rollout {name}, which rewrites its weights: "
                "abort the Rollout instead"
            )
        elif group == "flagger.app" and kind == "Canary":
            found.append(
                f"owned by the Flagger Canary {name}, which rewrites its weights: "
                "roll back through Flagger instead"
            )
    marks = {**(metadata.get("labels") or {}), **(metadata.get("annotations") or {})}
    if not found and any(key.startswith(_ARGO_ROLLOUTS_PREFIX) for key in marks):
        found.append(
            "managed by Argo Rollouts (argo-rollouts.argoproj.io/ marks), which rewrites its weights"
        )
    if not found and any(key.startswith(_FLAGGER_PREFIXES) for key in marks):
        found.append("managed by Flagger (flagger marks), which rewrites its weights")
    if _ARGOCD_TRACKING in marks:
        found.append(
            "tracked by Argo CD: self-heal reverts the weights unless the Application ignores "
            "differences in /spec/http/*/route/*/weight"
        )
    return found


# --- the action --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    namespace: str
    name: str
    canary: Side
    stable: Side

    def __str__(self) -> str:
        return f"VirtualService {self.namespace}/{self.name}"


class IstioAction(KubernetesAction):
    """Shifts a templated VirtualService's canary weight to stable; see the module docstring.

    Owns one connection pool: use it as an async context manager or call ``aclose``.
    """

    patch_content_type = _JSON_PATCH

    def __init__(
        self,
        name: str,
        config: IstioConfig,
        *,
        token: str | None,
        verify: ssl.SSLContext | bool,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(name, f"istio {name}", config, token=token, verify=verify, transport=transport)
        self._config = config

    def __repr__(self) -> str:
        return f"IstioAction(name={self.name!r}, api_url={self._config.api_url or IN_CLUSTER_URL!r})"

    # --- delivering ---

    async def deliver(self, request: ActionRequest) -> ActionResult:
        if request.event is EventKind.RESOLVE:
            return ActionResult(
                ActionOutcome.ALREADY_DONE,
                f"{self._what}: nothing to do on resolve: the canary stays at 0% until a human or the "
                "next release shifts traffic to it again",
            )
        token = self._bearer_token()
        if isinstance(token, ActionResult):
            return token
        target = self._target(request.context)
        if isinstance(target, ActionResult):
            result = target
        else:
            result = await self._shift(target, token)
        result = replace(result, detail=redact(result.detail, (token,)))
        logger.debug("%s: %s %s -> %s", self._what, request.event, request.incident_id, result.outcome)
        return result

    async def _shift(self, target: _Target, token: str) -> ActionResult:
        path = self._path(target)
        conflict: httpx.Response | None = None
        fresh: JSON | None = None  # read after a refused patch: decide again from it
        for _ in range(_ATTEMPTS):
            obj = fresh if fresh is not None else await self._read(target, token)
            fresh = None
            if isinstance(obj, ActionResult):
                return obj
            found = plan(obj, self._config.route, target.canary, target.stable)
            owners = ownership(obj)
            warning = f" (warning: {'; '.join(owners)})" if owners else ""
            if isinstance(found, str):
                return ActionResult(ActionOutcome.FAILED, f"{self._what}: {target}: {found}{warning}")
            notes = "".join(f"; {note}" for note in found.notes)
            if found.done:
                state = "; ".join(s.describe() for s in found.shifts)
                return ActionResult(
                    ActionOutcome.ALREADY_DONE,
                    f"{self._what}: {target}: the canary already gets 0% ({state}){notes}{warning}",
                    200,
                )
            version = str(obj.get("metadata", {}).get("resourceVersion", ""))
            body = json.dumps(shift_patch(version, found.shifts), separators=(",", ":")).encode()
            patched = await self._send("PATCH", path, token, content=body)
            if isinstance(patched, ActionResult):
                return patched
            if patched.is_success:
                written = (json_object(patched) or {}).get("metadata", {}).get("resourceVersion")
                moves = "; ".join(
                    f"route {s.name}: canary {s.canary_weight}% -> 0%, stable {s.stable_weight}% -> "
                    f"{s.stable_weight + s.canary_weight}%"
                    for s in found.shifts
                    if not s.done
                )
                return ActionResult(
                    ActionOutcome.DELIVERED,
                    f"{self._what}: shifted {target} to stable: {moves}"
                    + (f" (resourceVersion {written})" if written else "")
                    + notes
                    + warning,
                    patched.status_code,
                )
            if patched.status_code == 422:
                # A failed test (the object changed since we read it), or the API server refusing the
                # patch itself: only a fresh read tells them apart.
                again = await self._read(target, token)
                if isinstance(again, ActionResult):
                    return again
                if str(again.get("metadata", {}).get("resourceVersion", "")) == version:
                    return self._refused(patched, "patch", target)
                conflict, fresh = patched, again
                continue
            if patched.status_code == 409:
                conflict = patched
                continue
            if patched.status_code == 404:
                return ActionResult(
                    ActionOutcome.FAILED,
                    f"{self._what}: {target} is gone (HTTP 404 on the patch: {message(patched)})",
                    404,
                )
            if patched.status_code == 415:
                return ActionResult(
                    ActionOutcome.FAILED,
                    f"{self._what}: the API server refused the JSON patch content type (HTTP 415: "
                    f"{message(patched)}); is a proxy rewriting Content-Type?",
                    415,
                )
            return self._refused(patched, "patch", target)
        assert conflict is not None
        return ActionResult(
            ActionOutcome.RETRY,
            f"{self._what}: {target} kept changing while we shifted it ({_ATTEMPTS} reads and patches, "
            f"last HTTP {conflict.status_code}: {message(conflict)}); trying again later",
            conflict.status_code,
        )

    async def _read(self, target: _Target, token: str) -> JSON | ActionResult:
        got = await self._send("GET", self._path(target), token)
        if isinstance(got, ActionResult):
            return got
        if got.status_code == 404:
            return ActionResult(
                ActionOutcome.FAILED, f"{self._what}: no such {target} (HTTP 404: {message(got)})", 404
            )
        if not got.is_success:
            return self._refused(got, "get", target)
        obj = json_object(got)
        if obj is None or obj.get("kind", "VirtualService") != "VirtualService":
            return ActionResult(
                ActionOutcome.FAILED,
                f"{self._what}: GET {target} did not answer a VirtualService object: {message(got)}",
                got.status_code,
            )
        return obj

    def _path(self, target: _Target) -> str:
        return _VS_PATH.format(
            version=self._config.api_version,
            namespace=quote(target.namespace, safe=""),
            name=quote(target.name, safe=""),
        )

    def _target(self, context: Mapping[str, str], *, with_sides: bool = True) -> _Target | ActionResult:
        """The rendered names; ``with_sides=False`` skips the destinations (unknown before a release)."""
        config = self._config
        try:
            namespace = render(config.namespace, context)
            name = render(config.virtual_service, context)
            sides = [
                Side(
                    None if subset is None else render(subset, context),
                    None if host is None else render(host, context),
                )
                for subset, host in (
                    (config.canary_subset, config.canary_host),
                    (config.stable_subset, config.stable_host),
                )
            ]
        except KeyError as exc:
            return ActionResult(
                ActionOutcome.FAILED,
                f"{self._what}: the settings use ${{{exc.args[0]}}}, which this incident's context lacks",
            )
        if not is_label(namespace):
            return ActionResult(
                ActionOutcome.FAILED,
                f"{self._what}: {namespace!r} (from {config.namespace!r}) is not a Kubernetes namespace name",
            )
        if not is_object_name(name):
            return ActionResult(
                ActionOutcome.FAILED,
                f"{self._what}: {name!r} (from {config.virtual_service!r}) is not a Kubernetes object name",
            )
        for label, side in zip(("canary", "stable"), sides, strict=True):
            if with_sides and not side.subset and not side.host:
                return ActionResult(
                    ActionOutcome.FAILED,
                    f"{self._what}: the {label} destination renders empty (no baseline known?); set "
                    f"{label}_subset or {label}_host",
                )
        return _Target(namespace, name, sides[0], sides[1])

    def _refused(self, response: httpx.Response, verb: str, target: _Target) -> ActionResult:
        return self._refusal(
            response,
            verb,
            str(target),
            resource="virtualservices.networking.istio.io",
            namespace=target.namespace,
            grant="grant get and patch on virtualservices",
        )

    # --- the start-up check ---

    async def check(self, contexts: Sequence[Mapping[str, str]]) -> list[str]:
        """Warnings about the VirtualServices the SLOs' contexts name, read once (at start-up).

        A context whose names need the canary (``${canary}``, unknown before a release) is skipped. Never
        raises for the API's answers: an unreadable object is a warning too.
        """
        token = self._bearer_token()
        if isinstance(token, ActionResult):
            return [token.detail]
        unknown = placeholders(self._config.namespace) | placeholders(self._config.virtual_service)
        targets: dict[tuple[str, str], _Target] = {}
        for context in contexts:
            if any(not context.get(name) for name in unknown):
                continue
            target = self._target(context, with_sides=False)
            if isinstance(target, _Target):
                targets.setdefault((target.namespace, target.name), target)
        warnings: list[str] = []
        for target in targets.values():
            obj = await self._read(target, token)
            if isinstance(obj, ActionResult):
                warnings.append(
                    f"{redact(obj.detail, (token,))}: the shift to stable will fail until this is fixed"
                )
                continue
            for owner in [*ownership(obj), *await self._managed_services(obj, target, token)]:
                warnings.append(f"{self._what}: {target} is {owner}; a weight budgetguard sets may not last")
        return warnings

    async def _managed_services(self, obj: Mapping[str, Any], target: _Target, token: str) -> list[str]:
        """Argo Rollouts leaves no mark on the VirtualService, but annotates the Services it manages."""
        hosts: set[tuple[str, str]] = set()
        for route in obj.get("spec", {}).get("http") or ():
            for destination in (route.get("route") or ()) if isinstance(route, dict) else ():
                host = (
                    str((destination.get("destination") or {}).get("host", ""))
                    if isinstance(destination, dict)
                    else ""
                )
                labels = host.split(".")
                if labels and is_label(labels[0]):
                    namespace = labels[1] if len(labels) > 1 and is_label(labels[1]) else target.namespace
                    hosts.add((namespace, labels[0]))
        found = []
        for namespace, name in sorted(hosts):
            got = await self._send("GET", _SERVICE_PATH.format(namespace=namespace, name=name), token)
            if isinstance(got, ActionResult) or not got.is_success:
                continue  # no Service to look at (or no RBAC for services): nothing to say
            annotations = (json_object(got) or {}).get("metadata", {}).get("annotations") or {}
            rollout = annotations.get(_ARGO_ROLLOUTS_MANAGED)
            if rollout:
                found.append(
                    f"routing to the Service {namespace}/{name} that the Argo Rollouts Rollout {rollout} "
                    "manages, so the Rollout rewrites these weights: abort the Rollout instead"
                )
        return found


def build(
    name: str, config: IstioConfig, *, transport: httpx.AsyncBaseTransport | None = None
) -> IstioAction:
    """Resolve an explicit token and load the CA (once); raises ``ConfigError`` when either is unusable.

    The service-account token file is not read here but before each delivery (it rotates).
    """
    token = config.token.resolve(f"istio {name} token") if config.token is not None else None
    return IstioAction(
        name, config, token=token, verify=verification(f"istio {name}", config), transport=transport
    )
