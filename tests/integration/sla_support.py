"""Helpers of the SLA and capacity tests: rows written straight into the database, and one collection."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.sql import Executable

from poolhub.adapters.db.models import FeedbackRow
from poolhub.adapters.db.sla_models import CapacitySnapshotRow
from tests.integration.conftest import ADMIN, Hub, bearer

_jobs = itertools.count()


def utcnow() -> datetime:
    return datetime.now(UTC)


async def execute(url: str, *statements: Executable) -> list[Any]:
    """Run statements in one committed transaction; returns each result's rows (or rowcount)."""
    engine = create_async_engine(url)
    out: list[Any] = []
    try:
        async with engine.begin() as connection:
            for statement in statements:
                result = await connection.execute(statement)
                out.append(result.all() if result.returns_rows else result.rowcount)
    finally:
        await engine.dispose()
    return out


async def add_feedback(
    url: str,
    miner_id: str,
    outcome: str,
    count: int = 1,
    *,
    latency_ms: float | Sequence[float] | None = 100.0,
    ago: timedelta = timedelta(minutes=5),
) -> None:
    """`count` feedback rows of one outcome, created `ago` before now (inside the SLA window by default)."""
    latencies = list(latency_ms) if isinstance(latency_ms, Sequence) else [latency_ms] * count
    assert len(latencies) == count
    now = utcnow()
    rows = [
        {
            "job_id": f"job-{next(_jobs)}",
            "miner_id": miner_id,
            "outcome": outcome,
            "latency_ms": latency,
            "created_at": now - ago,
        }
        for latency in latencies
    ]
    await execute(url, insert(FeedbackRow).values(rows))


async def seed_snapshots(
    url: str, utilization: Sequence[float], *, total_slots: int = 100, online_miners: int = 25
) -> datetime:
    """One snapshot per hour, the last one in the current hour; returns the current hour."""
    hour = utcnow().replace(minute=0, second=0, microsecond=0)
    rows = []
    for age, pct in enumerate(reversed(utilization)):
        used = round(pct * total_slots / 100)
        rows.append(
            {
                "timestamp": hour - timedelta(hours=age),
                "total_miners": online_miners,
                "online_miners": online_miners,
                "total_slots": total_slots,
                "used_slots": used,
                "capacity_utilization_pct": pct,
                "capacity_availability_pct": 100.0 - pct,
            }
        )
    await execute(url, insert(CapacitySnapshotRow).values(rows))
    return hour


async def collect(hub: Hub) -> dict[str, Any]:
    response = await hub.client.post("/sla/metrics/collect", headers=bearer(ADMIN))
    assert response.status_code == 200, response.text
    return dict(response.json())


async def get_json(hub: Hub, path: str) -> Any:
    response = await hub.client.get(path, headers=bearer(ADMIN))
    assert response.status_code == 200, response.text
    return response.json()
