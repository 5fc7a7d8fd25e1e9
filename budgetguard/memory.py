"""The garbage collector's policy for a process that holds its SLOs for its lifetime.

CPython frees almost everything by reference counting; its cyclic collector exists for reference
cycles, and runs whenever enough container objects have been allocated, walking every object that
survived earlier runs. budgetguard's large, long-lived heap is its SLOs (10,000 SLOs are ~250,000
objects) and a cycle allocates hundreds of thousands of short-lived ones, so with the default policy a
cycle of 10,000 SLOs in recording-rule mode spent over a second walking the same SLOs again and again
(``bench/recording_bench.py``). Two measures, both standard library:

- ``settle()`` after the SLOs are (re)loaded: collect once, then ``gc.freeze()`` what survives, so the
  collector no longer walks the SLOs. The previous set is unfrozen first, so a reload leaks nothing.
- ``collection_paused()`` around an evaluation cycle: no automatic collection during it; the objects
  it made are looked at once, by the first collection after it. Nothing is lost meanwhile (reference
  counting frees everything acyclic as usual); a cycle creates reference cycles only through
  exceptions, a handful per cycle.

- ``keep()`` after each cycle (#14): collect the young generations (the cycle's own garbage, the few
  reference cycles of its exceptions included), then freeze what survives: the latest evaluations the
  daemon keeps until the next cycle. Without it they piled up in the oldest generation and a full
  collection walked them all, holding the event loop (and the gates) 60-140 ms at 1,000 SLOs and over a
  second at 10,000. A frozen object that dies is still freed by reference counting; only a reference
  cycle that becomes garbage after being frozen waits for the next ``settle()``: at a reload, and hourly
  with the retention job, so a daemon that runs for months holds at most an hour of such garbage.

No effect on results: only on when memory held by reference cycles is given back.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


def settle() -> None:
    """Call after loading SLOs that the process keeps: later collections skip everything alive now."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def keep() -> None:
    """Call after a cycle: its garbage is collected now (young generations only: milliseconds) and what it
    keeps is frozen, so later collections skip it."""
    gc.collect(1)
    gc.freeze()


@contextmanager
def collection_paused() -> Iterator[None]:
    """No automatic collection inside; the collector's state is restored on the way out."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
