"""The index the gates and the API look SLOs up in (#14): by id, by service, and still the plain list."""

from __future__ import annotations

from budgetguard.core import policy
from budgetguard.core.latest import LatestEvaluations
from tests.helpers import slos_from
from tests.test_exporter import AT, observe

SLOS = slos_from(
    """
    version: budgetguard/v1
    service: checkout
    slos:
      - {name: availability, objective: 99.9, sli: {raw: {error_ratio_query: 'sum(rate(e[{{.window}}]))'}}}
      - {name: latency, objective: 99, sli: {raw: {error_ratio_query: 'sum(rate(l[{{.window}}]))'}}}
    ---
    version: budgetguard/v1
    service: search
    slos:
      - {name: availability, objective: 99.5, sli: {raw: {error_ratio_query: 'sum(rate(s[{{.window}}]))'}}}
    """
)
EVS = [policy.evaluate(slo, observe(slo, {}), AT) for slo in SLOS]


def test_an_slo_is_found_by_its_id_and_an_unknown_one_is_none() -> None:
    index = LatestEvaluations(EVS)
    assert index.get("search/availability") is EVS[2]
    assert index.get("search/latency") is None


def test_a_service_gives_its_own_evaluations_in_declaration_order() -> None:
    index = LatestEvaluations(EVS)
    assert index.of_service("checkout") == (EVS[0], EVS[1])
    assert index.of_service("payments") == ()


def test_it_is_the_list_of_evaluations_in_order_and_a_repeated_id_keeps_the_last() -> None:
    later = policy.evaluate(SLOS[0], observe(SLOS[0], {}), AT)
    index = LatestEvaluations([*EVS, later])
    assert list(index) == [EVS[1], EVS[2], later]
    assert len(index) == 3 and index[0] is EVS[1] and index.get(SLOS[0].id) is later


def test_an_index_is_taken_as_it_is_and_a_plain_list_is_indexed() -> None:
    index = LatestEvaluations(EVS)
    assert LatestEvaluations.of(index) is index
    assert LatestEvaluations.of(EVS).of_service("search") == (EVS[2],)
