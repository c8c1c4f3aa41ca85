"""Property tests: the index agrees with a plain-Python reading of the matching contract."""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TypeVar

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

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

T = TypeVar("T")
NOW = 1_000.0
NO_EXPLORATION = ExplorationPolicy(share=0.0)
PRICES = [Decimal(p) for p in ("0", "0.1", "0.25", "0.5", "0.75", "1", "2.5")]
ETAS = [None, 50.0, 100.0, 100.0, 250.0, 400.5]
WEIGHTS = [
    DEFAULT_WEIGHTS,
    Weights(0.2, 0.2, 0.2, 0.2, 0.2),
    Weights(0.0, 0.0, 1.0, 0.0, 0.0),
    Weights(0.0, 1.0, 0.0, 0.0, 0.0),
    Weights(0.5, 0.0, 0.0, 0.25, 0.25),
]


# ---- the reference: the contract read literally, one miner at a time ---------------------------------------


def online_failures(miner: IndexedMiner, query: MatchQuery) -> list[str]:
    req, hints = query.requirements, query.hints
    failed = []
    if miner.busy or miner.queue_len >= miner.max_parallel:
        failed.append("full")
    if req.min_vram_gb is not None and miner.gpu_vram_gb < req.min_vram_gb:
        failed.append("vram")
    if req.min_ram_gb is not None and miner.ram_gb < req.min_ram_gb:
        failed.append("ram")
    if req.accel and miner.accel not in req.accel:
        failed.append("accel")
    if req.tags_any and not any(tag in miner.tags for tag in req.tags_any):
        failed.append("tags")
    if req.capabilities_any and not any(cap in miner.capabilities for cap in req.capabilities_any):
        failed.append("capabilities")
    if hints.region is not None and miner.region != hints.region:
        failed.append("region")
    if hints.max_price is not None and miner.price > hints.max_price:
        failed.append("price")
    if hints.deadline_ms is not None and miner.eta_ms is not None and miner.eta_ms > hints.deadline_ms:
        failed.append("deadline")
    return failed


def is_online(miner: IndexedMiner) -> bool:
    return miner.lease_expires_at > NOW


def clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


@dataclass
class Reference:
    rejections: dict[str, int]
    ranked: list[str]  # eligible ids in the final order
    score: dict[str, float]  # unrounded
    price: dict[str, Decimal]


def reference(miners: list[IndexedMiner], query: MatchQuery, weights: Weights) -> Reference:
    rejections = dict.fromkeys(REJECTION_REASONS, 0)
    eligible = []
    for miner in miners:
        if not is_online(miner):
            rejections["offline"] += 1
            continue
        failed = online_failures(miner, query)
        for reason in failed:
            rejections[reason] += 1
        if not failed:
            eligible.append(miner)
    wanted = list(dict.fromkeys(query.requirements.capabilities_any or ()))
    known = sorted(m.eta_ms for m in eligible if m.eta_ms is not None)
    cheapest = min((m.price for m in eligible), default=Decimal(0))
    dearest = max((m.price for m in eligible), default=Decimal(0))
    max_price = query.hints.max_price
    score = {}
    for m in eligible:
        cap = sum(c in m.capabilities for c in wanted) / len(wanted) if wanted else 1.0
        if max_price is not None:
            price = 1.0 if max_price == 0 else float(1 - m.price / max_price)
        else:
            price = 1.0 if dearest == cheapest else float((dearest - m.price) / (dearest - cheapest))
        latency = 0.5 if m.eta_ms is None else 1.0 - bisect_left(known, m.eta_ms) / len(known)
        load = max(0, m.max_parallel - m.queue_len) / m.max_parallel
        total = (
            weights.cap * cap
            + weights.price * price
            + weights.latency * latency
            + weights.trust * clamp(m.trust)
            + weights.load * clamp(load)
        )
        score[m.miner_id] = clamp(clamp(m.sla_penalty) * total)
    prices = {m.miner_id: m.price for m in eligible}
    ranked = sorted(score, key=lambda i: (-round(score[i], 6), prices[i], i))
    return Reference(rejections, ranked, score, prices)


