"""The per-SLO part of /metrics written straight from the evaluations (#14) against prometheus-client's path.

``Exporter.render_state`` writes its lines without sample objects and keeps each SLO's escaped labels
across cycles; ``Exporter.render`` still goes through the registry (prometheus-client's collector and
encoder). Every sample of the first must be a sample of the second, in both exposition formats, over
every kind of series: canaries, calendar windows, fallbacks, labels that need escaping, numbers that
Go writes with an exponent, unknown values, and SLOs replaced or removed by a reload.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections import Counter
from datetime import timedelta

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from budgetguard import __version__
from budgetguard.core import policy
from budgetguard.core.verdict import QueryMode
from budgetguard.exporter import Exporter
from budgetguard.exporter.encode import encode, go_float
from budgetguard.exporter.prepared import PreparedMetrics
from tests.helpers import slo_from, slos_from
from tests.test_calendar import CALENDAR
from tests.test_canary_budget import ARTICLE, Counts, versions
from tests.test_exporter import AT, D, FakeView, burning, observe

OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
FORMATS = pytest.mark.parametrize("accept", [None, OPENMETRICS], ids=["text format", "OpenMetrics"])

ODD_LABELS = """
version: budgetguard/v1
service: payments
labels: {team: 'a\\b', note: "two\\nlines \\"quoted\\"", severity: high, window: mine}
slos:
  - name: availability
    objective: 99.95
    sli:
      raw:
        error_ratio_query: sum(rate(errors[{{.window}}])) / sum(rate(requests[{{.window}}]))
