"""A short simulation against a real server: matches, feedback, trust and usage all happen."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from poolhub.adapters.db.models import FeedbackRow, UsageRecordRow
from poolhub.app.tools.simulate import Simulation, SimulationConfig
from tests.integration.conftest import ADMIN, COORDINATOR, LiveServer


async def test_a_short_simulation_moves_jobs_trust_and_usage(live_server: LiveServer, clean_db: str) -> None:
    config = SimulationConfig(
        url=live_server.url,
        miners=24,
        duration=3.0,
        jobs_per_sec=25,
        seed=11,
        beat_interval=0.5,
        flaky_share=0.3,
        time_scale=0.02,
        coordinator_token=COORDINATOR,
        progress=False,
    )
    stats = await Simulation(config).run()
    assert stats.registered == 24
    assert stats.beats >= 24
    assert stats.matched > 20
    assert stats.completed + stats.failed == stats.matched
    assert stats.beat_errors == stats.match_errors == stats.feedback_errors == 0

    async with httpx.AsyncClient(base_url=live_server.url) as client:
        miners = (await client.get("/v1/miners", headers={"Authorization": f"Bearer {ADMIN}"})).json()
    assert len(miners) == 24
    assert any(m["trust_score"] != 0.5 for m in miners)
    assert all(m["online"] for m in miners)

    engine = create_async_engine(clean_db)
    async with engine.connect() as connection:
        feedback = (await connection.execute(select(func.count()).select_from(FeedbackRow))).scalar_one()
        usage = (
            await connection.execute(
                select(func.count())
                .select_from(UsageRecordRow)
                .where(UsageRecordRow.resource_type == "gpu_hours")
            )
        ).scalar_one()
    await engine.dispose()
    assert feedback == 2 * stats.matched  # accepted, then completed or failed
    assert usage == stats.completed
