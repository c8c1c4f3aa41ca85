"""Read-only SLA use cases: metrics, violations, capacity snapshots and the overall status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from poolhub.domain.errors import InvalidInputError, MinerNotFoundError
from poolhub.domain.ports import (
    BillingHealth,
    CapacityRepository,
    Clock,
    SlaRepository,
    StoredMetric,
    StoredSnapshot,
    StoredViolation,
)
from poolhub.domain.sla import sla_status

MAX_HOURS = 720
# GET /sla/status counts the metrics recorded this recently.
RECENT = timedelta(hours=1)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: tuple[T, ...]
    total: int


@dataclass(frozen=True, slots=True)
class SlaStatus:
    status: str
    active_violations: int
    recent_metrics_count: int
    timestamp: datetime
    billing_blocked: str | None = None


def _check_window(hours: int) -> None:
    if not 1 <= hours <= MAX_HOURS:
        raise InvalidInputError(f"hours must be between 1 and {MAX_HOURS}, got {hours}")


class ListSlaMetrics:
    """Metrics of the last `hours`, newest first: one miner's (404 if unknown) or all, pool-wide included."""

    def __init__(self, sla: SlaRepository, clock: Clock) -> None:
        self._sla = sla
        self._clock = clock

    async def execute(
        self, *, miner_id: str | None, hours: int, offset: int, limit: int
    ) -> Page[StoredMetric]:
        _check_window(hours)
        if miner_id is not None and not await self._sla.miner_exists(miner_id):
            raise MinerNotFoundError(f"no miner '{miner_id}' is registered")
        since = self._clock.now() - timedelta(hours=hours)
        items, total = await self._sla.metrics(since=since, miner_id=miner_id, offset=offset, limit=limit)
        return Page(tuple(items), total)


class ListSlaViolations:
    """Open (default) or resolved violations, newest first, optionally of one miner."""

    def __init__(self, sla: SlaRepository) -> None:
        self._sla = sla

    async def execute(
        self,
        *,
        miner_id: str | None,
        resolved: bool,
        offset: int,
        limit: int,
        violation_type: str | None = None,
        severity: str | None = None,
    ) -> Page[StoredViolation]:
        items, total = await self._sla.violations(
            miner_id=miner_id,
            resolved=resolved,
            offset=offset,
            limit=limit,
            violation_type=violation_type,
            severity=severity,
        )
        return Page(tuple(items), total)


class ListCapacitySnapshots:
    """Capacity snapshots of the last `hours`, newest first."""

    def __init__(self, capacity: CapacityRepository, clock: Clock) -> None:
        self._capacity = capacity
        self._clock = clock

    async def execute(self, *, hours: int, offset: int, limit: int) -> Page[StoredSnapshot]:
        _check_window(hours)
        since = self._clock.now() - timedelta(hours=hours)
        items, total = await self._capacity.snapshots(since=since, offset=offset, limit=limit)
        return Page(tuple(items), total)


class GetSlaStatus:
    """critical if any open violation is critical, else degraded if any is open, else healthy; with the
    reason billing delivery is blocked by a misconfigured coordinator, if it is."""

    def __init__(self, sla: SlaRepository, clock: Clock, billing: BillingHealth) -> None:
        self._sla = sla
        self._clock = clock
        self._billing = billing

    async def execute(self) -> SlaStatus:
        now = self._clock.now()
        keys = await self._sla.open_violation_keys()
        return SlaStatus(
            status=sla_status(key.severity for key in keys),
            active_violations=len(keys),
            recent_metrics_count=await self._sla.count_metrics_since(now - RECENT),
            timestamp=now,
            billing_blocked=await self._billing.blocked_reason(),
        )
