"""``budgetguard check``: validate SLO files as ``budgetguard run`` would; 0 all valid, 2 otherwise.

It reads the same config file as ``run`` (``--config``, ``$BUDGETGUARD_CONFIG`` or ``./budgetguard.yaml``)
and judges the actions the files name against it, so a file ``check`` passes is one ``run`` takes; it
says on stderr which config it read.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from budgetguard.cli._common import EXIT_OK, EXIT_SPEC, Subcommands, config_file, report_problems


def add_parsers(commands: Subcommands) -> None:
    check = commands.add_parser(
        "check",
        help="validate SLO files and list every problem",
        description="Validate SLO files as `budgetguard run` would, against the same config file; exit 0 "
        "when all are valid, 2 otherwise.",
    )
    check.add_argument(
        "paths", nargs="*", metavar="PATH", help="SLO files or directories (default: the config's slo_paths)"
    )
    check.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="the config file `budgetguard run` reads, whose actions the SLOs may name (default "
        "$BUDGETGUARD_CONFIG, else ./budgetguard.yaml when it exists)",
    )


def handle(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import os

    from budgetguard.configfile import describe_config, settings_in_environment
    from budgetguard.loader import KnownActions, load_paths

    config = config_file(args)
    paths = args.paths
    actions: KnownActions = {}
    if config is not None or not paths or settings_in_environment(os.environ):
        # Settings to read. Without any (files given, no config file, no BUDGETGUARD_*), the defaults
        # declare no actions, and importing the settings (every action's client) would be most of a
        # one-file check's time (#14).
        from budgetguard.config import known_actions, load_settings
        from budgetguard.core.errors import ConfigError

        try:
            settings = load_settings(config)
        except ConfigError as exc:
            print(exc, file=err)
            return EXIT_SPEC
        paths, actions = paths or settings.slo_paths, known_actions(settings)
    loaded = load_paths(paths, actions)
    print(f"checked against {describe_config(config)}", file=err)
    if not loaded.ok:
        report_problems(loaded, err)
        return EXIT_SPEC
    for note in loaded.notes:
        print(f"note: {note}", file=out)
    print(f"{len(loaded.slos)} SLO(s) in {len(loaded.files)} file(s): all valid", file=out)
    return EXIT_OK
