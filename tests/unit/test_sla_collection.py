"""Unit tests of the SLA collection use case (through in-memory fakes), penalties, status, timed forecasts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from poolhub.adapters.live import LiveDirectory
from poolhub.domain.capacity import CapacitySnapshotValues
from poolhub.domain.errors import InvalidInputError
from poolhub.domain.forecasting import METHOD_HOLT, METHOD_LAST_VALUE, METHOD_NONE, forecast_from_now
from poolhub.domain.model import LeasePolicy
from poolhub.domain.ports import (
    FeedbackWindowStats,
    MinerSlaFacts,
    OpenViolationKey,
    StoredMetric,
    StoredSnapshot,
    StoredViolation,
)
from poolhub.domain.sla import (
    Interval,
    LatencyStats,
    Measurement,
    MetricType,
    OpenViolation,
    Severity,
    SlaThresholds,
    penalties_by_miner,
    sla_status,
)
from poolhub.domain.trust import TrustPolicy
from poolhub.domain.use_cases.capacity_planning import CapacityPlanner, CapacityPolicy
from poolhub.domain.use_cases.collect_sla import CollectSla, SlaPolicy, measure_miners
from tests.fakes import FakeChangeLog

NOW = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
WINDOW_START = NOW - timedelta(hours=24)
LEASE = LeasePolicy(heartbeat_grace_sec=120)


def fact(miner_id: str, *, queue_len: int = 0, online: bool = True, max_parallel: int = 4) -> MinerSlaFacts:
    return MinerSlaFacts(
        miner_id=miner_id,
        registered_at=NOW - timedelta(days=3),
        max_parallel=max_parallel,
        queue_len=queue_len,
        busy=False,
        last_beat_at=NOW - timedelta(seconds=10 if online else 3600),
        logged_out_at=None,
    )


def always_online() -> list[Interval]:
    return [Interval(NOW - timedelta(days=2), NOW + timedelta(seconds=110))]


@dataclass
class FakeSlaRepository:
    facts: list[MinerSlaFacts] = field(default_factory=list)
    intervals: dict[str, list[Interval]] = field(default_factory=dict)
    feedback: list[FeedbackWindowStats] = field(default_factory=list)
    metrics_added: list[Measurement] = field(default_factory=list)
    rows: dict[str, StoredViolation] = field(default_factory=dict)
    pruned_before: datetime | None = None

    async def miner_exists(self, miner_id: str) -> bool:
        return any(f.miner_id == miner_id for f in self.facts)

    async def miner_facts(self) -> list[MinerSlaFacts]:
        return list(self.facts)

    async def presence(self, since: datetime, until: datetime) -> dict[str, list[Interval]]:
        return self.intervals

    async def feedback_stats(self, since: datetime, until: datetime) -> list[FeedbackWindowStats]:
        return list(self.feedback)

    async def add_metrics(self, measurements: Sequence[Measurement], at: datetime) -> int:
        self.metrics_added.extend(measurements)
        return len(measurements)

    async def metrics(
        self, *, since: datetime, miner_id: str | None, offset: int, limit: int
    ) -> tuple[list[StoredMetric], int]:
        raise NotImplementedError

    async def count_metrics_since(self, since: datetime) -> int:
        return len(self.metrics_added)

    async def prune_metrics(self, before: datetime) -> int:
        self.pruned_before = before
        return 0

    def _open(self) -> list[StoredViolation]:
        return [v for v in self.rows.values() if v.resolved_at is None]

    async def open_violations(self) -> list[OpenViolation]:
        return [
            OpenViolation(str(v.id), v.miner_id, MetricType(v.violation_type), v.created_at, v.metric_value)
            for v in self._open()
        ]

    async def open_violation_keys(self) -> list[OpenViolationKey]:
        return [OpenViolationKey(v.miner_id, v.violation_type, v.severity) for v in self._open()]

    async def open_new_violations(
        self, breaches: Sequence[tuple[Measurement, Severity]], now: datetime
    ) -> int:
        for m, grade in breaches:
            id_ = len(self.rows) + 1
            self.rows[str(id_)] = StoredViolation(
                id_, m.miner_id, m.metric_type.value, grade.value, m.value, m.threshold, now, None, None
            )
        return len(breaches)

    async def refresh_violations(
        self, updates: Sequence[tuple[str, Measurement, Severity]], now: datetime
    ) -> None:
        for id_, m, grade in updates:
            old = self.rows[id_]
            self.rows[id_] = StoredViolation(
                old.id, old.miner_id, old.violation_type, grade.value, m.value, m.threshold,
                old.created_at, None, None,
            )  # fmt: skip

    async def resolve_violations(
        self, resolutions: Sequence[tuple[str, datetime, float]], metadata: Mapping[str, str] | None = None
    ) -> int:
        for id_, at, seconds in resolutions:
            old = self.rows[id_]
            self.rows[id_] = StoredViolation(
                old.id, old.miner_id, old.violation_type, old.severity, old.metric_value, old.threshold,
                old.created_at, at, seconds, dict(metadata or {}),
            )  # fmt: skip
        return len(resolutions)

    async def violations(
        self, *, miner_id: str | None, resolved: bool, offset: int, limit: int
    ) -> tuple[list[StoredViolation], int]:
        raise NotImplementedError


@dataclass
class FakeCapacityRepository:
    stored: list[StoredSnapshot] = field(default_factory=list)

    async def add_snapshot(self, values: CapacitySnapshotValues, at: datetime) -> StoredSnapshot:
        snapshot = StoredSnapshot(len(self.stored) + 1, at, values)
        self.stored.append(snapshot)
        return snapshot

    async def add_snapshots(self, snapshots: Sequence[tuple[datetime, CapacitySnapshotValues]]) -> int:
        for at, values in snapshots:
            await self.add_snapshot(values, at)
        return len(snapshots)

    async def delete_snapshots(self) -> int:
        count, self.stored = len(self.stored), []
        return count

    async def snapshots(
        self, *, since: datetime, offset: int, limit: int
    ) -> tuple[list[StoredSnapshot], int]:
        raise NotImplementedError

    async def latest_snapshot(self) -> StoredSnapshot | None:
        return max(self.stored, key=lambda s: s.timestamp, default=None)

    async def hourly_utilization(self, since: datetime, until: datetime) -> list[tuple[datetime, float]]:
        return [(s.timestamp, s.values.capacity_utilization_pct) for s in self.stored if since <= s.timestamp]

    async def miner_slot_sizes(self) -> list[int]:
        return []


class FakeUnitOfWork:
    def __init__(self) -> None:
        self.commits = 0

    async def commit(self) -> None:
        self.commits += 1

    async def rollback(self) -> None:
        pass


@dataclass
class FixedClock:
    instant: datetime

    def now(self) -> datetime:
        return self.instant


@dataclass
class World:
    sla: FakeSlaRepository
    capacity: FakeCapacityRepository
    uow: FakeUnitOfWork
    directory: LiveDirectory
    clock: FixedClock

    def use_case(self) -> CollectSla:
        planner = CapacityPlanner(self.capacity, CapacityPolicy(forecast_hours=48, alert_threshold_pct=80.0))
        return CollectSla(
            self.sla,
            self.capacity,
            planner,
            self.uow,
            self.directory,
            LEASE,
            self.clock,
            SlaPolicy(),
            FakeChangeLog(),
        )


def world(*facts: MinerSlaFacts) -> World:
    sla = FakeSlaRepository(facts=list(facts), intervals={f.miner_id: always_online() for f in facts})
    return World(
        sla,
        FakeCapacityRepository(),
        FakeUnitOfWork(),
        LiveDirectory(LEASE, TrustPolicy(), FixedClock(NOW)),
        FixedClock(NOW),
    )


def stats(miner_id: str, completed: int, failed: int, p95: float | None = None) -> FeedbackWindowStats:
    latency = None if p95 is None else LatencyStats(completed + failed, p95, p95, p95, p95)
    return FeedbackWindowStats(miner_id, completed, failed, latency)


async def test_collection_measures_every_miner_and_the_pool_and_commits_once() -> None:
    w = world(fact("m-1", queue_len=1), fact("m-2", online=False))
    w.sla.feedback = [stats("m-1", 20, 0, p95=300.0)]
    report = await w.use_case().execute()
    assert w.uow.commits == 1
    assert report.miners_processed == 2
    kinds = sorted((m.miner_id or "", m.metric_type.value) for m in w.sla.metrics_added)
    assert kinds == [
        ("", "capacity_availability_pct"),
        ("m-1", "completion_rate_pct"),
        ("m-1", "response_time_ms"),
        ("m-1", "uptime_pct"),
        ("m-2", "uptime_pct"),
    ]
    assert report.metrics_recorded == 5
    assert report.capacity.values.total_slots == 4  # only the online miner's slots
    assert report.capacity.values.used_slots == 1
    assert report.capacity.timestamp == NOW
    # v1.1: old metrics are pruned by the retention job (RETENTION_DAYS), no longer by the collection.
    assert w.sla.pruned_before is None


async def test_lifecycle_opens_keeps_and_resolves_one_violation_with_penalties() -> None:
    w = world(fact("m-1"), fact("m-2"))
    w.sla.feedback = [stats("m-1", 0, 10)]
    first = await w.use_case().execute()
    assert first.violations_opened == 1
    assert first.open_by_type["completion_rate_pct"] == 1
    assert w.directory.penalty_of("m-1") == pytest.approx(0.8)
    assert w.directory.penalty_of("m-2") == 1.0

    w.clock.instant = NOW + timedelta(seconds=30)
    w.sla.feedback = [stats("m-1", 1, 10)]
    second = await w.use_case().execute()
    assert (second.violations_opened, second.violations_resolved) == (0, 0)
    [violation] = w.sla.rows.values()
    assert violation.metric_value == pytest.approx(100 / 11)

    w.clock.instant = NOW + timedelta(seconds=60)
    w.sla.feedback = [stats("m-1", 100, 10)]
    third = await w.use_case().execute()
    assert third.violations_resolved == 1
    [violation] = w.sla.rows.values()
    assert violation.resolved_at == NOW + timedelta(seconds=60)
    assert violation.duration_sec == 60.0
    assert w.directory.penalty_of("m-1") == 1.0


async def test_a_crowded_pool_opens_the_pool_wide_violations_without_penalising_miners() -> None:
    w = world(fact("m-1", queue_len=4), fact("m-2", queue_len=4))
    report = await w.use_case().execute()
    pool = {v.violation_type for v in w.sla.rows.values() if v.miner_id is None}
    # Full now, so the forecast (last value, one point) is at the alert threshold within 24 h.
    assert pool == {"capacity_availability_pct", "capacity_forecast"}
    assert report.open_by_type["capacity_forecast"] == 1
    assert w.directory.penalty_of("m-1") == 1.0


async def test_a_failed_collection_commits_nothing() -> None:
    w = world(fact("m-1"))

    async def broken(breaches: object, now: datetime) -> int:
        raise RuntimeError("database went away")

    w.sla.open_new_violations = broken  # type: ignore[method-assign]
    w.sla.feedback = [stats("m-1", 0, 10)]
    with pytest.raises(RuntimeError):
        await w.use_case().execute()
    assert w.uow.commits == 0


def test_measure_miners_skips_unknown_miners_and_labels_the_uptime_window() -> None:
    facts = [fact("m-1")]
    out = measure_miners(
        facts, {"m-1": always_online()}, [stats("ghost", 5, 5)], WINDOW_START, NOW, SlaPolicy()
    )
    assert [(m.miner_id, m.metric_type) for m in out] == [("m-1", MetricType.UPTIME)]
    assert out[0].metadata == {"window_hours": 24, "window_start": "2026-03-09T12:30:00Z"}


def test_penalties_count_distinct_miner_level_types_only() -> None:
    keys: list[tuple[str | None, MetricType | str]] = [
        ("m-1", "uptime_pct"),
        ("m-1", "uptime_pct"),
        ("m-1", "response_time_ms"),
        ("m-2", MetricType.COMPLETION_RATE),
        (None, "capacity_forecast"),
    ]
    assert penalties_by_miner(keys) == {"m-1": pytest.approx(0.64), "m-2": pytest.approx(0.8)}
    assert penalties_by_miner([]) == {}


def test_status_is_critical_then_degraded_then_healthy() -> None:
    assert sla_status(["low", "critical"]) == "critical"
    assert sla_status([Severity.HIGH, Severity.LOW]) == "degraded"
    assert sla_status([]) == "healthy"


def _hourly(values: Sequence[float], last_hour: datetime) -> list[tuple[datetime, float]]:
    n = len(values)
    return [(last_hour - timedelta(hours=n - 1 - i), v) for i, v in enumerate(values)]


def test_timed_forecast_starts_at_the_next_hour() -> None:
    current_hour = NOW.replace(minute=0)
    timed = forecast_from_now(_hourly([10.0, 20.0, 30.0, 40.0], current_hour), NOW, 3)
    assert timed.origin == current_hour
    assert timed.forecast.method == METHOD_HOLT
    assert [p.hours_ahead for p in timed.forecast.points] == [1, 2, 3]
    assert [p.value for p in timed.forecast.points] == pytest.approx([50.0, 60.0, 70.0])


def test_timed_forecast_bridges_a_gap_in_the_history() -> None:
    # History stopped five hours ago: the model runs across the gap, the answer starts after now.
    last = NOW.replace(minute=0) - timedelta(hours=5)
    timed = forecast_from_now(_hourly([10.0, 20.0, 30.0, 40.0], last), NOW, 2)
    assert [p.hours_ahead for p in timed.forecast.points] == [1, 2]
    assert [p.value for p in timed.forecast.points] == pytest.approx([100.0, 100.0])  # 40 + 10·6, clamped


def test_timed_forecast_without_history_or_with_one_point() -> None:
    empty = forecast_from_now([], NOW, 2)
    assert empty.forecast.method == METHOD_NONE
    assert [p.value for p in empty.forecast.points] == [0.0, 0.0]
    single = forecast_from_now([(NOW - timedelta(minutes=5), 42.0)], NOW, 2)
    assert single.forecast.method == METHOD_LAST_VALUE
    assert [p.value for p in single.forecast.points] == [42.0, 42.0]
    with pytest.raises(InvalidInputError):
        forecast_from_now([], NOW, 0)


def test_thresholds_default_to_the_contract() -> None:
    assert SlaPolicy().thresholds == SlaThresholds(95.0, 1000.0, 90.0, 80.0, 10)
