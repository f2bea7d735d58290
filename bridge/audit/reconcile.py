"""Reconciliation of a bridge database with the ledger the audit rebuilt from chain events.

The database is only read, and never created: a SQLite file that is not there is an error, and an
existing one is opened read-only (``mode=ro``); PostgreSQL sessions are read-only
(``default_transaction_read_only``). Each usage the database marks settled or rejected must be on
chain with the same usage id, brand, twin, time, quantity, type, transaction, block, outcome and
amount; each usage settled on chain must be known to the database, and marked as the chain says.
Errors are sentences: the driver's SQL never reaches the user.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from sqlalchemy import create_engine, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from bridge.audit.state import AuditError, Discrepancy, LedgerState, UsageRow, outcome_words
from bridge.domain.codec import Outcome
from bridge.store.models import Brand, UsageEvent, UsageStatus

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Engine

_DONE = (UsageStatus.SETTLED, UsageStatus.REJECTED)
_PAID = int(Outcome.PAID)
_TABLES = ("brands", "usage_events")


@dataclass(frozen=True, slots=True)
class DatabaseCheck:
    """What ``--against-db`` compared: the usages (of the database and of the chain, each
    counted once), the settlement batches they were in, and how they disagree."""

    database: str
    """The database, its password hidden."""
    usages: int
    batches: int
    discrepancies: list[Discrepancy]

    def sentence(self) -> str:
        """``database: 1,234 usages and 57 batches compared with the chain: all agree``."""
        outcome = (
            "all agree"
            if not self.discrepancies
            else f"{len(self.discrepancies):,} disagreement(s)"
        )
        return (
            f"database {self.database}: {self.usages:,} usages and {self.batches:,} batches "
            f"compared with the chain: {outcome}"
        )


@dataclass(frozen=True, slots=True)
class _DbUsage:
    usage_id: int
    brand: str
    event_id: str
    twin_id: int
    used_at: int
    quantity: int
    usage_type: int
    status: UsageStatus
    reason_code: int | None
    tx_hash: str | None
    block_number: int | None
    log_index: int | None
    amount: int | None


def database_url(text: str) -> URL:
    """``text`` as a database URL; a bare path names a SQLite file.

    Raises:
        AuditError: neither.
    """
    if "://" not in text:
        text = f"sqlite:///{text}"
    try:
        return make_url(text)
    except ArgumentError:
        raise AuditError(f"{text!r} is neither a database URL nor a file path") from None


def shown(url: URL) -> str:
    """The database as a person reads it: a SQLite file's path, else the URL without password."""
    if url.get_backend_name() == "sqlite":
        return str(url.database)
    return url.render_as_string(hide_password=True)


def open_read_only(text: str) -> tuple[Engine, str]:
    """An engine that only reads the existing database ``text`` (URL or SQLite path) and how to
    name it.

    Raises:
        AuditError: no such SQLite file, an in-memory one, or an unknown driver.
    """
    url = database_url(text)
    name = shown(url)
    try:
        if url.get_backend_name() == "sqlite":
            path = Path(url.database or "")
            if not url.database or url.database == ":memory:" or not path.is_file():
                raise AuditError(f"no database at {url.database or '(no path)'}")
            uri = f"sqlite:///file:{quote(str(path.resolve()))}?mode=ro&uri=true"
            return create_engine(uri), name
        if url.get_backend_name() == "postgresql":
            options = {"options": "-c default_transaction_read_only=on"}
            return create_engine(url, connect_args=options), name
        return create_engine(url), name
    except (ArgumentError, ImportError, ValueError) as exc:
        raise AuditError(f"cannot open the database {name}: {exc}") from None


def _driver_words(exc: SQLAlchemyError) -> str:
    """The driver's own first line (never the statement SQLAlchemy appends)."""
    orig = getattr(exc, "orig", None)
    text = str(orig) if orig is not None else type(exc).__name__
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def read_usages(url: str) -> tuple[str, list[_DbUsage]]:
    """How the database at ``url`` is named, and every usage in it, read in one read-only
    transaction.

    Raises:
        AuditError: the database is not there, cannot be read or has no bridge schema.
    """
    engine, name = open_read_only(url)
    query = select(
        UsageEvent.id,
        Brand.address,
        UsageEvent.event_id,
        UsageEvent.twin_id,
        UsageEvent.used_at,
        UsageEvent.quantity,
        UsageEvent.usage_type,
        UsageEvent.status,
        UsageEvent.reason_code,
        UsageEvent.tx_hash,
        UsageEvent.block_number,
        UsageEvent.log_index,
        UsageEvent.amount,
    ).join(Brand, Brand.id == UsageEvent.brand_id)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            missing = [t for t in _TABLES if not inspect(conn).has_table(t)]
            if missing:
                raise AuditError(
                    f"{name} is not a Twin Bridge database: it has no {' or '.join(missing)} table"
                )
            rows = conn.execute(query).all()
            conn.rollback()
    except SQLAlchemyError as exc:
        raise AuditError(
            f"cannot read usages from the database {name}: {_driver_words(exc)}"
        ) from None
    finally:
        engine.dispose()
    return name, [
        _DbUsage(
            usage_id=int(r[0]),
            brand=str(r[1]),
            event_id=str(r[2]),
            twin_id=int(r[3]),
            used_at=int(r[4].timestamp()),
            quantity=int(r[5]),
            usage_type=int(r[6]),
            status=UsageStatus(r[7]),
            reason_code=r[8],
            tx_hash=r[9],
            block_number=r[10],
            log_index=r[11],
            amount=r[12],
        )
        for r in rows
    ]


