"""The daemon's settings: defaults, then ``BUDGETGUARD_*`` environment, then a config file, then flags.

Read once, at start-up, by the composition root (``daemon``); nothing else reads the environment.
Every field says why its default is what it is. Secrets (tokens, passwords) are ``SecretRef``s, the
same as in actions: inline, ``{env: NAME}`` or ``{file: /path}`` (the way Kubernetes mounts secrets;
``BUDGETGUARD_API_TOKEN__FILE`` in the environment), and never print. The older ``*_file`` settings
are read as ``{file: ...}``. The file is YAML with the same field names as the environment variables,
nested where they nest (``BUDGETGUARD_PROMETHEUS__URL`` is ``prometheus: {url: ...}``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from budgetguard.actions import ActionConfig, SecretRef, placeholders_of
from budgetguard.core.durations import format_duration, parse_duration
from budgetguard.core.errors import ConfigError
from budgetguard.core.spec import Duration
from budgetguard.core.verdict import QueryMode
from budgetguard.loader import KnownActions

if TYPE_CHECKING:
    # Imported where the source is built: `budgetguard check` reads these settings and never queries (#14).
    from budgetguard.sources.prometheus import PrometheusConfig


def _zero_or_more(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration; write it as a string such as '0s' or '2s'")
    return parse_duration(value, allow_zero=True)


# A duration that may be zero (a jitter); windows and intervals use spec.Duration, which may not.
ZeroOrMoreDuration = Annotated[
    timedelta, BeforeValidator(_zero_or_more), PlainSerializer(format_duration, return_type=str)
]


def _database(value: Any) -> Path | str:
    """A SQLite file path (a Path) or a PostgreSQL URL (kept as text: a Path would fold its ``//``)."""
    if isinstance(value, Path):
        return value
    text = str(value).strip()
    if not text:
        raise ValueError("is empty; give a SQLite file path or a postgresql://user@host/dbname URL")
    if text.startswith(("postgresql://", "postgres://")):
        return text
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise ValueError(
            f"{scheme}:// is not a database budgetguard knows; give a SQLite file path or a "
            "postgresql://user@host/dbname URL"
        )
    return Path(text)


# Where the store lives: a path keeps SQLite (one replica), a postgresql:// URL selects PostgreSQL.
Database = Annotated[Path | str, BeforeValidator(_database)]

# Outside 9100-9999, the range Prometheus allocated to exporters (now fully taken), so budgetguard
# does not fight an exporter for its port on the same host. Loopback: the API can halt rollouts.
DEFAULT_LISTEN = "127.0.0.1:8731"


# A secret setting: a plain string from the environment is the secret itself (never JSON-decoded), a
# mapping from the config file or BUDGETGUARD_X__FILE is a reference.
Secret = Annotated[SecretRef | None, NoDecode]


def _file_aliases(data: Any, names: tuple[str, ...]) -> Any:
    """Read the older ``<name>_file: /path`` spelling (kept as a field, so that its environment variable
    is still read) as ``<name>: {file: /path}``: one way to resolve a secret whichever was written."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    for name in names:
        path = data.get(f"{name}_file")
        if path is None:
            continue
        if data.get(name) is not None:
            raise ValueError(f"give one of {name} and {name}_file (write {name}: {{file: ...}})")
        data[name] = {"file": path}
    return data


def _deprecated_file(name: str) -> Any:
    return Field(default=None, description=f"Older spelling of `{name}: {{file: /path}}`; still read.")


def _resolve(secret: SecretRef | None, what: str) -> str | None:
    return None if secret is None else secret.resolve(what)


class PrometheusSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(
        default="http://127.0.0.1:9090",
        description="Base URL of Prometheus, Thanos, VictoriaMetrics, or Mimir/Cortex with its /prometheus "
        "prefix. Default: a Prometheus on the same host, its documented port.",
    )
    tenant: str | None = Field(
        default=None,
        description="X-Scope-OrgID for Mimir/Cortex; none by default "
        "because single-tenant Prometheus rejects nothing without it.",
    )
    bearer_token: Secret = Field(
        default=None,
        description="Bearer token: {file: /path} for a mounted Kubernetes secret (read at start), "
        "{env: NAME}, or inline.",
    )
    bearer_token_file: Path | None = _deprecated_file("bearer_token")
    basic_auth_username: str | None = Field(
        default=None,
        description="Basic auth, for a Prometheus behind "
        "a reverse proxy; off by default as Prometheus has none.",
    )
    basic_auth_password: Secret = Field(
        default=None, description="The basic auth password: {file: /path}, {env: NAME}, or inline."
    )
    basic_auth_password_file: Path | None = _deprecated_file("basic_auth_password")
    ca_file: str | None = Field(
        default=None, description="CA bundle for a private PKI; system CAs otherwise."
    )
    verify_tls: bool = Field(
        default=True, description="Never off in production: a forged source could fake a healthy canary."
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Extra non-secret headers.")
    timeout: Duration = Field(
        default=timedelta(seconds=10),
        description="Per query. A third of the default 30s interval, so one slow SLO still leaves the cycle "
        "time to finish before the next.",
    )
    max_concurrency: int = Field(
        default=8,
        ge=1,
        le=256,
        description="Queries in flight at once: enough to hide latency, few enough not to load the "
        "source like a dashboard storm.",
    )
    partial_response: bool = Field(
        default=False,
        description="False asks Thanos/VictoriaMetrics to fail rather than answer from part of the data: a "
        "partial answer can hide errors.",
    )
    compression: bool = Field(
        default=True,
        description="Ask for gzip-compressed answers. Keep it over a WAN; turn it off when budgetguard runs "
        "beside Prometheus in recording-rule mode at scale, where compressing ~23 MB a cycle (10,000 SLOs) "
        "costs the server CPU and saves nothing.",
    )

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        return _file_aliases(data, ("bearer_token", "basic_auth_password"))

    def source_config(self) -> PrometheusConfig:
        """These settings as the source adapter's config: the one place the options are mapped, for the
        daemon and for ``budgetguard eval`` alike. Raises ``ConfigError`` when a secret file is unreadable."""
        from budgetguard.sources.prometheus import PrometheusConfig  # noqa: PLC0415 (httpx only to query)

        return PrometheusConfig(
            url=self.url,
            timeout=self.timeout,
            max_concurrency=self.max_concurrency,
            tenant=self.tenant,
            bearer_token=self.bearer(),
            basic_auth=self.basic_auth(),
            ca_file=self.ca_file,
            verify_tls=self.verify_tls,
            headers=self.headers,
            partial_response=self.partial_response,
            compression=self.compression,
        )

    @field_validator("url")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        # Checked with the settings, so `run` refuses it before anything starts (exit 2, not a traceback).
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            example = f"http://{value}" if "://" not in value else "http://127.0.0.1:9090"
            raise ValueError(f"{value!r} must be an absolute http(s) URL with its scheme, e.g. {example}")
        return value

    def bearer(self) -> str | None:
        return _resolve(self.bearer_token, "prometheus.bearer_token")

    def basic_auth(self) -> tuple[str, str] | None:
        if self.basic_auth_username is None:
            return None
        password = _resolve(self.basic_auth_password, "prometheus.basic_auth_password")
        return self.basic_auth_username, password or ""


class DeliverySettings(BaseModel):
    """How the outbox delivers actions (see ``budgetguard.outbox.RetryPolicy`` for the reasons)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backoff_base: Duration = Field(
        default=timedelta(seconds=1),
        description="First retry after this (then doubling, with jitter): a halt is urgent, and most "
        "faults are a restarting pod.",
    )
    backoff_max: Duration = Field(
        default=timedelta(minutes=5),
        description="Longest wait between attempts: a target down for an hour is tried a dozen times.",
    )
    give_up_after: Duration = Field(
        default=timedelta(days=1),
        description="A delivery failing this long is marked failed (retry it by hand): a day is long "
        "enough to fix a target and short enough not to halt a release that moved on.",
    )
    concurrency: int = Field(
        default=8, ge=1, le=256, description="Deliveries in flight at once; halts are few and urgent."
    )


class Settings(BaseSettings):
    """Everything ``budgetguard run`` needs."""

    model_config = SettingsConfigDict(
        env_prefix="BUDGETGUARD_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    prometheus: PrometheusSettings = Field(
        default_factory=PrometheusSettings, description="Where the SLIs are read; see PrometheusSettings."
    )
    slo_paths: list[Path] = Field(
        default_factory=lambda: [Path("slos")],
        description="SLO files or directories; the repository layout by default.",
    )
    interval: Duration = Field(
        default=timedelta(seconds=30),
        description="How often every SLO is evaluated. 30s is twice the usual 15s scrape interval: faster "
        "only re-reads the same samples.",
    )
    jitter: ZeroOrMoreDuration = Field(
        default=timedelta(seconds=0),
        description="Random delay added to each cycle, to spread replicas that start together; none for "
        "a single daemon, whose cycles should stay evenly spaced.",
    )
    misfire_grace: Duration = Field(
        default=timedelta(seconds=10),
        description="A cycle that could not start on time still runs if this late; later ones are skipped "
        "and coalesced, since only the newest numbers matter.",
    )
    db: Database = Field(
        default=Path("budgetguard.db"),
        description="Where incidents, the outbox and history live: a SQLite file (one replica; the "
        "default, next to the working directory, nothing to run) or a postgresql://user@host/dbname URL "
        "(several replicas share it and elect a leader; put the password in PGPASSWORD or ~/.pgpass, not "
        "in the URL).",
    )
    leader_lease: Duration = Field(
        default=timedelta(seconds=15),
        description="On PostgreSQL, how long the leader's lease lasts without renewal (renewed every "
        "third of it): a dead leader is replaced within this. Shorter fails over faster but a database "
        "pause that long costs the leadership; 15s rides out a database restart's usual blip.",
    )
    listen: str = Field(default=DEFAULT_LISTEN, description="HOST:PORT of the HTTP surface.")
    retention_raw: Duration = Field(
        default=timedelta(days=1),
        description="Every evaluation is kept this long; older ones are thinned to one per 5 minutes, "
        "which is all a post-incident review needs.",
    )
    retention_5m: Duration = Field(
        default=timedelta(days=7),
        description="Evaluations thinned to one per 5 minutes are kept so for this long; older ones are "
        "thinned again to one per hour (verdict changes are always kept): a week of incidents at 5-minute "
        "resolution, a quarter's trends hourly, about 5 MiB per SLO in all instead of 25.",
    )
    retention: Duration = Field(
        default=timedelta(days=90),
        description="Nothing older is kept: a quarter, the longest budget period in common use.",
    )
    reload_poll: Duration = Field(
        default=timedelta(seconds=5),
        description="How often SLO files are checked for changes (SIGHUP reloads at once).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="INFO logs verdict changes and reloads, not every cycle."
    )
    log_json: bool = Field(default=False, description="One JSON object per line, for log shippers.")
    log_min_interval: Duration = Field(
        default=timedelta(minutes=1),
        description="Changes of state (an SLO's verdict, the source failing or recovering, the store, an "
        "action's deliveries) are logged when they happen, but each subject at most this often; the "
        "changes in between are counted in its next line. A minute keeps a flapping source to one line "
        "a minute while a new failure still shows at once.",
    )
    max_request_body: int = Field(
        default=1024 * 1024,
        ge=1024,
        le=1024 * 1024 * 1024,
        description="Largest request body the HTTP API reads, in bytes; larger ones are refused with 413 "
        "before they are read. 1 MiB is a thousand times a Flagger webhook, and small enough that a "
        "flood of them cannot stall the event loop the guard runs in.",
    )
    api_token: Secret = Field(
        default=None,
        description="Bearer token the API requires: {file: /path} (BUDGETGUARD_API_TOKEN__FILE), "
        "{env: NAME}, or inline.",
    )
    api_token_file: Path | None = _deprecated_file("api_token")
    actions: dict[str, ActionConfig] = Field(
        default_factory=dict,
        description="Named actions canaries can call (on_burn, notify); none by default: budgetguard "
        "halts nothing until told how.",
    )
    query_mode: QueryMode = Field(
        default=QueryMode.RAW,
        description="raw: every SLO's own queries, nothing to set up. recording: read the series "
        "`budgetguard rules` records (load them into your Prometheus or ruler first), one query per window "
        "for all SLOs; SLOs without loaded rules fall back to raw. Raw by default: it works on day one.",
    )
    metrics_per_window: bool = Field(
        default=True,
        description="Export each SLO's burn rate, error ratio and events for every window it judges. "
        "Those are most of /metrics (24 of ~40 series per SLO); false leaves them out for large fleets, "
        "keeping the verdicts, budgets, tiers and canaries (docs/reference/metrics-cardinality.md).",
    )
    cycle_worker_min_slos: int | None = Field(
        default=1000,
        ge=0,
        description="From this many SLOs in force, the heavy part of each evaluation cycle (reading and "
        "judging the answers, serialising the store's rows, writing /metrics) runs in a child process, so "
        "the gates and the API answer in milliseconds while it runs (at 10,000 SLOs a cycle is seconds of "
        "CPU). 0: always; null: never. Below it, the cycle costs too little to be worth a process.",
    )
    dry_run: bool = Field(
        default=False,
        description="Decide and record every action in the outbox, call none: for trying budgetguard "
        "beside an existing process. Off by default, since the guard exists to act.",
    )
    delivery: DeliverySettings = Field(
        default_factory=DeliverySettings, description="Retries of actions; see DeliverySettings."
    )

    @field_validator("listen", mode="before")
    @classmethod
    def _listen(cls, value: Any) -> str:
        split_listen(str(value))
        return str(value)

    @field_validator("actions")
    @classmethod
    def _action_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", name):
                raise ValueError(f"{name!r} is not an action name (letters, digits, '-', '_', '.')")
        return value

    @field_validator("leader_lease")
    @classmethod
    def _leader_lease(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("leader_lease must be at least 1s")
        return value

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("interval must be at least 1s")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init carries the config file overlaid by the flags; both beat the environment.
        return init_settings, env_settings

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        return _file_aliases(data, ("api_token",))

    def api_token_value(self) -> str | None:
        return _resolve(self.api_token, "api_token")


def known_actions(settings: Settings) -> KnownActions:
    """Action names and the placeholders each uses, for checking SLO files at load."""
    return {name: placeholders_of(config) for name, config in settings.actions.items()}


# What a reload of the config file cannot change in a running daemon: the socket is bound, the store
# open, the API's token built into its routes and the log's format set. A reload that changes one of
# these names it in the log and keeps the running value until a restart.
# The source, its engine, the outbox's retry policy and the HTTP limits are built once, at start, too.
RESTART_REQUIRED: tuple[str, ...] = (
    "listen",
    "db",
    "leader_lease",
    "api_token",
    "api_token_file",
    "log_json",
    "prometheus",
    "query_mode",
    "delivery",
    "misfire_grace",
    "max_request_body",
)


@dataclass(frozen=True)
class ConfigSource:
    """Where the daemon's settings come from, so that a reload reads them exactly as the start did: the
    config file (None: defaults and environment only) overlaid by the flags that were given."""

    path: Path | None
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def load(self) -> Settings:
        return load_settings(self.path, self.overrides)


def changed_settings(old: Settings, new: Settings) -> list[str]:
    """The settings that differ, as dotted names (``prometheus.url``, ``actions.abort-checkout``).

    Secrets compare by value without being printed: only the names of changed settings come out.
    """
    changed: list[str] = []
    for name in Settings.model_fields:
        before, after = getattr(old, name), getattr(new, name)
        if isinstance(before, BaseModel) and isinstance(after, BaseModel):
            changed += [
                f"{name}.{inner}"
                for inner in type(before).model_fields
                if _plain(getattr(before, inner)) != _plain(getattr(after, inner))
            ]
        elif isinstance(before, dict) and isinstance(after, dict):
            changed += [
                f"{name}.{key}"
                for key in sorted(set(before) | set(after))
                if _plain(before.get(key)) != _plain(after.get(key))
            ]
        elif _plain(before) != _plain(after):
            changed.append(name)
    return changed


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, BaseModel):
        return value.model_dump(mode="python")
    return value


def split_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def read_config_file(config_file: Path) -> dict[str, Any]:
    """The settings a YAML config file holds; ``ConfigError`` naming the file when it cannot be read."""
    try:
        loaded = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {config_file}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{config_file}: not valid YAML: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError(f"{config_file}: the YAML is nested too deeply to read") from exc
    except ValueError as exc:  # an integer of more than 4,300 digits
        raise ConfigError(f"{config_file}: a value cannot be read as a number: {exc}") from exc
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{config_file}: the config file must be a mapping of settings")
    return loaded or {}


def load_settings(config_file: Path | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Defaults < environment < ``config_file`` < ``overrides`` (the command-line flags that were given)."""
    data: dict[str, Any] = {}
    where = "the flags or the environment (BUDGETGUARD_*)"
    if config_file is not None:
        where = f"the flags, {config_file} or the environment"
        data = read_config_file(config_file)
    data = _deep_merge(data, {k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return Settings(**data)
    except ValidationError as exc:
        lines = []
        for error in exc.errors(include_url=False):
            field = ".".join(str(p) for p in error["loc"])
            env = "BUDGETGUARD_" + "__".join(str(p) for p in error["loc"]).upper()
            message = str(error["msg"]).removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown setting; check its spelling"
            lines.append(f"setting {field!r} (in {where}, env {env}): {message}")
        raise ConfigError("invalid configuration:\n" + "\n".join(lines)) from exc
