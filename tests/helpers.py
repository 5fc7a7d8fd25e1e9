"""Small builders shared by the tests (SLOs from YAML text, observations)."""

from __future__ import annotations

import textwrap

from budgetguard.core.spec import SLO
from budgetguard.loader import load_text

AVAILABILITY = """
version: budgetguard/v1
service: checkout
slos:
  - name: availability
    objective: 99.9
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="checkout",code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="checkout"}[{{.window}}]))
"""


def slo_from(text: str = AVAILABILITY, source: str = "test.yaml") -> SLO:
    slos, problems = load_text(textwrap.dedent(text), source)
    assert not problems, [str(p) for p in problems]
    assert len(slos) == 1
    return slos[0]


def slos_from(text: str, source: str = "test.yaml") -> list[SLO]:
    slos, problems = load_text(textwrap.dedent(text), source)
    assert not problems, [str(p) for p in problems]
    return slos
