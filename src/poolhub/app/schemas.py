"""Request and response shapes (msgspec); shape rules live here, business rules in the domain."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, TypeVar

import msgspec
from litestar import Response
from msgspec import Meta

T = TypeVar("T")

Id = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="1-64 characters of [A-Za-z0-9._:-]",
    ),
]
DecimalText = Annotated[
    str,
    Meta(
        max_length=32,
        pattern=r"^[0-9]{1,15}(\.[0-9]{1,12})?$",
        description='a non-negative decimal number as a string, e.g. "0.75"',
        examples=["0.75"],
    ),
]
Item = Annotated[str, Meta(min_length=1, max_length=128)]
Items = Annotated[list[Item], Meta(max_length=64, description="at most 64 items of at most 128 characters")]
Count = Annotated[int, Meta(ge=0, le=1_000_000)]
Size = Annotated[float, Meta(ge=0, le=1_000_000_000)]
Millis = Annotated[float, Meta(ge=0, le=86_400_000_000)]
Temperature = Annotated[float, Meta(ge=-273.15, le=1_000)]


class Base(msgspec.Struct, forbid_unknown_fields=False, omit_defaults=False):
    pass


class Problem(Base, kw_only=True):
    """Every error answer (Litestar's shape): `detail` says what is wrong, `extra` names the fields."""

    status_code: int
    detail: str
    extra: list[dict[str, str]] | dict[str, str] | None = None


class MinerRegister(Base, kw_only=True):
    miner_id: Id
    api_key: Annotated[str, Meta(min_length=16, max_length=256)]
    addr: Annotated[str, Meta(min_length=1, max_length=256, description="where the coordinator reaches it")]
    proto: Annotated[str, Meta(min_length=1, max_length=32, examples=["grpc", "http"])]
    gpu_vram_gb: Size
    cpu_cores: Annotated[int, Meta(ge=0, le=65_536)]
    ram_gb: Size
    price_token_per_ksec: DecimalText
    max_parallel: Annotated[int, Meta(ge=1, le=100_000)]
    gpu_name: Annotated[str, Meta(max_length=128)] | None = None
    gpu_count: Annotated[int, Meta(ge=1, le=1_024)] = 1
    accel: Annotated[str, Meta(min_length=1, max_length=32)] = "cuda"
    region: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    tags: Items = msgspec.field(default_factory=list)
    capabilities: Items = msgspec.field(default_factory=list)


class MinerRegistered(Base):
    status: Literal["registered"]
    session_token: str
    lease_ttl_sec: int
    next_heartbeat_sec: int
    lease_expires_at: datetime


class MinerHeartbeat(Base, kw_only=True):
    ts: datetime | None = msgspec.field(default=None)
    queue_len: Count | None = None
    avg_latency_ms: Millis | None = None
    temp_c: Temperature | None = None
    mem_free_gb: Size | None = None


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


def page_response(items: list[T], total: int) -> Response[list[T]]:
    """A page of a list: the items as a JSON array, the total before paging in `X-Total-Count`."""
    return Response(items, headers={"X-Total-Count": str(total)})
