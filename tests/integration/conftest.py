"""Integration fixtures: a real database (SQLite always, PostgreSQL when POOLHUB_TEST_DATABASE_URL is set),
migrated once with alembic, cleaned between tests, and the app driven over HTTP in-process."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from advanced_alchemy.base import orm_registry
from litestar import Litestar
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from poolhub.adapters.db.migrate import upgrade
from poolhub.app.main import create_app
from poolhub.app.settings import Settings
from poolhub.app.tools.hubproc import free_port

ADMIN = "test-admin-token"
COORDINATOR = "test-coordinator-secret"
SECRET_KEY = "test-secret-key"

PG_URL = os.environ.get("POOLHUB_TEST_DATABASE_URL")
BACKENDS = ["sqlite", "postgres"] if PG_URL else ["sqlite"]


def test_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "secret_key": SECRET_KEY,
        "admin_token": ADMIN,
        "coordinator_shared_secret": COORDINATOR,
        "coordinator_api_key": "test-coordinator-api-key",
        # Tests register many miners from one address; the rate-limit tests set their own limits.
        "rate_limits": (),
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


test_settings.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'poolhub.db'}"
    else:
        assert PG_URL is not None
        url = PG_URL
    try:
        upgrade(url)
    except Exception as exc:
        if request.param == "postgres":
            pytest.fail(f"PostgreSQL at POOLHUB_TEST_DATABASE_URL is unreachable or broken: {exc}")
        raise
    return url


async def truncate_all(url: str) -> None:
    engine = create_async_engine(url)
    tables = [t.name for t in reversed(orm_registry.metadata.sorted_tables)]
    async with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            await connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                await connection.execute(text(f"DELETE FROM {table}"))  # noqa: S608  (our own table names)
    await engine.dispose()


@pytest.fixture
async def clean_db(database_url: str) -> str:
    await truncate_all(database_url)
    return database_url


@pytest.fixture
def settings(clean_db: str) -> Settings:
    return test_settings(clean_db)


@dataclass
class Hub:
    app: Litestar
    client: httpx.AsyncClient

    async def flush(self) -> None:
        await self.app.state.background.flush()


@pytest.fixture
async def hub(settings: Settings) -> AsyncIterator[Hub]:
    async with started_hub(settings) as running:
        yield running


class started_hub:
    """An app with its lifespan running and an httpx client over ASGI (no socket, same event loop).

    The lifespan runs in a task of its own: its anyio task group must be entered and left by one task.
    """

    def __init__(self, settings: Settings) -> None:
        self.app = create_app(settings)
        self._started = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run_lifespan(self) -> None:
        async with self.app.lifespan():
            self._started.set()
            await self._stop.wait()

    async def __aenter__(self) -> Hub:
        self._task = asyncio.create_task(self._run_lifespan())
        started = asyncio.create_task(self._started.wait())
        await asyncio.wait({self._task, started}, return_when=asyncio.FIRST_COMPLETED)
        if self._task.done():
            started.cancel()
            self._task.result()
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://poolhub.test", timeout=30
        )
        return Hub(self.app, self._client)

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()
        self._stop.set()
        assert self._task is not None
        await self._task


@dataclass
class LiveServer:
    url: str
    ws_url: str
    app: Litestar


@pytest.fixture
def live_server(settings: Settings) -> Iterator[LiveServer]:
    """The app under a real uvicorn on 127.0.0.1, in its own thread and event loop (for WebSocket tests)."""
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    yield LiveServer(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", app)
    server.should_exit = True
    thread.join(timeout=15)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def miner_body(miner_id: str = "m-1", **overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "miner_id": miner_id,
        "api_key": f"key-{miner_id}-0123456789abcdef",
        "addr": "10.0.0.7:9000",
        "proto": "grpc",
        "gpu_name": "RTX 4090",
        "gpu_vram_gb": 24,
        "gpu_count": 1,
        "cpu_cores": 16,
        "ram_gb": 64,
        "accel": "cuda",
        "price_token_per_ksec": "0.75",
        "max_parallel": 4,
        "region": "eu",
        "tags": ["eu-west"],
        "capabilities": ["sentence-transformers/all-MiniLM-L6-v2"],
    }
    body.update(overrides)
    return body


async def register(client: httpx.AsyncClient, miner_id: str = "m-1", **overrides: object) -> str:
    response = await client.post("/v1/miners/register", json=miner_body(miner_id, **overrides))
    assert response.status_code in (200, 201), response.text
    return str(response.json()["session_token"])
