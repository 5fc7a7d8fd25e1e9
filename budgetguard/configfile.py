"""Which config file a command reads, found without importing the settings (#14).

``budgetguard run`` and ``budgetguard check`` must judge the same SLO files against the same actions, so
they find the config file the same way. Finding it is a few path checks; reading it (``budgetguard.config``)
validates every action's settings, which imports pydantic-settings and every action's HTTP client: most
of a one-file ``check``'s time. Kept apart so that a command with no config file to read pays nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

# The config file every command reads when none is named.
DEFAULT_CONFIG = Path("budgetguard.yaml")
CONFIG_ENV = "BUDGETGUARD_CONFIG"
# The prefix of every setting read from the environment (``budgetguard.config.Settings``).
ENV_PREFIX = "BUDGETGUARD_"


def find_config(given: Path | None, environ: Mapping[str, str]) -> Path | None:
    """The config file of a command: ``--config``, else ``$BUDGETGUARD_CONFIG``, else ``./budgetguard.yaml``
    when it exists, else none (defaults and environment only). ``environ`` is passed in by the CLI."""
    if given is not None:
        return given
    named = environ.get(CONFIG_ENV, "").strip()
    if named:
        return Path(named)
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def describe_config(path: Path | None) -> str:
    """Which config file a command read, for its output."""
    if path is None:
        return (
            f"no config file (none given with --config or ${CONFIG_ENV}, and no ./{DEFAULT_CONFIG}): "
            "defaults and BUDGETGUARD_* only, so no actions are declared"
        )
    return f"config file {path}"


def settings_in_environment(environ: Mapping[str, str]) -> bool:
    """Whether any setting comes from the environment (``BUDGETGUARD_*``)."""
    return any(name.startswith(ENV_PREFIX) for name in environ)
