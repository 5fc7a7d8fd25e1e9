"""The history demo: a real Prometheus with 31 days of a demo service, and `budgetguard eval` on it.

Run ``.venv/bin/python -m lab.demo_history`` after ``scripts/setup``. It generates the history of two
services (checkout and search, see ``lab.history``), backfills it with promtool into a Prometheus on a
free loopback port, prints what happened in that month, then runs ``budgetguard eval slos/`` against it
exactly as a user would, and stops Prometheus (``--keep`` leaves it running until Ctrl-C).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from budgetguard.cli import main as budgetguard
from lab.history import align_end, demo_history, demo_timeline
from lab.prometheus import LabError, PrometheusLab

REPO = Path(__file__).resolve().parent.parent


def run(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.demo_history", description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep Prometheus running until Ctrl-C")
    parser.add_argument("--slos", type=Path, default=REPO / "slos", help="SLO files to evaluate")
    args = parser.parse_args(argv)

    end = align_end()
    print(
        "budgetguard demo: generating 31 days of metrics for 'checkout' and 'search' "
        f"up to {end:%Y-%m-%d %H:%M}Z"
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="budgetguard-demo-") as data_dir:
        try:
            lab = PrometheusLab(data_dir=data_dir)
            report = lab.backfill(demo_history(end))
            lab.start()
        except LabError as exc:
            print(f"demo: {exc}", file=sys.stderr)
            return 1
        with lab:
            print(
                f"  backfilled {report.samples:,} samples with promtool; Prometheus 2.42 is up at {lab.url}"
            )
            print(f"  ready in {time.monotonic() - started:.1f}s\n\nWhat happened this month:")
            for event in demo_timeline(end):
                if event.end == event.start:
                    when = f"{event.start:%b %d %H:%M}Z"
                elif event.end.date() == event.start.date():
                    when = f"{event.start:%b %d %H:%M}-{event.end:%H:%M}Z"
                else:
                    when = f"{event.start:%b %d %H:%M}Z-{event.end:%b %d %H:%M}Z"
                print(f"  {when:<27} {event.job:<8}  {event.summary}")
            slos = args.slos.resolve()
            shown = slos.relative_to(Path.cwd()) if slos.is_relative_to(Path.cwd()) else slos
            command = ["eval", str(shown), "--prometheus", lab.url]
            print(f"\n$ budgetguard {' '.join(command)}\n")
            sys.stdout.flush()
            code = budgetguard(command)
            print(f"\n(exit code {code}: 0 means nothing is burning; see docs/reference/cli.md)")
            if args.keep:
                print(
                    f"\nPrometheus keeps running at {lab.url}; try "
                    f"`budgetguard eval slos/ --prometheus {lab.url} "
                    "--json`. Ctrl-C stops it."
                )
                try:
                    while True:
                        time.sleep(3600)
                except KeyboardInterrupt:
                    pass
    return 0


if __name__ == "__main__":
    sys.exit(run())
