"""The pull gates, as Flagger and Argo Rollouts see them: real HTTP, and fakes that read answers as they do.

``FakeFlagger`` POSTs Flagger's exact payload with Go's headers only and counts just 200-202 as a yes
(integrations.md §2.2, §2.5); ``FakeArgo`` GETs with the template's headers only, turns any non-2xx into
an Error, applies the jsonPath and the success condition, and aborts after more than
``consecutiveErrorLimit`` Errors in a row (§1.5). Evaluations come from the real engine over a fake
source, so each canary verdict is the one the daemon would hold.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import yaml

from budgetguard.core import gates
from budgetguard.core.gates import GuardStatus
from budgetguard.core.policy import Evaluation, failed
from budgetguard.core.ports import QueryResult, Sample
from budgetguard.core.queries import PART_LABEL, plan
from budgetguard.core.spec import SLO
from budgetguard.core.verdict import Verdict
from budgetguard.engine import Engine
from budgetguard.web import HttpServer, create_app
from tests.helpers import slo_from

ROOT = Path(__file__).resolve().parent.parent
FLAGGER_CANARY = ROOT / "deploy" / "flagger" / "canary.yaml"
ARGO_TEMPLATE = ROOT / "deploy" / "argo-rollouts" / "analysis-template.yaml"
AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SLO_ID = "checkout/availability"
TOKEN = "s3cret-t0ken"

CANARY = """
version: budgetguard/v1
service: checkout
slos:
  - name: availability
    objective: 99.9
    sli:
      events:
        error_query: sum by (version) (rate(http_requests_total{job="checkout",code=~"5.."}[{{.window}}]))
        total_query: sum by (version) (rate(http_requests_total{job="checkout"}[{{.window}}]))
    canary:
      label: version
"""

# Each version's (requests per second, error ratio), the same in every window. v1 is the baseline.
TRAFFIC: dict[str, dict[str, tuple[float, float]]] = {
    "burning": {"v1": (995.0, 0.0), "v2": (5.0, 0.2)},
    # 1,500 clean requests in 5m: within 14.4x, short of the 3,688 a promotion needs
    "healthy": {"v1": (95.0, 0.0), "v2": (5.0, 0.0)},
    "healthy enough": {"v1": (95.0, 0.0), "v2": (20.0, 0.0)},
    # 30 clean requests in 5m prove nothing yet
    "inconclusive": {"v1": (95.0, 0.0), "v2": (0.1, 0.0)},
    "one burning, one healthy": {"v1": (990.0, 0.0), "v2": (5.0, 0.2), "v3": (5.0, 0.0)},
    "baseline only": {"v1": (100.0, 0.0)},
}


class OneAnswer:
    """A metrics source that answers every query with the same per-version samples."""

    def __init__(self, answer: QueryResult) -> None:
        self.answer = answer

    async def query(self, expr: str, at: datetime) -> QueryResult:
        return self.answer

    async def aclose(self) -> None:
        return None


@cache
def canary_slo() -> SLO:
    return slo_from(CANARY)


@cache
def evaluation(scenario: str) -> Evaluation:
    """The engine's evaluation of the canary SLO when the versions serve ``TRAFFIC[scenario]``."""
    slo = canary_slo()
    samples = []
    for q in plan(slo):
        for version, (rps, ratio) in TRAFFIC[scenario].items():
            value = rps * ratio if q.part == "errors" else rps
            samples.append(Sample({PART_LABEL: q.tag, "version": version}, value))
    return asyncio.run(Engine(OneAnswer(QueryResult(tuple(samples)))).evaluate(slo, AT))


def source_down() -> Evaluation:
    return failed(canary_slo(), AT, "source error (unavailable): connection refused", "unavailable")


def test_the_scenarios_are_what_their_names_say() -> None:
    def verdicts(scenario: str) -> dict[str, tuple[Verdict, bool]]:
        return {c.value: (c.verdict, c.healthy_enough) for c in evaluation(scenario).canaries}

    assert verdicts("burning") == {"v2": (Verdict.BURNING, False)}
    assert verdicts("healthy") == {"v2": (Verdict.HEALTHY, False)}
    assert verdicts("healthy enough") == {"v2": (Verdict.HEALTHY, True)}
    assert verdicts("inconclusive") == {"v2": (Verdict.INCONCLUSIVE, False)}
    assert verdicts("one burning, one healthy") == {
        "v2": (Verdict.BURNING, False),
        "v3": (Verdict.HEALTHY, False),
    }
    assert verdicts("baseline only") == {}
    assert source_down().verdict is Verdict.ERROR


# --- the daemon side: a view and a real server ------------------------------------------------------


