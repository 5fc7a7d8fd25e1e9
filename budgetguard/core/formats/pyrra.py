"""Pyrra's ``pyrra.dev/v1alpha1`` ``ServiceLevelObjective`` as a native SLO that Pyrra would judge alike.

One object is one SLO. Mapping (Pyrra's behaviour from ``kubernetes/api/v1alpha1`` and ``slo/rules.go``):

- id: the SLO is ``metadata.name``; the service is the ``pyrra.dev/service`` label when given, else
  ``metadata.namespace`` (Pyrra identifies an objective by namespace and name). Neither is refused.
- labels: the ``pyrra.dev/``-prefixed labels, prefix stripped, the ones Pyrra puts on its rules; other
  metadata labels are Kubernetes' business and are not read.
- ``target`` (a string of percent, "99.5") -> ``objective``; ``window`` -> ``window``.
- the tiers are Pyrra's own four (``Windows()``): burn rates 14 and 7 (page), 2 and 1 (ticket), long and
  short windows scaled from its 28-day ones (1h/5m, 6h/30m, 1d/2h, 4d/6h) and rounded to the minute as Go
  does. Their ``for:`` durations have no equivalent: budgetguard confirms with the short window.
- indicators: ``ratio`` -> events ``sum(rate(errors[w]))`` / ``sum(rate(total[w]))``; ``latency`` -> a
  latency SLI when success is ``<h>_bucket{..., le="x"}`` and total ``<h>_count{...}`` with the same other
  matchers, else events (total - success); ``latencyNative`` -> raw ``1 - histogram_fraction(0, x, ...)``;
  ``bool_gauge`` -> raw ``(count_over_time - sum_over_time) / count_over_time``, Pyrra's own expressions.

Refused: ``grouping`` (one SLO per group; budgetguard judges one series), a target below 1 (Pyrra only
warns that "0.99" means 0.99%), selectors that are not bare vector selectors, windows too short for
Pyrra's minute-rounded tiers. Accepted without effect (listed as notes): the absent alert, Thanos
``partial_response_strategy``, ``performanceOverAccuracy`` and ``ruleOutput``.

Pure: parsed YAML in, drafts out.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any

from budgetguard.core.durations import format_duration
from budgetguard.core.errors import SpecProblem
from budgetguard.core.formats._common import Collector, Document, Draft, Field, Loc, Sourced, note, percent
from budgetguard.core.formats._promql import (
    WINDOW,
    Selector,
    bad_from_good,
    parse_selector,
    rate_sum,
    selector_text,
)

API_VERSION = "pyrra.dev/v1alpha1"
KIND = "ServiceLevelObjective"
LABEL_PREFIX = "pyrra.dev/"
SERVICE_LABEL = "pyrra.dev/service"
DEFAULT_NAMESPACE = "default"

_TOP = ("apiVersion", "kind", "metadata", "spec", "status")
_SPEC = (
    "description",
    "target",
    "window",
    "indicator",
    "alerting",
    "partial_response_strategy",
    "performanceOverAccuracy",
    "ruleOutput",
)
_INDICATORS = ("ratio", "latency", "latencyNative", "bool_gauge")
_ALERTING = ("disabled", "burnrates", "absent", "name", "absentName", "severities")
_SEVERITIES = ("absent", "fastBurn", "mediumBurn", "slowBurn", "longTermBurn")

# slo/rules.go Windows(): (severity, long, short) as divisors of the SLO window, and the burn factor.
# 28d gives 1h/5m x14, 6h/30m x7 (critical), 1d/2h x2, 4d/6h x1 (warning).
_TIERS = (
    ("page", 28 * 24, 28 * 24 * 12, 14.0),
    ("page", 28 * 4, 28 * 24 * 2, 7.0),
    ("ticket", 28, 28 * 12, 2.0),
    ("ticket", 7, 28 * 4, 1.0),
)
_MINUTE_NS = 60 * 10**9


def _go_round_to_minute(window: timedelta, divisor: int) -> timedelta:
    """``(window / divisor).Round(time.Minute)`` in Go: integer nanoseconds, halves away from zero."""
    nanoseconds = (window // timedelta(microseconds=1)) * 1000 // divisor
    remainder = nanoseconds % _MINUTE_NS
    rounded = nanoseconds - remainder + (_MINUTE_NS if 2 * remainder >= _MINUTE_NS else 0)
    return timedelta(microseconds=rounded // 1000)


def pyrra_tiers(window: timedelta) -> list[dict[str, Any]]:
    """Pyrra's four multi-window tiers for an SLO ``window``, as native tier entries."""
    return [
        {
            "severity": severity,
            "long_window": format_duration(_go_round_to_minute(window, long_divisor)),
            "short_window": format_duration(_go_round_to_minute(window, short_divisor)),
            "burn_rate": factor,
        }
        for severity, long_divisor, short_divisor, factor in _TIERS
    ]


