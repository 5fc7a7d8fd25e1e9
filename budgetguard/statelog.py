"""Logging by change of state: one line when something's state changes, never more often than a rate.

The daemon judges every SLO every cycle and asks its source hundreds of times a minute. Logging each
outcome floods the log; logging only verdict *changes* (as budgetguard once did) left the first
verdict of each SLO, a source that never answered and a store that stopped writing unsaid for minutes.
A ``StateLog`` keeps the last state it logged for each subject (an SLO's verdict, the source, the
store, an action's deliveries) and logs:

- the first state of a subject, whatever it is (the first verdict of each SLO);
- each change, with its cause, but at most once per ``min_interval`` per subject: changes in between
  are counted, and the latest one is logged when the interval has passed (``flush``), saying how many
  changes it stands for. A subject flapping every cycle costs one line per interval, and the line
  still says where it ended up.

Owns no handler and no clock of its own (``clock`` is given, tests pass a fake one); it only calls
``logger.log``. It must not decide anything: it only says what others decided.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any


@dataclass
class _Subject:
    state: str | None = None  # the state last logged
    logged_at: float | None = None  # monotonic seconds of that line
    pending: tuple[str, int, str, tuple[Any, ...]] | None = None  # (state, level, message, args) held back
    held: int = 0  # changes held back since the last line


class StateLog:
    """Logs each subject's state when it changes, at most once per ``min_interval`` per subject."""

    def __init__(
        self,
        logger: logging.Logger,
        min_interval: timedelta = timedelta(minutes=1),
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._interval = min_interval.total_seconds()
        self._clock = clock
        self._subjects: dict[str, _Subject] = {}

    def set_interval(self, min_interval: timedelta) -> None:
        """A reloaded ``log_min_interval``."""
        self._interval = min_interval.total_seconds()

    def state(self, subject: str) -> str | None:
        """The last state logged for ``subject`` (None before its first)."""
        found = self._subjects.get(subject)
        return None if found is None else found.state

    def observe(self, subject: str, state: str, level: int, message: str, *args: Any) -> bool:
        """``subject`` is in ``state`` now; log ``message % args`` if that is news and the rate allows.

        Returns whether a line was written. The same state as the last line logs nothing (and drops
        a held-back change, since the subject is back where the log says it is).
        """
        found = self._subjects.setdefault(subject, _Subject())
        if state == found.state:
            found.pending = None
            found.held = 0
            return False
        now = self._clock()
        if found.logged_at is not None and now - found.logged_at < self._interval:
            found.pending = (state, level, message, args)
            found.held += 1
            return False
        self._write(found, (state, level, message, args), now)
        return True

    def settle(self, subject: str, state: str) -> None:
        """``subject`` is back in a quiet ``state`` (a note gone): recorded without a line and without
        using up the subject's interval, so that its next change is logged at once if it may be."""
        found = self._subjects.setdefault(subject, _Subject())
        found.state = state
        found.pending = None
        found.held = 0

    def flush(self) -> int:
        """Log the held-back change of every subject whose interval has passed; returns how many."""
        now = self._clock()
        written = 0
        for found in self._subjects.values():
            if found.pending is None or (
                found.logged_at is not None and now - found.logged_at < self._interval
            ):
                continue
            self._write(found, found.pending, now)
            written += 1
        return written

    def forget(self, subject: str) -> None:
        """Drop a subject (an SLO removed by a reload): if it comes back, its first state logs again."""
        self._subjects.pop(subject, None)

    def _write(self, found: _Subject, line: tuple[str, int, str, tuple[Any, ...]], now: float) -> None:
        state, level, message, args = line
        if found.held > 1:
            message += " (%d changes within %gs, this is the latest)"
            args = (*args, found.held, self._interval)
        self._log.log(level, message, *args)
        found.state = state
        found.logged_at = now
        found.pending = None
        found.held = 0
