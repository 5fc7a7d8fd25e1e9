"""The status page's contract without a browser: burn states, the budget's spelling, the store's budget
line, charts, auth and the incident buttons, through the real HTTP app (httpx's ASGI transport) over a
real temporary SQLite store. The browser test (``test_status_page_e2e.py``) shows it to chromium."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from budgetguard.control import Control
from budgetguard.core import burndown
from budgetguard.core.burndown import BurnState
from budgetguard.core.guard import Decision, Delivery, IncidentState, OutboxEntry
from budgetguard.core.policy import Evaluation, Observation, evaluate
from budgetguard.store import OutboxStatus, Store
from budgetguard.web import RecoveryEstimates, create_app
from budgetguard.web._auth import Auth
from budgetguard.web.status import Sparklines, routes
from budgetguard.web.status.charts import Chart, Series, Threshold, line_chart, sparkline
from tests.helpers import slo_from
from tests.test_outbox import INCIDENT, request

TOKEN = "s3cret-token"
SLO = slo_from()
NOW = datetime.now(tz=UTC).replace(microsecond=0)


def judged(error_ratio: float, at: datetime = NOW, short: float | None = None) -> Evaluation:
    """An evaluation at ``at`` with every window at ``error_ratio`` (the 5m window at ``short``)."""
    observations = {}
    for window in SLO.windows():
        ratio = short if short is not None and window == timedelta(minutes=5) else error_ratio
        observations[window] = Observation(window, ratio, 100_000.0)
    return evaluate(SLO, observations, at)


@pytest.mark.parametrize(
    ("long_ratio", "short_ratio", "state"),
    [
        pytest.param(0.02, 0.02, BurnState.CRITICAL, id="both windows above the threshold are critical"),
        pytest.param(0.02, 0.0001, BurnState.RECOVERING, id="long above and short below is recovering"),
        pytest.param(0.0001, 0.02, BurnState.INCREASING, id="short above and long below is increasing"),
        pytest.param(0.0001, 0.0001, BurnState.FINE, id="both below is fine"),
    ],
)
def test_the_burn_state_reads_the_fastest_page_tiers_two_windows(
    long_ratio: float, short_ratio: float, state: BurnState
) -> None:
    burn = burndown.burn_state(judged(long_ratio, short=short_ratio))
    assert burn.state is state
    assert burn.tier is not None
    assert (burn.tier.tier.long_window, burn.tier.tier.short_window) == (
        timedelta(hours=1),
        timedelta(minutes=5),
    )


def test_an_unjudgeable_window_leaves_the_burn_state_unknown() -> None:
    ev = evaluate(SLO, {w: Observation(w, None, None, "no data") for w in SLO.windows()}, NOW)
    assert burndown.burn_state(ev).state is BurnState.UNKNOWN


@pytest.mark.parametrize(
    ("ratio", "text"),
    [(0.4213, "42.1%"), (1.0, "100.0%"), (0.0, "0.0%"), (-0.25, "-25.0%"), (None, "—"), (float("nan"), "—")],
)
def test_the_budget_is_spelled_as_a_percent_with_one_decimal(ratio: float | None, text: str) -> None:
    assert burndown.format_budget(ratio) == text


def test_the_burndown_query_turns_the_window_ratio_into_budget_left() -> None:
    q = burndown.burndown_query(SLO, NOW, points=60)
    assert "[30d]" in q.expr and q.step == timedelta(hours=12) and q.start == NOW - timedelta(days=30)
    assert q.budget(0.0005) == pytest.approx(0.5)
    assert q.budget(None) is None


def test_prometheus_fills_only_what_is_older_than_the_store() -> None:
    stored = [(NOW - timedelta(hours=2), 0.5), (NOW, 0.4)]
    source = [(NOW - timedelta(hours=h), 0.6) for h in (6, 4, 2, 0)]
    older, kept = burndown.merge_burndown(stored, source)
    assert [p[0] for p in older] == [NOW - timedelta(hours=6), NOW - timedelta(hours=4)]
    assert kept == stored


def test_the_burn_history_query_tags_each_window() -> None:
    q = burndown.burn_history_query(
        SLO, [timedelta(minutes=5), timedelta(hours=1)], NOW - timedelta(hours=6), NOW
    )
    assert q.expr.count("label_replace") == 2 and '"5m"' in q.expr and '"1h"' in q.expr
    rates = q.burn_rates([({"budgetguard_window": "5m"}, [(NOW, 0.002)]), ({}, [(NOW, 1.0)])])
    assert rates == {"5m": [(NOW, pytest.approx(2.0))]}


def test_the_store_gives_the_last_budget_of_each_step(tmp_path: Path) -> None:
    with Store(tmp_path / "bg.db") as store:
        for minutes, ratio in [(50, 0.0001), (40, 0.0002), (20, 0.0003), (10, 0.0004)]:
            store.record_cycle([judged(ratio, NOW - timedelta(minutes=minutes))])
        series = store.budget_series(SLO.id, NOW - timedelta(minutes=60), timedelta(minutes=30))
        assert [round(v or 0, 3) for _, v in series] == [0.8, 0.6]
        assert [at for at, _ in series] == [NOW - timedelta(minutes=40), NOW - timedelta(minutes=10)]
        assert store.budget_series("other/slo", NOW - timedelta(days=1), timedelta(hours=1)) == []


def test_charts_draw_lines_and_break_them_at_gaps() -> None:
    points = [(NOW - timedelta(hours=h), v) for h, v in [(3, 0.9), (2, 0.8), (1, None), (0, 0.5)]]
    spark = sparkline(points, NOW - timedelta(hours=4), NOW, "budget")
    assert spark.count("<polyline") == 1 and "spark-end" in spark
    chart = line_chart(
        Chart("burn", NOW - timedelta(hours=4), NOW, [Series("5m", points, "c0")], [Threshold("14.4x", 14.4)])
    )
    assert chart.count('class="line c0') == 1 and 'class="dot c0"' in chart and 'class="threshold"' in chart
    empty = line_chart(Chart("burn", NOW - timedelta(hours=4), NOW, [Series("5m", [], "c0")]))
    assert "no data in this range yet" in empty


class View:
    """The daemon's view over a real store."""

    def __init__(self, store: Store, latest: Sequence[Evaluation]) -> None:
        self.store = store
        self.latest = list(latest)
        self.asked: list[datetime] = []  # the ``since`` of every budget line read

    def latest_evaluations(self) -> Sequence[Evaluation]:
        return self.latest

    def config_problems(self) -> Sequence[str]:
        return []

    def readiness(self) -> tuple[bool, str]:
        return True, "ok"

    def history(self, slo_id: str, since: datetime, limit: int) -> list[dict[str, Any]]:
        return self.store.history(slo_id, since, limit=limit)

    def verdict_changes(self, slo_id: str, since: datetime) -> list[dict[str, Any]]:
        return self.store.verdict_changes(slo_id, since)

    def guard_status(self, slo_id: str) -> tuple[bool, frozenset[str]]:
        return False, frozenset()

    def budget_series(
        self, slo_id: str, since: datetime, step: timedelta
    ) -> list[tuple[datetime, float | None]]:
        self.asked.append(since)
        return self.store.budget_series(slo_id, since, step)


