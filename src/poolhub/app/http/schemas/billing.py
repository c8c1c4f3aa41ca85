"""Request and response shapes of the billing routes (`/sla/billing/...`)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from poolhub.app.http.schemas.common import Base, DecimalRule, Id, decimal_meta, text, utc_representable

ResourceTypeName = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=32,
        pattern=r"^[a-z_]+$",
        description="1-32 characters of [a-z_]",
        examples=["gpu_hours"],
    ),
]
# A ledger line holds quantity × 10¹² in a 64-bit integer: at most 9,223,372.036854775807 units
# (the use case refuses more), so seven integer digits pass the shape check.
QUANTITY_RULE = DecimalRule(integer_digits=7)
Quantity = Annotated[
    Decimal,
    decimal_meta(QUANTITY_RULE, "the quantity (one ledger line holds at most 9223372.036854775807)", "1.5"),
    QUANTITY_RULE,
]
UNIT_PRICE_RULE = DecimalRule(integer_digits=9)
UnitPrice = Annotated[
    Decimal,
    decimal_meta(UNIT_PRICE_RULE, "the price per unit, in the configured currency", "0.50"),
    UNIT_PRICE_RULE,
]
MetadataKey = Annotated[str, text(64, 1)]
MetadataValue = Annotated[str, text(256)] | Annotated[int, Meta(ge=-(2**53), le=2**53)] | float | bool | None
MetadataIn = Annotated[
    dict[MetadataKey, MetadataValue],
    Meta(
        max_length=32,
        description="a flat JSON object: at most 32 keys of 1-64 characters; values are strings of at most "
        "256 characters, finite numbers, booleans or null",
    ),
]
Hours = Annotated[int, Meta(ge=1, le=720, description="hours, 1-720")]
AwareDatetime = Annotated[datetime, Meta(tz=True, description="RFC 3339 with an offset")]


class UsageRecordCreate(Base, kw_only=True):
    tenant_id: Id
    resource_type: ResourceTypeName
    quantity: Quantity
    unit_price: UnitPrice | None = msgspec.field(default=None)
    job_id: Id | None = None
    metadata: MetadataIn = msgspec.field(default_factory=dict)


class UsageRecordRead(Base, kw_only=True):
    """A ledger line. Decimals are strings; amount = quantity × unit_price rounded to 8 places."""

    id: int
    idempotency_key: str
    tenant_id: str
    miner_id: str | None
    resource_type: str
    unit: str
    quantity: str
    unit_price: str
    amount: str
    currency: str
    usage_start: datetime
    usage_end: datetime
    job_id: str | None
    metadata: dict[str, Any]
    status: Literal["pending", "synced", "rejected"]
    created_at: datetime


class LedgerEntryRead(UsageRecordRead, kw_only=True):
    """A ledger line with its delivery state; `last_error` is the coordinator's reason for a rejection."""

    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    synced_at: datetime | None


class UsagePeriod(Base):
    start: datetime
    end: datetime


class UsageTotalRead(Base, kw_only=True):
    tenant_id: str
    miner_id: str | None
    resource_type: str
    unit: str
    quantity: str
    amount: str
    currency: str
    synced_quantity: str
    pending_quantity: str
    rejected_quantity: str


class UsageReportRead(Base, kw_only=True):
    period: UsagePeriod
    totals: list[UsageTotalRead]
    coordinator: dict[str, Any] | None


class SyncCreate(Base, kw_only=True):
    miner_id: Id | None = None
    hours_back: Hours | None = None


class SyncResultRead(Base, kw_only=True):
    records_sent: int
    records_failed: int
    records_pending: int
    records_rejected: int
    billing_blocked: Annotated[
        str | None,
        Meta(
            description="why delivery is paused: the coordinator answered 401, 403, 404 or 3xx (a "
            "misconfigured URL, key or route), so the run stopped and every record stays pending; null "
            "once a run gets through"
        ),
    ]


class RequeueCreate(Base, kw_only=True):
    """Which rejected lines go back to pending; with no field, every rejected line."""

    tenant_id: Id | None = None
    resource_type: ResourceTypeName | None = None
    since: Annotated[AwareDatetime | None, Meta(description="usage ended at or after (RFC 3339)")] = None
    until: Annotated[AwareDatetime | None, Meta(description="usage ended before (RFC 3339)")] = None


class RequeueResultRead(Base, kw_only=True):
    records_requeued: int


class InvoiceCreate(Base, kw_only=True):
    tenant_id: Id
    period_start: AwareDatetime
    period_end: AwareDatetime

    def __post_init__(self) -> None:
        super().__post_init__()
        utc_representable(self.period_start, "period_start")
        utc_representable(self.period_end, "period_end")
