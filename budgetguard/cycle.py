"""One evaluation cycle and its decisions, built with its collaborators so tests build it directly.

A cycle evaluates every SLO in force, asks the canary guard (``budgetguard.core.guard``) what opens and
resolves, and stores the verdicts and those decisions in one transaction: a decision is not taken until
it is stored, so a failed write delays an action by a cycle and never loses it. Then it wakes the outbox
(so a halt is on its way) and, for each incident that opened for an SLO with ``canary.affected_by``,
sends one background query that says who is affected (``budgetguard.core.affected``); storing its answer
releases the notify deliveries held for it.

Replicas (issue 12): every replica evaluates and publishes its verdicts, but only the one that leads
(``leads()``, the leader lease's check) decides and stores. A follower still runs the guard over each
evaluation, as if its SLOs were paused, so it keeps the canaries' streaks warm without acting: promoted
(``promoted()``), it re-reads when incidents last opened and acts on a canary that has been burning
long enough at its first cycle, not ``streak`` cycles later. A leader whose lease ended before its
write committed has it refused (``NotLeader``); the successor decides again from the same evidence.

The cycle names no adapter: the engine, store, exporter and metrics source arrive built (the daemon's
composition root builds them), time arrives through ``clock``, and the outbox through ``wake``. It
neither schedules itself nor reloads SLO files; it reads the SLOs in force from the shared ``State``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from budgetguard import memory
from budgetguard.actions import RESOLVABLE_TYPES
from budgetguard.config import Settings
from budgetguard.core import affected, guard
from budgetguard.core.canary import Streak
from budgetguard.core.errors import BudgetguardError
from budgetguard.core.guard import Decision, Delivery, Incident, IncidentState
from budgetguard.core.policy import Evaluation
from budgetguard.core.ports import Affected, MetricsSource
from budgetguard.core.spec import SLO
from budgetguard.core.verdict import QueryMode, Verdict
from budgetguard.exporter import Exporter
from budgetguard.exporter.prepared import Part, PreparedMetrics
from budgetguard.health import GuardHealth
from budgetguard.readmodel import State
from budgetguard.store import AnyStore, NotLeader
from budgetguard.store.history import Pending

log = logging.getLogger("budgetguard")

# Who is affected (#6): the one breakdown query an opening incident makes waits this long at most.
AFFECTED_QUERY_TIMEOUT = timedelta(seconds=5)
# An incident's notify deliveries wait this long at most for that breakdown, counted from the
# evaluation that opened it: a slow cycle's write, then the query's own bound, with room to spare.
# Then they go out without it (a crash or a hung query delays a page, never loses it).
AFFECTED_HOLD = timedelta(seconds=15)

Clock = Callable[[], datetime]
# SLOs published between two looks at the event loop: the first cycle logs two lines for each (its
# first verdict, how it was read), ~12 ms per 250 SLOs.
PUBLISH_BATCH = 250


def utc_now() -> datetime:
    return datetime.now(tz=UTC)


class Evaluator(Protocol):
    """``budgetguard.engine.Engine``, ``budgetguard.recording.RecordingEngine``, or either in a child
    process (``budgetguard.cycleworker.CycleWorker``)."""

    async def evaluate_all(self, slos: Sequence[SLO], at: datetime) -> list[Evaluation]: ...


@dataclass(frozen=True)
class Prepared:
    """What an evaluator made beside a cycle's evaluations, so this process need not: the store's rows
    (``history.prepare`` of them; None: not made) and the per-SLO part of /metrics for them, by format
    (True: OpenMetrics). A cycle worker process makes them (#14)."""

    pending: Sequence[Pending] | None
    metrics: Mapping[bool, Part]


def prepared_by(engine: Evaluator, evaluations: Sequence[Evaluation]) -> Prepared | None:
    """What ``engine`` made beside ``evaluations``, when it makes anything (a ``CycleWorker``)."""
    prepared = getattr(engine, "prepared", None)
    return prepared(evaluations) if prepared is not None else None


def delivery_of(settings: Settings) -> Delivery:
    """How decisions reach the actions: dry runs, which actions understand RESOLVE, the notify hold."""
    return Delivery(
        dry_run=settings.dry_run,
        dry_run_actions=frozenset(name for name, c in settings.actions.items() if c.dry_run),
        resolvable=frozenset(name for name, c in settings.actions.items() if c.type in RESOLVABLE_TYPES),
        affected_hold=AFFECTED_HOLD,
    )


class Cycle:
    """Evaluates, decides, stores, then wakes the outbox and reads who is affected, once per ``run()``.

    The canary streaks and the last opening per canary live here, between cycles; ``last_opened`` is
    read from the store at start-up so a restart keeps the cooldown.
    """

    def __init__(
        self,
        state: State,
        engine: Evaluator,
        store: AnyStore,
        exporter: Exporter,
        *,
        delivery: Delivery,
        source: MetricsSource | None = None,
        wake: Callable[[], None] = lambda: None,
        clock: Clock = utc_now,
        jitter: timedelta = timedelta(0),
        last_opened: dict[tuple[str, str], datetime] | None = None,
        affected_timeout: timedelta = AFFECTED_QUERY_TIMEOUT,
        health: GuardHealth | None = None,
        metrics: PreparedMetrics | None = None,
        leads: Callable[[], bool] = lambda: True,
        stored: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.state = state
        self._engine = engine
        self._store = store
        self._exporter = exporter
        self._delivery = delivery
        self._source = source  # for the who-is-affected queries
        self._wake = wake
        self._clock = clock
        self._jitter = jitter
        self._last_opened: dict[tuple[str, str], datetime] = dict(last_opened or {})
        self._affected_timeout = affected_timeout
        # What the cycle saw, for the logs by change of state and for readiness (issue 13).
        self._health = health
        self._metrics = metrics  # /metrics, rendered again when a cycle ends (#14)
        self._streaks: dict[tuple[str, str], Streak] = {}
        self._leads = leads
        # After the cycle's write, before its verdicts are published: the gates' view of open incidents
        # (``ReadModel.refresh_guard``) then never lags the verdicts it is read with.
        self._stored = stored
        self._background: set[asyncio.Task[None]] = set()
        self.task: asyncio.Task[None] | None = None  # the cycle running now, for a clean stop

    @property
    def delivery(self) -> Delivery:
        return self._delivery

    def configure(self, *, delivery: Delivery, jitter: timedelta) -> None:
        """A reloaded config file's delivery policy (actions, dry runs) and jitter, from the next cycle."""
        self._delivery = delivery
        self._jitter = jitter

    async def run(self) -> None:
        self.task = asyncio.current_task()
        if self._jitter > timedelta(0):
            await asyncio.sleep(random.uniform(0, self._jitter.total_seconds()))
        in_force = self.state.slos
        slos = list(in_force)
        at = self._clock()
        started = time.monotonic()
        # No automatic collection from the first query to the publication: the store's write and the
        # judging run in worker threads, and a collection there walked the cycle's new evaluations again
        # and again, holding the GIL, so the event loop, for 100-250 ms at 10,000 SLOs (#14).
        # ``keep()`` looks at them once, then freezes them.
        with memory.collection_paused():
            evaluations = await self._engine.evaluate_all(slos, at)
            prepared = prepared_by(self._engine, evaluations)
            duration = time.monotonic() - started
            for ev in evaluations:
                if ev.verdict is Verdict.ERROR:
                    self._exporter.count_source_error(ev.error_kind or "other")
            if self._leads():
                await self._decide_and_store(evaluations, at, None if prepared is None else prepared.pending)
                if self._stored is not None:
                    await self._stored()
            else:
                # A follower: the leader stores the cycle and decides; this one keeps the evidence only.
                _, self._streaks = self._decide(evaluations, acting=False)
            await self._publish(evaluations)
        if len(evaluations) > PUBLISH_BATCH:
            await asyncio.sleep(0)  # the index was just built; the collection below is a step of its own
        memory.keep()  # what the cycle keeps leaves the collector's sight (budgetguard.memory)
        self.state.cycles += 1
        self._exporter.observe_cycle(duration, len(slos))
        log.debug("cycle %d: %d SLO(s) in %.3fs", self.state.cycles, len(slos), duration)
        if self._metrics is not None:
            # Parts made for these evaluations are what the view shows unless a reload changed the SLOs
            # in force meanwhile: then everything is rendered here, from the view.
            ready = prepared.metrics if prepared is not None and self.state.slos is in_force else None
            try:
                await self._metrics.refresh(ready)
            except Exception:  # /metrics keeps the previous cycle's bytes; the verdicts are kept
                log.exception("could not render /metrics after cycle %d", self.state.cycles)

    async def _decide_and_store(
        self, evaluations: Sequence[Evaluation], at: datetime, pending: Sequence[Pending] | None = None
    ) -> None:
        """The leader's part of a cycle: decide, store the cycle and its decisions in one transaction
        (``pending``: its rows, serialised already)."""
        decisions, streaks = self._decide(evaluations)

        def write_decisions(tx: Any) -> None:
            for decision in decisions:
                tx.write_decision(decision, at)

        try:
            # In a worker thread: encoding 10,000 records takes most of a second, which the event loop
            # answering the gates must not wait for (#14). The store serialises its callers itself.
            await asyncio.to_thread(
                self._store.record_cycle, evaluations, extra=write_decisions, pending=pending
            )
        except NotLeader as exc:
            log.warning("this cycle's decisions were not stored: %s; the leader decides again", exc)
        except BudgetguardError as exc:
            # Decisions are not taken until they are stored: the next cycle decides again from the
            # same streaks, so a failed write delays an action by a cycle and never loses it.
            if self._health is None:
                log.exception("could not record the cycle; verdicts are kept in memory and exported")
            else:  # logged once per change of state, and /readyz turns 503 saying why
                self._health.record_write(str(exc))
        else:
            if self._health is not None:
                self._health.record_write(None)
            self._streaks = streaks
            self._after_decisions(decisions, evaluations)

    async def _publish(self, evaluations: Sequence[Evaluation]) -> None:
        """The cycle's verdicts become the latest of each SLO still in force, logging what changed (with
        ``health``: each SLO's first verdict too, and the source failing or recovering).

        ``PUBLISH_BATCH`` SLOs at a time, between which the event loop answers requests (#14); readers
        see none of it until ``state.publish()`` at the end swaps the index they read."""
        in_force = self.state.slos
        ids = {slo.id for slo in in_force}
        kept = [ev for ev in evaluations if ev.slo.id in ids]
        for first in range(0, len(kept), PUBLISH_BATCH):
            batch = kept[first : first + PUBLISH_BATCH]
            if self._health is not None:
                self._health.observe_slos(batch)
            self._keep_latest(batch)
            if len(kept) > PUBLISH_BATCH:
                await asyncio.sleep(0)
        if self._health is not None:
            self._health.observe_source(kept)
        if len(kept) > PUBLISH_BATCH:
            await asyncio.sleep(0)  # the index below is ~15 ms at 10,000 SLOs on its own
        if self.state.slos is not in_force:  # reloaded meanwhile: what is no longer in force goes
            now = {slo.id for slo in self.state.slos}
            self.state.latest = {k: v for k, v in self.state.latest.items() if k in now}
        self.state.publish()

    def _keep_latest(self, evaluations: Sequence[Evaluation]) -> None:
        for ev in evaluations:
            previous = self.state.latest.get(ev.slo.id)
            if self._health is None and previous is not None and previous.verdict is not ev.verdict:
                log.info("%s: %s -> %s: %s", ev.slo.id, previous.verdict, ev.verdict, ev.reason)
            if ev.query_mode != QueryMode.RAW and (previous is None or previous.query_mode != ev.query_mode):
                # Read from recorded series (a calendar SLO's period raw beside them) is no fallback.
                recorded = ev.query_mode.startswith(QueryMode.RECORDING)
                level = logging.INFO if recorded else logging.WARNING
                log.log(level, "%s: read by %s", ev.slo.id, ev.query_mode)
            self.state.latest[ev.slo.id] = ev

    def promoted(self) -> None:
        """This replica now leads: act on the incidents as stored, not as this follower last saw them."""
        try:
            self._last_opened = self._store.last_opened()
        except BudgetguardError:
            log.exception("cannot read when incidents last opened; the cooldowns start from this replica's")
        # The cooldown comes from the store (``last_opened``); the evidence (runs, holds) is kept.
        self._streaks = {key: replace(streak, acted_at=None) for key, streak in self._streaks.items()}

    def _decide(
        self, evaluations: Sequence[Evaluation], *, acting: bool = True
    ) -> tuple[list[Decision], dict[tuple[str, str], Streak]]:
        """What the canaries of this cycle open and resolve (``guard.decide``), not yet stored.

        ``acting=False`` (a follower): only the new streaks, as if every SLO were paused."""
        streaks = dict(self._streaks)
        canaried = [ev for ev in evaluations if ev.slo.canary is not None]
        if not canaried and not self._store_has_open_incidents():
            return [], streaks
        try:
            open_incidents = self._store.incidents(state=IncidentState.OPEN, limit=100_000)
            paused = self._store.pauses(self._clock())
        except BudgetguardError:
            log.exception("cannot read incidents; no canary decisions this cycle")
            return [], streaks
        by_slo: dict[str, list[Incident]] = {}
        for incident in open_incidents:
            by_slo.setdefault(incident.slo_id, []).append(incident)
        decisions = self._orphans(open_incidents) if acting else []
        for ev in canaried:
            slo_id = ev.slo.id
            mine = {k: v for k, v in streaks.items() if k[0] == slo_id}
            decision, new = guard.decide(
                ev,
                by_slo.get(slo_id, []),
                mine,
                paused=slo_id in paused or not acting,
                delivery=self._delivery,
                last_opened=self._last_opened,
            )
            for key in mine:
                streaks.pop(key, None)
            streaks.update(new)
            if not acting:
                continue
            if self._health is not None:
                self._health.notes(slo_id, decision.notes)
            else:
                for note in decision.notes:
                    log.info("%s", note)
            if not decision.empty:
                decisions.append(decision)
        return decisions, streaks

    def _store_has_open_incidents(self) -> bool:
        try:
            return bool(self._store.incidents(state=IncidentState.OPEN, limit=1))
        except BudgetguardError:
            return False

    def _orphans(self, open_incidents: Sequence[Incident]) -> list[Decision]:
        """Resolve open incidents whose SLO no longer declares a canary (removed, or its block dropped):
        nothing would ever judge them again. Their RESOLVE deliveries follow their own triggers."""
        declared = {slo.id for slo in self.state.slos if slo.canary is not None}
        decisions = []
        now = self._clock()
        for incident in open_incidents:
            if incident.slo_id in declared:
                continue
            done = guard.resolve(incident, now, f"{incident.slo_id} no longer declares a canary guard")
            triggers = [(row.action, row.request) for row in self._store.outbox(incident_id=incident.id)]
            entries = guard.resolve_entries_from(done, triggers, self._delivery)
            decisions.append(Decision(resolved=(done,), outbox=entries))
        return decisions

    def _after_decisions(self, decisions: Sequence[Decision], evaluations: Sequence[Evaluation] = ()) -> None:
        """Log and count what the stored decisions did, wake the outbox, then read who is affected."""
        for decision in decisions:
            for incident in decision.opened:
                self._last_opened[incident.key] = incident.opened_at
                self._exporter.count_incident(incident.service, incident.slo, "opened")
                log.warning(
                    "incident %s opened: %s %s=%s burning: %s",
                    incident.id,
                    incident.slo_id,
                    incident.canary_label,
                    incident.canary_value,
                    incident.reason,
                )
            for incident in decision.resolved:
                self._exporter.count_incident(incident.service, incident.slo, "resolved")
                log.info("incident %s resolved: %s", incident.id, incident.resolution)
        if any(d.outbox for d in decisions):
            self._wake()
        # After the wake-up: the halt is on its way before the breakdown query is even sent.
        by_id = {ev.slo.id: ev for ev in evaluations}
        for decision in decisions:
            for incident in decision.opened:
                ev = by_id.get(incident.slo_id)
                if ev is not None and ev.slo.canary is not None and ev.slo.canary.affected_by:
                    self.in_background(self._read_affected(ev, incident), f"affected-{incident.id}")

    # --- background work: the breakdown queries (and the daemon's start-up checks) -----------------

    def in_background(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def settle(self) -> None:
        """Wait for the background work in flight (the breakdown queries, the start-up checks)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def cancel_background(self) -> None:
        """Stop the background work: a breakdown cut short leaves its held notifications to go out
        when their hold ends."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*list(self._background), return_exceptions=True)

    async def _read_affected(self, ev: Evaluation, incident: Incident) -> None:
        """Who is affected: ONE grouped query over the deciding window, stored on the incident, which
        releases the notify deliveries held for it. Never raises: without an answer the incident says
        why, and the held deliveries go out at once without it."""
        slo = ev.slo
        assert slo.canary is not None
        judged = next((c for c in ev.canaries if c.value == incident.canary_value), None)
        window = judged.window if judged is not None else slo.canary.windows[-1]
        found = await self._ask_affected(ev, incident, window)
        try:
            released = self._store.set_affected(incident.id, found, self._clock())
        except BudgetguardError:
            log.exception(
                "incident %s: cannot store who is affected; notifications go out without it", incident.id
            )
            return
        log.info(
            "incident %s: who is affected: %s (%d held notification(s) released)",
            incident.id,
            affected.describe(found),
            released,
        )
        if released:
            self._wake()

    async def _ask_affected(self, ev: Evaluation, incident: Incident, window: timedelta) -> Affected:
        slo = ev.slo
        if self._source is None:
            return affected.unavailable(slo, window, "no metrics source to ask")
        try:
            expr = affected.query(slo, window)
            counts = affected.counts_events(slo, window)
        except ValueError as exc:
            return affected.unavailable(slo, window, f"cannot break the errors down: {exc}")
        seconds = self._affected_timeout.total_seconds()
        try:
            async with asyncio.timeout(seconds):
                answer = await self._source.query(expr, ev.at)
        except TimeoutError:
            return affected.unavailable(slo, window, f"the breakdown query had no answer within {seconds:g}s")
        except BudgetguardError as exc:
            return affected.unavailable(slo, window, f"the breakdown query failed: {exc}")
        except Exception as exc:  # the breakdown is a nicety: a bug in it must not touch the guard
            log.exception("incident %s: the breakdown query failed unexpectedly", incident.id)
            return affected.unavailable(slo, window, f"the breakdown query failed: {exc!r}")
        if answer.warnings or answer.partial:
            log.warning("incident %s: the breakdown may be incomplete: %s", incident.id, answer.warnings)
        return affected.parse(slo, incident.canary_value, window, answer.samples, counts=counts)
