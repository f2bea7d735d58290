"""The store's tables as typed SQLAlchemy 2 models (Alembic migrations create them)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
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
