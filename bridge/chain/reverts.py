"""Revert reasons in words: the ledger's custom errors (its own and OpenZeppelin's) decoded from
revert data with the compiled ABI (``describe_revert``: ``TwinPauseUnchanged(twinId=3,
paused=True)``, for logs and machines), and each as a sentence for people (``explain_revert``,
``explain``: "twin 3 is already paused"). ``SENTENCES`` has one per error of the ABI (a test
checks it)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final

from eth_abi.abi import decode
from eth_utils.address import is_hex_address, to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes

from bridge.chain.toolchain import load_artifact

LEDGER = "TwinLedger"
_ERROR_STRING = keccak(text="Error(string)")[:4]
_PANIC = keccak(text="Panic(uint256)")[:4]


def _type(component: dict[str, Any]) -> str:
    kind = str(component["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_type(c) for c in component["components"])
        return f"({inner}){kind[len('tuple') :]}"
    return kind


@lru_cache(maxsize=1)
def _errors() -> dict[bytes, tuple[str, list[str], list[str]]]:
    """Selector -> (name, argument names, argument types) of every error in the ledger's ABI."""
    table: dict[bytes, tuple[str, list[str], list[str]]] = {}
    abi: list[dict[str, Any]] = [dict(entry) for entry in load_artifact(LEDGER).abi]
    for entry in abi:
        if entry.get("type") != "error":
            continue
        inputs = list(entry.get("inputs", []))
        types = [_type(i) for i in inputs]
        signature = f"{entry['name']}({','.join(types)})"
        table[keccak(text=signature)[:4]] = (
            str(entry["name"]),
            [str(i.get("name") or f"arg{n}") for n, i in enumerate(inputs)],
            types,
        )
    return table


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return HexBytes(value).to_0x_hex()
    if isinstance(value, str) and len(value) == 42 and is_hex_address(value):
        return to_checksum_address(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def describe_revert(data: bytes | None) -> str | None:
    """``LicenseInvalidWindow(validFrom=0, validUntil=5)`` for the revert data of a ledger error,
    the reason of ``Error(string)``, ``Panic(0x11)``; None when the data says nothing known."""
    if not data or len(data) < 4:
        return None
    selector, body = bytes(data[:4]), bytes(data[4:])
    try:
        if selector == _ERROR_STRING:
            return str(decode(["string"], body)[0])
        if selector == _PANIC:
            return f"Panic({hex(decode(['uint256'], body)[0])})"
        known = _errors().get(selector)
        if known is None:
            return None
        name, names, types = known
        values = decode(types, body)
    except Exception:
        return None
    args = ", ".join(f"{n}={_show(v)}" for n, v in zip(names, values, strict=True))
    return f"{name}({args})"


Args = Mapping[str, str]


def _when(seconds: str) -> str:
    try:
        return f"{datetime.fromtimestamp(int(seconds), UTC):%Y-%m-%d %H:%M:%S} UTC"
    except (ValueError, OverflowError, OSError):
        return f"time {seconds}"


def _paused(a: Args) -> str:
    return "paused" if a["paused"] == "True" else "unpaused"


DISPUTE_KINDS: Final = (
    "a brand",
    "a settlement group",
    "a usage",
    "a use reported after revocation",
)


def _kind(a: Args) -> str:
    index = int(a["kind"]) if a["kind"].isdigit() else -1
    return DISPUTE_KINDS[index] if 0 <= index < len(DISPUTE_KINDS) else f"kind {a['kind']}"


SENTENCES: Final[Mapping[str, Callable[[Args], str]]] = {
    # twins and signatures
    "TwinIdOverflow": lambda a: f"twin id {a['twinId']} is beyond the ledger's range",
    "TwinPauseUnchanged": lambda a: f"twin {a['twinId']} is already {_paused(a)}",
    "TwinSignatureExpired": lambda a: f"the signature expired at {_when(a['deadline'])}",
    "TwinInvalidSigner": lambda a: f"the signature is not by {a['expected']}, who must sign it",
    "NonceJumpInvalid": lambda a: (
        f"nonce {a['requested']} cannot replace the current nonce {a['current']}: it must be "
        "higher, by a bounded step"
    ),
    "InvalidAccountNonce": lambda a: (
        f"the nonce is not {a['account']}'s current one ({a['currentNonce']})"
    ),
    # licenses and offers
    "LicenseInvalidBrand": lambda a: f"{a['brand']} cannot be a license's brand",
    "LicenseInvalidWindow": lambda a: (
        f"the license's validity window is empty or invalid (from {a['validFrom']} until "
        f"{a['validUntil']})"
    ),
    "LicenseNoPrices": lambda a: "a license needs at least one usage type with a price",
    "LicenseTooManyPrices": lambda a: f"a license has {a['count']} prices; at most {a['max']}",
    "LicenseDuplicateUsageType": lambda a: (
        f"usage type {a['usageType']} is priced twice in the license"
    ),
    "LicensePriceTooHigh": lambda a: (
        f"the price {a['price']} (token base units) of usage type {a['usageType']} is above the "
        "ledger's maximum"
    ),
    "LicenseNotFound": lambda a: f"twin {a['twinId']} has no license for {a['brand']}",
    "LicenseAlreadyEnded": lambda a: (
        f"the license of twin {a['twinId']} for {a['brand']} has already ended"
    ),
    "LicenseNoOffer": lambda a: f"twin {a['twinId']} has no offer waiting for {a['brand']}",
    "LicenseOfferMismatch": lambda a: (
        f"the offer of twin {a['twinId']} to {a['brand']} is not version {a['version']} with "
        "those terms: it changed or was withdrawn"
    ),
    "LicenseOfferExpired": lambda a: (
        f"offer version {a['version']} of twin {a['twinId']} to {a['brand']} has expired"
    ),
    "LicenseVersionMismatch": lambda a: (
        f"the license of twin {a['twinId']} for {a['brand']} is not at version {a['version']}"
    ),
    # payees and payouts
    "PayeesTooMany": lambda a: f"{a['count']} payees are too many; at most {a['max']}",
    "PayeesInvalidAccount": lambda a: f"{a['account']} cannot be a payee",
    "PayeesInvalidShare": lambda a: f"the share of {a['account']} ({a['bps']} bps) is invalid",
    "PayeesTotalTooHigh": lambda a: (
        f"the payees' shares add up to {a['totalBps']} bps, more than 10,000 (100 %)"
    ),
    "PayeesDuplicateAccount": lambda a: f"{a['account']} is named twice among the payees",
    "PayoutNothingToPay": lambda a: f"the ledger holds nothing to pay to {a['payee']}",
    # escrow and spending limits
    "EscrowZeroAmount": lambda a: "the amount must be more than zero",
    "EscrowInvalidBrand": lambda a: f"{a['brand']} cannot hold escrow",
    "EscrowNoPendingWithdrawal": lambda a: f"{a['brand']} has no escrow withdrawal pending",
    "EscrowWithdrawalLocked": lambda a: (
        f"the escrow withdrawal of {a['brand']} unlocks only at {_when(a['unlocksAt'])}"
    ),
    "EscrowWithdrawalLapsed": lambda a: (
        f"the escrow withdrawal of {a['brand']} lapsed at {_when(a['lapsedAt'])}: request it again"
    ),
    "SpendingLimitsInvalid": lambda a: (
        f"spending limits of {a['perUsage']} per usage and {a['perPeriod']} per period (token "
        "base units) are invalid: both above zero, the first not above the second"
    ),
    # settlement
    "SettlementExpired": lambda a: f"the settlement batch expired at {_when(a['deadline'])}",
    "SettlementInvalidAttester": lambda a: (
        f"{a['attester']} does not hold the attester role: the batch's signature is not accepted"
    ),
    "SettlementWrongAttester": lambda a: (
        f"{a['attester']} may not attest the usages of {a['brand']}"
    ),
    "SettlementEmptyBatch": lambda a: "the settlement batch holds no usage",
    "SettlementInvalidBrand": lambda a: f"{a['brand']} cannot be a settlement's brand",
    "SettlementMalformedUsage": lambda a: f"usage {a['usage']} of the batch is malformed",
    "SettlementDuplicateGroup": lambda a: (
        f"the batch {a['batchDigest']} of {a['brand']} was settled already"
    ),
    "UsageAlreadyProcessed": lambda a: f"usage {a['usageId']} of {a['brand']} was settled already",
    "UsageAlreadyVoided": lambda a: f"usage {a['usageId']} of {a['brand']} was voided already",
    "HoldWindowDisabled": lambda a: "the ledger has no hold window: nothing can be held or voided",
    "HoldWindowClosed": lambda a: (
        f"the hold window of batch {a['batchDigest']} of {a['brand']} closed at "
        f"{_when(a['closedAt'])}"
    ),
    "GroupUnknown": lambda a: f"the ledger knows no batch {a['batchDigest']} of {a['brand']}",
    "GroupProofMismatch": lambda a: (
        f"the proof does not match batch {a['batchDigest']} of {a['brand']}"
    ),
    "GroupUsageNotPaid": lambda a: (
        f"usage {a['index']} of batch {a['batchDigest']} of {a['brand']} was not paid"
    ),
    "VoidUnauthorized": lambda a: f"{a['caller']} may not void the usages of {a['brand']}",
    # disputes
    "DisputeInvalidTarget": lambda a: f"twin {a['twinId']} has no {_kind(a)} to dispute",
    "DisputeTooMany": lambda a: f"twin {a['twinId']} has too many open disputes",
    "DisputeNotOpen": lambda a: f"dispute {a['id']} is not open",
    "DisputeTargetMismatch": lambda a: f"dispute {a['id']} is about something else",
    # the ledger's administration
    "LedgerConfigInvalid": lambda a: "the ledger's settings are invalid",
    "LedgerAuthorityFixed": lambda a: "the ledger's access manager cannot be changed",
    "LedgerExtensionMismatch": lambda a: (
        f"{a['extension']} is not the ledger extension this ledger was built with"
    ),
    "AccessManagedUnauthorized": lambda a: (
        f"{a['caller']} does not hold the role this action needs"
    ),
    "AccessManagedRequiredDelay": lambda a: (
        f"{a['caller']} must schedule this action and wait {a['delay']} s before executing it"
    ),
    "AccessManagedInvalidAuthority": lambda a: f"{a['authority']} is not an access manager",
    "EnforcedPause": lambda a: "the ledger is paused",
    "ExpectedPause": lambda a: "the ledger is not paused",
    # tokens, twins as NFTs and the Solidity library errors
    "SafeERC20FailedOperation": lambda a: (
        f"the payment token {a['token']} refused the transfer (balance or allowance too low?)"
    ),
    "ERC721IncorrectOwner": lambda a: (
        f"twin {a['tokenId']} belongs to {a['owner']}, not to {a['sender']}"
    ),
    "ERC721InsufficientApproval": lambda a: f"{a['operator']} may not move twin {a['tokenId']}",
    "ERC721InvalidApprover": lambda a: f"{a['approver']} cannot approve",
    "ERC721InvalidOperator": lambda a: f"{a['operator']} cannot be an operator",
    "ERC721InvalidOwner": lambda a: f"{a['owner']} cannot own a twin",
    "ERC721InvalidReceiver": lambda a: f"{a['receiver']} cannot receive a twin",
    "ERC721InvalidSender": lambda a: f"{a['sender']} cannot send a twin",
    "ERC721NonexistentToken": lambda a: f"there is no twin {a['tokenId']}",
    "AddressEmptyCode": lambda a: f"{a['target']} holds no contract code",
    "FailedCall": lambda a: "a call the ledger made failed",
    "ReentrancyGuardReentrantCall": lambda a: "the ledger was called again while busy (reentrancy)",
    "SafeCastOverflowedUintDowncast": lambda a: f"{a['value']} does not fit in {a['bits']} bits",
    "InvalidShortString": lambda a: "a short string is invalid",
    "StringTooLong": lambda a: f"the string {a['str']!r} is too long",
}
"""Each error of the ledger's ABI as a sentence, from its arguments as ``describe_revert`` shows
them."""


def sentence(name: str, args: Args) -> str | None:
    """The sentence of error ``name`` with ``args``; None for an unknown error or arguments."""
    render = SENTENCES.get(name)
    if render is None:
        return None
    try:
        return render(args)
    except (KeyError, ValueError):
        return None


def explain_revert(data: bytes | None) -> str | None:
    """ "twin 3 is already paused" for the revert data of ``TwinPauseUnchanged(3, true)``; the
    reason of ``Error(string)``, ``Panic(0x11)``; None when the data says nothing known."""
    described = describe_revert(data)
    return None if described is None else explain(described)


_DESCRIBED: Final = re.compile(
    r"\b([A-Z][A-Za-z0-9]*)\(((?:[A-Za-z_][A-Za-z0-9_]*=[^,()]*(?:, )?)*)\)"
)


def explain(text: str) -> str:
    """``text`` with each ledger error as ``describe_revert`` writes it replaced by its sentence
    (a message relayed by the bridge holds the error, not its revert data)."""

    def replace(match: re.Match[str]) -> str:
        body = match.group(2)
        pairs = [part.split("=", 1) for part in body.split(", ")] if body else []
        words = sentence(match.group(1), dict(pairs))
        return match.group(0) if words is None else words

    return _DESCRIBED.sub(replace, text)
