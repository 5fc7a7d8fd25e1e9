"""What every action's configuration shares: secrets by reference, dry run, timeouts.

``SecretRef`` is budgetguard's one way to give a secret, in the daemon's settings (``api_token``,
``prometheus.bearer_token``) and in every action alike: by reference to an environment variable
(``{env: NAME}``) or a file (``{file: /path}``, a mounted Kubernetes secret), or inline for local use
(a plain string, or ``{value: ...}``). They are resolved when the daemon builds what uses them, and
kept as ``SecretStr`` everywhere else so that they never print.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

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
