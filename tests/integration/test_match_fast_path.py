"""POST /v1/match's fast path answers exactly what the framework route answers, errors included."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from poolhub.adapters.db.models import MatchRecordRow
from poolhub.app.main import PoolHub
from poolhub.app.settings import Settings, parse_rate_limits
from tests.integration.conftest import (
    ADMIN,
    COORDINATOR,
    Hub,
    LiveServer,
    bearer,
    register,
    started_hub,
    test_settings,
)

CAP = "sentence-transformers/all-MiniLM-L6-v2"
GOOD_BODY = {
    "job_id": "job-1",
    "tenant_id": "acme",
    "requirements": {"min_vram_gb": 16, "accel": ["cuda"], "capabilities_any": [CAP, "other/model"]},
    "hints": {"region": "eu"},
    "top_k": 3,
    "explain_miner": "m-small",
}


async def _pool(client: httpx.AsyncClient) -> str:
    await register(client, "m-small", gpu_vram_gb=8, price_token_per_ksec="0.20")
    await register(client, "m-eu", gpu_vram_gb=24, price_token_per_ksec="0.50")
    await register(client, "m-eu-2", gpu_vram_gb=48, price_token_per_ksec="0.50")
    await register(client, "m-us", gpu_vram_gb=80, region="us", capabilities=["other/model"])
    return await register(client, "m-last", gpu_vram_gb=24, price_token_per_ksec="0.45")


def _app(hub: Hub) -> PoolHub:
    assert isinstance(hub.app, PoolHub)
    return hub.app


async def _both_ways(hub: Hub, **request: object) -> tuple[httpx.Response, httpx.Response]:
    """The same request answered by the fast path, then with the fast path switched off."""
    app = _app(hub)
    fast_paths = app.fast_paths
    assert "/v1/match" in fast_paths, "the fast path is on by default"
    fast = await hub.client.post("/v1/match", **request)  # type: ignore[arg-type]
    app.fast_paths = {}
    try:
        framework = await hub.client.post("/v1/match", **request)  # type: ignore[arg-type]
    finally:
        app.fast_paths = fast_paths
    return fast, framework


def _same_answer(fast: httpx.Response, framework: httpx.Response) -> None:
    assert fast.status_code == framework.status_code
    assert fast.content == framework.content
    assert fast.headers["content-type"] == framework.headers["content-type"]
    assert fast.headers["content-length"] == framework.headers["content-length"]
    assert fast.headers["x-request-id"] != framework.headers["x-request-id"]


async def test_a_match_answers_the_same_bytes_either_way_and_both_are_recorded(
    hub: Hub, settings: Settings
) -> None:
    await _pool(hub.client)
    fast, framework = await _both_ways(hub, json=GOOD_BODY, headers=bearer(COORDINATOR))
    assert fast.status_code == 200
    answer = fast.json()
    assert [c["miner_id"] for c in answer["candidates"]] == ["m-last", "m-eu", "m-eu-2"]
    assert answer["miner_explanation"]["failed"] == ["vram"]
    _same_answer(fast, framework)
    # A caller's request id is echoed by both.
    echoed = await hub.client.post(
        "/v1/match", json=GOOD_BODY, headers={**bearer(COORDINATOR), "X-Request-Id": "coord-42"}
    )
    assert echoed.headers["x-request-id"] == "coord-42"
    await hub.flush()
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as connection:
            recorded = await connection.scalar(
                select(func.count()).select_from(MatchRecordRow).where(MatchRecordRow.job_id == "job-1")
            )
    finally:
        await engine.dispose()
    assert recorded == 3
    metrics = (await hub.client.get("/v1/metrics")).text
    assert "poolhub_match_requests_total 3.0" in metrics
    assert 'poolhub_match_rejections_total{reason="vram"} 3.0' in metrics


BIG = "x" * (1024 * 1024 + 10)


@pytest.mark.parametrize(
    ("case", "request_args"),
    [
        ("no token", {"json": GOOD_BODY}),
        ("unknown token", {"json": GOOD_BODY, "headers": bearer("not-a-token")}),
        ("operator token", {"json": GOOD_BODY, "headers": bearer(ADMIN)}),
        (
            "not JSON",
            {"content": b"job_id=1", "headers": {**bearer(COORDINATOR), "Content-Type": "text/plain"}},
        ),
        ("bad field", {"json": {**GOOD_BODY, "top_k": 0}, "headers": bearer(COORDINATOR)}),
        ("string for an int", {"json": {**GOOD_BODY, "top_k": "3"}, "headers": bearer(COORDINATOR)}),
        ("control character", {"json": {**GOOD_BODY, "job_id": "j\u0000"}, "headers": bearer(COORDINATOR)}),
        (
            "empty body",
            {"content": b"", "headers": {**bearer(COORDINATOR), "Content-Type": "application/json"}},
        ),
        (
            "broken JSON",
            {
                "content": b'{"job_id": ',
                "headers": {**bearer(COORDINATOR), "Content-Type": "application/json"},
            },
        ),
        ("over 1 MiB", {"json": {**GOOD_BODY, "job_id": BIG}, "headers": bearer(COORDINATOR)}),
        (
            "a bad token first, the coordinator's second",
            {"json": GOOD_BODY, "headers": [("Authorization", "Bearer nope"), *bearer(COORDINATOR).items()]},
        ),
    ],
)
async def test_every_refusal_is_the_framework_routes_own(
    hub: Hub, case: str, request_args: dict[str, object]
) -> None:
    miner_token = await _pool(hub.client)
    fast, framework = await _both_ways(hub, **request_args)
    assert 400 <= fast.status_code < 500, case
    assert fast.json()["detail"], case
    _same_answer(fast, framework)
    as_miner = await hub.client.post("/v1/match", json=GOOD_BODY, headers=bearer(miner_token))
    assert as_miner.status_code == 403


@pytest.fixture
async def limited_hub(clean_db: str) -> AsyncIterator[Hub]:
    settings = test_settings(clean_db, rate_limits=parse_rate_limits("auth_failures:30/minute"))
    async with started_hub(settings) as running:
        yield running


async def test_an_address_locked_out_for_failed_tokens_gets_429_even_with_the_coordinator_token(
    limited_hub: Hub,
) -> None:
    await _pool(limited_hub.client)
    transport = httpx.ASGITransport(app=limited_hub.app, client=("198.51.100.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://poolhub.test") as attacker:
        assert (
            await attacker.post("/v1/match", json=GOOD_BODY, headers=bearer(COORDINATOR))
        ).status_code == 200
        for i in range(30):
            guessed = await attacker.post("/v1/match", json=GOOD_BODY, headers=bearer(f"guess-{i}"))
            assert guessed.status_code == 401
        locked = await attacker.post("/v1/match", json=GOOD_BODY, headers=bearer(COORDINATOR))
        assert locked.status_code == 429
        assert "failed authentications" in locked.json()["detail"]
    other = await limited_hub.client.post("/v1/match", json=GOOD_BODY, headers=bearer(COORDINATOR))
    assert other.status_code == 200


async def test_a_match_limit_leaves_matching_to_the_framework_route(clean_db: str) -> None:
    settings = test_settings(clean_db, rate_limits=parse_rate_limits("match:2/minute"))
    async with started_hub(settings) as hub:
        assert "/v1/match" not in _app(hub).fast_paths
        answers = [
            await hub.client.post("/v1/match", json=GOOD_BODY, headers=bearer(COORDINATOR)) for _ in range(3)
        ]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[0].headers["RateLimit-Limit"] == "2"


async def test_a_body_sent_in_many_pieces_over_a_socket_is_matched(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.url) as client:
        await _pool(client)
        # Whitespace is valid JSON: a 300 kB body reaches the app in many `http.request` messages.
        padded = b'{"job_id": "job-1",' + b" " * 300_000 + b'"top_k": 3}'
        compact = b'{"job_id": "job-1", "top_k": 3}'

        async def pieces() -> AsyncIterator[bytes]:
            for start in range(0, len(padded), 16_384):
                yield padded[start : start + 16_384]

        headers = {**bearer(COORDINATOR), "Content-Type": "application/json"}
        chunked = await client.post("/v1/match", content=pieces(), headers=headers)
        plain = await client.post("/v1/match", content=compact, headers=headers)
    assert chunked.status_code == 200, chunked.text
    assert chunked.content == plain.content
    assert len(chunked.json()["candidates"]) == 3