@dataclass
class GateView:
    """The daemon as the server sees it; tests set what the guard knows."""

    evaluations: list[Evaluation] = field(default_factory=list)
    paused: bool = False
    open_incidents: frozenset[str] = frozenset()
    ready: bool = True
    asked: list[str] = field(default_factory=list)

    def latest_evaluations(self) -> Sequence[Evaluation]:
        return list(self.evaluations)

    def config_problems(self) -> Sequence[str]:
        return []

    def readiness(self) -> tuple[bool, str]:
        return self.ready, "ok" if self.ready else "the first evaluation cycle has not finished yet"

    def history(self, slo_id: str, since: datetime, limit: int) -> list[dict[str, Any]]:
        return []

    def verdict_changes(self, slo_id: str, since: datetime) -> list[dict[str, Any]]:
        return []

    def guard_status(self, slo_id: str) -> tuple[bool, frozenset[str]]:
        self.asked.append(slo_id)
        return self.paused, self.open_incidents


def view_of(scenario: str | None = None, **guard: Any) -> GateView:
    return GateView([] if scenario is None else [evaluation(scenario)], **guard)


class Metrics:
    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        return b"", "text/plain; version=0.0.4; charset=utf-8"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(view: GateView, token: str | None = None) -> Iterator[str]:
    """The daemon's own HttpServer on a loopback port, in its own event loop on a thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    port = free_port()
    server = HttpServer(create_app(view, Metrics(), token), "127.0.0.1", port)
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=15)
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()


# --- a faithful fake of Flagger's webhook client (integrations.md §2.2) -----------------------------

GO_HEADERS = {"User-Agent": "Go-http-client/1.1", "Accept-Encoding": "gzip"}


@dataclass(frozen=True)
class Reply:
    decision: str
    status: int
    body: Any


class FakeFlagger:
    """``CallWebhook``: POST the payload, Content-Type and Go's defaults only, 10 s; only <= 202 is a yes."""

    YES: ClassVar[dict[str, str]] = {"rollback": "rollback", "confirm-promotion": "promote"}
    NO: ClassVar[dict[str, str]] = {"rollback": "no rollback", "confirm-promotion": "wait"}

    def __init__(self, name: str = "checkout", namespace: str = "shop") -> None:
        self.name, self.namespace = name, namespace

    def call(
        self, hook_type: str, url: str, metadata: Mapping[str, str], phase: str = "Progressing"
    ) -> Reply:
        payload: dict[str, Any] = {
            "name": self.name,
            "namespace": self.namespace,
            "phase": phase,
            "checksum": "85d557f47b",
        }
        if metadata:  # omitempty
            payload["metadata"] = dict(metadata)
        with httpx.Client(timeout=10.0, follow_redirects=True) as http:
            request = http.build_request("POST", url, content=json.dumps(payload).encode())
            for extra in ("accept", "connection"):  # httpx's defaults that Go does not send
                del request.headers[extra]
            request.headers.update({"Content-Type": "application/json", **GO_HEADERS})
            response = http.send(request)
        # pkg/controller/webhook.go: `if r.StatusCode > 202 { return error }`
        yes = 200 <= response.status_code <= 202
        decision = (self.YES if yes else self.NO)[hook_type]
        return Reply(decision, response.status_code, response.json())


def flagger_hook(
    base: str, hook_type: str, canary: str | None = "v2", token: str | None = None, slo: str = SLO_ID
) -> Reply:
    metadata = {"slo": slo}
    if canary is not None:
        metadata["canary"] = canary
    if token is not None:
        metadata["token"] = token
    return FakeFlagger().call(hook_type, f"{base}/gates/flagger/{hook_type}", metadata)


# --- a faithful fake of Argo Rollouts' web metric provider (integrations.md §1.5) --------------------

_CONDITION = re.compile(r'^result((?:\.\w+)+)\s*(==|!=)\s*(true|false|null|nil|-?\d+(?:\.\d+)?|"[^"]*")$')


def expr_eval(condition: str, result: Any) -> bool:
    """The expr-lang comparisons AnalysisTemplates use: ``result.a.b == <literal>`` (``!=`` too)."""
    match = _CONDITION.match(condition.strip())
    assert match, f"the fake evaluates only `result.field == literal`, not {condition!r}"
    path, operator, literal = match.groups()
    value = result
    for key in path.strip(".").split("."):
        value = value.get(key) if isinstance(value, dict) else None
    keywords: dict[str, Any] = {"true": True, "false": False, "null": None, "nil": None}
    expected = keywords[literal] if literal in keywords else json.loads(literal)
    equal = value == expected and type(value) is type(expected)
    return equal if operator == "==" else not equal


def json_path(expression: str, document: Any) -> Any:
    """Kubernetes JSONPath, the dotted subset templates use: ``{$}``, ``{$.data}``, ``{.data.ok}``."""
    inner = expression.strip()
    assert inner.startswith("{") and inner.endswith("}"), expression
    value = document
    for key in [k for k in inner[1:-1].lstrip("$").split(".") if k]:
        if not isinstance(value, dict) or key not in value:
            raise LookupError(f"Could not find JSONPath in body: {expression}")
        value = value[key]
    return value


