"""Who is affected: the breakdown query, its reading, and its way into incidents and notifications.

The query is built from the SLI's own error query; its answer is read for one version; the result is
stored on the incident (migration 3), and notify deliveries held for it carry it when they go out,
while the halt is never held.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from budgetguard import cycle
from budgetguard.actions import pagerduty, slack, webhook
from budgetguard.cli import main
from budgetguard.config import Settings, known_actions
from budgetguard.control import Control
from budgetguard.core import affected
from budgetguard.core.errors import QueryError
from budgetguard.core.guard import Decision, Delivery, OutboxEntry, open_entries
from budgetguard.core.ports import Affected, AffectedShare, QueryResult, Sample
from budgetguard.core.records import request_from_record, request_to_record
from budgetguard.cycle import Cycle, delivery_of
from budgetguard.engine import Engine
from budgetguard.exporter import Exporter
from budgetguard.loader import load_text
from budgetguard.outbox import OutboxWorker
from budgetguard.readmodel import ReadModel, State
from budgetguard.slofiles import SloFiles
from budgetguard.store import MIGRATIONS, OutboxStatus, Store
from tests.helpers import slo_from
from tests.test_canary_versions import per_version
from tests.test_outbox import INCIDENT, OK, T0, Clock, Scripted, request

SLO_FILE = """
version: budgetguard/v1
service: checkout
slos:
  - name: availability
    objective: 99.9
    sli:
      events:
        error_query: sum by (version) (rate(http_requests_total{job="checkout",code=~"5.."}[{{.window}}]))
        total_query: sum by (version) (rate(http_requests_total{job="checkout"}[{{.window}}]))
    canary:
      label: version
      affected_by: [region, route]
      on_burn: [abort]
      notify: [slack]
"""
LATENCY_FILE = """
version: budgetguard/v1
service: checkout
slos:
  - name: latency
    objective: 99
    sli:
      latency: {metric: http_request_duration_seconds, selector: 'job="checkout"', threshold_seconds: 0.5}
    canary: {label: version, affected_by: [region]}
