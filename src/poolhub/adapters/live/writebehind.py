"""Saving what hot paths queued: batches that isolate bad rows, and the SQL store they are saved to."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

import structlog
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from poolhub.adapters.db.faults import is_row_fault
from poolhub.adapters.db.matching_repositories import SqlMatchRecordRepository
from poolhub.adapters.db.models import LiveProcessRow
from poolhub.adapters.db.repositories import (
    SqlMinerRepository,
    SqlPresenceRepository,
    SqlSessionRepository,
    upsert_statement,
)
from poolhub.adapters.db.uow import SqlUnitOfWork
from poolhub.adapters.live.feed import SqlChangeLog
from poolhub.domain.model import LeasePolicy, MinerStatus
from poolhub.domain.ports import ChangeKind, MatchRecord

_log = structlog.get_logger("poolhub.writebehind")

_Item = TypeVar("_Item")


@dataclass(frozen=True, slots=True)
class PendingBeat:
    """A miner's latest unsaved status, with the presence interval end to write (None: not yet due)."""

    miner_id: str
    status: MinerStatus
    presence_end: datetime | None


class LiveStore(Protocol):
    """Where the write-behind saves; each call is one transaction that commits or raises."""

    async def save_beats(self, beats: Sequence[PendingBeat], now: datetime) -> None: ...

    async def save_match_records(self, records: Sequence[MatchRecord]) -> None: ...

    async def save_return(self, miner_id: str, status: MinerStatus, now: datetime, origin: str) -> None:
        """A logged-out miner is back (a beat with its API key): its status and a RETURNED change."""

    async def mark_matches_saved(self, origin: str, until: datetime, now: datetime) -> None:
        """Every match `origin` answered before `until` is saved (or was dropped as unsaveable)."""

    async def lagging_processes(self, origin: str, before: datetime, alive_after: datetime) -> int:
        """Other live processes whose saved-matches watermark is still older than `before`."""

    async def forget_process(self, origin: str) -> None: ...


async def save_isolating(
    items: Sequence[_Item],
    save: Callable[[Sequence[_Item]], Awaitable[None]],
    describe: Callable[[_Item], dict[str, object]],
    kind: str,
) -> list[_Item]:
    """Save `items` in one call; when the database refuses the batch's data, halve it until the refused
    rows stand alone, drop those (one log line each) and save the rest. Returns the dropped items.

    Any other failure (an outage, a lost race) propagates with nothing dropped, so the caller can
    requeue the whole batch. A batch of n items with k bad rows costs O(k log n) statements.
    """
    if not items:
        return []
    try:
        await save(items)
        return []
    except Exception as exc:
        if not is_row_fault(exc):
            raise
        if len(items) == 1:
            _log.warning(
                "writebehind_row_dropped",
                kind=kind,
                error=type(exc).__name__,
                reason=str(getattr(exc, "orig", exc)).splitlines()[0][:200],
                **describe(items[0]),
            )
            return [items[0]]
    middle = len(items) // 2
    dropped = await save_isolating(items[:middle], save, describe, kind)
    dropped += await save_isolating(items[middle:], save, describe, kind)
    return dropped


class SqlLiveStore(LiveStore):
    """Statuses, session expiries and presence in one transaction; match records in another."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], lease: LeasePolicy) -> None:
        self._sessions = sessions
        self._lease = lease

    async def save_beats(self, beats: Sequence[PendingBeat], now: datetime) -> None:
        # One lock order for every writer (miner_status, then miner_sessions, then presence, each by
        # miner_id), so a batch and a logout can never wait on each other in a cycle.
        ordered = sorted(beats, key=lambda b: b.miner_id)
        due = [b for b in ordered if b.presence_end is not None]
        async with self._sessions() as session:
            await SqlMinerRepository(session, self._lease).save_beats(
                [(b.miner_id, b.status) for b in ordered], now
            )
            await SqlSessionRepository(session).extend(
                [(b.miner_id, self._lease.token_expires_at(b.status)) for b in due]
            )
            intervals = []
            for beat in due:
                if beat.status.online_since is not None and beat.presence_end is not None:
                    intervals.append((beat.miner_id, beat.status.online_since, beat.presence_end))
            await SqlPresenceRepository(session).record(intervals)
            await session.commit()

    async def save_return(self, miner_id: str, status: MinerStatus, now: datetime, origin: str) -> None:
        async with self._sessions() as session:
            uow = SqlUnitOfWork(session)

            async def save() -> None:
                await SqlMinerRepository(session, self._lease).save_statuses([(miner_id, status)], now)
                await SqlChangeLog(session, origin).record(ChangeKind.RETURNED, [miner_id], now)
                await uow.commit()

            await uow.run(save)

    async def save_match_records(self, records: Sequence[MatchRecord]) -> None:
        async with self._sessions() as session:
            await SqlMatchRecordRepository(session).add_many(records)
            await session.commit()

    async def mark_matches_saved(self, origin: str, until: datetime, now: datetime) -> None:
        async with self._sessions() as session:
            statement = upsert_statement(
                session, LiveProcessRow.__table__, ("origin",), ("matches_saved_at", "seen_at")
            )
            await session.execute(statement, {"origin": origin, "matches_saved_at": until, "seen_at": now})
            await session.commit()

    async def lagging_processes(self, origin: str, before: datetime, alive_after: datetime) -> int:
        async with self._sessions() as session:
            result = await session.execute(
                select(func.count()).where(
                    LiveProcessRow.origin != origin,
                    LiveProcessRow.matches_saved_at < before,
                    LiveProcessRow.seen_at > alive_after,
                )
            )
            return int(result.scalar_one())

    async def forget_process(self, origin: str) -> None:
        async with self._sessions() as session:
            await session.execute(delete(LiveProcessRow).where(LiveProcessRow.origin == origin))
            await session.commit()
