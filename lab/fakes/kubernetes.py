"""A fake Kubernetes API server for custom resources (Argo Rollouts, Istio), over real loopback HTTP.

It owns what budgetguard's Kubernetes adapters must get exactly right on the wire (reference
integrations.md §1.1 and §5): ``Authorization: Bearer`` (401 ``Status`` otherwise), the patch type chosen
by Content-Type alone (JSON merge patch per RFC 7386, JSON patch per RFC 6902; strategic merge and
anything else get the API server's exact 415), the status subresource (a patch of ``/status`` changes
only ``status``; a patch of the main resource silently drops ``status``), ``resourceVersion`` bumped only
when an object changed, 409 when a patch carries a ``resourceVersion`` other than the stored one (in
a merge patch's ``metadata`` or set by a JSON patch: the API server takes it as a precondition), a
failed JSON patch ``test`` answered 422 ``Invalid`` with the API server's generic words (kubernetes
PR #68346; kubectl shows "the server rejected our request due to an error in our request"), and
``Status`` JSON errors. An optional controller per resource type reacts to writes; the Rollout one
copies what Argo Rollouts does with ``status.abort`` (keep the first ``abortedAt``, clear the abort of
a fully promoted rollout).

Objects are stored by (group, plural, namespace, name), so every served version of a resource shares
one object, as in the real API server: Istio VirtualServices are served as ``networking.istio.io``
v1alpha3, v1beta1 and v1 (Istio 1.22+), one object behind the three paths, and core Services can be
read (their annotations say whether Argo Rollouts manages them). ``before_next`` lets a test change
an object between a client's read and its write, as a concurrent editor or controller would. It also
holds ``FakeServer``, the threaded loopback HTTP server that the Argo CD and flag fakes build on
(recording, scripted failures, optional TLS).

It must not be used outside tests: there is no real authentication, admission or watch, and it binds to
127.0.0.1 only.
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import jsonpatch
import jsonpointer

from lab.fakes._server import LoopbackServer, TLSFiles

__all__ = [
    "K8S_TOKEN",
    "ROLLOUTS",
    "SERVICES",
    "VIRTUAL_SERVICES",
    "VIRTUAL_SERVICE_VERSIONS",
    "ApiError",
    "FakeServer",
    "KubernetesFake",
    "ObjectStore",
    "RecordedRequest",
    "Reply",
    "ResourceType",
    "TLSFiles",
    "json_patch",
    "merge_patch",
    "reconcile_rollout",
    "status_json",
    "weighted_route",
]

logger = logging.getLogger(__name__)

JSON = dict[str, Any]

K8S_TOKEN = "fake-service-account-token"
_SERVICE_ACCOUNT = "system:serviceaccount:budgetguard:budgetguard"

# The API server's own words (kubernetes-client/java#3106, quoted in the reference §5).
_UNSUPPORTED_PATCH = (
    "the body of the request was in an unknown format - accepted media types include: "
    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
)
# What the API server says when a JSON patch cannot be applied (a failed test, a missing path): a
# generic 422 (apimachinery NewGenericServerResponse), the jsonpatch error in details.causes.
_REJECTED = "the server rejected our request due to an error in our request"
_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


# --- the HTTP server every fake builds on ---------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it. ``segments`` are the path's percent-decoded parts."""

    method: str
    path: str  # raw, still percent-encoded, without the query string
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]  # names lowercased
    body: bytes

    @property
    def segments(self) -> list[str]:
        return [unquote(part) for part in self.path.strip("/").split("/")] if self.path.strip("/") else []

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: object, headers: Mapping[str, str] | None = None) -> Reply:
        return cls(status, json.dumps(payload).encode(), "application/json", dict(headers or {}))

    @classmethod
    def text(cls, status: int, text: str, headers: Mapping[str, str] | None = None) -> Reply:
        return cls(status, text.encode(), "text/plain; charset=utf-8", dict(headers or {}))


