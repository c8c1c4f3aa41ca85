"""Record a usage line by hand (an operator's correction or an off-platform resource)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from poolhub.domain.billing import LedgerEntry, Metadata, UnitPrices, UsageRecord, manual_usage
from poolhub.domain.errors import ConflictError
from poolhub.domain.ports import BillingLedger, Clock, RandomSource, UnitOfWork


@dataclass(frozen=True, slots=True)
class ManualUsage:
    """`request_key`: the caller's own idempotency key (the same key again records nothing new)."""

    tenant_id: str
    resource_type: str
    quantity: Decimal
    unit_price: Decimal | None = None
    job_id: str | None = None
    metadata: Metadata | None = None
    request_key: str | None = None


@dataclass(frozen=True, slots=True)
class RecordedUsage:
    entry: LedgerEntry
    created: bool


def _same(stored: UsageRecord, asked: UsageRecord, price_given: bool) -> bool:
    return (
        stored.tenant_id == asked.tenant_id
        and stored.resource_type == asked.resource_type
        and stored.quantity == asked.quantity
        and stored.job_id == asked.job_id
        and dict(stored.metadata) == dict(asked.metadata)
        and (not price_given or stored.unit_price == asked.unit_price)
    )


class RecordManualUsage:
    """Add one pending ledger line keyed `manual:{id}`; commits once.

    The id is the caller's `request_key` when given, else a fresh random one. Repeating a request_key
    with the same usage returns the stored line (created=False) and changes nothing; with different
    usage it raises ConflictError. Without `unit_price` the configured price applies, and a resource type
    with no configured price is refused (InvalidInputError) rather than billed at 0.
    """

    def __init__(
        self,
        ledger: BillingLedger,
        uow: UnitOfWork,
        clock: Clock,
        random: RandomSource,
        prices: UnitPrices,
    ) -> None:
        self._ledger = ledger
        self._uow = uow
        self._clock = clock
        self._random = random
        self._prices = prices

    async def execute(self, usage: ManualUsage) -> RecordedUsage:
        record = manual_usage(
            tenant_id=usage.tenant_id,
            resource_type=usage.resource_type,
            quantity=usage.quantity,
            unit_price=usage.unit_price,
            recorded_at=self._clock.now(),
            prices=self._prices,
            request_id=usage.request_key or self._random.new_id(),
            job_id=usage.job_id,
            metadata=usage.metadata,
        )
        added = await self._ledger.add([record])
        entry = await self._ledger.get_by_key(record.idempotency_key)
        if entry is None:  # pragma: no cover - the line was just written or already there
            raise ConflictError(f"ledger line {record.idempotency_key!r} vanished; retry")
        if not added:
            if not _same(entry.record, record, usage.unit_price is not None):
                raise ConflictError(
                    f"Idempotency-Key {usage.request_key!r} was already used for different usage"
                )
            return RecordedUsage(entry, created=False)
        await self._uow.commit()
        return RecordedUsage(entry, created=True)
