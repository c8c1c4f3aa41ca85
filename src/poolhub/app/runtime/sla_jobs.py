"""SLA runtime: the scheduled collection, each process's penalty refresher and their Prometheus metrics."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import structlog
from dishka import AsyncContainer

from poolhub.app.metrics import Metrics
from poolhub.app.runtime.schedulers import PeriodicJob
from poolhub.app.settings import Settings
from poolhub.domain.use_cases.collect_sla import CollectionReport, CollectSla
from poolhub.domain.use_cases.refresh_sla_penalties import RefreshSlaPenalties

_log = structlog.get_logger("poolhub.sla")

SLA_COLLECTION_JOB = "sla_collection"
# Every process reloads the open violations this often, so a violation opened or resolved by another
# process moves this process's match scores within a few seconds.
PENALTY_REFRESH_SEC = 2.0


def set_open_gauge(metrics: Metrics, open_by_type: Mapping[str, int]) -> None:
    for violation_type, count in open_by_type.items():
        metrics.sla_violations_open.labels(type=violation_type).set(count)


async def run_collection(collect: CollectSla, metrics: Metrics) -> CollectionReport:
    """One collection, timed into `poolhub_sla_collection_seconds`, with the open-violation gauge updated."""
    started = time.perf_counter()
    report = await collect.execute()
    elapsed = time.perf_counter() - started
    metrics.sla_collection_seconds.observe(elapsed)
    set_open_gauge(metrics, report.open_by_type)
    _log.info(
        "sla_collected",
        miners=report.miners_processed,
        metrics=report.metrics_recorded,
        opened=report.violations_opened,
        resolved=report.violations_resolved,
        duration_ms=round(elapsed * 1000, 1),
    )
    return report


async def collect_sla_job(container: AsyncContainer) -> CollectionReport:
    """Body of the scheduled collection: its own request scope, one use case."""
    metrics = await container.get(Metrics)
    async with container() as scope:
        return await run_collection(await scope.get(CollectSla), metrics)


def sla_jobs(settings: Settings) -> list[PeriodicJob]:
    return [PeriodicJob(SLA_COLLECTION_JOB, settings.sla_collection_interval_seconds, collect_sla_job)]


async def refresh_penalties(container: AsyncContainer) -> None:
    metrics = await container.get(Metrics)
    async with container() as scope:
        open_by_type = await (await scope.get(RefreshSlaPenalties)).execute()
    set_open_gauge(metrics, open_by_type)


async def _refresh_forever(container: AsyncContainer) -> None:
    while True:
        await asyncio.sleep(PENALTY_REFRESH_SEC)
        try:
            await refresh_penalties(container)
        except Exception:
            _log.exception("sla_penalty_refresh_failed")


def sla_penalty_lifespan(
    container: AsyncContainer,
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A Litestar lifespan: load the penalties at start, refresh them in the background, stop cleanly."""

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        try:
            await refresh_penalties(container)
        except Exception:  # a database that is down at start must not stop the process
            _log.exception("sla_penalty_refresh_failed")
        task = asyncio.create_task(_refresh_forever(container), name="sla-penalties")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return lifespan
