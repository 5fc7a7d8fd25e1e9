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
not roll back every canary in the cluster; an incident opened before the outage still does. Partial data
(the source flagged its answer) halts and promotes nothing either, as on the push path (``guard.decide``).

A shadow (``canary: {kind: shadow}``, a dark launch) serves no user: the rollback hook never asks Flagger
to roll one back (403 always), while the promotion gates refuse it by the same rule as a canary.

The release gates (Flagger's ``confirm-rollout``, a web metric for Argo Rollouts' pre-promotion analysis,
``budgetguard gate`` in CI) ask about a whole service: may a new release start? No while any of its SLOs
with a ``freeze:`` policy has spent its budget (``budgetguard.core.freeze``) and does not exempt the caller's
labels, or while the version asked about is a shadow that burns or has an open incident. No verdict
(an SLO with a policy failed to evaluate, and nothing else freezes) is its own answer, 503.

Pure: no I/O, no clock, no logging. Flagger's payload is parsed here too, so it is tested without HTTP.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from budgetguard.core.canary import CanaryEvaluation
from budgetguard.core.durations import format_duration
from budgetguard.core.freeze import FreezeState, Recovery, SloFreeze, judge
from budgetguard.core.policy import Evaluation
from budgetguard.core.records import format_time
from budgetguard.core.verdict import Verdict

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


def _flagger_payload(raw: bytes) -> tuple[dict[str, Any], dict[str, str]]:
    """Flagger's payload and its metadata, checked; ValueError says what is wrong without echoing values."""
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
    return payload, metadata


def parse_flagger_hook(raw: bytes) -> FlaggerHook:
    """Read Flagger's JSON payload; ValueError says what is wrong without echoing any value."""
    payload, metadata = _flagger_payload(raw)
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


def _partial(ev: Evaluation) -> str | None:
    """Why the evaluation's data is partial (the source's own warning), or None when it is whole."""
    return ev.warnings[0] if ev.warnings else None


def _halt_reason(ev: Evaluation, focus: _Focus) -> str | None:
    """Why the canary must stop (whether or not the guard is paused), or None.

    A burning verdict read from partial data halts nothing, as on the push path (``guard.decide``
    judges no canary that cycle): the missing part may be the baseline's errors. An incident opened
    on whole data still halts.
    """
    decider = focus.decider
    if decider is not None and decider.verdict is Verdict.BURNING and _partial(ev) is None:
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


