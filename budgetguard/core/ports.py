"""The ports: what the engine needs from the world, as Protocols and plain values.

Adapters (``sources/``, later ``store`` and ``actions/``) implement these; the engine and the tests
only ever see these types, so a fake goes through exactly the seam production uses.
Pure: no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple, Protocol


class Sample(NamedTuple):
    """One element of an instant-query result.

    ``value`` is ``None`` where the server sent ``NaN`` (Prometheus' "no data" for 0/0): NaN never
    flows into budgetguard's arithmetic. ``+Inf``/``-Inf`` are kept as floats for the caller to judge.
    A scalar result is one Sample with empty labels.

    A named tuple rather than a frozen dataclass: a large answer holds ~20,000 of them (recording-rule
    mode at 10,000 SLOs), and a tuple is made about twice as fast and is a third of the size.
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


@dataclass(frozen=True)
class RangeSeries:
    """One series of a range query: its labels and its points, oldest first (``None`` where NaN)."""

    labels: Mapping[str, str]
    points: tuple[tuple[datetime, float | None], ...]


@dataclass(frozen=True)
class RangeResult:
    """The series of one range query, with the same data-quality signals as ``QueryResult``."""

    series: tuple[RangeSeries, ...]
    warnings: tuple[str, ...] = field(default=())
    partial: bool = False


class MetricsSource(Protocol):
    """Answers PromQL instant queries at an explicit evaluation time.

    Raises ``budgetguard.core.errors.SourceError`` (or a subclass) when the query cannot be answered; never
    returns made-up numbers.
    """

    async def query(self, expr: str, at: datetime) -> QueryResult: ...

    async def aclose(self) -> None: ...


# --- actions: what the engine asks deployment tools and notifiers to do --------------------------


class EventKind(StrEnum):
    TRIGGER = "trigger"  # an incident opened: halt, page, notify
    RESOLVE = (
        "resolve"  # the incident resolved: tell the targets that understand it (PagerDuty, Alertmanager)
    )


@dataclass(frozen=True)
class AffectedShare:
    """One slice of a canary's errors: label values (one per ``by`` label, or a single label's value),
    the errors in it over the window, and its share of all the canary's errors there (0..1)."""

    labels: Mapping[str, str]
    errors: float
    share: float


@dataclass(frozen=True)
class Affected:
    """Who a burning canary hurts: its errors over ``window`` broken down by the labels the SLO names
    (``canary.affected_by``), read once when the incident opens.

    ``slices`` are combinations of every ``by`` label, ``top`` each label's values on their own; both
    largest first and cut to a few. Without a breakdown (the query failed, found no errors) both are
    empty and ``note`` says why.
    """

    by: tuple[str, ...]
    window: timedelta
    errors: float
    slices: tuple[AffectedShare, ...] = ()
    top: Mapping[str, tuple[AffectedShare, ...]] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class ActionRequest:
    """One delivery of one incident's event to one action, exactly as the outbox stored it.

    ``idempotency_key`` is stable for (incident, action, event): a retry, or a redelivery after a
    crash, carries the same key, so targets that deduplicate (Standard Webhooks ``webhook-id``,
    PagerDuty ``dedup_key``) see one event. ``context`` holds what names are templated from: the
    SLO's labels plus ``service``, ``slo``, ``canary_label``, ``canary``, ``baseline``. ``affected``
    is the incident's who-is-affected slice, filled in from the incident when the outbox reads the
    entry for delivery (None until it is known, and for SLOs without ``affected_by``).
    """

    event: EventKind
    idempotency_key: str
    incident_id: str
    service: str
    slo: str
    reason: str
    at: datetime
    canary_label: str | None = None
    canary_value: str | None = None
    baseline: str | None = None
    burn_rates: Mapping[str, float | None] = field(default_factory=dict)
    events: float | None = None
    context: Mapping[str, str] = field(default_factory=dict)
    affected: Affected | None = None


class ActionOutcome(StrEnum):
    DELIVERED = "delivered"  # the target accepted it
    ALREADY_DONE = "already_done"  # the target was already where we wanted it (aborted, promoted, off)
    RETRY = "retry"  # transient: network, timeout, 5xx, 408/409/425/429 (honour retry_after)
    FAILED = "failed"  # permanent: other 4xx, a missing object, bad credentials; never retried


@dataclass(frozen=True)
class ActionResult:
    outcome: ActionOutcome
    detail: str  # what the target said, for the incident's log; never contains secrets
    status: int | None = None
    retry_after: timedelta | None = None


class Action(Protocol):
    """A push target: a deployment tool to halt, a flag to kill, a pager or chat to notify.

    ``deliver`` never raises for the target's answers or network faults: it classifies them into an
    ``ActionResult`` so the outbox can decide to retry, give up or record success.
    """

    name: str

    async def deliver(self, request: ActionRequest) -> ActionResult: ...

    async def aclose(self) -> None: ...
