"""Group commit for registrations: concurrent requests are saved together, each answered once durable."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from dishka import AsyncContainer

from poolhub.domain.errors import ConflictError, DomainError
from poolhub.domain.use_cases.register_miner import RegisterMiners, Registration, SessionGrant

_log = structlog.get_logger("poolhub.registrations")

MAX_BATCH = 128


class RegistrationBatcher:
    """One worker drains the queue: whatever arrived while the previous batch was being saved forms the
    next batch (no added wait), so under load many registrations share one transaction and one commit.

    A request is answered only after its batch committed. A batch that fails as a whole (another process
    registered one of its miners first) is retried one registration at a time.
    """

    def __init__(self, container: AsyncContainer) -> None:
        self._container = container
        self._queue: asyncio.Queue[tuple[Registration, asyncio.Future[SessionGrant]]] = asyncio.Queue()
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
            batch = self._take_batch()
            await self._save(batch)

    async def submit(self, registration: Registration) -> SessionGrant:
        future: asyncio.Future[SessionGrant] = asyncio.get_running_loop().create_future()
        await self._queue.put((registration, future))
        if self._worker is None:  # not started (no lifespan): serve it inline
            await self._save(self._take_batch())
        return await future

    def _take_batch(self) -> list[tuple[Registration, asyncio.Future[SessionGrant]]]:
        batch: list[tuple[Registration, asyncio.Future[SessionGrant]]] = []
        seen: set[str] = set()
        deferred = []
        while not self._queue.empty() and len(batch) < MAX_BATCH:
            item = self._queue.get_nowait()
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
            await self._save(self._take_batch())

    async def _save(self, batch: list[tuple[Registration, asyncio.Future[SessionGrant]]]) -> None:
        if not batch:
            return
        try:
            outcomes = await self._register([registration for registration, _ in batch])
        except ConflictError:
            if len(batch) == 1:
                batch[0][1].set_exception(ConflictError("registration raced another; retry"))
                return
            for item in batch:
                await self._save([item])
            return
        except Exception as exc:
            _log.exception("registration_batch_failed", size=len(batch))
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, DomainError):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    async def _register(self, registrations: list[Registration]) -> list[SessionGrant | DomainError]:
        async with self._container() as scope:
            use_case = await scope.get(RegisterMiners)
            return await use_case.execute(registrations)
