"""Simulation: how fast canary rules catch a burning canary, and how often they roll back a healthy one.

Synthetic Poisson traffic, no Prometheus. Every canary is born at t=0 (its windows hold only the traffic
it has served) and each second its requests are Poisson(rate) and its errors Binomial(requests, ratio).
The same streams are judged, in the same run, by four rules:

(a) budgetguard over one window: ``budgetguard.core.canary.judge`` over the last ``--window`` (default 5m)
    at ``--confidence`` (0.95), evaluated every second, streak 1, no baseline (the baseline comparison
    can only add a condition to BURNING, so it would only slow detection and lower false rollbacks);
(b) budgetguard's default canary policy (``spec.resolve_canary``): the same, but over each of
    ``--windows`` (default 1m,5m: ``CANARY_FAST_WINDOW`` and the fastest page tier's short window for a
    30-day SLO), each window at the confidence split between them (``canary.knobs_for``, Bonferroni:
    1 - 0.05 / 2 = 0.975 for two), BURNING when any window is (``canary.judge_versions``). Here the
    burn starts at birth, so for a canary's first minute both windows hold the same traffic and the
    split only makes the test stricter; later the 1m window is a second, fresher look;
(c) Flagger: every 60 s (``analysis.interval``) the error rate over the last 1m is checked against the
    built-in ``request-success-rate`` at ``thresholdRange.min: 99`` (error rate above 1% fails), and a
    check with no requests fails too (``ErrNoValuesFound``); rollback when failed checks reach
    ``threshold: 5``. Failed checks are cumulative and reset only by a new revision (scheduler.go);
(d) the workbook's fast page rule: error ratio over 1h AND over 5m above 14.4 x budget, evaluated every
    second on the canary's own traffic.

Both budgetguard rules burn at ``--burn-limit`` (14.4, the fastest page tier's threshold for a 30-day
SLO) and are built as real resolved policies (``resolve_canary``), so their knobs are the ones the
daemon would use; the header prints what the default policy resolves to today.

Burning canaries (true burns 20x and 3x by default) run up to ``--horizon`` (1h): time to rollback,
median and p95 over all runs with never-detected runs counted as infinitely late, and the share never
detected. Healthy canaries (true burns 1.0 and 0.5) are simulated as ``--healthy-hours`` canaries of
one ``--horizon`` each, so every rule restarts with each new revision as Flagger does; a false rollback
ends that canary.

To run budgetguard's judge on millions of evaluations, the bench asks it once per request count and
confidence: the fewest errors it calls burning and the most it calls healthy (``burning_errors`` and
``healthy_errors``, the same tests), then compares arrays. A sample of evaluations of each budgetguard
rule, most of them one error from a window's BURNING or HEALTHY or with its windows disagreeing, is
re-judged with ``judge_versions`` (which calls ``judge`` on every window): every window's verdict and
the combined one must agree with the tables.

    python bench/canary_sim.py [--runs 200] [--healthy-hours 1000] [--windows 1m,5m] [--seed 1]

Needs numpy (it comes with scipy, which the tests use). Takes about 25 s on two cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from fractions import Fraction
from pathlib import Path

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from budgetguard.core.canary import (  # noqa: E402
    CanaryKnobs,
    Counts,
    burning_errors,
    healthy_errors,
    judge_versions,
    knobs_for,
)
from budgetguard.core.durations import format_duration, parse_duration  # noqa: E402
from budgetguard.core.spec import SLI, CanaryPolicy, CanarySpec, EventsSLI, default_tiers, resolve_canary  # noqa: E402
from budgetguard.core.verdict import Verdict  # noqa: E402

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

FLAGGER_INTERVAL = 60  # seconds: analysis.interval default, and the 1m query window of request-success-rate
FLAGGER_THRESHOLD = 5  # failed checks before rollback
FLAGGER_MAX_ERROR = Fraction(1, 100)  # thresholdRange.min 99 (% success)
WORKBOOK_LONG, WORKBOOK_SHORT = 3600, 300
SLO_PERIOD = timedelta(days=30)  # the tiers, hence the default canary windows, follow from it
LABEL, CANARY = "version", "canary"
# resolve_canary checks that the queries group by the canary label; the bench never runs them.
BENCH_SLI = SLI(
    events=EventsSLI(
        error_query=f'sum by ({LABEL}) (rate(http_requests_total{{code=~"5.."}}[{{{{.window}}}}]))',
        total_query=f"sum by ({LABEL}) (rate(http_requests_total[{{{{.window}}}}]))",
    )
)
GUARDS = ("single", "multi")
RULES = (*GUARDS, "flagger", "workbook")


@dataclass
class Tables:
    """Per request count n: the fewest errors judge calls BURNING (n + 1: never) and the most it calls
    HEALTHY (-1: never), grown on demand."""

    budget: Fraction
    knobs: CanaryKnobs
    burning: IntArray
    healthy: IntArray

    @classmethod
    def empty(cls, budget: Fraction, knobs: CanaryKnobs) -> Tables:
        return cls(budget, knobs, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))

    def grow(self, largest: int) -> None:
        start = len(self.burning)
        if largest < start:
            return
        burn, clear = [], []
        for n in range(start, largest + 1):
            first = burning_errors(n, self.budget, self.knobs)
            burn.append(n + 1 if first is None else first)
            most = healthy_errors(n, self.budget, self.knobs)
            clear.append(-1 if most is None else most)
        self.burning = np.concatenate([self.burning, np.array(burn, dtype=np.int64)])
        self.healthy = np.concatenate([self.healthy, np.array(clear, dtype=np.int64)])


@dataclass
class Guard:
    """One budgetguard rule: a resolved canary policy, and the tables of the knobs its windows use."""

    policy: CanaryPolicy
    tables: Tables

    @classmethod
    def of(cls, policy: CanaryPolicy, budget: Fraction) -> Guard:
        # The same split judge_versions applies, so the tables and the re-check judge alike.
        return cls(policy, Tables.empty(budget, knobs_for(policy, len(policy.windows))))

    @property
    def seconds(self) -> tuple[int, ...]:
        return tuple(int(window.total_seconds()) for window in self.policy.windows)

    @property
    def name(self) -> str:
        knobs = self.tables.knobs
        each = " each" if len(self.policy.windows) > 1 else ""
        return f"budgetguard {windows_text(self.policy.windows)}, {knobs.method} {knobs.confidence:.4g}{each}"


def windows_text(windows: Sequence[timedelta]) -> str:
    return "+".join(format_duration(window) for window in windows)


def parse_windows(text: str) -> tuple[timedelta, ...]:
    try:
        windows = tuple(parse_duration(part) for part in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    if any(window % timedelta(seconds=1) for window in windows):
        raise argparse.ArgumentTypeError("the simulation ticks in seconds: give whole-second windows")
    return windows


@dataclass
class Streams:
    """Cumulative requests and errors per canary (rows) at the end of each second (columns, 0..H)."""

    requests: IntArray
    errors: IntArray

    @classmethod
    def draw(cls, rng: np.random.Generator, rate: float, ratio: float, runs: int, seconds: int) -> Streams:
        per_second = rng.poisson(rate, size=(runs, seconds))
        errors = rng.binomial(per_second, ratio)
        zero = np.zeros((runs, 1), dtype=np.int64)
        return cls(
            np.concatenate([zero, np.cumsum(per_second, axis=1)], axis=1),
            np.concatenate([zero, np.cumsum(errors, axis=1)], axis=1),
        )

    def window(self, times: IntArray, length: int) -> tuple[IntArray, IntArray]:
        """Requests and errors in (t - length, t] for each t in ``times`` (clipped at the birth, t=0)."""
        start = np.maximum(times - length, 0)
        return (
            self.requests[:, times] - self.requests[:, start],
            self.errors[:, times] - self.errors[:, start],
        )


def first_time(fired: BoolArray, times: IntArray) -> FloatArray:
    """Seconds until the first True per row; inf when never."""
    hit = fired.any(axis=1)
    return np.where(hit, times[fired.argmax(axis=1)].astype(np.float64), np.inf)


@dataclass(frozen=True)
class Rechecked:
    """Evaluations re-judged with ``judge_versions``: all, those one error from a window's BURNING or
    HEALTHY, and those where one window burns and another does not."""

    evaluations: int = 0
    boundary: int = 0
    split: int = 0

    def __add__(self, other: Rechecked) -> Rechecked:
        return Rechecked(
            self.evaluations + other.evaluations, self.boundary + other.boundary, self.split + other.split
        )


@dataclass
class Outcome:
    """Per rule: the time of the first rollback per canary (inf: none); per budgetguard rule, its first
    HEALTHY and what was re-judged."""

    rollback: dict[str, FloatArray]
    first_healthy: dict[str, FloatArray]
    rechecked: dict[str, Rechecked]


def run_guard(
    guard: Guard, streams: Streams, times: IntArray, rng: np.random.Generator, spot_checks: int
) -> tuple[BoolArray, BoolArray, Rechecked]:
    """BURNING and HEALTHY per canary and second, as ``judge_versions`` would say, and the re-check sizes.

    BURNING when any window is; HEALTHY when the longest window is and none burns.
    """
    counts = [streams.window(times, length) for length in guard.seconds]
    guard.tables.grow(max(int(n.max()) for n, _ in counts))
    burning = np.zeros(counts[0][0].shape, dtype=np.bool_)
    for n, k in counts:
        burning |= k >= guard.tables.burning[n]
    n_long, k_long = counts[-1]
    healthy = (k_long <= guard.tables.healthy[n_long]) & ~burning
    return burning, healthy, spot_check(guard, counts, burning, healthy, rng=rng, count=spot_checks)


def run_rules(
    streams: Streams,
    guards: dict[str, Guard],
    *,
    limit: Fraction,
    rng: np.random.Generator,
    spot_checks: int,
) -> Outcome:
    seconds = streams.requests.shape[1] - 1
    every_second = np.arange(1, seconds + 1)
    outcome = Outcome(rollback={}, first_healthy={}, rechecked={})

    # (a), (b) budgetguard, streak 1: the first BURNING verdict acts.
    for key, guard in guards.items():
        burning, healthy, checked = run_guard(guard, streams, every_second, rng, spot_checks)
        outcome.rollback[key] = first_time(burning, every_second)
        outcome.first_healthy[key] = first_time(healthy, every_second)
        outcome.rechecked[key] = checked

    # (c) Flagger: a check every interval over the last interval; no data is a failed check.
    checks = np.arange(FLAGGER_INTERVAL, seconds + 1, FLAGGER_INTERVAL)
    n_check, k_check = streams.window(checks, FLAGGER_INTERVAL)
    max_num, max_den = FLAGGER_MAX_ERROR.numerator, FLAGGER_MAX_ERROR.denominator
    failed = (n_check == 0) | (k_check * max_den > max_num * n_check)
    outcome.rollback["flagger"] = first_time(np.cumsum(failed, axis=1) >= FLAGGER_THRESHOLD, checks)

    # (d) workbook 1h/5m at burn_limit: both ratios strictly above the limit (no traffic never fires).
    n_long, k_long = streams.window(every_second, WORKBOOK_LONG)
    n_short, k_short = streams.window(every_second, WORKBOOK_SHORT)
    num, den = limit.numerator, limit.denominator
    workbook = (k_long * den > num * n_long) & (k_short * den > num * n_short)
    outcome.rollback["workbook"] = first_time(workbook, every_second)
    return outcome


def spot_check(
    guard: Guard,
    counts: Sequence[tuple[IntArray, IntArray]],
    burning: BoolArray,
    healthy: BoolArray,
    *,
    rng: np.random.Generator,
    count: int,
) -> Rechecked:
    """Re-judge sampled evaluations with ``judge_versions``, which calls ``judge`` on every window.

    Most picks sit where a slip would show: ``count`` one error from some window's BURNING either way,
    half as many one error from its HEALTHY, and with several windows half as many where one window
    burns and another does not (the "any window" rule). Every window's verdict must match its tables,
    and the combined verdict the arrays.
    """
    tables = guard.tables
    burn_edge = np.zeros(burning.shape, dtype=np.bool_)
    healthy_edge = np.zeros(burning.shape, dtype=np.bool_)
    # Recounted here rather than read from ``burning``, so a slip in the "any window" rule cannot hide.
    any_burn = np.zeros(burning.shape, dtype=np.bool_)
    all_burn = np.ones(burning.shape, dtype=np.bool_)
    for n, k in counts:
        first, most = tables.burning[n], tables.healthy[n]
        burn_edge |= (k == first) | (k == first - 1)
        healthy_edge |= (k == most) | (k == most + 1)
        any_burn |= k >= first
        all_burn &= k >= first
    edges = [
        sample(np.flatnonzero(burn_edge.ravel()), count, rng),
        sample(np.flatnonzero(healthy_edge.ravel()), count // 2, rng),
    ]
    split = sample(np.flatnonzero((any_burn & ~all_burn).ravel()), count // 2, rng)
    anywhere = sample(np.arange(burning.size), count // 4 + 1, rng)
    picks = np.concatenate([*edges, split, anywhere])
    for index in picks:
        seen = [(int(k.flat[index]), int(n.flat[index])) for n, k in counts]
        per_window = {
            window: {CANARY: Counts(errors, total)}
            for window, (errors, total) in zip(guard.policy.windows, seen, strict=True)
        }
        (evaluation,) = judge_versions(guard.policy, tables.budget, per_window, {})
        for result, (errors, total) in zip(evaluation.windows, seen, strict=True):
            verdict = result.judgement.verdict
            if (verdict is Verdict.BURNING) != (errors >= tables.burning[total]) or (
                verdict is Verdict.HEALTHY
            ) != (errors <= tables.healthy[total]):
                raise SystemExit(
                    f"{guard.name}: judge disagrees with the tables at {errors} errors in {total} over "
                    f"{format_duration(result.window)}: {verdict}"
                )
        expected = (
            Verdict.BURNING
            if burning.flat[index]
            else Verdict.HEALTHY
            if healthy.flat[index]
            else Verdict.INCONCLUSIVE
        )
        if evaluation.verdict is not expected:
            raise SystemExit(
                f"{guard.name}: judge_versions says {evaluation.verdict} at {seen} (errors, requests) per "
                f"window, the arrays {expected}"
            )
    return Rechecked(len(picks), sum(len(edge) for edge in edges), len(split))


def sample(indices: IntArray, count: int, rng: np.random.Generator) -> IntArray:
    """Up to ``count`` of ``indices``, without repeats."""
    return rng.choice(indices, size=min(count, indices.size), replace=False) if indices.size else indices


def quantile(values: FloatArray, q: float) -> float:
    # inverted_cdf picks an observed value, so an undetected (inf) run is never averaged with a finite one.
    return float(np.quantile(values, q, method="inverted_cdf"))


def fmt_time(seconds: float, horizon: int) -> str:
    if not np.isfinite(seconds):
        return f">{fmt_time(horizon, horizon)}"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds % 3600 == 0:
        return f"{seconds / 3600:.0f}h"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def resolve_policy(args: argparse.Namespace, windows: tuple[timedelta, ...] | None) -> CanaryPolicy:
    """A canary block as the daemon would resolve it: ``windows`` None takes the SLO's defaults."""
    spec = CanarySpec(
        label=LABEL,
        windows=windows,
        burn_limit=args.burn_limit,
        confidence=args.confidence,
        method=args.method,
        compare_baseline=False,
    )
    return resolve_canary(spec, BENCH_SLI, default_tiers(SLO_PERIOD))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rates", type=float, nargs="+", default=[1.0, 10.0, 100.0], help="requests/s")
    parser.add_argument("--burns", type=float, nargs="+", default=[20.0, 3.0], help="true burns to detect")
    parser.add_argument("--healthy-burns", type=float, nargs="+", default=[1.0, 0.5])
    parser.add_argument("--objective", default="0.999", help="as a decimal string, e.g. 0.999")
    parser.add_argument("--burn-limit", type=float, default=14.4, help="budgetguard's and the workbook's")
    parser.add_argument("--confidence", type=float, default=0.95, help="split between a rule's windows")
    parser.add_argument("--method", choices=["exact", "wilson"], default="exact")
    parser.add_argument("--window", type=int, default=300, help="the single-window rule's window, seconds")
    parser.add_argument(
        "--windows",
        type=parse_windows,
        default=parse_windows("1m,5m"),
        help="the multi-window rule's windows, comma-separated durations (default 1m,5m)",
    )
    parser.add_argument("--horizon", type=int, default=3600, help="seconds a canary lives")
    parser.add_argument("--runs", type=int, default=200, help="burning canaries per cell")
    parser.add_argument("--healthy-hours", type=int, default=1000, help="healthy canary-hours per cell")
    parser.add_argument("--batch", type=int, default=100, help="canaries simulated at once (memory)")
    parser.add_argument(
        "--spot-checks", type=int, default=16, help="re-judged evaluations per rule and batch"
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    budget = 1 - Fraction(args.objective)
    limit = Fraction(str(args.burn_limit)) * budget
    try:
        guards = {
            "single": Guard.of(resolve_policy(args, (timedelta(seconds=args.window),)), budget),
            "multi": Guard.of(resolve_policy(args, args.windows), budget),
        }
    except ValueError as exc:  # pydantic's ValidationError too: say which knob, not where in the bench
        parser.error(f"these knobs make no canary policy: {exc}")
    names = {key: guard.name for key, guard in guards.items()}
    names["flagger"] = f"Flagger 1m >1% err, {FLAGGER_INTERVAL}s x {FLAGGER_THRESHOLD} fails"
    names["workbook"] = f"workbook 1h/5m > {args.burn_limit:g}x"
    default = resolve_canary(CanarySpec(label=LABEL), BENCH_SLI, default_tiers(SLO_PERIOD))
    default_knobs = knobs_for(default, len(default.windows))
    horizon = args.horizon
    started = time.perf_counter()
    rechecked = dict.fromkeys(GUARDS, Rechecked())

    def simulate(rate: float, burn: float, canaries: int, salt: int) -> Outcome:
        parts: list[Outcome] = []
        for batch_index, first in enumerate(range(0, canaries, args.batch)):
            size = min(args.batch, canaries - first)
            seed = np.random.SeedSequence([args.seed, salt, int(rate * 1000), int(burn * 1000), batch_index])
            rng = np.random.default_rng(seed)
            streams = Streams.draw(rng, rate, float(burn * budget), size, horizon)
            outcome = run_rules(streams, guards, limit=limit, rng=rng, spot_checks=args.spot_checks)
            for key in GUARDS:
                rechecked[key] += outcome.rechecked[key]
            parts.append(outcome)
        return Outcome(
            rollback={rule: np.concatenate([p.rollback[rule] for p in parts]) for rule in RULES},
            first_healthy={key: np.concatenate([p.first_healthy[key] for p in parts]) for key in GUARDS},
            rechecked={},
        )

    width = max(len(name) for name in names.values())
    print(
        f"objective {float(1 - budget):.4%}, budget {float(budget):.4%}; canaries born at t=0; "
        f"seed {args.seed}"
    )
    print(
        f"budgetguard's default canary policy for a {format_duration(SLO_PERIOD)} SLO: "
        f"{windows_text(default.windows)}, burn limit {default.burn_limit:g}x, "
        f"{default_knobs.method} {default_knobs.confidence:.4g} per window "
        f"({default.confidence:g} split over {len(default.windows)}), burning if any window is"
    )
    print()
    print(f"DETECTION: {args.runs} runs per cell, horizon {fmt_time(horizon, horizon)}")
    print(f"{'rate':>6}  {'burn':>5}  {'rule':<{width}}  {'median':>7}  {'p95':>7}  {'never':>6}")
    for rate in args.rates:
        for burn in args.burns:
            outcome = simulate(rate, burn, args.runs, salt=1)
            for rule in RULES:
                times = outcome.rollback[rule]
                never = float(np.mean(~np.isfinite(times)))
                print(
                    f"{rate:>4g}/s  {burn:>4g}x  {names[rule]:<{width}}  "
                    f"{fmt_time(quantile(times, 0.5), horizon):>7}  "
                    f"{fmt_time(quantile(times, 0.95), horizon):>7}  {never:>6.1%}"
                )
    print()
    print(
        f"HEALTHY: {args.healthy_hours} canaries of {fmt_time(horizon, horizon)} per cell "
        "(= canary-hours at the default horizon)"
    )
    print(
        f"{'rate':>6}  {'burn':>5}  {'rule':<{width}}  {'false rollbacks':>15}  {'per hour':>8}  "
        f"{'first HEALTHY median / p95':>26}"
    )
    hours = args.healthy_hours * horizon / 3600
    for rate in args.rates:
        for burn in args.healthy_burns:
            outcome = simulate(rate, burn, args.healthy_hours, salt=2)
            for rule in RULES:
                count = int(np.sum(np.isfinite(outcome.rollback[rule])))
                vouch = ""
                if rule in outcome.first_healthy:
                    median, p95 = (quantile(outcome.first_healthy[rule], q) for q in (0.5, 0.95))
                    vouch = f"{fmt_time(median, horizon)} / {fmt_time(p95, horizon)}"
                print(
                    f"{rate:>4g}/s  {burn:>4g}x  {names[rule]:<{width}}  {count:>15,}  "
                    f"{count / hours:>8.4f}  {vouch:>26}"
                )
    elapsed = time.perf_counter() - started
    print()
    print(
        "judge_versions() re-judged sampled evaluations, judge() on every window; all agree with the tables, "
        "window by window and combined:"
    )
    for key in GUARDS:
        done = rechecked[key]
        split = f", {done.split:,} where its windows disagree" if len(guards[key].policy.windows) > 1 else ""
        print(
            f"  {names[key]:<{width}}  {done.evaluations:,} evaluations, {done.boundary:,} one error from "
            f"a window's BURNING or HEALTHY{split}"
        )
    print(f"Ran in {elapsed:.0f}s.")
    print(
        "How to read: 'median'/'p95' are seconds from the canary's birth to its rollback, counting runs "
        "never rolled back\nwithin the horizon as infinitely late ('>1h'); 'never' is their share. For the "
        f"{args.burn_limit:g}x limit, a 20x canary\nshould be rolled back and a 3x one need not be: 3x "
        "rollbacks are noise that happened to point the right way.\nBoth budgetguard rules act on the first "
        "BURNING verdict (streak 1), without a baseline; with several windows each\nis judged at the "
        "confidence shown and the canary burns when any window does. 'false rollbacks' counts healthy\n"
        "canaries rolled back (at most one each); 'first HEALTHY' is when a budgetguard rule first vouches "
        "for the canary\n(the upper bound within the limit over its longest window, and no window burning), "
        "the earliest a promotion\ngate could pass."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
