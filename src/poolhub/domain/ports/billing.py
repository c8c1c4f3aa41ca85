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


@dataclass(frozen=True, slots=True)
class RequeueSelection:
    """Which rejected lines go back to pending: by tenant, resource type, usage ended in [since, until)."""

    tenant_id: str | None = None
    resource_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class BillingHealth(Protocol):
    """Whether billing delivery is blocked by a misconfigured coordinator. Never commits."""

    async def blocked_reason(self) -> str | None:
        """The sentence saying why the last sync run was blocked, or None."""
        ...


class BillingLedger(UsageLedger, BillingHealth, Protocol):
    """The usage ledger as the billing sync and the reports see it. Never commits."""

    async def get_by_key(self, idempotency_key: str) -> LedgerEntry | None: ...

    async def claim_pending(
        self,
        *,
        claim: str,
        after_id: int,
        limit: int,
        due_at: datetime | None,
        selection: PendingSelection,
        now: datetime,
        claim_until: datetime,
    ) -> list[LedgerEntry]:
        """Claim up to `limit` pending lines with id > after_id, oldest (lowest id) first, for `claim`
        until `claim_until`, and return them. Lines another claim holds past `now` are skipped (on
        PostgreSQL with FOR UPDATE SKIP LOCKED, so concurrent claimers never wait on each other); with
        `due_at`, only lines whose next attempt is due by then. The caller commits the claim before it
        sends anything."""
        ...

    async def mark_synced(self, ids: Sequence[int], now: datetime, claim: str) -> None:
        """Lines of this claim the coordinator accepted: synced."""

    async def mark_retry(self, marks: Sequence[RetryMark], claim: str) -> None:
        """Count a failed attempt on each pending line of this claim and set when it is due again."""

    async def mark_rejected(self, rejections: Sequence[tuple[int, str]], now: datetime, claim: str) -> None:
        """Pending lines of this claim the coordinator refused for good, each with its reason."""

    async def release(self, claim: str) -> None:
        """Drop the claim from every line it still holds (they stay as they are, due at once)."""

    async def requeue_rejected(self, selection: RequeueSelection) -> int:
        """Rejected lines back to pending (keys, attempts and reason kept, due at once); the count."""
        ...

    async def set_blocked(self, reason: str | None, now: datetime) -> None:
        """Remember why the coordinator blocked the last sync run (None: a run went through)."""

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
