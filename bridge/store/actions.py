"""Relayed owner actions in the store: stored once per EIP-712 digest, picked by the worker in
order, and read back with the status of the transaction that carries them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bridge.intake.owner_actions import VerifiedAction
from bridge.store.models import ActionStatus, BatchStatus, OwnerAction, SettlementBatch, utcnow
from bridge.store.settlement.leases import Lease, check_lease

OPEN_BATCH: Final = (BatchStatus.SIGNED, BatchStatus.SENT, BatchStatus.MINED)


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """A relayed action and where it is: accepted (held, not yet in a transaction), submitted (in
    a transaction not yet confirmed), confirmed, or failed (with the reason)."""

    id: int
    kind: str
    signer: str
    twin_id: int | None
    nonce: int | None
    deadline: int | None
    message: dict[str, Any]
    digest: str
    status: str
    error: str | None
    tx_hash: str | None
    block_number: int | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class PendingAction:
    """An accepted action the worker can send."""

    id: int
    kind: str
    deadline: int | None
    digest: str
    signature: bytes
    calldata: bytes


def _record(row: OwnerAction, batch: SettlementBatch | None) -> ActionRecord:
    status, error = row.status.value, row.error
    tx_hash: str | None = None
    block: int | None = None
    if batch is not None:
        tx_hash = batch.tx_hash
        block = batch.block_number
        match batch.status:
            case BatchStatus.CONFIRMED:
                status = "confirmed"
            case BatchStatus.FAILED:
                status, error = "failed", batch.error
            case _:
                status = "submitted"
    return ActionRecord(
        id=row.id,
        kind=row.kind,
        signer=row.signer,
        twin_id=row.twin_id,
        nonce=row.nonce,
        deadline=row.deadline,
        message=json.loads(row.message),
        digest=row.digest,
        status=status,
        error=error,
        tx_hash=tx_hash,
        block_number=block,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def get_action(session: Session, action_id: int) -> ActionRecord | None:
    row = session.get(OwnerAction, action_id)
    if row is None:
        return None
    batch = session.get(SettlementBatch, row.batch_id) if row.batch_id is not None else None
    return _record(row, batch)


def action_by_digest(session: Session, digest: str) -> ActionRecord | None:
    row = session.scalar(select(OwnerAction).where(OwnerAction.digest == digest))
    return None if row is None else get_action(session, row.id)


def held_nonces(session: Session, signer: str) -> list[int]:
    """Nonces of the signer's actions the bridge holds and has not seen confirmed or failed."""
    rows = session.execute(
        select(OwnerAction.nonce)
        .outerjoin(SettlementBatch, SettlementBatch.id == OwnerAction.batch_id)
        .where(
            OwnerAction.signer == signer,
            OwnerAction.nonce.is_not(None),
            OwnerAction.status == ActionStatus.ACCEPTED,
            or_(OwnerAction.batch_id.is_(None), SettlementBatch.status.in_(OPEN_BATCH)),
        )
    ).scalars()
    return sorted(int(n) for n in rows if n is not None)


def insert_action(session: Session, action: VerifiedAction) -> tuple[ActionRecord, bool]:
    """Stores the action (committed before the API answers); ``(record, created)``. The same
    digest again answers the stored action; one that failed is accepted again (a signature the
    ledger did not use may be tried once more)."""
    now = utcnow()
    existing = session.scalar(select(OwnerAction).where(OwnerAction.digest == action.digest))
    if existing is not None:
        record = get_action(session, existing.id)
        assert record is not None  # noqa: S101 - just read
        if record.status != "failed":
            return record, False
        existing.status = ActionStatus.ACCEPTED
        existing.error = None
        existing.batch_id = None
        existing.updated_at = now
        session.commit()
        again = get_action(session, existing.id)
        assert again is not None  # noqa: S101 - just written
        return again, True
    row = OwnerAction(
        kind=action.kind,
        signer=action.signer,
        twin_id=action.twin_id,
        nonce=action.nonce,
        deadline=action.deadline,
        message=action.message_json(),
        signature=None if action.signature is None else "0x" + action.signature.hex(),
        digest=action.digest,
        calldata=action.calldata.hex(),
        status=ActionStatus.ACCEPTED,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    try:
        session.commit()
    except IntegrityError:  # the same digest, stored by another request meanwhile
        session.rollback()
        other = session.scalar(select(OwnerAction).where(OwnerAction.digest == action.digest))
        if other is None:
            raise
        record = get_action(session, other.id)
        assert record is not None  # noqa: S101 - just read
        return record, False
    record = get_action(session, row.id)
    assert record is not None  # noqa: S101 - just written
    return record, True


def next_action(session: Session) -> PendingAction | None:
    """The oldest accepted action not yet in a transaction."""
    row = session.scalar(
        select(OwnerAction)
        .where(OwnerAction.status == ActionStatus.ACCEPTED, OwnerAction.batch_id.is_(None))
        .order_by(OwnerAction.id)
        .limit(1)
    )
    if row is None:
        return None
    return PendingAction(
        id=row.id,
        kind=row.kind,
        deadline=row.deadline,
        digest=row.digest,
        signature=bytes.fromhex(row.signature[2:]) if row.signature else b"",
        calldata=bytes.fromhex(row.calldata),
    )


def fail_action(
    session: Session, action_id: int, *, error: str, lease: Lease | None = None
) -> None:
    """An accepted action the ledger would refuse now (or whose deadline passed): failed, with
    the reason, before it costs gas."""
    check_lease(session, lease)
    session.execute(
        update(OwnerAction)
        .where(OwnerAction.id == action_id, OwnerAction.batch_id.is_(None))
        .values(status=ActionStatus.FAILED, error=error, updated_at=utcnow())
    )
    session.commit()
