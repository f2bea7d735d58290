"""Accepted usages waiting for a batch: which ones the worker picks next, and the failed attempts
that hold a usage back for good."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bridge.store.engine import in_chunks
from bridge.store.models import Brand, UsageEvent, UsageStatus, utcnow
from bridge.store.settlement.leases import Lease, check_lease


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


def add_attempt(
    session: Session, usage_ids: Sequence[int], *, error: str, max_attempts: int
) -> None:
    """Counts a failed attempt of the accepted usages of ``usage_ids`` and holds those that
    reached ``max_attempts``, in the session's transaction (not committed)."""
    now = utcnow()
    for chunk in in_chunks(list(usage_ids)):
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
        add_attempt(session, usage_ids, error=error, max_attempts=max_attempts)
        session.commit()
    except BaseException:
        session.rollback()
        raise


@dataclass(frozen=True, slots=True)
class SettledElsewhere:
    """Where the ledger processed an accepted usage in a transaction this bridge did not send."""

    usage_id: int
    settled: bool
    reason_code: int | None
    tx_hash: str
    block_number: int
    log_index: int
    amount: int | None
    paid_from_escrow: int | None = None
    recorded_as_debt: int | None = None


def settle_elsewhere(
    session: Session, outcome: SettledElsewhere, *, lease: Lease | None = None
) -> bool:
    """Records an accepted usage settled (or rejected) by ``outcome``'s transaction: the very
    usage, under its id, in a batch this bridge did not send (the caller checked that, and that
    the block is confirmed). False, and nothing written, when the usage is no longer accepted."""
    check_lease(session, lease)
    done = session.execute(
        update(UsageEvent)
        .where(UsageEvent.id == outcome.usage_id, UsageEvent.status == UsageStatus.ACCEPTED)
        .values(
            status=UsageStatus.SETTLED if outcome.settled else UsageStatus.REJECTED,
            reason_code=outcome.reason_code,
            tx_hash=outcome.tx_hash,
            block_number=outcome.block_number,
            log_index=outcome.log_index,
            amount=outcome.amount,
            paid_from_escrow=outcome.paid_from_escrow,
            recorded_as_debt=outcome.recorded_as_debt,
            last_error=None,
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return bool(getattr(done, "rowcount", 0))
