"""Owner actions relayed by the bridge (signed grant, revoke, pause, payees; payouts).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

Id64 = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "owner_actions",
        sa.Column("id", Id64, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("signer", sa.String(42), nullable=False),
        sa.Column("twin_id", sa.BigInteger(), nullable=True),
        sa.Column("nonce", sa.BigInteger(), nullable=True),
        sa.Column("deadline", sa.BigInteger(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("signature", sa.Text(), nullable=True),
        sa.Column("digest", sa.String(66), nullable=False),
        sa.Column("calldata", sa.Text(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "accepted",
                "failed",
                native_enum=False,
                create_constraint=True,
                length=16,
                name="action_status",
            ),
            nullable=False,
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "batch_id",
            Id64,
            sa.ForeignKey(
                "settlement_batches.id", name=op.f("fk_owner_actions_batch_id_settlement_batches")
            ),
            nullable=True,
        ),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_owner_actions")),
        sa.UniqueConstraint("digest", name=op.f("uq_owner_actions_digest")),
    )
    op.create_index(op.f("ix_owner_actions_status_id"), "owner_actions", ["status", "id"])
    op.create_index(op.f("ix_owner_actions_signer_nonce"), "owner_actions", ["signer", "nonce"])
    op.create_index(op.f("ix_owner_actions_batch_id"), "owner_actions", ["batch_id"])


def downgrade() -> None:
    op.drop_table("owner_actions")
