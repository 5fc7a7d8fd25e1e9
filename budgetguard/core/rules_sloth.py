"""Sloth's series names beside budgetguard's, so dashboards made for Sloth work on budgetguard's rules.

``budgetguard rules --labels sloth`` appends these rules to each SLO's group (same group, so they read
the same evaluation as the series they rename). Names and labels follow Sloth's generated rules
(reference slo-tools-and-formats.md §1.3): per window ``slo:sli_error:ratio_rate<W>`` with
``sloth_id``, ``sloth_service``, ``sloth_slo`` and ``sloth_window``; the metadata series
``slo:objective:ratio``, ``slo:error_budget:ratio``, ``slo:time_period:days``,
``slo:current_burn_rate:ratio``, ``slo:period_burn_rate:ratio``,
``slo:period_error_budget_remaining:ratio``; and ``sloth_slo_info``.

One number deliberately differs. Sloth's SLO-window ratio is the average of its 5-minute ratios; these
series carry budgetguard's request-weighted ratio (bad events over all events of the window, see
``rules``), so a quiet hour weighs by its traffic, not like a busy one. Worked example (docs,
"Sloth compatibility"): 1 failure in 10 requests at night (10%) and 0 in 9,990 by day average to 5% as
ratios but are 0.01% of the requests.

Pure: SLOs in, rule dicts out; the values are read from budgetguard's own recorded series.
"""

from __future__ import annotations

from datetime import timedelta
from fractions import Fraction

from budgetguard.core.durations import format_duration
from budgetguard.core.rules import (
    Rule,
    SeriesKind,
    promql_number,
    promql_string,
    recorded_windows,
    series_ref,
    source_window,
    user_labels,
)
from budgetguard.core.spec import SLO

ID_LABEL = "sloth_id"
SERVICE_LABEL = "sloth_service"
SLO_LABEL = "sloth_slo"
WINDOW_LABEL = "sloth_window"

RATIO_SERIES = "slo:sli_error:ratio_rate"  # + window, e.g. slo:sli_error:ratio_rate5m
OBJECTIVE_SERIES = "slo:objective:ratio"
ERROR_BUDGET_SERIES = "slo:error_budget:ratio"
PERIOD_DAYS_SERIES = "slo:time_period:days"
CURRENT_BURN_SERIES = "slo:current_burn_rate:ratio"
PERIOD_BURN_SERIES = "slo:period_burn_rate:ratio"
REMAINING_SERIES = "slo:period_error_budget_remaining:ratio"
INFO_SERIES = "sloth_slo_info"

_SECONDS_PER_DAY = 86_400


def sloth_labels(slo: SLO) -> dict[str, str]:
    """The identity Sloth gives every series of an SLO: ``sloth_id`` is ``<service>-<slo>``."""
    return {ID_LABEL: f"{slo.service}-{slo.name}", SERVICE_LABEL: slo.service, SLO_LABEL: slo.name}


def _selector(slo: SLO) -> str:
    return "{" + ", ".join(f"{k}={promql_string(v)}" for k, v in sloth_labels(slo).items()) + "}"


def _error_ratio(slo: SLO, window: timedelta) -> str:
    if slo.canary is None or slo.sli.raw is not None:
        return series_ref(slo, SeriesKind.ERROR_RATIO, window)
    # budgetguard records a canary SLO per version; Sloth has one series per SLO: the service's sum.
    by = slo.canary.label
    errors = f"sum without ({by}) ({series_ref(slo, SeriesKind.ERRORS, window)})"
    requests = f"sum without ({by}) ({series_ref(slo, SeriesKind.REQUESTS, window)})"
    return f"{errors}\n/\n{requests}"


def sloth_rules(slo: SLO) -> list[Rule]:
    """The Sloth-named series of one SLO, to follow its budgetguard series in the same group."""
    identity = {**user_labels(slo.labels), **sloth_labels(slo)}
    selector = _selector(slo)
    on = f"on ({ID_LABEL}, {SLO_LABEL}, {SERVICE_LABEL}) group_left"
    rules: list[Rule] = [
        {
            "record": f"{RATIO_SERIES}{format_duration(window)}",
            "expr": _error_ratio(slo, window),
            "labels": {**identity, WINDOW_LABEL: format_duration(window)},
        }
        for window in recorded_windows(slo)
    ]
    days = Fraction(int(slo.window.total_seconds()), _SECONDS_PER_DAY)
    values = (
        (OBJECTIVE_SERIES, float(slo.objective_ratio)),
        (ERROR_BUDGET_SERIES, slo.error_budget_float),
        (PERIOD_DAYS_SERIES, float(days)),
    )
    rules += [
        {"record": name, "expr": f"vector({promql_number(v)})", "labels": dict(identity)}
        for name, v in values
    ]
    current = f"{RATIO_SERIES}{format_duration(source_window(slo))}{selector}"
    period = f"{RATIO_SERIES}{format_duration(slo.window)}{selector}"
    budget = f"{ERROR_BUDGET_SERIES}{selector}"
    rules += [
        {"record": CURRENT_BURN_SERIES, "expr": f"{current}\n/ {on}\n{budget}", "labels": dict(identity)},
        {"record": PERIOD_BURN_SERIES, "expr": f"{period}\n/ {on}\n{budget}", "labels": dict(identity)},
        {
            "record": REMAINING_SERIES,
            "expr": f"1 - {PERIOD_BURN_SERIES}{selector}",
            "labels": dict(identity),
        },
        {
            "record": INFO_SERIES,
            "expr": "vector(1)",
            "labels": {
                **identity,
                "sloth_mode": "cli-gen-prom",
                "sloth_spec": "prometheus/v1",
                "sloth_version": "budgetguard",
                "sloth_objective": str(slo.objective),
            },
        },
    ]
    return rules
