"""Unit tests of capacity snapshots and scaling recommendations."""

from __future__ import annotations

import numpy as np
import pytest

from poolhub.domain.capacity import (
    CapacitySnapshotValues,
    PoolMember,
    recommend,
    snapshot,
)
from poolhub.domain.errors import InvalidInputError
from poolhub.domain.forecasting import Forecast, ForecastPoint, forecast_utilization

THRESHOLD = 80.0


def member(max_parallel: int, queue_len: int = 0, busy: bool = False, online: bool = True) -> PoolMember:
    return PoolMember(max_parallel=max_parallel, queue_len=queue_len, busy=busy, online=online)


# --- snapshot ------------------------------------------------------------------------------------------


def test_snapshot_counts_online_slots_and_busy_uses_all_slots() -> None:
    values = snapshot(
        [
            member(4, queue_len=1),  # 1 of 4
            member(2, queue_len=5),  # queue longer than slots: 2 of 2
            member(4, queue_len=0, busy=True),  # busy: 4 of 4
            member(8, queue_len=8, online=False),  # offline: not counted
        ]
    )
    assert (values.total_miners, values.online_miners, values.total_slots, values.used_slots) == (4, 3, 10, 7)
    assert values.capacity_utilization_pct == pytest.approx(70.0)
    assert values.capacity_availability_pct == pytest.approx(30.0)


def test_snapshot_with_no_online_miner_is_zero_zero() -> None:
    values = snapshot([member(4, queue_len=2, online=False)])
    assert (values.total_miners, values.online_miners, values.total_slots, values.used_slots) == (1, 0, 0, 0)
    assert values.capacity_utilization_pct == 0.0
    assert values.capacity_availability_pct == 0.0
    assert snapshot([]).total_miners == 0


# --- recommendations -----------------------------------------------------------------------------------


def current(online: int = 10, slots_each: int = 5, utilization: float = 40.0) -> CapacitySnapshotValues:
    total = online * slots_each
    return CapacitySnapshotValues(
        total_miners=online + 2,
        online_miners=online,
        total_slots=total,
        used_slots=round(total * utilization / 100),
        capacity_utilization_pct=utilization,
        capacity_availability_pct=100.0 - utilization if total else 0.0,
    )


def forecast_peaking(peak_value: float, at_hour: int, base: float = 30.0, horizon: int = 168) -> Forecast:
    points = tuple(
        ForecastPoint(h, peak_value if h == at_hour else base, base - 5.0, base + 5.0)
        for h in range(1, horizon + 1)
    )
    return Forecast(method="holt_winters_additive", points=points, history_points=500, params={})


def test_scale_up_quantities_are_hand_checked() -> None:
    # 50 slots, peak 90 % → 45 used; under 80 % needs ceil(45 / 0.8) = ceil(56.25) = 57 slots: +7,
    # i.e. ceil(7 / 5) = 2 miners of the median 5 slots.
    plan = recommend(forecast_peaking(90.0, at_hour=48), current(), [5] * 10, THRESHOLD)
    assert plan.current_state == "scale_up"
    by_action = {r.action: r for r in plan.recommendations}
    assert by_action["add_miners"].quantity == 2
    assert by_action["add_slots"].quantity == 7
    assert by_action["add_miners"].priority == "high"  # reached in 48 h
    assert "90.0%" in by_action["add_miners"].reason
    assert "48 h" in by_action["add_miners"].reason


def test_exact_slot_count_needs_no_rounding_up() -> None:
    # 50 slots, peak 96 % → 48 used; 48 / 0.8 = 60 exactly: +10 slots, 2 miners
    plan = recommend(forecast_peaking(96.0, at_hour=10), current(), [5] * 10, THRESHOLD)
    by_action = {r.action: r for r in plan.recommendations}
    assert by_action["add_slots"].quantity == 10
    assert by_action["add_miners"].quantity == 2


@pytest.mark.parametrize(
    ("hour", "priority"),
    [(1, "critical"), (24, "critical"), (25, "high"), (72, "high"), (73, "medium"), (168, "medium")],
)
def test_scale_up_priority_by_hours_until_threshold(hour: int, priority: str) -> None:
    plan = recommend(forecast_peaking(85.0, at_hour=hour), current(), [5] * 10, THRESHOLD)
    assert {r.priority for r in plan.recommendations} == {priority}


def test_current_utilisation_above_threshold_is_critical_now() -> None:
    plan = recommend(forecast_peaking(50.0, at_hour=5), current(utilization=90.0), [5] * 10, THRESHOLD)
    assert plan.current_state == "scale_up"
    assert {r.priority for r in plan.recommendations} == {"critical"}
    assert "already reached" in plan.recommendations[0].reason


