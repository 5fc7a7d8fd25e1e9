"""Canary verdicts with statistical confidence: is this version burning the error budget too fast?

A canary serves a small share of traffic, so its error ratio over a short window rests on few
requests: 1 failure in 10 requests is a 10% ratio, a 100x burn at 99.9%, and proves almost nothing.
Flagger and Argo Rollouts compare that raw ratio with a fixed threshold, and the SRE workbook's 1h/5m
page rule (burn > 14.4 over both windows) does the same; at low traffic all of them roll back on noise
or wait for a fixed number of failed checks (reference ``prometheus-and-burn-math.md`` §3.9, §4). This
module instead asks how sure the counts make us:

* BURNING when the one-sided lower confidence bound on the canary's error ratio is above the ratio a
  ``burn_limit`` burn allows (``burn_limit x budget``, 1.44% for 14.4x at 99.9%), and, when a baseline
  is given, the canary is significantly worse than the baseline (so a degraded service as a whole is
  not blamed on the canary: workbook ch. 16 compares canary with control, not with the past);
* HEALTHY when the one-sided upper bound is at most that ratio;
* INCONCLUSIVE otherwise, with the number of further requests that would decide, assuming the current
  error ratio persists.

The asymmetry is deliberate and bounded. Each single check wrongly calls a canary BURNING with
probability at most ``1 - confidence`` when its true ratio is at or below the limit (Clopper-Pearson
intervals are exact: their coverage is never below nominal), and wrongly calls it HEALTHY with at most
the same probability when its true ratio is above. What is not bounded is the error over *repeated*
checks: a guard that looks every few seconds at a sliding window tests many times, so over a canary's
life the chance of at least one false BURNING grows (how much is measured by ``bench/canary_sim.py``).
That is why the limit is the fast page tier's burn rather than 1x: a healthy canary (burn <= 1) sits
far below it and its per-check false-alarm probability is orders of magnitude below ``1 - confidence``.

Numbers the defaults reproduce (reference §3.9, exact one-sided 95%, objective 99.9%): 207 clean
requests show "below 14.4x", 498 "below 6x", 2,995 "below 1x"; at 100, 1,000 and 10,000 requests, 5, 22
and 165 errors show "above 14.4x".

The statistics are written in standard-library Python, so the core needs no numpy or scipy. The
package's rooms, each importing only the standard library, ``core.spec``, ``core.verdict`` and
``core.durations`` (``tests/test_canary.py`` checks):

* ``beta``: the regularized incomplete beta function and its inverse;
* ``proportions``: Clopper-Pearson and Wilson bounds, Fisher's exact test against the baseline;
* ``knobs``: what the judge is told (``CanaryKnobs``, ``Counts``) and the bound tests on whole counts;
* ``sample_size``: where the verdict flips, and the requests still needed to decide;
* ``judgement``: ``judge``, one version over one window, with its reason (``wording`` writes numbers);
* ``latency``: the latency guard as a share of slow requests;
* ``streaks``: when to act on verdicts over time (``Streak``, ``Hold``);
* ``versions``: every version of one SLO over every window (``judge_versions``).

This ``__init__`` names what callers use; import from here, not from the rooms.

Pure: no I/O, no clock (time arrives as an argument), no logging; reasons are returned, not logged.
"""

from __future__ import annotations

from budgetguard.core.canary.beta import betainc, betaincinv
from budgetguard.core.canary.judgement import CanaryJudgement, judge
from budgetguard.core.canary.knobs import CanaryKnobs, Counts
from budgetguard.core.canary.latency import LatencyCheck, format_held, judge_latency
from budgetguard.core.canary.proportions import (
    Method,
    clopper_pearson,
    p_value_worse_than_baseline,
    proportion_bounds,
    wilson,
)
from budgetguard.core.canary.sample_size import (
    MAX_EVENTS_NEEDED,
    burning_errors,
    clean_events_needed,
    healthy_errors,
)
from budgetguard.core.canary.streaks import Hold, Streak
from budgetguard.core.canary.versions import (
    CanaryEvaluation,
    CanaryWindow,
    judge_versions,
    knobs_for,
    pick_baseline,
)

__all__ = [
    "MAX_EVENTS_NEEDED",
    "CanaryEvaluation",
    "CanaryJudgement",
    "CanaryKnobs",
    "CanaryWindow",
    "Counts",
    "Hold",
    "LatencyCheck",
    "Method",
    "Streak",
    "betainc",
    "betaincinv",
    "burning_errors",
    "clean_events_needed",
    "clopper_pearson",
    "format_held",
    "healthy_errors",
    "judge",
    "judge_latency",
    "judge_versions",
    "knobs_for",
    "p_value_worse_than_baseline",
    "pick_baseline",
    "proportion_bounds",
    "wilson",
]
