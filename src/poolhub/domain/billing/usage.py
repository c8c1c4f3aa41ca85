"""Unit prices and usage records: what a completed job, a tenant-hour of matches or an operator bills."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from enum import StrEnum
from types import MappingProxyType

from poolhub.domain.errors import InvalidInputError
from poolhub.domain.utc import as_utc, hour_floor


class ResourceType(StrEnum):
    """The resource types Pool Hub meters itself; manual records may use any name matching `[a-z_]{1,32}`."""

    GPU_HOURS = "gpu_hours"
    COMPUTE_HOURS = "compute_hours"
    API_CALLS = "api_calls"


UNITS: Mapping[str, str] = MappingProxyType(
    {ResourceType.GPU_HOURS: "hours", ResourceType.COMPUTE_HOURS: "hours", ResourceType.API_CALLS: "calls"}
)
DEFAULT_UNIT = "units"
DEFAULT_UNIT_PRICES = "gpu_hours:0.50,compute_hours:0.30,api_calls:0.0001"
DEFAULT_CURRENCY = "USD"

AMOUNT_PLACES = 8
"""Amounts are rounded to this many decimal places (ROUND_HALF_UP)."""
QUANTITY_PLACES = 12
"""Derived quantities keep their exact value unless it needs more places than this; then ROUND_HALF_UP."""

MS_PER_HOUR = Decimal(3_600_000)

MetadataValue = str | int | float | bool | None
Metadata = Mapping[str, MetadataValue]

_RESOURCE_TYPE = re.compile(r"[a-z_]{1,32}")
_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_MAX_KEY_LEN = 255
# Wide enough that products and quotients of any bounded API input are exact before the final rounding.
_CTX = Context(prec=60, rounding=ROUND_HALF_UP)
_AMOUNT_EXP = Decimal(1).scaleb(-AMOUNT_PLACES)
_QUANTITY_EXP = Decimal(1).scaleb(-QUANTITY_PLACES)


def unit_of(resource_type: str) -> str:
    """The unit of a resource type: `hours`, `calls`, or `units` for a type Pool Hub does not meter."""
    return UNITS.get(resource_type, DEFAULT_UNIT)


def _check_resource_type(resource_type: str) -> None:
    if not isinstance(resource_type, str) or not _RESOURCE_TYPE.fullmatch(resource_type):
        raise InvalidInputError(f"resource_type {resource_type!r} must be 1-32 characters of [a-z_]")


def _check_id(name: str, value: str) -> None:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise InvalidInputError(f"{name} {value!r} must be 1-64 characters of [A-Za-z0-9._:-]")


def _check_non_negative(name: str, value: Decimal) -> Decimal:
    """Return `value` (with a negative zero made positive) or raise if it is not a finite number ≥ 0."""
    if not isinstance(value, Decimal) or not value.is_finite():
        raise InvalidInputError(f"{name} must be a finite decimal, got {value!r}")
    if value < 0:
        raise InvalidInputError(f"{name} must be ≥ 0, got {value}")
    return abs(value)


@dataclass(frozen=True, slots=True)
class UnitPrices:
    """Price per unit of each resource type, in one currency.

    A resource type without a configured price costs 0 (`price_of`); its usage is still recorded so the
    quantity is never lost. `is_priced` tells the two cases apart (manual records require a price).
    """

    prices: Mapping[str, Decimal] = field(hash=False)
    currency: str = DEFAULT_CURRENCY

    def __post_init__(self) -> None:
        if not isinstance(self.currency, str) or not _CURRENCY.fullmatch(self.currency):
            raise ValueError(f"currency {self.currency!r} must be a three-letter upper-case code such as USD")
        checked: dict[str, Decimal] = {}
        for name, price in self.prices.items():
            if not isinstance(name, str) or not _RESOURCE_TYPE.fullmatch(name):
                raise ValueError(f"resource type {name!r} must be 1-32 characters of [a-z_]")
            if not isinstance(price, Decimal) or not price.is_finite():
                raise ValueError(f"price of {name!r} must be a finite decimal, got {price!r}")
            if price < 0:
                raise ValueError(f"price of {name!r} must be ≥ 0, got {price}")
            checked[name] = abs(price)
        object.__setattr__(self, "prices", MappingProxyType(checked))

    @classmethod
    def parse(cls, text: str, currency: str = DEFAULT_CURRENCY) -> UnitPrices:
        """Parse `name:price,...` (the `BILLING_UNIT_PRICES` format); a ValueError names the bad entry."""
        if not text.strip():
            raise ValueError(
                f"unit prices are empty; expected 'name:price,...' such as {DEFAULT_UNIT_PRICES!r}"
            )
        prices: dict[str, Decimal] = {}
        for position, raw_entry in enumerate(text.split(","), start=1):
            entry = raw_entry.strip()
            if not entry:
                raise ValueError(f"unit prices: entry {position} is empty in {text!r}")
            name, sep, raw_price = (part.strip() for part in entry.partition(":"))
            if not sep:
                raise ValueError(f"unit prices: entry {entry!r} has no ':'; expected 'name:price'")
            if not _RESOURCE_TYPE.fullmatch(name):
                raise ValueError(f"unit prices: resource type {name!r} must be 1-32 characters of [a-z_]")
            if name in prices:
                raise ValueError(f"unit prices: resource type {name!r} is given twice")
            try:
                price = Decimal(raw_price)
            except InvalidOperation:
                raise ValueError(
                    f"unit prices: price of {name!r} is not a decimal number: {raw_price!r}"
                ) from None
            if not price.is_finite():
                raise ValueError(f"unit prices: price of {name!r} must be finite, got {raw_price!r}")
            if price < 0:
                raise ValueError(f"unit prices: price of {name!r} must be ≥ 0, got {raw_price!r}")
            prices[name] = price
        return cls(prices=prices, currency=currency)

    def is_priced(self, resource_type: str) -> bool:
        return resource_type in self.prices

    def price_of(self, resource_type: str) -> Decimal:
        """The configured unit price, or 0 for a resource type without one."""
        return self.prices.get(resource_type, Decimal(0))


def amount(quantity: Decimal, unit_price: Decimal) -> Decimal:
    """quantity × unit_price, rounded to 8 decimal places, half away from zero (ROUND_HALF_UP).

    HALF_UP rather than banker's rounding because it is what invoices and spreadsheets do, so a customer
    re-computing a line gets the same cent. The product is exact before that single rounding.
    """
    if not quantity.is_finite() or not unit_price.is_finite():
        raise ValueError(f"amount needs finite numbers, got {quantity} × {unit_price}")
    rounded = _CTX.multiply(quantity, unit_price).quantize(_AMOUNT_EXP, context=_CTX)
    return abs(rounded) if rounded == 0 else rounded  # never "-0E-8"


def _round_quantity(quantity: Decimal) -> Decimal:
    exponent = quantity.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= -QUANTITY_PLACES:
        return quantity
    return quantity.quantize(_QUANTITY_EXP, context=_CTX)


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One ledger line: a quantity of one resource used by one tenant over a time span.

    `idempotency_key` is derived from what the line records, so deriving it again (a replayed feedback)
    gives the same key and the coordinator counts it once. Times are normalised to UTC; naive datetimes are
    refused. The constructors below compute `amount`; this class does not re-check it, so a stored line
    always reads back as stored.
    """

    idempotency_key: str
    tenant_id: str
    miner_id: str | None
    resource_type: str
    unit: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal
    currency: str
    usage_start: datetime
    usage_end: datetime
    job_id: str | None
    metadata: Metadata = field(hash=False)

    def __post_init__(self) -> None:
        key = self.idempotency_key
        if (
            not isinstance(key, str)
            or not key
            or len(key) > _MAX_KEY_LEN
            or not key.isprintable()
            or " " in key
        ):
            raise InvalidInputError(
                f"idempotency_key must be 1-{_MAX_KEY_LEN} printable characters, no spaces"
            )
        _check_id("tenant_id", self.tenant_id)
        if self.miner_id is not None:
            _check_id("miner_id", self.miner_id)
        if self.job_id is not None:
            _check_id("job_id", self.job_id)
        _check_resource_type(self.resource_type)
        if not isinstance(self.unit, str) or not self.unit:
            raise InvalidInputError("unit must be a non-empty string")
        if not isinstance(self.currency, str) or not _CURRENCY.fullmatch(self.currency):
            raise InvalidInputError(f"currency {self.currency!r} must be a three-letter upper-case code")
        object.__setattr__(self, "quantity", _check_non_negative("quantity", self.quantity))
        object.__setattr__(self, "unit_price", _check_non_negative("unit_price", self.unit_price))
        object.__setattr__(self, "amount", _check_non_negative("amount", self.amount))
        start = as_utc("usage_start", self.usage_start)
        end = as_utc("usage_end", self.usage_end)
        if end < start:
            raise InvalidInputError(f"usage_end {end.isoformat()} is before usage_start {start.isoformat()}")
        object.__setattr__(self, "usage_start", start)
        object.__setattr__(self, "usage_end", end)
        object.__setattr__(self, "metadata", _checked_metadata(self.metadata))


