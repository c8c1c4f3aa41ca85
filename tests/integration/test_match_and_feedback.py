"""The coordinator's view: match with explanations, feedback moving trust, metrics, several processes."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from poolhub.adapters.db.models import FeedbackRow, MatchRecordRow
from poolhub.app.settings import Settings
from tests.integration.conftest import (
    ADMIN,
    COORDINATOR,
    Hub,
    bearer,
    register,
    started_hub,
    test_settings,
)

CAP = "sentence-transformers/all-MiniLM-L6-v2"


def job(job_id: str = "job-1", **fields: object) -> dict[str, object]:
    body: dict[str, object] = {"job_id": job_id, "tenant_id": "acme", "top_k": 3}
    body.update(fields)
    return body


async def match(hub: Hub, **fields: object) -> dict[str, object]:
    response = await hub.client.post("/v1/match", json=job(**fields), headers=bearer(COORDINATOR))
    assert response.status_code == 200, response.text
    return dict(response.json())


async def pool(hub: Hub) -> None:
    await register(hub.client, "m-cheap", price_token_per_ksec="0.20", region="eu", gpu_vram_gb=8)
    await register(hub.client, "m-mid", price_token_per_ksec="0.50", region="eu", gpu_vram_gb=24)
    await register(hub.client, "m-dear", price_token_per_ksec="0.90", region="us", gpu_vram_gb=80)


async def test_match_ranks_eligible_miners_and_counts_every_rejection(hub: Hub) -> None:
    await pool(hub)
    answer = await match(
        hub,
        requirements={"min_vram_gb": 16, "capabilities_any": [CAP]},
        hints={"region": "eu", "max_price": "0.8"},
    )
    assert [c["miner_id"] for c in answer["candidates"]] == ["m-mid"]
    candidate = answer["candidates"][0]
    assert candidate["price"] == "0.50"
    assert candidate["addr"] == "10.0.0.7:9000" and candidate["proto"] == "grpc"
    assert candidate["matched_capabilities"] == [CAP]
    assert candidate["explain"].startswith("cap=1.00 • price=0.38 • latency=0.50 • trust=0.50 • load=1.00")
    # m-dear fails region and price; m-cheap fails vram: every failed constraint is counted.
    assert answer["explain"] == "considered=3 • rejected: vram=1 region=1 price=1 • returned=1"


async def test_candidates_are_sorted_by_score_then_price_and_capped_at_top_k(hub: Hub) -> None:
    await pool(hub)
    answer = await match(hub, top_k=2)
    scores = [c["score"] for c in answer["candidates"]]
    assert len(scores) == 2
    assert scores == sorted(scores, reverse=True)
    assert answer["candidates"][0]["miner_id"] == "m-cheap"
    assert answer["explain"].endswith("returned=2")


async def test_no_eligible_miner_is_an_empty_list_with_the_reasons(hub: Hub) -> None:
    await pool(hub)
    answer = await match(hub, requirements={"min_vram_gb": 200})
    assert answer["candidates"] == []
    assert answer["explain"] == "considered=3 • rejected: vram=3 • returned=0"


async def test_offline_and_logged_out_miners_are_never_returned(hub: Hub) -> None:
    await pool(hub)
    token = await register(hub.client, "m-gone")
    await hub.client.post("/v1/miners/logout", headers=bearer(token))
    answer = await match(hub, top_k=10)
    assert "m-gone" not in [c["miner_id"] for c in answer["candidates"]]
    assert "offline=1" in str(answer["explain"])


async def test_an_expired_lease_is_checked_at_match_time(clean_db: str) -> None:
    async with started_hub(test_settings(clean_db, heartbeat_grace_sec=1)) as hub:
        await register(hub.client, "m-short")
        assert len((await match(hub))["candidates"]) == 1
        await asyncio.sleep(1.1)
        answer = await match(hub)
        assert answer["candidates"] == []
        assert answer["explain"] == "considered=1 • rejected: offline=1 • returned=0"


async def test_explain_miner_says_why_a_miner_was_not_returned(hub: Hub) -> None:
    await pool(hub)
    answer = await match(
        hub, requirements={"min_vram_gb": 16}, hints={"region": "eu"}, explain_miner="m-dear"
    )
    why = answer["miner_explanation"]
    assert why["registered"] is True
    assert why["eligible"] is False
    assert why["failed"] == ["region"]
    assert why["returned"] is False
    ranked = await match(hub, explain_miner="m-mid", top_k=1)
    assert ranked["miner_explanation"]["eligible"] is True
    assert ranked["miner_explanation"]["rank"] == 2
    unknown = await match(hub, explain_miner="nobody")
    assert unknown["miner_explanation"]["registered"] is False
    assert "miner_explanation" not in await match(hub)


async def test_match_needs_the_coordinator_token(hub: Hub) -> None:
    token = await register(hub.client, "m-1")
    assert (await hub.client.post("/v1/match", json=job())).status_code == 401
    assert (await hub.client.post("/v1/match", json=job(), headers=bearer("x"))).status_code == 401
    assert (await hub.client.post("/v1/match", json=job(), headers=bearer(ADMIN))).status_code == 403
    assert (await hub.client.post("/v1/match", json=job(), headers=bearer(token))).status_code == 403


async def test_bad_match_requests_are_400_naming_the_field(hub: Hub) -> None:
    for body, field in [
        (job(top_k=0), "top_k"),
        (job(top_k=51), "top_k"),
        (job(job_id="bad id"), "job_id"),
        # v1.1: a JSON number is a valid decimal (0.8 is accepted); a negative one is not.
        (job(hints={"max_price": -0.8}), "max_price"),
        (job(hints={"max_price": "NaN"}), "max_price"),
        (job(requirements={"min_vram_gb": -1}), "min_vram_gb"),
        (job(requirements={"tags_any": ["x"] * 65}), "tags_any"),
    ]:
        response = await hub.client.post("/v1/match", json=body, headers=bearer(COORDINATOR))
        assert response.status_code == 400, (body, response.text)
        assert field in response.text


async def test_feedback_moves_trust_and_is_idempotent(hub: Hub) -> None:
    await register(hub.client, "m-1")
    body = {"job_id": "job-1", "miner_id": "m-1", "outcome": "completed", "duration_ms": 60000}
    first = await hub.client.post("/v1/feedback", json=body, headers=bearer(COORDINATOR))
    assert first.status_code == 201
    assert first.json()["status"] == "recorded"
    assert first.json()["trust_score"] > 0.5
    again = await hub.client.post("/v1/feedback", json=body, headers=bearer(COORDINATOR))
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "trust_score": first.json()["trust_score"]}
    miner = (await hub.client.get("/v1/miners", headers=bearer(ADMIN))).json()[0]
    assert miner["trust_score"] == first.json()["trust_score"]
    assert miner["trust_samples"] == 1.0
    failed = await hub.client.post(
        "/v1/feedback",
        json={"job_id": "job-2", "miner_id": "m-1", "outcome": "failed", "fail_code": "OOM"},
        headers=bearer(COORDINATOR),
    )
    assert failed.json()["trust_score"] < first.json()["trust_score"]


async def test_feedback_for_an_unknown_miner_is_404_and_stores_nothing(hub: Hub, clean_db: str) -> None:
    response = await hub.client.post(
        "/v1/feedback",
        json={"job_id": "job-1", "miner_id": "ghost", "outcome": "completed"},
        headers=bearer(COORDINATOR),
    )
    assert response.status_code == 404
    assert "ghost" in response.json()["detail"]
    engine = create_async_engine(clean_db)
    async with engine.connect() as connection:
        assert (await connection.execute(select(func.count()).select_from(FeedbackRow))).scalar_one() == 0
    await engine.dispose()


async def test_trust_changes_the_ranking(hub: Hub) -> None:
    await register(hub.client, "m-a")
    await register(hub.client, "m-b")
    for i in range(5):
        await hub.client.post(
            "/v1/feedback",
            json={"job_id": f"j{i}", "miner_id": "m-b", "outcome": "completed", "latency_ms": 100},
            headers=bearer(COORDINATOR),
        )
        await hub.client.post(
            "/v1/feedback",
            json={"job_id": f"j{i}", "miner_id": "m-a", "outcome": "failed"},
            headers=bearer(COORDINATOR),
        )
    answer = await match(hub, top_k=2)
    assert [c["miner_id"] for c in answer["candidates"]] == ["m-b", "m-a"]
    assert answer["candidates"][0]["eta_ms"] == 100


async def test_match_records_are_saved_in_batches(hub: Hub, clean_db: str) -> None:
    await pool(hub)
    for i in range(3):
        await match(hub, job_id=f"job-{i}")
    await hub.flush()
    engine = create_async_engine(clean_db)
    async with engine.connect() as connection:
        rows = (await connection.execute(select(MatchRecordRow.job_id, MatchRecordRow.tenant_id))).all()
    await engine.dispose()
    assert sorted(rows) == [("job-0", "acme"), ("job-1", "acme"), ("job-2", "acme")]


async def test_metrics_expose_the_contracted_series(hub: Hub) -> None:
    await pool(hub)
    await match(hub, requirements={"min_vram_gb": 16})
    text = (await hub.client.get("/v1/metrics")).text
    for name in (
        "poolhub_miners_online 3.0",
        "poolhub_match_latency_ms_bucket",
        "poolhub_match_requests_total 1.0",
        'poolhub_match_rejections_total{reason="vram"} 1.0',
        "poolhub_heartbeats_total",
        "poolhub_sla_violations_open",
        "poolhub_billing_sync_failures_total",
    ):
        assert name in text, name
    health = (await hub.client.get("/v1/health")).json()
    assert health == {"status": "ok", "online_miners": 3, "avg_latency_ms": None, "db": "ok"}


async def test_a_miner_registered_in_one_process_is_matched_by_another_within_a_second(
    settings: Settings,
) -> None:
    async with started_hub(settings) as first, started_hub(settings) as second:
        await register(first.client, "m-elsewhere")
        started = time.monotonic()
        while True:
            answer = await match(second)
            if answer["candidates"]:
                break
            assert time.monotonic() - started < 1.0, "not visible in the other process within 1 s"
            await asyncio.sleep(0.05)
        assert answer["candidates"][0]["miner_id"] == "m-elsewhere"
