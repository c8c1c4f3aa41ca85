"""SqlUsageLedger: the usage ledger over the request's AsyncSession (never commits).

Quantities and amounts are stored as scaled integers (quantity × 10^12, amount × 10^8), so sums are exact
on every database. SUM would overflow a 64-bit integer on SQLite, so each sum is taken in two parts
(value // 10^6 and value % 10^6) and put back together in Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Context, Decimal
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, bindparam, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from poolhub.adapters.db.models import BillingStateRow, MatchRecordRow, UsageRecordRow
from poolhub.adapters.db.repositories import chunks
from poolhub.domain.billing import (
    API_CALLS_KEY_PREFIX,
    LedgerEntry,
    LedgerStatus,
    ResourceType,
    StatusTotal,
    TenantHourCalls,
    UsageRecord,
)
from poolhub.domain.errors import InvalidInputError
from poolhub.domain.ports import BillingLedger, PendingSelection, RequeueSelection, RetryMark

__all__ = ["MAX_LEDGER_AMOUNT", "MAX_LEDGER_QUANTITY", "SqlUsageLedger"]

QUANTITY_SCALE = 12
AMOUNT_SCALE = 8
_MAX_BIGINT = 2**63 - 1
_CTX = Context(prec=60)
MAX_LEDGER_QUANTITY = Decimal(_MAX_BIGINT).scaleb(-QUANTITY_SCALE, context=_CTX)
"""The largest quantity one ledger line can hold (9223372.036854775807)."""
MAX_LEDGER_AMOUNT = Decimal(_MAX_BIGINT).scaleb(-AMOUNT_SCALE, context=_CTX)
_SPLIT = 1_000_000
_ERROR_CHARS = 1024

_T = cast(Table, UsageRecordRow.__table__)
_M = cast(Table, MatchRecordRow.__table__)
_S = cast(Table, BillingStateRow.__table__)
_BILLING_STATE = "coordinator"

_COLUMNS = (
    _T.c.id,
    _T.c.idempotency_key,
    _T.c.tenant_id,
    _T.c.miner_id,
    _T.c.resource_type,
    _T.c.unit,
    _T.c.quantity_e12,
    _T.c.unit_price,
    _T.c.amount_e8,
    _T.c.currency,
    _T.c.usage_start,
    _T.c.usage_end,
    _T.c.job_id,
    _T.c.metadata,
    _T.c.created_at,
    _T.c.status,
    _T.c.attempts,
    _T.c.next_attempt_at,
    _T.c.last_error,
    _T.c.synced_at,
)


def _scaled(name: str, value: Decimal, places: int) -> int:
    scaled = value.scaleb(places, context=_CTX)
    if scaled != scaled.to_integral_value():
        raise InvalidInputError(f"{name} {value} has more than {places} decimal places")
    number = int(scaled)
    if number > _MAX_BIGINT:
        limit = Decimal(_MAX_BIGINT).scaleb(-places, context=_CTX)
        raise InvalidInputError(f"{name} {value} is too large for one ledger record (at most {limit})")
    return number


def _unscaled(number: int | Decimal, places: int) -> Decimal:
    return Decimal(int(number)).scaleb(-places, context=_CTX)


def _plain(value: Decimal) -> Decimal:
    """Without trailing zeros (0.500000000000 → 0.5); callers print with format 'f', never exponents."""
    return value.normalize(_CTX) if value else Decimal(0)


def _row_values(record: UsageRecord, now: datetime) -> dict[str, Any]:
    return {
        "idempotency_key": record.idempotency_key,
        "tenant_id": record.tenant_id,
        "miner_id": record.miner_id,
        "resource_type": record.resource_type,
        "unit": record.unit,
        "quantity_e12": _scaled("quantity", record.quantity, QUANTITY_SCALE),
        "unit_price": format(record.unit_price, "f"),
        "amount_e8": _scaled("amount", record.amount, AMOUNT_SCALE),
        "currency": record.currency,
        "usage_start": record.usage_start,
        "usage_end": record.usage_end,
        "job_id": record.job_id,
        "metadata": dict(record.metadata),
        "created_at": now,
        "status": LedgerStatus.PENDING.value,
        "attempts": 0,
        "next_attempt_at": None,
        "last_error": None,
        "synced_at": None,
    }


def _entry(row: Row[Any]) -> LedgerEntry:
    record = UsageRecord(
        idempotency_key=row.idempotency_key,
        tenant_id=row.tenant_id,
        miner_id=row.miner_id,
        resource_type=row.resource_type,
        unit=row.unit,
        quantity=_plain(_unscaled(row.quantity_e12, QUANTITY_SCALE)),
        unit_price=Decimal(row.unit_price),
        amount=_unscaled(row.amount_e8, AMOUNT_SCALE),
        currency=row.currency,
        usage_start=row.usage_start,
        usage_end=row.usage_end,
        job_id=row.job_id,
        metadata=row.metadata or {},
    )
    return LedgerEntry(
        id=row.id,
        record=record,
        status=LedgerStatus(row.status),
        attempts=row.attempts,
        created_at=row.created_at,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        synced_at=row.synced_at,
    )


def _selection_filters(selection: PendingSelection) -> list[ColumnElement[bool]]:
    filters: list[ColumnElement[bool]] = [_T.c.status == LedgerStatus.PENDING.value]
    if selection.miner_id is not None:
        filters.append(_T.c.miner_id == selection.miner_id)
    if selection.usage_end_from is not None:
        filters.append(_T.c.usage_end >= selection.usage_end_from)
    return filters


def _split_sum(column: Any) -> tuple[Any, Any]:
    return func.sum(column // _SPLIT), func.sum(column % _SPLIT)


def _joined(high: int | Decimal | None, low: int | Decimal | None) -> int:
    return int(high or 0) * _SPLIT + int(low or 0)


class SqlUsageLedger(BillingLedger):
    """The `usage_records` table: INSERT … ON CONFLICT DO NOTHING on the idempotency key, bulk updates."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    def _dialect(self) -> str:
        return self._session.get_bind().dialect.name

    async def add(self, records: Sequence[UsageRecord]) -> int:
        if not records:
            return 0
        unique: dict[str, UsageRecord] = {}
        for record in records:
            unique.setdefault(record.idempotency_key, record)
        now = datetime.now(UTC)
        rows = [_row_values(record, now) for record in unique.values()]
        insert = postgresql.insert(_T) if self._dialect() == "postgresql" else sqlite.insert(_T)
        statement = insert.on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(_T.c.id)
        added = 0
        for chunk in chunks(rows):
            result = await self._session.execute(statement, list(chunk))
            added += len(result.all())
        return added

    async def get_by_key(self, idempotency_key: str) -> LedgerEntry | None:
        result = await self._session.execute(select(*_COLUMNS).where(_T.c.idempotency_key == idempotency_key))
        row = result.first()
        return _entry(row) if row is not None else None

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
        chosen = select(_T.c.id).where(
            *_selection_filters(selection),
            _T.c.id > after_id,
            or_(_T.c.claimed_until.is_(None), _T.c.claimed_until <= now),
        )
        if due_at is not None:
            chosen = chosen.where(or_(_T.c.next_attempt_at.is_(None), _T.c.next_attempt_at <= due_at))
        chosen = chosen.order_by(_T.c.id).limit(limit)
        if self._dialect() == "postgresql":
            # Rows another run is claiming right now are passed over, not waited for.
            chosen = chosen.with_for_update(skip_locked=True)
        result = await self._session.execute(
            update(_T)
            .where(_T.c.id.in_(chosen.scalar_subquery()))
            .values(claimed_by=claim, claimed_until=claim_until)
            .returning(*_COLUMNS)
        )
        return sorted((_entry(row) for row in result), key=lambda entry: entry.id)

    async def mark_synced(self, ids: Sequence[int], now: datetime, claim: str) -> None:
        for chunk in chunks(ids):
            await self._session.execute(
                update(_T)
                .where(_T.c.id.in_(chunk), _T.c.status != LedgerStatus.SYNCED.value, _T.c.claimed_by == claim)
                .values(
                    status=LedgerStatus.SYNCED.value,
                    synced_at=now,
                    attempts=_T.c.attempts + 1,
                    next_attempt_at=None,
                    last_error=None,
                )
            )

    async def mark_retry(self, marks: Sequence[RetryMark], claim: str) -> None:
        if not marks:
            return
        statement = (
            update(_T)
            .where(
                _T.c.id == bindparam("b_id"),
                _T.c.status == LedgerStatus.PENDING.value,
                _T.c.claimed_by == bindparam("b_claim"),
            )
            .values(
                attempts=_T.c.attempts + 1,
                next_attempt_at=bindparam("b_next"),
                last_error=bindparam("b_error"),
            )
        )
        await self._session.execute(
            statement,
            [
                {
                    "b_id": m.id,
                    "b_next": m.next_attempt_at,
                    "b_error": m.error[:_ERROR_CHARS],
                    "b_claim": claim,
                }
                for m in marks
            ],
        )

    async def mark_rejected(self, rejections: Sequence[tuple[int, str]], now: datetime, claim: str) -> None:
        if not rejections:
            return
        statement = (
            update(_T)
            .where(
                _T.c.id == bindparam("b_id"),
                _T.c.status == LedgerStatus.PENDING.value,
                _T.c.claimed_by == bindparam("b_claim"),
            )
            .values(
                status=LedgerStatus.REJECTED.value,
                attempts=_T.c.attempts + 1,
                next_attempt_at=None,
                last_error=bindparam("b_error"),
            )
        )
        await self._session.execute(
            statement,
            [
                {"b_id": row_id, "b_error": reason[:_ERROR_CHARS], "b_claim": claim}
                for row_id, reason in rejections
            ],
        )

    async def release(self, claim: str) -> None:
        await self._session.execute(
            update(_T).where(_T.c.claimed_by == claim).values(claimed_by=None, claimed_until=None)
        )

    async def requeue_rejected(self, selection: RequeueSelection) -> int:
        filters: list[ColumnElement[bool]] = [_T.c.status == LedgerStatus.REJECTED.value]
        if selection.tenant_id is not None:
            filters.append(_T.c.tenant_id == selection.tenant_id)
        if selection.resource_type is not None:
            filters.append(_T.c.resource_type == selection.resource_type)
        if selection.since is not None:
            filters.append(_T.c.usage_end >= selection.since)
        if selection.until is not None:
            filters.append(_T.c.usage_end < selection.until)
        result = await self._session.execute(
            update(_T)
            .where(*filters)
            .values(
                status=LedgerStatus.PENDING.value, next_attempt_at=None, claimed_by=None, claimed_until=None
            )
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def set_blocked(self, reason: str | None, now: datetime) -> None:
        insert = postgresql.insert(_S) if self._dialect() == "postgresql" else sqlite.insert(_S)
        values = {
            "name": _BILLING_STATE,
            "blocked_reason": reason and reason[:_ERROR_CHARS],
            "changed_at": now,
        }
        await self._session.execute(
            insert.values(values).on_conflict_do_update(
                index_elements=["name"],
                set_={"blocked_reason": values["blocked_reason"], "changed_at": now},
            )
        )

    async def blocked_reason(self) -> str | None:
        result = await self._session.execute(select(_S.c.blocked_reason).where(_S.c.name == _BILLING_STATE))
        reason: str | None = result.scalar_one_or_none()
        return reason

    async def count_pending(self, selection: PendingSelection) -> int:
        result = await self._session.execute(
            select(func.count()).select_from(_T).where(*_selection_filters(selection))
        )
        return int(result.scalar_one())

    async def totals(
        self, *, start: datetime, end: datetime, tenant_id: str | None, miner_id: str | None
    ) -> list[StatusTotal]:
        groups = (_T.c.tenant_id, _T.c.miner_id, _T.c.resource_type, _T.c.unit, _T.c.currency, _T.c.status)
        query = (
            select(*groups, *_split_sum(_T.c.quantity_e12), *_split_sum(_T.c.amount_e8))
            .where(_T.c.usage_end >= start, _T.c.usage_end <= end)
            .group_by(*groups)
        )
        if tenant_id is not None:
            query = query.where(_T.c.tenant_id == tenant_id)
        if miner_id is not None:
            query = query.where(_T.c.miner_id == miner_id)
        result = await self._session.execute(query)
        return [
            StatusTotal(
                tenant_id=tenant,
                miner_id=miner,
                resource_type=resource,
                unit=unit,
                currency=currency,
                status=LedgerStatus(status),
                quantity=_plain(_unscaled(_joined(q_high, q_low), QUANTITY_SCALE)),
                amount=_unscaled(_joined(a_high, a_low), AMOUNT_SCALE),
            )
            for (tenant, miner, resource, unit, currency, status, q_high, q_low, a_high, a_low) in (
                result.tuples()
            )
        ]

    async def list_entries(
        self,
        *,
        status: LedgerStatus | None,
        tenant_id: str | None,
        miner_id: str | None,
        offset: int,
        limit: int,
    ) -> tuple[list[LedgerEntry], int]:
        filters: list[ColumnElement[bool]] = []
        if status is not None:
            filters.append(_T.c.status == status.value)
        if tenant_id is not None:
            filters.append(_T.c.tenant_id == tenant_id)
        if miner_id is not None:
            filters.append(_T.c.miner_id == miner_id)
        total = await self._session.execute(select(func.count()).select_from(_T).where(*filters))
        page = await self._session.execute(
            select(*_COLUMNS).where(*filters).order_by(_T.c.id.desc()).offset(offset).limit(limit)
        )
        return [_entry(row) for row in page], int(total.scalar_one())

    async def api_calls_derived_until(self) -> datetime | None:
        result = await self._session.execute(
            select(func.max(_T.c.usage_start)).where(
                _T.c.resource_type == ResourceType.API_CALLS.value,
                _T.c.idempotency_key.startswith(API_CALLS_KEY_PREFIX, autoescape=True),
            )
        )
        newest: datetime | str | None = result.scalar_one_or_none()
        if newest is None:
            return None
        if isinstance(newest, str):  # SQLite hands MAX() of a datetime column back as text
            newest = datetime.fromisoformat(newest)
        return newest if newest.tzinfo is not None else newest.replace(tzinfo=UTC)

    async def match_calls(self, start: datetime | None, end: datetime) -> list[TenantHourCalls]:
        if self._dialect() == "postgresql":
            # In UTC whatever the session's TimeZone: date_trunc of a timestamptz uses the session zone.
            hour: Any = func.date_trunc("hour", func.timezone("UTC", _M.c.requested_at))
        else:
            hour = func.strftime("%Y-%m-%dT%H:00:00", _M.c.requested_at)
        hour = hour.label("hour")
        query = select(_M.c.tenant_id, hour, func.count()).where(_M.c.requested_at < end)
        if start is not None:
            query = query.where(_M.c.requested_at >= start)
        result = await self._session.execute(query.group_by(_M.c.tenant_id, hour))
        counts = []
        for tenant, hour_start, calls in result.tuples():
            moment = datetime.fromisoformat(hour_start) if isinstance(hour_start, str) else hour_start
            counts.append(
                TenantHourCalls(
                    tenant_id=tenant,
                    hour_start=moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment,
                    calls=int(calls),
                )
            )
        return counts
