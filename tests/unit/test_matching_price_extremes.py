"""The cheapest and dearest eligible prices, which large matches read from the rows listed at either end."""

from __future__ import annotations

from decimal import Decimal

import pytest

from poolhub.domain.matching import DEFAULT_WEIGHTS, Hints, IndexedMiner, MatchQuery, MinerIndex, Requirements

NOW = 1_000.0


def miner(i: int, price: str, region: str = "eu") -> IndexedMiner:
    return IndexedMiner(
        miner_id=f"m-{i:05d}",
        addr="10.0.0.1:9000",
        proto="grpc",
        gpu_vram_gb=24.0,
        ram_gb=32.0,
        accel="cuda",
        region=region,
        tags=(),
        capabilities=("x",),
        price=Decimal(price),
        max_parallel=4,
        queue_len=0,
        busy=False,
        lease_expires_at=NOW + 60.0,
        eta_ms=None,
        trust=0.5,
        trust_samples=10.0,
    )


def price_term(index: MinerIndex, miner_id: str, region: str | None = None) -> float:
    query = MatchQuery("job", None, Requirements(), Hints(region=region), top_k=1, explain_miner=miner_id)
    explained = index.match(query, NOW, DEFAULT_WEIGHTS).miner_explanation
    assert explained is not None and explained.eligible
    return float(explained.explain.split("price=")[1].split(" ")[0])


@pytest.fixture
def index() -> MinerIndex:
    index = MinerIndex()
    for i in range(3000):
        index.upsert(miner(i, f"{1 + i % 100}"))
    return index


def test_a_price_moved_to_either_end_after_listing_sets_the_range(index: MinerIndex) -> None:
    assert price_term(index, "m-00049") == pytest.approx(0.51, abs=0.005)
    # Both were priced mid-range when the ends were listed.
    index.update_status("m-00049", price=Decimal("0.5"))
    index.update_status("m-00050", price=Decimal("500"))
    assert price_term(index, "m-00049") == 1.0
    assert price_term(index, "m-00050") == 0.0


def test_a_row_listed_at_an_end_that_moved_inwards_no_longer_sets_the_range(index: MinerIndex) -> None:
    price_term(index, "m-00000")
    for i in range(0, 3000, 100):
        index.update_status(f"m-{i:05d}", price=Decimal("50.5"))
    # The cheapest left cost 2, the dearest 100: 50.5 sits at (100 - 50.5) / 98 of the range.
    assert price_term(index, "m-00000") == pytest.approx(0.51, abs=0.005)


def test_eligible_rows_priced_inside_the_listed_ends_still_get_their_range() -> None:
    index = MinerIndex()
    for i in range(3000):
        us = i % 2 == 0
        index.upsert(miner(i, ("20" if i % 4 else "50") if us else f"{1 + i % 100}", "us" if us else "eu"))
    index.update_status("m-00006", price=Decimal("1"))
    price_term(index, "m-00001")
    # Region "us" holds half the rows, all priced 20 or 50, inside the ends listed over every row; the one
    # listed at the cheap end has moved inwards since.
    index.update_status("m-00006", price=Decimal("30"))
    assert price_term(index, "m-00000", region="us") == 0.0
    assert price_term(index, "m-00002", region="us") == 1.0
