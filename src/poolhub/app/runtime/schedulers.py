"""Periodic jobs that must run once per tick across all processes (SLA collection, billing sync).

Ticks sit on wall-clock multiples of the interval, so every process computes the same tick; the
`TickLock` lets exactly one of them run it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from dishka import AsyncContainer

from poolhub.domain.ports import Clock, TickLock

_log = structlog.get_logger("poolhub.scheduler")

JobBody = Callable[[AsyncContainer], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class PeriodicJob:
    name: str
    interval_sec: float
    body: JobBody


def tick_of(moment: datetime, interval_sec: float) -> datetime:
    """The start of the tick containing `moment`."""
    seconds = math.floor(moment.timestamp() / interval_sec) * interval_sec
    return datetime.fromtimestamp(seconds, UTC)


class Scheduler:
    """Runs each job at every tick in which this process wins the claim; `stop` cancels cleanly."""

    def __init__(self, container: AsyncContainer, jobs: list[PeriodicJob]) -> None:
        self._container = container
        self._jobs = jobs
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._loop(job), name=f"scheduler:{job.name}") for job in self._jobs
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def run_tick(self, job: PeriodicJob, tick_at: datetime) -> bool:
        """Claim and run one tick; False when another process claimed it first."""
        clock = await self._container.get(Clock)
        async with self._container() as scope:
            claimed = await (await scope.get(TickLock)).claim(job.name, tick_at, clock.now())
        if not claimed:
            return False
        started = asyncio.get_running_loop().time()
        await job.body(self._container)
        _log.info(
            "scheduled_job_ran",
            job=job.name,
            tick_at=tick_at.isoformat(),
            duration_ms=round((asyncio.get_running_loop().time() - started) * 1000, 1),
        )
        return True

    async def _loop(self, job: PeriodicJob) -> None:
        clock = await self._container.get(Clock)
        while True:
            now = clock.now()
            next_tick = tick_of(now, job.interval_sec).timestamp() + job.interval_sec
            await asyncio.sleep(max(0.0, next_tick - now.timestamp()))
            try:
                await self.run_tick(job, datetime.fromtimestamp(next_tick, UTC))
            except Exception:
                _log.exception("scheduled_job_failed", job=job.name)
