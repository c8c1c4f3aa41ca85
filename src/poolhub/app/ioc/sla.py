"""Dishka provider of the SLA and capacity features: policies from settings, repositories and use cases."""

from __future__ import annotations

from dishka import Provider, Scope, provide

from poolhub.adapters.db.capacity_repositories import SqlCapacityRepository
from poolhub.adapters.db.retention_repository import SqlHistoryStore
from poolhub.adapters.db.sla_repositories import SqlSlaRepository
from poolhub.app.ioc.core import ReadSession
from poolhub.app.settings import Settings
from poolhub.domain.model import LeasePolicy
from poolhub.domain.ports import BillingHealth, CapacityRepository, Clock, SlaRepository
from poolhub.domain.ports.retention import HistoryStore
from poolhub.domain.sla import SlaThresholds
from poolhub.domain.use_cases.capacity_planning import (
    CapacityPlanner,
    CapacityPolicy,
    ForecastCapacity,
    RecommendCapacity,
)
from poolhub.domain.use_cases.collect_sla import CollectSla, SlaPolicy
from poolhub.domain.use_cases.prune_history import PruneHistory, RetentionPolicy
from poolhub.domain.use_cases.refresh_sla_penalties import RefreshSlaPenalties
from poolhub.domain.use_cases.sla_queries import (
    GetSlaStatus,
    ListCapacitySnapshots,
    ListSlaMetrics,
    ListSlaViolations,
)


class SlaProvider(Provider):
    """APP scope: the policies; REQUEST scope: repositories over the request's session and use cases."""

    @provide(scope=Scope.APP)
    def sla_policy(self, settings: Settings) -> SlaPolicy:
        return SlaPolicy(
            thresholds=SlaThresholds(
                uptime_pct=settings.sla_uptime_threshold,
                response_time_ms=settings.sla_response_time_threshold,
                completion_rate_pct=settings.sla_completion_rate_threshold,
                capacity_availability_pct=settings.sla_capacity_threshold,
                min_samples=settings.sla_min_samples,
            ),
            window_hours=settings.sla_window_hours,
        )

    @provide(scope=Scope.APP)
    def capacity_policy(self, settings: Settings) -> CapacityPolicy:
        return CapacityPolicy(
            forecast_hours=settings.capacity_forecast_hours,
            alert_threshold_pct=settings.capacity_alert_threshold_pct,
        )

    @provide(scope=Scope.APP)
    def retention_policy(self, settings: Settings) -> RetentionPolicy:
        return RetentionPolicy(
            retention_days=settings.retention_days, capacity_history_days=settings.capacity_history_days
        )

    history = provide(SqlHistoryStore, provides=HistoryStore, scope=Scope.REQUEST)
    prune_history = provide(PruneHistory, scope=Scope.REQUEST)
    sla_repository = provide(SqlSlaRepository, provides=SlaRepository, scope=Scope.REQUEST)
    capacity_repository = provide(SqlCapacityRepository, provides=CapacityRepository, scope=Scope.REQUEST)
    planner = provide(CapacityPlanner, scope=Scope.REQUEST)
    collect = provide(CollectSla, scope=Scope.REQUEST)
    refresh_penalties = provide(RefreshSlaPenalties, scope=Scope.REQUEST)

    # Pure reads go through the request's read-only session: on SQLite they never take the write lock.
    @provide(scope=Scope.REQUEST)
    def list_metrics(self, session: ReadSession, clock: Clock) -> ListSlaMetrics:
        return ListSlaMetrics(SqlSlaRepository(session), clock)

    @provide(scope=Scope.REQUEST)
    def list_violations(self, session: ReadSession) -> ListSlaViolations:
        return ListSlaViolations(SqlSlaRepository(session))

    @provide(scope=Scope.REQUEST)
    def list_snapshots(self, session: ReadSession, clock: Clock) -> ListCapacitySnapshots:
        return ListCapacitySnapshots(SqlCapacityRepository(session), clock)

    @provide(scope=Scope.REQUEST)
    def status(self, session: ReadSession, clock: Clock, billing: BillingHealth) -> GetSlaStatus:
        return GetSlaStatus(SqlSlaRepository(session), clock, billing)

    @provide(scope=Scope.REQUEST)
    def forecast(self, session: ReadSession, policy: CapacityPolicy, clock: Clock) -> ForecastCapacity:
        return ForecastCapacity(CapacityPlanner(SqlCapacityRepository(session), policy), clock)

    @provide(scope=Scope.REQUEST)
    def recommend(
        self, session: ReadSession, policy: CapacityPolicy, lease: LeasePolicy, clock: Clock
    ) -> RecommendCapacity:
        capacity = SqlCapacityRepository(session)
        return RecommendCapacity(
            CapacityPlanner(capacity, policy), capacity, SqlSlaRepository(session), lease, clock
        )
