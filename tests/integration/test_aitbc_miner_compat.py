"""The AITBC network's miner, monitoring and deployment against a real `poolhub serve` process.

The hub is configured only through the AITBC deployment's setting names (POOLHUB_COORDINATOR_*,
POOLHUB_POSTGRES_DSN on PostgreSQL); the miner's requests are built exactly as its code builds them.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from poolhub.app.tools.hubproc import ADMIN_TOKEN, HubProcess, start_hub
from tests.integration.coordinator_stub_server import CoordinatorStubServer

GRACE_SEC = 3
BEAT_EVERY_SEC = 1.0
BEATS = 5
COORDINATOR_SECRET = "aitbc-coordinator-shared-secret"
BILLING_KEY = "aitbc-coordinator-billing-key"

# --- The AITBC miner, as oib/AITBC apps/miner/production_miner.py builds its pool-hub requests --------
# Its environment: MINER_ID, MINER_AUTH_TOKEN (or MINER_API_KEY), MINER_ENDPOINT; nvidia-smi's answer
# (get_gpu_info) and the coordinator latency probe (measure_coordinator_latency) are fixed here.
MINER_ID = "aitbc3-shop-miner"
AUTH_TOKEN = "miner-auth-token-5f0c2a9e41d7"
MINER_ENDPOINT = "http://localhost:8101"
GPU_INFO = {"name": "NVIDIA GeForce RTX 4090", "memory_total": 24564, "memory_used": 4096, "utilization": 37}
CUDA_VERSION = "535.104.05"  # detect_cuda_version(): nvidia-smi's driver_version
# requests.post(json=…) sends json.dumps(body) with these headers besides the caller's.
REQUESTS_HEADERS = {
    "User-Agent": "python-requests/2.32.3",
    "Accept-Encoding": "gzip, deflate",
    "Accept": "*/*",
    "Connection": "keep-alive",
}


def build_gpu_capabilities() -> dict[str, Any]:
    """The fields of production_miner.build_gpu_capabilities() that the pool-hub payload reads."""
    return {
        "cuda": CUDA_VERSION,
        "price": 0.01,
        "region": "localhost",
        "platform": "CUDA",
        "supported_tasks": ["inference", "training", "stable-diffusion", "llama", "transcribe", "reencode"],
        "max_concurrent_jobs": 1,
    }


def build_pool_hub_register_data() -> dict[str, Any]:
    caps = build_gpu_capabilities()
    return {
        "miner_id": MINER_ID,
        "api_key": AUTH_TOKEN,
        "addr": MINER_ENDPOINT,
        "proto": "http",
        "gpu_vram_gb": GPU_INFO["memory_total"] / 1024,  # type: ignore[operator]
        "gpu_name": GPU_INFO["name"],
        "cpu_cores": os.cpu_count() or 1,
        "ram_gb": 16.0,
        "max_parallel": caps.get("max_concurrent_jobs", 1),
        "base_price": str(caps.get("price", 0.01)),
        "tags": {"platform": caps.get("platform", "CPU"), "cuda": caps.get("cuda", "unknown")},
        "capabilities": caps.get("supported_tasks", ["inference"]),
        "region": caps.get("region", "localhost"),
    }


def build_pool_hub_heartbeat_data(latency_ms: float) -> dict[str, Any]:
    return {
        "status": "active",
        "current_jobs": 0,
        "gpu_utilization": GPU_INFO["utilization"],
        "memory_used": GPU_INFO["memory_used"],
        "memory_total": GPU_INFO["memory_total"],
        "network_latency_ms": latency_ms,
    }


def register_pool_hub_request() -> tuple[dict[str, str], bytes]:
    """register_pool_hub(): no Authorization; the answer (and its session token) is ignored."""
    return {**REQUESTS_HEADERS, "Content-Type": "application/json"}, json.dumps(
        build_pool_hub_register_data()
    ).encode()


def send_pool_hub_heartbeat_request(latency_ms: float) -> tuple[dict[str, str], bytes]:
    """send_pool_hub_heartbeat(): the API key as the bearer token, every HEARTBEAT_INTERVAL."""
    headers = {
        **REQUESTS_HEADERS,
        "Authorization": f"Bearer {AUTH_TOKEN}",
        "Content-Type": "application/json",
    }
    return headers, json.dumps(build_pool_hub_heartbeat_data(latency_ms)).encode()


# --- the hub, configured through the AITBC deployment's names ------------------------------------------


def _plain_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@pytest.fixture
def stub() -> AsyncIterator[CoordinatorStubServer]:
    with CoordinatorStubServer(api_key=BILLING_KEY) as server:
        yield server


@pytest.fixture
async def aitbc_hub(clean_db: str, stub: CoordinatorStubServer, tmp_path: Path) -> AsyncIterator[HubProcess]:
    aliases = {
        "POOLHUB_COORDINATOR_SHARED_SECRET": COORDINATOR_SECRET,
        "POOLHUB_COORDINATOR_BILLING_URL": stub.base_url,
        "POOLHUB_COORDINATOR_API_KEY": BILLING_KEY,
        "HEARTBEAT_GRACE_SEC": str(GRACE_SEC),
    }
    unset = ["COORDINATOR_SHARED_SECRET", "COORDINATOR_BILLING_URL", "COORDINATOR_API_KEY"]
    if clean_db.startswith("postgresql"):
        aliases["POOLHUB_POSTGRES_DSN"] = _plain_dsn(clean_db)
        unset.append("DATABASE_URL")
    hub = await start_hub(
        clean_db,
        log_path=tmp_path / "hub.log",
        extra_env=aliases,
        unset_env=tuple(unset),
        cwd=tmp_path,  # no .env there: only the names above configure it
    )
    try:
        yield hub
    finally:
        hub.stop()


def _admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def _miner(client: httpx.AsyncClient) -> dict[str, Any]:
    listed = await client.get("/v1/miners", headers=_admin())
    assert listed.status_code == 200, listed.text
    found: dict[str, Any] = next(m for m in listed.json() if m["miner_id"] == MINER_ID)
    return found


async def _match(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.post(
        "/v1/match",
        json={
            "job_id": "job-aitbc-1",
            "tenant_id": "shop",
            "requirements": {"accel": ["cuda"], "min_vram_gb": 16, "capabilities_any": ["inference"]},
            "top_k": 3,
        },
        headers={"Authorization": f"Bearer {COORDINATOR_SECRET}"},
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def test_the_aitbc_miner_registers_beats_with_its_api_key_and_lapses_when_it_stops(
    aitbc_hub: HubProcess, clean_db: str
) -> None:
    async with httpx.AsyncClient(base_url=aitbc_hub.url, timeout=10) as client:
        headers, body = register_pool_hub_request()
        registered = await client.post("/v1/miners/register", content=body, headers=headers)
        assert registered.status_code == 201, registered.text

        last_lease = ""
        for beat in range(BEATS):
            started = time.monotonic()
            # The last beat could not measure the coordinator's latency: -1.0, which means unknown.
            headers, body = send_pool_hub_heartbeat_request(12.5 if beat < BEATS - 1 else -1.0)
            answer = await client.post("/v1/miners/heartbeat", content=body, headers=headers)
            assert answer.status_code == 200, answer.text
            assert answer.json()["lease_expires_at"] > last_lease
            last_lease = answer.json()["lease_expires_at"]
            shown = await _miner(client)
            assert shown["online"] is True, f"offline after beat {beat}"
            await asyncio.sleep(max(0.0, BEAT_EVERY_SEC - (time.monotonic() - started)))
        last_beat = time.monotonic()

        shown = await _miner(client)
        assert shown["online"] is True
        assert shown["gpu_utilization_pct"] == 37
        assert shown["avg_latency_ms"] == 12.5
        assert shown["mem_free_gb"] == pytest.approx((24564 - 4096) / 1024)
        assert (shown["accel"], shown["price_token_per_ksec"], shown["addr"]) == (
            "cuda",
            "0.01",
            MINER_ENDPOINT,
        )
        assert shown["tags"] == ["platform:CUDA", f"cuda:{CUDA_VERSION}"]
        assert shown["busy"] is False

        match = await _match(client)
        assert [c["miner_id"] for c in match["candidates"]] == [MINER_ID]
        assert match["candidates"][0]["eta_ms"] == 12.5

        # Monitoring: the health gate, Prometheus and the CLI's SLA path.
        health = await client.get("/health")
        assert (health.status_code, health.json()["online_miners"]) == (200, 1)
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert "poolhub_miners_online 1.0" in metrics.text
        assert f"poolhub_heartbeats_total {float(BEATS)}" in metrics.text
        sla = await client.get("/v1/sla/status", headers=_admin())
        assert (sla.status_code, sla.json()["status"]) == (200, "healthy")

        # It stops beating: offline once the grace has passed, not before.
        while (await _miner(client))["online"]:
            assert time.monotonic() - last_beat < GRACE_SEC + 5, "still online long after the grace"
            await asyncio.sleep(0.2)
        assert time.monotonic() - last_beat >= GRACE_SEC - 1.5
        assert (await client.get("/health")).json()["online_miners"] == 0
        match = await _match(client)
        assert match["candidates"] == []
        assert "offline=1" in match["explain"]

    # The hub wrote to the database the deployment's DSN names.
    engine = create_async_engine(clean_db)
    async with engine.connect() as connection:
        stored = (await connection.execute(text("SELECT miner_id, accel FROM miners"))).all()
    await engine.dispose()
    assert [tuple(row) for row in stored] == [(MINER_ID, "cuda")]


async def test_billing_reaches_the_coordinator_named_by_the_aitbc_settings(
    aitbc_hub: HubProcess, stub: CoordinatorStubServer
) -> None:
    async with httpx.AsyncClient(base_url=aitbc_hub.url, timeout=10) as client:
        recorded = await client.post(
            "/v1/sla/billing/usage/record",
            json={"tenant_id": "shop", "resource_type": "gpu_hours", "quantity": 10.5},
            headers=_admin(),
        )
        assert recorded.status_code == 201, recorded.text
        assert recorded.json()["quantity"] == "10.5"
        synced = await client.post("/v1/sla/billing/sync", headers=_admin())
        assert synced.status_code == 200, synced.text
        assert synced.json()["records_sent"] == 1
    events = stub.events()
    assert [e["body"]["quantity"] for e in events] == ["10.5"]
    assert stub.snapshot()["last_request"]["authorized"] is True
