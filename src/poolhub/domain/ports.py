"""Ports: what the core needs from the outside world, named by role.

`BillingGateway` (the coordinator's billing API) is defined beside the billing rules and re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from poolhub.domain.billing import (
    BillingGateway,
    LedgerEntry,
    LedgerStatus,
    StatusTotal,
    TenantHourCalls,
    UsageRecord,
)
from poolhub.domain.capacity import CapacitySnapshotValues
from poolhub.domain.model import Miner, MinerStatus, Trust
from poolhub.domain.sla import Interval, LatencyStats, Measurement, OpenViolation, Severity

__all__ = [
    "BillingGateway",
    "BillingLedger",
    "CapacityRepository",
    "Clock",
    "FeedbackEntry",
    "FeedbackRepository",
    "FeedbackWindowStats",
    "MatchRecord",
    "MatchRecordRepository",
    "MinerRepository",
    "MinerSlaFacts",
    "OpenViolationKey",
    "PendingSelection",
    "PresenceRepository",
    "RandomSource",
    "RetryMark",
    "SessionRepository",
    "SlaRepository",
    "StoredMetric",
    "StoredSnapshot",
    "StoredViolation",
    "TickLock",
    "TokenLookup",
    "TokenSource",
    "UnitOfWork",
    "UsageLedger",
]


class Clock(Protocol):
    """The current time, always an aware UTC datetime."""

    def now(self) -> datetime: ...


class TokenSource(Protocol):
    """Unpredictable session tokens (at least 128 bits of entropy)."""

    def new_token(self) -> str: ...


class UnitOfWork(Protocol):
    """One transaction. Nothing is saved unless `commit` is awaited; closing without it rolls back."""

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...


class MinerRepository(Protocol):
    """Durable miners: specification, status and trust. Never commits."""

    async def get(self, miner_id: str) -> Miner | None: ...

    async def get_for_update(self, miner_id: str) -> Miner | None:
        """Like `get`, locking the miner's row until commit (trust updates read-modify-write it)."""

    async def get_many(self, miner_ids: Sequence[str]) -> dict[str, Miner]: ...

    async def api_key_hashes(self, miner_ids: Sequence[str]) -> dict[str, str]:
        """The stored API-key hash of each of these miners that is registered."""

    async def save_registrations(self, registrations: Sequence[tuple[Miner, str]]) -> None:
        """Insert or replace each miner's specification, status, trust and API-key hash, batched.

        Raises ConflictError when another transaction registered one of them first."""

    async def save_price(self, miner_id: str, price: Decimal, now: datetime) -> None: ...

    async def save_trust(self, miner_id: str, trust: Trust, now: datetime) -> None: ...

    async def save_statuses(self, statuses: Sequence[tuple[str, MinerStatus]], now: datetime) -> None:
        """Write many statuses in one batched statement; unknown miners are skipped."""

    async def all(self) -> list[Miner]: ...

    async def changed_since(self, since: datetime) -> list[Miner]:
        """Miners whose specification, trust or status was written at or after `since`."""


class SessionRepository(Protocol):
    """Session tokens, stored only as hashes. Never commits."""

    async def revoke_all_of(self, miner_ids: Sequence[str], now: datetime) -> list[str]:
        """Revoke every live token of these miners in one statement; returns the revoked hashes."""

    async def create_many(self, sessions: Sequence[tuple[str, str, datetime, datetime]]) -> None:
        """Insert (token_hash, miner_id, created_at, expires_at) rows in one batched statement."""

    async def find_live(self, token_hash: str) -> str | None:
        """The miner id of a token that is not revoked (expiry is judged by the caller)."""

    async def extend(self, expiries: Sequence[tuple[str, datetime]]) -> None:
        """Set the expiry of each miner's live tokens, in one batched statement."""

    async def revoked_since(self, since: datetime) -> list[str]: ...


class TokenLookup(Protocol):
    """Read-only lookups for authentication, each in its own short transaction (callers hold no session)."""

    async def miner_of_live_token(self, token_hash: str) -> str | None:
        """The miner id of a token that is not revoked (expiry is judged by the caller)."""

    async def miner(self, miner_id: str) -> Miner | None: ...


class PresenceRepository(Protocol):
    """Online intervals of each miner (the uptime SLA reads them). Never commits."""

    async def record(self, intervals: Sequence[tuple[str, datetime, datetime]]) -> None:
        """Upsert (miner_id, started_at, ended_at): the interval begun at started_at ends at ended_at."""


@dataclass(frozen=True, slots=True)
class FeedbackEntry:
    job_id: str
    miner_id: str
    outcome: str
    created_at: datetime
    latency_ms: float | None = None
    duration_ms: float | None = None
    fail_code: str | None = None
    tokens_spent: float | None = None
    tenant_id: str | None = None


