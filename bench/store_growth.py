"""How big and how fast is the daemon's SQLite file? Simulate its writes and print the figures.

N SLOs are evaluated every ``--interval`` for ``--days`` of simulated time (no sleeping: time is an
argument) and every cycle is stored with ``Store.record_cycle``; ``Store.prune`` runs every
``--prune-every`` of simulated time with the daemon's retention (raw for 1 day, one per 5 minutes until
7 days, one per hour until 90 days).
Evaluations are real ``policy.evaluate`` results: each SLO drifts between healthy, warning, burning,
inconclusive and error, with numbers that differ from cycle to cycle.

    python bench/store_growth.py                      # 1,000 SLOs, 2 days: 5.8M rows, ~2 GB, ~35 min
    python bench/store_growth.py --slos 100 --days 0.5
    python bench/store_growth.py --slos 200 --days 1 --raw-for 10800 --thin-after 32400   # all 3 levels

The projection at 90 days uses the bytes per SLO per day measured at each level: raw from the first
``raw_for``, 5-minute from the growth after it, hourly from the growth after ``thin_after`` when the run
is long enough to see it, else from the 5-minute level's bytes per stored row times the rows an hour
keeps (a row per hour and every verdict change). A short run with ``--raw-for`` and ``--thin-after``
scaled down measures all three levels directly (#14).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from budgetguard.core.policy import Evaluation, Observation, evaluate
from budgetguard.core.records import to_record
from budgetguard.core.spec import SLO, Severity
from budgetguard.core.verdict import Verdict
from budgetguard.loader import load_text
from budgetguard.store import KEEP_RETENTION, RAW_RETENTION, THIN_RETENTION, Store, encode_record

SERVICE_TEMPLATE = """
version: budgetguard/v1
service: {service}
labels:
  team: team-{team}
  tier: "{tier}"
slos:
  - name: availability
    objective: 99.9
    description: Requests answered without a 5xx
    sli:
      events:
        error_query: sum(rate(http_requests_total{{job="{service}",code=~"5.."}}[{{{{.window}}}}]))
        total_query: sum(rate(http_requests_total{{job="{service}"}}[{{{{.window}}}}]))
  - name: latency
    objective: 99
    sli:
      latency:
        metric: http_request_duration_seconds
        selector: job="{service}"
        threshold_seconds: 0.3
  - name: checkout-errors
    objective: 99.95
    window: 7d
    sli:
      raw:
        error_ratio_query: {service}:errors:ratio_rate{{{{.window}}}}
  - name: batch
    objective: 99.5
    window: 28d
    min_events: 100
    sli:
      events:
        error_query: sum(rate(jobs_failed_total{{job="{service}"}}[{{{{.window}}}}]))
        total_query: sum(rate(jobs_total{{job="{service}"}}[{{{{.window}}}}]))
