"""``budgetguard run``: the daemon. 0 after a clean stop (SIGTERM/SIGINT), 2 on invalid settings or
SLO files at start."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TextIO

from budgetguard.cli._common import EXIT_SPEC, Subcommands, config_file, prometheus_settings


def add_parsers(commands: Subcommands) -> None:
    run = commands.add_parser(
        "run",
        help="run the daemon: evaluate on a schedule, remember, export metrics, serve the API",
        description="Run the daemon. Flags override the config file, which overrides BUDGETGUARD_* "
        "environment variables, which override the defaults.",
    )
    run.add_argument("paths", nargs="*", metavar="PATH", help="SLO files or directories (default: slos)")
    run.add_argument("--prometheus", metavar="URL", help="base URL of the metrics source")
    run.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="YAML config file (default $BUDGETGUARD_CONFIG, else ./budgetguard.yaml when it exists)",
    )
    run.add_argument(
        "--db", metavar="FILE|URL", help="SQLite file (default budgetguard.db) or postgresql://user@host/db"
    )
    run.add_argument("--listen", metavar="HOST:PORT", help="HTTP address (default 127.0.0.1:8731)")
    run.add_argument("--interval", metavar="DURATION", help="evaluation interval (default 30s)")


def handle(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import asyncio

    from budgetguard import daemon, logs
    from budgetguard.config import ConfigSource
    from budgetguard.core.errors import ConfigError

    overrides: dict[str, Any] = {
        "slo_paths": args.paths or None,
        "db": args.db,
        "listen": args.listen,
        "interval": args.interval,
    }
    if prometheus := prometheus_settings(args):
        overrides["prometheus"] = prometheus
    source = ConfigSource(config_file(args), {k: v for k, v in overrides.items() if v is not None})
    try:
        settings = source.load()
    except ConfigError as exc:
        print(exc, file=err)
        return EXIT_SPEC
    logs.configure_logging(settings.log_level, settings.log_json)
    return asyncio.run(daemon.run(settings, source))
