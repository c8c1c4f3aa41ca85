"""CollectSla: measure every miner and the pool, record metrics and a snapshot, update violations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from poolhub.domain.model import LeasePolicy
from poolhub.domain.ports import (
    CapacityRepository,
    ChangeKind,
    ChangeLog,
    Clock,
    FeedbackWindowStats,
    LiveState,
    MinerSlaFacts,
    SlaRepository,
    StoredSnapshot,
    UnitOfWork,
)
from poolhub.domain.sla import (
    UNMEASURED_REASON,
    Interval,
    Measurement,
    SlaThresholds,
    measure_capacity_availability,
    measure_completion_rate,
    measure_response_time,
    measure_uptime,
    plan_violations,
    severity,
    uptime_pct,
)
from poolhub.domain.use_cases.capacity_planning import CapacityPlanner, pool_snapshot
from poolhub.domain.use_cases.refresh_sla_penalties import apply_open_violations
from poolhub.domain.utc import rfc3339


@dataclass(frozen=True, slots=True)
class SlaPolicy:
    """The thresholds and the window (SLA_WINDOW_HOURS) every metric is measured over."""

    thresholds: SlaThresholds = field(default_factory=SlaThresholds)
    window_hours: int = 24


@dataclass(frozen=True, slots=True)
class CollectionReport:
    miners_processed: int
    metrics_recorded: int
    violations_opened: int
    violations_resolved: int
    capacity: StoredSnapshot
    open_by_type: Mapping[str, int]


def measure_miners(
    facts: Sequence[MinerSlaFacts],
    presence: Mapping[str, Sequence[Interval]],
    feedback: Sequence[FeedbackWindowStats],
    window_start: datetime,
    now: datetime,
    policy: SlaPolicy,
) -> list[Measurement]:
    """Uptime of every registered miner; response time and completion rate of those with feedback."""
    thresholds = policy.thresholds
    window: dict[str, float | int | str | None] = {
        "window_hours": policy.window_hours,
        "window_start": rfc3339(window_start),
    }
    measurements: list[Measurement] = []
    for fact in facts:
        value = uptime_pct(presence.get(fact.miner_id, ()), window_start, now, fact.registered_at)
        uptime = measure_uptime(fact.miner_id, value, thresholds)
        measurements.append(replace(uptime, metadata=window))
    known = {fact.miner_id for fact in facts}
    for stats in feedback:
        if stats.miner_id not in known:
            continue
        if stats.latency is not None:
            measurements.append(measure_response_time(stats.miner_id, stats.latency, thresholds))
        rate = measure_completion_rate(stats.miner_id, stats.completed, stats.failed, thresholds)
        if rate is not None:
            measurements.append(rate)
    return measurements


class CollectSla:
    """One collection: every registered miner (online or not) and the pool; commits once.

    Reads the miners, their presence intervals and their feedback of the window set-based (a fixed
    number of queries whatever the pool size), records one metric per measured (miner, type) plus the
    pool's capacity availability, stores a capacity snapshot, forecasts utilisation for the
    capacity_forecast alert, then opens, refreshes and resolves violations (`plan_violations`); old
    metrics are the retention job's (`PruneHistory`). After the commit the open violations become this
    process's match-score penalties.
    """

    def __init__(
        self,
        sla: SlaRepository,
        capacity: CapacityRepository,
        planner: CapacityPlanner,
        uow: UnitOfWork,
        directory: LiveState,
        lease: LeasePolicy,
        clock: Clock,
        policy: SlaPolicy,
        changes: ChangeLog,
    ) -> None:
        self._changes = changes
        self._sla = sla
        self._capacity = capacity
        self._planner = planner
        self._uow = uow
        self._directory = directory
        self._lease = lease
        self._clock = clock
        self._policy = policy

    async def execute(self) -> CollectionReport:
        now = self._clock.now()
        # Every beat this process acknowledged before the collection began is in what it reads.
        await self._directory.flush()
        window_start = now - timedelta(hours=self._policy.window_hours)
        facts = await self._sla.miner_facts()
        presence = open_live_intervals(await self._sla.presence(window_start, now), self._online_since(now))
        feedback = await self._sla.feedback_stats(window_start, now)
        measurements = measure_miners(facts, presence, feedback, window_start, now, self._policy)

        pool = pool_snapshot(facts, self._lease, now)
        measurements.append(
            measure_capacity_availability(pool.total_slots, pool.used_slots, self._policy.thresholds)
        )
        recorded = await self._sla.add_metrics(measurements, now)
        stored = await self._capacity.add_snapshot(pool, now)
        # The forecast reads the snapshot just added (same transaction).
        alert = await self._planner.alert(now)

        plan = plan_violations([*measurements, alert], await self._sla.open_violations(), now)
        opened = await self._sla.open_new_violations(
            [(m, severity(m.metric_type, m.value, m.threshold)) for m in plan.to_open], now
        )
        await self._sla.refresh_violations(
            [(id_, m, severity(m.metric_type, m.value, m.threshold)) for id_, m in plan.to_update], now
        )
        resolved = await self._sla.resolve_violations(plan.to_resolve)
        resolved += await self._sla.resolve_violations(plan.to_resolve_unmeasured, UNMEASURED_REASON)
        # Read before the commit: a read after it would open a transaction that lingers until the
        # request ends (on SQLite holding the write lock).
        open_keys = await self._sla.open_violation_keys()
        await self._changes.record(ChangeKind.PENALTIES, [None], now)
        await self._uow.commit()

        open_by_type = apply_open_violations(open_keys, self._directory)
        return CollectionReport(
            miners_processed=len(facts),
            metrics_recorded=recorded,
            violations_opened=opened,
            violations_resolved=resolved,
            capacity=stored,
            open_by_type=open_by_type,
        )

    def _online_since(self, now: datetime) -> dict[str, datetime]:
        online: dict[str, datetime] = {}
        for miner in self._directory.miners():
            if self._directory.is_online(miner, now) and miner.status.online_since is not None:
                online[miner.miner_id] = miner.status.online_since
        return online


def open_live_intervals(
    presence: Mapping[str, Sequence[Interval]], online_since: Mapping[str, datetime]
) -> dict[str, list[Interval]]:
    """A miner online now has an open interval: its stored end (written every few seconds) lags, so
    the interval it began at `online_since` counts up to the collection's `now`."""
    opened: dict[str, list[Interval]] = {m: list(intervals) for m, intervals in presence.items()}
    for miner_id, since in online_since.items():
        intervals = opened.setdefault(miner_id, [])
        kept = [i for i in intervals if i.start != since]
        opened[miner_id] = [*kept, Interval(start=since, end=None)]
    return opened
