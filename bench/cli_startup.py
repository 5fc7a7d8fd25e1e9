"""How long does a one-file ``budgetguard check`` (and ``--help``) take as a process? Print the medians.

A CI pipeline pays the command's start-up on every run, so the figure that matters is the wall time of
a fresh process, imports included (#14: at most 0.3 s). Each case runs ``--runs`` times and the median
is printed, since one run on a shared machine is noise. ``check`` is timed twice: with no config file
(defaults only, the settings are not imported) and with a config file declaring actions (the settings,
pydantic-settings and every action's configuration are imported and validated, as ``run`` does).
``gate`` asks a loopback server that answers like the daemon's release gate (a go, one SLO), so the
figure includes the request and the wording of the answer. ``check`` of 10,000 SLOs in 1,000 files (the
fleet ``serving_bench.py`` loads) is timed with ``--fleet-runs`` runs (#14: at most 5 s).

    python bench/cli_startup.py              # 7 runs per case, 3 of the 10,000-SLO check
    python bench/cli_startup.py --runs 11 --fleet-runs 5
    python bench/cli_startup.py --fleet-runs 0   # leave the 10,000-SLO check out
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from serving_bench import write_slos  # this directory is on the path: the bench runs as a script

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


GO = json.dumps(
    {
        "data": {
            "service": "checkout",
            "ok": True,
            "frozen": False,
            "slos": [{"slo": "availability", "state": "ok", "reason": "62% of the budget left"}],
            "shadows": [],
        }
    }
).encode()


class _Gate(BaseHTTPRequestHandler):
    """``GET /gates/release/{service}``: a go, with the headers the daemon sends."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        found = self.path.startswith("/gates/release/")
        body = GO if found else b'{"error": "not found"}'
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--fleet-runs", type=int, default=3, help="runs of the 10,000-SLO check (0: none)")
    args = parser.parse_args()
    command = [sys.executable, "-m", "budgetguard"]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Gate)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    gate_url = f"http://127.0.0.1:{server.server_address[1]}"
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "one"
        bare.mkdir()
        shutil.copy(ROOT / "slos" / "checkout.yaml", bare / "checkout.yaml")
        cases: list[tuple[str, list[str], Path]] = [
            ("--help", [*command, "--help"], bare),
            ("gate, a go from a loopback server", [*command, "gate", "checkout", "--url", gate_url], bare),
            ("check, no config file", [*command, "check", "checkout.yaml"], bare),
            ("check, ./budgetguard.yaml with actions", [*command, "check", "slos/checkout.yaml"], ROOT),
        ]
        if args.fleet_runs > 0:
            fleet = Path(tmp) / "fleet"
            fleet.mkdir()
            write_slos(fleet, 10_000)
            files = len(list(fleet.iterdir()))
            cases.append((f"check, 10,000 SLOs in {files:,} files", [*command, "check", "."], fleet))
        print(f"{'case':42s} {'median':>8s} {'min':>8s} {'max':>8s} {'runs':>5s}   (seconds)")
        for name, argv, cwd in cases:
            runs = args.fleet_runs if cwd.name == "fleet" else args.runs
            times = wall_seconds(argv, cwd, runs)
            print(f"{name:42s} {statistics.median(times):8.3f} {min(times):8.3f} {max(times):8.3f} {runs:5d}")
    server.shutdown()


if __name__ == "__main__":
    main()
