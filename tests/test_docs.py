"""The reference pages document everything the code offers, and every pointer into the docs resolves.

Each list is read from the code, never written here: the CLI's subparsers and their options
(``build_parser``), the fields of ``Settings`` and its nested models, the metric families a real
``Exporter`` exposes, the routes of the Starlette app ``create_app`` builds, and the action types of the
``ActionConfig`` union with their fields. A command, setting, metric, route or action type added
tomorrow fails here until its reference page names it. Docstrings, messages and the deploy examples may
point at the docs (``docs/reference/records.md#...``) or at a README section (``README, "Install"``);
each pointer must name a page, anchor or heading that exists.

Every check is a function from (what the code has, what a page says) to what is missing, so the tests
below also feed each one a fake undocumented name and see it reported: a check that cannot fail proves
nothing.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route

from budgetguard import __version__
from budgetguard.actions import ActionConfig
from budgetguard.cli import build_parser
from budgetguard.config import Settings
from budgetguard.core import policy
from budgetguard.core.canary import Counts, judge_versions
from budgetguard.core.policy import Evaluation, Observation
from budgetguard.core.verdict import Verdict
from budgetguard.exporter import Exporter
from budgetguard.loader import load_text
from budgetguard.web import create_app
from tests.helpers import slo_from

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference"


def page(name: str) -> str:
    return (REFERENCE / name).read_text(encoding="utf-8")


def reference() -> str:
    """Every reference page, one after the other: a name may be documented on any of them (a feature's
    own page, say), and each page opens with a level-1 heading, so no section runs into the next page."""
    return "\n\n".join(p.read_text(encoding="utf-8") for p in sorted(REFERENCE.glob("*.md")))


def slug(heading: str) -> str:
    """The anchor MkDocs (Python-Markdown's toc) gives a heading: lower case, punctuation dropped."""
    text = re.sub(r"[^\w\s-]", "", heading.strip().lower())
    return re.sub(r"[-\s]+", "-", text).strip("-")


def headings(markdown: str) -> list[tuple[int, str]]:
    """(level, title) of every ATX heading outside fenced code blocks."""
    found, fenced = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)):
            found.append((len(match[1]), match[2]))
    return found


def section(markdown: str, title: str) -> str | None:
    """The text under the heading ``title``, up to the next heading of the same or a higher level."""
    lines = markdown.splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"^(#{1,6})\s+(.*?)\s*$", line)
        if match and match[2] == title:
            level, body = len(match[1]), []
            for rest in lines[i + 1 :]:
                nxt = re.match(r"^(#{1,6})\s", rest)
                if nxt and len(nxt[1]) <= level:
                    break
                body.append(rest)
            return "\n".join(body)
    return None


def mentions(text: str, word: str) -> bool:
    """``word`` appears as a whole token (``--for`` is not found in ``--format``)."""
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


def table_rows(markdown: str) -> set[str]:
    """The backticked names that open a table row: ``| `name` |`` or ``| `GET /path` |``."""
    return {m[1] for m in re.finditer(r"^\|\s*`([^`]+)`", markdown, re.MULTILINE)}


