"""Recording-rule mode: read every SLO's windows from the series ``budgetguard rules`` records.

At scale the cost of raw mode is Prometheus evaluating ``rate(...[30d])`` for every SLO every cycle.
With the generated rules loaded into Prometheus (or a Thanos, Mimir or Cortex ruler), the ruler does
that work once per rule interval, and a cycle only selects the recorded series: one query per window
for all SLOs together (``{__name__=~"budgetguard:slo_(errors|requests):rate5m"}``), plus
one for the metadata series that say which SLOs have rules loaded and for which version of them
(``budgetguard_rules_hash``). The answers are sorted back by SLO and judged by the same code as raw
mode (``engine.observe_windows`` and ``policy.evaluate``), so both modes agree wherever the recorded numbers
do.

An SLO falls back to raw queries when its metadata series is missing (its rules are not loaded), when
its hash differs from the SLO as declared now (the rules are stale: regenerate and reload them), or
when a window's query failed; each fallback is reported on the evaluation (``query_mode``) and
counted. A calendar SLO's period so far ("since the month began") is no series a rule can record, so
its SLO window is always read with raw queries beside its recorded tiers (``RECORDING_CALENDAR``).
An SLO whose metadata is there but some window's series are not has no traffic in that window, exactly
as in raw mode.

Written against the ports only, like ``engine``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from budgetguard.core import policy, queries, rules
from budgetguard.core.durations import format_duration
from budgetguard.core.errors import SourceError
from budgetguard.core.policy import Evaluation, Observation
from budgetguard.core.ports import MetricsSource, QueryResult, Sample
from budgetguard.core.queries import Part, PlannedQuery
from budgetguard.core.rules import SeriesKind
from budgetguard.core.spec import SLO
from budgetguard.core.verdict import ErrorKind, QueryMode
from budgetguard.engine import (
    Engine,
    PartValue,
    _judge_canaries,
    _quality,
    _ShapeError,
    observe_windows,
    part_value,
    sample_value,
)

RECORDING = QueryMode.RECORDING
# A calendar SLO: its tiers' windows from the recorded series, its period so far with raw queries.
RECORDING_CALENDAR = (
    f"{QueryMode.RECORDING} (the calendar period with raw queries: "
    "a rule cannot record since the period began)"
)
_PART_OF = {
    SeriesKind.ERRORS: Part.ERRORS,
    SeriesKind.REQUESTS: Part.TOTAL,
    SeriesKind.ERROR_RATIO: Part.RATIO,
}
_KIND_OF = {part: kind for kind, part in _PART_OF.items()}
_COUNT_KINDS = (SeriesKind.ERRORS, SeriesKind.REQUESTS)  # what events and latency SLIs record
_RATIO_KINDS = (SeriesKind.ERROR_RATIO,)  # what raw SLIs record
_IDENTITY_ONLY = 3  # labels of a recorded series that carries nothing but its name and identity
_NO_LABELS: Mapping[str, str] = {}  # shared, never written to


# One recorded part of one SLO: the value of its one series when that series carries nothing but its
# name and identity (the common case: no Sample, no list, and the decoded labels are freed), else its
# samples (a canary's series per version, or label sets that do not add up to one SLO).
_Entry = float | list[Sample] | None
_ABSENT = object()
_NO_ENTRIES: Mapping[str, _Entry] = {}
_HASH_BATCH = 200  # ~15 ms of hashing between looks at the answers arriving


def window_query(window: timedelta, kinds: Iterable[SeriesKind] = _COUNT_KINDS) -> str:
    """The recorded series of one window, every SLO at once; only the ``kinds`` some SLO reads (the
    ratio series of events SLIs would be a third more samples that nobody uses)."""
    chosen = "|".join(kind.value for kind in SeriesKind if kind in set(kinds))
    return f'{{__name__=~"budgetguard:slo_({chosen}):rate{format_duration(window)}"}}'


@dataclass(frozen=True)
class _Layout:
    """What recording mode reads of an SLO with these windows: the planned parts, grouped by window."""

    planned: tuple[PlannedQuery, ...]
    by_window: dict[timedelta, dict[Part, PlannedQuery]]


@functools.lru_cache(maxsize=256)
def _layout(windows: tuple[timedelta, ...], ratio: bool) -> _Layout:
    """Errors and requests per window, or the ratio for raw SLIs; shared by every SLO of one shape."""
    parts = (Part.RATIO,) if ratio else (Part.ERRORS, Part.TOTAL)
    planned = tuple(
        PlannedQuery(window=w, part=p, expr=rules.series_name(_KIND_OF[p], w)) for w in windows for p in parts
    )
    return _Layout(planned, queries.by_window(planned))


def _kinds(slo: SLO) -> tuple[SeriesKind, ...]:
    return _RATIO_KINDS if slo.sli.raw is not None else _COUNT_KINDS


class RecordingEngine:
    """Evaluates SLOs from recorded series, falling back to ``fallback`` (raw queries) per SLO."""

    def __init__(self, source: MetricsSource, fallback: Engine | None = None) -> None:
        self._source = source
        self._fallback = fallback or Engine(source)
        # rules_hash of each SLO of the last cycle, by identity: SLOs are frozen and reloaded as new
        # objects, so an entry is right exactly while ``entry[0] is slo``.
        self._hashes: dict[int, tuple[SLO, str]] = {}

    async def evaluate_all(self, slos: Sequence[SLO], at: datetime) -> list[Evaluation]:
        kinds: dict[timedelta, set[SeriesKind]] = {}
        for slo in slos:
            for window in rules.recorded_windows(slo):
                kinds.setdefault(window, set()).update(_kinds(slo))
        windows = sorted(kinds)
        # Each answer is sorted by SLO as soon as it arrives and then dropped. Decoding and sorting run in
        # worker threads (#14), so answers decoded meanwhile wait for the sort of the one before: up to
        # one decoded answer of ~20,000 series per window may be alive at once (10,000 SLOs, peak memory).
        recorded: dict[tuple[str, str], dict[str, _Entry]] = {}
        warnings: list[str] = []
        failed_windows: dict[timedelta, BaseException] = {}
        indexing = asyncio.Lock()

        async def read_window(window: timedelta) -> None:
            try:
                answer = await self._source.query(window_query(window, kinds[window]), at)
            except Exception as exc:  # reported per SLO below: its fallback says which window failed
                failed_windows[window] = exc
                return
            warnings.extend(_quality(answer))
            # ~20,000 series at 10,000 SLOs: sorted in a worker thread, one answer at a time (they share
            # ``recorded``).
            async with indexing:
                await asyncio.to_thread(_index, window, answer, recorded)

        # The metadata first: every SLO's judgement waits for it, and the source may bound the queries
        # in flight (max_concurrency).
        metadata_asked = asyncio.ensure_future(self._source.query(rules.OBJECTIVE_SERIES, at))
        asked = asyncio.gather(
            metadata_asked, asyncio.gather(*(read_window(w) for w in windows)), return_exceptions=True
        )
        try:
            # While the source works on the queries: the hashes of SLOs not seen before (all of them
            # in a first cycle), yielding now and then so the answers are read as they arrive.
            expected_hashes = await self._expected_hashes(slos)
        except BaseException:
            asked.cancel()
            raise
        metadata, _ = await asked
        if isinstance(metadata, BaseException):
            why = f"the metadata query failed ({_why(metadata)})"
            return await self._all_raw(slos, at, why)
        hashes = _found_hashes(metadata)

        # In a worker thread: judging 10,000 SLOs takes most of a second of pure Python, which the
        # event loop answering the gates gets back every GIL switch interval (1 ms) instead of waiting.
        out, raw, calendar = await asyncio.to_thread(
            self._judge_recorded,
            slos,
            at,
            hashes=hashes,
            expected_hashes=expected_hashes,
            failed_windows=failed_windows,
            recorded=recorded,
            warnings=warnings,
        )
        if calendar:
            raw += await self._judge_calendar(calendar, at, recorded, warnings, out)
        if raw:
            evaluations = await self._fallback.evaluate_all([slo for _, slo, _ in raw], at)
            for (index, _, why), ev in zip(raw, evaluations, strict=True):
                out[index] = replace(ev, query_mode=QueryMode.fallback(why))
        return [out[i] for i in range(len(slos))]

    async def _judge_calendar(
        self,
        slos: Sequence[tuple[int, SLO]],
        at: datetime,
        recorded: Mapping[tuple[str, str], Mapping[str, _Entry]],
        warnings: Sequence[str],
        out: dict[int, Evaluation],
    ) -> list[tuple[int, SLO, str]]:
        """Calendar SLOs: the recorded tiers' windows and the period so far read raw (the rules record
        the nominal rolling window there); the SLOs that must fall back to raw entirely, and why."""
        periods = await asyncio.gather(
            *(self._fallback.observe_period(slo, at) for _, slo in slos), return_exceptions=True
        )
        raw = []
        for (index, slo), period in zip(slos, periods, strict=True):
            if isinstance(period, BaseException):
                raw.append((index, slo, f"the calendar period's query failed ({_why(period)})"))
                continue
            observation, period_warnings = period
            entries = recorded.get((slo.service, slo.name), _NO_ENTRIES)
            try:
                ev = self._judge(slo, at, entries, [*warnings, *period_warnings], period=observation)
            except _ShapeError as exc:
                raw.append((index, slo, f"its recorded series do not add up to one SLO ({exc})"))
                continue
            out[index] = replace(ev, query_mode=RECORDING_CALENDAR) if ev.query_mode == RECORDING else ev
        return raw

    def _judge_recorded(
        self,
        slos: Sequence[SLO],
        at: datetime,
        *,
        hashes: dict[tuple[str, str], str],
        expected_hashes: Sequence[str],
        failed_windows: dict[timedelta, BaseException],
        recorded: dict[tuple[str, str], dict[str, _Entry]],
        warnings: list[str],
    ) -> tuple[dict[int, Evaluation], list[tuple[int, SLO, str]], list[tuple[int, SLO]]]:
        """Each SLO judged from its recorded series, or set aside for the raw queries or its calendar
        period: (judged by index, raw with why, calendar)."""
        out: dict[int, Evaluation] = {}
        raw: list[tuple[int, SLO, str]] = []
        calendar: list[tuple[int, SLO]] = []
        for index, slo in enumerate(slos):
            key = (slo.service, slo.name)
            found = hashes.get(key)
            expected = expected_hashes[index]
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
            if slo.calendar is not None:
                calendar.append((index, slo))
                continue
            try:
                out[index] = self._judge(slo, at, recorded.get(key, _NO_ENTRIES), warnings)
            except _ShapeError as exc:
                # Several series for one SLO and window: its labels changed and the old set is still
                # inside some window's average (rules.py). Raw queries are not affected.
                raw.append((index, slo, f"its recorded series do not add up to one SLO ({exc})"))
        return out, raw, calendar

    async def _expected_hashes(self, slos: Sequence[SLO]) -> list[str]:
        """``rules_hash`` of each SLO, computed once per SLO object (~60-100 us each: most of a second
        at 10,000 SLOs), yielding to the event loop every ``_HASH_BATCH`` computed."""
        previous, current = self._hashes, {}
        out = []
        computed = 0
        for slo in slos:
            entry = previous.get(id(slo))
            if entry is None or entry[0] is not slo:
                entry = (slo, rules.rules_hash(slo))
                computed += 1
                if computed % _HASH_BATCH == 0:
                    await asyncio.sleep(0)
            current[id(slo)] = entry
            out.append(entry[1])
        self._hashes = current  # only this cycle's SLOs: a reload lets the old ones go
        return out

    async def _all_raw(self, slos: Sequence[SLO], at: datetime, why: str) -> list[Evaluation]:
        evaluations = await self._fallback.evaluate_all(slos, at)
        return [replace(ev, query_mode=QueryMode.fallback(why)) for ev in evaluations]

    @staticmethod
    def _judge(
        slo: SLO,
        at: datetime,
        answers: Mapping[str, _Entry],
        warnings: Sequence[str],
        period: Observation | None = None,
    ) -> Evaluation:
        """Judge one SLO from its recorded series; ``period`` replaces the SLO window's (a calendar's)."""
        layout = _layout(slo.windows(), slo.sli.raw is not None)
        try:
            observations = observe_windows(
                slo, layout.by_window, _recorded_values(answers, slo.canary is not None)
            )
            if period is not None:
                observations[slo.window] = period
            canaries = _judge_canaries(slo, layout.planned, _as_samples(answers)) if slo.canary else ()
        except _ShapeError:
            raise
        except Exception as exc:  # the per-SLO isolation point, as in raw mode
            return replace(
                policy.failed(slo, at, f"cannot read the recorded series: {exc}", ErrorKind.QUERY_SHAPE),
                query_mode=RECORDING,
            )
        return policy.evaluate(slo, observations, at, warnings, canaries=canaries, query_mode=RECORDING)


def _recorded_values(answers: Mapping[str, _Entry], summed: bool) -> PartValue:
    def value_of(query: PlannedQuery) -> float | str:
        entry = answers.get(query.tag, _ABSENT)
        if type(entry) is list:
            return part_value(entry, query, summed)
        if entry is _ABSENT:
            return "no series"
        return sample_value(entry)  # type: ignore[arg-type]  # float or None: the list is handled above

    return value_of


def _as_samples(answers: Mapping[str, _Entry]) -> dict[str, list[Sample]]:
    return {
        tag: entry if isinstance(entry, list) else [Sample(_NO_LABELS, entry)]
        for tag, entry in answers.items()
    }


def _found_hashes(metadata: QueryResult) -> dict[tuple[str, str], str]:
    """The rules hash recorded for each (service, SLO) whose rules are loaded."""
    hashes: dict[tuple[str, str], str] = {}
    for sample in metadata.samples:
        labels = sample.labels
        service, slo = labels.get(rules.SERVICE_LABEL), labels.get(rules.SLO_LABEL)
        if service is not None and slo is not None:
            hashes[service, slo] = labels.get(rules.HASH_LABEL, "")
    return hashes


def _index(window: timedelta, answer: QueryResult, into: dict[tuple[str, str], dict[str, _Entry]]) -> None:
    """Sort one window's answer by SLO, keyed by the tag ``_layout`` gives its part (see ``_Entry``)."""
    tags = {
        rules.series_name(kind, window): PlannedQuery(window=window, part=part, expr="").tag
        for kind, part in _PART_OF.items()
    }
    for sample in answer.samples:
        labels = sample.labels
        tag = tags.get(labels.get("__name__", ""))
        service, slo = labels.get(rules.SERVICE_LABEL), labels.get(rules.SLO_LABEL)
        if tag is None or service is None or slo is None:
            continue
        entries = into.get((service, slo))
        if entries is None:
            entries = into[service, slo] = {}
        found = entries.get(tag, _ABSENT)
        if found is _ABSENT and len(labels) == _IDENTITY_ONLY:
            entries[tag] = sample.value
        elif found is _ABSENT:
            entries[tag] = [sample]
        elif isinstance(found, list):
            found.append(sample)
        else:  # a second series for this part: both are kept, and the SLO's reading will say so
            entries[tag] = [Sample(_NO_LABELS, found), sample]  # type: ignore[arg-type]


def _why(exc: BaseException) -> str:
    if isinstance(exc, SourceError):
        return f"{exc.reason}: {exc}"
    return repr(exc)
