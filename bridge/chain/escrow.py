"""A brand's escrow on the ledger and the token it is funded in: the ledger's ``brandAccount`` view
(escrow, debt and a pending withdrawal with its unlock and lapse times), the payment token's
balance and allowance and its EIP-2612 permit, and the ledger's escrow events in a receipt. Used by
the brand's escrow routes (``bridge.api.routes.escrow``) and commands (``bridge.cli.brand_money``);
the calldata of the brand's escrow transactions is in ``bridge.chain.brand_ledger``.

A token supports the permit when it answers ``nonces(owner)`` and ``DOMAIN_SEPARATOR()`` and the
EIP-712 domain it publishes (ERC-5267 ``eip712Domain()``, else its ``name()`` with version "1")
hashes to that separator: only then is a permit signed here one the token takes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from eth_abi.abi import decode
from eth_abi.exceptions import DecodingError
from eth_account.messages import encode_typed_data
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from bridge.chain.brand_ledger import LedgerChain, call_data
from bridge.chain.client import BlockTag, LogEntry
from bridge.errors import ExecutionRevertedError

BRAND_ACCOUNT: Final = "brandAccount(address)"
PAYMENT_TOKEN: Final = "paymentToken()"  # noqa: S105 - a function signature
ESCROW_DEPOSITED: Final = "EscrowDeposited(address,address,uint256,uint256)"
ESCROW_WITHDRAWAL_REQUESTED: Final = "EscrowWithdrawalRequested(address,uint256,uint40)"
ESCROW_WITHDRAWN: Final = "EscrowWithdrawn(address,uint256)"
LEDGER_SIGNATURES: Final = (BRAND_ACCOUNT, PAYMENT_TOKEN)
LEDGER_EVENTS: Final = (ESCROW_DEPOSITED, ESCROW_WITHDRAWAL_REQUESTED, ESCROW_WITHDRAWN)

BALANCE_OF: Final = "balanceOf(address)"
ALLOWANCE: Final = "allowance(address,address)"
APPROVE: Final = "approve(address,uint256)"
PERMIT_NONCES: Final = "nonces(address)"
DOMAIN_SEPARATOR: Final = "DOMAIN_SEPARATOR()"
EIP712_DOMAIN: Final = "eip712Domain()"
NAME: Final = "name()"
SYMBOL: Final = "symbol()"
DECIMALS: Final = "decimals()"
TOKEN_SIGNATURES: Final = (
    BALANCE_OF,
    ALLOWANCE,
    APPROVE,
    PERMIT_NONCES,
    DOMAIN_SEPARATOR,
    NAME,
    SYMBOL,
    DECIMALS,
)

PERMIT_DEADLINE_S: Final = 3600
"""A permit signed here is valid this long after the chain's time."""
_BRAND_ACCOUNT_TYPE: Final = "(uint256,uint256,uint256,uint256,uint40,uint40)"
_EIP712_DOMAIN_FIELDS: Final = (
    ("name", "string"),
    ("version", "string"),
    ("chainId", "uint256"),
    ("verifyingContract", "address"),
    ("salt", "bytes32"),
)
"""ERC-5267's domain fields, in the order of its ``fields`` bits (bit 0: name)."""
_PERMIT_TYPE: Final = [
    {"name": "owner", "type": "address"},
    {"name": "spender", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "nonce", "type": "uint256"},
    {"name": "deadline", "type": "uint256"},
]


def utc(seconds: int) -> str:
    """Unix seconds as ``2026-03-01 12:00:00 UTC``."""
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%d %H:%M:%S} UTC"


@dataclass(frozen=True, slots=True)
class EscrowAccount:
    """``ITwinLedger.BrandAccount``, token base units; the withdrawal's times are as of the block
    read (they move later while the ledger is paused) and 0 when none is pending."""

    escrow: int
    debt: int
    debt_reserve: int
    pending_withdrawal: int
    unlocks_at: int
    lapses_at: int

    def withdrawal_refusal(self, now: int) -> str | None:
        """Why ``withdrawEscrow`` is refused at the chain's time ``now``, in words; None when it
        would pay (the pending amount, capped at the escrow)."""
        if not self.pending_withdrawal:
            return "no escrow withdrawal is pending; request one first"
        if now < self.unlocks_at:
            return f"the withdrawal unlocks at {utc(self.unlocks_at)}, after the notice period"
        if now >= self.lapses_at:
            return f"the withdrawal request lapsed at {utc(self.lapses_at)}; request it again"
        return None


