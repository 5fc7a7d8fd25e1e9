"""Simulation: how fast three canary rules catch a burning canary, and how often they roll back a healthy one.

Synthetic Poisson traffic, no Prometheus. Every canary is born at t=0 (its windows hold only the traffic
it has served) and each second its requests are Poisson(rate) and its errors Binomial(requests, ratio).
The same streams are judged, in the same run, by three rules:

(a) budgetguard: ``budgetguard.canary.judge`` over the last ``--window`` (default 5m), evaluated every
    second, streak 1, no baseline (the baseline comparison can only add a condition to BURNING, so it
    would only slow detection and lower false rollbacks);
(b) Flagger: every 60 s (``analysis.interval``) the error rate over the last 1m is checked against the
    built-in ``request-success-rate`` at ``thresholdRange.min: 99`` (error rate above 1% fails), and a
    check with no requests fails too (``ErrNoValuesFound``); rollback when failed checks reach
    ``threshold: 5``. Failed checks are cumulative and reset only by a new revision (scheduler.go);
(c) the workbook's fast page rule: error ratio over 1h AND over 5m above 14.4 x budget, evaluated every
    second on the canary's own traffic.

Burning canaries (true burns 20x and 3x by default) run up to ``--horizon`` (1h): time to rollback,
median and p95 over all runs with never-detected runs counted as infinitely late, and the share never
detected. Healthy canaries (true burns 1.0 and 0.5) are simulated as ``--healthy-hours`` canaries of
one ``--horizon`` each, so every rule restarts with each new revision as Flagger does; a false rollback
ends that canary.

To run budgetguard's judge on millions of evaluations, the bench asks it once per request count: the
fewest errors it calls burning (``burning_errors``, the same test), then compares arrays. A sample of
evaluations, most of them on the decision boundary, is re-judged with ``judge`` itself and must agree.

    python bench/canary_sim.py [--runs 200] [--healthy-hours 1000] [--seed 1]

Needs numpy (it comes with scipy, which the tests use). Takes about 20 s on two cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from budgetguard.canary import CanaryKnobs, Counts, burning_errors, healthy_errors, judge  # noqa: E402
from budgetguard.policy import Verdict  # noqa: E402

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

FLAGGER_INTERVAL = 60  # seconds: analysis.interval default, and the 1m query window of request-success-rate
FLAGGER_THRESHOLD = 5  # failed checks before rollback
FLAGGER_MAX_ERROR = Fraction(1, 100)  # thresholdRange.min 99 (% success)
WORKBOOK_LONG, WORKBOOK_SHORT = 3600, 300
RULES = ("budgetguard", "flagger", "workbook")


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


def first_time(fired: npt.NDArray[np.bool_], times: IntArray) -> FloatArray:
    """Seconds until the first True per row; inf when never."""
    hit = fired.any(axis=1)
    return np.where(hit, times[fired.argmax(axis=1)].astype(np.float64), np.inf)


@dataclass
class Outcome:
    """Per rule: the time of the first rollback per canary (inf: none), plus budgetguard's first HEALTHY."""

    rollback: dict[str, FloatArray]
    first_healthy: FloatArray
    checked: int
    boundary: int


def run_rules(
    streams: Streams,
    tables: Tables,
    *,
    limit: Fraction,
    window: int,
    rng: np.random.Generator,
    spot_checks: int,
) -> Outcome:
    seconds = streams.requests.shape[1] - 1
    every_second = np.arange(1, seconds + 1)
    n, k = streams.window(every_second, window)
    tables.grow(int(n.max()))

    # (a) budgetguard, streak 1: the first BURNING verdict acts.
    burning = k >= tables.burning[n]
    healthy = k <= tables.healthy[n]
    checked, boundary = spot_check(n, k, tables, rng, spot_checks)

    # (c) workbook 1h/5m at burn_limit: both ratios strictly above the limit (no traffic never fires).
    n_long, k_long = streams.window(every_second, WORKBOOK_LONG)
    n_short, k_short = streams.window(every_second, WORKBOOK_SHORT)
    num, den = limit.numerator, limit.denominator
    workbook = (k_long * den > num * n_long) & (k_short * den > num * n_short)

    # (b) Flagger: a check every interval over the last interval; no data is a failed check.
    checks = np.arange(FLAGGER_INTERVAL, seconds + 1, FLAGGER_INTERVAL)
    n_check, k_check = streams.window(checks, FLAGGER_INTERVAL)
    max_num, max_den = FLAGGER_MAX_ERROR.numerator, FLAGGER_MAX_ERROR.denominator
    failed = (n_check == 0) | (k_check * max_den > max_num * n_check)
    flagger = np.cumsum(failed, axis=1) >= FLAGGER_THRESHOLD

    return Outcome(
        rollback={
            "budgetguard": first_time(burning, every_second),
            "flagger": first_time(flagger, checks),
            "workbook": first_time(workbook, every_second),
        },
        first_healthy=first_time(healthy, every_second),
        checked=checked,
        boundary=boundary,
    )


