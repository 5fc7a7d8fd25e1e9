"""Evaluations as plain records: the one JSON shape for the CLI, the API and the store.

``to_record`` is the documented JSON object (README, "JSON output"); ``from_record`` rebuilds an
``Evaluation`` from it against the SLO as currently declared, so a restarted daemon serves and exports
the same values it had before. Ratios are ratios (0..1; budget remaining may be negative), the
objective is a percent as written, windows are Prometheus durations, unknown numbers are ``null``.

Pure: no I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from budgetguard.durations import format_duration, parse_duration
from budgetguard.policy import Evaluation, TierState, Verdict, WindowStat
from budgetguard.spec import SLO

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
    }


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
        error_kind=record.get("error_kind"),
    )