def _promote_block_on_data(ev: Evaluation, focus: _Focus, guard: GuardStatus) -> str | None:
    """Why the canary may not be promoted on what was read, or None when it may."""
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
    assert ev.slo.canary is not None
    if ev.slo.canary.shadow:
        state = f"; its promotion is refused instead: {halt}" if halt else ""
        return answer(
            False,
            f"{slo_id} judges a shadow (kind: shadow) that serves no user: never rolled back{state}",
            _verdict(ev, focus),
        )
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
    partial = _partial(ev)
    if partial is not None:
        return answer(
            False,
            f"the latest evaluation read partial data ({partial}); a canary is never rolled back on "
            f"partial data: {_summary(ev, focus)}",
            _verdict(ev, focus),
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


def _promote_block(ev: Evaluation, focus: _Focus, guard: GuardStatus) -> str | None:
    """Why the canary may not be promoted, or None when it may: never on partial data."""
    block = _promote_block_on_data(ev, focus, guard)
    partial = _partial(ev)
    if block is None and partial is not None:
        return f"the latest evaluation read partial data ({partial}); no promotion without whole data"
    return block


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
    partial = _partial(ev)
    if partial is not None and halt is None:
        reason = f"partial data from the source ({partial}): nothing is halted on it; {reason}"
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


# --- the release gates: may a new release of a service start? --------------------------------------

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Metadata keys and query parameters that are not the caller's labels.
FLAGGER_RESERVED = frozenset({"service", "slo", "canary", "token"})
RELEASE_RESERVED = frozenset({"canary"})


def caller_labels(pairs: Mapping[str, str], reserved: frozenset[str]) -> dict[str, str]:
    """The labels a caller sends for the freeze's exceptions: every key but ``reserved``, empty values
    dropped (an Argo argument left at ""); ValueError names a key that is no label name."""
    labels = {}
    for name, value in pairs.items():
        if name in reserved or value == "":
            continue
        if not _LABEL_NAME.match(name) or name.startswith("__"):
            raise ValueError(
                f"{name!r} is not a label name; pass labels such as change=security-fix "
                "(letters, digits and underscores)"
            )
        labels[name] = value
    return labels


@dataclass(frozen=True)
class FlaggerReleaseHook:
    """Flagger's payload to a ``confirm-rollout`` hook: the service in ``metadata.service`` (or the service
    of ``metadata.slo``), the version in ``metadata.canary``, every other metadata key a label."""

    name: str
    namespace: str
    phase: str
    checksum: str
    service: str
    canary: str | None
    labels: Mapping[str, str]
    token: str | None = field(default=None, repr=False)


def parse_flagger_release_hook(raw: bytes) -> FlaggerReleaseHook:
    payload, metadata = _flagger_payload(raw)
    service = metadata.get("service") or metadata.get("slo", "").partition("/")[0]
    if not service:
        raise ValueError(
            "the webhook's metadata needs service: <service> (the service whose releases the freeze "
            "guards), e.g. service: checkout"
        )
    return FlaggerReleaseHook(
        name=payload.get("name") or "",
        namespace=payload.get("namespace") or "",
        phase=payload.get("phase") or "",
        checksum=payload.get("checksum") or "",
        service=service,
        canary=metadata.get("canary") or None,
        labels=caller_labels(metadata, FLAGGER_RESERVED),
        token=metadata.get("token"),
    )


@dataclass(frozen=True)
class ShadowCheck:
    """Whether the version asked about may be released, as one shadow SLO of the service sees it."""

    slo_id: str
    canary: str
    refused: bool
    reason: str


@dataclass(frozen=True)
class Release:
    """The answer to "may a new release of ``service`` start?", with everything behind it."""

    service: str
    canary: str | None
    labels: Mapping[str, str]
    slos: tuple[SloFreeze, ...]  # the service's SLOs that declare freeze:
    shadows: tuple[ShadowCheck, ...]  # the service's shadow SLOs, when a version was asked about
    at: datetime | None

    @property
    def frozen(self) -> tuple[SloFreeze, ...]:
        return tuple(s for s in self.slos if s.state is FreezeState.FROZEN)

    @property
    def refused(self) -> tuple[ShadowCheck, ...]:
        return tuple(s for s in self.shadows if s.refused)

    @property
    def unknown(self) -> tuple[SloFreeze, ...]:
        return tuple(s for s in self.slos if s.state is FreezeState.UNKNOWN)

    @property
    def allowed(self) -> bool | None:
        """True: go; False: frozen or refused; None: no verdict (a policy's SLO could not be judged)."""
        if self.frozen or self.refused:
            return False
        return None if self.unknown else True

    @property
    def recovery(self) -> Recovery | None:
        """When every frozen SLO is expected back: the latest of their estimates (None when unknown)."""
        known = [(s.recovery.at, s.recovery) for s in self.frozen if s.recovery and s.recovery.at]
        if not known or len(known) < len(self.frozen):
            return None
        return max(known, key=lambda pair: pair[0])[1]

    @property
    def reason(self) -> str:
        if self.allowed is False:
            parts = [s.reason for s in self.frozen] + [s.reason for s in self.refused]
            head = f"releases of {self.service} are frozen" if self.frozen else f"{self.service}: refused"
            text = f"{head}: {'; '.join(parts)}"
            recovery = self.recovery
            if self.frozen and recovery is not None:
                text += f". Budget {recovery.reason}"
            elif self.frozen:
                notes = [s.recovery.reason for s in self.frozen if s.recovery is not None]
                text += ". Recovery: " + ("; ".join(notes) if notes else "not estimated")
            return text
        if self.allowed is None:
            return f"no verdict for {self.service}: {'; '.join(s.reason for s in self.unknown)}"
        parts = [s.reason for s in self.slos] + [s.reason for s in self.shadows]
        return f"releases of {self.service} may go: {'; '.join(parts)}"


def _shadow_check(ev: Evaluation, guard: GuardStatus, canary: str) -> ShadowCheck:
    focus = _focus(ev, guard, canary)
    halt = _halt_reason(ev, focus)
    if halt is None:
        return ShadowCheck(ev.slo.id, canary, False, f"shadow {ev.slo.id}: {_summary(ev, focus)}")
    if guard.paused:
        return ShadowCheck(
            ev.slo.id, canary, False, f"guard paused for {ev.slo.id}: its shadow is not enforced ({halt})"
        )
    return ShadowCheck(ev.slo.id, canary, True, f"shadow {ev.slo.id} refuses {focus.named(canary)}: {halt}")


def release(
    service: str,
    evaluations: Sequence[Evaluation],
    guards: Mapping[str, GuardStatus],
    labels: Mapping[str, str],
    *,
    canary: str | None = None,
    recoveries: Mapping[str, Recovery] | None = None,
) -> Release:
    """Decide a release of ``service`` from the latest evaluations of its SLOs.

    ``guards`` holds the guard status of its shadow SLOs; ``recoveries`` the estimates for the SLOs
    ``frozen_slos`` names (the caller reads them from the source).
    """
    recoveries = recoveries or {}
    mine = [ev for ev in evaluations if ev.slo.service == service]
    slos = []
    for ev in mine:
        judged = judge(ev, labels)
        if judged is not None:
            slos.append(replace(judged, recovery=recoveries.get(judged.slo_id)))
    shadows = []
    if canary is not None:
        for ev in mine:
            if ev.slo.canary is not None and ev.slo.canary.shadow:
                shadows.append(_shadow_check(ev, guards.get(ev.slo.id, GuardStatus()), canary))
    at = max((ev.at for ev in mine), default=None)
    return Release(service, canary, dict(labels), tuple(slos), tuple(shadows), at)


def frozen_slos(service: str, evaluations: Sequence[Evaluation], labels: Mapping[str, str]) -> list[str]:
    """The SLOs that freeze this caller's release of ``service`` (their recovery is worth estimating)."""
    return [s.slo_id for s in release(service, evaluations, {}, labels).slos if s.state is FreezeState.FROZEN]


def _no_release_policy(decision: Release) -> GateAnswer | None:
    """A release gate that could never refuse is a configuration error: say so, as the canary gates do."""
    if decision.slos or decision.shadows:
        return None
    shadow = " (and none judges a shadow of the version asked about)" if decision.canary else ""
    return GateAnswer(
        BAD_REQUEST,
        {
            "error": f"no SLO of {decision.service} declares a freeze: policy{shadow}, so this gate could "
            "never refuse a release; add one, e.g. freeze: {below: 0.0, except: {change: [security-fix]}}"
        },
    )


def _slo_record(s: SloFreeze) -> dict[str, Any]:
    recovery = s.recovery
    return {
        "slo": s.slo_id,
        "state": str(s.state),
        "budgetRemaining": _finite(s.budget_remaining),
        "below": s.below,
        "exemptBy": s.exempt_by,
        "reason": s.reason,
        "recoveryAt": None if recovery is None or recovery.at is None else format_time(recovery.at),
        "recovery": None if recovery is None else recovery.reason,
    }


def release_data(decision: Release) -> dict[str, Any]:
    """The release decision as JSON (camelCase, like the Argo metric): what every release gate returns."""
    recovery = decision.recovery
    return {
        "ok": decision.allowed is True,
        "frozen": bool(decision.frozen),
        "service": decision.service,
        "canary": decision.canary,
        "labels": dict(decision.labels),
        "reason": decision.reason,
        "recoveryAt": None if recovery is None or recovery.at is None else format_time(recovery.at),
        "slos": [_slo_record(s) for s in decision.slos],
        "shadows": [
            {"slo": s.slo_id, "canary": s.canary, "refused": s.refused, "reason": s.reason}
            for s in decision.shadows
        ],
        "at": None if decision.at is None else format_time(decision.at),
    }


def flagger_confirm_rollout(decision: Release) -> GateAnswer:
    """Flagger's ``confirm-rollout`` hook: 200 starts the rollout; 403 (frozen) and 503 (no verdict) keep
    the canary ``Waiting`` and Flagger asks again next tick, with no failed check counted (§2.1)."""
    refused = _no_release_policy(decision)
    if refused is not None:
        return refused
    data = release_data(decision)
    body = {"rollout": decision.allowed is True, **{k: v for k, v in data.items() if k != "ok"}}
    status = {True: OK, False: NOT_NOW, None: NO_VERDICT}[decision.allowed]
    return GateAnswer(status, body)


def release_metric(decision: Release) -> GateAnswer:
    """The release gate for Argo Rollouts and ``budgetguard gate``: 200 ``{"data": {"ok", ...}}`` whenever
    a verdict exists (``ok`` false while frozen or refused), 503 (with the same data) when none does."""
    refused = _no_release_policy(decision)
    if refused is not None:
        return refused
    data = release_data(decision)
    if decision.allowed is None:
        return GateAnswer(NO_VERDICT, {"error": decision.reason, "data": data})
    return GateAnswer(OK, {"data": data})
