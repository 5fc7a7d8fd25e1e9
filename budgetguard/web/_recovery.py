"""When a frozen release's budget is expected back, estimated from a range query and cached.

The estimate itself is pure (``budgetguard.core.freeze``); here it meets the metrics source: at most
one range query every few minutes per SLO, and never holding a gate's answer more than a couple of
seconds (a slow source leaves it "being estimated").
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

from budgetguard.core import freeze
from budgetguard.core.errors import BudgetguardError
from budgetguard.core.freeze import Recovery
from budgetguard.core.policy import Evaluation
from budgetguard.web._ports import RangeSource

log = logging.getLogger("budgetguard.web")


class RecoveryEstimates:
    """When each frozen SLO's budget is expected back, read from the source at most every ``ttl``.

    A gate never waits more than ``wait`` for a fresh estimate: a slow source answers "being estimated"
    and the estimate lands in the cache for the next ask (Flagger and Argo ask every interval).
    """

    def __init__(
        self, source: RangeSource | None, ttl: timedelta = timedelta(minutes=5), wait: float = 2.0
    ) -> None:
        self._source = source
        self._ttl = ttl.total_seconds()
        self._wait = wait
        self._done: dict[tuple[object, ...], tuple[float, Recovery]] = {}
        self._running: dict[tuple[object, ...], asyncio.Task[Recovery]] = {}

    async def get(self, ev: Evaluation) -> Recovery:
        calendar = freeze.calendar_recovery(ev)
        if calendar is not None:  # a calendar budget resets when its period ends: nothing to read
            return calendar
        if self._source is None:
            return Recovery(None, "not estimated: no metrics source to read the window's errors from")
        # A reloaded SLO with another objective, window or floor is another estimate.
        policy = ev.slo.freeze
        key = (ev.slo.id, ev.slo.objective, ev.slo.window, None if policy is None else policy.below)
        cached = self._done.get(key)
        if cached is not None and time.monotonic() - cached[0] < self._ttl:
            return cached[1]
        task = self._running.get(key)
        if task is None:
            task = asyncio.create_task(self._estimate(self._source, ev, key), name=f"recovery {ev.slo.id}")
            self._running[key] = task
        try:
            return await asyncio.wait_for(asyncio.shield(task), self._wait)
        except TimeoutError:
            return Recovery(None, "still being estimated from the metrics source; ask again shortly")

    async def _estimate(self, source: RangeSource, ev: Evaluation, key: tuple[object, ...]) -> Recovery:
        query = freeze.recovery_query(ev.slo, ev.at)
        try:
            result = await source.query_range(query.expr, query.start, query.end, query.step)
            recovery = freeze.estimate_recovery(ev, query, result.series, ev.at)
            if result.warnings or result.partial:
                note = f"{recovery.reason} (from partial data)"
                recovery = Recovery(recovery.at, note, recovery.upper_bound)
        except BudgetguardError as exc:
            log.warning("cannot estimate when %s's budget recovers: %s", ev.slo.id, exc)
            recovery = Recovery(None, f"not estimated: the metrics source failed ({exc})")
        except Exception as exc:  # the estimate is an extra: a bug in it must not fail the gate
            log.exception("estimating when %s's budget recovers failed unexpectedly", ev.slo.id)
            recovery = Recovery(None, f"not estimated: internal error ({exc!r})")
        finally:
            self._running.pop(key, None)
        self._done[key] = (time.monotonic(), recovery)
        return recovery
