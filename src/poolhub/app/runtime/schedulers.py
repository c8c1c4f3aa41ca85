"""Periodic jobs that must run once per tick across all processes (SLA collection, billing sync, retention).

Ticks sit on wall-clock multiples of the interval, so every process computes the same tick. A job runs
only under its lease (`TickLock`), which also keeps a run by hand (`exclusive_run`) from overlapping a
scheduled one; a tick is marked done only after its job ran to its end, so a tick whose job crashed (or
whose process died, once its lease lapsed) runs again before the next tick is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import structlog
from dishka import AsyncContainer

from poolhub.domain.errors import ConflictError
from poolhub.domain.ports import Clock, TickLock

_log = structlog.get_logger("poolhub.scheduler")

JobBody = Callable[[AsyncContainer], Awaitable[object]]

# A lease outlives a stalled renewal by a wide margin; a dead holder's job is free again after it.
LEASE_SEC = 60.0
RENEW_SEC = 20.0
# Between attempts at a tick that crashed or that another process holds: doubling up to this.
MAX_RETRY_SEC = 30.0
# How long a run by hand waits for a scheduled run of the same job to end before answering 409.
MANUAL_WAIT_SEC = 30.0


@dataclass(frozen=True, slots=True)
class PeriodicJob:
    name: str
    interval_sec: float
    body: JobBody


class TickOutcome(StrEnum):
    RAN = "ran"
    DONE = "done"  # already finished, here or elsewhere
    BUSY = "busy"  # another run of the job holds its lease


def tick_of(moment: datetime, interval_sec: float) -> datetime:
    """The start of the tick containing `moment`."""
    seconds = math.floor(moment.timestamp() / interval_sec) * interval_sec
    return datetime.fromtimestamp(seconds, UTC)


@contextlib.asynccontextmanager
async def _leased(lock: TickLock, clock: Clock, job: str, holder: str) -> AsyncIterator[None]:
    """Keep renewing the lease while the body runs; release it however the body ends."""

    async def renew() -> None:
        while True:
            await asyncio.sleep(RENEW_SEC)
            try:
                await lock.renew(job, holder, clock.now() + timedelta(seconds=LEASE_SEC))
            except Exception:
                _log.warning("job_lease_renewal_failed", job=job)

    renewer = asyncio.create_task(renew(), name=f"lease:{job}")
    try:
        yield
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer
        try:
            await asyncio.shield(lock.release(job, holder))
        except Exception:  # the lease lapses on its own; the job's own outcome matters more
            _log.warning("job_lease_release_failed", job=job)


@contextlib.asynccontextmanager
async def exclusive_run(
    lock: TickLock, clock: Clock, job: str, wait_sec: float = MANUAL_WAIT_SEC
) -> AsyncIterator[None]:
    """Hold the job's lease around a run by hand: it waits for a scheduled run in progress (any
    process) to end, and none starts meanwhile. Raises ConflictError if the wait exceeds `wait_sec`."""
    holder = uuid.uuid4().hex
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_sec
    pause = 0.05
    while True:
        now = clock.now()
        if await lock.acquire(job, holder, now, now + timedelta(seconds=LEASE_SEC)):
            break
        if loop.time() + pause > deadline:
            raise ConflictError(f"another {job} run is in progress; try again when it has finished")
        await asyncio.sleep(pause)
        pause = min(pause * 2, 1.0)
    async with _leased(lock, clock, job, holder):
        yield


class Scheduler:
    """Runs each job at every tick, once across all processes; `stop` cancels cleanly."""

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
        """Run one tick if nobody has finished it and nobody runs the job now; True if this call ran it.
        An exception from the job propagates and leaves the tick to be run again."""
        return await self.attempt(job, tick_at) is TickOutcome.RAN

    async def attempt(self, job: PeriodicJob, tick_at: datetime) -> TickOutcome:
        lock = await self._container.get(TickLock)
        clock = await self._container.get(Clock)
        holder = uuid.uuid4().hex
        now = clock.now()
        if not await lock.acquire(job.name, holder, now, now + timedelta(seconds=LEASE_SEC)):
            return TickOutcome.BUSY
        async with _leased(lock, clock, job.name, holder):
            if await lock.tick_done(job.name, tick_at):
                return TickOutcome.DONE
            await lock.start_tick(job.name, tick_at, holder, now)
            started = asyncio.get_running_loop().time()
            await job.body(self._container)
            await lock.finish_tick(job.name, tick_at, clock.now())
        _log.info(
            "scheduled_job_ran",
            job=job.name,
            tick_at=tick_at.isoformat(),
            duration_ms=round((asyncio.get_running_loop().time() - started) * 1000, 1),
        )
        return TickOutcome.RAN

    async def run_until_done(self, job: PeriodicJob, tick_at: datetime) -> None:
        """Attempt the tick until it is done (here or elsewhere), retrying a crash or a busy lease with
        backoff, and giving up when the next tick is due (it takes over)."""
        clock = await self._container.get(Clock)
        next_tick = tick_at + timedelta(seconds=job.interval_sec)
        pause = min(1.0, job.interval_sec / 8)
        while True:
            try:
                if await self.attempt(job, tick_at) is not TickOutcome.BUSY:
                    return
            except Exception:
                _log.exception("scheduled_job_failed", job=job.name, tick_at=tick_at.isoformat())
            if clock.now() + timedelta(seconds=pause) >= next_tick:
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_RETRY_SEC)

    async def _loop(self, job: PeriodicJob) -> None:
        clock = await self._container.get(Clock)
        while True:
            now = clock.now()
            next_tick = tick_of(now, job.interval_sec).timestamp() + job.interval_sec
            await asyncio.sleep(max(0.0, next_tick - now.timestamp()))
            await self.run_until_done(job, datetime.fromtimestamp(next_tick, UTC))