"""
SLOS_PER_SERVICE = 4
START = datetime(2026, 11, 1, tzinfo=UTC)
VARIANTS = 8  # distinct evaluations per SLO and state, picked at random each cycle

# Per cycle: the chance an SLO leaves its state, and where it goes. Most SLOs are healthy most of the
# time; with 1,000 SLOs this gives a few verdict changes per cycle, as a busy fleet would.
LEAVE = {
    Verdict.HEALTHY: 0.0005,
    Verdict.WARNING: 0.01,
    Verdict.BURNING: 0.02,
    Verdict.INCONCLUSIVE: 0.05,
    Verdict.ERROR: 0.1,
}
GO_TO = {Verdict.WARNING: 5, Verdict.BURNING: 2, Verdict.INCONCLUSIVE: 2, Verdict.ERROR: 1}


def build_slos(count: int) -> list[SLO]:
    slos: list[SLO] = []
    for index in range(math.ceil(count / SLOS_PER_SERVICE)):
        text = SERVICE_TEMPLATE.format(service=f"svc-{index:04d}", team=index % 17, tier=index % 3)
        loaded, problems = load_text(text, f"bench/svc-{index:04d}.yaml")
        if problems:
            raise SystemExit("\n".join(str(p) for p in problems))
        slos.extend(loaded)
    return slos[:count]


def observations(slo: SLO, state: Verdict, rng: random.Random) -> dict[timedelta, Observation]:
    """Numbers a source could return for an SLO in ``state``, different every call."""
    budget = float(slo.error_budget)
    page = min(t.burn_rate for t in slo.tiers if t.severity is Severity.PAGE)
    ticket = min(t.burn_rate for t in slo.tiers if t.severity is Severity.TICKET)
    out = {}
    for window in slo.windows():
        events = rng.uniform(1e3, 1e7) * window.total_seconds() / 3600
        burn = {
            Verdict.HEALTHY: rng.uniform(0, 0.9) * ticket,
            Verdict.WARNING: rng.uniform(ticket * 1.05, page * 0.95),
            Verdict.BURNING: rng.uniform(1.1, 3) * max(t.burn_rate for t in slo.tiers),
            Verdict.INCONCLUSIVE: rng.uniform(0, 0.9) * ticket,  # the windows that have data are fine
            Verdict.ERROR: 1500.0 / budget,  # 1.5: more errors than requests
        }[state]
        if state is Verdict.INCONCLUSIVE and window < timedelta(hours=1):
            out[window] = Observation(window, None, 0.0, "no traffic (NaN)")
        else:
            out[window] = Observation(window, min(burn * budget, 1.5), events)
    return out


def variants(slos: Sequence[SLO], rng: random.Random) -> dict[tuple[str, Verdict], list[Evaluation]]:
    pool: dict[tuple[str, Verdict], list[Evaluation]] = {}
    for slo in slos:
        for state in Verdict:
            pool[(slo.id, state)] = [
                evaluate(slo, observations(slo, state, rng), START) for _ in range(VARIANTS)
            ]
    return pool


def next_state(state: Verdict, rng: random.Random) -> Verdict:
    if rng.random() >= LEAVE[state]:
        return state
    if state is not Verdict.HEALTHY:
        return Verdict.HEALTHY
    return rng.choices(list(GO_TO), weights=list(GO_TO.values()))[0]


def file_bytes(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def mib(size: float) -> str:
    return f"{size / 2**20:,.1f} MiB"


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


@dataclass(frozen=True)
class Plan:
    """What to simulate: the daemon's schedule and retention."""

    slo_count: int
    days: float
    interval: timedelta
    prune_every: timedelta
    raw_for: timedelta
    keep_for: timedelta
    thin_after: timedelta = THIN_RETENTION
    # The daemon's defaults, for the projection when a run scaled its levels down.
    project_raw_for: timedelta = RAW_RETENTION
    project_thin_after: timedelta = THIN_RETENTION
    project_keep_for: timedelta = KEEP_RETENTION


