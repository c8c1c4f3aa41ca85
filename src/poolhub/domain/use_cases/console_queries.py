"""What the operator console reads beyond the public API: a searchable miner list, the pool at a glance,
billing by delivery state, and "why not this miner?" without recording a match. All read-only."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from poolhub.domain.billing import LedgerStatus
from poolhub.domain.errors import MinerNotFoundError
from poolhub.domain.matching import MatchQuery, MatchResult
from poolhub.domain.model import Miner
from poolhub.domain.ports import BillingLedger, Clock, LiveState, SlaRepository
from poolhub.domain.sla import sla_status
from poolhub.domain.use_cases.list_miners import MinerView
from poolhub.domain.use_cases.match_job import MatchPolicy


class MinerSort(StrEnum):
    MINER_ID = "miner_id"
    TRUST = "trust"
    LOAD = "load"


@dataclass(frozen=True, slots=True)
class MinerSearch:
    """`search` matches a substring (case-insensitive) of the id, GPU, region, tags or capabilities."""

    search: str | None = None
    online: bool | None = None
    region: str | None = None
    accel: str | None = None
    has_violation: bool | None = None
    sort: MinerSort = MinerSort.MINER_ID
    descending: bool = False
    offset: int = 0
    limit: int = 50


@dataclass(frozen=True, slots=True)
class MinerRow:
    view: MinerView
    load: float
    open_violations: int


@dataclass(frozen=True, slots=True)
class MinerSearchPage:
    items: tuple[MinerRow, ...]
    total: int
    regions: tuple[str, ...]
    accels: tuple[str, ...]


def _load(miner: Miner) -> float:
    """Share of the miner's slots in use; a busy miner is full."""
    if miner.status.busy:
        return 1.0
    return min(miner.status.queue_len, miner.spec.max_parallel) / miner.spec.max_parallel


def _haystack(miner: Miner) -> str:
    spec = miner.spec
    parts = [spec.miner_id, spec.gpu_name or "", spec.region or "", spec.accel or "", *spec.tags]
    return " ".join([*parts, *spec.capabilities]).lower()


def _row(directory: LiveState, miner: Miner, now: datetime, open_count: int) -> MinerRow:
    view = MinerView(
        miner=miner,
        online=directory.is_online(miner, now),
        lease_expires_at=directory.lease.lease_expires_at(miner.status),
        trust_score=directory.trust.score(miner.trust, now),
        trust_samples=directory.trust.samples(miner.trust, now),
    )
    return MinerRow(view=view, load=_load(miner), open_violations=open_count)


class SearchMiners:
    """Filter, sort and page the directory in memory; open violations come from one small query."""

    def __init__(self, directory: LiveState, sla: SlaRepository, clock: Clock) -> None:
        self._directory = directory
        self._sla = sla
        self._clock = clock

    async def execute(self, query: MinerSearch) -> MinerSearchPage:
        now = self._clock.now()
        directory = self._directory
        open_by_miner = Counter(
            key.miner_id for key in await self._sla.open_violation_keys() if key.miner_id is not None
        )
        everyone = list(directory.miners())
        needle = (query.search or "").strip().lower()
        rows = [
            _row(directory, m, now, open_by_miner.get(m.miner_id, 0))
            for m in everyone
            if (query.online is None or directory.is_online(m, now) == query.online)
            and (query.region is None or m.spec.region == query.region)
            and (query.accel is None or m.spec.accel == query.accel)
            and (query.has_violation is None or (open_by_miner.get(m.miner_id, 0) > 0) == query.has_violation)
            and (not needle or needle in _haystack(m))
        ]
        if query.sort is MinerSort.TRUST:
            rows.sort(key=lambda r: r.view.miner.miner_id)
            rows.sort(key=lambda r: r.view.trust_score, reverse=query.descending)
        elif query.sort is MinerSort.LOAD:
            rows.sort(key=lambda r: r.view.miner.miner_id)
            rows.sort(key=lambda r: r.load, reverse=query.descending)
        else:
            rows.sort(key=lambda r: r.view.miner.miner_id, reverse=query.descending)
        return MinerSearchPage(
            items=tuple(rows[query.offset : query.offset + query.limit]),
            total=len(rows),
            regions=tuple(sorted({m.spec.region for m in everyone if m.spec.region})),
            accels=tuple(sorted({m.spec.accel for m in everyone if m.spec.accel})),
        )


