"""Sloth's Kubernetes CRD (``sloth.slok.dev/v1``, kind ``PrometheusServiceLevel``) as native SLOs.

The CRD is Sloth's ``prometheus/v1`` model in camelCase (``pkg/kubernetes/api/sloth/v1/types.go``), and
``budgetguard/v1`` is a superset of that model, so the translation is a renaming: ``spec.service``,
``spec.labels`` and each of ``spec.slos`` (``errorQuery`` -> ``error_query``, ``pageAlert`` ->
``page_alert``...). Like Sloth, it leaves the SLO window at the default 30 days and the burn-rate tiers
at the workbook's.

Refused: SLI plugins and SLO plugins (Go code that only Sloth runs), Sloth's ``AlertWindows`` kind.
Not read: ``metadata`` (the service is ``spec.service``, as in Sloth) and ``status`` (the controller's).

Pure: parsed YAML in, drafts out (``_common.finish`` validates them).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from budgetguard.core.errors import SpecProblem
from budgetguard.core.formats._common import Collector, Document, Draft, Field, Loc, Refused, Sourced

API_VERSION = "sloth.slok.dev/v1"
KIND = "PrometheusServiceLevel"

_TOP = ("apiVersion", "kind", "metadata", "spec", "status")
_SPEC = ("service", "labels", "sloPlugins", "slos")
_SLO = ("name", "description", "objective", "labels", "plugins", "sli", "alerting")
_SLI = ("events", "raw", "plugin")
_ALERTING = ("name", "labels", "annotations", "pageAlert", "ticketAlert")
_ALERT = ("disable", "labels", "annotations")


def read(document: Document) -> tuple[list[Draft], list[SpecProblem]]:
    root = document.root
    if document.kind != KIND:
        fix = f"budgetguard reads kind {KIND} of {API_VERSION}"
        if document.kind == "AlertWindows":
            fix = (
                "Sloth's AlertWindows apply to every SLO through --slo-period-windows-path; declare the "
                "windows as per-SLO tiers: in a budgetguard/v1 file instead"
            )
        return [], [(root / "kind").problem(f"Sloth kind {document.kind!r} is not an SLO declaration", fix)]
    collector = Collector()
    collector.attempt(lambda: root.mapping(_TOP, what="a PrometheusServiceLevel"))
    spec = root / "spec"
    collector.attempt(lambda: spec.required().mapping(_SPEC, what="a PrometheusServiceLevel's spec"))
    if not isinstance(spec.value, Mapping):  # nothing under it can be read: say only that
        return [], collector.problems
    service = collector.attempt((spec / "service").text)
    labels = collector.attempt((spec / "labels").strings)
    collector.attempt(lambda: _no_plugins(spec / "sloPlugins"))
    entries = [collector.attempt(partial(_slo, at)) for at in _slos(spec / "slos", collector)]
    if collector.problems:
        return [], collector.problems
    assert service is not None and labels is not None  # no problem means every part was read
    name = document.name or service
    draft = Draft(f"Sloth PrometheusServiceLevel {name!r}", root, service, labels)
    draft.origins.update({("service",): spec / "service", ("labels",): spec / "labels"})
    for entry in entries:
        assert entry is not None
        draft.add_slo(entry.value, entry.origins)
    return [draft], []


def _slos(at: Field, collector: Collector) -> list[Field]:
    items = collector.attempt(lambda: at.required().items())
    if items == []:
        collector.problems.append(at.problem("declare at least one SLO", "add an entry under spec.slos"))
    return items or []


def _no_plugins(at: Field) -> None:
    chain = at / "chain"
    if at.exists and (chain.exists or at.value):
        raise at.refusal(
            f"Sloth SLO plugins ({at.path}) change how Sloth generates its rules and cannot run in "
            "budgetguard",
            f"remove {at.path}; budgetguard's own tiers and rule generator stand for Sloth's core plugins",
        )


def _slo(at: Field) -> Sourced:
    at.mapping(_SLO, what="a Sloth SLO")
    name = (at / "name").text()
    at = at.for_slo(name)
    collector = Collector()
    value: dict[str, Any] = {"name": name}
    origins: dict[Loc, Field] = {(): at, ("name",): at / "name"}
    objective = collector.attempt((at / "objective").number)
    value["objective"] = objective
    origins[("objective",)] = at / "objective"
    description = collector.attempt((at / "description").description)
    if description:
        value["description"] = description
        origins[("description",)] = at / "description"
    labels = collector.attempt((at / "labels").strings)
    if labels:
        value["labels"] = labels
        origins[("labels",)] = at / "labels"
    collector.attempt(lambda: _no_plugins(at / "plugins"))
    sli = collector.attempt(lambda: _sli(at / "sli"))
    if sli is not None:
        value["sli"] = sli.value
        origins.update(sli.under(("sli",)))
    alerting = collector.attempt(lambda: _alerting(at / "alerting"))
    if alerting is not None:
        value["alerting"] = alerting.value
        origins.update(alerting.under(("alerting",)))
    if collector.problems:
        raise Refused(*collector.problems)
    return Sourced(value, origins)


def _sli(at: Field) -> Sourced:
    at.required().mapping(_SLI, what="a Sloth SLI")
    if (at / "plugin").exists:
        raise (at / "plugin").refusal(
            "Sloth SLI plugins (sli.plugin) are Go code that only Sloth can run",
            "replace the plugin with the query it generates, as sli.raw.errorRatioQuery or sli.events "
            "(errorQuery and totalQuery)",
        )
    given = [kind for kind in ("events", "raw") if (at / kind).exists]
    if len(given) != 1:
        raise at.refusal(
            f"declare exactly one SLI kind; found {', '.join(given) or 'none'}",
            "give events (errorQuery and totalQuery) or raw (errorRatioQuery)",
        )
    if given == ["events"]:
        events = at / "events"
        events.mapping(("errorQuery", "totalQuery"), what="Sloth events")
        return Sourced(
            {
                "events": {
                    "error_query": (events / "errorQuery").text(),
                    "total_query": (events / "totalQuery").text(),
                }
            },
            {
                (): at,
                ("events",): events,
                ("events", "error_query"): events / "errorQuery",
                ("events", "total_query"): events / "totalQuery",
            },
        )
    raw = at / "raw"
    raw.mapping(("errorRatioQuery",), what="a Sloth raw SLI")
    return Sourced(
        {"raw": {"error_ratio_query": (raw / "errorRatioQuery").text()}},
        {(): at, ("raw",): raw, ("raw", "error_ratio_query"): raw / "errorRatioQuery"},
    )


def _alerting(at: Field) -> Sourced | None:
    if not at.mapping(_ALERTING, what="Sloth alerting"):
        return None
    name = at / "name"
    if not name.exists:
        raise at.refusal(
            "alerting has no name; budgetguard names the SLO's burn-rate alerts with it",
            "add alerting.name, e.g. CheckoutHighErrorRate",
        )
    value: dict[str, Any] = {"name": name.text()}
    origins: dict[Loc, Field] = {(): at, ("name",): name}
    for key in ("labels", "annotations"):
        if (at / key).exists:
            value[key] = (at / key).strings()
            origins[(key,)] = at / key
    for native, camel in (("page_alert", "pageAlert"), ("ticket_alert", "ticketAlert")):
        alert = at / camel
        if not alert.exists:
            continue
        alert.mapping(_ALERT, what=f"Sloth {camel}")
        entry: dict[str, Any] = {"disable": (alert / "disable").boolean(False)}
        for key in ("labels", "annotations"):
            if (alert / key).exists:
                entry[key] = (alert / key).strings()
                origins[(native, key)] = alert / key
        value[native] = entry
        origins[(native,)] = alert
    return Sourced(value, origins)