"""
WINDOW = timedelta(seconds=30)


@pytest.fixture(scope="module")
def slo() -> Any:
    return slo_from(SLO_FILE)


def sample(version: str, region: str, route: str, rate: float | None) -> Sample:
    return Sample({"version": version, "region": region, "route": route}, rate)


# --- the query -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        pytest.param(
            "sum by (version) (rate(x[5m]))",
            "sum by (version, region, route) (rate(x[5m]))",
            id="the grouping that keeps the version keeps the new labels",
        ),
        pytest.param(
            "sum(rate(x[5m])) by (version)",
            "sum(rate(x[5m])) by (version, region, route)",
            id="the trailing form of by",
        ),
        pytest.param(
            "sum by (version) (sum by (version, code) (rate(x[5m])))",
            "sum by (version, region, route) (sum by (version, code, region, route) (rate(x[5m])))",
            id="inner aggregations keep them too",
        ),
        pytest.param(
            "sum by (version, region) (rate(x[5m]))",
            "sum by (version, region, route) (rate(x[5m]))",
            id="a label already there is not repeated",
        ),
        pytest.param(
            "sum by (version) (rate(x[5m])) / on (version) group_left count by (job) (up)",
            "sum by (version, region, route) (rate(x[5m])) / on (version) group_left count by (job) (up)",
            id="a grouping without the version and binary matching are left alone",
        ),
        pytest.param(
            'sum by (version) (rate(x{path="/a by (version)"}[5m]))',
            'sum by (version, region, route) (rate(x{path="/a by (version)"}[5m]))',
            id="a string literal is never edited",
        ),
        pytest.param(
            "sum without (code) (rate(x[5m]))",
            "sum without (code) (rate(x[5m]))",
            id="without keeps every label it does not name",
        ),
    ],
)
def test_regroup_adds_the_labels_where_the_query_groups_by_the_canary_label(expr: str, expected: str) -> None:
    assert affected.regroup(expr, "version", ("version", "region", "route")) == expected


def test_a_query_that_aggregates_a_label_away_cannot_be_broken_down_by_it() -> None:
    with pytest.raises(ValueError, match="aggregates region away"):
        affected.regroup("sum without (region, code) (rate(x[5m]))", "version", ("version", "region"))


def test_the_query_is_the_error_query_over_the_window_grouped_by_version_and_the_labels(slo: Any) -> None:
    assert affected.query(slo, WINDOW) == (
        "sum by (version, region, route) (sum by (version, region, route) "
        '(rate(http_requests_total{job="checkout",code=~"5.."}[30s])))'
    )
    assert affected.counts_events(slo, WINDOW) is False


def test_a_latency_sli_breaks_down_its_slow_requests() -> None:
    query = affected.query(slo_from(LATENCY_FILE), WINDOW)
    assert query.startswith(
        "sum by (version, region) ((sum by (version, region) (rate(http_request_duration_seconds_count"
    )
    assert ") - (sum by (version, region) (rate(http_request_duration_seconds_bucket" in query
    assert "[30s]" in query and "{{.window}}" not in query


@pytest.mark.parametrize(
    ("canary", "message"),
    [
        pytest.param(
            "{label: version, affected_by: [version]}", "canary label is already", id="the canary label"
        ),
        pytest.param("{label: version, affected_by: [region, region]}", "listed twice", id="a label twice"),
        pytest.param(
            "{label: version, affected_by: [__name__]}", "not a Prometheus label name", id="a reserved name"
        ),
    ],
)
def test_affected_by_that_cannot_work_is_refused_at_load(canary: str, message: str) -> None:
    text = SLO_FILE.split("    canary:", maxsplit=1)[0] + f"    canary: {canary}\n"
    slos, problems = load_text(textwrap.dedent(text), "slos/x.yaml")
    assert not slos and any(message in str(p) for p in problems), [str(p) for p in problems]


# --- reading the answer --------------------------------------------------------------------------


def test_the_answer_is_read_for_the_burning_version_by_share_of_its_errors(slo: Any) -> None:
    samples = [
        sample("v2", "eu-west", "/pay", 1.5),
        sample("v2", "eu-west", "/cart", 0.5),
        sample("v2", "us-east", "/pay", 0.1),
        sample("v2", "us-east", "/cart", None),  # NaN: no traffic, left out
        sample("v1", "us-east", "/pay", 9.0),  # another version: left out
    ]
    found = affected.parse(slo, "v2", WINDOW, samples)
    assert found.by == ("region", "route") and found.window == WINDOW
    assert found.errors == pytest.approx(2.1 * 30)  # rates over 30s are events
    assert [(s.labels, round(s.share, 3)) for s in found.slices] == [
        ({"region": "eu-west", "route": "/pay"}, 0.714),
        ({"region": "eu-west", "route": "/cart"}, 0.238),
        ({"region": "us-east", "route": "/pay"}, 0.048),
    ]
    assert [(s.labels["region"], round(s.share, 3)) for s in found.top["region"]] == [
        ("eu-west", 0.952),
        ("us-east", 0.048),
    ]
    assert [s.labels["route"] for s in found.top["route"]] == ["/pay", "/cart"]
    assert math.isclose(sum(s.share for s in found.top["route"]), 1.0)
    assert affected.describe(found) == (
        "region eu-west 95%, us-east 5%; route /pay 76%, /cart 24% "
        "(of 63 errors over 30s; most: region=eu-west, route=/pay 71%)"
    )
    assert affected.headline(found) == "region=eu-west, route=/pay (71% of its errors)"


def test_only_the_five_largest_slices_are_kept_and_a_missing_label_is_none(slo: Any) -> None:
    samples = [sample("v2", f"r{i}", "/pay", float(i)) for i in range(1, 9)]
    samples.append(Sample({"version": "v2", "route": "/pay"}, 100.0))  # no region label
    found = affected.parse(slo, "v2", WINDOW, samples, counts=True)
    assert len(found.slices) == affected.TOP and found.errors == pytest.approx(136.0)
    assert found.slices[0].labels == {"region": "", "route": "/pay"}
    assert affected.describe(found).startswith("region (none) 74%, r8 6%")


def test_no_errors_for_the_version_is_said_not_invented(slo: Any) -> None:
    found = affected.parse(
        slo, "v2", WINDOW, [sample("v2", "eu", "/pay", 0.0), sample("v1", "eu", "/pay", 3.0)]
    )
    assert found.slices == () and found.errors == 0
    assert affected.describe(found) == "no errors of version=v2 over 30s to break down by region, route"
    assert affected.headline(found) == ""


def test_the_record_round_trips_through_json(slo: Any) -> None:
    found = affected.parse(
        slo, "v2", WINDOW, [sample("v2", "eu-west", "/pay", 1.0), sample("v2", "us", "/a", 1.0)]
    )
    record = json.loads(json.dumps(affected.to_record(found)))
    assert record["by"] == ["region", "route"] and record["window"] == "30s"
    assert affected.from_record(record) == found
    failed = affected.unavailable(slo, WINDOW, "the breakdown query failed: 503")
    assert affected.from_record(affected.to_record(failed)) == failed


# --- the hold: the halt goes at once, the page waits for who is hurt ------------------------------


def test_notify_entries_wait_for_the_breakdown_and_on_burn_entries_do_not(slo: Any) -> None:
    hold = Delivery(affected_hold=timedelta(seconds=15))
    incident = replace(INCIDENT, slo_id=slo.id)
    entries = {e.action: e.not_before for e in open_entries(slo, incident, hold)}
    assert entries == {"abort": None, "slack": T0 + timedelta(seconds=15)}
    plain = slo_from(SLO_FILE.replace("      affected_by: [region, route]\n", ""))
    assert {e.not_before for e in open_entries(plain, incident, hold)} == {None}
    assert {e.not_before for e in open_entries(slo, incident, Delivery())} == {None}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "bg.db") as s:
        yield s


FOUND = Affected(
    by=("region",),
    window=WINDOW,
    errors=60.0,
    slices=(
        AffectedShare({"region": "eu-west"}, 57.0, 0.95),
        AffectedShare({"region": "us-east"}, 3.0, 0.05),
    ),
    top={
        "region": (
            AffectedShare({"region": "eu-west"}, 57.0, 0.95),
            AffectedShare({"region": "us-east"}, 3.0, 0.05),
        )
    },
)


def test_the_store_keeps_the_breakdown_and_releases_only_the_held_deliveries(store: Store) -> None:
    held_until = T0 + timedelta(seconds=15)
    store.write_decision(
        Decision(
            opened=(INCIDENT,),
            outbox=(
                OutboxEntry("abort", request("abort"), False),
                OutboxEntry("slack", request("slack"), False, not_before=held_until),
            ),
        ),
        T0,
    )
    assert [r.action for r in store.due(T0)] == ["abort"]
    assert store.incident(INCIDENT.id).affected is None  # type: ignore[union-attr]

    released = store.set_affected(INCIDENT.id, FOUND, T0 + timedelta(seconds=1))

    assert released == 1
    assert store.incident(INCIDENT.id).affected == FOUND  # type: ignore[union-attr]
    due = store.due(T0 + timedelta(seconds=1))
    assert [r.action for r in due] == ["abort", "slack"]
    assert all(r.request.affected == FOUND for r in due), "every delivery carries what is known now"
    assert Control(store, Delivery()).show(INCIDENT.id)["affected"]["top"]["region"][0] == {
        "labels": {"region": "eu-west"},
        "errors": 57.0,
        "share": 0.95,
    }


def test_a_delivery_never_attempted_is_due_at_the_end_of_its_hold_without_a_breakdown(store: Store) -> None:
    store.write_decision(
        Decision(
            opened=(INCIDENT,),
            outbox=(OutboxEntry("slack", request("slack"), False, not_before=T0 + timedelta(seconds=15)),),
        ),
        T0,
    )
    assert store.due(T0 + timedelta(seconds=14)) == []
    [row] = store.due(T0 + timedelta(seconds=15))
    assert row.request.affected is None


def test_the_outbox_worker_sends_the_halt_first_and_the_page_with_who_is_hurt(store: Store) -> None:
    store.write_decision(
        Decision(
            opened=(INCIDENT,),
            outbox=(
                OutboxEntry("abort", request("abort"), False),
                OutboxEntry("slack", request("slack"), False, not_before=T0 + timedelta(seconds=15)),
            ),
        ),
        T0,
    )
    abort, chat = Scripted("abort", OK), Scripted("slack", OK)
    clock = Clock()
    worker = OutboxWorker(store, {"abort": abort, "slack": chat}, clock=clock)

    async def go() -> None:
        worker.start_due()
        await worker.drain()
        assert (len(abort.calls), len(chat.calls)) == (1, 0)
        clock.now += timedelta(seconds=2)
        store.set_affected(INCIDENT.id, FOUND, clock.now)
        worker.start_due()
        await worker.drain()

    asyncio.run(go())
    [page] = chat.calls
    assert page.affected == FOUND and abort.calls[0].affected is None
    assert {r.status for r in store.outbox()} == {OutboxStatus.DELIVERED}


def test_a_file_of_schema_2_gains_the_column_and_keeps_its_incidents(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with Store(path, migrations=MIGRATIONS[:2]) as old:
        old.write_decision(Decision(opened=(INCIDENT,)), T0)
    with Store(path) as new:
        [incident] = new.incidents()
        assert incident.id == INCIDENT.id and incident.affected is None
        new.set_affected(INCIDENT.id, FOUND, T0)
        assert new.incident(INCIDENT.id).affected == FOUND  # type: ignore[union-attr]


def test_an_action_request_keeps_its_breakdown_through_its_record() -> None:
    stored = request_to_record(replace(request("slack"), affected=FOUND))
    assert request_from_record(json.loads(json.dumps(stored))).affected == FOUND
    assert request_to_record(request("slack"))["affected"] is None


# --- what people read ----------------------------------------------------------------------------


def test_the_webhook_payload_slack_and_pagerduty_say_who_is_hurt() -> None:
    trigger = replace(request("x"), affected=FOUND, baseline="v1")
    data = webhook.payload(trigger)["data"]["affected"]
    assert data["top"]["region"][0]["labels"] == {"region": "eu-west"}
    assert data["summary"] == "region eu-west 95%, us-east 5% (of 60 errors over 30s)"
    text = slack.message(trigger)["blocks"][0]["text"]["text"]
    assert "*Who is affected:* region eu-west 95%, us-east 5%" in text
    event = pagerduty.event(trigger, routing_key="k", severity="critical", source="bg")
    assert event["payload"]["summary"].startswith(
        "budgetguard: checkout/availability canary version=v2 is burning error budget too fast, "
        "hurting region=eu-west (95% of its errors): burning"
    )
    assert event["payload"]["custom_details"]["affected"] == data["summary"]
    plain = pagerduty.event(request("x"), routing_key="k", severity="critical", source="bg")
    assert (
        "hurting" not in plain["payload"]["summary"] and "affected" not in plain["payload"]["custom_details"]
    )


def test_incidents_show_prints_it(store: Store, tmp_path: Path) -> None:
    store.write_decision(Decision(opened=(INCIDENT,)), T0)
    store.set_affected(INCIDENT.id, FOUND, T0)
    out, err = io.StringIO(), io.StringIO()
    assert main(["incidents", "show", INCIDENT.id, "--db", str(tmp_path / "bg.db")], out, err) == 0, (
        err.getvalue()
    )
    shown = json.loads(out.getvalue())
    assert shown["affected"]["slices"][0] == {"labels": {"region": "eu-west"}, "errors": 57.0, "share": 0.95}


# --- the daemon: one extra query after the decision is stored -------------------------------------


class Source:
    """Answers the engine's combined query per version, and the breakdown query from a script."""

    def __init__(self, slo: Any, rates: dict[str, tuple[float, float]], breakdown: Any) -> None:
        self.answer = per_version(slo, rates)
        self.breakdown = breakdown
        self.asked: list[str] = []

    async def query(self, expr: str, at: datetime) -> QueryResult:
        if expr.startswith("sum by (version, region, route)"):
            self.asked.append(expr)
            if isinstance(self.breakdown, BaseException):
                raise self.breakdown
            if self.breakdown == "hang":
                await asyncio.sleep(5)
            return QueryResult(tuple(self.breakdown))
        return self.answer

    async def aclose(self) -> None:
        return None


