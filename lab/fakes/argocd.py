"""A fake Argo CD API server (the REST side of ``argocd-server``) over real loopback HTTP.

It owns the Argo CD behaviour budgetguard's adapter depends on (reference integrations.md §3):

- every non-GET request must carry exactly ``Content-Type: application/json`` (``enforceContentTypes``
  runs before anything else): ``application/json; charset=utf-8`` and a DELETE without the header both
  get 415 with the plain-text body ``Invalid content type``;
- ``Authorization: Bearer`` with a JWT-shaped token (three dot-separated parts), 401 otherwise;
- errors are grpc-gateway v1.16 JSON ``{"error", "code", "message"}`` with its status mapping
  (FailedPrecondition is 400, not 412); a missing application is 403 "permission denied" unless the
  request names a ``project``, then 404; an unknown route is a plain-text 404 ``Not Found``;
- applications with ``status.history``, ``spec.syncPolicy`` and an ``operation`` slot: rollback refuses
  (400) while auto-sync is enabled or an operation is present, needs a numeric history ``id`` and starts
  an operation that only ``finish_operation`` completes (Argo CD syncs asynchronously); terminate is 400
  when nothing runs;
- ``GET .../resource`` and resource actions (v2 body, and the deprecated v1 query-plus-string form) on the
  Rollouts an application manages, applied to a shared ``ObjectStore`` (the one a ``KubernetesFake``
  serves), so a test sees the abort in the cluster. An unchanged object is 200 ``{}`` without a write.

It must not be used outside tests: tokens are compared, never verified, and RBAC is a deny list.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from lab.fakes.kubernetes import (
    ROLLOUTS,
    ApiError,
    FakeServer,
    ObjectStore,
    RecordedRequest,
    Reply,
    TLSFiles,
    reconcile_rollout,
)

__all__ = ["ARGOCD_TOKEN", "ROLLOUT_ACTIONS", "ArgoCDFake"]

JSON = dict[str, Any]

# JWT-shaped (header.payload.signature): Argo CD ignores a bearer token that does not look like one.
ARGOCD_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJidWRnZXRndWFyZCJ9.ZmFrZS1zaWduYXR1cmU"
ALLOWED_CONTENT_TYPES = ("application/json",)

# resource_customizations/argoproj.io/Rollout/actions/*/action.lua, as the status patch each produces.
ROLLOUT_ACTIONS: Mapping[str, JSON] = {
    "abort": {"status": {"abort": True}},
    "retry": {"status": {"abort": False}},
    "promote-full": {"status": {"promoteFull": True}},
}

# grpc codes (google.golang.org/grpc/codes) and grpc-gateway v1.16's HTTP status for each.
_INVALID_ARGUMENT, _NOT_FOUND, _PERMISSION_DENIED, _FAILED_PRECONDITION, _UNAUTHENTICATED = 3, 5, 7, 9, 16
_HTTP_OF_CODE = {3: 400, 5: 404, 7: 403, 9: 400, 10: 409, 13: 500, 14: 503, 16: 401}
_CODE_OF_HTTP = {400: 3, 401: 16, 403: 7, 404: 5, 409: 10, 429: 8, 500: 13, 502: 14, 503: 14, 504: 4}
_FIRST_DEPLOY = datetime(2025, 1, 1, tzinfo=UTC)


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _grpc_error(code: int, message: str) -> Reply:
    return Reply.json(_HTTP_OF_CODE.get(code, 500), {"error": message, "code": code, "message": message})


class _Refused(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


class ArgoCDFake(FakeServer):
    """Argo CD's application API. ``cluster`` is the object store its resource actions change."""

    def __init__(
        self,
        *,
        cluster: ObjectStore | None = None,
        tokens: Collection[str] = (ARGOCD_TOKEN,),
        actions_v2: bool = True,
        tls: TLSFiles | None = None,
    ) -> None:
        super().__init__(name="fake-argocd", tls=tls)
        self.cluster = cluster if cluster is not None else ObjectStore()
        if self.cluster.resource_type(ROLLOUTS.group, ROLLOUTS.version, ROLLOUTS.plural) is None:
            self.cluster.register(ROLLOUTS, reconcile_rollout)
        self.tokens = set(tokens)
        self.actions_v2 = actions_v2  # False: an Argo CD older than 3.1, without resource/actions/v2
        self._apps: dict[str, JSON] = {}
        self._managed: dict[str, set[tuple[str, str, str, str]]] = {}
        self._forbidden: set[str] = set()

    # --- seeding and inspecting, for tests ---

    def add_app(
        self,
        name: str,
        *,
        revisions: Sequence[str] = ("1a2b3c4", "5d6e7f8"),
        deployed_at: Sequence[datetime] | None = None,
        project: str = "default",
        namespace: str = "argocd",
        automated: bool = False,
        rollouts: Sequence[tuple[str, str]] = (),
    ) -> JSON:
        """An application whose history deployed ``revisions`` in order (ids from 0, as Argo CD counts).

        ``deployed_at`` defaults to hourly deployments from 2025-01-01; ``rollouts`` are the
        (namespace, name) Rollouts it manages, which must also be in ``cluster``.
        """
        times = (
            list(deployed_at)
            if deployed_at is not None
            else [_FIRST_DEPLOY + timedelta(hours=i) for i in range(len(revisions))]
        )
        source = {"repoURL": "https://git.example/deploy.git", "path": name, "targetRevision": "main"}
        history = [
            {
                "id": i,
                "revision": revision,
                "deployStartedAt": _rfc3339(at),
                "deployedAt": _rfc3339(at),
                "source": source,
            }
            for i, (revision, at) in enumerate(zip(revisions, times, strict=True))
        ]
        app: JSON = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": "1"},
            "spec": {
                "project": project,
                "source": source,
                "destination": {"server": "https://kubernetes.default.svc", "namespace": name},
                "syncPolicy": {"automated": {"prune": True, "selfHeal": True}} if automated else {},
            },
            "status": {
                "sync": {"status": "Synced", "revision": revisions[-1] if revisions else ""},
                "health": {"status": "Healthy"},
                "history": history,
            },
        }
        with self.lock:
            self._apps[name] = app
            self._managed[name] = {(ROLLOUTS.group, ROLLOUTS.kind, ns, rollout) for ns, rollout in rollouts}
        return self.app(name)

    def app(self, name: str) -> JSON:
        with self.lock:
            return copy.deepcopy(self._apps[name])

    def set_automated(self, name: str, enabled: bool) -> None:
        with self.lock:
            policy = self._apps[name]["spec"].setdefault("syncPolicy", {})
            if enabled:
                policy["automated"] = {"prune": True, "selfHeal": True}
            else:
                policy.pop("automated", None)

    def start_operation(self, name: str, revision: str, *, username: str = "someone") -> None:
        """Someone else's sync runs: a rollback now gets "another operation is already in progress"."""
        with self.lock:
            self._begin(
                self._apps[name], {"sync": {"revision": revision}, "initiatedBy": {"username": username}}
            )

    def finish_operation(self, name: str, *, at: datetime | None = None) -> JSON:
        """The running sync completes: a history entry is appended and the operation slot emptied."""
        finished = at or datetime.now(tz=UTC)
        with self.lock:
            app = self._apps[name]
            operation = app.pop("operation")
            revision = operation["sync"]["revision"]
            history = app["status"]["history"]
            history.append(
                {
                    "id": history[-1]["id"] + 1 if history else 0,
                    "revision": revision,
                    "deployStartedAt": app["status"]["operationState"]["startedAt"],
                    "deployedAt": _rfc3339(finished),
                    "source": app["spec"]["source"],
                }
            )
            app["status"]["sync"]["revision"] = revision
            app["status"]["operationState"].update(phase="Succeeded", finishedAt=_rfc3339(finished))
            return copy.deepcopy(app)

    def forbid(self, action: str) -> None:
        """RBAC: deny ``action`` ("get", "sync", "action/argoproj.io/Rollout/abort") on every application."""
        with self.lock:
            self._forbidden.add(action)

    # --- serving ---

    def failure(self, status: int, message: str | None) -> Reply:
        text = message or f"scripted failure {status}"
        code = _CODE_OF_HTTP.get(status, 2)
        return Reply.json(status, {"error": text, "code": code, "message": text})

    def handle(self, request: RecordedRequest) -> Reply:
        # server.go enforceContentTypes wraps the whole API, before authentication (reference §3.1).
        if request.method != "GET" and request.content_type.lower() not in ALLOWED_CONTENT_TYPES:
            return Reply.text(415, "Invalid content type")
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if len(token.split(".", 2)) != 3:
            return _grpc_error(_UNAUTHENTICATED, "no session information")
        if token not in self.tokens:
            return _grpc_error(_UNAUTHENTICATED, "invalid session: token signature is invalid")
        parts = request.segments
        if parts[:3] != ["api", "v1", "applications"] or len(parts) < 4:
            return Reply.text(404, "Not Found\n")
        name, rest, method = parts[3], parts[4:], request.method
        try:
            if method == "GET" and rest == []:
                return Reply.json(200, self._visible_app(name, request.param("project"), "get"))
            if method == "GET" and rest == ["resource"]:
                return self._get_resource(name, request)
            if method == "POST" and rest == ["rollback"]:
                return self._rollback(name, request)
            if method == "DELETE" and rest == ["operation"]:
                return self._terminate(name, request)
            if method == "POST" and rest == ["resource", "actions", "v2"] and self.actions_v2:
                return self._action_v2(name, request)
            if method == "POST" and rest == ["resource", "actions"]:
                return self._action_v1(name, request)
        except _Refused as refused:
            return refused.reply
        return Reply.text(404, "Not Found\n")

    def _visible_app(self, name: str, project: str | None, action: str) -> JSON:
        app = self._apps.get(name)
        if app is None:
            if project:
                raise _Refused(_grpc_error(_NOT_FOUND, f'applications.argoproj.io "{name}" not found'))
            # docs/developer-guide/api-docs.md: 403 rather than leak whether the application exists.
            raise _Refused(_grpc_error(_PERMISSION_DENIED, "permission denied"))
        if action in self._forbidden:
            raise _Refused(
                _grpc_error(
                    _PERMISSION_DENIED,
                    f"permission denied: applications, {action}, {app['spec']['project']}/{name}, "
                    "sub: budgetguard",
                )
            )
        return app

    def _body(self, request: RecordedRequest) -> Any:
        try:
            return request.json()
        except ValueError as exc:
            raise _Refused(
                _grpc_error(_INVALID_ARGUMENT, f"invalid character in request body: {exc}")
            ) from exc

    def _rollback(self, name: str, request: RecordedRequest) -> Reply:
        body = self._body(request)
        if not isinstance(body, dict):
            return _grpc_error(_INVALID_ARGUMENT, "the request body must be an ApplicationRollbackRequest")
        history_id = body.get("id")
        if isinstance(history_id, str):
            # util/grpc/json.go: encoding/json into *int64 (reference §3.2).
            return _grpc_error(
                _INVALID_ARGUMENT,
                "json: cannot unmarshal string into Go struct field ApplicationRollbackRequest.id "
                "of type int64",
            )
        if not isinstance(history_id, int) or isinstance(history_id, bool):
            return _grpc_error(_INVALID_ARGUMENT, "id is required and must be a number")
        # server/application/application.go Rollback: RBAC, auto-sync, history id, then SetAppOperation.
        app = self._visible_app(name, body.get("project"), "sync")
        if app["spec"].get("syncPolicy", {}).get("automated") is not None:
            return _grpc_error(_FAILED_PRECONDITION, "rollback cannot be initiated when auto-sync is enabled")
        entry = next((h for h in app["status"]["history"] if h["id"] == history_id), None)
        if entry is None:
            return _grpc_error(
                _INVALID_ARGUMENT, f"application {name} does not have deployment with id {history_id}"
            )
        if app.get("operation") is not None:
            return _grpc_error(_FAILED_PRECONDITION, "another operation is already in progress")
        self._begin(
            app,
            {
                "sync": {
                    "revision": entry["revision"],
                    "prune": bool(body.get("prune", False)),
                    "dryRun": bool(body.get("dryRun", False)),
                    "source": entry["source"],
                },
                "initiatedBy": {"username": "budgetguard"},
            },
        )
        return Reply.json(200, app)

    def _begin(self, app: JSON, operation: JSON) -> None:
        app["operation"] = operation
        app["status"]["operationState"] = {
            "operation": copy.deepcopy(operation),
            "phase": "Running",
            "message": "",
            "startedAt": _rfc3339(datetime.now(tz=UTC)),
        }
        app["metadata"]["resourceVersion"] = str(int(app["metadata"]["resourceVersion"]) + 1)

    def _terminate(self, name: str, request: RecordedRequest) -> Reply:
        app = self._visible_app(name, request.param("project"), "sync")
        if app.get("operation") is None:
            return _grpc_error(
                _INVALID_ARGUMENT, "Unable to terminate operation. No operation is in progress"
            )
        app.pop("operation")
        app["status"]["operationState"].update(phase="Failed", message="Operation terminated")
        return Reply.json(200, {})

    def _live_resource(self, name: str, fields: Mapping[str, Any], action: str) -> tuple[JSON, JSON]:
        """The app and the live object named by namespace/resourceName/version/group/kind."""
        app = self._visible_app(name, fields.get("project"), action)
        namespace, resource_name = fields.get("namespace"), fields.get("resourceName")
        group, version, kind = fields.get("group"), fields.get("version"), fields.get("kind")
        if not all(isinstance(v, str) for v in (namespace, resource_name, group, version, kind)):
            raise _Refused(
                _grpc_error(
                    _INVALID_ARGUMENT, "namespace, resourceName, version, group and kind are required"
                )
            )
        assert isinstance(namespace, str) and isinstance(resource_name, str)
        assert isinstance(group, str) and isinstance(version, str) and isinstance(kind, str)
        resource = self.cluster.resource_type_of_kind(group, version, kind)
        live = None if resource is None else self.cluster.get(resource, namespace, resource_name)
        if (group, kind, namespace, resource_name) not in self._managed.get(name, set()) or live is None:
            # application.go getAppLiveResource: not in the app's resource tree (or not live).
            raise _Refused(
                _grpc_error(
                    _INVALID_ARGUMENT,
                    f"{kind} {group} {resource_name} not found as part of application {name}",
                )
            )
        return app, live

    def _get_resource(self, name: str, request: RecordedRequest) -> Reply:
        fields = {
            key: request.param(key) for key in ("namespace", "resourceName", "version", "group", "kind")
        }
        _, live = self._live_resource(name, {**fields, "project": request.param("project")}, "get")
        return Reply.json(200, {"manifest": json.dumps(live)})

    def _action_v2(self, name: str, request: RecordedRequest) -> Reply:
        body = self._body(request)
        if not isinstance(body, dict) or not isinstance(body.get("action"), str):
            return _grpc_error(_INVALID_ARGUMENT, "the request body must be a ResourceActionRunRequestV2")
        return self._run_action(name, body, body["action"])

    def _action_v1(self, name: str, request: RecordedRequest) -> Reply:
        action = self._body(request)  # proto `body: "action"`: the body is only the name, a JSON string
        if not isinstance(action, str):
            return _grpc_error(_INVALID_ARGUMENT, "the request body must be the action name as a JSON string")
        fields = {
            key: request.param(key) for key in ("namespace", "resourceName", "version", "group", "kind")
        }
        return self._run_action(name, {**fields, "project": request.param("project")}, action)

    def _run_action(self, name: str, fields: Mapping[str, Any], action: str) -> Reply:
        rbac = f"action/{fields.get('group')}/{fields.get('kind')}/{action}"
        _, live = self._live_resource(name, fields, rbac)
        if (fields.get("group"), fields.get("kind")) != (ROLLOUTS.group, ROLLOUTS.kind) or (
            action not in ROLLOUT_ACTIONS
        ):
            return _grpc_error(
                _INVALID_ARGUMENT, f"action {action!r} is not available on {fields.get('kind')}"
            )
        # patchResource: a merge patch of live vs. the Lua output; status goes to /status (reference §3.6).
        try:
            self.cluster.patch(
                ROLLOUTS,
                live["metadata"]["namespace"],
                live["metadata"]["name"],
                content_type="application/merge-patch+json",
                body=json.dumps(ROLLOUT_ACTIONS[action]).encode(),
                subresource="status",
            )
        except ApiError as exc:
            return _grpc_error(_CODE_OF_HTTP.get(exc.code, 13), exc.message)
        return Reply.json(200, {})
