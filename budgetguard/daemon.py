"""The composition root: builds every adapter from the settings and runs the evaluation loop.

APScheduler (3.x, asyncio) runs one evaluation cycle per interval (never two at once, late cycles
coalesced), hourly retention, and a watch on the SLO files. Signals: SIGTERM/SIGINT stop cleanly
(finish or cancel the cycle, flush the store, exit 0); SIGHUP reloads the SLO files. An invalid new set
of files keeps the last good one running and is reported in the logs, the metrics and the API.

After a cycle's decisions are stored and the outbox woken (so a halt is on its way), each incident that
opened for an SLO with ``canary.affected_by`` gets one background query that says who is affected
(``budgetguard.core.affected``); storing its answer releases the notify deliveries held for it. At start-up,
actions that can check their targets (an Istio VirtualService's owners) are asked once, in the
background, and what they say is logged as warnings.

This is the only module that knows which concrete adapters exist.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from budgetguard import __version__, memory
from budgetguard.actions import RESOLVABLE_TYPES, build_action, placeholders_of
from budgetguard.config import Settings, split_listen
from budgetguard.control import Control
from budgetguard.core import affected, guard
from budgetguard.core.canary import Streak
from budgetguard.core.errors import BudgetguardError
from budgetguard.core.guard import Decision, Delivery, Incident, IncidentState
from budgetguard.core.policy import Evaluation
from budgetguard.core.ports import Action, Affected, MetricsSource
from budgetguard.core.spec import SLO
from budgetguard.core.verdict import Verdict
from budgetguard.engine import Engine
from budgetguard.exporter import Exporter
from budgetguard.loader import KnownActions, discover, load_paths
from budgetguard.outbox import OutboxWorker, RetryPolicy
from budgetguard.recording import RecordingEngine
from budgetguard.sources.prometheus import PrometheusConfig, PrometheusSource
from budgetguard.store import Store
from budgetguard.web import HttpServer, create_app

log = logging.getLogger("budgetguard")

STOP_DEADLINE = timedelta(seconds=8)  # under the 10 s Kubernetes-style grace the issue asks for
PRUNE_EVERY = timedelta(hours=1)
# Who is affected (#6): the one breakdown query an opening incident makes waits this long at most.
AFFECTED_QUERY_TIMEOUT = timedelta(seconds=5)
# An incident's notify deliveries wait this long at most for that breakdown, counted from the
# evaluation that opened it: a slow cycle's write, then the query's own bound, with room to spare.
# Then they go out without it (a crash or a hung query delays a page, never loses it).
AFFECTED_HOLD = timedelta(seconds=15)
# How long the start-up checks of actions (a VirtualService's owners) may take in all.
CHECK_TIMEOUT = timedelta(seconds=30)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str, as_json: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if as_json else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("apscheduler", "httpx", "httpcore", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def _fingerprint(paths: Sequence[Path]) -> tuple[tuple[str, int, int], ...]:
    files, _ = discover(paths)
    out = []
    for path in files:
        try:
            stat = path.stat()
        except OSError:
            continue
        out.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(out)


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def exposure_warning(host: str, has_token: bool) -> str | None:
    """A warning when the API is reachable beyond this host without a token, else None."""
    if host in LOOPBACK or host.startswith("127.") or has_token:
        return None
    return (
        "the API is reachable beyond this host without an api_token: anyone who reaches the port can "
        "read every SLO's state; set BUDGETGUARD_API_TOKEN or api_token_file"
    )


@dataclass
class State:
    """What the scheduler writes and the server and exporter read, all in one event loop."""

    slos: list[SLO] = field(default_factory=list)
    latest: dict[str, Evaluation] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    cycles: int = 0


def known_actions(settings: Settings) -> KnownActions:
    """Action names and the placeholders each uses, for checking SLO files at load."""
    return {name: placeholders_of(config) for name, config in settings.actions.items()}


def delivery_of(settings: Settings) -> Delivery:
    return Delivery(
        dry_run=settings.dry_run,
        dry_run_actions=frozenset(name for name, c in settings.actions.items() if c.dry_run),
        resolvable=frozenset(name for name, c in settings.actions.items() if c.type in RESOLVABLE_TYPES),
        affected_hold=AFFECTED_HOLD,
    )


class Daemon:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state = State()
        self._store: Store | None = None
        self._stop = asyncio.Event()
        self._fingerprint: tuple[tuple[str, int, int], ...] = ()
        self._cycle_task: asyncio.Task[None] | None = None
        self._delivery = delivery_of(settings)
        self._actions: dict[str, Action] = {}
        self._outbox: OutboxWorker | None = None
        self._streaks: dict[tuple[str, str], Streak] = {}
        self._last_opened: dict[tuple[str, str], datetime] = {}
        self._source: MetricsSource | None = None  # for the who-is-affected queries
        self._background: set[asyncio.Task[None]] = set()

    # --- views for the exporter and the server ---------------------------------------------------

    def latest_evaluations(self) -> Sequence[Evaluation]:
        return [self.state.latest[slo.id] for slo in self.state.slos if slo.id in self.state.latest]

    def config_errors(self) -> int:
        return len(self.state.problems)

    def config_problems(self) -> Sequence[str]:
        return list(self.state.problems)

    def readiness(self) -> tuple[bool, str]:
        if self.state.cycles == 0:
            return False, "the first evaluation cycle has not finished yet"
        if self._store is None or not self._store.writable():
            return False, "the store is not writable"
        return True, f"{self.state.cycles} cycle(s) done"

    def history(self, slo_id: str, since: datetime, limit: int) -> list[dict[str, Any]]:
        assert self._store is not None
        return self._store.history(slo_id, since, limit=limit)

    def verdict_changes(self, slo_id: str, since: datetime) -> list[dict[str, Any]]:
        assert self._store is not None
        return self._store.verdict_changes(slo_id, since)

    def guard_status(self, slo_id: str) -> tuple[bool, frozenset[str]]:
        """(paused, canary values with an open incident) for the pull gates, read from the store."""
        assert self._store is not None
        paused = slo_id in self._store.pauses(datetime.now(tz=UTC))
        open_ = self._store.incidents(state=IncidentState.OPEN, slo_id=slo_id, limit=10_000)
        return paused, frozenset(i.canary_value for i in open_)

    @property
    def control(self) -> Control:
        assert self._store is not None
        return Control(self._store, self._delivery)

    def control_changed(self) -> None:
        """A manual change may have written outbox rows: deliver them now."""
        if self._outbox is not None:
            self._outbox.wake()

    # --- lifecycle -------------------------------------------------------------------------------

    def load_initial(self) -> bool:
        loaded = load_paths(self.settings.slo_paths, known_actions(self.settings))
        if not loaded.ok:
            for problem in loaded.problems:
                log.error("%s", problem)
            return False
        self.state.slos = loaded.slos
        self._fingerprint = _fingerprint(self.settings.slo_paths)
        memory.settle()
        return True

    def reload(self, why: str) -> None:
        self._fingerprint = _fingerprint(self.settings.slo_paths)
        loaded = load_paths(self.settings.slo_paths, known_actions(self.settings))
        if not loaded.ok:
            self.state.problems = [str(p) for p in loaded.problems]
            for problem in loaded.problems:
                log.error("reload (%s) refused, keeping the last good SLOs: %s", why, problem)
            return
        self.state.problems = []
        ids = {slo.id for slo in loaded.slos}
        self.state.latest = {k: v for k, v in self.state.latest.items() if k in ids}
        if self._store is not None:
            for slo_id, ev in self._store.latest(
                [s for s in loaded.slos if s.id not in self.state.latest]
            ).items():
                self.state.latest[slo_id] = ev
        self.state.slos = loaded.slos
        memory.settle()
        log.info("reloaded %d SLO(s) from %d file(s) (%s)", len(loaded.slos), len(loaded.files), why)

    async def _watch_files(self) -> None:
        if _fingerprint(self.settings.slo_paths) != self._fingerprint:
            self.reload("files changed")

    async def cycle(self) -> None:
        self._cycle_task = asyncio.current_task()
        if self.settings.jitter > timedelta(0):
            await asyncio.sleep(random.uniform(0, self.settings.jitter.total_seconds()))
        slos = list(self.state.slos)
        at = datetime.now(tz=UTC)
        started = time.monotonic()
        with memory.collection_paused():
            evaluations = await self._engine.evaluate_all(slos, at)
        duration = time.monotonic() - started
        for ev in evaluations:
            if ev.verdict is Verdict.ERROR:
                self._exporter.count_source_error(ev.error_kind or "other")
        assert self._store is not None
        decisions, streaks = self._decide(evaluations)

        def write_decisions(tx: Any) -> None:
            for decision in decisions:
                tx.write_decision(decision, at)

        try:
            self._store.record_cycle(evaluations, extra=write_decisions)
        except BudgetguardError:
            # Decisions are not taken until they are stored: the next cycle decides again from the
            # same streaks, so a failed write delays an action by a cycle and never loses it.
            log.exception("could not record the cycle; verdicts are kept in memory and exported")
        else:
            self._streaks = streaks
            self._after_decisions(decisions, evaluations)
        ids = {slo.id for slo in self.state.slos}
        for ev in evaluations:
            if ev.slo.id in ids:
                previous = self.state.latest.get(ev.slo.id)
                if previous is not None and previous.verdict is not ev.verdict:
                    log.info("%s: %s -> %s: %s", ev.slo.id, previous.verdict, ev.verdict, ev.reason)
                if ev.query_mode != "raw" and (previous is None or previous.query_mode != ev.query_mode):
                    level = logging.INFO if ev.query_mode == "recording" else logging.WARNING
                    log.log(level, "%s: read by %s", ev.slo.id, ev.query_mode)
                self.state.latest[ev.slo.id] = ev
        self.state.cycles += 1
        self._exporter.observe_cycle(duration, len(slos))
        log.debug("cycle %d: %d SLO(s) in %.3fs", self.state.cycles, len(slos), duration)

    def _decide(
        self, evaluations: Sequence[Evaluation]
    ) -> tuple[list[Decision], dict[tuple[str, str], Streak]]:
        """What the canaries of this cycle open and resolve (``guard.decide``), not yet stored."""
        streaks = dict(self._streaks)
        canaried = [ev for ev in evaluations if ev.slo.canary is not None]
        if not canaried and not self._store_has_open_incidents():
            return [], streaks
        assert self._store is not None
        try:
            open_incidents = self._store.incidents(state=IncidentState.OPEN, limit=100_000)
            paused = self._store.pauses(datetime.now(tz=UTC))
        except BudgetguardError:
            log.exception("cannot read incidents; no canary decisions this cycle")
            return [], streaks
        by_slo: dict[str, list[Incident]] = {}
        for incident in open_incidents:
            by_slo.setdefault(incident.slo_id, []).append(incident)
        decisions = self._orphans(open_incidents)
        for ev in canaried:
            slo_id = ev.slo.id
            mine = {k: v for k, v in streaks.items() if k[0] == slo_id}
            decision, new = guard.decide(
                ev,
                by_slo.get(slo_id, []),
                mine,
                paused=slo_id in paused,
                delivery=self._delivery,
                last_opened=self._last_opened,
            )
            for key in mine:
                streaks.pop(key, None)
            streaks.update(new)
            for note in decision.notes:
                log.info("%s", note)
            if not decision.empty:
                decisions.append(decision)
        return decisions, streaks

    def _store_has_open_incidents(self) -> bool:
        assert self._store is not None
        try:
            return bool(self._store.incidents(state=IncidentState.OPEN, limit=1))
        except BudgetguardError:
            return False

    def _orphans(self, open_incidents: Sequence[Incident]) -> list[Decision]:
        """Resolve open incidents whose SLO no longer declares a canary (removed, or its block dropped):
        nothing would ever judge them again. Their RESOLVE deliveries follow their own triggers."""
        declared = {slo.id for slo in self.state.slos if slo.canary is not None}
        assert self._store is not None
        decisions = []
        now = datetime.now(tz=UTC)
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
        if any(d.outbox for d in decisions) and self._outbox is not None:
            self._outbox.wake()
        # After the wake-up: the halt is on its way before the breakdown query is even sent.
        by_id = {ev.slo.id: ev for ev in evaluations}
        for decision in decisions:
            for incident in decision.opened:
                ev = by_id.get(incident.slo_id)
                if ev is not None and ev.slo.canary is not None and ev.slo.canary.affected_by:
                    self._in_background(self._read_affected(ev, incident), f"affected-{incident.id}")

    def _in_background(self, work: Any, name: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def settle(self) -> None:
        """Wait for the background work in flight (the breakdown queries, the start-up checks)."""
        while self._background:
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
        if self._store is None:
            return
        try:
            released = self._store.set_affected(incident.id, found, datetime.now(tz=UTC))
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
        if released and self._outbox is not None:
            self._outbox.wake()

    async def _ask_affected(self, ev: Evaluation, incident: Incident, window: timedelta) -> Affected:
        slo = ev.slo
        if self._source is None:
            return affected.unavailable(slo, window, "no metrics source to ask")
        try:
            expr = affected.query(slo, window)
            counts = affected.counts_events(slo, window)
        except ValueError as exc:
            return affected.unavailable(slo, window, f"cannot break the errors down: {exc}")
        seconds = AFFECTED_QUERY_TIMEOUT.total_seconds()
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

    async def _check_actions(self) -> None:
        """Once, at start-up: what each action with a ``check`` has to say about its targets (an Istio
        VirtualService that Argo Rollouts or Flagger owns, say). Warnings, never a refusal."""
        for name, action in self._actions.items():
            check = getattr(action, "check", None)
            if not callable(check):
                continue
            contexts = [
                guard.context(slo, slo.canary.label, "", slo.canary.baseline)
                for slo in self.state.slos
                if slo.canary is not None and name in slo.canary.actions
            ]
            if not contexts:
                continue
            try:
                async with asyncio.timeout(CHECK_TIMEOUT.total_seconds()):
                    warnings = await check(contexts)
            except Exception:  # a check is advice: its failure must not stop the daemon
                log.warning("checking action %s failed", name, exc_info=True)
                continue
            for warning in warnings:
                log.warning("%s", warning)

    def _prune(self) -> None:
        assert self._store is not None
        report = self._store.prune(datetime.now(tz=UTC), self.settings.retention_raw, self.settings.retention)
        log.info("retention: %s", report)

    async def run(self) -> int:
        if not self.load_initial():
            log.error("not starting: fix the SLO files above (budgetguard check lists the problems)")
            return 2
        settings = self.settings
        prom = settings.prometheus
        try:
            source = PrometheusSource(
                PrometheusConfig(
                    url=prom.url,
                    timeout=prom.timeout,
                    max_concurrency=prom.max_concurrency,
                    tenant=prom.tenant,
                    bearer_token=prom.bearer(),
                    basic_auth=prom.basic_auth(),
                    ca_file=prom.ca_file,
                    verify_tls=prom.verify_tls,
                    headers=prom.headers,
                    partial_response=prom.partial_response,
                    compression=prom.compression,
                )
            )
            self._store = Store(settings.db)
            api_token = settings.api_token_value()
            self._actions = {name: build_action(name, config) for name, config in settings.actions.items()}
            self._last_opened = self._store.last_opened()
            self._source = source
        except BudgetguardError as exc:
            log.error("not starting: %s", exc)
            return 2
        delivery = settings.delivery
        self._outbox = OutboxWorker(
            self._store,
            self._actions,
            retry=RetryPolicy(delivery.backoff_base, delivery.backoff_max, delivery.give_up_after),
            concurrency=delivery.concurrency,
            on_result=lambda action, outcome: self._exporter.count_delivery(action, str(outcome)),
        )
        self._engine: Engine | RecordingEngine = (
            RecordingEngine(source) if settings.query_mode == "recording" else Engine(source)
        )
        self._exporter = Exporter(self, version=__version__)
        self.state.latest = self._store.latest(self.state.slos)
        host, port = split_listen(settings.listen)
        warning = exposure_warning(host, api_token is not None)
        if warning:
            log.warning("%s (listening on %s)", warning, settings.listen)
        # Signals are ours from before the server starts: a SIGTERM at any moment stops cleanly.
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: self.reload("SIGHUP"))
        app = create_app(
            self,
            self._exporter,
            api_token,
            control=lambda: self.control,
            on_change=self.control_changed,
            history=source,
        )
        server = HttpServer(app, host, port)
        try:
            await server.start()
        except (OSError, SystemExit) as exc:
            log.error("not starting: cannot listen on %s (%s)", settings.listen, exc)
            self._store.close()
            await source.aclose()
            await self._close_actions()
            return 2
        outbox_stop = asyncio.Event()
        outbox_task = asyncio.create_task(self._outbox.run(outbox_stop), name="outbox")
        self._in_background(self._check_actions(), "check-actions")

        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.add_job(
            self.cycle,
            IntervalTrigger(seconds=settings.interval.total_seconds()),
            id="evaluate",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(settings.misfire_grace.total_seconds())),
            next_run_time=datetime.now(tz=UTC),
        )
        scheduler.add_job(
            self._watch_files,
            IntervalTrigger(seconds=settings.reload_poll.total_seconds()),
            id="watch",
            max_instances=1,
            coalesce=True,
        )
        scheduler.add_job(
            self._prune,
            IntervalTrigger(seconds=PRUNE_EVERY.total_seconds()),
            id="prune",
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(tz=UTC),
        )
        scheduler.start()
        log.info(
            "budgetguard %s: %d SLO(s), every %s, source %s, listening on %s",
            __version__,
            len(self.state.slos),
            settings.interval,
            prom.url,
            settings.listen,
        )

        await self._stop.wait()
        log.info("stopping")
        scheduler.shutdown(wait=False)
        task = self._cycle_task
        if task is not None and not task.done():
            # let the running cycle finish if it can, so its verdicts are recorded
            done, _ = await asyncio.wait({task}, timeout=STOP_DEADLINE.total_seconds() / 2)
            if not done:
                task.cancel()
        outbox_stop.set()
        # Deliveries in flight may finish; one cut short stays pending and goes out after the restart.
        _, late = await asyncio.wait(
            {outbox_task, asyncio.ensure_future(self._outbox.drain())},
            timeout=STOP_DEADLINE.total_seconds() / 4,
        )
        for task in late:
            task.cancel()
        # A breakdown cut short leaves its held notifications to go out when their hold ends.
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*list(self._background), return_exceptions=True)
        await server.stop()
        await source.aclose()
        await self._close_actions()
        self._store.close()
        log.info("stopped")
        return 0

    async def _close_actions(self) -> None:
        for action in self._actions.values():
            try:
                await action.aclose()
            except Exception:  # closing one client must not keep the others open
                log.warning("closing action %s failed", action.name, exc_info=True)
