"""``budgetguard check``: validate SLO files and list every problem; 0 all valid, 2 otherwise."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from budgetguard.cli._common import EXIT_OK, EXIT_SPEC, Subcommands, report_problems


def add_parsers(commands: Subcommands) -> None:
    check = commands.add_parser(
        "check",
        help="validate SLO files and list every problem",
        description="Validate SLO files; exit 0 when all are valid, 2 otherwise.",
    )
    check.add_argument("paths", nargs="+", metavar="PATH", help="SLO files or directories of them")
    check.add_argument(
        "--config", type=Path, metavar="FILE", help="also check action names against this config's actions"
    )


def handle(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from budgetguard.loader import KnownActions, load_paths

    actions: KnownActions | None = None
    if args.config is not None:
        from budgetguard.config import known_actions, load_settings
        from budgetguard.core.errors import ConfigError

        try:
            actions = known_actions(load_settings(args.config))
        except ConfigError as exc:
            print(exc, file=err)
            return EXIT_SPEC
    loaded = load_paths(args.paths, actions)
    if not loaded.ok:
        report_problems(loaded, err)
        return EXIT_SPEC
    for note in loaded.notes:
        print(f"note: {note}", file=out)
    print(f"{len(loaded.slos)} SLO(s) in {len(loaded.files)} file(s): all valid", file=out)
    return EXIT_OK