def test_median_miner_size_sets_the_miner_count() -> None:
    # +7 slots with a median miner of 2 slots → 4 miners
    plan = recommend(forecast_peaking(90.0, at_hour=48), current(), [1, 2, 2, 8, 16], THRESHOLD)
    assert {r.action: r.quantity for r in plan.recommendations} == {"add_miners": 4, "add_slots": 7}


def test_watch_when_peak_is_close_under_threshold() -> None:
    plan = recommend(forecast_peaking(75.0, at_hour=100), current(), [5] * 10, THRESHOLD)
    assert plan.current_state == "watch"
    assert [(r.action, r.quantity, r.priority) for r in plan.recommendations] == [("hold", 0, "low")]
    soon = recommend(forecast_peaking(75.0, at_hour=3), current(), [5] * 10, THRESHOLD)
    assert soon.recommendations[0].priority == "medium"


def test_healthy_in_the_comfortable_band() -> None:
    plan = recommend(forecast_peaking(60.0, at_hour=30), current(), [5] * 10, THRESHOLD)
    assert plan.current_state == "healthy"
    assert [(r.action, r.quantity) for r in plan.recommendations] == [("hold", 0)]


def test_scale_down_quantity_is_hand_checked() -> None:
    # 50 slots, peak 10 % → 5 used; under 48 % (0.6·80) needs ceil(5 / 0.48) = 11 slots: 39 spare
    # → 39 // 5 = 7 miners of 5 slots can go (10 online, so at most 9)
    plan = recommend(
        forecast_peaking(10.0, at_hour=30, base=5.0), current(utilization=5.0), [5] * 10, THRESHOLD
    )
    assert plan.current_state == "scale_down"
    assert [(r.action, r.quantity, r.priority) for r in plan.recommendations] == [("remove_miners", 7, "low")]


def test_scale_down_keeps_one_miner_and_needs_a_whole_miner() -> None:
    idle = recommend(
        forecast_peaking(0.0, at_hour=1, base=0.0), current(utilization=0.0), [5] * 10, THRESHOLD
    )
    assert idle.recommendations[0].quantity == 9
    # 2 miners of 5 slots, peak 35 % → 3.5 used; needs ceil(3.5 / 0.48) = 8 slots, 2 spare < one miner
    small = recommend(
        forecast_peaking(35.0, at_hour=1), current(online=2, utilization=30.0), [5, 5], THRESHOLD
    )
    assert small.current_state == "healthy"


def test_no_online_miner_is_watch_with_one_explanation() -> None:
    plan = recommend(forecast_peaking(50.0, at_hour=1), current(online=0), [], THRESHOLD)
    assert plan.current_state == "watch"
    assert [(r.action, r.quantity, r.priority) for r in plan.recommendations] == [("add_miners", 1, "high")]


def test_no_history_is_watch_with_one_explanation() -> None:
    plan = recommend(forecast_utilization([], 168), current(), [5] * 10, THRESHOLD)
    assert plan.current_state == "watch"
    assert [(r.action, r.quantity, r.priority) for r in plan.recommendations] == [("hold", 0, "low")]
    assert "No capacity history" in plan.recommendations[0].reason


def test_recommendations_follow_the_history() -> None:
    hours = np.arange(21 * 24, dtype=np.float64)
    daily = 5.0 * np.sin(2 * np.pi * hours / 24)
    calm = (30.0 + daily).tolist()  # peaks at 35 %, under half the 80 % threshold
    growing = (30.0 + 0.1 * hours + daily).tolist()  # ≈ 80 % by the end of the history, still rising
    now_calm, now_growing = current(utilization=calm[-1]), current(utilization=min(100.0, growing[-1]))
    calm_plan = recommend(forecast_utilization(calm, 168), now_calm, [5] * 10, THRESHOLD)
    growing_plan = recommend(forecast_utilization(growing, 168), now_growing, [5] * 10, THRESHOLD)
    assert calm_plan.current_state == "scale_down"
    assert growing_plan.current_state == "scale_up"
    assert growing_plan.recommendations[0].priority == "critical"


def test_without_sizes_the_online_average_is_the_typical_miner() -> None:
    plan = recommend(forecast_peaking(90.0, at_hour=48), current(), [], THRESHOLD)
    assert {r.action: r.quantity for r in plan.recommendations} == {"add_miners": 2, "add_slots": 7}


def test_threshold_must_be_a_percentage() -> None:
    with pytest.raises(InvalidInputError):
        recommend(forecast_peaking(50.0, at_hour=1), current(), [5], 0.0)
