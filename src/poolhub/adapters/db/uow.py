"""Unit of work over the request's AsyncSession."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from poolhub.domain.ports import UnitOfWork


class SqlUnitOfWork(UnitOfWork):
    """Commits only when asked; the session's owner rolls back whatever was not committed."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def commit(self) -> None:
        await self._session.commit()

    async def rollback(self) -> None:
        await self._session.rollback()
