"""SqlHistoryStore: bounded deletes of aged-out history (DELETE … WHERE key IN (SELECT … LIMIT n))."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Table, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from poolhub.adapters.db.models import MatchRecordRow, PresenceIntervalRow, SessionRow
from poolhub.adapters.db.repositories import table_of
from poolhub.adapters.db.sla_models import CapacitySnapshotRow, SlaMetricRow, SlaViolationRow
from poolhub.domain.ports.retention import HistoryKind, HistoryStore


def _aged(kind: HistoryKind, before: datetime) -> tuple[Table, Any, ColumnElement[bool]]:
    """The table, its key column and the condition under which a row of `kind` has aged out."""
    if kind is HistoryKind.MATCH_RECORDS:
        t = table_of(MatchRecordRow)
        return t, t.c.id, t.c.requested_at < before
    if kind is HistoryKind.SESSIONS:
        t = table_of(SessionRow)
        return t, t.c.token_hash, or_(t.c.expires_at < before, t.c.revoked_at < before)
    if kind is HistoryKind.PRESENCE_INTERVALS:
        # An open interval's end moves with every flush while its miner is online, so it never ages out.
        t = table_of(PresenceIntervalRow)
        return t, t.c.id, t.c.ended_at < before
    if kind is HistoryKind.SLA_METRICS:
        t = table_of(SlaMetricRow)
        return t, t.c.id, t.c.timestamp < before
    if kind is HistoryKind.RESOLVED_VIOLATIONS:
        t = table_of(SlaViolationRow)
        return t, t.c.id, t.c.resolved_at < before  # NULL (open) never compares true
    t = table_of(CapacitySnapshotRow)
    return t, t.c.id, t.c.timestamp < before


class SqlHistoryStore(HistoryStore):
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def prune(self, kind: HistoryKind, before: datetime, limit: int) -> int:
        table, key, aged = _aged(kind, before)
        batch = select(key).where(aged).limit(limit).scalar_subquery()
        result = await self._session.execute(delete(table).where(key.in_(batch)))
        return int(result.rowcount)  # type: ignore[attr-defined]