@dataclass
class FakeArgo:
    """One web metric of an AnalysisRun: measures, judges, and counts Errors in a row."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    json_path: str = "{$}"
    success_condition: str | None = None
    failure_condition: str | None = None
    timeout: float = 10.0  # timeoutSeconds' default
    consecutive_error_limit: int = 4  # utils/defaults/defaults.go
    consecutive_errors: int = 0
    phases: list[str] = field(default_factory=list)

    def measure(self) -> str:
        phase = self._measure()
        self.phases.append(phase)
        self.consecutive_errors = self.consecutive_errors + 1 if phase == "Error" else 0
        return phase

    @property
    def aborted(self) -> bool:
        return self.consecutive_errors > self.consecutive_error_limit

    def _measure(self) -> str:
        try:
            with httpx.Client(timeout=self.timeout) as http:
                request = http.build_request("GET", self.url)
                for extra in ("accept", "connection"):
                    del request.headers[extra]
                request.headers.update({**GO_HEADERS, **self.headers})
                response = http.send(request)
        except httpx.HTTPError:
            return "Error"
        if not 200 <= response.status_code <= 299:
            return "Error"  # "received non 2xx response code"
        try:
            body = response.json()
        except ValueError:
            result: Any = response.text
        else:
            try:
                result = json_path(self.json_path, body)
            except LookupError:
                return "Error"
        failing = self.failure_condition is not None and expr_eval(self.failure_condition, result)
        succeeding = self.success_condition is not None and expr_eval(self.success_condition, result)
        if self.success_condition is not None and self.failure_condition is None:
            return "Successful" if succeeding else "Failed"
        if self.failure_condition is not None and self.success_condition is None:
            return "Failed" if failing else "Successful"
        if failing:
            return "Failed"
        return "Successful" if succeeding or self.success_condition is None else "Inconclusive"


def argo_metric(base: str, canary: str | None = "v2", token: str | None = None) -> FakeArgo:
    query = "" if canary is None else f"?canary={canary}"
    return FakeArgo(
        url=f"{base}/gates/argo/checkout/availability{query}",
        headers={} if token is None else {"Authorization": f"Bearer {token}"},
        json_path="{$.data}",
        success_condition="result.ok == true",
    )


# --- Flagger, end to end ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "guard", "expected"),
    [
        pytest.param("burning", {}, "rollback", id="a burning canary is rolled back"),
        pytest.param("healthy", {}, "no rollback", id="a healthy canary is not"),
        pytest.param("inconclusive", {}, "no rollback", id="too little traffic to judge is not"),
        pytest.param("burning", {"paused": True}, "no rollback", id="a paused guard rolls nothing back"),
        pytest.param(
            "inconclusive",
            {"open_incidents": frozenset({"v2"})},
            "rollback",
            id="an open incident rolls back while the latest verdict is inconclusive",
        ),
        pytest.param(
            "burning",
            {"open_incidents": frozenset({"v3"})},
            "rollback",
            id="another version's incident does not hide this one burning",
        ),
        pytest.param(
            "healthy",
            {"open_incidents": frozenset({"v3"})},
            "no rollback",
            id="another version's incident is not this version's",
        ),
    ],
)
def test_flagger_rollback_hook(scenario: str, guard: dict[str, Any], expected: str) -> None:
    view = view_of(scenario, **guard)
    with serving(view) as base:
        reply = flagger_hook(base, "rollback")
    assert reply.decision == expected
    assert reply.status == (200 if expected == "rollback" else 403)
    assert reply.body["rollback"] is (expected == "rollback")
    assert reply.body["slo"] == SLO_ID and reply.body["canary"] == "v2"
    assert view.asked == [SLO_ID]


def test_flagger_rollback_reasons_name_the_evidence() -> None:
    with serving(view_of("burning")) as base:
        burning = flagger_hook(base, "rollback")
    with serving(view_of("inconclusive", open_incidents=frozenset({"v2"}))) as base:
        incident = flagger_hook(base, "rollback")
    with serving(view_of("burning", paused=True)) as base:
        paused = flagger_hook(base, "rollback")
    assert burning.body["verdict"] == "burning" and "version=v2 over" in burning.body["reason"]
    assert incident.body["verdict"] == "inconclusive"
    assert incident.body["reason"] == "an incident is open for version=v2 of checkout/availability"
    assert paused.body["reason"].startswith(
        "guard paused for checkout/availability; no rollback (unpaused it would:"
    )


def test_a_fault_never_rolls_back_by_itself() -> None:
    with serving(GateView([source_down()])) as base:
        error = flagger_hook(base, "rollback")
    with serving(GateView([], ready=False)) as base:
        not_yet = flagger_hook(base, "rollback")
    assert (error.decision, error.status, error.body["verdict"]) == ("no rollback", 403, "error")
    assert "a fault never causes a rollback by itself" in error.body["reason"]
    assert "connection refused" in error.body["reason"]
    assert (not_yet.decision, not_yet.status) == ("no rollback", 403)
    assert not_yet.body["reason"].startswith("no evaluation of checkout/availability yet")


def test_without_a_canary_in_the_metadata_any_version_counts() -> None:
    with serving(view_of("one burning, one healthy")) as base:
        any_version = flagger_hook(base, "rollback", canary=None)
        the_healthy_one = flagger_hook(base, "rollback", canary="v3")
    assert any_version.decision == "rollback" and "version=v2" in any_version.body["reason"]
    assert any_version.body["canary"] is None
    assert the_healthy_one.decision == "no rollback"


@pytest.mark.parametrize(
    ("scenario", "guard", "expected", "reason"),
    [
        pytest.param(
            "healthy enough",
            {},
            "promote",
            "enough requests to promote",
            id="healthy on enough requests promotes",
        ),
        pytest.param(
            "healthy",
            {},
            "wait",
            "1,500 of the 3,688 requests a promotion needs",
            id="healthy on too few requests waits",
        ),
        pytest.param(
            "inconclusive",
            {},
            "wait",
            "more requests at this error ratio would decide",
            id="inconclusive waits",
        ),
        pytest.param("burning", {}, "wait", "version=v2 over", id="burning never promotes"),
        pytest.param(
            "healthy enough",
            {"paused": True},
            "wait",
            "guard paused; promote by hand",
            id="paused waits for a human",
        ),
        pytest.param(
            "healthy enough",
            {"open_incidents": frozenset({"v2"})},
            "wait",
            "an incident is open for version=v2",
            id="an open incident blocks the promotion",
        ),
    ],
)
def test_flagger_confirm_promotion_hook(
    scenario: str, guard: dict[str, Any], expected: str, reason: str
) -> None:
    with serving(view_of(scenario, **guard)) as base:
        reply = flagger_hook(base, "confirm-promotion")
    assert reply.decision == expected
    assert reply.status == (200 if expected == "promote" else 403)
    assert reply.body["promote"] is (expected == "promote")
    assert reason in reply.body["reason"]


def test_a_waiting_promotion_says_how_much_evidence_is_missing() -> None:
    with serving(view_of("healthy")) as base:
        healthy = flagger_hook(base, "confirm-promotion")
    with serving(view_of("inconclusive")) as base:
        inconclusive = flagger_hook(base, "confirm-promotion")
    with serving(view_of("baseline only")) as base:
        no_traffic = flagger_hook(base, "confirm-promotion")
    with serving(GateView([source_down()])) as base:
        error = flagger_hook(base, "confirm-promotion")
    assert healthy.body["events"] == pytest.approx(1500.0) and healthy.body["events_needed"] is None
    assert inconclusive.body["events"] == pytest.approx(30.0)
    assert isinstance(inconclusive.body["events_needed"], int) and inconclusive.body["events_needed"] > 0
    assert no_traffic.body["events"] == 0.0
    assert no_traffic.body["reason"] == "no traffic from version=v2 in the canary windows yet"
    assert error.decision == "wait" and "no promotion without a verdict" in error.body["reason"]


def test_promotion_without_a_canary_in_the_metadata_needs_every_version_ready() -> None:
    with serving(view_of("healthy enough")) as base:
        ready = flagger_hook(base, "confirm-promotion", canary=None)
    with serving(view_of("one burning, one healthy")) as base:
        mixed = flagger_hook(base, "confirm-promotion", canary=None)
    with serving(view_of("baseline only")) as base:
        none_yet = flagger_hook(base, "confirm-promotion", canary=None)
    assert ready.decision == "promote"
    assert mixed.decision == "wait" and "version=v2" in mixed.body["reason"]
    assert none_yet.decision == "wait"
    assert (
        none_yet.body["reason"]
        == "no canary version of checkout/availability has traffic in the canary windows yet"
    )


@pytest.mark.parametrize(
    "token",
    [pytest.param(None, id="no token"), pytest.param("wrong", id="a wrong token")],
)
def test_flagger_hooks_need_the_token_when_one_is_configured(token: str | None) -> None:
    with serving(view_of("burning"), token=TOKEN) as base:
        refused = flagger_hook(base, "rollback", token=token)
        promotion = flagger_hook(base, "confirm-promotion", token=token)
        accepted = flagger_hook(base, "rollback", token=TOKEN)
    assert (refused.decision, refused.status) == ("no rollback", 401)
    assert (promotion.decision, promotion.status) == ("wait", 401)
    assert "metadata.token" in refused.body["error"]
    assert TOKEN not in json.dumps(refused.body) and (token is None or token not in json.dumps(refused.body))
    assert accepted.decision == "rollback"
    assert TOKEN not in json.dumps(accepted.body)


def test_flagger_hooks_also_accept_the_bearer_header() -> None:
    payload = {"name": "checkout", "namespace": "shop", "phase": "Progressing", "checksum": "x"}
    payload["metadata"] = {"slo": SLO_ID, "canary": "v2"}  # type: ignore[assignment]
    with serving(view_of("burning"), token=TOKEN) as base, httpx.Client(timeout=10) as http:
        url = f"{base}/gates/flagger/rollback"
        with_header = http.post(url, json=payload, headers={"Authorization": f"Bearer {TOKEN}"})
        without = http.post(url, json=payload)
    assert (with_header.status_code, without.status_code) == (200, 401)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        pytest.param(b"{not json", 400, "not JSON", id="bad JSON is a 400"),
        pytest.param(b"[]", 400, "JSON object", id="a JSON array is a 400"),
        pytest.param(b'{"name": "checkout"}', 400, "slo: <service>/<slo>", id="no metadata is a 400"),
        pytest.param(
            b'{"metadata": {"canary": "v2"}}', 400, "slo: <service>/<slo>", id="no metadata.slo is a 400"
        ),
        pytest.param(
            b'{"metadata": {"slo": "checkout"}}',
            400,
            "slo: <service>/<slo>",
            id="an slo without service is a 400",
        ),
        pytest.param(
            b'{"metadata": {"slo": "checkout/x", "n": 1}}',
            400,
            "strings to strings",
            id="a non-string value is a 400",
        ),
        pytest.param(
            b'{"metadata": {"slo": "checkout/nope"}}', 404, "checkout/nope", id="an unknown SLO is a 404"
        ),
    ],
)
def test_malformed_flagger_requests_are_never_a_yes(body: bytes, status: int, message: str) -> None:
    with serving(view_of("burning")) as base, httpx.Client(timeout=10) as http:
        for hook in ("rollback", "confirm-promotion"):
            response = http.post(
                f"{base}/gates/flagger/{hook}", content=body, headers={"Content-Type": "application/json"}
            )
            assert response.status_code == status, hook
            assert message in response.json()["error"]


def test_an_slo_without_a_canary_block_is_refused_as_a_configuration_error() -> None:
    plain = asyncio.run(Engine(OneAnswer(QueryResult((Sample({}, 1.0),)))).evaluate(slo_from(), AT))
    with serving(GateView([plain])) as base:
        rollback = flagger_hook(base, "rollback")
        promotion = flagger_hook(base, "confirm-promotion")
        argo = argo_metric(base)
        phase = argo.measure()
        with httpx.Client(timeout=10) as http:
            body = http.get(argo.url).json()
    assert (rollback.status, rollback.decision) == (400, "no rollback")
    assert (promotion.status, promotion.decision) == (400, "wait")
    assert phase == "Error" and "declares no canary: block" in body["error"]


# --- Argo Rollouts, end to end -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "guard", "phase"),
    [
        pytest.param("burning", {}, "Failed", id="a burning canary fails the measurement"),
        pytest.param("healthy", {}, "Successful", id="a healthy canary passes"),
        pytest.param(
            "inconclusive", {}, "Successful", id="too little traffic passes: missing evidence is no failure"
        ),
        pytest.param("baseline only", {}, "Successful", id="a canary without traffic yet passes"),
        pytest.param("burning", {"paused": True}, "Successful", id="a paused guard fails nothing"),
        pytest.param(
            "inconclusive", {"open_incidents": frozenset({"v2"})}, "Failed", id="an open incident fails it"
        ),
    ],
)
def test_argo_web_metric(scenario: str, guard: dict[str, Any], phase: str) -> None:
    with serving(view_of(scenario, **guard)) as base:
        assert argo_metric(base).measure() == phase


def test_argo_gets_the_documented_data() -> None:
    with serving(view_of("burning")) as base, httpx.Client(timeout=10) as http:
        data = http.get(f"{base}/gates/argo/checkout/availability?canary=v2").json()["data"]
        absent = http.get(f"{base}/gates/argo/checkout/availability?canary=v9").json()["data"]
        every = http.get(f"{base}/gates/argo/checkout/availability").json()["data"]
    [v2] = evaluation("burning").canaries
    assert data == {
        "ok": False,
        "promote": False,
        "verdict": "burning",
        "slo": SLO_ID,
        "canary": "v2",
        "window": "5m",
        "baseline": "v1",
        "baselineErrorRatio": 0.0,
        "burnRate": pytest.approx(200.0),
        "burnRateLower": pytest.approx(v2.judgement.burn_lower),
        "burnRateUpper": pytest.approx(v2.judgement.burn_upper),
        "burnLimit": pytest.approx(14.4),
        "errorRatio": pytest.approx(0.2),
        "events": pytest.approx(1500.0),
        "eventsNeeded": None,
        "budgetRemaining": pytest.approx(evaluation("burning").budget_remaining),
        "reason": v2.reason,
        "at": "2026-11-26T12:00:00Z",
    }
    assert absent["ok"] is True and absent["verdict"] == "inconclusive" and absent["canary"] == "v9"
    assert absent["reason"] == "no traffic from version=v9 in the canary windows yet"
    assert absent["burnRate"] is None and absent["events"] == 0.0
    assert every["ok"] is False and every["verdict"] == "burning" and every["canary"] is None


def test_argo_errors_only_when_no_verdict_can_be_computed_and_aborts_after_the_limit() -> None:
    view = GateView([source_down()])
    with serving(view) as base, httpx.Client(timeout=10) as http:
        metric = argo_metric(base)
        response = http.get(metric.url)
        first = [metric.measure() for _ in range(4)]
        tolerated = not metric.aborted  # 4 Errors in a row are tolerated
        view.evaluations = [evaluation("healthy")]
        recovered = metric.measure()  # a verdict again: the count starts over
        view.evaluations = [source_down()]
        second = [metric.measure() for _ in range(5)]
    assert response.status_code == 503
    assert response.json()["error"].startswith("the latest evaluation of checkout/availability failed")
    assert first == ["Error"] * 4 and tolerated
    assert recovered == "Successful"
    assert second == ["Error"] * 5 and metric.aborted  # the 5th in a row aborts the rollout: fail closed


def test_argo_errors_before_the_first_evaluation_and_404s_an_unknown_slo() -> None:
    view = GateView([], ready=False)
    with serving(view) as base, httpx.Client(timeout=10) as http:
        before = http.get(f"{base}/gates/argo/checkout/availability")
        phase = argo_metric(base).measure()
        view.ready = True
        unknown = http.get(f"{base}/gates/argo/checkout/availability")
    assert (
        before.status_code == 503 and "no evaluation of checkout/availability yet" in before.json()["error"]
    )
    assert phase == "Error"
    assert unknown.status_code == 404 and "checkout/availability" in unknown.json()["error"]
    assert view.asked == []  # the guard is asked only about an SLO the daemon has evaluated


def test_argo_needs_the_bearer_token_when_one_is_configured() -> None:
    with serving(view_of("healthy"), token=TOKEN) as base, httpx.Client(timeout=10) as http:
        without = argo_metric(base).measure()
        wrong = argo_metric(base, token="wrong").measure()
        right = argo_metric(base, token=TOKEN).measure()
        refused = http.get(
            f"{base}/gates/argo/checkout/availability", headers={"Authorization": "Bearer nope"}
        )
    assert (without, wrong, right) == ("Error", "Error", "Successful")
    assert refused.status_code == 401 and "nope" not in refused.text and TOKEN not in refused.text


# --- the pure decisions, edge by edge -----------------------------------------------------------------


def decide(
    gate: gates.Gate, ev: Evaluation | None, canary: str | None = "v2", **guard: Any
) -> gates.GateAnswer:
    answer = gate(SLO_ID, ev, GuardStatus(**guard), canary)
    json.dumps(answer.body, allow_nan=False)  # what Starlette does: NaN or infinity would raise here
    return answer


@pytest.mark.parametrize(
    ("ev", "canary", "guard", "status", "reason"),
    [
        pytest.param("burning", "v2", {}, 200, "version=v2 over", id="burning rolls back"),
        pytest.param(
            "burning", "v9", {}, 403, "no traffic from version=v9", id="a version without traffic stays"
        ),
        pytest.param(
            "error",
            "v2",
            {"open_incidents": frozenset({"v2"})},
            200,
            "an incident is open",
            id="an incident opened before an outage still rolls back",
        ),
        pytest.param(
            "error", None, {}, 403, "a fault never causes a rollback", id="an outage alone rolls nothing back"
        ),
        pytest.param(
            None,
            "v2",
            {"open_incidents": frozenset({"v2"})},
            403,
            "no evaluation",
            id="nothing evaluated yet rolls nothing back",
        ),
        pytest.param(
            "baseline only", None, {}, 403, "no canary version", id="no canary traffic at all stays"
        ),
        pytest.param(
            "baseline only",
            "v2",
            {"open_incidents": frozenset({"v2"})},
            200,
            "incident",
            id="an incident counts without traffic",
        ),
        pytest.param(
            "healthy",
            None,
            {"open_incidents": frozenset({"v3"})},
            200,
            "version=v3",
            id="without a canary any version's incident counts",
        ),
        pytest.param(
            "burning",
            "v2",
            {"paused": True, "open_incidents": frozenset({"v2"})},
            403,
            "paused",
            id="paused beats burning and incidents",
        ),
    ],
)
def test_rollback_decisions(
    ev: str | None, canary: str | None, guard: dict[str, Any], status: int, reason: str
) -> None:
    evaluated = None if ev is None else source_down() if ev == "error" else evaluation(ev)
    answer = decide(gates.flagger_rollback, evaluated, canary, **guard)
    assert answer.status == status
    assert answer.body["rollback"] is (status == 200)
    assert reason in answer.body["reason"]


PARTIAL = "the source marked the response as partial (isPartial)"


def partial(scenario: str) -> Evaluation:
    """The same evaluation, as read from an answer the source flagged as partial."""
    return replace(evaluation(scenario), warnings=(PARTIAL,))


@pytest.mark.parametrize(
    ("gate", "scenario", "guard", "status", "reason"),
    [
        pytest.param(
            gates.flagger_rollback,
            "burning",
            {},
            403,
            "never rolled back on partial data",
            id="Flagger is not asked to roll back a canary burning on partial data",
        ),
        pytest.param(
            gates.flagger_rollback,
            "burning",
            {"open_incidents": frozenset({"v2"})},
            200,
            "an incident is open for version=v2",
            id="an incident opened on whole data still rolls back during partial data",
        ),
        pytest.param(
            gates.flagger_promotion,
            "healthy enough",
            {},
            403,
            "no promotion without whole data",
            id="partial data never promotes",
        ),
    ],
)
def test_the_pull_gates_act_on_partial_data_as_the_push_path_does(
    gate: gates.Gate,
    scenario: str,
    guard: dict[str, Any],
    status: int,
    reason: str,
) -> None:
    answer = decide(gate, partial(scenario), "v2", **guard)
    assert answer.status == status
    assert answer.body["rollback" if gate is gates.flagger_rollback else "promote"] is (status == 200)
    assert reason in answer.body["reason"]


def test_argo_is_not_told_to_abort_on_partial_data() -> None:
    answer = decide(gates.argo_metric, partial("burning"), "v2")
    assert answer.status == 200
    data = answer.body["data"]
    assert data["ok"] is True and data["promote"] is False
    assert data["verdict"] == "burning"  # what was read is still shown
    assert "nothing is halted on it" in data["reason"]
    whole = decide(gates.argo_metric, evaluation("burning"), "v2").body["data"]
    assert whole["ok"] is False


@pytest.mark.parametrize(
    ("ev", "canary", "guard", "status", "reason"),
    [
        pytest.param(
            "healthy enough", "v2", {}, 200, "enough requests to promote", id="healthy enough promotes"
        ),
        pytest.param(
            "healthy enough",
            None,
            {},
            200,
            "enough requests to promote",
            id="every version healthy enough promotes",
        ),
        pytest.param(
            "healthy enough",
            None,
            {"open_incidents": frozenset({"v9"})},
            403,
            "version=v9",
            id="any open incident blocks promoting every version",
        ),
        pytest.param(
            "healthy enough",
            "v2",
            {"paused": True},
            403,
            "guard paused; promote by hand",
            id="paused never promotes",
        ),
        pytest.param("error", "v2", {}, 403, "no promotion without a verdict", id="an outage never promotes"),
        pytest.param(None, "v2", {}, 403, "nothing to promote on", id="nothing evaluated yet never promotes"),
    ],
)
def test_promotion_decisions(
    ev: str | None, canary: str | None, guard: dict[str, Any], status: int, reason: str
) -> None:
    evaluated = None if ev is None else source_down() if ev == "error" else evaluation(ev)
    answer = decide(gates.flagger_promotion, evaluated, canary, **guard)
    assert answer.status == status
    assert answer.body["promote"] is (status == 200)
    assert reason in answer.body["reason"]


def test_the_argo_verdict_without_a_canary_is_the_worst_version_or_the_service() -> None:
    mixed = decide(gates.argo_metric, evaluation("one burning, one healthy"), None).body["data"]
    quiet = decide(gates.argo_metric, evaluation("baseline only"), None).body["data"]
    assert (mixed["ok"], mixed["verdict"], mixed["window"]) == (False, "burning", "5m")
    assert "version=v2" in mixed["reason"]
    assert (quiet["ok"], quiet["verdict"], quiet["promote"]) == (True, "healthy", False)
    assert (
        quiet["reason"] == "no canary version of checkout/availability has traffic in the canary windows yet"
    )


def test_argo_promote_is_exactly_the_promotion_gate() -> None:
    for scenario in TRAFFIC:
        for guard in ({}, {"paused": True}, {"open_incidents": frozenset({"v2"})}):
            argo = decide(gates.argo_metric, evaluation(scenario), "v2", **guard).body["data"]
            flagger = decide(gates.flagger_promotion, evaluation(scenario), "v2", **guard)
            assert argo["promote"] is (flagger.status == 200), (scenario, guard)
    assert decide(gates.argo_metric, evaluation("healthy enough")).body["data"]["promote"] is True


def test_a_paused_guard_passes_argo_and_says_why() -> None:
    data = decide(gates.argo_metric, evaluation("burning"), paused=True).body["data"]
    assert data["ok"] is True and data["verdict"] == "burning" and data["promote"] is False
    assert data["reason"].startswith("guard paused for checkout/availability: this gate passes; version=v2")


def test_numbers_that_are_not_finite_are_null_in_json() -> None:
    ev = replace(evaluation("healthy"), budget_remaining=math.nan)
    [v2] = ev.canaries
    odd = replace(v2, judgement=replace(v2.judgement, burn_rate=math.inf, error_ratio=math.nan))
    data = decide(gates.argo_metric, replace(ev, canaries=(odd,))).body["data"]
    assert (data["budgetRemaining"], data["burnRate"], data["errorRatio"]) == (None, None, None)


def test_argo_503_only_without_a_verdict() -> None:
    assert decide(gates.argo_metric, None).status == 503
    assert decide(gates.argo_metric, source_down()).status == 503
    for scenario in TRAFFIC:
        assert decide(gates.argo_metric, evaluation(scenario)).status == 200, scenario


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b"\xff", "not JSON", id="not even UTF-8"),
        pytest.param(b"[" * 100_000, "not JSON", id="nested too deep"),
        pytest.param(b'"text"', "JSON object", id="a JSON string"),
        pytest.param(
            b'{"name": 3, "metadata": {"slo": "a/b"}}',
            "'name' must be a string",
            id="a name that is no string",
        ),
        pytest.param(b'{"metadata": ["slo"]}', "strings to strings", id="metadata that is no object"),
        pytest.param(b'{"metadata": {"slo": "/b"}}', "slo: <service>/<slo>", id="an slo without a service"),
    ],
)
def test_flagger_payloads_that_are_refused(body: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        gates.parse_flagger_hook(body)


def test_a_flagger_payload_is_read_and_its_token_kept_out_of_sight() -> None:
    raw = json.dumps(
        {
            "name": "checkout",
            "namespace": "shop",
            "phase": "Progressing",
            "checksum": "85d557f47b",
            "metadata": {"slo": SLO_ID, "canary": "", "token": TOKEN},
        }
    ).encode()
    hook = gates.parse_flagger_hook(raw)
    assert (hook.name, hook.namespace, hook.phase, hook.checksum) == (
        "checkout",
        "shop",
        "Progressing",
        "85d557f47b",
    )
    assert (hook.slo_id, hook.canary, hook.token) == (SLO_ID, None, TOKEN)  # an empty canary is no canary
    assert TOKEN not in repr(hook)
    with pytest.raises(ValueError) as refused:
        gates.parse_flagger_hook(json.dumps({"metadata": {"slo": "x", "token": TOKEN}}).encode())
    assert TOKEN not in str(refused.value)


# --- the deploy examples talk to the routes the app serves -------------------------------------------


def _served(url: str, base: str) -> str:
    """The example's URL, pointed at the test server; its path and query are kept as written."""
    parts = urlsplit(url)
    assert (parts.hostname, parts.port) == ("budgetguard.monitoring", 8731), url
    return urlunsplit((*urlsplit(base)[:2], parts.path, parts.query, ""))


