"""VictoriaMetrics, the second real backend: the same history as Prometheus gives the same verdicts, and
numbers that differ exactly as the two engines' documented rate algorithms say.

Three layers, all against real servers on 127.0.0.1 (Debian's ``prometheus`` 2.42 and
``victoria-metrics`` 1.79):

1. ``lab.metricsql.expected_vm_increase``/``expected_vm_rate`` equal VictoriaMetrics' own ``increase``
   and ``rate`` bit for bit, on series built to reach every branch of its rollups (as
   tests/test_lab.py proves ``lab.openmetrics.expected_increase`` equal to Prometheus').
2. One 40-day demo history goes into Prometheus (promtool backfill) and VictoriaMetrics (import API);
   budgetguard's Engine evaluates the repository's ``slos/`` against each at the same instants, and each
   engine's budget, burn rates and events equal that engine's model to 1e-9.
3. The engines differ by what their algorithms predict. Samples every ``s`` = 60 s, a window
   ``w = m·s``, an instant ``t = a + δ`` (``a`` the last sample at or before ``t``, ``0 <= δ < s``):

   - VictoriaMetrics: ``rate = (v(a) - v(a - w)) / w``, the growth over the ``m`` steps ending at ``a``
     (the sample at or before ``t - w`` is its "previous value"; nothing is extrapolated).
   - Prometheus, ``δ = 0``: the closed window ``[t - w, t]`` holds the ``m + 1`` samples from ``a - w``
     to ``a``; the extrapolation factor is exactly 1, so the answer is the same growth.
   - Prometheus, ``δ > 0``: the window holds the ``m`` samples from ``a - w + s`` to ``a``; both edges are
     closer than 1.1 s to a sample, so the growth over those ``m - 1`` steps is scaled by ``m / (m - 1)``
     (for counters far from their zero point, as these are).

   Events differ by ``mean(x_2..x_m) - x_1`` (``x_k`` the growth of step ``k``). The factor is the same
   for errors and requests, so Prometheus' error ratio is that of the last ``m - 1`` steps and
   VictoriaMetrics' that of the last ``m``: ``burn_P - burn_VM = (n_1 / N) (burn_P - burn_1)``, with
   ``n_1 / N`` the first step's share of the window's requests and ``burn_1`` that step's burn rate. A
   tolerance known before any data is seen: one step's share of the window (20% at 5m, 1.7% at 1h,
   0.0023% at 30d) times the gap between one minute's burn rate and the rest's.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import math
import random
import re
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

import pytest

from budgetguard.core import promql
from budgetguard.core.errors import QueryError
from budgetguard.core.policy import Evaluation
from budgetguard.core.ports import QueryResult
from budgetguard.engine import Engine
from budgetguard.loader import load_paths
from budgetguard.sources import PrometheusConfig, PrometheusSource
from lab.history import demo_history, demo_timeline
from lab.metricsql import expected_vm_increase, expected_vm_rate, vm_query_millis
from lab.openmetrics import Series, counter, counters_from_increments, expected_increase, gauge
from lab.prometheus import LabError, PrometheusLab, PrometheusNotInstalled
from lab.victoria import VictoriaLab, VictoriaMetricsNotInstalled, import_lines
from tests.conftest import VictoriaFactory

REPO = Path(__file__).resolve().parent.parent
T0 = 1_760_000_000  # 2025-10-09T08:53:20Z: fixed, so these tests do not depend on the clock
MINUTE = 60


@contextmanager
def _fail_if_not_installed() -> Iterator[None]:
    """A missing binary fails the test with the install hint; it never skips (CI runs everything)."""
    try:
        yield
    except (PrometheusNotInstalled, VictoriaMetricsNotInstalled) as exc:
        pytest.fail(str(exc), pytrace=False)


def _every(step_s: float, values: Sequence[float], start: float = T0) -> list[tuple[float, float]]:
    return [(round(start + i * step_s, 3), v) for i, v in enumerate(values)]


# ---------------------------------------------------------------------------------------------------
# Pure: the VictoriaMetrics model, by hand, next to what Prometheus answers for the same samples.


@pytest.mark.parametrize(
    ("samples", "at", "expected_vm", "expected_prometheus"),
    [
        pytest.param(
            _every(60, [float(v) for v in (0, 1, 3, 6, 10, 15, 21)]),
            T0 + 360,
            20.0,
            20.0,
            id="on the scrape grid both count the growth since the sample at the window start",
        ),
        pytest.param(
            _every(60, [float(v) for v in (0, 1, 3, 6, 10, 15, 21)]),
            T0 + 390,
            20.0,
            22.5,
            id="between samples VictoriaMetrics keeps the last five steps, Prometheus scales four by 5/4",
        ),
        pytest.param(
            _every(60, [80.0, 90.0, 100.0, 5.0, 15.0, 25.0]),
            T0 + 300,
            45.0,
            45.0,
            id="a reset is undone by both: the drop from 100 to 5 counts as +5",
        ),
        pytest.param(
            _every(60, [90.0, 92.0, 94.0, 96.0, 100.0, 95.0, 105.0, 110.0]),
            T0 + 420,
            21.0,
            116.0,
            id="a drop under an eighth is a partial reset to VictoriaMetrics and a reset to Prometheus",
        ),
        pytest.param(
            _every(60, [10.0, 27.0, 44.0], start=T0 + 120),
            T0 + 240,
            44.0,
            44.0,
            id="a new counter's first sample counts from zero when small beside the next growth",
        ),
        pytest.param(
            _every(60, [5000.0, 5017.0, 5034.0], start=T0 + 120),
            T0 + 240,
            34.0,
            42.5,
            id="an old counter's first sample counts from itself",
        ),
        pytest.param(
            _every(60, [1.0, 2.0]),
            T0 + 600,
            None,
            None,
            id="no sample inside the window gives no answer, even with one before it",
        ),
    ],
)
def test_vm_increase_by_hand(
    samples: list[tuple[float, float]],
    at: float,
    expected_vm: float | None,
    expected_prometheus: float | None,
) -> None:
    window = timedelta(minutes=5)
    assert expected_vm_increase(samples, at, window) == expected_vm
    assert expected_increase(samples, at, window) == expected_prometheus


def test_vm_rate_divides_by_the_time_between_the_previous_and_the_last_sample() -> None:
    samples = _every(60, [float(v) for v in (0, 1, 3, 6, 10, 15, 21)])
    assert expected_vm_rate(samples, T0 + 390, timedelta(minutes=5)) == 20.0 / 300
    # no previous value: the slope between the window's first and last samples, not growth / window
    late = _every(60, [5000.0, 5017.0, 5034.0], start=T0 + 120)
    assert expected_vm_rate(late, T0 + 300, timedelta(minutes=5)) == 34.0 / 120
    # a window shorter than 1.125 scrape intervals (67.5 s here) is widened to that, so it reaches back
    # past the sample at T0 + 300 to the one at T0 + 240
    assert expected_vm_rate(samples, T0 + 360, timedelta(seconds=10)) == 11.0 / 120


def test_the_query_time_is_truncated_to_the_millisecond_as_victoriametrics_parses_it() -> None:
    # ParseFloat("1085135776.304") * 1e3 is just below ...304, and int64() truncates
    assert vm_query_millis(1_085_135_776.304) == 1_085_135_776_303
    at = datetime(2026, 11, 20, 12, 0, 17, 250_000, tzinfo=UTC)
    assert vm_query_millis(at) == 1_795_176_017_250 == at.timestamp() * 1000


def test_import_lines_split_long_series_and_keep_every_value() -> None:
    series = counter("lab_lines", {"job": "a"}, _every(1, [float(i) for i in range(25)]))
    lines = list(import_lines([series], max_samples_per_line=10))
    assert len(lines) == 3
    assert lines[0].startswith('{"metric":{"__name__":"lab_lines_total","job":"a"},"values":[0.0,1.0,')
    assert f'"timestamps":[{T0 * 1000 + 20_000},{T0 * 1000 + 21_000},' in lines[2]


# ---------------------------------------------------------------------------------------------------
# Against the real VictoriaMetrics 1.79: the proof that the lab's arithmetic is VictoriaMetrics'.


def _odd_series() -> list[Series]:
    """Series that reach every branch of the VM rollups; integer values, which it stores exactly."""
    rng = random.Random(20261126)

    def case(name: str, samples: list[tuple[float, float]]) -> Series:
        return counter("lab_vm_case", {"case": name}, samples)

    def irregular(start: float, end: float, gap: tuple[float, float]) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        t, value = start, float(rng.randint(0, 500))
        while t <= end:
            out.append((round(t, 3), value))
            t += rng.uniform(*gap)
            roll = rng.random()
            if roll < 0.04:
                value = float(rng.randint(0, 40))  # a reset
            elif roll < 0.08:
                value = max(0.0, value - rng.randint(1, max(1, int(value) // 10)))  # a partial reset
            else:
                value += rng.randint(0, 90)
        return out

    two_hours = 2 * 3600
    out = [
        case("every-1s", _every(1, [float(3 * i) for i in range(1200)], start=T0 + 40 * MINUTE)),
        case("every-3s", _every(3, [float(i * i) for i in range(900)])),
        case("every-6s", _every(6, [float(5 * i) for i in range(900)])),
        case("every-15s", _every(15, [float(22 * i) for i in range(two_hours // 15 + 1)])),
        case(
            "every-30s-jittered",
            [(T0 + 30 * i + rng.randint(-4321, 4321) / 1000, 7.0 * i * i) for i in range(241)],
        ),
        case("every-60s", _every(60, [float(i * (i + 1) // 2) for i in range(121)])),
        case(
            "resets-and-partial-resets",
            _every(
                37, [float(v) for v in [5, 50, 120, 0, 30, 31, 200, 190, 3, 90, 400, 410, 400, 11, 12] * 13]
            ),
        ),
        case(
            "late-start-big", _every(60, [5000.0 + 17 * i for i in range(60)], start=T0 + 47 * MINUTE + 13.5)
        ),
        case(
            "late-start-small", _every(60, [1.0 + 17 * i for i in range(60)], start=T0 + 47 * MINUTE + 13.5)
        ),
        case("late-start-flat", _every(60, [50.0] * 30, start=T0 + 47 * MINUTE + 13.5)),
        case(
            "gap",
            _every(10, [3.0 * i for i in range(180)])
            + _every(10, [700.0 + i for i in range(300)], T0 + 4500),
        ),
        case("ends-early", _every(20, [float(i) for i in range(241)])),
        case("two-samples", [(T0 + 600, 3.0), (T0 + 607.25, 9.0)]),
        case("flat", _every(60, [7.0] * 121)),
    ]
    for i in range(12):
        start = T0 + rng.uniform(0, 90 * MINUTE)
        end = start + rng.uniform(5 * MINUTE, 60 * MINUTE)
        out.append(case(f"random-{i}", irregular(start, end, (1.0, 90.0))))
    return out


_INSTANTS = [
    T0 + 0.5,  # the windows reach before any data
    T0 + 3 * MINUTE,
    T0 + 13 * MINUTE + 7.089,
    T0 + 40 * MINUTE + 0.304,  # a time VictoriaMetrics truncates to ...303 ms
    T0 + 47 * MINUTE + 13.5,  # exactly on the late series' first sample
    T0 + 50 * MINUTE,
    T0 + 61 * MINUTE + 0.001,
    T0 + 80 * MINUTE,  # exactly on ends-early's last sample
    T0 + 95 * MINUTE + 59.999,
    T0 + 120 * MINUTE,
    T0 + 123 * MINUTE + 0.7,  # after most series ended
]
# MetricsQL range text and the same window; 10s is shorter than most scrape intervals (rate widens it).
_WINDOWS = [
    ("10s", timedelta(seconds=10)),
    ("1m", timedelta(minutes=1)),
    ("90500ms", timedelta(milliseconds=90_500)),
    ("5m", timedelta(minutes=5)),
    ("7m30s", timedelta(minutes=7, seconds=30)),
    ("1h", timedelta(hours=1)),
]


def test_expected_vm_increase_and_rate_equal_victoriametrics_bit_for_bit(
    victoria_lab: VictoriaFactory,
) -> None:
    series = _odd_series()
    lab = victoria_lab(series)
    by_case = {s.label_map["case"]: s for s in series}
    mismatches: list[str] = []
    compared = absent = 0
    for function, expected_fn in (("increase", expected_vm_increase), ("rate", expected_vm_rate)):
        for at in _INSTANTS:
            for window_text, window in _WINDOWS:
                answer = {
                    sample.labels["case"]: sample.value
                    for sample in lab.query(f"{function}(lab_vm_case_total[{window_text}])", at)
                }
                for name, one in by_case.items():
                    expected = expected_fn(one, at, window)
                    actual = answer.get(name)
                    if expected is None:
                        absent += 1
                    else:
                        compared += 1
                    if actual != expected:
                        mismatches.append(
                            f"{function}({name}[{window_text}]) at {at!r}: victoria {actual!r}, lab {expected!r}"
                        )
    assert mismatches == []
    assert compared > 1000
    assert absent > 100


# ---------------------------------------------------------------------------------------------------
# The lab's process and import.


def test_a_missing_binary_says_how_to_install_it() -> None:
    with pytest.raises(VictoriaMetricsNotInstalled, match=r"apt-get install victoria-metrics"):
        VictoriaLab(binary="victoria-metrics-not-installed-here")


@pytest.mark.e2e  # runs promtool or starts a real Prometheus/VictoriaMetrics
def test_samples_the_server_drops_fail_the_import_with_its_reason() -> None:
    with _fail_if_not_installed(), VictoriaLab(retention=timedelta(days=1)) as lab:
        lab.start()
        old = time.time() - 3 * 86_400
        with pytest.raises(LabError, match=r"stored 0 of the 2 samples.*small_timestamp"):
            lab.import_series([gauge("lab_old", {}, [(round(old), 1.0), (round(old) + 60, 2.0)])])


def test_imported_history_survives_a_restart_on_the_same_port(victoria_lab: VictoriaFactory) -> None:
    lab = victoria_lab([counter("lab_kept", {}, _every(60, [1.0, 2.0, 3.0]))])
    port = lab.port
    lab.stop()
    assert not lab.running
    lab.start()
    assert lab.port == port
    assert lab.query_value("lab_kept_total", T0 + 120) == 3.0
    assert lab.query_value("lab_kept_total", T0 + 60) == 2.0


# ---------------------------------------------------------------------------------------------------
# The same history in both backends, evaluated by budgetguard.

END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
# 30 days back from the incident nine days before END, and then some: every window is fully covered.
SPAN = timedelta(days=40)
STEP = timedelta(minutes=1)
INCIDENT = next(e for e in demo_timeline(END) if e.name == "checkout-incident")
AT_END = END  # on the scrape grid: the newest sample
AT_INCIDENT = INCIDENT.start + timedelta(minutes=20, seconds=17.25)  # mid-incident, between samples
AT_ONSET = INCIDENT.start + timedelta(minutes=2, seconds=47.25)  # the 5m window straddles the start


class Kind(StrEnum):
    EVENTS = "events"  # bad and total events
    LATENCY = "latency"  # good and total events; bad = total - good
    RATIO = "ratio"  # a raw error ratio: no event count


@dataclass(frozen=True)
class SliSeries:
    """Which backfilled series an SLO of slos/ reads, restated here so the test checks budgetguard."""

    kind: Kind
    bad_or_good: Callable[[Series], bool]
    total: Callable[[Series], bool]


def _requests(job: str, code: str) -> Callable[[Series], bool]:
    return lambda s: (
        s.metric_name == "http_requests_total"
        and s.label_map.get("job") == job
        and re.fullmatch(code, s.label_map.get("code", "")) is not None
    )


def _histogram(job: str, part: str, le: str | None = None) -> Callable[[Series], bool]:
    return lambda s: (
        s.metric_name == f"http_request_duration_seconds_{part}"
        and s.label_map.get("job") == job
        and s.label_map.get("le") == le
    )


SLIS = {
    "checkout/requests-availability": SliSeries(
        Kind.EVENTS, _requests("checkout", "5.."), _requests("checkout", ".*")
    ),
    "checkout/requests-latency": SliSeries(
        Kind.LATENCY, _histogram("checkout", "bucket", "0.5"), _histogram("checkout", "count")
    ),
    "search/requests-availability": SliSeries(
        Kind.EVENTS, _requests("search", "(5..|429)"), _requests("search", ".*")
    ),
    "search/requests-not-found": SliSeries(Kind.RATIO, _requests("search", "404"), _requests("search", ".*")),
}


def _quiet() -> list[Series]:
    """A job with requests counted but none made for two days: no traffic, yet series exist."""
    return counters_from_increments(
        "http_requests",
        [{"job": "quiet", "code": "200"}, {"job": "quiet", "code": "500"}],
        start=(END - timedelta(days=2)).timestamp(),
        step=STEP,
        count=2 * 1440 + 1,
        increments=lambda _t: (0.0, 0.0),
    )


@dataclass(frozen=True)
class Backends:
    prometheus: PrometheusLab
    victoria: VictoriaLab
    series: tuple[Series, ...]  # the series the SLOs read (the rest is dropped to save memory)


@pytest.fixture(scope="module")
def backends(real_processes: None) -> Iterator[Backends]:
    history = demo_history(END, seed=1, span=SPAN) + _quiet()
    with ExitStack() as stack:
        with _fail_if_not_installed():
            prometheus = stack.enter_context(PrometheusLab())
            victoria = stack.enter_context(VictoriaLab())
        prometheus.backfill(history)
        prometheus.start()
        victoria.start()
        victoria.import_series(history)
        read = tuple(
            s for s in history if any(f(s) for sli in SLIS.values() for f in (sli.bad_or_good, sli.total))
        )
        del history
        yield Backends(prometheus, victoria, read)


def _evaluate(url: str, at: datetime, paths: Sequence[Path] = (REPO / "slos",)) -> dict[str, Evaluation]:
    loaded = load_paths(paths)
    assert loaded.ok, loaded.problems

    async def run() -> list[Evaluation]:
        async with PrometheusSource(PrometheusConfig(url=url)) as source:
            return await Engine(source).evaluate_all(loaded.slos, at)

    return {ev.slo.id: ev for ev in asyncio.run(run())}


def _query(url: str, expr: str, at: datetime) -> QueryResult:
    async def run() -> QueryResult:
        async with PrometheusSource(PrometheusConfig(url=url)) as source:
            return await source.query(expr, at)

    return asyncio.run(run())


@dataclass(frozen=True)
class Expected:
    """One window's numbers as an engine computes them."""

    error_ratio: float
    events: float | None  # None for raw ratio SLIs