def read(document: Document) -> tuple[list[Draft], list[SpecProblem]]:
    root = document.root
    if document.kind != KIND:
        return [], [
            (root / "kind").problem(
                f"Pyrra kind {document.kind!r} is not an SLO declaration",
                f"budgetguard reads kind {KIND} of {API_VERSION}",
            )
        ]
    collector = Collector()
    collector.attempt(lambda: root.mapping(_TOP, what="a Pyrra ServiceLevelObjective"))
    metadata = root / "metadata"
    name = collector.attempt((metadata / "name").text)
    spec = (root / "spec").for_slo(name)
    identity = collector.attempt(lambda: _identity(metadata.for_slo(name)))
    collector.attempt(lambda: spec.required().mapping(_SPEC, what="a Pyrra ServiceLevelObjective's spec"))
    if not isinstance(spec.value, Mapping):  # nothing under it can be read: say only that
        return [], collector.problems
    objective = collector.attempt(lambda: _target(spec / "target"))
    description = collector.attempt((spec / "description").description)
    window = collector.attempt((spec / "window").duration)
    tiers = collector.attempt(lambda: _tiers(spec / "window", window)) if window else None
    sli = collector.attempt(lambda: _indicator(spec / "indicator"))
    alerting = collector.attempt(lambda: _alerting(spec / "alerting"))
    notes = collector.attempt(lambda: _notes(spec, metadata)) or []
    if collector.problems:
        return [], collector.problems
    assert name and identity and objective is not None and window and tiers and sli and alerting
    service, labels, service_at = identity
    slo: dict[str, Any] = {"name": name, "objective": objective}
    origins: dict[Loc, Field] = {
        (): spec,
        ("name",): metadata / "name",
        ("objective",): spec / "target",
        ("window",): spec / "window",
        ("tiers",): spec / "window",
    }
    if description:
        slo["description"] = description
        origins[("description",)] = spec / "description"
    if labels:
        slo["labels"] = labels
        origins[("labels",)] = metadata / "labels"
    slo["window"] = format_duration(window)
    slo["sli"] = sli.value
    origins.update(sli.under(("sli",)))
    slo["tiers"] = tiers
    slo["alerting"] = alerting.value
    origins.update(alerting.under(("alerting",)))
    draft = Draft(f"Pyrra ServiceLevelObjective {name!r}", spec, service, notes=notes)
    draft.origins[("service",)] = service_at
    draft.add_slo(slo, origins)
    return [draft], []


def _identity(metadata: Field) -> tuple[str, dict[str, str], Field]:
    labels_at = metadata / "labels"
    labels = labels_at.strings()
    propagated = {
        key.removeprefix(LABEL_PREFIX): value for key, value in labels.items() if key.startswith(LABEL_PREFIX)
    }
    if SERVICE_LABEL in labels:
        return labels[SERVICE_LABEL], propagated, labels_at / SERVICE_LABEL
    namespace = metadata / "namespace"
    if namespace.exists:
        return namespace.text(), propagated, namespace
    # kubectl puts an object without a namespace into the context's namespace, "default" unless set;
    # Pyrra only warns. The service is the SLO id's first half, so say where it came from (a note).
    return DEFAULT_NAMESPACE, propagated, metadata


def _target(at: Field) -> Decimal:
    target = at.number()
    if Decimal(0) < target < Decimal(1):
        raise at.refusal(
            f"target {at.value!r} is a percentage: this asks for {target}% of good events",
            f'write the percentage, e.g. "{percent(target)}"',
        )
    return target


