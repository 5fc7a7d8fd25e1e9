"""The garbage collector's policy: SLOs frozen out of collections, collection paused during a cycle."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from budgetguard import memory


@pytest.fixture(autouse=True)
def restore_the_collector() -> Iterator[None]:
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    if enabled:
        gc.enable()
    else:
        gc.disable()


def test_settle_freezes_what_is_alive_and_a_reload_does_not_keep_the_old_set_frozen() -> None:
    gc.unfreeze()
    first = [[i] for i in range(1000)]  # lists: always tracked by the collector
    memory.settle()
    frozen_with_first = gc.get_freeze_count()
    assert frozen_with_first >= 1000
    del first
    memory.settle()  # a reload: the old SLOs are gone, so they are not frozen again
    assert gc.get_freeze_count() <= frozen_with_first - 1000


def test_collection_is_paused_inside_and_restored_after_even_on_an_error() -> None:
    gc.enable()
    with pytest.raises(RuntimeError), memory.collection_paused():
        assert not gc.isenabled()
        raise RuntimeError("a cycle that fails")
    assert gc.isenabled()
    gc.disable()
    with memory.collection_paused():
        pass
    assert not gc.isenabled()  # a collector someone else turned off stays off


def test_keep_collects_the_young_garbage_and_freezes_what_survives() -> None:
    gc.unfreeze()
    gc.disable()  # as in a cycle: nothing collects the garbage but keep() itself

    class Node:
        def __init__(self) -> None:
            self.me = self  # a reference cycle: only the collector frees it

    survivors = [[i] for i in range(1000)]
    garbage = [weakref.ref(Node()) for _ in range(10)]
    before = gc.get_freeze_count()
    memory.keep()
    assert gc.get_freeze_count() >= before + 1000
    assert all(ref() is None for ref in garbage)  # collected, not frozen
    del survivors


class _Node:
    def __init__(self) -> None:
        self.partner: _Node | None = None


def test_a_reference_cycle_frozen_by_keep_is_freed_by_the_next_settle() -> None:
    # What the hourly settle() in the daemon's retention job is for: keep() froze the cycle while it
    # was alive; once it is garbage, only an unfreeze and a full collection free it.
    gc.unfreeze()
    a, b = _Node(), _Node()
    a.partner, b.partner = b, a
    freed: list[bool] = []
    probe = weakref.ref(a, lambda _: freed.append(True))
    memory.keep()
    del a, b
    gc.collect()
    assert probe() is not None and not freed  # frozen: the collector does not see it
    memory.settle()
    assert probe() is None and freed
