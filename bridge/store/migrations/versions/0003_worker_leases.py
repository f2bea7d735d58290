"""Worker leases: one active settlement worker per relayer key.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "worker_leases",
        sa.Column("relayer", sa.String(length=42), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
        sa.Column("acquired_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("relayer", name=op.f("pk_worker_leases")),
    )


def downgrade() -> None:
    op.drop_table("worker_leases")
