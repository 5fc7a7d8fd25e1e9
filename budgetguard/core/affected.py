"""Who is affected: a burning canary's errors broken down by the labels an SLO names (``affected_by``).

The article's last rule: "standard metrics tell you that something is wrong; high-cardinality metrics
tell you who is affected". When an incident opens, the daemon sends ONE extra query built here from
the SLI's own error query over the deciding window, grouped by the canary label and the
``affected_by`` labels (``sum by (version, region, route) (...)``), and ``parse`` keeps the burning
version's series: the largest combinations, and each label's values on its own, with their share of
the version's errors. Grouping by the canary label and filtering the answer is simpler and safer than
adding a matcher to every selector of a user's query: the query is changed only where it already
groups by the canary label, and it is then wrapped in one more ``sum by`` so the answer has exactly
those labels.

Also the record (JSON) shape of ``ports.Affected`` for the store, the API and the webhook payload, and
the one-line text the chat and pager messages use.

Pure: builds strings and reads samples; no I/O, no clock, no logging.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from budgetguard.core import queries
from budgetguard.core.durations import format_duration, parse_duration
from budgetguard.core.ports import Affected, AffectedShare, Sample
from budgetguard.core.queries import Part
from budgetguard.core.spec import SLO

__all__ = [
    "TOP",
    "counts_events",
    "describe",
    "from_record",
    "headline",
    "parse",
    "query",
    "regroup",
    "to_record",
    "unavailable",
]

# Slices and values per label kept: a page has room for a few, and the long tail says nothing.
TOP = 5
# PromQL string literals (the three quote styles), so a `by (` inside a matcher's value is never edited.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"(?<![\w:])(by|without)(\s*)\(([^()]*)\)")


def _labels_of(clause: str) -> list[str]:
    return [name.strip() for name in clause.split(",") if name.strip()]


def regroup(expr: str, label: str, by: Sequence[str]) -> str:
    """``expr`` with every ``by (...)`` grouping that keeps ``label`` also keeping ``by``.

    ``sum by (version) (rate(x[5m]))`` becomes ``sum by (version, region, route) (rate(x[5m]))``; an
    inner aggregation that keeps the version keeps the new labels too. A ``without (...)`` that drops
    one of ``by`` makes the breakdown impossible: ``ValueError`` says so. String literals are left
    alone.
    """

    def edit(match: re.Match[str]) -> str:
        keyword, space, clause = match.group(1), match.group(2), match.group(3)
        names = _labels_of(clause)
        if keyword == "without":
            dropped = [name for name in by if name in names]
            if dropped:
                raise ValueError(
                    f"the query aggregates {', '.join(dropped)} away (without ({clause.strip()})), "
                    "so its errors cannot be broken down by it"
                )
            return match.group(0)
        if label not in names:
            return match.group(0)
        return f"{keyword}{space}({', '.join([*names, *(n for n in by if n not in names)])})"

    out: list[str] = []
    position = 0
    for literal in _STRING.finditer(expr):
        out.append(_GROUPING.sub(edit, expr[position : literal.start()]))
        out.append(literal.group(0))
        position = literal.end()
    out.append(_GROUPING.sub(edit, expr[position:]))
    return "".join(out)


def _error_part(slo: SLO, window: timedelta) -> tuple[str, bool]:
    """The SLI's errors over ``window`` as one expression (latency: total minus good), and whether
    it counts events (``increase``) rather than a per-second rate."""
    parts = {q.part: q for q in queries.plan(slo, [window])}
    if Part.ERRORS in parts:
        return parts[Part.ERRORS].expr, parts[Part.ERRORS].counts
    if Part.GOOD in parts and Part.TOTAL in parts:
        total, good = parts[Part.TOTAL], parts[Part.GOOD]
        return f"({total.expr}) - ({good.expr})", total.counts
    raise ValueError("the SLI has no error or good-events query to break down (a raw ratio cannot be)")


def query(slo: SLO, window: timedelta) -> str:
    """The one PromQL query that breaks the SLO's errors over ``window`` down by the canary label and
    ``affected_by``; ``ValueError`` when the SLI's query cannot be broken down."""
    policy = slo.canary
    if policy is None or not policy.affected_by:
        raise ValueError(f"{slo.id} declares no canary.affected_by")
    grouping = (policy.label, *policy.affected_by)
    errors, _ = _error_part(slo, window)
    return f"sum by ({', '.join(grouping)}) ({regroup(errors, policy.label, grouping)})"


def counts_events(slo: SLO, window: timedelta) -> bool:
    """Whether the breakdown query answers events in the window (``increase``) or per-second rates."""
    return _error_part(slo, window)[1]


def _share(labels: Mapping[str, str], errors: float, total: float) -> AffectedShare:
    return AffectedShare(labels=dict(labels), errors=errors, share=errors / total)