@dataclass
class Running:
    """What a cycle is built with, over one SLO file in a temporary directory."""

    settings: Settings
    state: State
    store: Store
    exporter: Exporter

    def build_cycle(
        self, source: Source, affected_timeout: timedelta = cycle.AFFECTED_QUERY_TIMEOUT
    ) -> Cycle:
        return Cycle(
            self.state,
            Engine(source),
            self.store,
            self.exporter,
            delivery=delivery_of(self.settings),
            source=source,
            affected_timeout=affected_timeout,
        )


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    slos = tmp_path / "slos"
    slos.mkdir()
    (slos / "checkout.yaml").write_text(textwrap.dedent(SLO_FILE))
    actions = {
        "abort": {"type": "webhook", "url": "http://127.0.0.1:9/a"},
        "slack": {"type": "webhook", "url": "http://127.0.0.1:9/s"},
    }
    settings = Settings(slo_paths=[slos], db=tmp_path / "bg.db", actions=actions)  # type: ignore[arg-type]
    state = State()
    assert SloFiles(settings.slo_paths, known_actions(settings), state).load_initial()
    store = Store(settings.db)
    yield Running(settings, state, store, Exporter(ReadModel(state, store), version="test"))
    store.close()


def cycle_with(
    d: Running, breakdown: Any, affected_timeout: timedelta = cycle.AFFECTED_QUERY_TIMEOUT
) -> tuple[Source, list[tuple[str, datetime | None]], Cycle]:
    """One cycle with a burning v2; returns the source, when each delivery was due right after
    the cycle's write, before the breakdown ran, and the cycle."""
    source = Source(d.state.slos[0], {"v1": (995.0, 0.0), "v2": (5.0, 0.2)}, breakdown)
    one = d.build_cycle(source, affected_timeout)
    store = d.store

    async def go() -> list[tuple[str, datetime | None]]:
        await one.run()
        before = [(r.action, r.next_attempt_at) for r in store.outbox()]
        await one.settle()
        return before

    return source, asyncio.run(go()), one