class FeedbackRepository(Protocol):
    """Durable feedback; (job_id, miner_id, outcome) is unique in the database. Never commits."""

    async def add(self, entry: FeedbackEntry) -> bool:
        """Insert unless the same (job_id, miner_id, outcome) exists; True when it was new."""


@dataclass(frozen=True, slots=True)
class MatchRecord:
    job_id: str
    tenant_id: str | None
    requested_at: datetime
    request: Mapping[str, object]
    candidates: Sequence[Mapping[str, object]]
    explain: str
    considered: int
    returned: int


class MatchRecordRepository(Protocol):
    """Answered match requests (audit, SLA, api_calls billing). Never commits."""

    async def add_many(self, records: Sequence[MatchRecord]) -> None: ...

    async def tenant_of_job(self, job_id: str) -> str | None:
        """The tenant named by the newest match request for this job, if any."""


class UsageLedger(Protocol):
    """The usage ledger: one row per idempotency key. Never commits."""

    async def add(self, records: Sequence[UsageRecord]) -> int:
        """Insert the records whose key is new (others are skipped, not updated); returns the new count."""


class TickLock(Protocol):
    """Claims one scheduled run across every process sharing the database. Commits its own claim."""

    async def claim(self, job: str, tick_at: datetime, now: datetime) -> bool:
        """True for exactly one caller per (job, tick_at)."""


# SLA and capacity ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MinerSlaFacts:
    """What one collection needs to know of a registered miner: its age, its slots and its lease."""

    miner_id: str
    registered_at: datetime
    max_parallel: int
    queue_len: int
    busy: bool
    last_beat_at: datetime
    logged_out_at: datetime | None


@dataclass(frozen=True, slots=True)
class FeedbackWindowStats:
    """One miner's feedback in a window: completed and failed outcomes and the latency summary."""

    miner_id: str
    completed: int
    failed: int
    latency: LatencyStats | None


@dataclass(frozen=True, slots=True)
class StoredMetric:
    id: int
    miner_id: str | None
    metric_type: str
    metric_value: float
    threshold: float
    is_violation: bool
    timestamp: datetime
    metadata: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class StoredViolation:
    id: int
    miner_id: str | None
    violation_type: str
    severity: str
    metric_value: float
    threshold: float
    created_at: datetime
    resolved_at: datetime | None
    duration_sec: float | None


@dataclass(frozen=True, slots=True)
class OpenViolationKey:
    """Who has an open violation of which type, and how bad it is (for penalties and the status)."""

    miner_id: str | None
    violation_type: str
    severity: str


@dataclass(frozen=True, slots=True)
class StoredSnapshot:
    id: int
    timestamp: datetime
    values: CapacitySnapshotValues


class SlaRepository(Protocol):
    """SLA inputs (miners, presence, feedback) read set-based; SLA metrics and violations. Never commits."""

    async def miner_exists(self, miner_id: str) -> bool: ...

    async def miner_facts(self) -> list[MinerSlaFacts]:
        """Every registered miner, in one query."""

    async def presence(self, since: datetime, until: datetime) -> dict[str, list[Interval]]:
        """Online intervals overlapping [since, until], by miner, in one query."""

    async def feedback_stats(self, since: datetime, until: datetime) -> list[FeedbackWindowStats]:
        """Per-miner outcome counts and latency summary of the feedback created in [since, until].

        Set-based: a fixed number of queries whatever the number of miners. Miners without feedback in
        the window are absent; `latency` is None for a miner whose feedback carries no latency.
        """

    async def add_metrics(self, measurements: Sequence[Measurement], at: datetime) -> int:
        """Insert the measurements as metrics stamped `at`, in one batched statement; returns the count."""

    async def metrics(
        self, *, since: datetime, miner_id: str | None, offset: int, limit: int
    ) -> tuple[list[StoredMetric], int]:
        """Metrics stamped at or after `since`, newest first (one miner's, or all with miner_id None)."""

    async def count_metrics_since(self, since: datetime) -> int: ...

    async def prune_metrics(self, before: datetime) -> int:
        """Delete metrics stamped before `before`; returns how many went."""

    async def open_violations(self) -> list[OpenViolation]: ...

    async def open_violation_keys(self) -> list[OpenViolationKey]: ...

    async def open_new_violations(
        self, breaches: Sequence[tuple[Measurement, Severity]], now: datetime
    ) -> int:
        """Open one violation per breach; a (miner or pool, type) that already has an open violation is
        skipped (the database's partial unique index decides, so concurrent collections cannot
        duplicate). Returns how many were opened."""

    async def refresh_violations(
        self, updates: Sequence[tuple[str, Measurement, Severity]], now: datetime
    ) -> None:
        """Set the latest measured value, threshold and severity of these open violations (by id)."""

    async def resolve_violations(self, resolutions: Sequence[tuple[str, datetime, float]]) -> int:
        """Close these violations (id, resolved_at, duration_sec) if still open; returns how many closed."""

    async def violations(
        self, *, miner_id: str | None, resolved: bool, offset: int, limit: int
    ) -> tuple[list[StoredViolation], int]:
        """Open (resolved False) or resolved violations, newest first, with the total count."""