def _checked_metadata(metadata: Metadata) -> Metadata:
    checked: dict[str, MetadataValue] = {}
    for name, value in metadata.items():
        if not isinstance(name, str) or not name:
            raise InvalidInputError(f"metadata keys must be non-empty strings, got {name!r}")
        if value is not None and not isinstance(value, str | int | float | bool):
            raise InvalidInputError(f"metadata[{name!r}] must be a string, number, boolean or null")
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInputError(f"metadata[{name!r}] must be finite, got {value}")
        checked[name] = value
    return MappingProxyType(checked)


def usage_from_completed_job(
    *,
    job_id: str,
    miner_id: str,
    tenant_id: str | None,
    match_tenant_id: str | None,
    duration_ms: float | None,
    latency_ms: float | None,
    gpu_count: int,
    completed_at: datetime,
    prices: UnitPrices,
) -> tuple[UsageRecord, ...]:
    """The `compute_hours` and `gpu_hours` lines of a `completed` feedback.

    The tenant is the feedback's, else the match request's, else the miner id. Hours come from
    `duration_ms`, else `latency_ms`; with neither the job's length is unknown and nothing is billed (an
    empty tuple). A known length of 0 still yields zero-quantity lines, so the ledger shows the job.
    Keys are `job:{job_id}:{miner_id}:{resource_type}`.
    """
    if gpu_count < 1:
        raise InvalidInputError(f"gpu_count must be ≥ 1, got {gpu_count}")
    if duration_ms is not None:
        basis, length_ms = "duration_ms", duration_ms
    elif latency_ms is not None:
        basis, length_ms = "latency_ms", latency_ms
    else:
        return ()
    if not math.isfinite(length_ms) or length_ms < 0:
        raise InvalidInputError(f"{basis} must be a finite number ≥ 0, got {length_ms}")
    # str() of a float is its shortest round-trip form, so 1800000.0 ms becomes exactly 0.5 h.
    length = Decimal(str(length_ms))
    compute_hours = _round_quantity(_CTX.divide(length, MS_PER_HOUR))
    gpu_hours = _CTX.multiply(compute_hours, Decimal(gpu_count))
    end = as_utc("completed_at", completed_at)
    try:
        start = end - timedelta(milliseconds=float(length_ms))
    except OverflowError:
        raise InvalidInputError(f"{basis} {length_ms} reaches before year 1") from None
    tenant = tenant_id or match_tenant_id or miner_id
    metadata: Metadata = {"miner_id": miner_id, "gpu_count": gpu_count, "basis": basis}
    records = []
    for resource_type, quantity in (
        (ResourceType.COMPUTE_HOURS, compute_hours),
        (ResourceType.GPU_HOURS, gpu_hours),
    ):
        unit_price = prices.price_of(resource_type)
        records.append(
            UsageRecord(
                idempotency_key=f"job:{job_id}:{miner_id}:{resource_type}",
                tenant_id=tenant,
                miner_id=miner_id,
                resource_type=str(resource_type),
                unit=unit_of(resource_type),
                quantity=quantity,
                unit_price=unit_price,
                amount=amount(quantity, unit_price),
                currency=prices.currency,
                usage_start=start,
                usage_end=end,
                job_id=job_id,
                metadata=metadata,
            )
        )
    return tuple(records)


