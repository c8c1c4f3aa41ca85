"""billing claims and block state, scheduler tick completion and job leases, violation metadata,
retention indexes

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 11:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import advanced_alchemy.types
import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text  # noqa: F401
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UTC = advanced_alchemy.types.datetime.DateTimeUTC(timezone=True)


def _json() -> sa.types.TypeEngine[object]:
    return (
        sa.JSON()
        .with_variant(postgresql.JSONB(astext_type=sa.Text()), "cockroachdb")
        .with_variant(advanced_alchemy.types.json.ORA_JSONB(), "oracle")
        .with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
    )


def upgrade() -> None:
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("claimed_until", _UTC, nullable=True))

    with op.batch_alter_table("scheduler_ticks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("finished_at", _UTC, nullable=True))
    # Ticks claimed before this revision ran (or died) under the old rules: none of them runs again.
    op.execute("UPDATE scheduler_ticks SET finished_at = claimed_at")

    op.create_table(
        "job_leases",
        sa.Column("job", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=36), nullable=False),
        sa.Column("lease_until", _UTC, nullable=False),
        sa.PrimaryKeyConstraint("job", name=op.f("pk_job_leases")),
    )
    op.create_table(
        "billing_state",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("blocked_reason", sa.String(length=1024), nullable=True),
        sa.Column("changed_at", _UTC, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_billing_state")),
    )

    with op.batch_alter_table("sla_violations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("metadata", _json(), nullable=True))
        batch_op.create_index("ix_sla_violations_resolved_at", ["resolved_at"], unique=False)
    with op.batch_alter_table("miner_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_miner_sessions_expires_at", ["expires_at"], unique=False)
        batch_op.create_index("ix_miner_sessions_revoked_at", ["revoked_at"], unique=False)
    with op.batch_alter_table("presence_intervals", schema=None) as batch_op:
        batch_op.create_index("ix_presence_intervals_ended_at", ["ended_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("presence_intervals", schema=None) as batch_op:
        batch_op.drop_index("ix_presence_intervals_ended_at")
    with op.batch_alter_table("miner_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_miner_sessions_revoked_at")
        batch_op.drop_index("ix_miner_sessions_expires_at")
    with op.batch_alter_table("sla_violations", schema=None) as batch_op:
        batch_op.drop_index("ix_sla_violations_resolved_at")
        batch_op.drop_column("metadata")
    op.drop_table("billing_state")
    op.drop_table("job_leases")
    with op.batch_alter_table("scheduler_ticks", schema=None) as batch_op:
        batch_op.drop_column("finished_at")
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_column("claimed_until")
        batch_op.drop_column("claimed_by")
