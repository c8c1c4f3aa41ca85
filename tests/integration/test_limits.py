"""Rate limits per client address, the auth-failure lockout, the negative token cache and the probes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine

from poolhub.adapters.db.engine import ReadEngine
from poolhub.app.runtime.background import DatabaseProbe
from poolhub.app.settings import Settings, parse_rate_limits
from tests.integration.conftest import ADMIN, Hub, bearer, miner_body, started_hub, test_settings


def _client(hub: Hub, peer: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=hub.app, client=(peer, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://poolhub.test")


@pytest.fixture
async def limited_hub(clean_db: str) -> AsyncIterator[Hub]:
    settings: Settings = test_settings(
        clean_db, rate_limits=parse_rate_limits("register:60/minute,auth_failures:30/minute")
    )
    async with started_hub(settings) as running:
        yield running


async def test_the_61st_registration_in_a_minute_from_one_address_is_429(limited_hub: Hub) -> None:
    async with _client(limited_hub, "198.51.100.7") as client:
        for i in range(60):
            response = await client.post("/v1/miners/register", json=miner_body(f"m-{i}"))
            assert response.status_code == 201, (i, response.text)
        assert response.headers["RateLimit-Remaining"] == "0"
        refused = await client.post("/v1/miners/register", json=miner_body("m-60"))
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["RateLimit-Limit"] == "60"
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert "RateLimit-Reset" in refused.headers
    assert refused.json()["status_code"] == 429
    # Another address behind the trusted proxy (the peer 127.0.0.1) has its own budget.
    async with _client(limited_hub, "127.0.0.1") as proxy:
        other = await proxy.post(
            "/v1/miners/register",
            json=miner_body("m-other"),
            headers={"X-Forwarded-For": "203.0.113.9"},
        )
        assert other.status_code == 201, other.text
        # ...while the limited client is still limited when it comes through the proxy.
        again = await proxy.post(
            "/v1/miners/register",
            json=miner_body("m-61"),
            headers={"X-Forwarded-For": "198.51.100.7"},
        )
        assert again.status_code == 429
    listed = await limited_hub.client.get("/v1/miners", headers=bearer(ADMIN))
    assert listed.headers["X-Total-Count"] == "61"


async def test_an_untrusted_peer_cannot_pick_its_address_with_x_forwarded_for(limited_hub: Hub) -> None:
    async with _client(limited_hub, "198.51.100.8") as client:
        for i in range(60):
            headers = {"X-Forwarded-For": f"203.0.113.{i}"}
            response = await client.post("/v1/miners/register", json=miner_body(f"m-{i}"), headers=headers)
            assert response.status_code == 201
        refused = await client.post(
            "/v1/miners/register", json=miner_body("m-x"), headers={"X-Forwarded-For": "203.0.113.200"}
        )
    assert refused.status_code == 429


async def test_after_30_failed_authentications_the_address_gets_429(limited_hub: Hub) -> None:
    token = ""
    async with _client(limited_hub, "198.51.100.20") as good:
        token = (await good.post("/v1/miners/register", json=miner_body("m-1"))).json()["session_token"]
    async with _client(limited_hub, "198.51.100.21") as attacker:
        for i in range(30):
            response = await attacker.post("/v1/miners/heartbeat", json={}, headers=bearer(f"guess-{i}"))
            assert response.status_code == 401
        locked = await attacker.post("/v1/miners/heartbeat", json={}, headers=bearer(token))
        assert locked.status_code == 429
        assert int(locked.headers["Retry-After"]) >= 1
        assert "failed authentications" in locked.json()["detail"]
        # Operator routes are refused too; the open registration and the health probe are not.
        assert (await attacker.get("/v1/miners", headers=bearer(ADMIN))).status_code == 429
        assert (await attacker.get("/v1/health")).status_code == 200
    async with _client(limited_hub, "198.51.100.20") as good:
        beat = await good.post("/v1/miners/heartbeat", json={}, headers=bearer(token))
        assert beat.status_code == 200


async def test_rate_limits_off_allows_any_number(hub: Hub) -> None:
    for i in range(70):
        response = await hub.client.post("/v1/miners/register", json=miner_body(f"m-{i}"))
        assert response.status_code == 201
        assert "RateLimit-Limit" not in response.headers


async def test_a_flood_of_unknown_tokens_costs_one_query_each_token_once(hub: Hub) -> None:
    engine = await hub.app.state.dishka_container.get(ReadEngine)  # lookups only read
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        for _ in range(50):
            response = await hub.client.post("/v1/miners/heartbeat", json={}, headers=bearer("bogus-token"))
            assert response.status_code == 401
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    token_queries = [s for s in statements if "session" in s.lower()]
    assert len(token_queries) == 1, statements


async def test_probes(hub: Hub) -> None:
    live = await hub.client.get("/livez")
    assert live.status_code == 200
    ready = await hub.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "reason": None}
    probe = await hub.app.state.dishka_container.get(DatabaseProbe)
    # The background check, run against a database that does not answer (nothing listens on port 1).
    unreachable = create_async_engine("postgresql+asyncpg://postgres@127.0.0.1:1/poolhub")
    await probe.check(unreachable)
    await unreachable.dispose()
    try:
        down = await hub.client.get("/readyz")
        assert down.status_code == 503
        assert "database" in down.json()["reason"]
        assert (await hub.client.get("/livez")).status_code == 200
        assert (await hub.client.head("/readyz")).status_code == 503
    finally:
        await probe.check(await hub.app.state.dishka_container.get(ReadEngine))
    assert (await hub.client.get("/readyz")).status_code == 200


async def test_a_registration_past_max_directory_tokens_is_422_and_registers_nothing(clean_db: str) -> None:
    async with started_hub(test_settings(clean_db, max_directory_tokens=10)) as hub:
        first = await hub.client.post(
            "/v1/miners/register",
            json=miner_body("m-1", tags=[f"t{i}" for i in range(6)], capabilities=["c0", "c1", "c2"]),
        )
        assert first.status_code == 201
        # Known tokens cost nothing: a second miner with the same ones fits.
        same = await hub.client.post(
            "/v1/miners/register", json=miner_body("m-2", tags=["t0", "t5"], capabilities=["c2", "c3"])
        )
        assert same.status_code == 201
        over = await hub.client.post(
            "/v1/miners/register", json=miner_body("m-3", tags=["t0", "new-1", "new-2"])
        )
        assert over.status_code == 422, over.text
        assert "MAX_DIRECTORY_TOKENS=10" in over.json()["detail"]
        assert "m-3" in over.json()["detail"]
        listed = await hub.client.get("/v1/miners", headers=bearer(ADMIN))
        assert listed.headers["X-Total-Count"] == "2"
