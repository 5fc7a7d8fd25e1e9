"""How long does a one-file ``budgetguard check`` (and ``--help``) take as a process? Print the medians.

A CI pipeline pays the command's start-up on every run, so the figure that matters is the wall time of
a fresh process, imports included (#14: at most 0.3 s). Each case runs ``--runs`` times and the median
is printed, since one run on a shared machine is noise. ``check`` is timed twice: with no config file
(defaults only, the settings are not imported) and with a config file declaring actions (the settings,
pydantic-settings and every action's configuration are imported and validated, as ``run`` does).

    python bench/cli_startup.py              # 7 runs per case
    python bench/cli_startup.py --runs 11
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def wall_seconds(argv: list[str], cwd: Path, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=cwd, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()[-500:]}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    command = [sys.executable, "-m", "budgetguard"]
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp)
        shutil.copy(ROOT / "slos" / "checkout.yaml", bare / "checkout.yaml")
        cases = [
            ("--help", [*command, "--help"], bare),
            ("check, no config file", [*command, "check", "checkout.yaml"], bare),
            ("check, ./budgetguard.yaml with actions", [*command, "check", "slos/checkout.yaml"], ROOT),
        ]
        print(f"{'case':42s} {'median':>8s} {'min':>8s} {'max':>8s}   ({args.runs} runs, seconds)")
        for name, argv, cwd in cases:
            times = wall_seconds(argv, cwd, args.runs)
            print(f"{name:42s} {statistics.median(times):8.3f} {min(times):8.3f} {max(times):8.3f}")


if __name__ == "__main__":
    main()
