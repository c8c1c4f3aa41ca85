"""The operator console: its counter window (one per process) and its read-only use cases."""

from __future__ import annotations

from dishka import Provider, Scope, provide

from poolhub.app.http.console.counters import MatchRateWindow
from poolhub.app.metrics import Metrics
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
    search = provide(SearchMiners, scope=Scope.REQUEST)
    miner = provide(GetMiner, scope=Scope.REQUEST)
    overview = provide(OverviewPool, scope=Scope.REQUEST)
    billing = provide(SummarizeBilling, scope=Scope.REQUEST)
