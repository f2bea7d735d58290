"""Settlement batches, relayer nonces and the batch of each usage.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Id64 = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "settlement_batches",
        sa.Column("id", Id64, autoincrement=True, nullable=False),
        sa.Column("relayer", sa.String(length=42), nullable=False),
        sa.Column("nonce", sa.BigInteger(), nullable=False),
        sa.Column("digest", sa.String(length=66), nullable=False),
        sa.Column("deadline", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("raw_tx", sa.Text(), nullable=False),
        sa.Column("tx_hash", sa.String(length=66), nullable=False),
        sa.Column("tx_hashes", sa.Text(), nullable=False),
        sa.Column("gas_limit", sa.BigInteger(), nullable=False),
        sa.Column("max_fee_per_gas", sa.String(length=78), nullable=False),
        sa.Column("max_priority_fee_per_gas", sa.String(length=78), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "signed",
                "sent",
                "mined",
                "confirmed",
                "failed",
                name="batch_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("block_hash", sa.String(length=66), nullable=True),
        sa.Column("gas_used", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("sent_at", Timestamp, nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_batches")),
    )
    op.create_index(op.f("ix_settlement_batches_digest"), "settlement_batches", ["digest"])
    op.create_index(op.f("ix_settlement_batches_status_id"), "settlement_batches", ["status", "id"])
    op.create_table(
        "relayer_nonces",
        sa.Column("address", sa.String(length=42), nullable=False),
        sa.Column("next_nonce", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("address", name=op.f("pk_relayer_nonces")),
    )
    with op.batch_alter_table("usage_events") as batch:
        batch.add_column(sa.Column("batch_id", Id64, nullable=True))
        batch.create_foreign_key(
            op.f("fk_usage_events_batch_id_settlement_batches"),
            "settlement_batches",
            ["batch_id"],
            ["id"],
        )
        batch.create_index(op.f("ix_usage_events_batch_id"), ["batch_id"])


def downgrade() -> None:
    with op.batch_alter_table("usage_events") as batch:
        batch.drop_index(op.f("ix_usage_events_batch_id"))
        batch.drop_constraint(
            op.f("fk_usage_events_batch_id_settlement_batches"), type_="foreignkey"
        )
        batch.drop_column("batch_id")
    op.drop_table("relayer_nonces")
    op.drop_index(op.f("ix_settlement_batches_status_id"), table_name="settlement_batches")
    op.drop_index(op.f("ix_settlement_batches_digest"), table_name="settlement_batches")
    op.drop_table("settlement_batches")
