"""/metrics from prepared bytes (#14): the same exposition as the exporter renders, gzip when asked,
live counters on every scrape, the per-window series optional, and the event loop's lag measured."""

from __future__ import annotations

import asyncio
import gzip
import time
import zlib
from typing import Any

import httpx
import pytest
from prometheus_client.metrics_core import CounterMetricFamily
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from budgetguard import __version__
from budgetguard.core import policy
from budgetguard.exporter import Exporter
from budgetguard.exporter.encode import encode
from budgetguard.exporter.loop_lag import watch_loop_lag
from budgetguard.exporter.prepared import BEFORE_ANY_SCRAPE, PreparedMetrics, accepts_gzip
from budgetguard.web import create_app
from tests.helpers import slo_from
from tests.test_exporter import AT, FakeView, _busy_exporter, burning, observe
from tests.test_server import View

OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"


def families(body: bytes, accept: str | None) -> dict[str, Any]:
    """Each family's type, help and samples (as sets: label order is free in the formats)."""
    parse = parse_openmetrics if accept == OPENMETRICS else text_string_to_metric_families
    return {
        f.name: (
            f.type,
            f.documentation,
            f.unit,
            {(s.name, frozenset(s.labels.items()), s.value) for s in f.samples},
        )
        for f in parse(body.decode())
    }


def serve(
    prepared: PreparedMetrics, accept: str | None, encoding: str | None = None
) -> tuple[bytes, str, str | None]:
    async def both() -> tuple[bytes, str, str | None]:
        await prepared.refresh()
        return await prepared.serve(accept, encoding)

    return asyncio.run(both())


@pytest.mark.parametrize("accept", [None, OPENMETRICS], ids=["text format", "OpenMetrics"])
def test_the_prepared_exposition_parses_to_what_the_exporter_renders(accept: str | None) -> None:
    exporter = _busy_exporter()
    expected, expected_type = exporter.render(accept)
    body, content_type, encoding = serve(PreparedMetrics(exporter), accept)
    assert (content_type, encoding) == (expected_type, None)
    assert families(body, accept) == families(expected, accept)
    if accept == OPENMETRICS:
        assert body.endswith(b"# EOF\n") and body.count(b"# EOF") == 1


@pytest.mark.parametrize("accept", [None, OPENMETRICS], ids=["text format", "OpenMetrics"])
def test_gzip_when_asked_is_one_member_any_client_reads(accept: str | None) -> None:
    prepared = PreparedMetrics(_busy_exporter())
    plain, _, _ = serve(prepared, accept)
    zipped, _, encoding = asyncio.run(prepared.serve(accept, "gzip, deflate"))
    assert encoding == "gzip"
    assert gzip.decompress(zipped) == plain
    single = zlib.decompressobj(16 + zlib.MAX_WBITS)  # what a client reading one member does (httpx)
    assert single.decompress(zipped) == plain and single.eof and not single.unused_data


@pytest.mark.parametrize(
    ("header", "gzipped"),
    [
        pytest.param("gzip", True, id="gzip"),
        pytest.param("deflate, gzip;q=0.5", True, id="gzip with a quality"),
        pytest.param("gzip;q=0", False, id="gzip refused with q=0"),
        pytest.param("identity", False, id="identity only"),
        pytest.param(None, False, id="no header"),
    ],
)
def test_gzip_is_sent_only_to_scrapers_that_accept_it(header: str | None, gzipped: bool) -> None:
    assert accepts_gzip(header) is gzipped


def test_counters_show_on_the_next_scrape_without_waiting_for_a_cycle() -> None:
    exporter = _busy_exporter()
    prepared = PreparedMetrics(exporter)
    serve(prepared, None)
    exporter.count_delivery("rollback", "delivered")
    body, _, _ = asyncio.run(prepared.serve(None, None))
    assert b'budgetguard_action_deliveries_total{action="rollback",outcome="delivered"} 1.0' in body


def test_the_per_slo_series_change_when_refreshed_not_before() -> None:
    view = FakeView([burning()])
    prepared = PreparedMetrics(Exporter(view, version=__version__))
    first, _, _ = serve(prepared, None)
    view.evaluations = []
    unchanged, _, _ = asyncio.run(prepared.serve(None, None))
    refreshed, _, _ = serve(prepared, None)
    assert b"budgetguard_slo_verdict{" in first and b"budgetguard_slo_verdict{" in unchanged
    assert b"budgetguard_slo_verdict{" not in refreshed


