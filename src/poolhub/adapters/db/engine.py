"""Engine and session factory for PostgreSQL (asyncpg) or the embedded SQLite default."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NewType

import msgspec
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./var/poolhub.db"


def ensure_sqlite_directory(url: str) -> None:
    """SQLite creates the file but not its folder (`./var/` on a fresh clone)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


def redacted_url(url: str) -> str:
    """The URL as it may be printed: any password masked."""
    return make_url(url).render_as_string(hide_password=True)


_json_encoder = msgspec.json.Encoder()


def json_text(value: object) -> str:
    """JSON column text, as every JSON column of the engine is written."""
    # Every match record carries JSON columns; msgspec writes them several times faster than `json.dumps`.
    return _json_encoder.encode(value).decode()


# SQLite takes one writer at a time, and a writer waiting in its busy handler polls (sleeps of up to
# 100 ms) while others keep taking the lock: under load some writers starved for seconds, past the
# busy timeout. One pooled write connection makes them queue in order at the pool instead.
SQLITE_WRITERS = 1
SQLITE_WAIT_SEC = 30


def make_engine(url: str) -> AsyncEngine:
    """The engine for work that writes. On SQLite it holds one connection: see SQLITE_WRITERS."""
    ensure_sqlite_directory(url)
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite_engine(url, pool_size=SQLITE_WRITERS, max_overflow=0, pool_timeout=SQLITE_WAIT_SEC)
    # No pre-ping: it costs a round trip per checkout; a dead connection fails one request and is replaced.
    return create_async_engine(
        # hide_parameters: a statement in an error or a log never carries its values (keys, tokens, metadata).
        url,
        pool_size=10,
        max_overflow=20,
        pool_recycle=1800,
        hide_parameters=True,
        json_serializer=json_text,
    )


ReadEngine = NewType("ReadEngine", AsyncEngine)


def make_read_engine(url: str, writer: AsyncEngine) -> ReadEngine:
    """The engine for work that only reads. PostgreSQL readers never wait for writers, so they share
    the writer's pool; SQLite readers get their own connections, so they never queue behind writers."""
    if make_url(url).get_backend_name() != "sqlite":
        return ReadEngine(writer)
    readers = _sqlite_engine(url, pool_size=5, max_overflow=10, pool_timeout=SQLITE_WAIT_SEC)
    # Set on the engine, not per session, so its direct users (the database probe) begin DEFERRED too.
    return ReadEngine(readers.execution_options(**{READ_ONLY_OPTION: True}))


def _sqlite_engine(url: str, **pool: int) -> AsyncEngine:
    engine = create_async_engine(
        url,
        connect_args={"timeout": SQLITE_WAIT_SEC},
        hide_parameters=True,
        json_serializer=json_text,
        **pool,
    )
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the one writer; busy_timeout waits for the lock instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
    # The driver's own implicit BEGIN is deferred; we issue our own (below).
    dbapi_connection.isolation_level = None


def _sqlite_begin(connection: Any) -> None:
    if connection.get_execution_options().get(READ_ONLY_OPTION):
        # A reader under WAL sees a snapshot and takes no write lock: writers never wait for it.
        connection.exec_driver_sql("BEGIN DEFERRED")
        return
    # A deferred transaction that read, then writes after another connection committed, fails at
    # once with SQLITE_BUSY (no wait); taking the write lock up front makes it wait its turn instead.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


READ_ONLY_OPTION = "poolhub_read_only"


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def make_read_session_factory(read_engine: ReadEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for work that only reads, over `make_read_engine` (whose SQLite transactions begin
    DEFERRED, so a report never holds the write lock; PostgreSQL readers never block writers). A write
    through such a session is a bug; on SQLite it may fail with SQLITE_BUSY."""
    return async_sessionmaker(read_engine, expire_on_commit=False)