# --- the command line -----------------------------------------------------------------------------


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    # argparse keeps its subparsers in a private action; reading it is the documented way to list them.
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def options(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string (``-o``, ``--output``) and every choice of a positional (``ack``, ``show``)."""
    found: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if action.option_strings:
            found.extend(action.option_strings)
        elif action.choices is not None and not isinstance(action, argparse._SubParsersAction):
            found.extend(str(choice) for choice in action.choices)
    return found


def undocumented_cli(parser: argparse.ArgumentParser, markdown: str) -> list[str]:
    """``budgetguard NAME`` without its own section, and options its section does not mention."""
    missing = [opt for opt in options(parser) if not mentions(markdown, opt)]
    for name, sub in subcommands(parser).items():
        body = section(markdown, f"`budgetguard {name}`")
        if body is None:
            missing.append(name)
            continue
        missing.extend(f"{name} {opt}" for opt in options(sub) if not mentions(body, opt))
    return missing


def test_every_command_and_option_of_the_cli_is_in_the_cli_reference() -> None:
    parser = build_parser()
    assert len(subcommands(parser)) >= 10  # the parser was read, not an empty list
    assert undocumented_cli(parser, reference()) == []


# --- settings -------------------------------------------------------------------------------------


def setting_names(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    """Every field, dotted where it nests (``prometheus.url``); ``actions`` is the actions page's job."""
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        yield dotted
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            yield from setting_names(nested, f"{dotted}.")


def undocumented_settings(model: type[BaseModel], markdown: str) -> list[str]:
    rows = table_rows(markdown)
    return [name for name in setting_names(model) if name not in rows]


def test_every_setting_has_a_row_in_the_configuration_reference() -> None:
    names = list(setting_names(Settings))
    assert "prometheus.url" in names and "delivery.backoff_base" in names  # nested models are walked
    assert undocumented_settings(Settings, reference()) == []


# --- metrics --------------------------------------------------------------------------------------

CANARY_SLO = """
version: budgetguard/v1
service: checkout
slos:
  - name: availability
    objective: 99.9
    sli:
      events:
        error_query: sum by (version) (rate(http_requests_total{code=~"5.."}[{{.window}}]))
        total_query: sum by (version) (rate(http_requests_total[{{.window}}]))
    canary: {label: version, windows: [1m]}
"""
CALENDAR_SLO = """
version: budgetguard/v1
service: billing
slos:
  - name: monthly
    objective: 99.9
    window: {calendar: month, timezone: Europe/Berlin}
    sli:
      events:
        error_query: sum(rate(http_requests_total{code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total[{{.window}}]))
"""


class _View:
    def __init__(self, evaluations: Sequence[Evaluation]) -> None:
        self._evaluations = evaluations

    def latest_evaluations(self) -> Sequence[Evaluation]:
        return self._evaluations

    def config_errors(self) -> int:
        return 0


class _Health:
    """The daemon's view of its own health: an incident open, a guard paused, the store and config fine."""

    def open_incidents(self) -> Mapping[tuple[str, str], int]:
        return {("checkout", "availability"): 1}

    def paused(self) -> Sequence[tuple[str, str]]:
        return [("checkout", "availability")]

    def store_problem(self) -> str | None:
        return None

    def config_file_problems(self) -> int:
        return 0


def _busy_exporter() -> Exporter:
    """An exporter that has seen everything: a canary, a calendar window, recording-rule mode, cycles,
    errors, deliveries, and the daemon's health (the series a test's or ``eval``'s exporter, without one,
    leaves out)."""
    at = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    slo = slo_from(CANARY_SLO)
    assert slo.canary is not None
    counts = {w: {"v1": Counts(0, 60_000), "v2": Counts(30, 300)} for w in slo.canary.windows}
    canaries = judge_versions(slo.canary, slo.error_budget, counts, {"v1": 1e6})
    observations = {w: Observation(w, 0.02, 1e4) for w in slo.windows()}
    evaluation = policy.evaluate(slo, observations, at, canaries=canaries, query_mode="recording")
    calendar = slo_from(CALENDAR_SLO)
    monthly = policy.evaluate(calendar, {w: Observation(w, 0.0005, 1e4) for w in calendar.windows()}, at)
    exporter = Exporter(_View([evaluation, monthly]), version=__version__, health=_Health())
    exporter.observe_cycle(0.5, 1)
    exporter.count_source_error("timeout")
    exporter.count_delivery("abort", "delivered")
    exporter.count_incident("checkout", "availability", "opened")
    exporter.observe_loop_lag(0.003)  # the daemon measures its event loop's lag (#14)
    return exporter


# The name a reader sees and queries: counters and info metrics expose their family with a suffix.
_SUFFIX = {"counter": "_total", "info": "_info"}


def exported_metrics(exporter: Exporter) -> set[str]:
    """Family names from the OpenMetrics exposition, which keeps a counter's ``_created`` in its family."""
    body, _ = exporter.render("application/openmetrics-text")
    return {f.name + _SUFFIX.get(f.type, "") for f in text_string_to_metric_families(body.decode())}


def undocumented_metrics(exported: set[str], markdown: str) -> list[str]:
    return sorted(exported - table_rows(markdown))


def test_every_exported_metric_has_a_row_in_the_metrics_reference() -> None:
    exported = exported_metrics(_busy_exporter())
    # the fixture reaches the canary, recording-mode and counter families, not only the basic ones
    for name in (
        "budgetguard_slo_canary_burn_rate_limit",
        "budgetguard_slo_recording_fallback",
        "budgetguard_action_deliveries_total",
        "budgetguard_build_info",
        "budgetguard_source_up",
        "budgetguard_canary_guard_paused",
        "budgetguard_slo_period_end_timestamp_seconds",
    ):
        assert name in exported, name
    assert undocumented_metrics(exported, reference()) == []


def test_the_metrics_reference_lists_no_metric_budgetguard_does_not_export() -> None:
    documented = {row for row in table_rows(page("metrics.md")) if row.startswith("budgetguard_")}
    assert documented - exported_metrics(_busy_exporter()) == set()


# --- HTTP routes ----------------------------------------------------------------------------------


class _NoView:
    """create_app only stores its collaborators; listing routes calls none of them."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"listing routes called {name}")


def routes(items: Sequence[BaseRoute], prefix: str = "") -> Iterator[str]:
    """``METHOD /path`` of every route, Mounts followed (HEAD, which Starlette adds to GET, left out)."""
    for item in items:
        if isinstance(item, Mount):
            yield from routes(item.routes, prefix + item.path)
        elif isinstance(item, Route):
            for method in sorted((item.methods or {"GET"}) - {"HEAD"}):
                yield f"{method} {prefix}{item.path}"


def app_routes(app: Starlette) -> list[str]:
    return list(routes(app.routes))


def undocumented_routes(found: Sequence[str], markdown: str) -> list[str]:
    # A row may carry the query string: `GET /api/v1/incidents?state=...`.
    documented = {row.split("?", 1)[0] for row in table_rows(markdown)}
    return [route for route in found if route not in documented]


def test_every_route_of_the_http_surface_has_a_row_in_the_http_api_reference() -> None:
    found = app_routes(create_app(_NoView(), _NoView()))
    assert "GET /metrics" in found and "POST /gates/flagger/rollback" in found
    assert undocumented_routes(found, reference()) == []


# --- action types ---------------------------------------------------------------------------------


def action_types() -> dict[str, type[BaseModel]]:
    """Each member of the ``ActionConfig`` union by its ``type`` literal."""
    union = get_args(ActionConfig)[0]
    return {get_args(model.model_fields["type"].annotation)[0]: model for model in get_args(union)}


def undocumented_actions(types: dict[str, type[BaseModel]], markdown: str) -> list[str]:
    missing = []
    for name, model in types.items():
        body = section(markdown, f"`{name}`")
        if body is None:
            missing.append(name)
            continue
        rows = table_rows(body)
        missing.extend(
            f"{name}.{field}" for field in model.model_fields if field != "type" and field not in rows
        )
    return missing


def test_every_action_type_and_its_fields_are_in_the_actions_reference() -> None:
    types = action_types()
    assert {"argo-rollouts", "istio", "webhook"} <= set(types)
    assert undocumented_actions(types, reference()) == []


# --- pointers into the docs -----------------------------------------------------------------------

# `docs/reference/records.md` or `docs/reference/records.md#json-records`: a page of this site's four
# parts (other projects' docs/ folders, cited in comments, are not ours to check).
DOCS_POINTER = re.compile(
    r"docs/(index\.md|(?:tutorial|how-to|reference|explanation)/[\w./-]+\.md)(?:#([\w-]+))?"
)
# README, "Install" / README's "Install" / see README, 'Install'
README_POINTER = re.compile(r"README(?:'s)?,?\s+[\"']([^\"'\n]+)[\"']")


def broken_pointers(text: str, docs: Path, readme: str) -> list[str]:
    """Every pointer in ``text`` at a docs page, anchor or README section that does not exist."""
    broken = []
    for match in DOCS_POINTER.finditer(text):
        target = docs / match[1]
        anchors = (
            {slug(t) for _, t in headings(target.read_text(encoding="utf-8"))} if target.is_file() else set()
        )
        if not target.is_file() or (match[2] and match[2] not in anchors):
            broken.append(match[0])
    titles = {title.strip("`") for _, title in headings(readme)} | {title for _, title in headings(readme)}
    broken.extend(match[0] for match in README_POINTER.finditer(text) if match[1] not in titles)
    return broken


def sources() -> Iterator[Path]:
    """The package, the lab and the deploy examples (where docstrings, messages and comments point), and
    the README and changelog, which link into the docs."""
    yield ROOT / "README.md"
    yield ROOT / "CHANGELOG.md"
    for folder, patterns in (("budgetguard", ("*.py",)), ("lab", ("*.py",)), ("deploy", ("*.md", "*.yaml"))):
        for pattern in patterns:
            yield from sorted((ROOT / folder).rglob(pattern))


def test_no_docstring_message_or_example_points_at_a_section_that_does_not_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    problems = [
        f"{path.relative_to(ROOT)}: {pointer}"
        for path in sources()
        for pointer in broken_pointers(path.read_text(encoding="utf-8"), DOCS, readme)
    ]
    assert problems == []


def test_the_pointers_that_used_to_dangle_now_name_docs_pages() -> None:
    # records.py named a README section "JSON output" and server.py (now web/api.py) one called "HTTP API";
    # neither existed.
    records = (ROOT / "budgetguard" / "core" / "records.py").read_text(encoding="utf-8")
    server = (ROOT / "budgetguard" / "web" / "api.py").read_text(encoding="utf-8")
    assert "docs/reference/records.md" in records and "docs/reference/http-api.md" in server
    assert not README_POINTER.search(records) and not README_POINTER.search(server)


# Repository files the pages name (`budgetguard/core/rules.py`, `deploy/flagger/canary.yaml`): a module
# that moves leaves the page pointing at nothing.
REPO_PATH = re.compile(
    r"(?<![\w/.~-])((?:budgetguard|lab|tests|bench|deploy|slos)/[\w./-]*\.(?:py|ya?ml|json|md))"
)


def missing_files(text: str, root: Path) -> list[str]:
    """Repository files the prose names that do not exist. Code blocks are left out: they show a user's
    own files too (a kustomization listing ``slos/search.yaml`` in the user's directory)."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)
    return sorted({m[1] for m in REPO_PATH.finditer(prose) if not (root / m[1]).exists()})


def test_every_repository_file_the_docs_name_exists() -> None:
    pages = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
    problems = [
        f"{p.relative_to(ROOT)}: {f}"
        for p in pages
        for f in missing_files(p.read_text(encoding="utf-8"), ROOT)
    ]
    assert problems == []


# --- examples -------------------------------------------------------------------------------------


def slo_examples() -> Iterator[pytest.ParameterSet]:
    """Every whole native SLO file shown in a ```yaml block (fragments, with ``[...]``, are left out)."""
    for path in [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        for i, match in enumerate(
            re.finditer(r"```yaml\n(version: budgetguard/v1\n.*?)```", text, re.DOTALL)
        ):
            if "[...]" not in match[1]:
                yield pytest.param(match[1], id=f"{path.relative_to(ROOT)} #{i + 1}")


@pytest.mark.parametrize("text", list(slo_examples()))
def test_every_whole_slo_file_the_docs_show_loads(text: str) -> None:
    slos, problems = load_text(text, "example.yaml")
    assert problems == [] and slos


def test_the_docs_show_whole_slo_files() -> None:
    assert len(list(slo_examples())) >= 3  # README, tutorial, SLO format reference


def test_the_configuration_example_is_valid_settings() -> None:
    text = page("configuration.md")
    example = re.search(r"```yaml\n(prometheus:\n.*?)```", text, re.DOTALL)
    assert example is not None
    settings = Settings(**yaml.safe_load(example[1]))
    assert settings.prometheus.tenant == "team-a" and settings.retention_raw.days == 1


# --- each check can fail --------------------------------------------------------------------------


def _parser_with_an_undocumented_command() -> argparse.ArgumentParser:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands.add_parser("frobnicate").add_argument("--wobble")
    return parser


def _parser_with_an_undocumented_flag() -> argparse.ArgumentParser:
    parser = build_parser()
    subcommands(parser)["eval"].add_argument("--wobble")
    return parser


class _Wobble(BaseModel):
    speed: int = 1


class _SettingsWithMore(Settings):
    wobble: _Wobble = _Wobble()


class _FakeActionConfig(BaseModel):
    type: str
    wobble: int


class _FakeWebhookConfig(_FakeActionConfig):
    url: str


@pytest.mark.parametrize(
    "check, expected",
    [
        pytest.param(
            lambda: undocumented_cli(_parser_with_an_undocumented_command(), reference()),
            ["frobnicate"],
            id="a command without a section",
        ),
        pytest.param(
            lambda: undocumented_cli(_parser_with_an_undocumented_flag(), reference()),
            ["eval --wobble"],
            id="a flag its command's section does not mention",
        ),
        pytest.param(
            lambda: undocumented_settings(_SettingsWithMore, reference()),
            ["wobble", "wobble.speed"],
            id="a setting and its nested field",
        ),
        pytest.param(
            lambda: undocumented_metrics(
                exported_metrics(_busy_exporter()) | {"budgetguard_wobbles_total"}, reference()
            ),
            ["budgetguard_wobbles_total"],
            id="a metric",
        ),
        pytest.param(
            lambda: undocumented_routes(
                [*app_routes(create_app(_NoView(), _NoView())), "DELETE /api/v1/wobble"], reference()
            ),
            ["DELETE /api/v1/wobble"],
            id="a route",
        ),
        pytest.param(
            lambda: undocumented_actions({**action_types(), "wobble": _FakeActionConfig}, reference()),
            ["wobble"],
            id="an action type",
        ),
        pytest.param(
            lambda: undocumented_actions(
                {"webhook": _FakeWebhookConfig},
                reference(),
            ),
            ["webhook.wobble"],
            id="a field of an action type",
        ),
        pytest.param(
            lambda: missing_files(
                "see `budgetguard/server.py` and `deploy/flagger/canary.yaml`\n```yaml\n- slos/mine.yaml\n```\n",
                ROOT,
            ),
            ["budgetguard/server.py"],
            id="a module the docs name that has moved",
        ),
        pytest.param(
            lambda: broken_pointers(
                'see README, "JSON output" and docs/reference/records.md#no-such-anchor and docs/how-to/nope.md',
                DOCS,
                (ROOT / "README.md").read_text(encoding="utf-8"),
            ),
            ['README, "JSON output"', "docs/reference/records.md#no-such-anchor", "docs/how-to/nope.md"],
            id="a pointer at a README section, an anchor and a page that do not exist",
        ),
    ],
)
def test_each_check_reports_what_is_missing(check: Any, expected: list[str]) -> None:
    assert sorted(check()) == sorted(expected)


def test_a_real_pointer_passes() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    text = 'README, "Install" and docs/reference/records.md#json-records and docs/how-to/canary.md'
    assert broken_pointers(text, DOCS, readme) == []


def test_slugs_follow_mkdocs_anchors() -> None:
    assert slug("`budgetguard eval`") == "budgetguard-eval"
    assert slug("Argo's `data`") == "argos-data"
    assert slug("Latency held for a duration") == "latency-held-for-a-duration"


def test_the_canary_fixture_judges_a_burning_version() -> None:
    # the metric check relies on a canary being judged; a fixture that judged nothing would hide families
    slo = slo_from(CANARY_SLO)
    assert slo.canary is not None
    counts = {w: {"v1": Counts(0, 60_000), "v2": Counts(30, 300)} for w in slo.canary.windows}
    [v2] = judge_versions(slo.canary, slo.error_budget, counts, {"v1": 1e6})
    assert v2.value == "v2" and v2.verdict is Verdict.BURNING
