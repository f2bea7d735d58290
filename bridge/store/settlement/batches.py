"""Settlement batches: a signed batch (or owner action) and its relayer transaction, from signing
through sending, mining and confirmation, and back when a reorg undoes it.

Every transition is one committed transaction, so a crash at any point leaves a state the worker
resumes from: usages are claimed into a batch (and the planned nonce recorded) in the same commit
that stores the signed transaction, before anything is sent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bridge.store.engine import in_chunks
from bridge.store.models import (
    ActionStatus,
    BatchStatus,
    OwnerAction,
    RelayerNonce,
    SettlementBatch,
    UsageEvent,
    UsageStatus,
    utcnow,
)
from bridge.store.settlement.claims import add_attempt
from bridge.store.settlement.leases import Lease, check_lease

OPEN_STATUSES: Final = (BatchStatus.SIGNED, BatchStatus.SENT, BatchStatus.MINED)


class ClaimConflictError(RuntimeError):
    """Some usages of a new batch were no longer accepted (claimed by someone else)."""


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
    paid_from_escrow: int | None = None
    """Of ``amount``, what the brand's escrow paid (None: not paid, or unknown)."""
    recorded_as_debt: int | None = None
    """Of ``amount``, what became the brand's debt (``DebtRecorded``; None: not paid, unknown)."""


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


def create_batch(session: Session, batch: NewBatch, *, lease: Lease | None = None) -> BatchRecord:
    """Stores the signed batch, claims its usages (submitted) and records the relayer's next nonce,
    in one commit.

    Raises:
        ClaimConflictError: when a usage is no longer accepted; nothing is stored then.
    """
    check_lease(session, lease)
    now = utcnow()
    row = _new_batch_row(batch, now)
    try:
        session.add(row)
        session.flush()
        _claim_usages(session, batch.usage_ids, batch_id=row.id, now=now)
        if batch.action_id is not None:
            _claim_action(session, batch.action_id, batch_id=row.id, now=now)
        _record_nonce(session, batch.relayer, batch.nonce + 1, now=now)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return BatchRecord.of(row)


def _new_batch_row(batch: NewBatch, now: datetime) -> SettlementBatch:
    payload: dict[str, Any] = {
        "groups": [[brand, [str(w) for w in words]] for brand, words in batch.groups],
        "signature": batch.signature.hex(),
    }
    if batch.calldata is not None:
        payload |= {"calldata": batch.calldata.hex(), "action_id": batch.action_id}
    return SettlementBatch(
        relayer=batch.relayer,
        nonce=batch.nonce,
        digest=batch.digest,
        deadline=batch.deadline,
        payload=json.dumps(payload),
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


def _claim_usages(
    session: Session, usage_ids: Sequence[int], *, batch_id: int, now: datetime
) -> None:
    """Moves the accepted usages into the batch (submitted).

    Raises:
        ClaimConflictError: one of them is no longer accepted.
    """
    claimed = 0
    for chunk in in_chunks(list(usage_ids)):
        result: Any = session.execute(
            update(UsageEvent)
            .where(UsageEvent.id.in_(chunk), UsageEvent.status == UsageStatus.ACCEPTED)
            .values(status=UsageStatus.SUBMITTED, batch_id=batch_id, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        claimed += int(result.rowcount)
    if claimed != len(usage_ids):
        raise ClaimConflictError(f"claimed {claimed} of {len(usage_ids)} usages")


def _claim_action(session: Session, action_id: int, *, batch_id: int, now: datetime) -> None:
    """Puts the accepted owner action on the batch's transaction.

    Raises:
        ClaimConflictError: it is no longer accepted, or rides another transaction.
    """
    taken: Any = session.execute(
        update(OwnerAction)
        .where(
            OwnerAction.id == action_id,
            OwnerAction.status == ActionStatus.ACCEPTED,
            OwnerAction.batch_id.is_(None),
        )
        .values(batch_id=batch_id, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if int(taken.rowcount) != 1:
        raise ClaimConflictError(f"owner action {action_id} is no longer accepted")


def _record_nonce(session: Session, relayer: str, next_nonce: int, *, now: datetime) -> None:
    """Raises the relayer's recorded next nonce to ``next_nonce`` (never lowers it)."""
    row = session.get(RelayerNonce, relayer.lower())
    if row is None:
        session.add(RelayerNonce(address=relayer.lower(), next_nonce=next_nonce, updated_at=now))
    else:
        row.next_nonce = max(row.next_nonce, next_nonce)
        row.updated_at = now


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
    is counted and a usage that reached ``max_attempts`` is held instead (see
    ``claims.count_attempt``).
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
        add_attempt(session, ids, error=error, max_attempts=max_attempts)
    session.commit()


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
                "paid_from_escrow": r.paid_from_escrow,
                "recorded_as_debt": r.recorded_as_debt,
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
            paid_from_escrow=None,
            recorded_as_debt=None,
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return BatchRecord.of(row)
