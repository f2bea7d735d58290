"""Packing of usage words and settlement results, mirroring ``contracts/libraries/UsageCodec.sol``.

A usage is one 256-bit word, from the high bits down:
``usageId (64) | twinId (64) | usedAt (40) | quantity (32) | usageType (8)``, the low 48 bits zero.
A settlement result is the usage word with its outcome code in the low 8 bits. Codes only ever
grow on chain: a code this bridge does not know yet is an ``Outcome`` too (named ``UNKNOWN``, its
number kept), read as a discrepancy, never raised on.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

_USAGE_ID_SHIFT: Final = 192
_TWIN_ID_SHIFT: Final = 128
_USED_AT_SHIFT: Final = 88
_QUANTITY_SHIFT: Final = 56
_USAGE_TYPE_SHIFT: Final = 48

MAX_USAGE_ID: Final = 2**64 - 1
MAX_TWIN_ID: Final = 2**64 - 1
MAX_TIMESTAMP: Final = 2**40 - 1
MAX_QUANTITY: Final = 2**32 - 1
MAX_USAGE_TYPE: Final = 2**8 - 1


class Outcome(IntEnum):
    """Why a usage was (not) paid; mirrors ``ITwinLedger.Outcome``."""

    PAID = 0
    UNKNOWN_TWIN = 1
    NO_LICENSE = 2
    LICENSE_NOT_STARTED = 3
    LICENSE_EXPIRED = 4
    LICENSE_REVOKED = 5
    USAGE_TYPE_NOT_LICENSED = 6
    USE_CAP_REACHED = 7
    TWIN_PAUSED = 8
    ZERO_QUANTITY = 9
    USAGE_IN_FUTURE = 10
    OFFER_NOT_ACCEPTED = 11
    OVER_USAGE_LIMIT = 12
    OVER_PERIOD_LIMIT = 13

    @classmethod
    def _missing_(cls, value: object) -> Outcome | None:
        """A code of a newer ledger (or a corrupt word): an ``UNKNOWN`` outcome keeping its number,
        so that readers record a discrepancy instead of crashing."""
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFF:
            return None
        unknown = int.__new__(cls, value)
        unknown._name_ = "UNKNOWN"
        unknown._value_ = value
        return unknown

    @property
    def known(self) -> bool:
        """Whether this bridge knows the code (False: a discrepancy to look at)."""
        return self._name_ != "UNKNOWN"

    @property
    def description(self) -> str:
        """The outcome in a sentence, from the one vocabulary (``bridge.domain.usage``, which
        builds on this module: imported here when asked)."""
        from bridge.domain.usage import outcome_sentence

        return outcome_sentence(self)


@dataclass(frozen=True, slots=True)
class Usage:
    """One usage as the ledger sees it."""

    usage_id: int
    twin_id: int
    used_at: int
    quantity: int
    usage_type: int

    def __post_init__(self) -> None:
        for name, value, limit in (
            ("usage_id", self.usage_id, MAX_USAGE_ID),
            ("twin_id", self.twin_id, MAX_TWIN_ID),
            ("used_at", self.used_at, MAX_TIMESTAMP),
            ("quantity", self.quantity, MAX_QUANTITY),
            ("usage_type", self.usage_type, MAX_USAGE_TYPE),
        ):
            if not 0 <= value <= limit:
                raise ValueError(f"{name}={value} is outside 0..{limit}")

    def encode(self) -> int:
        """The packed usage word."""
        return (
            (self.usage_id << _USAGE_ID_SHIFT)
            | (self.twin_id << _TWIN_ID_SHIFT)
            | (self.used_at << _USED_AT_SHIFT)
            | (self.quantity << _QUANTITY_SHIFT)
            | (self.usage_type << _USAGE_TYPE_SHIFT)
        )

    @classmethod
    def decode(cls, word: int) -> Usage:
        """A usage from a usage word or a result word (the outcome bits are ignored)."""
        return cls(
            usage_id=(word >> _USAGE_ID_SHIFT) & MAX_USAGE_ID,
            twin_id=(word >> _TWIN_ID_SHIFT) & MAX_TWIN_ID,
            used_at=(word >> _USED_AT_SHIFT) & MAX_TIMESTAMP,
            quantity=(word >> _QUANTITY_SHIFT) & MAX_QUANTITY,
            usage_type=(word >> _USAGE_TYPE_SHIFT) & MAX_USAGE_TYPE,
        )


def decode_result(word: int) -> tuple[Usage, Outcome]:
    """The usage and its outcome from a word of ``UsagesSettled.results`` (an ``UNKNOWN``
    outcome for a code this bridge does not know)."""
    return Usage.decode(word), Outcome(word & 0xFF)


def same_usage(a: int, b: int) -> bool:
    """Whether two usage or result words carry the same usage (outcome bits aside)."""
    return a >> _USAGE_TYPE_SHIFT == b >> _USAGE_TYPE_SHIFT


def result_code(word: int) -> int:
    """The outcome code in a word of ``UsagesSettled.results`` as it stands (an auditor reads
    codes ``Outcome`` does not know too)."""
    return word & 0xFF