def decode_brand_account(answer: bytes) -> EscrowAccount:
    """The ``brandAccount`` return value."""
    (fields,) = decode([_BRAND_ACCOUNT_TYPE], answer)
    escrow, debt, reserve, pending, unlocks_at, lapses_at = (int(f) for f in fields)
    return EscrowAccount(escrow, debt, reserve, pending, unlocks_at, lapses_at)


def approve_calldata(spender: str, amount: int) -> bytes:
    """The token's ``approve(spender, amount)``."""
    return call_data(APPROVE, ["address", "uint256"], [to_checksum_address(spender), amount])


def permit_typed_data(
    domain: dict[str, Any], *, owner: str, spender: str, value: int, nonce: int, deadline: int
) -> dict[str, Any]:
    """The EIP-2612 ``Permit`` of ``owner`` letting ``spender`` take ``value`` of the token whose
    EIP-712 domain is ``domain``, ready for ``eth_signTypedData_v4`` (amounts as decimal strings,
    which browsers keep exact)."""
    fields = dict(_EIP712_DOMAIN_FIELDS)
    return {
        "types": {
            "EIP712Domain": [{"name": name, "type": fields[name]} for name in domain],
            "Permit": _PERMIT_TYPE,
        },
        "primaryType": "Permit",
        "domain": domain,
        "message": {
            "owner": to_checksum_address(owner),
            "spender": to_checksum_address(spender),
            "value": str(value),
            "nonce": str(nonce),
            "deadline": str(deadline),
        },
    }


def _domain_separator(domain: dict[str, Any]) -> bytes:
    zero = "0x" + "00" * 20
    typed = permit_typed_data(domain, owner=zero, spender=zero, value=0, nonce=0, deadline=0)
    return bytes(encode_typed_data(full_message=typed).header)


@dataclass(frozen=True, slots=True)
class TokenFacts:
    """The payment token as the brand meets it: its address, what the brand holds and lets the
    ledger take, and the EIP-712 domain of its permit (None: no EIP-2612 permit to use)."""

    address: str
    balance: int
    allowance: int
    permit_domain: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """The payment token as amounts are shown: its address, ``symbol()``, ``name()`` and
    ``decimals()`` (fixed for a token's life, so read once)."""

    address: str
    symbol: str
    name: str
    decimals: int


@dataclass(frozen=True, slots=True)
class EscrowEvents:
    """The ledger's escrow events in one receipt (None: not emitted)."""

    deposited: tuple[int, int] | None = None
    """``EscrowDeposited``: the amount, and how much of it repaid debt."""
    requested: tuple[int, int] | None = None
    """``EscrowWithdrawalRequested``: the amount (capped at the escrow) and when it unlocks."""
    withdrawn: int | None = None
    """``EscrowWithdrawn``: the amount."""


def escrow_events(logs: Sequence[LogEntry], *, ledger: str, brand: str) -> EscrowEvents:
    """The escrow events the ledger emitted for ``brand`` among ``logs`` (the last of each)."""
    deposited, requested, withdrawn = (keccak(text=signature) for signature in LEDGER_EVENTS)
    brand_topic = bytes(12) + bytes.fromhex(to_checksum_address(brand)[2:])
    found: dict[str, Any] = {}
    for log in logs:
        if log.address.lower() != ledger.lower() or log.topics[1:2] != (brand_topic,):
            continue
        if log.topics[0] == deposited:
            amount, to_debt = decode(["uint256", "uint256"], log.data)
            found["deposited"] = (int(amount), int(to_debt))
        elif log.topics[0] == requested:
            amount, unlocks_at = decode(["uint256", "uint40"], log.data)
            found["requested"] = (int(amount), int(unlocks_at))
        elif log.topics[0] == withdrawn:
            found["withdrawn"] = int(decode(["uint256"], log.data)[0])
    return EscrowEvents(**found)


