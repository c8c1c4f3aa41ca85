"""Billing reads and the invoice proxy: the usage report, the ledger listing, invoice generation."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from poolhub.domain.billing import (
    LedgerEntry,
    LedgerStatus,
    StatusTotal,
    UnitPrices,
    UsageLine,
    api_calls_records,
    hour_floor,
    summarize_usage,
)
from poolhub.domain.errors import BillingRejectedError, BillingUnavailableError, InvalidInputError
from poolhub.domain.ports import BillingGateway, BillingLedger, Clock, RequeueSelection, UnitOfWork


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
    same tenant and hours (None when it fails; the gateway logs why).

    `api_calls` not yet in the ledger (the running hour, and closed hours the next sync will derive)
    are counted from the match records and shown as pending, so a tenant's calls are visible at once.
    The coordinator is asked concurrently, but the read transaction ends before its answer is awaited:
    a slow coordinator holds no database lock. Read-only: never commits.
    """

    def __init__(
        self,
        ledger: BillingLedger,
        gateway: BillingGateway,
        clock: Clock,
        uow: UnitOfWork,
        prices: UnitPrices,
    ) -> None:
        self._ledger = ledger
        self._gateway = gateway
        self._clock = clock
        self._uow = uow
        self._prices = prices

    async def execute(self, query: UsageQuery) -> UsageReportView:
        end = self._clock.now()
        start = end - timedelta(hours=query.hours)
        asked = asyncio.ensure_future(self._coordinator(query))
        try:
            totals = await self._ledger.totals(
                start=start, end=end, tenant_id=query.tenant_id, miner_id=query.miner_id
            )
            totals.extend(await self._underived_api_calls(start, end, query))
            await self._uow.rollback()
        except BaseException:
            asked.cancel()
            raise
        return UsageReportView(start, end, summarize_usage(totals), await asked)

    async def _underived_api_calls(
        self, start: datetime, end: datetime, query: UsageQuery
    ) -> list[StatusTotal]:
        if query.miner_id is not None:  # api_calls belong to no miner
            return []
        first_hour = hour_floor(start)
        derived_until = await self._ledger.api_calls_derived_until()
        if derived_until is not None:
            first_hour = max(first_hour, hour_floor(derived_until) + timedelta(hours=1))
        counts = await self._ledger.match_calls(first_hour, end)
        return [
            StatusTotal(
                tenant_id=record.tenant_id,
                miner_id=None,
                resource_type=record.resource_type,
                unit=record.unit,
                currency=record.currency,
                status=LedgerStatus.PENDING,
                quantity=record.quantity,
                amount=record.amount,
            )
            for record in api_calls_records(counts, self._prices)
            if query.tenant_id is None or record.tenant_id == query.tenant_id
        ]

    async def _coordinator(self, query: UsageQuery) -> Mapping[str, object] | None:
        try:
            return await self._gateway.metrics(query.tenant_id, query.hours)
        except (BillingUnavailableError, BillingRejectedError):
            return None


@dataclass(frozen=True, slots=True)
class Requeue:
    """Which rejected lines go back to pending; every filter is optional."""

    tenant_id: str | None = None
    resource_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class RequeueRejected:
    """Put rejected ledger lines back to pending, keys unchanged, due at once (after the coordinator or
    the records were fixed); the coordinator counts a key once, so a line it did take is not billed
    twice. `since`/`until` bound the usage end, [since, until). Commits once; returns the count."""

    def __init__(self, ledger: BillingLedger, uow: UnitOfWork) -> None:
        self._ledger = ledger
        self._uow = uow

    async def execute(self, request: Requeue) -> int:
        for name, moment in (("since", request.since), ("until", request.until)):
            if moment is not None and moment.utcoffset() is None:
                raise InvalidInputError(f"{name} needs a UTC offset")
        if request.since is not None and request.until is not None and request.until <= request.since:
            raise InvalidInputError(
                f"until ({request.until.isoformat()}) must be after since ({request.since.isoformat()})"
            )
        count = await self._ledger.requeue_rejected(
            RequeueSelection(request.tenant_id, request.resource_type, request.since, request.until)
        )
        await self._uow.commit()
        return count


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
