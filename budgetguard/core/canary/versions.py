"""Every canary version of one SLO: each judged over each window against the baseline, with latency.

Picks the baseline, splits the confidence between the windows (Bonferroni), combines the windows'
and the latency guard's verdicts into one per version, and words ``budget_consumed`` rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from fractions import Fraction

from budgetguard.core.canary.judgement import CanaryJudgement, judge
from budgetguard.core.canary.knobs import CanaryKnobs, Counts
from budgetguard.core.canary.latency import LatencyCheck, judge_latency
from budgetguard.core.canary.wording import percent
from budgetguard.core.durations import format_duration
from budgetguard.core.spec import BudgetConsumption, CanaryPolicy
from budgetguard.core.verdict import Verdict


@dataclass(frozen=True)
class CanaryWindow:
    window: timedelta
    canary: Counts
    baseline: Counts | None
    judgement: CanaryJudgement


@dataclass(frozen=True)
class CanaryEvaluation:
    """One canary version of one SLO at one evaluation: the verdict across its windows.

    BURNING when any window is burning; HEALTHY when the longest window is healthy and none burns;
    INCONCLUSIVE otherwise. ``judgement`` is the deciding window's: the burning window with the highest
    lower bound, or else the longest window. With several windows each is tested at the confidence
    split between them (Bonferroni), so the chance that one check wrongly calls a canary BURNING stays
    at most ``1 - confidence`` whatever the number of windows.

    With a latency guard (``latency``) the verdict covers both checks: HEALTHY needs both healthy, and
    a latency breach makes the version BURNING only when the guard acts at once (``for`` 0); a breach
    that must last first leaves it INCONCLUSIVE (not promoted, not yet halted) until the guard's
    clock opens an incident. ``judgement`` and ``windows`` stay the error ratio's.
    """

    label: str
    value: str
    baseline: str | None
    verdict: Verdict
    reason: str
    window: timedelta
    judgement: CanaryJudgement
    windows: tuple[CanaryWindow, ...]
    latency: LatencyCheck | None = None

    @property
    def healthy_enough(self) -> bool:
        latency_ok = self.latency is None or self.latency.healthy_enough
        return self.verdict is Verdict.HEALTHY and self.judgement.healthy_enough and latency_ok


def knobs_for(policy: CanaryPolicy, windows: int = 1) -> CanaryKnobs:
    """The knobs of a declared canary block, with the confidence split between ``windows`` tests."""
    return CanaryKnobs(
        burn_limit=policy.burn_limit,
        confidence=1.0 - (1.0 - policy.confidence) / max(windows, 1),
        method=policy.method,
        compare_baseline=policy.compare_baseline,
        baseline_confidence=policy.baseline_confidence,
        streak=policy.streak,
        cooldown=policy.cooldown,
        healthy_min_events=policy.promote_min_events,
    )


def pick_baseline(policy: CanaryPolicy, traffic: Mapping[str, float]) -> str | None:
    """The declared baseline, or the version with most requests over the baseline window (ties: by name).

    A shadow has none: its SLI counts only the shadowed versions, each compared with the primary already.
    """
    if policy.baseline is not None or policy.shadow:
        return policy.baseline
    busy = [(total, value) for value, total in traffic.items() if total > 0]
    if not busy:
        return None
    return min(busy, key=lambda pair: (-pair[0], pair[1]))[1]


def judge_versions(
    policy: CanaryPolicy,
    budget: float | Fraction,
    counts: Mapping[timedelta, Mapping[str, Counts]],
    traffic: Mapping[str, float],
    latency: Mapping[str, Counts | None] | None = None,
) -> tuple[CanaryEvaluation, ...]:
    """Judge every version seen in the canary windows except the baseline.

    ``counts`` holds each canary window's per-version counts; ``traffic`` each version's requests over
    the baseline window. A version present in no canary window is not judged (it is gone). With a
    latency guard, ``latency`` holds each version's slow requests among all over the guard's window
    (None: its histogram has no bucket at the threshold); it is required then.
    """
    if policy.latency is not None and latency is None:
        raise ValueError("the canary block has a latency guard: pass each version's slow and total requests")
    baseline = pick_baseline(policy, traffic)
    knobs = knobs_for(policy, len(policy.windows))
    seen_values = {value for window in policy.windows for value in counts.get(window, {})}
    seen = sorted((seen_values | set(latency or {})) - {baseline})
    out = []
    for value in seen:
        results = []
        for window in policy.windows:
            per_version = counts.get(window, {})
            mine = per_version.get(value, Counts(0.0, 0.0))
            theirs = None if baseline is None else per_version.get(baseline)
            name = f"{policy.label}={value} over {format_duration(window)}"
            results.append(CanaryWindow(window, mine, theirs, judge(mine, theirs, budget, knobs, name=name)))
        burning = [r for r in results if r.judgement.verdict is Verdict.BURNING]
        longest = results[-1]
        if burning:
            decider = max(burning, key=lambda r: (r.judgement.burn_lower, -r.window.total_seconds()))
            verdict = Verdict.BURNING
        else:
            decider = longest
            healthy = longest.judgement.verdict is Verdict.HEALTHY
            verdict = Verdict.HEALTHY if healthy else Verdict.INCONCLUSIVE
        reason = decider.judgement.reason
        if policy.budget_consumed is not None:
            who = f"{policy.label}={value}"
            reason = _consumption_reason(policy.budget_consumed, decider.judgement, knobs, who, reason)
        if baseline is None and policy.compare_baseline:
            reason += "; no baseline version with traffic to compare with"
        check = None
        if policy.latency is not None and latency is not None:
            theirs = None if baseline is None else latency.get(baseline)
            check = judge_latency(
                latency.get(value, Counts(0.0, 0.0)),
                theirs,
                policy.latency,
                knobs_for(policy),
                name=f"{policy.label}={value}",
            )
            verdict, reason = _with_latency(verdict, reason, check)
        out.append(
            CanaryEvaluation(
                label=policy.label,
                value=value,
                baseline=baseline,
                verdict=verdict,
                reason=reason,
                window=decider.window,
                judgement=decider.judgement,
                windows=tuple(results),
                latency=check,
            )
        )
    return tuple(out)


def _with_latency(verdict: Verdict, reason: str, check: LatencyCheck) -> tuple[Verdict, str]:
    """One version's verdict over both checks; the reason of whichever decides (both when healthy)."""
    if verdict is Verdict.BURNING:
        return verdict, reason
    if check.verdict is Verdict.BURNING:
        if check.hold <= timedelta(0):
            return Verdict.BURNING, check.reason
        return (
            Verdict.INCONCLUSIVE,
            f"{check.reason}; acting once it has lasted {format_duration(check.hold)}",
        )
    if verdict is Verdict.HEALTHY and check.verdict is Verdict.HEALTHY:
        return Verdict.HEALTHY, f"{reason}; {check.reason}"
    undecided = [r for v, r in ((verdict, reason), (check.verdict, check.reason)) if v is not Verdict.HEALTHY]
    return Verdict.INCONCLUSIVE, "; ".join(undecided)


