"""One evaluation cycle: ask the source about every SLO at one instant and judge each.

Written against the ports only (``MetricsSource``), so tests and benchmarks drive it with any source.
Each SLO is isolated: a failing query, or a bug while reading its answer, gives that SLO an ``error``
verdict with the reason, and the others are unaffected. All windows of one SLO are evaluated at the
same instant ``at``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from budgetguard.core import budget, canary, policy, queries
from budgetguard.core.canary import Counts
from budgetguard.core.durations import format_duration
from budgetguard.core.errors import QueryError, SourceError
from budgetguard.core.policy import Evaluation, Observation
from budgetguard.core.ports import MetricsSource, QueryResult, Sample
from budgetguard.core.queries import Part, PlannedQuery
from budgetguard.core.spec import SLO, CanaryPolicy
from budgetguard.core.verdict import ErrorKind

log = logging.getLogger(__name__)


class _ShapeError(Exception):
    """An answer that cannot be one SLO's number (several series, a missing bucket)."""


@dataclass(frozen=True)
class _Answers:
    by_tag: dict[str, list[Sample]]
    warnings: tuple[str, ...]


class Engine:
    """Evaluates SLOs against a ``MetricsSource``."""

    def __init__(self, source: MetricsSource, *, combine: bool = True) -> None:
        """``combine=False`` sends every window and part as its own query (for comparison and debugging)."""
        self._source = source
        self._combine = combine

    async def evaluate_all(self, slos: Sequence[SLO], at: datetime) -> list[Evaluation]:
        """Evaluate every SLO at ``at`` concurrently (the source bounds the requests in flight)."""
        return list(await asyncio.gather(*(self.evaluate(slo, at) for slo in slos)))

    async def evaluate(self, slo: SLO, at: datetime) -> Evaluation:
        planned = queries.plan(slo, period_range=queries.calendar_range(slo, at)) + queries.plan_latency(slo)
        try:
            answers = await self._ask(planned, at)
            observations = observe_windows(
                slo, queries.by_window(planned), answered_values(answers.by_tag, slo.canary is not None)
            )
            canaries = _judge_canaries(slo, planned, answers.by_tag)
        except SourceError as exc:
            return policy.failed(slo, at, f"source error ({exc.reason}): {exc}", exc.reason)
        except _ShapeError as exc:
            return policy.failed(slo, at, str(exc), ErrorKind.QUERY_SHAPE)
        except Exception as exc:  # the per-SLO isolation point: one SLO's surprise must not stop the rest
            log.exception("evaluating %s failed unexpectedly", slo.id)
            return policy.failed(slo, at, f"internal error while evaluating: {exc!r}", ErrorKind.INTERNAL)
        return policy.evaluate(slo, observations, at, answers.warnings, canaries=canaries)

    async def observe_period(self, slo: SLO, at: datetime) -> tuple[Observation, tuple[str, ...]]:
        """A calendar SLO's period so far, with raw queries, and the source's warnings: recording mode
        reads its other windows from recorded series, but no rule can record "since the month began".
        Raises ``SourceError`` or ``_ShapeError`` as ``evaluate`` would report them."""
        planned = queries.plan(slo, (slo.window,), period_range=queries.calendar_range(slo, at))
        answers = await self._ask(planned, at)
        value_of = answered_values(answers.by_tag, slo.canary is not None)
        return _observe(slo, slo.window, queries.by_window(planned)[slo.window], value_of), answers.warnings

    async def _ask(self, planned: Sequence[PlannedQuery], at: datetime) -> _Answers:
        if not self._combine:
            return await self._ask_separately(planned, at)
        try:
            result = await self._source.query(queries.combine(planned), at)
        except QueryError:
            # Part by part: a scalar query cannot be label_replace'd, and a PromQL mistake should be
            # reported against the user's own query, not our combined one.
            return await self._ask_separately(planned, at)
        return _Answers(queries.split(planned, result.samples), _quality(result))

    async def _ask_separately(self, planned: Sequence[PlannedQuery], at: datetime) -> _Answers:
        answers = await asyncio.gather(
            *(self._source.query(q.expr, at) for q in planned), return_exceptions=True
        )
        results: list[QueryResult] = []
        for query, answer in zip(planned, answers, strict=True):
            if isinstance(answer, QueryError):  # the first failing part, in plan order, is reported
                raise QueryError(
                    answer.detail, query=query.expr, status=answer.status, error_type=answer.error_type
                ) from answer
            if isinstance(answer, BaseException):
                raise answer
            results.append(answer)
        warnings = tuple(w for r in results for w in _quality(r))
        return _Answers({q.tag: list(r.samples) for q, r in zip(planned, results, strict=True)}, warnings)


def _quality(result: QueryResult) -> tuple[str, ...]:
    notes = list(result.warnings)
    if result.partial:
        notes.append("the source marked the response as partial (isPartial)")
    return tuple(notes)


PartValue = Callable[[PlannedQuery], float | str]  # a part's one value, or a string saying why there is none


def part_value(samples: Sequence[Sample], query: PlannedQuery, summed: bool = False) -> float | str:
    """The one value of a part (``summed``: the sum of its per-version series); a string says why not."""
    if not samples:
        return "no series"
    if summed:
        values = [s.value for s in samples if s.value is not None]
        if not values:
            return "no traffic (NaN)"
        total = math.fsum(values)
        return total if math.isfinite(total) else f"a non-finite value ({total})"
    if len(samples) > 1:
        shown = ", ".join(_labels(s) for s in samples[:3])
        raise _ShapeError(
            f"the {query.part} query over {format_duration(query.window)} returned {len(samples)} series "
            f"({shown}{', ...' if len(samples) > 3 else ''}); aggregate it to one, e.g. with sum(...): "
            f"{query.expr}"
        )
    return sample_value(samples[0].value)


