"""What every ledger query shares: the source of a figure, and codes in words."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal, Protocol

from bridge.domain.usage import UsageType

BPS_DENOMINATOR: Final = 10_000

Period = Literal["day", "month"]


@dataclass(frozen=True, slots=True)
class Source:
    """The ledger event a figure came from."""

    tx_hash: str
    block_number: int
    log_index: int
    block_time: datetime


class _EventRow(Protocol):
    """A stored row that came from one ledger event (``EventSource`` columns)."""

    @property
    def tx_hash(self) -> str: ...
    @property
    def block_number(self) -> int: ...
    @property
    def log_index(self) -> int: ...
    @property
    def block_time(self) -> datetime: ...


def source_of(row: _EventRow) -> Source:
    """The ``Source`` of a row stored from one ledger event."""
    return Source(
        tx_hash=row.tx_hash,
        block_number=row.block_number,
        log_index=row.log_index,
        block_time=row.block_time,
    )


def usage_type_name(code: int) -> str | None:
    """The API name of a usage type code, None for a code the bridge does not name."""
    try:
        return UsageType(code).api_name
    except ValueError:
        return None
