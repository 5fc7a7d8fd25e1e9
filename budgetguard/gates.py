"""Pull gates: what Flagger's webhooks and an Argo Rollouts web metric are told about a canary.

When the deploy tool asks budgetguard instead of being told, the deploy tool owns the rollback and
budgetguard needs no write credentials (reference ``integrations.md`` §9.1). Each caller reads HTTP
statuses its own way, so each answer is shaped to its caller:

* Flagger's ``rollback`` hook is inverted: 200-202 means "roll back now" (``runRollbackHooks``), so a
  canary that must stay gets 403, as Flagger's loadtester answers (``pkg/loadtester/server.go``), and
  no fault may ever answer 2xx (§2.1, issue fluxcd/flagger#1447).
* Flagger's ``confirm-promotion``: 200 promotes, 403 keeps the canary in ``WaitingPromotion``.
* An Argo Rollouts web metric: a non-2xx status is an *Error*, tolerated ``consecutiveErrorLimit`` (4)
  times, not a *Failed* measurement (§1.5). So once a verdict exists the answer is 200 and ``ok`` carries
  it; 503 only when no verdict can be computed.

One rule decides all three. A canary is halted when it is BURNING or has an open incident, and promoted
only when it is HEALTHY on enough requests (``healthy_enough``) with nothing open. A paused guard halts
nothing and promotes nothing. A failed evaluation (ERROR) never halts by itself: a Prometheus outage must
not roll back every canary in the cluster; an incident opened before the outage still does.

Pure: no I/O, no clock, no logging. Flagger's payload is parsed here too, so it is tested without HTTP.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from budgetguard.canary import CanaryEvaluation
from budgetguard.durations import format_duration
from budgetguard.policy import Evaluation, Verdict
from budgetguard.records import format_time

OK = 200
BAD_REQUEST = 400
NOT_NOW = 403  # Flagger's loadtester answers "no" with 403; any status above 202 is a no to Flagger
NO_VERDICT = 503

_FLAGGER_FIELDS = ("name", "namespace", "phase", "checksum")


@dataclass(frozen=True)
class GuardStatus:
    """What the daemon knows about an SLO beyond its latest evaluation."""

    paused: bool = False
    open_incidents: frozenset[str] = frozenset()  # canary label values with an open incident


@dataclass(frozen=True)
class GateAnswer:
    status: int
    body: dict[str, Any]


Gate = Callable[[str, Evaluation | None, GuardStatus, str | None], GateAnswer]


@dataclass(frozen=True)
class FlaggerHook:
    """Flagger's webhook payload (``CanaryWebhookPayload`` in ``pkg/controller/webhook.go``).

    Flagger can send no headers, so the SLO, the canary version and the API token ride in the hook's
    ``metadata``, copied verbatim from the Canary's ``analysis.webhooks[].metadata``.
    """

    name: str
    namespace: str
    phase: str
    checksum: str
    slo_id: str
    canary: str | None
    token: str | None = field(default=None, repr=False)


def parse_flagger_hook(raw: bytes) -> FlaggerHook:
    """Read Flagger's JSON payload; ValueError says what is wrong without echoing any value."""
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ValueError(
            f"the body is not JSON ({exc.__class__.__name__}); expected Flagger's payload"
        ) from exc
    if not isinstance(payload, dict):
        raise ValueError(
            "the body must be a JSON object: Flagger's {name, namespace, phase, checksum, metadata}"
        )
    for name in _FLAGGER_FIELDS:
        if not isinstance(payload.get(name) or "", str):
            raise ValueError(f"'{name}' must be a string")
    metadata = payload.get("metadata") or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError("'metadata' must map strings to strings, as the Canary's webhook metadata does")
    slo_id = metadata.get("slo", "")
    service, _, name = slo_id.partition("/")
    if not (service and name):
        raise ValueError("the webhook's metadata needs slo: <service>/<slo>, e.g. slo: checkout/availability")
    return FlaggerHook(
        name=payload.get("name") or "",
        namespace=payload.get("namespace") or "",
        phase=payload.get("phase") or "",
        checksum=payload.get("checksum") or "",
        slo_id=slo_id,
        canary=metadata.get("canary") or None,
        token=metadata.get("token"),
    )


