"""The verdict: the closed set of answers every judgement gives, an SLO's and a canary version's alike,
and the closed sets an evaluation carries beside it (why it failed, how its numbers were read).

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


class ErrorKind(StrEnum):
    """Why an evaluation ended in ERROR, for metrics and alerts: a ``SourceError``'s ``reason``, a query
    whose answer had the wrong shape, or a bug caught at the per-SLO isolation point."""

    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"
    AUTH = "auth"
    BAD_QUERY = "bad_query"
    PROTOCOL = "protocol"
    SOURCE_ERROR = "source_error"
    QUERY_SHAPE = "query_shape"
    INTERNAL = "internal"


class QueryMode(StrEnum):
    """How an SLO is read: its own queries (raw), or the series `budgetguard rules` records.

    An evaluation's ``query_mode`` is one of these, or ``QueryMode.fallback(why)`` when recording-rule
    mode had to read an SLO raw: the reason travels with it to the API and the logs.
    """

    RAW = "raw"
    RECORDING = "recording"

    @staticmethod
    def fallback(why: str) -> str:
        return f"raw (fallback: {why})"