def clear_of_rounding_edges(ref: Reference) -> bool:
    """False if a score sits so close to a 6-decimal half-way point that float noise could flip it."""
    return all(abs((s * 1e6) % 1.0 - 0.5) > 1e-6 for s in ref.score.values())


def sort_key(result: MatchResult, index: MinerIndex) -> list[tuple[float, Decimal, str]]:
    keys = []
    for c in result.candidates:
        stored = index.get(c.miner_id)
        assert stored is not None
        keys.append((-c.score, stored.price, c.miner_id))
    return keys


# ---- strategies --------------------------------------------------------------------------------------------


def _numbered(drawn: list[tuple[int, IndexedMiner]]) -> list[IndexedMiner]:
    # The drawn prefix shuffles id order against list order; the suffix keeps ids unique.
    return [replace(m, miner_id=f"m-{prefix}-{i:02d}") for i, (prefix, m) in enumerate(drawn)]


_miners = st.builds(
    IndexedMiner,
    miner_id=st.just("m"),
    addr=st.just("10.0.0.1:9000"),
    proto=st.just("grpc"),
    gpu_vram_gb=st.sampled_from([8.0, 16.0, 24.0]),
    ram_gb=st.sampled_from([16.0, 32.0]),
    accel=st.sampled_from(["cuda", "rocm"]),
    region=st.sampled_from([None, "eu", "us"]),
    tags=st.lists(st.sampled_from(["a", "b", "c"]), max_size=2, unique=True).map(tuple),
    capabilities=st.lists(st.sampled_from(["x", "y", "z"]), max_size=3, unique=True).map(tuple),
    price=st.sampled_from(PRICES),
    max_parallel=st.integers(1, 4),
    queue_len=st.integers(0, 5),
    busy=st.booleans(),
    lease_expires_at=st.sampled_from([NOW - 10, NOW, NOW + 60, NOW + 60, float("-inf")]),
    eta_ms=st.sampled_from(ETAS),
    trust=st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0, 1.2]),
    trust_samples=st.sampled_from([0.0, 3.0, 10.0]),
    sla_penalty=st.sampled_from([1.0, 1.0, 0.8, 0.5]),
)


def fleets(max_size: int = 30) -> st.SearchStrategy[list[IndexedMiner]]:
    return st.lists(st.tuples(st.integers(0, 9), _miners), max_size=max_size).map(_numbered)


def optional(values: st.SearchStrategy[T]) -> st.SearchStrategy[T | None]:
    return st.none() | values


def small_tuples(values: list[str], *, unique: bool = True) -> st.SearchStrategy[tuple[str, ...]]:
    return st.lists(st.sampled_from(values), max_size=3, unique=unique).map(tuple)


queries = st.builds(
    MatchQuery,
    job_id=st.just("job-1"),
    tenant_id=st.just("acme"),
    requirements=st.builds(
        Requirements,
        min_vram_gb=optional(st.sampled_from([8.0, 16.0, 20.0])),
        min_ram_gb=optional(st.sampled_from([16.0, 24.0])),
        accel=optional(small_tuples(["cuda", "rocm", "tpu"])),
        tags_any=optional(small_tuples(["a", "b", "q"])),
        capabilities_any=optional(small_tuples(["x", "y", "z", "w"], unique=False)),
    ),
    hints=st.builds(
        Hints,
        region=optional(st.sampled_from(["eu", "us", "mars"])),
        max_price=optional(st.sampled_from(PRICES[:6])),
        deadline_ms=optional(st.sampled_from([75.0, 100.0, 300.0])),
    ),
    top_k=st.integers(1, 8),
)


