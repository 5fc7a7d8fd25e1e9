"""Incidents: when a canary's verdicts open one, what it sends, and when it resolves.

A canary judged BURNING ``streak`` times in a row, outside the cooldown and while the guard is not
paused for its SLO, opens an incident for (SLO, canary value). So does a latency breach
(``canary.latency``) judged BURNING without interruption for its ``for``, by the evaluation
timestamps; the incident's reason then reads in the guard's terms ("p99 latency of version=v2 above
500ms for 2m: ..."). Opening writes one outbox entry per action the canary block names (``on_burn``
first, then ``notify``), each with an idempotency key that is stable for (incident, action, event):
those entries are the only way an action is ever sent, so an incident fires its actions exactly once
however many cycles keep seeing the canary burn. The incident
resolves when the canary's version is gone from every canary window, or when it has been HEALTHY for
``resolve_after``; resolving writes a RESOLVE entry for the actions whose targets understand one
(PagerDuty's resolve, Alertmanager's ``endsAt``, a webhook's or Slack's "resolved" message).

An evaluation that could not see the canaries properly (an ``error`` verdict, or partial data) changes
nothing: a fault neither opens an incident nor resolves one by making the canary look gone.

Pure: the caller passes the clock, the open incidents and the streaks, and writes what comes back
(the daemon does both in the cycle's transaction). No I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from budgetguard.core.canary import CanaryEvaluation, Hold, Streak, format_held
from budgetguard.core.durations import format_duration
from budgetguard.core.policy import Evaluation
from budgetguard.core.ports import ActionRequest, Affected, EventKind
from budgetguard.core.spec import SLO
from budgetguard.core.verdict import Verdict


class IncidentState(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Incident:
    """A canary version of one SLO that burned its budget too fast, from opening to resolution."""

    id: str
    slo_id: str
    service: str
    slo: str
    canary_label: str
    canary_value: str
    baseline: str | None
    opened_at: datetime
    reason: str
    state: IncidentState = IncidentState.OPEN
    burn_rates: Mapping[str, float | None] = field(default_factory=dict)
    events: float | None = None
    healthy_since: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    resolution: str | None = None
    # Who is affected (canary.affected_by): read after the incident is stored, so None until then.
    affected: Affected | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.slo_id, self.canary_value


@dataclass(frozen=True)
class OutboxEntry:
    """One delivery to make: written with the decision, delivered later by the outbox worker."""

    action: str
    request: ActionRequest
    dry_run: bool  # recorded, never called
    # Not delivered before this (None: at once). A notify entry waits here for the who-is-affected
    # slice, which fills it in when delivered; it never waits longer, so it is never lost.
    not_before: datetime | None = None


@dataclass(frozen=True)
class Decision:
    """What one evaluation changes: incidents opened, updated or resolved, and the deliveries due."""

    opened: tuple[Incident, ...] = ()
    updated: tuple[Incident, ...] = ()
    resolved: tuple[Incident, ...] = ()
    outbox: tuple[OutboxEntry, ...] = ()
    notes: tuple[str, ...] = ()  # for the log: why a burning canary was not acted on

    @property
    def empty(self) -> bool:
        return not (self.opened or self.updated or self.resolved or self.outbox)


@dataclass(frozen=True)
class Delivery:
    """How the daemon's configuration treats actions: which are dry runs, which understand RESOLVE."""

    dry_run: bool = False
    dry_run_actions: frozenset[str] = frozenset()
    resolvable: frozenset[str] = frozenset()
    # How long after an incident opens its notify deliveries wait for the who-is-affected query
    # (SLOs with canary.affected_by); on_burn deliveries never wait: the halt is not delayed.
    affected_hold: timedelta = timedelta(0)

    def is_dry(self, action: str) -> bool:
        return self.dry_run or action in self.dry_run_actions


def incident_id(slo_id: str, canary_value: str, opened_at: datetime) -> str:
    """Deterministic, short and unique per opening: the same decision replayed gets the same id."""
    digest = hashlib.sha256(f"{slo_id}\0{canary_value}\0{opened_at.isoformat()}".encode()).hexdigest()
    return f"inc-{digest[:16]}"


def idempotency_key(incident: str, action: str, event: EventKind) -> str:
    """Stable for (incident, action, event): a retry or a redelivery after a crash carries the same key."""
    return f"{incident}.{action}.{event}"


