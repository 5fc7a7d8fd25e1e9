"""Benchmark: gates, the JSON API and /metrics served by a running daemon at 1, 1,000 and 10,000 SLOs (#14).

What runs, per SLO count, in one pass:

- ``budgetguard run`` as a subprocess, in recording-rule mode, every ``--interval`` (15 s), so cycles
  run while the requests are answered; a fresh SQLite file each time;
- a FAKE Prometheus (a subprocess of this file, ``--fake-prometheus``): the gates and the API read the
  daemon's latest verdicts, never Prometheus, so what matters is that cycles run and cost what they
  cost in the daemon. The fake serves, from bytes prepared once, exactly what a Prometheus loaded with
  the rules of ``budgetguard rules`` answers to recording mode: the metadata series with each SLO's rules
  hash, and the errors and requests series of every SLO for each window (~20,000 series per window at
  10,000 SLOs, gzip when asked). Every SLO is healthy; any other query gets an empty answer;
- several load-generator PROCESSES (``--clients``, each with ``--connections`` keep-alive HTTP/1.1
  connections on raw asyncio streams; one asyncio client process saturates before the server on 2
  cores), together sending a fixed ``--rate`` requests/s, open loop: each request is timed from the
  instant it was due, so a stalled server is not hidden by the client waiting for it;
- a scraper asking /metrics every 15 s as Prometheus does (its Accept header, gzip), timing the whole
  answer and its size.

Phases, per SLO count: ``GET /gates/release/{service}`` for ``--seconds``, then
``GET /api/v1/slos/{service}/{slo}`` for ``--seconds``, services and SLOs drawn at random. Printed:
p50/p99/max latency and achieved rate per phase, /metrics serve time and bytes (as sent and as text),
the daemon's CPU seconds per wall second, cycles and their mean duration (from its own
histogram), and the event-loop lag it exports (``budgetguard_event_loop_lag_seconds``) when it does.

    python bench/serving_bench.py [--slos 1 1000 10000] [--seconds 30] [--repeat 1] [--code DIR ...]
    python bench/serving_bench.py --slos 10000 --cycles 5      # recording-mode cycles: CPU and wall
    SERVING_BENCH_CODE=/tmp/main python bench/serving_bench.py --slos 10000 --cycles 5   # another tree

``--cycles`` runs recording-mode cycles in the bench's own process against the same fake, as the daemon
runs them, and prints budgetguard's CPU seconds and wall seconds per cycle side by side (the wall is
bounded by the fake, a Python server on the same 2 cores; a real Prometheus answers faster).

The machine is shared (2 cores): keep runs bounded. Quote medians over ``--repeat`` runs, measured
side by side with the code being compared.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import gzip
import http.client
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import yaml

REPO = Path(__file__).resolve().parent.parent
# SERVING_BENCH_CODE: another checkout's budgetguard for this process (``--cycles``) and the fake.
sys.path.insert(0, os.environ.get("SERVING_BENCH_CODE", str(REPO)))

from budgetguard.core import rules  # noqa: E402 - after the path set-up, so it runs from a checkout
from budgetguard.core.rules import SeriesKind  # noqa: E402
from budgetguard.loader import load_document  # noqa: E402
from budgetguard.recording import window_query  # noqa: E402

SERVICE_SIZE = 10  # SLOs per service (one file per service)
PORTS = range(18600, 18700)  # manual-experiment ports of this machine; free ones are taken in turn
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children_of(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def children_cpu_seconds(pid: int) -> float:
    """CPU seconds of the daemon's live child processes (its cycle worker), which its own count leaves
    out until they are waited for."""
    total = 0.0
    for child in children_of(pid):
        try:
            total += cpu_seconds(child)
        except OSError:  # gone meanwhile
            continue
    return total


def free_port(taken: set[int]) -> int:
    for port in PORTS:
        if port in taken:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        taken.add(port)
        return port
    raise SystemExit("no free port in 18600-18699")


# --- the SLO files -----------------------------------------------------------------------------------


def services(count: int) -> list[tuple[str, list[str]]]:
    names = [f"slo-{i}" for i in range(count)]
    return [(f"svc-{n // SERVICE_SIZE}", names[n : n + SERVICE_SIZE]) for n in range(0, count, SERVICE_SIZE)]


def document(service: str, slos: Sequence[str]) -> dict[str, Any]:
    return {
        "version": "budgetguard/v1",
        "service": service,
        "freeze": {"below": 0.0},  # so the release gate has a policy to judge (else it answers 400)
        "slos": [
            {
                "name": name,
                "objective": 99.9,
                "sli": {
                    "events": {
                        "error_query": f'sum(rate(req_total{{slo="{name}",code="500"}}[{{{{.window}}}}]))',
                        "total_query": f'sum(rate(req_total{{slo="{name}"}}[{{{{.window}}}}]))',
                    }
                },
            }
            for name in slos
        ],
    }


def write_slos(directory: Path, count: int) -> None:
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    for service, slos in services(count):
        text = yaml.dump(document(service, slos), Dumper=dumper, sort_keys=False)
        (directory / f"{service}.yaml").write_text(text)


# --- the fake Prometheus -------------------------------------------------------------------------------


def fake_prometheus(port: int, count: int) -> None:
    """Serve recording mode's answers for ``count`` healthy SLOs until killed."""
    slos = []
    for service, names in services(count):
        found, problems = load_document(document(service, names), f"{service}.yaml")
        assert not problems, problems[:3]
        slos.extend(found)
    now = time.time()

    def vector(result: list[dict[str, Any]]) -> tuple[bytes, bytes]:
        body = json.dumps(
            {"status": "success", "data": {"resultType": "vector", "result": result}}, separators=(",", ":")
        ).encode()
        return body, gzip.compress(body, 1)

    answers: dict[str, tuple[bytes, bytes]] = {}
    answers[rules.OBJECTIVE_SERIES] = vector(
        [
            {
                "metric": {
                    "__name__": rules.OBJECTIVE_SERIES,
                    rules.SERVICE_LABEL: slo.service,
                    rules.SLO_LABEL: slo.name,
                    rules.HASH_LABEL: rules.rules_hash(slo),
                },
                "value": [now, "0.999"],
            }
            for slo in slos
        ]
    )
    for window in slos[0].windows():
        result = []
        for slo in slos:
            for kind, value in ((SeriesKind.ERRORS, "0.002"), (SeriesKind.REQUESTS, "10")):
                labels = {
                    "__name__": rules.series_name(kind, window),
                    rules.SERVICE_LABEL: slo.service,
                    rules.SLO_LABEL: slo.name,
                }
                result.append({"metric": labels, "value": [now, value]})
        answers[window_query(window)] = vector(result)
    empty = vector([])
    matrix = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": []}}).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, plain: bytes, zipped: bytes) -> None:
            gz = "gzip" in self.headers.get("Accept-Encoding", "")
            body = zipped if gz else plain
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if gz:
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path.startswith("/api/v1/query_range"):
                self._send(matrix, gzip.compress(matrix))
                return
            query = parse_qs(self.path.partition("?")[2]).get("query", [""])[0]
            self._send(*answers.get(query, empty))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = parse_qs(self.rfile.read(length).decode())
            if self.path.startswith("/api/v1/query_range"):
                self._send(matrix, gzip.compress(matrix))
                return
            self._send(*answers.get(form.get("query", [""])[0], empty))

        def log_message(self, format: str, *args: object) -> None:
            return

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            return  # a cycle cut short at the end of a run closes its connections

    server = Server(("127.0.0.1", port), Handler)
    print("ready", flush=True)
    server.serve_forever()


