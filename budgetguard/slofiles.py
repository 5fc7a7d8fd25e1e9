"""The SLO files in force: loaded at start, reloaded on SIGHUP and when they change on disk.

Owns the list of SLOs the daemon judges (written into the shared ``readmodel.State``), the problems of
a refused reload, and the fingerprint of the files that tells the file watch something changed. It
judges the files with ``budgetguard.loader`` against the actions the config declares, which a reload of
the config file changes (``configure``). It schedules nothing and builds no adapter: the composition
root (``budgetguard.daemon``) calls it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from budgetguard import memory
from budgetguard.loader import KnownActions, LoadResult, discover, load_paths
from budgetguard.readmodel import State
from budgetguard.store import AnyStore

log = logging.getLogger("budgetguard")


def _fingerprint(paths: Sequence[Path]) -> tuple[tuple[str, int, int, int], ...]:
    """Each file's path, inode, mtime and size, through symlinks. The inode is what catches a mounted
    ConfigMap's update: the kubelet writes new files and swaps the ``..data`` symlink in one rename, and
    a file of the same size written within the same clock tick as the old one has the same mtime."""
    files, _ = discover(paths)
    out = []
    for path in files:
        try:
            stat = path.stat()
        except OSError:
            continue
        out.append((str(path), stat.st_ino, stat.st_mtime_ns, stat.st_size))
    return tuple(out)


class SloFiles:
    """The SLO files in force: loaded at start, reloaded on SIGHUP and when they change on disk.

    A refused reload keeps the last good SLOs running and leaves its problems in the state (the logs,
    the metrics and the API report them). An SLO that a reload adds takes its latest evaluation from
    ``store``, so the API does not forget it until the next cycle.
    """

    def __init__(self, paths: Sequence[Path], actions: KnownActions, state: State) -> None:
        self._paths = paths
        self._actions = actions
        self.state = state
        self._fingerprint: tuple[tuple[str, int, int, int], ...] = ()

    def configure(self, paths: Sequence[Path], actions: KnownActions) -> None:
        """A reloaded config's SLO paths and declared actions, for the next (re)load."""
        self._paths = paths
        self._actions = actions

    @property
    def declared(self) -> frozenset[str]:
        """The ids of the SLOs in force: a pause of any other is refused (``control.Control``)."""
        return frozenset(slo.id for slo in self.state.slos)

    def load_initial(self) -> bool:
        loaded = load_paths(self._paths, self._actions)
        if not loaded.ok:
            for problem in loaded.problems:
                log.error("%s", problem)
            return False
        self.state.slos = loaded.slos
        self._fingerprint = _fingerprint(self._paths)
        memory.settle()
        return True

    def reload(self, why: str, store: AnyStore | None = None) -> None:
        self._apply(load_paths(self._paths, self._actions), _fingerprint(self._paths), why, store)

    async def reload_off_the_loop(self, why: str, store: AnyStore | None = None) -> None:
        """``reload``, reading and validating the files in a worker thread: 10,000 SLOs take seconds,
        which the event loop answering the gates must not wait for (#14)."""
        paths, actions = self._paths, self._actions
        fingerprint = await asyncio.to_thread(_fingerprint, paths)
        self._apply(await asyncio.to_thread(load_paths, paths, actions), fingerprint, why, store)

    def _apply(
        self,
        loaded: LoadResult,
        fingerprint: tuple[tuple[str, int, int, int], ...],
        why: str,
        store: AnyStore | None,
    ) -> None:
        self._fingerprint = fingerprint
        state = self.state
        if not loaded.ok:
            state.problems = [str(p) for p in loaded.problems]
            for problem in loaded.problems:
                log.error("reload (%s) refused, keeping the last good SLOs: %s", why, problem)
            return
        state.problems = []
        ids = {slo.id for slo in loaded.slos}
        state.latest = {k: v for k, v in state.latest.items() if k in ids}
        if store is not None:
            for slo_id, ev in store.latest([s for s in loaded.slos if s.id not in state.latest]).items():
                state.latest[slo_id] = ev
        state.slos = loaded.slos
        state.publish()
        memory.settle()
        log.info("reloaded %d SLO(s) from %d file(s) (%s)", len(loaded.slos), len(loaded.files), why)

    async def watch(self, store: AnyStore | None = None) -> bool:
        """Reload when the files changed since the last (re)load; whether they had. stat()ing a thousand
        files is a worker thread's job too."""
        if await asyncio.to_thread(_fingerprint, self._paths) != self._fingerprint:
            await self.reload_off_the_loop("files changed", store)
            return True
        return False
