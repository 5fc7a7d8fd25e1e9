"""Retention: keep the file bounded by downsampling old evaluations, deleting the oldest, giving space back.

Recent evaluations stay at full resolution; older ones keep one row per SLO per 5-minute bucket plus
every verdict change, and after a week one per hour (#14); everything past the keep horizon goes, with
the incidents resolved before it. The work runs in short transactions so a cycle never waits long for
the write lock, and a watermark per level lets each prune read only the rows that aged since the last.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from budgetguard.store.encoding import unix
from budgetguard.store.schema import SLOT, SLOT_SECONDS, slot

if TYPE_CHECKING:
    from budgetguard.store.connection import Connection, Transaction

log = logging.getLogger(__name__)

# Evaluations younger than this are kept at full (30 s) resolution: a day covers the incident being
# investigated right now and the 1h/5m page tier's windows many times over.
RAW_RETENTION = timedelta(days=1)
# Everything is deleted after this: three 30-day SLO windows, a quarter's budget review.
KEEP_RETENTION = timedelta(days=90)
# Older evaluations keep one row per SLO per bucket, the bucket's last, plus every verdict change. Five
# minutes is the shortest window the default tiers judge, so a bucket never hides a tier's decision.
DOWNSAMPLE_BUCKET = timedelta(minutes=5)
# The second level (#14): after a week, one row per SLO per hour, plus every verdict change. A week
# covers the incidents still being reviewed at 5-minute resolution; a quarter's budget review reads
# trends, for which an hour is plenty. The price, measured by bench/store_growth.py (per SLO per day):
# 2.1 MB raw, 0.24 MB at 5 minutes, 0.023 MB hourly, so 5.2 MiB per SLO at steady state with these
# defaults (5.5 GB for a thousand SLOs), where the 5-minute level alone kept 22 MiB (23 GB).
THIN_RETENTION = timedelta(days=7)
THIN_BUCKET = timedelta(hours=1)

# Prune works in slices so the write lock is never held for long: evaluations of this much time per
# transaction (0.35 s with a thousand SLOs, measured), and this many free pages given back per step.
_DOWNSAMPLE_SLICE = timedelta(minutes=15)
_VACUUM_STEP_PAGES = 1024

# Rows of [lo, hi) that are neither their (SLO, bucket)'s last nor a verdict change.
_DOWNSAMPLE = f"""
    DELETE FROM evaluations WHERE id IN (
        SELECT id FROM (
            SELECT id, verdict_changed,
                   row_number() OVER (
                       PARTITION BY slo_id, CAST(at / :bucket AS INTEGER) ORDER BY at DESC, id DESC
                   ) AS newest_first
            FROM evaluations
            WHERE {SLOT} BETWEEN :lo_slot AND :hi_slot AND at >= :lo AND at < :hi
        ) WHERE newest_first > 1 AND verdict_changed = 0
    )
