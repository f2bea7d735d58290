"""Calldata and events of ``ITwinLedger`` the worker speaks, encoded with eth-abi (no provider)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from eth_abi.abi import decode, encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from bridge.chain.client import LogEntry
from bridge.domain.codec import Outcome, Usage, decode_result

_BATCH: Final = "(uint256,(address,uint256[])[])"
SETTLE_SELECTOR: Final = keccak(text=f"settle({_BATCH},bytes)")[:4]
PRICE_AT_SELECTOR: Final = keccak(text="priceAt(uint256,address,uint8,uint40)")[:4]
USAGES_SETTLED_TOPIC: Final = keccak(
    text="UsagesSettled(bytes32,address,address,uint256,uint256[])"
)

DEFAULT_ADMIN_ROLE: Final = "DEFAULT_ADMIN_ROLE"
GRANTED_ROLES: Final = ("REGISTRAR_ROLE", "ATTESTER_ROLE", "PAUSER_ROLE")
"""The roles the deployment grants, apart from the admin role."""
ROLE_IDS: Final = {
    DEFAULT_ADMIN_ROLE: bytes(32),
    **{name: keccak(text=name) for name in GRANTED_ROLES},
}
"""Each role's ``bytes32`` id on the ledger (AccessControl: the admin role is zero)."""
ROLE_NAMES: Final = {role_id: name for name, role_id in ROLE_IDS.items()}

Groups = Sequence[tuple[str, Sequence[int]]]


def settle_calldata(deadline: int, groups: Groups, signature: bytes) -> bytes:
    """Calldata of ``settle(UsageBatch{deadline, groups}, signature)``."""
    batch = (deadline, [(to_checksum_address(brand), list(words)) for brand, words in groups])
    return SETTLE_SELECTOR + encode([_BATCH, "bytes"], [batch, signature])


def decode_settle_calldata(data: bytes) -> tuple[int, list[tuple[str, list[int]]], bytes]:
    """``(deadline, groups, signature)`` from ``settle`` calldata."""
    if data[:4] != SETTLE_SELECTOR:
        raise ValueError("not settle calldata")
    (deadline, groups), signature = decode([_BATCH, "bytes"], data[4:])
    return (
        int(deadline),
        [(to_checksum_address(brand), [int(w) for w in words]) for brand, words in groups],
        bytes(signature),
    )


def price_at_calldata(*, twin_id: int, brand: str, usage_type: int, at: int) -> bytes:
    return PRICE_AT_SELECTOR + encode(
        ["uint256", "address", "uint8", "uint40"],
        [twin_id, to_checksum_address(brand), usage_type, at],
    )


def decode_price_at(data: bytes) -> tuple[Outcome, int]:
    outcome, price = decode(["uint8", "uint256"], data)
    return Outcome(outcome), int(price)


@dataclass(frozen=True, slots=True)
class SettledGroup:
    """One ``UsagesSettled`` event: a brand's group of a batch, with each usage's outcome."""

    batch_digest: bytes
    brand: str
    attester: str
    paid: int
    results: tuple[tuple[Usage, Outcome], ...]
    log_index: int


def _address(topic: bytes) -> str:
    return to_checksum_address(topic[-20:])


def usages_settled_log(
    *, batch_digest: bytes, brand: str, attester: str, paid: int, results: Sequence[int]
) -> tuple[tuple[bytes, ...], bytes]:
    """Topics and data of a ``UsagesSettled`` event (what the fake chain emits)."""
    topics = (
        USAGES_SETTLED_TOPIC,
        batch_digest,
        encode(["address"], [to_checksum_address(brand)]),
        encode(["address"], [to_checksum_address(attester)]),
    )
    return topics, encode(["uint256", "uint256[]"], [paid, list(results)])


def decode_usages_settled(logs: Sequence[LogEntry], *, ledger: str) -> list[SettledGroup]:
    """The ``UsagesSettled`` events of ``ledger`` among ``logs``, in log order."""
    groups = []
    for log in logs:
        if log.address.lower() != ledger.lower() or not log.topics:
            continue
        if log.topics[0] != USAGES_SETTLED_TOPIC:
            continue
        paid, results = decode(["uint256", "uint256[]"], log.data)
        groups.append(
            SettledGroup(
                batch_digest=log.topics[1],
                brand=_address(log.topics[2]),
                attester=_address(log.topics[3]),
                paid=int(paid),
                results=tuple(decode_result(int(word)) for word in results),
                log_index=log.log_index,
            )
        )
    return groups