def spot_check(
    n: IntArray, k: IntArray, tables: Tables, rng: np.random.Generator, count: int
) -> tuple[int, int]:
    """Re-judge sampled evaluations with ``judge`` itself; most on the boundary, where a slip would show."""
    at_edge = np.flatnonzero(((k == tables.burning[n]) | (k == tables.burning[n] - 1)).ravel())
    anywhere = rng.choice(n.size, size=min(count // 4 + 1, n.size), replace=False)
    edge = rng.choice(at_edge, size=min(count, at_edge.size), replace=False) if at_edge.size else at_edge
    picks = np.concatenate([edge, anywhere])
    for index in picks:
        total, errors = int(n.flat[index]), int(k.flat[index])
        verdict = judge(Counts(errors, total), None, tables.budget, tables.knobs).verdict
        expected = errors >= tables.burning[total]
        if (verdict is Verdict.BURNING) != expected:
            raise SystemExit(f"judge disagrees with the table at {errors} errors in {total}: {verdict}")
        if (verdict is Verdict.HEALTHY) != (errors <= tables.healthy[total]):
            raise SystemExit(f"judge disagrees with the healthy table at {errors} in {total}: {verdict}")
    return len(picks), len(edge)


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


def rule_names(knobs: CanaryKnobs, window: int, limit_burn: float) -> dict[str, str]:
    return {
        "budgetguard": f"budgetguard {knobs.method} {knobs.confidence:g}, {window // 60}m, streak 1",
        "flagger": f"Flagger 1m >1% err, {FLAGGER_INTERVAL}s x {FLAGGER_THRESHOLD} fails",
        "workbook": f"workbook 1h/5m > {limit_burn:g}x",
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rates", type=float, nargs="+", default=[1.0, 10.0, 100.0], help="requests/s")
    parser.add_argument("--burns", type=float, nargs="+", default=[20.0, 3.0], help="true burns to detect")
    parser.add_argument("--healthy-burns", type=float, nargs="+", default=[1.0, 0.5])
    parser.add_argument("--objective", default="0.999", help="as a decimal string, e.g. 0.999")
    parser.add_argument("--burn-limit", type=float, default=14.4, help="budgetguard's and the workbook's")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--method", choices=["exact", "wilson"], default="exact")
    parser.add_argument("--window", type=int, default=300, help="budgetguard's window, seconds")
    parser.add_argument("--horizon", type=int, default=3600, help="seconds a canary lives")
    parser.add_argument("--runs", type=int, default=200, help="burning canaries per cell")
    parser.add_argument("--healthy-hours", type=int, default=1000, help="healthy canary-hours per cell")
    parser.add_argument("--batch", type=int, default=100, help="canaries simulated at once (memory)")
    parser.add_argument("--spot-checks", type=int, default=16, help="judge() re-checks per batch")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    budget = 1 - Fraction(args.objective)
    limit = Fraction(str(args.burn_limit)) * budget
    knobs = CanaryKnobs(burn_limit=args.burn_limit, confidence=args.confidence, method=args.method)
    tables = Tables.empty(budget, knobs)
    names = rule_names(knobs, args.window, args.burn_limit)
    horizon = args.horizon
    started = time.perf_counter()
    checked = boundary = 0

    def simulate(rate: float, burn: float, canaries: int, salt: int) -> Outcome:
        nonlocal checked, boundary
        parts: list[Outcome] = []
        for batch_index, first in enumerate(range(0, canaries, args.batch)):
            size = min(args.batch, canaries - first)
            seed = np.random.SeedSequence([args.seed, salt, int(rate * 1000), int(burn * 1000), batch_index])
            rng = np.random.default_rng(seed)
            streams = Streams.draw(rng, rate, float(burn * budget), size, horizon)
            outcome = run_rules(
                streams, tables, limit=limit, window=args.window, rng=rng, spot_checks=args.spot_checks
            )
            checked += outcome.checked
            boundary += outcome.boundary
            parts.append(outcome)
        return Outcome(
            rollback={rule: np.concatenate([p.rollback[rule] for p in parts]) for rule in RULES},
            first_healthy=np.concatenate([p.first_healthy for p in parts]),
            checked=0,
            boundary=0,
        )

    width = max(len(name) for name in names.values())
    print(
        f"objective {float(1 - budget):.4%}, budget {float(budget):.4%}; canaries born at t=0; "
        f"seed {args.seed}"
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
                if rule == "budgetguard":
                    median, p95 = (quantile(outcome.first_healthy, q) for q in (0.5, 0.95))
                    vouch = f"{fmt_time(median, horizon)} / {fmt_time(p95, horizon)}"
                print(
                    f"{rate:>4g}/s  {burn:>4g}x  {names[rule]:<{width}}  {count:>15,}  "
                    f"{count / hours:>8.4f}  {vouch:>26}"
                )
    elapsed = time.perf_counter() - started
    print()
    print(
        f"judge() re-checked on {checked:,} sampled evaluations ({boundary:,} on the decision boundary): "
        f"all agree with the tables. {elapsed:.0f}s."
    )
    print(
        "How to read: 'median'/'p95' are seconds from the canary's birth to its rollback, counting runs "
        "never rolled back\nwithin the horizon as infinitely late ('>1h'); 'never' is their share. For the "
        f"{args.burn_limit:g}x limit, a 20x canary\nshould be rolled back and a 3x one need not be: 3x "
        "rollbacks are noise that happened to point the right way.\n'false rollbacks' counts healthy "
        "canaries rolled back (at most one each); 'first HEALTHY' is when budgetguard\nfirst vouches for "
        "the canary (its upper bound within the limit), the earliest a promotion gate could pass."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
