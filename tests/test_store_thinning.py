"""The store's second retention level (#14): after ``thin_after``, one evaluation per SLO per hour.

Rows older than ``raw_for`` keep the last of each 5 minutes; older than ``thin_after``, the last of each
hour; every verdict change is kept at every level. Written against a real SQLite file.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from budgetguard.core.verdict import Verdict
from budgetguard.store import DOWNSAMPLE_BUCKET, THIN_BUCKET, Store
from tests.test_store import BURNING, CHECKOUT, HEALTHY, T0, D, H, M, S, record_every, stored_times


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "budgetguard.db") as opened:
        yield opened


def kept(
    times: list[tuple[datetime, Verdict]],
    now: datetime,
    raw_for: timedelta,
    thin_after: timedelta,
    keep_for: timedelta,
) -> list[datetime]:
    """The two-level retention rule, written plainly, for one SLO's rows in time order."""

    def floor(at: datetime, bucket: timedelta) -> float:
        size = bucket.total_seconds()
        return math.floor(at.timestamp() / size) * size

    raw_cutoff = floor(now - raw_for, DOWNSAMPLE_BUCKET)
    thin_cutoff = floor(now - thin_after, THIN_BUCKET)
    last_of: dict[tuple[timedelta, float], datetime] = {}
    changed, previous = set(), None
    for at, verdict in times:
        if verdict != previous:
            changed.add(at)
        previous = verdict
        for bucket in (DOWNSAMPLE_BUCKET, THIN_BUCKET):
            last_of[bucket, floor(at, bucket)] = at
    out = []
    for at, _ in times:
        t = at.timestamp()
        if t < (now - keep_for).timestamp():
            continue
        bucket = DOWNSAMPLE_BUCKET if t >= thin_cutoff else THIN_BUCKET
        if t >= raw_cutoff or at in changed or last_of[bucket, floor(at, bucket)] == at:
            out.append(at)
    return out


def test_rows_older_than_thin_after_keep_the_last_of_each_hour_and_every_change(store: Store) -> None:
    burning = (T0 + 1 * H + 30 * M, T0 + 1 * H + 32 * M)

    def verdict(at: datetime) -> Verdict:
        return BURNING if burning[0] <= at < burning[1] else HEALTHY

    end = T0 + 4 * H
    record_every(store, CHECKOUT, (T0, end), verdict)
    rows = []
    at = T0
    while at < end:
        rows.append((at, verdict(at)))
        at += 30 * S

    store.prune(end, raw_for=30 * M, keep_for=1 * D, thin_after=2 * H)

    times = stored_times(store, CHECKOUT)
    assert times == kept(rows, end, 30 * M, 2 * H, 1 * D)
    before_thin = [t - T0 for t in times if t < T0 + 2 * H]
    assert before_thin == [
        0 * S,  # the first evaluation: a change from nothing
        59 * M + 30 * S,  # the last of 12:00-13:00
        1 * H + 30 * M,  # healthy -> burning
        1 * H + 32 * M,  # burning -> healthy
        1 * H + 59 * M + 30 * S,  # the last of 13:00-14:00
    ]


def test_pruning_again_later_thins_only_what_aged_since(store: Store) -> None:
    end = T0 + 5 * H
    record_every(store, CHECKOUT, (T0, end), lambda _: HEALTHY)
    rows = []
    at = T0
    while at < end:
        rows.append((at, HEALTHY))
        at += 30 * S

    store.prune(end - 1 * H, raw_for=30 * M, keep_for=1 * D, thin_after=2 * H)
    again = store.prune(end - 1 * H, raw_for=30 * M, keep_for=1 * D, thin_after=2 * H)
    assert again.downsampled == 0
    store.prune(end, raw_for=30 * M, keep_for=1 * D, thin_after=2 * H)

    assert stored_times(store, CHECKOUT) == kept(rows, end, 30 * M, 2 * H, 1 * D)


def test_a_thin_after_shorter_than_raw_for_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="raw_for <= thin_after"):
        store.prune(T0, raw_for=1 * H, keep_for=1 * D, thin_after=30 * M)
