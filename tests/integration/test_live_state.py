"""Faults around the live state of one process, on a real database: refused rows, a cancelled
registration, reads right after acknowledged writes, and a database outage."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from poolhub.adapters.db.models import MatchRecordRow, MinerStatusRow
from poolhub.adapters.live import LiveDirectory
from poolhub.app.runtime.registrations import RegistrationBatcher
from poolhub.app.settings import Settings
from poolhub.domain.errors import InvalidInputError
from poolhub.domain.model import MinerSpec
from poolhub.domain.ports import MatchRecord
from poolhub.domain.use_cases.register_miner import Registration, SessionGrant
from tests.integration.conftest import (
    COORDINATOR,
    Hub,
    bearer,
    miner_body,
    register,
    started_hub,
    test_settings,
)
from tests.integration.sla_support import collect, get_json


async def scalar(url: str, statement: object) -> object:
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        value = (await connection.execute(statement)).scalar_one()  # type: ignore[call-overload]
    await engine.dispose()
    return value


def is_postgres(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


def poisoned_record(url: str) -> MatchRecord:
    """A match record the database refuses: PostgreSQL rejects NUL in JSONB; SQLite a missing count."""
    now = datetime.now(UTC)
    if is_postgres(url):
        return MatchRecord("job-poison", "acme", now, {"task": "a\u0000"}, [], "", 0, 0)
    return MatchRecord("job-poison", "acme", now, {}, [], "", None, 0)  # type: ignore[arg-type]


async def test_a_refused_match_record_is_dropped_alone_and_later_records_are_saved(
    hub: Hub, clean_db: str
) -> None:
    await register(hub.client, "m-1")
    directory = await hub.app.state.dishka_container.get(LiveDirectory)
    for i in range(3):
        job = {"job_id": f"job-{i}", "tenant_id": "acme", "top_k": 1}
        assert (await hub.client.post("/v1/match", json=job, headers=bearer(COORDINATOR))).status_code == 200
        if i == 1:
            directory.record_match(poisoned_record(clean_db))
    await hub.flush()
    assert directory.pending_match_records() == 0
    saved = await scalar(clean_db, select(func.count()).select_from(MatchRecordRow))
    assert saved == 3
    job = {"job_id": "job-later", "tenant_id": "acme", "top_k": 1}
    assert (await hub.client.post("/v1/match", json=job, headers=bearer(COORDINATOR))).status_code == 200
    await hub.flush()
    assert await scalar(clean_db, select(func.count()).select_from(MatchRecordRow)) == 4
    metrics = (await hub.client.get("/v1/metrics")).text
    assert 'poolhub_writebehind_dropped_total{kind="match_record"} 1.0' in metrics
    assert 'poolhub_writebehind_depth{kind="match_record"} 0.0' in metrics


def spec(miner_id: str, addr: str = "10.0.0.7:9000") -> MinerSpec:
    return MinerSpec(miner_id, addr, "grpc", 24, 16, 64, Decimal("0.75"), 4)


async def test_a_registration_the_database_refuses_fails_alone(hub: Hub, clean_db: str) -> None:
    if not is_postgres(clean_db):
        pytest.skip("SQLite stores any text: no registration value is refused by it")
    batcher = await hub.app.state.dishka_container.get(RegistrationBatcher)
    registrations = [
        Registration(
            spec(f"m-{i}", addr="10.0.0.7\u0000" if i % 10 == 3 else "10.0.0.7:9000"), f"key-{i}-0123456789"
        )
        for i in range(30)
    ]
    outcomes = await asyncio.gather(*(batcher.submit(r) for r in registrations), return_exceptions=True)
    refused = [i for i, o in enumerate(outcomes) if isinstance(o, InvalidInputError)]
    assert refused == [3, 13, 23]
    assert all(isinstance(o, SessionGrant) for i, o in enumerate(outcomes) if i not in refused)
    listed = await get_json(hub, "/v1/miners?limit=100")
    assert len(listed) == 27
    # The refused miners are not half-registered: registering them properly works.
    assert (
        await hub.client.post(
            "/v1/miners/register",
            json=miner_body("m-3", api_key="key-3-0123456789"),
        )
    ).status_code == 201


async def test_a_cancelled_registration_neither_stops_registrations_nor_the_final_flush(
    settings: Settings, clean_db: str
) -> None:
    process = started_hub(settings)
    hub = await process.__aenter__()
    token = await register(hub.client, "m-1")
    batcher = await hub.app.state.dishka_container.get(RegistrationBatcher)
    # A client that goes away while its registration waits in the batch.
    waiting = asyncio.create_task(batcher.submit(Registration(spec("m-gone"), "key-gone-0123456789")))
    await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.sleep(0.05)
    answer = await asyncio.wait_for(
        hub.client.post(
            "/v1/miners/register",
            json=miner_body("m-2"),
        ),
        timeout=5,
    )
    assert answer.status_code == 201
    beat = await hub.client.post("/v1/miners/heartbeat", json={"queue_len": 9}, headers=bearer(token))
    assert beat.status_code == 200
    await process.__aexit__(None, None, None)  # the final flush saves the acknowledged beat
    queue_len = await scalar(
        clean_db, select(MinerStatusRow.queue_len).where(MinerStatusRow.miner_id == "m-1")
    )
    assert queue_len == 9


async def test_a_collection_sees_the_beat_acknowledged_just_before_it(hub: Hub) -> None:
    token = await register(hub.client, "m-1")
    await hub.flush()
    assert (
        await hub.client.post("/v1/miners/heartbeat", json={"queue_len": 3}, headers=bearer(token))
    ).status_code == 200
    report = await collect(hub)
    assert report["capacity"]["used_slots"] == 3


async def test_an_online_miner_uptime_counts_its_open_interval_up_to_now(clean_db: str) -> None:
    # A one-second grace: the stored interval end lags the beats by far more than that.
    async with started_hub(test_settings(clean_db, heartbeat_grace_sec=1)) as hub:
        token = await register(hub.client, "m-1")
        for _ in range(10):
            await asyncio.sleep(0.3)
            assert (
                await hub.client.post("/v1/miners/heartbeat", json={}, headers=bearer(token))
            ).status_code == 200
        await collect(hub)
        metrics = await get_json(hub, "/sla/metrics/m-1?hours=1")
        uptime = [m["metric_value"] for m in metrics if m["metric_type"] == "uptime_pct"]
        assert uptime and uptime[0] == pytest.approx(100.0, abs=0.5)


async def set_connections(url: str, allowed: bool) -> None:
    parsed = make_url(url)
    connection = await asyncpg.connect(
        host=parsed.host, port=parsed.port or 5432, user=parsed.username, database="postgres"
    )
    try:
        await connection.execute(
            f'ALTER DATABASE "{parsed.database}" ALLOW_CONNECTIONS {str(allowed).lower()}'
        )
        if not allowed:
            await connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                parsed.database,
            )
    finally:
        await connection.close()


async def test_during_a_database_outage_hot_paths_answer_writes_get_503_and_nothing_acknowledged_is_lost(
    hub: Hub, clean_db: str
) -> None:
    if not is_postgres(clean_db):
        pytest.skip("the outage is staged by refusing connections to a PostgreSQL database")
    token = await register(hub.client, "m-1")
    await hub.flush()
    await set_connections(clean_db, allowed=False)
    try:
        beat = await hub.client.post("/v1/miners/heartbeat", json={"queue_len": 2}, headers=bearer(token))
        assert beat.status_code == 200
        matched = await hub.client.post(
            "/v1/match",
            json={"job_id": "job-out", "tenant_id": "acme", "top_k": 1},
            headers=bearer(COORDINATOR),
        )
        assert matched.status_code == 200
        assert [c["miner_id"] for c in matched.json()["candidates"]] == ["m-1"]
        write = await hub.client.post(
            "/v1/miners/register",
            json=miner_body("m-2"),
        )
        assert write.status_code == 503, write.text
        logout = await hub.client.post("/v1/miners/logout", headers=bearer(token))
        assert logout.status_code == 503, logout.text
        with pytest.raises((DBAPIError, asyncpg.PostgresError)):
            await hub.flush()
    finally:
        await set_connections(clean_db, allowed=True)
    # Pooled connections the outage killed fail once each; the flush loop simply runs again.
    for _ in range(20):
        try:
            await hub.flush()
            break
        except (DBAPIError, asyncpg.PostgresError):
            await asyncio.sleep(0.1)
    assert (
        await scalar(clean_db, select(MinerStatusRow.queue_len).where(MinerStatusRow.miner_id == "m-1")) == 2
    )
    assert await scalar(clean_db, select(func.count()).select_from(MatchRecordRow)) == 1
    assert (await get_json(hub, "/v1/miners"))[0]["online"] is True