def _tiers(at: Field, window: timedelta) -> list[dict[str, Any]]:
    tiers = pyrra_tiers(window)
    if any(tier["short_window"] == "0s" for tier in tiers):
        raise at.refusal(
            f"a {format_duration(window)} window is too short for Pyrra's burn-rate tiers: its shortest "
            "window rounds to 0 minutes",
            "use a window of at least 2d (Pyrra's tiers need window/8064 to round to 1m)",
        )
    return tiers


def _selector(at: Field) -> Selector:
    text = (at / "metric").text()
    selector = parse_selector(text)
    if selector is None:
        raise (at / "metric").refusal(
            f"{text!r} is not a bare vector selector",
            'write the metric and its label matchers only, e.g. http_requests_total{job="api",code=~"5.."}; '
            "Pyrra and budgetguard apply rate() and the windows themselves",
        )
    return selector


def _no_grouping(at: Field) -> None:
    grouping = at / "grouping"
    if grouping.exists and grouping.value:
        raise grouping.refusal(
            "grouping (one SLO per value of the grouping labels) is not supported: budgetguard judges one "
            "series per SLO",
            "remove grouping to judge the aggregate, or declare one SLO per group with its label matcher "
            "in the selectors",
        )


def _indicator(at: Field) -> Sourced:
    at.required().mapping(_INDICATORS, what="a Pyrra indicator")
    given = [kind for kind in _INDICATORS if (at / kind).exists]
    if len(given) != 1:
        raise at.refusal(
            f"declare exactly one indicator; found {', '.join(given) or 'none'}",
            f"give one of {', '.join(_INDICATORS)}",
        )
    kind = given[0]
    inner = at / kind
    if kind == "ratio":
        inner.mapping(("errors", "total", "grouping"), what="a Pyrra ratio indicator")
        _no_grouping(inner)
        errors, total = _selector(inner / "errors"), _selector(inner / "total")
        return Sourced(
            {"events": {"error_query": rate_sum(errors), "total_query": rate_sum(total)}},
            {
                (): inner,
                ("events", "error_query"): inner / "errors" / "metric",
                ("events", "total_query"): inner / "total" / "metric",
            },
        )
    if kind == "latency":
        inner.mapping(("success", "total", "grouping"), what="a Pyrra latency indicator")
        _no_grouping(inner)
        return _latency(inner, _selector(inner / "success"), _selector(inner / "total"))
    if kind == "latencyNative":
        inner.mapping(("latency", "total", "grouping"), what="a Pyrra latencyNative indicator")
        _no_grouping(inner)
        total = _selector(inner / "total")
        seconds = (inner / "latency").duration().total_seconds()
        query = f"1 - histogram_fraction(0, {seconds:g}, sum(rate({total}{WINDOW})))"
        return Sourced({"raw": {"error_ratio_query": query}}, {(): inner})
    inner.mapping(("metric", "grouping"), what="a Pyrra bool_gauge indicator")
    _no_grouping(inner)
    gauge = _selector(inner)
    count = f"sum(count_over_time({gauge}{WINDOW}))"
    query = f"({count} - sum(sum_over_time({gauge}{WINDOW}))) / {count}"
    return Sourced({"raw": {"error_ratio_query": query}}, {(): inner, ("raw",): inner / "metric"})


