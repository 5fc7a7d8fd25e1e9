"""Benchmark: the CPU of rendering the per-SLO part of /metrics once, as the daemon does per cycle (#14).

The daemon renders the per-SLO series once per cycle in a worker thread and compresses them there
(``budgetguard.exporter.prepared``); that thread's CPU counts in the cycle's budget of 1 s at 10,000
SLOs. This bench builds N recording-mode evaluations (the SLO files of ``bench/serving_bench.py``, every
SLO evaluated with varied ratios so values differ), then times, in this process, ``--repeat`` refreshes
of the prepared part for the format Prometheus asks for (OpenMetrics) and for the text format, each
render plus its compression, and prints the median CPU seconds, the first render apart (it fills any
cache), the sizes, and the CPU and size of the compression alone at a few gzip levels.

    python bench/metrics_render_bench.py [--slos 1000 10000] [--repeat 7] [--code DIR ...]
    METRICS_BENCH_CODE=/tmp/main python bench/metrics_render_bench.py    # another checkout's budgetguard

With ``--code DIR ...`` each checkout is measured in a subprocess of its own, one after the other in
the same run, so the figures compare side by side (the machine is shared: compare medians).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import statistics
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, os.environ.get("METRICS_BENCH_CODE", str(REPO)))

from budgetguard.core import policy  # noqa: E402 - after the path set-up, so it runs from a checkout
from budgetguard.core.policy import Evaluation, Observation  # noqa: E402
from budgetguard.core.verdict import QueryMode  # noqa: E402
from budgetguard.exporter import Exporter  # noqa: E402
from budgetguard.exporter.prepared import PreparedMetrics  # noqa: E402
from budgetguard.loader import load_document  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from serving_bench import document, services  # noqa: E402

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
AT = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


class View:
    def __init__(self, evaluations: Sequence[Evaluation]) -> None:
        self.evaluations = evaluations

    def latest_evaluations(self) -> Sequence[Evaluation]:
        return self.evaluations

    def config_errors(self) -> int:
        return 0


def evaluations(count: int) -> list[Evaluation]:
    """One recording-mode evaluation per SLO, error ratios drawn so values (and verdicts) vary."""
    rng = random.Random(14)
    out = []
    for service, names in services(count):
        slos, _ = load_document(document(service, names), f"{service}.yaml")
        for slo in slos:
            scale = rng.choice((0.1, 0.5, 1.0, 3.0, 20.0))
            observations = {
                window: Observation(window, 0.001 * scale * rng.random(), rng.randint(1, 10**7), None)
                for window in slo.windows()
            }
            ev = policy.evaluate(slo, observations, AT)
            out.append(dataclasses.replace(ev, query_mode=QueryMode.RECORDING))
    return out


def cpu_of(action: Callable[[], Any]) -> float:
    started = time.process_time()
    action()
    return time.process_time() - started


def measure(count: int, repeat: int) -> dict[str, Any]:
    evs = evaluations(count)
    exporter = Exporter(View(evs), version="bench")
    exporter.observe_cycle(0.5, count)
    prepared = PreparedMetrics(exporter)
    render = getattr(prepared, "_render")  # noqa: B009 - the worker thread's whole job, timed alone
    result: dict[str, Any] = {"code": str(Path(sys.modules["budgetguard"].__file__ or "").parent.parent)}
    for name, accept in (("openmetrics", PROMETHEUS_ACCEPT), ("text", None)):
        first = cpu_of(lambda accept=accept: render(accept))
        times = [cpu_of(lambda accept=accept: render(accept)) for _ in range(repeat)]
        _, part = render(accept)
        result[name] = {
            "first_cpu_s": round(first, 3),
            "median_cpu_s": round(statistics.median(times), 3),
            "min_cpu_s": round(min(times), 3),
            "text_bytes": part.length,
            "gzip_bytes": len(part.deflated),
        }
        text = part.text
    levels = {}
    for level in (1, 3, 6):
        packer = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
        cpu = cpu_of(lambda packer=packer: packer.compress(text) + packer.flush(zlib.Z_SYNC_FLUSH))
        size = len(zlib.compress(text, level))
        levels[f"level {level}"] = {"cpu_s": round(cpu, 3), "bytes": size}
    result["gzip_text"] = levels

    async def refresh_and_serve() -> None:
        await prepared.refresh()
        await prepared.serve(PROMETHEUS_ACCEPT, "gzip")

    result["refresh_cpu_s"] = round(cpu_of(lambda: asyncio.run(refresh_and_serve())), 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--slos", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--code", nargs="+", help="checkouts to compare, each in a subprocess")
    args = parser.parse_args()
    if args.code:
        for code in args.code:
            for count in args.slos:
                env = {**os.environ, "METRICS_BENCH_CODE": str(Path(code).resolve())}
                command = [sys.executable, __file__, "--slos", str(count), "--repeat", str(args.repeat)]
                subprocess.run(command, env=env, check=True)
        return
    for count in args.slos:
        print(f"{count:,} SLOs: {json.dumps(measure(count, args.repeat))}", flush=True)


if __name__ == "__main__":
    main()