class CapacityRepository(Protocol):
    """Capacity snapshots and the slot sizes of the pool's miners. Never commits."""

    async def add_snapshot(self, values: CapacitySnapshotValues, at: datetime) -> StoredSnapshot: ...

    async def add_snapshots(self, snapshots: Sequence[tuple[datetime, CapacitySnapshotValues]]) -> int:
        """Bulk insert (seeding); returns the count."""

    async def delete_snapshots(self) -> int: ...

    async def snapshots(
        self, *, since: datetime, offset: int, limit: int
    ) -> tuple[list[StoredSnapshot], int]:
        """Snapshots taken at or after `since`, newest first, with the total count."""

    async def latest_snapshot(self) -> StoredSnapshot | None: ...

    async def hourly_utilization(self, since: datetime, until: datetime) -> list[tuple[datetime, float]]:
        """Mean utilisation % per UTC hour of the snapshots in [since, until], oldest first.

        Each item is (start of the hour, mean of its snapshots): aggregated in the database so 90 days of
        snapshots every few minutes cost a couple of thousand rows.
        """

    async def miner_slot_sizes(self) -> list[int]:
        """`max_parallel` of every registered miner."""


# Billing sync and reports ------------------------------------------------------------------------


class RandomSource(Protocol):
    """Randomness the core may not take from the global state, so tests can fix it."""

    def random(self) -> float:
        """A uniform draw in [0, 1)."""
        ...

    def new_id(self) -> str:
        """A fresh unique id (32 lower-case hex characters)."""
        ...


@dataclass(frozen=True, slots=True)
class PendingSelection:
    """Which pending ledger lines a sync looks at: all, one miner's, and/or those whose usage ended since."""

    miner_id: str | None = None
    usage_end_from: datetime | None = None


@dataclass(frozen=True, slots=True)
class RetryMark:
    """A failed delivery attempt: the line stays pending and is due again at `next_attempt_at`."""

    id: int
    next_attempt_at: datetime
    error: str


class BillingLedger(UsageLedger, Protocol):
    """The usage ledger as the billing sync and the reports see it. Never commits."""

    async def get_by_key(self, idempotency_key: str) -> LedgerEntry | None: ...

    async def pending_batch(
        self, *, after_id: int, limit: int, due_at: datetime | None, selection: PendingSelection
    ) -> list[LedgerEntry]:
        """Pending lines with id > after_id, oldest (lowest id) first; with `due_at`, only those whose
        next attempt is due by then (never attempted, or next_attempt_at <= due_at)."""
        ...

    async def mark_synced(self, ids: Sequence[int], now: datetime) -> None:
        """Lines the coordinator accepted: synced (also from rejected, since it now holds them)."""

    async def mark_retry(self, marks: Sequence[RetryMark]) -> None:
        """Count a failed attempt on each pending line and set when it is due again."""

    async def mark_rejected(self, rejections: Sequence[tuple[int, str]], now: datetime) -> None:
        """Pending lines the coordinator refused for good, each with its reason."""

    async def count_pending(self, selection: PendingSelection) -> int: ...

    async def totals(
        self, *, start: datetime, end: datetime, tenant_id: str | None, miner_id: str | None
    ) -> list[StatusTotal]:
        """Exact sums of the lines whose usage ended in [start, end], by tenant, miner, resource type,
        unit, currency and status."""
        ...

    async def list_entries(
        self,
        *,
        status: LedgerStatus | None,
        tenant_id: str | None,
        miner_id: str | None,
        offset: int,
        limit: int,
    ) -> tuple[list[LedgerEntry], int]:
        """A page of lines, newest first, and the total number that match."""
        ...

    async def api_calls_derived_until(self) -> datetime | None:
        """The start of the newest hour for which `api_calls` lines were derived, if any."""
        ...

    async def match_calls(self, start: datetime | None, end: datetime) -> list[TenantHourCalls]:
        """Answered match requests with requested_at in [start, end), counted per tenant and UTC hour."""
        ...
