"""ORM models of SLA metrics, SLA violations and capacity snapshots; they never leave the adapters package."""

from __future__ import annotations

from datetime import datetime

from advanced_alchemy.base import BigIntBase
from advanced_alchemy.types import DateTimeUTC, JsonB
from sqlalchemy import Boolean, CheckConstraint, Float, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

# The `subject` of a pool-wide violation. '@' is not allowed in a miner id, so no miner can collide with it.
POOL_SUBJECT = "@pool"

_OPEN = text("resolved_at IS NULL")


class SlaMetricRow(BigIntBase):
    """One measured metric of one collection; `miner_id` NULL for pool-wide metrics."""

    __tablename__ = "sla_metrics"
    __table_args__ = (
        Index("ix_sla_metrics_timestamp", "timestamp"),
        Index("ix_sla_metrics_miner_timestamp", "miner_id", "timestamp"),
    )

    miner_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("miners.miner_id", ondelete="CASCADE"), nullable=True
    )
    metric_type: Mapped[str] = mapped_column(String(32))
    metric_value: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    is_violation: Mapped[bool] = mapped_column(Boolean)
    timestamp: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    metadata_: Mapped[dict[str, object]] = mapped_column("metadata", JsonB)


class SlaViolationRow(BigIntBase):
    """A breach with a lifecycle: open while `resolved_at` is NULL.

    The partial unique index on (subject, violation_type) WHERE resolved_at IS NULL is the database's
    guarantee of at most one open violation per (miner or pool, type); `subject` is the miner id, or
    POOL_SUBJECT for pool-wide violations (a NULL would never collide in a unique index), and the check
    constraint keeps it in step with `miner_id`.
    """

    __tablename__ = "sla_violations"
    __table_args__ = (
        Index(
            "uq_sla_violations_open",
            "subject",
            "violation_type",
            unique=True,
            postgresql_where=_OPEN,
            sqlite_where=_OPEN,
        ),
        Index("ix_sla_violations_created", "created_at"),
        Index("ix_sla_violations_miner_created", "miner_id", "created_at"),
        Index("ix_sla_violations_resolved_at", "resolved_at"),
        CheckConstraint(f"subject = COALESCE(miner_id, '{POOL_SUBJECT}')", name="subject_matches_miner"),
    )

    miner_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("miners.miner_id", ondelete="CASCADE"), nullable=True
    )
    subject: Mapped[str] = mapped_column(String(64))
    violation_type: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    metric_value: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)
    duration_sec: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Why it was resolved when that was not a recovery (e.g. no samples in the window); NULL otherwise.
    metadata_: Mapped[dict[str, object] | None] = mapped_column("metadata", JsonB, nullable=True)


class CapacitySnapshotRow(BigIntBase):
    """The pool's capacity at one instant (one per collection, or seeded)."""

    __tablename__ = "capacity_snapshots"
    __table_args__ = (Index("ix_capacity_snapshots_timestamp", "timestamp"),)

    timestamp: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    total_miners: Mapped[int] = mapped_column(Integer)
    online_miners: Mapped[int] = mapped_column(Integer)
    total_slots: Mapped[int] = mapped_column(Integer)
    used_slots: Mapped[int] = mapped_column(Integer)
    capacity_utilization_pct: Mapped[float] = mapped_column(Float)
    capacity_availability_pct: Mapped[float] = mapped_column(Float)