def context(slo: SLO, canary_label: str, canary_value: str, baseline: str | None) -> dict[str, str]:
    """What action templates (``${name}``) are filled from: the SLO's labels, then the fixed names."""
    return {
        **slo.labels,
        "service": slo.service,
        "slo": slo.name,
        "canary_label": canary_label,
        "canary": canary_value,
        "baseline": baseline or "",
    }


def _burn_rates(canary: CanaryEvaluation) -> dict[str, float | None]:
    return {format_duration(w.window): w.judgement.burn_rate for w in canary.windows}


def _request(
    slo: SLO, incident: Incident, action: str, event: EventKind, *, at: datetime, reason: str
) -> ActionRequest:
    return ActionRequest(
        event=event,
        idempotency_key=idempotency_key(incident.id, action, event),
        incident_id=incident.id,
        service=incident.service,
        slo=incident.slo,
        reason=reason,
        at=at,
        canary_label=incident.canary_label,
        canary_value=incident.canary_value,
        baseline=incident.baseline,
        burn_rates=dict(incident.burn_rates),
        events=incident.events,
        context=context(slo, incident.canary_label, incident.canary_value, incident.baseline),
    )


def open_entries(slo: SLO, incident: Incident, delivery: Delivery) -> tuple[OutboxEntry, ...]:
    """TRIGGER deliveries, ``on_burn`` first. With ``affected_by``, the ``notify`` ones are held for at
    most ``delivery.affected_hold`` so the page can say who is hurt; the halt is due at once."""
    policy = slo.canary
    assert policy is not None
    hold = delivery.affected_hold if policy.affected_by else timedelta(0)
    held_until = incident.opened_at + hold if hold > timedelta(0) else None
    return tuple(
        OutboxEntry(
            action,
            _request(slo, incident, action, EventKind.TRIGGER, at=incident.opened_at, reason=incident.reason),
            delivery.is_dry(action),
            not_before=None if action in policy.on_burn else held_until,
        )
        for action in policy.actions
    )


def resolve_entries(slo: SLO, incident: Incident, delivery: Delivery) -> tuple[OutboxEntry, ...]:
    """RESOLVE deliveries for the actions whose targets understand one (none for a halted rollout)."""
    if slo.canary is None or incident.resolved_at is None:
        return ()
    reason = incident.resolution or "resolved"
    return tuple(
        OutboxEntry(
            action,
            _request(slo, incident, action, EventKind.RESOLVE, at=incident.resolved_at, reason=reason),
            delivery.is_dry(action),
        )
        for action in slo.canary.actions
        if action in delivery.resolvable
    )


def resolve_entries_from(
    incident: Incident, triggers: Sequence[tuple[str, ActionRequest]], delivery: Delivery
) -> tuple[OutboxEntry, ...]:
    """RESOLVE deliveries built from the incident's own TRIGGER requests (a manual resolve: the SLO
    that opened the incident may have changed or gone since)."""
    if incident.resolved_at is None:
        return ()
    reason = incident.resolution or "resolved"
    return tuple(
        OutboxEntry(
            action,
            replace(
                request,
                event=EventKind.RESOLVE,
                idempotency_key=idempotency_key(incident.id, action, EventKind.RESOLVE),
                at=incident.resolved_at,
                reason=reason,
            ),
            delivery.is_dry(action),
        )
        for action, request in triggers
        if request.event is EventKind.TRIGGER and action in delivery.resolvable
    )


def resolve(incident: Incident, at: datetime, why: str) -> Incident:
    return replace(incident, state=IncidentState.RESOLVED, resolved_at=at, resolution=why)


Streaks = Mapping[tuple[str, str], Streak]


