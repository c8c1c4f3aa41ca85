"""The live directory of miners each process keeps in memory: lookups, token cache and the match index.

The database stays the source of truth; the directory is what hot paths (heartbeats, matching, health)
read and write without a round trip. Beats are applied here at once and queued for a batched flush.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

from poolhub.domain.matching import IndexedMiner, MinerIndex
from poolhub.domain.model import LeasePolicy, Miner, MinerStatus, Trust
from poolhub.domain.trust import TrustPolicy


class MinerDirectory:
    """All registered miners, the hashes of their live session tokens, and the vectorised match index."""

    def __init__(self, lease: LeasePolicy, trust: TrustPolicy) -> None:
        self.lease = lease
        self.trust = trust
        self.index = MinerIndex()
        self._miners: dict[str, Miner] = {}
        self._tokens: dict[str, str] = {}
        self._api_keys: dict[str, tuple[str, ...]] = {}
        self._pending: dict[str, MinerStatus] = {}
        self._penalties: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._miners)

    def get(self, miner_id: str) -> Miner | None:
        return self._miners.get(miner_id)

    def miners(self) -> Iterable[Miner]:
        return self._miners.values()

    def put(self, miner: Miner, now: datetime) -> None:
        """Store a miner as written by this process (it is at least as new as anything cached)."""
        if miner.miner_id not in self._miners:
            # Only a new miner can share an API key with a cached one (a miner's key never changes).
            self._api_keys.clear()
        self._miners[miner.miner_id] = miner
        self.index.upsert(self._indexed(miner, now))

    def merge(self, stored: Iterable[Miner], now: datetime) -> None:
        """Fold in rows read from the database, which may be older than what this process already holds.

        Specification comes from the database (it is written synchronously); status and trust keep
        whichever side changed last, so a refresh never undoes a beat that is still waiting to be flushed.
        """
        for row in stored:
            cached = self._miners.get(row.miner_id)
            if cached is None:
                self.put(row, now)
                continue
            status = row.status if row.status.event_at > cached.status.event_at else cached.status
            trust = row.trust if _newer(row.trust, cached.trust) else cached.trust
            merged = replace(row, status=status, trust=trust)
            if merged != cached:
                self.put(merged, now)

    def beat(self, miner_id: str, now: datetime, **changes: object) -> Miner:
        """Apply a beat in memory and queue the new status for the flusher."""
        miner = self._miners[miner_id]
        status = self.lease.beat(miner.status, now, **changes)
        updated = replace(miner, status=status)
        self._miners[miner_id] = updated
        self.index.update_status(
            miner_id,
            queue_len=status.queue_len,
            busy=status.busy,
            lease_expires_at=self._lease_epoch(status),
            eta_ms=status.avg_latency_ms,
        )
        self._pending[miner_id] = status
        return updated

    def update_status(self, miner_id: str, status: MinerStatus) -> None:
        """A status change that is not a beat (the lease is untouched); queued for the flusher too."""
        miner = self._miners[miner_id]
        self._miners[miner_id] = replace(miner, status=status)
        self.index.update_status(miner_id, eta_ms=status.avg_latency_ms)
        self._pending[miner_id] = status

    def take_pending(self) -> list[tuple[str, MinerStatus]]:
        """Hand the latest unsaved status of each miner to the flusher; `requeue` gives them back."""
        pending = list(self._pending.items())
        self._pending = {}
        return pending

    def requeue(self, beats: Iterable[tuple[str, MinerStatus]]) -> None:
        for miner_id, status in beats:
            newer = self._pending.get(miner_id)
            if newer is None or newer.event_at < status.event_at:
                self._pending[miner_id] = status

    def pending_count(self) -> int:
        return len(self._pending)

    def drop_pending(self, miner_id: str) -> None:
        self._pending.pop(miner_id, None)

    def is_online(self, miner: Miner, now: datetime) -> bool:
        return self.lease.is_online(miner.status, now)

    def online_count(self, now: datetime) -> int:
        return self.index.online_count(now.timestamp())

    def avg_latency_ms(self, now: datetime) -> float | None:
        return self.index.avg_eta_ms(now.timestamp())

    # Session tokens -----------------------------------------------------------------------------

    def remember_token(self, token_hash: str, miner_id: str) -> None:
        self._tokens[token_hash] = miner_id

    def forget_tokens(self, token_hashes: Iterable[str]) -> None:
        for token_hash in token_hashes:
            self._tokens.pop(token_hash, None)

    def miner_for_token(self, token_hash: str) -> str | None:
        return self._tokens.get(token_hash)

    # API keys (beats of miners that keep no session) --------------------------------------------

    def remember_api_key(self, key_hash: str, miner_ids: tuple[str, ...]) -> None:
        self._api_keys[key_hash] = miner_ids

    def miners_for_api_key(self, key_hash: str) -> tuple[str, ...] | None:
        """The miners registered with this key hash as last looked up, or None when not cached."""
        return self._api_keys.get(key_hash)

    # Trust and penalties ------------------------------------------------------------------------

    def set_trust(self, miner_id: str, trust: Trust, now: datetime) -> None:
        miner = self._miners[miner_id]
        self._miners[miner_id] = replace(miner, trust=trust)
        self.index.update_trust(miner_id, self.trust.score(trust, now), self.trust.samples(trust, now))

    def refresh_trust(self, now: datetime) -> None:
        """Re-age every miner's trust: with no new evidence it drifts back toward the prior."""
        for miner in self._miners.values():
            self.index.update_trust(
                miner.miner_id, self.trust.score(miner.trust, now), self.trust.samples(miner.trust, now)
            )

    def set_penalties(self, penalties: dict[str, float]) -> None:
        """Replace the SLA penalty factors (1.0 for every miner not named)."""
        for miner_id in self._penalties.keys() - penalties.keys():
            self.index.set_penalty(miner_id, 1.0)
        for miner_id, factor in penalties.items():
            self.index.set_penalty(miner_id, factor)
        self._penalties = dict(penalties)

    def penalty_of(self, miner_id: str) -> float:
        """The SLA penalty factor applied to the miner's match score (1.0 without open violations)."""
        return self._penalties.get(miner_id, 1.0)

    # Mapping to the index -----------------------------------------------------------------------

    def _lease_epoch(self, status: MinerStatus) -> float:
        if status.logged_out_at is not None:
            return float("-inf")
        return self.lease.lease_expires_at(status).timestamp()

    def _indexed(self, miner: Miner, now: datetime) -> IndexedMiner:
        spec = miner.spec
        return IndexedMiner(
            miner_id=spec.miner_id,
            addr=spec.addr,
            proto=spec.proto,
            gpu_vram_gb=spec.gpu_vram_gb,
            ram_gb=spec.ram_gb,
            accel=spec.accel,
            region=spec.region,
            tags=spec.tags,
            capabilities=spec.capabilities,
            price=spec.price_token_per_ksec,
            max_parallel=spec.max_parallel,
            queue_len=miner.status.queue_len,
            busy=miner.status.busy,
            lease_expires_at=self._lease_epoch(miner.status),
            eta_ms=miner.status.avg_latency_ms,
            trust=self.trust.score(miner.trust, now),
            trust_samples=self.trust.samples(miner.trust, now),
            sla_penalty=self._penalties.get(spec.miner_id, 1.0),
        )


def _newer(candidate: Trust, current: Trust) -> bool:
    if candidate.as_of is None:
        return False
    return current.as_of is None or candidate.as_of > current.as_of
