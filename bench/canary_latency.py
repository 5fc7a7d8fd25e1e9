"""End-to-end detection latency: from a canary starting to fail to the abort received by Kubernetes.

The whole loop of ``lab.canary_loop``: a live service (stable v1 at 50 requests/s, clean), a real
Prometheus scraping it every second, ``budgetguard run`` evaluating every second as a subprocess, and a
fake Kubernetes API that receives the Argo Rollouts abort (``PATCH .../rollouts/checkout-vN/status``).
Traffic is a seeded Poisson process (``--seed``). Each run deploys a new canary version at 5 requests/s
and measures, on the monotonic clock, from the
moment its error ratio becomes 20% to the moment the fake has the abort (polled every 10 ms). Two
scenarios, ``--runs`` each:

- ``healthy-first``: the canary serves cleanly for ``--healthy`` seconds (so its windows hold clean
  traffic, the hard case), then fails;
- ``fails-at-once``: the canary fails from its first request.

Also checked on every run: exactly one abort per canary. Prints each run, then the median and p95 per
scenario.

    python bench/canary_latency.py [--runs 10] [--healthy 15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab.canary_loop import CANARY_WINDOWS, CanaryLoop


def p95(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def measure(loop: CanaryLoop, version: str, healthy_for: float) -> float:
    if healthy_for > 0:
        loop.deploy(version, rps=5.0, error_ratio=0.0)
        time.sleep(healthy_for)
        if loop.aborts(version):
            raise AssertionError(f"{version} was aborted while healthy")
        started = time.monotonic()
        loop.fail(version, rps=5.0, error_ratio=0.2)
    else:
        started = time.monotonic()
        loop.deploy(version, rps=5.0, error_ratio=0.2)
    loop.wait(lambda: loop.aborts(version), 60, f"the abort of {version}", every=0.01)
    latency = time.monotonic() - started
    time.sleep(2)  # later cycles must not abort again
    if len(loop.aborts(version)) != 1:
        raise AssertionError(f"{version} aborted {len(loop.aborts(version))} times")
    loop.retire(version)
    return latency


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs per scenario (default 10)")
    parser.add_argument("--healthy", type=float, default=15.0, help="seconds clean before failing")
    parser.add_argument("--seed", type=int, default=1, help="Poisson traffic seed (default 1)")
    args = parser.parse_args(argv)

    results: dict[str, list[float]] = {"healthy-first": [], "fails-at-once": []}
    with CanaryLoop(seed=args.seed) as loop:
        time.sleep(3)  # the stable version's first scrapes
        number = 2
        for scenario, healthy_for in (("healthy-first", args.healthy), ("fails-at-once", 0.0)):
            for run in range(args.runs):
                version = f"v{number}"
                number += 1
                latency = measure(loop, version, healthy_for)
                results[scenario].append(latency)
                print(f"{scenario:14} run {run + 1:2}: {version:4} aborted {latency:5.2f} s after it failed")
                sys.stdout.flush()
                time.sleep(1)
    print(
        "\nscrape 1s, evaluate 1s, Poisson traffic, canary 5 requests/s at 20% errors, canary windows "
        f"{' and '.join(CANARY_WINDOWS)}:"
    )
    for scenario, values in results.items():
        print(
            f"  {scenario:14} median {statistics.median(values):.2f} s  p95 {p95(values):.2f} s  "
            f"min {min(values):.2f} s  max {max(values):.2f} s  ({len(values)} runs)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