"""


def every_kind() -> FakeView:
    odd = slo_from(ODD_LABELS)
    calendar = slo_from(CALENDAR.replace("service: checkout", "service: billing"))
    canary_slo = slo_from(ARTICLE.replace("service: checkout", "service: cart"))
    first, second = slos_from(
        """
        version: budgetguard/v1
        service: search
        slos:
          - name: latency
            objective: 99
            window: 7d
            sli:
              latency: {metric: http_request_duration_seconds, selector: 'job="search"', threshold_seconds: 0.3}
          - name: availability
            objective: 99.5
            sli:
              raw:
                error_ratio_query: sum(rate(errors[{{.window}}])) / sum(rate(requests[{{.window}}]))
        """
    )
    canary = dataclasses.replace(
        policy.evaluate(canary_slo, observe(canary_slo, {}), AT), canaries=versions(Counts(31, 6_000))
    )
    big = observe(first, {D: None}, events=dict.fromkeys(first.windows(), 123456789.0))
    return FakeView(
        [
            burning(),
            burning(at=AT - timedelta(minutes=1)),  # an older one of the same SLO: not exported
            dataclasses.replace(burning(odd), query_mode=QueryMode.RECORDING),
            dataclasses.replace(
                policy.evaluate(first, big, AT), query_mode=QueryMode.fallback("recorded series missing")
            ),
            policy.failed(second, AT, "source error (auth): 401", "auth"),
            with_nan(policy.evaluate(calendar, observe(calendar, {}, default=0.0002), AT)),
            canary,
        ],
        errors=1,
    )


def with_nan(ev: policy.Evaluation) -> policy.Evaluation:
    """A NaN burn rate in the first window (a source can answer NaN): neither path exports it."""
    first, *rest = ev.windows
    return dataclasses.replace(ev, windows=(first._replace(burn_rate=math.nan), *rest))


def samples(body: bytes, accept: str | None) -> Counter[tuple[str, str, frozenset[tuple[str, str]], float]]:
    """Every sample with its family and type, counted (a duplicate series would show twice)."""
    parse = parse_openmetrics if accept == OPENMETRICS else text_string_to_metric_families
    return Counter(
        (f.name, f.type, frozenset(s.labels.items()), s.value)
        for f in parse(body.decode())
        for s in f.samples
    )


def state_of(exporter: Exporter, accept: str | None) -> bytes:
    body, _ = exporter.render_state(accept)
    return body + (b"# EOF\n" if accept == OPENMETRICS else b"")


def registry_part(exporter: Exporter, accept: str | None, body: bytes) -> bytes:
    """prometheus-client's families for what ``body`` holds (the registry's collector), encoded."""
    names = {name for name, *_ in samples(body, accept)}
    kept = [m for m in exporter.registry.collect() if {m.name, m.name + "_info"} & names]
    return encode(kept, accept == OPENMETRICS) + (b"# EOF\n" if accept == OPENMETRICS else b"")


@FORMATS
def test_every_sample_is_the_one_prometheus_clients_path_renders(accept: str | None) -> None:
    exporter = Exporter(every_kind(), version=__version__)
    exporter.observe_cycle(0.3, 7)
    body = state_of(exporter, accept)
    got = samples(body, accept)
    assert got == samples(registry_part(exporter, accept, body), accept)
    assert max(got.values()) == 1  # no duplicate series
    names = {name for name, *_ in got}
    for family in (
        "budgetguard_slo_canary_verdict",
        "budgetguard_slo_period_left_seconds",
        "budgetguard_slo_canary_window_events",
    ):
        assert family in names
    assert any(
        labels
        == frozenset(
            {
                ("service", "payments"),
                ("slo", "availability"),
                ("team", "a\\b"),
                ("note", 'two\nlines "quoted"'),
                ("exported_severity", "high"),
                ("exported_window", "mine"),
            }
        )
        for _, _, labels, _ in got
    )
    fallback = {
        dict(labels)["slo"]: value
        for name, _, labels, value in got
        if name == "budgetguard_slo_recording_fallback"
    }
    assert fallback == {"latency": 1.0, "availability": 0.0}


@FORMATS
def test_the_bytes_are_those_prometheus_clients_families_encode_to(accept: str | None) -> None:
    exporter = Exporter(every_kind(), version=__version__)
    exporter.observe_cycle(0.3, 7)
    body = state_of(exporter, accept)
    assert body == registry_part(exporter, accept, body)


@FORMATS
def test_without_per_window_series_the_two_paths_still_agree(accept: str | None) -> None:
    exporter = Exporter(every_kind(), version=__version__, per_window=False)
    body = state_of(exporter, accept)
    assert samples(body, accept) == samples(registry_part(exporter, accept, body), accept)
    assert b"budgetguard_slo_burn_rate" not in body and b"budgetguard_slo_canary_burn_rate{" not in body


def test_a_reload_that_replaces_or_removes_an_slo_shows_on_the_next_refresh() -> None:
    view = every_kind()
    exporter = Exporter(view, version=__version__)
    prepared = PreparedMetrics(exporter)

    async def scrape() -> bytes:
        await prepared.refresh()
        body, _, _ = await prepared.serve(OPENMETRICS, None)
        return body

    before = asyncio.run(scrape())
    assert b'team="a\\\\b"' in before
    renamed = slo_from(ODD_LABELS.replace("team: 'a\\b'", "team: payments-core").replace("99.95", "99.9"))
    view.evaluations = [burning(renamed)]  # same SLO id, new labels and objective; every other SLO gone
    after = asyncio.run(scrape())
    assert samples(after, OPENMETRICS) == samples(exporter.render(OPENMETRICS)[0], OPENMETRICS)
    assert b'team="payments-core"' in after and b'team="a\\\\b"' not in after
    assert b'slo="latency"' not in after
    assert (
        b'budgetguard_slo_objective_ratio{service="payments",slo="availability",note="two\\nlines \\"quoted\\""'
        in after
    )


@pytest.mark.parametrize(
    "value",
    [
        0.0,
        -0.0,
        1.0,
        0.999,
        1e-05,
        1.5e-07,
        123456.5,
        1234567.0,
        2592000.0,
        1e16,
        1e22,
        -1234567.0,
        math.inf,
        -math.inf,
        7,
        10**7,
        1234567.125,
        9999999999999998.0,
        1e6,
        999999.9999,
        1 / 3,
    ],
)
def test_numbers_are_written_as_prometheus_client_writes_them(value: float) -> None:
    assert go_float(value) == floatToGoString(value)
