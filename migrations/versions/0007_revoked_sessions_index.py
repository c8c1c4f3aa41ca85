"""miner_sessions.revoked_at index holds revoked tokens only (partial), so live-token lookups use miner_id

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 14:15:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_REVOKED = sa.text("revoked_at IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("miner_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_miner_sessions_revoked_at")
        batch_op.create_index(
            "ix_miner_sessions_revoked_at",
            ["revoked_at"],
            unique=False,
            postgresql_where=_REVOKED,
            sqlite_where=_REVOKED,
        )


def downgrade() -> None:
    with op.batch_alter_table("miner_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_miner_sessions_revoked_at")
        batch_op.create_index("ix_miner_sessions_revoked_at", ["revoked_at"], unique=False)
