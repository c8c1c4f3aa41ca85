"""Billing runtime: one sync run with its metrics and log line, and the scheduled sync job."""

from __future__ import annotations

import time

import structlog
from dishka import AsyncContainer

from poolhub.app.metrics import Metrics
from poolhub.app.runtime.schedulers import PeriodicJob
from poolhub.app.settings import Settings
from poolhub.domain.use_cases.sync_usage import SyncReport, SyncRequest, SyncUsage

_log = structlog.get_logger("poolhub.billing")

BILLING_SYNC_JOB = "billing_sync"


async def run_sync(sync: SyncUsage, metrics: Metrics, request: SyncRequest) -> SyncReport:
    """One sync run; counts its failed and rejected lines into `poolhub_billing_sync_failures_total` and
    sets `poolhub_billing_records_pending` and `poolhub_billing_sync_blocked`."""
    started = time.perf_counter()
    report = await sync.execute(request)
    failures = report.records_failed + report.records_rejected
    if failures:
        metrics.billing_sync_failures.inc(failures)
    metrics.billing_records_pending.set(report.pending_total)
    metrics.billing_sync_blocked.set(1 if report.billing_blocked else 0)
    _log.info(
        "billing_synced",
        sent=report.records_sent,
        failed=report.records_failed,
        rejected=report.records_rejected,
        skipped=report.records_skipped,
        pending=report.pending_total,
        api_calls_added=report.api_calls_added,
        stopped_early=report.stopped_early,
        blocked=report.billing_blocked,
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
    )
    return report


async def billing_sync_job(container: AsyncContainer) -> SyncReport:
    """Body of the scheduled sync: derive closed api_calls hours, then send the lines that are due."""
    metrics = await container.get(Metrics)
    async with container() as scope:
        return await run_sync(await scope.get(SyncUsage), metrics, SyncRequest(respect_backoff=True))


def billing_jobs(settings: Settings) -> list[PeriodicJob]:
    return [PeriodicJob(BILLING_SYNC_JOB, settings.billing_sync_interval_hours * 3600, billing_sync_job)]
