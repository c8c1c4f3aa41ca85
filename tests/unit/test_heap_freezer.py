"""The heap freezer keeps long-lived survivors out of the collector's walks and loses no garbage for good."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from poolhub.app.runtime.heap import HeapFreezer


class Ticker:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def freezer() -> Iterator[tuple[HeapFreezer, Ticker]]:
    clock = Ticker()
    heap = HeapFreezer(min_objects=5_000, thaw_every_sec=60.0, monotonic=clock)
    gc.unfreeze()
    heap.install()
    yield heap, clock
    heap.uninstall()


def test_survivors_of_a_full_collection_are_frozen_and_later_cycles_still_collected(
    freezer: tuple[HeapFreezer, Ticker],
) -> None:
    heap, _ = freezer
    long_lived = [{"miner": i, "tags": [i]} for i in range(20_000)]
    gc.collect()
    assert heap.check()
    assert gc.get_freeze_count() >= len(long_lived)
    assert not heap.check(), "one freeze per full collection"
    # New garbage cycles are still found: they are not frozen.
    for _ in range(100):
        Cycle()
    assert gc.collect() >= 100
    # Too few new survivors to be worth a freeze.
    few = [[i] for i in range(100)]
    gc.collect()
    assert not heap.check()
    assert heap.freezes == 1
    del long_lived, few


def test_frozen_cycles_are_reclaimed_after_the_thaw_interval(freezer: tuple[HeapFreezer, Ticker]) -> None:
    heap, clock = freezer
    kept = [Cycle() for _ in range(10_000)]
    gc.collect()
    assert heap.check()
    del kept  # now garbage, but frozen: a collection cannot see it
    assert gc.collect() < 10_000
    clock.now = 61.0
    heap.check()
    assert gc.get_freeze_count() == 0
    assert gc.collect() >= 10_000


def test_stopping_hands_everything_back(freezer: tuple[HeapFreezer, Ticker]) -> None:
    heap, _ = freezer
    kept = [[i] for i in range(10_000)]
    gc.collect()
    assert heap.check() and gc.get_freeze_count() > 0
    heap.uninstall()
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert not heap.check(), "uninstalled: no longer counts collections"
    del kept
