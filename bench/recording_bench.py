"""Benchmark: recording-rule mode against raw mode at 1,000 and 10,000 SLOs, on a real Prometheus (#5).

One run, one Prometheus 2.42 (the lab) evaluating the rules ``budgetguard.core.rules`` generates, and
budgetguard asking it through the real ``PrometheusSource``: per SLO count, one evaluation cycle of
``Engine`` (raw mode) and of ``RecordingEngine`` (recording-rule mode), each in a fresh process so its
peak RSS is its own. Prints wall time, queries, CPU seconds of budgetguard's process and of
Prometheus' (from /proc), peak RSS, and checks the issue's target: 10,000 SLOs in recording-rule mode
under 2 s and under 300 MB.

Where the recorded series come from. Prometheus records them itself, live, from the generated rules:

- every SLO ``rbench/slo-N`` has its own two counters ``rbench_requests_total{slo="N",code=...}``;
  promtool backfills ``HISTORY`` of them (a sample every 5 minutes, every 30 s over the last hour:
  the longest window that is not the SLO window is 3d), and a scrape target in this process serves
  the same counters from the clock, continuing the backfill, so the 5m window is always fed;
- the rule file is ``budgetguard.core.rules.rule_file`` of the SLOs, as JSON (JSON is YAML), with groups
  every ``--rule-interval`` (per phase: 1m for 1,000 SLOs, 3m for 10,000, since one round of 10,000
  groups cost this 2-core machine 90-170 CPU seconds: at 1m Prometheus fell minutes behind);
  a phase waits until Prometheus reports every group evaluated
  (``prometheus_rule_group_last_evaluation_timestamp_seconds``), then both modes evaluate at that
  instant, so RecordingEngine sends exactly its own queries against series Prometheus recorded;
- the cycles are measured with Prometheus restarted on the same TSDB without the rules, so the
  ruler's work (reported on its own, from Prometheus' CPU time and its iteration counters) does not
  share the 2 cores with the cycle being measured;
- the 1,000-SLO phase loads only its 1,000 SLOs' rules (RecordingEngine's window queries return every
  SLO's series the ruler records, so a larger rule set would be read too); Prometheus then restarts
  with the 10,000 SLOs' rules for the next phase.

Traffic: burn 0.2, 0.5, 0.8 or 2 (per SLO, against objectives of 99.9, 99.5 and 99%), one SLO in ten in
an incident burning 20x for the last 8 hours, one in a hundred without any series. So the expected
verdicts are known (healthy, warning from the 3d/6h tier, burning, inconclusive), and both modes must
give them, SLO by SLO. The SLO-window (30d) numbers differ by design: raw mode reads the backfilled
counters, recorded series only cover the time since the rules were loaded (see ``budgetguard.core.rules``).

The ruler's cost measured here is a floor: the backfilled counters have a sample every 5 minutes
(a real scrape: every 15-30 s), and the SLO-window rules average minutes of recorded points where, after
30 days, they average 30 days of them.

Each recording-mode child runs as the daemon does: ``memory.settle()`` after loading the SLOs, the
cycle inside ``memory.collection_paused()``, and the collection the pause deferred timed and counted
in the wall time. At the biggest count recording mode runs ``--repeat`` times (medians quoted) with
gzip-compressed answers (``compression: true``, the default) and with plain ones; each child also
times a later cycle, which no longer computes the rules hash of every SLO (the first cycle's one-off).

Raw mode's cost grows with the samples a 30d window covers and recording mode's does not, so the run
also measures raw mode on 1,000 SLOs over 31 days (``eval_bench.py``'s history and SLOs, backfilled
into the same Prometheus). And it runs google/slo-generator (PyPI ``slo-generator``, in its own venv,
``bench/.venv-slo-generator``) on a sample of the same SLOs against the same Prometheus.

    python bench/recording_bench.py [--slos 1000 10000] [--rule-interval 1m 3m]

Figures depend on the machine and on what else runs on it; quote ratios measured in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from daemon_bench import cpu_seconds  # noqa: E402 - bench/ is not a package
from eval_bench import CountingSource, write_history  # noqa: E402

from budgetguard import memory  # noqa: E402 - after the path set-up, so it runs from a checkout
from budgetguard.core import rules  # noqa: E402
from budgetguard.core.durations import format_duration, parse_duration  # noqa: E402
from budgetguard.core.spec import SLO  # noqa: E402
from budgetguard.engine import Engine  # noqa: E402
from budgetguard.loader import load_document  # noqa: E402
from budgetguard.recording import RecordingEngine  # noqa: E402
from budgetguard.sources.prometheus import PrometheusConfig, PrometheusSource  # noqa: E402
from lab.prometheus import PrometheusLab  # noqa: E402

METRIC = "rbench_requests"
SERVICE = "rbench"
MONTH_SERVICE = "bench"  # eval_bench.py's SLOs and history
MONTH_METRIC = "bench_requests"
HISTORY = timedelta(days=3, hours=1)  # the 3d window, and a margin for the time the run takes
COARSE_STEP = 300
FINE_STEP = 30
FINE_SPAN = 3600
INCIDENT = timedelta(hours=8)
OBJECTIVES = (99.9, 99.5, 99.0)
BASE_BURNS = (0.2, 0.5, 0.8, 2.0)
INCIDENT_BURN = 20.0
TARGET_WALL_S = 2.0
TARGET_RSS_MB = 300.0
VERDICT_CODES = {"healthy": "h", "warning": "w", "burning": "b", "inconclusive": "i", "error": "e"}
SLO_GENERATOR = "slo-generator[prometheus]==2.6.0"
# setuptools<70: slo-generator imports pkg_resources, which setuptools 70 removed.
PACKAGES = (SLO_GENERATOR, "setuptools<70")
SLO_GENERATOR_VENV = REPO / "bench" / ".venv-slo-generator"
CHILD_TIMEOUT_S = 900


# --- the synthetic SLOs and their traffic ------------------------------------------------------------


@dataclass(frozen=True)
class Traffic:
    """One SLO's counters: ``rps`` requests per second, errors at ``burn`` x its budget, and at
    ``incident_burn`` x from ``incident_at`` on. Pure arithmetic of the clock, so the backfill and the
    scrape target serve one continuous counter."""

    rps: float
    budget: float
    burn: float
    incident_burn: float | None
    origin: float
    incident_at: float

    def errors(self, t: float) -> float:
        if self.incident_burn is None:
            return self.rps * self.budget * self.burn * (t - self.origin)
        before = min(t, self.incident_at) - self.origin
        after = max(t - self.incident_at, 0.0)
        return self.rps * self.budget * (self.burn * before + self.incident_burn * after)

    def slope(self, code: str, t: float) -> float:
        """Events per second at ``t`` (after the incident starts: the incident's)."""
        burn = self.burn
        if self.incident_burn is not None and t > self.incident_at:
            burn = self.incident_burn
        errors = self.rps * self.budget * burn
        return errors if code == "500" else self.rps - errors

    def value(self, code: str, t: float) -> float:
        errors = self.errors(t)
        return 1000.0 + (errors if code == "500" else self.rps * (t - self.origin) - errors)


def objective(i: int) -> float:
    return OBJECTIVES[i % len(OBJECTIVES)]


def traffic(i: int, end: float) -> Traffic | None:
    """``None``: the SLO's counters were never created (no traffic)."""
    if i % 100 == 99:
        return None
    return Traffic(
        rps=5.0 + i % 50,
        budget=(100.0 - objective(i)) / 100.0,
        burn=BASE_BURNS[i % len(BASE_BURNS)],
        incident_burn=INCIDENT_BURN if i % 10 == 7 else None,
        origin=end - HISTORY.total_seconds(),
        incident_at=end - INCIDENT.total_seconds(),
    )


def expected_verdict(i: int) -> str:
    if i % 100 == 99:
        return "inconclusive"  # no series in any window
    if i % 10 == 7:
        return "burning"  # 20x over 1h and 5m: the 14.4x page tier
    return "warning" if BASE_BURNS[i % len(BASE_BURNS)] > 1 else "healthy"  # 2x: the 3d/6h ticket tier


def slo_document(service: str, metric: str, count: int) -> dict[str, Any]:
    """A native SLO file as the loader gets it from YAML (parsing 10,000 SLOs of YAML takes ~30 s)."""
    return {
        "version": "budgetguard/v1",
        "service": service,
        "slos": [
            {
                "name": f"slo-{i}",
                "objective": objective(i),
                "sli": {
                    "events": {
                        "error_query": f'sum(rate({metric}_total{{slo="{i}",code="500"}}[{{{{.window}}}}]))',
                        "total_query": f'sum(rate({metric}_total{{slo="{i}"}}[{{{{.window}}}}]))',
                    }
                },
            }
            for i in range(count)
        ],
    }


def load_slos(service: str, metric: str, count: int) -> list[SLO]:
    slos, problems = load_document(slo_document(service, metric, count), f"{service}.yaml")
    assert not problems, problems[:3]
    return slos


def write_rbench_history(path: Path, slos: int, end: int) -> int:
    """OpenMetrics text for every SLO's two counters over ``HISTORY`` up to ``end``; the sample count."""
    start = end - int(HISTORY.total_seconds())
    times = [*range(start, end - FINE_SPAN, COARSE_STEP), *range(end - FINE_SPAN, end + 1, FINE_STEP)]
    incident_at = end - int(INCIDENT.total_seconds())
    before, after = [t for t in times if t <= incident_at], [t for t in times if t > incident_at]
    samples = 0
    with path.open("w") as out:
        out.write(f"# TYPE {METRIC} counter\n")
        for i in range(slos):
            model = traffic(i, end)
            if model is None:
                continue
            for code in ("200", "500"):
                name = f'{METRIC}_total{{slo="{i}",code="{code}"}} '
                for piece in (before, after):  # linear pieces: a method call per sample costs 3x
                    if piece:
                        first, base, slope = (
                            piece[0],
                            model.value(code, piece[0]),
                            model.slope(code, piece[0]),
                        )
                        out.writelines([f"{name}{base + slope * (t - first):.6f} {t}\n" for t in piece])
                samples += len(times)
        out.write("# EOF\n")
    return samples


class TrafficTarget:
    """The SLOs' counters at the current time, continuing the backfill, on 127.0.0.1 for Prometheus."""

    def __init__(self, slos: int, end: int) -> None:
        models = [(i, traffic(i, end)) for i in range(slos)]
        self._models = [(i, m) for i, m in models if m is not None]
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = target.exposition(time.time()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="rbench-target", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def exposition(self, now: float) -> str:
        lines = [f"# TYPE {METRIC}_total counter"]
        for i, model in self._models:
            for code in ("200", "500"):
                lines.append(f'{METRIC}_total{{slo="{i}",code="{code}"}} {model.value(code, now):.6f}')
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


# --- measuring one mode in a fresh process -----------------------------------------------------------


def memory_mb(field: str) -> float:
    """``VmRSS`` or ``VmHWM`` (peak) of this process. Not ``ru_maxrss``: Linux carries that across
    exec from the forked parent, so a child would report the bench's own peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def sample_indices(count: int) -> list[int]:
    """About a hundred SLOs spread over every traffic shape (7, 108, 209...: all residues mod 4, 10, 100)."""
    return list(range(7, count, max(count // 100, 1) + 1))


def child(args: Sequence[str]) -> None:
    """Evaluate one cycle in this fresh process and print one JSON line of figures; with ``profile``,
    then a second cycle under cProfile (after the figures of the first, its peak RSS included)."""
    mode, which, count, at, url, prometheus_pid, profile = args
    n, pid = int(count), int(prometheus_pid)
    mode, _, compressed = mode.partition("+")
    slos = load_slos(*((MONTH_SERVICE, MONTH_METRIC) if which == "month" else (SERVICE, METRIC)), n)
    moment = datetime.fromtimestamp(float(at), tz=UTC)
    memory.settle()  # as the daemon does after loading its SLOs

    async def main() -> dict[str, object]:
        config = PrometheusConfig(
            url=url, timeout=timedelta(seconds=60), max_concurrency=8, compression=compressed != "plain"
        )
        source = CountingSource(PrometheusSource(config))
        engine = RecordingEngine(source) if mode == "recording" else Engine(source)
        rss_before = memory_mb("VmRSS")
        prometheus_cpu = cpu_seconds(pid)
        wall, cpu = time.perf_counter(), time.process_time()
        with memory.collection_paused():  # as the daemon runs a cycle
            evaluations = await engine.evaluate_all(slos, moment)
        cycle_wall, cycle_cpu = time.perf_counter() - wall, time.process_time() - cpu
        # What the pause defers: the first collection after the cycle looks at what it made. Counted in.
        collected = time.perf_counter()
        gc.collect()
        figures: dict[str, object] = {
            "wall": time.perf_counter() - wall,
            "cpu": time.process_time() - cpu,
            "cycle_wall": cycle_wall,
            "cycle_cpu": cycle_cpu,
            "collect": time.perf_counter() - collected,
            "prometheus_cpu": cpu_seconds(pid) - prometheus_cpu,
            "queries": source.queries,
            "rss_before_mb": rss_before,
            "peak_rss_mb": memory_mb("VmHWM"),
            "verdicts": "".join(VERDICT_CODES[str(ev.verdict)] for ev in evaluations),
            "modes": dict(Counter(ev.query_mode.split(" (")[0] for ev in evaluations)),
            "fallbacks": sorted({ev.query_mode for ev in evaluations if ev.query_mode.startswith("raw (")})[
                :3
            ],
            "sample": {
                str(i): {
                    "windows": {
                        format_duration(w.window): [w.error_ratio, w.events] for w in evaluations[i].windows
                    },
                    "budget_remaining": evaluations[i].budget_remaining,
                }
                for i in sample_indices(n)
            },
        }
        # A later cycle, as the daemon runs every interval: what the first one did once (the rules hash of
        # every SLO it had not seen) is not done again.
        again = time.perf_counter()
        with memory.collection_paused():
            await engine.evaluate_all(slos, moment)
        gc.collect()
        figures["later_wall"] = time.perf_counter() - again
        if profile == "1":
            figures["profile"] = await profiled_cycle(engine, slos, moment)
        await source.aclose()
        return figures

    print(json.dumps(asyncio.run(main())))


async def profiled_cycle(engine: Engine | RecordingEngine, slos: Sequence[SLO], at: datetime) -> str:
    import cProfile  # noqa: PLC0415 - only when asked for
    import io  # noqa: PLC0415
    import pstats  # noqa: PLC0415

    profiler = cProfile.Profile()
    wall = time.perf_counter()
    with memory.collection_paused():
        profiler.enable()
        await engine.evaluate_all(slos, at)
        profiler.disable()
    text = io.StringIO()
    print(f"a second cycle, under the profiler: wall {time.perf_counter() - wall:.2f}s", file=text)
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(16)
    stats.sort_stats("cumulative").print_stats(r"budgetguard", 16)
    return text.getvalue()


@dataclass(frozen=True)
class Running:
    """The Prometheus that answers: its URL, and its pid for its CPU time."""

    url: str
    pid: int


def measure(
    mode: str, which: str, count: int, at: float, prometheus: Running, *, profile: bool = False
) -> dict[str, Any]:
    """One cycle of ``mode`` in a fresh process (so its peak RSS is its own), at ``at``."""
    command = [sys.executable, __file__, "--child", mode, which, str(count), repr(at), prometheus.url]
    command += [str(prometheus.pid), str(int(profile))]
    result = subprocess.run(command, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{mode} child failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def median_run(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The run whose wall time is the median (the lower middle of an even count)."""
    ordered = sorted(runs, key=lambda figures: float(figures["wall"]))
    return ordered[(len(ordered) - 1) // 2]


def report(label: str, figures: dict[str, Any]) -> None:
    verdicts = dict(sorted(Counter(figures["verdicts"]).items()))
    codes = {v: k for k, v in VERDICT_CODES.items()}
    print(
        f"  {label:<34} wall {figures['wall']:7.3f}s (cycle {figures['cycle_wall']:.3f}s + the collection it "
        f"deferred {figures['collect']:.3f}s; a later cycle {figures['later_wall']:.3f}s)  "
        f"queries {figures['queries']:>6,}  "
        f"cpu {figures['cpu']:6.2f}s  Prometheus cpu {figures['prometheus_cpu']:6.2f}s  "
        f"peak RSS {figures['peak_rss_mb']:4.0f} MB ({figures['rss_before_mb']:.0f} before the cycle)"
    )
    print(
        f"  {'':<34} verdicts {', '.join(f'{codes[c]} {n}' for c, n in verdicts.items())}; "
        f"read by {figures['modes']}"
    )


# --- Prometheus' side --------------------------------------------------------------------------------


def prometheus_pid(lab: PrometheusLab) -> int:
    """The pid of the lab's prometheus, found in /proc by its listen address (for its CPU time)."""
    flag = f"--web.listen-address={lab.url.removeprefix('http://')}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if flag in cmdline and cmdline[0].endswith(b"prometheus"):
            return int(entry.name)
    raise RuntimeError(f"no prometheus process listens on {lab.url}")


_LINE = re.compile(r"^(\w+)\{([^}]*)\} (\S+)$")


def rule_metrics(lab: PrometheusLab) -> dict[str, list[float]]:
    """Prometheus' own per-group rule metrics (``prometheus_rule_group_*``), values by metric name."""
    text = httpx.get(f"{lab.url}/metrics", timeout=60, trust_env=False).text
    out: dict[str, list[float]] = {}
    for line in text.splitlines():
        if not line.startswith(("prometheus_rule_group_", "prometheus_rule_evaluation_failures_total")):
            continue
        match = _LINE.match(line)
        if match and "budgetguard-" in match.group(2):
            out.setdefault(match.group(1), []).append(float(match.group(3)))
    return out


def wait_for_rules(lab: PrometheusLab, groups: int, since: float, timeout_s: float) -> int:
    """Until every group has been evaluated since ``since``; how many were."""
    began = time.monotonic()
    done = 0
    while time.monotonic() - began < timeout_s:
        # Not too often: 10,000 groups make /metrics a 10 MB page for Prometheus to render.
        time.sleep(10)
        stamps = rule_metrics(lab).get("prometheus_rule_group_last_evaluation_timestamp_seconds", [])
        done = sum(1 for stamp in stamps if stamp >= since)
        if done >= groups:
            break
    return done


def rule_round_report(metrics: dict[str, list[float]], cpu: float | None, interval: timedelta) -> None:
    """What evaluating the generated rules costs Prometheus, from its CPU time and its own metrics."""
    durations = sorted(metrics.get("prometheus_rule_group_last_duration_seconds", []))
    evaluations = sum(metrics.get("prometheus_rule_group_iterations_total", []))
    missed = sum(metrics.get("prometheus_rule_group_iterations_missed_total", []))
    failures = sum(metrics.get("prometheus_rule_evaluation_failures_total", []))
    rules_loaded = int(sum(metrics.get("prometheus_rule_group_rules", [])))
    if not durations or not evaluations:
        print("  Prometheus reports no rule evaluations")
        return
    if cpu is None:
        print(
            f"  Prometheus evaluating the rules: {len(durations):,} groups, {rules_loaded:,} rules (its CPU "
            "time not attributed: slo-generator ran meanwhile)"
        )
    else:
        per_group = cpu / evaluations
        per_round = per_group * len(durations)
        print(
            f"  Prometheus evaluating the rules: {len(durations):,} groups, {rules_loaded:,} rules; "
            f"{cpu:.0f} CPU-s for {evaluations:,.0f} group evaluations since it was ready (scrapes "
            "included) = "
            f"{per_group * 1000:.1f} ms per group, {per_round:.0f} CPU-s per round: "
            f"{per_round / interval.total_seconds():.2f} cores at {format_duration(interval)}, "
            f"{per_round / 30:.2f} cores at the rules' default 30s"
        )
        print(
            "  (a floor: this history has a sample every 5 minutes where a scrape has one every 15-30 s, and "
            "the 30d rules average minutes of recorded points where, after 30 days, they average 30 days')"
        )
    print(
        f"  group duration median {statistics.median(durations) * 1000:.0f} ms, slowest "
        f"{durations[-1] * 1000:.0f} ms (wall, groups run concurrently); iterations missed {missed:.0f}, "
        f"rule evaluation failures {failures:.0f}"
    )


# --- checking that both modes agree ------------------------------------------------------------------


def compare(raw: dict[str, Any], recording: dict[str, Any], count: int) -> None:
    expected = "".join(VERDICT_CODES[expected_verdict(i)] for i in range(count))
    differ = [i for i in range(count) if raw["verdicts"][i] != recording["verdicts"][i]]
    unexpected = [i for i in range(count) if recording["verdicts"][i] != expected[i]]
    read = recording["modes"].get("recording", 0)
    print(
        f"  same verdict in both modes: {count - len(differ):,} of {count:,} SLOs"
        + (f" (differ: {differ[:10]})" if differ else "")
        + f"; as the traffic was built: {count - len(unexpected):,}"
        + (f" (not: {unexpected[:10]})" if unexpected else "")
    )
    print(
        f"  read from recorded series: {read:,} of {count:,} SLOs "
        f"({'OK' if read == count else 'FALLBACKS: ' + '; '.join(recording['fallbacks'])})"
    )
    worst: dict[str, tuple[float, str, float | None, float | None]] = {}  # window: (diff, SLO, raw, rec)
    remaining: list[float] = []
    for key, rec in recording["sample"].items():
        raw_sample = raw["sample"][key]
        for window, (rec_ratio, _) in rec["windows"].items():
            raw_ratio = raw_sample["windows"][window][0]
            if rec_ratio is None or raw_ratio is None:
                diff = 0.0 if rec_ratio == raw_ratio else float("inf")
            else:
                diff = abs(rec_ratio - raw_ratio) / max(abs(raw_ratio), 1e-12)
            if diff >= worst.get(window, (-1.0,))[0]:
                worst[window] = (diff, f"slo-{key}", raw_ratio, rec_ratio)
        if rec["budget_remaining"] is not None and raw_sample["budget_remaining"] is not None:
            remaining.append(abs(raw_sample["budget_remaining"] - rec["budget_remaining"]))
    period = format_duration(rules.recorded_windows(load_slos(SERVICE, METRIC, 1)[0])[-1])
    shown = ", ".join(f"{w} {d[0]:.2%}" for w, d in worst.items() if w != period)
    print(f"  largest relative difference in error ratio, {len(recording['sample'])} sampled SLOs: {shown}")
    for window, (diff, slo, raw_ratio, rec_ratio) in worst.items():
        if window != period and diff > 0.01:
            print(f"    {window}: {slo} raw {raw_ratio!r}, recorded {rec_ratio!r}")
    if remaining:
        print(
            f"  the {period} window differs by design (raw: the backfilled {HISTORY} of counters; recorded: "
            f"the time since the rules were loaded): error ratio up to {worst.get(period, (0.0,))[0]:.0%} "
            f"apart, budget remaining by {statistics.median(remaining):.3f} (median) to {max(remaining):.2f}"
        )


# --- google/slo-generator ----------------------------------------------------------------------------

# The windows budgetguard evaluates (the workbook's tiers for 30d: page 14.4x over 1h/5m and 6x over
# 6h/30m, ticket 3x over 1d/2h and 1x over 3d/6h, and the SLO window), each as one slo-generator step
# with the threshold of the tier it belongs to (6h: the 6x page tier's long window).
STEPS = (
    ("5m", 14.4),
    ("30m", 6.0),
    ("1h", 14.4),
    ("2h", 3.0),
    ("6h", 6.0),
    ("1d", 3.0),
    ("3d", 1.0),
    ("30d", 1.0),
)


class SloGenerator:
    """slo-generator in its own venv, so it never touches budgetguard's environment."""

    def __init__(self) -> None:
        self.executable: Path | None = None
        self.problem = ""
        self.seconds = 0.0

    def install(self) -> None:
        began = time.perf_counter()
        try:
            self._install()
        except Exception as exc:  # the bench carries on without it, and says why
            self.problem = f"{type(exc).__name__}: {exc}"
        self.seconds = time.perf_counter() - began

    def _install(self) -> None:
        python = SLO_GENERATOR_VENV / "bin" / "python"
        cli = SLO_GENERATOR_VENV / "bin" / "slo-generator"
        if not cli.exists():
            base = getattr(sys, "_base_executable", sys.executable)
            subprocess.run([base, "-m", "venv", str(SLO_GENERATOR_VENV)], check=True, capture_output=True)
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PACKAGES],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if "is ignored" not in line]
            raise RuntimeError(f"pip install {SLO_GENERATOR} failed: {' '.join(lines[-5:])}")
        version = subprocess.run(
            [str(cli), "--version"], capture_output=True, text=True, timeout=120, check=False
        )
        if version.returncode != 0:
            raise RuntimeError(f"slo-generator does not run: {version.stderr.strip()[-500:]}")
        self.executable = cli


def slo_generator_files(folder: Path, url: str, indices: Sequence[int]) -> Path:
    """The shared config and one ``sre.google.com/v2`` SLO file per sampled SLO; the config's path."""
    folder.mkdir(parents=True, exist_ok=True)
    seconds = {name: int(parse_duration(name).total_seconds()) for name, _ in STEPS}
    config = {
        "backends": {"prometheus": {"url": url}},
        "exporters": {},
        "error_budget_policies": {
            "default": {
                "steps": [
                    {
                        "name": name,
                        "window": seconds[name],
                        "burn_rate_threshold": threshold,
                        "alert": True,
                        "message_alert": "burning",
                        "message_ok": "fine",
                    }
                    for name, threshold in STEPS
                ]
            }
        },
    }
    config_path = folder.parent / "config.yaml"
    config_path.write_text(json.dumps(config, indent=1))  # JSON is YAML
    for i in indices:
        slo = {
            "apiVersion": "sre.google.com/v2",
            "kind": "ServiceLevelObjective",
            "metadata": {
                "name": f"{SERVICE}-slo-{i}",
                "labels": {"service_name": SERVICE, "feature_name": f"slo-{i}", "slo_name": "availability"},
            },
            "spec": {
                "description": f"{objective(i)}% of requests succeed",
                "backend": "prometheus",
                "method": "good_bad_ratio",
                "error_budget_policy": "default",
                "service_level_indicator": {
                    # sum(increase(<filter>[<window>s])): good over valid, as budgetguard's 1 - errors/total
                    "filter_good": f'{METRIC}_total{{slo="{i}",code="200"}}',
                    "filter_valid": f'{METRIC}_total{{slo="{i}"}}',
                },
                "goal": objective(i) / 100,
            },
        }
        (folder / f"slo-{i}.yaml").write_text(json.dumps(slo, indent=1))
    return config_path


_REPORT = re.compile(
    r"(\S+-slo-\d+)\s*\|\s*(\w+)\s*\|\s*SLI:.*\|\s*BR:\s*([\d.]+)\s*/\s*([\d.]+)\s*\|\s*Alert: (\w+)"
)
_INVALID = re.compile(r"(\S+-slo-\d+)\s*\|\s*(\w+)\s*\|\s*(?!SLI:)(.+)$")


def run_slo_generator(
    tool: SloGenerator, folder: Path, url: str, indices: Sequence[int]
) -> dict[str, Any] | None:
    """One process per SLO, then one process for all of them; burn rates by (SLO, step)."""
    assert tool.executable is not None
    config = slo_generator_files(folder, url, indices)
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update({"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", "COLORED_OUTPUT": "0"})
    per_process: list[float] = []
    for i in indices:
        began = time.perf_counter()
        done = subprocess.run(
            [str(tool.executable), "compute", "-f", str(folder / f"slo-{i}.yaml"), "-c", str(config)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )
        per_process.append(time.perf_counter() - began)
        if done.returncode != 0:
            print(f"  slo-generator failed on slo-{i} (exit {done.returncode}): {done.stderr.strip()[-500:]}")
            return None
    began = time.perf_counter()
    done = subprocess.run(
        [str(tool.executable), "compute", "-f", str(folder), "-c", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    together = time.perf_counter() - began
    if done.returncode != 0:
        print(f"  slo-generator failed on the folder (exit {done.returncode}): {done.stderr.strip()[-500:]}")
        return None
    burns: dict[tuple[int, str], float] = {}
    alerts: dict[int, list[str]] = {}
    invalid: dict[tuple[int, str], str] = {}
    for line in (done.stdout + done.stderr).splitlines():
        if match := _REPORT.search(line):
            i = int(match.group(1).rsplit("-", 1)[1])
            burns[i, match.group(2)] = float(match.group(3))
            if match.group(5) in ("True", "1"):
                alerts.setdefault(i, []).append(match.group(2))
        elif match := _INVALID.search(line):
            i = int(match.group(1).rsplit("-", 1)[1])
            invalid[i, match.group(2)] = match.group(3).strip()
    return {
        "per_process": per_process,
        "together": together,
        "burns": burns,
        "alerts": alerts,
        "invalid": invalid,
    }


def slo_generator_report(
    result: dict[str, Any], indices: Sequence[int], raw: dict[str, Any], per_slo: dict[str, float]
) -> None:
    n = len(indices)
    process = statistics.median(result["per_process"])
    together = result["together"] / n
    print(
        f"  {n} SLOs x {len(STEPS)} steps ({', '.join(name for name, _ in STEPS)}), 2 queries per step: "
        f"{process * 1000:.0f} ms per SLO as one process per SLO (median; the CLI's start-up included), "
        f"{together * 1000:.0f} ms per SLO as one process for all {n}"
    )
    for label, seconds in per_slo.items():
        print(
            f"  vs budgetguard {label} ({seconds * 1000:.3f} ms per SLO): slo-generator takes "
            f"{together / seconds:,.0f}x as long per SLO in one process, {process / seconds:,.0f}x with one "
            "process per SLO"
        )
    # Its burn rates against budgetguard's raw mode, window by window (it rounds to 0.1; its queries run
    # at the server's "now", minutes after budgetguard's instant, so the 1d/3d windows moved a little).
    pairs: list[tuple[int, str, float | None, float | None]] = []  # (SLO, window, ours, theirs)
    for i in indices:
        sample = raw["sample"].get(str(i))
        if sample is None:
            continue
        budget = (100.0 - objective(i)) / 100.0
        for name, _ in STEPS:
            ratio = sample["windows"][name][0]
            pairs.append((i, name, None if ratio is None else ratio / budget, result["burns"].get((i, name))))
    apart = [
        (i, name, ours, theirs)
        for i, name, ours, theirs in pairs
        if (ours is None) != (theirs is None)
        or (ours is not None and theirs is not None and abs(ours - theirs) > 0.05 + 0.02 * theirs)
    ]
    shown = "; ".join(
        f"slo-{i} {name}: {'-' if ours is None else f'{ours:.3f}'} vs {theirs}"
        for i, name, ours, theirs in apart[:4]
    )
    print(
        f"  its burn rates match budgetguard's raw-mode ones (to its 0.1 rounding, 2% for the minutes "
        f"between the two) in {len(pairs) - len(apart)} of {len(pairs)} (SLO, window) pairs"
        + (f"; apart (budgetguard vs slo-generator): {shown}" if apart else "")
    )
    shapes: dict[str, Counter[str]] = {}
    for i in indices:
        steps = ",".join(result["alerts"].get(i, [])) or "none"
        shapes.setdefault(expected_verdict(i), Counter())[steps] += 1
    for verdict, counts in sorted(shapes.items()):
        shown = "; ".join(f"{steps} ({c})" for steps, c in counts.most_common())
        print(f"  budgetguard {verdict:<12} -> slo-generator steps alerting: {shown}")
    if result["invalid"]:
        (i, step), why = next(iter(result["invalid"].items()))
        print(f"  {len(result['invalid'])} (SLO, step) reports invalid, e.g. slo-{i} {step}: {why[:120]}")


# --- preparing the data ------------------------------------------------------------------------------


def prepare(args: Sequence[str]) -> None:
    """In a child process: write one history and backfill it with promtool; print a JSON line."""
    kind, count, end, data_dir = args
    path = Path(data_dir).parent / f"{kind}.om"
    began = time.perf_counter()
    if kind == "month":
        samples = write_history(path, int(count), datetime.fromtimestamp(int(end), tz=UTC))
    else:
        samples = write_rbench_history(path, int(count), int(end))
    written = time.perf_counter() - began
    lab = PrometheusLab(data_dir=data_dir)
    try:
        backfill = lab.backfill(path)
    finally:
        lab.close()
        path.unlink(missing_ok=True)
    print(json.dumps({"samples": samples, "write_s": written, "promtool_s": backfill.seconds}))


def start_prepare(kind: str, count: int, end: int, data_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "--prepare", kind, str(count), str(end), str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_prepare(process: subprocess.Popen[str], what: str) -> str:
    out, err = process.communicate(timeout=1200)
    if process.returncode != 0:
        raise RuntimeError(f"preparing {what} failed:\n{err[-3000:]}")
    figures = json.loads(out.strip().splitlines()[-1])
    return (
        f"{what}: {figures['samples']:,} samples (written in {figures['write_s']:.0f}s, "
        f"backfilled by promtool in {figures['promtool_s']:.0f}s)"
    )


def write_rule_file(path: Path, slos: Sequence[SLO], interval: timedelta) -> int:
    document = rules.rule_file(slos, interval)
    path.write_text(json.dumps(document))  # JSON is YAML, and 10,000 groups dump in seconds
    return sum(len(group["rules"]) for group in document["groups"])


# --- the run -----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slos", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument(
        "--rule-interval", nargs="+", default=["1m", "3m"], help="the rule groups' interval, per SLO count"
    )
    parser.add_argument("--scrape-interval", default="15s")
    parser.add_argument("--month-slos", type=int, default=1000, help="raw mode over 31 days (0: skip)")
    parser.add_argument("--slo-generator-slos", type=int, default=20, help="0: skip slo-generator")
    parser.add_argument("--repeat", type=int, default=3, help="recording-mode runs per setting (median)")
    parser.add_argument("--child", nargs=7, help=argparse.SUPPRESS)
    parser.add_argument("--prepare", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return 0
    if args.prepare:
        prepare(args.prepare)
        return 0

    began = time.perf_counter()
    print(
        f"budgetguard recording-rule bench (#5): {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.2f} at the start; other engineers' tests share this machine, so wall "
        "and CPU figures carry their noise"
    )
    with tempfile.TemporaryDirectory(prefix="budgetguard-recording-bench-") as tmp:
        Bench(args, Path(tmp)).run()
    print(
        f"whole bench: {time.perf_counter() - began:.0f}s wall; "
        f"load average {os.getloadavg()[0]:.2f} at the end"
    )
    return 0


class Bench:
    """The run: data, then per SLO count: rules loaded, one round recorded, both modes measured."""

    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        self.args = args
        self.root = root
        self.phases = sorted(args.slos)
        self.biggest = self.phases[-1]
        given = [parse_duration(text) for text in args.rule_interval]
        self.intervals = {c: given[min(n, len(given) - 1)] for n, c in enumerate(self.phases)}
        self.end = int(time.time()) // FINE_STEP * FINE_STEP  # the 5m window is fed from the start
        self.tool = SloGenerator()
        self.results: dict[tuple[str, int], dict[str, Any]] = {}
        self.tool_sample = sample_indices(self.biggest)[: args.slo_generator_slos]
        self.tool_result: dict[str, Any] | None = None
        self.active_rules = root / "rules.json"
        self.rule_paths = {count: root / f"rules-{count}.json" for count in self.phases}

    def run(self) -> None:
        installer = threading.Thread(target=self.tool.install, name="slo-generator-install")
        if self.args.slo_generator_slos:
            installer.start()
        data_dir = self.root / "tsdb"
        data_dir.mkdir()
        self.prepare(data_dir)
        target = TrafficTarget(self.biggest, self.end)
        lab = PrometheusLab(
            data_dir=data_dir,
            scrape_targets={SERVICE: [target.address]},
            scrape_interval=parse_duration(self.args.scrape_interval),
            evaluation_interval=self.intervals[self.biggest],
            rule_files=[self.active_rules],
            ready_timeout=timedelta(minutes=5),
        )
        try:
            for count in self.phases:
                # While the first (small) rule set records: slo-generator, which needs no recorded series.
                during = partial(self.slo_generator, installer) if count == self.phases[0] else None
                at = self.record(lab, count, during)
                prometheus = self.restart(lab, rules_file=None)
                if count == self.phases[0] and self.args.month_slos:
                    month = measure("raw", "month", self.args.month_slos, float(self.end), prometheus)
                    report(f"raw (Engine), 31 days, {self.args.month_slos:,} SLOs", month)
                self.phase(count, at, prometheus)
            self.slo_generator_summary()
        finally:
            lab.close()
            target.close()

    def prepare(self, data_dir: Path) -> None:
        preparing = [(start_prepare("rbench", self.biggest, self.end, data_dir), f"{self.biggest:,} SLOs")]
        if self.args.month_slos:
            month = start_prepare("month", self.args.month_slos, self.end, data_dir)
            preparing.append((month, f"{self.args.month_slos:,} SLOs over 31 days (eval_bench.py's)"))
        # Meanwhile: the SLOs and their rules, generated here as `budgetguard rules` would.
        generated = time.perf_counter()
        slos = load_slos(SERVICE, METRIC, self.biggest)
        counts = {c: write_rule_file(self.rule_paths[c], slos[:c], self.intervals[c]) for c in self.phases}
        generated = time.perf_counter() - generated
        for process, what in preparing:
            print(f"  history of {finish_prepare(process, what)}")
        print(
            "  rules for "
            + ", ".join(
                f"{c:,} SLOs ({n:,} rules, every {format_duration(self.intervals[c])})"
                for c, n in counts.items()
            )
            + f" generated in {generated:.0f}s; histories end at "
            f"{datetime.fromtimestamp(self.end, tz=UTC):%H:%M} UTC, scraped live from then on"
        )

    def restart(self, lab: PrometheusLab, rules_file: Path | None) -> Running:
        if lab.running:
            lab.stop()
        if rules_file is None:
            self.active_rules.write_text('{"groups": []}\n')
        else:
            shutil.copyfile(rules_file, self.active_rules)
        lab.start()
        return Running(lab.url, prometheus_pid(lab))

    def record(self, lab: PrometheusLab, count: int, during: Callable[[Running], None] | None) -> float:
        """Prometheus with ``count`` SLOs' rules until every group has recorded; that instant."""
        started = time.time()
        prometheus = self.restart(lab, self.rule_paths[count])
        ready = time.time()
        cpu = cpu_seconds(prometheus.pid)
        print(
            f"{count:,} SLOs: Prometheus {lab.url} with their rules ready in {ready - started:.0f}s, "
            f"scraping {self.biggest:,} SLOs' counters every {self.args.scrape_interval}"
        )
        if during is not None:
            during(prometheus)
        done = wait_for_rules(lab, count, started, self.intervals[count].total_seconds() * 3 + 300)
        at = time.time()
        metrics = rule_metrics(lab)
        # With other work meanwhile, Prometheus' CPU time is not the rules' alone.
        ruler_cpu = None if during is not None else cpu_seconds(prometheus.pid) - cpu
        rule_round_report(metrics, ruler_cpu, self.intervals[count])
        print(
            f"  every group evaluated ({done:,} of {count:,}) {time.time() - ready:.0f}s after ready; both "
            f"modes evaluate at {datetime.fromtimestamp(at, tz=UTC):%H:%M:%S} UTC, with Prometheus restarted "
            "without rules (same TSDB) so its rule evaluation does not share the 2 cores with the cycles"
        )
        return at

    def slo_generator(self, installer: threading.Thread, prometheus: Running) -> None:
        """slo-generator on a sample of the SLOs (it queries "now"), while the first rules record."""
        if not self.args.slo_generator_slos:
            return
        installer.join()
        if self.tool.executable is None:
            print(f"  slo-generator not installed, skipped: {self.tool.problem}")
            return
        print(
            f"  {SLO_GENERATOR} installed in its own venv ({self.tool.seconds:.0f}s), running on "
            f"{len(self.tool_sample)} SLOs"
        )
        folder = self.root / "slo-generator" / "slos"
        self.tool_result = run_slo_generator(self.tool, folder, prometheus.url, self.tool_sample)

    def phase(self, count: int, at: float, prometheus: Running) -> None:
        raw = measure("raw", SERVICE, count, at, prometheus)
        report("raw (Engine)", raw)
        runs = {}
        for compression in ("gzip", "plain"):
            label = f"recording rules, {compression} answers"
            mode = "recording" if compression == "gzip" else "recording+plain"
            measured = []
            for run in range(self.args.repeat):
                figures = measure(
                    mode, SERVICE, count, at, prometheus, profile=run == 0 and count == self.biggest
                )
                report(f"{label} (run {run + 1})", figures)
                measured.append(figures)
            runs[compression] = measured
        recording = median_run(runs["gzip"])
        self.results["raw", count] = raw
        self.results["recording", count] = recording
        compare(raw, recording, count)
        if count != self.biggest:
            return
        print(
            f"  TARGET {count:,} SLOs in recording-rule mode under {TARGET_WALL_S:g}s and "
            f"{TARGET_RSS_MB:g} MB, medians of {self.args.repeat} runs (wall: cycle + deferred collection):"
        )
        for compression, measured in runs.items():
            middle = median_run(measured)
            wall, rss = middle["wall"], middle["peak_rss_mb"]
            later = statistics.median(float(figures["later_wall"]) for figures in measured)
            setting = "compression: true (the default)" if compression == "gzip" else "compression: false"
            print(
                f"    {setting:<32} wall {wall:.2f}s {'PASS' if wall < TARGET_WALL_S else 'MISS'}, "
                f"peak RSS {rss:.0f} MB {'PASS' if rss < TARGET_RSS_MB else 'MISS'} "
                f"(cycle cpu {middle['cycle_cpu']:.2f}s, Prometheus cpu {middle['prometheus_cpu']:.2f}s); "
                f"later cycles {later:.2f}s {'PASS' if later < TARGET_WALL_S else 'MISS'}"
            )
        print("  cProfile of the first recording run's second cycle, where the time goes:")
        for line in runs["gzip"][0]["profile"].splitlines():
            if line.strip():
                print(f"    {line.rstrip()}")

    def slo_generator_summary(self) -> None:
        if self.tool_result is None:
            return
        big = self.biggest
        per_slo = {
            f"raw, {big:,} SLOs": self.results["raw", big]["wall"] / big,
            f"recording, {big:,} SLOs": self.results["recording", big]["wall"] / big,
        }
        print("slo-generator (google/slo-generator) on the same SLOs and Prometheus:")
        slo_generator_report(self.tool_result, self.tool_sample, self.results["raw", big], per_slo)
        print(
            "  what it computes: per step, one window's SLI (good/valid of sum(increase(...[Ns]))), its burn "
            "rate, and alert = burn > the step's threshold, each window alone; budgetguard fires a tier only "
            "when its long and short windows both burn (multiwindow), calls no data or too few events "
            "inconclusive, and keeps history; slo-generator has no multiwindow alerts (its #378) and its "
            "Prometheus backend queries the server's 'now' whatever -t says (its #605)"
        )


if __name__ == "__main__":
    sys.exit(main())
