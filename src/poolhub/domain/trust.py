"""Trust: a Beta reputation whose evidence is forgotten exponentially with age."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from poolhub.domain.model import Trust


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    FAILED = "failed"
    COMPLETED = "completed"


@dataclass(frozen=True, slots=True)
class TrustPolicy:
    """Beta(1 + s, 1 + f): the prior mean is 0.5 and is worth two observations.

    A rejection is weaker evidence than a failure: the miner declined rather than broke a promise.
    """

    half_life_hours: float = 168.0
    rejected_weight: float = 0.5
    failed_weight: float = 1.0
    completed_weight: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.half_life_hours) and self.half_life_hours > 0):
            raise ValueError("half_life_hours must be a positive number")

    def decayed(self, trust: Trust, now: datetime) -> Trust:
        if trust.as_of is None or now <= trust.as_of:
            return Trust(trust.successes, trust.failures, trust.as_of or now)
        hours = (now - trust.as_of).total_seconds() / 3600.0
        factor = 0.5 ** (hours / self.half_life_hours)
        return Trust(trust.successes * factor, trust.failures * factor, now)

    def observe(self, trust: Trust, outcome: Outcome, now: datetime) -> Trust:
        current = self.decayed(trust, now)
        if outcome is Outcome.COMPLETED:
            return Trust(current.successes + self.completed_weight, current.failures, now)
        if outcome is Outcome.FAILED:
            return Trust(current.successes, current.failures + self.failed_weight, now)
        if outcome is Outcome.REJECTED:
            return Trust(current.successes, current.failures + self.rejected_weight, now)
        return current

    def score(self, trust: Trust, now: datetime) -> float:
        """Posterior mean; drifts back toward 0.5 as the evidence ages."""
        current = self.decayed(trust, now)
        return (1.0 + current.successes) / (2.0 + current.successes + current.failures)

    def samples(self, trust: Trust, now: datetime) -> float:
        """How much (decayed) evidence stands behind the score."""
        current = self.decayed(trust, now)
        return current.successes + current.failures
