"""How late the event loop runs what is due: the measure of a handler, scrape or cycle holding it (#14).

Every gate, API answer and scrape is served by the one event loop the cycles also run on, so anything
that holds it (a long computation without an ``await``) delays all of them. A task that sleeps a fixed
``every`` and looks at how late it woke measures that directly, whatever held the loop: the overshoot
is the longest time the loop was not free during that sleep (to within ``every``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

# Often enough to catch a 20 ms stall, rarely enough to cost nothing (20 wake-ups a second).
EVERY_SECONDS = 0.05


async def watch_loop_lag(
    observe: Callable[[float], None], stop: asyncio.Event, every: float = EVERY_SECONDS
) -> None:
    """Until ``stop`` is set: sleep ``every`` seconds, then ``observe`` how many seconds late it woke."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        due = loop.time() + every
        await asyncio.sleep(every)
        observe(max(loop.time() - due, 0.0))