class EscrowLedger:
    """Reads of a brand's escrow and of the payment token, over ``chain``, from the ledger at
    ``ledger``. Its methods raise the chain's errors (``ChainUnavailableError``, ``RpcError``) as
    they come."""

    def __init__(self, chain: LedgerChain, ledger: str) -> None:
        self.chain = chain
        self.ledger = to_checksum_address(ledger)
        self._token: str | None = None

    def _call(self, to: str, signature: str, types: list[str], args: list[Any]) -> bytes:
        return self.chain.call(to=to, data=call_data(signature, types, args))

    def chain_time(self) -> int:
        """The latest block's time (unix s); 0 when the chain gives no block."""
        block = self.chain.block("latest")
        return 0 if block is None else block.timestamp

    def account(self, brand: str, *, block: BlockTag = "latest") -> EscrowAccount:
        """The brand's escrow, debt and pending withdrawal as of ``block``."""
        data = call_data(BRAND_ACCOUNT, ["address"], [to_checksum_address(brand)])
        return decode_brand_account(self.chain.call(to=self.ledger, data=data, block=block))

    def token(self) -> str:
        """The ledger's payment token."""
        if self._token is None:
            (address,) = decode(["address"], self._call(self.ledger, PAYMENT_TOKEN, [], []))
            self._token = to_checksum_address(address)
        return self._token

    def token_info(self) -> TokenInfo:
        """The payment token's address, symbol, name and decimals.

        Raises:
            DecodingError: the token answers them not as an ERC-20 does.
        """
        token = self.token()
        (symbol,) = decode(["string"], self._call(token, SYMBOL, [], []))
        (name,) = decode(["string"], self._call(token, NAME, [], []))
        (decimals,) = decode(["uint8"], self._call(token, DECIMALS, [], []))
        return TokenInfo(token, str(symbol), str(name), int(decimals))

    def token_facts(self, owner: str) -> TokenFacts:
        """The payment token, ``owner``'s balance and allowance to the ledger, and its permit."""
        token, owner = self.token(), to_checksum_address(owner)
        (balance,) = decode(["uint256"], self._call(token, BALANCE_OF, ["address"], [owner]))
        (allowance,) = decode(
            ["uint256"], self._call(token, ALLOWANCE, ["address", "address"], [owner, self.ledger])
        )
        return TokenFacts(token, int(balance), int(allowance), self._permit_domain(token, owner))

    def permit_nonce(self, owner: str) -> int:
        """``owner``'s current permit nonce at the payment token."""
        answer = self._call(self.token(), PERMIT_NONCES, ["address"], [to_checksum_address(owner)])
        return int(decode(["uint256"], answer)[0])

    def _permit_domain(self, token: str, owner: str) -> dict[str, Any] | None:
        """The token's EIP-712 domain when it takes EIP-2612 permits under it, else None."""
        try:
            self._call(token, PERMIT_NONCES, ["address"], [owner])
            (separator,) = decode(["bytes32"], self._call(token, DOMAIN_SEPARATOR, [], []))
            domain = self._published_domain(token)
        except (ExecutionRevertedError, DecodingError):
            return None
        return domain if _domain_separator(domain) == bytes(separator) else None

    def _published_domain(self, token: str) -> dict[str, Any]:
        """ERC-5267's ``eip712Domain()``, else ``name()`` with version "1" on this chain.

        Raises:
            ExecutionRevertedError, DecodingError: the token has neither.
        """
        try:
            answer = self._call(token, EIP712_DOMAIN, [], [])
            fields, *values = decode(
                ["bytes1", "string", "string", "uint256", "address", "bytes32", "uint256[]"],
                answer,
            )
        except (ExecutionRevertedError, DecodingError):
            (name,) = decode(["string"], self._call(token, NAME, [], []))
            return {
                "name": name,
                "version": "1",
                "chainId": self.chain.chain_id(),
                "verifyingContract": to_checksum_address(token),
            }
        domain: dict[str, Any] = {}
        for bit, ((name, _), value) in enumerate(zip(_EIP712_DOMAIN_FIELDS, values, strict=False)):
            if fields[0] >> bit & 1:
                domain[name] = value
        if "verifyingContract" in domain:
            domain["verifyingContract"] = to_checksum_address(domain["verifyingContract"])
        if "chainId" in domain:
            domain["chainId"] = int(domain["chainId"])
        if "salt" in domain:
            domain["salt"] = "0x" + bytes(domain["salt"]).hex()
        return domain
