"""The garbage collector's policy: SLOs frozen out of collections, collection paused during a cycle."""

from __future__ import annotations

import gc
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
