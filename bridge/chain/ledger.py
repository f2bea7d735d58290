"""Calldata, events and constants of ``ITwinLedger`` and its access manager, encoded with eth-abi
(no provider): the role ids, the functions the manager restricts, the ledger's deployment
settings, ``settle`` and the views the worker calls."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final, NamedTuple

from eth_abi.abi import decode, encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from bridge.chain.client import ChainClient, LogEntry
from bridge.domain.codec import Outcome, Usage, decode_result

# ---------------------------------------------------------------- roles (the access manager's)

ADMIN_ROLE: Final = 0
"""The access manager's admin role (OpenZeppelin ``AccessManager.ADMIN_ROLE``)."""
REGISTRAR_ROLE: Final = 1
ATTESTER_ROLE: Final = 2
PAUSER_ROLE: Final = 3
ARBITER_ROLE: Final = 4
"""Resolves disputes (``releaseDispute``, ``resolveDisputeByVoid``, ``resolveDisputeByCharge``).
A deployment does not map those functions to it or grant it yet (so it is not in ``ROLE_IDS``):
unmapped, they are the admin's (behind its execution delay) until the admin maps them and grants
the role."""
ROLE_IDS: Final = {
    "ADMIN_ROLE": ADMIN_ROLE,
    "REGISTRAR_ROLE": REGISTRAR_ROLE,
    "ATTESTER_ROLE": ATTESTER_ROLE,
    "PAUSER_ROLE": PAUSER_ROLE,
}
"""Role name -> its ``uint64`` id in the access manager (the ledger's constants of that name)."""
ROLE_NAMES: Final = {role_id: name for name, role_id in ROLE_IDS.items()}
"""Role id -> name (an id not listed is a role the deployment does not use)."""
GRANTED_ROLES: Final = ("REGISTRAR_ROLE", "ATTESTER_ROLE", "PAUSER_ROLE")
"""The roles a deployment grants to its configured holders, apart from the admin role; each has
the network's grant delay."""

MINT_SELECTOR: Final = keccak(text="mint(address,string,bytes32)")[:4]
PAUSE_SELECTOR: Final = keccak(text="pause()")[:4]
UNPAUSE_SELECTOR: Final = keccak(text="unpause()")[:4]
RESTRICTED_SELECTORS: Final = {
    "REGISTRAR_ROLE": (MINT_SELECTOR,),
    "PAUSER_ROLE": (PAUSE_SELECTOR, UNPAUSE_SELECTOR),
}
"""Role name -> the ledger's ``restricted`` functions the manager maps to it."""

ROLE_GRANTED_TOPIC: Final = keccak(text="RoleGranted(uint64,address,uint32,uint48,bool)")
ROLE_REVOKED_TOPIC: Final = keccak(text="RoleRevoked(uint64,address)")
ROLE_GRANT_DELAY_CHANGED_TOPIC: Final = keccak(text="RoleGrantDelayChanged(uint64,uint32,uint48)")
OPERATION_SCHEDULED_TOPIC: Final = keccak(
    text="OperationScheduled(bytes32,uint32,uint48,address,address,bytes)"
)
"""Events of the access manager (not of the ledger)."""


def role_name(role_id: int) -> str:
    """The name of ``role_id``, or ``ROLE_<id>`` for a role the deployment does not use."""
    return ROLE_NAMES.get(role_id, f"ROLE_{role_id}")


# ---------------------------------------------------------------- deployment settings


@dataclass(frozen=True, slots=True)
class LedgerConfig:
    """``ITwinLedger.Config``: the ledger's deployment settings (amounts in token base units)."""

    notice_period: int
    """Seconds between an escrow withdrawal request and its unlock (at least MIN_NOTICE_PERIOD)."""
    spending_period: int
    """Length of a brand's spending period in seconds."""
    raise_delay: int
    """Seconds before a brand's raised spending limits take effect."""
    default_per_usage: int
    default_per_period: int
    hold_window: int = 0
    """Seconds a settlement's royalties are held (voidable, disputable) before they can be
    distributed; 0 (the default): distributable at once."""

    def as_abi(self) -> tuple[int, int, int, int, int, int]:
        """The constructor's ``Config`` tuple, in field order."""
        return (
            self.notice_period,
            self.spending_period,
            self.raise_delay,
            self.default_per_usage,
            self.default_per_period,
            self.hold_window,
        )

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> LedgerConfig:
        """From ``as_dict`` output (a manifest's record; one written before the hold window
        existed has none, which is a hold window of 0)."""
        return cls(
            **{name: int(values[name]) for name in cls.__dataclass_fields__ if name in values}
        )


MIN_NOTICE_PERIOD: Final = 36 * 24 * 3600
"""``TwinLedger.MIN_NOTICE_PERIOD``: the constructor refuses a shorter notice period."""