def _expected(sli: SliSeries, series: Sequence[Series], growth: Callable[[Series], float]) -> Expected:
    bad_or_good = math.fsum(growth(s) for s in series if sli.bad_or_good(s))
    total = math.fsum(growth(s) for s in series if sli.total(s))
    if sli.kind is Kind.LATENCY:
        return Expected(max(total - bad_or_good, 0.0) / total, total)
    return Expected(bad_or_good / total, None if sli.kind is Kind.RATIO else total)


def _prometheus_model(at: datetime, window: timedelta) -> Callable[[Series], float]:
    return lambda s: expected_increase(s, at, window) or 0.0


def _vm_model(at: datetime, window: timedelta) -> Callable[[Series], float]:
    # budgetguard reads rate() answers as events per second over the window
    return lambda s: (expected_vm_rate(s, at, window) or 0.0) * window.total_seconds()


def _grid_growth(since: datetime, until: datetime) -> Callable[[Series], float]:
    """Counter growth from the sample at ``since`` to the one at ``until``, resets added back."""

    def growth(s: Series) -> float:
        lo = bisect.bisect_left(s.millis, round(since.timestamp() * 1000))
        hi = bisect.bisect_left(s.millis, round(until.timestamp() * 1000))
        assert s.millis[lo] == round(since.timestamp() * 1000) and s.millis[hi] == round(
            until.timestamp() * 1000
        )
        return math.fsum(b - a if b >= a else b for a, b in itertools.pairwise(s.values[lo : hi + 1]))

    return growth


