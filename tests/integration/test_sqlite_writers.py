"""The embedded SQLite database under contention: writers take turns in order, readers never wait for them.

SQLite lets one connection write at a time. A writer that finds the lock taken waits in SQLite's busy
handler, which sleeps and polls: writers that release and retake the lock quickly kept winning, and
under load some waited for seconds (up to the 30 s busy timeout, then a 503). These tests hold or
contend for the lock for real, on a database file of their own.
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from poolhub.adapters.db.engine import (
    make_engine,
    make_read_engine,
    make_read_session_factory,
    make_session_factory,
)
from poolhub.adapters.db.migrate import upgrade
from tests.integration.conftest import ADMIN, Hub, bearer, register, started_hub, test_settings

WRITERS = 8
CONTENTION_SEC = 3.0


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'poolhub.db'}"
    upgrade(url)
    return url


@pytest.fixture
def write_lock_held_elsewhere(sqlite_url: str) -> Iterator[None]:
    """Another process's writer (here another connection) holding the write lock until the test ends."""
    other = sqlite3.connect(sqlite_url.removeprefix("sqlite+aiosqlite:///"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("DELETE FROM billing_state")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


@pytest.fixture
async def sqlite_hub(sqlite_url: str) -> AsyncIterator[Hub]:
    async with started_hub(test_settings(sqlite_url)) as running:
        yield running


async def test_busy_writers_take_turns_and_none_waits_behind_the_others(sqlite_url: str) -> None:
    """Eight tasks write in tight loops for three seconds: each transaction waits for the ones ahead of
    it, not for luck. Under SQLite's busy handler some waited hundreds of times the median."""
    engine = make_engine(sqlite_url)
    sessions = make_session_factory(engine)
    waits: list[float] = []
    written = [0] * WRITERS

    async def write_in_a_loop(index: int) -> None:
        deadline = time.monotonic() + CONTENTION_SEC
        while time.monotonic() < deadline:
            asked = time.monotonic()
            async with sessions() as session:
                await session.execute(text("SELECT 1"))  # the transaction (and its write lock) is taken
                waits.append(time.monotonic() - asked)
                await session.execute(
                    text("UPDATE billing_state SET blocked_reason = :r"), {"r": f"writer {index}"}
                )
                await session.commit()
            written[index] += 1

    try:
        async with engine.begin() as connection:
            await connection.execute(text("DELETE FROM billing_state"))
            await connection.execute(
                text("INSERT INTO billing_state (name, changed_at) VALUES ('writers', '2026-12-07')")
            )
        await asyncio.gather(*(write_in_a_loop(i) for i in range(WRITERS)))
    finally:
        await engine.dispose()

    assert min(written) > 0, f"a writer never got a turn: {written}"
    # In turn, every writer waits for at most the others' one transaction each.
    assert max(written) <= 3 * min(written) + 3, f"turns were not shared: {written}"
    assert max(waits) < 1.0, f"a writer waited {max(waits):.2f} s (median {statistics.median(waits):.4f} s)"


async def test_a_read_session_does_not_queue_behind_the_writers(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    read_engine = make_read_engine(sqlite_url, engine)
    try:
        async with make_session_factory(engine)() as writer:
            await writer.execute(text("DELETE FROM billing_state"))  # holds the only write connection
            async with make_read_session_factory(read_engine)() as reader:
                counted = await asyncio.wait_for(
                    reader.scalar(text("SELECT count(*) FROM usage_records")), timeout=2
                )
            assert counted == 0
            await writer.rollback()
    finally:
        await read_engine.dispose()
        await engine.dispose()


async def test_the_console_and_health_answer_while_another_process_holds_the_write_lock(
    sqlite_hub: Hub, write_lock_held_elsewhere: None
) -> None:
    """A report, a token lookup or a probe never takes the write lock: with it held elsewhere they
    answer at once."""
    operator = bearer(ADMIN)
    for path in (
        "/console/api/overview",
        "/console/api/billing?hours=24",
        "/console/api/miners?limit=10",
        "/console/api/violations",
        "/sla/status",
        "/sla/metrics",
        "/sla/capacity/snapshots",
        "/sla/capacity/forecast",
        "/sla/capacity/recommendations",
        "/sla/billing/usage?hours=24",
    ):
        answer = await asyncio.wait_for(sqlite_hub.client.get(path, headers=operator), timeout=3)
        assert answer.status_code == 200, (path, answer.text)
    # A token the process has not seen is looked up in the database: a read, refused at once.
    beat = await asyncio.wait_for(
        sqlite_hub.client.post("/v1/miners/heartbeat", json={}, headers=bearer("a-token-never-issued")),
        timeout=3,
    )
    assert beat.status_code == 401, beat.text
    background = sqlite_hub.app.state.background
    await asyncio.wait_for(background.probe_database(), timeout=3)
    health = await sqlite_hub.client.get("/v1/health")
    assert health.status_code == 200 and health.json()["db"] == "ok"


async def test_writes_queued_behind_a_held_lock_all_land_once_it_is_released(
    sqlite_hub: Hub, sqlite_url: str
) -> None:
    """Twenty registrations arrive while another process holds the lock for a second: none fails."""
    other = sqlite3.connect(sqlite_url.removeprefix("sqlite+aiosqlite:///"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    registering = asyncio.gather(*(register(sqlite_hub.client, f"m-{i}") for i in range(20)))
    await asyncio.sleep(1.0)
    other.execute("ROLLBACK")
    other.close()
    keys = await asyncio.wait_for(registering, timeout=20)
    assert len(set(keys)) == 20
    listed = await sqlite_hub.client.get("/v1/miners", params={"limit": 50}, headers=bearer(ADMIN))
    assert listed.headers["x-total-count"] == "20"
