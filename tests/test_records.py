"""The record shape shared by the CLI's JSON, the API and the store round-trips an evaluation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from budgetguard.core.policy import Observation, evaluate
from budgetguard.core.records import from_record, to_record
from tests.helpers import slo_from

SLO = slo_from()
AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
ratios = st.one_of(st.none(), st.floats(min_value=0, max_value=1))


@given(st.lists(ratios, min_size=8, max_size=8), st.floats(min_value=0, max_value=1e9))
def test_a_record_rebuilds_the_same_evaluation(values: list[float | None], events: float) -> None:
    observations = {
        w: Observation(w, r, events, None if r is not None else "no series")
        for w, r in zip(SLO.windows(), values, strict=True)
    }
    ev = evaluate(SLO, observations, AT, warnings=["partial"] if values[0] == 0.5 else [])
    back = from_record(to_record(ev), SLO)
    assert back == ev


def test_record_keys_are_the_documented_ones() -> None:
    record = to_record(evaluate(SLO, {w: Observation(w, 0.0, 10.0) for w in SLO.windows()}, AT))
    assert {
        "service",
        "slo",
        "objective",
        "window",
        "budget_remaining",
        "error_ratio",
        "burn_rates",
        "events",
        "verdict",
        "reason",
    } <= set(record)
    assert record["objective"] == 99.9 and record["window"] == "30d"
    assert list(record["burn_rates"]) == ["5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"]
    assert record["at"] == "2026-11-26T12:00:00Z"
    assert from_record(record, SLO).time_to_exhaustion is None
    assert timedelta(days=30) in SLO.windows()