@dataclass(frozen=True)
class _Scripted:
    status: int
    message: str | None
    headers: Mapping[str, str]
    method: str | None  # only requests with this method consume it


class FakeServer(LoopbackServer):
    """A threaded HTTP server on 127.0.0.1 that records every request and answers through ``handle``.

    Subclasses implement ``handle`` (called under ``lock``, so handlers need no locking of their own)
    and ``failure`` (what a scripted failure looks like for that API). Use it as a context manager, or
    ``start()`` and ``close()``.
    """

    def __init__(self, *, name: str, tls: TLSFiles | None = None) -> None:
        super().__init__(name=name, tls=tls)
        self.lock = threading.RLock()
        self._requests: list[RecordedRequest] = []
        self._scripted: deque[_Scripted] = deque()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self.lock:
            return list(self._requests)

    def requests_where(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        """Recorded requests with this method and/or exactly this (raw) path."""
        return [
            r
            for r in self.requests
            if (method is None or r.method == method) and (path is None or r.path == path)
        ]

    def fail_next(
        self,
        count: int = 1,
        status: int = 503,
        *,
        message: str | None = None,
        headers: Mapping[str, str] | None = None,
        method: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests (of ``method``, if given) with ``status``.

        Scripted answers come before authentication and routing, like a failing proxy or API server,
        and change no state.
        """
        scripted = _Scripted(status, message, dict(headers or {}), method)
        with self.lock:
            self._scripted.extend(scripted for _ in range(count))

    def handle(self, request: RecordedRequest) -> Reply:
        raise NotImplementedError

    def failure(self, status: int, message: str | None) -> Reply:
        return Reply.text(status, message or f"scripted failure {status}")

    def dispatch(self, request: RecordedRequest) -> Reply:
        with self.lock:
            self._requests.append(request)
            scripted = next((s for s in self._scripted if s.method in (None, request.method)), None)
            if scripted is not None:
                self._scripted.remove(scripted)
                reply = self.failure(scripted.status, scripted.message)
                return Reply(
                    reply.status, reply.body, reply.content_type, {**reply.headers, **scripted.headers}
                )
            try:
                return self.handle(request)
            except Exception:  # a bug in the fake must show as a 500, not as a hung test
                logger.exception("%s: the fake failed on %s %s", self._name, request.method, request.path)
                return Reply.text(500, "the fake itself failed; see the log")

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        url = urlsplit(handler.path)
        request = RecordedRequest(
            method=handler.command,
            path=url.path,
            query=parse_qs(url.query, keep_blank_values=True),
            headers={name.lower(): value for name, value in handler.headers.items()},
            body=body,
        )
        reply = self.dispatch(request)
        handler.send_response(reply.status)
        if reply.content_type is not None:
            handler.send_header("Content-Type", reply.content_type)
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(reply.body)))
        handler.end_headers()
        handler.wfile.write(reply.body)


# --- Kubernetes objects and patches ---------------------------------------------------------------


@dataclass(frozen=True)
class ResourceType:
    """One served resource: ``group`` is "" for the core group (``/api/v1``)."""

    group: str
    version: str
    plural: str
    kind: str
    status_subresource: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """How the API server names the resource in messages: ``rollouts.argoproj.io``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def path(self, namespace: str, name: str, subresource: str | None = None) -> str:
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        tail = f"/{subresource}" if subresource else ""
        return f"{root}/namespaces/{namespace}/{self.plural}/{name}{tail}"


ROLLOUTS = ResourceType("argoproj.io", "v1alpha1", "rollouts", "Rollout")
# Istio's CRDs declare the status subresource; v1 needs Istio 1.22+, the others are served alongside.
VIRTUAL_SERVICE_VERSIONS = ("v1alpha3", "v1beta1", "v1")
VIRTUAL_SERVICES = ResourceType("networking.istio.io", "v1beta1", "virtualservices", "VirtualService")
SERVICES = ResourceType("", "v1", "services", "Service")

# Called with the stored object after every write; mutates it in place (or leaves it alone).
Controller = Callable[[JSON], None]


def weighted_route(host: str, weights: Mapping[str, int], *, name: str | None = None, **extra: Any) -> JSON:
    """One VirtualService http route: ``weighted_route("product-page", {"v1": 90, "v2": 10})`` is the
    article's 90/10 split across two subsets of one host; ``extra`` adds match rules, retries, ..."""
    route: JSON = {"name": name} if name else {}
    route.update(extra)
    route["route"] = [
        {"destination": {"host": host, "subset": subset}, "weight": weight}
        for subset, weight in weights.items()
    ]
    return route


class ApiError(Exception):
    """An API error answer: HTTP status, Status reason and message (and optional details)."""

    def __init__(self, code: int, message: str, details: JSON | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


def status_json(code: int, message: str, details: JSON | None = None) -> JSON:
    """A ``metav1.Status`` failure, as the API server writes it."""
    body: JSON = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": _REASONS.get(code, "Unknown"),
    }
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


def merge_patch(target: object, patch: object) -> Any:
    """RFC 7386: objects merge recursively, ``null`` deletes, everything else (arrays too) replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(document: object, operations: object) -> Any:
    """RFC 6902, applied by the ``jsonpatch`` library one operation at a time, answered as the API server
    answers: a body that is not a list is 400, a failed ``test`` or any other bad operation 422 with the
    API server's words (reference §5), and nothing changes unless every operation applies."""
    if not isinstance(operations, list):
        raise ApiError(400, "json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    result = copy.deepcopy(document)
    for operation in operations:
        path = operation.get("path") if isinstance(operation, dict) else None
        try:
            result = jsonpatch.JsonPatch([operation]).apply(result, in_place=True)
        except jsonpatch.JsonPatchTestFailed:
            cause = {
                "reason": "UnexpectedServerResponse",
                "message": f"testing value {path} failed: test failed",
            }
            raise ApiError(422, _REJECTED, {"causes": [cause]}) from None
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError) as exc:
            raise ApiError(422, f"the server rejected our request: {operation!r}: {exc}") from None
    return result


def _now_rfc3339() -> str:
    return datetime.now(tz=UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def reconcile_rollout(rollout: JSON) -> None:
    """What the Argo Rollouts controller does with ``status.abort`` (reference §1.1), synchronously.

    - ``abort`` on a fully promoted rollout (``stableRS == currentPodHash``) is removed
      (``rollout/controller.go:596-598``): an abort there is silently undone.
    - otherwise ``abort`` sends the canary weight to 0, the phase to Degraded and sets ``abortedAt``
      once: a repeated abort keeps the first timestamp (``rollout/pause.go``, ``CalculateAbortStatus``).
    - a cleared ``abort`` (retry) drops ``abortedAt`` and resumes progressing.
    """
    status = rollout.setdefault("status", {})
    promoted = bool(status.get("stableRS")) and status.get("stableRS") == status.get("currentPodHash")
    if status.get("abort") and promoted:
        status.pop("abort", None)
        status.pop("abortedAt", None)
        status["phase"] = "Healthy"
        status.pop("message", None)
    elif status.get("abort"):
        status.setdefault("abortedAt", _now_rfc3339())
        revision = rollout.get("metadata", {}).get("annotations", {}).get("rollout.argoproj.io/revision", "?")
        status["phase"] = "Degraded"
        status["message"] = f"RolloutAborted: Rollout aborted update to revision {revision}"
        weights = status.get("canary", {}).get("weights")
        if isinstance(weights, dict):
            weights.setdefault("canary", {})["weight"] = 0
            weights.setdefault("stable", {})["weight"] = 100
    elif "abortedAt" in status:
        status.pop("abortedAt")
        status["phase"] = "Progressing"
        status.pop("message", None)


class ObjectStore:
    """Namespaced objects of registered resource types, with the API server's write semantics.

    Thread-safe. Returned objects are deep copies: change them through ``put``, ``patch`` or ``update``.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._controllers: dict[tuple[str, str], Controller] = {}
        self._objects: dict[tuple[str, str, str, str], JSON] = {}
        self._versions = itertools.count(1001)

    def register(self, resource: ResourceType, controller: Controller | None = None) -> None:
        with self._lock:
            self._types[(resource.group, resource.version, resource.plural)] = resource
            if controller is not None:
                self._controllers[(resource.group, resource.plural)] = controller

    def resource_type(self, group: str, version: str, plural: str) -> ResourceType | None:
        with self._lock:
            return self._types.get((group, version, plural))

    def resource_type_of_kind(self, group: str, version: str, kind: str) -> ResourceType | None:
        with self._lock:
            for resource in self._types.values():
                if (resource.group, resource.version, resource.kind) == (group, version, kind):
                    return resource
            return None

    def get(self, resource: ResourceType, namespace: str, name: str) -> JSON | None:
        with self._lock:
            found = self._objects.get((resource.group, resource.plural, namespace, name))
            if found is None:
                return None
            result = copy.deepcopy(found)
            result["apiVersion"] = resource.api_version
            return result

    def require(self, resource: ResourceType, namespace: str, name: str) -> JSON:
        found = self.get(resource, namespace, name)
        if found is None:
            raise ApiError(404, f'{resource.qualified} "{name}" not found', _details(resource, name))
        return found

    def put(self, resource: ResourceType, namespace: str, obj: JSON) -> JSON:
        """Create or replace an object (a test seeding the cluster; no admission, no controller)."""
        with self._lock:
            stored = copy.deepcopy(obj)
            metadata = stored.setdefault("metadata", {})
            metadata["namespace"] = namespace
            metadata.setdefault("uid", f"uid-{next(self._versions)}")
            metadata.setdefault("generation", 1)
            metadata.setdefault("creationTimestamp", _now_rfc3339())
            metadata["resourceVersion"] = str(next(self._versions))
            stored["apiVersion"] = resource.api_version
            stored["kind"] = resource.kind
            self._objects[(resource.group, resource.plural, namespace, metadata["name"])] = stored
            return copy.deepcopy(stored)

    def update(
        self, resource: ResourceType, namespace: str, name: str, change: Callable[[JSON], None]
    ) -> JSON:
        """Change an object in place as a controller or a human would (the controller then reacts)."""
        with self._lock:
            current = self.require(resource, namespace, name)
            changed = copy.deepcopy(current)
            change(changed)
            return self._store(resource, namespace, name, current, changed)

    def patch(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        *,
        content_type: str,
        body: bytes,
        subresource: str | None = None,
    ) -> JSON:
        """Apply a PATCH as the API server does; returns the object as written (before any controller)."""
        media_type = content_type.split(";", maxsplit=1)[0].strip().lower()
        if media_type not in ("application/merge-patch+json", "application/json-patch+json"):
            # Strategic merge is not supported for custom resources; SSA is not implemented by the fake.
            raise ApiError(415, _UNSUPPORTED_PATCH)
        try:
            patch = json.loads(body)
        except ValueError as exc:
            raise ApiError(400, f"error decoding patch: {exc}") from exc
        with self._lock:
            current = self.require(resource, namespace, name)
            if media_type == "application/merge-patch+json":
                if not isinstance(patch, dict):
                    raise ApiError(400, "a merge patch must be a JSON object")
                patched = merge_patch(current, patch)
            else:
                patched = json_patch(current, patch)
            if not isinstance(patched, dict):
                raise ApiError(422, "the patched object is not an object")
            # A resourceVersion the patch put in the object is a precondition (kubernetes PR #15420).
            metadata = patched.get("metadata")
            wanted = metadata.get("resourceVersion") if isinstance(metadata, dict) else None
            if wanted is not None and wanted != current["metadata"]["resourceVersion"]:
                raise ApiError(409, _conflict(resource, name), _details(resource, name))
            if subresource == "status":
                changed = {**current, "status": patched.get("status", {})}
            elif resource.status_subresource:
                # The trap of reference §1.1: status in a main-resource patch is dropped, silently.
                changed = {**patched, "status": current.get("status", {})}
                changed["metadata"] = {**patched.get("metadata", {}), **_identity(current)}
            else:
                changed = patched
                changed["metadata"] = {**patched.get("metadata", {}), **_identity(current)}
            return self._store(resource, namespace, name, current, changed)

    def _store(self, resource: ResourceType, namespace: str, name: str, current: JSON, changed: JSON) -> JSON:
        key = (resource.group, resource.plural, namespace, name)
        if changed == current:
            return current  # nothing changed: nothing stored, resourceVersion kept
        changed["metadata"]["resourceVersion"] = str(next(self._versions))
        if changed.get("spec") != current.get("spec"):
            changed["metadata"]["generation"] = int(current["metadata"].get("generation", 1)) + 1
        self._objects[key] = copy.deepcopy(changed)
        written = copy.deepcopy(changed)
        controller = self._controllers.get((resource.group, resource.plural))
        if controller is not None:
            reacted = copy.deepcopy(changed)
            controller(reacted)
            if reacted != changed:
                reacted["metadata"]["resourceVersion"] = str(next(self._versions))
                self._objects[key] = reacted
        return written


def _identity(current: JSON) -> JSON:
    metadata = current["metadata"]
    return {k: metadata[k] for k in ("name", "namespace", "uid", "resourceVersion") if k in metadata}


def _details(resource: ResourceType, name: str) -> JSON:
    return {"name": name, "group": resource.group, "kind": resource.plural}


def _conflict(resource: ResourceType, name: str) -> str:
    return (
        f'Operation cannot be fulfilled on {resource.qualified} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )


# --- the fake API server --------------------------------------------------------------------------


class KubernetesFake(FakeServer):
    """The Kubernetes API for namespaced custom resources: GET, PATCH and PUT, plus ``/status``.

    ``tokens`` are the bearer tokens it accepts. ``store`` may be shared with another fake (Argo CD's
    resource actions change the same Rollouts). ``controllers=False`` leaves objects exactly as patched.
    """

    def __init__(
        self,
        *,
        tokens: Collection[str] = (K8S_TOKEN,),
        store: ObjectStore | None = None,
        controllers: bool = True,
        tls: TLSFiles | None = None,
    ) -> None:
        super().__init__(name="fake-kubernetes", tls=tls)
        self.tokens = set(tokens)
        self.store = store if store is not None else ObjectStore()
        self.store.register(ROLLOUTS, reconcile_rollout if controllers else None)
        for version in VIRTUAL_SERVICE_VERSIONS:
            self.store.register(replace(VIRTUAL_SERVICES, version=version))
        self.store.register(SERVICES)
        self._forbidden: set[tuple[str, str, str]] = set()
        self._before: list[tuple[str, Callable[[], object]]] = []

    # --- seeding and inspecting, for tests ---

    def add_rollout(
        self,
        namespace: str,
        name: str,
        *,
        current_pod_hash: str = "7d9c8b6f5",
        stable_rs: str = "5f6b7c8d9",
        canary_weight: int = 20,
        abort: bool = False,
        revision: int = 2,
    ) -> JSON:
        """A canary Rollout mid-rollout: ``stable_rs == current_pod_hash`` makes it fully promoted."""
        status: JSON = {
            "phase": "Paused",
            "currentPodHash": current_pod_hash,
            "stableRS": stable_rs,
            "currentStepIndex": 1,
            "canary": {
                "weights": {
                    "canary": {"podTemplateHash": current_pod_hash, "weight": canary_weight},
                    "stable": {"podTemplateHash": stable_rs, "weight": 100 - canary_weight},
                }
            },
        }
        if abort:
            status.update(abort=True, abortedAt=_now_rfc3339(), phase="Degraded")
        return self.store.put(
            ROLLOUTS,
            namespace,
            {
                "metadata": {"name": name, "annotations": {"rollout.argoproj.io/revision": str(revision)}},
                "spec": {
                    "replicas": 3,
                    "strategy": {"canary": {"steps": [{"setWeight": canary_weight}, {"pause": {}}]}},
                    "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": []}},
                },
                "status": status,
            },
        )

    def rollout(self, namespace: str, name: str) -> JSON:
        found = self.store.get(ROLLOUTS, namespace, name)
        if found is None:
            raise KeyError(f"{namespace}/{name}")
        return found

    def mark_fully_promoted(self, namespace: str, name: str) -> JSON:
        """The canary became stable (``stableRS = currentPodHash``); the controller then clears an abort."""

        def promote(rollout: JSON) -> None:
            status = rollout.setdefault("status", {})
            status["stableRS"] = status.get("currentPodHash")
            status["phase"] = "Healthy"
            status.pop("pauseConditions", None)
            weights = status.get("canary", {}).get("weights")
            if isinstance(weights, dict):
                weights["canary"] = {"podTemplateHash": status["stableRS"], "weight": 100}
                weights["stable"] = {"podTemplateHash": status["stableRS"], "weight": 100}

        return self.store.update(ROLLOUTS, namespace, name, promote)

    def add_virtual_service(
        self,
        namespace: str,
        name: str,
        http: list[JSON],
        *,
        hosts: list[str] | None = None,
        annotations: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        owner: JSON | None = None,
    ) -> JSON:
        """An Istio VirtualService with these ``http`` routes (see ``weighted_route``); ``owner`` is an
        ownerReference, such as the one Flagger puts on the VirtualService it generates."""
        metadata: JSON = {"name": name}
        if annotations:
            metadata["annotations"] = dict(annotations)
        if labels:
            metadata["labels"] = dict(labels)
        if owner is not None:
            metadata["ownerReferences"] = [owner]
        spec: JSON = {"hosts": hosts or [name], "http": copy.deepcopy(http)}
        return self.store.put(VIRTUAL_SERVICES, namespace, {"metadata": metadata, "spec": spec})

    def virtual_service(self, namespace: str, name: str) -> JSON:
        found = self.store.get(VIRTUAL_SERVICES, namespace, name)
        if found is None:
            raise KeyError(f"{namespace}/{name}")
        return found

    def weights(self, namespace: str, name: str, route: int = 0) -> dict[str, int | None]:
        """One http route's weights by destination subset (or host, for a destination without one)."""
        destinations = self.virtual_service(namespace, name)["spec"]["http"][route]["route"]
        return {
            d["destination"].get("subset") or d["destination"]["host"]: d.get("weight") for d in destinations
        }

    def add_service(self, namespace: str, name: str, *, annotations: Mapping[str, str] | None = None) -> JSON:
        """A core Service (read for its annotations: Argo Rollouts marks the ones it manages)."""
        metadata: JSON = {"name": name, "annotations": dict(annotations or {})}
        return self.store.put(SERVICES, namespace, {"metadata": metadata, "spec": {"ports": [{"port": 80}]}})

    def before_next(self, method: str, change: Callable[[], object]) -> None:
        """Run ``change`` just before the next ``method`` request is handled (once): someone else
        editing the object between a client's read and its write."""
        with self.lock:
            self._before.append((method, change))

    def forbid(self, verb: str, resource: str, *, group: str = "argoproj.io") -> None:
        """RBAC: refuse ``verb`` (get, patch, update) on ``resource`` ("rollouts" or "rollouts/status")."""
        with self.lock:
            self._forbidden.add((verb, group, resource))

    # --- serving ---

    def failure(self, status: int, message: str | None) -> Reply:
        return Reply.json(status, status_json(status, message or f"scripted failure {status}"))

    def handle(self, request: RecordedRequest) -> Reply:
        hook = next((h for h in self._before if h[0] == request.method), None)
        if hook is not None:
            self._before.remove(hook)
            hook[1]()
        if not self._authenticated(request):
            return Reply.json(401, status_json(401, "Unauthorized"))
        routed = self._route(request.segments)
        if routed is None:
            return Reply.json(404, status_json(404, "the server could not find the requested resource", {}))
        resource, namespace, name, subresource = routed
        verb = {"GET": "get", "PATCH": "patch", "PUT": "update"}.get(request.method)
        if verb is None:
            return Reply.json(405, status_json(405, f"{request.method} is not supported"))
        rbac_resource = f"{resource.plural}/{subresource}" if subresource else resource.plural
        if (verb, resource.group, rbac_resource) in self._forbidden:
            message = (
                f'{resource.qualified} "{name}" is forbidden: User "{_SERVICE_ACCOUNT}" cannot {verb} '
                f'resource "{rbac_resource}" in API group "{resource.group}" in the namespace "{namespace}"'
            )
            return Reply.json(403, status_json(403, message, _details(resource, name)))
        try:
            if verb == "get":
                return Reply.json(200, self.store.require(resource, namespace, name))
            if verb == "patch":
                written = self.store.patch(
                    resource,
                    namespace,
                    name,
                    content_type=request.content_type,
                    body=request.body,
                    subresource=subresource,
                )
                return Reply.json(200, written)
            return Reply.json(200, self._put(resource, namespace, name, request, subresource))
        except ApiError as exc:
            return Reply.json(exc.code, status_json(exc.code, exc.message, exc.details))

    def _authenticated(self, request: RecordedRequest) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and token.strip() in self.tokens

    def _route(self, parts: list[str]) -> tuple[ResourceType, str, str, str | None] | None:
        """``/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}[/status]`` (or core ``/api/v1/...``)."""
        if parts[:1] == ["apis"] and len(parts) >= 7:
            group, version, rest = parts[1], parts[2], parts[3:]
        elif parts[:1] == ["api"] and len(parts) >= 6:
            group, version, rest = "", parts[1], parts[2:]
        else:
            return None
        if rest[0] != "namespaces" or len(rest) not in (4, 5):
            return None
        resource = self.store.resource_type(group, version, rest[2])
        subresource = rest[4] if len(rest) == 5 else None
        if resource is None or (subresource is not None and subresource != "status"):
            return None
        if subresource == "status" and not resource.status_subresource:
            return None  # a CRD without the status subresource (Argo Rollouts < v0.10): 404
        return resource, rest[1], rest[3], subresource

    def _put(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        request: RecordedRequest,
        subresource: str | None,
    ) -> JSON:
        try:
            body = request.json()
        except ValueError as exc:
            raise ApiError(400, f"error decoding body: {exc}") from exc
        if not isinstance(body, dict) or body.get("metadata", {}).get("name") != name:
            raise ApiError(400, "the name of the object does not match the name on the URL")
        current = self.store.require(resource, namespace, name)
        wanted = body["metadata"].get("resourceVersion")
        if wanted is not None and wanted != current["metadata"]["resourceVersion"]:
            raise ApiError(409, _conflict(resource, name), _details(resource, name))

        def replace(obj: JSON) -> None:
            if subresource == "status":
                obj["status"] = body.get("status", {})
                return
            keep_status = obj.get("status", {})
            obj.clear()
            obj.update(copy.deepcopy(body))
            obj["metadata"] = {**body["metadata"], **_identity(current)}
            if resource.status_subresource:
                obj["status"] = keep_status

        return self.store.update(resource, namespace, name, replace)
