"""The verdict: the closed set of answers every judgement gives, an SLO's and a canary version's alike.

A module of its own because both ``policy`` (an SLO's tiers) and ``canary`` (a version's statistics)
answer in it, and ``policy`` carries canary results on its ``Evaluation``: kept in either, the two would
import each other.
"""

from __future__ import annotations

from enum import StrEnum


class Verdict(StrEnum):
    HEALTHY = "healthy"
    WARNING = "warning"
    BURNING = "burning"
    INCONCLUSIVE = "inconclusive"
    ERROR = "error"
