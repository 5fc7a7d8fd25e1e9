"""``budgetguard incidents | pause | resume``: manual control of the canary guard, on the daemon's store.

The daemon need not run; it sees a change at its next cycle. The rules are ``budgetguard.control``'s,
shared with the HTTP API. 0, or 2 on a refused operation or without a store.
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from budgetguard.cli._common import EXIT_OK, EXIT_SPEC, Subcommands, duration, store_options, store_settings

if TYPE_CHECKING:
    from budgetguard.config import Settings
    from budgetguard.control import Control


def add_parsers(commands: Subcommands) -> None:
    inc = commands.add_parser(
        "incidents",
        help="list, acknowledge, resolve canary incidents; retry a failed delivery",
        description="Manual control of the canary guard, on the daemon's store (the daemon need not run; "
        "it sees changes at its next cycle).",
    )
    inc.add_argument(
        "op",
        nargs="?",
        default="list",
        choices=["list", "show", "ack", "resolve", "retry"],
        help="default list",
    )
    inc.add_argument("id", nargs="?", help="incident id (show, ack, resolve) or delivery id (retry)")
    inc.add_argument(
        "--state", choices=["open", "resolved", "all"], default="open", help="for list (default open)"
    )
    inc.add_argument("--by", default=os.environ.get("USER") or "cli", help="who acts (default $USER)")
    inc.add_argument("--json", action="store_true", help="print JSON")
    store_options(inc)

    pause = commands.add_parser(
        "pause",
        help="pause the canary guard of one SLO: no new incidents; --list the pauses in force",
        description="Pause the canary guard of one SLO declared in the SLO files of the config `budgetguard "
        "run` reads (an SLO that is not declared is refused), or list the pauses in force.",
    )
    pause.add_argument("slo_id", nargs="?", metavar="SERVICE/SLO")
    pause.add_argument("--list", action="store_true", help="list the pauses in force, as GET /api/v1/pauses")
    pause.add_argument("--json", action="store_true", help="with --list: print JSON")
    pause.add_argument(
        "--for", dest="duration", type=duration, metavar="DURATION", help="until resumed if unset"
    )
    pause.add_argument("--reason", default="", help="why, for the record")
    pause.add_argument("--by", default=os.environ.get("USER") or "cli", help="who pauses (default $USER)")
    store_options(pause)
    resume = commands.add_parser("resume", help="resume the canary guard of one SLO")
    resume.add_argument("slo_id", metavar="SERVICE/SLO")
    store_options(resume)


def handle(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import json

    from budgetguard.control import Control
    from budgetguard.core.errors import ControlError
    from budgetguard.cycle import delivery_of
    from budgetguard.store import open_store

    settings = store_settings(args, err)
    if settings is None:
        return EXIT_SPEC
    now = datetime.now(tz=UTC)
    declared = _declared(settings, err) if args.command == "pause" and not args.list else None
    with open_store(settings.db) as store:
        control = Control(store, delivery_of(settings), declared=declared)
        try:
            result = _operate(control, args, now)
        except ControlError as exc:
            print(exc, file=err)
            return EXIT_SPEC
    if args.command == "pause" and args.list and not args.json:
        _print_pauses(result, out)
        return EXIT_OK
    if getattr(args, "json", False) or not isinstance(result, list):
        json.dump(result, out, indent=2)
        out.write("\n")
        return EXIT_OK
    if not result:
        print(f"no {args.state if args.state != 'all' else ''} incidents".replace("  ", " "), file=out)
    for incident in result:
        print(
            f"{incident['id']}  {incident['state']:8}  {incident['opened_at']}  {incident['slo_id']}  "
            f"{incident['canary_label']}={incident['canary']}  {incident['reason']}",
            file=out,
        )
        for row in incident.get("delivery_problems", []):
            # A halt or page that did not happen shows here, not only in a log line (issue 13).
            print(
                f"    ! delivery {row['id']} {row['action']} {row['status']} after {row['attempts']} "
                f"attempt(s): {row['last_detail']} (budgetguard incidents retry {row['id']})",
                file=out,
            )
    return EXIT_OK


def _declared(settings: Settings, err: TextIO) -> frozenset[str] | None:
    """The SLO ids the daemon judges, from the SLO files of its config; None (said on ``err``) when they
    cannot be read here, and the pause is then taken as given."""
    from budgetguard.config import known_actions
    from budgetguard.loader import load_paths

    loaded = load_paths(settings.slo_paths, known_actions(settings))
    if not loaded.ok:
        where = ", ".join(map(str, settings.slo_paths))
        print(f"note: the SLO files ({where}) do not load here, so the SLO id is not checked", file=err)
        return None
    return frozenset(slo.id for slo in loaded.slos)


def _print_pauses(pauses: list[dict[str, Any]], out: TextIO) -> None:
    if not pauses:
        print("no guard is paused", file=out)
    for pause in pauses:
        until = pause["until"] or "resumed by hand"
        print(
            f"{pause['slo_id']}  paused {pause['paused_at']} by {pause['by']}  until {until}  "
            f"{pause['reason']}",
            file=out,
        )


def _operate(control: Control, args: argparse.Namespace, now: datetime) -> Any:
    from budgetguard.core.errors import ControlError
    from budgetguard.core.guard import IncidentState

    if args.command == "pause":
        if args.list:
            return control.pauses(now)
        if args.slo_id is None:
            raise ControlError(400, "pause needs SERVICE/SLO, or --list for the pauses in force")
        until = None if args.duration is None else now + args.duration
        return control.pause(args.slo_id, now, until=until, by=args.by, reason=args.reason)
    if args.command == "resume":
        return {"slo_id": args.slo_id, "resumed": control.resume(args.slo_id)}
    if args.op == "list":
        state = None if args.state == "all" else IncidentState(args.state)
        return control.incidents(state)
    if args.id is None:
        raise ControlError(400, f"incidents {args.op} needs an id (see budgetguard incidents list)")
    if args.op == "show":
        return control.show(args.id)
    if args.op == "ack":
        return control.acknowledge(args.id, args.by, now)
    if args.op == "resolve":
        return control.resolve(args.id, args.by, now)
    if not args.id.isdigit():
        raise ControlError(400, "retry takes a delivery id, a number (see budgetguard incidents show ID)")
    return control.retry(int(args.id), now)
