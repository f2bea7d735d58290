"""How the bridge queries and writes its store; every function takes the session it works in."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, NamedTuple

import orjson
from sqlalchemy import Engine, bindparam, select, text, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bridge.errors import BrandExistsError
from bridge.store.engine import make_engine, writer_lock
from bridge.store.models import Brand, UsageEvent, UsageStatus, UtcDateTime, utcnow

_PG_INSERT_FROM_JSON: Final = text(
    "INSERT INTO usage_events (brand_id, event_id, body_hash, twin_id, usage_type, quantity, "
    "used_at, campaign_ref, asset_ref, status, created_at, updated_at) "
    "SELECT (r->>0)::bigint, r->>1, r->>2, (r->>3)::bigint, (r->>4)::smallint, (r->>5)::bigint, "
    "to_timestamp((r->>6)::bigint) + (r->>7)::bigint * interval '1 microsecond', "
    "r->>8, r->>9, :status, :now, :now FROM json_array_elements(CAST(:rows AS json)) AS r "
    "ON CONFLICT (brand_id, event_id) DO NOTHING RETURNING brand_id, event_id, id"
).bindparams(bindparam("now", type_=UtcDateTime()))
"""PostgreSQL takes the same JSON array and unpacks it in C (``json_array_elements``): one
parameter instead of one array per column, which psycopg would quote element by element."""
_SQLITE_INSERT_FROM_JSON: Final = text(
    "INSERT INTO usage_events (brand_id, event_id, body_hash, twin_id, usage_type, quantity, "
    "used_at, campaign_ref, asset_ref, status, created_at, updated_at) "
    "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), "
    "json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'), "
    "json_extract(value, '$[5]'), "
    "datetime(json_extract(value, '$[6]'), 'unixepoch') "
    "|| printf('.%06d', json_extract(value, '$[7]')), "
    "json_extract(value, '$[8]'), json_extract(value, '$[9]'), :status, :now, :now "
    "FROM json_each(:rows) WHERE true "
    "ON CONFLICT (brand_id, event_id) DO NOTHING RETURNING brand_id, event_id, id"
).bindparams(bindparam("now", type_=UtcDateTime()))
"""SQLite takes the rows as one JSON array that it unpacks in C (``json_each``), instead of
SQLAlchemy processing a dozen parameters per row in Python. A time of use comes as unix seconds
and microseconds, and SQLite writes it in the format the ``UtcDateTime`` column stores (UTC, no
offset: ``YYYY-MM-DD HH:MM:SS.ffffff``)."""
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _unix_us(value: datetime) -> tuple[int, int]:
    """Unix seconds and microseconds of an aware time, in integers (no float rounding)."""
    since = value - _EPOCH
    return since.days * 86_400 + since.seconds, since.microseconds


_SQLITE_STORED_KEYS: Final = text(
    "SELECT u.brand_id, u.event_id, u.id, u.body_hash FROM json_each(:keys) AS k "
    "JOIN usage_events AS u ON u.brand_id = json_extract(k.value, '$[0]') "
    "AND u.event_id = json_extract(k.value, '$[1]')"
)
_PG_STORED_KEYS: Final = text(
    "SELECT u.brand_id, u.event_id, u.id, u.body_hash "
    "FROM json_array_elements(CAST(:keys AS json)) AS k "
    "JOIN usage_events AS u ON u.brand_id = (k->>0)::bigint AND u.event_id = k->>1"
)
"""Which of many (brand, event id) keys are stored, in one indexed lookup per key and one
statement for all (the keys as one JSON array)."""


@dataclass(frozen=True, slots=True)
class BrandRecord:
    id: int
    name: str
    address: str
    created_at: datetime

    @classmethod
    def of(cls, brand: Brand) -> BrandRecord:
        return cls(id=brand.id, name=brand.name, address=brand.address, created_at=brand.created_at)


class NewUsage(NamedTuple):
    """A usage that passed the door, about to be stored (a tuple: a batch makes a thousand)."""

    event_id: str
    body_hash: str
    twin_id: int
    usage_type: int
    quantity: int
    used_at: datetime
    campaign_ref: str | None
    asset_ref: str | None


@dataclass(frozen=True, slots=True)
class StoredUsage:
    """A usage as the store holds it."""

    usage_id: int
    brand_id: int
    event_id: str
    body_hash: str
    twin_id: int
    usage_type: int
    quantity: int
    used_at: datetime
    campaign_ref: str | None
    asset_ref: str | None
    status: UsageStatus
    reason_code: int | None
    tx_hash: str | None
    block_number: int | None
    log_index: int | None
    amount: int | None
    created_at: datetime
    updated_at: datetime
    batch_id: int | None = None
    settle_attempts: int = 0
    last_error: str | None = None
    paid_from_escrow: int | None = None
    recorded_as_debt: int | None = None

    @classmethod
    def of(cls, row: UsageEvent) -> StoredUsage:
        return cls(
            usage_id=row.id,
            brand_id=row.brand_id,
            event_id=row.event_id,
            body_hash=row.body_hash,
            twin_id=row.twin_id,
            usage_type=row.usage_type,
            quantity=row.quantity,
            used_at=row.used_at,
            campaign_ref=row.campaign_ref,
            asset_ref=row.asset_ref,
            status=row.status,
            reason_code=row.reason_code,
            tx_hash=row.tx_hash,
            block_number=row.block_number,
            log_index=row.log_index,
            amount=row.amount,
            created_at=row.created_at,
            updated_at=row.updated_at,
            batch_id=row.batch_id,
            settle_attempts=row.settle_attempts,
            last_error=row.last_error,
            paid_from_escrow=row.paid_from_escrow,
            recorded_as_debt=row.recorded_as_debt,
        )


class InsertOutcome(StrEnum):
    INSERTED = "inserted"
    DUPLICATE = "duplicate"  # stored before with the same body
    CONFLICT = "conflict"  # stored before with a different body


class StoredKey(NamedTuple):
    """What a repeat of a stored event is answered from."""

    usage_id: int
    body_hash: str


class InsertResult(NamedTuple):
    """What became of a usage written: inserted, or stored before (its id and stored body hash)."""

    outcome: InsertOutcome
    usage_id: int
    body_hash: str


class Store:
    """The store's engine and session factory."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def from_url(cls, url: str) -> Store:
        return cls(make_engine(url))

    def session(self) -> Session:
        return self.sessions()

    def ping(self) -> None:
        """Raises if the database does not answer."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def close(self) -> None:
        self.engine.dispose()


# ---------------------------------------------------------------- brands


def create_brand(session: Session, *, name: str, address: str, api_key_hash: str) -> BrandRecord:
    """Registers a brand and commits.

    Raises:
        BrandExistsError: when the name or address (or, impossibly, the key hash) is taken.
    """
    brand = Brand(name=name, address=address, api_key_hash=api_key_hash, created_at=utcnow())
    session.add(brand)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise BrandExistsError(name, address) from exc
    return BrandRecord.of(brand)


def list_brands(session: Session) -> list[BrandRecord]:
    return [BrandRecord.of(b) for b in session.scalars(select(Brand).order_by(Brand.id))]


def brand_by_key_hash(session: Session, api_key_hash: str) -> tuple[BrandRecord, str] | None:
    """The brand holding the key with that hash, and the stored hash (for a constant-time check)."""
    row = session.execute(
        select(Brand.id, Brand.name, Brand.address, Brand.created_at, Brand.api_key_hash).where(
            Brand.api_key_hash == api_key_hash
        )
    ).one_or_none()
    if row is None:
        return None
    brand = BrandRecord(id=row.id, name=row.name, address=row.address, created_at=row.created_at)
    return brand, row.api_key_hash


# ---------------------------------------------------------------- usages


def end_read(session: Session) -> None:
    """Ends a read that a write in the same session follows, where the store needs it: a SQLite
    read transaction cannot turn into the write transaction once another writer has committed.
    PostgreSQL carries on in the same one (a round trip and a connection checkout less)."""
    if session.get_bind().dialect.name == "sqlite":
        session.rollback()


def stored_keys(
    session: Session, keys: Iterable[tuple[int, str]]
) -> dict[tuple[int, str], StoredKey]:
    """The stored usages among ``(brand id, event id)`` keys of any brands, by key."""
    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return {}
    postgres = session.get_bind().dialect.name == "postgresql"
    stmt = _PG_STORED_KEYS if postgres else _SQLITE_STORED_KEYS
    params = {"keys": orjson.dumps(wanted).decode()}
    return {(row[0], row[1]): StoredKey(row[2], row[3]) for row in session.execute(stmt, params)}


def get_usage(session: Session, *, brand_id: int, event_id: str) -> StoredUsage | None:
    row = session.scalars(
        select(UsageEvent).where(UsageEvent.brand_id == brand_id, UsageEvent.event_id == event_id)
    ).one_or_none()
    return None if row is None else StoredUsage.of(row)


def usages_by_keys(
    session: Session, keys: Sequence[tuple[int, str]]
) -> dict[tuple[int, str], StoredUsage]:
    """The stored usages of ``(brand id, event id)`` keys, by key (one query per 500 keys)."""
    found: dict[tuple[int, str], StoredUsage] = {}
    wanted = list(dict.fromkeys(keys))
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        query = select(UsageEvent).where(
            tuple_(UsageEvent.brand_id, UsageEvent.event_id).in_(chunk)
        )
        for row in session.scalars(query):
            found[row.brand_id, row.event_id] = StoredUsage.of(row)
    return found


def recent_usages(
    session: Session, *, brand_id: int, before: int | None, limit: int
) -> tuple[list[StoredUsage], bool]:
    """The brand's usages newest first (by usage id), those below ``before`` when given, at most
    ``limit``, and whether more follow."""
    query = select(UsageEvent).where(UsageEvent.brand_id == brand_id)
    if before is not None:
        query = query.where(UsageEvent.id < before)
    rows = list(session.scalars(query.order_by(UsageEvent.id.desc()).limit(limit + 1)))
    return [StoredUsage.of(row) for row in rows[:limit]], len(rows) > limit


def insert_usages(
    session: Session, *, brand_id: int, usages: Sequence[NewUsage]
) -> dict[str, InsertResult]:
    """Stores the brand's usages that are new in one transaction and commits it; answers per
    event id. ``insert_brand_usages`` for one brand; the event ids must be distinct."""
    written = insert_brand_usages(session, {brand_id: usages})
    return {event_id: result for (_brand, event_id), result in written.items()}


def insert_brand_usages(
    session: Session, usages: Mapping[int, Sequence[NewUsage]], *, now: datetime | None = None
) -> dict[tuple[int, str], InsertResult]:
    """Stores the usages that are new, of one or more brands (by brand id), in one transaction
    and commits it, received ``now`` (default: the current time); answers per (brand id, event
    id).

    Every row is inserted with ON CONFLICT DO NOTHING, then the rows that were already there are
    read back in the same transaction: same body hash is a duplicate, another body a conflict.
    A brand's event ids must be distinct.
    """
    rows = [(brand_id, u) for brand_id, brand_usages in usages.items() for u in brand_usages]
    if not rows:
        return {}
    keys = [(b, u.event_id) for b, u in rows]
    if len(set(keys)) != len(rows):
        raise ValueError("event ids in one insert must be distinct per brand")
    for _, u in rows:
        if u.used_at.tzinfo is None:
            raise ValueError(f"naive datetime {u.used_at!r}; the store takes aware datetimes only")
    now = now or utcnow()
    dialect = session.get_bind().dialect.name
    stmt: Any
    if dialect == "sqlite":
        stmt = _SQLITE_INSERT_FROM_JSON
    elif dialect == "postgresql":
        stmt = _PG_INSERT_FROM_JSON
    else:  # pragma: no cover - the engine factory makes only these two
        raise NotImplementedError(f"no idempotent insert for {dialect}")
    params = {
        "status": UsageStatus.ACCEPTED.value,
        "now": now,
        "rows": orjson.dumps(
            [
                [
                    b,
                    u.event_id,
                    u.body_hash,
                    u.twin_id,
                    u.usage_type,
                    u.quantity,
                    *_unix_us(u.used_at),
                    u.campaign_ref,
                    u.asset_ref,
                ]
                for b, u in rows
            ]
        ).decode(),
    }
    with _one_writer(session):
        try:
            returned = session.execute(stmt, params)
            inserted: dict[tuple[int, str], int] = {(row[0], row[1]): row[2] for row in returned}
            stored = stored_keys(session, (key for key in keys if key not in inserted))
            session.commit()
        except BaseException:
            session.rollback()
            raise
    results: dict[tuple[int, str], InsertResult] = {}
    for key, (_brand_id, usage) in zip(keys, rows, strict=True):
        usage_id = inserted.get(key)
        if usage_id is not None:
            results[key] = InsertResult(InsertOutcome.INSERTED, usage_id, usage.body_hash)
            continue
        there = stored[key]
        if there.body_hash == usage.body_hash:
            outcome = InsertOutcome.DUPLICATE
        else:
            outcome = InsertOutcome.CONFLICT
        results[key] = InsertResult(outcome, there.usage_id, there.body_hash)
    return results


def _one_writer(session: Session) -> AbstractContextManager[Any]:
    """SQLite takes one writer at a time: writers queue on ``writer_lock`` rather than sleeping
    in SQLite's busy handler."""
    bind = session.get_bind()
    return writer_lock(bind) if isinstance(bind, Engine) else nullcontext()
