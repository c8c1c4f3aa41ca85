"""SQL repositories: implement the domain's ports over the request's AsyncSession; they never commit."""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, Table, bindparam, func, insert, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from poolhub.adapters.db.models import (
    MinerRow,
    MinerStatusRow,
    PresenceIntervalRow,
    SessionRow,
)
from poolhub.domain.model import LeasePolicy, Miner, MinerSpec, MinerStatus, Trust
from poolhub.domain.ports import (
    MinerRepository,
    PresenceRepository,
    SessionRepository,
    TokenLookup,
)


def is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


async def page_of(
    session: AsyncSession, query: Select[Any], order: Sequence[ColumnElement[Any]], offset: int, limit: int
) -> tuple[list[Any], int]:
    total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    rows = (await session.execute(query.order_by(*order).offset(offset).limit(limit))).all()
    return list(rows), int(total)


def table_of(model: Any) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def dialect_insert(session: AsyncSession, table: Any) -> Any:
    """INSERT with ON CONFLICT support for the session's database (PostgreSQL or SQLite)."""
    if is_postgres(session):
        return postgresql.insert(table)
    return sqlite.insert(table)


# Rows per bulk statement: far under the bind-parameter limits of asyncpg (32767) and SQLite (32766).
BATCH_ROWS = 1000