def _same(actual: float | None, expected: float | None, rel: float = 1e-9) -> bool:
    if actual is None or expected is None:
        return actual is expected
    return actual == pytest.approx(expected, rel=rel)


def _last_sample_at_or_before(at: datetime) -> datetime:
    seconds = math.floor(at.timestamp())
    return datetime.fromtimestamp(seconds - seconds % int(STEP.total_seconds()), UTC)


@pytest.mark.parametrize(
    "at",
    [
        pytest.param(AT_END, id="at the newest sample, on the scrape grid"),
        pytest.param(AT_INCIDENT, id="mid-incident, 17.25 s after a sample"),
        pytest.param(AT_ONSET, id="as the incident starts, 47.25 s after a sample"),
    ],
)
def test_both_backends_give_the_same_verdicts_and_the_numbers_their_algorithms_predict(
    backends: Backends, at: datetime
) -> None:
    on_prometheus = _evaluate(backends.prometheus.url, at)
    on_victoria = _evaluate(backends.victoria.url, at)
    # Every SLI the lab models is there; the shipped examples also hold canary SLOs, compared by verdict only.
    assert set(on_prometheus) == set(on_victoria) >= set(SLIS)
    assert {k: v.verdict for k, v in on_victoria.items()} == {k: v.verdict for k, v in on_prometheus.items()}

    a = _last_sample_at_or_before(at)
    off_grid = a != at
    for slo_id, sli in SLIS.items():
        prom, vm = on_prometheus[slo_id], on_victoria[slo_id]
        budget = prom.slo.error_budget_float
        assert [w.window for w in vm.windows] == [w.window for w in prom.windows]
        for prom_w, vm_w in zip(prom.windows, vm.windows, strict=True):
            window, where = prom_w.window, f"{slo_id} over {prom_w.window}"
            assert prom_w.burn_rate is not None and vm_w.burn_rate is not None, where

            # 2. each engine's numbers are its own algorithm's, through budgetguard, to 1e-9
            p = _expected(sli, backends.series, _prometheus_model(at, window))
            v = _expected(sli, backends.series, _vm_model(at, window))
            assert prom_w.burn_rate == pytest.approx(p.error_ratio / budget, rel=1e-9, abs=1e-12), where
            assert vm_w.burn_rate == pytest.approx(v.error_ratio / budget, rel=1e-9, abs=1e-12), where
            assert _same(prom_w.events, p.events), where
            assert _same(vm_w.events, v.events), where

            # 3. and those algorithms come down to the closed forms of the module docstring
            m = window // STEP
            steps = _expected(sli, backends.series, _grid_growth(a - window, a))
            first = _expected(sli, backends.series, _grid_growth(a - window, a - window + STEP))
            rest = _expected(sli, backends.series, _grid_growth(a - window + STEP, a))
            assert vm_w.burn_rate == pytest.approx(steps.error_ratio / budget, rel=1e-9, abs=1e-12), where
            assert _same(vm_w.events, steps.events), where
            if not off_grid:
                assert prom_w.burn_rate == pytest.approx(vm_w.burn_rate, rel=1e-12, abs=1e-12), where
                assert _same(prom_w.events, vm_w.events, rel=1e-12), where
                continue
            assert prom_w.burn_rate == pytest.approx(rest.error_ratio / budget, rel=1e-9, abs=1e-12), where
            if steps.events is not None and rest.events is not None and first.events is not None:
                assert prom_w.events == pytest.approx(rest.events * m / (m - 1), rel=1e-9), where
                share = first.events / steps.events  # n_1 / N
                burn_first = first.error_ratio / budget
                predicted = share * (prom_w.burn_rate - burn_first)
                assert prom_w.burn_rate - vm_w.burn_rate == pytest.approx(
                    predicted, rel=1e-6, abs=1e-9 * max(1.0, prom_w.burn_rate)
                ), where

        assert prom.budget_remaining is not None and vm.budget_remaining is not None
        month = prom.slo.window
        assert vm.budget_remaining == pytest.approx(
            1 - _expected(sli, backends.series, _vm_model(at, month)).error_ratio / budget, rel=1e-9
        )
        assert prom.budget_remaining == pytest.approx(
            1 - _expected(sli, backends.series, _prometheus_model(at, month)).error_ratio / budget, rel=1e-9
        )

    checkout = "checkout/requests-availability"
    if at == AT_INCIDENT:
        assert on_victoria[checkout].verdict == "burning"
    if at == AT_END:
        assert on_victoria["checkout/requests-latency"].verdict == "warning"  # the latency regression