# --- the one rule ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Focus:
    """The canaries one question is about: the version asked for, or every version of the SLO."""

    label: str
    asked: str | None
    judged: tuple[CanaryEvaluation, ...]  # the asked version (none without traffic), or every version
    open: tuple[str, ...]  # values with an open incident among those asked about

    @property
    def absent(self) -> bool:
        """A version was asked for and has no traffic in the canary windows."""
        return self.asked is not None and not self.judged

    @property
    def decider(self) -> CanaryEvaluation | None:
        """The canary that decides: the worst verdict; among equals the open, least proven, surest burning."""
        rank = {Verdict.BURNING: 0, Verdict.INCONCLUSIVE: 1}
        return min(
            self.judged,
            key=lambda c: (
                rank.get(c.verdict, 2),
                c.value not in self.open,
                c.healthy_enough,
                -c.judgement.burn_lower,
                c.value,
            ),
            default=None,
        )

    def named(self, value: str) -> str:
        return f"{self.label}={value}"


def _focus(ev: Evaluation, guard: GuardStatus, canary: str | None) -> _Focus:
    assert ev.slo.canary is not None
    label = ev.slo.canary.label
    if canary is None:
        return _Focus(label, None, ev.canaries, tuple(sorted(guard.open_incidents)))
    judged = tuple(c for c in ev.canaries if c.value == canary)
    return _Focus(label, canary, judged, (canary,) if canary in guard.open_incidents else ())


def _no_canary_block(ev: Evaluation) -> GateAnswer | None:
    """A gate on an SLO without ``canary:`` could never fail: refuse it, loudly, as a configuration error."""
    if ev.slo.canary is not None:
        return None
    return GateAnswer(
        BAD_REQUEST,
        {
            "error": f"{ev.slo.id} declares no canary: block, so no version is judged on its own; "
            "add one with the label that tells versions apart (e.g. canary: {label: version})"
        },
    )


def _halt_reason(ev: Evaluation, focus: _Focus) -> str | None:
    """Why the canary must stop (whether or not the guard is paused), or None."""
    decider = focus.decider
    if decider is not None and decider.verdict is Verdict.BURNING:
        return decider.reason
    if focus.open:
        versions = ", ".join(focus.named(v) for v in focus.open)
        return f"an incident is open for {versions} of {ev.slo.id}"
    return None


def _no_traffic(focus: _Focus) -> str:
    assert focus.asked is not None
    return f"no traffic from {focus.named(focus.asked)} in the canary windows yet"


def _summary(ev: Evaluation, focus: _Focus) -> str:
    """What is known about the canaries when nothing halts them."""
    decider = focus.decider
    if decider is not None:
        return decider.reason
    if focus.absent:
        return _no_traffic(focus)
    return f"no canary version of {ev.slo.id} has traffic in the canary windows yet"


def _promote_block(ev: Evaluation, focus: _Focus, guard: GuardStatus) -> str | None:
    """Why the canary may not be promoted, or None when it may."""
    if guard.paused:
        return "guard paused; promote by hand"
    if focus.open:
        return _halt_reason(ev, focus)
    not_yet = [c for c in focus.judged if not c.healthy_enough]
    if not_yet or not focus.judged:
        return _summary(ev, focus)
    return None


def _verdict(ev: Evaluation, focus: _Focus) -> str:
    decider = focus.decider
    if decider is not None:
        return str(decider.verdict)
    return str(Verdict.INCONCLUSIVE if focus.absent else ev.verdict)


def _finite(value: float | None) -> float | None:
    """JSON has no NaN or infinity, and "unknown" is null."""
    return None if value is None or not math.isfinite(value) else float(value)


def _events(focus: _Focus) -> tuple[float | None, int | None]:
    """The deciding canary's requests so far and, while inconclusive, how many more would decide."""
    decider = focus.decider
    if decider is not None:
        return _finite(decider.judgement.events), decider.judgement.events_needed
    return (0.0 if focus.absent else None), None


# --- the three gates -------------------------------------------------------------------------------


