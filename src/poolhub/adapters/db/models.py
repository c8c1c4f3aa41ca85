"""ORM models; they never leave the adapters package."""

from __future__ import annotations

from datetime import datetime

from advanced_alchemy.base import BigIntBase, DefaultBase
from advanced_alchemy.types import DateTimeUTC, JsonB
from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

# Exact decimal text: SQLite has no decimal type, and prices are never summed in SQL.
PRICE = String(40)


class MinerRow(DefaultBase):
    __tablename__ = "miners"

    miner_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Indexed: miners that keep no session (AITBC) beat with their API key, found by its hash.
    api_key_hash: Mapped[str] = mapped_column(String(64), index=True)
    addr: Mapped[str] = mapped_column(String(256))
    proto: Mapped[str] = mapped_column(String(32))
    gpu_name: Mapped[str | None] = mapped_column(String(128), nullable=True)
    gpu_vram_gb: Mapped[float] = mapped_column(Float)
    gpu_count: Mapped[int] = mapped_column(Integer)
    cpu_cores: Mapped[int] = mapped_column(Integer)
    ram_gb: Mapped[float] = mapped_column(Float)
    accel: Mapped[str] = mapped_column(String(32))
    price_token_per_ksec: Mapped[str] = mapped_column(PRICE)
    max_parallel: Mapped[int] = mapped_column(Integer)
    region: Mapped[str | None] = mapped_column(String(64), nullable=True)
    tags: Mapped[list[str]] = mapped_column(JsonB)
    capabilities: Mapped[list[str]] = mapped_column(JsonB)
    trust_successes: Mapped[float] = mapped_column(Float, default=0.0)
    trust_failures: Mapped[float] = mapped_column(Float, default=0.0)
    trust_as_of: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)
    registered_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True), index=True)


class MinerStatusRow(DefaultBase):
    __tablename__ = "miner_status"

    miner_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("miners.miner_id", ondelete="CASCADE"), primary_key=True
    )
    last_beat_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    online_since: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)
    logged_out_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)
    # The newer of last beat and logout: a delayed batched write must never overwrite a newer state.
    event_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    lease_expires_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    queue_len: Mapped[int] = mapped_column(Integer, default=0)
    busy: Mapped[bool] = mapped_column(Boolean, default=False)
    current_jobs: Mapped[list[str]] = mapped_column(JsonB)
    avg_latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    temp_c: Mapped[float | None] = mapped_column(Float, nullable=True)
    mem_free_gb: Mapped[float | None] = mapped_column(Float, nullable=True)
    gpu_utilization_pct: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Which process wrote the row last: a process's refresh skips its own batched writes.
    written_by: Mapped[str] = mapped_column(String(36))
    updated_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True), index=True)


class SessionRow(DefaultBase):
    __tablename__ = "miner_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    miner_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("miners.miner_id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True), index=True)


class PresenceIntervalRow(BigIntBase):
    __tablename__ = "presence_intervals"
    __table_args__ = (
        UniqueConstraint("miner_id", "started_at", name="uq_presence_intervals_miner_start"),
        Index("ix_presence_intervals_miner_end", "miner_id", "ended_at"),
    )

    miner_id: Mapped[str] = mapped_column(String(64), ForeignKey("miners.miner_id", ondelete="CASCADE"))
    started_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    ended_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))


class FeedbackRow(BigIntBase):
    """The coordinator's word on a job; (job_id, miner_id, outcome) happens once."""

    __tablename__ = "feedback"
    __table_args__ = (
        UniqueConstraint("job_id", "miner_id", "outcome", name="uq_feedback_job_miner_outcome"),
        Index("ix_feedback_miner_created", "miner_id", "created_at"),
        Index("ix_feedback_created", "created_at"),
    )

    job_id: Mapped[str] = mapped_column(String(64))
    miner_id: Mapped[str] = mapped_column(String(64), ForeignKey("miners.miner_id", ondelete="CASCADE"))
    outcome: Mapped[str] = mapped_column(String(16))
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    duration_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    fail_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    tokens_spent: Mapped[float | None] = mapped_column(Float, nullable=True)
    tenant_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))