# ---------------------------------------------------------------------------------------------------
# VictoriaMetrics' quirks, through the real server.


def test_no_data_and_nan_reach_budgetguard_as_no_number(backends: Backends, tmp_path: Path) -> None:
    prometheus, victoria = backends.prometheus.url, backends.victoria.url
    quiet = 'sum(rate(http_requests_total{job="quiet"}[5m]))'
    for expr in ('sum(rate(http_requests_total{job="absent"}[5m]))',):
        assert _query(prometheus, expr, AT_END).samples == ()
        assert _query(victoria, expr, AT_END).samples == ()
    # 0/0: Prometheus answers NaN, which budgetguard reads as None; MetricsQL drops NaN from the answer
    ratio = f"{quiet} / {quiet}"
    assert [s.value for s in _query(prometheus, ratio, AT_END).samples] == [None]
    assert _query(victoria, ratio, AT_END).samples == ()
    assert [s.value for s in _query(victoria, quiet, AT_END).samples] == [0.0]  # a rate of 0 is kept

    slo_file = tmp_path / "quiet.yaml"
    slo_file.write_text(
        textwrap.dedent(
            """
            version: budgetguard/v1
            service: quiet
            slos:
              - name: events
                objective: 99
                sli:
                  events:
                    error_query: sum(rate(http_requests_total{job="quiet",code=~"5.."}[{{.window}}]))
                    total_query: sum(rate(http_requests_total{job="quiet"}[{{.window}}]))
              - name: ratio
                objective: 99
                sli:
                  raw:
                    error_ratio_query: >-
                      sum(rate(http_requests_total{job="quiet",code=~"5.."}[{{.window}}]))
                      / sum(rate(http_requests_total{job="quiet"}[{{.window}}]))
            """
        )
    )
    on_prometheus = _evaluate(prometheus, AT_END, [slo_file])
    on_victoria = _evaluate(victoria, AT_END, [slo_file])
    for results in (on_prometheus, on_victoria):
        assert {ev.verdict for ev in results.values()} == {"inconclusive"}
        assert "no traffic (0 events)" in results["quiet/events"].reason
    # the same verdict, for a reason each engine's answer tells: NaN, or nothing at all
    assert "no traffic (NaN)" in on_prometheus["quiet/ratio"].reason
    assert "no series" in on_victoria["quiet/ratio"].reason


