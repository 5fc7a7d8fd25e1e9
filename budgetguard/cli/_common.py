"""What the commands share: exit codes, argument types, the store and Prometheus options.

Light on purpose: the parser of every command is built from this module at each start, so it imports
nothing beyond the standard library and the pure core; a command's handler imports what it needs.
The Prometheus options are mapped onto settings in one place (``prometheus_settings``), for
``budgetguard eval`` and ``budgetguard run`` alike; the settings map onto the source's config once
more, in ``budgetguard.config``, for the daemon too.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeAlias

from budgetguard.core.durations import parse_duration

if TYPE_CHECKING:
    from budgetguard.config import Settings
    from budgetguard.loader import LoadResult

# What add_subparsers returns; argparse names the type privately (and subscriptable only in the stubs).
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

EXIT_OK = 0
EXIT_BURNING = 1
EXIT_SPEC = 2
EXIT_SOURCE = 3
EXIT_FROZEN = 4  # distinct from 1, which a crashing Python also exits with
EXIT_INTERNAL = 70  # a bug in budgetguard (sysexits' EX_SOFTWARE): never 1, which means "burning"


def parse_time(text: str) -> datetime:
    """RFC 3339 (``2026-11-26T10:00:00Z``) or unix seconds; a timezone is required."""
    try:
        return datetime.fromtimestamp(float(text), tz=UTC)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither RFC 3339 (2026-11-26T10:00:00Z) nor unix seconds"
        ) from exc
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no timezone; add Z or an offset such as +01:00")
    return parsed


def duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: write headers as NAME=VALUE")
    return name.strip(), value


def config_file(args: argparse.Namespace) -> Path | None:
    """The config file a command reads: ``--config``, else ``$BUDGETGUARD_CONFIG``, else
    ``./budgetguard.yaml`` when it exists (``configfile.find_config``), the same for every command."""
    import os

    from budgetguard.configfile import find_config

    return find_config(getattr(args, "config", None), os.environ)


def store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db", metavar="FILE|URL", help="SQLite file (default budgetguard.db) or postgresql://user@host/db"
    )
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="YAML config file (its db, actions and dry_run settings)"
    )


# The Prometheus options: argparse destination -> PrometheusSettings field. A command adds the flags it
# offers; whatever of them was given becomes settings through ``prometheus_settings``.
PROMETHEUS_OPTIONS = {
    "prometheus": "url",
    "timeout": "timeout",
    "max_concurrency": "max_concurrency",
    "tenant": "tenant",
    "bearer_token_file": "bearer_token_file",
    "ca_file": "ca_file",
    "header": "headers",
}


def prometheus_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The Prometheus options given on the command line, as ``PrometheusSettings`` fields."""
    out: dict[str, Any] = {}
    for dest, name in PROMETHEUS_OPTIONS.items():
        value = getattr(args, dest, None)
        if value is None or value == "":
            continue
        out[name] = dict(value) if dest == "header" else value
    return out


def report_problems(loaded: LoadResult, err: TextIO) -> None:
    for problem in loaded.problems:
        print(problem, file=err)
    print(f"{len(loaded.problems)} problem(s) in {len(loaded.files)} file(s)", file=err)


def store_settings(args: argparse.Namespace, err: TextIO) -> Settings | None:
    """The settings of a command that reads the daemon's store, or None (told on ``err``) without one."""
    from budgetguard.config import load_settings
    from budgetguard.core.errors import ConfigError

    try:
        settings = load_settings(config_file(args), {"db": args.db})
    except ConfigError as exc:
        print(exc, file=err)
        return None
    if isinstance(settings.db, Path) and not settings.db.exists():
        print(f"no store at {settings.db}; run the daemon first or give --db", file=err)
        return None
    return settings


def to_yaml(document: Any) -> str:
    """Block YAML, keys in the generator's order, multi-line PromQL as literal blocks (|)."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)

    Dumper.add_representer(str, text)
    return yaml.dump(document, Dumper=Dumper, sort_keys=False, width=2**16, allow_unicode=True)
