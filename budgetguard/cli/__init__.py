"""The command line: thin commands over the library, ``main(argv) -> int``.

The only place that prints. Exit codes are part of the interface (CI pipelines gate on them):

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
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import yaml

from budgetguard import __version__, memory
from budgetguard.cli import client
from budgetguard.cli.render import history_table, table
from budgetguard.config import Settings, known_actions, load_settings
from budgetguard.control import Control
from budgetguard.core import formats
from budgetguard.core.durations import parse_duration
from budgetguard.core.errors import ConfigError, ControlError, DaemonUnreachable
from budgetguard.core.guard import IncidentState
from budgetguard.core.policy import Evaluation
from budgetguard.core.records import to_record
from budgetguard.core.rules import DEFAULT_INTERVAL, RuleFormat, render_rules
from budgetguard.core.rules_sloth import sloth_rules
from budgetguard.core.spec import NATIVE_VERSION, SLOTH_VERSION
from budgetguard.core.verdict import Verdict
from budgetguard.cycle import delivery_of
from budgetguard.daemon import configure_logging, run
from budgetguard.engine import Engine
from budgetguard.loader import LoadResult, load_paths, translate_paths
from budgetguard.recording import RecordingEngine
from budgetguard.sources.prometheus import PrometheusConfig, PrometheusSource
from budgetguard.store import Store

EXIT_OK = 0
EXIT_BURNING = 1
EXIT_SPEC = 2
EXIT_SOURCE = 3
EXIT_FROZEN = 4  # distinct from 1, which a crashing Python also exits with


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


def _duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: write headers as NAME=VALUE")
    return name.strip(), value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="budgetguard",
        description="Error-budget guard for progressive delivery: SLO burn rates from Prometheus.",
    )
    parser.add_argument("--version", action="version", version=f"budgetguard {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser(
        "check",
        help="validate SLO files and list every problem",
        description="Validate SLO files; exit 0 when all are valid, 2 otherwise.",
    )
    check.add_argument("paths", nargs="+", metavar="PATH", help="SLO files or directories of them")
    check.add_argument(
        "--config", type=Path, metavar="FILE", help="also check action names against this config's actions"
    )

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
        choices=["raw", "recording"],
        default="raw",
        help="recording: read the series `budgetguard rules` records, falling back to raw per SLO",
    )
    ev.add_argument(
        "--timeout",
        type=_duration,
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
        type=_header,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra HTTP header, repeatable",
    )
    run = commands.add_parser(
        "run",
        help="run the daemon: evaluate on a schedule, remember, export metrics, serve the API",
        description="Run the daemon. Flags override the config file, which overrides BUDGETGUARD_* "
        "environment variables, which override the defaults.",
    )
    run.add_argument("paths", nargs="*", metavar="PATH", help="SLO files or directories (default: slos)")
    run.add_argument("--prometheus", metavar="URL", help="base URL of the metrics source")
    run.add_argument("--config", type=Path, metavar="FILE", help="YAML config file")
    run.add_argument("--db", type=Path, metavar="FILE", help="SQLite file (default budgetguard.db)")
    run.add_argument("--listen", metavar="HOST:PORT", help="HTTP address (default 127.0.0.1:8731)")
    run.add_argument("--interval", metavar="DURATION", help="evaluation interval (default 30s)")

    hist = commands.add_parser(
        "history",
        help="show the stored evaluations of one SLO",
        description="Read the daemon's store: evaluations and verdict changes.",
    )
    hist.add_argument("slo_id", metavar="SERVICE/SLO")
    hist.add_argument(
        "--since",
        type=_duration,
        default=timedelta(days=1),
        metavar="DURATION",
        help="how far back (default 1d)",
    )
    hist.add_argument("--json", action="store_true", help="print the records as a JSON array")
    hist.add_argument("--db", type=Path, metavar="FILE", help="SQLite file (default budgetguard.db)")
    hist.add_argument("--config", type=Path, metavar="FILE", help="YAML config file (for its db setting)")

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
    _store_options(inc)

    pause = commands.add_parser("pause", help="pause the canary guard of one SLO: no new incidents")
    pause.add_argument("slo_id", metavar="SERVICE/SLO")
    pause.add_argument(
        "--for", dest="duration", type=_duration, metavar="DURATION", help="until resumed if unset"
    )
    pause.add_argument("--reason", default="", help="why, for the record")
    pause.add_argument("--by", default=os.environ.get("USER") or "cli", help="who pauses (default $USER)")
    _store_options(pause)
    resume = commands.add_parser("resume", help="resume the canary guard of one SLO")
    resume.add_argument("slo_id", metavar="SERVICE/SLO")
    _store_options(resume)

    rules = commands.add_parser(
        "rules",
        help="write Prometheus recording and alerting rules for the SLOs",
        description="Write recording rules (error ratios per window, request-weighted over the SLO "
        "window), metadata series and multi-window multi-burn-rate alerts for every SLO. Exit 2 on "
        "invalid SLO files.",
    )
    rules.add_argument("paths", nargs="+", metavar="PATH", help="SLO files or directories of them")
    rules.add_argument("-o", "--output", type=Path, metavar="FILE", help="write here (default stdout)")
    rules.add_argument(
        "--format",
        choices=[f.value for f in RuleFormat],
        default=RuleFormat.PROMETHEUS.value,
        help="a rule file {groups: [...]} (default), or a prometheus-operator PrometheusRule",
    )
    rules.add_argument(
        "--interval",
        type=_duration,
        default=DEFAULT_INTERVAL,
        metavar="DURATION",
        help="evaluation interval of every group (default 30s)",
    )
    rules.add_argument(
        "--labels",
        choices=["budgetguard", "sloth"],
        default="budgetguard",
        help="sloth: also record Sloth's series names and labels (slo:sli_error:ratio_rate5m, sloth_id, ...) "
        "so dashboards made for Sloth work unchanged",
    )
    rules.add_argument("--name", default="budgetguard-slos", help="PrometheusRule metadata.name")
    rules.add_argument("--namespace", help="PrometheusRule metadata.namespace")
    rules.add_argument(
        "--label",
        type=_header,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="PrometheusRule metadata label (match your Prometheus' ruleSelector), repeatable",
    )

    convert = commands.add_parser(
        "convert",
        help="print the budgetguard/v1 equivalent of OpenSLO, Sloth CRD or Pyrra SLO files",
        description="Print the native budgetguard/v1 YAML of every OpenSLO v1, Sloth PrometheusServiceLevel "
        "and Pyrra ServiceLevelObjective SLO in the files, for migrating; OpenSLO references resolve across "
        "all files given. Exit 2, printing nothing, when any file is invalid.",
    )
    convert.add_argument("paths", nargs="+", metavar="FILE", help="SLO files or directories of them")

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
        type=_header,
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
        "--timeout", type=_duration, default=timedelta(seconds=10), metavar="DURATION", help="default 10s"
    )
    gate.add_argument("--json", action="store_true", help="print the daemon's answer as JSON")
    return parser


def _store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", type=Path, metavar="FILE", help="SQLite file (default budgetguard.db)")
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="YAML config file (its db, actions and dry_run settings)"
    )


def main(
    argv: Sequence[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 for --help/--version
        return int(exc.code or 0)
    if args.command == "check":
        return _check(args.paths, out, err, args.config)
    if args.command in ("incidents", "pause", "resume"):
        return _control(args, out, err)
    if args.command == "run":
        return _run(args, err)
    if args.command == "history":
        return _history(args, out, err)
    if args.command == "rules":
        return _rules(args, out, err)
    if args.command == "convert":
        return _convert(args.paths, out, err)
    if args.command == "gate":
        return _gate(args, out, err)
    return _eval(args, out, err)


def _gate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
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


def _run(args: argparse.Namespace, err: TextIO) -> int:
    overrides: dict[str, Any] = {
        "slo_paths": args.paths or None,
        "db": args.db,
        "listen": args.listen,
        "interval": args.interval,
    }
    if args.prometheus:
        overrides["prometheus"] = {"url": args.prometheus}
    try:
        settings = load_settings(args.config, overrides)
    except ConfigError as exc:
        print(exc, file=err)
        return EXIT_SPEC
    configure_logging(settings.log_level, settings.log_json)
    return asyncio.run(run(settings))


def _store_settings(args: argparse.Namespace, err: TextIO) -> Settings | None:
    """The settings of a command that reads the daemon's store, or None (told on ``err``) without one."""
    try:
        settings = load_settings(args.config, {"db": args.db})
    except ConfigError as exc:
        print(exc, file=err)
        return None
    if not settings.db.exists():
        print(f"no store at {settings.db}; run the daemon first or give --db", file=err)
        return None
    return settings


