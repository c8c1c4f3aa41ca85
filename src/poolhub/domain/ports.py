"""Ports: what the core needs from the outside world, named by role.

`BillingGateway` (the coordinator's billing API) is defined beside the billing rules and re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from poolhub.domain.billing import BillingGateway, UsageRecord
from poolhub.domain.model import Miner, MinerStatus, Trust

__all__ = [
    "BillingGateway",
    "Clock",
    "FeedbackEntry",
    "FeedbackRepository",
    "MatchRecord",
    "MatchRecordRepository",
    "MinerRepository",
    "PresenceRepository",
    "SessionRepository",
    "TickLock",
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

    async def api_key_hash(self, miner_id: str) -> str | None: ...

    async def save_registration(self, miner: Miner, api_key_hash: str) -> None:
        """Insert or replace the miner's specification and status (trust is kept)."""

    async def save_price(self, miner_id: str, price: Decimal, now: datetime) -> None: ...

    async def save_trust(self, miner_id: str, trust: Trust, now: datetime) -> None: ...

    async def save_statuses(self, statuses: Sequence[tuple[str, MinerStatus]], now: datetime) -> None:
        """Write many statuses in one batched statement; unknown miners are skipped."""

    async def all(self) -> list[Miner]: ...

    async def changed_since(self, since: datetime) -> list[Miner]:
        """Miners whose specification, trust or status was written at or after `since`."""


class SessionRepository(Protocol):
    """Session tokens, stored only as hashes. Never commits."""

    async def create(self, token_hash: str, miner_id: str, now: datetime, expires_at: datetime) -> None: ...

    async def revoke_all(self, miner_id: str, now: datetime) -> list[str]:
        """Revoke every live token of the miner; returns the revoked hashes."""

    async def find_live(self, token_hash: str) -> str | None:
        """The miner id of a token that is not revoked (expiry is judged by the caller)."""

    async def extend(self, expiries: Sequence[tuple[str, datetime]]) -> None:
        """Set the expiry of each miner's live tokens, in one batched statement."""

    async def revoked_since(self, since: datetime) -> list[str]: ...


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
