"""Capacity snapshots in SQL: the pool's hourly history that the forecast reads."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import (
    ColumnElement,
    delete,
    func,
    insert,
    select,
    type_coerce,
)
from sqlalchemy.ext.asyncio import AsyncSession

from poolhub.adapters.db.models import MinerRow
from poolhub.adapters.db.repositories import is_postgres, page_of, table_of
from poolhub.adapters.db.sla_models import CapacitySnapshotRow
from poolhub.domain.capacity import CapacitySnapshotValues
from poolhub.domain.ports import (
    CapacityRepository,
    StoredSnapshot,
)


def _snapshot(row: Any) -> StoredSnapshot:
    return StoredSnapshot(
        id=row.id,
        timestamp=row.timestamp,
        values=CapacitySnapshotValues(
            total_miners=row.total_miners,
            online_miners=row.online_miners,
            total_slots=row.total_slots,
            used_slots=row.used_slots,
            capacity_utilization_pct=row.capacity_utilization_pct,
            capacity_availability_pct=row.capacity_availability_pct,
        ),
    )


def _snapshot_values(values: CapacitySnapshotValues, at: datetime) -> dict[str, Any]:
    return {
        "timestamp": at,
        "total_miners": values.total_miners,
        "online_miners": values.online_miners,
        "total_slots": values.total_slots,
        "used_slots": values.used_slots,
        "capacity_utilization_pct": values.capacity_utilization_pct,
        "capacity_availability_pct": values.capacity_availability_pct,
    }


class SqlCapacityRepository(CapacityRepository):
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add_snapshot(self, values: CapacitySnapshotValues, at: datetime) -> StoredSnapshot:
        table = table_of(CapacitySnapshotRow)
        result = await self._session.execute(
            insert(table).values(_snapshot_values(values, at)).returning(table.c.id)
        )
        return StoredSnapshot(id=int(result.scalar_one()), timestamp=at, values=values)

    async def add_snapshots(self, snapshots: Sequence[tuple[datetime, CapacitySnapshotValues]]) -> int:
        if not snapshots:
            return 0
        await self._session.execute(
            insert(table_of(CapacitySnapshotRow)), [_snapshot_values(values, at) for at, values in snapshots]
        )
        return len(snapshots)

    async def delete_snapshots(self) -> int:
        result = await self._session.execute(delete(CapacitySnapshotRow))
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def snapshots(
        self, *, since: datetime, offset: int, limit: int
    ) -> tuple[list[StoredSnapshot], int]:
        query = select(CapacitySnapshotRow).where(CapacitySnapshotRow.timestamp >= since)
        rows, total = await page_of(
            self._session,
            query,
            (CapacitySnapshotRow.timestamp.desc(), CapacitySnapshotRow.id.desc()),
            offset,
            limit,
        )
        return [_snapshot(row[0]) for row in rows], total

    async def latest_snapshot(self) -> StoredSnapshot | None:
        result = await self._session.execute(
            select(CapacitySnapshotRow)
            .order_by(CapacitySnapshotRow.timestamp.desc(), CapacitySnapshotRow.id.desc())
            .limit(1)
        )
        row = result.scalar_one_or_none()
        return _snapshot(row) if row is not None else None

    async def hourly_utilization(self, since: datetime, until: datetime) -> list[tuple[datetime, float]]:
        timestamp = CapacitySnapshotRow.timestamp
        if is_postgres(self._session):
            hour: ColumnElement[Any] = func.date_trunc("hour", func.timezone("UTC", timestamp))
        else:
            # SQLite stores DateTimeUTC as 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC.
            hour = func.strftime("%Y-%m-%d %H:00:00", timestamp)
        bucket = type_coerce(hour, DateTimeUTC(timezone=True)).label("hour")
        result = await self._session.execute(
            select(bucket, func.avg(CapacitySnapshotRow.capacity_utilization_pct))
            .where(timestamp >= since, timestamp <= until)
            .group_by(bucket)
            .order_by(bucket)
        )
        return [(at, float(mean)) for at, mean in result.tuples()]

    async def miner_slot_sizes(self) -> list[int]:
        result = await self._session.execute(select(MinerRow.max_parallel))
        return [int(size) for size in result.scalars()]
