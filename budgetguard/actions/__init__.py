"""Push actions: one module per target, all behind the ``Action`` port.

``ActionConfig`` is the discriminated union of every target's settings (by ``type``), and
``build_action`` turns one into an ``Action`` through a dict literal, never a class name in a string.
Actions classify the target's answers (``ActionResult``); retries, dry runs and "exactly once" belong
to the outbox that calls them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field

from budgetguard.actions import alertmanager, argo_rollouts, argocd, flags, istio, pagerduty, slack, webhook
from budgetguard.actions._config import SecretRef
from budgetguard.actions._http import placeholders
from budgetguard.core.ports import Action

ActionConfig = Annotated[
    webhook.WebhookConfig
    | slack.SlackConfig
    | pagerduty.PagerDutyConfig
    | alertmanager.AlertmanagerConfig
    | argo_rollouts.ArgoRolloutsConfig
    | argocd.ArgoCDConfig
    | istio.IstioConfig
    | flags.UnleashConfig
    | flags.LaunchDarklyConfig,
    Field(discriminator="type"),
]

_BUILDERS: dict[str, Callable[..., Action]] = {
    "webhook": webhook.build,
    "slack": slack.build,
    "pagerduty": pagerduty.build,
    "alertmanager": alertmanager.build,
    "argo-rollouts": argo_rollouts.build,
    "argocd": argocd.build,
    "istio": istio.build,
    "unleash": flags.build_unleash,
    "launchdarkly": flags.build_launchdarkly,
}


# Targets with something to do when an incident resolves: PagerDuty resolves its incident, Alertmanager
# ends its alert, a webhook receiver and a Slack channel hear that it is over. A halted rollout, a
# rolled-back application, a killed flag or traffic shifted off a canary stays as it is: undoing a
# halt is a human's call.
RESOLVABLE_TYPES = frozenset({"webhook", "slack", "pagerduty", "alertmanager"})


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list | tuple):
        return [s for item in value for s in _strings(item)]
    return []


def placeholders_of(config: Any) -> frozenset[str]:
    """Every ``${name}`` an action's settings use (secrets excluded: they are never templated)."""
    return frozenset(name for text in _strings(config.model_dump()) for name in placeholders(text))


def build_action(name: str, config: Any) -> Action:
    """Build the action a validated ``ActionConfig`` describes (secrets are resolved here, once)."""
    return _BUILDERS[config.type](name, config)


__all__ = ["RESOLVABLE_TYPES", "ActionConfig", "SecretRef", "build_action", "placeholders_of"]