def test_the_flagger_example_hooks_decide_as_documented() -> None:
    canary = yaml.safe_load(FLAGGER_CANARY.read_text())
    assert (canary["apiVersion"], canary["kind"]) == ("flagger.app/v1beta1", "Canary")
    every = {h["type"]: h for h in canary["spec"]["analysis"]["webhooks"]}
    assert set(every) == {"confirm-rollout", "rollback", "confirm-promotion"}  # the first: test_freeze.py
    hooks = {kind: every[kind] for kind in ("rollback", "confirm-promotion")}
    slo_id = hooks["rollback"]["metadata"]["slo"]
    value = hooks["rollback"]["metadata"]["canary"]
    token = hooks["rollback"]["metadata"]["token"]
    assert slo_id == SLO_ID and all(h["timeout"] == "10s" for h in hooks.values())

    def rename(ev: Evaluation) -> Evaluation:  # the example's canary is the Deployment "checkout"
        return replace(ev, canaries=tuple(replace(c, value=value) for c in ev.canaries))

    flagger = FakeFlagger(canary["metadata"]["name"], canary["metadata"]["namespace"])
    outcomes = {}
    for scenario in ("burning", "healthy", "healthy enough"):
        with serving(GateView([rename(evaluation(scenario))]), token=token) as base:
            for kind, hook in hooks.items():
                outcomes[scenario, kind] = flagger.call(
                    kind, _served(hook["url"], base), hook["metadata"]
                ).decision
    assert outcomes == {
        ("burning", "rollback"): "rollback",
        ("burning", "confirm-promotion"): "wait",
        ("healthy", "rollback"): "no rollback",
        ("healthy", "confirm-promotion"): "wait",
        ("healthy enough", "rollback"): "no rollback",
        ("healthy enough", "confirm-promotion"): "promote",
    }


