"""Retention: one run per tick across processes prunes aged-out history; the usage ledger is never pruned."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from poolhub.adapters.db.billing_repositories import SqlUsageLedger
from poolhub.adapters.db.models import MatchRecordRow, PresenceIntervalRow, SessionRow, UsageRecordRow
from poolhub.adapters.db.repositories import table_of
from poolhub.adapters.db.sla_models import CapacitySnapshotRow, SlaMetricRow, SlaViolationRow
from poolhub.app.main import periodic_jobs
from poolhub.app.runtime.retention_jobs import RETENTION_JOB
from poolhub.app.runtime.schedulers import PeriodicJob, tick_of
from poolhub.app.settings import Settings
from poolhub.domain.billing import DEFAULT_UNIT_PRICES, UnitPrices, api_calls_usage, manual_usage
from tests.integration.conftest import register, started_hub, test_settings
from tests.integration.sla_support import execute

PRICES = UnitPrices.parse(DEFAULT_UNIT_PRICES)
NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=40)  # past RETENTION_DAYS (30), within CAPACITY_HISTORY_DAYS (90)
RECENT = NOW - timedelta(days=1)


def retention_job(settings: Settings) -> PeriodicJob:
    [job] = [job for job in periodic_jobs(settings) if job.name == RETENTION_JOB]
    return job


async def add_ledger_lines(url: str, *, api_calls_hour: datetime) -> None:
    engine = create_async_engine(url)
    records = [
        manual_usage(
            tenant_id="acme",
            resource_type="gpu_hours",
            quantity=Decimal(1),
            unit_price=None,
            recorded_at=NOW - timedelta(days=200),
            prices=PRICES,
            request_id="ancient",
        ),
        api_calls_usage(tenant_id="acme", hour_start=api_calls_hour, calls=3, prices=PRICES),
    ]
    try:
        async with AsyncSession(engine) as session:
            await SqlUsageLedger(session).add(records)
            await session.commit()
    finally:
        await engine.dispose()


def match_row(job_id: str, at: datetime) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "tenant_id": "acme",
        "requested_at": at,
        "request": {},
        "candidates": [],
        "explain": "",
        "considered": 0,
        "returned": 0,
    }


def session_row(token: str, *, expires: datetime, revoked: datetime | None = None) -> dict[str, Any]:
    return {
        "token_hash": token.ljust(64, "0"),
        "miner_id": "m-1",
        "created_at": expires - timedelta(minutes=1),
        "expires_at": expires,
        "revoked_at": revoked,
        "updated_at": expires,
    }


def violation_row(created: datetime, resolved: datetime | None) -> dict[str, Any]:
    return {
        "miner_id": "m-1",
        "subject": "m-1",
        "violation_type": "uptime_pct" if resolved else "response_time_ms",
        "severity": "low",
        "metric_value": 1.0,
        "threshold": 95.0,
        "created_at": created,
        "updated_at": resolved or created,
        "resolved_at": resolved,
        "duration_sec": 60.0 if resolved else None,
    }


def snapshot_row(at: datetime) -> dict[str, Any]:
    return {
        "timestamp": at,
        "total_miners": 1,
        "online_miners": 1,
        "total_slots": 4,
        "used_slots": 1,
        "capacity_utilization_pct": 25.0,
        "capacity_availability_pct": 75.0,
    }


def metric_row(at: datetime) -> dict[str, Any]:
    return {
        "miner_id": "m-1",
        "metric_type": "uptime_pct",
        "metric_value": 99.0,
        "threshold": 95.0,
        "is_violation": False,
        "timestamp": at,
        "metadata": {},
    }


async def seed_history(url: str) -> None:
    await execute(
        url,
        insert(MatchRecordRow).values(
            [match_row("old-1", OLD), match_row("old-2", OLD), match_row("new", RECENT)]
        ),
        insert(SessionRow).values(
            [
                session_row("expired", expires=OLD),
                session_row("revoked", expires=NOW + timedelta(days=1), revoked=OLD),
                session_row("recently-revoked", expires=RECENT, revoked=RECENT),
            ]
        ),
        insert(PresenceIntervalRow).values(
            [
                {"miner_id": "m-1", "started_at": OLD - timedelta(hours=1), "ended_at": OLD},
                {"miner_id": "m-1", "started_at": RECENT - timedelta(hours=1), "ended_at": RECENT},
            ]
        ),
        insert(table_of(SlaMetricRow)).values([metric_row(OLD), metric_row(RECENT)]),
        insert(SlaViolationRow).values(
            [violation_row(OLD, OLD), violation_row(OLD, None), violation_row(RECENT, RECENT)]
        ),
        insert(CapacitySnapshotRow).values(
            [snapshot_row(NOW - timedelta(days=100)), snapshot_row(OLD), snapshot_row(RECENT)]
        ),
    )


async def counts(url: str) -> dict[str, int]:
    tables = {
        "match_records": MatchRecordRow,
        "sessions": SessionRow,
        "presence": PresenceIntervalRow,
        "metrics": SlaMetricRow,
        "violations": SlaViolationRow,
        "snapshots": CapacitySnapshotRow,
        "ledger": UsageRecordRow,
    }
    results = await execute(url, *(select(func.count()).select_from(model) for model in tables.values()))
    return {name: int(rows[0][0]) for name, rows in zip(tables, results, strict=True)}


async def test_one_run_per_tick_prunes_aged_out_history_and_never_the_ledger(clean_db: str) -> None:
    settings = test_settings(clean_db)
    job = retention_job(settings)
    assert job.interval_sec == 3600
    async with started_hub(settings) as first, started_hub(settings) as second:
        await register(first.client, "m-1")  # one live session and one open presence interval
        await seed_history(clean_db)
        await add_ledger_lines(clean_db, api_calls_hour=NOW - timedelta(hours=2))
        before = await counts(clean_db)
        tick = tick_of(NOW, job.interval_sec)

        ran = await asyncio.gather(*(hub.app.state.scheduler.run_tick(job, tick) for hub in (first, second)))

        assert sorted(ran) == [False, True]
        after = await counts(clean_db)
        assert after == {
            "match_records": before["match_records"] - 2,
            "sessions": before["sessions"] - 2,  # the expired and the long-revoked one
            "presence": before["presence"] - 1,
            "metrics": before["metrics"] - 1,
            "violations": before["violations"] - 1,  # the old open one stays
            "snapshots": before["snapshots"] - 1,  # only the one past 90 days
            "ledger": before["ledger"],
        }
        # The live miner is untouched: its session still authenticates.
        status = await first.client.get("/v1/miners", headers={"Authorization": "Bearer test-admin-token"})
        assert [m["online"] for m in status.json()] == [True]


async def test_match_records_not_yet_billed_as_api_calls_are_kept_whatever_their_age(clean_db: str) -> None:
    settings = test_settings(clean_db, retention_days=7)
    job = retention_job(settings)
    async with started_hub(settings) as hub:
        await execute(
            clean_db,
            insert(MatchRecordRow).values([match_row("a", OLD), match_row("b", NOW - timedelta(days=10))]),
        )
        # api_calls were derived up to 45 days ago only: the hours after it are still to be billed.
        await add_ledger_lines(clean_db, api_calls_hour=NOW - timedelta(days=45))
        assert await hub.app.state.scheduler.run_tick(job, tick_of(NOW, job.interval_sec))
        assert (await counts(clean_db))["match_records"] == 2
