"""Matches that rank only the contenders' etas, against the full ranking that explaining a miner does."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import numpy as np
import pytest

from poolhub.domain.matching import (
    DEFAULT_WEIGHTS,
    ExplorationPolicy,
    Hints,
    IndexedMiner,
    MatchQuery,
    MinerIndex,
    Requirements,
    Weights,
)

NOW = 1_000.0
WEIGHTS = [DEFAULT_WEIGHTS, Weights(0.1, 0.1, 0.6, 0.1, 0.1), Weights(0.0, 0.5, 0.5, 0.0, 0.0)]


def fleet(n: int, rng: np.random.Generator) -> MinerIndex:
    """Coarse etas and prices, so that ties are common, and some miners penalised or with no eta."""
    index = MinerIndex(contenders_from_rows=0)
    for i in range(n):
        index.upsert(
            IndexedMiner(
                miner_id=f"m-{i:05d}",
                addr="10.0.0.1:9000",
                proto="grpc",
                gpu_vram_gb=float(rng.choice([8.0, 24.0])),
                ram_gb=32.0,
                accel="cuda",
                region=str(rng.choice(["eu", "us"])),
                tags=(),
                capabilities=tuple(str(c) for c in rng.choice(["x", "y", "z"], int(rng.integers(1, 3)))),
                price=Decimal(int(rng.integers(1, 20))).scaleb(-1),
                max_parallel=4,
                queue_len=int(rng.integers(0, 4)),
                busy=False,
                lease_expires_at=NOW + 60.0 if rng.random() < 0.95 else NOW - 1.0,
                eta_ms=None if rng.random() < 0.2 else float(rng.integers(10, 60) * 10),
                # Trusts a hair apart give scores that differ but round level.
                trust=float(rng.choice([0.5, 0.8, 0.800001, 0.8000025, 0.9])),
                trust_samples=float(rng.choice([1.0, 20.0])),
                sla_penalty=1.0 if rng.random() < 0.95 else 0.5,
            )
        )
    return index


def queries(rng: np.random.Generator) -> list[MatchQuery]:
    out = []
    for i in range(60):
        out.append(
            MatchQuery(
                job_id=f"job-{i}",
                tenant_id=None,
                requirements=Requirements(
                    min_vram_gb=24.0 if rng.random() < 0.3 else None,
                    capabilities_any=("x", "y") if rng.random() < 0.3 else None,
                ),
                hints=Hints(
                    region="eu" if rng.random() < 0.2 else None,
                    max_price=Decimal("1.5") if rng.random() < 0.3 else None,
                ),
                top_k=int(rng.choice([1, 3, 10, 40])),
            )
        )
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_candidates_rank_and_score_as_the_full_ranking_does(seed: int) -> None:
    rng = np.random.default_rng(seed)
    index = fleet(3000, rng)
    policy = ExplorationPolicy(share=0.2, max_samples=5.0)
    for i, query in enumerate(queries(rng)):
        # Heartbeats between matches move etas, so the eta order always has rows out of place.
        for row in rng.integers(0, 3000, 5):
            index.update_status(f"m-{int(row):05d}", eta_ms=float(rng.integers(10, 60) * 10))
        weights = WEIGHTS[i % len(WEIGHTS)]
        result = index.match(query, NOW, weights, policy)
        # Explaining a miner ranks every eligible miner in full.
        for place, candidate in enumerate(result.candidates):
            explained = index.match(replace(query, explain_miner=candidate.miner_id), NOW, weights, policy)
            assert explained.candidates == result.candidates
            explanation = explained.miner_explanation
            assert explanation is not None
            assert explanation.score == candidate.score
            if not any(c.exploration for c in result.candidates):
                assert explanation.rank == place + 1