def test_the_argo_example_template_measures_as_documented() -> None:
    template = yaml.safe_load(ARGO_TEMPLATE.read_text())
    assert (template["apiVersion"], template["kind"]) == ("argoproj.io/v1alpha1", "AnalysisTemplate")
    [metric] = template["spec"]["metrics"]
    web = metric["provider"]["web"]
    assert metric["failureLimit"] == 0 and metric["consecutiveErrorLimit"] == 4
    assert web.get("method", "GET") == "GET" and web["timeoutSeconds"] == 10
    secret_arg = next(a for a in template["spec"]["args"] if "valueFrom" in a)
    assert set(secret_arg["valueFrom"]) == {"secretKeyRef"}
    args = {"service": "checkout", "slo": "availability", "canary-hash": "v2", secret_arg["name"]: TOKEN}

    def render(text: str) -> str:  # Argo's {{args.name}} substitution
        return re.sub(r"\{\{\s*args\.([\w-]+)\s*\}\}", lambda m: args[m.group(1)], text)

    phases = {}
    for scenario in ("burning", "healthy", "inconclusive"):
        with serving(GateView([evaluation(scenario)]), token=TOKEN) as base:
            fake = FakeArgo(
                url=_served(render(web["url"]), base),
                headers={h["key"]: render(h["value"]) for h in web["headers"]},
                json_path=web["jsonPath"],
                success_condition=metric.get("successCondition"),
                failure_condition=metric.get("failureCondition"),
                timeout=float(web["timeoutSeconds"]),
                consecutive_error_limit=metric["consecutiveErrorLimit"],
            )
            phases[scenario] = fake.measure()
    assert phases == {"burning": "Failed", "healthy": "Successful", "inconclusive": "Successful"}
