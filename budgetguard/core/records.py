"""Evaluations as plain records: the one JSON shape for the CLI, the API and the store.

``to_record`` is the documented JSON object (docs/reference/records.md); ``from_record`` rebuilds an
``Evaluation`` from it against the SLO as currently declared, so a restarted daemon serves and exports
the same values it had before. Ratios are ratios (0..1; budget remaining may be negative), the
objective is a percent as written, windows are Prometheus durations, unknown numbers are ``null``.

Pure: no I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from budgetguard.core import affected
from budgetguard.core.calendar import query_range
from budgetguard.core.canary import CanaryEvaluation, CanaryJudgement, CanaryWindow, Counts, LatencyCheck
from budgetguard.core.durations import format_duration, parse_duration
from budgetguard.core.policy import Evaluation, TierState, WindowStat
from budgetguard.core.ports import ActionRequest, EventKind
from budgetguard.core.spec import SLO
from budgetguard.core.verdict import ErrorKind, QueryMode, Verdict

RECORD_VERSION = 1


def _num(value: float | None) -> float | None:
    return None if value is None else float(value)


def format_time(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def to_record(ev: Evaluation) -> dict[str, Any]:
    slo = ev.slo
    return {
        "service": slo.service,
        "slo": slo.name,
        "objective": float(slo.objective),
        "window": format_duration(slo.window),
        "at": format_time(ev.at),
        "verdict": str(ev.verdict),
        "reason": ev.reason,
        "budget_remaining": _num(ev.budget_remaining),
        "error_ratio": _num(ev.error_ratio),
        "events": _num(ev.events),
        "time_to_exhaustion_seconds": (
            None if ev.time_to_exhaustion is None else ev.time_to_exhaustion.total_seconds()
        ),
        "burn_rates": {format_duration(w.window): _num(w.burn_rate) for w in ev.windows},
        "error_ratios": {format_duration(w.window): _num(w.error_ratio) for w in ev.windows},
        "events_by_window": {format_duration(w.window): _num(w.events) for w in ev.windows},
        "missing": {format_duration(w.window): w.missing for w in ev.windows if w.missing},
        "tiers": [
            {
                "severity": str(t.tier.severity),
                "long_window": format_duration(t.tier.long_window),
                "short_window": format_duration(t.tier.short_window),
                "burn_rate_threshold": t.tier.burn_rate,
                "budget_fraction": t.tier.budget_fraction,
                "long_burn_rate": _num(t.long_burn),
                "short_burn_rate": _num(t.short_burn),
                "firing": t.firing,
                "note": t.note,
            }
            for t in ev.tiers
        ],
        "labels": dict(slo.labels),
        "warnings": list(ev.warnings),
        "error_kind": ev.error_kind,
        "source": slo.source,
        "canaries": [canary_to_record(c) for c in ev.canaries],
        "query_mode": ev.query_mode,
        # Calendar windows (null for a rolling window): the SLO window's entries above ("30d" for a
        # month, its nominal length) then cover the period so far, ``calendar.range``.
        "calendar": _calendar_record(ev),
        "time_left_seconds": None if ev.time_left is None else ev.time_left.total_seconds(),
        "budget_remaining_per_day": _num(ev.budget_remaining_per_day),
    }


def _calendar_record(ev: Evaluation) -> dict[str, Any] | None:
    period, window = ev.period, ev.slo.calendar
    if period is None or window is None:
        return None
    so_far = ev.window(ev.slo.window)
    return {
        "calendar": str(window.calendar),
        "timezone": window.timezone,
        "period": period.name,
        "start": format_time(period.start),
        "end": format_time(period.end),
        "range": format_duration(query_range(period, ev.at)),
        # The period so far's burn rate, also burn_rates[window]: said here for readers that do not
        # know a month's nominal key.
        "burn_rate": None if so_far is None else _num(so_far.burn_rate),
    }


def _judgement_record(j: CanaryJudgement) -> dict[str, Any]:
    return {
        "verdict": str(j.verdict),
        "reason": j.reason,
        "error_ratio": _num(j.error_ratio),
        "lower_bound": j.lower_bound,
        "upper_bound": j.upper_bound,
        "limit_ratio": j.limit_ratio,
        "burn_rate": _num(j.burn_rate),
        "burn_rate_lower": j.burn_lower,
        "burn_rate_upper": j.burn_upper,
        "p_value_vs_baseline": _num(j.p_value_vs_baseline),
        "baseline_error_ratio": _num(j.baseline_error_ratio),
        "events": j.events,
        "events_needed": j.events_needed,
        "healthy_enough": j.healthy_enough,
    }


def _judgement(r: dict[str, Any]) -> CanaryJudgement:
    return CanaryJudgement(
        verdict=Verdict(r["verdict"]),
        reason=r["reason"],
        error_ratio=r["error_ratio"],
        lower_bound=r["lower_bound"],
        upper_bound=r["upper_bound"],
        limit_ratio=r["limit_ratio"],
        burn_rate=r["burn_rate"],
        burn_lower=r["burn_rate_lower"],
        burn_upper=r["burn_rate_upper"],
        p_value_vs_baseline=r["p_value_vs_baseline"],
        baseline_error_ratio=r["baseline_error_ratio"],
        events=r["events"],
        events_needed=r["events_needed"],
        healthy_enough=r["healthy_enough"],
    )


def canary_to_record(c: CanaryEvaluation) -> dict[str, Any]:
    """One canary version: its verdict, the deciding window and every window's judgement."""
    return {
        "label": c.label,
        "value": c.value,
        "baseline": c.baseline,
        "verdict": str(c.verdict),
        "reason": c.reason,
        "window": format_duration(c.window),
        "healthy_enough": c.healthy_enough,
        "windows": [
            {
                "window": format_duration(w.window),
                "errors": w.canary.errors,
                "requests": w.canary.total,
                "baseline_errors": None if w.baseline is None else w.baseline.errors,
                "baseline_requests": None if w.baseline is None else w.baseline.total,
                **_judgement_record(w.judgement),
            }
            for w in c.windows
        ],
        "latency": None if c.latency is None else _latency_record(c.latency),
    }


