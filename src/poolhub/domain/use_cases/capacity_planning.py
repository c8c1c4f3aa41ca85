"""Capacity planning: the utilisation forecast, scaling recommendations and the capacity_forecast alert."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from poolhub.domain.capacity import CapacityPlan, CapacitySnapshotValues, PoolMember, recommend, snapshot
from poolhub.domain.errors import InvalidInputError
from poolhub.domain.forecasting import Forecast, forecast_from_now, hours_until_threshold, peak
from poolhub.domain.model import LeasePolicy, MinerStatus
from poolhub.domain.ports import CapacityRepository, Clock, MinerSlaFacts, SlaRepository
from poolhub.domain.sla import Measurement, measure_capacity_forecast

# How much snapshot history feeds the forecast: enough for a stable daily season and trend.
FORECAST_HISTORY = timedelta(days=90)
# The capacity_forecast violation is open while the forecast reaches the alert threshold this soon.
ALERT_WITHIN_HOURS = 24
MAX_HOURS_AHEAD = 720


@dataclass(frozen=True, slots=True)
class CapacityPolicy:
    """Default horizon (CAPACITY_FORECAST_HOURS) and the alert threshold (CAPACITY_ALERT_THRESHOLD_PCT)."""

    forecast_hours: int = 168
    alert_threshold_pct: float = 80.0


@dataclass(frozen=True, slots=True)
class TimedPoint:
    timestamp: datetime
    utilization_pct: float
    lower_pct: float
    upper_pct: float


@dataclass(frozen=True, slots=True)
class CapacityForecastView:
    """The forecast as the operator sees it: hourly points after `generated_at`, one per hour ahead."""

    forecast_horizon_hours: int
    method: str
    generated_at: datetime
    history_points: int
    current_utilization_pct: float
    points: tuple[TimedPoint, ...]
    peak: TimedPoint
    alert_threshold_pct: float
    hours_until_threshold: int | None
    forecast: Forecast


def pool_snapshot(
    facts: Sequence[MinerSlaFacts], lease: LeasePolicy, now: datetime
) -> CapacitySnapshotValues:
    """The pool's capacity now: every registered miner counted, the slots of the online ones."""
    return snapshot(
        [
            PoolMember(
                max_parallel=fact.max_parallel,
                queue_len=fact.queue_len,
                busy=fact.busy,
                online=lease.is_online(
                    MinerStatus(last_beat_at=fact.last_beat_at, logged_out_at=fact.logged_out_at), now
                ),
            )
            for fact in facts
        ]
    )


class CapacityPlanner:
    """Reads the snapshot history and forecasts it; shared by the forecast, recommendations and collection."""

    def __init__(self, capacity: CapacityRepository, policy: CapacityPolicy) -> None:
        self._capacity = capacity
        self._policy = policy

    @property
    def policy(self) -> CapacityPolicy:
        return self._policy

    async def forecast(self, now: datetime, hours_ahead: int | None = None) -> CapacityForecastView:
        """Forecast `hours_ahead` (default CAPACITY_FORECAST_HOURS) hours from 90 days of snapshots."""
        horizon = self._policy.forecast_hours if hours_ahead is None else hours_ahead
        if not 1 <= horizon <= MAX_HOURS_AHEAD:
            raise InvalidInputError(f"hours_ahead must be between 1 and {MAX_HOURS_AHEAD}, got {horizon}")
        history = await self._capacity.hourly_utilization(now - FORECAST_HISTORY, now)
        latest = await self._capacity.latest_snapshot()
        timed = forecast_from_now(history, now, horizon)
        origin = timed.origin
        points = tuple(
            TimedPoint(
                timestamp=origin + timedelta(hours=p.hours_ahead),
                utilization_pct=p.value,
                lower_pct=p.lower,
                upper_pct=p.upper,
            )
            for p in timed.forecast.points
        )
        top = peak(timed.forecast.points)
        assert top is not None  # horizon ≥ 1, so there is at least one point
        threshold = self._policy.alert_threshold_pct
        return CapacityForecastView(
            forecast_horizon_hours=horizon,
            method=timed.forecast.method,
            generated_at=now,
            history_points=timed.forecast.history_points,
            current_utilization_pct=latest.values.capacity_utilization_pct if latest is not None else 0.0,
            points=points,
            peak=points[top.hours_ahead - 1],
            alert_threshold_pct=threshold,
            hours_until_threshold=hours_until_threshold(timed.forecast.points, threshold),
            forecast=timed.forecast,
        )

    async def alert(self, now: datetime) -> Measurement:
        """The pool-wide capacity_forecast measurement: breached when the next 24 h reach the threshold."""
        view = await self.forecast(now, ALERT_WITHIN_HOURS)
        return measure_capacity_forecast(view.forecast, self._policy.alert_threshold_pct, ALERT_WITHIN_HOURS)


class ForecastCapacity:
    """GET /sla/capacity/forecast: reads only."""

    def __init__(self, planner: CapacityPlanner, clock: Clock) -> None:
        self._planner = planner
        self._clock = clock

    async def execute(self, hours_ahead: int | None = None) -> CapacityForecastView:
        return await self._planner.forecast(self._clock.now(), hours_ahead)


class RecommendCapacity:
    """GET /sla/capacity/recommendations: the forecast peak against the current slots; reads only.

    "Current" is the newest snapshot (at most one collection interval old, and what the forecast is
    built from); with no snapshot yet, the live pool read from the database.
    """

    def __init__(
        self,
        planner: CapacityPlanner,
        capacity: CapacityRepository,
        sla: SlaRepository,
        lease: LeasePolicy,
        clock: Clock,
    ) -> None:
        self._planner = planner
        self._capacity = capacity
        self._sla = sla
        self._lease = lease
        self._clock = clock

    async def execute(self) -> CapacityPlan:
        now = self._clock.now()
        view = await self._planner.forecast(now)
        latest = await self._capacity.latest_snapshot()
        current = latest.values if latest is not None else await self._live(now)
        sizes = await self._capacity.miner_slot_sizes()
        return recommend(view.forecast, current, sizes, self._planner.policy.alert_threshold_pct)

    async def _live(self, now: datetime) -> CapacitySnapshotValues:
        return pool_snapshot(await self._sla.miner_facts(), self._lease, now)
