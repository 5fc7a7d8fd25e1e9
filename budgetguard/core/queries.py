"""Query planning: which PromQL to send for an SLO, and how to read the answers back.

Every window of an SLO needs its bad and total events (or its error ratio). Rather than one HTTP
request per window and part (16 for the default tiers), the planner tags each part with a
``label_replace`` and joins them with ``or`` into a single query, evaluated by the server at one
instant. That keeps all windows of an SLO consistent with each other and costs one round trip.
A user query that cannot be wrapped (a scalar expression, say) makes the combined query fail with a
``QueryError``; the engine then asks part by part, which also pins the server's message on the exact
part and window at fault.

Pure: builds strings and reads samples, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from budgetguard.core.calendar import query_range
from budgetguard.core.durations import format_duration
from budgetguard.core.ports import Sample
from budgetguard.core.promql import WINDOW_PLACEHOLDER
from budgetguard.core.spec import SLO, LatencySLI

# The label that tags each part of a combined query. An ordinary label name: the API returns it as is.
PART_LABEL = "budgetguard_query"


class Part(StrEnum):
    ERRORS = "errors"  # bad events per second over the window
    TOTAL = "total"  # all events per second over the window
    GOOD = "good"  # good events per second (latency SLIs: requests under the threshold)
    RATIO = "ratio"  # the error ratio itself (raw SLIs)
    # The canary latency guard's histogram, per version, over its own window (not an SLI part).
    LATENCY_FAST = "latency_fast"  # requests at or under the threshold (the bucket at le)
    LATENCY_TOTAL = "latency_total"  # all requests (_count)


LATENCY_PARTS = frozenset({Part.LATENCY_FAST, Part.LATENCY_TOTAL})


@dataclass(frozen=True)
class PlannedQuery:
    window: timedelta
    part: Part
    expr: str
    counts: bool = False  # the expression returns events in the window (increase), not a per-second rate
    # The range the expression reads when it is not ``window``: a calendar SLO's window is its period
    # so far (``calendar.query_range``), tagged by its nominal length so answers keep one key.
    span: timedelta | None = None
    # "errors:5m": the part's key in answers. Stored, not derived on each read: a cycle of 10,000 SLOs
    # reads it hundreds of thousands of times.
    tag: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tag", f"{self.part.value}:{format_duration(self.window)}")


def by_window(planned: Iterable[PlannedQuery]) -> dict[timedelta, dict[Part, PlannedQuery]]:
    """The SLI parts of each window (the canary latency guard's parts left out), for ``engine._observe``."""
    out: dict[timedelta, dict[Part, PlannedQuery]] = {}
    for query in planned:
        if query.part not in LATENCY_PARTS:
            out.setdefault(query.window, {})[query.part] = query
    return out


def render(template: str, window: timedelta) -> str:
    """Replace ``{{.window}}`` (any spacing) with the window as a Prometheus duration."""
    return format_duration(window).join(WINDOW_PLACEHOLDER.split(template))


def _returns_counts(template: str) -> bool:
    # Sloth-style queries are rates; a query written with increase() yields events per window instead.
    return bool(re.search(r"\bincrease\s*\(", template)) and not re.search(r"\brate\s*\(", template)


def le_matcher(threshold_seconds: float) -> str:
    """A matcher for the bucket at ``threshold_seconds`` whatever client wrote it.

    client_golang writes ``le="1"``, client_python ``le="1.0"``, and Prometheus 3 normalises integer
    values to ``"1.0"`` (reference §1.6), so match every spelling of the same number.
    """
    spellings = {repr(float(threshold_seconds))}
    as_float = float(threshold_seconds)
    if as_float.is_integer():
        spellings.add(str(int(as_float)))
    alternatives = "|".join(sorted(re.escape(s) for s in spellings))
    return f'le=~"{alternatives}"'.replace("\\", "\\\\")


def _selector(*matchers: str) -> str:
    present = [m for m in matchers if m]
    return "{" + ", ".join(present) + "}"


def latency_templates(sli: LatencySLI, by: str | None = None) -> tuple[str, str]:
    """(good, total) query templates for a classic-histogram latency SLI, summed by label ``by`` if given."""
    total_sum = f"sum by ({by}) " if by else "sum"
    good = (
        f"{total_sum}(rate({sli.metric}_bucket{_selector(sli.selector, le_matcher(sli.threshold_seconds))}"
        "[{{.window}}]))"
    )
    total = f"{total_sum}(rate({sli.metric}_count{_selector(sli.selector)}[{{{{.window}}}}]))"
    return good, total


def templates(slo: SLO) -> dict[Part, str]:
    """The query template of each part the SLO's SLI needs."""
    sli = slo.sli
    if sli.events is not None:
        return {Part.ERRORS: sli.events.error_query, Part.TOTAL: sli.events.total_query}
    if sli.raw is not None:
        return {Part.RATIO: sli.raw.error_ratio_query}
    assert sli.latency is not None  # the SLI model guarantees exactly one kind
    good, total = latency_templates(sli.latency, None if slo.canary is None else slo.canary.label)
    return {Part.GOOD: good, Part.TOTAL: total}


def rendered(
    slo: SLO, windows: Iterable[timedelta] | None = None, period_range: timedelta | None = None
) -> list[tuple[timedelta, Part, str, bool]]:
    """``(window, part, query, counts)`` for every part an SLO needs, shortest window first: what ``plan``
    wraps and what ``rules.rules_hash`` digests (for every SLO of a recording-mode cycle's first run, so
    each template is split once rather than rendered window by window). ``period_range`` replaces the
    SLO window's range (a calendar SLO's period so far)."""
    chosen = slo.windows() if windows is None else tuple(windows)
    ranges = [period_range if period_range is not None and w == slo.window else w for w in chosen]
    parts = []
    for part, template in templates(slo).items():
        pieces = WINDOW_PLACEHOLDER.split(template)
        parts.append((part, [format_duration(r).join(pieces) for r in ranges], _returns_counts(template)))
    return [
        (window, part, exprs[index], counts)
        for index, window in enumerate(chosen)
        for part, exprs, counts in parts
    ]


def plan(
    slo: SLO, windows: Iterable[timedelta] | None = None, *, period_range: timedelta | None = None
) -> tuple[PlannedQuery, ...]:
    """Every (window, part) query an SLO needs, shortest window first; ``period_range`` as in ``rendered``."""
    return tuple(
        PlannedQuery(
            window,
            part,
            expr,
            counts,
            span=period_range if period_range is not None and window == slo.window else None,
        )
        for window, part, expr, counts in rendered(slo, windows, period_range)
    )


def calendar_range(slo: SLO, at: datetime) -> timedelta | None:
    """The range of a calendar SLO's window at ``at`` (the time since its period began); None if rolling."""
    period = slo.period(at)
    return None if period is None else query_range(period, at)


def plan_latency(slo: SLO) -> tuple[PlannedQuery, ...]:
    """The canary latency guard's two queries, summed by the canary label over the guard's window."""
    if slo.canary is None or slo.canary.latency is None:
        return ()
    guard = slo.canary.latency
    fast, total = latency_templates(guard, slo.canary.label)
    return tuple(
        PlannedQuery(window=guard.measured_over, part=part, expr=render(template, guard.measured_over))
        for part, template in ((Part.LATENCY_FAST, fast), (Part.LATENCY_TOTAL, total))
    )


def combine(queries: Sequence[PlannedQuery]) -> str:
    """One PromQL expression that returns every planned part, each tagged with ``PART_LABEL``."""
    return " or ".join(f'label_replace(({q.expr}), "{PART_LABEL}", "{q.tag}", "", "")' for q in queries)


def split(queries: Sequence[PlannedQuery], samples: Iterable[Sample]) -> dict[str, list[Sample]]:
    """Sort a combined answer back into parts, keyed by tag, with the tagging label removed."""
    out: dict[str, list[Sample]] = {q.tag: [] for q in queries}
    for sample in samples:
        tag = sample.labels.get(PART_LABEL)
        if tag in out:
            labels: Mapping[str, str] = {k: v for k, v in sample.labels.items() if k != PART_LABEL}
            out[tag].append(Sample(labels=labels, value=sample.value))
    return out
