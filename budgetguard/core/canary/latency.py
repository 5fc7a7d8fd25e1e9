"""The latency guard: "p99 above 500ms" judged as the share of requests slower than 500ms.

A quantile above a threshold is a share of slow requests above 1 - quantile, so ``judge_latency``
reuses ``judge`` with that share as the budget and writes the reason in latency's terms. How long a
breach must last before acting is ``streaks``' (``Streak.advance_latency``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

from budgetguard.core.canary.judgement import judge
from budgetguard.core.canary.knobs import CanaryKnobs, Counts, healthy_side
from budgetguard.core.canary.wording import count_text, p_text, percent
from budgetguard.core.durations import format_duration
from budgetguard.core.spec import CanaryLatencySpec, seconds_text
from budgetguard.core.verdict import Verdict


def format_held(held: timedelta) -> str:
    """How long a breach has lasted, to the second (evaluation timestamps carry microseconds)."""
    return format_duration(timedelta(seconds=round(held.total_seconds())))


@dataclass(frozen=True)
class LatencyCheck:
    """One version's latency against ``canary.latency``, at one evaluation.

    "p99 above 500ms" is "more than 1% of requests slower than 500ms": ``slow`` requests (``count_text``
    minus the bucket at the threshold) among all, judged by ``judge`` against the limit 1 - quantile
    with the same confidence bounds and baseline test as an error ratio. BURNING here is evidence of
    a breach now; the guard acts only once it has lasted ``hold`` (``Streak.advance_latency``).
    Ratios are shares of requests; ``slow`` is None when the version's histogram has no bucket at
    the threshold.
    """

    verdict: Verdict
    headline: str  # "p99 latency of version=v2 above 500ms"
    evidence: str  # "4.1% of 820 requests in the last 1m slower than 500ms, at least 2.3% ..."
    window: timedelta
    hold: timedelta
    quantile: float
    threshold_seconds: float
    slow: Counts | None
    baseline: Counts | None
    slow_ratio: float | None
    lower_bound: float
    upper_bound: float
    limit_ratio: float  # 1 - quantile
    p_value_vs_baseline: float | None
    baseline_slow_ratio: float | None
    events_needed: int | None
    healthy_enough: bool

    @property
    def reason(self) -> str:
        return f"{self.headline}: {self.evidence}"

    def held_reason(self, held: timedelta) -> str:
        """The reason once the breach has lasted ``held``: the article's "above 500ms for 2m"."""
        return f"{self.headline} for {format_held(held)}: {self.evidence}"


def judge_latency(
    slow: Counts | None,
    baseline: Counts | None,
    guard: CanaryLatencySpec,
    knobs: CanaryKnobs,
    *,
    name: str = "canary",
) -> LatencyCheck:
    """Judge one version's share of requests slower than ``guard.threshold_seconds`` over its window.

    ``judge`` decides, with 1 - quantile as the "budget" and a 1x limit, so the significance, the
    baseline comparison and the requests still needed are exactly those of an error ratio.
    """
    limit = guard.slow_ratio_limit
    p, threshold = guard.quantile_name, seconds_text(guard.threshold_seconds)
    subject = f"{p} latency of {name}"
    window = format_duration(guard.measured_over)
    confidence = f"{knobs.confidence * 100:g}%"
    allows = f"({p} allows {percent(limit)})"
    j = None if slow is None else judge(slow, baseline, limit, replace(knobs, burn_limit=1.0), name=subject)
    if slow is None or j is None:
        headline = f"{subject} not judged"
        evidence = (
            f"its requests have no {guard.metric}_bucket series at le={guard.threshold_seconds:g}; "
            "threshold_seconds must be one of its histogram's bucket boundaries"
        )
    elif healthy_side(slow)[1] == 0:
        headline = f"{subject} not judged"
        evidence = (
            f"no requests in the last {window}; {j.events_needed or 0:,} requests all faster than "
            f"{threshold} would show with {confidence} confidence that its {p} stays within it"
        )
    else:
        measured = (
            f"{percent(j.error_ratio or 0.0)} of {count_text(slow.total, 'request')} in the last {window} "
            f"slower than {threshold}"
        )
        versus = ""
        if j.p_value_vs_baseline is not None and j.baseline_error_ratio is not None:
            versus = f"the baseline's {percent(j.baseline_error_ratio)} (p={p_text(j.p_value_vs_baseline)})"
        if j.verdict is Verdict.BURNING:
            headline = f"{subject} above {threshold}"
            evidence = f"{measured}, at least {percent(j.lower_bound)} with {confidence} confidence {allows}"
            if versus:
                evidence += f"; and worse than {versus}"
            elif baseline is not None and knobs.compare_baseline:
                evidence += "; the baseline had no traffic, so the bound alone decides"
        elif j.verdict is Verdict.HEALTHY:
            headline = f"{subject} within {threshold}"
            evidence = f"{measured}, at most {percent(j.upper_bound)} with {confidence} confidence {allows}"
        elif j.lower_bound > limit:
            headline = f"{subject} above {threshold}, but so is the baseline's"
            evidence = (
                f"{measured}, at least {percent(j.lower_bound)} with {confidence} confidence {allows}, "
                f"but not significantly worse than {versus}: "
                "the service as a whole is slow, not just this version"
            )
        else:
            headline = f"{subject} undecided against {threshold}"
            evidence = (
                f"{measured}, between {percent(j.lower_bound)} and {percent(j.upper_bound)} with "
                f"{confidence} confidence, which includes the {percent(limit)} {p} allows"
            )
            if j.events_needed is None:
                evidence += "; no amount of traffic at this share would decide"
            else:
                evidence += (
                    f"; about {count_text(j.events_needed, 'more request')} at this share would decide"
                )
    return LatencyCheck(
        verdict=Verdict.INCONCLUSIVE if j is None else j.verdict,
        headline=headline,
        evidence=evidence,
        window=guard.measured_over,
        hold=guard.hold,
        quantile=guard.quantile,
        threshold_seconds=guard.threshold_seconds,
        slow=slow,
        baseline=baseline,
        slow_ratio=None if j is None else j.error_ratio,
        lower_bound=0.0 if j is None else j.lower_bound,
        upper_bound=1.0 if j is None else j.upper_bound,
        limit_ratio=limit,
        p_value_vs_baseline=None if j is None else j.p_value_vs_baseline,
        baseline_slow_ratio=None if j is None else j.baseline_error_ratio,
        events_needed=None if j is None else j.events_needed,
        healthy_enough=j is not None and j.healthy_enough,
    )