def _latency_record(check: LatencyCheck) -> dict[str, Any]:
    return {
        "verdict": str(check.verdict),
        "reason": check.reason,
        "headline": check.headline,
        "evidence": check.evidence,
        "window": format_duration(check.window),
        "for": format_duration(check.hold),
        "quantile": check.quantile,
        "threshold_seconds": check.threshold_seconds,
        "slow": None if check.slow is None else check.slow.errors,
        "requests": None if check.slow is None else check.slow.total,
        "baseline_slow": None if check.baseline is None else check.baseline.errors,
        "baseline_requests": None if check.baseline is None else check.baseline.total,
        "slow_ratio": _num(check.slow_ratio),
        "lower_bound": check.lower_bound,
        "upper_bound": check.upper_bound,
        "limit_ratio": check.limit_ratio,
        "p_value_vs_baseline": _num(check.p_value_vs_baseline),
        "baseline_slow_ratio": _num(check.baseline_slow_ratio),
        "events_needed": check.events_needed,
        "healthy_enough": check.healthy_enough,
    }


def _latency(r: dict[str, Any]) -> LatencyCheck:
    return LatencyCheck(
        verdict=Verdict(r["verdict"]),
        headline=r["headline"],
        evidence=r["evidence"],
        window=parse_duration(r["window"]),
        hold=parse_duration(r["for"], allow_zero=True),
        quantile=r["quantile"],
        threshold_seconds=r["threshold_seconds"],
        slow=None if r["requests"] is None else Counts(r["slow"], r["requests"]),
        baseline=None
        if r["baseline_requests"] is None
        else Counts(r["baseline_slow"], r["baseline_requests"]),
        slow_ratio=r["slow_ratio"],
        lower_bound=r["lower_bound"],
        upper_bound=r["upper_bound"],
        limit_ratio=r["limit_ratio"],
        p_value_vs_baseline=r["p_value_vs_baseline"],
        baseline_slow_ratio=r["baseline_slow_ratio"],
        events_needed=r["events_needed"],
        healthy_enough=r["healthy_enough"],
    )


