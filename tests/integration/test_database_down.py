"""With the database unreachable the service still starts, says so, and answers 503 — never a 500."""

from __future__ import annotations

from tests.integration.conftest import COORDINATOR, bearer, free_port, miner_body, started_hub, test_settings


async def test_a_down_database_is_a_503_with_a_detail_not_a_500() -> None:
    # Nothing listens on this port: every connection is refused at once.
    settings = test_settings(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/poolhub")
    async with started_hub(settings) as hub:
        health = await hub.client.get("/v1/health")
        assert health.status_code == 503
        assert health.json()["db"] == "error"
        registered = await hub.client.post("/v1/miners/register", json=miner_body("m-1"))
        assert registered.status_code == 503
        assert "database" in registered.json()["detail"]
        assert registered.headers["Retry-After"] == "5"
        feedback = await hub.client.post(
            "/v1/feedback",
            json={"job_id": "j", "miner_id": "m-1", "outcome": "completed"},
            headers=bearer(COORDINATOR),
        )
        assert feedback.status_code == 503
        # Matching answers from memory and keeps working: an empty pool, not an error.
        match = await hub.client.post("/v1/match", json={"job_id": "j"}, headers=bearer(COORDINATOR))
        assert match.status_code == 200
        assert match.json()["candidates"] == []