def chunks(items: Sequence[_Row], size: int = BATCH_ROWS) -> Iterator[Sequence[_Row]]:
    """Slices of at most `size` rows: bounded statements and parameter lists for bulk writes."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


@functools.cache
def _upsert(dialect: str, table: Table, keys: tuple[str, ...], updates: tuple[str, ...]) -> Any:
    module = postgresql if dialect == "postgresql" else sqlite
    insert_ = module.insert(table).values(
        {c.name: bindparam(c.name) for c in table.columns if c.name != "id"}
    )
    if updates:
        statement = insert_.on_conflict_do_update(
            index_elements=list(keys), set_={name: insert_.excluded[name] for name in updates}
        )
    else:
        statement = insert_.on_conflict_do_nothing(index_elements=list(keys))
    # ON CONFLICT statements carry no SQLAlchemy cache key, so they would be compiled on every call;
    # a text clause with typed binds is compiled once and cached.
    sql = str(statement.compile(dialect=module.dialect(paramstyle="named")))
    # text() reads ":name::JSONB" as a literal; spell PostgreSQL's casts the standard way.
    sql = re.sub(r":(\w+)::(\w+)", r"CAST(:\1 AS \2)", sql)
    binds = [bindparam(c.name, type_=c.type) for c in table.columns if c.name != "id"]
    return text(sql).bindparams(*binds)


def upsert_statement(
    session: AsyncSession, table: Any, keys: tuple[str, ...], updates: tuple[str, ...]
) -> Any:
    """INSERT … ON CONFLICT (keys) DO UPDATE SET updates (or DO NOTHING), built once per shape.

    Values go as execute() parameters, never inlined with .values(), so SQLAlchemy compiles the
    statement once and reuses it: compiling dominated the cost of a registration.
    """
    return _upsert(session.get_bind().dialect.name, table, keys, updates)


def to_status(status: MinerStatusRow) -> MinerStatus:
    return MinerStatus(
        last_beat_at=status.last_beat_at,
        online_since=status.online_since,
        logged_out_at=status.logged_out_at,
        queue_len=status.queue_len,
        busy=status.busy,
        current_jobs=tuple(status.current_jobs),
        avg_latency_ms=status.avg_latency_ms,
        temp_c=status.temp_c,
        mem_free_gb=status.mem_free_gb,
        gpu_utilization_pct=status.gpu_utilization_pct,
    )


def _to_miner(row: MinerRow, status: MinerStatusRow) -> Miner:
    return Miner(
        spec=MinerSpec(
            miner_id=row.miner_id,
            addr=row.addr,
            proto=row.proto,
            gpu_name=row.gpu_name,
            gpu_vram_gb=row.gpu_vram_gb,
            gpu_count=row.gpu_count,
            cpu_cores=row.cpu_cores,
            ram_gb=row.ram_gb,
            accel=row.accel,
            price_token_per_ksec=Decimal(row.price_token_per_ksec),
            max_parallel=row.max_parallel,
            region=row.region,
            tags=tuple(row.tags),
            capabilities=tuple(row.capabilities),
        ),
        status=to_status(status),
        registered_at=row.registered_at,
        trust=Trust(row.trust_successes, row.trust_failures, row.trust_as_of),
    )


_Row = TypeVar("_Row")

PROCESS_ID = str(uuid.uuid4())


def status_values(status: MinerStatus, lease: LeasePolicy, now: datetime) -> dict[str, Any]:
    return {
        "last_beat_at": status.last_beat_at,
        "online_since": status.online_since,
        "logged_out_at": status.logged_out_at,
        "event_at": status.event_at,
        "lease_expires_at": lease.lease_expires_at(status),
        "queue_len": status.queue_len,
        "busy": status.busy,
        "current_jobs": list(status.current_jobs),
        "avg_latency_ms": status.avg_latency_ms,
        "temp_c": status.temp_c,
        "mem_free_gb": status.mem_free_gb,
        "gpu_utilization_pct": status.gpu_utilization_pct,
        "written_by": PROCESS_ID,
        "updated_at": now,
    }


STATUS_UPDATES = tuple(c.name for c in MinerStatusRow.__table__.columns if c.name != "miner_id")


def _miners_query() -> Select[tuple[MinerRow, MinerStatusRow]]:
    return select(MinerRow, MinerStatusRow).join(MinerStatusRow, MinerStatusRow.miner_id == MinerRow.miner_id)


class SqlMinerRepository(MinerRepository):
    def __init__(self, session: AsyncSession, lease: LeasePolicy) -> None:
        self._session = session
        self._lease = lease

    async def get(self, miner_id: str) -> Miner | None:
        result = await self._session.execute(_miners_query().where(MinerRow.miner_id == miner_id))
        row = result.first()
        return _to_miner(row[0], row[1]) if row is not None else None

    async def get_for_update(self, miner_id: str) -> Miner | None:
        # SQLite ignores FOR UPDATE; there every write transaction starts with BEGIN IMMEDIATE instead.
        result = await self._session.execute(
            _miners_query().where(MinerRow.miner_id == miner_id).with_for_update(of=MinerRow)
        )
        row = result.first()
        return _to_miner(row[0], row[1]) if row is not None else None

    async def get_many(self, miner_ids: Sequence[str]) -> dict[str, Miner]:
        result = await self._session.execute(_miners_query().where(MinerRow.miner_id.in_(miner_ids)))
        return {row.miner_id: _to_miner(row, status) for row, status in result.tuples()}

    async def rehash_api_keys(self, rehashes: Sequence[tuple[str, str, str]]) -> None:
        if not rehashes:
            return
        table = table_of(MinerRow)
        statement = (
            update(table)
            .where(table.c.miner_id == bindparam("b_miner_id"), table.c.api_key_hash == bindparam("b_old"))
            .values(api_key_hash=bindparam("b_new"))
        )
        await self._session.execute(
            statement,
            [{"b_miner_id": m, "b_old": old, "b_new": new} for m, old, new in sorted(rehashes)],
        )

    async def save_price(self, miner_id: str, price: Decimal, now: datetime) -> None:
        await self._session.execute(
            update(MinerRow)
            .where(MinerRow.miner_id == miner_id)
            .values(price_token_per_ksec=str(price), updated_at=now)
        )

    async def save_trust(self, miner_id: str, trust: Trust, now: datetime) -> None:
        await self._session.execute(
            update(MinerRow)
            .where(MinerRow.miner_id == miner_id)
            .values(
                trust_successes=trust.successes,
                trust_failures=trust.failures,
                trust_as_of=trust.as_of,
                updated_at=now,
            )
        )

    async def save_statuses(self, statuses: Sequence[tuple[str, MinerStatus]], now: datetime) -> None:
        if not statuses:
            return
        table = MinerStatusRow.__table__
        assert isinstance(table, Table)
        columns = status_values(statuses[0][1], self._lease, now).keys()
        statement = (
            update(table)
            .where(
                table.c.miner_id == bindparam("b_miner_id"),
                # A logout always lands: it is final, whatever a batched beat wrote before it.
                or_(
                    table.c.event_at <= bindparam("b_event_at"),
                    bindparam("b_logged_out_at", type_=table.c.logged_out_at.type).is_not(None),
                ),
            )
            .values({name: bindparam(f"b_{name}") for name in columns})
        )
        await self._session.execute(statement, self._status_params(statuses, now))

    async def save_beats(self, statuses: Sequence[tuple[str, MinerStatus]], now: datetime) -> None:
        if not statuses:
            return
        table = table_of(MinerStatusRow)
        columns = status_values(statuses[0][1], self._lease, now).keys()
        # A beat never brings back a logged-out miner: the logout wrote logged_out_at, and only a new
        # registration clears it. On PostgreSQL the condition is re-checked on the row a concurrent
        # logout just committed, so a beat another process took with the revoked token is refused.
        statement = (
            update(table)
            .where(
                table.c.miner_id == bindparam("b_miner_id"),
                table.c.event_at <= bindparam("b_event_at"),
                table.c.logged_out_at.is_(None),
            )
            .values({name: bindparam(f"b_{name}") for name in columns})
        )
        await self._session.execute(statement, self._status_params(statuses, now))

    def _status_params(
        self, statuses: Sequence[tuple[str, MinerStatus]], now: datetime
    ) -> list[dict[str, Any]]:
        params = []
        for miner_id, status in sorted(statuses, key=lambda s: s[0]):
            values = status_values(status, self._lease, now)
            params.append({"b_miner_id": miner_id, **{f"b_{k}": v for k, v in values.items()}})
        return params

    async def all(self) -> list[Miner]:
        result = await self._session.execute(_miners_query())
        return [_to_miner(row, status) for row, status in result.tuples()]


class SqlSessionRepository(SessionRepository):
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def create_many(self, sessions: Sequence[tuple[str, str, datetime, datetime]]) -> None:
        if not sessions:
            return
        await self._session.execute(
            insert(SessionRow),
            [
                {
                    "token_hash": token_hash,
                    "miner_id": miner_id,
                    "created_at": created_at,
                    "expires_at": expires_at,
                    "revoked_at": None,
                    "updated_at": created_at,
                }
                for token_hash, miner_id, created_at, expires_at in sessions
            ],
        )

    async def revoke_all_of(self, miner_ids: Sequence[str], now: datetime) -> list[str]:
        result = await self._session.execute(
            update(SessionRow)
            .where(SessionRow.miner_id.in_(sorted(miner_ids)), SessionRow.revoked_at.is_(None))
            .values(revoked_at=now, updated_at=now)
            .returning(SessionRow.token_hash)
        )
        return list(result.scalars())

    async def find_live(self, token_hash: str) -> str | None:
        result = await self._session.execute(
            select(SessionRow.miner_id).where(
                SessionRow.token_hash == token_hash, SessionRow.revoked_at.is_(None)
            )
        )
        return result.scalar_one_or_none()

    async def extend(self, expiries: Sequence[tuple[str, datetime]]) -> None:
        if not expiries:
            return
        table = SessionRow.__table__
        assert isinstance(table, Table)
        statement = (
            update(table)
            .where(table.c.miner_id == bindparam("b_miner_id"), table.c.revoked_at.is_(None))
            .values(expires_at=bindparam("b_expires_at"))
        )
        await self._session.execute(
            statement,
            [
                {"b_miner_id": m, "b_expires_at": expires_at}
                for m, expires_at in sorted(expiries, key=lambda e: e[0])
            ],
        )


class SqlPresenceRepository(PresenceRepository):
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def record(self, intervals: Sequence[tuple[str, datetime, datetime]]) -> None:
        if not intervals:
            return
        statement = upsert_statement(
            self._session, PresenceIntervalRow.__table__, ("miner_id", "started_at"), ("ended_at",)
        )
        await self._session.execute(
            statement,
            [
                {"miner_id": m, "started_at": start, "ended_at": end}
                for m, start, end in sorted(intervals, key=lambda i: (i[0], i[1]))
            ],
        )


class SqlTokenLookup(TokenLookup):
    """Opens a short session per lookup: it serves process-wide authentication, which holds none."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], lease: LeasePolicy) -> None:
        self._sessions = sessions
        self._lease = lease

    async def miner_of_live_token(self, token_hash: str) -> str | None:
        async with self._sessions() as session:
            return await SqlSessionRepository(session).find_live(token_hash)

    async def miners_with_api_key(self, key_hash: str) -> list[str]:
        async with self._sessions() as session:
            result = await session.execute(
                select(MinerRow.miner_id).where(MinerRow.api_key_hash == key_hash).limit(2)
            )
            return list(result.scalars())

    async def miner(self, miner_id: str) -> Miner | None:
        async with self._sessions() as session:
            return await SqlMinerRepository(session, self._lease).get(miner_id)
