"""Usage types and the reasons a usage is refused at the door: the one place that names them."""

from __future__ import annotations

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


class Refusal(StrEnum):
    """Why the API refused a usage event without storing it."""

    UNKNOWN_TWIN = "unknown_twin"
    NO_LICENSE = "no_license"
    LICENSE_NOT_STARTED = "license_not_started"
    LICENSE_EXPIRED = "license_expired"
    LICENSE_REVOKED = "license_revoked"
    USAGE_TYPE_NOT_LICENSED = "usage_type_not_licensed"
    TWIN_PAUSED = "twin_paused"
    OFFER_NOT_ACCEPTED = "offer_not_accepted"
    OVER_USAGE_LIMIT = "over_usage_limit"
    BRAND_ATTESTS_ITSELF = "brand_attests_itself"
    """The brand named its own attester on the ledger: the bridge's cannot settle its usages."""
    LEDGER_REFUSES = "ledger_refuses"
    """Any other non-paying outcome, a code this bridge does not know included."""
    USED_AT_TOO_OLD = "used_at_too_old"
    USED_AT_IN_FUTURE = "used_at_in_future"
    QUANTITY_OUT_OF_RANGE = "quantity_out_of_range"
    EVENT_ID_CONFLICT = "event_id_conflict"

    @classmethod
    def from_outcome(cls, outcome: Outcome) -> Refusal:
        """The refusal for a non-paying outcome of the ledger's checks (``LEDGER_REFUSES`` for an
        outcome the door has no reason of its own for, an unknown code included).

        Raises:
            ValueError: for ``Outcome.PAID``.
        """
        if outcome is Outcome.PAID:
            raise ValueError(f"{outcome!r} is not a refusal at the door")
        return _FROM_OUTCOME.get(outcome, cls.LEDGER_REFUSES)


_FROM_OUTCOME: Final = {
    Outcome.UNKNOWN_TWIN: Refusal.UNKNOWN_TWIN,
    Outcome.NO_LICENSE: Refusal.NO_LICENSE,
    Outcome.LICENSE_NOT_STARTED: Refusal.LICENSE_NOT_STARTED,
    Outcome.LICENSE_EXPIRED: Refusal.LICENSE_EXPIRED,
    Outcome.LICENSE_REVOKED: Refusal.LICENSE_REVOKED,
    Outcome.USAGE_TYPE_NOT_LICENSED: Refusal.USAGE_TYPE_NOT_LICENSED,
    Outcome.TWIN_PAUSED: Refusal.TWIN_PAUSED,
    Outcome.OFFER_NOT_ACCEPTED: Refusal.OFFER_NOT_ACCEPTED,
    Outcome.OVER_USAGE_LIMIT: Refusal.OVER_USAGE_LIMIT,
}