# ---------------------------------------------------------------- settle and views

_BATCH: Final = "(uint256,(address,uint256[])[])"
SETTLE_SELECTOR: Final = keccak(text=f"settle({_BATCH},address,bytes)")[:4]
PRICE_AT_SELECTOR: Final = keccak(text="priceAt(uint256,address,uint8,uint40)")[:4]
IS_USAGE_PROCESSED_SELECTOR: Final = keccak(text="isUsageProcessed(address,uint64)")[:4]
USAGES_SETTLED_TOPIC: Final = keccak(
    text="UsagesSettled(bytes32,address,address,uint256,uint256[])"
)
DEBT_RECORDED_TOPIC: Final = keccak(text="DebtRecorded(address,uint256,uint256,uint256)")

Groups = Sequence[tuple[str, Sequence[int]]]


class SettleCall(NamedTuple):
    """The arguments of one ``settle`` call."""

    deadline: int
    groups: list[tuple[str, list[int]]]
    attester: str
    signature: bytes


def settle_calldata(deadline: int, groups: Groups, attester: str, signature: bytes) -> bytes:
    """Calldata of ``settle(UsageBatch{deadline, groups}, attester, signature)``: ``signature`` is
    ``attester``'s (an EOA's ECDSA signature or an ERC-1271 contract's) of the batch digest."""
    batch = (deadline, [(to_checksum_address(brand), list(words)) for brand, words in groups])
    return SETTLE_SELECTOR + encode(
        [_BATCH, "address", "bytes"], [batch, to_checksum_address(attester), signature]
    )


def decode_settle_calldata(data: bytes) -> SettleCall:
    """The arguments of ``settle`` calldata.

    Raises:
        ValueError: not ``settle`` calldata.
    """
    if data[:4] != SETTLE_SELECTOR:
        raise ValueError("not settle calldata")
    (deadline, groups), attester, signature = decode([_BATCH, "address", "bytes"], data[4:])
    return SettleCall(
        int(deadline),
        [(to_checksum_address(brand), [int(w) for w in words]) for brand, words in groups],
        to_checksum_address(attester),
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


def is_usage_processed_calldata(*, brand: str, usage_id: int) -> bytes:
    """Calldata of ``isUsageProcessed(brand, usageId)`` (ids below 2**62, the bridge's attesters',
    share one bitmap for every brand; a brand with its own attester has its own from 2**62)."""
    return IS_USAGE_PROCESSED_SELECTOR + encode(
        ["address", "uint64"], [to_checksum_address(brand), usage_id]
    )


def decode_bool(data: bytes) -> bool:
    (value,) = decode(["bool"], data)
    return bool(value)


def usages_processed(
    chain: ChainClient, ledger: str, usages: Sequence[tuple[str, int]]
) -> list[bool]:
    """Whether the ledger has processed each ``(brand, usage id)``, in order, in as few round
    trips as the node allows."""
    answers = chain.call_many(
        to=ledger,
        calls=[is_usage_processed_calldata(brand=brand, usage_id=i) for brand, i in usages],
    )
    return [decode_bool(answer) for answer in answers]


@dataclass(frozen=True, slots=True)
class SettledGroup:
    """One ``UsagesSettled`` event: a brand's group of a batch, with each usage's outcome."""

    batch_digest: bytes
    brand: str
    attester: str
    paid: int
    results: tuple[tuple[Usage, Outcome], ...]
    log_index: int
    debts: tuple[int, ...] = ()
    """The amounts of the brand's ``DebtRecorded`` events since the previous ``UsagesSettled``
    (the ledger emits them before the group's event, one per usage its escrow fell short of)."""


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
    """The ``UsagesSettled`` events of ``ledger`` among ``logs``, in log order, each with the
    ``DebtRecorded`` amounts of its brand logged since the previous one."""
    groups = []
    debts: dict[str, list[int]] = {}
    for log in logs:
        if log.address.lower() != ledger.lower() or not log.topics:
            continue
        if log.topics[0] == DEBT_RECORDED_TOPIC:
            (amount, _entry) = decode(["uint256", "uint256"], log.data)
            debts.setdefault(_address(log.topics[1]), []).append(int(amount))
            continue
        if log.topics[0] != USAGES_SETTLED_TOPIC:
            continue
        brand = _address(log.topics[2])
        paid, results = decode(["uint256", "uint256[]"], log.data)
        groups.append(
            SettledGroup(
                batch_digest=log.topics[1],
                brand=brand,
                attester=_address(log.topics[3]),
                paid=int(paid),
                results=tuple(decode_result(int(word)) for word in results),
                log_index=log.log_index,
                debts=tuple(debts.pop(brand, ())),
            )
        )
    return groups
