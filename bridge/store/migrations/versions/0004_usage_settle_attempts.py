"""Settlement attempts of a usage, its last error and the terminal-but-visible status ``held``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_CHECK = "ck_usage_events_usage_status"
_OLD = ("accepted", "submitted", "settled", "rejected")
_NEW = (*_OLD, "held")


def _in(values: tuple[str, ...]) -> str:
    return "status IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    # Batch mode: SQLite alters a CHECK constraint by copying the table.
    with op.batch_alter_table("usage_events") as batch:
        batch.add_column(
            sa.Column("settle_attempts", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch.drop_constraint(op.f(_CHECK), type_="check")
        batch.create_check_constraint(op.f(_CHECK), _in(_NEW))


def downgrade() -> None:
    op.execute("UPDATE usage_events SET status = 'accepted' WHERE status = 'held'")
    with op.batch_alter_table("usage_events") as batch:
        batch.drop_constraint(op.f(_CHECK), type_="check")
        batch.create_check_constraint(op.f(_CHECK), _in(_OLD))
        batch.drop_column("last_error")
        batch.drop_column("settle_attempts")
