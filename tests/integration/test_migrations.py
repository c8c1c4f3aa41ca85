"""Migration stairway: every revision upgrades, downgrades and upgrades again, on each database."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from poolhub.adapters.db.migrate import alembic_config, downgrade, upgrade
from poolhub.app.tools.hubproc import create_database, drop_database

PG_URL = os.environ.get("POOLHUB_TEST_DATABASE_URL")


@pytest.fixture(params=["sqlite", "postgres"] if PG_URL else ["sqlite"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'stairway.db'}"
        return
    assert PG_URL is not None
    url = asyncio.run(create_database(PG_URL, prefix="poolhub_stairway"))
    yield url
    asyncio.run(drop_database(url))


def _revisions(url: str) -> list[str]:
    script = ScriptDirectory.from_config(alembic_config(url))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def _tables(url: str) -> set[str]:
    async def read() -> set[str]:
        engine = create_async_engine(url)
        async with engine.connect() as connection:
            names = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
        await engine.dispose()
        return names

    return asyncio.run(read())


def test_every_revision_upgrades_downgrades_and_upgrades_again(empty_database: str) -> None:
    revisions = _revisions(empty_database)
    assert revisions[0] == "0001"
    previous = "base"
    for revision in revisions:
        upgrade(empty_database, revision)
        downgrade(empty_database, previous)
        upgrade(empty_database, revision)
        previous = revision
    assert {"miners", "miner_status", "miner_sessions", "presence_intervals", "feedback"} <= _tables(
        empty_database
    )
    downgrade(empty_database, "base")
    assert _tables(empty_database) <= {"alembic_version"}