def _latency(at: Field, success: Selector, total: Selector) -> Sourced:
    le = success.matcher("le")
    if le is None or le.op != "=":
        raise (at / "success" / "metric").refusal(
            'the success metric needs an le="<seconds>" matcher: the bucket of requests fast enough',
            'e.g. http_request_duration_seconds_bucket{job="api",le="0.5"}',
        )
    try:
        threshold = float(le.value)
    except ValueError as exc:
        raise (at / "success" / "metric").refusal(
            f"le={le.quoted} is not a number of seconds", 'write e.g. le="0.5"'
        ) from exc
    base = (success.metric or "").removesuffix("_bucket")
    same_histogram = (
        success.metric == f"{base}_bucket"
        and total.metric == f"{base}_count"
        and sorted(map(str, success.without("le"))) == sorted(map(str, total.matchers))
    )
    if same_histogram:
        selector = ", ".join(str(m) for m in total.matchers)
        return Sourced(
            {"latency": {"metric": base, "selector": selector, "threshold_seconds": threshold}},
            {
                (): at,
                ("latency", "metric"): at / "success" / "metric",
                ("latency", "selector"): at / "total" / "metric",
                ("latency", "threshold_seconds"): at / "success" / "metric",
            },
        )
    # Not one histogram's bucket and count: bad = total - success, as Pyrra computes it.
    good = rate_sum(selector_text(success.metric, success.matchers))
    return Sourced(
        {"events": {"error_query": bad_from_good(rate_sum(total), good), "total_query": rate_sum(total)}},
        {
            (): at,
            ("events", "error_query"): at / "success" / "metric",
            ("events", "total_query"): at / "total" / "metric",
        },
    )


def _alerting(at: Field) -> Sourced:
    """Pyrra's burn-rate alerts, which it generates unless told not to (``burnrates: true`` is its
    default): named ``ErrorBudgetBurn``, severity ``critical`` for the fast tiers, ``warning`` for the
    slow ones."""
    at.mapping(_ALERTING, what="Pyrra alerting")
    enabled = (at / "burnrates").boolean(True) and not (at / "disabled").boolean(False)
    severities = at / "severities"
    severities.mapping(_SEVERITIES, what="Pyrra alerting severities")
    page = _one_severity(severities, "fastBurn", "mediumBurn", "critical")
    ticket = _one_severity(severities, "slowBurn", "longTermBurn", "warning")
    name = (at / "name").optional_text("ErrorBudgetBurn")
    value = {
        "name": name,
        "page_alert": {"disable": not enabled, "labels": {"severity": page}},
        "ticket_alert": {"disable": not enabled, "labels": {"severity": ticket}},
    }
    return Sourced(value, {(): at, ("name",): at / "name"})


def _one_severity(at: Field, first: str, second: str, default: str) -> str:
    one, two = (at / first).optional_text(default), (at / second).optional_text(default)
    if one != two:
        raise (at / second).refusal(
            f"{first} ({one}) and {second} ({two}) differ, but budgetguard's two tiers of one severity "
            "share their alert labels",
            f"give {first} and {second} the same severity",
        )
    return one


def _notes(spec: Field, metadata: Field) -> list[SpecProblem]:
    notes = []
    if not (metadata / "namespace").exists and SERVICE_LABEL not in (metadata / "labels").strings():
        notes.append(
            note(
                metadata,
                f"no metadata.namespace: the SLO's service is {DEFAULT_NAMESPACE!r}, the namespace kubectl "
                f"would give it; set metadata.namespace or the label {SERVICE_LABEL} to choose another",
            )
        )
    alerting = spec / "alerting"
    absent = (alerting / "absent").value is not False
    for key in ("absent", "absentName"):
        if (alerting / key).exists and absent:
            notes.append(
                note(
                    alerting / key,
                    "budgetguard has no absent-metric alert: a missing series makes the verdict inconclusive "
                    "('no series') instead",
                )
            )
    if (alerting / "burnrates").value is not False and (alerting / "disabled").value is not True:
        notes.append(
            note(
                alerting,
                "Pyrra's burn-rate alerts become one page (critical) and one ticket (warning) alert, each "
                "firing when any of its two tiers burns over both windows; Pyrra's per-tier `for` holds "
                "(2m to 3h at 28d) are not kept, as in Sloth's alerts",
            )
        )
    if (alerting / "severities" / "absent").exists and absent:
        notes.append(note(alerting / "severities" / "absent", "no absent alert in budgetguard (see absent)"))
    for key, why in (
        ("partial_response_strategy", "budgetguard reports Thanos' partial responses as warnings"),
        ("performanceOverAccuracy", "it changes only how Pyrra writes its recording rules"),
        ("ruleOutput", "it routes Pyrra's generated rules"),
    ):
        if (spec / key).exists:
            notes.append(note(spec / key, f"{key} has no effect in budgetguard: {why}"))
    return notes
