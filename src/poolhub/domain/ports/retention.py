"""Retention: deleting history that has aged out, in bounded batches."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Protocol


class HistoryKind(StrEnum):
    """What retention prunes. The usage ledger is not one of them: it is never pruned."""

    MATCH_RECORDS = "match_records"
    SESSIONS = "sessions"
    PRESENCE_INTERVALS = "presence_intervals"
    SLA_METRICS = "sla_metrics"
    RESOLVED_VIOLATIONS = "resolved_violations"
    CAPACITY_SNAPSHOTS = "capacity_snapshots"


class HistoryStore(Protocol):
    """Deletes aged-out history. Never commits."""

    async def prune(self, kind: HistoryKind, before: datetime, limit: int) -> int:
        """Delete at most `limit` rows of `kind` that aged out before `before`: match records requested,
        sessions expired or revoked, presence intervals closed, metrics and snapshots taken, violations
        resolved before then. Returns how many went."""
        ...
