"""One scrape of /v1/metrics describes the whole server, whichever of its worker processes answers it."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx

from poolhub.app.tools.hubproc import COORDINATOR_SECRET, start_hub
from tests.integration.conftest import Hub

MATCHES = 40
MATCH = {"job_id": "job-1", "requirements": {"min_vram_gb": 8}, "top_k": 1}


def _sample(text: str, name: str) -> list[tuple[str, float]]:
    """(labels, value) of every sample of `name` in a Prometheus text exposition."""
    pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", re.MULTILINE)
    return [(labels or "", float(value)) for labels, value in pattern.findall(text)]


async def test_counters_are_summed_over_workers_in_every_scrape(tmp_path: Path) -> None:
    hub = await start_hub(
        f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}", log_path=tmp_path / "hub.log", workers=2
    )
    try:
        headers = {"authorization": f"Bearer {COORDINATOR_SECRET}"}
        for _ in range(MATCHES):
            # A fresh connection per request, so the kernel spreads them over both workers.
            async with httpx.AsyncClient(base_url=hub.url) as client:
                assert (await client.post("/v1/match", json=MATCH, headers=headers)).status_code == 200
        workers_seen: set[str] = set()
        for _ in range(8):
            async with httpx.AsyncClient(base_url=hub.url) as client:
                text = (await client.get("/v1/metrics")).text
            assert _sample(text, "poolhub_match_requests_total") == [("", MATCHES)]
            assert sum(v for _, v in _sample(text, "poolhub_match_latency_ms_count")) == MATCHES
            workers_seen.update(labels for labels, _ in _sample(text, "poolhub_event_loop_lag_seconds"))
        assert len(workers_seen) == 2, (
            f"expected the loop lag of both workers (pid labels), got {workers_seen}"
        )
        # Each served worker froze its start-up heap (modules, the app, the directory) out of the collector.
        frozen = _sample(text, "poolhub_gc_frozen_objects")
        assert len(frozen) == 2 and all(value > 50_000 for _, value in frozen), frozen
    finally:
        hub.stop()


async def test_a_blocked_event_loop_shows_in_the_lag_gauge(hub: Hub) -> None:
    await asyncio.sleep(1.1)
    calm = _sample((await hub.client.get("/v1/metrics")).text, "poolhub_event_loop_lag_seconds")
    assert calm and calm[0][1] < 0.25
    time.sleep(0.3)  # noqa: ASYNC251  (on purpose: a handler holding the loop, as a long synchronous batch would)
    await asyncio.sleep(1.1)
    lag = _sample((await hub.client.get("/v1/metrics")).text, "poolhub_event_loop_lag_seconds")
    assert lag[0][1] >= 0.25
