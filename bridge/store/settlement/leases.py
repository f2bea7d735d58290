"""The settlement worker's lease on its relayer key: one worker per relayer at a time, and every
write of a worker fenced by its lease (``check_lease``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bridge.store.models import WorkerLease


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
