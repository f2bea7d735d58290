"""Where the index stands: the indexer's cursor and the time of its block."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.store.models import IndexedBlock, IndexerCursor


@dataclass(frozen=True, slots=True)
class IndexStatus:
    ledger: str
    block_number: int
    block_hash: str
    block_time: datetime | None
    updated_at: datetime


def index_status(session: Session) -> IndexStatus | None:
    """The indexer's cursor (None before its first range)."""
    cursor = session.scalars(select(IndexerCursor).limit(1)).first()
    if cursor is None:
        return None
    block = session.get(IndexedBlock, cursor.block_number)
    return IndexStatus(
        ledger=cursor.ledger,
        block_number=cursor.block_number,
        block_hash=cursor.block_hash,
        block_time=None if block is None else datetime.fromtimestamp(block.timestamp, UTC),
        updated_at=cursor.updated_at,
    )
