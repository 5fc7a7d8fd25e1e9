"""Settings: defaults < BUDGETGUARD_* environment < config file < flags, and secrets that never print."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from budgetguard.config import DEFAULT_LISTEN, PrometheusSettings, Settings, load_settings, split_listen
from budgetguard.core.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("BUDGETGUARD_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "budgetguard.yaml"
    path.write_text(text)
    return path


def test_defaults_are_the_documented_ones() -> None:
    settings = load_settings()
    assert settings.interval == timedelta(seconds=30)
    assert settings.listen == DEFAULT_LISTEN == "127.0.0.1:8731"
    assert settings.db == Path("budgetguard.db")
    assert settings.prometheus.timeout == timedelta(seconds=10)
    assert settings.retention_raw == timedelta(days=1) and settings.retention == timedelta(days=90)
    undocumented = [
        name
        for model in (Settings, PrometheusSettings)
        for name, field in model.model_fields.items()
        if not field.description
    ]
    assert undocumented == [], "every setting says why its default is what it is"


def test_each_layer_overrides_the_one_below(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUDGETGUARD_INTERVAL", "45s")
    monkeypatch.setenv("BUDGETGUARD_JITTER", "2s")
    monkeypatch.setenv("BUDGETGUARD_PROMETHEUS__URL", "http://from-env:9090")
    monkeypatch.setenv("BUDGETGUARD_PROMETHEUS__TENANT", "env-tenant")
    config = write(tmp_path, "interval: 15s\nprometheus:\n  url: http://from-file:9090\n  timeout: 5s\n")
    settings = load_settings(config, {"prometheus": {"url": "http://from-flag:9090"}, "db": None})
    assert settings.prometheus.url == "http://from-flag:9090"  # flag beats file and env
    assert settings.interval == timedelta(seconds=15)  # file beats env
    assert settings.prometheus.timeout == timedelta(seconds=5)  # file beats the default
    assert settings.prometheus.tenant == "env-tenant"  # env fills what neither file nor flags set
    assert settings.jitter == timedelta(seconds=2)
    assert settings.db == Path("budgetguard.db")  # an absent flag (None) overrides nothing


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("intervall: 30s\n", "setting 'intervall'", id="a misspelt setting is named"),
        pytest.param("interval: soon\n", "not a Prometheus duration", id="a bad duration says what it wants"),
        pytest.param("interval: 0s\n", "longer than zero", id="an interval of zero is refused"),
        pytest.param("listen: 8731\n", "is not HOST:PORT", id="a listen address needs host and port"),
        pytest.param("prometheus:\n  max_concurrency: 0\n", "prometheus.max_concurrency", id="nested fields"),
        pytest.param("- a list\n", "must be a mapping", id="a file that is not a mapping"),
        pytest.param("interval: [\n", "not valid YAML", id="broken YAML"),
    ],
)
def test_invalid_settings_name_the_setting_and_where_it_came_from(
    tmp_path: Path, text: str, fragment: str
) -> None:
    config = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert fragment in str(caught.value)
    assert str(config) in str(caught.value)


def test_secrets_never_print_and_come_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cr3t-from-file\n")
    monkeypatch.setenv("BUDGETGUARD_API_TOKEN", "s3cr3t-api")
    config = write(
        tmp_path,
        f"prometheus:\n  bearer_token_file: {token_file}\n  basic_auth_username: bg\n"
        "  basic_auth_password: s3cr3t-password\n",
    )
    settings = load_settings(config)
    assert settings.prometheus.bearer() == "s3cr3t-from-file"
    assert settings.prometheus.basic_auth() == ("bg", "s3cr3t-password")
    assert settings.api_token_value() == "s3cr3t-api"
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    assert "s3cr3t" not in shown


def test_an_invalid_secret_setting_does_not_echo_the_secret(tmp_path: Path) -> None:
    config = write(tmp_path, "prometheus:\n  bearer_token: [s3cr3t-in-a-list]\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert "prometheus.bearer_token" in str(caught.value)
    assert "s3cr3t" not in str(caught.value)


def test_an_unreadable_secret_file_is_a_config_error(tmp_path: Path) -> None:
    config = write(tmp_path, f"api_token_file: {tmp_path / 'missing'}\n")
    with pytest.raises(ConfigError, match="cannot read api_token"):
        load_settings(config).api_token_value()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("127.0.0.1:8731", ("127.0.0.1", 8731), id="IPv4 loopback"),
        pytest.param("[::1]:9000", ("::1", 9000), id="IPv6 in brackets"),
        pytest.param(":8080", ("127.0.0.1", 8080), id="no host means loopback, never all interfaces"),
    ],
)
def test_listen_addresses(value: str, expected: tuple[str, int]) -> None:
    assert split_listen(value) == expected


def test_a_zero_jitter_is_allowed_from_any_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUDGETGUARD_JITTER", "0s")
    settings = load_settings()
    assert settings.jitter == timedelta(0)
    assert '"jitter":"0s"' in settings.model_dump_json()


@pytest.mark.parametrize(
    ("environment", "config_text"),
    [
        pytest.param({"BUDGETGUARD_API_TOKEN": "s3cr3t-plain"}, "", id="a plain string in the environment"),
        pytest.param(
            {"BUDGETGUARD_API_TOKEN__FILE": "TOKEN_FILE"}, "", id="a file reference in the environment"
        ),
        pytest.param({"BUDGETGUARD_API_TOKEN_FILE": "TOKEN_FILE"}, "", id="the older _FILE variable"),
        pytest.param({}, "api_token: {file: TOKEN_FILE}\n", id="a file reference in the config file"),
        pytest.param({}, "api_token_file: TOKEN_FILE\n", id="the older _file setting"),
        pytest.param({"API_SECRET": "s3cr3t-plain"}, "api_token: {env: API_SECRET}\n", id="an env reference"),
    ],
)
def test_every_spelling_of_a_secret_resolves_through_one_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], config_text: str
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cr3t-plain\n")
    for name, value in environment.items():
        monkeypatch.setenv(name, value.replace("TOKEN_FILE", str(token_file)))
    config = write(tmp_path, config_text.replace("TOKEN_FILE", str(token_file)) or "{}\n")
    settings = load_settings(config)
    assert settings.api_token_value() == "s3cr3t-plain"
    assert "s3cr3t" not in repr(settings) + settings.model_dump_json()


def test_a_secret_given_twice_is_refused_naming_both_spellings(tmp_path: Path) -> None:
    config = write(tmp_path, f"api_token: inline-token\napi_token_file: {tmp_path / 'token'}\n")
    with pytest.raises(ConfigError, match="give one of api_token and api_token_file"):
        load_settings(config)


@pytest.mark.parametrize(
    ("given", "selected"),
    [
        pytest.param("budgetguard.db", Path("budgetguard.db"), id="a file name keeps SQLite"),
        pytest.param(
            "/var/lib/budgetguard/bg.db", Path("/var/lib/budgetguard/bg.db"), id="a path keeps SQLite"
        ),
        pytest.param(
            "postgresql://bg@db.example:5432/guard",
            "postgresql://bg@db.example:5432/guard",
            id="a postgresql URL selects PostgreSQL, its // intact",
        ),
        pytest.param("postgres://bg@db/guard", "postgres://bg@db/guard", id="so does the short scheme"),
    ],
)
def test_the_db_setting_is_a_sqlite_path_or_a_postgresql_url(given: str, selected: object) -> None:
    assert load_settings(None, {"db": given}).db == selected


def test_another_database_scheme_is_refused_naming_the_setting_and_the_fix() -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(None, {"db": "mysql://bg@db/guard"})
    message = str(refused.value)
    assert "setting 'db'" in message and "BUDGETGUARD_DB" in message
    assert "mysql:// is not a database budgetguard knows" in message and "postgresql://" in message


def test_the_leader_lease_defaults_to_15s_and_is_at_least_a_second() -> None:
    assert Settings().leader_lease == timedelta(seconds=15)
    with pytest.raises(ConfigError, match="leader_lease must be at least 1s"):
        load_settings(None, {"leader_lease": "500ms"})
