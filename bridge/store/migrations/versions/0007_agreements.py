"""Licenses both parties agree to, brand spending limits and roles behind a delay: license offers
with their status and terms hash, accepted versions' terms hash and offered start, spending limit
and own-attester changes, the access manager's role events, and settled usages keyed by (usage id,
brand) (a brand's usage ids are its own on chain).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

Id64 = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)
UInt256 = sa.String(length=78)
Address = sa.String(length=42)
Hash = sa.String(length=66)
OFFER_STATUSES = ("pending", "accepted", "declined", "withdrawn")


def _event_log(table: str, *columns: sa.Column[object]) -> None:
    """A table with one row per event: id, ``columns``, where the event happened."""
    op.create_table(
        table,
        sa.Column("id", Id64, autoincrement=True, nullable=False),
        *columns,
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.Column("tx_hash", Hash, nullable=False),
        sa.Column("block_time", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
        sa.UniqueConstraint(
            "block_number", "log_index", name=op.f(f"uq_{table}_block_number_log_index")
        ),
    )


def _index(table: str, *columns: str) -> None:
    op.create_index(op.f(f"ix_{table}_{'_'.join(columns)}"), table, list(columns))


def upgrade() -> None:
    _event_log(
        "license_offers",
        sa.Column("twin_id", sa.BigInteger(), nullable=False),
        sa.Column("brand", Address, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("valid_from", sa.BigInteger(), nullable=False),
        sa.Column("valid_until", sa.BigInteger(), nullable=False),
        sa.Column("max_uses", sa.BigInteger(), nullable=False),
        sa.Column("purpose_hash", Hash, nullable=False),
        sa.Column("consent_hash", Hash, nullable=False),
        sa.Column("prices", sa.JSON(), nullable=False),
        sa.Column("terms_hash", Hash, nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                *OFFER_STATUSES,
                name="offer_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("accepted_from", sa.BigInteger(), nullable=True),
        sa.Column("closed_block", sa.BigInteger(), nullable=True),
        sa.Column("closed_log_index", sa.Integer(), nullable=True),
        sa.Column("closed_tx_hash", Hash, nullable=True),
        sa.Column("closed_time", Timestamp, nullable=True),
    )
    _index("license_offers", "brand", "status")
    _index("license_offers", "twin_id", "brand", "version")
    _index("license_offers", "closed_block")
    _event_log(
        "spending_limit_changes",
        sa.Column("brand", Address, nullable=False),
        sa.Column("per_usage", UInt256, nullable=False),
        sa.Column("per_period", UInt256, nullable=False),
        sa.Column("effective_at", sa.BigInteger(), nullable=False),
    )
    _index("spending_limit_changes", "brand", "block_number")
    _event_log(
        "brand_attester_changes",
        sa.Column("brand", Address, nullable=False),
        sa.Column("attester", Address, nullable=False),
    )
    _index("brand_attester_changes", "brand", "block_number")
    _event_log(
        "role_changes",
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("role_id", UInt256, nullable=False),
        sa.Column("account", Address, nullable=True),
        sa.Column("delay", sa.BigInteger(), nullable=False),
        sa.Column("since", sa.BigInteger(), nullable=True),
        sa.Column("new_member", sa.Boolean(), nullable=True),
    )
    _index("role_changes", "role_id", "account")
    with op.batch_alter_table("license_versions") as batch:
        batch.add_column(sa.Column("terms_hash", Hash, nullable=True))
        batch.add_column(sa.Column("offered_from", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("settled_usages", recreate="always") as batch:
        batch.drop_constraint("pk_settled_usages", type_="primary")
        batch.create_primary_key("pk_settled_usages", ["usage_id", "brand"])


def downgrade() -> None:
    with op.batch_alter_table("settled_usages", recreate="always") as batch:
        batch.drop_constraint("pk_settled_usages", type_="primary")
        batch.create_primary_key("pk_settled_usages", ["usage_id"])
    with op.batch_alter_table("license_versions") as batch:
        batch.drop_column("offered_from")
        batch.drop_column("terms_hash")
    for table in ("role_changes", "brand_attester_changes", "spending_limit_changes"):
        op.drop_table(table)
    op.drop_table("license_offers")
