"""The indexer: indexed blocks and cursor, ledger events, settled usages, and the projections of
twins, licenses, brand accounts and royalties.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Id64 = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)
UInt256 = sa.String(length=78)
Int256 = sa.String(length=79)
Address = sa.String(length=42)
Hash = sa.String(length=66)


def _where() -> list[sa.Column[object]]:
    """Where an event happened: block, log index, transaction and block time."""
    return [
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.Column("tx_hash", Hash, nullable=False),
        sa.Column("block_time", Timestamp, nullable=False),
    ]


def _id() -> sa.Column[object]:
    return sa.Column("id", Id64, autoincrement=True, nullable=False)


def _pk(table: str, *columns: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint(*columns, name=op.f(f"pk_{table}"))


def _unique_log(table: str) -> sa.UniqueConstraint:
    return sa.UniqueConstraint(
        "block_number", "log_index", name=op.f(f"uq_{table}_block_number_log_index")
    )


def _index(table: str, *columns: str) -> None:
    op.create_index(op.f(f"ix_{table}_{'_'.join(columns)}"), table, list(columns))


def upgrade() -> None:
    op.create_table(
        "indexed_blocks",
        sa.Column("number", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", Hash, nullable=False),
        sa.Column("parent_hash", Hash, nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        _pk("indexed_blocks", "number"),
    )
    op.create_table(
        "indexer_cursors",
        sa.Column("ledger", Address, nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", Hash, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        _pk("indexer_cursors", "ledger"),
    )
    op.create_table(
        "ledger_events",
        _id(),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.Column("block_hash", Hash, nullable=False),
        sa.Column("tx_hash", Hash, nullable=False),
        sa.Column("block_time", Timestamp, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("twin_id", sa.BigInteger(), nullable=True),
        sa.Column("brand", Address, nullable=True),
        sa.Column("args", sa.JSON(), nullable=False),
        _pk("ledger_events", "id"),
        _unique_log("ledger_events"),
    )
    _index("ledger_events", "name", "block_number")
    _index("ledger_events", "twin_id")
    _index("ledger_events", "brand")
    op.create_table(
        "settled_usages",
        sa.Column("usage_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("brand", Address, nullable=False),
        sa.Column("twin_id", sa.BigInteger(), nullable=False),
        sa.Column("used_at", Timestamp, nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("usage_type", sa.SmallInteger(), nullable=False),
        sa.Column("outcome", sa.SmallInteger(), nullable=False),
        sa.Column("amount", UInt256, nullable=True),
        sa.Column("license_version", sa.Integer(), nullable=True),
        sa.Column("batch_digest", Hash, nullable=False),
        sa.Column("attester", Address, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_time", Timestamp, nullable=False),
        sa.Column("tx_hash", Hash, nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        _pk("settled_usages", "usage_id"),
    )
    _index("settled_usages", "twin_id", "used_at")
    _index("settled_usages", "brand", "used_at")
    _index("settled_usages", "block_number")

    def twin_state() -> list[sa.Column[object]]:
        return [
            sa.Column("owner", Address, nullable=False),
            sa.Column("uri", sa.Text(), nullable=False),
            sa.Column("consent_hash", Hash, nullable=False),
            sa.Column("paused", sa.Boolean(), nullable=False),
            sa.Column("paused_since", sa.BigInteger(), nullable=True),
            sa.Column("payees", sa.JSON(), nullable=False),
            sa.Column("minted_block", sa.BigInteger(), nullable=False),
        ]

    op.create_table(
        "twins",
        sa.Column("twin_id", sa.BigInteger(), autoincrement=False, nullable=False),
        *twin_state(),
        sa.Column("updated_block", sa.BigInteger(), nullable=False),
        _pk("twins", "twin_id"),
    )
    _index("twins", "owner")
    op.create_table(
        "twin_changes",
        _id(),
        sa.Column("twin_id", sa.BigInteger(), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        *twin_state(),
        *_where(),
        _pk("twin_changes", "id"),
        _unique_log("twin_changes"),
    )
    _index("twin_changes", "twin_id", "block_number")

    op.create_table(
        "license_versions",
        sa.Column("twin_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("brand", Address, nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("valid_from", sa.BigInteger(), nullable=False),
        sa.Column("valid_until", sa.BigInteger(), nullable=False),
        sa.Column("max_uses", sa.BigInteger(), nullable=False),
        sa.Column("purpose_hash", Hash, nullable=False),
        sa.Column("consent_hash", Hash, nullable=False),
        sa.Column("prices", sa.JSON(), nullable=False),
        sa.Column("effective_from", sa.BigInteger(), nullable=False),
        sa.Column("effective_until", sa.BigInteger(), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        *_where(),
        _pk("license_versions", "twin_id", "brand", "version"),
    )
    _index("license_versions", "brand", "twin_id")
    _index("license_versions", "block_number")
    op.create_table(
        "license_revocations",
        _id(),
        sa.Column("twin_id", sa.BigInteger(), nullable=False),
        sa.Column("brand", Address, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=False),
        *_where(),
        _pk("license_revocations", "id"),
        _unique_log("license_revocations"),
    )
    _index("license_revocations", "twin_id", "brand")

    def account() -> list[sa.Column[object]]:
        return [
            sa.Column("escrow", UInt256, nullable=False),
            sa.Column("debt", UInt256, nullable=False),
            sa.Column("debt_reserve", UInt256, nullable=False),
            sa.Column("pending_withdrawal", UInt256, nullable=False),
            sa.Column("withdrawal_unlocks_at", sa.BigInteger(), nullable=False),
        ]

    op.create_table(
        "brand_accounts",
        sa.Column("brand", Address, nullable=False),
        *account(),
        sa.Column("updated_block", sa.BigInteger(), nullable=False),
        _pk("brand_accounts", "brand"),
    )
    op.create_table(
        "brand_account_changes",
        _id(),
        sa.Column("brand", Address, nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("escrow_delta", Int256, nullable=False),
        sa.Column("debt_delta", Int256, nullable=False),
        *account(),
        *_where(),
        _pk("brand_account_changes", "id"),
        _unique_log("brand_account_changes"),
    )
    _index("brand_account_changes", "brand", "block_number")

    op.create_table(
        "royalty_distributions",
        _id(),
        sa.Column("twin_id", sa.BigInteger(), nullable=False),
        sa.Column("payee", Address, nullable=False),
        sa.Column("amount", UInt256, nullable=False),
        *_where(),
        _pk("royalty_distributions", "id"),
        _unique_log("royalty_distributions"),
    )
    _index("royalty_distributions", "payee", "block_time")
    _index("royalty_distributions", "twin_id", "block_time")
    op.create_table(
        "payee_payouts",
        _id(),
        sa.Column("payee", Address, nullable=False),
        sa.Column("caller", Address, nullable=False),
        sa.Column("amount", UInt256, nullable=False),
        *_where(),
        _pk("payee_payouts", "id"),
        _unique_log("payee_payouts"),
    )
    _index("payee_payouts", "payee", "block_time")


def downgrade() -> None:
    for table in (
        "payee_payouts",
        "royalty_distributions",
        "brand_account_changes",
        "brand_accounts",
        "license_revocations",
        "license_versions",
        "twin_changes",
        "twins",
        "settled_usages",
        "ledger_events",
        "indexer_cursors",
        "indexed_blocks",
    ):
        op.drop_table(table)
