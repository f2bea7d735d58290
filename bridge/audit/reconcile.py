"""Reconciliation of a bridge database with the ledger the audit rebuilt from chain events.

The database is only read (a read-only transaction on PostgreSQL, ``query_only`` on SQLite). Each
usage the database marks settled or rejected must be on chain with the same usage id, brand,
twin, time, quantity, type, transaction, block, outcome and amount; each usage settled on chain
must be known to the database, and marked as the chain says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import create_engine, select
from sqlalchemy.exc import SQLAlchemyError

from bridge.audit.core import AuditError, Discrepancy, LedgerState, outcome_words
from bridge.domain.codec import Outcome
from bridge.store.models import Brand, UsageEvent, UsageStatus

_DONE = (UsageStatus.SETTLED, UsageStatus.REJECTED)


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


def read_usages(url: str) -> list[_DbUsage]:
    """Every usage of the bridge database at ``url``, read in one read-only transaction.

    Raises:
        AuditError: the database cannot be opened or has no bridge schema.
    """
    try:
        engine = create_engine(url)
    except (SQLAlchemyError, ValueError, ImportError) as exc:
        raise AuditError(f"cannot open the database {url!r}: {exc}") from exc
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
            if engine.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA query_only = ON")
            elif engine.dialect.name == "postgresql":
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            rows = conn.execute(query).all()
            conn.rollback()
    except SQLAlchemyError as exc:
        raise AuditError(f"cannot read usages from the database: {exc}") from exc
    finally:
        engine.dispose()
    return [
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


def reconcile(url: str, state: LedgerState) -> list[Discrepancy]:
    """Every disagreement between the database at ``url`` and the rebuilt ``state``, in words."""
    return compare(read_usages(url), state)


def compare(db_usages: list[_DbUsage], state: LedgerState) -> list[Discrepancy]:
    found: list[Discrepancy] = []

    def problem(message: str) -> None:
        found.append(Discrepancy("database", message))

    on_chain: dict[int, tuple[Any, ...]] = {}
    for row in state.usages:
        if row[0] in on_chain:
            problem(f"usage {row[0]} is settled twice on chain")
        on_chain[row[0]] = row
    known: set[int] = set()
    for db in db_usages:
        known.add(db.usage_id)
        chain = on_chain.get(db.usage_id)
        label = f"usage {db.usage_id} (event {db.event_id!r} of {db.brand})"
        if chain is None:
            if db.status in _DONE:
                problem(
                    f"{label} is {db.status.value} in the database (tx {db.tx_hash}), but no "
                    "settlement on chain has it"
                )
            continue
        batch = state.batches[chain[9]]
        code = int(chain[6])
        where = f"tx {batch.tx_hash}"
        if db.status not in _DONE:
            problem(
                f"{label} is {outcome_words(code)} on chain ({where}), but the database has "
                f"it as {db.status.value}"
            )
            continue
        if (db.brand.lower(), db.twin_id, db.used_at, db.quantity, db.usage_type) != (
            str(chain[1]).lower(),
            chain[2],
            chain[3],
            chain[4],
            chain[5],
        ):
            problem(
                f"{label} is brand {db.brand}, twin {db.twin_id}, time {db.used_at}, "
                f"quantity {db.quantity}, type {db.usage_type} in the database, but brand "
                f"{chain[1]}, twin {chain[2]}, time {chain[3]}, quantity {chain[4]}, type "
                f"{chain[5]} on chain ({where})"
            )
        if (db.tx_hash or "").lower() != batch.tx_hash.lower():
            problem(
                f"{label} was settled in {where} on chain, but the database says tx {db.tx_hash}"
            )
        elif (db.block_number, db.log_index) != (batch.block_number, chain[10]):
            problem(
                f"{label} is in block {batch.block_number}, log {chain[10]} on chain, but "
                f"in block {db.block_number}, log {db.log_index} in the database"
            )
        db_code = int(Outcome.PAID) if db.status is UsageStatus.SETTLED else db.reason_code
        if db_code != code:
            db_words = "paid" if db_code is None else outcome_words(db_code)
            problem(
                f"{label} is '{outcome_words(code)}' on chain ({where}), but "
                f"'{db_words}' in the database"
            )
        elif code == int(Outcome.PAID) and db.amount != chain[7]:
            problem(
                f"{label} was paid {chain[7]} on chain ({where}), but the database records "
                f"{db.amount}"
            )
        elif code != int(Outcome.PAID) and db.amount not in (None, 0):
            problem(
                f"{label} was rejected on chain ({where}), but the database records an "
                f"amount of {db.amount}"
            )
    for usage_id, chain in on_chain.items():
        if usage_id not in known:
            batch = state.batches[chain[9]]
            problem(
                f"usage {usage_id} of {chain[1]} ({outcome_words(int(chain[6]))}) was "
                f"settled on chain in tx {batch.tx_hash}, but the database does not know "
                "it"
            )
    return found
