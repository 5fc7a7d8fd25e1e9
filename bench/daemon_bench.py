"""Benchmark: the daemon with 1,000 SLOs at a 30 s interval against a local Prometheus, for minutes.

Prepares the same 31-day history as ``eval_bench.py`` (two counters per SLO), starts
``budgetguard run`` as a subprocess, and samples it every second: CPU time (from /proc), peak RSS
(VmHWM), completed cycles and their durations (from its own /metrics), and the size of its SQLite
files. Prints CPU seconds per cycle, cycle wall time, peak RSS and store growth, and extrapolates the
growth per SLO per day before and after retention thins rows to one per 5 minutes.

    python bench/daemon_bench.py [--slos 1000] [--minutes 5] [--interval 30s]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_bench import SLO_TEMPLATE, write_history  # noqa: E402 - bench/ is not a package

from lab.history import align_end  # noqa: E402
from lab.prometheus import PrometheusLab  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cycle_stats(client: httpx.Client) -> tuple[float, float]:
    """Cycles done and their total duration, from /metrics (what Prometheus would scrape)."""
    count = total = 0.0
    for family in text_string_to_metric_families(client.get("/metrics").text):
        if family.name == "budgetguard_evaluation_duration_seconds":
            for sample in family.samples:
                if sample.name.endswith("_count"):
                    count = sample.value
                elif sample.name.endswith("_sum"):
                    total = sample.value
    return count, total


def cycles_done(client: httpx.Client) -> int:
    """A cheap probe: /readyz says how many cycles are done (scraping /metrics every second would cost
    the daemon more CPU than a real Prometheus' 15-30 s scrape interval does)."""
    reason = str(client.get("/readyz").json().get("reason", ""))
    return int(reason.split(maxsplit=1)[0]) if reason[:1].isdigit() else 0


def store_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slos", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--interval", default="30s")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="budgetguard-daemon-bench-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        history = root / "history.om"
        write_history(history, args.slos, align_end())
        lab = PrometheusLab(data_dir=root / "tsdb")
        lab.backfill(history)
        history.unlink()
        lab.start()
        slo_file = root / "slos.yaml"
        slo_file.write_text(
            "version: budgetguard/v1\nservice: bench\nslos:\n"
            + "".join(SLO_TEMPLATE.format(i=i, objective=(99.9, 99.5, 99.0)[i % 3]) for i in range(args.slos))
        )
        print(
            f"{args.slos} SLOs, Prometheus ready in {time.perf_counter() - started:.0f}s; daemon every "
            f"{args.interval} for {args.minutes:g} minutes"
        )
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        db = root / "bg.db"
        log = (root / "daemon.log").open("w")
        daemon = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "budgetguard",
                "run",
                str(slo_file),
                "--prometheus",
                lab.url,
                "--db",
                str(db),
                "--listen",
                f"127.0.0.1:{port}",
                "--interval",
                args.interval,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        try:
            deadline = time.monotonic() + args.minutes * 60
            cycles: list[tuple[float, float, float, int]] = []  # (count, duration sum, cpu, store bytes)
            last_count = -1
            while time.monotonic() < deadline:
                time.sleep(0.5)
                try:
                    done = cycles_done(client)
                    if done == last_count:
                        continue
                    count, total = cycle_stats(client)
                except httpx.HTTPError:
                    continue
                cycles.append((count, total, cpu_seconds(daemon.pid), store_bytes(db)))
                last_count = done
            rss = peak_rss_mb(daemon.pid)
            scrape = time.perf_counter()
            body = client.get("/metrics").content
            scrape = time.perf_counter() - scrape
        finally:
            daemon.terminate()
            code = daemon.wait(timeout=30)
            client.close()
            log.close()
            lab.close()
        if len(cycles) < 3:
            print("too few cycles to measure; run longer")
            return 1
        durations = [b[1] - a[1] for a, b in pairwise(cycles)]
        cpus = [b[2] - a[2] for a, b in pairwise(cycles)]
        growth = [b[3] - a[3] for a, b in pairwise(cycles)]
        per_cycle = statistics.median(growth)
        interval_s = float(args.interval.rstrip("s"))
        per_slo_day_raw = per_cycle / args.slos * 86400 / interval_s
        per_slo_day_kept = per_cycle / args.slos * 288  # one row per 5 minutes after retention_raw
        print(f"  cycles measured: {len(durations)} (exit code on SIGTERM: {code})")
        print(f"  cycle wall time: median {statistics.median(durations):.2f}s, max {max(durations):.2f}s")
        print(f"  CPU per cycle:   median {statistics.median(cpus):.2f}s (user+system of the daemon)")
        print(f"  peak RSS:        {rss:.0f} MB")
        print(
            f"  one /metrics scrape: {scrape:.2f}s, {len(body) / 1024 / 1024:.1f} MiB "
            "(CPU per cycle includes one scrape per cycle)"
        )
        print(
            f"  store growth:    median {per_cycle / 1024:.0f} KiB per cycle = "
            f"{per_cycle / args.slos:.0f} B per "
            f"SLO per cycle; {per_slo_day_raw / 1024:.0f} KiB per SLO per day at full resolution, "
            f"{per_slo_day_kept / 1024:.1f} KiB per SLO per day after thinning to 5 minutes"
        )
        print(f"  final store:     {cycles[-1][3] / 1024 / 1024:.1f} MiB after {int(cycles[-1][0])} cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
