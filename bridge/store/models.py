"""The store's tables as typed SQLAlchemy 2 models (Alembic migrations create them)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an INTEGER PRIMARY KEY, PostgreSQL gets a 64-bit identity.
Id64 = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite keeps no offset: stored as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}; the store takes aware datetimes only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class UInt256(TypeDecorator[int]):
    """An unsigned 256-bit integer (token amounts), stored as its decimal digits."""

    impl = String(78)
    cache_ok = True

    def process_bind_param(self, value: int | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if not 0 <= value < 2**256:
            raise ValueError(f"{value} is not a uint256")
        return str(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> int | None:
        return None if value is None else int(value)


class Int256(TypeDecorator[int]):
    """A signed 256-bit integer (a change of a token balance), stored as its decimal digits."""

    impl = String(79)
    cache_ok = True

    def process_bind_param(self, value: int | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if not -(2**255) <= value < 2**255:
            raise ValueError(f"{value} is not an int256")
        return str(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> int | None:
        return None if value is None else int(value)


class UsageStatus(StrEnum):
    """Where a stored usage is on its way to the chain."""

    ACCEPTED = "accepted"
    SUBMITTED = "submitted"
    SETTLED = "settled"
    REJECTED = "rejected"
    HELD = "held"
    """Failed ``max_settle_attempts`` times (see ``last_error``); no longer batched."""


class BatchStatus(StrEnum):
    """Where a settlement batch is: signed (stored, maybe not sent), sent, mined (not yet deep
    enough), confirmed (its usages settled or rejected) or failed (its usages handed back)."""

    SIGNED = "signed"
    SENT = "sent"
    MINED = "mined"
    CONFIRMED = "confirmed"
    FAILED = "failed"


def _enum(cls: type[StrEnum], name: str) -> Enum:
    return Enum(
        cls,
        native_enum=False,
        create_constraint=True,
        length=16,
        name=name,
        values_callable=lambda members: [m.value for m in members],
    )


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Brand(Base):
    """A brand: its on-chain address and the hash of its API key."""

    __tablename__ = "brands"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    address: Mapped[str] = mapped_column(String(42), unique=True)
    api_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class UsageEvent(Base):
    """One usage reported by a brand; ``id`` is the usage id on chain."""

    __tablename__ = "usage_events"
    __table_args__ = (
        UniqueConstraint("brand_id", "event_id"),
        Index(None, "status", "id"),
    )

    id: Mapped[int] = mapped_column(Id64, primary_key=True, autoincrement=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id"))
    event_id: Mapped[str] = mapped_column(String(128))
    body_hash: Mapped[str] = mapped_column(String(64))
    twin_id: Mapped[int] = mapped_column(BigInteger)
    usage_type: Mapped[int] = mapped_column(SmallInteger)
    quantity: Mapped[int] = mapped_column(BigInteger)
    used_at: Mapped[datetime] = mapped_column(UtcDateTime())
    campaign_ref: Mapped[str | None] = mapped_column(String(256))
    asset_ref: Mapped[str | None] = mapped_column(String(256))
    status: Mapped[UsageStatus] = mapped_column(
        _enum(UsageStatus, "usage_status"), default=UsageStatus.ACCEPTED
    )
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("settlement_batches.id"), index=True)
    reason_code: Mapped[int | None] = mapped_column(SmallInteger)
    tx_hash: Mapped[str | None] = mapped_column(String(66))
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    log_index: Mapped[int | None] = mapped_column(Integer)
    amount: Mapped[int | None] = mapped_column(UInt256())
    paid_from_escrow: Mapped[int | None] = mapped_column(UInt256())
    """Of a settled usage's ``amount``, what its brand's escrow paid (null: unknown)."""
    recorded_as_debt: Mapped[int | None] = mapped_column(UInt256())
    """Of a settled usage's ``amount``, what became the brand's debt to the twin (null: unknown)."""
    settle_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Batches with this usage that reverted (in gas estimation or on chain)."""
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class SettlementBatch(Base):
    """A signed usage batch and the relayer transaction carrying it: written before it is sent, so
    a restarted worker resends the very same bytes with the same nonce."""

    __tablename__ = "settlement_batches"
    __table_args__ = (Index(None, "status", "id"),)

    id: Mapped[int] = mapped_column(Id64, primary_key=True, autoincrement=True)
    relayer: Mapped[str] = mapped_column(String(42))
    nonce: Mapped[int] = mapped_column(BigInteger)
    digest: Mapped[str] = mapped_column(String(66), index=True)
    """EIP-712 digest; a failed batch's usages may be signed again into the same digest."""
    deadline: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[str] = mapped_column(Text)
    """JSON: the batch's groups (usage words as decimal strings) and the attester's signature."""
    raw_tx: Mapped[str] = mapped_column(Text)
    tx_hash: Mapped[str] = mapped_column(String(66))
    tx_hashes: Mapped[str] = mapped_column(Text)
    """JSON list of every hash sent for this batch (the first and its replacements)."""
    gas_limit: Mapped[int] = mapped_column(BigInteger)
    max_fee_per_gas: Mapped[int] = mapped_column(UInt256())
    max_priority_fee_per_gas: Mapped[int] = mapped_column(UInt256())
    status: Mapped[BatchStatus] = mapped_column(_enum(BatchStatus, "batch_status"))
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    block_hash: Mapped[str | None] = mapped_column(String(66))
    gas_used: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class ChainHead(Base):
    """The latest block a settlement worker read (one row per relayer): the chain's clock as the
    API tells it, without asking the chain."""

    __tablename__ = "chain_heads"

    relayer: Mapped[str] = mapped_column(String(42), primary_key=True)
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_time: Mapped[datetime] = mapped_column(UtcDateTime())
    seen_at: Mapped[datetime] = mapped_column(UtcDateTime())


