"""How each paid usage was paid (from escrow, as debt) and the chain heads the workers saw.

``usage_events`` and ``settled_usages`` get ``paid_from_escrow`` and ``recorded_as_debt``
(null where unknown: rows settled before this revision, or not paid); ``chain_heads`` keeps
the latest block each settlement worker read, so the API can tell that an accepted usage waits
for the chain's clock without asking the chain.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UInt256 = sa.String(length=78)
Timestamp = sa.DateTime(timezone=True)
_SPLIT = ("paid_from_escrow", "recorded_as_debt")


def upgrade() -> None:
    for table in ("usage_events", "settled_usages"):
        with op.batch_alter_table(table) as batch:
            for column in _SPLIT:
                batch.add_column(sa.Column(column, UInt256, nullable=True))
    op.create_table(
        "chain_heads",
        sa.Column("relayer", sa.String(length=42), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_time", Timestamp, nullable=False),
        sa.Column("seen_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("relayer", name=op.f("pk_chain_heads")),
    )


def downgrade() -> None:
    op.drop_table("chain_heads")
    for table in ("settled_usages", "usage_events"):
        with op.batch_alter_table(table) as batch:
            for column in reversed(_SPLIT):
                batch.drop_column(column)