@dataclass
class Figures:
    """What was measured; sizes are (simulated time, file bytes) right after each prune."""

    cycle_seconds: list[float] = field(default_factory=list)
    serialise_seconds: list[float] = field(default_factory=list)
    sql_seconds: list[float] = field(default_factory=list)
    prune_seconds: list[float] = field(default_factory=list)
    sizes: list[tuple[timedelta, int]] = field(default_factory=list)
    downsampled: int = 0
    deleted: int = 0
    state_changes: int = 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--slos", type=int, default=1000, help="SLOs evaluated every cycle (default 1000)")
    parser.add_argument("--days", type=float, default=2.0, help="simulated days (default 2)")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between cycles (default 30)")
    parser.add_argument("--prune-every", type=float, default=3600.0, help="simulated seconds between prunes")
    parser.add_argument("--raw-for", type=float, default=RAW_RETENTION.total_seconds(), help="seconds")
    parser.add_argument("--keep-for", type=float, default=KEEP_RETENTION.total_seconds(), help="seconds")
    parser.add_argument(
        "--thin-after", type=float, default=THIN_RETENTION.total_seconds(), help="seconds, then hourly"
    )
    parser.add_argument("--db", type=Path, help="database file (default: a temporary file, removed after)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    plan = Plan(
        slo_count=args.slos,
        days=args.days,
        interval=timedelta(seconds=args.interval),
        prune_every=timedelta(seconds=args.prune_every),
        raw_for=timedelta(seconds=args.raw_for),
        keep_for=timedelta(seconds=args.keep_for),
        thin_after=timedelta(seconds=args.thin_after),
    )

    rng = random.Random(args.seed)
    started = time.perf_counter()
    slos = build_slos(plan.slo_count)
    pool = variants(slos, rng)
    built = time.perf_counter() - started
    print(f"{len(slos)} SLOs, {len(pool) * VARIANTS} distinct evaluations built in {built:.1f}s")
    with tempfile.TemporaryDirectory(prefix="budgetguard-bench-") as scratch:
        path = args.db or Path(scratch) / "budgetguard.db"
        figures = simulate(path, plan, slos, pool, rng)
        report(plan, figures, file_bytes(path))
    return 0


def simulate(
    path: Path,
    plan: Plan,
    slos: Sequence[SLO],
    pool: dict[tuple[str, Verdict], list[Evaluation]],
    rng: random.Random,
) -> Figures:
    figures = Figures()
    states = dict.fromkeys((slo.id for slo in slos), Verdict.HEALTHY)
    end = START + timedelta(days=plan.days)
    next_prune = START + plan.prune_every
    at = START
    wall = time.perf_counter()
    with Store(path) as store:
        while at < end:
            cycle = []
            for slo in slos:
                state = next_state(states[slo.id], rng)
                figures.state_changes += state is not states[slo.id]
                states[slo.id] = state
                cycle.append(dataclasses.replace(rng.choice(pool[(slo.id, state)]), at=at))
            sampled = len(figures.cycle_seconds) % 10 == 0
            if sampled:
                # Where a cycle's time goes: the stored form of each record (to_record, JSON, deflate),
                # computed again here outside the store, then the SQL.
                t0 = time.perf_counter()
                for ev in cycle:
                    encode_record(to_record(ev))
                figures.serialise_seconds.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            store.record_cycle(cycle)
            figures.cycle_seconds.append(time.perf_counter() - t0)
            if sampled:
                figures.sql_seconds.append(figures.cycle_seconds[-1] - figures.serialise_seconds[-1])
            at += plan.interval
            if at >= next_prune:
                t0 = time.perf_counter()
                pruned = store.prune(at, plan.raw_for, plan.keep_for, plan.thin_after)
                figures.prune_seconds.append(time.perf_counter() - t0)
                figures.downsampled += pruned.downsampled
                figures.deleted += pruned.deleted
                next_prune += plan.prune_every
                figures.sizes.append((at - START, file_bytes(path)))
                if len(figures.sizes) % 6 == 0:
                    hours = (at - START) / timedelta(hours=1)
                    print(
                        f"  {hours:6.1f}h simulated: {mib(figures.sizes[-1][1]):>14}"
                        f"  ({time.perf_counter() - wall:,.0f}s wall)",
                        flush=True,
                    )
    return figures


def size_at(sizes: Sequence[tuple[timedelta, int]], when: timedelta) -> int | None:
    return next((size for at, size in sizes if at >= when), None)


def growth(
    sizes: Sequence[tuple[timedelta, int]], start: timedelta, end: timedelta | None, n: int
) -> float | None:
    """File growth per SLO per day between ``start`` and ``end`` (None: to the last size), if measured."""
    span = [(at, size) for at, size in sizes if at >= start and (end is None or at <= end)]
    if len(span) < 2:
        return None
    (t1, s1), (t2, s2) = span[0], span[-1]
    return (s2 - s1) / n / ((t2 - t1) / timedelta(days=1))