_fleets = fleets()
_actions = st.sampled_from(["status", "trust", "penalty", "remove", "replace"])
_queue_lens = optional(st.integers(0, 5))
_busy = optional(st.booleans())
_leases = optional(st.sampled_from([NOW - 1, NOW + 30]))
_etas = optional(st.sampled_from([10.0, 100.0, 600.0]))
_prices = optional(st.sampled_from(PRICES))
_trusts = st.sampled_from([0.1, 0.6, 0.95])
_samples = st.sampled_from([0.0, 8.0])
_penalties = st.sampled_from([1.0, 0.7, 0.0])


@st.composite
def churned(draw: st.DrawFn) -> tuple[MinerIndex, list[IndexedMiner]]:
    """An index built from a fleet and then put through heartbeats, trust updates, penalties and removals."""
    fleet = draw(_fleets)
    # Either every eligible eta is ranked, or only the contenders' are.
    index = MinerIndex(contenders_from_rows=draw(st.sampled_from([0, 1 << 30])))
    for m in fleet:
        index.upsert(m)
    if fleet:
        targets = st.sampled_from([m.miner_id for m in fleet])
        for _ in range(draw(st.integers(0, 15))):
            target = draw(targets)
            if target not in index:
                continue
            action = draw(_actions)
            if action == "status":
                index.update_status(
                    target,
                    queue_len=draw(_queue_lens),
                    busy=draw(_busy),
                    lease_expires_at=draw(_leases),
                    eta_ms=draw(_etas),
                    price=draw(_prices),
                )
            elif action == "trust":
                index.update_trust(target, draw(_trusts), draw(_samples))
            elif action == "penalty":
                index.set_penalty(target, draw(_penalties))
            elif action == "remove":
                index.remove(target)
            else:
                stored = index.get(target)
                assert stored is not None
                index.upsert(replace(stored, capabilities=("z",), eta_ms=None, region="us"))
    current = [m for m in (index.get(i) for i in index.miner_ids()) if m is not None]
    return index, current


