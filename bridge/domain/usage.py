"""Usage types, and the one vocabulary of what becomes of a usage (refused at the door, paid or
rejected on chain, waiting): the one place that names them, with their sentences."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Final

from bridge.domain.codec import Outcome


class UsageType(IntEnum):
    """The usage types a license prices; the numbers travel on chain as ``uint8``."""

    CAMPAIGN_IMAGE = 0
    VIDEO = 1
    SOCIAL_POST = 2
    PRINT = 3
    ECOMMERCE = 4
    OUTDOOR = 5

    @property
    def api_name(self) -> str:
        """The name brands use over HTTP (``campaign_image``)."""
        return self.name.lower()

    @classmethod
    def parse(cls, value: int | str) -> UsageType:
        """A usage type from its API name or its number.

        Raises:
            ValueError: for an unknown name or number.
        """
        if isinstance(value, str):
            try:
                return cls[value.upper()]
            except KeyError:
                names = ", ".join(t.api_name for t in cls)
                raise ValueError(f"unknown usage type {value!r}; one of {names}") from None
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown usage type {value}; 0..{max(cls)}") from None


class Where(StrEnum):
    """Where a code can be given: at the door (a refusal, nothing stored), on chain (a settled
    usage's outcome) or in a stored usage's status while it waits."""

    DOOR = "door"
    CHAIN = "chain"
    STATUS = "status"


class UsageCode(StrEnum):
    """The one vocabulary of usage outcomes, refusals and waits: the same name for the same
    condition at the door, on chain, in the read API, the CSV exports and the dashboard."""

    PAID = "paid"
    UNKNOWN_TWIN = "unknown_twin"
    NO_LICENSE = "no_license"
    LICENSE_NOT_STARTED = "license_not_started"
    LICENSE_EXPIRED = "license_expired"
    LICENSE_REVOKED = "license_revoked"
    USAGE_TYPE_NOT_LICENSED = "usage_type_not_licensed"
    USE_CAP_REACHED = "use_cap_reached"
    TWIN_PAUSED = "twin_paused"
    ZERO_QUANTITY = "zero_quantity"
    USAGE_IN_FUTURE = "usage_in_future"
    OFFER_NOT_ACCEPTED = "offer_not_accepted"
    OVER_USAGE_LIMIT = "over_usage_limit"
    OVER_PERIOD_LIMIT = "over_period_limit"
    UNKNOWN_OUTCOME = "unknown_outcome"
    """An outcome code this bridge does not know (a newer ledger's): a discrepancy to look at."""
    BRAND_ATTESTS_ITSELF = "brand_attests_itself"
    """The brand named its own attester on the ledger: the bridge's cannot settle its usages."""
    USED_AT_TOO_OLD = "used_at_too_old"
    USED_AT_IN_FUTURE = "used_at_in_future"
    QUANTITY_OUT_OF_RANGE = "quantity_out_of_range"
    EVENT_ID_CONFLICT = "event_id_conflict"
    WAITING_FOR_CHAIN_CLOCK = "waiting_for_chain_clock"

    @property
    def sentence(self) -> str:
        """The condition in a sentence, as every place gives it."""
        return _BY_CODE[self].sentence

    @classmethod
    def of_outcome(cls, outcome: Outcome) -> UsageCode:
        """The code of a ledger outcome (``UNKNOWN_OUTCOME`` for a code this bridge does not
        know)."""
        return _BY_OUTCOME.get(outcome, cls.UNKNOWN_OUTCOME)

    @classmethod
    def refusal_of(cls, outcome: Outcome) -> UsageCode:
        """The door's refusal for a non-paying outcome of the ledger's checks: the outcome's own
        code.

        Raises:
            ValueError: for ``Outcome.PAID``.
        """
        if outcome is Outcome.PAID:
            raise ValueError(f"{outcome!r} is not a refusal at the door")
        return cls.of_outcome(outcome)


@dataclass(frozen=True, slots=True)
class Entry:
    """One row of the vocabulary: a code, where it can happen, its sentence and, for a ledger
    outcome, its number on chain."""

    code: UsageCode
    where: tuple[Where, ...]
    sentence: str
    outcome: Outcome | None = None


_D, _C, _S = Where.DOOR, Where.CHAIN, Where.STATUS
VOCABULARY: Final = (
    Entry(UsageCode.PAID, (_C,), "paid", Outcome.PAID),
    Entry(UsageCode.UNKNOWN_TWIN, (_D, _C), "the twin does not exist", Outcome.UNKNOWN_TWIN),
    Entry(
        UsageCode.NO_LICENSE, (_D, _C), "the brand holds no license for this twin",
        Outcome.NO_LICENSE,
    ),
    Entry(
        UsageCode.LICENSE_NOT_STARTED, (_D, _C),
        "the license was not yet valid at the time of use", Outcome.LICENSE_NOT_STARTED,
    ),
    Entry(
        UsageCode.LICENSE_EXPIRED, (_D, _C), "the license had expired at the time of use",
        Outcome.LICENSE_EXPIRED,
    ),
    Entry(
        UsageCode.LICENSE_REVOKED, (_D, _C), "the license had been revoked at the time of use",
        Outcome.LICENSE_REVOKED,
    ),
    Entry(
        UsageCode.USAGE_TYPE_NOT_LICENSED, (_D, _C),
        "the license does not cover this usage type", Outcome.USAGE_TYPE_NOT_LICENSED,
    ),
    Entry(
        UsageCode.USE_CAP_REACHED, (_C,), "the license's cap on uses was reached",
        Outcome.USE_CAP_REACHED,
    ),
    Entry(
        UsageCode.TWIN_PAUSED, (_D, _C), "the twin was paused at the time of use",
        Outcome.TWIN_PAUSED,
    ),
    Entry(UsageCode.ZERO_QUANTITY, (_C,), "the quantity was zero", Outcome.ZERO_QUANTITY),
    Entry(
        UsageCode.USAGE_IN_FUTURE, (_C,), "the time of use was after the settlement block",
        Outcome.USAGE_IN_FUTURE,
    ),
    Entry(
        UsageCode.OFFER_NOT_ACCEPTED, (_D, _C),
        "the brand had not accepted the license offered for this twin",
        Outcome.OFFER_NOT_ACCEPTED,
    ),
    Entry(
        UsageCode.OVER_USAGE_LIMIT, (_D, _C),
        "the usage cost more than the brand's spending limit per usage", Outcome.OVER_USAGE_LIMIT,
    ),
    Entry(
        UsageCode.OVER_PERIOD_LIMIT, (_C,),
        "the usage would pass the brand's spending limit for the period",
        Outcome.OVER_PERIOD_LIMIT,
    ),
    Entry(
        UsageCode.UNKNOWN_OUTCOME, (_D, _C),
        "the ledger gave an outcome code this bridge does not know (a discrepancy)",
    ),
    Entry(
        UsageCode.BRAND_ATTESTS_ITSELF, (_D,),
        "the brand named its own attester on the ledger, which takes its usages signed by that "
        "attester only: settle them with `twin-bridge brand settle`",
    ),
    Entry(UsageCode.USED_AT_TOO_OLD, (_D,), "the time of use is too far in the past"),
    Entry(UsageCode.USED_AT_IN_FUTURE, (_D,), "the time of use is too far in the future"),
    Entry(UsageCode.QUANTITY_OUT_OF_RANGE, (_D,), "the quantity is out of range"),
    Entry(
        UsageCode.EVENT_ID_CONFLICT, (_D,), "the event id was used before with a different body"
    ),
    Entry(
        UsageCode.WAITING_FOR_CHAIN_CLOCK, (_S,),
        "the usage settles once the chain's clock passes its time of use",
    ),
)  # fmt: skip
"""Every code, once: README.md's table of usage codes lists the same rows."""
_BY_CODE: Final = {entry.code: entry for entry in VOCABULARY}
_BY_OUTCOME: Final = {
    entry.outcome: entry.code for entry in VOCABULARY if entry.outcome is not None
}


def outcome_sentence(outcome: Outcome) -> str:
    """A ledger outcome in a sentence; an unknown code's names its number."""
    if not outcome.known:
        return (
            f"the ledger gave outcome code {int(outcome)}, which this bridge does not know "
            "(a discrepancy)"
        )
    return UsageCode.of_outcome(outcome).sentence


def split_payment(amounts: Sequence[int], debts: Sequence[int]) -> list[tuple[int, int]]:
    """How each paid usage of one brand in one settlement transaction was paid:
    ``(paid_from_escrow, recorded_as_debt)``, in order.

    The ledger pays a brand's usages from its escrow in order until it runs out (one usage may be
    split) and emits one ``DebtRecorded`` per usage whose escrow fell short, in usage order; a
    deposit cannot come between two groups of one transaction. So the ``debts`` (the amounts of
    those events, in log order) belong, one each, to the last ``len(debts)`` usages whose amount
    is above zero.

    Args:
        amounts: what each paid usage cost, in settlement order.
        debts: the amounts of the brand's ``DebtRecorded`` events of the transaction, in order.

    Raises:
        ValueError: the debts cannot be those of these amounts (more debts than usages that
            cost something, a debt above its usage's amount, or a usage after the first short one
            that was not owed in full).
    """
    costly = [i for i, amount in enumerate(amounts) if amount > 0]
    if len(debts) > len(costly):
        raise ValueError(f"{len(debts)} debts for {len(costly)} usages that cost something")
    owed = dict(zip(costly[len(costly) - len(debts) :], debts, strict=True))
    split: list[tuple[int, int]] = []
    for index, amount in enumerate(amounts):
        debt = owed.get(index, 0)
        if debt > amount or (index in owed and debt == 0):
            raise ValueError(f"a debt of {debt} for a usage of {amount}")
        split.append((amount - debt, debt))
    short = [i for i in costly if i in owed]
    if any(owed[i] != amounts[i] for i in short[1:]):
        raise ValueError("a usage after the first short one was not owed in full")
    return split
