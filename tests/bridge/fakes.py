"""An in-memory ledger for the API's license checks, answering like ``TwinLedger.priceAt``,
``isPausedAt`` and ``brandLimits`` would."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from bridge.chain.views import Verdict
from bridge.domain.codec import Outcome
from bridge.errors import ChainUnavailableError


@dataclass(frozen=True)
class FakeLicense:
    usage_types: frozenset[int]
    valid_from: int
    valid_until: int
    revoked_at: int | None = None
    price: int = 1
    """Price per use of every usage type."""
    accepted: bool = True
    """False: only offered, waiting for the brand's acceptance."""


@dataclass
class FakeLicenseView:
    twins: set[int] = field(default_factory=set)
    licenses: dict[tuple[str, int], FakeLicense] = field(default_factory=dict)
    paused_since: dict[int, int] = field(default_factory=dict)
    per_usage_limits: dict[str, int] = field(default_factory=dict)
    """Brand (lower case) -> its spending limit per usage; a brand not listed has none known."""
    own_attesters: dict[str, str] = field(default_factory=dict)
    """Brand (lower case) -> the attester it named on the ledger."""
    down: bool = False
    calls: list[tuple[str, int, int, int]] = field(default_factory=list)

    def grant(self, brand: str, twin_id: int, license: FakeLicense) -> None:
        self.twins.add(twin_id)
        self.licenses[(brand.lower(), twin_id)] = license

    def check_usage(self, *, brand: str, twin_id: int, usage_type: int, used_at: int) -> Outcome:
        self.calls.append((brand, twin_id, usage_type, used_at))
        if self.down:
            raise ChainUnavailableError("fake://chain", "connection refused")
        if twin_id not in self.twins:
            return Outcome.UNKNOWN_TWIN
        license = self.licenses.get((brand.lower(), twin_id))
        if license is None:
            return Outcome.NO_LICENSE
        if not license.accepted:
            return Outcome.OFFER_NOT_ACCEPTED
        if used_at < license.valid_from:
            return Outcome.LICENSE_NOT_STARTED
        if license.revoked_at is not None and used_at >= license.revoked_at:
            return Outcome.LICENSE_REVOKED
        if used_at >= license.valid_until:
            return Outcome.LICENSE_EXPIRED
        if usage_type not in license.usage_types:
            return Outcome.USAGE_TYPE_NOT_LICENSED
        since = self.paused_since.get(twin_id)
        if since is not None and used_at >= since:
            return Outcome.TWIN_PAUSED
        return Outcome.PAID

    def check_many(self, usages: Sequence[tuple[str, int, int, int]]) -> list[Verdict]:
        return [self._verdict(brand, twin, kind, at) for brand, twin, kind, at in usages]

    def _verdict(self, brand: str, twin_id: int, usage_type: int, used_at: int) -> Verdict:
        outcome = self.check_usage(
            brand=brand, twin_id=twin_id, usage_type=usage_type, used_at=used_at
        )
        license = self.licenses.get((brand.lower(), twin_id))
        price = license.price if outcome is Outcome.PAID and license is not None else 0
        return Verdict(
            outcome,
            price,
            self.per_usage_limits.get(brand.lower()),
            self.own_attesters.get(brand.lower()),
        )

    def ping(self) -> None:
        if self.down:
            raise ChainUnavailableError("fake://chain", "connection refused")
