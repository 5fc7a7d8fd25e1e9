"""Every action type in the config union builds through the registry, from YAML-shaped data."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from budgetguard.actions import ActionConfig, build_action

CONFIGS: list[Any] = [
    pytest.param(
        {"type": "webhook", "url": "http://127.0.0.1:9/hook", "secret": "whsec_c2VjcmV0"}, id="webhook"
    ),
    pytest.param({"type": "slack", "webhook_url": "http://127.0.0.1:9/services/T/B/x"}, id="slack"),
    pytest.param(
        {"type": "pagerduty", "routing_key": "r0uting", "url": "http://127.0.0.1:9/v2/enqueue"},
        id="pagerduty",
    ),
    pytest.param({"type": "alertmanager", "url": "http://127.0.0.1:9"}, id="alertmanager"),
    pytest.param(
        {
            "type": "argo-rollouts",
            "rollout": "${service}",
            "namespace": "prod",
            "api_url": "http://127.0.0.1:9",
            "token": "t0ken",
        },
        id="argo-rollouts",
    ),
    pytest.param(
        {
            "type": "argocd",
            "url": "http://127.0.0.1:9",
            "token": "a.b.c",
            "application": "${service}",
            "mode": "rollback",
        },
        id="argocd",
    ),
    pytest.param(
        {
            "type": "unleash",
            "url": "http://127.0.0.1:9",
            "token": "t0ken",
            "feature": "f",
            "environment": "production",
        },
        id="unleash",
    ),
    pytest.param(
        {
            "type": "launchdarkly",
            "url": "http://127.0.0.1:9",
            "token": "t0ken",
            "project_key": "p",
            "flag_key": "f",
            "environment_key": "production",
        },
        id="launchdarkly",
    ),
]


@pytest.mark.parametrize("data", CONFIGS)
def test_each_type_builds_an_action_with_its_name(data: dict[str, Any]) -> None:
    config = TypeAdapter(ActionConfig).validate_python(data)
    action = build_action("halt", config)
    assert action.name == "halt"
    asyncio.run(action.aclose())


def test_an_unknown_type_names_the_allowed_ones() -> None:
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(ActionConfig).validate_python({"type": "spinnaker", "url": "http://x"})
    assert "webhook" in str(caught.value) and "argo-rollouts" in str(caught.value)
