"""The cross-process scheduler: with several app instances on one database, each tick runs exactly once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from poolhub.adapters.db.models import SchedulerTickRow
from poolhub.adapters.db.sla_models import CapacitySnapshotRow
from poolhub.app.main import periodic_jobs
from poolhub.app.runtime.schedulers import PeriodicJob, Scheduler, tick_of
from poolhub.app.runtime.sla_jobs import SLA_COLLECTION_JOB
from poolhub.app.settings import Settings
from tests.integration.conftest import register, started_hub, test_settings
from tests.integration.sla_support import execute


async def snapshot_count(url: str) -> int:
    [rows] = await execute(url, select(func.count()).select_from(CapacitySnapshotRow))
    return int(rows[0][0])


def sla_job(settings: Settings) -> PeriodicJob:
    [job] = [job for job in periodic_jobs(settings) if job.name == SLA_COLLECTION_JOB]
    assert job.interval_sec == settings.sla_collection_interval_seconds
    return job


async def test_two_processes_run_each_tick_of_the_sla_collection_once(clean_db: str) -> None:
    # A long interval: only the ticks this test runs by hand happen.
    settings = test_settings(clean_db, sla_collection_interval_seconds=3600.0)
    job = sla_job(settings)
    async with started_hub(settings) as first, started_hub(settings) as second:
        await register(first.client, "m-1")
        schedulers: list[Scheduler] = [first.app.state.scheduler, second.app.state.scheduler]
        tick = tick_of(datetime.now(UTC), job.interval_sec)

        ran = await asyncio.gather(*(s.run_tick(job, tick) for s in schedulers))
        assert sorted(ran) == [False, True]
        assert await snapshot_count(clean_db) == 1

        # The same tick again: already claimed, nobody runs it.
        assert await asyncio.gather(*(s.run_tick(job, tick) for s in schedulers)) == [False, False]
        assert await snapshot_count(clean_db) == 1

        following = tick + timedelta(seconds=job.interval_sec)
        ran = await asyncio.gather(*(s.run_tick(job, following) for s in reversed(schedulers)))
        assert sorted(ran) == [False, True]
        assert await snapshot_count(clean_db) == 2


async def test_running_schedulers_collect_once_per_tick_and_stop_cleanly(clean_db: str) -> None:
    settings = test_settings(clean_db, sla_collection_interval_seconds=0.4)
    async with started_hub(settings) as first, started_hub(settings) as second:
        await register(first.client, "m-1")
        await asyncio.sleep(1.7)
        schedulers: list[Scheduler] = [first.app.state.scheduler, second.app.state.scheduler]
        await asyncio.gather(*(s.stop() for s in schedulers))
    [taken, claimed] = await execute(
        clean_db,
        select(CapacitySnapshotRow.timestamp),
        select(SchedulerTickRow.tick_at).where(SchedulerTickRow.job == SLA_COLLECTION_JOB),
    )
    ticks = {row[0] for row in claimed}
    assert len(ticks) >= 3
    # Every collection ran in a tick of its own: no tick ran twice, across both processes.
    ran_in = [tick_of(row[0], 0.4) for row in taken]
    assert len(ran_in) == len(set(ran_in))
    assert set(ran_in) <= ticks
    # A run cut short by the shutdown rolls back whole; every other claimed tick collected.
    assert len(ran_in) >= len(ticks) - 1
    stopped = await snapshot_count(clean_db)
    await asyncio.sleep(0.9)
    assert await snapshot_count(clean_db) == stopped  # nothing runs after shutdown
