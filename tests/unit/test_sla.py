"""Unit tests of SLA measurement, severity, violation lifecycle and penalty."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from poolhub.domain.errors import InvalidInputError
from poolhub.domain.forecasting import Forecast, ForecastPoint
from poolhub.domain.sla import (
    SLA_PENALTY_FLOOR,
    Interval,
    LatencyStats,
    Measurement,
    MetricType,
    OpenViolation,
    Severity,
    SlaThresholds,
    ViolationPlan,
    completion_rate_pct,
    latency_stats,
    measure_capacity_availability,
    measure_capacity_forecast,
    measure_completion_rate,
    measure_response_time,
    measure_uptime,
    plan_violations,
    severity,
    sla_penalty,
    uptime_pct,
)

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
WINDOW_START = NOW - timedelta(hours=24)
LONG_AGO = NOW - timedelta(days=30)
TH = SlaThresholds()


def hours_ago(hours: float) -> datetime:
    return NOW - timedelta(hours=hours)


# --- uptime -------------------------------------------------------------------------------------------


def test_uptime_interval_starting_before_the_window_is_clipped() -> None:
    intervals = [Interval(hours_ago(30), hours_ago(12))]
    assert uptime_pct(intervals, WINDOW_START, NOW, LONG_AGO) == pytest.approx(50.0)


def test_uptime_open_interval_runs_until_now() -> None:
    intervals = [Interval(hours_ago(6), None)]
    assert uptime_pct(intervals, WINDOW_START, NOW, LONG_AGO) == pytest.approx(25.0)


def test_uptime_overlapping_intervals_are_not_double_counted() -> None:
    intervals = [
        Interval(hours_ago(20), hours_ago(10)),
        Interval(hours_ago(15), hours_ago(8)),
        Interval(hours_ago(14), hours_ago(12)),  # fully inside the first
    ]
    assert uptime_pct(intervals, WINDOW_START, NOW, LONG_AGO) == pytest.approx(12 / 24 * 100)


def test_uptime_gaps_between_intervals_count_as_offline() -> None:
    intervals = [Interval(hours_ago(24), hours_ago(18)), Interval(hours_ago(12), hours_ago(6))]
    assert uptime_pct(intervals, WINDOW_START, NOW, LONG_AGO) == pytest.approx(50.0)


def test_uptime_touching_intervals_merge_and_order_does_not_matter() -> None:
    intervals = [Interval(hours_ago(6), None), Interval(hours_ago(24), hours_ago(6))]
    assert uptime_pct(intervals, WINDOW_START, NOW, LONG_AGO) == pytest.approx(100.0)


def test_uptime_window_starts_at_registration_when_later() -> None:
    registered = hours_ago(4)
    # online the 2 h before now out of a 4 h life; the interval before registration is ignored
    intervals = [Interval(hours_ago(10), hours_ago(5)), Interval(hours_ago(2), None)]
    assert uptime_pct(intervals, WINDOW_START, NOW, registered) == pytest.approx(50.0)


def test_uptime_intervals_outside_the_window_count_nothing() -> None:
    intervals = [Interval(hours_ago(40), hours_ago(30)), Interval(NOW + timedelta(hours=1), None)]
    assert uptime_pct(intervals, WINDOW_START, NOW, LONG_AGO) == 0.0


def test_uptime_empty_effective_window_is_full_uptime() -> None:
    assert uptime_pct([], WINDOW_START, NOW, NOW) == 100.0
    assert uptime_pct([], WINDOW_START, NOW, NOW + timedelta(seconds=5)) == 100.0


def test_uptime_without_history_is_zero() -> None:
    assert uptime_pct([], WINDOW_START, NOW, LONG_AGO) == 0.0


def test_uptime_rejects_naive_datetimes() -> None:
    with pytest.raises(InvalidInputError):
        uptime_pct([], WINDOW_START, NOW.replace(tzinfo=None), LONG_AGO)


# --- latency and completion ----------------------------------------------------------------------------


def test_latency_stats_match_hand_computed_linear_percentiles() -> None:
    stats = latency_stats([100.0, 200.0, 300.0, 400.0, 1000.0])
    assert stats is not None
    assert stats.count == 5
    assert stats.mean == pytest.approx(400.0)
    assert stats.p50 == pytest.approx(300.0)
    # rank 0.95·4 = 3.8 → 400 + 0.8·(1000 − 400)
    assert stats.p95 == pytest.approx(880.0)
    # rank 0.99·4 = 3.96 → 400 + 0.96·600
    assert stats.p99 == pytest.approx(976.0)


def test_latency_stats_single_value_and_empty() -> None:
    assert latency_stats([]) is None
    assert latency_stats([42.0]) == LatencyStats(count=1, mean=42.0, p50=42.0, p95=42.0, p99=42.0)


def test_latency_stats_match_numpy_on_random_data() -> None:
    values = np.random.default_rng(3).gamma(2.0, 150.0, 257)
    stats = latency_stats(values.tolist())
    assert stats is not None
    assert stats.p95 == pytest.approx(float(np.percentile(values, 95)))
    assert stats.p99 == pytest.approx(float(np.percentile(values, 99)))


def test_completion_rate() -> None:
    assert completion_rate_pct(0, 0) is None
    assert completion_rate_pct(9, 1) == pytest.approx(90.0)
    assert completion_rate_pct(0, 3) == 0.0
    with pytest.raises(InvalidInputError):
        completion_rate_pct(-1, 2)


# --- measurements --------------------------------------------------------------------------------------


def test_uptime_breaches_only_below_threshold() -> None:
    assert measure_uptime("m1", 94.9, TH).is_violation
    assert not measure_uptime("m1", 95.0, TH).is_violation


def slow(count: int, p95: float = 1500.0) -> LatencyStats:
    return LatencyStats(count=count, mean=800.0, p50=700.0, p95=p95, p99=2000.0)


def test_response_time_needs_min_samples_to_breach() -> None:
    assert not measure_response_time("m1", slow(9), TH).is_violation
    breach = measure_response_time("m1", slow(10), TH)
    assert breach.is_violation
    assert breach.value == 1500.0
    assert breach.metadata == {"count": 10, "mean": 800.0, "p50": 700.0, "p95": 1500.0, "p99": 2000.0}


def test_response_time_at_threshold_is_not_a_breach() -> None:
    assert not measure_response_time("m1", slow(50, p95=1000.0), TH).is_violation


def test_completion_rate_needs_min_samples_to_breach() -> None:
    assert measure_completion_rate("m1", 0, 0, TH) is None
    few = measure_completion_rate("m1", 5, 4, TH)
    assert few is not None
    assert not few.is_violation
    enough = measure_completion_rate("m1", 5, 5, TH)
    assert enough is not None
    assert enough.is_violation
    assert enough.value == pytest.approx(50.0)
    assert enough.metadata == {"completed": 5, "failed": 5}
    ok = measure_completion_rate("m1", 90, 10, TH)
    assert ok is not None
    assert not ok.is_violation


def test_capacity_availability_is_pool_wide_free_share() -> None:
    m = measure_capacity_availability(total_slots=10, used_slots=3, thresholds=TH)
    assert m.miner_id is None
    assert m.value == pytest.approx(70.0)
    assert m.is_violation
    assert m.metadata == {"total_slots": 10, "used_slots": 3}
    assert not measure_capacity_availability(10, 2, TH).is_violation
    empty = measure_capacity_availability(0, 0, TH)
    assert empty.value == 0.0
    assert empty.is_violation


def test_capacity_forecast_breaches_when_reaching_threshold_within_a_day() -> None:
    def forecast(values: dict[int, float]) -> Forecast:
        points = tuple(ForecastPoint(h, values.get(h, 50.0), 40.0, 60.0) for h in range(1, 49))
        return Forecast(method="holt_winters_additive", points=points, history_points=100, params={})

    soon = measure_capacity_forecast(forecast({24: 80.0, 30: 95.0}), 80.0)
    assert soon.is_violation
    assert soon.value == 80.0
    assert soon.metadata["hours_until_threshold"] == 24
    later = measure_capacity_forecast(forecast({25: 95.0}), 80.0)
    assert not later.is_violation
    assert later.value == 50.0


# --- severity ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (95.0, Severity.LOW),  # not a breach
        (85.500001, Severity.LOW),  # just under 10 % short
        (85.5, Severity.MEDIUM),  # exactly 10 % short
        (71.25, Severity.HIGH),  # exactly 25 % short
        (47.5, Severity.CRITICAL),  # exactly 50 % short
        (0.0, Severity.CRITICAL),
    ],
)
def test_severity_of_higher_is_better_metric(value: float, expected: Severity) -> None:
    assert severity(MetricType.UPTIME, value, 95.0) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (900.0, Severity.LOW),
        (1099.0, Severity.LOW),
        (1100.0, Severity.MEDIUM),
        (1249.0, Severity.MEDIUM),
        (1250.0, Severity.HIGH),
        (1499.0, Severity.HIGH),
        (1500.0, Severity.CRITICAL),
        (9000.0, Severity.CRITICAL),
    ],
)
def test_severity_of_response_time(value: float, expected: Severity) -> None:
    assert severity(MetricType.RESPONSE_TIME, value, 1000.0) is expected


def test_severity_with_zero_threshold() -> None:
    assert severity(MetricType.RESPONSE_TIME, 1.0, 0.0) is Severity.CRITICAL
    assert severity(MetricType.UPTIME, 0.0, 0.0) is Severity.LOW


# --- lifecycle -----------------------------------------------------------------------------------------


def uptime(miner: str, value: float) -> Measurement:
    return measure_uptime(miner, value, TH)


def test_breach_without_open_violation_opens_one() -> None:
    plan = plan_violations([uptime("m1", 80.0), uptime("m2", 99.0)], [], NOW)
    assert [m.miner_id for m in plan.to_open] == ["m1"]
    assert plan.to_update == ()
    assert plan.to_resolve == ()


def test_lifecycle_open_update_resolve() -> None:
    first = plan_violations([uptime("m1", 80.0)], [], NOW)
    assert len(first.to_open) == 1
    stored = OpenViolation("v1", "m1", MetricType.UPTIME, NOW, first.to_open[0].value)

    later = NOW + timedelta(minutes=5)
    still = uptime("m1", 70.0)
    second = plan_violations([still], [stored], later)
    assert second.to_open == ()  # no duplicate
    assert second.to_update == (("v1", still),)
    assert second.to_resolve == ()

    recovered_at = NOW + timedelta(hours=2)
    third = plan_violations([uptime("m1", 99.0)], [stored], recovered_at)
    assert third.to_open == ()
    assert third.to_update == ()
    assert third.to_resolve == (("v1", recovered_at, 7200.0),)


def test_a_miners_violation_with_no_samples_this_round_is_resolved_as_unmeasured() -> None:
    # v1.1: a violation whose metric has no samples in the window is resolved (it was left open before,
    # so its penalty could starve the miner of the very jobs that would measure it again).
    stored = OpenViolation("v1", "m1", MetricType.RESPONSE_TIME, NOW, 1500.0)
    plan = plan_violations([uptime("m1", 99.0)], [stored], NOW + timedelta(hours=1))
    assert plan.to_open == ()
    assert plan.to_update == ()
    assert plan.to_resolve == ()
    assert plan.to_resolve_unmeasured == (("v1", NOW + timedelta(hours=1), 3600.0),)


def test_a_pool_wide_violation_not_measured_stays_open() -> None:
    stored = OpenViolation("v1", None, MetricType.CAPACITY_FORECAST, NOW, 90.0)
    plan = plan_violations([uptime("m1", 99.0)], [stored], NOW + timedelta(hours=1))
    assert plan.to_resolve == plan.to_resolve_unmeasured == ()


def test_gated_measurement_still_past_threshold_neither_resolves_nor_updates() -> None:
    stored = OpenViolation("v1", "m1", MetricType.RESPONSE_TIME, NOW, 1500.0)
    few_but_slow = measure_response_time("m1", slow(3), TH)
    plan = plan_violations([few_but_slow], [stored], NOW + timedelta(hours=1))
    assert plan == ViolationPlan((), (), (), ())
    few_and_fast = measure_response_time("m1", slow(3, p95=200.0), TH)
    resolved = plan_violations([few_and_fast], [stored], NOW + timedelta(hours=1))
    assert resolved.to_resolve == (("v1", NOW + timedelta(hours=1), 3600.0),)


def test_violations_are_keyed_by_miner_and_type_including_the_pool() -> None:
    stored = [
        OpenViolation("v1", "m1", MetricType.UPTIME, NOW, 80.0),
        OpenViolation("v2", None, MetricType.CAPACITY_AVAILABILITY, NOW, 50.0),
    ]
    pool = measure_capacity_availability(10, 1, TH)  # 90 % free: recovered
    plan = plan_violations([uptime("m2", 80.0), pool, uptime("m1", 99.0)], stored, NOW)
    assert [(m.miner_id, m.metric_type) for m in plan.to_open] == [("m2", MetricType.UPTIME)]
    assert [v for v, _, _ in plan.to_resolve] == ["v1", "v2"]


def test_measured_types_limit_the_round() -> None:
    stored = OpenViolation("v1", "m1", MetricType.UPTIME, NOW, 80.0)
    plan = plan_violations([uptime("m1", 99.0), uptime("m2", 10.0)], [stored], NOW, measured_types=())
    assert plan.to_open == ()
    assert plan.to_update == ()
    assert plan.to_resolve == ()


def test_resolution_duration_is_never_negative() -> None:
    stored = OpenViolation("v1", "m1", MetricType.UPTIME, NOW + timedelta(seconds=30), 80.0)
    plan = plan_violations([uptime("m1", 99.0)], [stored], NOW)
    assert plan.to_resolve == (("v1", NOW, 0.0),)


def test_two_measurements_of_one_key_are_rejected() -> None:
    with pytest.raises(InvalidInputError):
        plan_violations([uptime("m1", 80.0), uptime("m1", 90.0)], [], NOW)


def test_plan_is_deterministic() -> None:
    stored = [OpenViolation(f"v{i}", f"m{i}", MetricType.UPTIME, NOW, 80.0) for i in range(5)]
    measurements = [uptime(f"m{i}", 99.0 if i % 2 else 50.0) for i in range(8)]
    assert plan_violations(measurements, stored, NOW) == plan_violations(measurements, stored, NOW)


# --- penalty -------------------------------------------------------------------------------------------


def test_penalty_compounds_per_distinct_miner_type() -> None:
    assert sla_penalty([]) == 1.0
    assert sla_penalty([MetricType.UPTIME]) == pytest.approx(0.8)
    assert sla_penalty([MetricType.UPTIME, MetricType.UPTIME]) == pytest.approx(0.8)
    assert sla_penalty([MetricType.UPTIME, MetricType.RESPONSE_TIME]) == pytest.approx(0.64)
    three = [MetricType.UPTIME, MetricType.RESPONSE_TIME, MetricType.COMPLETION_RATE]
    assert sla_penalty(three) == pytest.approx(0.512)
    assert sla_penalty(three) >= SLA_PENALTY_FLOOR


def test_penalty_ignores_pool_wide_types() -> None:
    assert sla_penalty([MetricType.CAPACITY_AVAILABILITY, MetricType.CAPACITY_FORECAST]) == 1.0
