"""The ports: what the engine needs from the world, as Protocols and plain values.

Adapters (``sources/``, later ``store`` and ``actions/``) implement these; the engine and the tests
only ever see these types, so a fake goes through exactly the seam production uses.
Pure: no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class Sample:
    """One element of an instant-query result.

    ``value`` is ``None`` where the server sent ``NaN`` (Prometheus' "no data" for 0/0): NaN never
    flows into budgetguard's arithmetic. ``+Inf``/``-Inf`` are kept as floats for the caller to judge.
    A scalar result is one Sample with empty labels.
    """

    labels: Mapping[str, str]
    value: float | None


@dataclass(frozen=True)
class QueryResult:
    """The samples of one instant query, with the data-quality signals the server sent beside them.

    ``warnings`` (Prometheus/Thanos ``warnings``) and ``partial`` (VictoriaMetrics ``isPartial``) mean
    the numbers may be incomplete: the engine turns them into an inconclusive verdict, never a healthy one.
    """

    samples: tuple[Sample, ...]
    warnings: tuple[str, ...] = field(default=())
    partial: bool = False


class MetricsSource(Protocol):
    """Answers PromQL instant queries at an explicit evaluation time.

    Raises ``budgetguard.errors.SourceError`` (or a subclass) when the query cannot be answered; never
    returns made-up numbers.
    """

    async def query(self, expr: str, at: datetime) -> QueryResult: ...

    async def aclose(self) -> None: ...
