"""The ledger as stored: delivery states, per-status totals folded into report lines, api_calls derivation."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from poolhub.domain.billing.usage import UnitPrices, UsageRecord, api_calls_usage
from poolhub.domain.utc import hour_floor

UNATTRIBUTED_TENANT = "unattributed"
"""The tenant billed for match requests that named none (a real tenant of that name shares its lines)."""

API_CALLS_KEY_PREFIX = "api_calls:"


class LedgerStatus(StrEnum):
    """Delivery state of a ledger line: pending → synced, or pending → rejected (kept, never retried)."""

    PENDING = "pending"
    SYNCED = "synced"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """A ledger line as stored: the usage it records and where its delivery to the coordinator stands.

    `last_error` is the latest failure of a pending line, or the coordinator's reason for a rejected one.
    """

    id: int
    record: UsageRecord
    status: LedgerStatus
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    synced_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class StatusTotal:
    """The summed quantity and amount of the ledger lines of one group in one status."""

    tenant_id: str
    miner_id: str | None
    resource_type: str
    unit: str
    currency: str
    status: LedgerStatus
    quantity: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True)
class UsageLine:
    """One line of the usage report: everything recorded for a tenant, miner and resource type.

    `quantity` and `amount` cover every line whatever its status; the three status quantities split it.
    """

    tenant_id: str
    miner_id: str | None
    resource_type: str
    unit: str
    currency: str
    quantity: Decimal
    amount: Decimal
    synced_quantity: Decimal
    pending_quantity: Decimal
    rejected_quantity: Decimal


def summarize_usage(totals: Iterable[StatusTotal]) -> list[UsageLine]:
    """Fold per-status totals into report lines, sorted by tenant, miner (none first) and resource type."""
    zero = Decimal(0)
    groups: dict[tuple[str, str | None, str, str, str], dict[str, Decimal]] = {}
    for total in totals:
        key = (total.tenant_id, total.miner_id, total.resource_type, total.unit, total.currency)
        sums = groups.setdefault(key, {"amount": zero, **{str(s): zero for s in LedgerStatus}})
        sums[str(total.status)] += total.quantity
        sums["amount"] += total.amount
    lines = []
    for (tenant, miner, resource, unit, currency), sums in groups.items():
        synced = sums[LedgerStatus.SYNCED]
        pending = sums[LedgerStatus.PENDING]
        rejected = sums[LedgerStatus.REJECTED]
        lines.append(
            UsageLine(
                tenant_id=tenant,
                miner_id=miner,
                resource_type=resource,
                unit=unit,
                currency=currency,
                quantity=pending + synced + rejected,
                amount=sums["amount"],
                synced_quantity=synced,
                pending_quantity=pending,
                rejected_quantity=rejected,
            )
        )
    lines.sort(key=lambda ln: (ln.tenant_id, ln.miner_id or "", ln.resource_type, ln.unit, ln.currency))
    return lines


@dataclass(frozen=True, slots=True)
class TenantHourCalls:
    """Answered match requests of one tenant (None: the request named none) in one UTC hour."""

    tenant_id: str | None
    hour_start: datetime
    calls: int


def api_calls_records(counts: Iterable[TenantHourCalls], prices: UnitPrices) -> list[UsageRecord]:
    """The `api_calls` lines of closed hours: one per tenant and hour, requests without a tenant under
    `unattributed`. Give only hours that have closed (see `api_calls_usage`)."""
    merged: dict[tuple[str, datetime], int] = {}
    for count in counts:
        key = (count.tenant_id or UNATTRIBUTED_TENANT, hour_floor(count.hour_start))
        merged[key] = merged.get(key, 0) + count.calls
    return [
        api_calls_usage(tenant_id=tenant, hour_start=hour, calls=calls, prices=prices)
        for (tenant, hour), calls in sorted(merged.items(), key=lambda item: (item[0][1], item[0][0]))
        if calls > 0
    ]