class RelayerNonce(Base):
    """The next nonce a relayer address plans to use, as the worker last recorded it."""

    __tablename__ = "relayer_nonces"

    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    next_nonce: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class WorkerLease(Base):
    """Who runs the settlement worker of a relayer key, until when (renewed while it runs)."""

    __tablename__ = "worker_leases"

    relayer: Mapped[str] = mapped_column(String(42), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    acquired_at: Mapped[datetime] = mapped_column(UtcDateTime())


# ---------------------------------------------------------------- the indexer (migration 0005)
#
# Rows the indexer writes from confirmed ledger events. Each carries the block it came from, so a
# rewind after a reorg deletes every row above the fork point; the current-state tables (twins,
# brand_accounts, license_versions' effective windows) are then restored from what remains.


class EventSource:
    """Where an indexed ledger event happened: its block, log index, transaction and block time
    (the columns every event-derived table carries)."""

    block_number: Mapped[int] = mapped_column(BigInteger)
    log_index: Mapped[int] = mapped_column(Integer)
    tx_hash: Mapped[str] = mapped_column(String(66))
    block_time: Mapped[datetime] = mapped_column(UtcDateTime())


class EventLog(EventSource):
    """A table with one row per ledger event: a surrogate id, unique by (block, log index) (see
    ``_one_per_log``)."""

    id: Mapped[int] = mapped_column(Id64, primary_key=True, autoincrement=True)


def _one_per_log(*indexes: Index) -> tuple[UniqueConstraint | Index, ...]:
    """The ``__table_args__`` of an ``EventLog`` table: unique by (block, log index), and
    ``indexes``."""
    return (UniqueConstraint("block_number", "log_index"), *indexes)


class TwinState:
    """A twin as the ledger holds it: now (``twins``) and after each event (``twin_changes``)."""

    owner: Mapped[str] = mapped_column(String(42))
    uri: Mapped[str] = mapped_column(Text)
    consent_hash: Mapped[str] = mapped_column(String(66))
    paused: Mapped[bool] = mapped_column(Boolean)
    paused_since: Mapped[int | None] = mapped_column(BigInteger)
    payees: Mapped[list[Any]] = mapped_column(JSON())
    """``[{"account": ..., "bps": ...}]``; the owner receives what they leave."""
    minted_block: Mapped[int] = mapped_column(BigInteger)


class BrandAccountState:
    """A brand's account as the ledger holds it (``ITwinLedger.brandAccount``): now
    (``brand_accounts``) and after each event (``brand_account_changes``)."""

    escrow: Mapped[int] = mapped_column(UInt256())
    debt: Mapped[int] = mapped_column(UInt256())
    debt_reserve: Mapped[int] = mapped_column(UInt256())
    pending_withdrawal: Mapped[int] = mapped_column(UInt256())
    withdrawal_unlocks_at: Mapped[int] = mapped_column(BigInteger)


class IndexedBlock(Base):
    """A block the indexer went through: every block with ledger events and the last block of each
    indexed range. Their hashes are compared with the chain's to find a fork point."""

    __tablename__ = "indexed_blocks"

    number: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(66))
    parent_hash: Mapped[str] = mapped_column(String(66))
    timestamp: Mapped[int] = mapped_column(BigInteger)


