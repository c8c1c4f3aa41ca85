"""What the AITBC network's clients send, in-process: registration forms, API-key beats, the miner's
heartbeat fields, the route aliases, and decimals given as JSON numbers."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from poolhub.adapters.db.models import MinerStatusRow
from poolhub.app.settings import Settings
from tests.integration.conftest import ADMIN, COORDINATOR, Hub, bearer, miner_body, register, started_hub

API_KEY = "aitbc-auth-token-0123456789"


def aitbc_body(miner_id: str = "shop-1", **overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "miner_id": miner_id,
        "api_key": API_KEY,
        "addr": "http://10.0.0.9:8101",
        "proto": "http",
        "gpu_vram_gb": 24564 / 1024,
        "gpu_name": "NVIDIA GeForce RTX 4090",
        "cpu_cores": 16,
        "ram_gb": 16.0,
        "max_parallel": 1,
        "base_price": "0.01",
        "tags": {"platform": "CUDA", "cuda": "535.104.05"},
        "capabilities": ["inference", "llama"],
        "region": "localhost",
    }
    body.update(overrides)
    return body


async def miner(hub: Hub, miner_id: str) -> dict[str, Any]:
    listed = (await hub.client.get("/v1/miners", headers=bearer(ADMIN))).json()
    found: dict[str, Any] = next(m for m in listed if m["miner_id"] == miner_id)
    return found


async def test_an_aitbc_registration_is_read_as_the_contract_s(hub: Hub) -> None:
    response = await hub.client.post("/v1/miners/register", json=aitbc_body())
    assert response.status_code == 201, response.text
    shown = await miner(hub, "shop-1")
    assert shown["price_token_per_ksec"] == "0.01"
    assert shown["tags"] == ["platform:CUDA", "cuda:535.104.05"]
    assert shown["accel"] == "cuda"  # from the platform tag, lower-cased
    assert shown["addr"] == "http://10.0.0.9:8101"
    assert shown["region"] == "localhost"


@pytest.mark.parametrize(
    ("tags", "accel", "expected"),
    [
        ({"platform": "CPU"}, None, "cpu"),
        ({"platform": "ROCm"}, None, "rocm"),
        ({"platform": "Metal"}, None, "metal"),
        ({"platform": "TPU"}, None, "cuda"),  # not a known accelerator: the default stays
        ({"cuda": "12"}, None, "cuda"),
        ({"platform": "CPU"}, "rocm", "rocm"),  # an explicit accel wins
    ],
)
async def test_accel_comes_from_a_known_platform_tag_only_when_absent(
    hub: Hub, tags: dict[str, str], accel: str | None, expected: str
) -> None:
    overrides: dict[str, object] = {"tags": tags}
    if accel is not None:
        overrides["accel"] = accel
    assert (await hub.client.post("/v1/miners/register", json=aitbc_body(**overrides))).status_code == 201
    assert (await miner(hub, "shop-1"))["accel"] == expected


async def test_tag_object_values_are_stored_as_text(hub: Hub) -> None:
    body = aitbc_body(tags={"gpus": 2, "ecc": True, "tflops": 82.6})
    assert (await hub.client.post("/v1/miners/register", json=body)).status_code == 201
    assert (await miner(hub, "shop-1"))["tags"] == ["gpus:2", "ecc:true", "tflops:82.6"]


async def test_base_price_and_price_token_per_ksec_must_agree(hub: Hub) -> None:
    same = aitbc_body(price_token_per_ksec="0.010", base_price="0.01")
    assert (await hub.client.post("/v1/miners/register", json=same)).status_code == 201
    differ = aitbc_body("shop-2", price_token_per_ksec="0.02", base_price="0.01")
    response = await hub.client.post("/v1/miners/register", json=differ)
    assert response.status_code == 400
    assert "base_price" in response.json()["detail"]
    listed = await hub.client.get("/v1/miners", headers=bearer(ADMIN))
    assert listed.headers["X-Total-Count"] == "1"


async def test_a_price_as_a_json_number_is_decoded_exactly_and_answered_as_a_string(hub: Hub) -> None:
    body = miner_body("m-1", price_token_per_ksec=0.123456789012)
    assert (await hub.client.post("/v1/miners/register", json=body)).status_code == 201
    assert (await miner(hub, "m-1"))["price_token_per_ksec"] == "0.123456789012"
    match = await hub.client.post(
        "/v1/match",
        json={"job_id": "j-1", "hints": {"max_price": 0.2}, "top_k": 1},
        headers=bearer(COORDINATOR),
    )
    assert match.status_code == 200
    assert match.json()["candidates"][0]["price"] == "0.123456789012"


async def test_usage_quantity_10_5_as_a_number_is_recorded_exactly(hub: Hub) -> None:
    # The AITBC pool hub's own tests post usage with `quantity: 10.5`.
    response = await hub.client.post(
        "/sla/billing/usage/record",
        json={"tenant_id": "acme", "resource_type": "gpu_hours", "quantity": 10.5, "unit_price": 0.5},
        headers=bearer(ADMIN),
    )
    assert response.status_code == 201, response.text
    line = response.json()
    assert (line["quantity"], line["unit_price"]) == ("10.5", "0.5")
    assert Decimal(line["amount"]) == Decimal("5.25")


async def test_a_beat_with_the_api_key_keeps_the_miner_online(hub: Hub) -> None:
    assert (await hub.client.post("/v1/miners/register", json=aitbc_body())).status_code == 201
    before = await miner(hub, "shop-1")
    beat = {
        "status": "active",
        "current_jobs": 1,
        "gpu_utilization": 37,
        "memory_used": 4096,
        "memory_total": 24564,
        "network_latency_ms": 12.5,
        "last_seen": "2026-12-07T10:00:00+00:00",  # unknown fields are ignored
        "architecture": "ada_lovelace",
    }
    response = await hub.client.post("/v1/miners/heartbeat", json=beat, headers=bearer(API_KEY))
    assert response.status_code == 200, response.text
    assert response.json()["lease_expires_at"] >= before["lease_expires_at"]
    shown = await miner(hub, "shop-1")
    assert shown["online"] is True
    assert shown["queue_len"] == 1
    assert shown["busy"] is False
    assert shown["gpu_utilization_pct"] == 37
    assert shown["avg_latency_ms"] == 12.5
    assert shown["mem_free_gb"] == pytest.approx((24564 - 4096) / 1024)
    assert shown["last_beat_at"] > before["last_beat_at"]

    # -1.0 means the miner could not measure: the last known latency stays.
    unknown = {**beat, "network_latency_ms": -1.0, "current_jobs": 0, "gpu_utilization": 5}
    assert (
        await hub.client.post("/v1/miners/heartbeat", json=unknown, headers=bearer(API_KEY))
    ).status_code == 200
    shown = await miner(hub, "shop-1")
    assert (shown["avg_latency_ms"], shown["queue_len"], shown["gpu_utilization_pct"]) == (12.5, 0, 5)


@pytest.mark.parametrize(
    ("status", "busy"),
    [("active", False), ("IDLE", False), ("ONLINE", False), ("busy", True), ("maintenance", True)],
)
async def test_a_status_word_other_than_active_idle_online_means_busy(
    hub: Hub, status: str, busy: bool
) -> None:
    assert (await hub.client.post("/v1/miners/register", json=aitbc_body())).status_code == 201
    beat = {"status": status, "current_jobs": 0}
    assert (
        await hub.client.post("/v1/miners/heartbeat", json=beat, headers=bearer(API_KEY))
    ).status_code == 200
    assert (await miner(hub, "shop-1"))["busy"] is busy
    match = await hub.client.post(
        "/v1/match", json={"job_id": "j-1", "top_k": 1}, headers=bearer(COORDINATOR)
    )
    assert len(match.json()["candidates"]) == (0 if busy else 1)


async def test_current_jobs_as_a_count_gives_way_to_queue_len_and_a_list_stays_job_ids(hub: Hub) -> None:
    token = await register(hub.client, "m-1")
    beats = [({"current_jobs": 3, "queue_len": 1}, 1), ({"current_jobs": 2}, 2), ({"current_jobs": ["a"]}, 2)]
    for body, expected in beats:
        assert (
            await hub.client.post("/v1/miners/heartbeat", json=body, headers=bearer(token))
        ).status_code == 200
        assert (await miner(hub, "m-1"))["queue_len"] == expected
    update = await hub.client.post("/v1/miners/update", json={"current_jobs": 4}, headers=bearer(API_KEY))
    assert update.status_code == 401  # m-1 registered with another key
    key = str(miner_body("m-1")["api_key"])
    update = await hub.client.post("/v1/miners/update", json={"current_jobs": 4}, headers=bearer(key))
    assert update.status_code == 200
    assert (await miner(hub, "m-1"))["queue_len"] == 4


async def test_an_api_key_shared_by_two_miners_is_409_pointing_at_the_session_token(hub: Hub) -> None:
    first = await hub.client.post("/v1/miners/register", json=aitbc_body("shop-1"))
    second = await hub.client.post("/v1/miners/register", json=aitbc_body("shop-2"))
    assert (first.status_code, second.status_code) == (201, 201)
    response = await hub.client.post("/v1/miners/heartbeat", json={}, headers=bearer(API_KEY))
    assert response.status_code == 409
    assert "session_token" in response.json()["detail"]
    token = second.json()["session_token"]
    assert (await hub.client.post("/v1/miners/heartbeat", json={}, headers=bearer(token))).status_code == 200


async def test_a_cached_api_key_turns_409_once_another_miner_registers_with_it(hub: Hub) -> None:
    assert (await hub.client.post("/v1/miners/register", json=aitbc_body("shop-1"))).status_code == 201
    assert (
        await hub.client.post("/v1/miners/heartbeat", json={}, headers=bearer(API_KEY))
    ).status_code == 200
    assert (await hub.client.post("/v1/miners/register", json=aitbc_body("shop-2"))).status_code == 201
    assert (
        await hub.client.post("/v1/miners/heartbeat", json={}, headers=bearer(API_KEY))
    ).status_code == 409


async def test_the_api_key_is_no_session_token_elsewhere(hub: Hub) -> None:
    assert (await hub.client.post("/v1/miners/register", json=aitbc_body())).status_code == 201
    assert (await hub.client.post("/v1/miners/lease/renew", headers=bearer(API_KEY))).status_code == 401
    assert (await hub.client.post("/v1/miners/logout", headers=bearer(API_KEY))).status_code == 401
    assert (await hub.client.get("/v1/miners", headers=bearer(API_KEY))).status_code == 401
    wrong = await hub.client.post("/v1/miners/heartbeat", json={}, headers=bearer("not-the-key-0123456789"))
    assert wrong.status_code == 401


async def test_aitbc_heartbeat_values_out_of_range_are_400_and_change_nothing(hub: Hub) -> None:
    assert (await hub.client.post("/v1/miners/register", json=aitbc_body())).status_code == 201
    for body in ({"gpu_utilization": 101}, {"memory_total": -1}, {"current_jobs": -2}, {"status": 5}):
        response = await hub.client.post("/v1/miners/heartbeat", json=body, headers=bearer(API_KEY))
        assert response.status_code == 400, (body, response.text)
    shown = await miner(hub, "shop-1")
    assert (shown["gpu_utilization_pct"], shown["queue_len"], shown["busy"]) == (None, 0, False)


async def test_the_aliases_answer_as_their_routes_with_the_same_roles(hub: Hub) -> None:
    await register(hub.client, "m-1")
    health, canonical = await hub.client.get("/health"), await hub.client.get("/v1/health")
    assert health.status_code == canonical.status_code == 200
    assert health.json() == canonical.json()
    assert health.json()["online_miners"] == 1
    metrics = await hub.client.get("/metrics")
    assert metrics.status_code == 200
    assert "poolhub_miners_online 1.0" in metrics.text
    for path in ("/v1/sla/status", "/v1/sla/violations", "/v1/sla/billing/usage"):
        assert (await hub.client.get(path, headers=bearer(ADMIN))).status_code == 200, path
        assert (await hub.client.get(path, headers=bearer(COORDINATOR))).status_code == 403, path
        assert (await hub.client.get(path)).status_code == 401, path
    status = (await hub.client.get("/v1/sla/status", headers=bearer(ADMIN))).json()
    assert status["status"] == "healthy"


async def test_the_openapi_schema_marks_each_alias(hub: Hub) -> None:
    paths = (await hub.client.get("/schema/openapi.json")).json()["paths"]
    health = paths["/health"]["get"]
    assert "aliases" in health["tags"]
    assert "Alias of `GET /v1/health`" in health["description"]
    assert (
        "Alias of `GET /sla/metrics/{miner_id}`" in paths["/v1/sla/metrics/{miner_id}"]["get"]["description"]
    )
    assert "aliases" not in paths["/v1/health"]["get"]["tags"]


async def test_the_openapi_schema_says_decimals_take_a_number_or_a_string(hub: Hub) -> None:
    schemas = (await hub.client.get("/schema/openapi.json")).json()["components"]["schemas"]
    for struct, field in [
        ("MinerRegister", "price_token_per_ksec"),
        ("MinerRegister", "base_price"),
        ("MatchHints", "max_price"),
        ("UsageRecordCreate", "quantity"),
        ("UsageRecordCreate", "unit_price"),
    ]:
        kinds = {alt.get("type") for alt in schemas[struct]["properties"][field]["oneOf"]}
        assert {"string", "number"} <= kinds, (struct, field)
        assert kinds == {"string", "number", "null"} if field != "quantity" else {"string", "number"}


async def test_a_tags_object_holds_what_its_schema_says(hub: Hub) -> None:
    # keys of at most 64 and values of at most 63 characters: every "key:value" fits a 128-character tag
    longest = aitbc_body(tags={"k" * 64: "v" * 63})
    assert (await hub.client.post("/v1/miners/register", json=longest)).status_code == 201
    too_long = aitbc_body("shop-2", tags={"platform": "v" * 64})
    response = await hub.client.post("/v1/miners/register", json=too_long)
    assert response.status_code == 400
    assert "tags" in response.text
    schemas = (await hub.client.get("/schema/openapi.json")).json()["components"]["schemas"]
    tags = schemas["MinerRegister"]["properties"]["tags"]["anyOf"]
    values = next(branch for branch in tags if branch["type"] == "object")["additionalProperties"]["anyOf"]
    assert {"type": "string", "maxLength": 63} in [
        {k: v for k, v in alt.items() if k in ("type", "maxLength")} for alt in values
    ]


async def test_after_a_logout_the_session_token_stays_refused_and_the_api_key_brings_the_miner_back(
    settings: Settings, hub: Hub, clean_db: str
) -> None:
    registered = await hub.client.post("/v1/miners/register", json=aitbc_body())
    token = registered.json()["session_token"]
    assert (await hub.client.post("/v1/miners/logout", headers=bearer(token))).status_code == 200
    assert (await hub.client.post("/v1/miners/heartbeat", json={}, headers=bearer(token))).status_code == 401
    assert (await miner(hub, "shop-1"))["online"] is False
    beat = await hub.client.post(
        "/v1/miners/heartbeat", json={"gpu_utilization": 40}, headers=bearer(API_KEY)
    )
    assert beat.status_code == 200, beat.text
    shown = await miner(hub, "shop-1")
    assert (shown["online"], shown["gpu_utilization_pct"]) == (True, 40)
    # Saved before the answer, and not undone by the beat flush (which never touches a logged-out row).
    await hub.flush()
    engine = create_async_engine(clean_db)
    async with engine.connect() as connection:
        logged_out_at = (
            await connection.execute(
                select(MinerStatusRow.logged_out_at).where(MinerStatusRow.miner_id == "shop-1")
            )
        ).scalar_one()
    await engine.dispose()
    assert logged_out_at is None
    async with started_hub(settings) as other:
        listed = (await other.client.get("/v1/miners", headers=bearer(ADMIN))).json()
        assert [(m["miner_id"], m["online"], m["gpu_utilization_pct"]) for m in listed] == [
            ("shop-1", True, 40)
        ]
