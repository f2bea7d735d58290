"""Times at the API's edge: the ledger counts in unix seconds, the API speaks RFC 3339 (UTC)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

LAST_RFC3339: Final = 253_402_300_799
"""9999-12-31T23:59:59Z: the latest time RFC 3339 can write (a ledger time beyond it, such as a
license without end at ``2**40 - 1``, is written as this)."""


def rfc3339(unix: int) -> str:
    """``unix`` seconds as RFC 3339 in UTC (``2026-12-05T16:00:40Z``), at most ``LAST_RFC3339``."""
    return datetime.fromtimestamp(min(unix, LAST_RFC3339), UTC).isoformat().replace("+00:00", "Z")


def unix_seconds(text: str) -> int:
    """The unix seconds of an RFC 3339 time with a zone (what the API answers).

    Raises:
        ValueError: not such a time.
    """
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return int(value.timestamp())
