"""Miner request bodies to domain values, including the forms the AITBC network's miner sends.

The AITBC miner (oib/AITBC `apps/miner/production_miner.py`) registers with `base_price`, a tags object
and a URL address, keeps no session token, and beats with its own status fields; these functions read
those forms as the contract's (API.md, "Miners from the AITBC network").
"""

from __future__ import annotations

from decimal import Decimal

from litestar.exceptions import ValidationException

from poolhub.app.http.schemas.miners import MinerHeartbeat, MinerRegister, MinerUpdate
from poolhub.domain.model import MinerSpec
from poolhub.domain.use_cases.miner_session import Beat, StatusUpdate

DEFAULT_ACCEL = "cuda"
# A tags object's `platform` names the accelerator only when it is one of these (lower-cased).
KNOWN_ACCELERATORS = frozenset({"cuda", "rocm", "metal", "cpu"})
# Status words under which an AITBC miner takes jobs; any other word means it is busy.
READY_STATUSES = frozenset({"active", "idle", "online"})
MAX_TAG_CHARS = 128
MIB_PER_GB = 1024


def _invalid(field: str, message: str) -> ValidationException:
    return ValidationException(detail=message, extra=[{"key": field, "message": message, "source": "body"}])


def _price(body: MinerRegister) -> Decimal:
    price, alias = body.price_token_per_ksec, body.base_price
    if price is not None and alias is not None and price != alias:
        raise _invalid(
            "base_price",
            f"base_price ({alias}) and price_token_per_ksec ({price}) differ: send one of them",
        )
    chosen = price if price is not None else alias
    if chosen is None:
        raise _invalid("price_token_per_ksec", "price_token_per_ksec (or its alias base_price) is required")
    return chosen


def _tag_text(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _tags(tags: list[str] | dict[str, str | int | float | bool]) -> tuple[tuple[str, ...], str | None]:
    """The stored tags, and the platform a tags object names (lower-cased), if any."""
    if isinstance(tags, list):
        return tuple(tags), None
    stored: list[str] = []
    for key, value in tags.items():
        tag = f"{key}:{_tag_text(value)}"
        if len(tag) > MAX_TAG_CHARS:
            raise _invalid("tags", f"tag {key!r} is longer than {MAX_TAG_CHARS} characters as key:value")
        stored.append(tag)
    platform = tags.get("platform")
    return tuple(stored), _tag_text(platform).strip().lower() if platform is not None else None


def registration_spec(body: MinerRegister) -> MinerSpec:
    tags, platform = _tags(body.tags)
    accel = body.accel
    if accel is None:
        accel = platform if platform in KNOWN_ACCELERATORS else DEFAULT_ACCEL
    return MinerSpec(
        miner_id=body.miner_id,
        addr=body.addr,
        proto=body.proto,
        gpu_name=body.gpu_name,
        gpu_vram_gb=body.gpu_vram_gb,
        gpu_count=body.gpu_count,
        cpu_cores=body.cpu_cores,
        ram_gb=body.ram_gb,
        accel=accel,
        price_token_per_ksec=_price(body),
        max_parallel=body.max_parallel,
        region=body.region,
        tags=tags,
        capabilities=tuple(body.capabilities),
    )


def _jobs(
    current_jobs: int | list[str] | None, queue_len: int | None
) -> tuple[int | None, tuple[str, ...] | None]:
    """(queue_len, job ids): an integer count stands for queue_len unless queue_len is given."""
    if isinstance(current_jobs, int):
        return (queue_len if queue_len is not None else current_jobs), None
    return queue_len, tuple(current_jobs) if current_jobs is not None else None


def _mem_free_gb(body: MinerHeartbeat) -> float | None:
    if body.mem_free_gb is not None:
        return body.mem_free_gb
    total, used = body.memory_total, body.memory_used
    if total is None or total <= 0:
        return None
    return max(total - (used or 0.0), 0.0) / MIB_PER_GB


def _latency(body: MinerHeartbeat) -> float | None:
    if body.avg_latency_ms is not None:
        return body.avg_latency_ms
    measured = body.network_latency_ms
    # The AITBC miner sends -1.0 when it could not measure: unknown, so the last value stays.
    return measured if measured is not None and measured >= 0 else None


def heartbeat_beat(body: MinerHeartbeat) -> Beat:
    queue_len, job_ids = _jobs(body.current_jobs, body.queue_len)
    return Beat(
        queue_len=queue_len,
        avg_latency_ms=_latency(body),
        temp_c=body.temp_c,
        mem_free_gb=_mem_free_gb(body),
        busy=body.status.strip().lower() not in READY_STATUSES if body.status is not None else None,
        current_jobs=job_ids,
        gpu_utilization_pct=body.gpu_utilization,
    )


def status_update(body: MinerUpdate) -> StatusUpdate:
    queue_len, job_ids = _jobs(body.current_jobs, body.queue_len)
    return StatusUpdate(
        queue_len=queue_len,
        busy=body.busy,
        current_jobs=job_ids,
        price_token_per_ksec=body.price_token_per_ksec,
    )
