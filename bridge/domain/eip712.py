"""EIP-712 typed data of the ledger: usage batches (attesters), owner actions (models) and the
brand's acceptance of a license offer.

Each builder returns the full typed-data dict (``types``, ``primaryType``, ``domain``,
``message``) that ``eth_account.messages.encode_typed_data(full_message=...)`` and wallets
(``eth_signTypedData_v4``) take.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from eth_abi.abi import encode
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

DOMAIN_NAME: Final = "TwinLedger"
DOMAIN_VERSION: Final = "2"

_DOMAIN_TYPE: Final = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
DOMAIN_TYPE: Final = _DOMAIN_TYPE
"""The ``EIP712Domain`` type of the ledger's domain."""
_USAGE_PRICE: Final = [{"name": "usageType", "type": "uint8"}, {"name": "price", "type": "uint256"}]
_LICENSE_TERMS: Final = [
    {"name": "brand", "type": "address"},
    {"name": "validFrom", "type": "uint40"},
    {"name": "validUntil", "type": "uint40"},
    {"name": "maxUses", "type": "uint32"},
    {"name": "purposeHash", "type": "bytes32"},
    {"name": "consentHash", "type": "bytes32"},
    {"name": "prices", "type": "UsagePrice[]"},
]
_PAYEE: Final = [{"name": "account", "type": "address"}, {"name": "bps", "type": "uint16"}]
_NONCE_DEADLINE: Final = [
    {"name": "nonce", "type": "uint256"},
    {"name": "deadline", "type": "uint256"},
]

TYPES: Final[Mapping[str, Mapping[str, list[dict[str, str]]]]] = {
    "UsageBatch": {
        "UsageBatch": [
            {"name": "deadline", "type": "uint256"},
            {"name": "groups", "type": "UsageGroup[]"},
        ],
        "UsageGroup": [
            {"name": "brand", "type": "address"},
            {"name": "usages", "type": "uint256[]"},
        ],
    },
    "OfferLicense": {
        "OfferLicense": [
            {"name": "owner", "type": "address"},
            {"name": "twinId", "type": "uint256"},
            {"name": "terms", "type": "LicenseTerms"},
            *_NONCE_DEADLINE,
        ],
        "LicenseTerms": _LICENSE_TERMS,
        "UsagePrice": _USAGE_PRICE,
    },
    "RevokeLicense": {
        "RevokeLicense": [
            {"name": "owner", "type": "address"},
            {"name": "twinId", "type": "uint256"},
            {"name": "brand", "type": "address"},
            {"name": "version", "type": "uint256"},
            *_NONCE_DEADLINE,
        ],
    },
    "SetTwinPaused": {
        "SetTwinPaused": [
            {"name": "owner", "type": "address"},
            {"name": "twinId", "type": "uint256"},
            {"name": "paused", "type": "bool"},
            *_NONCE_DEADLINE,
        ],
    },
    "SetPayees": {
        "SetPayees": [
            {"name": "owner", "type": "address"},
            {"name": "twinId", "type": "uint256"},
            {"name": "payees", "type": "Payee[]"},
            *_NONCE_DEADLINE,
        ],
        "Payee": _PAYEE,
    },
    "AcceptLicense": {
        "AcceptLicense": [
            {"name": "brand", "type": "address"},
            {"name": "twinId", "type": "uint256"},
            {"name": "version", "type": "uint256"},
            {"name": "termsHash", "type": "bytes32"},
            *_NONCE_DEADLINE,
        ],
    },
}
"""The EIP-712 types of every message the ledger verifies, by primary type."""

_USAGE_PRICE_TYPEHASH: Final = keccak(text="UsagePrice(uint8 usageType,uint256 price)")
LICENSE_TERMS_TYPEHASH: Final = keccak(
    text="LicenseTerms(address brand,uint40 validFrom,uint40 validUntil,uint32 maxUses,"
    "bytes32 purposeHash,bytes32 consentHash,UsagePrice[] prices)"
    "UsagePrice(uint8 usageType,uint256 price)"
)


def domain(chain_id: int, ledger: str) -> dict[str, Any]:
    """The ledger's EIP-712 domain on ``chain_id`` at address ``ledger``."""
    return {
        "name": DOMAIN_NAME,
        "version": DOMAIN_VERSION,
        "chainId": chain_id,
        "verifyingContract": ledger,
    }


def typed_data(
    primary_type: str, message: Mapping[str, Any], *, chain_id: int, ledger: str
) -> dict[str, Any]:
    """The full typed-data dict for ``message`` of ``primary_type``."""
    return {
        "types": {"EIP712Domain": _DOMAIN_TYPE, **TYPES[primary_type]},
        "primaryType": primary_type,
        "domain": domain(chain_id, ledger),
        "message": dict(message),
    }


def usage_batch(
    deadline: int, groups: Sequence[tuple[str, Sequence[int]]], *, chain_id: int, ledger: str
) -> dict[str, Any]:
    """Typed data of a usage batch: ``groups`` are ``(brand, usage words)`` pairs."""
    message = {
        "deadline": deadline,
        "groups": [{"brand": brand, "usages": list(usages)} for brand, usages in groups],
    }
    return typed_data("UsageBatch", message, chain_id=chain_id, ledger=ledger)


def sign(account: LocalAccount, data: Mapping[str, Any]) -> bytes:
    """65-byte ``r || s || v`` signature of typed data by a local account."""
    return bytes(account.sign_message(encode_typed_data(full_message=dict(data))).signature)


def digest(data: Mapping[str, Any]) -> bytes:
    """The 32-byte EIP-712 digest of typed data: what the ledger recovers the signer from."""
    message = encode_typed_data(full_message=dict(data))
    return keccak(b"\x19" + message.version + message.header + message.body)


def _bytes32(value: bytes | str) -> bytes:
    raw = bytes.fromhex(value.removeprefix("0x")) if isinstance(value, str) else bytes(value)
    if len(raw) != 32:
        raise ValueError(f"expected 32 bytes, got {len(raw)}")
    return raw


def terms_hash(terms: Mapping[str, Any]) -> bytes:
    """The EIP-712 struct hash of ``LicenseTerms`` (what the ledger's ``hashLicenseTerms`` gives
    and a brand accepts): ``terms`` as in a typed message (``brand``, ``validFrom``,
    ``validUntil``, ``maxUses``, ``purposeHash``, ``consentHash``, ``prices`` of
    ``{usageType, price}``), hashes as bytes or 0x-hex."""
    prices = b"".join(
        keccak(
            encode(
                ["bytes32", "uint8", "uint256"],
                [_USAGE_PRICE_TYPEHASH, int(p["usageType"]), int(p["price"])],
            )
        )
        for p in terms["prices"]
    )
    return keccak(
        encode(
            ["bytes32", "address", "uint40", "uint40", "uint32", "bytes32", "bytes32", "bytes32"],
            [
                LICENSE_TERMS_TYPEHASH,
                str(terms["brand"]),
                int(terms["validFrom"]),
                int(terms["validUntil"]),
                int(terms["maxUses"]),
                _bytes32(terms["purposeHash"]),
                _bytes32(terms["consentHash"]),
                keccak(prices),
            ],
        )
    )
