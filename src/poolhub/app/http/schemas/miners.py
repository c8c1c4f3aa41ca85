"""Miner requests and answers: registration, heartbeats, leases, the operator's miner list, health."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from poolhub.app.http.schemas.common import (
    Base,
    Count,
    DecimalText,
    Id,
    Items,
    Millis,
    Size,
    Temperature,
    Timestamp,
    text,
    utc_representable,
)


class MinerRegister(Base, kw_only=True):
    miner_id: Id
    api_key: Annotated[str, text(256, 16)]
    addr: Annotated[str, text(256, 1, description="where the coordinator reaches it")]
    proto: Annotated[str, text(32, 1, examples=["grpc", "http"])]
    gpu_vram_gb: Size
    cpu_cores: Annotated[int, Meta(ge=0, le=65_536)]
    ram_gb: Size
    price_token_per_ksec: DecimalText
    max_parallel: Annotated[int, Meta(ge=1, le=100_000)]
    gpu_name: Annotated[str, text(128)] | None = None
    gpu_count: Annotated[int, Meta(ge=1, le=1_024)] = 1
    accel: Annotated[str, text(32, 1)] = "cuda"
    region: Annotated[str, text(64, 1)] | None = None
    tags: Items = msgspec.field(default_factory=list)
    capabilities: Items = msgspec.field(default_factory=list)


class MinerRegistered(Base):
    status: Literal["registered"]
    session_token: str
    lease_ttl_sec: int
    next_heartbeat_sec: int
    lease_expires_at: datetime


class MinerHeartbeat(Base, kw_only=True):
    ts: Timestamp | None = msgspec.field(default=None)
    queue_len: Count | None = None
    avg_latency_ms: Millis | None = None
    temp_c: Temperature | None = None
    mem_free_gb: Size | None = None

    def __post_init__(self) -> None:
        utc_representable(self.ts, "ts")


class MinerUpdate(Base, kw_only=True):
    queue_len: Count | None = None
    busy: bool | None = None
    current_jobs: Items | None = None
    price_token_per_ksec: DecimalText | None = None


class LeaseAck(Base):
    status: Literal["ok"]
    lease_expires_at: datetime


class LeaseRenewed(Base):
    session_token: str
    lease_expires_at: datetime


class LoggedOut(Base):
    status: Literal["offline"]


class WsAck(Base):
    type: Literal["ack"]
    lease_expires_at: datetime


class MinerRead(Base):
    miner_id: str
    online: bool
    lease_expires_at: datetime
    queue_len: int
    max_parallel: int
    trust_score: float
    trust_samples: float
    region: str | None
    gpu_name: str | None
    gpu_vram_gb: float
    gpu_count: int
    ram_gb: float
    accel: str
    price_token_per_ksec: str
    tags: list[str]
    capabilities: list[str]
    addr: str
    proto: str
    registered_at: datetime
    last_beat_at: datetime
    busy: bool
    cpu_cores: int
    avg_latency_ms: float | None


class Health(Base):
    status: Literal["ok", "degraded"]
    online_miners: int
    avg_latency_ms: float | None
    db: Literal["ok", "error"]


class Probe(Base):
    status: Literal["ok", "unavailable"]
    reason: str | None