def test_the_daemon_breaks_the_errors_down_once_after_storing_the_decision(running: Running) -> None:
    breakdown = [
        sample("v2", "eu-west", "/pay", 0.9),
        sample("v2", "us-east", "/pay", 0.1),
        sample("v1", "us-east", "/pay", 5.0),
    ]
    source, before, one = cycle_with(running, breakdown)
    [incident] = running.store.incidents()
    assert len(source.asked) == 1 and "[5m]" in source.asked[0]  # the deciding window: 5m bounds it highest
    assert incident.affected is not None and incident.affected.slices[0].labels == {
        "region": "eu-west",
        "route": "/pay",
    }
    assert incident.affected.slices[0].share == pytest.approx(0.9)
    held = dict(before)
    assert held["slack"] == incident.opened_at + cycle.AFFECTED_HOLD  # waiting for the breakdown
    assert held["abort"] == incident.opened_at  # the halt never waits
    rows = {r.action: r for r in running.store.outbox()}
    assert (
        rows["slack"].next_attempt_at is not None
        and rows["slack"].next_attempt_at < incident.opened_at + cycle.AFFECTED_HOLD
    )
    assert rows["slack"].request.affected == incident.affected
    asyncio.run(one.run())  # the incident is open: no second breakdown
    assert len(source.asked) == 1


@pytest.mark.parametrize(
    ("breakdown", "note"),
    [
        pytest.param(
            QueryError("bad_data: parse error", status=400),
            "the breakdown query failed",
            id="a failing query",
        ),
        pytest.param("hang", "no answer within 0.05s", id="a query that does not answer in time"),
    ],
)
def test_without_an_answer_the_incident_says_why_and_the_page_goes_out_at_once(
    running: Running, breakdown: Any, note: str
) -> None:
    cycle_with(running, breakdown, affected_timeout=timedelta(milliseconds=50))
    [incident] = running.store.incidents()
    assert incident.affected is not None and incident.affected.slices == ()
    assert note in incident.affected.note
    rows = {r.action: r for r in running.store.outbox()}
    assert rows["slack"].next_attempt_at is not None
    assert rows["slack"].next_attempt_at < incident.opened_at + cycle.AFFECTED_HOLD
    assert datetime.now(tz=UTC) - incident.opened_at < cycle.AFFECTED_HOLD
