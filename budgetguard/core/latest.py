"""The latest evaluation of every declared SLO, indexed by SLO id and by service (#14).

The gates and the JSON API answer questions about one SLO or one service; scanning every SLO for each
question made an answer's cost grow with the fleet (22 ms at 1,000 SLOs where one SLO took 4 ms). The
daemon builds one ``LatestEvaluations`` per change (a finished cycle, a reload, a restart), once, and
readers look things up in it. It is never changed after it is built, so a reader on another thread
(the /metrics renderer) sees one consistent cycle without a lock.

It is a ``Sequence[Evaluation]`` as well, in the order the SLOs are declared, so whoever only wants the
list (the exporter, ``GET /api/v1/slos``) takes it as it is. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import overload

from budgetguard.core.policy import Evaluation


class LatestEvaluations(Sequence[Evaluation]):
    """One evaluation per SLO id (the last given wins), with lookups by id and by service."""

    __slots__ = ("_by_id", "_by_service", "_ordered")

    def __init__(self, evaluations: Iterable[Evaluation] = ()) -> None:
        by_id: dict[str, Evaluation] = {}
        for ev in evaluations:
            slo_id = ev.slo.id  # a property that formats a string: read once
            by_id.pop(slo_id, None)  # a repeated id moves to its last position
            by_id[slo_id] = ev
        by_service: dict[str, list[Evaluation]] = {}
        for ev in by_id.values():
            by_service.setdefault(ev.slo.service, []).append(ev)
        self._by_id = by_id
        self._by_service = {service: tuple(evs) for service, evs in by_service.items()}
        self._ordered = tuple(by_id.values())

    @classmethod
    def of(cls, evaluations: Sequence[Evaluation]) -> LatestEvaluations:
        """``evaluations`` itself when it is already indexed, else an index of it (built in O(n))."""
        return evaluations if isinstance(evaluations, LatestEvaluations) else cls(evaluations)

    def get(self, slo_id: str) -> Evaluation | None:
        return self._by_id.get(slo_id)

    def of_service(self, service: str) -> tuple[Evaluation, ...]:
        """The service's evaluations, in declaration order; empty for a service with none."""
        return self._by_service.get(service, ())

    def __len__(self) -> int:
        return len(self._ordered)

    @overload
    def __getitem__(self, index: int) -> Evaluation: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Evaluation]: ...

    def __getitem__(self, index: int | slice) -> Evaluation | Sequence[Evaluation]:
        return self._ordered[index]

    def __repr__(self) -> str:
        return f"LatestEvaluations({len(self)} SLOs, {len(self._by_service)} services)"
