"""SqlTickLock: job leases (`job_leases`) and finished ticks (`scheduler_ticks`) for the scheduler."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from poolhub.adapters.db.models import JobLeaseRow, SchedulerTickRow
from poolhub.adapters.db.repositories import dialect_insert, table_of
from poolhub.domain.ports import TickLock

_LEASES = table_of(JobLeaseRow)
_TICKS = table_of(SchedulerTickRow)


class SqlTickLock(TickLock):
    """Each call is one short transaction of its own session, never the job's: a lease must be taken,
    renewed and released while the job's own transaction is open (or has failed)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def acquire(self, job: str, holder: str, now: datetime, until: datetime) -> bool:
        async with self._sessions() as session:
            insert = dialect_insert(session, _LEASES).values(job=job, holder=holder, lease_until=until)
            # The database picks one winner: the row is taken over only once its lease lapsed.
            statement = insert.on_conflict_do_update(
                index_elements=["job"],
                set_={"holder": insert.excluded.holder, "lease_until": insert.excluded.lease_until},
                where=_LEASES.c.lease_until <= now,
            ).returning(_LEASES.c.job)
            won = (await session.execute(statement)).first() is not None
            await session.commit()
            return won

    async def renew(self, job: str, holder: str, until: datetime) -> bool:
        async with self._sessions() as session:
            result = await session.execute(
                update(_LEASES)
                .where(_LEASES.c.job == job, _LEASES.c.holder == holder)
                .values(lease_until=until)
                .returning(_LEASES.c.job)
            )
            kept = result.first() is not None
            await session.commit()
            return kept

    async def release(self, job: str, holder: str) -> None:
        async with self._sessions() as session:
            await session.execute(delete(_LEASES).where(_LEASES.c.job == job, _LEASES.c.holder == holder))
            await session.commit()

    async def tick_done(self, job: str, tick_at: datetime) -> bool:
        async with self._sessions() as session:
            result = await session.execute(
                select(_TICKS.c.finished_at).where(_TICKS.c.job == job, _TICKS.c.tick_at == tick_at)
            )
            return result.scalar_one_or_none() is not None

    async def start_tick(self, job: str, tick_at: datetime, holder: str, now: datetime) -> None:
        async with self._sessions() as session:
            insert = dialect_insert(session, _TICKS).values(
                job=job, tick_at=tick_at, claimed_by=holder, claimed_at=now, finished_at=None
            )
            await session.execute(
                insert.on_conflict_do_update(
                    index_elements=["job", "tick_at"],
                    set_={"claimed_by": insert.excluded.claimed_by, "claimed_at": insert.excluded.claimed_at},
                    where=_TICKS.c.finished_at.is_(None),
                )
            )
            await session.commit()

    async def finish_tick(self, job: str, tick_at: datetime, now: datetime) -> None:
        async with self._sessions() as session:
            await session.execute(
                update(_TICKS).where(_TICKS.c.job == job, _TICKS.c.tick_at == tick_at).values(finished_at=now)
            )
            await session.commit()
