"""AITBC miners: index on miners.api_key_hash (beats with the API key), miner_status.gpu_utilization_pct

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 11:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("miners", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_miners_api_key_hash"), ["api_key_hash"], unique=False)
    with op.batch_alter_table("miner_status", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gpu_utilization_pct", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("miner_status", schema=None) as batch_op:
        batch_op.drop_column("gpu_utilization_pct")
    with op.batch_alter_table("miners", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_miners_api_key_hash"))
