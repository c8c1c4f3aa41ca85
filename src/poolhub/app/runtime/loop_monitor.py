"""Samples the serving process: how long its event loop keeps ready work waiting, and the directory gauges.

The lag is measured the way a waiting request feels it: a task asks to wake every TICK_SEC and records how
late it woke; the worst lateness of each second is the gauge. The directory gauges are set here too, so every
worker of a multi-process server keeps its own values current, not only the one that answers a scrape. Each
tick also lets the heap freezer act on the event loop, between requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from poolhub.app.metrics import Metrics
from poolhub.app.runtime.heap import HeapFreezer
from poolhub.domain.ports import Clock, LiveState

TICK_SEC = 0.05
REPORT_SEC = 1.0


class LoopMonitor:
    def __init__(self, metrics: Metrics, directory: LiveState, clock: Clock, heap: HeapFreezer) -> None:
        self._metrics = metrics
        self._directory = directory
        self._clock = clock
        self._heap = heap
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._heap.install()
        self._task = asyncio.create_task(self._run(), name="poolhub-loop-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._heap.uninstall()
        self._metrics.close()

    async def _run(self) -> None:
        worst = 0.0
        reported = time.perf_counter()
        while True:
            due = time.perf_counter() + TICK_SEC
            await asyncio.sleep(TICK_SEC)
            woke = time.perf_counter()
            worst = max(worst, woke - due)
            self._heap.check()
            if woke - reported >= REPORT_SEC:
                self.sample(worst)
                worst, reported = 0.0, woke

    def sample(self, lag_seconds: float) -> None:
        self._metrics.event_loop_lag.set(lag_seconds)
        self._metrics.gc_frozen_objects.set(self._heap.frozen)
        self.refresh_directory_gauges()

    def refresh_directory_gauges(self) -> None:
        now = self._clock.now()
        self._metrics.miners_online.set(self._directory.online_count(now))
        self._metrics.miners_registered.set(len(self._directory))
        self._metrics.pending_beats.set(self._directory.pending_beats())
        self._metrics.writebehind_depth.labels(kind="beat").set(self._directory.pending_beats())
        self._metrics.writebehind_depth.labels(kind="match_record").set(
            self._directory.pending_match_records()
        )
