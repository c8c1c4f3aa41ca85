"""Delivering ledger lines: how a coordinator answer is classified, its errors, and the retry backoff."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from poolhub.domain.errors import BillingRejectedError, BillingUnavailableError


class SyncOutcome(StrEnum):
    """What to do with a ledger line after one attempt to send it."""

    ACCEPTED = "accepted"
    RETRY = "retry"
    REJECTED = "rejected"
    BLOCKED = "blocked"


_RETRY_STATUSES = frozenset({408, 429})
# Only these say something about the record itself; any other refusal says the integration is wrong.
_REJECT_STATUSES = frozenset({400, 409, 422})


def classify_status(status_code: int | None) -> SyncOutcome:
    """2xx accepted; no answer (None: transport error, timeout), 408, 429, 5xx retry; 400, 409, 422
    rejected (the record is bad); anything else (401, 403, 404, 3xx, other 4xx) blocked: the coordinator's
    URL, key or routes are misconfigured, which no record can fix."""
    if status_code is None or status_code in _RETRY_STATUSES or 500 <= status_code <= 599:
        return SyncOutcome.RETRY
    if 200 <= status_code <= 299:
        return SyncOutcome.ACCEPTED
    if status_code in _REJECT_STATUSES:
        return SyncOutcome.REJECTED
    return SyncOutcome.BLOCKED


class BillingRetryableError(BillingUnavailableError):
    """The coordinator did not take the request this time; `status_code` is None when it never answered."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class BillingPermanentError(BillingRejectedError):
    """The coordinator refused the request for good; the message carries its status and reason."""

    def __init__(self, message: str, status_code: int, reason: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.reason = reason


class BillingMisconfiguredError(BillingPermanentError):
    """The coordinator answered as a misconfigured integration would (401, 403, 404, 3xx, …): a sync run
    stops and marks nothing, since the same answer would come for every record."""


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """How long to wait before the next attempt to send a line that failed `attempts` times."""

    base_seconds: float = 30.0
    factor: float = 2.0
    max_seconds: float = 3600.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        values = (self.base_seconds, self.factor, self.max_seconds, self.jitter)
        if not all(math.isfinite(v) for v in values):
            raise ValueError("backoff settings must be finite")
        if self.base_seconds < 0 or self.max_seconds < 0:
            raise ValueError("backoff base_seconds and max_seconds must be ≥ 0")
        if self.factor < 1:
            raise ValueError("backoff factor must be ≥ 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("backoff jitter must be within [0, 1]")

    def delay(self, attempts: int, random_unit: float) -> float:
        """base × factor^(attempts−1), capped at max_seconds, then scaled by 1 ± jitter and capped again.

        `random_unit` ∈ [0, 1) is the caller's random draw (0.5 means no jitter), so the result is
        deterministic for a given draw. Fewer than one failed attempt means no wait.
        """
        if not 0 <= random_unit < 1:
            raise ValueError(f"random_unit must be in [0, 1), got {random_unit}")
        if attempts < 1:
            return 0.0
        try:
            raw = self.base_seconds * self.factor ** (attempts - 1)
        except OverflowError:
            raw = math.inf
        capped = min(self.max_seconds, raw)
        jittered = capped * (1 + self.jitter * (2 * random_unit - 1))
        return max(0.0, min(self.max_seconds, jittered))
