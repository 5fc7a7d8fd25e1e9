"""PromQL syntax, checked when an SLO file is loaded rather than when the daemon first runs the query.

A syntax error in an SLO's query used to pass ``budgetguard check`` and show only at run time, as a
verdict in error on every cycle. This module parses each query a file declares with ``promql-parser``
(the Rust port of Prometheus' own parser) after putting a duration where ``{{.window}}`` stands, and
says what is wrong and where: the position in the query, counted as the user wrote it.

The parser names the error but not its place, so the place is found here: the longest beginning of
the query that still parses is sound, and the error is at the first character after it (for an
unclosed parenthesis that is the parenthesis itself).

Pure: strings in, a problem or None out. The only module that imports ``promql_parser``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import promql_parser

# Sloth renders queries as Go templates; both spellings appear in the wild.
WINDOW_PLACEHOLDER = re.compile(r"\{\{\s*\.window\s*\}\}")

# Locating an error parses every beginning of the query; past this length only the message is given.
_LOCATE_UP_TO = 4000


@dataclass(frozen=True)
class SyntaxProblem:
    """What the parser refused, and where: ``offset`` counts characters from 0 in the query as written."""

    message: str
    offset: int | None
    query: str

    @property
    def position(self) -> str:
        """``line 2, column 7`` of the query (line only when the query has several), near the text there."""
        if self.offset is None:
            return "somewhere in the query"
        before = self.query[: self.offset]
        line = before.count("\n") + 1
        column = self.offset - (before.rfind("\n") + 1) + 1
        near = self.query[self.offset : self.offset + 12].split("\n")[0]
        where = f"column {column}" if "\n" not in self.query.strip() else f"line {line}, column {column}"
        return f"{where} of the query" + (f" (at {near!r})" if near.strip() else " (at its end)")

    def __str__(self) -> str:
        return f"PromQL syntax error at {self.position}: {self.message}"


def _fill_windows(query: str) -> str:
    """Each ``{{.window}}`` becomes a duration of the same length (``0000000005m``), so offsets hold."""
    return WINDOW_PLACEHOLDER.sub(lambda m: "0" * (len(m.group(0)) - 2) + "5m", query)


def _error(text: str) -> str | None:
    try:
        promql_parser.parse(text)
    except ValueError as exc:
        return str(exc) or "invalid PromQL"
    except Exception as exc:  # the parser is compiled code: anything it raises is its refusal
        return f"{exc.__class__.__name__}: {exc}"
    return None


def check(query: str, *, prefix: str = "", suffix: str = "") -> SyntaxProblem | None:
    """None when ``query`` (with ``{{.window}}`` placeholders) is PromQL, else what is wrong and where.

    ``prefix`` and ``suffix`` make a fragment a whole query (a selector's matchers inside
    ``metric{...}``); the position is still counted in ``query``.
    """
    text = prefix + _fill_windows(query) + suffix
    message = _error(text)
    if message is None:
        return None
    if message == "invalid promql query":
        message = "not a complete PromQL expression from here on"
    offset = None
    if len(text) <= _LOCATE_UP_TO:
        found = _locate(text[: len(text) - len(suffix)], suffix)
        unknown = _UNKNOWN_FUNCTION.match(message)
        if unknown:  # the name parses as a metric; the error is the call, not what the prefix says
            call = re.search(rf"(?<![\w:]){re.escape(unknown.group(1))}\s*\(", text)
            found = call.start() if call else found
        offset = min(max(found - len(prefix), 0), len(query))
    return SyntaxProblem(message, offset, query)


_UNKNOWN_FUNCTION = re.compile(r"unknown function with name '([^']+)'")


def _locate(text: str, suffix: str = "") -> int:
    sound = 0
    for end in range(1, len(text) + 1):
        if not text[end - 1].isspace() and _error(text[:end] + suffix) is None:
            sound = end
    offset = sound
    while offset < len(text) and text[offset].isspace():
        offset += 1
    return offset