# --- the load generator --------------------------------------------------------------------------------


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        lowered = name.strip().lower()
        if lowered == b"content-length":
            length = int(value)
        elif lowered == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readline()).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.readexactly(length)
    return status


async def _connection(
    port: int,
    *,
    paths: Sequence[str],
    period: float,
    start: float,
    until: float,
    out: list[float],
    bad: list[int],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    due = start
    rng = random.Random()
    while due < until:
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif time.perf_counter() > until + 10:
            # A server this far behind: what is still due counts as failed, at least this late, and the
            # phase ends instead of queueing for minutes.
            now = time.perf_counter()
            while due < until:
                out.append(now - due)
                bad.append(598)
                due += period
            break
        path = rng.choice(paths)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nAccept: application/json\r\n\r\n".encode())
            status = await asyncio.wait_for(_read_response(reader), 30)
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            status = 599  # counted as an error, then a new connection
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        out.append(time.perf_counter() - due)  # from when it was due: a stall is never hidden
        if status != 200:
            bad.append(status)
        due += period
    writer.close()


def client_process(
    port: int, *, paths_file: str, rate: float, connections: int, seconds: float, start_at: float
) -> None:
    paths = json.loads(Path(paths_file).read_text())
    latencies: list[float] = []
    bad: list[int] = []

    async def main() -> None:
        period = connections / rate
        # wall-clock start shared by every client process, then perf_counter from there
        await asyncio.sleep(max(0.0, start_at - time.time()))
        base = time.perf_counter()
        await asyncio.gather(
            *(
                _connection(
                    port,
                    paths=paths,
                    period=period,
                    start=base + i * period / connections,
                    until=base + seconds,
                    out=latencies,
                    bad=bad,
                )
                for i in range(connections)
            )
        )

    asyncio.run(main())
    print(json.dumps({"latencies": latencies, "bad": bad[:20], "bad_count": len(bad)}), flush=True)


# --- the scraper -----------------------------------------------------------------------------------------


class Scraper(threading.Thread):
    def __init__(self, port: int, every: float) -> None:
        super().__init__(daemon=True, name="scraper")
        self._port = port
        self._every = every
        self._done = threading.Event()
        self.scrapes: list[dict[str, float]] = []

    def stop(self) -> None:
        self._done.set()

    def run(self) -> None:
        while not self._done.is_set():
            # a new connection per scrape: the server closes idle keep-alive connections after 5 s
            conn = http.client.HTTPConnection("127.0.0.1", self._port, timeout=60)
            started = time.perf_counter()
            conn.request("GET", "/metrics", headers={"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"})
            response = conn.getresponse()
            body = response.read()
            took = time.perf_counter() - started
            conn.close()
            text = gzip.decompress(body) if response.getheader("Content-Encoding") == "gzip" else body
            self.scrapes.append(
                {
                    "seconds": took,
                    "sent_bytes": len(body),
                    "text_bytes": len(text),
                    **metrics_of(text.decode()),
                }
            )
            self._done.wait(self._every)


def metrics_of(text: str) -> dict[str, float]:
    """The daemon's own figures from one exposition (cycle count and time, loop lag)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        if name.startswith("budgetguard_evaluation_duration_seconds_count"):
            out["cycles"] = float(value)
        elif name.startswith("budgetguard_evaluation_duration_seconds_sum"):
            out["cycle_seconds"] = float(value)
        elif name.startswith("budgetguard_event_loop_lag_max_seconds"):
            out["lag_max"] = float(value)
        elif name == "budgetguard_event_loop_lag_seconds_count":
            out["lag_samples"] = float(value)
        elif name == 'budgetguard_event_loop_lag_seconds_bucket{le="0.02"}':
            out["lag_within_20ms"] = float(value)
    return out


# --- one SLO count ---------------------------------------------------------------------------------------


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the daemon exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("the daemon was not ready in time")


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def run_phase(
    port: int, paths: Sequence[str], args: argparse.Namespace, workdir: Path, name: str
) -> dict[str, Any]:
    paths_file = workdir / f"{name}.json"
    paths_file.write_text(json.dumps(list(paths)))
    start_at = time.time() + 3.0  # every client process started and imported by then
    per_client = args.rate / args.clients
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--client",
                json.dumps(
                    {
                        "port": port,
                        "paths_file": str(paths_file),
                        "rate": per_client,
                        "connections": args.connections,
                        "seconds": args.seconds,
                        "start_at": start_at,
                    }
                ),
            ],
            stdout=subprocess.PIPE,
        )
        for _ in range(args.clients)
    ]
    latencies: list[float] = []
    bad = 0
    for proc in procs:
        out, _ = proc.communicate(timeout=args.seconds + 120)
        result = json.loads(out)
        latencies.extend(result["latencies"])
        bad += result["bad_count"]
    return {
        "requests": len(latencies),
        "rate": len(latencies) / args.seconds,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies, default=float("nan")) * 1000,
        "non_200": bad,
    }


def one_count(count: int, args: argparse.Namespace, code: str) -> dict[str, Any]:
    taken: set[int] = set()
    prom_port, port = free_port(taken), free_port(taken)
    with tempfile.TemporaryDirectory(prefix="serving-bench-") as tmp:
        workdir = Path(tmp)
        (workdir / "slos").mkdir()
        write_slos(workdir / "slos", count)
        fake = subprocess.Popen(
            [sys.executable, __file__, "--fake-prometheus", str(prom_port), str(count)],
            stdout=subprocess.PIPE,
        )
        assert fake.stdout is not None
        fake.stdout.readline()
        config = {
            "prometheus": {"url": f"http://127.0.0.1:{prom_port}"},
            "slo_paths": [str(workdir / "slos")],
            "db": str(workdir / "bg.db"),
            "listen": f"127.0.0.1:{port}",
            "interval": args.interval,
            "query_mode": "recording",
            "log_level": "INFO",
            **({"metrics_per_window": False} if args.no_windows else {}),
        }
        (workdir / "config.yaml").write_text(json.dumps(config))
        started = time.time()
        # ``code``: the checkout whose budgetguard runs (``--code``), ahead of the installed one
        env = {**os.environ, "PYTHONPATH": str(Path(code).resolve())}
        log = (args.logs / f"daemon-{count}-{Path(code).name}.log").open("w")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "budgetguard", "run", "--config", str(workdir / "config.yaml")],
            cwd=workdir,
            env=env,
            stderr=log,
        )
        try:
            wait_ready(port, daemon, timeout=600)
            ready_s = time.time() - started
            scraper = Scraper(port, 15.0)
            scraper.start()
            cpu0, t0 = cpu_seconds(daemon.pid), time.time()
            worker0 = children_cpu_seconds(daemon.pid)
            groups = services(count)
            gate = run_phase(port, [f"/gates/release/{s}" for s, _ in groups], args, workdir, "gate")
            api = run_phase(
                port, [f"/api/v1/slos/{s}/{n}" for s, names in groups for n in names], args, workdir, "api"
            )
            cpu1, t1 = cpu_seconds(daemon.pid), time.time()
            worker1 = children_cpu_seconds(daemon.pid)
            memory = {
                "daemon_rss_mb": rss_mb(daemon.pid),
                "worker_rss_mb": sum(map(rss_mb, children_of(daemon.pid))),
            }
            scraper.stop()
            scraper.join(timeout=60)
            scrapes = scraper.scrapes
            first, last = scrapes[0], scrapes[-1]
            cycles = last.get("cycles", 0) - first.get("cycles", 0)
            cycle_s = last.get("cycle_seconds", 0) - first.get("cycle_seconds", 0)
            return {
                "code": code,
                "slos": count,
                "ready_s": ready_s,
                "gate": gate,
                "api": api,
                "metrics_ms": statistics.median(s["seconds"] for s in scrapes) * 1000,
                "metrics_max_ms": max(s["seconds"] for s in scrapes) * 1000,
                "metrics_sent_bytes": int(statistics.median(s["sent_bytes"] for s in scrapes)),
                "metrics_text_bytes": int(statistics.median(s["text_bytes"] for s in scrapes)),
                "scrapes": len(scrapes),
                "daemon_cpu_per_s": (cpu1 - cpu0) / (t1 - t0),
                "worker_cpu_per_s": (worker1 - worker0) / (t1 - t0),
                **memory,
                "cycles": cycles,
                "cycle_mean_s": cycle_s / cycles if cycles else float("nan"),
                # Looks at the loop (every 50 ms) that found it held more than 20 ms, during the phases.
                "lag_over_20ms": (last.get("lag_samples", 0) - last.get("lag_within_20ms", 0))
                - (first.get("lag_samples", 0) - first.get("lag_within_20ms", 0)),
                "lag_looks": last.get("lag_samples", 0) - first.get("lag_samples", 0),
                "lag_max_ms": max((s.get("lag_max", float("nan")) for s in scrapes), default=float("nan"))
                * 1000,
            }
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
            fake.kill()
            fake.wait()
            log.close()


def cycle_costs(count: int, cycles: int, profile: Path | None) -> None:
    """Recording-mode cycles in this process against the fake: budgetguard's CPU and wall side by side.

    As the daemon runs them: SLOs loaded and ``memory.settle()``d, the cycle inside
    ``memory.collection_paused()``; the first cycle (which hashes every SLO's rules) apart.
    """
    from budgetguard import memory  # noqa: PLC0415 - only this mode needs them
    from budgetguard.recording import RecordingEngine  # noqa: PLC0415
    from budgetguard.sources.prometheus import PrometheusConfig, PrometheusSource  # noqa: PLC0415

    port = free_port(set())
    fake = subprocess.Popen(
        [sys.executable, __file__, "--fake-prometheus", str(port), str(count)], stdout=subprocess.PIPE
    )
    assert fake.stdout is not None
    fake.stdout.readline()
    slos = []
    for service, names in services(count):
        found, _ = load_document(document(service, names), f"{service}.yaml")
        slos.extend(found)
    memory.settle()

    async def run() -> list[tuple[float, float]]:
        config = PrometheusConfig(url=f"http://127.0.0.1:{port}", timeout=timedelta(seconds=60))
        out = []
        async with PrometheusSource(config) as source:
            engine = RecordingEngine(source)
            for _ in range(cycles + 1):
                cpu, wall = time.process_time(), time.perf_counter()
                with memory.collection_paused():
                    evaluations = await engine.evaluate_all(slos, datetime.now(tz=UTC))
                gc.collect(1)  # the collection the pause deferred, counted in
                out.append((time.process_time() - cpu, time.perf_counter() - wall))
                modes = {ev.query_mode for ev in evaluations}
                assert modes == {"recording"}, modes
        return out

    async def in_worker() -> list[tuple[float, float, float]]:
        """The same cycles through the cycle worker process, as the daemon runs them past 1,000 SLOs:
        the daemon's CPU (receiving), the worker's (evaluating, the store's rows, /metrics), and wall."""
        from budgetguard.core.verdict import QueryMode  # noqa: PLC0415
        from budgetguard.cycleworker import CycleWorker  # noqa: PLC0415

        config = PrometheusConfig(url=f"http://127.0.0.1:{port}", timeout=timedelta(seconds=60))
        out = []
        async with PrometheusSource(config) as source:
            worker = CycleWorker(
                RecordingEngine(source),
                config,
                query_mode=QueryMode.RECORDING,
                per_window=True,
                formats=lambda: (True,),
                min_slos=0,
                log_level="WARNING",
            )
            try:
                for _ in range(cycles + 1):
                    cpu, wall = time.process_time(), time.perf_counter()
                    with memory.collection_paused():
                        evaluations = await worker.evaluate_all(slos, datetime.now(tz=UTC))
                    gc.collect(1)
                    out.append(
                        (time.process_time() - cpu, worker.child_cpu_seconds, time.perf_counter() - wall)
                    )
                    assert worker.prepared(evaluations) is not None, "not evaluated by the worker"
            finally:
                await worker.aclose()
        return out

    try:
        if profile is not None:
            cProfile.runctx("costs = asyncio.run(run())", globals(), ns := {"run": run}, str(profile))
            costs = ns["costs"]
        else:
            costs = asyncio.run(run())
        worker_costs = asyncio.run(in_worker())
    finally:
        fake.kill()
        fake.wait()
    first, later = costs[0], costs[1:]
    print(f"recording-mode cycle, {count:,} SLOs, fake Prometheus (answers prepared once, gzip):")
    print(f"  first cycle (hashes every SLO's rules): CPU {first[0]:.2f} s, wall {first[1]:.2f} s")
    for cpu, wall in later:
        print(f"  later cycle: CPU {cpu:.2f} s, wall {wall:.2f} s")
    print(
        f"  median of {len(later)}: CPU {statistics.median(c for c, _ in later):.2f} s, "
        f"wall {statistics.median(w for _, w in later):.2f} s"
    )
    print(
        "the same cycles in the cycle worker process (evaluations, the store's rows and /metrics made there):"
    )
    for daemon_cpu, worker_cpu, wall in worker_costs[1:]:
        print(
            f"  later cycle: daemon CPU {daemon_cpu:.2f} s, worker CPU {worker_cpu:.2f} s, wall {wall:.2f} s"
        )
    print(
        f"  median of {len(worker_costs) - 1}: daemon CPU "
        f"{statistics.median(c for c, _, _ in worker_costs[1:]):.2f} s, worker CPU "
        f"{statistics.median(c for _, c, _ in worker_costs[1:]):.2f} s, wall "
        f"{statistics.median(w for _, _, w in worker_costs[1:]):.2f} s"
    )


def report(results: Sequence[dict[str, Any]]) -> None:
    def med(count: int, *keys: str) -> float:
        values = []
        for r in results:
            if r["slos"] != count:
                continue
            value: Any = r
            for key in keys:
                value = value[key]
            values.append(value)
        return statistics.median(values)

    counts = sorted({r["slos"] for r in results})
    runs = len(results) // len(counts)
    print(f"\nmedians of {runs} run(s)")
    header = f"{'':34}" + "".join(f"{c:>14,}" for c in counts)
    print(header)
    rows = [
        ("gate p50 ms", ("gate", "p50_ms")),
        ("gate p99 ms", ("gate", "p99_ms")),
        ("gate max ms", ("gate", "max_ms")),
        ("gate req/s achieved", ("gate", "rate")),
        ("gate non-200", ("gate", "non_200")),
        ("api p50 ms", ("api", "p50_ms")),
        ("api p99 ms", ("api", "p99_ms")),
        ("api max ms", ("api", "max_ms")),
        ("api req/s achieved", ("api", "rate")),
        ("api non-200", ("api", "non_200")),
        ("/metrics serve ms (median)", ("metrics_ms",)),
        ("/metrics serve ms (max)", ("metrics_max_ms",)),
        ("/metrics bytes sent", ("metrics_sent_bytes",)),
        ("/metrics bytes as text", ("metrics_text_bytes",)),
        ("daemon CPU s per s", ("daemon_cpu_per_s",)),
        ("cycle worker CPU s per s", ("worker_cpu_per_s",)),
        ("daemon RSS MB (end)", ("daemon_rss_mb",)),
        ("cycle worker RSS MB (end)", ("worker_rss_mb",)),
        ("cycles during the phases", ("cycles",)),
        ("cycle mean wall s", ("cycle_mean_s",)),
        ("event-loop lag max ms (exported)", ("lag_max_ms",)),
        ("loop looks held > 20 ms (phases)", ("lag_over_20ms",)),
        ("loop looks (phases)", ("lag_looks",)),
        ("start to ready s", ("ready_s",)),
    ]
    for label, keys in rows:
        print(f"{label:34}" + "".join(f"{med(c, *keys):>14,.1f}" for c in counts))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--slos", type=int, nargs="+", default=[1, 1000, 10000])
    parser.add_argument("--seconds", type=float, default=30.0, help="per phase (gate, then API)")
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s, all clients together")
    parser.add_argument("--clients", type=int, default=3, help="load-generator processes")
    parser.add_argument("--connections", type=int, default=4, help="keep-alive connections per client")
    parser.add_argument("--interval", default="15s", help="the daemon's evaluation interval")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--code",
        nargs="+",
        default=[str(REPO)],
        help="checkouts to compare, run in turn per SLO count and run (e.g. an exported main and this tree)",
    )
    parser.add_argument("--no-windows", action="store_true", help="metrics_per_window: false")
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    parser.add_argument("--logs", type=Path, default=Path(tempfile.gettempdir()), help="daemon logs go here")
    parser.add_argument(
        "--fake-prometheus", nargs=2, type=int, metavar=("PORT", "SLOS"), help=argparse.SUPPRESS
    )
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument(
        "--cycles",
        type=int,
        metavar="N",
        help="instead: N recording-mode cycles of --slos[0] SLOs in this process, CPU and wall",
    )
    parser.add_argument("--profile", type=Path, help="with --cycles: write a cProfile here")
    args = parser.parse_args()
    if args.fake_prometheus:
        fake_prometheus(*args.fake_prometheus)
        return
    if args.cycles:
        cycle_costs(args.slos[0], args.cycles, args.profile)
        return
    if args.client:
        client_process(**json.loads(args.client))
        return
    results = []
    for run in range(args.repeat):
        for count in args.slos:
            for code in args.code:
                result = one_count(count, args, code)
                print(f"run {run + 1}, {code}, {count:,} SLOs: {json.dumps(result)}", flush=True)
                results.append(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    for code in args.code:
        print(f"\n{code}")
        report([r for r in results if r["code"] == code])


if __name__ == "__main__":
    main()
