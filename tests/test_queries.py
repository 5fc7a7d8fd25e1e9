"""Query planning: the PromQL sent for each SLO, and reading tagged answers back."""

from __future__ import annotations

from datetime import timedelta

import pytest

from budgetguard.core.ports import Sample
from budgetguard.core.queries import PART_LABEL, Part, combine, le_matcher, plan, render, split
from tests.helpers import slo_from


@pytest.mark.parametrize(
    ("template", "window", "expected"),
    [
        pytest.param("rate(x[{{.window}}])", timedelta(minutes=5), "rate(x[5m])", id="the Sloth spelling"),
        pytest.param("rate(x[{{ .window }}])", timedelta(days=30), "rate(x[30d])", id="the spaced spelling"),
        pytest.param(
            "a[{{.window}}] / b[{{.window}}]",
            timedelta(minutes=90),
            "a[1h30m] / b[1h30m]",
            id="every occurrence, compound durations",
        ),
    ],
)
def test_render_replaces_every_placeholder(template: str, window: timedelta, expected: str) -> None:
    assert render(template, window) == expected


def test_an_events_slo_plans_errors_and_total_for_every_window() -> None:
    planned = plan(slo_from())
    assert len(planned) == 16  # 7 tier windows + the 30d SLO window, two parts each
    assert {q.part for q in planned} == {Part.ERRORS, Part.TOTAL}
    first = planned[0]
    assert first.window == timedelta(minutes=5)
    assert first.expr == 'sum(rate(http_requests_total{job="checkout",code=~"5.."}[5m]))'
    assert not first.counts


def test_a_latency_slo_queries_the_bucket_and_the_count() -> None:
    slo = slo_from(
        """
        version: budgetguard/v1
        service: api
        slos:
          - name: latency
            objective: 99
            sli: {latency: {metric: http_request_duration_seconds, selector: 'job="api"', threshold_seconds: 1}}
        """
    )
    good, total = (q.expr for q in plan(slo, [timedelta(hours=1)]))
    assert good == ('sum(rate(http_request_duration_seconds_bucket{job="api", le=~"1|1\\\\.0"}[1h]))')
    assert total == 'sum(rate(http_request_duration_seconds_count{job="api"}[1h]))'


@pytest.mark.parametrize(
    ("threshold", "matcher"),
    [
        pytest.param(0.5, 'le=~"0\\\\.5"', id="a fractional bound has one spelling"),
        pytest.param(1.0, 'le=~"1|1\\\\.0"', id="an integer bound matches Go's 1 and Python's 1.0"),
        pytest.param(2.5, 'le=~"2\\\\.5"', id="2.5"),
    ],
)
def test_le_matcher_covers_every_client_spelling(threshold: float, matcher: str) -> None:
    assert le_matcher(threshold) == matcher


def test_increase_queries_are_read_as_counts() -> None:
    slo = slo_from(
        """
        version: budgetguard/v1
        service: s
        slos:
          - name: x
            objective: 99
            sli: {events: {error_query: 'sum(increase(e[{{.window}}]))', total_query: 'sum(increase(t[{{.window}}]))'}}
        """
    )
    assert all(q.counts for q in plan(slo))


def test_combine_and_split_round_trip() -> None:
    planned = plan(slo_from(), [timedelta(minutes=5), timedelta(hours=1)])
    expr = combine(planned)
    assert expr.count(" or ") == 3
    assert f'"{PART_LABEL}", "errors:5m"' in expr
    answer = [
        Sample({PART_LABEL: "total:5m"}, 10.0),
        Sample({PART_LABEL: "errors:1h", "job": "checkout"}, 0.5),
        Sample({PART_LABEL: "unrelated"}, 99.0),
        Sample({"no": "tag"}, 1.0),
    ]
    parts = split(planned, answer)
    assert parts["total:5m"] == [Sample({}, 10.0)]
    assert parts["errors:1h"] == [Sample({"job": "checkout"}, 0.5)]
    assert parts["errors:5m"] == [] and parts["total:1h"] == []