class MatchRecordRow(BigIntBase):
    """One answered match request, kept for SLA, billing (api_calls) and audit; written in batches."""

    __tablename__ = "match_records"
    __table_args__ = (
        Index("ix_match_records_job", "job_id"),
        Index("ix_match_records_tenant_requested", "tenant_id", "requested_at"),
        Index("ix_match_records_requested", "requested_at"),
    )

    job_id: Mapped[str] = mapped_column(String(64))
    tenant_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    requested_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    request: Mapped[dict[str, object]] = mapped_column(JsonB)
    candidates: Mapped[list[dict[str, object]]] = mapped_column(JsonB)
    explain: Mapped[str] = mapped_column(String(2048))
    considered: Mapped[int] = mapped_column(Integer)
    returned: Mapped[int] = mapped_column(Integer)


class UsageRecordRow(BigIntBase):
    """The usage ledger. Quantities and amounts are scaled integers so sums are exact on every database."""

    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_records_status_next", "status", "next_attempt_at"),
        Index("ix_usage_records_tenant_end", "tenant_id", "usage_end"),
        Index("ix_usage_records_usage_end", "usage_end"),
    )

    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    miner_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    resource_type: Mapped[str] = mapped_column(String(32))
    unit: Mapped[str] = mapped_column(String(16))
    quantity_e12: Mapped[int] = mapped_column(BigInteger)
    unit_price: Mapped[str] = mapped_column(PRICE)
    amount_e8: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(8))
    usage_start: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    usage_end: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    job_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    metadata_: Mapped[dict[str, object]] = mapped_column("metadata", JsonB)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    # pending → synced, or → rejected (kept with its reason, never retried automatically)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    synced_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)
    # A sync run's claim on a pending line, committed before it is sent: no other run sends it until
    # `claimed_until`, and a claimer that died loses it then.
    claimed_by: Mapped[str | None] = mapped_column(String(36), nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)


class SchedulerTickRow(DefaultBase):
    """One row per (job, tick): the primary key lets exactly one process claim each scheduled run."""

    __tablename__ = "scheduler_ticks"

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    tick_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True), primary_key=True)
    claimed_by: Mapped[str] = mapped_column(String(36))
    claimed_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    # NULL until the job ran to its end: a tick whose job crashed is run again.
    finished_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)


class JobLeaseRow(DefaultBase):
    """Who runs a periodic job right now (scheduled or by hand), until when; renewed while it runs."""

    __tablename__ = "job_leases"

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(36))
    lease_until: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))


class BillingStateRow(DefaultBase):
    """Shared billing state: why the last sync run was blocked by the coordinator (NULL: it was not)."""

    __tablename__ = "billing_state"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    blocked_reason: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    changed_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))


class LiveChangeRow(DefaultBase):
    """The cross-process change feed: one row per committed directory change, in commit order.

    Written in the transaction of the change it announces, after taking a transaction-scoped lock, so
    sequence order is commit order and a reader asking for "seq > last seen" can never skip a commit.
    """

    __tablename__ = "live_changes"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    miner_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The LiveDirectory instance that wrote it: a reader skips its own changes (already applied).
    origin: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True), index=True)


class LiveProcessRow(DefaultBase):
    """Each serving process's match-record watermark: every match it answered before
    `matches_saved_at` is saved. Feedback for a job no process has saved yet waits on laggards only."""

    __tablename__ = "live_processes"

    origin: Mapped[str] = mapped_column(String(36), primary_key=True)
    matches_saved_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    seen_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))


# Retention prunes by these columns in bounded batches (declared here, beside the tables they index).
Index("ix_miner_sessions_expires_at", SessionRow.expires_at)
# Revoked tokens only: retention asks for old revoked ones, and with live tokens (NULL) in the index the
# planner, before the table's first ANALYZE, revoked a registering miner's tokens by scanning every live
# token instead of using the miner_id index (a batch's cost grew with the fleet).
Index(
    "ix_miner_sessions_revoked_at",
    SessionRow.revoked_at,
    postgresql_where=SessionRow.revoked_at.is_not(None),
    sqlite_where=SessionRow.revoked_at.is_not(None),
)
Index("ix_presence_intervals_ended_at", PresenceIntervalRow.ended_at)
