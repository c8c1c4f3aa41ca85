"""The operator console: its counter window (one per process) and its read-only use cases."""

from __future__ import annotations

from dishka import Provider, Scope, provide

from poolhub.adapters.db.billing_repositories import SqlUsageLedger
from poolhub.adapters.db.sla_repositories import SqlSlaRepository
from poolhub.app.http.console.counters import MatchRateWindow
from poolhub.app.ioc.core import ReadSession
from poolhub.app.metrics import Metrics
from poolhub.domain.ports import Clock, LiveState
from poolhub.domain.use_cases.console_queries import (
    ExplainMiner,
    GetMiner,
    OverviewPool,
    SearchMiners,
    SummarizeBilling,
)


class ConsoleProvider(Provider):
    @provide(scope=Scope.APP)
    def match_window(self, metrics: Metrics) -> MatchRateWindow:
        return MatchRateWindow(metrics)

    explain = provide(ExplainMiner, scope=Scope.APP)

    # The console only reads: through the request's read-only session, so on SQLite a page never
    # waits for the write lock that registrations, beats and feedback queue for.
    @provide(scope=Scope.REQUEST)
    def search(self, directory: LiveState, session: ReadSession, clock: Clock) -> SearchMiners:
        return SearchMiners(directory, SqlSlaRepository(session), clock)

    @provide(scope=Scope.REQUEST)
    def miner(self, directory: LiveState, session: ReadSession, clock: Clock) -> GetMiner:
        return GetMiner(directory, SqlSlaRepository(session), clock)

    @provide(scope=Scope.REQUEST)
    def overview(self, directory: LiveState, session: ReadSession, clock: Clock) -> OverviewPool:
        return OverviewPool(directory, SqlSlaRepository(session), clock)

    @provide(scope=Scope.REQUEST)
    def billing(self, session: ReadSession, clock: Clock) -> SummarizeBilling:
        return SummarizeBilling(SqlUsageLedger(session), clock)
