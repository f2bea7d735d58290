"""Brands and usage events.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Migrations spell their types out instead of importing the models, which keep changing.
Id64 = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "brands",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("address", sa.String(length=42), nullable=False),
        sa.Column("api_key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_brands")),
        sa.UniqueConstraint("address", name=op.f("uq_brands_address")),
        sa.UniqueConstraint("api_key_hash", name=op.f("uq_brands_api_key_hash")),
        sa.UniqueConstraint("name", name=op.f("uq_brands_name")),
    )
    op.create_table(
        "usage_events",
        sa.Column("id", Id64, autoincrement=True, nullable=False),
        sa.Column("brand_id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("body_hash", sa.String(length=64), nullable=False),
        sa.Column("twin_id", sa.BigInteger(), nullable=False),
        sa.Column("usage_type", sa.SmallInteger(), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("used_at", Timestamp, nullable=False),
        sa.Column("campaign_ref", sa.String(length=256), nullable=True),
        sa.Column("asset_ref", sa.String(length=256), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "accepted",
                "submitted",
                "settled",
                "rejected",
                name="usage_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("reason_code", sa.SmallInteger(), nullable=True),
        sa.Column("tx_hash", sa.String(length=66), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("log_index", sa.Integer(), nullable=True),
        sa.Column("amount", sa.String(length=78), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["brand_id"], ["brands.id"], name=op.f("fk_usage_events_brand_id_brands")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_events")),
        sa.UniqueConstraint("brand_id", "event_id", name=op.f("uq_usage_events_brand_id_event_id")),
    )
    op.create_index(op.f("ix_usage_events_status_id"), "usage_events", ["status", "id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_usage_events_status_id"), table_name="usage_events")
    op.drop_table("usage_events")
    op.drop_table("brands")