"""


@dataclass(frozen=True)
class PruneReport:
    """What one ``prune`` did: rows removed by downsampling and by age, and file space given back."""

    downsampled: int
    deleted: int
    verdict_changes_deleted: int
    reclaimed_bytes: int


def bucket_start(seconds: float, bucket: timedelta = DOWNSAMPLE_BUCKET) -> float:
    size = bucket.total_seconds()
    return math.floor(seconds / size) * size


# The levels after raw: each one's watermark column in retention_state and its bucket. A cycle written
# behind the first level's watermark (the clock stepped back) moves it back (``history``); the hourly
# level's is left alone: a row behind it (the clock stepped back over a week) stays at 5-minute
# resolution, a few rows more, and a cycle's write needs no column of migration 5.
_LEVELS = (("downsampled_until", DOWNSAMPLE_BUCKET), ("thinned_until", THIN_BUCKET))


def prune(
    db: Connection,
    now: datetime,
    raw_for: timedelta = RAW_RETENTION,
    keep_for: timedelta = KEEP_RETENTION,
    thin_after: timedelta = THIN_RETENTION,
) -> PruneReport:
    """Keep the file bounded: downsample after ``raw_for``, delete after ``keep_for``, give space back.

    Evaluations older than ``raw_for`` keep one row per SLO per 5-minute bucket (the bucket's last)
    plus every row whose verdict changed; the boundary is rounded down to a whole bucket so a bucket
    is never split. Those older than ``thin_after`` (when it is under ``keep_for``) keep one per hour
    the same way. Evaluations and verdict changes older than ``keep_for`` are deleted, and so are
    incidents resolved before then, with their deliveries (open incidents stay). Each call
    reads only the rows that aged past ``raw_for`` since the previous call. Freed pages are then
    returned to the file system (``incremental_vacuum``) and the WAL is checkpointed and truncated.

    The daemon's defaults are ``RAW_RETENTION`` (1 day: today's incident at full resolution, many
    times the 1h/5m page tier's windows) and ``KEEP_RETENTION`` (90 days: three 30-day SLO windows,
    a quarter's review), and ``THIN_RETENTION`` (7 days), about 5 MiB per SLO at steady state; see the
    constants.

    The work runs in short transactions (a slice of simulated time, a few MiB of pages each) and
    the lock is released between them, so a cycle recorded from another thread waits for one slice,
    never for the whole prune (seconds with a thousand SLOs). Stopping halfway loses nothing: the
    next prune carries on from where this one stopped.
    """
    now_s = unix(now, "now")
    if raw_for <= timedelta(0) or keep_for < raw_for or thin_after < raw_for:
        raise ValueError(
            "need 0 < raw_for <= keep_for and raw_for <= thin_after, got "
            f"raw_for={raw_for}, keep_for={keep_for} and thin_after={thin_after}"
        )
    raw_cutoff = bucket_start(now_s - raw_for.total_seconds())
    keep_cutoff = now_s - keep_for.total_seconds()
    pages_before = db.page_count()
    with db.transaction() as tx:
        deleted = tx.execute(
            f"DELETE FROM evaluations WHERE {SLOT} <= :slot AND at < :cutoff",
            {"slot": slot(keep_cutoff), "cutoff": keep_cutoff},
        )
        # An SLO whose newest evaluation is gone has no evaluation left at all.
        tx.execute("DELETE FROM slo_latest WHERE at < ?", [keep_cutoff])
        changes_deleted = tx.execute("DELETE FROM verdict_changes WHERE at < ?", [keep_cutoff])
        # Incidents resolved before the cutoff go with their deliveries; open ones stay, whatever
        # their age: an incident is history only once it is over.
        old_incidents = "SELECT id FROM incidents WHERE state = 'resolved' AND resolved_at < ?"
        tx.execute(f"DELETE FROM outbox WHERE incident_id IN ({old_incidents})", [keep_cutoff])
        tx.execute(f"DELETE FROM incidents WHERE id IN ({old_incidents})", [keep_cutoff])
    downsampled = _downsample(db, max(keep_cutoff, 0.0), raw_cutoff)
    if thin_after < keep_for:
        thin_cutoff = bucket_start(now_s - thin_after.total_seconds(), THIN_BUCKET)
        downsampled += _downsample(db, max(keep_cutoff, 0.0), thin_cutoff, level=1)
    reclaimed = (pages_before - db.reclaim(_VACUUM_STEP_PAGES)) * db.page_size()
    report = PruneReport(downsampled, deleted, changes_deleted, max(reclaimed, 0))
    log.debug("pruned %s: %s", db.path, report)
    return report


def _downsample(db: Connection, keep_cutoff: float, raw_cutoff: float, level: int = 0) -> int:
    """Downsample [watermark, raw_cutoff) slice by slice, moving the watermark with each slice.

    ``level`` 0 keeps one row per 5 minutes (``downsampled_until``), 1 one per hour (``thinned_until``).
    """
    column, bucket = _LEVELS[level]
    slice_s = max(_DOWNSAMPLE_SLICE, bucket).total_seconds()  # a slice never splits a bucket
    downsampled = 0
    with db.transaction() as tx:
        expected = _watermark(tx, column)
    lo = max(expected, keep_cutoff)
    while lo < raw_cutoff:
        with db.transaction() as tx:
            if _watermark(tx, column) < expected:
                # A cycle stored an evaluation behind the watermark (the clock stepped back) and
                # reopened older buckets: leave the watermark there for the next prune.
                break
            first = tx.query(f"SELECT min({SLOT}) AS slot FROM evaluations WHERE {SLOT} >= ?", [slot(lo)])
            first_slot = first[0]["slot"]
            if first_slot is None or first_slot * SLOT_SECONDS >= raw_cutoff:
                tx.execute(f"UPDATE retention_state SET {column} = ?", [raw_cutoff])
                break
            lo = max(lo, float(first_slot * SLOT_SECONDS))  # skip empty stretches in one step
            hi = min(raw_cutoff, bucket_start(lo, bucket) + slice_s)
            downsampled += tx.execute(
                _DOWNSAMPLE,
                {
                    "bucket": bucket.total_seconds(),
                    "lo": lo,
                    "hi": hi,
                    "lo_slot": slot(lo),
                    "hi_slot": slot(hi),
                },
            )
            tx.execute(f"UPDATE retention_state SET {column} = ?", [hi])
        expected = lo = hi
    return downsampled


def _watermark(tx: Transaction, column: str = "downsampled_until") -> float:
    return float(tx.query(f"SELECT {column} AS until FROM retention_state")[0]["until"])
