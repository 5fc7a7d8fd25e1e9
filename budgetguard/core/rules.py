"""Prometheus rules for SLOs: recording rules, metadata series and multi-window burn-rate alerts.

``budgetguard rules`` turns every SLO into one rule group that Prometheus (or a Thanos, Mimir or
Cortex ruler) evaluates on its own, so the numbers keep coming when budgetguard is down, dashboards
read cheap pre-computed series, and the daemon's recording-rule mode can read them instead of
evaluating every window itself. The alerts follow Sloth's semantics (one page and one ticket alert
per SLO, each the OR of its tiers, each tier firing when both its windows burn faster than its
threshold) with budgetguard's tiers, so they agree with the daemon's ``burning``/``warning`` verdicts.

Pure: SLOs in, plain dicts out (the CLI writes them as YAML). It reuses ``budgetguard.core.queries`` for
the PromQL of each window and part, so the rules and ``budgetguard eval`` ask Prometheus the same
questions. No I/O, no clock, no logging.

The recorded-series contract
----------------------------

The daemon's recording-rule mode and dashboards read exactly these series; change them only together
with ``RULES_SCHEMA`` (which is part of ``rules_hash``).

Labels. Every recorded series of an SLO carries ``budgetguard_service="<service>"`` and
``budgetguard_slo="<slo name>"``, whatever labels the SLO's queries keep (``version`` when the SLI
is ``sum by (version) (...)``), and the SLO's own labels (``slo.labels``) where they do not clash:
an SLO label never overwrites a label the query keeps (it is added with ``label_replace`` only where
the series lacks it) nor a ``budgetguard_*`` label (SLO labels named ``budgetguard_*`` are left out).

Windows. ``<W>`` is the window as ``format_duration`` writes it (``5m``, ``1h``, ``30d``). For every
window W of ``slo.windows()`` except the SLO window ``slo.window``, with ``{{.window}}`` rendered as W:

- ``budgetguard:slo_errors:rate<W>``: bad events per second. Events SLIs: the error query, or 0
  where it returns nothing beside traffic (a ``code="500"`` counter never created means no errors,
  as in ``eval``). Latency SLIs: total minus good, at least 0.
- ``budgetguard:slo_requests:rate<W>``: all events per second (the total query).
- ``budgetguard:slo_error_ratio:rate<W>``: errors / requests of the two series above.
- Raw SLIs give no counts: only ``budgetguard:slo_error_ratio:rate<W>``, the raw query itself.

A query written with ``increase()`` (a count per window) is divided by W's seconds, so every
``rate<W>`` series is per second whatever the query's style.

For the SLO window P, with S the shortest window of the SLO (``source_window``):

- ``budgetguard:slo_errors:rate<P>`` = ``avg_over_time(budgetguard:slo_errors:rate<S>{...}[P])``,
  ``budgetguard:slo_requests:rate<P>`` the same for requests, and ``budgetguard:slo_error_ratio:rate<P>``
  their ratio: bad events over all events of P, request-weighted. Averaging the S-window *ratios*
  instead would weigh a quiet night's five minutes like a peak's.
- Raw SLIs: ``budgetguard:slo_error_ratio:rate<P>`` = ``avg_over_time`` of the S-window ratio, an
  average of ratios, because a raw SLI gives no counts to weigh by.

These P series only cover the time since the rules were first loaded (and not the gaps when the ruler
was down): they reach the full window P after P. Changing an SLO's labels, or the labels its queries
keep, starts new series; until the old ones leave P, both label sets have a P series.

Metadata, present as soon as the rules are loaded, traffic or not (how a reader tells "rules loaded"
from "no traffic"): ``budgetguard:slo_objective_ratio`` (0.999), ``budgetguard:slo_error_budget_ratio``
(0.001) and ``budgetguard:slo_period_seconds`` (2592000 for 30d), each with the identity labels, the
SLO's labels and ``budgetguard_rules_hash="<16 hex digits>"``: ``rules_hash(slo)``, which changes
exactly when the recorded numbers would (the rendered queries of every window, the windows, the
objective, the SLO window and ``RULES_SCHEMA``), and not with descriptions, labels, alerting or tiers
that add no window.

Readers use ``series_name(kind, window)``, ``recorded_windows(slo)`` (every window with series, the SLO
window included), ``source_window(slo)`` (S), ``rules_hash(slo)`` and the label and series names below
(``SERVICE_LABEL``, ``SLO_LABEL``, ``HASH_LABEL``, ``OBJECTIVE_SERIES``...), all pure.

Groups. One group per SLO, ``budgetguard-<service>-<slo>``, evaluated every ``interval`` (default
30s: the daemon's default cycle, so a reader is never more than one of its cycles behind; ten points
per 5m window, the shortest default one; and the SLO-window average, which reads every point of the
shortest window over P, stays affordable). Rules of a group run in order at one instant: the windows'
series, the SLO window's (which read the shortest window's), the metadata, then the alerts, so every
derived series and alert reads its inputs from the same evaluation, and metadata at an instant means
every series of that evaluation is stored.

Alerts compare ``error_ratio / budget`` with each tier's burn rate, the daemon's own arithmetic
(``policy``), rather than Sloth's ``ratio > factor * budget``, so both decide alike (to the last bit
when the queries return one series); the alert's value is the short window's burn rate. A
``min_events`` above the default 1 is required of both windows of a tier, as the daemon requires it.
A canary SLO's series are per version, and its alerts sum them over the canary label: the service,
as the daemon judges it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from enum import StrEnum
from typing import Any

from budgetguard.core import queries
from budgetguard.core.durations import format_duration
from budgetguard.core.queries import Part, PlannedQuery
from budgetguard.core.spec import DEFAULT_MIN_EVENTS, SLO, BurnTier, Severity

# Part of rules_hash: bump it whenever a recorded series' expression changes meaning, so readers of
# rules generated by an older budgetguard notice.
RULES_SCHEMA = 1

DEFAULT_INTERVAL = timedelta(seconds=30)

SERVICE_LABEL = "budgetguard_service"
SLO_LABEL = "budgetguard_slo"
HASH_LABEL = "budgetguard_rules_hash"
SEVERITY_LABEL = "budgetguard_severity"  # on alerts: page or ticket (Sloth's sloth_severity)
RESERVED_PREFIX = "budgetguard_"

OBJECTIVE_SERIES = "budgetguard:slo_objective_ratio"
ERROR_BUDGET_SERIES = "budgetguard:slo_error_budget_ratio"
PERIOD_SERIES = "budgetguard:slo_period_seconds"

PROMETHEUS_RULE_API_VERSION = "monitoring.coreos.com/v1"

Rule = dict[str, Any]


class SeriesKind(StrEnum):
    ERRORS = "errors"  # bad events per second
    REQUESTS = "requests"  # all events per second
    ERROR_RATIO = "error_ratio"  # errors / requests (raw SLIs: the ratio query)


class RuleFormat(StrEnum):
    PROMETHEUS = "prometheus"  # a rule file: {groups: [...]}
    PROMETHEUS_OPERATOR = "prometheus-operator"  # a PrometheusRule manifest


def series_name(kind: SeriesKind | str, window: timedelta) -> str:
    """``series_name("errors", timedelta(minutes=5))`` -> ``budgetguard:slo_errors:rate5m``."""
    return f"budgetguard:slo_{SeriesKind(kind)}:rate{format_duration(window)}"


def recorded_windows(slo: SLO) -> tuple[timedelta, ...]:
    """Every window with recorded series, shortest first: all of ``slo.windows()``, the SLO window
    included (its series are derived from ``source_window``, the others come from the queries)."""
    return slo.windows()


def source_window(slo: SLO) -> timedelta:
    """S: the shortest window, whose series the SLO-window series average over the SLO window."""
    return min(_direct_windows(slo))


def _direct_windows(slo: SLO) -> tuple[timedelta, ...]:
    # Tier validation keeps short_window < long_window <= slo.window, so one is always left.
    return tuple(w for w in slo.windows() if w != slo.window)


def group_name(slo: SLO) -> str:
    return f"budgetguard-{slo.service}-{slo.name}"


def rules_hash(slo: SLO) -> str:
    """A short, stable digest of everything that changes the recorded numbers of ``slo``.

    The rendered query of every window and part (which carries the SLI kind, the latency threshold
    and the canary label), the windows, the SLO window, the objective and ``RULES_SCHEMA``; not
    names, labels, descriptions, alerting or tiers except through the windows they add.
    """
    payload = {
        "schema": RULES_SCHEMA,
        "objective_ratio": str(slo.objective_ratio),  # exact: "999/1000"
        "window": format_duration(slo.window),
        "source_window": format_duration(source_window(slo)),
        "queries": [
            [format_duration(window), str(part), expr, counts]
            for window, part, expr, counts in queries.rendered(slo, _direct_windows(slo))
        ],
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# --- PromQL text -------------------------------------------------------------------------------------


def promql_string(value: str) -> str:
    """A PromQL double-quoted string literal (JSON's escapes are a subset of Go's)."""
    return json.dumps(value, ensure_ascii=False)


def promql_number(value: float) -> str:
    """The shortest text that parses back to the same double (PromQL reads it with Go's ParseFloat)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _indent(text: str, spaces: int = 2) -> str:
    return "\n".join(" " * spaces + line if line else line for line in text.splitlines())


def _selector(slo: SLO) -> str:
    return f"{{{SERVICE_LABEL}={promql_string(slo.service)}, {SLO_LABEL}={promql_string(slo.name)}}}"


def series_ref(slo: SLO, kind: SeriesKind, window: timedelta) -> str:
    return series_name(kind, window) + _selector(slo)


def _identity(slo: SLO) -> dict[str, str]:
    return {SERVICE_LABEL: slo.service, SLO_LABEL: slo.name}


def user_labels(labels: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in sorted(labels.items()) if not k.startswith(RESERVED_PREFIX)}


def _with_slo_labels(slo: SLO, expr: str) -> str:
    """Add each SLO label only where the series lacks it: label_replace's anchored regex "" matches
    only an absent (empty) label, so a label the query keeps wins."""
    for name, value in user_labels(slo.labels).items():
        replacement = promql_string(value.replace("$", "$$"))  # label_replace expands $1; $$ is a literal $
        label = promql_string(name)
        expr = f'label_replace(\n{_indent(expr)},\n  {label}, {replacement}, {label}, ""\n)'
    return expr


def _per_second(query: PlannedQuery) -> str:
    expr = query.expr.strip()
    if not query.counts:
        return expr
    # increase() gives events per window; the series are per second whatever the query's style.
    return f"({expr}) / {promql_number(query.window.total_seconds())}"


def _record(slo: SLO, kind: SeriesKind, window: timedelta, expr: str) -> Rule:
    return {"record": series_name(kind, window), "expr": expr, "labels": _identity(slo)}


def _ratio_of(slo: SLO, window: timedelta) -> str:
    return f"{series_ref(slo, SeriesKind.ERRORS, window)}\n/\n{series_ref(slo, SeriesKind.REQUESTS, window)}"


def _window_rules(slo: SLO, window: timedelta) -> list[Rule]:
    """The series of one window computed from the SLO's own queries."""
    parts = {q.part: q for q in queries.plan(slo, (window,))}
    if Part.RATIO in parts:
        ratio = _with_slo_labels(slo, parts[Part.RATIO].expr.strip())
        return [_record(slo, SeriesKind.ERROR_RATIO, window, ratio)]
    total = _per_second(parts[Part.TOTAL])
    if Part.GOOD in parts:
        good = _per_second(parts[Part.GOOD])
        # rate() extrapolates each series on its own; never let good exceed total into negative errors.
        errors = f"clamp_min(\n  ({total})\n  -\n  ({good}),\n  0\n)"
    else:
        # No error series beside traffic: the error counter was never created, i.e. no errors.
        errors = f"({_per_second(parts[Part.ERRORS])})\nor\n0 * ({total})"
    return [
        _record(slo, SeriesKind.ERRORS, window, _with_slo_labels(slo, errors)),
        _record(slo, SeriesKind.REQUESTS, window, _with_slo_labels(slo, total)),
        _record(slo, SeriesKind.ERROR_RATIO, window, _ratio_of(slo, window)),
    ]


def _slo_window_rules(slo: SLO) -> list[Rule]:
    period, source = slo.window, source_window(slo)
    span = format_duration(period)
    if slo.sli.raw is not None:
        average = f"avg_over_time({series_ref(slo, SeriesKind.ERROR_RATIO, source)}[{span}])"
        return [_record(slo, SeriesKind.ERROR_RATIO, period, average)]
    return [
        _record(
            slo,
            SeriesKind.ERRORS,
            period,
            f"avg_over_time({series_ref(slo, SeriesKind.ERRORS, source)}[{span}])",
        ),
        _record(
            slo,
            SeriesKind.REQUESTS,
            period,
            f"avg_over_time({series_ref(slo, SeriesKind.REQUESTS, source)}[{span}])",
        ),
        _record(slo, SeriesKind.ERROR_RATIO, period, _ratio_of(slo, period)),
    ]


def recording_rules(slo: SLO) -> list[Rule]:
    """Every window's series, shortest window first, the SLO window last (it reads the shortest)."""
    rules: list[Rule] = []
    for window in _direct_windows(slo):
        rules.extend(_window_rules(slo, window))
    rules.extend(_slo_window_rules(slo))
    return rules


def calendar_notes(slos: Iterable[SLO]) -> list[str]:
    """Comments for a rule file: what the rules of a calendar SLO record instead of its period.

    A recording rule is one PromQL expression evaluated at every interval, and a range selector's length
    is fixed in it: no rule can record "since the month began". A calendar SLO's SLO-window series and
    its ``budgetguard:slo_period_seconds`` are therefore its nominal rolling window (30d for a month),
    which is what its tiers are scaled to too; ``budgetguard eval`` and the daemon (recording mode
    included) read the period so far with raw queries.
    """
    return [
        f"{slo.id}: window {slo.window_name} is recorded as the rolling {format_duration(slo.window)} "
        '(a rule cannot record "since the period began"); budgetguard reads the period so far itself'
        for slo in slos
        if slo.calendar is not None
    ]


def metadata_rules(slo: SLO) -> list[Rule]:
    labels = {**user_labels(slo.labels), **_identity(slo), HASH_LABEL: rules_hash(slo)}
    values = (
        (OBJECTIVE_SERIES, float(slo.objective_ratio)),
        (ERROR_BUDGET_SERIES, slo.error_budget_float),
        (PERIOD_SERIES, slo.window.total_seconds()),
    )
    return [
        {"record": name, "expr": f"vector({promql_number(value)})", "labels": dict(labels)}
        for name, value in values
    ]


# --- alerts ------------------------------------------------------------------------------------------


def _burn(slo: SLO, window: timedelta) -> str:
    """The burn rate over ``window``: the error ratio over the budget, as the daemon computes it."""
    budget = promql_number(slo.error_budget_float)
    if slo.canary is None:
        return f"{series_ref(slo, SeriesKind.ERROR_RATIO, window)} / {budget}"
    # The recorded series are per version; the service is their sum, as the daemon judges it (each
    # version on its own is the canary guard's job, with confidence bounds these rules cannot have).
    by = slo.canary.label
    errors = f"sum without ({by}) ({series_ref(slo, SeriesKind.ERRORS, window)})"
    requests = f"sum without ({by}) ({series_ref(slo, SeriesKind.REQUESTS, window)})"
    return f"({errors} / {requests}) / {budget}"


def _events(slo: SLO, window: timedelta) -> str:
    requests = series_ref(slo, SeriesKind.REQUESTS, window)
    if slo.canary is not None:
        requests = f"sum without ({slo.canary.label}) ({requests})"
    return f"{requests} * {promql_number(window.total_seconds())}"


def _tier_expr(slo: SLO, tier: BurnTier) -> str:
    threshold = promql_number(tier.burn_rate)
    # Short window first: the alert's value is then the short window's burn rate, as in Sloth.
    conditions = [f"{_burn(slo, w)} > {threshold}" for w in (tier.short_window, tier.long_window)]
    if slo.min_events > DEFAULT_MIN_EVENTS and slo.sli.raw is None:
        # A declared low-traffic floor: windows with fewer events are inconclusive for the daemon too.
        floor = promql_number(slo.min_events)
        conditions += [f"{_events(slo, w)} >= {floor}" for w in (tier.short_window, tier.long_window)]
    return "(\n" + "\nand\n".join(_indent(c) for c in conditions) + "\n)"


def _describe_tiers(tiers: Sequence[BurnTier]) -> str:
    return "; or ".join(
        f"above {promql_number(t.burn_rate)}x over both {format_duration(t.long_window)} and "
        f"{format_duration(t.short_window)} ({t.budget_fraction * 100:.3g}% of the budget in "
        f"{format_duration(t.long_window)})"
        for t in tiers
    )


def _default_annotations(slo: SLO, severity: Severity, tiers: Sequence[BurnTier]) -> dict[str, str]:
    who = f"{{{{$labels.{SERVICE_LABEL}}}}} {{{{$labels.{SLO_LABEL}}}}}"
    return {
        "title": f"({severity}) {who} SLO error budget burn rate is too fast.",
        "summary": f"{who} SLO error budget burn rate is over expected.",
        "description": (
            f"The {slo.objective}% SLO over {format_duration(slo.window)} burns its error budget "
            f"{_describe_tiers(tiers)}."
        ),
    }


def alert_rules(slo: SLO) -> list[Rule]:
    """Sloth's alerts: per severity, one alert named ``alerting.name``, the OR of its tiers.

    Labels are the series' labels, then ``alerting.labels`` and the severity's own labels, then
    ``budgetguard_severity``; annotations are the defaults, then ``alerting.annotations`` and the
    severity's. No ``for:``: both windows already have to agree (SRE Workbook ch. 5, iteration 6).
    No alerting block, a disabled severity or a severity without tiers: no alert.
    """
    alerting = slo.alerting
    if alerting is None:
        return []
    rules: list[Rule] = []
    for severity, meta in ((Severity.PAGE, alerting.page_alert), (Severity.TICKET, alerting.ticket_alert)):
        tiers = [t for t in slo.tiers if t.severity is severity]
        if meta.disable or not tiers:
            continue
        labels = {**user_labels(alerting.labels), **user_labels(meta.labels), SEVERITY_LABEL: str(severity)}
        annotations = {
            **_default_annotations(slo, severity, tiers),
            **alerting.annotations,
            **meta.annotations,
        }
        rules.append(
            {
                "alert": alerting.name,
                "expr": "\nor\n".join(_tier_expr(slo, t) for t in tiers),
                "labels": labels,
                "annotations": annotations,
            }
        )
    return rules


# --- groups and documents ----------------------------------------------------------------------------


# More rules for an SLO, placed after its metadata (``rules_sloth.sloth_rules``: Sloth's series names).
ExtraRules = Callable[[SLO], list[Rule]]


def rule_group(slo: SLO, interval: timedelta = DEFAULT_INTERVAL, extra: ExtraRules | None = None) -> Rule:
    """One SLO's group: its recorded series, then its metadata, then ``extra``, then its alerts."""
    if interval <= timedelta(0):
        raise ValueError("the evaluation interval must be longer than zero")
    more = extra(slo) if extra is not None else []
    return {
        "name": group_name(slo),
        "interval": format_duration(interval),
        "rules": [*recording_rules(slo), *metadata_rules(slo), *more, *alert_rules(slo)],
    }


def rule_groups(
    slos: Iterable[SLO], interval: timedelta = DEFAULT_INTERVAL, extra: ExtraRules | None = None
) -> list[Rule]:
    """A group per SLO; ``ValueError`` when two SLOs' group names collide (Prometheus refuses that)."""
    groups: list[Rule] = []
    seen: dict[str, str] = {}
    for slo in slos:
        group = rule_group(slo, interval, extra)
        if group["name"] in seen:
            raise ValueError(
                f"SLOs {seen[group['name']]} and {slo.id} would both get the rule group {group['name']!r}; "
                "rename one of them"
            )
        seen[group["name"]] = slo.id
        groups.append(group)
    return groups


def rule_file(
    slos: Iterable[SLO], interval: timedelta = DEFAULT_INTERVAL, extra: ExtraRules | None = None
) -> dict[str, Any]:
    """A Prometheus rule file (``rule_files:``, Thanos Ruler, ``mimirtool rules load``)."""
    return {"groups": rule_groups(slos, interval, extra)}


def prometheus_rule(
    slos: Iterable[SLO],
    interval: timedelta = DEFAULT_INTERVAL,
    *,
    name: str = "budgetguard-slos",
    namespace: str | None = None,
    labels: Mapping[str, str] | None = None,
    extra: ExtraRules | None = None,
) -> dict[str, Any]:
    """A prometheus-operator ``PrometheusRule``; ``labels`` must match the Prometheus' ruleSelector."""
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    metadata["labels"] = {"app.kubernetes.io/managed-by": "budgetguard", **(labels or {})}
    return {
        "apiVersion": PROMETHEUS_RULE_API_VERSION,
        "kind": "PrometheusRule",
        "metadata": metadata,
        "spec": {"groups": rule_groups(slos, interval, extra)},
    }


def render_rules(
    slos: Iterable[SLO],
    rule_format: RuleFormat | str = RuleFormat.PROMETHEUS,
    interval: timedelta = DEFAULT_INTERVAL,
    *,
    name: str = "budgetguard-slos",
    namespace: str | None = None,
    labels: Mapping[str, str] | None = None,
    extra: ExtraRules | None = None,
) -> dict[str, Any]:
    """The document ``budgetguard rules`` writes, in either format."""
    if RuleFormat(rule_format) is RuleFormat.PROMETHEUS_OPERATOR:
        return prometheus_rule(slos, interval, name=name, namespace=namespace, labels=labels, extra=extra)
    return rule_file(slos, interval, extra)
