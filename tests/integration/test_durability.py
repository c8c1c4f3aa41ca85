"""A process that dies before its flusher runs loses only unflushed beats: never a registration,
a feedback or a usage record it acknowledged."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine
from structlog.testing import capture_logs

from poolhub.adapters.db.models import FeedbackRow, UsageRecordRow
from poolhub.app.settings import Settings
from tests.integration.conftest import ADMIN, COORDINATOR, bearer, register, started_hub


async def test_acknowledged_writes_survive_a_flusher_that_never_ran(
    settings: Settings, clean_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    process = started_hub(settings)
    doomed = await process.__aenter__()
    background = doomed.app.state.background
    for task in background._tasks:  # the flusher dies before its next tick
        task.cancel()
    token = await register(doomed.client, "m-1")
    await register(doomed.client, "m-2")
    feedback = await doomed.client.post(
        "/v1/feedback",
        json={"job_id": "j-1", "miner_id": "m-1", "outcome": "completed", "duration_ms": 3_600_000},
        headers=bearer(COORDINATOR),
    )
    assert feedback.status_code == 201
    beat = await doomed.client.post("/v1/miners/heartbeat", json={"queue_len": 5}, headers=bearer(token))
    assert beat.status_code == 200

    async def crash(**_: object) -> None:
        raise RuntimeError("the process died")

    # Nothing pending is flushed on the way down: as if the process were killed.
    monkeypatch.setattr(background, "flush", crash)
    with capture_logs() as logs:
        await process.__aexit__(None, None, None)
    assert any(entry["event"] == "final_flush_failed" and entry["unsaved_beats"] == 1 for entry in logs)

    async with started_hub(settings) as survivor:
        listed = (await survivor.client.get("/v1/miners", headers=bearer(ADMIN))).json()
        assert [m["miner_id"] for m in listed] == ["m-1", "m-2"]
        m1 = listed[0]
        assert m1["trust_score"] > 0.5
        assert m1["queue_len"] == 0  # the unflushed beat is the only thing lost
        again = await survivor.client.post("/v1/miners/heartbeat", json={}, headers=bearer(token))
        assert again.status_code == 200  # its session survived too

    engine = create_async_engine(clean_db)
    async with engine.connect() as connection:
        assert (await connection.execute(select(func.count()).select_from(FeedbackRow))).scalar_one() == 1
        usage = (await connection.execute(select(UsageRecordRow.resource_type))).scalars().all()
    await engine.dispose()
    assert sorted(usage) == ["compute_hours", "gpu_hours"]
