"""The miner lifecycle over HTTP: register, beat, update, renew, logout, and the operator's view."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from poolhub.adapters.db.models import MinerRow, MinerStatusRow, PresenceIntervalRow, SessionRow
from poolhub.app.settings import Settings
from tests.integration.conftest import ADMIN, COORDINATOR, Hub, bearer, miner_body, register, started_hub


def parse_time(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value)


async def test_register_new_miner_is_201_with_a_lease(hub: Hub) -> None:
    response = await hub.client.post("/v1/miners/register", json=miner_body("m-1"))
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "registered"
    assert len(body["session_token"]) >= 32
    assert body["lease_ttl_sec"] == 120
    assert body["next_heartbeat_sec"] == 30
    expires = parse_time(body["lease_expires_at"])
    assert timedelta(seconds=110) < expires - datetime.now(expires.tzinfo) <= timedelta(seconds=120)


async def test_reregistering_with_the_same_key_is_200_and_revokes_the_old_token(hub: Hub) -> None:
    old = await register(hub.client, "m-1")
    response = await hub.client.post(
        "/v1/miners/register", json=miner_body("m-1", price_token_per_ksec="0.50", max_parallel=8)
    )
    assert response.status_code == 200
    new = response.json()["session_token"]
    assert new != old
    assert (await hub.client.post("/v1/miners/heartbeat", json={}, headers=bearer(old))).status_code == 401
    assert (await hub.client.post("/v1/miners/heartbeat", json={}, headers=bearer(new))).status_code == 200
    listed = (await hub.client.get("/v1/miners", headers=bearer(ADMIN))).json()
    assert listed[0]["price_token_per_ksec"] == "0.50"
    assert listed[0]["max_parallel"] == 8


async def test_reregistering_with_another_key_is_401_and_changes_nothing(hub: Hub) -> None:
    token = await register(hub.client, "m-1")
    response = await hub.client.post(
        "/v1/miners/register",
        json=miner_body("m-1", api_key="an-entirely-different-key", price_token_per_ksec="9.99"),
    )
    assert response.status_code == 401
    assert "api_key" in response.json()["detail"]
    assert (await hub.client.post("/v1/miners/heartbeat", json={}, headers=bearer(token))).status_code == 200
    listed = (await hub.client.get("/v1/miners", headers=bearer(ADMIN))).json()
    assert listed[0]["price_token_per_ksec"] == "0.75"


async def test_heartbeat_extends_the_lease_and_records_telemetry(hub: Hub) -> None:
    token = await register(hub.client, "m-1")
    first = (await hub.client.get("/v1/miners", headers=bearer(ADMIN))).json()[0]
    response = await hub.client.post(
        "/v1/miners/heartbeat",
        json={"ts": "2026-11-27T15:00:00+01:00", "queue_len": 2, "avg_latency_ms": 120.5, "temp_c": -5},
        headers=bearer(token),
    )
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert parse_time(response.json()["lease_expires_at"]) >= parse_time(first["lease_expires_at"])
    miner = (await hub.client.get("/v1/miners", headers=bearer(ADMIN))).json()[0]
    assert miner["queue_len"] == 2
    assert miner["avg_latency_ms"] == 120.5
    assert miner["online"] is True


async def test_update_reports_load_and_price(hub: Hub) -> None:
    token = await register(hub.client, "m-1")
    response = await hub.client.post(
        "/v1/miners/update",
        json={"queue_len": 3, "busy": True, "current_jobs": ["j-1", "j-2"], "price_token_per_ksec": "0.9"},
        headers=bearer(token),
    )
    assert response.status_code == 200
    miner = (await hub.client.get("/v1/miners", headers=bearer(ADMIN))).json()[0]
    assert miner["queue_len"] == 3
    assert miner["busy"] is True
    assert miner["price_token_per_ksec"] == "0.9"


async def test_renew_issues_a_new_token_and_revokes_the_old(hub: Hub) -> None:
    token = await register(hub.client, "m-1")
    response = await hub.client.post("/v1/miners/lease/renew", headers=bearer(token))
    assert response.status_code == 200
    renewed = response.json()["session_token"]
    assert renewed != token
    assert (await hub.client.post("/v1/miners/heartbeat", json={}, headers=bearer(token))).status_code == 401
    again = await hub.client.get("/v1/miners/lease/renew", headers=bearer(renewed))
    assert again.status_code == 200


async def test_logout_takes_the_miner_offline_at_once_and_revokes_the_token(hub: Hub) -> None:
    token = await register(hub.client, "m-1")
    response = await hub.client.post("/v1/miners/logout", headers=bearer(token))
    assert response.status_code == 200
    assert response.json() == {"status": "offline"}
    miner = (await hub.client.get("/v1/miners", headers=bearer(ADMIN))).json()[0]
    assert miner["online"] is False
    health = (await hub.client.get("/v1/health")).json()
    assert health["online_miners"] == 0
    assert (await hub.client.post("/v1/miners/heartbeat", json={}, headers=bearer(token))).status_code == 401
    # Registering again brings it back.
    await register(hub.client, "m-1")
    assert (await hub.client.get("/v1/health")).json()["online_miners"] == 1


async def test_roles_are_enforced_with_401_and_403(hub: Hub) -> None:
    token = await register(hub.client, "m-1")
    assert (await hub.client.post("/v1/miners/heartbeat", json={})).status_code == 401
    assert (await hub.client.post("/v1/miners/heartbeat", json={}, headers=bearer("nope"))).status_code == 401
    assert (await hub.client.post("/v1/miners/heartbeat", json={}, headers=bearer(ADMIN))).status_code == 403
    assert (
        await hub.client.post("/v1/miners/heartbeat", json={}, headers=bearer(COORDINATOR))
    ).status_code == 403
    assert (await hub.client.get("/v1/miners")).status_code == 401
    assert (await hub.client.get("/v1/miners", headers=bearer("nope"))).status_code == 401
    assert (await hub.client.get("/v1/miners", headers=bearer(token))).status_code == 403
    assert (await hub.client.get("/v1/miners", headers=bearer(COORDINATOR))).status_code == 403
    unauthorized = await hub.client.get("/v1/miners")
    assert unauthorized.json()["detail"]


async def test_list_miners_paginates_and_filters_online(hub: Hub) -> None:
    for i in range(5):
        await register(hub.client, f"m-{i}")
    token = await register(hub.client, "m-x")
    await hub.client.post("/v1/miners/logout", headers=bearer(token))
    response = await hub.client.get("/v1/miners?offset=1&limit=2", headers=bearer(ADMIN))
    assert response.status_code == 200
    assert [m["miner_id"] for m in response.json()] == ["m-1", "m-2"]
    assert response.headers["X-Total-Count"] == "6"
    online = await hub.client.get("/v1/miners?online=true", headers=bearer(ADMIN))
    assert online.headers["X-Total-Count"] == "5"
    offline = await hub.client.get("/v1/miners?online=false", headers=bearer(ADMIN))
    assert [m["miner_id"] for m in offline.json()] == ["m-x"]
    first = response.json()[0]
    assert first["trust_score"] == 0.5
    assert first["trust_samples"] == 0
    assert set(first) >= {
        "miner_id", "online", "lease_expires_at", "queue_len", "max_parallel", "trust_score", "trust_samples",
        "region", "gpu_name", "gpu_vram_gb", "gpu_count", "ram_gb", "accel", "price_token_per_ksec", "tags",
        "capabilities", "addr", "proto", "registered_at", "last_beat_at",
    }  # fmt: skip


async def test_beats_are_flushed_to_the_database_with_presence_and_session_expiry(
    hub: Hub, clean_db: str
) -> None:
    token = await register(hub.client, "m-1")
    await hub.client.post("/v1/miners/heartbeat", json={"queue_len": 3}, headers=bearer(token))
    await hub.flush()
    engine = create_async_engine(clean_db)
    async with engine.connect() as connection:
        status = (await connection.execute(select(MinerStatusRow.queue_len))).scalar_one()
        key_hash = (await connection.execute(select(MinerRow.api_key_hash))).scalar_one()
        intervals = (await connection.execute(select(PresenceIntervalRow.started_at))).all()
        sessions = (await connection.execute(select(SessionRow.token_hash, SessionRow.revoked_at))).all()
    await engine.dispose()
    assert status == 3
    assert "key-m-1" not in key_hash and len(key_hash) == 64
    assert len(intervals) == 1
    assert len(sessions) == 1 and token not in sessions[0][0] and sessions[0][1] is None


async def test_state_survives_a_restart(settings: Settings, hub: Hub) -> None:
    token = await register(hub.client, "m-1")
    await hub.client.post("/v1/miners/heartbeat", json={"queue_len": 1}, headers=bearer(token))
    await hub.flush()
    async with started_hub(settings) as other:
        listed = (await other.client.get("/v1/miners", headers=bearer(ADMIN))).json()
        assert [m["miner_id"] for m in listed] == ["m-1"]
        assert listed[0]["queue_len"] == 1
        # The token issued by the first process works in the second (read from the database on a miss).
        response = await other.client.post("/v1/miners/heartbeat", json={}, headers=bearer(token))
        assert response.status_code == 200
