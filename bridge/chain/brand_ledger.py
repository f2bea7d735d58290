"""What a brand's routes and commands ask of the ledger: its spending limits, the offer waiting for
it on a twin, its nonce and the chain's clock (read-only calls), and the calldata of the brand's own
transactions (``acceptLicense``, ``declineLicense``, ``setSpendingLimits``,
``setBrandAttester``; its escrow: ``deposit``, ``depositWithPermit``, ``requestEscrowWithdrawal``,
``withdrawEscrow``). Used by the brand routes (``bridge.api.routes.offers``,
``bridge.api.routes.escrow``) and the brand commands (``bridge.cli.brand``).

The ABI types below are those of ``contracts/interfaces/ITwinLedger.sol``; a test checks each
function signature against the compiled ABI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Protocol

from eth_abi.abi import decode, encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from bridge.chain.client import Block, BlockTag
from bridge.errors import ExecutionRevertedError

BRAND_LIMITS: Final = "brandLimits(address)"
OFFER_OF: Final = "offerOf(uint256,address)"
NONCES: Final = "nonces(address)"
ACCEPT_LICENSE: Final = "acceptLicense(uint256,uint256,bytes32)"
DECLINE_LICENSE: Final = "declineLicense(uint256,uint256)"
SET_SPENDING_LIMITS: Final = "setSpendingLimits(uint256,uint256)"
SET_BRAND_ATTESTER: Final = "setBrandAttester(address)"
DEPOSIT: Final = "deposit(address,uint256)"
DEPOSIT_WITH_PERMIT: Final = "depositWithPermit(address,uint256,uint256,uint8,bytes32,bytes32)"
REQUEST_ESCROW_WITHDRAWAL: Final = "requestEscrowWithdrawal(uint256)"
WITHDRAW_ESCROW: Final = "withdrawEscrow()"
NO_OFFER_ERROR: Final = "LicenseNoOffer(uint256,address)"

_BRAND_LIMITS_TYPE: Final = "(uint256,uint256,uint256,uint40,uint256,uint256,uint40,address)"
_LICENSE_TYPE: Final = "(uint40,uint40,uint32,uint32,bool,(uint8,uint256)[])"


def selector(signature: str) -> bytes:
    """The 4-byte selector of a function or error signature."""
    return keccak(text=signature)[:4]


class LedgerChain(Protocol):
    """The read-only calls made here (``Web3ChainClient`` has them)."""

    def chain_id(self) -> int: ...

    def block(self, tag: BlockTag = "latest") -> Block | None: ...

    def call(self, *, to: str, data: bytes, block: BlockTag = "latest") -> bytes: ...


@dataclass(frozen=True, slots=True)
class BrandLimits:
    """``ITwinLedger.BrandLimits``: what the brand lets settlement spend, token base units."""

    per_usage: int
    per_period: int
    spent_in_period: int
    period_start: int
    pending_per_usage: int
    pending_per_period: int
    pending_effective_at: int
    """0 when no raise waits."""
    attester: str
    """The brand's own attester; the zero address when the bridge's attesters sign for it."""


@dataclass(frozen=True, slots=True)
class OfferedPrice:
    usage_type: int
    price: int


@dataclass(frozen=True, slots=True)
class WaitingOffer:
    """``offerOf(twin, brand)``: the offer waiting for the brand's acceptance."""

    twin_id: int
    brand: str
    version: int
    valid_from: int
    valid_until: int
    max_uses: int
    prices: tuple[OfferedPrice, ...]
    terms_hash: str
    """0x-hex EIP-712 struct hash of the offered terms: what the brand accepts."""


def call_data(signature: str, types: list[str], args: list[Any]) -> bytes:
    """Calldata of ``signature`` with ``args`` of ABI ``types``."""
    return selector(signature) + encode(types, args)


def accept_calldata(twin_id: int, version: int, terms_hash: str) -> bytes:
    """``acceptLicense(twinId, version, termsHash)``: the brand's own acceptance."""
    return call_data(
        ACCEPT_LICENSE,
        ["uint256", "uint256", "bytes32"],
        [twin_id, version, bytes.fromhex(terms_hash.removeprefix("0x"))],
    )


def decline_calldata(twin_id: int, version: int) -> bytes:
    """``declineLicense(twinId, version)``: the brand's own refusal of an offer."""
    return call_data(DECLINE_LICENSE, ["uint256", "uint256"], [twin_id, version])


def set_limits_calldata(per_usage: int, per_period: int) -> bytes:
    """``setSpendingLimits(perUsage, perPeriod)``: the brand's own limits."""
    return call_data(SET_SPENDING_LIMITS, ["uint256", "uint256"], [per_usage, per_period])


def set_attester_calldata(attester: str) -> bytes:
    """``setBrandAttester(attester)``: the brand's own attester (the zero address: the bridge's
    attesters again)."""
    return call_data(SET_BRAND_ATTESTER, ["address"], [to_checksum_address(attester)])


