"""The Prometheus adapter: PromQL instant queries over the HTTP API, answered as ``QueryResult`` values.

It owns everything about talking to Prometheus and the backends that mimic its API (Thanos, Mimir,
Cortex, VictoriaMetrics): base URL and path prefix, auth and tenant headers, TLS, the POST-then-GET
fallback, bounded concurrency, timeouts on both ends, and turning every answer, JSON or not, into
samples or into one of the ``SourceError`` subclasses. It is the only place that uses httpx for metrics.

It must not know what an SLO, a burn rate or a verdict is: PromQL goes in, numbers (``None`` for NaN)
come out. Warnings and partial answers are handed up as data and judged by the engine, not here.
Header values, tokens and passwords never appear in logs, error messages or reprs.

Where the behaviour comes from: Prometheus web/api/v1/api.go (v2.42 and 3.x), client_golang's
``DoGetFallback`` and ``apiError``, Mimir pkg/api/error/error.go, VictoriaMetrics' query_response.qtpl
(see the project's reference/prometheus-and-burn-math.md, section 1).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Literal, Self

import httpx
import msgspec

from budgetguard.core.errors import (
    ConfigError,
    QueryError,
    SourceAuthError,
    SourceError,
    SourceProtocolError,
    SourceTimeout,
    SourceUnavailable,
)
from budgetguard.core.ports import QueryResult, RangeResult, RangeSeries, Sample

logger = logging.getLogger(__name__)

_QUERY_PATH = "/api/v1/query"  # joined onto the base URL's path prefix (e.g. Mimir's /prometheus) by httpx
_RANGE_PATH = "/api/v1/query_range"
_READY_PATH = "/-/ready"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# client_golang DoGetFallback: some proxies refuse POST, so retry the same request as GET.
_GET_FALLBACK_STATUSES = frozenset({403, 405, 501})
# Only these prove that the method itself was refused; 403 may just as well be bad credentials.
_METHOD_REFUSED_STATUSES = frozenset({405, 501})

_MAX_DETAIL_CHARS = 500
# Extra header values shorter than this are not treated as secrets: redacting "on" or "1" everywhere
# would garble messages without protecting anything.
_MIN_REDACTED_HEADER_CHARS = 6
_REDACTED = "[redacted]"

# errorType is a free-form string (VictoriaMetrics sends "422", Mimir adds its own), so these are
# lookups with a default, never a closed enum.
_TIMEOUT_ERROR_TYPES = frozenset({"timeout", "canceled"})
_SERVER_TIMEOUT_SHARE = 0.9
_QUERY_ERROR_TYPES = frozenset({"bad_data", "execution", "too_large_entry"})


@dataclass(frozen=True)
class PrometheusConfig:
    """How to reach one Prometheus-compatible query API.

    ``url`` is the base URL including any path prefix (``http://127.0.0.1:9090``,
    ``https://mimir.example/prometheus``); credentials belong in ``bearer_token`` or ``basic_auth``,
    never in the URL, so that the URL can appear in messages.
    """

    url: str
    # Per query; also sent as the API's own `timeout` parameter so that the server stops working too.
    timeout: timedelta = timedelta(seconds=10)
    # Upper bound on requests in flight; an evaluation cycle fans out many queries at once.
    max_concurrency: int = 8
    # Sent as X-Scope-OrgID (Mimir, Cortex); "a|b" tenant federation passes through unchanged.
    tenant: str | None = None
    bearer_token: str | None = field(default=None, repr=False)
    basic_auth: tuple[str, str] | None = field(default=None, repr=False)
    # A CA bundle for a private PKI; the system store is used otherwise.
    ca_file: str | None = None
    verify_tls: bool = True
    # Extra headers; their values may be secret, so they stay out of reprs, logs and errors.
    headers: Mapping[str, str] = field(default_factory=dict, repr=False, hash=False)
    # False asks Thanos (partial_response=false) and VictoriaMetrics (deny_partial_response=1) to fail
    # loudly rather than answer from a subset of their stores; partial data must never look healthy.
    partial_response: bool = False
    # Ask for gzip-compressed answers (Accept-Encoding). Worth it over a WAN; beside Prometheus it only
    # costs CPU on both ends: recording-rule mode at 10,000 SLOs reads ~23 MB of JSON a cycle, and
    # compressing it cost Prometheus ~0.8 CPU-seconds in bench/recording_bench.py.
    compression: bool = True

    def __post_init__(self) -> None:
        try:
            parsed = httpx.URL(self.url)
        except httpx.InvalidURL as exc:
            # Not echoing the URL: it may hold credentials.
            raise ConfigError(f"prometheus url is not a valid URL: {exc}") from exc
        if parsed.userinfo:
            raise ConfigError("prometheus url must not contain credentials: use basic_auth or bearer_token")
        if parsed.scheme not in ("http", "https") or not parsed.host:
            example = f"http://{self.url}" if "://" not in self.url else "http://127.0.0.1:9090"
            raise ConfigError(
                f"prometheus url {self.url!r} must be an absolute http(s) URL with its scheme, e.g. {example}"
            )
        if parsed.query or parsed.fragment:
            raise ConfigError("prometheus url must not have a query string or fragment; use a path prefix")
        if self.timeout <= timedelta(0):
            raise ConfigError(f"prometheus timeout must be longer than zero, got {self.timeout}")
        if self.max_concurrency < 1:
            raise ConfigError(f"prometheus max_concurrency must be at least 1, got {self.max_concurrency}")
        if self.bearer_token is not None and self.basic_auth is not None:
            raise ConfigError("set either bearer_token or basic_auth for prometheus, not both")
        if self.ca_file is not None and not self.verify_tls:
            raise ConfigError("prometheus ca_file has no effect with verify_tls=False; drop one of them")
        # A frozen config must not change when the caller later mutates the dict it passed in. A plain
        # dict (not a MappingProxyType) so that copy.deepcopy and dataclasses.asdict keep working.
        object.__setattr__(self, "headers", dict(self.headers))


class PrometheusSource:
    """A ``MetricsSource`` over the Prometheus HTTP API (``/api/v1/query``).

    One instance owns one connection pool; use it as an async context manager or call ``aclose``.
    It must be used from a single event loop. Building it does no network I/O (only ``ca_file`` is read).
    """

    def __init__(
        self, config: PrometheusConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._config = config
        self._timeout_seconds = config.timeout.total_seconds()
        self._semaphore = asyncio.Semaphore(config.max_concurrency)
        # Flipped once a proxy has refused POST (405/501) and GET got through; never flipped back.
        self._use_get = False
        self._secrets = _secret_values(config)
        self._client = httpx.AsyncClient(
            base_url=config.url,
            headers=_client_headers(config),
            auth=httpx.BasicAuth(*config.basic_auth) if config.basic_auth is not None else None,
            timeout=httpx.Timeout(self._timeout_seconds),
            verify=_tls_verification(config),
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"PrometheusSource(url={self._config.url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def query(self, expr: str, at: datetime) -> QueryResult:
        """Evaluate ``expr`` as an instant query at ``at`` (timezone-aware).

        Raises a ``SourceError`` subclass when there is no trustworthy answer, ``ValueError`` for a
        naive ``at``.
        """
        # The server gets a little less time than we wait, so its own "query timed out" message (which
        # names the query's cost) arrives before our deadline cuts the connection.
        server_timeout = round(self._timeout_seconds * _SERVER_TIMEOUT_SHARE, 3)
        params = {"query": expr, "time": _unix_seconds_text(at), "timeout": str(server_timeout)}
        if not self._config.partial_response:
            params["partial_response"] = "false"
            params["deny_partial_response"] = "1"
        async with self._semaphore:
            response = await self._send_query(expr, params)
        if len(response.content) < _DECODE_ON_THE_LOOP:
            result = self._interpret(response, expr)
        else:  # a recording-mode window at scale: decoded in a worker thread, not on the gates' loop (#14)
            result = await asyncio.to_thread(self._interpret, response, expr)
        logger.debug(
            "query %r at %s: %d samples, %d warnings, partial=%s",
            expr,
            params["time"],
            len(result.samples),
            len(result.warnings),
            result.partial,
        )
        return result

    async def query_range(self, expr: str, start: datetime, end: datetime, step: timedelta) -> RangeResult:
        """Evaluate ``expr`` at ``start``, ``start + step``, ... up to ``end`` (``/api/v1/query_range``).

        Raises what ``query`` raises. Prometheus refuses more than 11,000 points per series: callers
        choose ``step`` accordingly.
        """
        server_timeout = round(self._timeout_seconds * _SERVER_TIMEOUT_SHARE, 3)
        params = {
            "query": expr,
            "start": _unix_seconds_text(start),
            "end": _unix_seconds_text(end),
            "step": f"{step.total_seconds():.3f}".rstrip("0").rstrip("."),
            "timeout": str(server_timeout),
        }
        if not self._config.partial_response:
            params["partial_response"] = "false"
            params["deny_partial_response"] = "1"
        async with self._semaphore:
            response = await self._send_query(expr, params, _RANGE_PATH)
        payload, result_type, result = self._data(response, expr)
        try:
            series = _matrix(result_type, result)
        except ValueError as exc:
            raise SourceProtocolError(self._clip(str(exc)), query=expr, status=response.status_code) from exc
        logger.debug("range query %r: %d series", expr, len(series))
        return RangeResult(
            series=series,
            warnings=_warnings(payload.get("warnings")),
            partial=payload.get("isPartial") is True,
        )

    async def check_ready(self) -> None:
        """Ask ``{url}/-/ready``; anything but 200 (or no answer at all) raises ``SourceUnavailable``.

        Prometheus, Thanos and VictoriaMetrics serve ``/-/ready``; Mimir and Cortex only serve ``/ready``
        at their root, outside the ``/prometheus`` prefix, so against them this check reports a 404.
        """
        async with self._semaphore:
            try:
                async with asyncio.timeout(self._timeout_seconds):
                    response = await self._client.get(_READY_PATH)
            except (TimeoutError, httpx.RequestError) as exc:
                raise SourceUnavailable(
                    f"{self._config.url} is not ready: {self._describe_transport_error(exc)}"
                ) from exc
        if response.status_code != 200:
            raise SourceUnavailable(self._detail(response, None), status=response.status_code)

    async def _send_query(self, expr: str, params: dict[str, str], path: str = _QUERY_PATH) -> httpx.Response:
        # The deadline covers the whole query, GET fallback included, on top of httpx's per-phase timeouts
        # (a server dripping bytes would otherwise never hit a read timeout).
        try:
            async with asyncio.timeout(self._timeout_seconds):
                if self._use_get:
                    return await self._request("GET", expr, params, path)
                response = await self._request("POST", expr, params, path)
                if response.status_code not in _GET_FALLBACK_STATUSES:
                    return response
                refused = response.status_code
                logger.debug("POST %s answered HTTP %s; retrying as GET", _QUERY_PATH, refused)
                response = await self._request("GET", expr, params, path)
                if (
                    refused in _METHOD_REFUSED_STATUSES
                    and response.status_code not in _METHOD_REFUSED_STATUSES
                ):
                    self._use_get = True
                    logger.debug("GET works where POST was refused; sending queries as GET from now on")
                return response
        except TimeoutError as exc:
            raise SourceTimeout(
                f"no answer from {self._config.url} within {self._timeout_seconds:g}s", query=expr
            ) from exc

    async def _request(
        self, method: str, expr: str, params: dict[str, str], path: str = _QUERY_PATH
    ) -> httpx.Response:
        try:
            if method == "GET":
                return await self._client.get(path, params=params)
            return await self._client.post(path, data=params)
        except httpx.TimeoutException as exc:
            raise SourceTimeout(
                f"no answer from {self._config.url} within {self._timeout_seconds:g}s "
                f"({self._describe_transport_error(exc)})",
                query=expr,
            ) from exc
        except httpx.DecodingError as exc:
            raise SourceProtocolError(
                f"could not decode the answer: {self._describe_transport_error(exc)}", query=expr
            ) from exc
        except httpx.RequestError as exc:
            raise SourceUnavailable(
                f"cannot reach {self._config.url}: {self._describe_transport_error(exc)}", query=expr
            ) from exc

    def _interpret(self, response: httpx.Response, expr: str) -> QueryResult:
        if response.is_success:
            fast = _vector_answer(response.content)
            if fast is not None:
                return fast
        # Anything else (an error, a scalar, a malformed answer) takes the general path, which names
        # what is wrong.
        payload, result_type, result = self._data(response, expr)
        try:
            samples = _samples(result_type, result)
        except ValueError as exc:
            raise SourceProtocolError(self._clip(str(exc)), query=expr, status=response.status_code) from exc
        return QueryResult(
            samples=samples,
            warnings=_warnings(payload.get("warnings")),
            partial=payload.get("isPartial") is True,  # VictoriaMetrics cluster, top level
        )

    def _data(self, response: httpx.Response, expr: str) -> tuple[dict[str, object], object, object]:
        """(the payload, data.resultType, data.result) of a successful answer; raises a SourceError else."""
        # The order matters (reference 1.4): HTTP status first, then JSON, then the raw body as the message.
        status = response.status_code
        payload = _json_or_none(response.content)
        if not response.is_success:
            raise self._error(response, payload, expr)
        if not isinstance(payload, dict):
            raise SourceProtocolError(
                f"the answer is not a JSON object: {self._detail(response, None)}", query=expr, status=status
            )
        if payload.get("status") == "error":
            raise self._error(response, payload, expr)
        if payload.get("status") != "success":
            raise SourceProtocolError(
                f"the answer's status is {payload.get('status')!r}, expected 'success' or 'error'",
                query=expr,
                status=status,
            )
        data = payload.get("data")
        if not isinstance(data, dict) or "result" not in data:
            raise SourceProtocolError("the answer has no data.result", query=expr, status=status)
        return payload, data.get("resultType"), data["result"]

    def _error(self, response: httpx.Response, payload: object, expr: str) -> SourceError:
        error_type: str | None = None
        if isinstance(payload, dict):
            raw_type = payload.get("errorType")
            if isinstance(raw_type, str) and raw_type:
                error_type = raw_type
        error_class = _classify(response.status_code, error_type)
        return error_class(
            self._detail(response, payload), query=expr, status=response.status_code, error_type=error_type
        )

    def _detail(self, response: httpx.Response, payload: object) -> str:
        """The server's own words: the JSON ``error`` field, else the body text, else the reason phrase."""
        text = ""
        if isinstance(payload, dict) and isinstance(payload.get("error"), str):
            text = payload["error"].strip()
        if not text:
            text = " ".join(response.text.split())
        if not text:
            text = response.reason_phrase or f"HTTP {response.status_code}"
        return self._clip(self._redact(text))

    def _describe_transport_error(self, exc: BaseException) -> str:
        text = str(exc).strip()
        return self._redact(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)

    def _redact(self, text: str) -> str:
        # A proxy may echo a header back in its error page; our messages must not carry it further.
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        return text

    @staticmethod
    def _clip(text: str) -> str:
        return text if len(text) <= _MAX_DETAIL_CHARS else text[:_MAX_DETAIL_CHARS] + "..."


def _classify(status: int, error_type: str | None) -> type[SourceError]:
    """HTTP status first, errorType second.

    Whatever is not named here (429 too_many_requests, 5xx, a 404 from a wrong path prefix, a proxy's
    HTML page, an errorType invented after this was written) is the source failing, not the query.
    """
    if status in (401, 403):
        return SourceAuthError
    if status == 499 or error_type in _TIMEOUT_ERROR_TYPES:
        return SourceTimeout
    if status in (400, 413, 422):
        return QueryError
    if 200 <= status < 300 and error_type is not None:
        if error_type in _QUERY_ERROR_TYPES:
            return QueryError
        if error_type.isdigit() and not 200 <= int(error_type) < 300:
            # VictoriaMetrics puts the HTTP status in errorType.
            return _classify(int(error_type), None)
    return SourceUnavailable


# --- the fast path: a well-formed vector answer ---------------------------------------------------------
#
# Recording-rule mode reads ~20,000 series per query at 10,000 SLOs. msgspec decodes and type-checks such
# an answer in C, several times faster than json.loads followed by the checks of ``_vector_sample``, and
# its structs are not tracked by the garbage collector (they hold only strings, numbers and lists of
# each other: no cycles), so a large answer does not set off full collections. Whatever does not match
# exactly these types goes to the general path, which accepts the same answers and explains the rest.


# Answers larger than this are decoded in a worker thread: a few milliseconds of decoding on the event
# loop cost less than the thread's hand-offs; ~20,000 series (~3 MB at 10,000 SLOs) cost ~50-100 ms.
_DECODE_ON_THE_LOOP = 256 * 1024


class _VectorElement(msgspec.Struct, gc=False):
    value: tuple[float, float]  # [<unix time>, "<value>"], the value string read as a number (lax mode)
    metric: dict[str, str] = {}


class _VectorData(msgspec.Struct, gc=False):
    resultType: Literal["vector"]  # the API's field names
    result: list[_VectorElement]


class _VectorAnswer(msgspec.Struct, gc=False):
    status: Literal["success"]
    data: _VectorData
    warnings: list[str] | None = None
    isPartial: bool | None = None  # VictoriaMetrics cluster, top level


# Lax mode reads "0.25", "1e-05", "NaN", "Inf" and "-Inf" (and plain JSON numbers) as floats in C, but not
# Prometheus' "+Inf": such an answer takes the general path, as does anything else float() would read.
# One difference from float(): lax mode reads "-0" as 0.0, which no arithmetic here tells apart.
_VECTOR_DECODER = msgspec.json.Decoder(_VectorAnswer, strict=False)


def _vector_answer(content: bytes) -> QueryResult | None:
    """A successful vector answer, or None when it is anything else (the general path decides)."""
    try:
        answer = _VECTOR_DECODER.decode(content)
    except msgspec.MsgspecError:  # not JSON, not exactly these types, or a "+Inf"
        return None
    isnan = math.isnan
    samples = tuple(Sample(e.metric, None if isnan(e.value[1]) else e.value[1]) for e in answer.data.result)
    return QueryResult(samples=samples, warnings=_warnings(answer.warnings), partial=answer.isPartial is True)


def _samples(result_type: object, result: object) -> tuple[Sample, ...]:
    if result_type == "vector":
        if not isinstance(result, list):
            raise ValueError("a vector result must be a list")
        return tuple(_vector_sample(element) for element in result)
    if result_type == "scalar":
        return (Sample(labels={}, value=_sample_value(result)),)
    if result_type in ("matrix", "string"):
        raise ValueError(
            f"a {result_type} result where an instant vector or scalar was expected "
            "(the expression must not end in a range selector or be a string)"
        )
    raise ValueError(f"unknown resultType {result_type!r}")


def _matrix(result_type: object, result: object) -> tuple[RangeSeries, ...]:
    if result_type != "matrix":
        raise ValueError(f"a {result_type} result where a range query's matrix was expected")
    if not isinstance(result, list):
        raise ValueError("a matrix result must be a list")
    out = []
    for element in result:
        if not isinstance(element, dict) or not isinstance(element.get("values", []), list):
            raise ValueError(f"a matrix element must be an object with a list of values, got {element!r}")
        labels = element.get("metric", {})
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            raise ValueError(f"matrix element labels must map strings to strings, got {labels!r}")
        points = []
        for pair in element.get("values", []):
            value = _sample_value(pair)
            try:
                at = _EPOCH + timedelta(seconds=float(pair[0]))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"a point's time must be unix seconds, got {pair[0]!r}") from exc
            points.append((at, value))
        out.append(RangeSeries(labels=dict(labels), points=tuple(points)))
    return tuple(out)


