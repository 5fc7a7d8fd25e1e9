"""Prometheus durations: parse ``1h30m``-style strings into ``timedelta`` and write them back.

Windows appear as PromQL range selectors, as JSON keys and as metric labels, so their text must be
stable: ``format_duration`` always writes the same canonical form (days, hours, minutes, seconds and
milliseconds, largest first, no weeks or years so that ``30d`` stays ``30d`` rather than Go's ``4w2d``).
Pure: no I/O.
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache

# Prometheus accepts y, w, d, h, m, s, ms (model.ParseDuration); ns and us are rejected by its API.
_UNITS_MS = {
    "y": 365 * 86_400_000,
    "w": 7 * 86_400_000,
    "d": 86_400_000,
    "h": 3_600_000,
    "m": 60_000,
    "s": 1000,
    "ms": 1,
}
_DURATION = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_ORDER = ("y", "w", "d", "h", "m", "s", "ms")
# Prometheus keeps durations in int64 nanoseconds and refuses longer ones ("duration out of range",
# common/model/time.go ParseDuration): about 292 years. Longer would also overflow ``timedelta`` and
# the datetimes computed from it, so it is refused here with the reason.
MAX_DURATION_MS = (2**63 - 1) // 1_000_000


def parse_duration(text: str, *, allow_zero: bool = False) -> timedelta:
    """Parse a Prometheus duration such as ``5m``, ``1h30m`` or ``30d``; raise ValueError otherwise.

    Windows must be longer than zero; settings such as a jitter may be ``0s`` with ``allow_zero``.
    """
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if not match or not any(match.groups()):
        raise ValueError(f"{text!r} is not a Prometheus duration (use a number and a unit: 5m, 1h, 30d)")
    total_ms = sum(
        int(value) * _UNITS_MS[unit] for unit, value in zip(_ORDER, match.groups(), strict=True) if value
    )
    if total_ms > MAX_DURATION_MS:
        raise ValueError(
            f"{text!r} is longer than the longest duration Prometheus accepts (about 292y); "
            "use a shorter one, e.g. 30d"
        )
    if total_ms <= 0 and not allow_zero:
        raise ValueError(f"{text!r} must be longer than zero")
    return timedelta(milliseconds=total_ms)


@lru_cache(maxsize=256)  # a record writes ~30 windows, all from a handful of values
def format_duration(value: timedelta) -> str:
    """Write a duration canonically: ``timedelta(days=30)`` -> ``30d``, 90 minutes -> ``1h30m``."""
    remaining = round(value.total_seconds() * 1000)
    if remaining == 0:
        return "0s"
    if remaining < 0:
        raise ValueError("a duration cannot be negative")
    out = []
    for unit in ("d", "h", "m", "s", "ms"):
        size = _UNITS_MS[unit]
        count, remaining = divmod(remaining, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)