def _history(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    settings = _store_settings(args, err)
    if settings is None:
        return EXIT_SPEC
    since = datetime.now(tz=UTC) - args.since
    with Store(settings.db) as store:
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


def _report_problems(loaded: LoadResult, err: TextIO) -> None:
    for problem in loaded.problems:
        print(problem, file=err)
    print(f"{len(loaded.problems)} problem(s) in {len(loaded.files)} file(s)", file=err)


def _control(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    settings = _store_settings(args, err)
    if settings is None:
        return EXIT_SPEC
    now = datetime.now(tz=UTC)
    with Store(settings.db) as store:
        control = Control(store, delivery_of(settings))
        try:
            result = _control_op(control, args, now)
        except ControlError as exc:
            print(exc, file=err)
            return EXIT_SPEC
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
    return EXIT_OK


def _control_op(control: Control, args: argparse.Namespace, now: datetime) -> Any:
    if args.command == "pause":
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


def _rules(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    loaded = load_paths(args.paths)
    if not loaded.ok:
        _report_problems(loaded, err)
        return EXIT_SPEC
    try:
        document = render_rules(
            loaded.slos,
            args.format,
            args.interval,
            name=args.name,
            namespace=args.namespace,
            labels=dict(args.label),
            extra=sloth_rules if args.labels == "sloth" else None,
        )
    except ValueError as exc:  # two SLOs whose rule group names collide
        print(exc, file=err)
        return EXIT_SPEC
    header = f"# Generated by budgetguard {__version__} `budgetguard rules` from {', '.join(args.paths)}.\n"
    text = header + "# Do not edit: change the SLO files and generate again.\n" + _yaml(document)
    if args.output is None:
        out.write(text)
        return EXIT_OK
    args.output.write_text(text, encoding="utf-8")
    print(
        f"{len(loaded.slos)} SLO(s) from {len(loaded.files)} file(s): rules written to {args.output}",
        file=out,
    )
    return EXIT_OK


def _yaml(document: Any) -> str:
    """Block YAML, keys in the generator's order, multi-line PromQL as literal blocks (|)."""

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)

    Dumper.add_representer(str, text)
    return yaml.dump(document, Dumper=Dumper, sort_keys=False, width=2**16, allow_unicode=True)


def _check(paths: Sequence[str], out: TextIO, err: TextIO, config: Path | None = None) -> int:
    actions = None
    if config is not None:
        try:
            actions = known_actions(load_settings(config))
        except ConfigError as exc:
            print(exc, file=err)
            return EXIT_SPEC
    loaded = load_paths(paths, actions)
    if not loaded.ok:
        _report_problems(loaded, err)
        return EXIT_SPEC
    for note in loaded.notes:
        print(f"note: {note}", file=out)
    print(f"{len(loaded.slos)} SLO(s) in {len(loaded.files)} file(s): all valid", file=out)
    return EXIT_OK


def _convert(paths: Sequence[str], out: TextIO, err: TextIO) -> int:
    loaded, translated = translate_paths(paths)
    if not loaded.ok:
        _report_problems(loaded, err)
        return EXIT_SPEC
    # A Sloth prometheus/v1 document converts to the same document as budgetguard/v1, which reads every
    # Sloth field the same way; native documents need nothing.
    sloth = [(source, d) for source, d in loaded.documents if d.version == SLOTH_VERSION]
    if not translated.translations and not sloth:
        print(
            "nothing to convert: no OpenSLO, Sloth (prometheus/v1 or CRD) or Pyrra SLO in the files given",
            file=err,
        )
        return EXIT_OK
    lines = [f"# budgetguard/v1 written by budgetguard {__version__} `budgetguard convert` {' '.join(paths)}"]
    lines += [f"# note: {note}" for note in loaded.notes]
    documents = [
        f"# Sloth prometheus/v1 service {document.service!r} in {source}\n"
        f"{_yaml(formats.native_data(document.model_copy(update={'version': NATIVE_VERSION})))}"
        for source, document in sloth
    ]
    documents += [
        f"# {t.describe} in {t.source}\n{_yaml(formats.native_data(t.document))}"
        for t in translated.translations
    ]
    out.write("\n".join(lines) + "\n" + "---\n".join(documents))
    return EXIT_OK


def _eval(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    loaded = load_paths(args.paths)
    if not loaded.ok:
        _report_problems(loaded, err)
        return EXIT_SPEC
    token = None
    if args.bearer_token_file is not None:
        try:
            token = args.bearer_token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            print(f"cannot read --bearer-token-file: {exc}", file=err)
            return EXIT_SPEC
    config = PrometheusConfig(
        url=args.prometheus,
        timeout=args.timeout,
        max_concurrency=args.max_concurrency,
        tenant=args.tenant,
        bearer_token=token,
        ca_file=args.ca_file,
        headers=dict(args.header),
    )
    at = args.at or datetime.now(tz=UTC)
    evaluations = asyncio.run(_evaluate(config, loaded, at, args.query_mode))
    if args.json:
        json.dump([to_record(ev) for ev in evaluations], out, indent=2)
        out.write("\n")
    else:
        print(table(evaluations), file=out)
    return exit_code(evaluations)


async def _evaluate(
    config: PrometheusConfig, loaded: LoadResult, at: datetime, query_mode: str = "raw"
) -> list[Evaluation]:
    async with PrometheusSource(config) as source:
        engine = RecordingEngine(source) if query_mode == "recording" else Engine(source)
        memory.settle()
        with memory.collection_paused():
            return await engine.evaluate_all(loaded.slos, at)


def exit_code(evaluations: Sequence[Evaluation]) -> int:
    verdicts = {ev.verdict for ev in evaluations} | {c.verdict for ev in evaluations for c in ev.canaries}
    if Verdict.BURNING in verdicts:
        return EXIT_BURNING
    if Verdict.ERROR in verdicts:
        return EXIT_SOURCE
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