def _vector_sample(element: object) -> Sample:
    if not isinstance(element, dict):
        raise ValueError(f"a vector element must be an object, got {element!r}")
    labels = element.get("metric", {})
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise ValueError(f"vector element labels must map strings to strings, got {labels!r}")
    if "value" not in element:
        if "histogram" in element:
            raise ValueError(f"native histogram sample where a float was expected, series {labels!r}")
        raise ValueError(f"vector element without a value, series {labels!r}")
    return Sample(labels=dict(labels), value=_sample_value(element["value"]))


def _sample_value(pair: object) -> float | None:
    """``[<unix_time>, "<value>"]`` -> float; ``"NaN"`` (Prometheus' 0/0) becomes ``None``."""
    if not isinstance(pair, list) or len(pair) != 2:
        raise ValueError(f"a sample must be [<time>, <value>], got {pair!r}")
    raw = pair[1]
    # Prometheus quotes every value (reference 1.3); plain JSON numbers are accepted from look-alikes.
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise ValueError(f"a sample value must be a string, got {raw!r}")
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(f"sample value {raw!r} is not a number") from exc
    return None if math.isnan(value) else value


def _warnings(raw: object) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, list):
        return tuple(str(item) for item in raw)
    # Malformed, but still a warning: dropping it could make partial data look complete.
    return (str(raw),)


