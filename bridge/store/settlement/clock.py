"""The chain's clock as the settlement workers last read it: a usage dated after it waits."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.store.models import ChainHead, utcnow


def record_chain_head(
    session: Session, *, relayer: str, block_number: int, block_time: datetime
) -> None:
    """Records the latest block ``relayer``'s worker read, and commits (what it read last is the
    chain's head, even a lower one: a chain reverted or restarted)."""
    row = session.get(ChainHead, relayer.lower())
    if row is None:
        session.add(
            ChainHead(
                relayer=relayer.lower(),
                block_number=block_number,
                block_time=block_time,
                seen_at=utcnow(),
            )
        )
    else:
        row.block_number, row.block_time, row.seen_at = block_number, block_time, utcnow()
    session.commit()


def chain_time(session: Session) -> datetime | None:
    """The time of the block a worker read most recently (None: no worker has read one yet)."""
    return session.scalar(select(ChainHead.block_time).order_by(ChainHead.seen_at.desc()).limit(1))