class GetMiner:
    """One miner as the console shows it; raises MinerNotFoundError."""

    def __init__(self, directory: LiveState, sla: SlaRepository, clock: Clock) -> None:
        self._directory = directory
        self._sla = sla
        self._clock = clock

    async def execute(self, miner_id: str) -> MinerRow:
        miner = self._directory.get(miner_id)
        if miner is None:
            raise MinerNotFoundError(f"no miner {miner_id!r} is registered")
        keys = await self._sla.open_violation_keys()
        open_count = sum(1 for key in keys if key.miner_id == miner_id)
        return _row(self._directory, miner, self._clock.now(), open_count)


class ExplainMiner:
    """Run the matcher for a sample job as POST /v1/match would, but record nothing: no match record,
    so no api_calls are billed and no SLA input changes."""

    def __init__(self, directory: LiveState, policy: MatchPolicy, clock: Clock) -> None:
        self._directory = directory
        self._policy = policy
        self._clock = clock

    def execute(self, query: MatchQuery) -> MatchResult:
        now = self._clock.now().timestamp()
        return self._directory.index.match(query, now, self._policy.weights, self._policy.exploration)


@dataclass(frozen=True, slots=True)
class StatusAmounts:
    """Quantity and amount of ledger lines per delivery state."""

    quantity: dict[LedgerStatus, Decimal] = field(default_factory=dict)
    amount: dict[LedgerStatus, Decimal] = field(default_factory=dict)

    def add(self, status: LedgerStatus, quantity: Decimal, amount: Decimal) -> None:
        self.quantity[status] = self.quantity.get(status, Decimal(0)) + quantity
        self.amount[status] = self.amount.get(status, Decimal(0)) + amount


@dataclass(frozen=True, slots=True)
class BillingLine:
    tenant_id: str
    resource_type: str
    unit: str
    currency: str
    split: StatusAmounts


@dataclass(frozen=True, slots=True)
class BillingSummary:
    period_start: datetime
    period_end: datetime
    lines: tuple[BillingLine, ...]
    totals: dict[str, StatusAmounts]
    """Per currency."""
    last_synced_at: datetime | None


class SummarizeBilling:
    """Ledger lines whose usage ended in the last `hours`, by tenant and resource type, with quantity and
    amount split by delivery state (pending, synced, rejected); and when a line was last delivered."""

    def __init__(self, ledger: BillingLedger, clock: Clock) -> None:
        self._ledger = ledger
        self._clock = clock

    async def execute(self, *, hours: int, tenant_id: str | None = None) -> BillingSummary:
        end = self._clock.now()
        start = end - timedelta(hours=hours)
        totals = await self._ledger.totals(start=start, end=end, tenant_id=tenant_id, miner_id=None)
        lines: dict[tuple[str, str, str, str], StatusAmounts] = {}
        by_currency: dict[str, StatusAmounts] = {}
        for total in totals:
            key = (total.tenant_id, total.resource_type, total.unit, total.currency)
            lines.setdefault(key, StatusAmounts()).add(total.status, total.quantity, total.amount)
            by_currency.setdefault(total.currency, StatusAmounts()).add(
                total.status, total.quantity, total.amount
            )
        newest, _ = await self._ledger.list_entries(
            status=LedgerStatus.SYNCED, tenant_id=None, miner_id=None, offset=0, limit=1
        )
        return BillingSummary(
            period_start=start,
            period_end=end,
            lines=tuple(BillingLine(*key, split) for key, split in sorted(lines.items())),
            totals=by_currency,
            last_synced_at=newest[0].synced_at if newest else None,
        )


@dataclass(frozen=True, slots=True)
class PoolOverview:
    registered: int
    online: int
    total_slots: int
    used_slots: int
    sla_status: str
    open_violations: dict[tuple[str, str], int]
    """(violation type, severity) → how many are open."""


class OverviewPool:
    """The pool now: miners and slots from memory, open violations from one small query."""

    def __init__(self, directory: LiveState, sla: SlaRepository, clock: Clock) -> None:
        self._directory = directory
        self._sla = sla
        self._clock = clock

    async def execute(self) -> PoolOverview:
        now = self._clock.now()
        online = [m for m in self._directory.miners() if self._directory.is_online(m, now)]
        keys = await self._sla.open_violation_keys()
        return PoolOverview(
            registered=len(self._directory),
            online=len(online),
            total_slots=sum(m.spec.max_parallel for m in online),
            used_slots=sum(round(_load(m) * m.spec.max_parallel) for m in online),
            sla_status=sla_status(key.severity for key in keys),
            open_violations=dict(Counter((key.violation_type, key.severity) for key in keys)),
        )