def test_a_bad_query_reaches_the_user_in_victoriametrics_own_words(
    backends: Backends, tmp_path: Path
) -> None:
    # A syntax error is refused at load since issue 13; a query the PromQL parser takes and MetricsQL
    # refuses (info() is Prometheus 3's) still reaches the user in VictoriaMetrics' words.
    broken = 'sum(rate(http_requests_total{job="checkout",code=~"5.."}[{{.window}}])'
    unknown = 'sum(info(rate(http_requests_total{job="checkout",code=~"5.."}[{{.window}}])))'
    assert promql.check(broken) is not None  # refused by `budgetguard check`, before any server
    slo_file = tmp_path / "broken.yaml"
    slo_file.write_text(
        textwrap.dedent(
            f"""
            version: budgetguard/v1
            service: broken
            slos:
              - name: availability
                objective: 99.9
                sli:
                  events:
                    error_query: {unknown}
                    total_query: sum(rate(http_requests_total{{job="checkout"}}[{{{{.window}}}}]))
            """
        )
    )
    (ev,) = _evaluate(backends.victoria.url, AT_END, [slo_file]).values()
    assert ev.verdict == "error"
    assert ev.error_kind == "bad_query"
    assert "unknown func" in ev.reason and "info" in ev.reason  # MetricsQL's words
    assert unknown.replace("{{.window}}", "5m") in ev.reason  # the user's own query

    # errorType is the HTTP status as a string; budgetguard classifies it as a query error
    with pytest.raises(QueryError) as caught:
        _query(backends.victoria.url, broken.replace("{{.window}}", "5m"), AT_END)
    assert (caught.value.status, caught.value.error_type) == (422, "422")