def api_calls_usage(*, tenant_id: str, hour_start: datetime, calls: int, prices: UnitPrices) -> UsageRecord:
    """The `api_calls` line of one tenant for one UTC hour (`hour_start` is floored to the hour).

    The key `api_calls:{tenant_id}:{YYYY-MM-DDTHH}` names the tenant-hour, not the count, so build this line
    only once the hour has closed: a line sent for an open hour would make the coordinator ignore the
    calls that follow.
    """
    if isinstance(calls, bool) or not isinstance(calls, int) or calls < 0:
        raise InvalidInputError(f"calls must be an integer ≥ 0, got {calls!r}")
    start = hour_floor(hour_start)
    quantity = Decimal(calls)
    unit_price = prices.price_of(ResourceType.API_CALLS)
    return UsageRecord(
        idempotency_key=f"api_calls:{tenant_id}:{start:%Y-%m-%dT%H}",
        tenant_id=tenant_id,
        miner_id=None,
        resource_type=str(ResourceType.API_CALLS),
        unit=unit_of(ResourceType.API_CALLS),
        quantity=quantity,
        unit_price=unit_price,
        amount=amount(quantity, unit_price),
        currency=prices.currency,
        usage_start=start,
        usage_end=start + timedelta(hours=1),
        job_id=None,
        metadata={},
    )


def manual_usage(
    *,
    tenant_id: str,
    resource_type: str,
    quantity: Decimal,
    unit_price: Decimal | None,
    recorded_at: datetime,
    prices: UnitPrices,
    request_id: str,
    job_id: str | None = None,
    metadata: Metadata | None = None,
) -> UsageRecord:
    """A line an operator records by hand, keyed `manual:{request_id}` (a fresh id per operator action).

    Without `unit_price` the configured price applies; a resource type with no configured price then
    raises InvalidInputError rather than silently billing 0 (a typo such as `gpu_hour` would otherwise go
    unnoticed). The usage spans the instant `recorded_at`.
    """
    _check_resource_type(resource_type)
    if not request_id:
        raise InvalidInputError("request_id must not be empty")
    if unit_price is None:
        if not prices.is_priced(resource_type):
            raise InvalidInputError(
                f"resource_type {resource_type!r} has no configured unit price; give unit_price explicitly"
            )
        unit_price = prices.price_of(resource_type)
    quantity = _check_non_negative("quantity", quantity)
    unit_price = _check_non_negative("unit_price", unit_price)
    at = as_utc("recorded_at", recorded_at)
    return UsageRecord(
        idempotency_key=f"manual:{request_id}",
        tenant_id=tenant_id,
        miner_id=None,
        resource_type=resource_type,
        unit=unit_of(resource_type),
        quantity=quantity,
        unit_price=unit_price,
        amount=amount(quantity, unit_price),
        currency=prices.currency,
        usage_start=at,
        usage_end=at,
        job_id=job_id,
        metadata=metadata or {},
    )
