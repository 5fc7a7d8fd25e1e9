"""Benchmark: what a cycle of 1,000 SLOs costs the store, on SQLite and on PostgreSQL.

The rest of a cycle (the Prometheus queries, the policy) is the same whichever store is used, so this
measures only what differs: storing one cycle (``record_cycle``: 1,000 evaluations and their verdict
changes in one transaction, the leader's fenced decisions included on PostgreSQL), reading the open
incidents and pauses the guard reads every cycle, and claiming due deliveries (the outbox's poll). For
each backend: the daemon process's CPU per cycle (``time.process_time``), wall time per cycle, and on
PostgreSQL the server backend's CPU too (from /proc, the server runs on this machine), since a
replica's cycle costs the database server something that SQLite's in-process writes do not.

PostgreSQL is a throwaway cluster (``lab.postgres``), with fsync off like the tests: commits cost
nothing here, where a real server's fsync would add latency (not CPU) to each cycle.

    python bench/store_backends.py [--slos 1000] [--cycles 40]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from budgetguard.core.guard import Decision, IncidentState  # noqa: E402 - bench/ is not a package
from budgetguard.core.policy import Evaluation, Observation, evaluate  # noqa: E402
from budgetguard.core.spec import SLO  # noqa: E402
from budgetguard.loader import load_text  # noqa: E402
from budgetguard.store import Lease, Store, open_lease_table  # noqa: E402
from budgetguard.store.postgres import PostgresStore  # noqa: E402
from lab.postgres import PostgresLab  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SLO_TEMPLATE = """
  - name: slo-{i}
    objective: {objective}
    sli:
      events:
        error_query: sum(rate(bench_requests_total{{slo="{i}",code="500"}}[{{{{.window}}}}]))
        total_query: sum(rate(bench_requests_total{{slo="{i}"}}[{{{{.window}}}}]))
"""


def slos(count: int) -> list[SLO]:
    text = "version: budgetguard/v1\nservice: bench\nslos:\n" + "".join(
        SLO_TEMPLATE.format(i=i, objective=(99.9, 99.5, 99.0)[i % 3]) for i in range(count)
    )
    loaded, problems = load_text(text, "bench.yaml")
    assert not problems, problems
    return loaded


def cycle_of(declared: Sequence[SLO], at: datetime, n: int) -> list[Evaluation]:
    """One cycle's evaluations; one SLO in fifty changes verdict each cycle, as a busy day would."""
    out = []
    for i, slo in enumerate(declared):
        ratio = 0.5 if (i + n) % 50 == 0 else 0.0001 * (1 + i % 7)
        out.append(evaluate(slo, {w: Observation(w, ratio, 10_000.0) for w in slo.windows()}, at))
    return out


def backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def run(
    name: str, store: Any, declared: Sequence[SLO], cycles: int, server_cpu: Callable[[], float] | None
) -> dict[str, float]:
    cpu, wall, server = [], [], []
    for n in range(cycles):
        at = T0 + timedelta(seconds=30 * n)
        evaluations = cycle_of(declared, at, n)  # built outside the measurement: not the store's work
        s0, c0, w0 = (server_cpu() if server_cpu else 0.0), time.process_time(), time.perf_counter()
        # The leader's cycle always writes its (here empty) decisions: a fenced check on PostgreSQL.
        store.record_cycle(evaluations, extra=lambda tx, at=at: tx.write_decision(Decision(), at))
        store.incidents(state=IncidentState.OPEN, limit=100_000)
        store.pauses(at)
        store.claim_due(at, holder="bench", hold_for=timedelta(minutes=5))
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
        if server_cpu:
            server.append(server_cpu() - s0)
    warm = slice(min(5, cycles // 4), None)  # the first cycles fill caches and the slo_latest table
    result = {
        "daemon_cpu_ms_per_cycle": statistics.median(cpu[warm]) * 1000,
        "wall_ms_per_cycle": statistics.median(wall[warm]) * 1000,
    }
    if server:
        # /proc counts in clock ticks (10 ms): the mean over many cycles, not the median of zeros.
        result["server_cpu_ms_per_cycle"] = statistics.mean(server[warm]) * 1000
    print(f"{name:10s} " + "  ".join(f"{k} {v:7.1f}" for k, v in result.items()))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slos", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=40)
    args = parser.parse_args(argv)
    declared = slos(args.slos)
    print(f"{args.slos} SLOs, {args.cycles} cycles each; medians after warm-up")
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "bench.db") as sqlite:
        run("sqlite", sqlite, declared, args.cycles, None)
    with PostgresLab() as server:
        url = server.database("bench")
        with PostgresStore(url) as postgres:
            lease = open_lease_table(url)
            postgres.fence = lease.acquire("bench", timedelta(hours=1)) or Lease("bench", 0)
            pid = int(postgres._query("SELECT pg_backend_pid() AS pid")[0]["pid"])
            run("postgresql", postgres, declared, args.cycles, lambda: backend_cpu(pid))
            lease.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