# ---- properties --------------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(churned(), queries, st.sampled_from(WEIGHTS))
def test_the_index_agrees_with_the_reference(
    built: tuple[MinerIndex, list[IndexedMiner]], query: MatchQuery, weights: Weights
) -> None:
    index, fleet = built
    result = index.match(query, NOW, weights, NO_EXPLORATION)
    ref = reference(fleet, query, weights)
    assert result.rejections == ref.rejections
    assert result.considered == len(fleet)
    assert result.eligible == len(ref.ranked)
    assume(clear_of_rounding_edges(ref))
    assert [c.miner_id for c in result.candidates] == ref.ranked[: query.top_k]
    for c in result.candidates:
        assert c.score == pytest.approx(round(ref.score[c.miner_id], 6), abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(churned(), queries, st.sampled_from(WEIGHTS), st.sampled_from([0.0, 0.3, 0.5]))
def test_every_candidate_passes_every_hard_filter(
    built: tuple[MinerIndex, list[IndexedMiner]], query: MatchQuery, weights: Weights, share: float
) -> None:
    index, _fleet = built
    for c in index.match(query, NOW, weights, ExplorationPolicy(share=share)).candidates:
        stored = index.get(c.miner_id)
        assert stored is not None
        assert is_online(stored)
        assert online_failures(stored, query) == []


@settings(max_examples=200, deadline=None)
@given(churned(), queries, st.sampled_from(WEIGHTS), st.sampled_from([0.0, 0.3, 0.5]))
def test_candidates_follow_the_documented_order_and_bounds(
    built: tuple[MinerIndex, list[IndexedMiner]], query: MatchQuery, weights: Weights, share: float
) -> None:
    index, _fleet = built
    result = index.match(query, NOW, weights, ExplorationPolicy(share=share))
    assert len(result.candidates) == min(query.top_k, result.eligible)
    keys = sort_key(result, index)
    assert keys == sorted(keys)
    assert len({c.miner_id for c in result.candidates}) == len(result.candidates)
    for c in result.candidates:
        assert 0.0 <= c.score <= 1.0
        assert c.score == round(c.score, 6)
        terms = (c.terms.cap, c.terms.price, c.terms.latency, c.terms.trust, c.terms.load)
        assert all(0.0 <= t <= 1.0 for t in terms)
    assert sum(c.exploration for c in result.candidates) <= math.floor(query.top_k * share + 1e-9)


@settings(max_examples=200, deadline=None)
@given(churned(), queries, st.sampled_from(WEIGHTS), st.data())
def test_explain_miner_agrees_with_the_reference(
    built: tuple[MinerIndex, list[IndexedMiner]], query: MatchQuery, weights: Weights, data: st.DataObject
) -> None:
    index, fleet = built
    target = data.draw(st.sampled_from([m.miner_id for m in fleet] + ["ghost"]))
    result = index.match(replace(query, explain_miner=target), NOW, weights, NO_EXPLORATION)
    explanation = result.miner_explanation
    assert explanation is not None
    assert explanation.miner_id == target
    if target == "ghost":
        assert not explanation.registered
        return
    stored = index.get(target)
    assert stored is not None
    expected = (["offline"] if not is_online(stored) else []) + online_failures(stored, query)
    assert list(explanation.failed) == expected
    assert list(failed_constraints(stored, query, NOW)) == expected
    assert explanation.eligible == (not expected)
    ref = reference(fleet, query, weights)
    assume(clear_of_rounding_edges(ref))
    if expected:
        assert explanation.rank is None
        assert explanation.score is None
    else:
        assert explanation.rank == ref.ranked.index(target) + 1
        assert explanation.returned == (target in [c.miner_id for c in result.candidates])
        assert explanation.score == pytest.approx(round(ref.score[target], 6), abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(fleets(max_size=30), st.integers(1, 12), st.sampled_from([0.1, 0.25, 0.5]))
def test_exploration_only_swaps_in_little_known_miners(
    fleet: list[IndexedMiner], top_k: int, share: float
) -> None:
    index = MinerIndex()
    for m in fleet:
        index.upsert(m)
    query = MatchQuery("job-1", None, Requirements(), Hints(), top_k=top_k)
    policy = ExplorationPolicy(share=share, max_samples=5.0)
    greedy = index.match(query, NOW, DEFAULT_WEIGHTS, NO_EXPLORATION)
    explored = index.match(query, NOW, DEFAULT_WEIGHTS, policy)
    assert len(explored.candidates) == len(greedy.candidates)
    flagged = [c for c in explored.candidates if c.exploration]
    for c in flagged:
        stored = index.get(c.miner_id)
        assert stored is not None
        assert is_online(stored)
        assert online_failures(stored, query) == []
        assert stored.trust_samples < 5.0
        assert c.miner_id not in [g.miner_id for g in greedy.candidates]

    def is_little(miner_id: str) -> bool:
        stored = index.get(miner_id)
        return stored is not None and stored.trust_samples < 5.0

    little_in_greedy = sum(is_little(c.miner_id) for c in greedy.candidates)
    if little_in_greedy >= math.floor(top_k * share + 1e-9):
        assert not flagged
    # The reserved slots come out of the well-known miners' share: a little-known miner the greedy top holds
    # keeps its slot.
    kept = {c.miner_id for c in explored.candidates}
    assert all(c.miner_id in kept for c in greedy.candidates if is_little(c.miner_id))


# ---- large fleets: the eta order, its dirty rows and refreshes, dense scoring and top-k narrowing ---------


def large_fleet(rng: np.random.Generator, size: int, *, coarse: bool) -> list[IndexedMiner]:
    fleet = []
    for i in range(size):
        max_parallel = int(rng.integers(1, 5))
        fleet.append(
            IndexedMiner(
                miner_id=f"m-{int(rng.integers(0, 10**6)):06d}-{i}",
                addr="10.0.0.1:9000",
                proto="grpc",
                gpu_vram_gb=float(rng.choice([8.0, 16.0, 24.0])),
                ram_gb=32.0,
                accel="cuda" if rng.random() < 0.8 else "rocm",
                region=str(rng.choice(["eu", "us"])),
                tags=(),
                capabilities=tuple(
                    str(c) for c in rng.choice(["x", "y", "z"], int(rng.integers(1, 3)), False)
                ),
                price=Decimal(int(rng.integers(1, 40))) / 20,
                max_parallel=max_parallel,
                queue_len=int(rng.integers(0, max_parallel + 1)),
                busy=bool(rng.random() < 0.05),
                lease_expires_at=NOW + 60 if rng.random() < 0.95 else NOW - 1,
                # Coarse etas make ties in the order common; fine ones make them rare.
                eta_ms=None
                if rng.random() < 0.2
                else float(rng.integers(1, 60) * 10 if coarse else rng.random()),
                trust=float(rng.random()),
                trust_samples=float(rng.integers(0, 20)),
                sla_penalty=1.0 if rng.random() < 0.9 else 0.7,
            )
        )
    return fleet


LARGE_QUERIES = [
    MatchQuery("dense", None, Requirements(), Hints(), top_k=50),
    MatchQuery("dense-capped", None, Requirements(), Hints(max_price=Decimal("1.5")), top_k=7),
    MatchQuery("sparse", None, Requirements(min_vram_gb=16.0, accel=("cuda",)), Hints(region="eu"), top_k=20),
    MatchQuery(
        "multi-cap", None, Requirements(capabilities_any=("x", "y")), Hints(deadline_ms=400.0), top_k=10
    ),
    MatchQuery(
        "tiny", None, Requirements(min_vram_gb=24.0, capabilities_any=("z",)), Hints(region="us"), top_k=3
    ),
]


def check_large(index: MinerIndex, rng: np.random.Generator) -> None:
    fleet = [m for m in (index.get(i) for i in index.miner_ids()) if m is not None]
    for query in LARGE_QUERIES:
        ref = reference(fleet, query, DEFAULT_WEIGHTS)
        result = index.match(query, NOW, DEFAULT_WEIGHTS, NO_EXPLORATION)
        assert result.rejections == ref.rejections
        assert [c.miner_id for c in result.candidates] == ref.ranked[: query.top_k], query.job_id
        for c in result.candidates:
            assert c.score == pytest.approx(round(ref.score[c.miner_id], 6), abs=1e-9)
        for target in rng.choice(ref.ranked, min(3, len(ref.ranked)), replace=False).tolist():
            explained = index.match(
                replace(query, explain_miner=target), NOW, DEFAULT_WEIGHTS, NO_EXPLORATION
            )
            assert explained.miner_explanation is not None
            assert explained.miner_explanation.rank == ref.ranked.index(target) + 1


@pytest.mark.parametrize(
    ("seed", "coarse", "contenders"), [(1, True, False), (2, True, True), (3, False, False), (4, False, True)]
)
def test_large_fleets_agree_with_the_reference_through_churn(
    seed: int, coarse: bool, contenders: bool
) -> None:
    rng = np.random.default_rng(seed)
    fleet = large_fleet(rng, 1500, coarse=coarse)
    # Contenders: every match ranks only its contenders' etas, as among 65,536 miners or more.
    index = MinerIndex(contenders_from_rows=0) if contenders else MinerIndex()
    for m in fleet:
        index.upsert(m)
    check_large(index, rng)
    # A few eta changes are ranked on the side; hundreds force the order to be merged again.
    for n_changes in (40, 600, 5):
        for row in rng.choice(len(fleet), n_changes, replace=False):
            miner_id = fleet[int(row)].miner_id
            if miner_id in index:
                new_eta = (
                    float(rng.integers(1, 60) * 10 if coarse else rng.random() * 600)
                    if rng.random() < 0.9
                    else 0.5
                )
                index.update_status(miner_id, eta_ms=new_eta, queue_len=int(rng.integers(0, 2)))
        check_large(index, rng)
    # Registering again without an eta makes a known eta unknown: a few are ranked on the side, hundreds
    # are merged into the order, at its end.
    for n_changes in (30, 300):
        for row in rng.choice(len(fleet), n_changes, replace=False):
            index.upsert(replace(fleet[int(row)], eta_ms=None))
        check_large(index, rng)
    for row in rng.choice(len(fleet), 200, replace=False):
        index.remove(fleet[int(row)].miner_id)
    for m in large_fleet(rng, 150, coarse=coarse):
        index.upsert(replace(m, miner_id="new-" + m.miner_id))
    check_large(index, rng)


def test_hundreds_of_etas_moved_between_the_same_two_ranks_stay_exact() -> None:
    # Fewer moved etas than merge the order again (a 64th of 20,000), all between the same two ordered
    # etas: more than the byte of counts their ranks are summed in could hold.
    rng = np.random.default_rng(5)
    fleet = large_fleet(rng, 20_000, coarse=False)
    index = MinerIndex()
    for m in fleet:
        index.upsert(m)
    # A top long enough to hold miners slower than the moved ones, whose ranks count them all.
    query = MatchQuery("sparse", None, Requirements(min_vram_gb=16.0), Hints(region="eu"), top_k=3000)
    index.match(query, NOW, DEFAULT_WEIGHTS, NO_EXPLORATION)
    eligible = reference(fleet, query, DEFAULT_WEIGHTS).ranked
    moved = {eligible[int(i)] for i in rng.choice(len(eligible), 300, replace=False)}
    for miner_id in moved:
        index.update_status(miner_id, eta_ms=0.5)
    current = [m for m in (index.get(i) for i in index.miner_ids()) if m is not None]
    ref = reference(current, query, DEFAULT_WEIGHTS)
    result = index.match(query, NOW, DEFAULT_WEIGHTS, NO_EXPLORATION)
    assert [c.miner_id for c in result.candidates] == ref.ranked[: query.top_k]
    for c in result.candidates:
        assert c.score == pytest.approx(round(ref.score[c.miner_id], 6), abs=1e-9)
    slow = next(m for m in ref.ranked[::-1] if m in moved)
    explained = index.match(replace(query, explain_miner=slow), NOW, DEFAULT_WEIGHTS, NO_EXPLORATION)
    assert explained.miner_explanation is not None
    assert explained.miner_explanation.rank == ref.ranked.index(slow) + 1


def test_capabilities_held_by_thousands_stay_exact_as_miners_gain_and_lose_them() -> None:
    # Enough holders of one capability to cross the bound where the index keeps it as a column of flags,
    # then shed and regain holders across it, checking the counts and cap terms each time.
    rng = np.random.default_rng(4)
    fleet = [
        replace(m, capabilities=("x", "y") if i % 3 else ("x",))
        for i, m in enumerate(large_fleet(rng, 3000, coarse=True))
    ]
    index = MinerIndex()
    for m in fleet:
        index.upsert(m)
    queries = [
        MatchQuery("one", None, Requirements(capabilities_any=("y",)), Hints(), top_k=5),
        MatchQuery("two", None, Requirements(capabilities_any=("x", "y", "w")), Hints(region="eu"), top_k=9),
    ]

    def check() -> None:
        current = [m for m in (index.get(i) for i in index.miner_ids()) if m is not None]
        for query in queries:
            ref = reference(current, query, DEFAULT_WEIGHTS)
            result = index.match(query, NOW, DEFAULT_WEIGHTS, NO_EXPLORATION)
            assert result.rejections == ref.rejections, query.job_id
            assert [c.miner_id for c in result.candidates] == ref.ranked[: query.top_k], query.job_id

    check()
    for keep in (2600, 700, 300, 2900):
        for i, m in enumerate(fleet):
            index.upsert(replace(m, capabilities=("x", "y") if i < keep else ("x",)))
        check()
