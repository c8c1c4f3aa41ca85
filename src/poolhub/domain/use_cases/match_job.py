"""Answer "which miners should run this job?" from the in-memory index; no database round trip."""

from __future__ import annotations

from dataclasses import dataclass

from poolhub.domain.matching import ExplorationPolicy, MatchQuery, MatchResult, Weights
from poolhub.domain.ports import Clock, LiveState, MatchRecord


@dataclass(frozen=True, slots=True)
class MatchPolicy:
    weights: Weights
    exploration: ExplorationPolicy


class MatchJob:
    """Filter, score and rank the online miners; the answer is queued for the audit log (saved within 1 s)."""

    def __init__(self, directory: LiveState, policy: MatchPolicy, clock: Clock) -> None:
        self._directory = directory
        self._policy = policy
        self._clock = clock

    def execute(self, query: MatchQuery, request: dict[str, object]) -> MatchResult:
        now = self._clock.now()
        result = self._directory.index.match(
            query, now.timestamp(), self._policy.weights, self._policy.exploration
        )
        self._directory.record_match(
            MatchRecord(
                job_id=query.job_id,
                tenant_id=query.tenant_id,
                requested_at=now,
                request=request,
                candidates=[
                    {
                        "miner_id": c.miner_id,
                        "score": c.score,
                        "price": str(c.price),
                        "eta_ms": c.eta_ms,
                        "exploration": c.exploration,
                    }
                    for c in result.candidates
                ],
                explain=result.explain,
                considered=result.considered,
                returned=len(result.candidates),
            )
        )
        return result