def report(plan: Plan, figures: Figures, final: int) -> None:
    n, day = plan.slo_count, timedelta(days=1)
    print()
    print(
        f"simulated {plan.days:g} day(s): {len(figures.cycle_seconds):,} cycles of {n} evaluations "
        f"every {plan.interval}, pruned every {plan.prune_every}"
    )
    raw_day = size_at(figures.sizes, plan.raw_for)
    if raw_day is None:
        print(f"(simulate more than raw_for={plan.raw_for} to see the effect of retention)")
    else:
        raw_per_day = raw_day / n / (plan.raw_for / day)
        changes_per_day = figures.state_changes / n / plan.days  # verdict changes: kept at every level
        five = growth(figures.sizes, plan.raw_for + timedelta(hours=1), plan.thin_after, n)
        hourly = growth(figures.sizes, plan.thin_after + timedelta(hours=1), None, n)
        measured = "measured"
        if hourly is None and five is not None:
            # Bytes per kept row at the 5-minute level, times the rows the hourly level keeps.
            per_row = five / (288 + changes_per_day)
            hourly, measured = (
                per_row * (24 + changes_per_day),
                "derived from the 5-minute level's bytes per row",
            )
        print(f"size per SLO per day (verdict changes simulated: {changes_per_day:,.1f} per SLO per day):")
        print(f"  raw (every {plan.interval}):        {raw_per_day:>12,.0f} bytes")
        if five is not None:
            print(f"  one per 5 minutes:             {five:>12,.0f} bytes")
        if hourly is not None:
            print(f"  one per hour:                  {hourly:>12,.0f} bytes ({measured})")
        if five is not None and hourly is not None:
            raw_days = plan.project_raw_for / day
            five_days = (plan.project_thin_after - plan.project_raw_for) / day
            hour_days = (plan.project_keep_for - plan.project_thin_after) / day
            per_slo = raw_per_day * raw_days + five * five_days + hourly * hour_days
            print(
                f"projected steady size with the defaults (raw {plan.project_raw_for.days}d, 5-minute until "
                f"{plan.project_thin_after.days}d, hourly until {plan.project_keep_for.days}d): "
                f"{per_slo / 2**20:,.1f} MiB per SLO, {per_slo * 1000 / 1e9:,.1f} GB per 1,000 SLOs"
            )
            five_only = raw_per_day * raw_days + five * (five_days + hour_days)
            print(
                f"  (with the 5-minute level alone until {plan.project_keep_for.days}d: "
                f"{five_only / 2**20:,.1f} MiB per SLO, {five_only * 1000 / 1e9:,.1f} GB per 1,000 SLOs)"
            )
    print(f"final file size: {mib(final)} ({final:,} bytes)")
    ms = [s * 1000 for s in figures.cycle_seconds]
    print(
        f"record_cycle ({n} evaluations): median {statistics.median(ms):.1f} ms, "
        f"p95 {percentile(ms, 0.95):.1f} ms, max {max(ms):.1f} ms"
    )
    if figures.serialise_seconds:
        ser = [x * 1000 for x in figures.serialise_seconds]
        sql = [x * 1000 for x in figures.sql_seconds]
        print(
            f"  every 10th cycle split: to_record + encode_record median {statistics.median(ser):.1f} ms; "
            f"the rest (SQL, commit, checkpoints) median {statistics.median(sql):.1f} ms, "
            f"p95 {percentile(sql, 0.95):.1f} ms"
        )
    if figures.prune_seconds:
        pr = [s * 1000 for s in figures.prune_seconds]
        print(f"prune: {len(pr)} runs, median {statistics.median(pr):.0f} ms, max {max(pr):.0f} ms")
    print(
        f"rows downsampled {figures.downsampled:,}, deleted {figures.deleted:,}; "
        f"verdict changes simulated {figures.state_changes:,}"
    )


if __name__ == "__main__":
    sys.exit(main())