def _consumption_reason(
    rule: BudgetConsumption, judgement: CanaryJudgement, knobs: CanaryKnobs, who: str, reason: str
) -> str:
    """The reason in ``budget_consumed``'s terms: the share of the period's budget the version's error
    ratio consumes within the lookback, against the share allowed (its own requests, as if it took all
    traffic, like every canary burn rate)."""
    if judgement.burn_rate is None:
        return reason
    confidence = f"{knobs.confidence * 100:g}%"
    period, within = format_duration(rule.period), format_duration(rule.within)
    head = f"{who} consumed {percent(rule.consumed(judgement.burn_rate))} of the {period} budget in {within}"
    allowed = f"the {percent(rule.fraction)} allowed"
    lower, upper = percent(rule.consumed(judgement.burn_lower)), percent(rule.consumed(judgement.burn_upper))
    if judgement.verdict is Verdict.BURNING:
        head += f" (at least {lower} with {confidence} confidence), above {allowed}"
    elif judgement.verdict is Verdict.HEALTHY:
        head += f" (at most {upper} with {confidence} confidence), within {allowed}"
    else:
        head += f" (between {lower} and {upper} with {confidence} confidence), undecided against {allowed}"
    return f"{head}: {reason.removeprefix(f'{who} over {within}: ')}"
