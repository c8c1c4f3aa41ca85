"""SLA and capacity: the facts a collection reads, what it stores, and the read models of both."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from poolhub.domain.capacity import CapacitySnapshotValues
from poolhub.domain.sla import Interval, LatencyStats, Measurement, OpenViolation, Severity


@dataclass(frozen=True, slots=True)
class MinerSlaFacts:
    """What one collection needs to know of a registered miner: its age, its slots and its lease."""

    miner_id: str
    registered_at: datetime
    max_parallel: int
    queue_len: int
    busy: bool
    last_beat_at: datetime
    logged_out_at: datetime | None


@dataclass(frozen=True, slots=True)
class FeedbackWindowStats:
    """One miner's feedback in a window: completed and failed outcomes and the latency summary."""

    miner_id: str
    completed: int
    failed: int
    latency: LatencyStats | None


@dataclass(frozen=True, slots=True)
class StoredMetric:
    id: int
    miner_id: str | None
    metric_type: str
    metric_value: float
    threshold: float
    is_violation: bool
    timestamp: datetime
    metadata: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class StoredViolation:
    id: int
    miner_id: str | None
    violation_type: str
    severity: str
    metric_value: float
    threshold: float
    created_at: datetime
    resolved_at: datetime | None
    duration_sec: float | None
    metadata: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OpenViolationKey:
    """Who has an open violation of which type, and how bad it is (for penalties and the status)."""

    miner_id: str | None
    violation_type: str
    severity: str


@dataclass(frozen=True, slots=True)
class StoredSnapshot:
    id: int
    timestamp: datetime
    values: CapacitySnapshotValues


class SlaRepository(Protocol):
    """SLA inputs (miners, presence, feedback) read set-based; SLA metrics and violations. Never commits."""

    async def miner_exists(self, miner_id: str) -> bool: ...

    async def miner_facts(self) -> list[MinerSlaFacts]:
        """Every registered miner, in one query."""

    async def presence(self, since: datetime, until: datetime) -> dict[str, list[Interval]]:
        """Online intervals overlapping [since, until], by miner, in one query."""

    async def feedback_stats(self, since: datetime, until: datetime) -> list[FeedbackWindowStats]:
        """Per-miner outcome counts and latency summary of the feedback created in [since, until].

        Set-based: a fixed number of queries whatever the number of miners. Miners without feedback in
        the window are absent; `latency` is None for a miner whose feedback carries no latency.
        """

    async def add_metrics(self, measurements: Sequence[Measurement], at: datetime) -> int:
        """Insert the measurements as metrics stamped `at`, in one batched statement; returns the count."""

    async def metrics(
        self, *, since: datetime, miner_id: str | None, offset: int, limit: int
    ) -> tuple[list[StoredMetric], int]:
        """Metrics stamped at or after `since`, newest first (one miner's, or all with miner_id None)."""

    async def count_metrics_since(self, since: datetime) -> int: ...

    async def open_violations(self) -> list[OpenViolation]: ...

    async def open_violation_keys(self) -> list[OpenViolationKey]: ...

    async def open_new_violations(
        self, breaches: Sequence[tuple[Measurement, Severity]], now: datetime
    ) -> int:
        """Open one violation per breach; a (miner or pool, type) that already has an open violation is
        skipped (the database's partial unique index decides, so concurrent collections cannot
        duplicate). Returns how many were opened."""

    async def refresh_violations(
        self, updates: Sequence[tuple[str, Measurement, Severity]], now: datetime
    ) -> None:
        """Set the latest measured value, threshold and severity of these open violations (by id)."""

    async def resolve_violations(
        self, resolutions: Sequence[tuple[str, datetime, float]], metadata: Mapping[str, str] | None = None
    ) -> int:
        """Close these violations (id, resolved_at, duration_sec) if still open, with `metadata` (why)
        stored on each; returns how many closed."""

    async def violations(
        self,
        *,
        miner_id: str | None,
        resolved: bool,
        offset: int,
        limit: int,
        violation_type: str | None = None,
        severity: str | None = None,
    ) -> tuple[list[StoredViolation], int]:
        """Open (resolved False) or resolved violations, newest first, with the total count; optionally
        only of one type or severity."""


class CapacityRepository(Protocol):
    """Capacity snapshots and the slot sizes of the pool's miners. Never commits."""

    async def add_snapshot(self, values: CapacitySnapshotValues, at: datetime) -> StoredSnapshot: ...

    async def add_snapshots(self, snapshots: Sequence[tuple[datetime, CapacitySnapshotValues]]) -> int:
        """Bulk insert (seeding); returns the count."""

    async def delete_snapshots(self) -> int: ...

    async def snapshots(
        self, *, since: datetime, offset: int, limit: int
    ) -> tuple[list[StoredSnapshot], int]:
        """Snapshots taken at or after `since`, newest first, with the total count."""

    async def latest_snapshot(self) -> StoredSnapshot | None: ...

    async def hourly_utilization(self, since: datetime, until: datetime) -> list[tuple[datetime, float]]:
        """Mean utilisation % per UTC hour of the snapshots in [since, until], oldest first.

        Each item is (start of the hour, mean of its snapshots): aggregated in the database so 90 days of
        snapshots every few minutes cost a couple of thousand rows.
        """

    async def miner_slot_sizes(self) -> list[int]:
        """`max_parallel` of every registered miner."""
