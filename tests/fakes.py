"""In-memory fakes of the domain's ports, for unit tests of use cases (no I/O, no container)."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TypeVar

from poolhub.domain.billing import (
    API_CALLS_KEY_PREFIX,
    BillingRetryableError,
    LedgerEntry,
    LedgerStatus,
    StatusTotal,
    TenantHourCalls,
    UsageRecord,
    hour_floor,
)
from poolhub.domain.model import Miner, MinerStatus, Trust
from poolhub.domain.ports import (
    ChangeKind,
    FeedbackEntry,
    MatchRecord,
    MinerRegistration,
    PendingSelection,
    RequeueSelection,
    RetryMark,
)

_T = TypeVar("_T")
NEVER = datetime.min.replace(tzinfo=UTC)


class FakeChangeLog:
    """Records what a use case announced to other processes."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, str | None]] = []

    async def record(self, kind: ChangeKind, miner_ids: Sequence[str | None], now: datetime) -> None:
        self.changes.extend((kind.value, m) for m in miner_ids)


class FixedClock:
    def __init__(self, now: datetime = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        self.current += delta


class FakeUnitOfWork:
    """Counts commits; `fail_next_commit` makes the next commit raise (a crash after the sends)."""

    def __init__(self) -> None:
        self.commits = 0
        self.rollbacks = 0
        self.fail_next_commit = False

    async def commit(self) -> None:
        if self.fail_next_commit:
            self.fail_next_commit = False
            raise ConnectionError("the database went away")
        self.commits += 1

    async def rollback(self) -> None:
        self.rollbacks += 1

    async def run(self, work: Callable[[], Awaitable[_T]]) -> _T:
        return await work()


class FixedRandom:
    """Draws cycle through `draws`; ids are id-1, id-2, …"""

    def __init__(self, *draws: float) -> None:
        self._draws = list(draws) or [0.5]
        self._next = 0
        self._ids = 0

    def random(self) -> float:
        value = self._draws[self._next % len(self._draws)]
        self._next += 1
        return value

    def new_id(self) -> str:
        self._ids += 1
        return f"id-{self._ids}"


@dataclass
class FakeBillingGateway:
    """Records every send; `fail` decides per record: return an exception to raise, or None to accept.

    `received` maps each accepted key to its record once, as the coordinator counts it.
    """

    fail: Callable[[UsageRecord], Exception | None] = lambda _: None
    metrics_answer: Mapping[str, object] | Exception = field(default_factory=lambda: {"total_records": 0})
    invoice_answer: Mapping[str, object] | Exception = field(
        default_factory=lambda: {"invoice_id": "inv-1", "status": "issued"}
    )
    sends: list[str] = field(default_factory=list)
    received: dict[str, UsageRecord] = field(default_factory=dict)
    invoices: list[tuple[str, datetime, datetime]] = field(default_factory=list)

    async def send_usage(self, record: UsageRecord) -> None:
        self.sends.append(record.idempotency_key)
        error = self.fail(record)
        if error is not None:
            raise error
        self.received.setdefault(record.idempotency_key, record)

    async def metrics(self, tenant_id: str | None, hours: int) -> Mapping[str, object]:
        if isinstance(self.metrics_answer, Exception):
            raise self.metrics_answer
        return self.metrics_answer

    async def invoice(
        self, tenant_id: str, period_start: datetime, period_end: datetime
    ) -> Mapping[str, object]:
        self.invoices.append((tenant_id, period_start, period_end))
        if isinstance(self.invoice_answer, Exception):
            raise self.invoice_answer
        return self.invoice_answer


def outage(_: UsageRecord) -> Exception:
    return BillingRetryableError("coordinator billing send_usage answered HTTP 503", status_code=503)


class FakeBillingLedger:
    """The ledger as a dict; `matches` holds (tenant_id, requested_at) of answered match requests."""

    def __init__(self, matches: Sequence[tuple[str | None, datetime]] = ()) -> None:
        self.entries: dict[int, LedgerEntry] = {}
        self.matches = list(matches)
        self.claims: dict[int, tuple[str, datetime]] = {}
        self.blocked: str | None = None
        self._next_id = 0

    def by_key(self) -> dict[str, LedgerEntry]:
        return {entry.record.idempotency_key: entry for entry in self.entries.values()}

    async def add(self, records: Sequence[UsageRecord]) -> int:
        keys = set(self.by_key())
        added = 0
        for record in records:
            if record.idempotency_key in keys:
                continue
            keys.add(record.idempotency_key)
            self._next_id += 1
            self.entries[self._next_id] = LedgerEntry(
                id=self._next_id,
                record=record,
                status=LedgerStatus.PENDING,
                attempts=0,
                created_at=record.usage_end,
            )
            added += 1
        return added

    async def get_by_key(self, idempotency_key: str) -> LedgerEntry | None:
        return self.by_key().get(idempotency_key)

    def _selected(self, entry: LedgerEntry, selection: PendingSelection) -> bool:
        record = entry.record
        return (
            entry.status is LedgerStatus.PENDING
            and (selection.miner_id is None or record.miner_id == selection.miner_id)
            and (selection.usage_end_from is None or record.usage_end >= selection.usage_end_from)
        )

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
        chosen = [
            entry
            for entry_id, entry in sorted(self.entries.items())
            if entry_id > after_id
            and self._selected(entry, selection)
            and (entry_id not in self.claims or self.claims[entry_id][1] <= now)
            and (due_at is None or entry.next_attempt_at is None or entry.next_attempt_at <= due_at)
        ][:limit]
        for entry in chosen:
            self.claims[entry.id] = (claim, claim_until)
        return chosen

    def _update(self, entry_id: int, **changes: object) -> None:
        self.entries[entry_id] = dataclasses.replace(self.entries[entry_id], **changes)  # type: ignore[arg-type]

    def _held(self, entry_id: int, claim: str) -> bool:
        return self.claims.get(entry_id, ("", NEVER))[0] == claim

    async def mark_synced(self, ids: Sequence[int], now: datetime, claim: str) -> None:
        for entry_id in ids:
            entry = self.entries[entry_id]
            if entry.status is not LedgerStatus.SYNCED and self._held(entry_id, claim):
                self._update(
                    entry_id,
                    status=LedgerStatus.SYNCED,
                    synced_at=now,
                    attempts=entry.attempts + 1,
                    next_attempt_at=None,
                    last_error=None,
                )

    async def mark_retry(self, marks: Sequence[RetryMark], claim: str) -> None:
        for mark in marks:
            entry = self.entries[mark.id]
            if entry.status is LedgerStatus.PENDING and self._held(mark.id, claim):
                self._update(
                    mark.id,
                    attempts=entry.attempts + 1,
                    next_attempt_at=mark.next_attempt_at,
                    last_error=mark.error,
                )

    async def mark_rejected(self, rejections: Sequence[tuple[int, str]], now: datetime, claim: str) -> None:
        for entry_id, reason in rejections:
            entry = self.entries[entry_id]
            if entry.status is LedgerStatus.PENDING and self._held(entry_id, claim):
                self._update(
                    entry_id,
                    status=LedgerStatus.REJECTED,
                    attempts=entry.attempts + 1,
                    next_attempt_at=None,
                    last_error=reason,
                )

    async def release(self, claim: str) -> None:
        for entry_id in [i for i, (held, _) in self.claims.items() if held == claim]:
            del self.claims[entry_id]

    async def requeue_rejected(self, selection: RequeueSelection) -> int:
        count = 0
        for entry_id, entry in list(self.entries.items()):
            r = entry.record
            if (
                entry.status is LedgerStatus.REJECTED
                and selection.tenant_id in (None, r.tenant_id)
                and selection.resource_type in (None, r.resource_type)
                and (selection.since is None or r.usage_end >= selection.since)
                and (selection.until is None or r.usage_end < selection.until)
            ):
                self._update(entry_id, status=LedgerStatus.PENDING, next_attempt_at=None)
                count += 1
        return count

    async def set_blocked(self, reason: str | None, now: datetime) -> None:
        self.blocked = reason

    async def blocked_reason(self) -> str | None:
        return self.blocked

    async def count_pending(self, selection: PendingSelection) -> int:
        return sum(1 for entry in self.entries.values() if self._selected(entry, selection))

    async def totals(
        self, *, start: datetime, end: datetime, tenant_id: str | None, miner_id: str | None
    ) -> list[StatusTotal]:
        sums: dict[tuple[str, str | None, str, str, str, LedgerStatus], tuple[Decimal, Decimal]] = {}
        for entry in self.entries.values():
            r = entry.record
            if not start <= r.usage_end <= end:
                continue
            if (tenant_id is not None and r.tenant_id != tenant_id) or (
                miner_id is not None and r.miner_id != miner_id
            ):
                continue
            key = (r.tenant_id, r.miner_id, r.resource_type, r.unit, r.currency, entry.status)
            quantity, money = sums.get(key, (Decimal(0), Decimal(0)))
            sums[key] = (quantity + r.quantity, money + r.amount)
        return [
            StatusTotal(tenant, miner, resource, unit, currency, status, quantity, money)
            for (tenant, miner, resource, unit, currency, status), (quantity, money) in sums.items()
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
        chosen = [
            entry
            for _, entry in sorted(self.entries.items(), reverse=True)
            if (status is None or entry.status is status)
            and (tenant_id is None or entry.record.tenant_id == tenant_id)
            and (miner_id is None or entry.record.miner_id == miner_id)
        ]
        return chosen[offset : offset + limit], len(chosen)

    async def api_calls_derived_until(self) -> datetime | None:
        starts = [
            entry.record.usage_start
            for entry in self.entries.values()
            if entry.record.idempotency_key.startswith(API_CALLS_KEY_PREFIX)
        ]
        return max(starts, default=None)

    async def match_calls(self, start: datetime | None, end: datetime) -> list[TenantHourCalls]:
        counts: dict[tuple[str | None, datetime], int] = {}
        for tenant, requested_at in self.matches:
            if requested_at < end and (start is None or requested_at >= start):
                key = (tenant, hour_floor(requested_at))
                counts[key] = counts.get(key, 0) + 1
        return [TenantHourCalls(tenant, hour, calls) for (tenant, hour), calls in counts.items()]


class SequentialTokens:
    """Predictable session tokens: token-1, token-2, …"""

    def __init__(self) -> None:
        self.issued = 0

    def new_token(self) -> str:
        self.issued += 1
        return f"token-{self.issued}"


class FakeMinerRepository:
    """Miners and their API-key hashes in dicts."""

    def __init__(self) -> None:
        self.miners: dict[str, Miner] = {}
        self.key_hashes: dict[str, str] = {}

    async def get(self, miner_id: str) -> Miner | None:
        return self.miners.get(miner_id)

    async def get_for_update(self, miner_id: str) -> Miner | None:
        return self.miners.get(miner_id)

    async def get_many(self, miner_ids: Sequence[str]) -> dict[str, Miner]:
        return {i: self.miners[i] for i in miner_ids if i in self.miners}

    async def rehash_api_keys(self, rehashes: Sequence[tuple[str, str, str]]) -> None:
        for miner_id, old, new in rehashes:
            if self.key_hashes.get(miner_id) == old:
                self.key_hashes[miner_id] = new

    async def save_price(self, miner_id: str, price: Decimal, now: datetime) -> None:
        miner = self.miners[miner_id]
        self.miners[miner_id] = dataclasses.replace(
            miner, spec=dataclasses.replace(miner.spec, price_token_per_ksec=price)
        )

    async def save_trust(self, miner_id: str, trust: Trust, now: datetime) -> None:
        self.miners[miner_id] = dataclasses.replace(self.miners[miner_id], trust=trust)

    async def save_statuses(self, statuses: Sequence[tuple[str, MinerStatus]], now: datetime) -> None:
        for miner_id, status in statuses:
            if miner_id in self.miners:
                self.miners[miner_id] = dataclasses.replace(self.miners[miner_id], status=status)

    async def all(self) -> list[Miner]:
        return list(self.miners.values())


class FakeSessionRepository:
    def __init__(self) -> None:
        self.live: dict[str, str] = {}  # token hash -> miner id
        self.revoked: set[str] = set()

    async def create_many(self, sessions: Sequence[tuple[str, str, datetime, datetime]]) -> None:
        for token_hash, miner_id, _, _ in sessions:
            self.live[token_hash] = miner_id

    async def revoke_all_of(self, miner_ids: Sequence[str], now: datetime) -> list[str]:
        hashes = [h for h, m in self.live.items() if m in miner_ids]
        for token_hash in hashes:
            del self.live[token_hash]
            self.revoked.add(token_hash)
        return hashes

    async def find_live(self, token_hash: str) -> str | None:
        return self.live.get(token_hash)

    async def extend(self, expiries: Sequence[tuple[str, datetime]]) -> None:
        return None


class FakePresenceRepository:
    def __init__(self) -> None:
        self.intervals: dict[tuple[str, datetime], datetime] = {}

    async def record(self, intervals: Sequence[tuple[str, datetime, datetime]]) -> None:
        for miner_id, started_at, ended_at in intervals:
            self.intervals[(miner_id, started_at)] = ended_at


class FakeRegistrationStore:
    """Registrations written into the fake miners, sessions and presence."""

    def __init__(
        self, miners: FakeMinerRepository, sessions: FakeSessionRepository, presence: FakePresenceRepository
    ) -> None:
        self.miners = miners
        self.sessions = sessions
        self.presence = presence

    async def key_hashes(self, miner_ids: Sequence[str]) -> dict[str, str]:
        return {i: self.miners.key_hashes[i] for i in miner_ids if i in self.miners.key_hashes}

    async def save(
        self, registrations: Sequence[MinerRegistration], now: datetime
    ) -> tuple[set[str], list[str]]:
        saved: set[str] = set()
        for r in registrations:
            miner_id = r.miner.miner_id
            if self.miners.key_hashes.get(miner_id, r.api_key_hash) != r.api_key_hash:
                continue  # another key owns it (ON CONFLICT … WHERE the hashes match)
            self.miners.miners[miner_id] = r.miner
            self.miners.key_hashes[miner_id] = r.api_key_hash
            saved.add(miner_id)
        written = [r for r in registrations if r.miner.miner_id in saved]
        revoked = await self.sessions.revoke_all_of(sorted(saved), now)
        await self.sessions.create_many(
            [(r.token_hash, r.miner.miner_id, now, r.token_expires_at) for r in written]
        )
        await self.presence.record([(r.miner.miner_id, r.online_since, r.presence_end) for r in written])
        return saved, revoked


class FakeFeedbackRepository:
    def __init__(self) -> None:
        self.entries: dict[tuple[str, str, str], FeedbackEntry] = {}

    async def add(self, entry: FeedbackEntry) -> bool:
        key = (entry.job_id, entry.miner_id, entry.outcome)
        if key in self.entries:
            return False
        self.entries[key] = entry
        return True


class FakeMatchRecordRepository:
    def __init__(self, tenants: Mapping[str, str] | None = None) -> None:
        self.records: list[MatchRecord] = []
        self.tenants = dict(tenants or {})

    async def add_many(self, records: Sequence[MatchRecord]) -> None:
        self.records.extend(records)

    async def tenant_of_job(self, job_id: str) -> str | None:
        return self.tenants.get(job_id)


class FakeUsageLedger:
    def __init__(self) -> None:
        self.records: dict[str, UsageRecord] = {}

    async def add(self, records: Sequence[UsageRecord]) -> int:
        new = [r for r in records if r.idempotency_key not in self.records]
        for record in new:
            self.records[record.idempotency_key] = record
        return len(new)
