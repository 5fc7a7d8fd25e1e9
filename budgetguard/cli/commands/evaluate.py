"""``budgetguard eval``: evaluate every SLO once, at now or a given instant, and print the verdicts.

0 nothing burning, 1 some SLO burning, 2 invalid SLO files or options (nothing evaluated), 3 the
source could not be read for some SLO (and none is burning).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from budgetguard.cli._common import (
    EXIT_BURNING,
    EXIT_OK,
    EXIT_SOURCE,
    EXIT_SPEC,
    PROMETHEUS_OPTIONS,
    Subcommands,
    duration,
    header,
    parse_time,
    prometheus_settings,
    report_problems,
)
from budgetguard.core.verdict import QueryMode

if TYPE_CHECKING:
    from budgetguard.core.policy import Evaluation
    from budgetguard.core.spec import SLO
    from budgetguard.sources.prometheus import PrometheusConfig


def add_parsers(commands: Subcommands) -> None:
    ev = commands.add_parser(
        "eval",
        help="evaluate every SLO once and print the verdicts",
        description="Evaluate every SLO at one instant. Exit 0 when none is burning, 1 when any is "
        "burning, 2 on invalid SLO files, 3 when the source could not be read.",
    )
    ev.add_argument("paths", nargs="+", metavar="PATH", help="SLO files or directories of them")
    ev.add_argument(
        "--prometheus",
        required=True,
        metavar="URL",
        help="base URL of Prometheus, Thanos, Mimir (with its /prometheus prefix) or VictoriaMetrics",
    )
    ev.add_argument(
        "--at",
        type=parse_time,
        metavar="TIME",
        help="evaluate at this instant (RFC 3339 or unix seconds) instead of now: backtesting",
    )
    ev.add_argument("--json", action="store_true", help="print one JSON object per SLO (a JSON array)")
    ev.add_argument(
        "--query-mode",
        choices=[mode.value for mode in QueryMode],
        default=QueryMode.RAW.value,
        help="recording: read the series `budgetguard rules` records, falling back to raw per SLO",
    )
    ev.add_argument(
        "--timeout",
        type=duration,
        default=timedelta(seconds=30),
        metavar="DURATION",
        help="per-query timeout (default 30s)",
    )
    ev.add_argument(
        "--max-concurrency", type=int, default=8, metavar="N", help="queries in flight at once (default 8)"
    )
    ev.add_argument("--tenant", metavar="ID", help="X-Scope-OrgID for Mimir or Cortex")
    ev.add_argument(
        "--bearer-token-file",
        type=Path,
        metavar="FILE",
        help="file holding a bearer token (kept out of the process list)",
    )
    ev.add_argument("--ca-file", metavar="FILE", help="CA bundle to verify the server's certificate")
    ev.add_argument(
        "--header",
        type=header,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra HTTP header, repeatable",
    )


def handle(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import asyncio
    import json

    from pydantic import ValidationError

    from budgetguard.cli.render import table
    from budgetguard.config import PrometheusSettings
    from budgetguard.core.errors import ConfigError
    from budgetguard.core.records import to_record
    from budgetguard.loader import load_paths

    loaded = load_paths(args.paths)
    if not loaded.ok:
        report_problems(loaded, err)
        return EXIT_SPEC
    try:
        config = PrometheusSettings(**prometheus_settings(args)).source_config()
    except ConfigError as exc:
        print(exc, file=err)
        return EXIT_SPEC
    except ValidationError as exc:  # an option out of the settings' bounds
        flags = {field: "--" + dest.replace("_", "-") for dest, field in PROMETHEUS_OPTIONS.items()}
        for error in exc.errors(include_url=False):
            field = str(error["loc"][0]) if error["loc"] else ""
            message = str(error["msg"]).removeprefix("Value error, ")
            print(f"{flags.get(field, field)}: {message}", file=err)
        return EXIT_SPEC
    at = args.at or datetime.now(tz=UTC)
    evaluations = asyncio.run(evaluate(config, loaded.slos, at, args.query_mode))
    if args.json:
        json.dump([to_record(ev) for ev in evaluations], out, indent=2)
        out.write("\n")
    else:
        print(table(evaluations), file=out)
    return exit_code(evaluations)


async def evaluate(
    config: PrometheusConfig, slos: Sequence[SLO], at: datetime, query_mode: str = QueryMode.RAW
) -> list[Evaluation]:
    from budgetguard import memory
    from budgetguard.engine import Engine
    from budgetguard.recording import RecordingEngine
    from budgetguard.sources.prometheus import PrometheusSource

    async with PrometheusSource(config) as source:
        engine = RecordingEngine(source) if query_mode == QueryMode.RECORDING else Engine(source)
        memory.settle()
        with memory.collection_paused():
            return await engine.evaluate_all(slos, at)


def exit_code(evaluations: Sequence[Evaluation]) -> int:
    from budgetguard.core.verdict import Verdict

    verdicts = {ev.verdict for ev in evaluations} | {c.verdict for ev in evaluations for c in ev.canaries}
    if Verdict.BURNING in verdicts:
        return EXIT_BURNING
    if Verdict.ERROR in verdicts:
        return EXIT_SOURCE
    return EXIT_OK
