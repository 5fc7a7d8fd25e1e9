"""What every action's configuration shares: secrets by reference, dry run, timeouts.

``SecretRef`` is budgetguard's one way to give a secret, in the daemon's settings (``api_token``,
``prometheus.bearer_token``) and in every action alike: by reference to an environment variable
(``{env: NAME}``) or a file (``{file: /path}``, a mounted Kubernetes secret), or inline for local use
(a plain string, or ``{value: ...}``). They are resolved when the daemon builds what uses them, and
kept as ``SecretStr`` everywhere else so that they never print.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from budgetguard.core.errors import ConfigError
from budgetguard.core.spec import Duration


class SecretRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    value: SecretStr | None = None
    env: str | None = None
    file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _inline(cls, data: Any) -> Any:
        return {"value": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if sum(x is not None for x in (self.value, self.env, self.file)) != 1:
            raise ValueError("give exactly one of value, env (an environment variable) or file")
        return self

    @classmethod
    def from_file(cls, path: Path) -> SecretRef:
        return cls(file=path)

    def resolve(self, what: str) -> str:
        """The secret's text; ``ConfigError`` naming ``what`` and the fix when it cannot be had."""
        if self.value is not None:
            return self.value.get_secret_value()
        if self.env is not None:
            found = os.environ.get(self.env)
            if not found:
                raise ConfigError(
                    f"{what}: environment variable {self.env} is not set; export it or use file:"
                )
            return found
        assert self.file is not None
        try:
            return self.file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read {what} from {self.file}: {exc.strerror}; check the path and its permissions"
            ) from exc


class ActionBase(BaseModel):
    """Fields every action type has."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dry_run: bool = Field(default=False, description="Record decisions and the outbox, call nothing.")
    timeout: Duration = Field(
        default=timedelta(seconds=10),
        description="Per request. A halt that takes longer than this is better retried than waited for.",
    )


class UrlParts:
    """What an action's settings check of a URL: its scheme (lower case), host, and whether it carries
    credentials, a query string or a fragment."""

    __slots__ = ("fragment", "host", "query", "scheme", "userinfo")

    def __init__(self, url: str) -> None:
        """Raises ``ValueError("not a valid URL: ...")``. Read with the standard library, not the HTTP
        client: validating a config file (every ``budgetguard check``) must not import httpx (#14)."""
        if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
            raise ValueError("not a valid URL: it contains whitespace or a control character")
        try:
            split = urlsplit(url)
            split.port  # noqa: B018 - raises for a port that is no number from 0 to 65535
        except ValueError as exc:
            raise ValueError(f"not a valid URL: {exc}") from exc
        self.scheme = split.scheme.lower()
        self.host = split.hostname or ""
        self.userinfo = bool(split.username or split.password)
        self.query = bool(split.query)
        self.fragment = bool(split.fragment)


def lazy_module(name: str) -> ModuleType:
    """``name`` imported when one of its attributes is first read (importlib's ``LazyLoader``): the
    action modules name httpx everywhere, and ``check`` reads their settings without calling anything."""
    found = sys.modules.get(name)
    if found is not None:
        return found
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"no module named {name!r}")
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
