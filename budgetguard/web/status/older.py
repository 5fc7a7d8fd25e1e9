"""What the store is too young to say, read from the metrics source: the part of a chart's range before
the store's first evaluation (a daemon started yesterday has a day of a 30-day window).

One range query per chart, bounded to ``TIMEOUT`` and cached for a while per SLO (and range), so a page
refreshed every few seconds does not ask Prometheus each time. A failed or slow query leaves the older
part empty and is logged: the store's part is drawn all the same.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from budgetguard.core import burndown
from budgetguard.core.burndown import Point
from budgetguard.core.errors import BudgetguardError
from budgetguard.core.policy import Evaluation
from budgetguard.web._ports import RangeSource

log = logging.getLogger(__name__)

TIMEOUT = timedelta(seconds=10)
BUDGET_TTL = timedelta(minutes=5)  # a 30-day line moves little in five minutes
BURN_TTL = timedelta(minutes=1)  # a 1h range's older part does


class OlderThanStore:
    def __init__(self, source: RangeSource | None) -> None:
        self._source = source
        self._budgets: dict[str, tuple[float, list[Point]]] = {}
        self._burns: dict[tuple[str, str], tuple[float, dict[str, list[Point]]]] = {}

    async def budget(self, ev: Evaluation, stored: Sequence[Point]) -> list[Point]:
        """The budget left over the SLO window, when the store's line starts later than the window."""
        slo = ev.slo
        if self._source is None:
            return []
        if stored and stored[0][0] <= ev.at - slo.window + slo.window / burndown.BURNDOWN_POINTS:
            return []
        cached = self._budgets.get(slo.id)
        if cached is not None and time.monotonic() - cached[0] < BUDGET_TTL.total_seconds():
            return cached[1]
        q = burndown.burndown_query(slo, ev.at)
        try:
            result = await asyncio.wait_for(
                self._source.query_range(q.expr, q.start, q.end, q.step), TIMEOUT.total_seconds()
            )
        except (BudgetguardError, TimeoutError) as exc:
            log.warning("status page: cannot read %s's burn-down from the source: %s", slo.id, exc)
            return []
        points: list[Point] = []
        if result.series:
            points = [(at, q.budget(value)) for at, value in result.series[0].points]
        self._budgets[slo.id] = (time.monotonic(), points)
        return points

    async def burn_rates(
        self, ev: Evaluation, range_name: str, start: datetime, records: Sequence[dict[str, Any]]
    ) -> dict[str, list[Point]]:
        """Each tier window's burn rate since ``start``, by window name, when the store's records
        start later than that."""
        slo = ev.slo
        if self._source is None or not slo.tiers:
            return {}
        step = (ev.at - start) / burndown.BURNDOWN_POINTS
        if records and datetime.fromisoformat(records[0]["at"]) <= start + step:
            return {}
        key = (slo.id, range_name)
        cached = self._burns.get(key)
        if cached is not None and time.monotonic() - cached[0] < BURN_TTL.total_seconds():
            return cached[1]
        windows = sorted({w for t in slo.tiers for w in (t.long_window, t.short_window)})
        q = burndown.burn_history_query(slo, windows, start, ev.at)
        try:
            result = await asyncio.wait_for(
                self._source.query_range(q.expr, q.start, q.end, q.step), TIMEOUT.total_seconds()
            )
        except (BudgetguardError, TimeoutError) as exc:
            log.warning("status page: cannot read %s's burn rates from the source: %s", slo.id, exc)
            return {}
        rates = q.burn_rates([(series.labels, series.points) for series in result.series])
        self._burns[key] = (time.monotonic(), rates)
        return rates
