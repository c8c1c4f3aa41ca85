"""Retention runtime: the scheduled job that prunes aged-out history (one run per tick across processes)."""

from __future__ import annotations

import time

import structlog
from dishka import AsyncContainer

from poolhub.app.runtime.schedulers import PeriodicJob
from poolhub.domain.ports.retention import HistoryKind
from poolhub.domain.use_cases.prune_history import PruneHistory

_log = structlog.get_logger("poolhub.retention")

RETENTION_JOB = "retention"
RETENTION_INTERVAL_SEC = 3600.0


async def retention_job(container: AsyncContainer) -> dict[HistoryKind, int]:
    started = time.perf_counter()
    async with container() as scope:
        pruned = await (await scope.get(PruneHistory)).execute()
    _log.info(
        "history_pruned",
        **{str(kind): count for kind, count in pruned.items()},
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
    )
    return pruned


def retention_jobs() -> list[PeriodicJob]:
    return [PeriodicJob(RETENTION_JOB, RETENTION_INTERVAL_SEC, retention_job)]
