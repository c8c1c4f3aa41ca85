"""Scheduled ticks across processes: done only once their job ran, run again after a crash (of the job or
of its process), and never overlapping a run by hand of the same job."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from dishka import AsyncContainer
from sqlalchemy import insert, select

from poolhub.adapters.db.models import JobLeaseRow, SchedulerTickRow
from poolhub.adapters.db.sla_models import CapacitySnapshotRow
from poolhub.app.runtime.schedulers import PeriodicJob, Scheduler, tick_of
from poolhub.app.runtime.sla_jobs import SLA_COLLECTION_JOB, collect_sla_job
from tests.integration.conftest import Hub, register, started_hub, test_settings
from tests.integration.sla_support import collect, execute


class FlakyJob:
    """A job body that raises on its first `failures` runs, then succeeds; records every run."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.runs = 0

    async def __call__(self, _: AsyncContainer) -> None:
        self.runs += 1
        if self.runs <= self.failures:
            raise RuntimeError(f"run {self.runs} crashed")


async def ticks(url: str, job: str) -> list[tuple[datetime, datetime | None]]:
    [rows] = await execute(
        url, select(SchedulerTickRow.tick_at, SchedulerTickRow.finished_at).where(SchedulerTickRow.job == job)
    )
    return [(row[0], row[1]) for row in rows]


async def test_a_tick_whose_job_crashed_runs_again_and_then_is_done(hub: Hub, clean_db: str) -> None:
    body = FlakyJob(failures=1)
    job = PeriodicJob("flaky", 3600.0, body)
    scheduler: Scheduler = hub.app.state.scheduler
    tick = tick_of(datetime.now(UTC), job.interval_sec)

    try:
        await scheduler.run_tick(job, tick)
        raise AssertionError("the crash should have propagated")
    except RuntimeError:
        pass
    [(_, finished)] = await ticks(clean_db, "flaky")
    assert finished is None  # claimed but not done

    assert await scheduler.run_tick(job, tick)  # the same tick runs again
    assert not await scheduler.run_tick(job, tick)  # and now it is done
    assert body.runs == 2
    [(_, finished)] = await ticks(clean_db, "flaky")
    assert finished is not None


async def test_the_loop_retries_a_crashed_tick_before_the_next_one(hub: Hub, clean_db: str) -> None:
    body = FlakyJob(failures=2)
    job = PeriodicJob("flaky", 4.0, body)  # retries after 0.5 s, then 1 s
    scheduler: Scheduler = hub.app.state.scheduler
    tick = datetime.now(UTC)  # as the loop calls it: when the tick begins

    await asyncio.wait_for(scheduler.run_until_done(job, tick), timeout=4)

    assert body.runs == 3
    [(_, finished)] = await ticks(clean_db, "flaky")
    assert finished is not None


async def test_a_tick_left_by_a_dead_process_runs_once_its_lease_lapsed(hub: Hub, clean_db: str) -> None:
    body = FlakyJob(failures=0)
    job = PeriodicJob("orphaned", 3600.0, body)
    tick = tick_of(datetime.now(UTC), job.interval_sec)
    now = datetime.now(UTC)
    await execute(
        clean_db,
        insert(SchedulerTickRow).values(job="orphaned", tick_at=tick, claimed_by="dead", claimed_at=now),
        insert(JobLeaseRow).values(job="orphaned", holder="dead", lease_until=now + timedelta(seconds=60)),
    )
    scheduler: Scheduler = hub.app.state.scheduler

    assert not await scheduler.run_tick(job, tick)  # its lease is still live: maybe it is not dead
    assert body.runs == 0

    await execute(
        clean_db,
        JobLeaseRow.__table__.update().values(lease_until=now - timedelta(seconds=1)),  # type: ignore[attr-defined]
    )
    assert await scheduler.run_tick(job, tick)
    assert body.runs == 1


def slow(
    body: Callable[[AsyncContainer], Awaitable[object]], seconds: float, log: list[str]
) -> Callable[[AsyncContainer], Awaitable[object]]:
    async def run(container: AsyncContainer) -> object:
        log.append("scheduled started")
        await asyncio.sleep(seconds)
        result = await body(container)
        log.append("scheduled ended")
        return result

    return run


async def test_a_collection_by_hand_waits_for_a_scheduled_one_on_another_process(clean_db: str) -> None:
    settings = test_settings(clean_db, sla_collection_interval_seconds=3600.0)
    log: list[str] = []
    job = PeriodicJob(SLA_COLLECTION_JOB, 3600.0, slow(collect_sla_job, 1.0, log))
    async with started_hub(settings) as first, started_hub(settings) as second:
        await register(first.client, "m-1")
        scheduled = asyncio.create_task(
            first.app.state.scheduler.run_tick(job, tick_of(datetime.now(UTC), 3600.0))
        )
        await asyncio.sleep(0.3)
        assert log == ["scheduled started"]

        await collect(second)
        log.append("by hand ended")

        assert await scheduled
    assert log == ["scheduled started", "scheduled ended", "by hand ended"]
    [rows] = await execute(clean_db, select(CapacitySnapshotRow.timestamp).order_by(CapacitySnapshotRow.id))
    assert len(rows) == 2
    assert rows[1][0] > rows[0][0]  # the manual one measured after the scheduled one had finished
