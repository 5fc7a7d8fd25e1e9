"""The exception tree of budgetguard, in one place.

Every error budgetguard raises on purpose is a ``BudgetguardError``. Adapters translate third-party
exceptions (httpx, sqlite, YAML) into this tree and chain the original with ``raise ... from exc``, so
callers never have to know which library sat underneath::

    BudgetguardError
    ├── SpecError                 an SLO file is wrong (carries every problem found, never just the first)
    ├── ConfigError               the daemon's own settings are wrong
    ├── SourceError               the metrics source could not answer a query (carries the query)
    │   ├── SourceUnavailable     connection refused, DNS, 5xx, "Service Unavailable" while starting up
    │   ├── SourceTimeout         the client or the server gave up waiting
    │   ├── SourceAuthError       401/403: credentials, tenant (Mimir's "no org id")
    │   ├── QueryError            the server rejected the query itself (bad_data, execution): fix the PromQL
    │   └── SourceProtocolError   the answer could not be understood (not JSON, unexpected result type)
    ├── StoreError                the database could not be read or written (locked, disk full, closed)
    │   └── NotLeader             a leader-only write refused: this replica's lease ended or was taken over
    ├── ControlError              a manual control request that cannot be done as asked (carries a status)
    └── DaemonUnreachable         a command asking the running daemon got no HTTP answer from it

This module does no I/O and imports nothing but the standard library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from budgetguard.core.verdict import ErrorKind


class BudgetguardError(Exception):
    """Base of every error budgetguard raises on purpose."""


@dataclass(frozen=True)
class SpecProblem:
    """One problem in one SLO file: where it is, what is wrong and how to fix it."""

    file: str
    message: str
    fix: str = ""
    slo: str | None = None
    field: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        parts = [where]
        if self.slo:
            parts.append(f"slo {self.slo!r}")
        if self.field:
            parts.append(f"field {self.field!r}")
        text = ": ".join(parts) + f": {self.message}"
        if self.fix:
            text += f" Fix: {self.fix}"
        return text


class SpecError(BudgetguardError):
    """One or more SLO declarations are invalid; ``problems`` lists all of them."""

    def __init__(self, problems: Sequence[SpecProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid SLO specification")


class ConfigError(BudgetguardError):
    """The daemon's own configuration is invalid (names the setting and the fix)."""


class SourceError(BudgetguardError):
    """A metrics query failed. ``query`` is the PromQL sent; ``detail`` the server's own words."""

    reason: ErrorKind = ErrorKind.SOURCE_ERROR

    def __init__(
        self,
        detail: str,
        *,
        query: str | None = None,
        status: int | None = None,
        error_type: str | None = None,
    ) -> None:
        self.detail = detail
        self.query = query
        self.status = status
        self.error_type = error_type
        super().__init__(detail)

    def __str__(self) -> str:
        bits = [self.detail]
        if self.status is not None:
            bits.append(f"(HTTP {self.status}{', ' + self.error_type if self.error_type else ''})")
        if self.query:
            bits.append(f"in query: {self.query}")
        return " ".join(bits)


class SourceUnavailable(SourceError):
    """The source is down, starting up, shutting down or behind a failing proxy."""

    reason = ErrorKind.UNAVAILABLE


class SourceTimeout(SourceError):
    """The query took longer than its timeout, on our side or the server's."""

    reason = ErrorKind.TIMEOUT


class SourceAuthError(SourceError):
    """The source refused our credentials or tenant."""

    reason = ErrorKind.AUTH


class QueryError(SourceError):
    """The server rejected the query itself; the PromQL must be fixed."""

    reason = ErrorKind.BAD_QUERY


class SourceProtocolError(SourceError):
    """The answer was not what the Prometheus HTTP API promises."""

    reason = ErrorKind.PROTOCOL


class StoreError(BudgetguardError):
    """The database could not be read or written (locked, disk full, closed, unreadable file)."""


class NotLeader(StoreError):
    """A fenced write was refused: this replica's leader lease ended or another replica took it over."""


class ControlError(BudgetguardError):
    """A manual control request that cannot be done as asked; ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class DaemonUnreachable(BudgetguardError):
    """A command that asks the running daemon's API (``budgetguard gate``) got no HTTP answer."""
