"""``Store``: the SQLite backend, one file opened once per process, behind the store's public methods.

A thin front: each method hands its work to the room that owns it (``history``, ``retention``,
``incidents``, ``deliveries``) over the one ``Connection``. The method names and signatures here are
the store's contract; the PostgreSQL backend implements the same ones, and the interfaces its callers
depend on are listed in the package docstring.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from budgetguard.core.guard import Decision, Incident, IncidentState
from budgetguard.core.policy import Evaluation
from budgetguard.core.ports import Affected
from budgetguard.core.spec import SLO
from budgetguard.store import deliveries, history, incidents, retention
from budgetguard.store.connection import DEFAULT_BUSY_TIMEOUT, Connection, Transaction
from budgetguard.store.deliveries import OutboxRow, OutboxStatus
from budgetguard.store.retention import KEEP_RETENTION, RAW_RETENTION, THIN_RETENTION, PruneReport
from budgetguard.store.schema import MIGRATIONS, Migration


class Store:
    """One SQLite file, opened once per process; its methods may be called from several threads.

    A lock serialises them, so ``write_problem()`` from the HTTP thread waits for a cycle's transaction
    rather than failing on it.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout: timedelta = DEFAULT_BUSY_TIMEOUT,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        if [m.version for m in migrations] != list(range(1, len(migrations) + 1)):
            raise ValueError("migrations must be numbered 1, 2, 3, ... in order")
        self.path = Path(path)
        self._db = Connection(self.path, busy_timeout, migrations)

    # -- writing -----------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One write transaction: committed when the block ends, rolled back if it raises.

        ``BEGIN IMMEDIATE`` takes the write lock up front, so a transaction that reads before it
        writes waits for another writer instead of failing halfway. Transactions do not nest.
        """
        with self._db.transaction() as tx:
            yield tx

    def record_cycle(
        self,
        evaluations: Sequence[Evaluation],
        extra: Callable[[Transaction], object] | None = None,
        *,
        pending: Sequence[history.Pending] | None = None,
    ) -> None:
        """Store one cycle in one transaction: a row per evaluation, a change row per new verdict.

        A verdict is a change when it differs from the SLO's most recent stored one; an SLO's first
        evaluation is a change from ``None``. ``extra`` runs inside the same transaction, after the
        evaluations: if it raises, nothing of the cycle is stored. Records are serialised before the
        write lock is taken, so the lock is held only for the inserts; ``pending`` is them serialised
        already (``history.prepare`` of these evaluations, by a cycle worker process).
        """
        if pending is None:
            pending = history.prepare(evaluations)
        with self._db.transaction() as tx:
            history.write_cycle(tx, pending)
            if extra is not None:
                extra(tx)

    def prune(
        self,
        now: datetime,
        raw_for: timedelta = RAW_RETENTION,
        keep_for: timedelta = KEEP_RETENTION,
        thin_after: timedelta = THIN_RETENTION,
    ) -> PruneReport:
        """Keep the file bounded: downsample after ``raw_for`` (hourly after ``thin_after``), delete after
        ``keep_for``, give space back (``retention.prune``)."""
        return retention.prune(self._db, now, raw_for, keep_for, thin_after)

    # -- reading -----------------------------------------------------------------------------------

    def latest(self, slos: Sequence[SLO]) -> dict[str, Evaluation]:
        """The last stored evaluation of each SLO, by ``slo.id`` (``history.latest``)."""
        return history.latest(self._db, slos)

    def history(
        self,
        slo_id: str,
        since: datetime,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Records of one SLO in [``since``, ``until``), oldest first, as stored (``history.history``)."""
        return history.history(self._db, slo_id, since, until, limit)

    def budget_series(
        self, slo_id: str, since: datetime, step: timedelta
    ) -> list[tuple[datetime, float | None]]:
        """One SLO's budget remaining, the last of each ``step`` (``history.budget_series``)."""
        return history.budget_series(self._db, slo_id, since, step)

    def verdict_changes(self, slo_id: str | None, since: datetime) -> list[dict[str, Any]]:
        """Verdict changes at or after ``since``, oldest first (``history.verdict_changes``)."""
        return history.verdict_changes(self._db, slo_id, since)

    # -- incidents, outbox and pauses --------------------------------------------------------------

    def write_decision(self, decision: Decision, now: datetime) -> None:
        """A decision taken outside a cycle (a manual resolve), in a transaction of its own."""
        with self._db.transaction() as tx:
            incidents.write_decision(tx, decision, now)

    def incidents(
        self, *, state: IncidentState | None = None, slo_id: str | None = None, limit: int = 100
    ) -> list[Incident]:
        """Incidents, newest first; open ones only with ``state=IncidentState.OPEN``."""
        return incidents.incidents(self._db, state=state, slo_id=slo_id, limit=limit)

    def incident(self, incident_id: str) -> Incident | None:
        return incidents.incident(self._db, incident_id)

    def last_opened(self) -> dict[tuple[str, str], datetime]:
        """When an incident last opened for each (SLO, canary value): the cooldown across restarts."""
        return incidents.last_opened(self._db)

    def acknowledge(self, incident_id: str, by: str, at: datetime) -> Incident | None:
        return incidents.acknowledge(self._db, incident_id, by, at)

    def set_affected(self, incident_id: str, affected: Affected, now: datetime) -> int:
        """Store who is affected; release the deliveries held for it (``incidents.set_affected``)."""
        return incidents.set_affected(self._db, incident_id, affected, now)

    def outbox(self, *, incident_id: str | None = None, limit: int = 100) -> list[OutboxRow]:
        """Deliveries, oldest first, of one incident or of all."""
        return deliveries.deliveries(self._db, incident_id=incident_id, limit=limit)

    def due(self, now: datetime, limit: int = 50) -> list[OutboxRow]:
        """Pending deliveries due by ``now``, and delivered triggers of open incidents due a resend."""
        return deliveries.due(self._db, now, limit)

    def claim_due(
        self, now: datetime, *, holder: str, hold_for: timedelta, limit: int = 50
    ) -> list[OutboxRow]:
        """Due rows, each claimed by ``holder`` for ``hold_for`` (``deliveries.claim_due``)."""
        return deliveries.claim_due(self._db, now, holder=holder, hold_for=hold_for, limit=limit)

    def next_due(self) -> datetime | None:
        """When the next delivery or resend falls due, or None when nothing waits."""
        return deliveries.next_due(self._db)

    def record_attempt(
        self,
        outbox_id: int,
        *,
        status: OutboxStatus,
        at: datetime,
        last_status: int | None,
        detail: str,
        next_attempt_at: datetime | None = None,
        resend_at: datetime | None = None,
        counts: bool = True,
    ) -> None:
        """What one delivery attempt came to. ``counts=False`` for a resend, which is not a new attempt."""
        deliveries.record_attempt(
            self._db,
            outbox_id,
            status=status,
            at=at,
            last_status=last_status,
            detail=detail,
            next_attempt_at=next_attempt_at,
            resend_at=resend_at,
            counts=counts,
        )

    def retry(self, outbox_id: int, now: datetime) -> tuple[OutboxRow | None, bool]:
        """Put a failed delivery back in line, due now (``deliveries.retry``)."""
        return deliveries.retry(self._db, outbox_id, now)

    def pause(self, slo_id: str, at: datetime, *, until: datetime | None, by: str, reason: str) -> None:
        incidents.pause(self._db, slo_id, at, until=until, by=by, reason=reason)

    def resume(self, slo_id: str) -> bool:
        return incidents.resume(self._db, slo_id)

    def pauses(self, now: datetime) -> dict[str, dict[str, Any]]:
        """SLOs paused at ``now``: by id, with paused_at, until, by and reason (times as ISO text)."""
        return incidents.pauses(self._db, now)

    # -- health and lifecycle ----------------------------------------------------------------------

    def writable(self) -> bool:
        """Whether a real write commits now (for /readyz)."""
        return self._db.writable()

    def write_problem(self) -> str | None:
        """None when a real write commits now, else why not (``connection.Database.write_problem``)."""
        return self._db.write_problem()

    def close(self) -> None:
        """Checkpoint the WAL into the file and close; closing twice is harmless."""
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
