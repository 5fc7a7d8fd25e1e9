"""Recording-rule mode: read every SLO's windows from the series ``budgetguard rules`` records.

At scale the cost of raw mode is Prometheus evaluating ``rate(...[30d])`` for every SLO every cycle.
With the generated rules loaded into Prometheus (or a Thanos, Mimir or Cortex ruler), the ruler does
that work once per rule interval, and a cycle only selects the recorded series: one query per window
for all SLOs together (``{__name__=~"budgetguard:slo_(errors|requests|error_ratio):rate5m"}``), plus
one for the metadata series that say which SLOs have rules loaded and for which version of them
(``budgetguard_rules_hash``). The answers are sorted back by SLO and judged by the same code as raw
mode (``engine._observe`` and ``policy.evaluate``), so both modes agree wherever the recorded numbers
do.

An SLO falls back to raw queries when its metadata series is missing (its rules are not loaded), when
its hash differs from the SLO as declared now (the rules are stale: regenerate and reload them), or
when a window's query failed; each fallback is reported on the evaluation (``query_mode``) and
counted. An SLO whose metadata is there but some window's series are not has no traffic in that
window, exactly as in raw mode.

Written against the ports only, like ``engine``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from budgetguard import policy, rules
from budgetguard.durations import format_duration
from budgetguard.engine import Engine, _judge_canaries, _observe, _quality, _ShapeError
from budgetguard.errors import SourceError
from budgetguard.policy import Evaluation
from budgetguard.ports import MetricsSource, QueryResult, Sample
from budgetguard.queries import Part, PlannedQuery
from budgetguard.rules import SeriesKind
from budgetguard.spec import SLO

RECORDING = "recording"
_KINDS = "|".join(kind.value for kind in SeriesKind)
_PART_OF = {
    SeriesKind.ERRORS: Part.ERRORS,
    SeriesKind.REQUESTS: Part.TOTAL,
    SeriesKind.ERROR_RATIO: Part.RATIO,
}
_IDENTITY = (rules.SERVICE_LABEL, rules.SLO_LABEL)


def window_query(window: timedelta) -> str:
    """All recorded series of one window, every SLO at once."""
    return f'{{__name__=~"budgetguard:slo_({_KINDS}):rate{format_duration(window)}"}}'


@dataclass(frozen=True)
class _Recorded:
    """One SLO's recorded samples: by (window, part), with budgetguard's own labels removed."""

    samples: dict[tuple[timedelta, Part], list[Sample]]


def _key(labels: Mapping[str, str]) -> tuple[str, str] | None:
    service, slo = labels.get(rules.SERVICE_LABEL), labels.get(rules.SLO_LABEL)
    return None if service is None or slo is None else (service, slo)


def _plan(slo: SLO) -> tuple[PlannedQuery, ...]:
    """The parts recording mode reads per window: errors and requests, or the ratio for raw SLIs."""
    parts = (Part.RATIO,) if slo.sli.raw is not None else (Part.ERRORS, Part.TOTAL)
    return tuple(
        PlannedQuery(window=w, part=p, expr=rules.series_name(_kind(p), w))
        for w in slo.windows()
        for p in parts
    )


def _kind(part: Part) -> SeriesKind:
    return next(kind for kind, p in _PART_OF.items() if p is part)


class RecordingEngine:
    """Evaluates SLOs from recorded series, falling back to ``fallback`` (raw queries) per SLO."""

    def __init__(self, source: MetricsSource, fallback: Engine | None = None) -> None:
        self._source = source
        self._fallback = fallback or Engine(source)

    async def evaluate_all(self, slos: Sequence[SLO], at: datetime) -> list[Evaluation]:
        windows = sorted({w for slo in slos for w in rules.recorded_windows(slo)})
        answers = await asyncio.gather(
            self._source.query(rules.OBJECTIVE_SERIES, at),
            *(self._source.query(window_query(w), at) for w in windows),
            return_exceptions=True,
        )
        metadata, *by_window = answers
        failed_windows = {
            w: answer
            for w, answer in zip(windows, by_window, strict=True)
            if isinstance(answer, BaseException)
        }
        if isinstance(metadata, BaseException):
            why = f"the metadata query failed ({_why(metadata)})"
            return await self._all_raw(slos, at, why)

        hashes: dict[tuple[str, str], str] = {}
        for sample in metadata.samples:
            key = _key(sample.labels)
            if key is not None:
                hashes[key] = sample.labels.get(rules.HASH_LABEL, "")
        recorded: dict[tuple[str, str], _Recorded] = {}
        warnings: list[str] = []
        for window, answer in zip(windows, by_window, strict=True):
            if isinstance(answer, BaseException):
                continue
            warnings.extend(_quality(answer))
            _index(window, answer, recorded)

        out: dict[int, Evaluation] = {}
        raw: list[tuple[int, SLO, str]] = []
        for index, slo in enumerate(slos):
            key = (slo.service, slo.name)
            found = hashes.get(key)
            expected = rules.rules_hash(slo)
            if slo.canary is not None and slo.canary.latency is not None:
                # No rule records the guard's per-version histogram: read the whole SLO raw.
                raw.append((index, slo, "its canary latency guard reads the histogram itself"))
                continue
            if found is None:
                raw.append((index, slo, "no recorded series: load the rules `budgetguard rules` generates"))
                continue
            if found != expected:
                raw.append(
                    (
                        index,
                        slo,
                        f"recorded by other rules (hash {found}, the SLO now needs {expected}): "
                        "regenerate and reload them",
                    )
                )
                continue
            broken = [w for w in slo.windows() if w in failed_windows]
            if broken:
                raw.append(
                    (
                        index,
                        slo,
                        f"the {format_duration(broken[0])} query failed ({_why(failed_windows[broken[0]])})",
                    )
                )
                continue
            try:
                out[index] = self._judge(slo, at, recorded.get(key, _Recorded({})), warnings)
            except _ShapeError as exc:
                # Several series for one SLO and window: its labels changed and the old set is still
                # inside some window's average (rules.py). Raw queries are not affected.
                raw.append((index, slo, f"its recorded series do not add up to one SLO ({exc})"))
        if raw:
            evaluations = await self._fallback.evaluate_all([slo for _, slo, _ in raw], at)
            for (index, _, why), ev in zip(raw, evaluations, strict=True):
                out[index] = replace(ev, query_mode=f"raw (fallback: {why})")
        return [out[i] for i in range(len(slos))]

    async def _all_raw(self, slos: Sequence[SLO], at: datetime, why: str) -> list[Evaluation]:
        evaluations = await self._fallback.evaluate_all(slos, at)
        return [replace(ev, query_mode=f"raw (fallback: {why})") for ev in evaluations]

    @staticmethod
    def _judge(slo: SLO, at: datetime, recorded: _Recorded, warnings: Sequence[str]) -> Evaluation:
        planned = _plan(slo)
        by_tag = {q.tag: recorded.samples.get((q.window, q.part), []) for q in planned}
        try:
            observations = {w: _observe(slo, w, planned, by_tag) for w in slo.windows()}
            canaries = _judge_canaries(slo, planned, by_tag)
        except _ShapeError:
            raise
        except Exception as exc:  # the per-SLO isolation point, as in raw mode
            return replace(
                policy.failed(slo, at, f"cannot read the recorded series: {exc}", "query_shape"),
                query_mode=RECORDING,
            )
        evaluation = policy.evaluate(slo, observations, at, warnings)
        return replace(evaluation, canaries=canaries, query_mode=RECORDING)


def _index(window: timedelta, answer: QueryResult, into: dict[tuple[str, str], _Recorded]) -> None:
    for sample in answer.samples:
        labels = dict(sample.labels)
        key = _key(labels)
        name = labels.pop("__name__", "")
        if key is None:
            continue
        kind = name.removeprefix("budgetguard:slo_").partition(":")[0]
        if kind not in SeriesKind._value2member_map_:
            continue
        for label in _IDENTITY:
            labels.pop(label, None)
        part = _PART_OF[SeriesKind(kind)]
        into.setdefault(key, _Recorded({})).samples.setdefault((window, part), []).append(
            Sample(labels=labels, value=sample.value)
        )


def _why(exc: BaseException) -> str:
    if isinstance(exc, SourceError):
        return f"{exc.reason}: {exc}"
    return repr(exc)
