"""The console's read models over the in-memory directory: search, filters, sorting and the pool overview."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from poolhub.adapters.live import LiveDirectory
from poolhub.domain.model import LeasePolicy, Miner, MinerSpec, MinerStatus
from poolhub.domain.ports import OpenViolationKey
from poolhub.domain.trust import TrustPolicy
from poolhub.domain.use_cases.console_queries import MinerSearch, MinerSort, OverviewPool, SearchMiners
from tests.fakes import FixedClock


class OpenViolations:
    """Just the one read the console needs from the SLA repository."""

    def __init__(self, *keys: OpenViolationKey) -> None:
        self.keys = list(keys)

    async def open_violation_keys(self) -> list[OpenViolationKey]:
        return self.keys


def add(directory: LiveDirectory, clock: FixedClock, miner_id: str, **status: object) -> None:
    region = status.pop("region", "eu")
    slots = status.pop("slots", 4)
    beat_ago = status.pop("beat_ago", timedelta(seconds=5))
    spec = MinerSpec(
        miner_id=miner_id,
        addr="10.0.0.1:9000",
        proto="grpc",
        gpu_vram_gb=24,
        cpu_cores=8,
        ram_gb=64,
        price_token_per_ksec=Decimal("0.5"),
        max_parallel=slots,  # type: ignore[arg-type]
        region=region,  # type: ignore[arg-type]
        gpu_name="RTX 4090",
    )
    now = clock.now()
    beat = MinerStatus(last_beat_at=now - beat_ago)  # type: ignore[operator]
    directory.put(Miner(spec=spec, status=replace(beat, **status), registered_at=now), now)


def pool() -> tuple[LiveDirectory, FixedClock]:
    clock = FixedClock()
    directory = LiveDirectory(LeasePolicy(120, 60), TrustPolicy(), clock)
    add(directory, clock, "m-idle", queue_len=0)
    add(directory, clock, "m-half", queue_len=2, region="us")
    add(directory, clock, "m-busy", busy=True, region="us", slots=2)
    add(directory, clock, "m-gone", beat_ago=timedelta(minutes=10), queue_len=4)
    return directory, clock


async def test_search_filters_and_sorts_by_load_with_a_busy_miner_counted_full() -> None:
    directory, clock = pool()
    violations = OpenViolations(
        OpenViolationKey("m-half", "uptime_pct", "low"), OpenViolationKey(None, "capacity_forecast", "high")
    )
    search = SearchMiners(directory, violations, clock)  # type: ignore[arg-type]

    by_load = await search.execute(MinerSearch(sort=MinerSort.LOAD, descending=True))
    assert [(r.view.miner.miner_id, r.load) for r in by_load.items] == [
        ("m-busy", 1.0),
        ("m-gone", 1.0),
        ("m-half", 0.5),
        ("m-idle", 0.0),
    ]
    online_us = await search.execute(MinerSearch(online=True, region="us"))
    assert [r.view.miner.miner_id for r in online_us.items] == ["m-busy", "m-half"]
    flagged = await search.execute(MinerSearch(has_violation=True))
    assert [(r.view.miner.miner_id, r.open_violations) for r in flagged.items] == [("m-half", 1)]
    assert (await search.execute(MinerSearch(search="GONE"))).total == 1
    assert by_load.regions == ("eu", "us")


async def test_the_overview_counts_slots_of_online_miners_only() -> None:
    directory, clock = pool()
    violations = OpenViolations(OpenViolationKey("m-half", "uptime_pct", "critical"))
    overview = await OverviewPool(directory, violations, clock).execute()  # type: ignore[arg-type]
    assert (overview.registered, overview.online) == (4, 3)
    assert (overview.total_slots, overview.used_slots) == (10, 4)  # 0 + 2 + 2 (busy: all its slots)
    assert overview.sla_status == "critical"
    assert overview.open_violations == {("uptime_pct", "critical"): 1}
