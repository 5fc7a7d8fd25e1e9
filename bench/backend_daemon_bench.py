"""Benchmark: the whole daemon's cycle CPU at 1,000 SLOs on SQLite and on PostgreSQL, one Prometheus.

``daemon_bench.py``'s setup (the same 31-day history, two counters per SLO, one local Prometheus), then
``budgetguard run`` for a few minutes on a SQLite file and for as long on a PostgreSQL database
(``lab.postgres``, on this machine), one after the other against the same Prometheus. For each: the
daemon's CPU per cycle (user+system from /proc) and cycle wall time; on PostgreSQL also the database
server's CPU per cycle (every process of the cluster, autovacuum and checkpointer included), since a
replica's writes cost the server what SQLite's cost the daemon.

    python bench/backend_daemon_bench.py [--slos 1000] [--minutes 3] [--interval 10s]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from itertools import pairwise
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from daemon_bench import cpu_seconds, cycle_stats, cycles_done  # noqa: E402 - bench/ is not a package
from eval_bench import SLO_TEMPLATE, write_history  # noqa: E402

from lab.history import align_end  # noqa: E402
from lab.postgres import PostgresLab  # noqa: E402
from lab.prometheus import PrometheusLab  # noqa: E402


def cluster_cpu(data_dir: Path) -> Callable[[], float]:
    """CPU seconds of every process of a PostgreSQL cluster: the postmaster and its children."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])

    def total() -> float:
        pids = [postmaster]
        children = Path(f"/proc/{postmaster}/task/{postmaster}/children")
        if children.exists():
            pids += [int(p) for p in children.read_text().split()]
        seconds = 0.0
        for pid in pids:
            try:
                seconds += cpu_seconds(pid)
            except (FileNotFoundError, ProcessLookupError):
                continue  # a backend that ended between listing and reading
        return seconds

    return total


def measure(
    name: str,
    db: str,
    *,
    slo_file: Path,
    prometheus: str,
    args: argparse.Namespace,
    server_cpu: Callable[[], float] | None,
    root: Path,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = (root / f"daemon-{name}.log").open("w")
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "budgetguard",
            "run",
            str(slo_file),
            "--prometheus",
            prometheus,
            "--db",
            db,
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
    samples: list[tuple[float, float, float, float]] = []  # (count, duration sum, daemon cpu, server cpu)
    try:
        deadline = time.monotonic() + args.minutes * 60
        last = -1
        while time.monotonic() < deadline:
            time.sleep(0.25)
            try:
                done = cycles_done(client)
                if done == last:
                    continue
                count, total = cycle_stats(client)
            except httpx.HTTPError:
                continue
            samples.append((count, total, cpu_seconds(daemon.pid), server_cpu() if server_cpu else 0.0))
            last = done
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        client.close()
        log.close()
    steps = list(pairwise(samples[1:]))  # the first cycle loads SLOs and migrates: not a steady cycle
    if len(steps) < 3:
        print(f"{name}: too few cycles to measure; run longer")
        return
    walls = [b[1] - a[1] for a, b in steps]
    cpus = [(b[2] - a[2]) / max(b[0] - a[0], 1) for a, b in steps]
    line = (
        f"{name:10s} cycles {len(steps):3d}  daemon CPU per cycle median {statistics.median(cpus):.3f}s"
        f"  cycle wall median {statistics.median(walls):.2f}s"
    )
    if server_cpu:
        server = (samples[-1][3] - samples[1][3]) / max(samples[-1][0] - samples[1][0], 1)
        line += f"  server CPU per cycle (mean) {server:.3f}s"
    print(line)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slos", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=3)
    parser.add_argument("--interval", default="10s")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="budgetguard-backend-bench-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        history = root / "history.om"
        write_history(history, args.slos, align_end())
        lab = PrometheusLab(data_dir=root / "tsdb")
        try:
            lab.backfill(history)
            history.unlink()
            lab.start()
            slo_file = root / "slos.yaml"
            slo_file.write_text(
                "version: budgetguard/v1\nservice: bench\nslos:\n"
                + "".join(
                    SLO_TEMPLATE.format(i=i, objective=(99.9, 99.5, 99.0)[i % 3]) for i in range(args.slos)
                )
            )
            print(
                f"{args.slos} SLOs, Prometheus ready in {time.perf_counter() - started:.0f}s; each backend "
                f"every {args.interval} for {args.minutes:g} minutes"
            )
            common = {"slo_file": slo_file, "prometheus": lab.url, "args": args, "root": root}
            measure("sqlite", str(root / "bg.db"), server_cpu=None, **common)
            with PostgresLab() as server:
                url = server.database("bench")
                measure("postgresql", url, server_cpu=cluster_cpu(server.data_dir), **common)
        finally:
            lab.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