def parse(
    slo: SLO, canary_value: str, window: timedelta, samples: Iterable[Sample], *, counts: bool = False
) -> Affected:
    """The breakdown of ``canary_value``'s errors from the answer to ``query`` (other versions, NaN and
    zero series are left out). ``counts``: the answer is events, not per-second rates."""
    policy = slo.canary
    if policy is None or not policy.affected_by:
        raise ValueError(f"{slo.id} declares no canary.affected_by")
    by = policy.affected_by
    seconds = 1.0 if counts else window.total_seconds()
    combos: dict[tuple[str, ...], float] = {}
    for sample in samples:
        if sample.labels.get(policy.label) != canary_value:
            continue
        if sample.value is None or not math.isfinite(sample.value) or sample.value <= 0:
            continue
        key = tuple(sample.labels.get(name, "") for name in by)
        combos[key] = combos.get(key, 0.0) + sample.value * seconds
    total = math.fsum(combos.values())
    if total <= 0:
        return Affected(
            by=by,
            window=window,
            errors=0.0,
            note=f"no errors of {policy.label}={canary_value} over {format_duration(window)} "
            f"to break down by {', '.join(by)}",
        )
    ranked = sorted(combos.items(), key=lambda item: (-item[1], item[0]))
    slices = tuple(_share(dict(zip(by, key, strict=True)), errors, total) for key, errors in ranked[:TOP])
    top: dict[str, tuple[AffectedShare, ...]] = {}
    for index, name in enumerate(by):
        values: dict[str, float] = {}
        for key, errors in combos.items():
            values[key[index]] = values.get(key[index], 0.0) + errors
        best = sorted(values.items(), key=lambda item: (-item[1], item[0]))[:TOP]
        top[name] = tuple(_share({name: value}, errors, total) for value, errors in best)
    return Affected(by=by, window=window, errors=total, slices=slices, top=top)


def unavailable(slo: SLO, window: timedelta, why: str) -> Affected:
    """No breakdown, and why (the query failed, timed out, or could not be built)."""
    by = slo.canary.affected_by if slo.canary is not None else ()
    return Affected(by=by, window=window, errors=0.0, note=why)


# --- records and text ----------------------------------------------------------------------------


def _share_record(share: AffectedShare) -> dict[str, Any]:
    return {"labels": dict(share.labels), "errors": share.errors, "share": share.share}


def _share_from(record: Mapping[str, Any]) -> AffectedShare:
    return AffectedShare(
        labels=dict(record["labels"]), errors=float(record["errors"]), share=float(record["share"])
    )


def to_record(affected: Affected) -> dict[str, Any]:
    """The JSON shape of the store, the API and the webhook payload."""
    return {
        "by": list(affected.by),
        "window": format_duration(affected.window),
        "errors": affected.errors,
        "slices": [_share_record(s) for s in affected.slices],
        "top": {name: [_share_record(s) for s in shares] for name, shares in affected.top.items()},
        "note": affected.note,
    }


def from_record(record: Mapping[str, Any]) -> Affected:
    return Affected(
        by=tuple(record["by"]),
        window=parse_duration(record["window"]),
        errors=float(record["errors"]),
        slices=tuple(_share_from(s) for s in record.get("slices") or ()),
        top={
            name: tuple(_share_from(s) for s in shares) for name, shares in (record.get("top") or {}).items()
        },
        note=record.get("note") or "",
    )


def _value(text: str) -> str:
    return text if text else "(none)"


def _pct(share: float) -> str:
    return f"{share * 100:.0f}%" if share >= 0.01 else "<1%"


def headline(affected: Affected) -> str:
    """The largest slice in a few words, for a pager's summary: ``region=eu-west, route=/pay (82%)``."""
    if not affected.slices:
        return ""
    first = affected.slices[0]
    labels = ", ".join(f"{name}={_value(value)}" for name, value in first.labels.items())
    return f"{labels} ({_pct(first.share)} of its errors)"


def describe(affected: Affected) -> str:
    """One line for people: each label's values by share of the errors, then the largest slice.

    ``region eu-west 96%, us-east 4%; route /pay 100% (of 123 errors over 30s; most: region=eu-west,
    route=/pay 96%)``; without a breakdown, the note.
    """
    if not affected.slices:
        return affected.note or "unknown"
    parts = [
        f"{name} " + ", ".join(f"{_value(s.labels[name])} {_pct(s.share)}" for s in shares)
        for name, shares in affected.top.items()
    ]
    tail = f"of {affected.errors:,.0f} errors over {format_duration(affected.window)}"
    if len(affected.by) > 1:
        first = affected.slices[0]
        combo = ", ".join(f"{name}={_value(value)}" for name, value in first.labels.items())
        tail += f"; most: {combo} {_pct(first.share)}"
    return "; ".join(parts) + f" ({tail})"
