"""Group commit for registrations: concurrent requests are saved together, each answered once durable."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from dishka import AsyncContainer

from poolhub.adapters.db.faults import is_row_fault
from poolhub.domain.errors import DomainError, InvalidInputError
from poolhub.domain.use_cases.register_miner import RegisterMiners, Registration, SessionGrant

_log = structlog.get_logger("poolhub.registrations")

MAX_BATCH = 128

_Item = tuple[Registration, "asyncio.Future[SessionGrant]"]


def _settle(future: asyncio.Future[SessionGrant], outcome: SessionGrant | BaseException) -> None:
    # A client that went away cancelled its future; resolving it again would raise and kill the loop.
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class RegistrationBatcher:
    """One worker drains the queue: whatever arrived while the previous batch was being saved forms the
    next batch (no added wait), so under load many registrations share one transaction and one commit.

    A request is answered only after its batch committed. When the database refuses a batch's data,
    the batch is halved until the refused registration stands alone: it alone gets a 400, the others
    are saved. The worker survives any error, and `stop` answers whatever is still queued.
    """

    def __init__(self, container: AsyncContainer) -> None:
        self._container = container
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._worker = asyncio.create_task(self._run(), name="registrations")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        while not self._queue.empty():  # answer what is left rather than leave callers hanging
            await self._save_safely(self._take_batch())

    async def submit(self, registration: Registration) -> SessionGrant:
        future: asyncio.Future[SessionGrant] = asyncio.get_running_loop().create_future()
        await self._queue.put((registration, future))
        if self._worker is None:  # not started (no lifespan): serve it inline
            await self._save_safely(self._take_batch())
        return await future

    def _take_batch(self) -> list[_Item]:
        batch: list[_Item] = []
        seen: set[str] = set()
        deferred = []
        while not self._queue.empty() and len(batch) < MAX_BATCH:
            item = self._queue.get_nowait()
            if item[1].done():  # its client is gone: nothing to save for it
                continue
            # The same miner twice goes to the next batch, so the later request wins, as it would in turn.
            if item[0].spec.miner_id in seen:
                deferred.append(item)
                continue
            seen.add(item[0].spec.miner_id)
            batch.append(item)
        for item in deferred:
            self._queue.put_nowait(item)
        return batch

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            self._queue.put_nowait(first)
            await self._save_safely(self._take_batch())

    async def _save_safely(self, batch: list[_Item]) -> None:
        try:
            await self._save(batch)
        except Exception as exc:  # a bug in saving must fail these requests, not the worker
            _log.exception("registration_batch_failed", size=len(batch))
            for _, future in batch:
                _settle(future, exc)

    async def _save(self, batch: list[_Item]) -> None:
        if not batch:
            return
        try:
            outcomes = await self._register([registration for registration, _ in batch])
        except Exception as exc:
            if not is_row_fault(exc):  # an outage or a lost race: every request learns it (503)
                for _, future in batch:
                    _settle(future, exc)
                return
            if len(batch) == 1:
                registration = batch[0][0]
                _log.warning(
                    "registration_refused_by_database",
                    miner_id=registration.spec.miner_id,
                    error=type(exc).__name__,
                )
                _settle(
                    batch[0][1],
                    InvalidInputError(
                        f"registration of miner '{registration.spec.miner_id}' was refused by the database: "
                        "a field holds a value that cannot be stored"
                    ),
                )
                return
            middle = len(batch) // 2
            await self._save(batch[:middle])
            await self._save(batch[middle:])
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            _settle(future, outcome)

    async def _register(self, registrations: list[Registration]) -> list[SessionGrant | DomainError]:
        async with self._container() as scope:
            use_case = await scope.get(RegisterMiners)
            return await use_case.execute(registrations)
