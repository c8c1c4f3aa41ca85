"""Matching and feedback."""

from __future__ import annotations

from dishka import Provider, Scope, provide

from poolhub.adapters.db.billing_repositories import SqlUsageLedger
from poolhub.adapters.db.matching_repositories import SqlFeedbackRepository, SqlMatchRecordRepository
from poolhub.app.settings import Settings
from poolhub.domain.billing import UnitPrices
from poolhub.domain.matching import ExplorationPolicy
from poolhub.domain.ports import (
    FeedbackRepository,
    MatchRecordRepository,
    UsageLedger,
)
from poolhub.domain.use_cases.match_job import MatchJob, MatchPolicy
from poolhub.domain.use_cases.record_feedback import RecordFeedback


class MatchingProvider(Provider):
    """Matching answers from memory (APP scope); feedback writes through the request's session."""

    @provide(scope=Scope.APP)
    def policy(self, settings: Settings) -> MatchPolicy:
        return MatchPolicy(settings.default_weights, ExplorationPolicy(share=settings.exploration_share))

    @provide(scope=Scope.APP)
    def prices(self, settings: Settings) -> UnitPrices:
        return settings.billing_unit_prices

    match_job = provide(MatchJob, scope=Scope.APP)
    feedback = provide(SqlFeedbackRepository, provides=FeedbackRepository, scope=Scope.REQUEST)
    match_records = provide(SqlMatchRecordRepository, provides=MatchRecordRepository, scope=Scope.REQUEST)
    ledger = provide(SqlUsageLedger, provides=UsageLedger, scope=Scope.REQUEST)
    record_feedback = provide(RecordFeedback, scope=Scope.REQUEST)