def sample_value(value: float | None) -> float | str:
    """One series' value as a part's value: NaN (``None``) and infinities say why they are no number."""
    if value is None:
        return "no traffic (NaN)"
    if not math.isfinite(value):
        return f"a non-finite value ({value})"
    return value


def answered_values(answers: Mapping[str, Sequence[Sample]], summed: bool) -> PartValue:
    """``part_value`` of each part from answers keyed by tag (what raw mode has)."""
    return lambda query: part_value(answers.get(query.tag, ()), query, summed)


def _labels(sample: Sample) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items())) + "}"


def _events(value: float, query: PlannedQuery) -> float:
    return value if query.counts else value * (query.span or query.window).total_seconds()


def observe_windows(
    slo: SLO, parts: Mapping[timedelta, Mapping[Part, PlannedQuery]], value_of: PartValue
) -> dict[timedelta, Observation]:
    """Every window's observation; ``parts`` is ``queries.by_window``, ``value_of`` gives each part's
    value (``answered_values`` in raw mode; recording mode reads its recorded series). Raises
    ``_ShapeError`` for an answer that cannot be one SLO's number."""
    return {window: _observe(slo, window, parts[window], value_of) for window in slo.windows()}


# Enum members bound once: looking one up on its class costs more than the arithmetic of a window.
_RATIO, _TOTAL, _GOOD, _ERRORS = Part.RATIO, Part.TOTAL, Part.GOOD, Part.ERRORS


def _observe(
    slo: SLO, window: timedelta, parts: Mapping[Part, PlannedQuery], value_of: PartValue
) -> Observation:
    ratio_query = parts.get(_RATIO)
    if ratio_query is not None:
        ratio = value_of(ratio_query)
        if isinstance(ratio, str):
            return Observation(window, None, None, ratio)
        return Observation(window, ratio, None)

    total_query = parts[_TOTAL]
    total = value_of(total_query)
    if isinstance(total, str):
        return Observation(window, None, None, total)
    events = _events(total, total_query)
    if total <= 0:
        return Observation(window, None, events, "no traffic (0 events)")

    good_query = parts.get(_GOOD)
    if good_query is not None:
        good = value_of(good_query)
        if good == "no series":
            latency = slo.sli.latency
            assert latency is not None
            raise _ShapeError(
                f"no {latency.metric}_bucket series at le={latency.threshold_seconds:g} while requests "
                f"exist; threshold_seconds must be one of the histogram's bucket boundaries"
            )
        if isinstance(good, str):
            return Observation(window, None, events, f"{good} in the good-events query")
        bad = max(total - good, 0.0)
    else:
        errors = value_of(parts[_ERRORS])
        if isinstance(errors, str) and errors != "no series":
            return Observation(window, None, events, f"{errors} in the error query")
        # No error series beside present traffic: nothing failed (the counter was never created).
        bad = 0.0 if isinstance(errors, str) else errors
    return Observation(window, budget.error_ratio(bad, total), events)


def _by_version(samples: Iterable[Sample], label: str, query: PlannedQuery) -> dict[str, float]:
    """Events per value of ``label``; NaN and non-finite answers are left out (no traffic to judge)."""
    out: dict[str, float] = {}
    for sample in samples:
        if sample.value is None or not math.isfinite(sample.value):
            continue
        value = sample.labels.get(label, "")
        out[value] = out.get(value, 0.0) + max(_events(sample.value, query), 0.0)
    return out


def _judge_canaries(
    slo: SLO, planned: Sequence[PlannedQuery], answers: Mapping[str, Sequence[Sample]]
) -> tuple[canary.CanaryEvaluation, ...]:
    """Each version's counts over the canary windows, and their judgement (``canary.judge_versions``)."""
    policy = slo.canary
    if policy is None:
        return ()
    counts: dict[timedelta, dict[str, Counts]] = {}
    traffic: dict[str, float] = {}
    for window in (*policy.windows, policy.baseline_window):
        parts = {q.part: q for q in planned if q.window == window}
        total_q = parts[Part.TOTAL]
        totals = _by_version(answers.get(total_q.tag, ()), policy.label, total_q)
        if window == policy.baseline_window:
            traffic = totals
        if Part.GOOD in parts:
            good = _by_version(answers.get(parts[Part.GOOD].tag, ()), policy.label, parts[Part.GOOD])
            errors = {v: max(t - good.get(v, 0.0), 0.0) for v, t in totals.items()}
        else:
            errors = _by_version(answers.get(parts[Part.ERRORS].tag, ()), policy.label, parts[Part.ERRORS])
        counts[window] = {v: Counts(errors.get(v, 0.0), t) for v, t in totals.items()}
    latency = _latency_by_version(policy, planned, answers)
    return canary.judge_versions(policy, slo.error_budget, counts, traffic, latency)


def _latency_by_version(
    policy: CanaryPolicy, planned: Sequence[PlannedQuery], answers: Mapping[str, Sequence[Sample]]
) -> dict[str, Counts | None] | None:
    """Slow requests (``_count`` minus the bucket at the threshold) among all, per version; None for a
    version with requests but no bucket at the threshold (not one of its histogram's boundaries)."""
    parts = {q.part: q for q in planned if q.part in queries.LATENCY_PARTS}
    if policy.latency is None or not parts:
        return None
    total_q, fast_q = parts[Part.LATENCY_TOTAL], parts[Part.LATENCY_FAST]
    totals = _by_version(answers.get(total_q.tag, ()), policy.label, total_q)
    fast = _by_version(answers.get(fast_q.tag, ()), policy.label, fast_q)
    return {
        v: None if v not in fast and t > 0 else Counts(max(t - fast.get(v, 0.0), 0.0), t)
        for v, t in totals.items()
    }
