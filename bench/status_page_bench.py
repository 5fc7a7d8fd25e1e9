"""Benchmark: the status page's overview at 1,000 SLOs, rendered by the daemon's own HTTP app.

Builds 1,000 SLOs over 50 services, records ``--days`` of hourly cycles into a real SQLite store (so the
sparklines are read the way the daemon reads them), warms the sparkline cache once (timed: the cold
read a freshly started daemon does in the background), then asks for ``/`` through the ASGI app
``--repeat`` times: a whole page, a live refresh (the fragment ``status.js`` fetches), and a filtered,
sorted view, and an unchanged refresh (a 304 between two cycles). Prints the median and the slowest,
and the page size. The issue's bar: at most 200 ms.

    python bench/status_page_bench.py [--slos 1000] [--days 2] [--repeat 30]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from budgetguard.core.policy import Evaluation, Observation, evaluate  # noqa: E402 - bench/ is not a package
from budgetguard.core.spec import SLO  # noqa: E402
from budgetguard.loader import load_text  # noqa: E402
from budgetguard.store import Store  # noqa: E402
from budgetguard.web import create_app  # noqa: E402

BAR_MS = 200.0


def make_slos(count: int, services: int = 50) -> list[SLO]:
    out: list[SLO] = []
    per = count // services
    for s in range(services):
        lines = [f"version: budgetguard/v1\nservice: svc-{s:02d}\nlabels:\n  team: team-{s % 7}\nslos:"]
        for i in range(per):
            lines.append(
                f"""  - name: slo-{i:03d}
    objective: {random.choice(["99", "99.5", "99.9", "99.95"])}
    sli:
      events:
        error_query: >-
          sum(rate(http_requests_total{{job="svc-{s:02d}",route="r{i}",code=~"5.."}}[{{{{.window}}}}]))
        total_query: sum(rate(http_requests_total{{job="svc-{s:02d}",route="r{i}"}}[{{{{.window}}}}]))"""
            )
        slos, problems = load_text("\n".join(lines) + "\n", f"svc-{s:02d}.yaml")
        assert not problems, [str(p) for p in problems]
        out.extend(slos)
    return out


def judge(slo: SLO, at: datetime, rng: random.Random) -> Evaluation:
    base = rng.choice([0.1, 0.3, 0.8, 2.0, 20.0]) * slo.error_budget_float
    observations = {
        w: Observation(w, max(0.0, rng.gauss(base, base / 4)), rng.uniform(1e3, 1e7)) for w in slo.windows()
    }
    return evaluate(slo, observations, at)


class View:
    """The daemon's view over a real store: what ``budgetguard.daemon.Daemon`` serves."""

    def __init__(self, store: Store, latest: Sequence[Evaluation]) -> None:
        self.store = store
        self.latest = list(latest)

    def latest_evaluations(self) -> Sequence[Evaluation]:
        return self.latest

    def config_problems(self) -> Sequence[str]:
        return []

    def readiness(self) -> tuple[bool, str]:
        return True, "ok"

    def history(self, slo_id: str, since: datetime, limit: int) -> list[dict[str, Any]]:
        return self.store.history(slo_id, since, limit=limit)

    def verdict_changes(self, slo_id: str, since: datetime) -> list[dict[str, Any]]:
        return self.store.verdict_changes(slo_id, since)

    def guard_status(self, slo_id: str) -> tuple[bool, frozenset[str]]:
        return False, frozenset()

    def budget_series(
        self, slo_id: str, since: datetime, step: timedelta
    ) -> list[tuple[datetime, float | None]]:
        return self.store.budget_series(slo_id, since, step)


class Metrics:
    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        return b"", "text/plain"


async def timed(
    client: httpx.AsyncClient, path: str, repeat: int, headers: dict[str, str]
) -> tuple[list[float], int]:
    times = []
    size = 0
    for _ in range(repeat):
        started = time.perf_counter()
        answer = await client.get(path, headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 304:
            answer.raise_for_status()
        size = len(answer.content)
    return times, size


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slos", type=int, default=1000)
    parser.add_argument("--days", type=int, default=2, help="hourly cycles recorded into the store")
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args(argv)
    rng = random.Random(16)
    random.seed(16)
    slos = make_slos(args.slos)
    now = datetime.now(tz=UTC)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.db")
        started = time.perf_counter()
        latest: list[Evaluation] = []
        for hour in range(args.days * 24, -1, -1):
            latest = [judge(slo, now - timedelta(hours=hour), rng) for slo in slos]
            store.record_cycle(latest)
        print(
            f"store: {len(slos)} SLOs x {args.days * 24 + 1} cycles recorded in "
            f"{time.perf_counter() - started:.1f}s"
        )
        view = View(store, latest)
        app = create_app(view, Metrics())
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench"
        ) as client:
            # The first request starts the background read of every sparkline; time it to the end.
            started = time.perf_counter()
            first = await client.get("/")
            first_ms = (time.perf_counter() - started) * 1000
            while "reading…" in (await client.get("/", headers={"X-Budgetguard-Fragment": "1"})).text:
                await asyncio.sleep(0.05)
            cold = time.perf_counter() - started
            print(
                f"first page (sparklines not read yet): {first_ms:.0f} ms, {len(first.content) / 1024:.0f} "
                "KiB"
            )
            print(f"cold sparkline read of {len(slos)} SLOs in the background: {cold:.2f} s")
            tag = (await client.get("/", headers={"X-Budgetguard-Fragment": "1"})).headers["etag"]
            cases = [
                ("whole page", "/", {}),
                ("live refresh (fragment)", "/", {"X-Budgetguard-Fragment": "1"}),
                ("unchanged refresh (304)", "/", {"X-Budgetguard-Fragment": "1", "If-None-Match": tag}),
                ("filtered by team, sorted by budget", "/?label=team%3Dteam-3&sort=budget", {}),
            ]
            worst = 0.0
            for name, path, headers in cases:
                times, size = await timed(client, path, args.repeat, headers)
                median, slowest = statistics.median(times), max(times)
                worst = max(worst, median)
                print(
                    f"{name:38s} median {median:6.1f} ms  slowest {slowest:6.1f} ms  "
                    f"{size / 1024:6.0f} KiB  ({args.repeat} requests)"
                )
        store.close()
    verdict = "within" if worst <= BAR_MS else "OVER"
    print(f"overview at {len(slos)} SLOs: median {worst:.1f} ms, {verdict} the {BAR_MS:.0f} ms bar")
    return 0 if worst <= BAR_MS else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
