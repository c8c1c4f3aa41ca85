"""Billing reads and the invoice proxy: the usage report, the ledger listing, invoice generation."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from poolhub.domain.billing import LedgerEntry, LedgerStatus, UsageLine, summarize_usage
from poolhub.domain.errors import BillingRejectedError, BillingUnavailableError, InvalidInputError
from poolhub.domain.ports import BillingGateway, BillingLedger, Clock


@dataclass(frozen=True, slots=True)
class UsageQuery:
    hours: int = 24
    tenant_id: str | None = None
    miner_id: str | None = None


@dataclass(frozen=True, slots=True)
class UsageReportView:
    """`coordinator` is the coordinator's own billing metrics, or None when it could not be had."""

    period_start: datetime
    period_end: datetime
    lines: list[UsageLine]
    coordinator: Mapping[str, object] | None


class UsageReport:
    """The ledger's lines whose usage ended in the last `hours`, summed by tenant, miner and resource type
    with their synced, pending and rejected quantities, beside the coordinator's `metrics` answer for the
    same tenant and hours (None when it fails; the gateway logs why). Read-only: never commits."""

    def __init__(self, ledger: BillingLedger, gateway: BillingGateway, clock: Clock) -> None:
        self._ledger = ledger
        self._gateway = gateway
        self._clock = clock

    async def execute(self, query: UsageQuery) -> UsageReportView:
        end = self._clock.now()
        start = end - timedelta(hours=query.hours)
        totals, coordinator = await asyncio.gather(
            self._ledger.totals(start=start, end=end, tenant_id=query.tenant_id, miner_id=query.miner_id),
            self._coordinator(query),
        )
        return UsageReportView(start, end, summarize_usage(totals), coordinator)

    async def _coordinator(self, query: UsageQuery) -> Mapping[str, object] | None:
        try:
            return await self._gateway.metrics(query.tenant_id, query.hours)
        except (BillingUnavailableError, BillingRejectedError):
            return None


@dataclass(frozen=True, slots=True)
class LedgerPage:
    entries: list[LedgerEntry]
    total: int


class ListLedgerEntries:
    """Ledger lines newest first, filtered by status, tenant and miner (rejected ones carry their reason).
    Read-only: never commits."""

    def __init__(self, ledger: BillingLedger) -> None:
        self._ledger = ledger

    async def execute(
        self,
        *,
        status: LedgerStatus | None = None,
        tenant_id: str | None = None,
        miner_id: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> LedgerPage:
        entries, total = await self._ledger.list_entries(
            status=status, tenant_id=tenant_id, miner_id=miner_id, offset=offset, limit=limit
        )
        return LedgerPage(entries, total)


class GenerateInvoice:
    """Ask the coordinator for the tenant's invoice over [period_start, period_end) and return its answer.

    Nothing is stored, so nothing is committed. A coordinator failure raises BillingUnavailableError
    (no answer, 408, 429, 5xx) or BillingRejectedError (any other refusal), each saying what failed.
    """

    def __init__(self, gateway: BillingGateway) -> None:
        self._gateway = gateway

    async def execute(
        self, tenant_id: str, period_start: datetime, period_end: datetime
    ) -> Mapping[str, object]:
        if period_start.utcoffset() is None or period_end.utcoffset() is None:
            raise InvalidInputError("period_start and period_end need a UTC offset")
        if period_end <= period_start:
            raise InvalidInputError(
                f"period_end ({period_end.isoformat()}) must be after "
                f"period_start ({period_start.isoformat()})"
            )
        try:
            return await self._gateway.invoice(tenant_id, period_start, period_end)
        except BillingUnavailableError as exc:
            raise BillingUnavailableError(
                f"the coordinator could not generate the invoice: {exc.message}"
            ) from exc
        except BillingRejectedError as exc:
            raise BillingRejectedError(
                f"the coordinator refused to generate the invoice: {exc.message}"
            ) from exc