def reconcile(url: str, state: LedgerState) -> DatabaseCheck:
    """What the database at ``url`` and the rebuilt ``state`` were compared on, and every
    disagreement in words."""
    name, db_usages = read_usages(url)
    found = compare(db_usages, state)
    db_ids = {db.usage_id for db in db_usages if db.status in _DONE}
    own = _self_attested(state)
    chain = {row.usage_id: row for row in state.usages if (row.brand, row.usage_id) not in own}
    ids = db_ids | set(chain)
    batches = {chain[i].batch for i in ids if i in chain}
    return DatabaseCheck(name, len(ids), len(batches), found)


def compare(db_usages: list[_DbUsage], state: LedgerState) -> list[Discrepancy]:
    """Every disagreement between ``db_usages`` and the usages of the rebuilt ``state``."""
    found: list[str] = []
    on_chain: dict[int, UsageRow] = {}
    own = _self_attested(state)
    for row in state.usages:
        if (row.brand, row.usage_id) in own:
            continue
        if row.usage_id in on_chain:
            found.append(f"usage {row.usage_id} is settled twice on chain")
        on_chain[row.usage_id] = row
    for db in db_usages:
        found.extend(_compare_usage(db, on_chain.get(db.usage_id), state))
    known = {db.usage_id for db in db_usages}
    for usage_id, chain in on_chain.items():
        if usage_id not in known:
            found.append(
                f"usage {usage_id} of {chain.brand} ({outcome_words(chain.outcome)}) was "
                f"settled on chain in tx {state.batches[chain.batch].tx_hash}, but the database "
                "does not know it"
            )
    return [Discrepancy("database", message) for message in found]


def _self_attested(state: LedgerState) -> set[tuple[str, int]]:
    """(brand, usage id) of the usages attested by a key that never held the bridge's
    ``ATTESTER_ROLE``: a brand's own attester numbers and reports its usages itself, outside the
    bridge's database (none when the roles are unknown)."""
    if state.manager is None:
        return set()
    bridge = {h[3] for h in state.role_history if h[2] == "ATTESTER_ROLE" and h[4] == "granted"}
    return {
        (u.brand, u.usage_id)
        for u in state.usages
        if state.batches[u.batch].attester not in bridge
        and state.brands.get(u.brand) is not None
        and state.brands[u.brand].attester == state.batches[u.batch].attester
    }


def _compare_usage(db: _DbUsage, chain: UsageRow | None, state: LedgerState) -> list[str]:
    """How one usage of the database disagrees with the chain's (None: not on chain)."""
    label = f"usage {db.usage_id} (event {db.event_id!r} of {db.brand})"
    if chain is None:
        if db.status in _DONE:
            return [
                f"{label} is {db.status.value} in the database (tx {db.tx_hash}), but no "
                "settlement on chain has it"
            ]
        return []
    batch = state.batches[chain.batch]
    where = f"tx {batch.tx_hash}"
    if db.status not in _DONE:
        return [
            f"{label} is {outcome_words(chain.outcome)} on chain ({where}), but the database has "
            f"it as {db.status.value}"
        ]
    found = []
    if (db.brand.lower(), db.twin_id, db.used_at, db.quantity, db.usage_type) != (
        chain.brand.lower(),
        chain.twin_id,
        chain.used_at,
        chain.quantity,
        chain.usage_type,
    ):
        found.append(
            f"{label} is brand {db.brand}, twin {db.twin_id}, time {db.used_at}, "
            f"quantity {db.quantity}, type {db.usage_type} in the database, but brand "
            f"{chain.brand}, twin {chain.twin_id}, time {chain.used_at}, quantity "
            f"{chain.quantity}, type {chain.usage_type} on chain ({where})"
        )
    if (db.tx_hash or "").lower() != batch.tx_hash.lower():
        found.append(
            f"{label} was settled in {where} on chain, but the database says tx {db.tx_hash}"
        )
    elif (db.block_number, db.log_index) != (batch.block_number, chain.log_index):
        found.append(
            f"{label} is in block {batch.block_number}, log {chain.log_index} on chain, but "
            f"in block {db.block_number}, log {db.log_index} in the database"
        )
    found.extend(_compare_outcome(db, chain, label, where))
    return found


def _compare_outcome(db: _DbUsage, chain: UsageRow, label: str, where: str) -> list[str]:
    code = chain.outcome
    db_code = _PAID if db.status is UsageStatus.SETTLED else db.reason_code
    if db_code != code:
        db_words = "paid" if db_code is None else outcome_words(db_code)
        return [
            f"{label} is '{outcome_words(code)}' on chain ({where}), but "
            f"'{db_words}' in the database"
        ]
    if code == _PAID and db.amount != chain.amount:
        return [
            f"{label} was paid {chain.amount} on chain ({where}), but the database records "
            f"{db.amount}"
        ]
    if code != _PAID and db.amount not in (None, 0):
        return [
            f"{label} was rejected on chain ({where}), but the database records an "
            f"amount of {db.amount}"
        ]
    return []