class IndexerCursor(Base):
    """The last block indexed for a ledger (every event up to it is stored)."""

    __tablename__ = "indexer_cursors"

    ledger: Mapped[str] = mapped_column(String(42), primary_key=True)
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(String(66))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class LedgerEventRow(EventLog, Base):
    """Every ledger event as decoded from its log (``bridge.chain.events``), with the twin and the
    brand it concerns, if any."""

    __tablename__ = "ledger_events"
    __table_args__ = _one_per_log(Index(None, "name", "block_number"))

    block_hash: Mapped[str] = mapped_column(String(66))
    name: Mapped[str] = mapped_column(String(64))
    twin_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    brand: Mapped[str | None] = mapped_column(String(42), index=True)
    args: Mapped[dict[str, Any]] = mapped_column(JSON())


class SettledUsageRow(EventSource, Base):
    """One usage of a ``UsagesSettled`` event: its outcome, and for a paid usage its amount (price
    under the license version in force at ``used_at`` times quantity) and that version."""

    __tablename__ = "settled_usages"
    __table_args__ = (
        Index(None, "twin_id", "used_at"),
        Index(None, "brand", "used_at"),
        Index(None, "block_number"),
    )

    usage_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    brand: Mapped[str] = mapped_column(String(42), primary_key=True)
    """Usage ids are the brand's (a brand's own attester numbers its usages itself)."""
    twin_id: Mapped[int] = mapped_column(BigInteger)
    used_at: Mapped[datetime] = mapped_column(UtcDateTime())
    quantity: Mapped[int] = mapped_column(BigInteger)
    usage_type: Mapped[int] = mapped_column(SmallInteger)
    outcome: Mapped[int] = mapped_column(SmallInteger)
    amount: Mapped[int | None] = mapped_column(UInt256())
    paid_from_escrow: Mapped[int | None] = mapped_column(UInt256())
    """Of ``amount``, what the brand's escrow paid (null: not paid, or not priced)."""
    recorded_as_debt: Mapped[int | None] = mapped_column(UInt256())
    """Of ``amount``, what the ledger recorded as the brand's debt (``DebtRecorded``)."""
    license_version: Mapped[int | None] = mapped_column(Integer)
    batch_digest: Mapped[str] = mapped_column(String(66))
    attester: Mapped[str] = mapped_column(String(42))
    position: Mapped[int] = mapped_column(Integer)


class TwinRow(TwinState, Base):
    """A twin as of the last indexed block."""

    __tablename__ = "twins"

    twin_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    owner: Mapped[str] = mapped_column(String(42), index=True)
    updated_block: Mapped[int] = mapped_column(BigInteger)


class TwinChange(TwinState, EventLog, Base):
    """The whole state of a twin after each event that changed it (mint, transfer, pause,
    payees)."""

    __tablename__ = "twin_changes"
    __table_args__ = _one_per_log(Index(None, "twin_id", "block_number"))

    twin_id: Mapped[int] = mapped_column(BigInteger)
    event: Mapped[str] = mapped_column(String(64))


