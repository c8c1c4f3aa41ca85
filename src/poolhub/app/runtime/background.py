"""Background loops of one process: the live directory's write-behind and change feed, the database probe."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog
from dishka import AsyncContainer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from poolhub.adapters.db.engine import ReadEngine
from poolhub.adapters.db.faults import is_outage
from poolhub.adapters.live import LiveDirectory
from poolhub.adapters.live.feed import NotifyListener
from poolhub.app.runtime.registrations import RegistrationBatcher
from poolhub.app.runtime.sla_jobs import refresh_penalties
from poolhub.domain.ports import Clock

_log = structlog.get_logger("poolhub.background")

FLUSH_INTERVAL_SEC = 0.25
FEED_INTERVAL_SEC = 0.25
PROBE_INTERVAL_SEC = 2.0
TRUST_REAGE_INTERVAL_SEC = 60.0
# While a loop keeps failing it waits longer each time, up to this; one log line when it starts
# failing and one when it recovers, not a traceback per attempt.
MAX_BACKOFF_SEC = 30.0


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
                _log.warning("database_unreachable", error=type(exc).__name__)
            self.ok = False
        else:
            if not self.ok:
                _log.info("database_reachable")
            self.ok = True


class QuietLoop:
    """Runs a job every `interval` seconds; while it fails, backs off (doubling, up to MAX_BACKOFF_SEC)
    and logs once when the failure starts and once when it ends."""

    def __init__(
        self,
        name: str,
        interval: float,
        job: Callable[[], Awaitable[object]],
        wait: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self.name = name
        self._interval = interval
        self._job = job
        self._wait = wait or asyncio.sleep
        self.failing_since: float | None = None
        self.failures = 0

    def delay(self) -> float:
        if not self.failures:
            return self._interval
        return min(MAX_BACKOFF_SEC, self._interval * 2.0 ** min(self.failures, 16))

    async def run_once(self) -> None:
        try:
            await self._job()
        except Exception as exc:
            self.failures += 1
            if self.failures == 1:
                if is_outage(exc):
                    _log.warning("background_job_failing", job=self.name, error=type(exc).__name__)
                else:  # a bug, not an outage: the traceback once
                    _log.exception("background_job_failing", job=self.name)
            return
        if self.failures:
            _log.info("background_job_recovered", job=self.name, failed_attempts=self.failures)
        self.failures = 0

    async def forever(self) -> None:
        while True:
            await self._wait(self.delay())
            await self.run_once()


class Background:
    """Owns the process's loops; `stop` always runs the final flush, whatever failed before."""

    def __init__(self, container: AsyncContainer) -> None:
        self._container = container
        self._tasks: list[asyncio.Task[None]] = []
        self._warm = False

    @property
    def directory_loaded(self) -> bool:
        """Every miner has been loaded once (/readyz waits for it)."""
        return self._warm

    async def start(self) -> None:
        await self.warm_directory()
        (await self._container.get(RegistrationBatcher)).start()
        listener = await self._container.get(NotifyListener)
        await listener.start()
        loops = [
            QuietLoop("flush", FLUSH_INTERVAL_SEC, self.flush),
            QuietLoop("change-feed", FEED_INTERVAL_SEC, self.refresh_directory, listener.wait),
            QuietLoop("probe-db", PROBE_INTERVAL_SEC, self.probe_database),
            QuietLoop("reage-trust", TRUST_REAGE_INTERVAL_SEC, self.reage_trust),
        ]
        self._tasks = [asyncio.create_task(loop.forever(), name=loop.name) for loop in loops]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        try:
            await (await self._container.get(RegistrationBatcher)).stop()
        except Exception:
            _log.exception("registration_drain_failed")
        directory = await self._container.get(LiveDirectory)
        try:
            await self.flush(exact=True)
        except Exception as exc:  # the database is gone: say what is lost, and still shut down
            _log.error(
                "final_flush_failed",
                error=type(exc).__name__,
                unsaved_beats=directory.pending_beats(),
                unsaved_match_records=directory.pending_match_records(),
            )
        try:
            await directory.leave()
        except Exception:  # others stop waiting on this process after a few silent seconds anyway
            _log.warning("leave_failed")
        await (await self._container.get(NotifyListener)).stop()

    async def warm_directory(self) -> None:
        """Load every miner; with the database down the process still starts (health says 503) and the
        change-feed loop loads them once the database answers."""
        directory = await self._container.get(LiveDirectory)
        try:
            await directory.warm()
        except Exception as exc:
            _log.warning("directory_not_loaded", error=type(exc).__name__)
            (await self._container.get(DatabaseProbe)).ok = False
            return
        self._warm = True
        await self.probe_database()

    async def flush(self, *, exact: bool = False) -> None:
        await (await self._container.get(LiveDirectory)).flush(exact=exact)

    async def refresh_directory(self) -> None:
        """Apply what other processes committed (registrations, logouts, revocations, trust, prices)."""
        if not self._warm:
            directory = await self._container.get(LiveDirectory)
            await directory.warm()
            self._warm = True
            return
        if await (await self._container.get(LiveDirectory)).catch_up():
            await refresh_penalties(self._container)

    async def probe_database(self) -> None:
        probe = await self._container.get(DatabaseProbe)
        await probe.check(await self._container.get(ReadEngine))

    async def reage_trust(self) -> None:
        directory = await self._container.get(LiveDirectory)
        directory.refresh_trust((await self._container.get(Clock)).now())