def decide(
    evaluation: Evaluation,
    open_incidents: Sequence[Incident],
    streaks: Streaks,
    *,
    paused: bool,
    delivery: Delivery,
    last_opened: Mapping[tuple[str, str], datetime] | None = None,
) -> tuple[Decision, dict[tuple[str, str], Streak]]:
    """The incidents one SLO's evaluation opens and resolves; returns the decision and the new streaks.

    ``open_incidents`` are this SLO's open incidents; ``streaks`` the run of BURNING verdicts per
    (SLO id, canary value); ``last_opened`` when an incident last opened for a canary (the cooldown
    survives restarts through it).
    """
    slo = evaluation.slo
    policy = slo.canary
    at = evaluation.at
    if policy is None:
        return Decision(), {}
    if evaluation.verdict is Verdict.ERROR or evaluation.warnings:
        why = "an error" if evaluation.verdict is Verdict.ERROR else "partial data"
        note = f"{slo.id}: canaries not judged this cycle ({why}); incidents left as they are"
        return Decision(notes=(note,)), dict(streaks)

    by_value = {c.value: c for c in evaluation.canaries}
    open_by_value = {i.canary_value: i for i in open_incidents if i.state is IncidentState.OPEN}
    new_streaks: dict[tuple[str, str], Streak] = {}
    opened: list[Incident] = []
    updated: list[Incident] = []
    resolved: list[Incident] = []
    outbox: list[OutboxEntry] = []
    notes: list[str] = []

    for value, canary in by_value.items():
        key = (slo.id, value)
        streak = streaks.get(key) or Streak(needed=policy.streak, cooldown=policy.cooldown)
        if streak.acted_at is None and last_opened and key in last_opened:
            streak = replace(streak, acted_at=last_opened[key])
        incident = open_by_value.get(value)
        if incident is not None:
            # An open incident already fired its actions: only its resolution is left to decide.
            new_streaks[key] = replace(streak, run=0, breach=Hold())
            if canary.verdict is Verdict.HEALTHY:
                since = incident.healthy_since or at
                if at - since >= policy.resolve_after:
                    done = resolve(
                        incident,
                        at,
                        f"healthy for {format_duration(at - since)} (resolve_after "
                        f"{format_duration(policy.resolve_after)}): {canary.reason}",
                    )
                    resolved.append(done)
                    outbox.extend(resolve_entries(slo, done, delivery))
                elif incident.healthy_since is None:
                    updated.append(replace(incident, healthy_since=at))
            elif incident.healthy_since is not None:
                updated.append(replace(incident, healthy_since=None))
            continue
        next_streak, act = streak.advance(canary.judgement, at)
        reason = canary.reason
        # The latency guard acts once its breach has lasted `for`, by its own clock (#6).
        latency = canary.latency
        slow = latency is not None and latency.verdict is Verdict.BURNING
        if latency is not None and not act:
            next_streak, held = next_streak.advance_latency(latency, at)
            if held is not None:
                act, reason = True, latency.held_reason(held)
        elif act:
            next_streak = replace(next_streak, breach=Hold())
        new_streaks[key] = next_streak
        if canary.verdict is not Verdict.BURNING and not slow:
            continue
        if not act:
            if streak.cooling(at):
                notes.append(f"{slo.id} {policy.label}={value}: burning, but within the cooldown")
            elif latency is not None and slow and canary.judgement.verdict is not Verdict.BURNING:
                notes.append(
                    f"{slo.id}: {latency.headline} for {format_held(next_streak.breach.held)} of the "
                    f"{format_duration(latency.hold)} needed"
                )
            else:
                notes.append(
                    f"{slo.id} {policy.label}={value}: burning {next_streak.run} of {policy.streak} "
                    "times in a row needed"
                )
            continue
        if paused:
            notes.append(f"{slo.id} {policy.label}={value}: burning, but the guard is paused for this SLO")
            # Keep the evidence, not the action: resumed while still burning, it acts at once.
            new_streaks[key] = replace(
                streak,
                run=min(streak.run + 1, policy.streak) if canary.judgement.verdict is Verdict.BURNING else 0,
                breach=streak.breach.advance(slow, at),
            )
            continue
        new = Incident(
            id=incident_id(slo.id, value, at),
            slo_id=slo.id,
            service=slo.service,
            slo=slo.name,
            canary_label=policy.label,
            canary_value=value,
            baseline=canary.baseline,
            opened_at=at,
            reason=reason,
            burn_rates=_burn_rates(canary),
            events=canary.judgement.events,
        )
        opened.append(new)
        outbox.extend(open_entries(slo, new, delivery))

    for key, streak in streaks.items():
        if key[0] == slo.id and key[1] not in by_value and streak.cooling(at):
            new_streaks[key] = replace(streak, run=0)  # gone for now: its cooldown still holds
    for value, incident in open_by_value.items():
        if value not in by_value:
            done = resolve(incident, at, f"{policy.label}={value} is gone: no traffic in any canary window")
            resolved.append(done)
            outbox.extend(resolve_entries(slo, done, delivery))
    return (
        Decision(tuple(opened), tuple(updated), tuple(resolved), tuple(outbox), tuple(notes)),
        new_streaks,
    )