class Metrics:
    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        return b"", "text/plain"


def open_incident(store: Store) -> str:
    """The outbox tests' incident (a canary v2 burning) with one failed delivery, as the daemon stores them."""
    store.write_decision(
        Decision(opened=(INCIDENT,), outbox=(OutboxEntry("hook", request("hook"), False),)),
        INCIDENT.opened_at,
    )
    return INCIDENT.id


def client(tmp_path: Path, token: str | None = TOKEN) -> tuple[httpx.AsyncClient, Store]:
    store = Store(tmp_path / "bg.db")
    latest = [judged(0.0002)]
    store.record_cycle(latest)
    app = create_app(View(store, latest), Metrics(), token, control=lambda: Control(store, Delivery()))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://status.test"), store


def test_without_the_token_the_page_asks_for_it_and_with_it_shows_the_api_numbers(tmp_path: Path) -> None:
    async def scenario() -> None:
        c, store = client(tmp_path)
        async with c:
            asked = await c.get("/")
            assert asked.status_code == 200 and 'name="token"' in asked.text and "requests" not in asked.text
            assert 'data-refresh="0"' in asked.text  # the form never reloads under a half-typed token
            refresh = await c.get("/", headers={"X-Budgetguard-Fragment": "1"})
            assert refresh.status_code == 204 and refresh.headers["x-budgetguard-login"] == "required"
            wrong = await c.post(
                "/login",
                content="token=nope&next=/",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert "not the API token" in wrong.text and "budgetguard_token" not in wrong.headers.get(
                "set-cookie", ""
            )
            bearer = {"Authorization": f"Bearer {TOKEN}"}
            page = await c.get("/", headers=bearer)
            api = (await c.get("/api/v1/slos", headers=bearer)).json()["slos"][0]
            assert f"{api['budget_remaining'] * 100:.1f}%" in page.text
            assert page.headers["content-security-policy"].startswith("default-src 'none'")
            assert not re.search(r'(src|href)="(https?:)?//', page.text)  # nothing from elsewhere
        store.close()

    asyncio.run(scenario())


def test_the_cookie_login_lets_the_viewer_act_and_a_cross_site_post_is_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        c, store = client(tmp_path)
        incident_id = open_incident(store)
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        async with c:
            login = await c.post("/login", content=f"token={TOKEN}&next=/incidents", headers=form)
            assert login.status_code == 303 and login.headers["location"] == "/incidents"
            cookie = login.headers["set-cookie"]
            assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("samesite", "SameSite")
            shown = await c.get(f"/incidents/{incident_id}")
            assert "Acknowledge" in shown.text and "Resolve" in shown.text
            forged = await c.post(
                f"/incidents/{incident_id}/ack", headers={**form, "Sec-Fetch-Site": "cross-site"}
            )
            assert forged.status_code == 403 and store.incident(incident_id).acknowledged_at is None  # type: ignore[union-attr]
            done = await c.post(
                f"/incidents/{incident_id}/ack",
                content="by=alice",
                headers={**form, "Sec-Fetch-Site": "same-origin"},
            )
            assert done.status_code == 303
            assert store.incident(incident_id).acknowledged_by == "alice"  # type: ignore[union-attr]
            await c.post("/logout")
            c.cookies.clear()
            assert 'name="token"' in (await c.get(f"/incidents/{incident_id}")).text
        store.close()

    asyncio.run(scenario())


def test_without_an_api_token_the_pages_are_open_and_offer_no_buttons(tmp_path: Path) -> None:
    async def scenario() -> None:
        c, store = client(tmp_path, token=None)
        incident_id = open_incident(store)
        async with c:
            overview = await c.get("/")
            assert overview.status_code == 200 and f"/incidents/{incident_id}" in overview.text
            shown = await c.get(f"/incidents/{incident_id}")
            assert "v2" in shown.text and "Acknowledge" not in shown.text and "Resolve" not in shown.text
            refused = await c.post(f"/incidents/{incident_id}/resolve")
            assert refused.status_code == 403
            assert [i.state for i in store.incidents()] == [IncidentState.OPEN]
        store.close()

    asyncio.run(scenario())


def test_the_overview_filters_sorts_and_refreshes_only_its_live_part(tmp_path: Path) -> None:
    async def scenario() -> None:
        c, store = client(tmp_path, token=None)
        async with c:
            live = await c.get(
                "/?verdict=healthy&sort=budget&dir=desc", headers={"X-Budgetguard-Fragment": "1"}
            )
            assert "<html" not in live.text and 'data-slo="checkout/availability"' in live.text
            assert 'aria-sort="descending"' in live.text
            none = await c.get("/?verdict=burning")
            assert "No SLO matches these filters." in none.text
            slo = await c.get("/slos/checkout/availability")
            assert slo.status_code == 200 and slo.text.count("<figure") >= 5
            assert (await c.get("/slos/checkout/nope")).status_code == 404
            css = await c.get("/static/status.css")
            assert css.status_code == 200 and "prefers-color-scheme: dark" in css.text
        store.close()

    asyncio.run(scenario())


def test_every_route_of_the_status_page_is_documented() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "how-to" / "status-page.md").read_text()
    mounted = routes(
        View(None, []), Auth(None), control=None, recoveries=RecoveryEstimates(None), source=None
    )  # type: ignore[arg-type]
    paths = [getattr(route, "path", "") for route in mounted]
    assert "/" in paths and "/slos/{service}/{slo}" in paths
    missing = [path for path in paths if f" {path}`" not in doc and f" {path}/" not in doc]
    assert missing == [], f"document these routes in docs/how-to/status-page.md: {missing}"