def canary_from_record(r: dict[str, Any]) -> CanaryEvaluation:
    windows = tuple(
        CanaryWindow(
            window=parse_duration(w["window"]),
            canary=Counts(w["errors"], w["requests"]),
            baseline=None
            if w["baseline_requests"] is None
            else Counts(w["baseline_errors"], w["baseline_requests"]),
            judgement=_judgement(w),
        )
        for w in r["windows"]
    )
    window = parse_duration(r["window"])
    decider = next(w.judgement for w in windows if w.window == window)
    return CanaryEvaluation(
        label=r["label"],
        value=r["value"],
        baseline=r["baseline"],
        verdict=Verdict(r["verdict"]),
        reason=r["reason"],
        window=window,
        judgement=decider,
        windows=windows,
        latency=None if r.get("latency") is None else _latency(r["latency"]),
    )


def from_record(record: dict[str, Any], slo: SLO) -> Evaluation:
    """Rebuild an evaluation stored by ``to_record``; windows and tiers the SLO no longer has are dropped."""
    burn = record.get("burn_rates") or {}
    ratios = record.get("error_ratios") or {}
    events = record.get("events_by_window") or {}
    missing = record.get("missing") or {}
    windows = tuple(
        WindowStat(parse_duration(key), ratios.get(key), burn.get(key), events.get(key), missing.get(key))
        for key in burn
    )
    stored_tiers = {
        (t["severity"], t["long_window"], t["short_window"]): t for t in record.get("tiers") or []
    }
    tiers = []
    for tier in slo.tiers:
        key = (str(tier.severity), format_duration(tier.long_window), format_duration(tier.short_window))
        found = stored_tiers.get(key)
        if found is not None:
            tiers.append(
                TierState(
                    tier,
                    found.get("long_burn_rate"),
                    found.get("short_burn_rate"),
                    found.get("firing"),
                    found.get("note") or "",
                )
            )
    tte = record.get("time_to_exhaustion_seconds")
    return Evaluation(
        slo=slo,
        at=datetime.fromisoformat(record["at"]),
        verdict=Verdict(record["verdict"]),
        reason=record.get("reason") or "",
        windows=windows,
        tiers=tuple(tiers),
        budget_remaining=record.get("budget_remaining"),
        error_ratio=record.get("error_ratio"),
        events=record.get("events"),
        time_to_exhaustion=None if tte is None else timedelta(seconds=tte),
        warnings=tuple(record.get("warnings") or ()),
        error_kind=_error_kind(record.get("error_kind")),
        canaries=tuple(canary_from_record(c) for c in record.get("canaries") or ()) if slo.canary else (),
        query_mode=_query_mode(record.get("query_mode")),
    )


# --- action requests, as the outbox stores them -----------------------------------------------------


def request_to_record(request: ActionRequest) -> dict[str, Any]:
    return {
        "event": str(request.event),
        "idempotency_key": request.idempotency_key,
        "incident_id": request.incident_id,
        "service": request.service,
        "slo": request.slo,
        "reason": request.reason,
        "at": format_time(request.at),
        "canary_label": request.canary_label,
        "canary_value": request.canary_value,
        "baseline": request.baseline,
        "burn_rates": {k: _num(v) for k, v in request.burn_rates.items()},
        "events": _num(request.events),
        "context": dict(request.context),
        "affected": None if request.affected is None else affected.to_record(request.affected),
    }


def request_from_record(record: dict[str, Any]) -> ActionRequest:
    return ActionRequest(
        event=EventKind(record["event"]),
        idempotency_key=record["idempotency_key"],
        incident_id=record["incident_id"],
        service=record["service"],
        slo=record["slo"],
        reason=record["reason"],
        at=datetime.fromisoformat(record["at"]),
        canary_label=record.get("canary_label"),
        canary_value=record.get("canary_value"),
        baseline=record.get("baseline"),
        burn_rates=dict(record.get("burn_rates") or {}),
        events=record.get("events"),
        context=dict(record.get("context") or {}),
        affected=None if record.get("affected") is None else affected.from_record(record["affected"]),
    )


def _error_kind(value: Any) -> ErrorKind | None:
    """A stored error kind; one this version does not know reads as no kind rather than failing."""
    return ErrorKind(value) if value in ErrorKind.__members__.values() else None


def _query_mode(value: Any) -> str:
    """A stored query mode: a ``QueryMode`` when it is one, a fallback's description as it was."""
    if not value:
        return QueryMode.RAW
    return QueryMode(value) if value in QueryMode.__members__.values() else str(value)
