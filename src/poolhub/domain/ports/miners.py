"""Miners and their sessions: the durable directory, session tokens, presence and authentication lookups."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from poolhub.domain.model import Miner, MinerStatus, Trust


class MinerRepository(Protocol):
    """Durable miners: specification, status and trust. Never commits."""

    async def get(self, miner_id: str) -> Miner | None: ...

    async def get_for_update(self, miner_id: str) -> Miner | None:
        """Like `get`, locking the miner's row until commit (trust updates read-modify-write it)."""

    async def get_many(self, miner_ids: Sequence[str]) -> dict[str, Miner]: ...

    async def rehash_api_keys(self, rehashes: Sequence[tuple[str, str, str]]) -> None:
        """For each (miner_id, stored hash, new hash): store the new hash where the stored one is still
        there (a key hashed under the previous secret, stored again under the current one)."""

    async def save_price(self, miner_id: str, price: Decimal, now: datetime) -> None: ...

    async def save_trust(self, miner_id: str, trust: Trust, now: datetime) -> None: ...

    async def save_statuses(self, statuses: Sequence[tuple[str, MinerStatus]], now: datetime) -> None:
        """Write many statuses in one batched statement; unknown miners are skipped."""

    async def all(self) -> list[Miner]: ...


@dataclass(frozen=True, slots=True)
class MinerRegistration:
    """An accepted registration to store: the miner, the hash of its API key, its new session token
    (hash and expiry) and the presence interval its lease opens or extends."""

    miner: Miner
    api_key_hash: str
    token_hash: str
    token_expires_at: datetime
    online_since: datetime
    presence_end: datetime


class RegistrationStore(Protocol):
    """Stores a batch of registrations in the caller's transaction. Never commits."""

    async def key_hashes(self, miner_ids: Sequence[str]) -> dict[str, str]:
        """The stored API-key hash of each of these miners that is registered: a batch's first read."""

    async def save(
        self, registrations: Sequence[MinerRegistration], now: datetime
    ) -> tuple[set[str], list[str]]:
        """Insert each miner, or replace its specification, status and trust when the stored API-key
        hash is the one given. For each miner written: revoke its earlier session tokens, store the new
        one and its presence interval. Returns the ids written (a miner another key owns is absent)
        and the hashes of the tokens revoked."""


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


class TokenLookup(Protocol):
    """Read-only lookups for authentication, each in its own short transaction (callers hold no session)."""

    async def miner_of_live_token(self, token_hash: str) -> str | None:
        """The miner id of a token that is not revoked (expiry is judged by the caller)."""

    async def miners_with_api_key(self, key_hash: str) -> list[str]:
        """The ids of the miners registered with this API-key hash (at most two: enough to see a clash)."""

    async def miner(self, miner_id: str) -> Miner | None: ...


class PresenceRepository(Protocol):
    """Online intervals of each miner (the uptime SLA reads them). Never commits."""

    async def record(self, intervals: Sequence[tuple[str, datetime, datetime]]) -> None:
        """Upsert (miner_id, started_at, ended_at): the interval begun at started_at ends at ended_at."""
