"""The README's quick start: watch budgetguard halt a failing canary, end to end, in under a minute.

Run ``scripts/demo`` (which sets up first) or ``python -m lab.demo``. On 127.0.0.1 it starts a demo
service whose stable version v1 and canary v2 export request counters, a real Prometheus scraping
them every second, ``budgetguard run`` evaluating every second, a stand-in for the Kubernetes API
holding the canary's Argo Rollout, and a webhook receiver standing in for the people to tell. The
canary serves cleanly for a while, then starts failing one request in five; the timeline shows
budgetguard's verdicts, the abort the Rollout receives and the signed webhook. Everything stops at
the end (``--keep`` leaves it running until Ctrl-C). ``python -m lab.demo_history`` is the other demo:
31 days of backfilled history and ``budgetguard eval``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

from lab.canary_loop import CANARY_WINDOWS, NAMESPACE, CanaryLoop
from lab.prometheus import LabError

HEALTHY_FOR = 12.0  # seconds of clean canary traffic before it starts failing


class Timeline:
    def __init__(self) -> None:
        self.start = time.monotonic()

    def say(self, what: str) -> None:
        print(f"  {time.monotonic() - self.start:5.1f}s  {what}")
        sys.stdout.flush()


def _verdict_line(canary: dict[str, Any]) -> str:
    return f"budgetguard: v2 {canary['verdict'].upper()}: {canary['reason']}"


def run(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep everything running until Ctrl-C")
    parser.add_argument("--seed", type=int, default=7, help="seed of the Poisson traffic")
    args = parser.parse_args(argv)

    print("budgetguard demo: a canary release that goes wrong\n")
    timeline = Timeline()
    try:
        loop_context = CanaryLoop(seed=args.seed)
        loop = loop_context.__enter__()
    except (LabError, OSError, RuntimeError, TimeoutError) as exc:
        print(f"demo: could not start: {exc}", file=sys.stderr)
        return 1
    try:
        assert loop.prometheus is not None
        timeline.say(f"Prometheus {loop.prometheus.url} scrapes checkout every 1s; v1 serves 50 requests/s")
        timeline.say(
            f"budgetguard {loop.url} evaluates every 1s (canary windows {', '.join(CANARY_WINDOWS)})"
        )
        loop.deploy("v2", rps=5.0, error_ratio=0.0)
        timeline.say(f"deploy canary v2 (Argo Rollout {NAMESPACE}/checkout-v2), 5 requests/s, all succeed")
        last = ""
        deadline = time.monotonic() + HEALTHY_FOR
        while time.monotonic() < deadline:
            canary = loop.canaries().get("v2")
            if canary is not None and canary["verdict"] != last:
                last = canary["verdict"]
                timeline.say(_verdict_line(canary))
            time.sleep(0.2)
        loop.fail("v2", rps=5.0, error_ratio=0.2)
        failed_at = time.monotonic()
        timeline.say("v2 starts failing: 1 request in 5 returns 500")
        aborted = False
        delivered = False
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not (aborted and delivered):
            canary = loop.canaries().get("v2")
            if canary is not None and canary["verdict"] != last:
                last = canary["verdict"]
                timeline.say(_verdict_line(canary))
            if not aborted and loop.aborts("v2"):
                aborted = True
                status = loop.kubernetes.rollout(NAMESPACE, "checkout-v2")["status"]
                took = time.monotonic() - failed_at
                timeline.say(
                    f'Kubernetes: PATCH rollouts/checkout-v2/status {{"status":{{"abort":true}}}} '
                    f"-> phase {status.get('phase')}, {took:.1f}s after v2 started failing"
                )
            if not delivered and loop.hook.accepted:
                delivered = True
                event = loop.hook.accepted[0]
                body = event.json if isinstance(event.json, dict) else {}
                timeline.say(
                    f"webhook receiver: {body.get('type')} (signature verified, "
                    f"webhook-id {event.header('webhook-id')})"
                )
            time.sleep(0.05)
        if not aborted:
            print("\ndemo: no abort within 40 s; budgetguard's log follows", file=sys.stderr)
            for line in loop.logs():
                print(f"  {line}", file=sys.stderr)
            return 1
        time.sleep(2)
        incidents = loop.get("/api/v1/incidents")
        count = len(incidents["incidents"]) if isinstance(incidents, dict) else 0
        timeline.say(
            f"2 s later: still {len(loop.aborts('v2'))} abort and {len(loop.hook.accepted)} webhook; "
            f"{count} incident open"
        )
        print(
            "\nWhat budgetguard logged:\n"
            + "\n".join(f"  {line}" for line in loop.logs() if "incident" in line or "delivered" in line)
        )
        print(
            f"\nTry: curl {loop.url}/api/v1/incidents  |  curl '{loop.url}/gates/argo/checkout/availability"
            "?canary=v2'  |  scripts/test runs the test suite"
        )
        if args.keep:
            print("Everything keeps running; Ctrl-C stops it.")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        return 0
    finally:
        loop_context.__exit__(None, None, None)


if __name__ == "__main__":
    sys.exit(run())
