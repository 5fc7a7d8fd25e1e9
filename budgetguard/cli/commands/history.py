"""``budgetguard history``: the stored evaluations and verdict changes of one SLO. 0, or 2 without a store."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from budgetguard.cli._common import EXIT_OK, EXIT_SPEC, Subcommands, duration, store_settings


def add_parsers(commands: Subcommands) -> None:
    hist = commands.add_parser(
        "history",
        help="show the stored evaluations of one SLO",
        description="Read the daemon's store: evaluations and verdict changes.",
    )
    hist.add_argument("slo_id", metavar="SERVICE/SLO")
    hist.add_argument(
        "--since",
        type=duration,
        default=timedelta(days=1),
        metavar="DURATION",
        help="how far back (default 1d)",
    )
    hist.add_argument("--json", action="store_true", help="print the records as a JSON array")
    hist.add_argument(
        "--db", metavar="FILE|URL", help="SQLite file (default budgetguard.db) or postgresql://user@host/db"
    )
    hist.add_argument("--config", type=Path, metavar="FILE", help="YAML config file (for its db setting)")


def handle(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import json

    from budgetguard.cli.render import history_table
    from budgetguard.store import open_store

    settings = store_settings(args, err)
    if settings is None:
        return EXIT_SPEC
    since = datetime.now(tz=UTC) - args.since
    with open_store(settings.db) as store:
        records = store.history(args.slo_id, since)
        changes = store.verdict_changes(args.slo_id, since)
    if args.json:
        json.dump(records, out, indent=2)
        out.write("\n")
        return EXIT_OK
    if not records:
        print(f"no evaluations of {args.slo_id} since {since:%Y-%m-%d %H:%M}Z", file=err)
        return EXIT_OK
    print(history_table(records), file=out)
    if changes:
        print("\nverdict changes:", file=out)
        for change in changes:
            print(
                f"  {change['at']}  {change['from'] or '-'} -> {change['to']}: {change['reason']}",
                file=out,
            )
    return EXIT_OK
