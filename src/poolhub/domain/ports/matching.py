"""Answered match requests and the feedback on them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class FeedbackEntry:
    job_id: str
    miner_id: str
    outcome: str
    created_at: datetime
    latency_ms: float | None = None
    duration_ms: float | None = None
    fail_code: str | None = None
    tokens_spent: float | None = None
    tenant_id: str | None = None


class FeedbackRepository(Protocol):
    """Durable feedback; (job_id, miner_id, outcome) is unique in the database. Never commits."""

    async def add(self, entry: FeedbackEntry) -> bool:
        """Insert unless the same (job_id, miner_id, outcome) exists; True when it was new."""


@dataclass(frozen=True, slots=True)
class MatchRecord:
    job_id: str
    tenant_id: str | None
    requested_at: datetime
    request: Mapping[str, object]
    candidates: Sequence[Mapping[str, object]]
    explain: str
    considered: int
    returned: int


class MatchRecordRepository(Protocol):
    """Answered match requests (audit, SLA, api_calls billing). Never commits."""

    async def add_many(self, records: Sequence[MatchRecord]) -> None: ...

    async def tenant_of_job(self, job_id: str) -> str | None:
        """The tenant named by the newest match request for this job, if any."""
