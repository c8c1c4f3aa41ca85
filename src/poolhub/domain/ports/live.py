"""The live state of one process: the in-memory directory, its write-behind queues and the change feed.

Hot paths (heartbeats, matching, token checks) read and write it without a database round trip; the
adapter that owns it saves queued beats and match records in the background and applies what other
processes committed. Use cases talk to this port; the rules they apply (lease, matching, trust) stay
in the domain.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from poolhub.domain.matching import MinerIndex
from poolhub.domain.model import LeasePolicy, Miner, MinerStatus, Trust
from poolhub.domain.ports.matching import MatchRecord
from poolhub.domain.trust import TrustPolicy


class ChangeKind(StrEnum):
    """What a committed change did; other processes reload the miner (or the penalties) it names."""

    REGISTERED = "registered"
    SPEC = "spec"
    LOGOUT = "logout"
    REVOKED = "revoked"
    TRUST = "trust"
    PENALTIES = "penalties"
    # The miners behind an API-key hash changed (a new miner, or its key re-hashed under the current
    # POOLHUB_SECRET_KEY): cached keys and remembered misses are forgotten.
    API_KEY = "api_key"
    # A beat with the API key brought a logged-out miner back (the key outlives the logout).
    RETURNED = "returned"


class ChangeLog(Protocol):
    """Announces a change to every other process, in the caller's transaction. Never commits."""

    async def record(self, kind: ChangeKind, miner_ids: Sequence[str | None], now: datetime) -> None: ...


class LiveState(Protocol):
    """The process's live directory: miners, live token hashes, the match index and the write-behind."""

    lease: LeasePolicy
    trust: TrustPolicy
    index: MinerIndex

    def __len__(self) -> int: ...

    def get(self, miner_id: str) -> Miner | None: ...

    def miners(self) -> Iterable[Miner]: ...

    def put(self, miner: Miner, now: datetime) -> None:
        """Store a miner as this process just committed it (its pending beat, if any, is dropped)."""

    def adopt(self, stored: Iterable[Miner], now: datetime) -> None:
        """Fold in miners read from the database without undoing this process's unsaved beats."""

    def beat(self, miner_id: str, now: datetime, **changes: object) -> Miner:
        """Apply a beat in memory and queue it for the write-behind."""

    def update_status(self, miner_id: str, status: MinerStatus) -> None: ...

    async def bring_back(self, miner_id: str, status: MinerStatus, now: datetime) -> None:
        """Save a logged-out miner's new online status and announce it (one transaction), then hold it."""

    def is_online(self, miner: Miner, now: datetime) -> bool: ...

    def online_count(self, now: datetime) -> int: ...

    def avg_latency_ms(self, now: datetime) -> float | None: ...

    def remember_token(self, token_hash: str, miner_id: str) -> None: ...

    def forget_tokens(self, token_hashes: Iterable[str]) -> None: ...

    def miner_for_token(self, token_hash: str) -> str | None: ...

    def remember_api_key(self, key_hash: str, miner_ids: tuple[str, ...]) -> None:
        """Cache the miners registered with this API-key hash, as just looked up."""

    def miners_for_api_key(self, key_hash: str) -> tuple[str, ...] | None:
        """The miners registered with this key hash as last looked up, or None when not cached."""

    def api_keys_changed(self) -> None:
        """Forget cached API keys and remembered misses: some key now belongs to other miners."""

    def is_unknown_token(self, token_hash: str, now: datetime) -> bool:
        """The database did not know this token (or key) a short while ago."""

    def remember_unknown_token(self, token_hash: str, now: datetime) -> None: ...

    def set_trust(self, miner_id: str, trust: Trust, now: datetime) -> None: ...

    def set_penalties(self, penalties: dict[str, float]) -> None: ...

    def penalty_of(self, miner_id: str) -> float: ...

    def record_match(self, record: MatchRecord) -> None:
        """Queue an answered match for the audit log, remembering its job's tenant."""

    def knows_job(self, job_id: str) -> bool: ...

    def tenant_of_job(self, job_id: str) -> str | None: ...

    async def await_saved_matches(self) -> None:
        """Return once every process has saved the match records it answered before now (bounded)."""

    async def flush(self) -> None:
        """Save every pending beat and match record now (a read that must see acknowledged writes)."""

    def pending_beats(self) -> int: ...

    def pending_match_records(self) -> int: ...
