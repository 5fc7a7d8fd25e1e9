"""The command line: thin commands over the library, ``main(argv) -> int``.

One module per command under ``budgetguard.cli.commands`` (its parser and its handler), dispatched
through a table; handlers import what they need, so ``--help``, ``check`` and ``gate`` never load the
daemon, the web server or httpx. The only place that prints. Exit codes are part of the interface
(CI pipelines gate on them):

    check   0 all files valid, 2 otherwise
    run     0 after a clean stop (SIGTERM/SIGINT), 2 on invalid settings or SLO files at start
    history 0, 2 when there is no store
    rules   0 rules written, 2 invalid SLO files (nothing written)
    convert 0 native YAML printed (or nothing to convert), 2 invalid input (nothing printed)
    eval    0 nothing burning, 1 some SLO burning, 2 invalid SLO files (nothing evaluated),
            3 the source could not be read for some SLO (and none is burning)
    gate    0 the release may go, 4 frozen (a spent budget, or a refused shadow version), 3 no verdict
            (the daemon is unreachable, or could not evaluate an SLO with a freeze policy),
            2 a refused question (unknown service, no freeze policy, bad label, wrong token)
    every   2 for a problem in the input (file, field and fix named), 70 for an internal error (a bug),
            never 1, which means "burning"
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import TextIO

from budgetguard import __version__
from budgetguard.cli._common import EXIT_INTERNAL, EXIT_SPEC
from budgetguard.cli.commands import check, control, convert, evaluate, gate, history, rules, run

Handler = Callable[[argparse.Namespace, TextIO, TextIO], int]

# In the order of `budgetguard --help`.
COMMANDS = (check, evaluate, run, history, control, rules, convert, gate)

HANDLERS: dict[str, Handler] = {
    "check": check.handle,
    "eval": evaluate.handle,
    "run": run.handle,
    "history": history.handle,
    "incidents": control.handle,
    "pause": control.handle,
    "resume": control.handle,
    "rules": rules.handle,
    "convert": convert.handle,
    "gate": gate.handle,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="budgetguard",
        description="Error-budget guard for progressive delivery: SLO burn rates from Prometheus.",
    )
    parser.add_argument("--version", action="version", version=f"budgetguard {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parsers(commands)
    return parser


def main(
    argv: Sequence[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = build_parser()
    try:
        with contextlib.redirect_stderr(err):  # argparse's usage errors go where the caller reads
            args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 for --help/--version
        return int(exc.code or 0)
    from budgetguard.core.errors import BudgetguardError

    try:
        return HANDLERS[args.command](args, out, err)
    except BudgetguardError as exc:
        # A store that cannot be read, a setting that cannot work: the user's to fix, never a traceback.
        print(f"budgetguard {args.command}: {exc}", file=err)
        return EXIT_SPEC
    except Exception:
        print(
            f"budgetguard {args.command}: internal error, a bug in budgetguard {__version__} and not a "
            "problem in your input; please report it with the traceback below",
            file=err,
        )
        traceback.print_exc(file=err)
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
