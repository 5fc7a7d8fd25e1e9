"""Incidents from canary verdicts: opened once, actions once, resolved by absence or lasting health."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from budgetguard.core.canary import CanaryEvaluation, Counts, Streak, judge_versions
from budgetguard.core.guard import Decision, Delivery, Incident, decide, idempotency_key, resolve_entries_from
from budgetguard.core.policy import Evaluation
from budgetguard.core.ports import EventKind
from budgetguard.core.spec import SLO
from budgetguard.core.verdict import Verdict
from tests.helpers import slo_from

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
CANARY = """
version: budgetguard/v1
service: checkout
labels: {team: payments}
slos:
  - name: availability
    objective: 99.9
    sli:
      events:
        error_query: sum by (version) (rate(http_requests_total{code=~"5.."}[{{.window}}]))
        total_query: sum by (version) (rate(http_requests_total[{{.window}}]))
    canary:
      label: version
      windows: [1m]
      streak: 2
      cooldown: 5m
      resolve_after: 2m
      on_burn: [abort]
      notify: [pager, chat]
"""
SLO_ = slo_from(CANARY)
DELIVERY = Delivery(resolvable=frozenset({"pager", "chat"}), dry_run_actions=frozenset({"chat"}))
BURN, CLEAN, FEW = Counts(30, 300), Counts(0, 6_000), Counts(0, 10)


def canaries(slo: SLO, **versions: Counts) -> tuple[CanaryEvaluation, ...]:
    assert slo.canary is not None
    counts = {w: {"v1": Counts(0, 60_000), **versions} for w in slo.canary.windows}
    return judge_versions(slo.canary, slo.error_budget, counts, {"v1": 1e6})


def evaluation(at: datetime, verdict: Verdict = Verdict.HEALTHY, **versions: Counts) -> Evaluation:
    return Evaluation(SLO_, at, verdict, "service", canaries=canaries(SLO_, **versions))


class Guard:
    """Drives decide() cycle after cycle, keeping incidents and streaks like the daemon does."""

    def __init__(self) -> None:
        self.open: dict[str, Incident] = {}
        self.streaks: dict[tuple[str, str], Streak] = {}
        self.decisions: list[Decision] = []
        self.paused = False

    def step(self, ev: Evaluation) -> Decision:
        decision, self.streaks = decide(
            ev, list(self.open.values()), self.streaks, paused=self.paused, delivery=DELIVERY
        )
        for incident in (*decision.opened, *decision.updated):
            self.open[incident.id] = incident
        for incident in decision.resolved:
            self.open.pop(incident.id)
        self.decisions.append(decision)
        return decision

    @property
    def sent(self) -> list[tuple[str, EventKind]]:
        return [(e.action, e.request.event) for d in self.decisions for e in d.outbox]


def test_a_burning_canary_opens_one_incident_after_the_streak_and_fires_each_action_once() -> None:
    g = Guard()
    first = g.step(evaluation(T0, v2=BURN))
    assert not first.opened and "burning 1 of 2" in first.notes[0]
    second = g.step(evaluation(T0 + timedelta(seconds=30), v2=BURN))
    [incident] = second.opened
    assert (incident.slo_id, incident.canary_label, incident.canary_value, incident.baseline) == (
        "checkout/availability",
        "version",
        "v2",
        "v1",
    )
    for i in range(2, 20):
        assert g.step(evaluation(T0 + timedelta(seconds=30 * i), v2=BURN)).outbox == ()
    assert g.sent == [("abort", EventKind.TRIGGER), ("pager", EventKind.TRIGGER), ("chat", EventKind.TRIGGER)]
    entries = second.outbox
    assert [e.dry_run for e in entries] == [False, False, True]
    request = entries[0].request
    assert request.idempotency_key == idempotency_key(incident.id, "abort", EventKind.TRIGGER)
    assert request.context["canary"] == "v2" and request.context["team"] == "payments"
    assert request.burn_rates["1m"] == pytest.approx(100.0)


def test_a_healthy_or_undecided_canary_opens_nothing() -> None:
    g = Guard()
    for i in range(50):
        g.step(evaluation(T0 + timedelta(seconds=30 * i), v2=CLEAN if i % 2 else FEW))
    assert g.sent == [] and not g.open


def test_an_interrupted_streak_starts_again() -> None:
    g = Guard()
    for i, counts in enumerate([BURN, FEW, BURN, CLEAN, BURN]):
        g.step(evaluation(T0 + timedelta(seconds=30 * i), v2=counts))
    assert not g.open


def test_resolved_when_the_canary_is_gone_and_resolve_goes_where_it_is_understood() -> None:
    g = Guard()
    g.step(evaluation(T0, v2=BURN))
    g.step(evaluation(T0 + timedelta(seconds=30), v2=BURN))
    gone = g.step(evaluation(T0 + timedelta(seconds=60)))
    [done] = gone.resolved
    assert "version=v2 is gone" in (done.resolution or "")
    assert [(e.action, e.request.event) for e in gone.outbox] == [
        ("pager", EventKind.RESOLVE),
        ("chat", EventKind.RESOLVE),
    ]
    assert gone.outbox[0].request.idempotency_key == idempotency_key(done.id, "pager", EventKind.RESOLVE)


def test_resolved_after_staying_healthy_for_resolve_after_and_not_before() -> None:
    g = Guard()
    g.step(evaluation(T0, v2=BURN))
    g.step(evaluation(T0 + timedelta(seconds=30), v2=BURN))
    at = T0 + timedelta(minutes=1)
    assert g.step(evaluation(at, v2=CLEAN)).updated[0].healthy_since == at
    g.step(evaluation(at + timedelta(minutes=1), v2=FEW))  # not healthy: the clock starts again
    g.step(evaluation(at + timedelta(minutes=2), v2=CLEAN))
    assert not g.step(evaluation(at + timedelta(minutes=3), v2=CLEAN)).resolved
    assert g.step(evaluation(at + timedelta(minutes=4), v2=CLEAN)).resolved


def test_faults_neither_open_nor_resolve() -> None:
    g = Guard()
    g.step(evaluation(T0, v2=BURN))
    g.step(evaluation(T0 + timedelta(seconds=30), v2=BURN))
    error = Evaluation(SLO_, T0 + timedelta(minutes=1), Verdict.ERROR, "source down")  # no canaries at all
    assert g.step(error).empty and g.open
    partial = replace(evaluation(T0 + timedelta(minutes=2), v3=BURN), warnings=("partial",))
    assert g.step(partial).empty and g.open and len(g.sent) == 3


def test_paused_guard_opens_nothing_and_acts_once_resumed() -> None:
    g = Guard()
    g.paused = True
    for i in range(4):
        assert (
            "paused" in " ".join(g.step(evaluation(T0 + timedelta(seconds=30 * i), v2=BURN)).notes) or i == 0
        )
    assert not g.open
    g.paused = False
    g.step(evaluation(T0 + timedelta(minutes=3), v2=BURN))
    assert len(g.open) == 1


def test_cooldown_after_an_incident_delays_the_next_for_the_same_canary() -> None:
    g = Guard()
    g.step(evaluation(T0, v2=BURN))
    g.step(evaluation(T0 + timedelta(seconds=30), v2=BURN))
    g.step(evaluation(T0 + timedelta(seconds=60)))  # gone: resolved
    g.step(evaluation(T0 + timedelta(seconds=90), v2=BURN))
    assert "cooldown" in g.step(evaluation(T0 + timedelta(seconds=120), v2=BURN)).notes[0]
    g.step(evaluation(T0 + timedelta(minutes=6), v2=BURN))
    assert len(g.open) == 1


def test_a_manual_resolve_builds_resolves_from_the_incidents_own_triggers() -> None:
    g = Guard()
    g.step(evaluation(T0, v2=BURN))
    opened = g.step(evaluation(T0 + timedelta(seconds=30), v2=BURN))
    incident = replace(opened.opened[0], resolved_at=T0 + timedelta(minutes=1), resolution="by hand")
    triggers = [(e.action, e.request) for e in opened.outbox]
    entries = resolve_entries_from(incident, triggers, DELIVERY)
    assert [(e.action, e.request.event, e.request.reason) for e in entries] == [
        ("pager", EventKind.RESOLVE, "by hand"),
        ("chat", EventKind.RESOLVE, "by hand"),
    ]
