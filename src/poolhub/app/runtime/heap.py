"""Keeps CPython's cyclic garbage collector off the long-lived heap, so a full collection is not a tail.

A hub holds ~15 tracked objects per miner (its records, tags, capabilities, tokens) on top of ~100,000 from
start-up. A full collection walks all of them: at 10,000 miners it held the event loop for 150-260 ms every
few seconds under a match load (every in-flight match waited), and it grows with the directory. Objects
that survive a full collection are long-lived; `gc.freeze()` moves them to the permanent generation, which
no collection walks, so later full collections only walk what arrived since. Frozen objects are still freed
as soon as nothing refers to them; only a reference cycle among them waits until they are thawed, which
happens every `thaw_every_sec` (one long collection per interval instead of one every few seconds).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any, Final

# Freeze once this many survivors are unfrozen: a full collection then never walks many more (3-7 ms at
# 10,000 miners under the match benchmark; 6-15 ms with 20,000), and freezes stay rare in a steady state,
# since each one also catches whatever is in flight at that moment. A threshold of a
# quarter of the frozen heap was tried: with 10,000 open WebSockets beats fell to 4,700-4,900/s (6,700-6,900/s
# with a fixed threshold, 6,000/s with no freezing), as collections between freezes grew large and frequent.
FREEZE_MIN_OBJECTS: Final = 8_000
THAW_EVERY_SEC: Final = 3600.0


class HeapFreezer:
    def __init__(
        self,
        *,
        min_objects: int = FREEZE_MIN_OBJECTS,
        thaw_every_sec: float = THAW_EVERY_SEC,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._min_objects = min_objects
        self._thaw_every = thaw_every_sec
        self._monotonic = monotonic
        self._full_collections = 0
        self._checked = 0
        self._thawed_at = monotonic()
        self.freezes = 0
        # gc.get_freeze_count() walks the whole frozen list, so it is read only when that list changes;
        # objects freed since then still count until the next freeze or thaw.
        self.frozen = gc.get_freeze_count()

    def install(self) -> None:
        gc.callbacks.append(self._on_collection)

    def uninstall(self) -> None:
        """Stop, and hand every frozen object back to the collector (an app that stops inside a longer-lived
        process, as in tests, would otherwise keep its reference cycles for good)."""
        if self._on_collection in gc.callbacks:
            gc.callbacks.remove(self._on_collection)
        gc.unfreeze()
        self.frozen = 0

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        # Runs inside the collector: only count here; freezing waits for `check`, on the event loop.
        if phase == "stop" and info["generation"] == 2:
            self._full_collections += 1

    def freeze_now(self) -> None:
        """Collect, then freeze every survivor: for a process whose start-up heap lives as long as it does."""
        gc.collect()
        gc.freeze()
        self.freezes += 1
        self.frozen = gc.get_freeze_count()

    def check(self) -> bool:
        """Freeze or thaw if it is time; call it often (it is a comparison unless a full collection ran)."""
        if self._monotonic() - self._thawed_at >= self._thaw_every:
            self._thawed_at = self._monotonic()
            gc.unfreeze()
            self.frozen = 0
            return False
        if self._full_collections == self._checked:
            return False
        self._checked = self._full_collections
        unfrozen = len(gc.get_objects(generation=2))
        if unfrozen < self._min_objects:
            return False
        gc.freeze()
        self.freezes += 1
        self.frozen = gc.get_freeze_count()
        return True
