"""Billing wiring: the coordinator's HTTP client and gateway (APP scope), the ledger and use cases."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from dishka import Provider, Scope, provide

from poolhub.adapters.billing import CoordinatorBillingClient, make_http_client
from poolhub.adapters.db.billing_repositories import SqlUsageLedger
from poolhub.adapters.db.uow import SqlUnitOfWork
from poolhub.adapters.randomness import SystemRandomSource
from poolhub.app.ioc.core import ReadSession
from poolhub.app.settings import Settings
from poolhub.domain.billing import BackoffPolicy, UnitPrices
from poolhub.domain.ports import BillingGateway, BillingHealth, BillingLedger, Clock, RandomSource
from poolhub.domain.use_cases.billing_queries import (
    GenerateInvoice,
    ListLedgerEntries,
    RequeueRejected,
    UsageReport,
)
from poolhub.domain.use_cases.derive_api_calls import ApiCallsPolicy, DeriveApiCalls
from poolhub.domain.use_cases.record_usage import RecordManualUsage
from poolhub.domain.use_cases.sync_usage import SyncLimits, SyncUsage


class BillingProvider(Provider):
    """`UnitPrices` comes from the matching provider (feedback bills completed jobs with it too)."""

    @provide(scope=Scope.APP)
    async def coordinator_http(self, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
        client = make_http_client(
            settings.coordinator_billing_url,
            settings.coordinator_api_key,
            settings.coordinator_timeout_seconds,
            connect_timeout_s=settings.coordinator_connect_timeout_seconds,
            ca_bundle=settings.coordinator_ca_bundle or None,
        )
        yield client
        await client.aclose()

    @provide(scope=Scope.APP)
    def gateway(self, http: httpx.AsyncClient) -> BillingGateway:
        return CoordinatorBillingClient(http)

    @provide(scope=Scope.APP)
    def backoff(self) -> BackoffPolicy:
        return BackoffPolicy()

    @provide(scope=Scope.APP)
    def sync_limits(self) -> SyncLimits:
        return SyncLimits()

    @provide(scope=Scope.APP)
    def api_calls_policy(self) -> ApiCallsPolicy:
        return ApiCallsPolicy()

    # Reads go through the request's read-only session: on SQLite they never take the write lock.
    @provide(scope=Scope.REQUEST)
    def usage_report(
        self, session: ReadSession, gateway: BillingGateway, clock: Clock, prices: UnitPrices
    ) -> UsageReport:
        return UsageReport(SqlUsageLedger(session), gateway, clock, SqlUnitOfWork(session), prices)

    @provide(scope=Scope.REQUEST)
    def list_entries(self, session: ReadSession) -> ListLedgerEntries:
        return ListLedgerEntries(SqlUsageLedger(session))

    @provide(scope=Scope.REQUEST)
    def billing_health(self, session: ReadSession) -> BillingHealth:
        return SqlUsageLedger(session)

    random = provide(SystemRandomSource, provides=RandomSource, scope=Scope.APP)
    ledger = provide(SqlUsageLedger, provides=BillingLedger, scope=Scope.REQUEST)
    derive_api_calls = provide(DeriveApiCalls, scope=Scope.REQUEST)
    sync_usage = provide(SyncUsage, scope=Scope.REQUEST)
    record_usage = provide(RecordManualUsage, scope=Scope.REQUEST)
    requeue = provide(RequeueRejected, scope=Scope.REQUEST)
    generate_invoice = provide(GenerateInvoice, scope=Scope.REQUEST)
