"""The settlement worker's durable state: batches, their usages and the relayer's nonce.

Every transition is one committed transaction, so a crash at any point leaves a state the worker
resumes from: usages are claimed into a batch (and the planned nonce recorded) in the same commit
that stores the signed transaction, before anything is sent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bridge.store.models import (
    ActionStatus,
    BatchStatus,
    Brand,
    OwnerAction,
    RelayerNonce,
    SettlementBatch,
    UsageEvent,
    UsageStatus,
    WorkerLease,
    utcnow,
)

OPEN_STATUSES = (BatchStatus.SIGNED, BatchStatus.SENT, BatchStatus.MINED)


class ClaimConflictError(RuntimeError):
    """Some usages of a new batch were no longer accepted (claimed by someone else)."""


class LeaseLostError(RuntimeError):
    """The writing worker no longer holds its relayer's lease: nothing was written."""

    def __init__(self, relayer: str, holder: str) -> None:
        self.relayer = relayer
        self.holder = holder
        super().__init__(f"worker {holder} no longer holds the lease of relayer {relayer}")


@dataclass(frozen=True, slots=True)
class Lease:
    """The lease a write is fenced by: done only while ``holder`` holds ``relayer``'s lease."""

    relayer: str
    holder: str


def check_lease(session: Session, lease: Lease | None) -> None:
    """Fences the session's transaction by ``lease`` (None: unfenced).

    A no-op UPDATE of the lease row that matches only while ``holder`` holds it: it locks the row
    until the transaction ends (PostgreSQL; SQLite locks the database for the write), so no other
    worker takes the lease over between this check and the commit.

    Raises:
        LeaseLostError: another worker holds the lease (or none does); the session is rolled back.
    """
    if lease is None:
        return
    result: Any = session.execute(
        update(WorkerLease)
        .where(WorkerLease.relayer == lease.relayer.lower(), WorkerLease.holder == lease.holder)
        .values(holder=lease.holder)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        session.rollback()
        raise LeaseLostError(lease.relayer, lease.holder)


@dataclass(frozen=True, slots=True)
class PendingUsage:
    """An accepted usage waiting for a batch, with its brand's address."""

    usage_id: int
    brand: str
    twin_id: int
    usage_type: int
    quantity: int
    used_at: datetime
    created_at: datetime


@dataclass(frozen=True, slots=True)
class BatchRecord:
    id: int
    relayer: str
    nonce: int
    digest: str
    deadline: int
    groups: tuple[tuple[str, tuple[int, ...]], ...]
    signature: bytes
    raw_tx: bytes
    tx_hash: str
    tx_hashes: tuple[str, ...]
    gas_limit: int
    max_fee_per_gas: int
    max_priority_fee_per_gas: int
    status: BatchStatus
    block_number: int | None
    block_hash: str | None
    error: str | None
    sent_at: datetime | None
    """When the current transaction (the first or the latest replacement) was sent."""
    calldata: bytes | None = None
    """The transaction's calldata when it is not a usage batch's ``settle`` (an owner action)."""
    action_id: int | None = None
    """The owner action this transaction carries, if it carries one."""

    @property
    def usage_count(self) -> int:
        return sum(len(words) for _, words in self.groups)

    @classmethod
    def of(cls, row: SettlementBatch) -> BatchRecord:
        payload = json.loads(row.payload)
        return cls(
            id=row.id,
            relayer=row.relayer,
            nonce=row.nonce,
            digest=row.digest,
            deadline=row.deadline,
            groups=tuple(
                (brand, tuple(int(w) for w in words)) for brand, words in payload["groups"]
            ),
            signature=bytes.fromhex(payload["signature"]),
            raw_tx=bytes.fromhex(row.raw_tx),
            tx_hash=row.tx_hash,
            tx_hashes=tuple(json.loads(row.tx_hashes)),
            gas_limit=row.gas_limit,
            max_fee_per_gas=row.max_fee_per_gas,
            max_priority_fee_per_gas=row.max_priority_fee_per_gas,
            status=row.status,
            block_number=row.block_number,
            block_hash=row.block_hash,
            error=row.error,
            sent_at=row.sent_at,
            calldata=bytes.fromhex(payload["calldata"]) if "calldata" in payload else None,
            action_id=payload.get("action_id"),
        )


@dataclass(frozen=True, slots=True)
class NewBatch:
    """A signed batch and its signed relayer transaction, not yet stored."""

    relayer: str
    nonce: int
    digest: str
    deadline: int
    groups: Sequence[tuple[str, Sequence[int]]]
    signature: bytes
    raw_tx: bytes
    tx_hash: str
    gas_limit: int
    max_fee_per_gas: int
    max_priority_fee_per_gas: int
    usage_ids: Sequence[int]
    calldata: bytes | None = None
    """For an owner action: the calldata of its transaction (``groups`` and ``usage_ids`` empty)."""
    action_id: int | None = None


@dataclass(frozen=True, slots=True)
class UsageResult:
    """What the chain said about one usage of a confirmed batch."""

    usage_id: int
    settled: bool
    reason_code: int | None
    log_index: int
    amount: int | None


def oldest_accepted(session: Session, *, used_by: datetime) -> datetime | None:
    """When the longest-waiting accepted usage used by ``used_by`` was stored."""
    return session.scalar(
        select(func.min(UsageEvent.created_at)).where(
            UsageEvent.status == UsageStatus.ACCEPTED, UsageEvent.used_at <= used_by
        )
    )


def pick_accepted(session: Session, *, limit: int, used_by: datetime) -> list[PendingUsage]:
    """Up to ``limit`` accepted usages used by ``used_by``, oldest (lowest id) first."""
    query = (
        select(UsageEvent, Brand.address)
        .join(Brand, Brand.id == UsageEvent.brand_id)
        .where(UsageEvent.status == UsageStatus.ACCEPTED, UsageEvent.used_at <= used_by)
        .order_by(UsageEvent.id)
        .limit(limit)
    )
    return [
        PendingUsage(
            usage_id=row.id,
            brand=address,
            twin_id=row.twin_id,
            usage_type=row.usage_type,
            quantity=row.quantity,
            used_at=row.used_at,
            created_at=row.created_at,
        )
        for row, address in session.execute(query)
    ]


def recorded_nonce(session: Session, relayer: str) -> int | None:
    row = session.get(RelayerNonce, relayer.lower())
    return None if row is None else row.next_nonce


def open_batch(session: Session, *, relayer: str) -> BatchRecord | None:
    """The relayer's oldest batch that is signed, sent or mined but not yet confirmed."""
    row = session.scalars(
        select(SettlementBatch)
        .where(SettlementBatch.relayer == relayer, SettlementBatch.status.in_(OPEN_STATUSES))
        .order_by(SettlementBatch.id)
        .limit(1)
    ).one_or_none()
    return None if row is None else BatchRecord.of(row)


def get_batch(session: Session, batch_id: int) -> BatchRecord | None:
    row = session.get(SettlementBatch, batch_id)
    return None if row is None else BatchRecord.of(row)


def create_batch(session: Session, batch: NewBatch, *, lease: Lease | None = None) -> BatchRecord:
    """Stores the signed batch, claims its usages (submitted) and records the relayer's next nonce,
    in one commit.

    Raises:
        ClaimConflictError: when a usage is no longer accepted; nothing is stored then.
    """
    check_lease(session, lease)
    now = utcnow()
    row = SettlementBatch(
        relayer=batch.relayer,
        nonce=batch.nonce,
        digest=batch.digest,
        deadline=batch.deadline,
        payload=json.dumps(
            {
                "groups": [[brand, [str(w) for w in words]] for brand, words in batch.groups],
                "signature": batch.signature.hex(),
                **(
                    {"calldata": batch.calldata.hex(), "action_id": batch.action_id}
                    if batch.calldata is not None
                    else {}
                ),
            }
        ),
        raw_tx=batch.raw_tx.hex(),
        tx_hash=batch.tx_hash,
        tx_hashes=json.dumps([batch.tx_hash]),
        gas_limit=batch.gas_limit,
        max_fee_per_gas=batch.max_fee_per_gas,
        max_priority_fee_per_gas=batch.max_priority_fee_per_gas,
        status=BatchStatus.SIGNED,
        created_at=now,
        updated_at=now,
    )
    try:
        session.add(row)
        session.flush()
        claimed = 0
        ids = list(batch.usage_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            result: Any = session.execute(
                update(UsageEvent)
                .where(UsageEvent.id.in_(chunk), UsageEvent.status == UsageStatus.ACCEPTED)
                .values(status=UsageStatus.SUBMITTED, batch_id=row.id, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            claimed += int(result.rowcount)
        if claimed != len(ids):
            raise ClaimConflictError(f"claimed {claimed} of {len(ids)} usages")
        if batch.action_id is not None:
            taken: Any = session.execute(
                update(OwnerAction)
                .where(
                    OwnerAction.id == batch.action_id,
                    OwnerAction.status == ActionStatus.ACCEPTED,
                    OwnerAction.batch_id.is_(None),
                )
                .values(batch_id=row.id, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            if int(taken.rowcount) != 1:
                raise ClaimConflictError(f"owner action {batch.action_id} is no longer accepted")
        nonce_row = session.get(RelayerNonce, batch.relayer.lower())
        if nonce_row is None:
            session.add(
                RelayerNonce(
                    address=batch.relayer.lower(), next_nonce=batch.nonce + 1, updated_at=now
                )
            )
        else:
            nonce_row.next_nonce = max(nonce_row.next_nonce, batch.nonce + 1)
            nonce_row.updated_at = now
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return BatchRecord.of(row)


def _batch_row(session: Session, batch_id: int) -> SettlementBatch:
    row = session.get(SettlementBatch, batch_id)
    if row is None:
        raise LookupError(f"no batch {batch_id}")
    return row


def mark_sent(session: Session, batch_id: int, *, at: datetime, lease: Lease | None = None) -> None:
    """The batch's transaction went out (first time at ``at``), or came back out of a block."""
    check_lease(session, lease)
    row = _batch_row(session, batch_id)
    row.status = BatchStatus.SENT
    row.sent_at = row.sent_at or at
    session.commit()


def replace_tx(
    session: Session,
    batch_id: int,
    *,
    raw_tx: bytes,
    tx_hash: str,
    max_fee_per_gas: int,
    max_priority_fee_per_gas: int,
    at: datetime,
    lease: Lease | None = None,
) -> BatchRecord:
    """Stores a replacement transaction (same nonce, higher fees) before it is sent; the earlier
    hashes stay in ``tx_hashes``, since any of them may still be mined."""
    check_lease(session, lease)
    row = _batch_row(session, batch_id)
    row.raw_tx = raw_tx.hex()
    row.tx_hash = tx_hash
    row.tx_hashes = json.dumps([*json.loads(row.tx_hashes), tx_hash])
    row.max_fee_per_gas = max_fee_per_gas
    row.max_priority_fee_per_gas = max_priority_fee_per_gas
    row.sent_at = at
    session.commit()
    return BatchRecord.of(row)


def mark_mined(
    session: Session, batch_id: int, *, tx_hash: str, block_number: int, block_hash: str,
    gas_used: int, lease: Lease | None = None,
) -> None:  # fmt: skip
    check_lease(session, lease)
    row = _batch_row(session, batch_id)
    row.status = BatchStatus.MINED
    row.tx_hash = tx_hash
    row.block_number = block_number
    row.block_hash = block_hash
    row.gas_used = gas_used
    session.commit()


def fail_batch(
    session: Session,
    batch_id: int,
    *,
    error: str,
    max_attempts: int | None = None,
    lease: Lease | None = None,
) -> None:
    """Marks the batch failed and hands its usages back (accepted, no batch) in one commit.

    With ``max_attempts`` the failure is the usages' own (the batch reverted): each one's attempt
    is counted and a usage that reached ``max_attempts`` is held instead (see ``count_attempt``).
    """
    check_lease(session, lease)
    row = _batch_row(session, batch_id)
    row.status = BatchStatus.FAILED
    row.error = error
    ids = list(session.scalars(select(UsageEvent.id).where(UsageEvent.batch_id == batch_id)))
    session.execute(
        update(UsageEvent)
        .where(UsageEvent.batch_id == batch_id)
        .values(status=UsageStatus.ACCEPTED, batch_id=None, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if max_attempts is not None:
        _count_attempt(session, ids, error=error, max_attempts=max_attempts)
    session.commit()


def _count_attempt(
    session: Session, usage_ids: Sequence[int], *, error: str, max_attempts: int
) -> None:
    now = utcnow()
    for start in range(0, len(usage_ids), 500):
        chunk = list(usage_ids[start : start + 500])
        session.execute(
            update(UsageEvent)
            .where(UsageEvent.id.in_(chunk), UsageEvent.status == UsageStatus.ACCEPTED)
            .values(
                settle_attempts=UsageEvent.settle_attempts + 1, last_error=error, updated_at=now
            )
            .execution_options(synchronize_session=False)
        )
        session.execute(
            update(UsageEvent)
            .where(
                UsageEvent.id.in_(chunk),
                UsageEvent.status == UsageStatus.ACCEPTED,
                UsageEvent.settle_attempts >= max_attempts,
            )
            .values(status=UsageStatus.HELD, updated_at=now)
            .execution_options(synchronize_session=False)
        )


def count_attempt(
    session: Session,
    usage_ids: Sequence[int],
    *,
    error: str,
    max_attempts: int,
    lease: Lease | None = None,
) -> None:
    """Counts a failed settlement attempt of accepted usages (their batch's gas estimation
    reverted) and holds those that reached ``max_attempts``: they keep ``last_error`` and are
    never batched again (``pick_accepted`` takes accepted usages only)."""
    check_lease(session, lease)
    try:
        _count_attempt(session, usage_ids, error=error, max_attempts=max_attempts)
        session.commit()
    except BaseException:
        session.rollback()
        raise


def confirm_batch(
    session: Session,
    batch_id: int,
    *,
    results: Sequence[UsageResult],
    lease: Lease | None = None,
) -> None:
    """Marks the batch confirmed and each of its usages settled or rejected, in one commit."""
    check_lease(session, lease)
    row = _batch_row(session, batch_id)
    if row.status is not BatchStatus.MINED:
        raise ValueError(f"batch {batch_id} is {row.status}, not mined")
    _write_results(session, row, results)
    row.status = BatchStatus.CONFIRMED
    session.commit()


def _write_results(session: Session, row: SettlementBatch, results: Sequence[UsageResult]) -> None:
    now = utcnow()
    session.execute(
        update(UsageEvent).execution_options(synchronize_session=False),
        [
            {
                "id": r.usage_id,
                "status": UsageStatus.SETTLED if r.settled else UsageStatus.REJECTED,
                "reason_code": r.reason_code,
                "tx_hash": row.tx_hash,
                "block_number": row.block_number,
                "log_index": r.log_index,
                "amount": r.amount,
                "updated_at": now,
            }
            for r in results
        ],
    )


# ---------------------------------------------------------------- reorgs past the depth


@dataclass(frozen=True, slots=True)
class MinedIn:
    """Where a transaction of a batch is mined now."""

    tx_hash: str
    block_number: int
    block_hash: str
    gas_used: int


def confirmed_batches(
    session: Session, *, relayer: str, from_block: int, ids: Sequence[int] | None = None
) -> list[BatchRecord]:
    """The relayer's confirmed batches mined in ``from_block`` or later (of ``ids`` only, if
    given), oldest first."""
    query = select(SettlementBatch).where(
        SettlementBatch.status == BatchStatus.CONFIRMED,
        SettlementBatch.relayer == relayer,
        SettlementBatch.block_number >= from_block,
    )
    if ids is not None:
        query = query.where(SettlementBatch.id.in_(list(ids)))
    return [BatchRecord.of(row) for row in session.scalars(query.order_by(SettlementBatch.id))]


def _confirmed_row(session: Session, batch_id: int) -> SettlementBatch:
    row = _batch_row(session, batch_id)
    if row.status is not BatchStatus.CONFIRMED:
        raise ValueError(f"batch {batch_id} is {row.status}, not confirmed")
    return row


def _move(row: SettlementBatch, mined: MinedIn) -> None:
    row.tx_hash = mined.tx_hash
    row.block_number = mined.block_number
    row.block_hash = mined.block_hash
    row.gas_used = mined.gas_used


def resettle_batch(
    session: Session,
    batch_id: int,
    *,
    mined: MinedIn,
    results: Sequence[UsageResult],
    lease: Lease | None = None,
) -> None:
    """A confirmed batch whose block a reorg replaced, its transaction mined again (deep enough)
    in ``mined``: the batch and its usages' outcomes, blocks, log indexes and amounts follow the
    new receipt, in one commit; the batch stays confirmed."""
    check_lease(session, lease)
    row = _confirmed_row(session, batch_id)
    _move(row, mined)
    _write_results(session, row, results)
    session.commit()


def reopen_batch(
    session: Session,
    batch_id: int,
    *,
    at: datetime,
    mined: MinedIn | None = None,
    lease: Lease | None = None,
) -> BatchRecord:
    """A confirmed batch whose block a reorg replaced: back to mined (in ``mined``, not yet deep
    enough) or, when its transaction is in no block, to sent (sent again ``at``), its usages back
    to submitted without their outcomes, in one commit. Its nonce stays its own."""
    check_lease(session, lease)
    row = _confirmed_row(session, batch_id)
    if mined is None:
        row.status = BatchStatus.SENT
        row.sent_at = at
        row.block_number = row.block_hash = row.gas_used = None
    else:
        row.status = BatchStatus.MINED
        _move(row, mined)
    session.execute(
        update(UsageEvent)
        .where(UsageEvent.batch_id == batch_id)
        .values(
            status=UsageStatus.SUBMITTED,
            reason_code=None,
            tx_hash=None,
            block_number=None,
            log_index=None,
            amount=None,
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return BatchRecord.of(row)


def batch_usage_ids(session: Session, batch_id: int) -> list[int]:
    return list(
        session.scalars(
            select(UsageEvent.id).where(UsageEvent.batch_id == batch_id).order_by(UsageEvent.id)
        )
    )


# ---------------------------------------------------------------- the lease


def acquire_lease(
    session: Session, *, relayer: str, holder: str, now: datetime, ttl: timedelta
) -> bool:
    """Takes or renews the relayer's lease for ``holder`` until ``now + ttl``; whether it holds it.

    One conditional UPDATE (the row is locked while it runs, on PostgreSQL as on SQLite) renews a
    lease of ``holder`` or takes over an expired one; a missing row is inserted, and of two
    inserting at once the primary key lets one win.
    """
    key = relayer.lower()
    try:
        result: Any = session.execute(
            update(WorkerLease)
            .where(
                WorkerLease.relayer == key,
                or_(WorkerLease.holder == holder, WorkerLease.expires_at <= now),
            )
            .values(holder=holder, expires_at=now + ttl)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:
            session.commit()
            return True
        if session.get(WorkerLease, key) is not None:
            session.rollback()
            return False
        session.add(WorkerLease(relayer=key, holder=holder, expires_at=now + ttl, acquired_at=now))
        session.commit()
        return True
    except IntegrityError:
        session.rollback()
        return False
    except BaseException:
        session.rollback()
        raise


def release_lease(session: Session, *, relayer: str, holder: str) -> None:
    """Gives the lease up (if ``holder`` has it), so a waiting worker takes over at once."""
    session.execute(
        delete(WorkerLease).where(
            WorkerLease.relayer == relayer.lower(), WorkerLease.holder == holder
        )
    )
    session.commit()


def lease_holder(session: Session, relayer: str) -> str | None:
    row = session.get(WorkerLease, relayer.lower())
    return None if row is None else row.holder


# ---------------------------------------------------------------- what the metrics show


@dataclass(frozen=True, slots=True)
class InflightBatch:
    """A relayer's oldest open batch."""

    id: int
    status: BatchStatus
    usages: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RelayerState:
    """A relayer's worker as the store sees it."""

    relayer: str
    """Lower case, as the lease and nonce tables hold it."""
    lease_holder: str | None
    lease_expires_at: datetime | None
    last_block: int | None
    """The block of the relayer's latest mined or confirmed batch."""
    inflight: InflightBatch | None


@dataclass(frozen=True, slots=True)
class SettlementStats:
    """The settlement's progress across every process that writes the store."""

    usages: dict[UsageStatus, int]
    """Usages by status, every status present."""
    oldest_unsettled: datetime | None
    """When the oldest usage still accepted or submitted was stored."""
    batches: dict[BatchStatus, int]
    """Batches by status, every status present."""
    confirmed_gas_used: int
    relayers: tuple[RelayerState, ...]
    """Every relayer that ever planned a nonce or holds a lease, by address."""


def settlement_stats(session: Session) -> SettlementStats:
    """A handful of aggregate queries, each on an index (usages and batches by status) or on the
    few rows of the lease and nonce tables, and two index lookups per relayer."""
    usages = dict.fromkeys(UsageStatus, 0)
    for usage_status, count in session.execute(
        select(UsageEvent.status, func.count()).group_by(UsageEvent.status)
    ):
        usages[usage_status] = int(count)
    oldest = session.scalar(
        select(func.min(UsageEvent.created_at)).where(
            UsageEvent.status.in_((UsageStatus.ACCEPTED, UsageStatus.SUBMITTED))
        )
    )
    batches = dict.fromkeys(BatchStatus, 0)
    gas_used = 0
    for batch_status, count, gas in session.execute(
        select(
            SettlementBatch.status,
            func.count(),
            func.sum(SettlementBatch.gas_used),
        ).group_by(SettlementBatch.status)
    ):
        batches[batch_status] = int(count)
        if batch_status is BatchStatus.CONFIRMED:
            gas_used = int(gas or 0)
    leases = {row.relayer: row for row in session.scalars(select(WorkerLease))}
    relayers = sorted(set(leases) | set(session.scalars(select(RelayerNonce.address))))
    return SettlementStats(
        usages=usages,
        oldest_unsettled=oldest,
        batches=batches,
        confirmed_gas_used=gas_used,
        relayers=tuple(_relayer_state(session, r, leases.get(r)) for r in relayers),
    )


def _relayer_state(session: Session, relayer: str, lease: WorkerLease | None) -> RelayerState:
    of_relayer = func.lower(SettlementBatch.relayer) == relayer
    last_block = session.scalar(
        select(SettlementBatch.block_number)
        .where(
            of_relayer,
            SettlementBatch.status.in_((BatchStatus.MINED, BatchStatus.CONFIRMED)),
        )
        .order_by(SettlementBatch.id.desc())
        .limit(1)
    )
    row = session.execute(
        select(SettlementBatch.id, SettlementBatch.status, SettlementBatch.created_at)
        .where(of_relayer, SettlementBatch.status.in_(OPEN_STATUSES))
        .order_by(SettlementBatch.id)
        .limit(1)
    ).one_or_none()
    inflight = None
    if row is not None:
        count = session.scalar(
            select(func.count()).select_from(UsageEvent).where(UsageEvent.batch_id == row.id)
        )
        inflight = InflightBatch(
            id=row.id, status=row.status, usages=int(count or 0), created_at=row.created_at
        )
    return RelayerState(
        relayer=relayer,
        lease_holder=None if lease is None else lease.holder,
        lease_expires_at=None if lease is None else lease.expires_at,
        last_block=last_block,
        inflight=inflight,
    )
