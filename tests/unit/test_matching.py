"""Behaviour of the matcher and its in-memory miner index."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from poolhub.domain.matching import (
    DEFAULT_WEIGHTS,
    REJECTION_REASONS,
    ExplorationPolicy,
    Hints,
    IndexedMiner,
    MatchQuery,
    MatchResult,
    MinerIndex,
    Requirements,
    Weights,
    failed_constraints,
)
from poolhub.domain.matching.arrays import round6

NOW = 1_000.0
NO_EXPLORATION = ExplorationPolicy(share=0.0)


def miner(miner_id: str, **changes: Any) -> IndexedMiner:
    base = IndexedMiner(
        miner_id=miner_id,
        addr=f"10.0.0.1:{9000 + len(miner_id)}",
        proto="grpc",
        gpu_vram_gb=24.0,
        ram_gb=64.0,
        accel="cuda",
        region="eu",
        tags=("eu-west",),
        capabilities=("embed",),
        price=Decimal("0.50"),
        max_parallel=4,
        queue_len=0,
        busy=False,
        lease_expires_at=NOW + 60.0,
        eta_ms=100.0,
        trust=0.5,
        trust_samples=10.0,
    )
    return replace(base, **changes)


def index_of(*miners: IndexedMiner) -> MinerIndex:
    index = MinerIndex()
    for m in miners:
        index.upsert(m)
    return index


def query(top_k: int = 1, explain_miner: str | None = None, **constraints: Any) -> MatchQuery:
    hint_names = {"region", "max_price", "deadline_ms"}
    hints = Hints(**{k: v for k, v in constraints.items() if k in hint_names})
    requirements = Requirements(**{k: v for k, v in constraints.items() if k not in hint_names})
    return MatchQuery("job-1", "acme", requirements, hints, top_k=top_k, explain_miner=explain_miner)


def match(
    index: MinerIndex,
    q: MatchQuery,
    weights: Weights = DEFAULT_WEIGHTS,
    exploration: ExplorationPolicy = NO_EXPLORATION,
) -> MatchResult:
    return index.match(q, NOW, weights, exploration)


def ids(result: MatchResult) -> list[str]:
    return [c.miner_id for c in result.candidates]


def nonzero(result: MatchResult) -> dict[str, int]:
    return {reason: count for reason, count in result.rejections.items() if count}


# ---- weights -----------------------------------------------------------------------------------------------


def test_default_weights_parse_from_their_text() -> None:
    assert Weights.parse("cap:0.40,price:0.20,latency:0.20,trust:0.15,load:0.05") == DEFAULT_WEIGHTS


def test_weights_parse_ignores_spaces_and_key_order() -> None:
    parsed = Weights.parse(" load: 0.05 , trust:0.15,latency :0.2,price:0.2, cap:0.4 ")
    assert parsed == DEFAULT_WEIGHTS


def test_weights_may_miss_a_sum_of_one_by_a_millionth() -> None:
    assert Weights.parse("cap:0.4000005,price:0.2,latency:0.2,trust:0.15,load:0.05").cap == 0.4000005


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("cap:0.4,price:0.2,latency:0.2,trust:0.2", "missing weight(s): load"),
        ("cap:0.4,price:0.2", "missing weight(s): latency, trust, load"),
        ("cap:0.4,cap:0.4,price:0.2,latency:0.2,trust:0.15,load:0.05", "'cap' is given twice"),
        ("speed:1", "unknown weight 'speed'"),
        ("cap=0.4,price:0.2,latency:0.2,trust:0.15,load:0.05", "not of the form name:value"),
        ("cap:,price:0.2,latency:0.2,trust:0.15,load:0.05", "not of the form name:value"),
        ("cap:0.4,,price:0.2,latency:0.2,trust:0.15,load:0.05", "not of the form name:value"),
        ("cap:abc,price:0.2,latency:0.2,trust:0.15,load:0.05", "cap='abc' is not a number"),
        ("cap:-0.1,price:0.5,latency:0.4,trust:0.15,load:0.05", "cap=-0.1 must be a finite number >= 0"),
        ("cap:nan,price:0.2,latency:0.2,trust:0.15,load:0.05", "cap=nan must be a finite number"),
        ("cap:inf,price:0.2,latency:0.2,trust:0.15,load:0.05", "cap=inf must be a finite number"),
        ("cap:0.5,price:0.2,latency:0.2,trust:0.15,load:0.05", "must sum to 1"),
        ("cap:0.3,price:0.2,latency:0.2,trust:0.15,load:0.05", "got 0.9"),
    ],
)
def test_weights_parse_names_the_problem(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="weight") as raised:
        Weights.parse(text)
    assert message in str(raised.value)


def test_weights_built_directly_are_checked_too() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        Weights(0.5, 0.5, 0.5, 0.0, 0.0)


# ---- hard filters ------------------------------------------------------------------------------------------


def test_a_miner_whose_lease_has_lapsed_is_offline() -> None:
    index = index_of(miner("m-1", lease_expires_at=NOW), miner("m-2", lease_expires_at=NOW + 0.001))
    result = match(index, query(top_k=5))
    assert ids(result) == ["m-2"]
    assert nonzero(result) == {"offline": 1}


def test_a_logged_out_miner_is_offline() -> None:
    index = index_of(miner("m-1", lease_expires_at=float("-inf")))
    assert nonzero(match(index, query())) == {"offline": 1}


def test_leases_lapse_renew_and_end_between_matches_as_time_moves_either_way() -> None:
    index = index_of(
        miner("m-1", lease_expires_at=NOW + 10),
        miner("m-2", lease_expires_at=NOW + 20),
        miner("m-3", lease_expires_at=NOW - 5),
    )

    def online_at(now: float) -> list[str]:
        result = index.match(query(top_k=5), now, DEFAULT_WEIGHTS, NO_EXPLORATION)
        assert result.rejections["offline"] == 3 - len(result.candidates)
        return sorted(ids(result))

    assert online_at(NOW) == ["m-1", "m-2"]
    assert online_at(NOW + 10) == ["m-2"]  # m-1's lease ends exactly now
    index.update_status("m-1", lease_expires_at=NOW + 30)  # a late heartbeat brings it back
    index.update_status("m-3", lease_expires_at=NOW + 25)
    assert online_at(NOW + 15) == ["m-1", "m-2", "m-3"]
    assert online_at(NOW + 22) == ["m-1", "m-3"]
    index.remove("m-1")
    index.upsert(miner("m-4", lease_expires_at=NOW + 23))
    assert online_at(NOW + 22.5) == ["m-3", "m-4"]
    index.update_status("m-3", lease_expires_at=NOW)  # a logout
    assert online_at(NOW + 22.5) == ["m-4"]
    assert online_at(NOW + 23) == []
    # A clock that steps back sees the leases as they are at that earlier time.
    assert online_at(NOW + 1) == ["m-2", "m-4"]


def test_an_offline_miner_is_counted_as_offline_only() -> None:
    index = index_of(miner("m-1", lease_expires_at=NOW - 1, gpu_vram_gb=4.0, busy=True, region="us"))
    result = match(index, query(min_vram_gb=8, region="eu"))
    assert nonzero(result) == {"offline": 1}
    assert result.considered == 1
    assert result.eligible == 0


def test_a_busy_miner_is_full() -> None:
    index = index_of(miner("m-1", busy=True), miner("m-2"))
    result = match(index, query(top_k=5))
    assert ids(result) == ["m-2"]
    assert nonzero(result) == {"full": 1}


def test_a_miner_with_no_free_slot_is_full() -> None:
    index = index_of(miner("m-1", queue_len=4), miner("m-2", queue_len=5), miner("m-3", queue_len=3))
    result = match(index, query(top_k=5))
    assert ids(result) == ["m-3"]
    assert nonzero(result) == {"full": 2}


@pytest.mark.parametrize(
    ("field", "constraint", "value"),
    [("gpu_vram_gb", "min_vram_gb", 16.0), ("ram_gb", "min_ram_gb", 32.0)],
)
def test_memory_below_the_minimum_is_rejected_and_equal_passes(
    field: str, constraint: str, value: float
) -> None:
    index = index_of(
        *(miner(name, **{field: value + delta}) for name, delta in [("below", -0.5), ("equal", 0)])
    )
    index.upsert(miner("above", **{field: value * 2}))
    minimum: dict[str, Any] = {constraint: value}
    result = match(index, query(top_k=5, **minimum))
    assert sorted(ids(result)) == ["above", "equal"]
    assert nonzero(result) == {constraint.removeprefix("min_").removesuffix("_gb"): 1}


def test_accel_outside_the_list_is_rejected() -> None:
    index = index_of(miner("m-cuda"), miner("m-rocm", accel="rocm"), miner("m-metal", accel="metal"))
    result = match(index, query(top_k=5, accel=("cuda", "rocm", "tpu")))
    assert sorted(ids(result)) == ["m-cuda", "m-rocm"]
    assert nonzero(result) == {"accel": 1}


def test_an_accel_no_miner_has_rejects_everyone() -> None:
    index = index_of(miner("m-1"), miner("m-2"))
    assert nonzero(match(index, query(accel=("tpu",)))) == {"accel": 2}


def test_a_miner_with_none_of_the_tags_is_rejected() -> None:
    index = index_of(
        miner("m-1", tags=("eu-west", "spot")), miner("m-2", tags=("us-east",)), miner("m-3", tags=())
    )
    result = match(index, query(top_k=5, tags_any=("spot", "nvlink")))
    assert ids(result) == ["m-1"]
    assert nonzero(result) == {"tags": 2}


def test_a_miner_with_none_of_the_capabilities_is_rejected() -> None:
    index = index_of(miner("m-1", capabilities=("a", "b")), miner("m-2", capabilities=("c",)))
    result = match(index, query(top_k=5, capabilities_any=("b", "z")))
    assert ids(result) == ["m-1"]
    assert nonzero(result) == {"capabilities": 1}


def test_a_miner_in_another_region_or_none_fails_a_region_hint() -> None:
    index = index_of(miner("m-eu"), miner("m-us", region="us"), miner("m-none", region=None))
    result = match(index, query(top_k=5, region="eu"))
    assert ids(result) == ["m-eu"]
    assert nonzero(result) == {"region": 2}


def test_a_region_no_miner_is_in_rejects_everyone() -> None:
    index = index_of(miner("m-1"), miner("m-2", region=None))
    assert nonzero(match(index, query(region="mars"))) == {"region": 2}


def test_regions_and_accels_stay_told_apart_past_a_byte_of_codes() -> None:
    # 40,000 distinct values outgrow one and then two bytes of code; the first ones keep theirs.
    index = index_of(*(miner(f"m-{i}", region=f"r-{i}", accel=f"a-{i % 300}") for i in range(40_000)))
    for region in ("r-0", "r-127", "r-128", "r-32767", "r-39999"):
        assert ids(match(index, query(top_k=3, region=region))) == [f"m-{region[2:]}"]
    result = match(index, query(top_k=500, accel=("a-5", "a-299", "a-1000")))
    assert sorted(ids(result)) == sorted(f"m-{i}" for i in range(40_000) if i % 300 in (5, 299))
    assert result.rejections["accel"] == 40_000 - len(result.candidates)


def test_a_price_above_the_maximum_is_rejected_and_equal_passes() -> None:
    index = index_of(
        miner("cheap", price=Decimal("0.79")),
        miner("equal", price=Decimal("0.8")),
        miner("dear", price=Decimal("0.80001")),
    )
    result = match(index, query(top_k=5, max_price=Decimal("0.80")))
    assert ids(result) == ["cheap", "equal"]
    assert nonzero(result) == {"price": 1}


def test_a_known_eta_over_the_deadline_is_rejected_and_an_unknown_one_passes() -> None:
    index = index_of(
        miner("fast", eta_ms=100.0),
        miner("equal", eta_ms=5000.0),
        miner("slow", eta_ms=5000.5),
        miner("unknown", eta_ms=None),
    )
    result = match(index, query(top_k=5, deadline_ms=5000.0))
    assert sorted(ids(result)) == ["equal", "fast", "unknown"]
    assert nonzero(result) == {"deadline": 1}


def test_empty_lists_mean_the_constraint_is_absent() -> None:
    index = index_of(miner("m-1", tags=(), capabilities=()))
    result = match(index, query(accel=(), tags_any=(), capabilities_any=()))
    assert ids(result) == ["m-1"]
    assert nonzero(result) == {}


def test_an_online_miner_failing_several_constraints_is_counted_under_each() -> None:
    index = index_of(
        miner("bad", busy=True, gpu_vram_gb=8.0, accel="rocm", region="us", price=Decimal(2), eta_ms=9e3),
        miner("good"),
    )
    q = query(
        top_k=5,
        min_vram_gb=16,
        accel=("cuda",),
        capabilities_any=("embed",),
        region="eu",
        max_price=Decimal("1"),
        deadline_ms=5000.0,
    )
    result = match(index, q)
    assert ids(result) == ["good"]
    assert nonzero(result) == {"full": 1, "vram": 1, "accel": 1, "region": 1, "price": 1, "deadline": 1}
    assert list(result.rejections) == list(REJECTION_REASONS)


def test_considered_counts_every_registered_miner() -> None:
    index = index_of(*(miner(f"m-{i}", lease_expires_at=NOW - i) for i in range(4)))
    result = match(index, query())
    assert (result.considered, result.eligible, len(result.candidates)) == (4, 0, 0)


def test_no_eligible_miner_gives_no_candidates_and_the_rejection_explain() -> None:
    index = index_of(miner("m-1", lease_expires_at=NOW - 1), miner("m-2", gpu_vram_gb=8.0))
    result = match(index, query(top_k=3, min_vram_gb=16))
    assert result.candidates == ()
    assert result.explain == "considered=2 • rejected: offline=1 vram=1 • returned=0"


def test_an_empty_index_matches_nothing() -> None:
    result = match(MinerIndex(), query(top_k=3))
    assert result.candidates == ()
    assert result.explain == "considered=0 • rejected: none • returned=0"


def test_the_scalar_check_agrees_with_the_index() -> None:
    bad = miner("bad", lease_expires_at=NOW - 1, gpu_vram_gb=8.0, price=Decimal("2"))
    q = query(min_vram_gb=16, max_price=Decimal("1"))
    assert failed_constraints(bad, q, NOW) == ("offline", "vram", "price")
    assert failed_constraints(miner("good"), q, NOW) == ()


# ---- score terms -------------------------------------------------------------------------------------------


def test_the_score_is_the_weighted_sum_of_the_terms() -> None:
    index = index_of(miner("m-1", trust=0.7, queue_len=1))
    [candidate] = match(index, query()).candidates
    assert candidate.score == pytest.approx(0.4 + 0.2 + 0.2 + 0.15 * 0.7 + 0.05 * 0.75, abs=1e-12)
    assert candidate.score == 0.9425
    assert candidate.explain == "cap=1.00 • price=1.00 • latency=1.00 • trust=0.70 • load=0.75"


def test_cap_is_the_share_of_the_requested_capabilities_the_miner_has() -> None:
    index = index_of(miner("m-1", capabilities=("a", "c", "q")))
    [candidate] = match(index, query(capabilities_any=("d", "c", "b", "a"))).candidates
    assert candidate.terms.cap == 0.5
    assert candidate.matched_capabilities == ("c", "a")


def test_cap_counts_a_repeated_capability_once() -> None:
    index = index_of(miner("m-1", capabilities=("a",)))
    [candidate] = match(index, query(capabilities_any=("a", "a", "b"))).candidates
    assert candidate.terms.cap == 0.5
    assert candidate.matched_capabilities == ("a",)


def test_cap_is_one_when_no_capability_is_requested() -> None:
    [candidate] = match(index_of(miner("m-1")), query()).candidates
    assert candidate.terms.cap == 1.0
    assert candidate.matched_capabilities == ()


def test_price_with_a_maximum_is_one_minus_the_price_share() -> None:
    index = index_of(miner("m-1", price=Decimal("0.60")))
    [candidate] = match(index, query(max_price=Decimal("0.80"))).candidates
    assert candidate.terms.price == pytest.approx(0.25)
    assert candidate.price == Decimal("0.60")


def test_price_with_a_zero_maximum_is_one() -> None:
    index = index_of(miner("free", price=Decimal("0")), miner("paid", price=Decimal("0.1")))
    result = match(index, query(top_k=5, max_price=Decimal("0")))
    assert ids(result) == ["free"]
    assert result.candidates[0].terms.price == 1.0


def test_price_without_a_maximum_runs_from_cheapest_to_dearest_eligible() -> None:
    index = index_of(
        miner("a", price=Decimal("0.20")),
        miner("b", price=Decimal("0.50")),
        miner("c", price=Decimal("0.80")),
        miner("offline", price=Decimal("5"), lease_expires_at=NOW - 1),
    )
    terms = {c.miner_id: c.terms.price for c in match(index, query(top_k=5)).candidates}
    assert terms == pytest.approx({"a": 1.0, "b": 0.5, "c": 0.0})


def test_price_is_one_for_everyone_when_all_prices_are_equal() -> None:
    index = index_of(miner("a"), miner("b"))
    assert [c.terms.price for c in match(index, query(top_k=5)).candidates] == [1.0, 1.0]


def test_latency_decays_with_the_share_of_eligible_miners_that_are_faster() -> None:
    index = index_of(
        miner("e100", eta_ms=100.0),
        miner("e200a", eta_ms=200.0),
        miner("e200b", eta_ms=200.0),
        miner("e400", eta_ms=400.0),
        miner("unknown", eta_ms=None),
        miner("offline-fast", eta_ms=1.0, lease_expires_at=NOW - 1),
        miner("busy-fast", eta_ms=1.0, busy=True),
    )
    terms = {c.miner_id: c.terms.latency for c in match(index, query(top_k=10)).candidates}
    assert terms == {"e100": 1.0, "e200a": 0.75, "e200b": 0.75, "e400": 0.25, "unknown": 0.5}


def test_trust_is_the_miners_trust_clamped_to_one() -> None:
    index = index_of(miner("m-1", trust=0.3), miner("m-2", trust=1.7))
    terms = {c.miner_id: c.terms.trust for c in match(index, query(top_k=5)).candidates}
    assert terms == {"m-1": 0.3, "m-2": 1.0}


def test_load_is_the_share_of_free_slots() -> None:
    index = index_of(miner("m-1", max_parallel=4, queue_len=1), miner("m-2", max_parallel=8, queue_len=6))
    terms = {c.miner_id: c.terms.load for c in match(index, query(top_k=5)).candidates}
    assert terms == {"m-1": 0.75, "m-2": 0.25}


def test_terms_and_score_stay_within_zero_and_one() -> None:
    index = index_of(miner("top", trust=1.0), miner("bottom", trust=0.0, queue_len=3, price=Decimal("9")))
    for candidate in match(index, query(top_k=5)).candidates:
        assert 0.0 <= candidate.score <= 1.0
        terms = candidate.terms
        assert all(0.0 <= t <= 1.0 for t in (terms.cap, terms.price, terms.latency, terms.trust, terms.load))


# ---- order and tie-breaks ----------------------------------------------------------------------------------


def test_candidates_are_ordered_by_score() -> None:
    index = index_of(miner("low", trust=0.1), miner("high", trust=0.9), miner("mid", trust=0.5))
    assert ids(match(index, query(top_k=3))) == ["high", "mid", "low"]


def test_top_k_caps_the_number_of_candidates() -> None:
    index = index_of(*(miner(f"m-{i}") for i in range(5)))
    assert len(match(index, query(top_k=3)).candidates) == 3
    assert len(match(index, query(top_k=50)).candidates) == 5


def test_an_equal_score_goes_to_the_cheaper_miner() -> None:
    no_price_weight = Weights(0.45, 0.0, 0.2, 0.2, 0.15)
    index = index_of(miner("dear", price=Decimal("0.9")), miner("cheap", price=Decimal("0.3")))
    result = match(index, query(top_k=2), no_price_weight)
    assert ids(result) == ["cheap", "dear"]
    assert result.candidates[0].score == result.candidates[1].score


def test_an_equal_score_and_price_goes_to_the_lower_miner_id() -> None:
    index = index_of(miner("m-b"), miner("m-c"), miner("m-a"))
    assert ids(match(index, query(top_k=3))) == ["m-a", "m-b", "m-c"]
    assert ids(match(index, query(top_k=1))) == ["m-a"]


def test_scores_equal_to_six_decimals_count_as_a_tie() -> None:
    index = index_of(miner("m-z", trust=0.5000001), miner("m-a", trust=0.5))
    result = match(index, query(top_k=2))
    assert ids(result) == ["m-a", "m-z"]
    assert result.candidates[0].score == result.candidates[1].score == 0.925


def test_a_large_tie_goes_to_the_lowest_ids() -> None:
    index = index_of(*(miner(f"m-{i:04d}") for i in reversed(range(1500))))
    assert ids(match(index, query(top_k=3))) == ["m-0000", "m-0001", "m-0002"]
    index.remove("m-0001")
    assert ids(match(index, query(top_k=3))) == ["m-0000", "m-0002", "m-0003"]


def test_a_tie_cut_at_top_k_keeps_the_cheaper_then_lower_ids() -> None:
    no_price_weight = Weights(0.45, 0.0, 0.2, 0.2, 0.15)
    index = index_of(
        miner("best", trust=0.9),
        miner("m-3", price=Decimal("0.4")),
        miner("m-2", price=Decimal("0.4")),
        miner("m-1", price=Decimal("0.6")),
        miner("m-0", price=Decimal("0.6")),
    )
    assert ids(match(index, query(top_k=3), no_price_weight)) == ["best", "m-2", "m-3"]
    assert ids(match(index, query(top_k=4), no_price_weight)) == ["best", "m-2", "m-3", "m-0"]


def test_a_tie_cut_among_many_contenders_keeps_the_cheaper_then_lower_ids() -> None:
    no_price_weight = Weights(0.45, 0.0, 0.2, 0.2, 0.15)
    cheap = [miner(f"c-{i:02d}", price=Decimal("0.4")) for i in reversed(range(40))]
    dear = [miner(f"a-{i:02d}", price=Decimal("0.6")) for i in reversed(range(40))]
    index = index_of(miner("best", trust=0.9), *dear, *cheap)
    top = ids(match(index, query(top_k=10), no_price_weight))
    assert top == ["best"] + [f"c-{i:02d}" for i in range(9)]
    top = ids(match(index, query(top_k=45), no_price_weight))
    assert top == ["best"] + [f"c-{i:02d}" for i in range(40)] + [f"a-{i:02d}" for i in range(4)]


# ---- explain strings ---------------------------------------------------------------------------------------


def test_the_top_level_explain_lists_non_zero_rejections_in_reason_order() -> None:
    index = index_of(
        miner("offline", lease_expires_at=NOW - 1),
        miner("small", gpu_vram_gb=8.0),
        miner("busy", busy=True),
        miner("ok-1"),
        miner("ok-2", trust=0.9, queue_len=1, price=Decimal("0.40")),
    )
    result = match(index, query(top_k=3, min_vram_gb=16))
    assert result.explain == "considered=5 • rejected: offline=1 full=1 vram=1 • returned=2"
    assert [c.explain for c in result.candidates] == [
        "cap=1.00 • price=1.00 • latency=1.00 • trust=0.90 • load=0.75",
        "cap=1.00 • price=0.00 • latency=1.00 • trust=0.50 • load=1.00",
    ]
    first = result.candidates[0]
    assert (first.miner_id, first.addr, first.proto, first.eta_ms) == ("ok-2", "10.0.0.1:9004", "grpc", 100.0)


def test_the_top_level_explain_says_none_when_nothing_was_rejected() -> None:
    result = match(index_of(miner("a"), miner("b")), query())
    assert result.explain == "considered=2 • rejected: none • returned=1"


# ---- SLA penalty -------------------------------------------------------------------------------------------


def test_an_sla_penalty_multiplies_the_score_and_is_shown() -> None:
    index = index_of(miner("m-1"), miner("m-2"))
    assert index.set_penalty("m-1", 0.8)
    result = match(index, query(top_k=2))
    assert ids(result) == ["m-2", "m-1"]
    penalised = result.candidates[1]
    assert penalised.score == pytest.approx(0.8 * result.candidates[0].score, abs=1e-6)
    assert penalised.sla_penalty == 0.8
    assert penalised.explain.endswith("load=1.00 • sla_penalty=0.80")
    assert result.candidates[0].sla_penalty == 1.0


def test_lifting_the_penalty_restores_the_score() -> None:
    index = index_of(miner("m-1", sla_penalty=0.5), miner("m-2", trust=0.4))
    assert ids(match(index, query())) == ["m-2"]
    index.set_penalty("m-1", 1.0)
    assert ids(match(index, query())) == ["m-1"]
    assert "sla_penalty" not in match(index, query()).candidates[0].explain


def test_a_penalty_must_be_a_number() -> None:
    index = index_of(miner("m-1"))
    with pytest.raises(ValueError, match="sla_penalty"):
        index.set_penalty("m-1", float("nan"))
    assert not index.set_penalty("nobody", 0.5)


# ---- exploration -------------------------------------------------------------------------------------------


def exploration_fleet(**newcomer: Any) -> MinerIndex:
    known = [miner(f"k-{i:02d}", trust=0.9, trust_samples=50.0) for i in range(10)]
    return index_of(*known, miner("new", **{"trust": 0.5, "trust_samples": 0.0, **newcomer}))


def test_a_reserved_slot_goes_to_a_well_fitting_new_miner() -> None:
    index = exploration_fleet(trust=0.0)
    # A stronger newcomer that is offline must not get the slot.
    index.upsert(miner("gone", trust=1.0, trust_samples=0.0, eta_ms=None, lease_expires_at=NOW - 1))
    result = match(index, query(top_k=10), exploration=ExplorationPolicy(share=0.1))
    assert ids(result) == [f"k-{i:02d}" for i in range(9)] + ["new"]
    assert [c.exploration for c in result.candidates] == [False] * 9 + [True]
    assert result.candidates[-1].explain.endswith(" • exploration=true")
    assert result.explain == "considered=12 • rejected: offline=1 • returned=10"


def test_the_explored_slot_displaces_the_lowest_ranked_greedy_miner() -> None:
    index = exploration_fleet()
    policy = ExplorationPolicy(share=0.1)
    displaced = match(index, query(top_k=10, explain_miner="k-09"), exploration=policy).miner_explanation
    assert displaced is not None
    assert (displaced.eligible, displaced.rank, displaced.returned) == (True, 10, False)
    assert "its slot went to exploration" in displaced.explain
    newcomer = match(index, query(top_k=10, explain_miner="new"), exploration=policy).miner_explanation
    assert newcomer is not None
    assert (newcomer.rank, newcomer.returned) == (11, True)
    assert "returned for exploration" in newcomer.explain


def test_a_new_miner_the_top_holds_keeps_its_slot_when_more_are_reserved() -> None:
    index = index_of(
        miner("known-a", trust=0.9, trust_samples=50.0),
        miner("known-b", trust=0.8, trust_samples=50.0),
        miner("new-a", trust=0.7, trust_samples=0.0),
        miner("new-b", trust=0.6, trust_samples=0.0),
    )
    # Two of three slots reserved; the top holds one new miner, in its lowest slot: a known miner makes room.
    result = match(index, query(top_k=3), exploration=ExplorationPolicy(share=0.67))
    assert ids(result) == ["known-a", "new-a", "new-b"]
    assert [c.exploration for c in result.candidates] == [False, False, True]


def test_no_slot_is_reserved_when_the_top_already_holds_a_new_miner() -> None:
    index = exploration_fleet(trust=1.0)
    result = match(index, query(top_k=10), exploration=ExplorationPolicy(share=0.1))
    assert ids(result)[0] == "new"
    assert not any(c.exploration for c in result.candidates)


def test_a_zero_share_disables_exploration() -> None:
    result = match(exploration_fleet(), query(top_k=10), exploration=ExplorationPolicy(share=0.0))
    assert "new" not in ids(result)


def test_a_new_miner_missing_a_requested_capability_is_not_explored() -> None:
    known = [miner(f"k-{i:02d}", trust=0.9, trust_samples=50.0, capabilities=("x", "y")) for i in range(10)]
    index = index_of(*known, miner("new", trust_samples=0.0, capabilities=("x",)))
    q = query(top_k=10, capabilities_any=("x", "y"))
    result = match(index, q, exploration=ExplorationPolicy(share=0.1))
    assert "new" not in ids(result)


def test_the_default_policy_explores_only_from_ten_slots() -> None:
    index = exploration_fleet()
    assert "new" not in ids(index.match(query(top_k=9), NOW, DEFAULT_WEIGHTS))
    assert "new" in ids(index.match(query(top_k=10), NOW, DEFAULT_WEIGHTS))


def test_exploration_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="share"):
        ExplorationPolicy(share=1.5)
    with pytest.raises(ValueError, match="min_cap"):
        ExplorationPolicy(min_cap=-0.1)


# ---- explain_miner -----------------------------------------------------------------------------------------


def test_explaining_an_unknown_miner_says_it_is_not_registered() -> None:
    explanation = match(index_of(miner("m-1")), query(explain_miner="ghost")).miner_explanation
    assert explanation is not None
    assert (explanation.registered, explanation.eligible, explanation.failed) == (False, False, ())
    assert (explanation.score, explanation.rank, explanation.returned) == (None, None, False)
    assert explanation.explain == "ghost is not registered"


def test_explaining_an_offline_miner_lists_every_constraint_it_fails() -> None:
    index = index_of(miner("m-1", lease_expires_at=NOW - 5, gpu_vram_gb=8.0, price=Decimal("0.9")))
    q = query(explain_miner="m-1", min_vram_gb=16, max_price=Decimal("0.8"))
    explanation = match(index, q).miner_explanation
    assert explanation is not None
    assert explanation.registered and not explanation.eligible
    assert explanation.failed == ("offline", "vram", "price")
    assert explanation.rank is None
    assert explanation.explain == (
        "m-1 is not eligible: offline (lease lapsed or logged out), vram (8 GB < 16 GB), price (0.9 > 0.8)"
    )


def test_explaining_an_eligible_miner_gives_its_rank_and_terms() -> None:
    index = index_of(miner("first", trust=0.9), miner("second", trust=0.7), miner("third", trust=0.1))
    explanation = match(index, query(top_k=1, explain_miner="second")).miner_explanation
    assert explanation is not None
    assert (explanation.eligible, explanation.failed) == (True, ())
    assert (explanation.rank, explanation.returned) == (2, False)
    assert explanation.score == pytest.approx(0.4 + 0.2 + 0.2 + 0.15 * 0.7 + 0.05)
    assert explanation.explain == (
        "second is eligible: ranked 2 of 3 with score 0.955000, not returned (top_k=1): "
        "cap=1.00 • price=1.00 • latency=1.00 • trust=0.70 • load=1.00"
    )
    returned = match(index, query(top_k=2, explain_miner="second")).miner_explanation
    assert returned is not None
    assert returned.returned
    assert "ranked 2 of 3" in returned.explain


def test_the_explained_rank_follows_the_tie_breaks() -> None:
    index = index_of(miner("m-c"), miner("m-a"), miner("m-b"))
    explanation = match(index, query(explain_miner="m-c")).miner_explanation
    assert explanation is not None
    assert explanation.rank == 3


# ---- index maintenance -------------------------------------------------------------------------------------


def test_update_status_changes_what_matching_sees() -> None:
    index = index_of(miner("m-1"), miner("m-2"))
    assert index.update_status("m-1", queue_len=4)
    assert ids(match(index, query(top_k=2))) == ["m-2"]
    assert index.update_status("m-1", queue_len=0, busy=True)
    assert ids(match(index, query(top_k=2))) == ["m-2"]
    assert index.update_status("m-1", busy=False, price=Decimal("0.1"))
    assert ids(match(index, query(top_k=2, max_price=Decimal("0.2")))) == ["m-1"]
    assert index.update_status("m-2", lease_expires_at=NOW)
    assert nonzero(match(index, query(top_k=2))) == {"offline": 1}


def test_update_status_moves_the_eta() -> None:
    index = index_of(miner("m-1", eta_ms=100.0), miner("m-2", eta_ms=200.0))
    index.update_status("m-1", eta_ms=300.0)
    terms = {c.miner_id: c.terms.latency for c in match(index, query(top_k=2)).candidates}
    assert terms == {"m-1": 0.5, "m-2": 1.0}
    assert index.get("m-1") == miner("m-1", eta_ms=300.0)


def test_update_status_of_an_unknown_miner_is_false() -> None:
    assert not MinerIndex().update_status("ghost", queue_len=1)


def test_update_status_with_nothing_changes_nothing() -> None:
    index = index_of(miner("m-1"))
    assert index.update_status("m-1")
    assert index.get("m-1") == miner("m-1")


def test_update_trust_changes_the_trust_term() -> None:
    index = index_of(miner("m-1"))
    assert index.update_trust("m-1", 0.9, 12.5)
    [candidate] = match(index, query()).candidates
    assert candidate.terms.trust == 0.9
    assert index.get("m-1") == miner("m-1", trust=0.9, trust_samples=12.5)
    assert not index.update_trust("ghost", 0.9, 1.0)


def test_upsert_replaces_a_miner_in_place() -> None:
    index = index_of(miner("m-1"), miner("m-2"))
    assert ids(match(index, query(top_k=2, capabilities_any=("embed",), tags_any=("eu-west",)))) == [
        "m-1",
        "m-2",
    ]
    index.upsert(miner("m-1", region="us", capabilities=("new",), tags=("spot",)))
    assert len(index) == 2
    q = query(top_k=2, region="us", capabilities_any=("new",), tags_any=("spot",))
    assert ids(match(index, q)) == ["m-1"]
    assert ids(match(index, query(top_k=2, capabilities_any=("embed",), tags_any=("eu-west",)))) == ["m-2"]


def test_remove_forgets_the_miner() -> None:
    index = index_of(miner("m-1"), miner("m-2"))
    assert index.remove("m-1")
    assert not index.remove("m-1")
    assert "m-1" not in index
    assert index.get("m-1") is None
    result = match(index, query(top_k=5))
    assert (result.considered, ids(result)) == (1, ["m-2"])


def test_a_removed_row_is_reused_cleanly() -> None:
    index = index_of(miner("m-1", capabilities=("rare",), eta_ms=10.0), miner("m-2"))
    index.remove("m-1")
    index.upsert(miner("m-3", capabilities=("embed",), eta_ms=None))
    assert nonzero(match(index, query(top_k=5, capabilities_any=("rare",)))) == {"capabilities": 2}
    terms = {c.miner_id: c.terms.latency for c in match(index, query(top_k=5)).candidates}
    assert terms == {"m-2": 1.0, "m-3": 0.5}


def test_the_index_grows_past_its_first_capacity() -> None:
    index = index_of(*(miner(f"m-{i:03d}", trust=i / 300) for i in range(300)))
    assert len(index) == 300
    assert ids(match(index, query(top_k=2))) == ["m-299", "m-298"]


def test_lookups_report_membership() -> None:
    index = index_of(miner("b"), miner("a"), miner("c"))
    assert index.miner_ids() == ["a", "b", "c"]
    assert len(index) == 3
    assert "a" in index
    assert "z" not in index
    assert 7 not in index
    assert index.get("b") == miner("b")


def test_online_count_and_average_eta_cover_online_miners_only() -> None:
    index = index_of(
        miner("m-1", eta_ms=100.0),
        miner("m-2", eta_ms=300.0, busy=True),
        miner("m-3", eta_ms=None),
        miner("m-4", eta_ms=1000.0, lease_expires_at=NOW - 1),
    )
    assert index.online_count(NOW) == 3
    assert index.avg_eta_ms(NOW) == 200.0
    assert index.online_count(NOW + 3600) == 0
    assert index.avg_eta_ms(NOW + 3600) is None
    assert MinerIndex().avg_eta_ms(NOW) is None


@pytest.mark.parametrize(
    "changes",
    [{"price": Decimal(-1)}, {"price": Decimal("NaN")}, {"trust": float("nan")}, {"ram_gb": float("inf")}],
)
def test_upsert_rejects_values_that_would_poison_the_scores(changes: dict[str, Any]) -> None:
    index = MinerIndex()
    with pytest.raises(ValueError, match="must be a finite"):
        index.upsert(miner("m-1", **changes))
    assert len(index) == 0


def test_a_query_needs_at_least_one_slot() -> None:
    with pytest.raises(ValueError, match="top_k"):
        query(top_k=0)


def test_scores_round_to_six_decimals_exactly_as_numpy_rounds() -> None:
    rng = np.random.default_rng(3)
    # Random scores, the half-way points between six-decimal neighbours and the ulps around them.
    halves = (np.arange(0, 1_000_001, 997) + 0.5) / 1e6
    values = np.concatenate(
        (rng.random(100_000), halves, np.nextafter(halves, 0.0), np.nextafter(halves, 1.0), [0.0, 1.0])
    )
    assert np.array_equal(round6(values), np.round(values, 6))
    assert np.array_equal(np.signbit(round6(values)), np.signbit(np.round(values, 6)))