def test_a_refresh_between_two_cycles_gets_a_304_and_a_new_cycle_a_new_page(tmp_path: Path) -> None:
    async def scenario() -> None:
        c, store = client(tmp_path, token=None)
        live = {"X-Budgetguard-Fragment": "1"}
        async with c:
            first = await c.get("/", headers=live)
            while "reading…" in first.text:  # the sparklines are read in the background first
                await asyncio.sleep(0.01)
                first = await c.get("/", headers=live)
            tag = first.headers["etag"]
            again = await c.get("/", headers={**live, "If-None-Match": tag})
            assert again.status_code == 304 and again.content == b""
            other_view = await c.get("/?verdict=healthy", headers={**live, "If-None-Match": tag})
            assert other_view.status_code == 200
        store.close()

    asyncio.run(scenario())


def test_a_sparkline_rereads_only_its_last_step_and_keeps_the_older_ones(tmp_path: Path) -> None:
    with Store(tmp_path / "bg.db") as store:
        for days, ratio in [(20, 0.0001), (10, 0.0003)]:
            store.record_cycle([judged(ratio, NOW - timedelta(days=days))])
        view = View(store, [judged(0.0003, NOW - timedelta(days=10))])
        sparks = Sparklines(view, points=30)  # one point a day over the 30d window
        ev = view.latest[0]
        sparks.refresh(ev, NOW)
        first = sparks.get(SLO.id)
        assert first is not None and first.count(",") == 2  # two days with an evaluation: one line
        store.record_cycle([judged(0.0005, NOW - timedelta(hours=1))])
        view.asked.clear()
        sparks.refresh(ev, NOW)
        assert view.asked and view.asked[0] >= NOW - timedelta(
            days=11
        )  # from the last point's day, not the window
        again = sparks.get(SLO.id)
        assert again is not None and again.count(",") == 3 and again != first


