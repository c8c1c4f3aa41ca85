"""Turn answered match requests into `api_calls` ledger lines, one per tenant per closed UTC hour."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from poolhub.domain.billing import UnitPrices, api_calls_records, hour_floor
from poolhub.domain.ports import BillingLedger, Clock, UnitOfWork


@dataclass(frozen=True, slots=True)
class ApiCallsPolicy:
    """`settle`: how long after an hour ends its match records are taken as complete (they are written
    in batches, so the last requests of an hour land a little after it). `max_backfill`: how far back a
    run looks when nothing was derived yet."""

    settle: timedelta = timedelta(minutes=5)
    max_backfill: timedelta = timedelta(hours=720)

    def __post_init__(self) -> None:
        if self.settle < timedelta(0) or self.max_backfill <= timedelta(0):
            raise ValueError("settle must be >= 0 and max_backfill > 0")


class DeriveApiCalls:
    """Add the `api_calls` lines of every closed hour not derived yet; commits once when it adds any.

    A run covers the hours after the newest one already derived (at most `max_backfill` back) up to the
    newest hour that ended `settle` ago. Lines are keyed `api_calls:{tenant}:{hour}`, so a repeated or
    concurrent run adds nothing twice. A request without a tenant is billed to `unattributed`. A match
    record written for an hour after that hour was derived is not billed: the settle delay is there so
    that this does not happen.
    """

    def __init__(
        self,
        ledger: BillingLedger,
        uow: UnitOfWork,
        clock: Clock,
        prices: UnitPrices,
        policy: ApiCallsPolicy,
    ) -> None:
        self._ledger = ledger
        self._uow = uow
        self._clock = clock
        self._prices = prices
        self._policy = policy

    async def execute(self) -> int:
        """The number of new ledger lines."""
        end = hour_floor(self._clock.now() - self._policy.settle)
        start = end - self._policy.max_backfill
        derived_until = await self._ledger.api_calls_derived_until()
        if derived_until is not None:
            start = max(start, hour_floor(derived_until) + timedelta(hours=1))
        if start >= end:
            return 0
        records = api_calls_records(await self._ledger.match_calls(start, end), self._prices)
        if not records:
            return 0
        added = await self._ledger.add(records)
        await self._uow.commit()
        return added
