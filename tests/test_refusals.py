"""Careless and hostile input is refused with exit 2 and a message naming the file, field and fix.

Issue 13 tried budgetguard as a new user would and with a fuzz harness; each case below was a
traceback, a wrong answer or a silent acceptance. The table runs every one through the real command
line (``main``) on real files and asserts the exit code, the message and that no traceback shows.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from budgetguard.cli import EXIT_SPEC, main
from budgetguard.store import Store

NATIVE = """\
version: budgetguard/v1
service: shop
slos:
  - name: availability
    objective: {objective}
    window: {window}
    min_events: {min_events}
    sli:
      events:
        error_query: {error_query}
        total_query: sum(rate(http_requests_total[{{{{.window}}}}]))
    tiers:
      - {{severity: page, long_window: 1h, short_window: 5m, burn_rate: {burn_rate}}}
"""

CANARY = """\
version: budgetguard/v1
service: shop
slos:
  - name: canary
    objective: 99.9
    sli:
      events:
        error_query: sum by (version) (rate(e[{{.window}}]))
        total_query: sum by (version) (rate(t[{{.window}}]))
    canary: {label: version, on_burn: [abort-shop]}
"""


def native(**values: str) -> str:
    fields = {
        "objective": "99.9",
        "window": "30d",
        "min_events": "1",
        "error_query": "sum(rate(http_requests_total{code=~'5..'}[{{.window}}]))",
        "burn_rate": "14.4",
        **values,
    }
    return NATIVE.format(**fields)


@dataclass(frozen=True)
class Case:
    files: dict[str, str]  # name -> content, written in the working directory
    argv: list[str]
    fragments: list[str]  # each must be in stderr
    prepare: Callable[[Path], None] | None = None


def corrupt_store(root: Path) -> None:
    (root / "bg.db").write_bytes(b"SQLite format 3\x00" + os.urandom(4000))


def empty_store(root: Path) -> None:
    Store(root / "bg.db").close()


CASES = {
    "an objective written as a ratio asks whether 99.9 was meant": Case(
        {"s.yaml": native(objective="0.999")},
        ["check", "s.yaml"],
        ["s.yaml:5", "slos[0].objective", "did you mean 99.9?"],
    ),
    "a PromQL syntax error names file, line, SLO and position": Case(
        {"s.yaml": native(error_query="'sum(rate(x[{{.window}}])'")},
        ["check", "s.yaml"],
        [
            "s.yaml:10",
            "slo 'availability'",
            "slos[0].sli.events.error_query",
            "column 4 of the query",
            "unclosed left parenthesis",
        ],
    ),
    "an unknown PromQL function is pointed at by name": Case(
        {"s.yaml": native(error_query="'sum(rte(x[{{.window}}]))'")},
        ["check", "s.yaml"],
        ["column 5 of the query (at 'rte(", "unknown function with name 'rte'"],
    ),
    "a latency selector that is not label matchers": Case(
        {
            "s.yaml": "version: budgetguard/v1\nservice: a\nslos:\n- name: x\n  objective: 99\n"
            '  sli: {latency: {metric: h, selector: \'job="a",, b="c"\', threshold_seconds: 0.5}}\n'
        },
        ["check", "s.yaml"],
        ["s.yaml:6", "slos[0].sli.latency.selector", "column 9"],
    ),
    "YAML nested a thousand deep": Case(
        {"s.yaml": "version: budgetguard/v1\nservice: a\nslos: " + "[" * 1000 + "]" * 1000 + "\n"},
        ["check", "s.yaml"],
        ["s.yaml: the YAML is nested too deeply"],
    ),
    "an integer of more than 4,300 digits": Case(
        {"s.yaml": native(min_events="1" + "0" * 5000)},
        ["check", "s.yaml"],
        ["s.yaml:7", "cannot be read as a number", "4300 digits"],
    ),
    "a window longer than any duration Prometheus accepts": Case(
        {"s.yaml": native(window="99999999999999999999d")},
        ["check", "s.yaml"],
        ["s.yaml:6", "slos[0].window", "longest duration Prometheus accepts"],
    ),
    "an infinite burn rate": Case(
        {"s.yaml": native(burn_rate=".inf")},
        ["check", "s.yaml"],
        ["s.yaml:13", "slos[0].tiers[0].burn_rate", "finite number"],
    ),
    "a burn rate no error ratio can reach can never fire": Case(
        {"s.yaml": native(burn_rate="1e308")},
        ["check", "s.yaml"],
        ["s.yaml:13", "slos[0].tiers[0].burn_rate", "can never fire", "highest burn rate is 1,000x"],
    ),
    "a min_events no window can hold": Case(
        {"s.yaml": native(min_events="1e30")},
        ["check", "s.yaml"],
        ["s.yaml:7", "slos[0].min_events", "nothing could ever fire"],
    ),
    "a Sloth CRD whose spec is not a mapping": Case(
        {
            "s.yaml": "apiVersion: sloth.slok.dev/v1\nkind: PrometheusServiceLevel\nmetadata: {name: x}\n"
            "spec: 5\n"
        },
        ["check", "s.yaml"],
        ["s.yaml:4", "field 'spec': must be a mapping"],
    ),
    "a Sloth CRD whose slos is not a list": Case(
        {
            "s.yaml": "apiVersion: sloth.slok.dev/v1\nkind: PrometheusServiceLevel\nmetadata: {name: x}\n"
            "spec: {service: a, slos: 5}\n"
        },
        ["check", "s.yaml"],
        ["s.yaml:4", "field 'spec.slos': must be a list"],
    ),
    "a Pyrra SLO whose spec is not a mapping": Case(
        {
            "s.yaml": "apiVersion: pyrra.dev/v1alpha1\nkind: ServiceLevelObjective\n"
            "metadata: {name: x, namespace: shop}\nspec: [1]\n"
        },
        ["check", "s.yaml"],
        ["s.yaml:4", "field 'spec': must be a mapping"],
    ),
    "check refuses an undeclared action as run would, without a config file": Case(
        {"s.yaml": CANARY},
        ["check", "s.yaml"],
        ["checked against no config file", "action 'abort-shop' is not declared", "s.yaml:10"],
    ),
    "check reads ./budgetguard.yaml as run does, and says so": Case(
        {"s.yaml": CANARY, "budgetguard.yaml": "actions:\n  abort-other: {type: webhook, url: http://h/}\n"},
        ["check", "s.yaml"],
        ["checked against config file budgetguard.yaml", "(declared: abort-other)"],
    ),
    "a config file nested too deeply": Case(
        {"s.yaml": native(), "c.yaml": "actions: " + "[" * 1000 + "]" * 1000 + "\n"},
        ["check", "s.yaml", "--config", "c.yaml"],
        ["c.yaml: the YAML is nested too deeply"],
    ),
    "a Prometheus URL without a scheme": Case(
        {"s.yaml": native()},
        ["eval", "s.yaml", "--prometheus", "localhost:9090"],
        ["--prometheus", "with its scheme, e.g. http://localhost:9090"],
    ),
    "a Prometheus URL without a scheme in the config of run": Case(
        {"s.yaml": native(), "c.yaml": "prometheus: {url: 'localhost:9090'}\n"},
        ["run", "s.yaml", "--config", "c.yaml", "--db", "bg.db", "--listen", "127.0.0.1:0"],
        ["setting 'prometheus.url'", "e.g. http://localhost:9090"],
    ),
    "history on a file that is not a database": Case(
        {},
        ["history", "shop/availability", "--db", "bg.db"],
        ["budgetguard history: cannot open the budgetguard database bg.db", "not a database"],
        prepare=corrupt_store,
    ),
    "pause on a file that is not a database": Case(
        {},
        ["pause", "shop/availability", "--db", "bg.db"],
        ["budgetguard pause: cannot open the budgetguard database bg.db"],
        prepare=corrupt_store,
    ),
    "pause of an SLO the config's SLO files do not declare": Case(
        {"slos/s.yaml": native()},
        ["pause", "shop/nope", "--db", "bg.db"],
        ["no SLO 'shop/nope' is declared, so there is no guard to pause (declared: shop/availability)"],
        prepare=empty_store,
    ),
    "pause for longer than a year": Case(
        {"slos/s.yaml": native()},
        ["pause", "shop/availability", "--for", "400d", "--db", "bg.db"],
        ["a pause is at most 366 days"],
        prepare=empty_store,
    ),
    "pause with neither an SLO nor --list": Case(
        {},
        ["pause", "--db", "bg.db"],
        ["pause needs SERVICE/SLO, or --list for the pauses in force"],
        prepare=empty_store,
    ),
    "history with a --since longer than Prometheus durations": Case(
        {},
        ["history", "shop/availability", "--db", "bg.db", "--since", "999999999999d"],
        ["--since", "longest duration Prometheus accepts"],
    ),
    "rules written to a directory instead of a file": Case(
        {"s.yaml": native(), "out/keep": ""},
        ["rules", "s.yaml", "-o", "out"],
        ["cannot write the rules to out"],
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_careless_input_is_refused_with_exit_2_and_a_message(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BUDGETGUARD_CONFIG", raising=False)
    for name, text in case.files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    if case.prepare is not None:
        case.prepare(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    code = main(case.argv, stdout=out, stderr=err)
    message = err.getvalue()
    assert code == EXIT_SPEC, message
    assert "Traceback" not in message
    for fragment in case.fragments:
        assert fragment in message, message


def test_check_with_the_config_that_declares_the_actions_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BUDGETGUARD_CONFIG", str(tmp_path / "named.yaml"))
    (tmp_path / "s.yaml").write_text(CANARY)
    (tmp_path / "named.yaml").write_text("actions:\n  abort-shop: {type: webhook, url: http://h/}\n")
    out, err = io.StringIO(), io.StringIO()
    assert main(["check", "s.yaml"], stdout=out, stderr=err) == 0, err.getvalue()
    assert f"checked against config file {tmp_path / 'named.yaml'}" in err.getvalue()
    assert "1 SLO(s) in 1 file(s): all valid" in out.getvalue()


def test_check_without_paths_reads_the_configs_slo_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BUDGETGUARD_CONFIG", raising=False)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "s.yaml").write_text(native())
    (tmp_path / "budgetguard.yaml").write_text("slo_paths: [mine]\n")
    out = io.StringIO()
    assert main(["check"], stdout=out, stderr=io.StringIO()) == 0
    assert "1 SLO(s) in 1 file(s)" in out.getvalue()


def test_the_readme_run_line_finds_the_checkouts_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """`budgetguard run slos/ ...` from a checkout: ./budgetguard.yaml declares what slos/ names."""
    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    monkeypatch.delenv("BUDGETGUARD_CONFIG", raising=False)
    err = io.StringIO()
    assert main(["check", "slos/"], stdout=io.StringIO(), stderr=err) == 0, err.getvalue()
    assert "checked against config file budgetguard.yaml" in err.getvalue()


def test_pause_list_shows_the_pauses_in_force(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BUDGETGUARD_CONFIG", raising=False)
    (tmp_path / "slos").mkdir()
    (tmp_path / "slos" / "s.yaml").write_text(native())
    empty_store(tmp_path)
    out = io.StringIO()
    assert main(["pause", "--list", "--db", "bg.db"], stdout=out, stderr=io.StringIO()) == 0
    assert out.getvalue() == "no guard is paused\n"
    args = [
        "pause",
        "shop/availability",
        "--for",
        "1h",
        "--reason",
        "game day",
        "--by",
        "ops",
        "--db",
        "bg.db",
    ]
    assert main(args, stdout=io.StringIO(), stderr=io.StringIO()) == 0
    out = io.StringIO()
    assert main(["pause", "--list", "--db", "bg.db"], stdout=out, stderr=io.StringIO()) == 0
    line = out.getvalue()
    assert (
        line.startswith("shop/availability  paused ") and " by ops  until 20" in line and "game day" in line
    )
    out = io.StringIO()
    assert main(["pause", "--list", "--json", "--db", "bg.db"], stdout=out, stderr=io.StringIO()) == 0
    assert [p["slo_id"] for p in json.loads(out.getvalue())] == ["shop/availability"]
