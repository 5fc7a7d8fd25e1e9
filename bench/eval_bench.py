"""Benchmark: one evaluation cycle of 100 and 1,000 generated SLOs against a real local Prometheus.

Each SLO has its own pair of counters (``bench_requests_total{slo="N", code="200"|"500"}``) with 31
days of history: one sample every 5 minutes, and every 30 s over the last 6 hours (so the 5m window has
real samples). Prints, per SLO count, the median and spread over several cycles of: wall time per
cycle, queries per cycle, CPU seconds per cycle, and the peak RSS of the process that evaluates (a
child process, so data generation does not count). Also measures, side by side in the same run, the
engine sending every window as its own query (``combine=False``) to show what combining saves.

    python bench/eval_bench.py [--slos 100 1000] [--cycles 5]

Figures depend on the machine; quote medians, and ratios measured in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from budgetguard.core.ports import QueryResult  # noqa: E402
from budgetguard.engine import Engine  # noqa: E402 - after the path set-up, so it runs from a checkout
from budgetguard.loader import load_text  # noqa: E402
from budgetguard.sources.prometheus import PrometheusConfig, PrometheusSource  # noqa: E402
from lab.history import align_end  # noqa: E402
from lab.prometheus import PrometheusLab  # noqa: E402

SLO_TEMPLATE = """
  - name: slo-{i}
    objective: {objective}
    sli:
      events:
        error_query: sum(rate(bench_requests_total{{slo="{i}",code="500"}}[{{{{.window}}}}]))
        total_query: sum(rate(bench_requests_total{{slo="{i}"}}[{{{{.window}}}}]))
"""


def write_history(path: Path, slos: int, end: datetime) -> int:
    """OpenMetrics text for ``slos`` pairs of counters; returns the sample count."""
    end_s = int(end.timestamp())
    coarse = list(range(end_s - 31 * 86400, end_s - 6 * 3600, 300))
    fine = list(range(end_s - 6 * 3600, end_s + 1, 30))
    times = coarse + fine
    samples = 0
    with path.open("w") as out:
        out.write("# TYPE bench_requests counter\n")
        for i in range(slos):
            rps = 5 + (i % 50)
            error_share = 0.0002 * (1 + i % 7)
            for code, share in (("200", 1 - error_share), ("500", error_share)):
                value = 1_000_000.0 * share
                previous = times[0]
                lines = []
                for t in times:
                    value += rps * share * (t - previous)
                    previous = t
                    lines.append(f'bench_requests_total{{slo="{i}",code="{code}"}} {value:.3f} {t}\n')
                out.writelines(lines)
                samples += len(lines)
        out.write("# EOF\n")
    return samples


class CountingSource:
    def __init__(self, inner: PrometheusSource) -> None:
        self.inner = inner
        self.queries = 0

    async def query(self, expr: str, at: datetime) -> QueryResult:
        self.queries += 1
        return await self.inner.query(expr, at)

    async def aclose(self) -> None:
        await self.inner.aclose()


def child(url: str, slos: int, cycles: int, at: float, combine: bool) -> None:
    """Evaluate in a fresh process and print one JSON line of figures."""
    text = "version: budgetguard/v1\nservice: bench\nslos:\n" + "".join(
        SLO_TEMPLATE.format(i=i, objective=(99.9, 99.5, 99.0)[i % 3]) for i in range(slos)
    )
    loaded, problems = load_text(text, "bench.yaml")
    assert not problems, problems

    async def main() -> dict[str, object]:
        source = CountingSource(
            PrometheusSource(PrometheusConfig(url=url, timeout=timedelta(seconds=60), max_concurrency=8))
        )
        engine = Engine(source, combine=combine)
        walls, cpus, queries = [], [], []
        verdicts: dict[str, int] = {}
        for _ in range(cycles):
            source.queries = 0
            wall, cpu = time.perf_counter(), time.process_time()
            evaluations = await engine.evaluate_all(loaded, datetime.fromtimestamp(at, tz=UTC))
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            queries.append(source.queries)
        for ev in evaluations:
            verdicts[str(ev.verdict)] = verdicts.get(str(ev.verdict), 0) + 1
        await source.aclose()
        return {
            "walls": walls,
            "cpus": cpus,
            "queries": queries,
            "verdicts": verdicts,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }

    print(json.dumps(asyncio.run(main())))


def measure(url: str, slos: int, cycles: int, at: float, combine: bool) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, __file__, "--child", url, str(slos), str(cycles), str(at), str(int(combine))],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def report(label: str, figures: dict[str, object]) -> float:
    walls = sorted(figures["walls"])  # type: ignore[type-var]
    cpus = figures["cpus"]
    median = statistics.median(walls)
    print(
        f"  {label:<28} wall/cycle median {median:7.3f}s (min {walls[0]:.3f}, max {walls[-1]:.3f})  "
        f"queries/cycle {figures['queries'][0]:>6}  "  # type: ignore[index]
        f"cpu/cycle {statistics.median(cpus):6.3f}s  peak RSS {figures['peak_rss_mb']:6.1f} MB  "  # type: ignore[arg-type]
        f"verdicts {figures['verdicts']}"
    )
    return median


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slos", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        url, slos, cycles, at, combine = args.child
        child(url, int(slos), int(cycles), float(at), combine == "1")
        return 0

    end = align_end()
    biggest = max(args.slos)
    with tempfile.TemporaryDirectory(prefix="budgetguard-bench-") as tmp:
        started = time.perf_counter()
        history = Path(tmp) / "history.om"
        samples = write_history(history, biggest, end)
        lab = PrometheusLab(data_dir=Path(tmp) / "tsdb")
        lab.backfill(history)
        history.unlink()
        lab.start()
        print(
            f"Prometheus 2.42 on {lab.url}: {biggest * 2} series, {samples:,} samples over 31 days "
            f"(prepared in {time.perf_counter() - started:.0f}s)"
        )
        with lab:
            at = end.timestamp()
            for slos in args.slos:
                print(f"{slos} SLOs, {args.cycles} cycles each, evaluated at the end of the history:")
                combined = report("one query per SLO", measure(lab.url, slos, args.cycles, at, True))
                separate = report("one query per window", measure(lab.url, slos, args.cycles, at, False))
                print(f"  combining is {separate / combined:.2f}x faster per cycle (same run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