def flagger_rollback(
    slo_id: str, ev: Evaluation | None, guard: GuardStatus, canary: str | None
) -> GateAnswer:
    """Flagger's ``rollback`` hook: 200 asks Flagger to roll back now, 403 lets the canary go on."""

    def answer(rollback: bool, reason: str, verdict: str | None) -> GateAnswer:
        body = {"rollback": rollback, "reason": reason, "slo": slo_id, "canary": canary, "verdict": verdict}
        return GateAnswer(OK if rollback else NOT_NOW, body)

    if ev is None:
        return answer(
            False, f"no evaluation of {slo_id} yet; a fault never causes a rollback by itself", None
        )
    refused = _no_canary_block(ev)
    if refused is not None:
        return refused
    focus = _focus(ev, guard, canary)
    halt = _halt_reason(ev, focus)
    if guard.paused:
        would = f" (unpaused it would: {halt})" if halt else ""
        return answer(False, f"guard paused for {slo_id}; no rollback{would}", _verdict(ev, focus))
    if halt is not None:
        return answer(True, halt, _verdict(ev, focus))
    if ev.verdict is Verdict.ERROR:
        return answer(
            False,
            f"the latest evaluation failed ({ev.reason}); a fault never causes a rollback by itself",
            str(ev.verdict),
        )
    return answer(False, _summary(ev, focus), _verdict(ev, focus))


def flagger_promotion(
    slo_id: str, ev: Evaluation | None, guard: GuardStatus, canary: str | None
) -> GateAnswer:
    """Flagger's ``confirm-promotion`` hook: 200 promotes, 403 waits (saying how much evidence is missing)."""

    def answer(promote: bool, reason: str, verdict: str | None, focus: _Focus | None = None) -> GateAnswer:
        events, needed = (None, None) if focus is None else _events(focus)
        body = {
            "promote": promote,
            "reason": reason,
            "slo": slo_id,
            "canary": canary,
            "verdict": verdict,
            "events": events,
            "events_needed": needed,
        }
        return GateAnswer(OK if promote else NOT_NOW, body)

    if ev is None:
        return answer(False, f"no evaluation of {slo_id} yet; nothing to promote on", None)
    refused = _no_canary_block(ev)
    if refused is not None:
        return refused
    if ev.verdict is Verdict.ERROR:
        reason = f"the latest evaluation failed ({ev.reason}); no promotion without a verdict"
        return answer(False, reason, str(ev.verdict))
    focus = _focus(ev, guard, canary)
    block = _promote_block(ev, focus, guard)
    return answer(block is None, block or _summary(ev, focus), _verdict(ev, focus), focus)


def argo_metric(slo_id: str, ev: Evaluation | None, guard: GuardStatus, canary: str | None) -> GateAnswer:
    """An Argo Rollouts web metric: 200 with ``{"data": {...}}`` whenever a verdict exists, else 503."""
    if ev is None:
        return GateAnswer(NO_VERDICT, {"error": f"no evaluation of {slo_id} yet: no verdict to give"})
    refused = _no_canary_block(ev)
    if refused is not None:
        return refused
    if ev.verdict is Verdict.ERROR:
        return GateAnswer(
            NO_VERDICT,
            {"error": f"the latest evaluation of {slo_id} failed: {ev.reason}", "at": format_time(ev.at)},
        )
    assert ev.slo.canary is not None
    focus = _focus(ev, guard, canary)
    halt = _halt_reason(ev, focus)
    if guard.paused:
        reason = f"guard paused for {slo_id}: this gate passes; {halt or _summary(ev, focus)}"
    else:
        reason = halt or _summary(ev, focus)
    decider = focus.decider
    judgement = None if decider is None else decider.judgement
    events, needed = _events(focus)
    data = {
        "ok": guard.paused or halt is None,
        "promote": _promote_block(ev, focus, guard) is None,
        "verdict": _verdict(ev, focus),
        "slo": slo_id,
        "canary": canary,
        "window": None if decider is None else format_duration(decider.window),
        "baseline": None if decider is None else decider.baseline,
        "baselineErrorRatio": None if judgement is None else _finite(judgement.baseline_error_ratio),
        "burnRate": None if judgement is None else _finite(judgement.burn_rate),
        "burnRateLower": None if judgement is None else _finite(judgement.burn_lower),
        "burnRateUpper": None if judgement is None else _finite(judgement.burn_upper),
        "burnLimit": _finite(ev.slo.canary.burn_limit),
        "errorRatio": None if judgement is None else _finite(judgement.error_ratio),
        "events": events,
        "eventsNeeded": needed,
        "budgetRemaining": _finite(ev.budget_remaining),
        "reason": reason,
        "at": format_time(ev.at),
    }
    return GateAnswer(OK, {"data": data})
