"""The cross-process change feed over the `live_changes` table (and PostgreSQL NOTIFY as a wake-up)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import structlog
from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from poolhub.adapters.db.models import LiveChangeRow, MinerStatusRow, SessionRow
from poolhub.adapters.db.repositories import PROCESS_ID, SqlMinerRepository, is_postgres, to_status
from poolhub.domain.model import LeasePolicy, Miner, MinerStatus
from poolhub.domain.ports import ChangeKind, ChangeLog

_log = structlog.get_logger("poolhub.feed")

NOTIFY_CHANNEL = "poolhub_live"
# Any constant: the transaction-scoped lock that makes sequence order equal commit order.
_FEED_LOCK_KEY = 0x706F6F6C
# One round trip: the lock, a NOTIFY delivered when (and only if) the transaction commits, and the
# rows. The payload names the writer, so it does not wake itself. The lock is taken (once: a
# materialized CTE) before any row exists, so before any sequence is drawn.
_RECORD_UNDER_LOCK = text(
    f"""
WITH feed_lock AS MATERIALIZED (
    SELECT pg_advisory_xact_lock(:key), pg_notify('{NOTIFY_CHANNEL}', CAST(:origin AS text))
)
INSERT INTO live_changes (kind, miner_id, origin, created_at)
SELECT CAST(:kind AS text), u.miner_id, CAST(:origin AS text), CAST(:now AS timestamptz)
FROM feed_lock, unnest(CAST(:miner_ids AS text[])) WITH ORDINALITY AS u(miner_id, n)
ORDER BY u.n
"""  # noqa: S608  (a constant channel name; every value is a bound parameter)
)


@dataclass(frozen=True, slots=True)
class Change:
    seq: int
    kind: ChangeKind
    miner_id: str | None
    origin: str


class ChangeSource(Protocol):
    """What the directory reads to catch up with other processes."""

    async def head(self) -> int:
        """The highest sequence committed so far (0 when none)."""

    async def after(self, seq: int, limit: int) -> list[Change]:
        """Committed changes with a sequence above `seq`, oldest first."""

    async def load(self, miner_ids: Sequence[str]) -> tuple[dict[str, Miner], dict[str, list[str]]]:
        """The stored miners and the hashes of their live (unrevoked) session tokens."""

    async def all_miners(self) -> list[Miner]: ...

    async def statuses_since(self, since: datetime) -> list[tuple[str, MinerStatus]]:
        """Statuses other processes' beat flushes wrote at or after `since` (by their clocks)."""


class SqlChangeLog(ChangeLog):
    """Writes change rows in the caller's transaction; on PostgreSQL also a NOTIFY sent at commit."""

    def __init__(self, session: AsyncSession, origin: str) -> None:
        self._session = session
        self._origin = origin

    async def record(self, kind: ChangeKind, miner_ids: Sequence[str | None], now: datetime) -> None:
        if not miner_ids:
            return
        ordered = sorted(miner_ids, key=lambda m: m or "")
        if is_postgres(self._session):
            # Held to commit: sequences are drawn and committed one transaction at a time, so a reader
            # that saw seq n has seen every commit below n. SQLite already serialises its writers.
            await self._session.execute(
                _RECORD_UNDER_LOCK,
                {
                    "key": _FEED_LOCK_KEY,
                    "origin": self._origin,
                    "kind": kind.value,
                    "now": now,
                    "miner_ids": ordered,
                },
            )
            return
        await self._session.execute(
            insert(LiveChangeRow),
            [
                {"kind": kind.value, "miner_id": miner_id, "origin": self._origin, "created_at": now}
                for miner_id in ordered
            ],
        )


class SqlChangeSource(ChangeSource):
    def __init__(self, sessions: async_sessionmaker[AsyncSession], lease: LeasePolicy) -> None:
        self._sessions = sessions
        self._lease = lease

    async def head(self) -> int:
        async with self._sessions() as session:
            value = (await session.execute(select(func.max(LiveChangeRow.seq)))).scalar_one_or_none()
        return int(value or 0)

    async def after(self, seq: int, limit: int) -> list[Change]:
        async with self._sessions() as session:
            rows = await session.execute(
                select(LiveChangeRow.seq, LiveChangeRow.kind, LiveChangeRow.miner_id, LiveChangeRow.origin)
                .where(LiveChangeRow.seq > seq)
                .order_by(LiveChangeRow.seq)
                .limit(limit)
            )
            return [Change(s, ChangeKind(k), m, o) for s, k, m, o in rows.tuples()]

    async def all_miners(self) -> list[Miner]:
        async with self._sessions() as session:
            return await SqlMinerRepository(session, self._lease).all()

    async def statuses_since(self, since: datetime) -> list[tuple[str, MinerStatus]]:
        async with self._sessions() as session:
            rows = await session.execute(
                select(MinerStatusRow).where(
                    MinerStatusRow.updated_at >= since, MinerStatusRow.written_by != PROCESS_ID
                )
            )
            return [(row.miner_id, to_status(row)) for row in rows.scalars()]

    async def load(self, miner_ids: Sequence[str]) -> tuple[dict[str, Miner], dict[str, list[str]]]:
        async with self._sessions() as session:
            miners = await SqlMinerRepository(session, self._lease).get_many(miner_ids)
            rows = await session.execute(
                select(SessionRow.miner_id, SessionRow.token_hash).where(
                    SessionRow.miner_id.in_(miner_ids), SessionRow.revoked_at.is_(None)
                )
            )
            tokens: dict[str, list[str]] = {}
            for miner_id, token_hash in rows.tuples():
                tokens.setdefault(miner_id, []).append(token_hash)
        return miners, tokens


class NotifyListener:
    """A dedicated asyncpg connection LISTENing on the feed's channel; each NOTIFY sets `wake`.

    Only a hint that a change committed: readers still poll, and the sequence stays the truth.
    """

    def __init__(self, database_url: str, origin: str) -> None:
        self._url = database_url
        self._origin = origin
        self.wake = asyncio.Event()
        self._connection: Any = None

    @property
    def usable(self) -> bool:
        return make_url(self._url).get_backend_name() == "postgresql"

    async def start(self) -> None:
        if not self.usable:
            return
        import asyncpg

        url = make_url(self._url).set(drivername="postgresql")
        try:
            self._connection = await asyncpg.connect(url.render_as_string(hide_password=False), timeout=5)
            await self._connection.add_listener(NOTIFY_CHANNEL, self._notified)
        except Exception as exc:  # polling still works; the listener only saves latency
            _log.warning("feed_listener_unavailable", error=type(exc).__name__)
            self._connection = None

    def _notified(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        if payload != self._origin:
            self.wake.set()

    async def stop(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close(timeout=2)
            self._connection = None

    async def wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), seconds)
        self.wake.clear()