FROZEN = """
version: budgetguard/v1
service: checkout
freeze: {below: 0.5}
slos:
  - name: availability
    objective: 99.9
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="checkout",code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="checkout"}[{{.window}}]))
"""


def test_a_frozen_slo_says_so_and_when_its_budget_is_expected_back(tmp_path: Path) -> None:
    slo = slo_from(FROZEN)
    ev = evaluate(slo, {w: Observation(w, 0.0007, 100_000.0) for w in slo.windows()}, NOW)  # 30% left

    async def scenario() -> None:
        with Store(tmp_path / "bg.db") as store:
            store.record_cycle([ev])
            app = create_app(View(store, [ev]), Metrics(), None)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://status.test") as c:
                overview = await c.get("/")
                assert "Releases frozen" in overview.text and "30.0%" in overview.text
                page = await c.get("/slos/checkout/availability")
                assert "Release freeze: frozen" in page.text
                # No metrics source here: the estimate says why there is none, as the release gate does.
                assert "not estimated: no metrics source" in page.text

    asyncio.run(scenario())


def test_a_failed_delivery_gets_a_retry_button_that_requeues_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        c, store = client(tmp_path)
        incident_id = open_incident(store)
        [row] = store.outbox(incident_id=incident_id)
        store.record_attempt(
            row.id, status=OutboxStatus.FAILED, at=NOW, last_status=500, detail="webhook hook: HTTP 500"
        )
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        async with c:
            shown = await c.get(f"/incidents/{incident_id}", headers=bearer)
            assert shown.status_code == 200 and f'action="/deliveries/{row.id}/retry"' in shown.text
            assert "HTTP 500" in shown.text and "failed" in shown.text
            done = await c.post(
                f"/deliveries/{row.id}/retry",
                content=f"back=/incidents/{incident_id}",
                headers={
                    **bearer,
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Origin": "http://status.test",
                },
            )
            assert done.status_code == 303 and done.headers["location"] == f"/incidents/{incident_id}"
            [again] = store.outbox(incident_id=incident_id)
            assert again.status is OutboxStatus.PENDING
            elsewhere = await c.post(
                f"/deliveries/{row.id}/retry",
                content="back=/incidents",
                headers={
                    **bearer,
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Origin": "http://evil.test",
                },
            )
            assert elsewhere.status_code == 403
        store.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("back", ["//evil.test/", "/\\evil.test/", "https://evil.test/"])
def test_the_login_never_sends_the_viewer_to_another_site(tmp_path: Path, back: str) -> None:
    async def scenario() -> None:
        c, store = client(tmp_path)
        async with c:
            form = {"Content-Type": "application/x-www-form-urlencoded"}
            login = await c.post("/login", content=urlencode({"token": TOKEN, "next": back}), headers=form)
            assert login.status_code == 303 and login.headers["location"] == "/"
        store.close()

    asyncio.run(scenario())
