"""SLA monitoring over HTTP: collection, the violation lifecycle, penalties in matching, status and errors."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import insert, update
from sqlalchemy.exc import IntegrityError

from poolhub.adapters.db.models import MinerRow, PresenceIntervalRow
from poolhub.adapters.db.sla_models import SlaMetricRow, SlaViolationRow
from poolhub.app.runtime import sla_jobs
from poolhub.app.settings import Settings
from poolhub.domain.ports import LiveState
from tests.integration.conftest import (
    ADMIN,
    COORDINATOR,
    Hub,
    bearer,
    register,
    started_hub,
    test_settings,
)
from tests.integration.sla_support import add_feedback, collect, execute, get_json, utcnow

CAP = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture
def settings(clean_db: str) -> Settings:
    # No exploration slot, so the ranking shows the score alone.
    return test_settings(clean_db, exploration_share=0.0)


def parse_time(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value)


async def match_ids(hub: Hub) -> list[tuple[str, str]]:
    response = await hub.client.post(
        "/v1/match",
        json={"job_id": "job-x", "tenant_id": "acme", "hints": {"max_price": "1.0"}, "top_k": 2},
        headers=bearer(COORDINATOR),
    )
    assert response.status_code == 200, response.text
    return [(c["miner_id"], c["explain"]) for c in response.json()["candidates"]]


async def test_a_failing_miner_gets_one_violation_refreshed_then_resolved_and_loses_rank_meanwhile(
    hub: Hub, clean_db: str
) -> None:
    # m-a is otherwise the better candidate (cheaper), so only the penalty can push it down.
    await register(hub.client, "m-a", price_token_per_ksec="0.50")
    await register(hub.client, "m-b", price_token_per_ksec="0.60")
    assert [m for m, _ in await match_ids(hub)] == ["m-a", "m-b"]
    await add_feedback(clean_db, "m-a", "failed", 10)
    await add_feedback(clean_db, "m-b", "completed", 12)

    first = await collect(hub)
    assert first["miners_processed"] == 2
    assert first["violations_opened"] == 1
    assert first["violations_resolved"] == 0
    violations = await get_json(hub, "/sla/violations")
    assert len(violations) == 1
    opened = violations[0]
    assert opened["miner_id"] == "m-a"
    assert opened["violation_type"] == "completion_rate_pct"
    assert opened["severity"] == "critical"
    assert opened["metric_value"] == 0.0
    assert opened["threshold"] == 90.0
    assert opened["resolved_at"] is None and opened["duration_sec"] is None
    assert set(opened) == {
        "id", "miner_id", "violation_type", "severity", "metric_value", "threshold", "created_at",
        "resolved_at", "duration_sec", "metadata",
    }  # fmt: skip
    assert opened["metadata"] == {}
    assert (await get_json(hub, "/sla/status"))["status"] == "critical"

    # The loop closes: the penalty multiplies m-a's score and shows in its explain.
    ranked = await match_ids(hub)
    assert [m for m, _ in ranked] == ["m-b", "m-a"]
    assert ranked[1][1].endswith("• sla_penalty=0.80")
    assert "sla_penalty" not in ranked[0][1]

    # Still breaching: the same violation, with the latest value, no duplicate.
    await add_feedback(clean_db, "m-a", "completed", 1)
    second = await collect(hub)
    assert second["violations_opened"] == 0
    violations = await get_json(hub, "/sla/violations")
    assert [v["id"] for v in violations] == [opened["id"]]
    assert violations[0]["metric_value"] == pytest.approx(100 / 11)
    assert violations[0]["created_at"] == opened["created_at"]

    # Recovered: resolved with its duration, gone from the open list, the penalty lifted.
    await add_feedback(clean_db, "m-a", "completed", 100)
    third = await collect(hub)
    assert third["violations_resolved"] == 1
    assert await get_json(hub, "/sla/violations") == []
    resolved = await get_json(hub, "/sla/violations?resolved=true")
    assert [v["id"] for v in resolved] == [opened["id"]]
    closed = resolved[0]
    duration = (parse_time(closed["resolved_at"]) - parse_time(closed["created_at"])).total_seconds()
    assert closed["duration_sec"] == pytest.approx(duration, abs=1e-3)
    assert closed["duration_sec"] > 0
    status = await get_json(hub, "/sla/status")
    assert status["status"] == "healthy"
    assert status["active_violations"] == 0
    assert all("sla_penalty" not in explain for _, explain in await match_ids(hub))
    assert [m for m, _ in await match_ids(hub)] == ["m-a", "m-b"]


async def test_response_time_is_the_p95_with_its_summary_in_metadata(hub: Hub, clean_db: str) -> None:
    await register(hub.client, "m-1")
    latencies = [500.0] * 18 + [1300.0] * 2
    await add_feedback(clean_db, "m-1", "completed", 20, latency_ms=latencies)
    await collect(hub)
    metrics = await get_json(hub, "/sla/metrics/m-1")
    by_type = {m["metric_type"]: m for m in metrics}
    assert set(by_type) == {"uptime_pct", "response_time_ms", "completion_rate_pct"}
    response = by_type["response_time_ms"]
    p50, p95, p99 = (float(v) for v in np.percentile(latencies, [50, 95, 99]))
    assert response["metric_value"] == pytest.approx(p95) == 1300.0
    assert response["threshold"] == 1000.0
    assert response["is_violation"] is True
    assert set(response) == {
        "id", "miner_id", "metric_type", "metric_value", "threshold", "is_violation", "timestamp", "metadata",
    }  # fmt: skip
    meta = response["metadata"]
    assert meta["count"] == 20
    assert meta["mean"] == pytest.approx(580.0)
    assert [meta["p50"], meta["p95"], meta["p99"]] == pytest.approx([p50, p95, p99])
    assert by_type["completion_rate_pct"]["metric_value"] == 100.0
    assert by_type["completion_rate_pct"]["is_violation"] is False
    assert by_type["uptime_pct"]["metric_value"] == pytest.approx(100.0)
    assert len({m["timestamp"] for m in metrics}) == 1  # one collection, one timestamp
    violation = (await get_json(hub, "/sla/violations?miner_id=m-1"))[0]
    assert violation["violation_type"] == "response_time_ms"
    assert violation["severity"] == "high"  # 30 % past the threshold
    assert violation["metric_value"] == 1300.0


async def test_too_few_outcomes_never_breach(hub: Hub, clean_db: str) -> None:
    await register(hub.client, "m-1")
    await add_feedback(clean_db, "m-1", "failed", 9, latency_ms=5000.0)
    report = await collect(hub)
    assert report["violations_opened"] == 0
    measured = {m["metric_type"]: m for m in await get_json(hub, "/sla/metrics/m-1")}
    assert measured["completion_rate_pct"]["metric_value"] == 0.0
    assert measured["completion_rate_pct"]["is_violation"] is False
    assert measured["response_time_ms"]["is_violation"] is False
    # The tenth outcome reaches SLA_MIN_SAMPLES: both metrics now breach.
    await add_feedback(clean_db, "m-1", "failed", 1, latency_ms=5000.0)
    report = await collect(hub)
    assert report["violations_opened"] == 2
    types = {v["violation_type"] for v in await get_json(hub, "/sla/violations?miner_id=m-1")}
    assert types == {"completion_rate_pct", "response_time_ms"}


async def test_feedback_outside_the_window_is_not_counted(hub: Hub, clean_db: str) -> None:
    await register(hub.client, "m-1")
    await add_feedback(clean_db, "m-1", "failed", 20, ago=timedelta(hours=30))
    await add_feedback(clean_db, "m-1", "completed", 3)
    await collect(hub)
    measured = {m["metric_type"]: m for m in await get_json(hub, "/sla/metrics/m-1")}
    assert measured["completion_rate_pct"]["metric_value"] == 100.0
    assert measured["completion_rate_pct"]["metadata"] == {"completed": 3, "failed": 0}


async def test_uptime_comes_from_presence_history_since_registration(hub: Hub, clean_db: str) -> None:
    await register(hub.client, "m-half")
    await register(hub.client, "m-full")
    now = utcnow()
    ten_hours_ago = now - timedelta(hours=10)
    await execute(
        clean_db,
        update(MinerRow)
        .where(MinerRow.miner_id.in_(["m-half", "m-full"]))
        .values(registered_at=ten_hours_ago),
        insert(PresenceIntervalRow).values(
            [
                # online for the first five of its ten hours, then gone until it registered again now
                {"miner_id": "m-half", "started_at": ten_hours_ago, "ended_at": now - timedelta(hours=5)},
                # online all along, with one overlapping interval that must count once
                {"miner_id": "m-full", "started_at": ten_hours_ago, "ended_at": now},
                {"miner_id": "m-full", "started_at": now - timedelta(hours=3), "ended_at": now},
            ]
        ),
    )
    await collect(hub)
    uptime = {
        m["miner_id"]: m["metric_value"]
        for m in await get_json(hub, "/sla/metrics")
        if m["metric_type"] == "uptime_pct"
    }
    assert uptime["m-half"] == pytest.approx(50.0, abs=0.1)
    assert uptime["m-full"] == pytest.approx(100.0, abs=0.01)
    [violation] = await get_json(hub, "/sla/violations")
    assert violation["miner_id"] == "m-half"
    assert violation["violation_type"] == "uptime_pct"
    assert violation["severity"] == "high"  # 47 % short of 95


async def test_capacity_snapshot_counts_slots_of_online_miners(hub: Hub) -> None:
    a = await register(hub.client, "m-a", max_parallel=4)
    b = await register(hub.client, "m-b", max_parallel=2)
    c = await register(hub.client, "m-c", max_parallel=8)
    await hub.client.post("/v1/miners/heartbeat", json={"queue_len": 1}, headers=bearer(a))
    await hub.client.post("/v1/miners/update", json={"busy": True}, headers=bearer(b))
    await hub.client.post("/v1/miners/logout", headers=bearer(c))
    await hub.flush()
    report = await collect(hub)
    snapshot = report["capacity"]
    assert {k: v for k, v in snapshot.items() if k not in {"id", "timestamp"}} == {
        "total_miners": 3,
        "online_miners": 2,
        "total_slots": 6,
        "used_slots": 3,
        "capacity_utilization_pct": 50.0,
        "capacity_availability_pct": 50.0,
    }
    listed = await get_json(hub, "/sla/capacity/snapshots")
    assert listed == [snapshot]
    pool = [m for m in await get_json(hub, "/sla/metrics") if m["miner_id"] is None]
    assert [(m["metric_type"], m["metric_value"], m["is_violation"]) for m in pool] == [
        ("capacity_availability_pct", 50.0, True)
    ]
    pool_violation = [v for v in await get_json(hub, "/sla/violations") if v["miner_id"] is None]
    assert [(v["violation_type"], v["severity"]) for v in pool_violation] == [
        ("capacity_availability_pct", "high")  # 37.5 % short of 80
    ]
    # The logged-out miner is measured too (collection covers every registered miner).
    assert {m["miner_id"] for m in await get_json(hub, "/sla/metrics")} == {"m-a", "m-b", "m-c", None}


async def test_status_moves_from_healthy_to_degraded_to_critical(hub: Hub, clean_db: str) -> None:
    await register(hub.client, "m-1")
    await register(hub.client, "m-2")
    await collect(hub)
    status = await get_json(hub, "/sla/status")
    assert status["status"] == "healthy"
    assert status["active_violations"] == 0
    assert status["recent_metrics_count"] == 3  # two uptimes and the pool's capacity
    assert parse_time(status["timestamp"])

    await add_feedback(clean_db, "m-1", "completed", 17)
    await add_feedback(clean_db, "m-1", "failed", 3)  # 85 %: 5.6 % short of 90, a low breach
    await collect(hub)
    status = await get_json(hub, "/sla/status")
    assert (status["status"], status["active_violations"]) == ("degraded", 1)
    assert status["recent_metrics_count"] == 3 + 5

    await add_feedback(clean_db, "m-2", "failed", 10)
    await collect(hub)
    status = await get_json(hub, "/sla/status")
    assert (status["status"], status["active_violations"]) == ("critical", 2)


async def test_metrics_window_and_pagination(hub: Hub, clean_db: str) -> None:
    for i in range(3):
        await register(hub.client, f"m-{i}")
    await execute(
        clean_db,
        insert(SlaMetricRow).values(
            miner_id="m-0",
            metric_type="uptime_pct",
            metric_value=12.5,
            threshold=95.0,
            is_violation=True,
            timestamp=utcnow() - timedelta(hours=30),
            metadata_={},
        ),
    )
    await collect(hub)
    await collect(hub)
    recent = await hub.client.get("/sla/metrics/m-0", headers=bearer(ADMIN))
    assert recent.headers["X-Total-Count"] == "2"
    assert 12.5 not in [m["metric_value"] for m in recent.json()]
    older = await hub.client.get("/sla/metrics/m-0?hours=48", headers=bearer(ADMIN))
    assert older.headers["X-Total-Count"] == "3"
    assert older.json()[-1]["metric_value"] == 12.5  # newest first

    everything = await hub.client.get("/sla/metrics", headers=bearer(ADMIN))
    assert everything.headers["X-Total-Count"] == "8"  # 2 collections × (3 uptimes + pool)
    page = await hub.client.get("/sla/metrics?offset=2&limit=3", headers=bearer(ADMIN))
    assert page.headers["X-Total-Count"] == "8"
    assert [m["id"] for m in page.json()] == [m["id"] for m in everything.json()[2:5]]
    stamps = [m["timestamp"] for m in everything.json()]
    assert stamps == sorted(stamps, reverse=True)


async def test_violations_paginate_and_filter_by_miner(hub: Hub, clean_db: str) -> None:
    for i in range(3):
        await register(hub.client, f"m-{i}")
        await add_feedback(clean_db, f"m-{i}", "failed", 10)
    await collect(hub)
    first = await hub.client.get("/sla/violations?limit=2", headers=bearer(ADMIN))
    assert first.headers["X-Total-Count"] == "3"
    assert len(first.json()) == 2
    rest = await hub.client.get("/sla/violations?limit=2&offset=2", headers=bearer(ADMIN))
    assert len(rest.json()) == 1
    ids = {v["id"] for v in first.json() + rest.json()}
    assert len(ids) == 3
    one = await hub.client.get("/sla/violations?miner_id=m-1&resolved=false", headers=bearer(ADMIN))
    assert [v["miner_id"] for v in one.json()] == ["m-1"]
    assert one.headers["X-Total-Count"] == "1"
    # An empty miner_id (as in `?miner_id=`) means every miner.
    assert len((await hub.client.get("/sla/violations?miner_id=", headers=bearer(ADMIN))).json()) == 3
    assert (await get_json(hub, "/sla/violations?miner_id=nobody")) == []
    assert (await get_json(hub, "/sla/violations?resolved=true")) == []


async def test_database_allows_one_open_violation_per_miner_and_type(hub: Hub, clean_db: str) -> None:
    await register(hub.client, "m-1")
    now = utcnow()

    def row(miner_id: str | None, resolved: bool = False, subject: str | None = None) -> dict[str, object]:
        return {
            "miner_id": miner_id,
            "subject": subject or miner_id or "@pool",
            "violation_type": "uptime_pct" if miner_id else "capacity_availability_pct",
            "severity": "low",
            "metric_value": 1.0,
            "threshold": 95.0,
            "created_at": now,
            "updated_at": now,
            "resolved_at": now if resolved else None,
            "duration_sec": 0.0 if resolved else None,
        }

    # Resolved ones may pile up beside the single open one.
    await execute(
        clean_db,
        insert(SlaViolationRow).values([row("m-1"), row("m-1", resolved=True), row("m-1", resolved=True)]),
        insert(SlaViolationRow).values([row(None), row(None, resolved=True)]),
    )
    with pytest.raises(IntegrityError):
        await execute(clean_db, insert(SlaViolationRow).values(row("m-1")))
    with pytest.raises(IntegrityError):
        await execute(clean_db, insert(SlaViolationRow).values(row(None)))
    # The subject cannot be forged to slip past the index.
    with pytest.raises(IntegrityError):
        await execute(clean_db, insert(SlaViolationRow).values(row("m-1", subject="m-1-again")))
    open_now = await get_json(hub, "/sla/violations")
    assert len(open_now) == 2


async def test_concurrent_collections_never_duplicate_an_open_violation(hub: Hub, clean_db: str) -> None:
    await register(hub.client, "m-1")
    await add_feedback(clean_db, "m-1", "failed", 10)
    reports = await asyncio.gather(collect(hub), collect(hub), collect(hub))
    assert sum(r["violations_opened"] for r in reports) == 1
    assert len(await get_json(hub, "/sla/violations")) == 1


async def test_prometheus_shows_open_violations_and_collection_time(hub: Hub, clean_db: str) -> None:
    await register(hub.client, "m-1")
    await add_feedback(clean_db, "m-1", "failed", 10)
    await collect(hub)
    text = (await hub.client.get("/v1/metrics")).text
    assert 'poolhub_sla_violations_open{type="completion_rate_pct"} 1.0' in text
    assert 'poolhub_sla_violations_open{type="uptime_pct"} 0.0' in text
    assert 'poolhub_sla_violations_open{type="capacity_forecast"} 0.0' in text
    assert "poolhub_sla_collection_seconds_count 1.0" in text


async def test_another_process_learns_the_penalty_within_seconds(
    settings: Settings, hub: Hub, clean_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sla_jobs, "PENALTY_REFRESH_SEC", 0.1)
    await register(hub.client, "m-1")
    await add_feedback(clean_db, "m-1", "failed", 10)
    async with started_hub(settings) as other:
        directory = await other.app.state.dishka_container.get(LiveState)
        assert directory.penalty_of("m-1") == 1.0
        await collect(hub)
        for _ in range(50):
            if directory.penalty_of("m-1") < 1.0:
                break
            await asyncio.sleep(0.1)
        assert directory.penalty_of("m-1") == pytest.approx(0.8)
        # …and a process that starts later loads it at start-up.
        async with started_hub(settings) as late:
            late_directory = await late.app.state.dishka_container.get(LiveState)
            assert late_directory.penalty_of("m-1") == pytest.approx(0.8)


async def test_unknown_miner_is_404(hub: Hub) -> None:
    response = await hub.client.get("/sla/metrics/nobody", headers=bearer(ADMIN))
    assert response.status_code == 404
    assert "nobody" in response.json()["detail"]


SLA_ROUTES = [
    ("GET", "/sla/metrics"),
    ("GET", "/sla/metrics/m-1"),
    ("GET", "/sla/violations"),
    ("POST", "/sla/metrics/collect"),
    ("GET", "/sla/capacity/snapshots"),
    ("GET", "/sla/capacity/forecast"),
    ("GET", "/sla/capacity/recommendations"),
    ("GET", "/sla/status"),
]


async def test_sla_routes_are_for_the_operator_only(hub: Hub) -> None:
    miner_token = await register(hub.client, "m-1")
    for method, path in SLA_ROUTES:
        anonymous = await hub.client.request(method, path)
        assert anonymous.status_code == 401, (method, path)
        assert anonymous.json()["detail"]
        assert (await hub.client.request(method, path, headers=bearer("nope"))).status_code == 401
        for other_role in (COORDINATOR, miner_token):
            response = await hub.client.request(method, path, headers=bearer(other_role))
            assert response.status_code == 403, (method, path)
        assert (await hub.client.request(method, path, headers=bearer(ADMIN))).status_code == 200
    # Nothing was collected by the refused requests.
    assert await get_json(hub, "/sla/capacity/snapshots") != []
    assert len(await get_json(hub, "/sla/capacity/snapshots")) == 1


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/sla/metrics?hours=0", "hours"),
        ("/sla/metrics?hours=721", "hours"),
        ("/sla/metrics?hours=abc", "hours"),
        ("/sla/metrics/m-1?hours=0", "hours"),
        ("/sla/metrics?limit=0", "limit"),
        ("/sla/metrics?limit=501", "limit"),
        ("/sla/metrics?offset=-1", "offset"),
        ("/sla/violations?resolved=maybe", "resolved"),
        ("/sla/violations?miner_id=bad%20id", "miner_id"),
        ("/sla/violations?limit=0", "limit"),
        ("/sla/capacity/snapshots?hours=721", "hours"),
        ("/sla/capacity/forecast?hours_ahead=0", "hours_ahead"),
        ("/sla/capacity/forecast?hours_ahead=721", "hours_ahead"),
    ],
)
async def test_bad_query_is_400_naming_the_parameter(hub: Hub, path: str, parameter: str) -> None:
    await register(hub.client, "m-1")
    response = await hub.client.get(path, headers=bearer(ADMIN))
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status_code"] == 400
    assert body["detail"]
    assert [e["key"] for e in body["extra"]] == [parameter]


def test_openapi_documents_the_sla_routes_and_the_capacity_forecast_type() -> None:
    from litestar import Litestar

    from poolhub.app.http.controllers.sla import SlaController

    schema = Litestar([SlaController]).openapi_schema.to_schema()
    assert {path for path in schema["paths"] if path.startswith("/sla")} == {
        "/sla/metrics", "/sla/metrics/{miner_id}", "/sla/metrics/collect", "/sla/violations",
        "/sla/capacity/snapshots", "/sla/capacity/forecast", "/sla/capacity/recommendations", "/sla/status",
    }  # fmt: skip
    violation_type = schema["components"]["schemas"]["SlaViolationRead"]["properties"]["violation_type"]
    assert "capacity_forecast" in violation_type["enum"]
    assert "404" in schema["paths"]["/sla/metrics/{miner_id}"]["get"]["responses"]
