"""Background loops of one process: flush coalesced beats, refresh the directory, probe the database."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import structlog
from dishka import AsyncContainer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from poolhub.app.runtime.registrations import RegistrationBatcher
from poolhub.domain.directory import MinerDirectory
from poolhub.domain.match_log import MatchLog
from poolhub.domain.model import MinerStatus
from poolhub.domain.ports import (
    Clock,
    MatchRecordRepository,
    MinerRepository,
    PresenceRepository,
    SessionRepository,
    UnitOfWork,
)

_log = structlog.get_logger("poolhub.background")

FLUSH_INTERVAL_SEC = 0.25
REFRESH_INTERVAL_SEC = 0.5
PROBE_INTERVAL_SEC = 2.0
TRUST_REAGE_INTERVAL_SEC = 60.0
# Rows committed by another process can carry an updated_at a little older than our last look.
REFRESH_OVERLAP = timedelta(seconds=2)
PRESENCE_STEP = timedelta(seconds=5)


class DatabaseProbe:
    """The database state that /v1/health reports, checked in the background so probes cost nothing."""

    def __init__(self) -> None:
        self.ok = True

    async def check(self, engine: AsyncEngine) -> None:
        try:
            async with asyncio.timeout(2.0), engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception as exc:  # any failure means "the database is not usable now"
            if self.ok:
                _log.warning("database_unreachable", error=str(exc))
            self.ok = False
        else:
            self.ok = True


class Background:
    """Owns the process's loops; `stop` flushes what is still pending."""

    def __init__(self, container: AsyncContainer) -> None:
        self._container = container
        self._tasks: list[asyncio.Task[None]] = []
        self._last_refresh: datetime | None = None
        # miner id -> (interval start, interval end) as last written to presence history
        self._presence_written: dict[str, tuple[datetime, datetime]] = {}
        self.directory_loaded = False

    async def start(self) -> None:
        await self.warm_directory()
        self.directory_loaded = True
        (await self._container.get(RegistrationBatcher)).start()
        self._tasks = [
            asyncio.create_task(self._every(FLUSH_INTERVAL_SEC, self.flush), name="flush"),
            asyncio.create_task(self._every(REFRESH_INTERVAL_SEC, self.refresh_directory), name="refresh"),
            asyncio.create_task(self._every(PROBE_INTERVAL_SEC, self.probe_database), name="probe-db"),
            asyncio.create_task(self._every(TRUST_REAGE_INTERVAL_SEC, self.reage_trust), name="reage-trust"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await (await self._container.get(RegistrationBatcher)).stop()
        try:
            await self.flush(exact=True)
        except Exception:  # the database is gone: say what is lost, and still shut down
            directory = await self._container.get(MinerDirectory)
            _log.exception("final_flush_failed", unsaved_beats=directory.pending_count())

    async def _every(self, seconds: float, job: Callable[[], Awaitable[object]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except Exception:
                _log.exception("background_job_failed", job=getattr(job, "__name__", str(job)))

    async def warm_directory(self) -> None:
        """Load every miner; with the database down the process still starts (health says 503) and the
        refresher loads them once the database answers."""
        directory = await self._container.get(MinerDirectory)
        clock = await self._container.get(Clock)
        started = clock.now()
        try:
            async with self._container() as scope:
                miners = await (await scope.get(MinerRepository)).all()
        except Exception as exc:
            _log.warning("directory_not_loaded", error=str(exc))
            (await self._container.get(DatabaseProbe)).ok = False
            return
        directory.merge(miners, clock.now())
        self._last_refresh = started
        await self.probe_database()

    async def flush(self, *, exact: bool = False) -> None:
        """Save what hot paths queued: beats, then match records (each batch in its own transaction)."""
        try:
            await self.flush_beats(exact=exact)
        finally:
            await self.flush_match_records()

    async def flush_match_records(self) -> int:
        log = await self._container.get(MatchLog)
        records = log.take()
        if not records:
            return 0
        try:
            async with self._container() as scope:
                await (await scope.get(MatchRecordRepository)).add_many(records)
                await (await scope.get(UnitOfWork)).commit()
        except Exception:
            log.requeue(records)
            raise
        return len(records)

    async def flush_beats(self, *, exact: bool = False) -> int:
        """Save the latest status of every beating miner in one batched statement; requeue if that fails.

        Presence-interval ends and session expiries move with every beat but matter at a coarser grain:
        they are written when they advanced by PRESENCE_STEP or more (and at every new interval, logout,
        and the final flush), which keeps the flush cheap when thousands of miners beat every second.
        """
        directory = await self._container.get(MinerDirectory)
        pending = directory.take_pending()
        if not pending:
            return 0
        lease = directory.lease
        clock = await self._container.get(Clock)
        ends: list[tuple[str, MinerStatus, datetime]] = []
        for miner_id, status in pending:
            if status.online_since is None:
                continue
            end = lease.presence_end(status)
            written = self._presence_written.get(miner_id)
            if (
                exact
                or written is None
                or written[0] != status.online_since
                or end - written[1] >= PRESENCE_STEP
            ):
                ends.append((miner_id, status, end))
        try:
            async with self._container() as scope:
                await (await scope.get(MinerRepository)).save_statuses(pending, clock.now())
                await (await scope.get(SessionRepository)).extend(
                    [(miner_id, lease.token_expires_at(status)) for miner_id, status, _ in ends]
                )
                await (await scope.get(PresenceRepository)).record(
                    [(miner_id, status.online_since, end) for miner_id, status, end in ends]
                )
                await (await scope.get(UnitOfWork)).commit()
        except Exception:
            directory.requeue(pending)
            raise
        for miner_id, status, end in ends:
            assert status.online_since is not None
            self._presence_written[miner_id] = (status.online_since, end)
        return len(pending)

    async def refresh_directory(self) -> None:
        """Pick up what other processes wrote: registrations, status, trust, revoked tokens."""
        directory = await self._container.get(MinerDirectory)
        clock = await self._container.get(Clock)
        if self._last_refresh is None:
            await self.warm_directory()
            return
        started = clock.now()
        since = self._last_refresh - REFRESH_OVERLAP
        async with self._container() as scope:
            changed = await (await scope.get(MinerRepository)).changed_since(since)
            revoked = await (await scope.get(SessionRepository)).revoked_since(since)
        directory.forget_tokens(revoked)
        directory.merge(changed, clock.now())
        self._last_refresh = started

    async def probe_database(self) -> None:
        probe = await self._container.get(DatabaseProbe)
        await probe.check(await self._container.get(AsyncEngine))

    async def reage_trust(self) -> None:
        directory = await self._container.get(MinerDirectory)
        directory.refresh_trust((await self._container.get(Clock)).now())
