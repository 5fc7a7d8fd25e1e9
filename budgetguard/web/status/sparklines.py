"""Each SLO's budget over its window as a sparkline, read from the store in the background and kept drawn.

The overview never waits for the store: it draws what is cached and asks for what is missing or older
than the time to live. A refresh reads only the steps since the last one it has (steps are aligned to
the epoch, so the older ones stay valid), one SLO at a time, yielding to the event loop between them, so
a thousand SLOs never hold up a gate's answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from budgetguard.core.burndown import Point
from budgetguard.core.errors import BudgetguardError
from budgetguard.core.policy import Evaluation
from budgetguard.web.status.charts import sparkline
from budgetguard.web.status.layout import duration

log = logging.getLogger(__name__)

SPARK_POINTS = 48
SPARK_TTL = timedelta(minutes=5)


class BudgetLine(Protocol):
    def budget_series(self, slo_id: str, since: datetime, step: timedelta) -> list[Point]: ...


@dataclass
class _Spark:
    refreshed: float  # time.monotonic() of the last read
    window: timedelta
    points: list[Point]
    svg: str


class Sparklines:
    """Each SLO's budget over its window, read from the store in the background and kept as SVG.

    The overview never waits for the store: it draws what is cached and asks for what is missing or
    older than ``ttl``. A refresh reads only the buckets since the last one it has (buckets are aligned
    to the epoch, so the older ones stay valid), one SLO at a time, yielding to the event loop between
    them so a thousand SLOs never hold up a gate's answer.
    """

    def __init__(self, view: BudgetLine, ttl: timedelta = SPARK_TTL, points: int = SPARK_POINTS) -> None:
        self._view = view
        self._ttl = ttl.total_seconds()
        self._points = points
        self._cache: dict[str, _Spark] = {}
        self._task: asyncio.Task[None] | None = None
        self.generation = 0  # counts drawn changes: part of the overview's ETag

    def get(self, slo_id: str) -> str | None:
        found = self._cache.get(slo_id)
        return None if found is None else found.svg

    def stale(self, evaluations: Sequence[Evaluation]) -> list[Evaluation]:
        now = time.monotonic()
        out = []
        for ev in evaluations:
            found = self._cache.get(ev.slo.id)
            # An SLO the store has no budget of yet is asked again at once: its first cycle may be done.
            measured = found is not None and any(v is not None for _, v in found.points)
            ttl = self._ttl if measured else 0.0
            if found is None or found.window != ev.slo.window or now - found.refreshed >= ttl:
                out.append(ev)
        return out

    def request(self, evaluations: Sequence[Evaluation]) -> None:
        """Start a background refresh of the stale ones, unless one is running."""
        if self._task is not None and not self._task.done():
            return
        todo = self.stale(evaluations)
        if todo:
            self._task = asyncio.create_task(self.fill(todo), name="status-sparklines")

    async def fill(self, evaluations: Sequence[Evaluation]) -> None:
        for ev in evaluations:
            try:
                self.refresh(ev, datetime.now(tz=UTC))
            except BudgetguardError as exc:
                log.warning("status page: cannot read %s's budget line: %s", ev.slo.id, exc)
            await asyncio.sleep(0)

    def refresh(self, ev: Evaluation, now: datetime) -> None:
        slo = ev.slo
        step = slo.window / self._points
        step_s = step.total_seconds()
        start = datetime.fromtimestamp((now - slo.window).timestamp() // step_s * step_s, tz=UTC)
        found = self._cache.get(slo.id)
        if found is not None and found.window == slo.window and found.points:
            tail = found.points[-1][0]
            since = datetime.fromtimestamp(tail.timestamp() // step_s * step_s, tz=UTC)
            kept = [p for p in found.points if start <= p[0] < since]
        else:
            since, kept = start, []
        points = kept + self._view.budget_series(slo.id, max(since, start), step)
        label = f"budget remaining of {slo.id} over {duration(slo.window)}"
        svg = sparkline(points, now - slo.window, now, label)
        if found is None or found.svg != svg:
            self.generation += 1
        self._cache[slo.id] = _Spark(time.monotonic(), slo.window, points, svg)
