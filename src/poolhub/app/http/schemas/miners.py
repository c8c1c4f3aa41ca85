"""Miner requests and answers: registration, heartbeats, leases, the operator's miner list, health."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from poolhub.app.http.schemas.common import (
    NO_CONTROL_PATTERN,
    Base,
    Count,
    Id,
    Items,
    Millis,
    Price,
    Size,
    Temperature,
    Timestamp,
    text,
    utc_representable,
)

TagKey = Annotated[str, text(64, 1)]
TagValue = Annotated[str, text(127)] | int | float | bool
TagObject = Annotated[
    dict[TagKey, TagValue],
    Meta(
        max_length=64,
        description='the AITBC form: {"platform": "CUDA", "cuda": "535.x"}, stored as "key:value" tags',
    ),
]


class MinerRegister(Base, kw_only=True):
    miner_id: Id
    api_key: Annotated[str, text(256, 16)]
    addr: Annotated[
        str,
        text(
            256,
            1,
            description="where the coordinator reaches it: host:port or a URL such as http://host:8101",
        ),
    ]
    proto: Annotated[str, text(32, 1, examples=["grpc", "http"])]
    gpu_vram_gb: Size
    cpu_cores: Annotated[int, Meta(ge=0, le=65_536)]
    ram_gb: Size
    max_parallel: Annotated[int, Meta(ge=1, le=100_000)]
    price_token_per_ksec: Price | None = None
    base_price: Annotated[
        Price | None,
        Meta(description="alias of price_token_per_ksec (AITBC miners); both given must be equal"),
    ] = None
    gpu_name: Annotated[str, text(128)] | None = None
    gpu_count: Annotated[int, Meta(ge=1, le=1_024)] = 1
    accel: (
        Annotated[
            str,
            text(
                32,
                1,
                description='default "cuda"; when absent, a tags object\'s platform (cuda, rocm, metal, cpu)',
            ),
        ]
        | None
    ) = None
    region: Annotated[str, text(64, 1)] | None = None
    tags: Items | TagObject = msgspec.field(default_factory=list)
    capabilities: Items = msgspec.field(default_factory=list)


class MinerRegistered(Base):
    status: Literal["registered"]
    session_token: str
    lease_ttl_sec: int
    next_heartbeat_sec: int
    lease_expires_at: datetime


Utilisation = Annotated[float, Meta(ge=0, le=100, description="GPU utilisation, percent")]
Mebibytes = Annotated[float, Meta(ge=0, le=1_000_000_000, description="MiB")]
# The job ids being run, or (AITBC) their count: the count stands for queue_len when that is absent.
JobsNow = Count | Items


class MinerHeartbeat(Base, kw_only=True):
    """A beat. The AITBC miner's fields (status … network_latency_ms) are read as documented per field."""

    ts: Timestamp | None = msgspec.field(default=None)
    queue_len: Count | None = None
    avg_latency_ms: Millis | None = None
    temp_c: Temperature | None = None
    mem_free_gb: Size | None = None
    current_jobs: JobsNow | None = None
    status: (
        Annotated[
            str,
            Meta(
                max_length=32,
                pattern=NO_CONTROL_PATTERN,
                description="active, idle or online (any case): takes jobs; any other word: busy",
            ),
        ]
        | None
    ) = None
    gpu_utilization: Utilisation | None = None
    memory_total: Annotated[Mebibytes | None, Meta(description="MiB; with memory_used gives mem_free_gb")] = (
        None
    )
    memory_used: Mebibytes | None = None
    network_latency_ms: (
        Annotated[
            float,
            Meta(
                ge=-1_000_000_000,
                le=86_400_000_000,
                description="avg_latency_ms when avg_latency_ms is absent; negative means unknown (ignored)",
            ),
        ]
        | None
    ) = None

    def __post_init__(self) -> None:
        super().__post_init__()
        utc_representable(self.ts, "ts")


class MinerUpdate(Base, kw_only=True):
    queue_len: Count | None = None
    busy: bool | None = None
    current_jobs: JobsNow | None = None
    price_token_per_ksec: Price | None = None


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
    gpu_utilization_pct: float | None
    mem_free_gb: float | None


class Health(Base):
    status: Literal["ok", "degraded"]
    online_miners: int
    avg_latency_ms: float | None
    db: Literal["ok", "error"]


class Probe(Base):
    status: Literal["ok", "unavailable"]
    reason: str | None
