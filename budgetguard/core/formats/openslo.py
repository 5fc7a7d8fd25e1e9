"""OpenSLO v1 (``apiVersion: openslo/v1``) as native SLOs: one native SLO per OpenSLO ``SLO``.

OpenSLO spreads an SLO over objects that refer to each other by name, possibly across files: an ``SLO``
names its ``SLI`` (``indicatorRef``) and ``AlertPolicy``s (``alertPolicyRef``), a policy its
``AlertCondition`` (``conditionRef``) and ``AlertNotificationTarget``s, a metric source its ``DataSource``
(``metricSourceRef``). Each may be written inline instead. A ``Catalog`` holds every named object of one
load, so a reference resolves whichever file declares it, and reads each object once, so its problems
are reported once however many SLOs use it.

Mapping:

- id: ``spec.service`` / ``metadata.name``; labels: ``metadata.labels`` of the SLO (a list value is
  joined with commas); description: ``spec.description``.
- ``timeWindow``: one rolling window (``duration``, ``isRolling: true``) -> ``window``; none -> 30d. A
  calendar window (``duration: 1w|1M|1Q``, ``isRolling: false``, ``calendar: {startTime, timeZone}``)
  -> ``window: {calendar: week|month|quarter, timezone}``; ``startTime`` must be a period's first
  instant (local midnight on a Monday or the first day of the month or quarter).
- one objective: ``target`` (a ratio in [0, 1)) x 100 or ``targetPercent`` -> ``objective``.
- ``ratioMetric`` -> an events SLI: ``bad``/``total`` as they are; ``good``/``total`` as
  ``total - good``; ``rawType``/``raw`` -> a raw SLI (``1 - ratio`` for ``success``). A query with the
  ``{{.window}}`` placeholder is used as written; with ``counter: true``, a bare selector (or
  ``sum(<selector>)``) becomes ``sum(rate(<selector>[{{.window}}]))``.
- ``alertPolicies`` -> ``tiers``, one per policy (OpenSLO allows one condition per policy): a ``burnrate``
  condition's ``threshold`` is the tier's burn rate and ``lookbackWindow`` its long window; its short
  window is the ``budgetguard.dev/short-window`` annotation of the condition, else lookbackWindow / 12
  (the workbook's ratio: 1h -> 5m). ``severity`` page/critical/high -> page; ticket/warning/low/info ->
  ticket. Without policies an SLO gets the workbook's default tiers.

Refused, naming the construct: ``thresholdMetric``, non-rolling windows without a calendar, calendar
windows other than a week, month or quarter or anchored off their first instant, rolling ``M``/``Q``/``Y``
durations, ``Timeslices``/``RatioTimeslices`` budgeting, several objectives (composites) and
threshold objectives (``op``/``value``), non-Prometheus sources, gauge queries without the placeholder,
conditions other than ``burnrate`` with ``op: gte`` (or ``gt``), a non-zero ``alertAfter`` (a hold time
budgetguard does not have: it confirms a burn with the short window instead), ``alertWhenBreaching:
false``, unresolved references and names declared twice. Accepted without effect (listed as notes): a
DataSource's ``connectionDetails`` (budgetguard queries the Prometheus it is configured with),
notification targets, ``alertWhenNoData`` and ``alertWhenResolved``.

Pure: parsed YAML in, drafts out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from contextlib import suppress
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar, cast

from budgetguard.core.calendar import CalendarUnit, period_at, zone
from budgetguard.core.durations import format_duration, parse_duration
from budgetguard.core.errors import SpecProblem
from budgetguard.core.formats._common import (
    Collector,
    Document,
    Draft,
    Field,
    Loc,
    Refused,
    Sourced,
    note,
    percent,
)
from budgetguard.core.formats._promql import bad_from_good, parse_selector, rate_sum, summed_selector
from budgetguard.core.promql import WINDOW_PLACEHOLDER
from budgetguard.core.spec import DEFAULT_WINDOW

API_VERSION = "openslo/v1"
SHORT_WINDOW_ANNOTATION = "budgetguard.dev/short-window"

_TOP = ("apiVersion", "kind", "metadata", "spec")
_METADATA = ("name", "displayName", "labels", "annotations")
_SLO_SPEC = (
    "description",
    "service",
    "indicator",
    "indicatorRef",
    "timeWindow",
    "budgetingMethod",
    "objectives",
    "alertPolicies",
)
_OBJECTIVE = (
    "displayName",
    "op",
    "value",
    "target",
    "targetPercent",
    "timeSliceTarget",
    "timeSliceWindow",
    "indicator",
    "indicatorRef",
    "compositeWeight",
)
_RATIO = ("counter", "good", "bad", "total", "rawType", "raw")
_POLICY_SPEC = (
    "description",
    "alertWhenNoData",
    "alertWhenResolved",
    "alertWhenBreaching",
    "conditions",
    "notificationTargets",
)
_CONDITION = ("kind", "op", "threshold", "lookbackWindow", "alertAfter")

# AlertCondition.severity is free text ("sev1", "page"...); these are the words budgetguard can place.
SEVERITIES = {
    "page": "page",
    "critical": "page",
    "high": "page",
    "ticket": "ticket",
    "warning": "ticket",
    "low": "ticket",
    "info": "ticket",
}
# The workbook's long:short window ratio (SRE workbook ch. 5, Table 5-8: 1h/5m, 6h/30m, 1d/2h, 3d/6h).
SHORT_WINDOW_RATIO = 12

_REFUSED = object()
_SHORTHAND = re.compile(r"^\s*(\d+)\s*([mhdwMQY])\s*$")
T = TypeVar("T")


def openslo_duration(at: Field, *, allow_zero: bool = False) -> timedelta:
    """An OpenSLO duration-shorthand (``12h``, ``4w``); months, quarters and years have no fixed length."""
    text = at.text()
    found = _SHORTHAND.match(text)
    if found and found.group(2) in "MQY":
        unit = {"M": "month", "Q": "quarter", "Y": "year"}[found.group(2)]
        raise at.refusal(
            f"{text!r}: a {unit} has no fixed length, and budgetguard windows roll over a fixed duration",
            "give the duration in days or weeks, e.g. 30d or 4w",
        )
    try:
        return parse_duration(text, allow_zero=allow_zero)
    except ValueError as exc:
        raise at.refusal(str(exc), "write a duration such as 5m, 1h, 28d or 4w") from exc


class Catalog:
    """Every named OpenSLO object of one load, each read at most once (its problems reported once)."""

    NAMED = ("SLI", "DataSource", "AlertPolicy", "AlertCondition", "AlertNotificationTarget", "Service")

    def __init__(self, documents: Sequence[Document]) -> None:
        self.problems: list[SpecProblem] = []
        self.notes: list[SpecProblem] = []
        self._objects: dict[tuple[str, str], Field] = {}
        self._results: dict[tuple[str, str], Any] = {}
        self._twice: set[tuple[str, str]] = set()
        for document in documents:
            if document.api_version != API_VERSION or document.kind not in self.NAMED:
                continue
            name = document.name
            if name is None:
                continue  # reported when the document itself is read
            key = (document.kind, name)
            if key in self._objects:
                self._twice.add(key)
                first = self._objects[key].document
                line = first.line_of(())
                self.problems.append(
                    (document.root / "metadata" / "name").problem(
                        f"OpenSLO {document.kind} {name!r} is declared twice (also in "
                        f"{first.source}{'' if line is None else f':{line}'})",
                        "give each object of a kind a unique metadata.name",
                    )
                )
            else:
                self._objects[key] = document.root

    def resolve(self, kind: str, ref: Field) -> Field:
        """The root of the object a reference names; an unknown name is refused at the reference."""
        name = ref.text()
        if (kind, name) in self._twice:
            raise Refused()  # which one is meant is unknown; the duplicate is reported already
        found = self._objects.get((kind, name))
        if found is None:
            known = sorted(n for k, n in self._objects if k == kind)
            raise ref.refusal(
                f"no OpenSLO {kind} named {name!r} in the files loaded together"
                + (f" (declared: {', '.join(known)})" if known else ""),
                f"declare an OpenSLO {kind} with metadata.name: {name} in one of the files given, or fix the "
                "name",
            )
        return found

    def read(self, kind: str, name: str, reader: Callable[[Field], T]) -> T:
        """``reader`` applied to the named object once; a refused object refuses its users silently."""
        key = (kind, name)
        if key not in self._results:
            try:
                self._results[key] = reader(self._objects[key])
            except Refused as exc:
                self.problems.extend(exc.problems)
                self._results[key] = _REFUSED
        result = self._results[key]
        if result is _REFUSED:
            raise Refused()  # the object's own problems are reported already
        return cast(T, result)

    def by_ref(self, kind: str, ref: Field, reader: Callable[[Field], T]) -> T:
        root = self.resolve(kind, ref)
        name = root.document.name
        assert name is not None
        return self.read(kind, name, reader)


# --- documents ------------------------------------------------------------------------------------


def read(document: Document, catalog: Catalog) -> tuple[list[Draft], list[SpecProblem]]:
    """One OpenSLO document: an SLO becomes a draft; any other kind is checked (once, via the catalog)."""
    root = document.root
    collector = Collector()
    collector.attempt(lambda: root.mapping(_TOP, what=f"an OpenSLO {document.kind or 'object'}"))
    collector.attempt(lambda: (root / "metadata").required().mapping(_METADATA, what="OpenSLO metadata"))
    name = collector.attempt((root / "metadata" / "name").text)
    if collector.problems or name is None:
        return [], collector.problems
    kind = document.kind
    readers: dict[str, Callable[[Field], object]] = {
        "SLI": lambda at: _indicator(at, catalog),
        "DataSource": lambda at: _data_source(at, catalog),
        "AlertPolicy": lambda at: _policy(at, catalog),
        "AlertCondition": _condition,
        "AlertNotificationTarget": _notification_target,
        "Service": _service,
    }
    if kind == "SLO":
        try:
            return [_slo(root.for_slo(name), catalog)], []
        except Refused as exc:
            return [], list(exc.problems)
    if kind in readers:
        with suppress(Refused):  # the catalog keeps the problems, to report them once
            catalog.read(kind, name, readers[kind])
        return [], []
    return [], [
        (root / "kind").problem(
            f"unknown OpenSLO kind {kind!r}" if kind else "the 'kind' field is missing",
            "use one of SLO, SLI, DataSource, AlertPolicy, AlertCondition, AlertNotificationTarget, Service",
        )
    ]


def _metadata(at: Field) -> None:
    at.mapping(_TOP, what="an inline OpenSLO object")
    (at / "metadata").mapping(_METADATA, what="OpenSLO metadata")


def _service(at: Field) -> None:
    (at / "spec").mapping(("description",), what="an OpenSLO Service's spec")


def _notification_target(at: Field) -> None:
    (at / "spec").mapping(("target", "description"), what="an OpenSLO AlertNotificationTarget's spec")


def _data_source(at: Field, catalog: Catalog) -> str:
    spec = at / "spec"
    spec.required().mapping(("description", "type", "connectionDetails"), what="an OpenSLO DataSource's spec")
    source_type = (spec / "type").text()
    _prometheus(spec / "type", f"DataSource {at.document.name!r}")
    if (spec / "connectionDetails").exists:
        catalog.notes.append(
            note(
                spec / "connectionDetails",
                "connectionDetails are not used: budgetguard queries the Prometheus it is configured with "
                "(eval --prometheus, or prometheus.url in the daemon's config)",
            )
        )
    return source_type


def _prometheus(at: Field, what: str) -> None:
    source_type = at.text()
    if source_type.lower() != "prometheus":
        raise at.refusal(
            f"{what} is of type {source_type!r}; budgetguard reads Prometheus (and Prometheus-compatible "
            "Thanos, Mimir, VictoriaMetrics) only",
            "use a DataSource of type Prometheus, or leave this SLO to a tool that reads its source",
        )


# --- SLOs -----------------------------------------------------------------------------------------


def _slo(root: Field, catalog: Catalog) -> Draft:
    spec = root / "spec"
    spec.required().mapping(_SLO_SPEC, what="an OpenSLO SLO's spec")
    collector = Collector()
    name = (root / "metadata" / "name").text()
    service = collector.attempt((spec / "service").text)
    labels = collector.attempt(lambda: _labels(root / "metadata" / "labels"))
    description = collector.attempt((spec / "description").description)
    collector.attempt(lambda: _budgeting(spec / "budgetingMethod"))
    window = collector.attempt(lambda: _window(spec / "timeWindow"))
    objective = collector.attempt(lambda: _objective(spec / "objectives"))
    sli = collector.attempt(lambda: _slo_indicator(spec, objective, catalog)) if objective else None
    tiers = collector.attempt(lambda: [_policy_entry(at, catalog) for at in (spec / "alertPolicies").items()])
    if collector.problems:
        raise Refused(*collector.problems)
    if (
        service is None
        or labels is None
        or window is None
        or objective is None
        or sli is None
        or tiers is None
    ):
        raise Refused()  # parts refused by the catalog, which reports their problems
    value: dict[str, Any] = {"name": name, "objective": objective[0]}
    origins: dict[Loc, Field] = {
        (): spec,
        ("name",): root / "metadata" / "name",
        ("objective",): objective[1],
    }
    if description:
        value["description"] = description
        origins[("description",)] = spec / "description"
    if labels:
        value["labels"] = labels
        origins[("labels",)] = root / "metadata" / "labels"
    value["window"] = window[0] if isinstance(window[0], dict) else format_duration(window[0])
    origins[("window",)] = window[1]
    value["sli"] = sli.value
    origins.update(sli.under(("sli",)))
    if tiers:
        value["tiers"] = [tier.value for tier in tiers]
        origins[("tiers",)] = spec / "alertPolicies"
        for index, tier in enumerate(tiers):
            origins.update(tier.under(("tiers", index)))
    else:
        origins[("tiers",)] = window[1]  # the default tiers fit the window or not
    draft = Draft(f"OpenSLO SLO {name!r}", spec, service)
    draft.origins[("service",)] = spec / "service"
    draft.add_slo(value, origins)
    return draft


def _labels(at: Field) -> dict[str, str]:
    labels: dict[str, str] = {}
    for key, value in at.mapping().items():
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            labels[str(key)] = ",".join(value)
        elif isinstance(value, str):
            labels[str(key)] = value
        else:
            raise (at / str(key)).refusal("a label value must be a string or a list of strings", "quote it")
    return labels


def _budgeting(at: Field) -> None:
    if not at.exists:
        return
    method = at.text()
    if method == "Occurrences":
        return
    if method in ("Timeslices", "RatioTimeslices"):
        raise at.refusal(
            f"budgetingMethod {method} counts good time slices; budgetguard budgets events (Occurrences)",
            "use budgetingMethod: Occurrences",
        )
    raise at.refusal(f"unknown budgetingMethod {method!r}", "use budgetingMethod: Occurrences")


def _window(at: Field) -> tuple[timedelta | dict[str, str], Field]:
    """A rolling duration, or a calendar window as the native ``{calendar, timezone}``."""
    if not at.exists:
        return DEFAULT_WINDOW, at
    windows = at.items()
    if len(windows) != 1:
        raise at.refusal(
            "timeWindow takes exactly one window", "give one entry: [{duration: 30d, isRolling: true}]"
        )
    entry = windows[0]
    entry.mapping(("duration", "isRolling", "calendar"), what="an OpenSLO timeWindow")
    if (entry / "calendar").exists:
        return _calendar_window(entry), entry / "calendar"
    if not (entry / "isRolling").boolean(True):
        raise (entry / "isRolling").refusal(
            "only rolling windows and calendar windows are supported: a window that does not roll needs a "
            "calendar (when its periods begin, and in which time zone)",
            "use a rolling window: {duration: 30d, isRolling: true}, or a calendar month: "
            "{duration: 1M, isRolling: false, calendar: {startTime: '2026-01-01 00:00:00', timeZone: UTC}}",
        )
    duration = entry / "duration"
    return openslo_duration(duration), duration


# OpenSLO calendar durations budgetguard's calendar periods can be: one week, month or quarter.
_CALENDAR_DURATIONS = {
    "1w": CalendarUnit.WEEK,
    "7d": CalendarUnit.WEEK,
    "1M": CalendarUnit.MONTH,
    "1Q": CalendarUnit.QUARTER,
    "3M": CalendarUnit.QUARTER,
}


def _calendar_window(entry: Field) -> dict[str, str]:
    """``{duration: 1M, isRolling: false, calendar: {startTime, timeZone}}`` -> ``{calendar: month, ...}``.

    ``startTime`` says where the periods are anchored; budgetguard's begin at local midnight on the
    first day of a week (Monday), month or quarter, so it must be such an instant in ``timeZone``.
    """
    if (entry / "isRolling").boolean(False):
        raise (entry / "isRolling").refusal(
            "a calendar window does not roll: its budget resets when each period begins",
            "write isRolling: false beside calendar",
        )
    duration = entry / "duration"
    unit = _CALENDAR_DURATIONS.get(duration.text().strip())
    if unit is None:
        raise duration.refusal(
            f"a calendar window of {duration.text()!r}: budgetguard's calendar periods are one week, month "
            "or quarter",
            "write duration: 1w, 1M or 1Q",
        )
    calendar = entry / "calendar"
    calendar.mapping(("startTime", "timeZone"), what="an OpenSLO calendar")
    timezone = (calendar / "timeZone").optional_text("UTC")
    try:
        tz = zone(timezone)
    except ValueError as exc:
        raise (calendar / "timeZone").refusal(
            str(exc), "write an IANA name, e.g. timeZone: Europe/Berlin"
        ) from exc
    start_at = calendar / "startTime"
    if start_at.exists:
        text = start_at.text() if not isinstance(start_at.value, datetime) else str(start_at.value)
        try:
            start = datetime.fromisoformat(text)
        except ValueError as exc:
            raise start_at.refusal(
                f"{text!r} is not a date and time",
                "write it as 'YYYY-MM-DD hh:mm:ss', e.g. '2026-01-01 00:00:00'",
            ) from exc
        local = (
            start.replace(tzinfo=None) if start.tzinfo is None else start.astimezone(tz).replace(tzinfo=None)
        )
        first = period_at(local.replace(tzinfo=tz), unit, timezone).start.astimezone(tz).replace(tzinfo=None)
        if local != first:
            raise start_at.refusal(
                f"the {unit}s would begin at {local:%Y-%m-%d %H:%M:%S} ({timezone}); budgetguard's calendar "
                f"{unit}s begin at local midnight on the first day of the {unit}"
                + (" (a Monday)" if unit is CalendarUnit.WEEK else ""),
                f"write startTime: '{first:%Y-%m-%d %H:%M:%S}'",
            )
    return {"calendar": str(unit), "timezone": timezone}


def _objective(at: Field) -> tuple[Decimal, Field, Field]:
    """(objective percent, where it came from, the objective entry)."""
    objectives = at.required().items()
    if len(objectives) != 1:
        raise at.refusal(
            f"{len(objectives)} objectives; a budgetguard SLO has exactly one (composite and multi-threshold "
            "SLOs are not supported)",
            "declare one SLO per objective",
        )
    entry = objectives[0]
    entry.mapping(_OBJECTIVE, what="an OpenSLO objective")
    for key, why in (
        ("op", "it compares a thresholdMetric"),
        ("value", "it compares a thresholdMetric"),
        ("timeSliceTarget", "it belongs to Timeslices budgeting"),
        ("timeSliceWindow", "it belongs to Timeslices budgeting"),
        ("compositeWeight", "composite SLOs are not supported"),
    ):
        if (entry / key).exists:
            raise (entry / key).refusal(f"objective {key} is not supported: {why}", f"remove {key}")
    target, target_percent = entry / "target", entry / "targetPercent"
    if target.exists == target_percent.exists:
        raise entry.refusal(
            "give exactly one of target (a ratio, e.g. 0.999) or targetPercent (e.g. 99.9)",
            "keep one of them",
        )
    if target.exists:
        ratio = target.number()
        if not Decimal(0) < ratio < Decimal(1):
            raise target.refusal(
                f"target {target.value!r} is a ratio between 0 and 1 (0.999 for 99.9%)",
                "write the ratio, or use targetPercent for a percentage",
            )
        return percent(ratio), target, entry
    return target_percent.number(), target_percent, entry


def _slo_indicator(spec: Field, objective: tuple[Decimal, Field, Field], catalog: Catalog) -> Sourced:
    entry = objective[2]
    given = [at / key for at in (spec, entry) for key in ("indicator", "indicatorRef") if (at / key).exists]
    if len(given) != 1:
        raise (given[1] if len(given) > 1 else spec).refusal(
            "give the SLI exactly once: indicator (inline) or indicatorRef (the name of an SLI), on the SLO "
            f"or on its objective; found {', '.join(at.path for at in given) or 'none'}",
            "keep one of them",
        )
    where = given[0]
    if where.loc[-1] == "indicatorRef":
        return catalog.by_ref("SLI", where, lambda at: _indicator(at, catalog))
    _metadata(where)
    return _indicator(where, catalog)


# --- SLIs -----------------------------------------------------------------------------------------


def _indicator(at: Field, catalog: Catalog) -> Sourced:
    spec = at / "spec"
    spec.required().mapping(("description", "thresholdMetric", "ratioMetric"), what="an OpenSLO SLI's spec")
    if (spec / "thresholdMetric").exists:
        raise (spec / "thresholdMetric").refusal(
            "thresholdMetric (a metric compared with the objective's op and value, e.g. p99 latency) has no "
            "error budget budgetguard can count",
            "write the SLI as a ratioMetric of good (or bad) and total events, e.g. histogram buckets",
        )
    ratio = spec / "ratioMetric"
    ratio.required().mapping(_RATIO, what="an OpenSLO ratioMetric")
    counter = (ratio / "counter").boolean(False)
    if (ratio / "raw").exists or (ratio / "rawType").exists:
        for key in ("good", "bad", "total"):
            if (ratio / key).exists:
                raise (ratio / key).refusal(
                    "raw cannot be combined with good, bad or total", f"remove {key} or raw"
                )
        query, query_at = _query(ratio / "raw", counter=False, catalog=catalog, precomputed=True)
        raw_type = (ratio / "rawType").text()
        if raw_type not in ("success", "failure"):
            raise (ratio / "rawType").refusal(f"unknown rawType {raw_type!r}", "use success or failure")
        error_ratio = query if raw_type == "failure" else f"1 - ({query})"
        return Sourced(
            {"raw": {"error_ratio_query": error_ratio}}, {(): ratio, ("raw", "error_ratio_query"): query_at}
        )
    good, bad = ratio / "good", ratio / "bad"
    if good.exists == bad.exists:
        raise ratio.refusal("give exactly one of good or bad, beside total", "keep one of them")
    total_query, total_at = _query(ratio / "total", counter=counter, catalog=catalog)
    numerator_query, numerator_at = _query(good if good.exists else bad, counter=counter, catalog=catalog)
    error_query = numerator_query if bad.exists else bad_from_good(total_query, numerator_query)
    return Sourced(
        {"events": {"error_query": error_query, "total_query": total_query}},
        {(): ratio, ("events", "error_query"): numerator_at, ("events", "total_query"): total_at},
    )


def _query(at: Field, *, counter: bool, catalog: Catalog, precomputed: bool = False) -> tuple[str, Field]:
    at.required().mapping(("metricSource",), what="an OpenSLO metric")
    source = at / "metricSource"
    source.required().mapping(("metricSourceRef", "type", "spec"), what="an OpenSLO metricSource")
    ref, source_type = source / "metricSourceRef", source / "type"
    if ref.exists:
        catalog.by_ref("DataSource", ref, lambda root: _data_source(root, catalog))
    if source_type.exists:
        _prometheus(source_type, "the metric source")
    if not ref.exists and not source_type.exists:
        raise source.refusal(
            "the metric source names neither a type nor a DataSource",
            "add type: Prometheus, or metricSourceRef: <a DataSource of type Prometheus>",
        )
    (source / "spec").required().mapping(("query",), what="a Prometheus metricSource's spec")
    query_at = source / "spec" / "query"
    query = query_at.text()
    if WINDOW_PLACEHOLDER.search(query):
        return query, query_at
    if precomputed:
        raise query_at.refusal(
            "a precomputed ratio has one fixed window, and budgetguard needs the ratio over each tier's "
            "windows",
            "write the query with the {{.window}} placeholder in its range selectors, or give good (or bad) "
            "and total counters",
        )
    if counter:
        selector = parse_selector(query) or summed_selector(query)
        if selector is None:
            raise query_at.refusal(
                f"with counter: true budgetguard applies the rate window itself, and {query!r} is not a "
                "bare selector",
                'write the counter as a selector, e.g. http_requests_total{code=~"5.."} (or sum of one), or '
                "write the whole query with the {{.window}} placeholder: sum(rate(x[{{.window}}]))",
            )
        return rate_sum(selector), query_at
    raise query_at.refusal(
        "a query without the {{.window}} placeholder and without counter: true gives budgetguard no "
        "events to count over each window",
        "set counter: true on the ratioMetric and write the counter as a bare selector, or write the range "
        "yourself: sum(rate(x[{{.window}}]))",
    )


# --- alerting -------------------------------------------------------------------------------------


def _policy_entry(at: Field, catalog: Catalog) -> Sourced:
    if (at / "alertPolicyRef").exists:
        at.mapping(("alertPolicyRef",), what="an alertPolicies entry")
        return catalog.by_ref("AlertPolicy", at / "alertPolicyRef", lambda root: _policy(root, catalog))
    if (at / "kind").value != "AlertPolicy":
        raise at.refusal(
            "an alertPolicies entry is either {alertPolicyRef: <name>} or an inline AlertPolicy",
            "give alertPolicyRef, or kind: AlertPolicy with metadata and spec",
        )
    _metadata(at)
    return _policy(at, catalog)


def _policy(at: Field, catalog: Catalog) -> Sourced:
    spec = at / "spec"
    spec.required().mapping(_POLICY_SPEC, what="an OpenSLO AlertPolicy's spec")
    if not (spec / "alertWhenBreaching").boolean(True):
        raise (spec / "alertWhenBreaching").refusal(
            "a policy that does not alert on breaches has no budgetguard tier",
            "remove the policy from the SLO, or set alertWhenBreaching: true",
        )
    conditions = (spec / "conditions").required().items()
    if len(conditions) != 1:
        raise (spec / "conditions").refusal(
            f"{len(conditions)} conditions; an OpenSLO v1 AlertPolicy has exactly one",
            "split the conditions into one AlertPolicy each and list them all under the SLO's alertPolicies",
        )
    entry = conditions[0]
    if (entry / "conditionRef").exists:
        entry.mapping(("conditionRef",), what="a conditions entry")
        tier = catalog.by_ref("AlertCondition", entry / "conditionRef", _condition)
    else:
        if entry.value is None or (entry / "kind").value != "AlertCondition":
            raise entry.refusal(
                "a conditions entry is either {conditionRef: <name>} or an inline AlertCondition",
                "give conditionRef, or kind: AlertCondition with metadata and spec",
            )
        _metadata(entry)
        tier = _condition(entry)
    for target in (spec / "notificationTargets").items():
        if (target / "targetRef").exists:
            catalog.resolve("AlertNotificationTarget", target / "targetRef")
    if (spec / "notificationTargets").exists:
        catalog.notes.append(
            note(
                spec / "notificationTargets",
                "notification targets are not used: budgetguard reports verdicts through its exporter, API "
                "and actions; route its alerts with alerting labels",
            )
        )
    for key in ("alertWhenNoData", "alertWhenResolved"):
        if (spec / key).boolean(False):
            catalog.notes.append(
                note(
                    spec / key, f"{key} has no effect: budgetguard reports no data as an inconclusive verdict"
                )
                if key == "alertWhenNoData"
                else note(spec / key, f"{key} has no effect: resolution is for the alert's receiver")
            )
    return tier


def _condition(at: Field) -> Sourced:
    spec = at / "spec"
    spec.required().mapping(("description", "severity", "condition"), what="an OpenSLO AlertCondition's spec")
    severity_at = spec / "severity"
    severity = SEVERITIES.get(severity_at.text().lower())
    if severity is None:
        raise severity_at.refusal(
            f"severity {severity_at.value!r} does not map to a budgetguard tier severity",
            f"use one of {', '.join(SEVERITIES)} (the first three page, the others are tickets)",
        )
    condition = spec / "condition"
    condition.required().mapping(_CONDITION, what="an OpenSLO burn-rate condition")
    kind = (condition / "kind").optional_text("burnrate")
    if kind != "burnrate":
        raise (condition / "kind").refusal(f"condition kind {kind!r} is not supported", "use kind: burnrate")
    op = (condition / "op").optional_text("gte")
    if op not in ("gte", "gt"):
        raise (condition / "op").refusal(
            f"op {op!r} would alert while the burn rate stays below the threshold, when the budget is safe",
            "use op: gte (a burn rate at or above the threshold alerts)",
        )
    threshold = (condition / "threshold").number()
    long_window = openslo_duration((condition / "lookbackWindow").required())
    alert_after = condition / "alertAfter"
    if alert_after.exists and openslo_duration(alert_after, allow_zero=True) > timedelta(0):
        raise alert_after.refusal(
            "alertAfter (a hold time before alerting) has no equivalent: budgetguard confirms a burn with a "
            "short window instead",
            f"remove alertAfter or set it to 0m; the short window is lookbackWindow/{SHORT_WINDOW_RATIO} "
            f"unless the annotation {SHORT_WINDOW_ANNOTATION} gives it",
        )
    short_at = at / "metadata" / "annotations" / SHORT_WINDOW_ANNOTATION
    if short_at.exists:
        short_window = openslo_duration(short_at)
    else:
        short_at = condition / "lookbackWindow"
        short_window = timedelta(
            milliseconds=(long_window // timedelta(milliseconds=1)) // SHORT_WINDOW_RATIO
        )
    tier = {
        "severity": severity,
        "long_window": format_duration(long_window),
        "short_window": format_duration(short_window),
        "burn_rate": float(threshold),
    }
    return Sourced(
        tier,
        {
            (): condition,
            ("severity",): severity_at,
            ("long_window",): condition / "lookbackWindow",
            ("short_window",): short_at,
            ("burn_rate",): condition / "threshold",
        },
    )