def test_a_zero_latency_offset_shows_the_newest_samples(victoria_lab: VictoriaFactory) -> None:
    hiding = victoria_lab(latency_offset=timedelta(seconds=30))  # VictoriaMetrics' default
    showing = victoria_lab(latency_offset=timedelta(0))
    newest = math.floor(time.time()) - 2  # 2 s old: past the 1 s that 1.79 keeps even at "0s"
    fresh = [gauge("lab_fresh", {}, [(t, float(t - newest)) for t in range(newest - 120, newest + 1, 5)])]
    for lab in (hiding, showing):
        lab.import_series(fresh)
    at = datetime.fromtimestamp(newest, UTC)

    (seen,) = _query(showing.url, "lab_fresh", at).samples
    assert seen.value == 0.0  # the sample at the instant asked for

    before = time.time()
    (hidden,) = _query(hiding.url, "lab_fresh", at).samples
    after = time.time()
    # evaluated at the server's clock minus 30 s instead: the last sample (every 5 s) before that
    oldest, newest_possible = (5 * math.floor((t - 30 - newest) / 5) for t in (before, after))
    assert hidden.value is not None and oldest <= hidden.value <= newest_possible < 0
    assert hiding.query_value("lab_fresh", at, {"nocache": "1"}) == 0.0  # nocache=1 skips the offset
