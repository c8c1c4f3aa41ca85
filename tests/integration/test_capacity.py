"""Capacity planning over HTTP: snapshots in, the forecast and recommendations out, the capacity alert."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest
from sqlalchemy import delete

from poolhub.adapters.db.sla_models import CapacitySnapshotRow
from poolhub.app.settings import Settings
from tests.integration.conftest import ADMIN, Hub, bearer, register, started_hub, test_settings
from tests.integration.sla_support import collect, execute, get_json, seed_snapshots, utcnow


def daily(hour_of_day: int, base: float = 40.0, amplitude: float = 15.0) -> float:
    return base + amplitude * math.sin(2 * math.pi * hour_of_day / 24)


def cycle_history(days: int, current_hour: datetime, trend_per_hour: float = 0.0) -> list[float]:
    n = days * 24
    hours = [current_hour - timedelta(hours=n - 1 - i) for i in range(n)]
    return [daily(h.hour) + trend_per_hour * i for i, h in enumerate(hours)]


def parse(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value)


def current_hour() -> datetime:
    return utcnow().replace(minute=0, second=0, microsecond=0)


async def forecast(hub: Hub, query: str = "") -> dict[str, object]:
    return dict(await get_json(hub, f"/sla/capacity/forecast{query}"))


async def test_forecast_follows_the_daily_cycle_of_the_history(hub: Hub, clean_db: str) -> None:
    hour = current_hour()
    history = cycle_history(14, hour)
    await seed_snapshots(clean_db, history)
    body = await forecast(hub, "?hours_ahead=48")
    assert set(body) == {
        "forecast_horizon_hours", "method", "generated_at", "history_points", "current_utilization_pct",
        "points", "peak", "alert_threshold_pct", "hours_until_threshold",
    }  # fmt: skip
    assert body["forecast_horizon_hours"] == 48
    assert body["method"] == "holt_winters_additive"
    assert body["history_points"] == 14 * 24
    assert body["current_utilization_pct"] == pytest.approx(history[-1], abs=1e-3)
    assert body["alert_threshold_pct"] == 80.0
    assert body["hours_until_threshold"] is None
    assert abs(parse(str(body["generated_at"])) - utcnow()) < timedelta(seconds=30)
    points = body["points"]
    assert isinstance(points, list) and len(points) == 48
    for k, point in enumerate(points, start=1):
        at = parse(point["timestamp"])
        assert at == hour + timedelta(hours=k)  # hourly, one per hour ahead
        assert 0.0 <= point["lower_pct"] <= point["utilization_pct"] <= point["upper_pct"] <= 100.0
        assert point["utilization_pct"] == pytest.approx(daily(at.hour), abs=2.0)
    width = [p["upper_pct"] - p["lower_pct"] for p in points]
    assert width[-1] >= width[0]
    peak = body["peak"]
    assert isinstance(peak, dict)
    assert peak["utilization_pct"] == max(p["utilization_pct"] for p in points)
    assert parse(peak["timestamp"]).hour in (5, 6, 7)  # the sine peaks at 06:00


async def test_forecast_sees_a_rising_trend_cross_the_alert_threshold(hub: Hub, clean_db: str) -> None:
    # Two days rising one point an hour, now at 74 %: 80 % comes in about six hours.
    await seed_snapshots(clean_db, [27.0 + i for i in range(48)])
    body = await forecast(hub, "?hours_ahead=24")
    points = body["points"]
    assert isinstance(points, list)
    crossing = body["hours_until_threshold"]
    assert isinstance(crossing, int) and 4 <= crossing <= 8
    assert points[crossing - 1]["utilization_pct"] >= 80.0
    assert all(p["utilization_pct"] < 80.0 for p in points[: crossing - 1])


async def test_default_horizon_is_capacity_forecast_hours(clean_db: str) -> None:
    async with started_hub(test_settings(clean_db, capacity_forecast_hours=36)) as hub:
        await seed_snapshots(clean_db, [50.0] * 30)
        body = await forecast(hub)
        assert body["forecast_horizon_hours"] == 36
        assert isinstance(body["points"], list) and len(body["points"]) == 36


async def test_short_histories_fall_back_to_simpler_methods(hub: Hub, clean_db: str) -> None:
    empty = await forecast(hub, "?hours_ahead=3")
    assert (empty["method"], empty["history_points"], empty["current_utilization_pct"]) == ("none", 0, 0.0)
    assert [p["utilization_pct"] for p in empty["points"]] == [0.0, 0.0, 0.0]  # type: ignore[attr-defined]

    await seed_snapshots(clean_db, [30.0])
    single = await forecast(hub, "?hours_ahead=3")
    assert single["method"] == "last_value"
    assert [(p["utilization_pct"], p["lower_pct"], p["upper_pct"]) for p in single["points"]] == [  # type: ignore[attr-defined]
        (30.0, 0.0, 100.0)
    ] * 3

    await execute(clean_db, delete(CapacitySnapshotRow))
    await seed_snapshots(clean_db, [20.0 + 2 * i for i in range(10)])
    short = await forecast(hub, "?hours_ahead=3")
    assert short["method"] == "holt_linear"
    assert short["history_points"] == 10
    values = [p["utilization_pct"] for p in short["points"]]  # type: ignore[attr-defined]
    assert values == pytest.approx([40.0, 42.0, 44.0], abs=0.5)


async def recommendations(hub: Hub) -> dict[str, object]:
    return dict(await get_json(hub, "/sla/capacity/recommendations"))


async def test_recommendations_change_with_the_history(hub: Hub, clean_db: str) -> None:
    # Quiet pool: 10 % of 100 slots → some miners can go.
    await seed_snapshots(clean_db, [10.0] * 48)
    quiet = await recommendations(hub)
    assert quiet["current_state"] == "scale_down"
    [remove] = quiet["recommendations"]  # type: ignore[misc]
    assert remove["action"] == "remove_miners" and remove["quantity"] >= 1 and remove["priority"] == "low"
    assert remove["reason"]

    # Comfortable: 50 % → hold.
    await execute(clean_db, delete(CapacitySnapshotRow))
    await seed_snapshots(clean_db, [50.0] * 48)
    steady = await recommendations(hub)
    assert steady["current_state"] == "healthy"
    assert [r["action"] for r in steady["recommendations"]] == ["hold"]  # type: ignore[attr-defined]

    # Climbing past the threshold → add capacity, urgently.
    await execute(clean_db, delete(CapacitySnapshotRow))
    await seed_snapshots(clean_db, [40.0 + i for i in range(48)])
    busy = await recommendations(hub)
    assert busy["current_state"] == "scale_up"
    actions = {r["action"]: r for r in busy["recommendations"]}  # type: ignore[attr-defined]
    assert set(actions) == {"add_miners", "add_slots"}
    assert actions["add_slots"]["quantity"] >= 10  # 100 slots at ≥ 87 % need ≥ 109 to stay under 80 %
    assert actions["add_miners"]["quantity"] >= 3  # the typical miner here has 4 slots (100 / 25)
    assert actions["add_miners"]["priority"] == "critical"


async def test_a_forecast_crossing_within_a_day_opens_and_then_resolves_the_capacity_alert(
    clean_db: str,
) -> None:
    # Pool-wide availability is not what this test is about: keep that threshold out of the way.
    settings: Settings = test_settings(clean_db, sla_capacity_threshold=10.0)
    async with started_hub(settings) as hub:
        # Live pool at 75 %, after two days climbing one point an hour: 80 % comes within hours.
        tokens = [await register(hub.client, f"m-{i}", max_parallel=4) for i in range(4)]
        for token in tokens:
            await hub.client.post("/v1/miners/heartbeat", json={"queue_len": 3}, headers=bearer(token))
        await hub.flush()
        await seed_snapshots(clean_db, [28.0 + i for i in range(48)])
        report = await collect(hub)
        assert report["capacity"]["capacity_utilization_pct"] == 75.0
        [alert] = await get_json(hub, "/sla/violations")
        assert alert["violation_type"] == "capacity_forecast"
        assert alert["miner_id"] is None
        assert alert["threshold"] == 80.0
        assert alert["metric_value"] >= 80.0  # the forecast peak of the next 24 h
        assert alert["severity"] in {"low", "medium", "high"}
        status = await get_json(hub, "/sla/status")
        assert status["status"] == "degraded"
        metrics_text = (await hub.client.get("/v1/metrics")).text
        assert 'poolhub_sla_violations_open{type="capacity_forecast"} 1.0' in metrics_text
        # Pool-wide: no miner pays for it in matching.
        response = await hub.client.post(
            "/v1/match",
            json={"job_id": "j", "requirements": {}, "top_k": 1},
            headers=bearer("test-coordinator-secret"),
        )
        assert "sla_penalty" not in response.json()["candidates"][0]["explain"]

        # The load falls back and the history calms down: the alert resolves.
        for token in tokens:
            await hub.client.post("/v1/miners/heartbeat", json={"queue_len": 1}, headers=bearer(token))
        await hub.flush()
        await execute(clean_db, delete(CapacitySnapshotRow))
        await seed_snapshots(clean_db, [25.0] * 48)
        report = await collect(hub)
        assert report["violations_resolved"] == 1
        [resolved] = await get_json(hub, "/sla/violations?resolved=true")
        assert resolved["id"] == alert["id"]
        assert resolved["resolved_at"] is not None and resolved["duration_sec"] >= 0
        assert (await get_json(hub, "/sla/status"))["status"] == "healthy"


async def test_snapshots_window_and_pagination(hub: Hub, clean_db: str) -> None:
    await seed_snapshots(clean_db, [float(i) for i in range(30)])  # one per hour, the last 30 hours
    page = await hub.client.get("/sla/capacity/snapshots?limit=5", headers=bearer(ADMIN))
    assert page.headers["X-Total-Count"] == "24"  # taken within the last 24 h
    body = page.json()
    assert [s["capacity_utilization_pct"] for s in body] == [29.0, 28.0, 27.0, 26.0, 25.0]
    assert set(body[0]) == {
        "id", "timestamp", "total_miners", "online_miners", "total_slots", "used_slots",
        "capacity_utilization_pct", "capacity_availability_pct",
    }  # fmt: skip
    longer = await hub.client.get("/sla/capacity/snapshots?hours=48&offset=28", headers=bearer(ADMIN))
    assert longer.headers["X-Total-Count"] == "30"
    assert [s["capacity_utilization_pct"] for s in longer.json()] == [1.0, 0.0]
