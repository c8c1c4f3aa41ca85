"""Billing: the usage ledger as sync and reports see it, and the coordinator's billing API."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from poolhub.domain.billing import (
    LedgerEntry,
    LedgerStatus,
    StatusTotal,
    TenantHourCalls,
    UsageRecord,
)


class UsageLedger(Protocol):
    """The usage ledger: one row per idempotency key. Never commits."""

    async def add(self, records: Sequence[UsageRecord]) -> int:
        """Insert the records whose key is new (others are skipped, not updated); returns the new count."""


@dataclass(frozen=True, slots=True)
class PendingSelection:
    """Which pending ledger lines a sync looks at: all, one miner's, and/or those whose usage ended since."""

    miner_id: str | None = None
    usage_end_from: datetime | None = None


@dataclass(frozen=True, slots=True)
class RetryMark:
    """A failed delivery attempt: the line stays pending and is due again at `next_attempt_at`."""

    id: int
    next_attempt_at: datetime
    error: str


class BillingLedger(UsageLedger, Protocol):
    """The usage ledger as the billing sync and the reports see it. Never commits."""

    async def get_by_key(self, idempotency_key: str) -> LedgerEntry | None: ...

    async def pending_batch(
        self, *, after_id: int, limit: int, due_at: datetime | None, selection: PendingSelection
    ) -> list[LedgerEntry]:
        """Pending lines with id > after_id, oldest (lowest id) first; with `due_at`, only those whose
        next attempt is due by then (never attempted, or next_attempt_at <= due_at)."""
        ...

    async def mark_synced(self, ids: Sequence[int], now: datetime) -> None:
        """Lines the coordinator accepted: synced (also from rejected, since it now holds them)."""

    async def mark_retry(self, marks: Sequence[RetryMark]) -> None:
        """Count a failed attempt on each pending line and set when it is due again."""

    async def mark_rejected(self, rejections: Sequence[tuple[int, str]], now: datetime) -> None:
        """Pending lines the coordinator refused for good, each with its reason."""

    async def count_pending(self, selection: PendingSelection) -> int: ...

    async def totals(
        self, *, start: datetime, end: datetime, tenant_id: str | None, miner_id: str | None
    ) -> list[StatusTotal]:
        """Exact sums of the lines whose usage ended in [start, end], by tenant, miner, resource type,
        unit, currency and status."""
        ...

    async def list_entries(
        self,
        *,
        status: LedgerStatus | None,
        tenant_id: str | None,
        miner_id: str | None,
        offset: int,
        limit: int,
    ) -> tuple[list[LedgerEntry], int]:
        """A page of lines, newest first, and the total number that match."""
        ...

    async def api_calls_derived_until(self) -> datetime | None:
        """The start of the newest hour for which `api_calls` lines were derived, if any."""
        ...

    async def match_calls(self, start: datetime | None, end: datetime) -> list[TenantHourCalls]:
        """Answered match requests with requested_at in [start, end), counted per tenant and UTC hour."""
        ...


class BillingGateway(Protocol):
    """Coordinator billing API.

    Every method raises BillingUnavailableError (BillingRetryableError) on a transport failure, a timeout,
    408, 429 or 5xx, and BillingRejectedError (BillingPermanentError, message with the status and an
    excerpt of the answer) on any other non-2xx answer.
    """

    async def send_usage(self, record: UsageRecord) -> None:
        """Send one ledger line under its idempotency key; sending it again is harmless."""
        ...

    async def metrics(self, tenant_id: str | None, hours: int) -> Mapping[str, object]:
        """The coordinator's billing metrics over the last `hours` (all tenants when tenant_id is None)."""
        ...

    async def invoice(
        self, tenant_id: str, period_start: datetime, period_end: datetime
    ) -> Mapping[str, object]:
        """Ask the coordinator to issue an invoice for the period and return it as received."""
        ...