def _json_or_none(content: bytes) -> object:
    try:
        parsed: object = json.loads(content)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        return None
    return parsed


def _unix_seconds_text(at: datetime) -> str:
    """Unix seconds with exactly three decimals, rounded to the millisecond as Prometheus' parseTime does."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"query time {at.isoformat()} is naive; pass a timezone-aware datetime")
    micros = (at - _EPOCH) // timedelta(microseconds=1)
    millis = (micros + 500) // 1000
    sign = "-" if millis < 0 else ""
    seconds, fraction = divmod(abs(millis), 1000)
    return f"{sign}{seconds}.{fraction:03d}"


def _client_headers(config: PrometheusConfig) -> httpx.Headers:
    headers = httpx.Headers({"User-Agent": "budgetguard"})
    headers.update(config.headers)
    # The dedicated settings win over a same-named extra header (httpx.Headers is case-insensitive).
    if config.tenant is not None:
        headers["X-Scope-OrgID"] = config.tenant
    if config.bearer_token is not None:
        headers["Authorization"] = f"Bearer {config.bearer_token}"
    if not config.compression:
        headers["Accept-Encoding"] = "identity"
    return headers


def _tls_verification(config: PrometheusConfig) -> ssl.SSLContext | bool:
    if not config.verify_tls:
        return False
    if config.ca_file is None:
        return True
    try:
        return ssl.create_default_context(cafile=config.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"prometheus ca_file {config.ca_file!r} cannot be loaded: {exc}") from exc


def _secret_values(config: PrometheusConfig) -> tuple[str, ...]:
    secrets: set[str] = set()
    if config.bearer_token:
        secrets.add(config.bearer_token)
    if config.basic_auth is not None:
        user, password = config.basic_auth
        if password:
            secrets.add(password)
        # What goes on the wire; an echoing proxy would show this form.
        secrets.add(base64.b64encode(f"{user}:{password}".encode()).decode("ascii"))
    secrets.update(v for v in config.headers.values() if len(v) >= _MIN_REDACTED_HEADER_CHARS)
    # Longest first, so that a secret containing another is replaced whole.
    return tuple(sorted(secrets, key=len, reverse=True))
