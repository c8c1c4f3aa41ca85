"""Matching a job to miners: hard filters, a weighted score and a vectorised in-memory index."""

from poolhub.domain.matching.explain import failed_constraints, rejection_explain, terms_explain
from poolhub.domain.matching.index import MinerIndex
from poolhub.domain.matching.values import (
    DEFAULT_EXPLORATION,
    DEFAULT_WEIGHTS,
    REJECTION_REASONS,
    Candidate,
    ExplorationPolicy,
    Hints,
    IndexedMiner,
    MatchQuery,
    MatchResult,
    MinerExplanation,
    Requirements,
    ScoreTerms,
    Weights,
)

__all__ = [
    "DEFAULT_EXPLORATION",
    "DEFAULT_WEIGHTS",
    "REJECTION_REASONS",
    "Candidate",
    "ExplorationPolicy",
    "Hints",
    "IndexedMiner",
    "MatchQuery",
    "MatchResult",
    "MinerExplanation",
    "MinerIndex",
    "Requirements",
    "ScoreTerms",
    "Weights",
    "failed_constraints",
    "rejection_explain",
    "terms_explain",
]
