"""Entities and value objects of the miner directory."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class MinerSpec:
    """What a miner declares at registration: its hardware, price and address."""

    miner_id: str
    addr: str
    proto: str
    gpu_vram_gb: float
    cpu_cores: int
    ram_gb: float
    price_token_per_ksec: Decimal
    max_parallel: int
    gpu_name: str | None = None
    gpu_count: int = 1
    accel: str = "cuda"
    region: str | None = None
    tags: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MinerStatus:
    """What a miner last reported about itself; `last_beat_at` drives its lease."""

    last_beat_at: datetime
    online_since: datetime | None = None
    logged_out_at: datetime | None = None
    queue_len: int = 0
    busy: bool = False
    current_jobs: tuple[str, ...] = ()
    avg_latency_ms: float | None = None
    temp_c: float | None = None
    mem_free_gb: float | None = None
    gpu_utilization_pct: float | None = None

    @property
    def event_at(self) -> datetime:
        """When this status was last changed by its miner; the newer of two statuses wins."""
        if self.logged_out_at is not None and self.logged_out_at > self.last_beat_at:
            return self.logged_out_at
        return self.last_beat_at


@dataclass(frozen=True, slots=True)
class Trust:
    """Beta reputation with forgetting: decayed evidence for and against, as of `as_of`."""

    successes: float = 0.0
    failures: float = 0.0
    as_of: datetime | None = None


@dataclass(frozen=True, slots=True)
class Miner:
    """A registered miner: specification, live status and reputation."""

    spec: MinerSpec
    status: MinerStatus
    registered_at: datetime
    trust: Trust = field(default_factory=Trust)

    @property
    def miner_id(self) -> str:
        return self.spec.miner_id


@dataclass(frozen=True, slots=True)
class LeasePolicy:
    """The lease and session-token rules of the contract, in seconds."""

    heartbeat_grace_sec: int = 120
    session_ttl_sec: int = 60

    @property
    def next_heartbeat_sec(self) -> int:
        return max(1, self.heartbeat_grace_sec // 4)

    def lease_expires_at(self, status: MinerStatus) -> datetime:
        return status.last_beat_at + timedelta(seconds=self.heartbeat_grace_sec)

    def is_online(self, status: MinerStatus, now: datetime) -> bool:
        return status.logged_out_at is None and now < self.lease_expires_at(status)

    def presence_end(self, status: MinerStatus) -> datetime:
        """Where the current online interval ends (or will end if no beat comes)."""
        if status.logged_out_at is not None:
            return status.logged_out_at
        return self.lease_expires_at(status)

    def beat(self, status: MinerStatus | None, now: datetime, **changes: object) -> MinerStatus:
        """Apply a beat: the lease restarts at `now`; a miner that was offline starts a new interval."""
        was_online = status is not None and self.is_online(status, now)
        base = status if status is not None else MinerStatus(last_beat_at=now)
        online_since = base.online_since if was_online and base.online_since is not None else now
        return replace(base, last_beat_at=now, online_since=online_since, logged_out_at=None, **changes)  # type: ignore[arg-type]

    def logout(self, status: MinerStatus, now: datetime) -> MinerStatus:
        return replace(status, logged_out_at=now)

    def token_expires_at(self, status: MinerStatus) -> datetime:
        """Every use of a miner's token is a beat, so its last use is the last beat.

        A token lives `session_ttl_sec` past its last use but never dies while the miner is online,
        hence the later of the two instants.
        """
        ttl = max(self.session_ttl_sec, self.heartbeat_grace_sec)
        return status.last_beat_at + timedelta(seconds=ttl)

    def token_is_valid(self, status: MinerStatus, now: datetime) -> bool:
        return status.logged_out_at is None and now < self.token_expires_at(status)
