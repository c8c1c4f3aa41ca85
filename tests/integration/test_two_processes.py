"""Two `poolhub serve` processes on one PostgreSQL database: what one acknowledges, the other applies.

Skipped without POOLHUB_TEST_DATABASE_URL: SQLite cannot be shared well by separate server processes.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from poolhub.adapters.db.models import MinerStatusRow, UsageRecordRow
from poolhub.app.tools.hubproc import (
    ADMIN_TOKEN,
    COORDINATOR_SECRET,
    HubProcess,
    create_database,
    drop_database,
    start_hub,
)
from tests.integration.conftest import bearer, miner_body

PG_URL = os.environ.get("POOLHUB_TEST_DATABASE_URL")
pytestmark = pytest.mark.skipif(
    PG_URL is None, reason="two processes need PostgreSQL (POOLHUB_TEST_DATABASE_URL)"
)

APPLIED_WITHIN_SEC = 1.0


@dataclass
class Pair:
    database_url: str
    a: httpx.AsyncClient
    b: httpx.AsyncClient


@pytest.fixture(scope="module")
async def processes(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[str, HubProcess, HubProcess]]:
    assert PG_URL is not None
    url = await create_database(PG_URL, prefix="poolhub_two")
    logs = tmp_path_factory.mktemp("hubs")
    hubs: list[HubProcess] = []
    try:
        hubs.append(await start_hub(url, log_path=Path(logs / "a.log")))
        hubs.append(await start_hub(url, log_path=Path(logs / "b.log")))
        yield url, hubs[0], hubs[1]
    finally:
        for hub in hubs:
            await asyncio.to_thread(hub.stop)
        await drop_database(url)


@pytest.fixture
async def pair(processes: tuple[str, HubProcess, HubProcess]) -> AsyncIterator[Pair]:
    url, a, b = processes
    async with (
        httpx.AsyncClient(base_url=a.url, timeout=30) as ca,
        httpx.AsyncClient(base_url=b.url, timeout=30) as cb,
    ):
        yield Pair(url, ca, cb)


async def online_on(client: httpx.AsyncClient, miner_id: str) -> bool | None:
    listed = (await client.get("/v1/miners", params={"limit": 500}, headers=bearer(ADMIN_TOKEN))).json()
    for miner in listed:
        if miner["miner_id"] == miner_id:
            return bool(miner["online"])
    return None


async def stored_status(url: str, miner_id: str) -> MinerStatusRow:
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        row = (
            await connection.execute(select(MinerStatusRow).where(MinerStatusRow.miner_id == miner_id))
        ).one()
    await engine.dispose()
    return row  # type: ignore[return-value]


async def test_a_first_registration_raced_on_two_processes_has_exactly_one_owner(pair: Pair) -> None:
    ids = [f"race-{i:02d}" for i in range(30)]
    bodies = {
        m: (
            miner_body(m, api_key=f"key-one-{m}-0123456789"),
            miner_body(m, api_key=f"key-two-{m}-0123456789"),
        )
        for m in ids
    }
    answers = await asyncio.gather(
        *(pair.a.post("/v1/miners/register", json=bodies[m][0]) for m in ids),
        *(pair.b.post("/v1/miners/register", json=bodies[m][1]) for m in ids),
    )
    on_a, on_b = answers[: len(ids)], answers[len(ids) :]
    for miner_id, first, second in zip(ids, on_a, on_b, strict=True):
        assert sorted([first.status_code, second.status_code]) == [201, 401], (first.text, second.text)
        winner, winner_body, loser_body = (
            (first, bodies[miner_id][0], bodies[miner_id][1])
            if first.status_code == 201
            else (second, bodies[miner_id][1], bodies[miner_id][0])
        )
        token = winner.json()["session_token"]
        for client in (pair.a, pair.b):
            assert (
                await client.post("/v1/miners/heartbeat", json={}, headers=bearer(token))
            ).status_code == 200
        # The owner's key still re-registers; the other key stays refused, on either process.
        assert (await pair.b.post("/v1/miners/register", json=winner_body)).status_code == 200
        assert (await pair.a.post("/v1/miners/register", json=loser_body)).status_code == 401


async def test_a_logout_is_applied_on_the_other_process_within_a_second_and_is_final(pair: Pair) -> None:
    registered = await pair.a.post("/v1/miners/register", json=miner_body("leaver-1"))
    token = registered.json()["session_token"]
    assert (await pair.b.post("/v1/miners/heartbeat", json={}, headers=bearer(token))).status_code == 200

    async def late_beats() -> list[int]:
        codes = []
        for _ in range(20):
            response = await pair.b.post("/v1/miners/heartbeat", json={"queue_len": 1}, headers=bearer(token))
            codes.append(response.status_code)
        return codes

    # Beats with the token race the logout on the other process: some reach it before the revocation.
    logout, codes = await asyncio.gather(
        pair.a.post("/v1/miners/logout", headers=bearer(token)), late_beats()
    )
    assert logout.status_code == 200
    assert set(codes) <= {200, 401}
    started = time.monotonic()
    while True:
        refused = (
            await pair.b.post("/v1/miners/heartbeat", json={}, headers=bearer(token))
        ).status_code == 401
        offline = (
            await online_on(pair.a, "leaver-1") is False and await online_on(pair.b, "leaver-1") is False
        )
        if refused and offline:
            break
        assert time.monotonic() - started < APPLIED_WITHIN_SEC, "the logout was not applied everywhere in 1 s"
        await asyncio.sleep(0.05)
    # Several flush and feed intervals later the miner is still offline everywhere and in the database.
    await asyncio.sleep(1.5)
    assert await online_on(pair.a, "leaver-1") is False
    assert await online_on(pair.b, "leaver-1") is False
    assert (await stored_status(pair.database_url, "leaver-1")).logged_out_at is not None


async def test_feedback_on_the_other_process_bills_the_tenant_of_the_match(pair: Pair) -> None:
    await pair.a.post("/v1/miners/register", json=miner_body("biller-1", region="bill"))
    matched = await pair.a.post(
        "/v1/match",
        json={"job_id": "job-two-1", "tenant_id": "acme-two", "top_k": 1, "region": "bill"},
        headers=bearer(COORDINATOR_SECRET),
    )
    assert matched.status_code == 200, matched.text
    assert [c["miner_id"] for c in matched.json()["candidates"]] == ["biller-1"]
    feedback = await pair.b.post(
        "/v1/feedback",
        json={"job_id": "job-two-1", "miner_id": "biller-1", "outcome": "completed", "duration_ms": 60_000},
        headers=bearer(COORDINATOR_SECRET),
    )
    assert feedback.status_code == 201, feedback.text
    engine = create_async_engine(pair.database_url)
    async with engine.connect() as connection:
        tenants = (
            (
                await connection.execute(
                    select(UsageRecordRow.tenant_id).where(UsageRecordRow.job_id == "job-two-1")
                )
            )
            .scalars()
            .all()
        )
    await engine.dispose()
    assert tenants and set(tenants) == {"acme-two"}


async def test_beats_racing_logouts_on_two_processes_never_answer_5xx(pair: Pair) -> None:
    ids = [f"crowd-{i:03d}" for i in range(200)]
    tokens: dict[str, str] = {}
    for start in range(0, len(ids), 25):
        batch = ids[start : start + 25]
        answers = await asyncio.gather(
            *(
                (pair.a if i % 2 else pair.b).post("/v1/miners/register", json=miner_body(m))
                for i, m in enumerate(batch)
            )
        )
        for miner_id, answer in zip(batch, answers, strict=True):
            assert answer.status_code == 201, answer.text
            tokens[miner_id] = answer.json()["session_token"]

    async def beat(miner_id: str, rounds: int) -> list[int]:
        codes = []
        for r in range(rounds):
            client = pair.a if (r + hash(miner_id)) % 2 else pair.b
            response = await client.post(
                "/v1/miners/heartbeat", json={"queue_len": r}, headers=bearer(tokens[miner_id])
            )
            codes.append(response.status_code)
        return codes

    async def logout(miner_id: str) -> list[int]:
        client = pair.a if hash(miner_id) % 2 else pair.b
        return [(await client.post("/v1/miners/logout", headers=bearer(tokens[miner_id]))).status_code]

    results = await asyncio.gather(*(beat(m, 5) for m in ids), *(logout(m) for m in ids[:100]))
    codes = [code for codes in results for code in codes]
    assert not [c for c in codes if c >= 500]
    assert set(codes) <= {200, 401}
    await asyncio.sleep(APPLIED_WITHIN_SEC + 0.5)
    for client in (pair.a, pair.b):
        listed = (await client.get("/v1/miners", params={"limit": 500}, headers=bearer(ADMIN_TOKEN))).json()
        online = {m["miner_id"] for m in listed if m["online"] and m["miner_id"].startswith("crowd-")}
        assert online == set(ids[100:])


async def test_api_keys_follow_registrations_made_on_the_other_process(pair: Pair) -> None:
    shared_key = "two-process-shared-key-0123456789"
    later_key = "two-process-later-key-0123456789"
    first = await pair.a.post("/v1/miners/register", json=miner_body("keyed-1", api_key=shared_key))
    assert first.status_code == 201
    # B looks the first key up once and caches it; the second is unknown there, and remembered so.
    assert (await pair.b.post("/v1/miners/heartbeat", json={}, headers=bearer(shared_key))).status_code == 200
    assert (await pair.b.post("/v1/miners/heartbeat", json={}, headers=bearer(later_key))).status_code == 401
    for miner_id, key in (("keyed-2", shared_key), ("keyed-3", later_key)):
        answer = await pair.a.post("/v1/miners/register", json=miner_body(miner_id, api_key=key))
        assert answer.status_code == 201
    started = time.monotonic()
    while True:
        shared = await pair.b.post("/v1/miners/heartbeat", json={}, headers=bearer(shared_key))
        later = await pair.b.post("/v1/miners/heartbeat", json={}, headers=bearer(later_key))
        if (shared.status_code, later.status_code) == (409, 200):
            break
        assert time.monotonic() - started < APPLIED_WITHIN_SEC, (shared.text, later.text)
        await asyncio.sleep(0.05)


async def test_a_miner_back_with_its_api_key_after_a_logout_is_online_on_both_processes(pair: Pair) -> None:
    key = "two-process-return-key-0123456789"
    registered = await pair.a.post("/v1/miners/register", json=miner_body("returner-1", api_key=key))
    token = registered.json()["session_token"]
    assert (await pair.a.post("/v1/miners/logout", headers=bearer(token))).status_code == 200

    async def online_everywhere(expected: bool) -> None:
        started = time.monotonic()
        while not (
            await online_on(pair.a, "returner-1") is expected
            and await online_on(pair.b, "returner-1") is expected
        ):
            assert time.monotonic() - started < APPLIED_WITHIN_SEC, f"not online={expected} on both in 1 s"
            await asyncio.sleep(0.05)

    await online_everywhere(False)
    assert (await pair.a.post("/v1/miners/heartbeat", json={}, headers=bearer(key))).status_code == 200
    await online_everywhere(True)
    # The session token the logout revoked stays refused on both; the return is durable.
    for client in (pair.a, pair.b):
        assert (await client.post("/v1/miners/heartbeat", json={}, headers=bearer(token))).status_code == 401
    await asyncio.sleep(1.5)
    await online_everywhere(True)
    assert (await stored_status(pair.database_url, "returner-1")).logged_out_at is None


async def test_beats_and_updates_on_one_process_show_on_the_other_within_a_second(pair: Pair) -> None:
    registered = await pair.a.post("/v1/miners/register", json=miner_body("beater-1"))
    token = registered.json()["session_token"]

    async def queue_len_on_b() -> int | None:
        listed = (await pair.b.get("/v1/miners", params={"limit": 500}, headers=bearer(ADMIN_TOKEN))).json()
        return next((m["queue_len"] for m in listed if m["miner_id"] == "beater-1"), None)

    for route, body in (("/v1/miners/heartbeat", {"queue_len": 3}), ("/v1/miners/update", {"queue_len": 5})):
        assert (await pair.a.post(route, json=body, headers=bearer(token))).status_code == 200
        started = time.monotonic()
        while await queue_len_on_b() != body["queue_len"]:
            assert time.monotonic() - started < APPLIED_WITHIN_SEC, (
                f"{route} not applied on the other process"
            )
            await asyncio.sleep(0.05)