class LicenseVersionRow(EventSource, Base):
    """An accepted license version (``LicenseAccepted``, the event its source columns name) with
    the terms of its offer; ``effective_from``/``effective_until`` and ``revoked`` follow the later
    acceptances and revocations that ended it (as the ledger does)."""

    __tablename__ = "license_versions"
    __table_args__ = (Index(None, "brand", "twin_id"), Index(None, "block_number"))

    twin_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    brand: Mapped[str] = mapped_column(String(42), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    valid_from: Mapped[int] = mapped_column(BigInteger)
    valid_until: Mapped[int] = mapped_column(BigInteger)
    max_uses: Mapped[int] = mapped_column(BigInteger)
    purpose_hash: Mapped[str] = mapped_column(String(66))
    consent_hash: Mapped[str] = mapped_column(String(66))
    prices: Mapped[list[Any]] = mapped_column(JSON())
    """``[{"usageType": ..., "price": ...}]`` as granted."""
    effective_from: Mapped[int] = mapped_column(BigInteger)
    effective_until: Mapped[int] = mapped_column(BigInteger)
    revoked: Mapped[bool] = mapped_column(Boolean)
    terms_hash: Mapped[str | None] = mapped_column(String(66))
    """The terms hash the brand accepted (the offer's)."""
    offered_from: Mapped[int | None] = mapped_column(BigInteger)
    """The start the offer named (``valid_from`` is the later of it and the acceptance)."""


class LicenseRevocation(EventLog, Base):
    """A ``LicenseRevoked`` event: every running version of the pair ended at ``revoked_at``."""

    __tablename__ = "license_revocations"
    __table_args__ = _one_per_log(Index(None, "twin_id", "brand"))

    twin_id: Mapped[int] = mapped_column(BigInteger)
    brand: Mapped[str] = mapped_column(String(42))
    version: Mapped[int] = mapped_column(Integer)
    revoked_at: Mapped[int] = mapped_column(BigInteger)


class OfferStatus(StrEnum):
    """Where a license offer stands: waiting for the brand, or closed by its acceptance, the
    brand's refusal or the owner's withdrawal (a replacing offer withdraws the one before)."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    WITHDRAWN = "withdrawn"


class LicenseOfferRow(EventLog, Base):
    """A ``LicenseOffered`` event with its terms, and how the offer ended (the closing event's
    ``closed_*`` columns; all None while it waits). An offer is payable only once accepted."""

    __tablename__ = "license_offers"
    __table_args__ = _one_per_log(
        Index(None, "brand", "status"), Index(None, "twin_id", "brand", "version")
    )

    twin_id: Mapped[int] = mapped_column(BigInteger)
    brand: Mapped[str] = mapped_column(String(42))
    version: Mapped[int] = mapped_column(Integer)
    valid_from: Mapped[int] = mapped_column(BigInteger)
    valid_until: Mapped[int] = mapped_column(BigInteger)
    max_uses: Mapped[int] = mapped_column(BigInteger)
    purpose_hash: Mapped[str] = mapped_column(String(66))
    consent_hash: Mapped[str] = mapped_column(String(66))
    prices: Mapped[list[Any]] = mapped_column(JSON())
    """``[{"usageType": ..., "price": ...}]`` as offered."""
    terms_hash: Mapped[str] = mapped_column(String(66))
    status: Mapped[OfferStatus] = mapped_column(_enum(OfferStatus, "offer_status"))
    accepted_from: Mapped[int | None] = mapped_column(BigInteger)
    """``LicenseAccepted.validFrom``: the later of the offered start and the acceptance."""
    closed_block: Mapped[int | None] = mapped_column(BigInteger, index=True)
    closed_log_index: Mapped[int | None] = mapped_column(Integer)
    closed_tx_hash: Mapped[str | None] = mapped_column(String(66))
    closed_time: Mapped[datetime | None] = mapped_column(UtcDateTime())


class SpendingLimitChange(EventLog, Base):
    """``SpendingLimitsSet``: a brand's limits, in force from ``effective_at`` (at once for a
    lowering, after the raise delay for a raise; a later setting replaces a raise still waiting)."""

    __tablename__ = "spending_limit_changes"
    __table_args__ = _one_per_log(Index(None, "brand", "block_number"))

    brand: Mapped[str] = mapped_column(String(42))
    per_usage: Mapped[int] = mapped_column(UInt256())
    per_period: Mapped[int] = mapped_column(UInt256())
    effective_at: Mapped[int] = mapped_column(BigInteger)


class BrandAttesterChange(EventLog, Base):
    """``BrandAttesterSet``: the brand's own attester from then on (zero: the bridge's)."""

    __tablename__ = "brand_attester_changes"
    __table_args__ = _one_per_log(Index(None, "brand", "block_number"))

    brand: Mapped[str] = mapped_column(String(42))
    attester: Mapped[str] = mapped_column(String(42))


class RoleChange(EventLog, Base):
    """A role event of the access manager (``RoleGranted``, ``RoleRevoked``,
    ``RoleGrantDelayChanged``); ``since`` is when a grant (or a grant delay) takes effect."""

    __tablename__ = "role_changes"
    __table_args__ = _one_per_log(Index(None, "role_id", "account"))

    event: Mapped[str] = mapped_column(String(64))
    role_id: Mapped[int] = mapped_column(UInt256())
    account: Mapped[str | None] = mapped_column(String(42))
    """None for ``RoleGrantDelayChanged``."""
    delay: Mapped[int] = mapped_column(BigInteger)
    """The execution delay of a grant, or the role's new grant delay."""
    since: Mapped[int | None] = mapped_column(BigInteger)
    new_member: Mapped[bool | None] = mapped_column(Boolean)


