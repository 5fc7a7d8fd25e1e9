"""Every action type in the config union builds through the registry, from YAML-shaped data."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from budgetguard.actions import ActionConfig, build_action
from budgetguard.actions._config import UrlParts
from budgetguard.actions._http import DETAIL_LIMIT, redact, short

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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("token s3cr3t-t0ken here", "token [redacted] here", id="a whole secret is hidden"),
        pytest.param(
            "body ends with s3cr3t...",
            "body ends with [redacted]...",
            id="the first part of a secret cut by the length limit is hidden too",
        ),
        pytest.param(
            "(HTTP 403: echo s3cr...); grant get",
            "(HTTP 403: echo [redacted]...); grant get",
            id="a cut inside a longer detail",
        ),
        pytest.param("nothing to hide... here", "nothing to hide... here", id="an ordinary ellipsis stays"),
        pytest.param(
            "a s3c... is too short to tell",
            "a s3c... is too short to tell",
            id="three characters are not treated as a secret",
        ),
    ],
)
def test_redact_hides_whole_and_truncated_secrets(text: str, expected: str) -> None:
    assert redact(text, ["s3cr3t-t0ken"]) == expected


def test_a_detail_never_keeps_the_start_of_a_secret_the_limit_cut() -> None:
    secret = "tok-" + "x" * 40
    for offset in range(DETAIL_LIMIT - 60, DETAIL_LIMIT + 5):
        text = "e" * offset + secret + " tail"
        shown = redact(short(text), [secret])
        assert secret[:4] not in shown, offset


# --- URLs in action settings, checked without the HTTP client (#14) -------------------------------------

AGREED = [
    "http://[::1]:8080/x",
    "http://user:pw@h/x",
    "http://@h/x",
    "https://h/p?q=1#f",
    "http:/x",
    "ftp://h",
    "HTTP://H/",
    "//h/x",
    "http://h:0/",
    "http://h:65535/",
    "http://münchen.de/",
    "http://h/%zz",
    "http://host:abc",
    "http://[::1",
    "http://h\t/",
    "http://h/\x7f",
]
# httpx takes these and fails only when it connects; a settings file is the place to say so.
STRICTER = ["http://host:99999", "http://h:65536/", "http://h:-1/", "http://ho st/x"]


@pytest.mark.parametrize("url", AGREED)
def test_url_parts_read_a_url_as_httpx_does(url: str) -> None:
    import httpx  # noqa: PLC0415 - the reference, imported here only

    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        with pytest.raises(ValueError, match="not a valid URL: "):
            UrlParts(url)
        return
    ours = UrlParts(url)
    assert (ours.scheme, ours.host, ours.userinfo, ours.query, ours.fragment) == (
        parsed.scheme,
        parsed.host,
        bool(parsed.username or parsed.password),
        bool(parsed.query),
        bool(parsed.fragment),
    )


@pytest.mark.parametrize("url", STRICTER)
def test_url_parts_refuse_what_could_never_connect(url: str) -> None:
    with pytest.raises(ValueError, match="not a valid URL: "):
        UrlParts(url)


def test_reading_action_settings_imports_no_http_client() -> None:
    """`budgetguard check` with a config file declaring actions: the settings are validated, httpx is not
    imported (0.05 s of every check); building an action imports it."""
    code = (
        "import sys\n"
        "from budgetguard.config import Settings\n"
        "s = Settings(actions={'a': {'type': 'webhook', 'url': 'http://127.0.0.1:9/x'},"
        " 'b': {'type': 'argo-rollouts', 'api_url': 'http://127.0.0.1:9', 'namespace': 'n', 'rollout': 'r'},"
        " 'c': {'type': 'slack', 'webhook_url': 'https://hooks.example/T/B/x'}})\n"
        "assert 'httpx' not in sys.modules or type(sys.modules['httpx']).__name__ == '_LazyModule', 'imported'\n"
        "from budgetguard.actions import build_action\n"
        "build_action('c', s.actions['c'])\n"
        "assert type(sys.modules['httpx']).__name__ == 'module'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