def deposit_calldata(brand: str, amount: int) -> bytes:
    """``deposit(brand, amount)``: the caller's tokens into the brand's escrow (debt first), once
    the caller has approved the ledger for them."""
    return call_data(DEPOSIT, ["address", "uint256"], [to_checksum_address(brand), amount])


def deposit_with_permit_calldata(
    brand: str, amount: int, *, deadline: int, signature: bytes
) -> bytes:
    """``depositWithPermit(brand, amount, deadline, v, r, s)``: ``deposit`` after the caller's
    EIP-2612 permit to the ledger, ``signature`` being its 65 bytes ``r ‖ s ‖ v``.

    Raises:
        ValueError: the signature is not 65 bytes.
    """
    if len(signature) != 65:
        raise ValueError(f"a permit signature is 65 bytes, not {len(signature)}")
    r, s, v = signature[:32], signature[32:64], signature[64]
    return call_data(
        DEPOSIT_WITH_PERMIT,
        ["address", "uint256", "uint256", "uint8", "bytes32", "bytes32"],
        [to_checksum_address(brand), amount, deadline, v if v >= 27 else v + 27, r, s],
    )


def request_withdrawal_calldata(amount: int) -> bytes:
    """``requestEscrowWithdrawal(amount)``: the brand's own request (capped at its escrow), which
    unlocks after the ledger's notice period."""
    return call_data(REQUEST_ESCROW_WITHDRAWAL, ["uint256"], [amount])


def withdraw_escrow_calldata() -> bytes:
    """``withdrawEscrow()``: the brand's own withdrawal of its unlocked request."""
    return selector(WITHDRAW_ESCROW)


def decode_brand_limits(answer: bytes) -> BrandLimits:
    """The ``brandLimits`` return value."""
    (fields,) = decode([_BRAND_LIMITS_TYPE], answer)
    per_usage, per_period, spent, period_start, pending_usage, pending_period, pending_at, who = (
        fields
    )
    return BrandLimits(
        per_usage=int(per_usage),
        per_period=int(per_period),
        spent_in_period=int(spent),
        period_start=int(period_start),
        pending_per_usage=int(pending_usage),
        pending_per_period=int(pending_period),
        pending_effective_at=int(pending_at),
        attester=to_checksum_address(who),
    )


def decode_offer(answer: bytes, *, twin_id: int, brand: str) -> WaitingOffer:
    """The ``offerOf`` return value: ``(License terms, uint256 version, bytes32 termsHash)``."""
    terms, version, terms_hash = decode([_LICENSE_TYPE, "uint256", "bytes32"], answer)
    valid_from, valid_until, max_uses, _uses, _revoked, prices = terms
    return WaitingOffer(
        twin_id=twin_id,
        brand=to_checksum_address(brand),
        version=int(version),
        valid_from=int(valid_from),
        valid_until=int(valid_until),
        max_uses=int(max_uses),
        prices=tuple(OfferedPrice(int(t), int(p)) for t, p in prices),
        terms_hash="0x" + bytes(terms_hash).hex(),
    )


class BrandLedger:
    """Reads of the ledger at ``ledger`` for a brand, over ``chain``. Its methods raise the
    chain's errors (``ChainUnavailableError``, ``RpcError``) as they come."""

    def __init__(self, chain: LedgerChain, ledger: str) -> None:
        self.chain = chain
        self.ledger = to_checksum_address(ledger)

    def _call(self, signature: str, types: list[str], args: list[Any]) -> bytes:
        return self.chain.call(to=self.ledger, data=call_data(signature, types, args))

    def chain_id(self) -> int:
        return self.chain.chain_id()

    def chain_time(self) -> int:
        """The latest block's time (unix s); 0 when the chain gives no block."""
        block = self.chain.block("latest")
        return 0 if block is None else block.timestamp

    def nonce(self, account: str) -> int:
        """The ledger's current nonce of ``account`` (its next signed action's)."""
        answer = self._call(NONCES, ["address"], [to_checksum_address(account)])
        return int(decode(["uint256"], answer)[0])

    def brand_limits(self, brand: str) -> BrandLimits:
        """The brand's limits in force, its spending this period and a raise still waiting."""
        answer = self._call(BRAND_LIMITS, ["address"], [to_checksum_address(brand)])
        return decode_brand_limits(answer)

    def offer_of(self, twin_id: int, brand: str) -> WaitingOffer | None:
        """The offer of the twin waiting for the brand, None when none waits."""
        try:
            answer = self._call(OFFER_OF, ["uint256", "address"], [twin_id, brand])
        except ExecutionRevertedError as exc:
            if exc.data is not None and exc.data[:4] == selector(NO_OFFER_ERROR):
                return None
            raise
        return decode_offer(answer, twin_id=twin_id, brand=brand)
