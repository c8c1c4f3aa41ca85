"""Unit of work over the request's AsyncSession."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import stamina
from sqlalchemy.ext.asyncio import AsyncSession

from poolhub.adapters.db.faults import is_retryable
from poolhub.domain.ports import UnitOfWork

_T = TypeVar("_T")

# Deadlocks and serialization failures resolve on a rerun; a few quick tries with jitter, then the
# error reaches the caller (a 503 the client can retry), never a 500.
RETRY_ATTEMPTS = 4
RETRY_WAIT_INITIAL = 0.01
RETRY_WAIT_MAX = 0.2


class SqlUnitOfWork(UnitOfWork):
    """Commits only when asked; the session's owner rolls back whatever was not committed."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def commit(self) -> None:
        await self._session.commit()

    async def rollback(self) -> None:
        await self._session.rollback()

    async def run(self, work: Callable[[], Awaitable[_T]]) -> _T:
        async for attempt in stamina.retry_context(
            on=is_retryable,
            attempts=RETRY_ATTEMPTS,
            wait_initial=RETRY_WAIT_INITIAL,
            wait_max=RETRY_WAIT_MAX,
            wait_jitter=RETRY_WAIT_MAX,
            timeout=None,
        ):
            with attempt:
                try:
                    return await work()
                except Exception:
                    await self._session.rollback()
                    raise
        raise AssertionError("unreachable: stamina re-raises the last error")
