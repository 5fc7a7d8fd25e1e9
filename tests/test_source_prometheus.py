"""Specification of the Prometheus source: what it sends, and how it reads every answer a real server gives.

Two seams, both the ones production uses: ``httpx.MockTransport`` for the envelope and backend quirk tables
(bodies copied from Prometheus 2.42 answers and the Thanos, Mimir and VictoriaMetrics sources), and a real
HTTP server on 127.0.0.1 for what only a socket can show: start-up 503s, a proxy refusing POST, client-side
timeouts, connection refused and bounded concurrency.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import certifi
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from budgetguard.core.errors import (
    ConfigError,
    QueryError,
    SourceAuthError,
    SourceError,
    SourceProtocolError,
    SourceTimeout,
    SourceUnavailable,
)
from budgetguard.core.ports import MetricsSource, QueryResult, Sample
from budgetguard.sources import PrometheusConfig, PrometheusSource

EXPR = 'sum(rate(http_requests_total{code=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))'
AT = datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)  # unix 1700000000.123
AT_TEXT = "1700000000.123"
MOCK_URL = "http://prometheus.test:9090"

Handler = (
    Callable[[httpx.Request], httpx.Response]
    | Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def vector(*elements: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "vector", "result": list(elements)}, **top}


def element(value: str, **labels: str) -> dict[str, Any]:
    return {"metric": labels, "value": [1700000000.123, value]}


def respond(status: int, body: str | dict[str, Any], content_type: str = "application/json") -> Handler:
    text = body if isinstance(body, str) else json.dumps(body)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, text=text, headers={"Content-Type": content_type})

    return handler


@dataclass
class Recorder:
    """A MockTransport handler that records every request and answers from a status-per-method map."""

    answers: dict[str, httpx.Response] = field(default_factory=dict)
    default: httpx.Response = field(default_factory=lambda: httpx.Response(200, json=vector(element("1"))))
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        template = self.answers.get(request.method, self.default)
        return httpx.Response(template.status_code, headers=template.headers, content=template.content)

    @property
    def methods(self) -> list[str]:
        return [r.method for r in self.requests]


def form(request: httpx.Request) -> dict[str, str]:
    """The parameters of a query request, from the form body (POST) or the query string (GET)."""
    raw = request.content.decode() if request.method == "POST" else request.url.query.decode()
    return {key: values[0] for key, values in parse_qs(raw, keep_blank_values=True).items()}


def mock_source(handler: Handler, **config: Any) -> PrometheusSource:
    return PrometheusSource(
        PrometheusConfig(url=config.pop("url", MOCK_URL), **config), transport=httpx.MockTransport(handler)
    )


async def query_once(handler: Handler, **config: Any) -> QueryResult:
    async with mock_source(handler, **config) as source:
        return await source.query(EXPR, AT)


async def query_error(handler: Handler, **config: Any) -> SourceError:
    with pytest.raises(SourceError) as caught:
        await query_once(handler, **config)
    return caught.value


def test_the_source_satisfies_the_metrics_source_port() -> None:
    source: MetricsSource = mock_source(respond(200, vector()))
    asyncio.run(source.aclose())


# --- the request ---------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_query_is_a_form_encoded_post_of_query_time_timeout_and_no_partial_answers() -> None:
    recorder = Recorder()
    await query_once(recorder)
    [request] = recorder.requests
    assert request.method == "POST"
    assert request.url.path == "/api/v1/query"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form(request) == {
        "query": EXPR,
        "time": AT_TEXT,
        "timeout": "9.0",  # the server gets 90% of our 10 s, so its own timeout message arrives first
        "partial_response": "false",
        "deny_partial_response": "1",
    }


@pytest.mark.anyio
async def test_allowing_partial_responses_sends_neither_thanos_nor_victoriametrics_parameter() -> None:
    recorder = Recorder()
    await query_once(recorder, partial_response=True)
    params = form(recorder.requests[0])
    assert "partial_response" not in params
    assert "deny_partial_response" not in params
    assert params["query"] == EXPR


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("url", "path"),
    [
        pytest.param(
            "https://mimir.example/prometheus", "/prometheus/api/v1/query", id="a path prefix is kept"
        ),
        pytest.param(
            "https://mimir.example/prometheus/",
            "/prometheus/api/v1/query",
            id="a trailing slash is not doubled",
        ),
        pytest.param("http://127.0.0.1:9090/", "/api/v1/query", id="a bare host queries /api/v1/query"),
    ],
)
async def test_the_query_path_is_joined_onto_the_base_url(url: str, path: str) -> None:
    recorder = Recorder()
    await query_once(recorder, url=url)
    assert recorder.requests[0].url.path == path


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("timeout", "sent"),
    [
        pytest.param(
            timedelta(seconds=2.5), "2.25", id="the server gets 90 percent of the timeout in seconds"
        ),
        pytest.param(timedelta(milliseconds=250), "0.225", id="a sub-second timeout keeps its fraction"),
        pytest.param(timedelta(minutes=2), "108.0", id="minutes are converted to seconds"),
    ],
)
async def test_most_of_the_client_timeout_is_also_sent_to_the_server(timeout: timedelta, sent: str) -> None:
    recorder = Recorder()
    await query_once(recorder, timeout=timeout)
    assert form(recorder.requests[0])["timeout"] == sent


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("at", "sent"),
    [
        pytest.param(AT, AT_TEXT, id="an instant with milliseconds is sent with three decimals"),
        pytest.param(
            datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC), "1700000000.000", id="a whole second keeps .000"
        ),
        pytest.param(
            datetime(2023, 11, 14, 22, 13, 20, 123499, tzinfo=UTC),
            "1700000000.123",
            id="microseconds below half a millisecond round down",
        ),
        pytest.param(
            datetime(2023, 11, 14, 22, 13, 20, 999500, tzinfo=UTC),
            "1700000001.000",
            id="microseconds from half a millisecond round up, carrying into the seconds",
        ),
        pytest.param(
            datetime(2023, 11, 15, 0, 13, 20, 123000, tzinfo=timezone(timedelta(hours=2))),
            AT_TEXT,
            id="an instant in another time zone is the same unix time",
        ),
    ],
)
async def test_the_time_parameter_is_the_requested_instant(at: datetime, sent: str) -> None:
    recorder = Recorder()
    async with mock_source(recorder) as source:
        await source.query(EXPR, at)
    assert form(recorder.requests[0])["time"] == sent


@settings(max_examples=60, deadline=None)
@given(
    at=st.datetimes(
        min_value=datetime(1970, 1, 2),
        max_value=datetime(2200, 1, 1),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=-7)), timezone(timedelta(hours=5, minutes=30))]
        ),
    )
)
def test_any_aware_instant_is_sent_as_unix_seconds_rounded_to_the_millisecond(at: datetime) -> None:
    recorder = Recorder()

    async def run() -> None:
        async with mock_source(recorder) as source:
            await source.query(EXPR, at)

    asyncio.run(run())
    # Exact decimal arithmetic on the datetime's own fields: float timestamps are too coarse by 2100.
    since_epoch = at - datetime(1970, 1, 1, tzinfo=UTC)
    exact = (
        Decimal(since_epoch.days * 86_400 + since_epoch.seconds) + Decimal(since_epoch.microseconds) / 10**6
    )
    assert form(recorder.requests[0])["time"] == str(exact.quantize(Decimal("0.001"), rounding=ROUND_HALF_UP))


@pytest.mark.anyio
async def test_a_naive_instant_is_refused_before_anything_is_sent() -> None:
    recorder = Recorder()
    async with mock_source(recorder) as source:
        with pytest.raises(ValueError, match="naive"):
            await source.query(EXPR, datetime(2023, 11, 14, 22, 13, 20))
    assert recorder.requests == []


@pytest.mark.anyio
async def test_tenant_bearer_token_and_extra_headers_are_sent_on_every_request() -> None:
    recorder = Recorder()
    await query_once(
        recorder,
        tenant="team-a|team-b",
        bearer_token="s3cr3t-token-value",
        headers={"X-Api-Key": "key-0123456789", "X-Team": "payments"},
    )
    headers = recorder.requests[0].headers
    assert headers["X-Scope-OrgID"] == "team-a|team-b"
    assert headers["Authorization"] == "Bearer s3cr3t-token-value"
    assert headers["X-Api-Key"] == "key-0123456789"
    assert headers["X-Team"] == "payments"


@pytest.mark.anyio
async def test_basic_auth_is_sent_as_an_authorization_header() -> None:
    recorder = Recorder()
    await query_once(recorder, basic_auth=("grafana", "pa55word-xyz"))
    expected = base64.b64encode(b"grafana:pa55word-xyz").decode()
    assert recorder.requests[0].headers["Authorization"] == f"Basic {expected}"


@pytest.mark.anyio
async def test_the_tenant_setting_wins_over_an_extra_header_of_the_same_name() -> None:
    recorder = Recorder()
    await query_once(recorder, tenant="team-a", headers={"x-scope-orgid": "someone-else"})
    assert recorder.requests[0].headers.get_list("X-Scope-OrgID") == ["team-a"]


@pytest.mark.anyio
async def test_compressed_answers_are_asked_for_unless_compression_is_off() -> None:
    asked, plain = Recorder(), Recorder()
    await query_once(asked)
    await query_once(plain, compression=False)
    assert "gzip" in asked.requests[0].headers["Accept-Encoding"]
    assert plain.requests[0].headers.get_list("Accept-Encoding") == ["identity"]


# --- answers that carry numbers --------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            vector(element("0.02", job="api"), element("0", job="web")),
            QueryResult(samples=(Sample({"job": "api"}, 0.02), Sample({"job": "web"}, 0.0))),
            id="a vector becomes one sample per series with its labels",
        ),
        pytest.param(
            vector(element("NaN")),
            QueryResult(samples=(Sample({}, None),)),
            id="NaN (0/0, no traffic) becomes None, never a float",
        ),
        pytest.param(
            vector(element("+Inf"), element("-Inf", side="neg")),
            QueryResult(samples=(Sample({}, math.inf), Sample({"side": "neg"}, -math.inf))),
            id="+Inf and -Inf are kept as infinite floats",
        ),
        pytest.param(
            vector(element("1e-07"), element("0.020000000000000004", q="long")),
            QueryResult(samples=(Sample({}, 1e-07), Sample({"q": "long"}, 0.020000000000000004))),
            id="exponent and long decimal forms are parsed exactly",
        ),
        pytest.param(
            {"status": "success", "data": {"resultType": "scalar", "result": [1700000000.123, "+Inf"]}},
            QueryResult(samples=(Sample({}, math.inf),)),
            id="a scalar is one sample with empty labels",
        ),
        pytest.param(
            {"status": "success", "data": {"resultType": "scalar", "result": [1700000000.123, "NaN"]}},
            QueryResult(samples=(Sample({}, None),)),
            id="a NaN scalar is one sample without a value",
        ),
        pytest.param(vector(), QueryResult(samples=()), id="an empty vector is no samples, not zero"),
        pytest.param(
            vector(
                element("0.5"),
                warnings=[
                    'Querier "store-eu-1" failed: rpc error: code = Unavailable desc = connection refused',
                    "PromQL warning: metric might not be a counter",
                ],
            ),
            QueryResult(
                samples=(Sample({}, 0.5),),
                warnings=(
                    'Querier "store-eu-1" failed: rpc error: code = Unavailable desc = connection refused',
                    "PromQL warning: metric might not be a counter",
                ),
            ),
            id="Thanos partial-response warnings are passed up with the samples",
        ),
        pytest.param(
            vector(
                element("0.5", job="api"),
                isPartial=True,
                stats={"seriesFetched": "3", "executionTimeMsec": 4},
            ),
            QueryResult(samples=(Sample({"job": "api"}, 0.5),), partial=True),
            id="VictoriaMetrics isPartial true marks the result partial",
        ),
        pytest.param(
            vector(element("0.5"), isPartial=False),
            QueryResult(samples=(Sample({}, 0.5),), partial=False),
            id="VictoriaMetrics isPartial false leaves the result complete",
        ),
        pytest.param(
            {
                "status": "success",
                "data": {
                    "resultType": "vector",
                    "result": [{"metric": {"job": "api"}, "value": [1700000000.123, "3"], "exemplars": []}],
                    "stats": {"timings": {"evalTotalTime": 0.0001}, "samples": {"totalQueryableSamples": 12}},
                },
                "infos": ["PromQL info: metric might not be a counter, name does not end in _total"],
                "somethingNew": {"from": "a future version"},
            },
            QueryResult(samples=(Sample({"job": "api"}, 3.0),)),
            id="unknown keys such as infos and stats are ignored",
        ),
    ],
)
async def test_a_successful_answer_becomes_a_query_result(
    body: dict[str, Any], expected: QueryResult
) -> None:
    assert await query_once(respond(200, body)) == expected


# --- answers that are errors -----------------------------------------------------------------------------

NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.25.3</center>\r\n</body>\r\n</html>\r\n"
)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "content_type", "body", "error_class", "detail", "error_type"),
    [
        pytest.param(
            400,
            "application/json",
            '{"status":"error","errorType":"bad_data","error":"invalid parameter \\"query\\": '
            '1:10: parse error: unclosed left parenthesis"}',
            QueryError,
            'invalid parameter "query": 1:10: parse error: unclosed left parenthesis',
            "bad_data",
            id="a 400 bad_data answer is a QueryError carrying the server message",
        ),
        pytest.param(
            422,
            "application/json",
            '{"status":"error","errorType":"execution","error":"found duplicate series for the match group '
            '{} on the right hand-side of the operation: [{a=\\"2\\"}, {a=\\"1\\"}];many-to-many matching '
            'not allowed: matching labels must be unique on one side"}',
            QueryError,
            "found duplicate series for the match group {} on the right hand-side of the operation: "
            '[{a="2"}, {a="1"}];many-to-many matching not allowed: '
            "matching labels must be unique on one side",
            "execution",
            id="a 422 execution answer (many-to-many) is a QueryError",
        ),
        pytest.param(
            503,
            "application/json",
            '{"status":"error","errorType":"timeout","error":"query timed out in query queue"}',
            SourceTimeout,
            "query timed out in query queue",
            "timeout",
            id="a 503 timeout answer is a SourceTimeout",
        ),
        pytest.param(
            503,
            "application/json",
            '{"status":"error","errorType":"canceled","error":"query was canceled in query execution"}',
            SourceTimeout,
            "query was canceled in query execution",
            "canceled",
            id="a 503 canceled answer (Prometheus 2.42) is a SourceTimeout",
        ),
        pytest.param(
            499,
            "application/json",
            '{"status":"error","errorType":"canceled","error":"context canceled"}',
            SourceTimeout,
            "context canceled",
            "canceled",
            id="a 499 canceled answer (Prometheus 3 and Mimir) is a SourceTimeout",
        ),
        pytest.param(
            499,
            "text/plain; charset=utf-8",
            "context canceled\n",
            SourceTimeout,
            "context canceled",
            None,
            id="a 499 is a SourceTimeout even without an errorType",
        ),
        pytest.param(
            504,
            "application/json",
            '{"status":"error","errorType":"timeout","error":"query timed out"}',
            SourceTimeout,
            "query timed out",
            "timeout",
            id="a 504 timeout answer from a query frontend is a SourceTimeout",
        ),
        pytest.param(
            503,
            "text/plain; charset=utf-8",
            "Service Unavailable\n",
            SourceUnavailable,
            "Service Unavailable",
            None,
            id="a plain-text 503 while Prometheus starts is SourceUnavailable with the body as message",
        ),
        pytest.param(
            503,
            "text/plain",
            "",
            SourceUnavailable,
            "Service Unavailable",
            None,
            id="an empty 503 falls back to the reason phrase",
        ),
        pytest.param(
            401,
            "text/plain; charset=utf-8",
            "no org id\n",
            SourceAuthError,
            "no org id",
            None,
            id="Mimir's plain-text 401 no org id is a SourceAuthError",
        ),
        pytest.param(
            403,
            "text/plain; charset=utf-8",
            "Forbidden\n",
            SourceAuthError,
            "Forbidden",
            None,
            id="a 403 that the GET retry also gets is a SourceAuthError",
        ),
        pytest.param(
            422,
            "application/json",
            '{"status":"error","errorType":"422","error":"error when executing query=\\"rate(x[5m]\\": '
            'cannot parse \\"rate(x[5m]\\": unexpected end of stream"}',
            QueryError,
            'error when executing query="rate(x[5m]": cannot parse "rate(x[5m]": unexpected end of stream',
            "422",
            id="VictoriaMetrics' numeric errorType 422 is a QueryError keeping the string",
        ),
        pytest.param(
            429,
            "application/json",
            '{"status":"error","errorType":"too_many_requests","error":"too many outstanding requests"}',
            SourceUnavailable,
            "too many outstanding requests",
            "too_many_requests",
            id="Mimir's 429 too_many_requests is SourceUnavailable",
        ),
        pytest.param(
            500,
            "application/json",
            '{"status":"error","errorType":"internal",'
            '"error":"expanding series: read chunk: checksum mismatch"}',
            SourceUnavailable,
            "expanding series: read chunk: checksum mismatch",
            "internal",
            id="a 500 internal storage error is SourceUnavailable",
        ),
        pytest.param(
            502,
            "text/html",
            NGINX_502,
            SourceUnavailable,
            "<html> <head><title>502 Bad Gateway</title></head> <body> <center><h1>502 Bad Gateway</h1>"
            "</center> <hr><center>nginx/1.25.3</center> </body> </html>",
            None,
            id="a proxy's 502 HTML page is SourceUnavailable with the page text as message",
        ),
        pytest.param(
            404,
            "text/plain; charset=utf-8",
            "404 page not found\n",
            SourceUnavailable,
            "404 page not found",
            None,
            id="a 404 (wrong path prefix) is SourceUnavailable, not a query error",
        ),
        pytest.param(
            200,
            "application/json",
            '{"status":"error","errorType":"execution","error":"query processing would load too many samples '
            'into memory in query execution"}',
            QueryError,
            "query processing would load too many samples into memory in query execution",
            "execution",
            id="a 200 with status error is classified by its errorType",
        ),
        pytest.param(
            200,
            "application/json",
            '{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}',
            SourceTimeout,
            "query timed out in expression evaluation",
            "timeout",
            id="a 200 with status error and errorType timeout is a SourceTimeout",
        ),
        pytest.param(
            200,
            "application/json",
            '{"status":"error","errorType":"422","error":"cannot parse query"}',
            QueryError,
            "cannot parse query",
            "422",
            id="a 200 with a numeric errorType is classified by that status",
        ),
        pytest.param(
            200,
            "application/json",
            '{"status":"error","errorType":"brand_new_type","error":"something the server invented"}',
            SourceUnavailable,
            "something the server invented",
            "brand_new_type",
            id="an unknown errorType is accepted as a string and treated as the source failing",
        ),
    ],
)
async def test_an_error_answer_becomes_the_matching_source_error(
    status: int,
    content_type: str,
    body: str,
    *,
    error_class: type[SourceError],
    detail: str,
    error_type: str | None,
) -> None:
    error = await query_error(respond(status, body, content_type))
    assert type(error) is error_class
    assert error.detail == detail
    assert error.status == status
    assert error.error_type == error_type
    assert error.query == EXPR
    assert EXPR in str(error)


@pytest.mark.anyio
async def test_a_huge_error_body_is_truncated_in_the_error() -> None:
    error = await query_error(respond(502, "<p>upstream exploded</p>" + "x" * 10_000, "text/html"))
    assert isinstance(error, SourceUnavailable)
    assert error.detail.startswith("<p>upstream exploded</p>xxx")
    assert len(error.detail) <= 510


# --- answers that cannot be understood ------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        pytest.param(
            "application/json",
            '{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1699999740,"1"]]}]}}',
            "matrix",
            id="a matrix (a range selector left in the expression) is refused",
        ),
        pytest.param(
            "application/json",
            '{"status":"success","data":{"resultType":"string","result":[1700000000.123,"hello"]}}',
            "string",
            id="a string result is refused",
        ),
        pytest.param(
            "application/json",
            json.dumps(
                {
                    "status": "success",
                    "data": {
                        "resultType": "vector",
                        "result": [
                            {
                                "metric": {"job": "api"},
                                "histogram": [1700000000.123, {"count": "3", "sum": "1.5", "buckets": []}],
                            }
                        ],
                    },
                }
            ),
            "native histogram sample where a float was expected",
            id="a native histogram sample is refused by name rather than skipped",
        ),
        pytest.param(
            "text/html",
            "<html><body>Welcome to our SSO portal</body></html>",
            "not a JSON object",
            id="a 200 page that is not JSON is a protocol error",
        ),
        pytest.param(
            "application/json", '{"status":"success"}', "data.result", id="JSON without data is refused"
        ),
        pytest.param(
            "application/json",
            '{"status":"success","data":{"resultType":"vector"}}',
            "data.result",
            id="JSON without data.result is refused",
        ),
        pytest.param(
            "application/json",
            '{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"lots"]}]}}',
            "'lots' is not a number",
            id="a sample value that is not a number is refused",
        ),
        pytest.param(
            "application/json",
            '{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,true]}]}}',
            "must be a string",
            id="a boolean sample value is refused",
        ),
        pytest.param(
            "application/json",
            '{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":1},"value":[1,"1"]}]}}',
            "labels must map strings to strings",
            id="non-string label values are refused",
        ),
        pytest.param("application/json", "[1, 2, 3]", "not a JSON object", id="a JSON list is refused"),
        pytest.param(
            "application/json",
            '{"status":"pending","data":{"resultType":"vector","result":[]}}',
            "'pending'",
            id="an unknown status is refused",
        ),
    ],
)
async def test_an_answer_that_breaks_the_api_contract_is_a_protocol_error(
    content_type: str, body: str, message: str
) -> None:
    error = await query_error(respond(200, body, content_type))
    assert type(error) is SourceProtocolError
    assert message in error.detail
    assert error.status == 200
    assert error.query == EXPR


# --- POST refused: fall back to GET ---------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "refusal",
    [
        pytest.param(405, id="after a 405 to POST, GET is used and remembered"),
        pytest.param(501, id="after a 501 to POST, GET is used and remembered"),
    ],
)
async def test_a_proxy_refusing_post_gets_the_same_query_as_get_from_then_on(refusal: int) -> None:
    recorder = Recorder(answers={"POST": httpx.Response(refusal, text="Method Not Allowed\n")})
    async with mock_source(recorder) as source:
        first = await source.query(EXPR, AT)
        second = await source.query(EXPR, AT)
    assert first.samples == second.samples == (Sample({}, 1.0),)
    assert recorder.methods == ["POST", "GET", "GET"]
    assert form(recorder.requests[1]) == form(recorder.requests[0])
    assert form(recorder.requests[1])["time"] == AT_TEXT
    assert recorder.requests[1].content == b""


@pytest.mark.anyio
async def test_after_a_403_to_post_each_query_tries_post_before_get() -> None:
    recorder = Recorder(answers={"POST": httpx.Response(403, text="Forbidden\n")})
    async with mock_source(recorder) as source:
        await source.query(EXPR, AT)
        result = await source.query(EXPR, AT)
    assert result.samples == (Sample({}, 1.0),)
    assert recorder.methods == ["POST", "GET", "POST", "GET"]


@pytest.mark.anyio
async def test_a_get_refused_as_well_is_not_remembered_and_reports_the_refusal() -> None:
    recorder = Recorder(default=httpx.Response(405, text="Method Not Allowed\n"))
    async with mock_source(recorder) as source:
        with pytest.raises(SourceUnavailable) as caught:
            await source.query(EXPR, AT)
        with pytest.raises(SourceUnavailable):
            await source.query(EXPR, AT)
    assert caught.value.status == 405
    assert caught.value.detail == "Method Not Allowed"
    assert recorder.methods == ["POST", "GET", "POST", "GET"]


@pytest.mark.anyio
async def test_a_403_to_both_post_and_get_is_an_auth_error_after_exactly_one_retry() -> None:
    recorder = Recorder(default=httpx.Response(403, text="access denied\n"))
    error = await query_error(recorder)
    assert isinstance(error, SourceAuthError)
    assert recorder.methods == ["POST", "GET"]


# --- transport failures ----------------------------------------------------------------------------------


def raising(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("exc", "error_class"),
    [
        pytest.param(
            httpx.ConnectError("[Errno 111] Connection refused"),
            SourceUnavailable,
            id="a refused connection is SourceUnavailable",
        ),
        pytest.param(
            httpx.ConnectError("[Errno -2] Name or service not known"),
            SourceUnavailable,
            id="a DNS failure is SourceUnavailable",
        ),
        pytest.param(
            httpx.RemoteProtocolError("Server disconnected without sending a response."),
            SourceUnavailable,
            id="a dropped connection is SourceUnavailable",
        ),
        pytest.param(
            httpx.ReadTimeout("timed out"), SourceTimeout, id="an httpx read timeout is SourceTimeout"
        ),
        pytest.param(httpx.ConnectTimeout(""), SourceTimeout, id="an httpx connect timeout is SourceTimeout"),
    ],
)
async def test_a_transport_failure_is_translated_and_chained(
    exc: Exception, error_class: type[SourceError]
) -> None:
    error = await query_error(raising(exc), bearer_token="tok-abcdef-123456")
    assert type(error) is error_class
    assert error.__cause__ is exc
    assert error.query == EXPR
    assert error.status is None
    assert type(exc).__name__ in error.detail
    assert "tok-abcdef-123456" not in str(error)


# --- secrets -----------------------------------------------------------------------------------------------

SECRET_CONFIGS = [
    pytest.param({"bearer_token": "s3cr3t-token-value"}, ["s3cr3t-token-value"], id="a bearer token"),
    pytest.param(
        {"basic_auth": ("grafana", "pa55word-xyz")},
        ["pa55word-xyz", base64.b64encode(b"grafana:pa55word-xyz").decode()],
        id="a basic-auth password",
    ),
    pytest.param(
        {"headers": {"X-Api-Key": "key-0123456789"}}, ["key-0123456789"], id="an extra header value"
    ),
]


@pytest.mark.parametrize(("config", "secrets"), SECRET_CONFIGS)
def test_secrets_are_absent_from_the_config_and_source_reprs(
    config: dict[str, Any], secrets: list[str]
) -> None:
    prometheus_config = PrometheusConfig(url=MOCK_URL, tenant="team-a", **config)
    source = PrometheusSource(prometheus_config, transport=httpx.MockTransport(respond(200, vector())))
    asyncio.run(source.aclose())
    for text in (repr(prometheus_config), repr(source)):
        assert MOCK_URL in text
        for secret in secrets:
            assert secret not in text


@pytest.mark.anyio
@pytest.mark.parametrize(("config", "secrets"), SECRET_CONFIGS)
async def test_a_server_echoing_our_headers_does_not_put_secrets_in_the_error(
    config: dict[str, Any], secrets: list[str]
) -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, text=f"rejected request with headers {dict(request.headers)}")

    error = await query_error(echo, **config)
    assert isinstance(error, SourceAuthError)
    assert "[redacted]" in error.detail
    for secret in secrets:
        assert secret not in str(error)
        assert secret not in repr(error)


# --- configuration -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        pytest.param({"url": "prometheus:9090"}, "absolute http", id="a URL without scheme is refused"),
        pytest.param({"url": "ftp://prometheus:9090"}, "absolute http", id="a non-http URL is refused"),
        pytest.param(
            {"url": "http://admin:hunter22@prometheus:9090"},
            "must not contain credentials",
            id="credentials in the URL are refused (they would show in messages)",
        ),
        pytest.param(
            {"url": "http://prometheus:9090/?x=1"}, "query string", id="a URL with a query string is refused"
        ),
        pytest.param(
            {"url": MOCK_URL, "timeout": timedelta(0)}, "longer than zero", id="a zero timeout is refused"
        ),
        pytest.param({"url": MOCK_URL, "max_concurrency": 0}, "at least 1", id="zero concurrency is refused"),
        pytest.param(
            {"url": MOCK_URL, "bearer_token": "t", "basic_auth": ("u", "p")},
            "not both",
            id="a bearer token and basic auth together are refused",
        ),
        pytest.param(
            {"url": MOCK_URL, "ca_file": "/etc/ca.pem", "verify_tls": False},
            "no effect",
            id="a CA file with verification off is refused",
        ),
    ],
)
def test_an_inconsistent_config_is_refused_with_a_config_error(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        PrometheusConfig(**config)
    assert "hunter22" not in str(caught.value)


def test_a_missing_ca_file_is_a_config_error_when_the_source_is_built(tmp_path: Any) -> None:
    config = PrometheusConfig(url="https://prometheus.example", ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match="ca_file"):
        PrometheusSource(config)


def test_a_readable_ca_file_builds_a_source() -> None:
    source = PrometheusSource(PrometheusConfig(url="https://prometheus.example", ca_file=certifi.where()))
    asyncio.run(source.aclose())


def test_the_config_headers_do_not_change_when_the_callers_dict_does() -> None:
    headers = {"X-Team": "payments"}
    config = PrometheusConfig(url=MOCK_URL, headers=headers)
    headers["X-Team"] = "changed"
    assert config.headers == {"X-Team": "payments"}
    assert hash(config) == hash(PrometheusConfig(url=MOCK_URL, headers={"X-Team": "payments"}))


# --- concurrency through the mock seam ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_no_more_than_max_concurrency_queries_are_in_flight() -> None:
    in_flight = 0
    peak = 0

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return httpx.Response(200, json=vector(element("1")))

    async with mock_source(slow, max_concurrency=3) as source:
        results = await asyncio.gather(*(source.query(EXPR, AT) for _ in range(10)))
    assert len(results) == 10
    assert peak == 3


# --- check_ready ------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_check_ready_asks_the_ready_endpoint_under_the_path_prefix() -> None:
    recorder = Recorder(default=httpx.Response(200, text="Prometheus Server is Ready.\n"))
    async with mock_source(recorder, url="https://thanos.example/query") as source:
        await source.check_ready()
    [request] = recorder.requests
    assert (request.method, request.url.path) == ("GET", "/query/-/ready")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("handler", "detail"),
    [
        pytest.param(respond(503, "Service Unavailable\n", "text/plain"), "Service Unavailable", id="a 503"),
        pytest.param(respond(401, "no org id\n", "text/plain"), "no org id", id="a 401"),
        pytest.param(respond(404, "404 page not found\n", "text/plain"), "404 page not found", id="a 404"),
        pytest.param(
            raising(httpx.ConnectError("[Errno 111] Connection refused")), "Connection refused", id="no"
        ),
        pytest.param(raising(httpx.ReadTimeout("timed out")), "ReadTimeout", id="a timeout"),
    ],
)
async def test_anything_but_200_from_the_ready_endpoint_is_source_unavailable(
    handler: Handler, detail: str
) -> None:
    async with mock_source(handler) as source:
        with pytest.raises(SourceUnavailable) as caught:
            await source.check_ready()
    assert type(caught.value) is SourceUnavailable
    assert detail in caught.value.detail


# --- a real HTTP server on 127.0.0.1 ---------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]


class FakePrometheus(ThreadingHTTPServer):
    """Answers like Prometheus 2.42 on loopback, with switches for the quirks a client must survive."""

    daemon_threads = False
    block_on_close = True  # server_close() joins every handler thread: nothing outlives the test

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), FakePrometheusHandler)
        self.ready = True
        self.refuse_post = False  # behave like a proxy that answers 405 to POST
        self.delay_seconds = 0.0
        self.drip = False  # send a 200 answer one byte every 50 ms: no single read is ever slow
        self.release = threading.Event()  # set at teardown so slow handlers end at once
        self.lock = threading.Lock()
        self.in_flight = 0
        self.peak_in_flight = 0
        self.seen: list[Seen] = []

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class FakePrometheusHandler(BaseHTTPRequestHandler):
    server: FakePrometheus

    def log_message(self, *args: Any) -> None:
        """Quiet: the test output is for failures."""

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        server = self.server
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        params = {k: v[0] for k, v in parse_qs(body if method == "POST" else url.query).items()}
        with server.lock:
            server.seen.append(Seen(method, url.path, params, dict(self.headers.items())))
        if url.path == "/-/ready":
            if server.ready:
                self._send(200, "text/plain; charset=utf-8", "Prometheus Server is Ready.\n")
            else:
                self._send(503, "text/plain; charset=utf-8", "Service Unavailable\n")
            return
        if not server.ready:  # web.go wraps every API handler in the readiness check
            self._send(503, "text/plain; charset=utf-8", "Service Unavailable\n")
            return
        if method == "POST" and server.refuse_post:
            self._send(405, "text/plain; charset=utf-8", "Method Not Allowed\n")
            return
        with server.lock:
            server.in_flight += 1
            server.peak_in_flight = max(server.peak_in_flight, server.in_flight)
        try:
            if server.delay_seconds:
                server.release.wait(server.delay_seconds)
        finally:
            # Before answering: once the client has the answer it may send the next request at once.
            with server.lock:
                server.in_flight -= 1
        answer = vector({"metric": {"job": "api"}, "value": [float(params.get("time", "0")), "0.25"]})
        if server.drip:
            self._drip(json.dumps(answer).encode())
        else:
            self._send(200, "application/json", json.dumps(answer))

    def _drip(self, data: bytes) -> None:
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            for index in range(len(data)):
                self.wfile.write(data[index : index + 1])
                if self.server.release.wait(0.05):
                    return
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should

    def _send(self, status: int, content_type: str, body: str) -> None:
        data = body.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (the timeout test): nothing left to tell it


@pytest.fixture
def fake_prometheus() -> Iterator[FakePrometheus]:
    server = FakePrometheus()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        thread.join()
        server.server_close()


@pytest.mark.anyio
async def test_a_starting_prometheus_is_unavailable_until_ready(fake_prometheus: FakePrometheus) -> None:
    fake_prometheus.ready = False
    async with PrometheusSource(PrometheusConfig(url=fake_prometheus.url)) as source:
        with pytest.raises(SourceUnavailable) as not_ready:
            await source.check_ready()
        with pytest.raises(SourceUnavailable) as starting:
            await source.query(EXPR, AT)
        fake_prometheus.ready = True
        await source.check_ready()
        result = await source.query(EXPR, AT)
    assert (not_ready.value.status, not_ready.value.detail) == (503, "Service Unavailable")
    assert (starting.value.status, starting.value.detail, starting.value.error_type) == (
        503,
        "Service Unavailable",
        None,
    )
    assert starting.value.query == EXPR
    assert result.samples == (Sample({"job": "api"}, 0.25),)


@pytest.mark.anyio
async def test_the_real_request_carries_the_instant_the_query_and_the_timeout(
    fake_prometheus: FakePrometheus,
) -> None:
    config = PrometheusConfig(url=fake_prometheus.url, timeout=timedelta(seconds=3))
    async with PrometheusSource(config) as source:
        await source.query(EXPR, AT)
    [seen] = fake_prometheus.seen
    assert (seen.method, seen.path) == ("POST", "/api/v1/query")
    assert seen.params == {
        "query": EXPR,
        "time": AT_TEXT,
        "timeout": "2.7",
        "partial_response": "false",
        "deny_partial_response": "1",
    }


@pytest.mark.anyio
async def test_a_real_proxy_refusing_post_is_queried_with_get(fake_prometheus: FakePrometheus) -> None:
    fake_prometheus.refuse_post = True
    async with PrometheusSource(PrometheusConfig(url=fake_prometheus.url)) as source:
        first = await source.query(EXPR, AT)
        second = await source.query(EXPR, AT + timedelta(minutes=1))
    assert first.samples == second.samples == (Sample({"job": "api"}, 0.25),)
    assert [s.method for s in fake_prometheus.seen] == ["POST", "GET", "GET"]
    assert fake_prometheus.seen[1].params["time"] == AT_TEXT
    assert fake_prometheus.seen[2].params["time"] == "1700000060.123"
    assert fake_prometheus.seen[1].params["query"] == EXPR


@pytest.mark.anyio
async def test_a_slow_server_is_abandoned_at_the_client_timeout(fake_prometheus: FakePrometheus) -> None:
    fake_prometheus.delay_seconds = 1.5
    config = PrometheusConfig(url=fake_prometheus.url, timeout=timedelta(milliseconds=200))
    async with PrometheusSource(config) as source:
        started = time.monotonic()
        with pytest.raises(SourceTimeout) as caught:
            await source.query(EXPR, AT)
        elapsed = time.monotonic() - started
    assert 0.15 <= elapsed < 1.0
    assert caught.value.query == EXPR
    assert "0.2s" in caught.value.detail


@pytest.mark.anyio
async def test_a_server_trickling_its_answer_is_abandoned_at_the_client_timeout(
    fake_prometheus: FakePrometheus,
) -> None:
    fake_prometheus.drip = True  # each byte arrives well within the timeout; the whole answer never does
    config = PrometheusConfig(url=fake_prometheus.url, timeout=timedelta(milliseconds=300))
    async with PrometheusSource(config) as source:
        started = time.monotonic()
        with pytest.raises(SourceTimeout) as caught:
            await source.query(EXPR, AT)
        elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 1.0
    assert caught.value.query == EXPR
    assert "0.3s" in caught.value.detail


@pytest.mark.anyio
async def test_a_real_server_never_sees_more_than_max_concurrency_requests(
    fake_prometheus: FakePrometheus,
) -> None:
    fake_prometheus.delay_seconds = 0.1
    config = PrometheusConfig(url=fake_prometheus.url, max_concurrency=3)
    async with PrometheusSource(config) as source:
        results = await asyncio.gather(*(source.query(EXPR, AT) for _ in range(12)))
    assert len(results) == len(fake_prometheus.seen) == 12
    assert fake_prometheus.peak_in_flight == 3


@pytest.mark.anyio
async def test_a_real_server_receives_tenant_bearer_and_extra_headers(
    fake_prometheus: FakePrometheus,
) -> None:
    config = PrometheusConfig(
        url=fake_prometheus.url,
        tenant="team-a|team-b",
        bearer_token="s3cr3t-token-value",
        headers={"X-Api-Key": "key-0123456789"},
    )
    async with PrometheusSource(config) as source:
        await source.check_ready()
        await source.query(EXPR, AT)
    for seen in fake_prometheus.seen:
        assert seen.headers["X-Scope-OrgID"] == "team-a|team-b"
        assert seen.headers["Authorization"] == "Bearer s3cr3t-token-value"
        assert seen.headers["X-Api-Key"] == "key-0123456789"
    assert [s.path for s in fake_prometheus.seen] == ["/-/ready", "/api/v1/query"]


@pytest.mark.anyio
async def test_a_real_server_receives_basic_auth(fake_prometheus: FakePrometheus) -> None:
    config = PrometheusConfig(url=fake_prometheus.url, basic_auth=("grafana", "pa55word-xyz"))
    async with PrometheusSource(config) as source:
        await source.query(EXPR, AT)
    [seen] = fake_prometheus.seen
    assert seen.headers["Authorization"] == "Basic " + base64.b64encode(b"grafana:pa55word-xyz").decode()


@pytest.fixture
def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.anyio
async def test_a_closed_port_is_source_unavailable(closed_port_url: str) -> None:
    config = PrometheusConfig(url=closed_port_url, bearer_token="s3cr3t-token-value")
    async with PrometheusSource(config) as source:
        with pytest.raises(SourceUnavailable) as caught:
            await source.query(EXPR, AT)
        with pytest.raises(SourceUnavailable) as not_ready:
            await source.check_ready()
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert isinstance(not_ready.value.__cause__, httpx.ConnectError)
    assert caught.value.query == EXPR
    assert closed_port_url in caught.value.detail
    assert "s3cr3t-token-value" not in str(caught.value)
