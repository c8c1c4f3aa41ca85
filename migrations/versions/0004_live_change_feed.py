"""live change feed (a monotonic sequence of committed directory changes) and match-record watermarks

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 11:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import advanced_alchemy.types
import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text  # noqa: F401

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "live_changes",
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("miner_id", sa.String(length=64), nullable=True),
        sa.Column("origin", sa.String(length=36), nullable=False),
        sa.Column("created_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_live_changes")),
    )
    with op.batch_alter_table("live_changes", schema=None) as batch_op:
        batch_op.create_index("ix_live_changes_created_at", ["created_at"], unique=False)
    op.create_table(
        "live_processes",
        sa.Column("origin", sa.String(length=36), nullable=False),
        sa.Column(
            "matches_saved_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False
        ),
        sa.Column("seen_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("origin", name=op.f("pk_live_processes")),
    )


def downgrade() -> None:
    op.drop_table("live_processes")
    with op.batch_alter_table("live_changes", schema=None) as batch_op:
        batch_op.drop_index("ix_live_changes_created_at")
    op.drop_table("live_changes")
