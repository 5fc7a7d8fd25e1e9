"""``budgetguard gate``: ask the running daemon whether a release of a service may go (the release freeze).

0 the release may go, 4 frozen (a spent budget, or a refused shadow version), 3 no verdict (the daemon
is unreachable, or could not evaluate an SLO with a freeze policy), 2 a refused question (unknown
service, no freeze policy, bad label, wrong token).
"""

from __future__ import annotations

import argparse
import os
from datetime import timedelta
from pathlib import Path
from typing import TextIO

from budgetguard.cli import client
from budgetguard.cli._common import (
    EXIT_FROZEN,
    EXIT_OK,
    EXIT_SOURCE,
    EXIT_SPEC,
    Subcommands,
    duration,
    header,
)


def add_parsers(commands: Subcommands) -> None:
    gate = commands.add_parser(
        "gate",
        help="ask the running daemon whether a release of a service may go (the release freeze)",
        description="Ask the daemon's release gate (GET /gates/release/SERVICE) whether a new release of "
        "SERVICE may start: no while an SLO with a freeze: policy has spent its budget, unless a --label "
        "matches its exceptions, or while --canary names a shadow version that burns. Exit 0 go, 4 frozen "
        "(with the reason and when the budget is expected back), 3 no verdict, 2 a refused question.",
    )
    gate.add_argument("service", metavar="SERVICE")
    gate.add_argument(
        "--label",
        type=header,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a label of this change for the policy's exceptions, e.g. change=security-fix; repeatable",
    )
    gate.add_argument("--canary", metavar="VALUE", help="the version to release (checked against shadows)")
    gate.add_argument(
        "--url",
        default=os.environ.get("BUDGETGUARD_URL") or client.DEFAULT_URL,
        help=f"the daemon's base URL (default $BUDGETGUARD_URL or {client.DEFAULT_URL})",
    )
    gate.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help="file holding the daemon's api_token (default $BUDGETGUARD_API_TOKEN)",
    )
    gate.add_argument(
        "--timeout", type=duration, default=timedelta(seconds=10), metavar="DURATION", help="default 10s"
    )
    gate.add_argument("--json", action="store_true", help="print the daemon's answer as JSON")


def handle(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import json

    from budgetguard.core.errors import DaemonUnreachable

    token = os.environ.get("BUDGETGUARD_API_TOKEN") or None
    if args.token_file is not None:
        try:
            token = args.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            print(f"cannot read --token-file: {exc}", file=err)
            return EXIT_SPEC
    try:
        answer = client.ask_release(
            args.url,
            args.service,
            dict(args.label),
            canary=args.canary,
            token=token,
            timeout=args.timeout.total_seconds(),
        )
    except DaemonUnreachable as exc:
        print(f"no verdict: {exc}", file=err)
        return EXIT_SOURCE
    data = answer.body.get("data")
    if args.json:
        json.dump(answer.body, out, indent=2)
        out.write("\n")
    elif isinstance(data, dict):
        print("\n".join(client.describe_release(data)), file=out)
    if answer.status == 200 and isinstance(data, dict):
        return EXIT_OK if data.get("ok") is True else EXIT_FROZEN
    if not args.json:
        print(f"HTTP {answer.status}: {answer.body.get('error', answer.body)}", file=err)
    return EXIT_SOURCE if answer.status >= 500 else EXIT_SPEC
