"""The little PromQL the readers need: vector selectors, and the windowed queries made from them.

Pyrra and OpenSLO (``counter: true``) name counters by bare selectors and leave the range to the tool;
budgetguard's native queries carry the ``{{.window}}`` placeholder instead. This module recognises a
selector (``http_requests_total{job="api",code=~"5.."}``), splits its matchers (to move a histogram's
``le`` into a latency SLI) and writes the rate queries. It is a recogniser, not a PromQL parser: what
it does not recognise is refused by the readers, with the shape they expect.

Pure: strings in, strings out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

WINDOW = "[{{.window}}]"

_METRIC = re.compile(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)")
_STRING = r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`'
_MATCHER = re.compile(rf"\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*({_STRING})\s*")
_SUM_OF = re.compile(r"^\s*sum\s*\((.*)\)\s*$", re.DOTALL)


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    quoted: str  # the value as written, quotes included

    @property
    def value(self) -> str:
        inner = self.quoted[1:-1]
        return inner if self.quoted[0] == "`" else re.sub(r"\\(.)", r"\1", inner)

    def __str__(self) -> str:
        return f"{self.label}{self.op}{self.quoted}"


@dataclass(frozen=True)
class Selector:
    """A PromQL instant-vector selector: a metric name, label matchers, or both."""

    metric: str | None
    matchers: tuple[Matcher, ...]
    text: str  # as written, without surrounding whitespace

    def __str__(self) -> str:
        return self.text

    def without(self, label: str) -> tuple[Matcher, ...]:
        return tuple(m for m in self.matchers if m.label != label)

    def matcher(self, label: str) -> Matcher | None:
        return next((m for m in self.matchers if m.label == label), None)


def parse_selector(text: str) -> Selector | None:
    """The selector ``text`` is, or None when it is anything else (a function call, an operator...)."""
    metric_match = _METRIC.match(text)
    metric = metric_match.group(1) if metric_match else None
    position = metric_match.end() if metric_match else 0
    matchers: list[Matcher] = []
    rest = text[position:].lstrip()
    if rest.startswith("{"):
        position = text.index("{", position) + 1
        while True:
            found = _MATCHER.match(text, position)
            if found is None:
                break
            matchers.append(Matcher(found.group(1), found.group(2), found.group(3)))
            position = found.end()
            if text.startswith(",", position):
                position += 1
                continue
            break
        closing = re.compile(r"\s*\}").match(text, position)
        if closing is None:
            return None
        position = closing.end()
    if text[position:].strip() or (metric is None and not matchers):
        return None
    return Selector(metric, tuple(matchers), text.strip())


def summed_selector(text: str) -> Selector | None:
    """``sum(<selector>)`` -> the selector, as OpenSLO's own counter example writes its queries."""
    found = _SUM_OF.match(text)
    return parse_selector(found.group(1)) if found else None


def rate_sum(selector: Selector | str) -> str:
    """Events per second over the window, summed into one series: ``sum(rate(<sel>[{{.window}}]))``."""
    return f"sum(rate({selector}{WINDOW}))"


def selector_text(metric: str | None, matchers: tuple[Matcher, ...]) -> str:
    inner = ", ".join(str(m) for m in matchers)
    return f"{metric or ''}{{{inner}}}" if matchers or not metric else metric


def bad_from_good(total: str, good: str) -> str:
    """Bad events as total minus good; no good series at all (every request failed) counts as zero good."""
    return f"({total}) - (({good}) or vector(0))"