class CountingExporter(Exporter):
    """Counts the per-SLO renders by format: each costs ~0.6 s of CPU at 10,000 SLOs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.renders: list[str | None] = []

    def render_state(self, accept: str | None = None) -> tuple[bytes, str]:
        self.renders.append(accept)
        return super().render_state(accept)


def test_a_refresh_renders_only_the_formats_scrapers_asked_for() -> None:
    """#14: before any scrape OpenMetrics is prepared, so Prometheus's first scrape finds it ready; the
    text format is rendered when a scraper asks for it, and from then on at every refresh too."""
    exporter = CountingExporter(FakeView([burning()]), version=__version__)
    prepared = PreparedMetrics(exporter)

    async def scenario() -> None:
        assert prepared.formats() == (True,)
        await prepared.refresh()  # before any scrape: OpenMetrics
        assert exporter.renders == [BEFORE_ANY_SCRAPE]
        await prepared.serve(OPENMETRICS, "gzip")  # Prometheus asks: served from the bytes ready
        assert exporter.renders == [BEFORE_ANY_SCRAPE]
        exporter.renders.clear()
        await prepared.refresh()
        assert exporter.renders == [OPENMETRICS]
        # Nobody asked for the text format yet: a text scrape renders it now ...
        await prepared.serve(None, None)
        assert exporter.renders == [OPENMETRICS, None]
        assert prepared.formats() == (True, False)
        exporter.renders.clear()
        await prepared.refresh()  # ... and both formats from then on
        assert sorted(exporter.renders, key=str) == sorted([OPENMETRICS, None], key=str)

    asyncio.run(scenario())


def test_per_window_false_leaves_out_the_per_window_series_and_keeps_the_rest() -> None:
    slo = slo_from()
    ev = policy.evaluate(slo, observe(slo, {}), AT)
    full = families(Exporter(FakeView([ev]), version=__version__).render()[0], None)
    lean = families(Exporter(FakeView([ev]), version=__version__, per_window=False).render()[0], None)
    per_window = {"budgetguard_slo_burn_rate", "budgetguard_slo_error_ratio", "budgetguard_slo_window_events"}
    assert per_window <= set(full)
    assert set(lean) == set(full) - per_window
    assert lean["budgetguard_slo_verdict"] == full["budgetguard_slo_verdict"]


def test_the_encoder_refuses_families_it_does_not_know() -> None:
    with pytest.raises(ValueError, match="only gauges and infos"):
        encode([CounterMetricFamily("budgetguard_things", "Things.", value=1.0)], openmetrics=False)


def test_metrics_over_http_are_gzipped_for_a_scraper_that_asks() -> None:
    prepared = PreparedMetrics(_busy_exporter())
    app = create_app(View(), prepared)

    async def get(headers: dict[str, str]) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://budgetguard") as http:
            return await http.get("/metrics", headers=headers)

    zipped = asyncio.run(get({"Accept-Encoding": "gzip", "Accept": OPENMETRICS}))
    plain = asyncio.run(get({"Accept-Encoding": "identity", "Accept": OPENMETRICS}))
    assert zipped.headers["content-encoding"] == "gzip" and "content-encoding" not in plain.headers
    assert zipped.headers["content-type"].startswith("application/openmetrics-text")
    assert zipped.content == plain.content  # httpx decoded the gzip
    assert "budgetguard_slo_verdict" in plain.text


def test_the_lag_watch_sees_a_handler_that_holds_the_loop() -> None:
    observed: list[float] = []

    async def scenario() -> None:
        stop = asyncio.Event()
        watch = asyncio.create_task(watch_loop_lag(observed.append, stop, every=0.01))
        await asyncio.sleep(0.05)
        time.sleep(0.2)  # a handler computing without an await holds the loop this long
        await asyncio.sleep(0.05)
        stop.set()
        await watch

    asyncio.run(scenario())
    assert max(observed) >= 0.15


def test_the_lag_is_exported_as_a_histogram_and_the_recent_maximum() -> None:
    exporter = Exporter(FakeView(), version=__version__)
    exporter.observe_loop_lag(0.004)
    exporter.observe_loop_lag(0.25)
    text = exporter.render()[0].decode()
    assert "budgetguard_event_loop_lag_seconds_count 2.0" in text
    assert "budgetguard_event_loop_lag_max_seconds 0.25" in text
