"""What the HTTP surface reads and calls, as the small interfaces it needs (defined here, where used).

The daemon's read model (``budgetguard.readmodel.ReadModel``) is an ``ApiView``, ``budgetguard.control``
is the ``ControlApi``, the exporter a ``MetricsRenderer`` and the Prometheus source a ``RangeSource``;
the web layer imports none of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from budgetguard.core.policy import Evaluation
from budgetguard.core.ports import RangeResult


class ApiView(Protocol):
    def latest_evaluations(self) -> Sequence[Evaluation]: ...

    def config_problems(self) -> Sequence[str]: ...

    def readiness(self) -> tuple[bool, str]: ...

    def history(self, slo_id: str, since: datetime, limit: int) -> list[dict[str, Any]]: ...

    def verdict_changes(self, slo_id: str, since: datetime) -> list[dict[str, Any]]: ...

    def guard_status(self, slo_id: str) -> tuple[bool, frozenset[str]]:
        """(paused, the canary label values with an open incident) for one SLO."""
        ...

    def budget_series(
        self, slo_id: str, since: datetime, step: timedelta
    ) -> list[tuple[datetime, float | None]]:
        """The budget remaining since ``since``, the last of each ``step``: the status page's lines."""
        ...

    def status(self) -> dict[str, Any]:
        """This replica: whether it leads, which one does (issue 12)."""
        ...


class ControlApi(Protocol):
    """Manual control of the canary guard (``budgetguard.control.Control``); raises ``ControlError``."""

    def incidents(self, state: Any = None, limit: int = 100) -> list[dict[str, Any]]: ...

    def show(self, incident_id: str) -> dict[str, Any]: ...

    def acknowledge(self, incident_id: str, by: str, at: datetime) -> dict[str, Any]: ...

    def resolve(self, incident_id: str, by: str, at: datetime) -> dict[str, Any]: ...

    def retry(self, outbox_id: int, at: datetime) -> dict[str, Any]: ...

    def pause(
        self, slo_id: str, at: datetime, *, until: datetime | None, by: str, reason: str
    ) -> dict[str, Any]: ...

    def resume(self, slo_id: str) -> bool: ...

    def pauses(self, at: datetime) -> list[dict[str, Any]]:
        """The pauses in force at ``at``."""
        ...


class MetricsRenderer(Protocol):
    def render(self, accept: str | None = None) -> tuple[bytes, str]: ...


@runtime_checkable
class PreparedExposition(Protocol):
    """/metrics served from bytes prepared off the event loop (``budgetguard.exporter.prepared``)."""

    async def serve(self, accept: str | None, accept_encoding: str | None) -> tuple[bytes, str, str | None]:
        """(body, content type, content encoding or None)."""
        ...


class RangeSource(Protocol):
    """Range queries, for the recovery estimate of a frozen release (``PrometheusSource`` is one)."""

    async def query_range(
        self, expr: str, start: datetime, end: datetime, step: timedelta
    ) -> RangeResult: ...
