"""SQL side of the usage ledger."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from poolhub.adapters.db.models import UsageRecordRow
from poolhub.adapters.db.repositories import dialect_insert
from poolhub.domain.billing import UsageRecord
from poolhub.domain.ports import UsageLedger

_E12 = Decimal(10) ** 12
_E8 = Decimal(10) ** 8


class SqlUsageLedger(UsageLedger):
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, records: Sequence[UsageRecord]) -> int:
        if not records:
            return 0
        statement = (
            dialect_insert(self._session, UsageRecordRow.__table__)
            .values(
                [
                    {
                        "idempotency_key": r.idempotency_key,
                        "tenant_id": r.tenant_id,
                        "miner_id": r.miner_id,
                        "resource_type": r.resource_type,
                        "unit": r.unit,
                        "quantity_e12": int(r.quantity * _E12),
                        "unit_price": str(r.unit_price),
                        "amount_e8": int(r.amount * _E8),
                        "currency": r.currency,
                        "usage_start": r.usage_start,
                        "usage_end": r.usage_end,
                        "job_id": r.job_id,
                        "metadata": dict(r.metadata),
                        "created_at": r.usage_end,
                        "status": "pending",
                        "attempts": 0,
                    }
                    for r in records
                ]
            )
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
        )
        result = await self._session.execute(statement)
        return int(result.rowcount)  # type: ignore[attr-defined]
