"""The terms hash a brand accepts: the EIP-712 struct hash of ``LicenseTerms``
(``LicenseBook.hashTerms``), recomputed from a ``LicenseOffered`` event's terms."""

from __future__ import annotations

from typing import Final, Protocol

from eth_abi.abi import encode
from eth_utils.crypto import keccak

MAX_STORED_TIME: Final = 2**32 - 1
"""``LicenseCodec.MAX_TIME``: an offered time beyond it is emitted clamped (not as hashed)."""
USAGE_PRICE_TYPEHASH: Final = keccak(text="UsagePrice(uint8 usageType,uint256 price)")
LICENSE_TERMS_TYPEHASH: Final = keccak(
    text="LicenseTerms(address brand,uint40 validFrom,uint40 validUntil,uint32 maxUses,"
    "bytes32 purposeHash,bytes32 consentHash,UsagePrice[] prices)"
    "UsagePrice(uint8 usageType,uint256 price)"
)


class Terms(Protocol):
    """License terms as an offer carries them (prices in the offered order)."""

    @property
    def brand(self) -> str: ...
    @property
    def valid_from(self) -> int: ...
    @property
    def valid_until(self) -> int: ...
    @property
    def max_uses(self) -> int: ...
    @property
    def purpose_hash(self) -> str: ...
    @property
    def consent_hash(self) -> str: ...
    @property
    def prices(self) -> dict[int, int]: ...


def terms_hash(terms: Terms) -> str:
    """The ``0x`` hex struct hash of ``terms``."""
    prices = b"".join(
        keccak(encode(["bytes32", "uint8", "uint256"], [USAGE_PRICE_TYPEHASH, kind, price]))
        for kind, price in terms.prices.items()
    )
    encoded = encode(
        ["bytes32", "address", "uint40", "uint40", "uint32", "bytes32", "bytes32", "bytes32"],
        [
            LICENSE_TERMS_TYPEHASH,
            terms.brand,
            terms.valid_from,
            terms.valid_until,
            terms.max_uses,
            bytes.fromhex(terms.purpose_hash[2:]),
            bytes.fromhex(terms.consent_hash[2:]),
            keccak(prices),
        ],
    )
    return "0x" + keccak(encoded).hex()