class BrandAccountRow(BrandAccountState, Base):
    """A brand's escrow and debt as of the last indexed block (``ITwinLedger.brandAccount``)."""

    __tablename__ = "brand_accounts"

    brand: Mapped[str] = mapped_column(String(42), primary_key=True)
    updated_block: Mapped[int] = mapped_column(BigInteger)


class BrandAccountChange(BrandAccountState, EventLog, Base):
    """How one event changed a brand's escrow and debt, and the account after it."""

    __tablename__ = "brand_account_changes"
    __table_args__ = _one_per_log(Index(None, "brand", "block_number"))

    brand: Mapped[str] = mapped_column(String(42))
    event: Mapped[str] = mapped_column(String(64))
    escrow_delta: Mapped[int] = mapped_column(Int256())
    debt_delta: Mapped[int] = mapped_column(Int256())


class RoyaltyDistribution(EventLog, Base):
    """``RoyaltiesDistributed``: part of a twin's royalties credited to a payee (or the owner)."""

    __tablename__ = "royalty_distributions"
    __table_args__ = _one_per_log(
        Index(None, "payee", "block_time"), Index(None, "twin_id", "block_time")
    )

    twin_id: Mapped[int] = mapped_column(BigInteger)
    payee: Mapped[str] = mapped_column(String(42))
    amount: Mapped[int] = mapped_column(UInt256())


class PayeePayout(EventLog, Base):
    """``PayeePaid``: tokens that left the ledger to a payee."""

    __tablename__ = "payee_payouts"
    __table_args__ = _one_per_log(Index(None, "payee", "block_time"))

    payee: Mapped[str] = mapped_column(String(42))
    caller: Mapped[str] = mapped_column(String(42))
    amount: Mapped[int] = mapped_column(UInt256())


INDEXER_TABLES: Final = (
    IndexedBlock,
    IndexerCursor,
    LedgerEventRow,
    SettledUsageRow,
    TwinRow,
    TwinChange,
    LicenseVersionRow,
    LicenseRevocation,
    LicenseOfferRow,
    SpendingLimitChange,
    BrandAttesterChange,
    RoleChange,
    BrandAccountRow,
    BrandAccountChange,
    RoyaltyDistribution,
    PayeePayout,
)
"""Every table the indexer writes (migrations 0005 and 0007): the store's mirror of the ledger
(and of its access manager's role events)."""


class ActionStatus(StrEnum):
    """Where a relayed owner action is before it rides a transaction: accepted (verified and
    stored), or failed before sending (the ledger would refuse it now, or its deadline passed).
    Once it rides a transaction (``batch_id``), its status follows that transaction's."""

    ACCEPTED = "accepted"
    FAILED = "failed"


class OwnerAction(Base):
    """A signed owner action (or an anyone-may-trigger payout) the bridge relays to the ledger."""

    __tablename__ = "owner_actions"
    __table_args__ = (
        Index(None, "status", "id"),
        Index(None, "signer", "nonce"),
    )

    id: Mapped[int] = mapped_column(Id64, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    signer: Mapped[str] = mapped_column(String(42))
    """The owner who signed (for a payout: the payee)."""
    twin_id: Mapped[int | None] = mapped_column(BigInteger)
    nonce: Mapped[int | None] = mapped_column(BigInteger)
    deadline: Mapped[int | None] = mapped_column(BigInteger)
    message: Mapped[str] = mapped_column(Text)
    """The EIP-712 message (JSON, numbers as decimal strings)."""
    signature: Mapped[str | None] = mapped_column(Text)
    digest: Mapped[str] = mapped_column(String(66), unique=True)
    calldata: Mapped[str] = mapped_column(Text)
    status: Mapped[ActionStatus] = mapped_column(_enum(ActionStatus, "action_status"))
    error: Mapped[str | None] = mapped_column(Text)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("settlement_batches.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)
