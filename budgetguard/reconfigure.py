"""Reloading the config file in a running daemon: what changed, what now applies, what waits for a restart.

SIGHUP and the file watch re-read the SLO files; issue 13 found they did not re-read the config file,
so a newly declared action was reported as undeclared, a changed interval was ignored and nothing said
that a restart was needed. ``ConfigReload`` re-reads the config exactly as the start did
(``config.ConfigSource``), and:

- keeps the last good config when the new one is refused (invalid, or an action that cannot be built),
  naming the problems in the log, in ``budgetguard_config_errors`` and in ``GuardHealth``;
- applies what a running daemon can take: the actions (built anew, the replaced ones closed), dry runs,
  the SLO paths and the action names the SLO files are checked against, the interval, the file-watch
  period, jitter, retention, the log level and ``log_min_interval``;
- names what cannot change without a restart (``config.RESTART_REQUIRED``: the listen address, the
  store, the API token, the source, ...) and keeps running with the old values of those.

It is called by the composition root, which owns the scheduler (``reschedule``) and the SLO files
(``SloPaths``); it builds actions with ``budgetguard.actions.build_action`` and nothing else.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from budgetguard.actions import build_action
from budgetguard.config import (
    RESTART_REQUIRED,
    ConfigSource,
    Settings,
    changed_settings,
    known_actions,
)
from budgetguard.core.errors import BudgetguardError, ConfigError
from budgetguard.core.ports import Action
from budgetguard.cycle import Cycle, delivery_of
from budgetguard.health import GuardHealth
from budgetguard.loader import KnownActions

log = logging.getLogger("budgetguard")


class SloPaths(Protocol):
    """The SLO files in force (``slofiles.SloFiles``): where they are and which actions they may name."""

    def configure(self, paths: Sequence[Path], actions: KnownActions) -> None: ...


def _fingerprint(path: Path | None) -> tuple[int, int, int] | None:
    """The config file's inode, mtime and size through symlinks (the inode catches a ConfigMap's
    ``..data`` swap; see ``slofiles``)."""
    if path is None:
        return None
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


class ConfigReload:
    """The settings in force and how a reload changes them; see the module docstring."""

    def __init__(
        self,
        source: ConfigSource | None,
        settings: Settings,
        *,
        actions: dict[str, Action],
        cycle: Cycle,
        files: SloPaths,
        health: GuardHealth,
        reschedule: Callable[[Settings], None] = lambda _settings: None,
    ) -> None:
        self.source = source
        self.settings = settings
        self._actions = actions  # shared with the outbox: updated in place
        self._cycle = cycle
        self._files = files
        self._health = health
        # The composition root's, once its scheduler runs: a changed interval or file-watch period.
        self.reschedule = reschedule
        self._fingerprint = None if source is None else _fingerprint(source.path)
        self._closing: set[asyncio.Task[None]] = set()

    def changed_on_disk(self) -> bool:
        """Whether the config file changed since it was last read (for the file watch)."""
        return self.source is not None and _fingerprint(self.source.path) != self._fingerprint

    def reload(self, why: str) -> None:
        """Read the config file again; apply it, or keep the last good one and say why. Without a
        ``source`` (settings built in code) there is nothing to read again."""
        if self.source is None:
            return
        self._fingerprint = _fingerprint(self.source.path)
        where = self.source.path or "the environment"
        try:
            new = self.source.load()
        except ConfigError as exc:
            # load_settings heads its list of problems with "invalid configuration:"; count the problems.
            lines = [line for line in str(exc).splitlines() if line != "invalid configuration:"]
            self._refuse(why, where, lines)
            return
        changed = changed_settings(self.settings, new)
        if not changed:
            self._health.config_problems = []
            return
        restart = [name for name in changed if name.split(".")[0] in RESTART_REQUIRED]
        kept = {name.split(".")[0] for name in restart}
        taken = new.model_copy(update={name: getattr(self.settings, name) for name in kept})
        try:
            built = self._build_actions(taken, [name for name in changed if name.startswith("actions.")])
        except BudgetguardError as exc:
            self._refuse(why, where, [str(exc)])
            return
        self._health.config_problems = []
        self._apply(taken, built)
        applied = [name for name in changed if name not in restart]
        if applied:
            log.info("reload (%s): config %s: applied %s", why, where, ", ".join(applied))
        if restart:
            log.warning(
                "reload (%s): config %s: %s changed but take effect only after a restart; running with "
                "the old values until then",
                why,
                where,
                ", ".join(restart),
            )

    def _refuse(self, why: str, where: object, problems: list[str]) -> None:
        self._health.config_problems = problems
        log.error(
            "reload (%s): config %s refused, keeping the last good config: %s",
            why,
            where,
            "; ".join(problems),
        )

    def _build_actions(self, new: Settings, changed: Sequence[str]) -> dict[str, Action | None]:
        """The actions to replace (None: removed), all built before any is swapped in."""
        built: dict[str, Action | None] = {}
        for dotted in changed:
            name = dotted.removeprefix("actions.")
            config = new.actions.get(name)
            built[name] = None if config is None else build_action(name, config)
        return built

    def _apply(self, new: Settings, built: Mapping[str, Action | None]) -> None:
        old_actions = {name: self._actions[name] for name in built if name in self._actions}
        for name, action in built.items():
            if action is None:
                self._actions.pop(name, None)
            else:
                self._actions[name] = action
        if old_actions:
            task = asyncio.get_running_loop().create_task(_close(old_actions), name="close-replaced-actions")
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        self._cycle.configure(delivery=delivery_of(new), jitter=new.jitter)
        self._files.configure(new.slo_paths, known_actions(new))
        self._health.states.set_interval(new.log_min_interval)
        logging.getLogger().setLevel(new.log_level)
        if (new.interval, new.reload_poll) != (self.settings.interval, self.settings.reload_poll):
            self.reschedule(new)
        self.settings = new


async def _close(actions: Mapping[str, Action]) -> None:
    for action in actions.values():
        try:
            await action.aclose()
        except Exception:  # closing one client must not keep the others open
            log.warning("closing replaced action %s failed", action.name, exc_info=True)
