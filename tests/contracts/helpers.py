"""A small driver for the ledger in tests: actors, terms, signed batches, reverts, events."""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from eth_abi import decode as abi_decode
from eth_account.signers.local import LocalAccount
from eth_tester.exceptions import TransactionFailed
from eth_utils import function_abi_to_4byte_selector, keccak
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError, ContractLogicError
from web3.logs import DISCARD

from bridge.domain import eip712
from bridge.domain.codec import Outcome, Usage, decode_result

DAY = 24 * 3600
PURPOSE = keccak(text="campaign: spring 2027")
CONSENT = keccak(text="consent document v1")
CONSENT_RECORD = keccak(text="capture consent record")


class RevertMismatch(AssertionError):
    pass


def _error_abis(abi: Sequence[dict[str, Any]]) -> dict[bytes, dict[str, Any]]:
    return {function_abi_to_4byte_selector(e): e for e in abi if e.get("type") == "error"}


def decode_revert(abi: Sequence[dict[str, Any]], data: str | bytes) -> tuple[str, tuple[Any, ...]]:
    """``(error name, args)`` of custom-error revert data, using the errors of ``abi``."""
    raw = bytes.fromhex(data[2:]) if isinstance(data, str) else bytes(data)
    entry = _error_abis(abi).get(raw[:4])
    if entry is None:
        raise RevertMismatch(f"unknown revert data {raw.hex()}")
    types = [
        i["type"] if not i["type"].startswith("tuple") else _tuple_type(i) for i in entry["inputs"]
    ]
    return entry["name"], tuple(abi_decode(types, raw[4:]))


def revert_data(exc: Exception) -> bytes | None:
    """The raw revert data carried by an eth-tester ``TransactionFailed``, if it holds any."""
    message = str(exc.args[0]) if exc.args else ""
    _, _, tail = message.partition("execution reverted: ")
    if not tail.startswith(("b'", 'b"')):
        return None
    try:
        data = ast.literal_eval(tail)
    except (SyntaxError, ValueError):
        return None
    return bytes(data) if isinstance(data, bytes) else None


def _tuple_type(item: dict[str, Any]) -> str:
    inner = ",".join(
        c["type"] if not c["type"].startswith("tuple") else _tuple_type(c)
        for c in item["components"]
    )
    return f"({inner}){item['type'][5:]}"


@dataclass
class Ledger:
    """Drives the deployed ledger as the test actors."""

    w3: Web3
    contract: Contract
    token: Contract
    actors: Any
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        # Errors declared by the ledger, its libraries and OpenZeppelin bases are all in its ABI;
        # the payment token's errors (e.g. ERC20InsufficientAllowance) bubble up through SafeERC20.
        self.error_abi = [e for e in self.contract.abi if e.get("type") == "error"]
        known = {function_abi_to_4byte_selector(e) for e in self.error_abi}
        for entry in self.token.abi:
            if entry.get("type") == "error" and function_abi_to_4byte_selector(entry) not in known:
                self.error_abi.append(entry)

    # ------------------------------------------------------------------ chain

    @property
    def fn(self) -> Any:
        return self.contract.functions

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def advance(self, seconds: int) -> None:
        """Moves the next block's time ``seconds`` past the latest block and mines it."""
        self.w3.testing.timeTravel(self.now() + seconds)
        self.w3.testing.mine()

    def next_time(self) -> int:
        """The timestamp the next transaction (or reverting call) runs at: the pending block's,
        fixed when the latest block was mined (one second later, or the wall clock if ahead)."""
        return int(self.w3.eth.get_block("pending")["timestamp"])

    def block_time(self, receipt: Any) -> int:
        """The timestamp of the block that included ``receipt``."""
        return int(self.w3.eth.get_block(receipt["blockNumber"])["timestamp"])

    def warp(self, timestamp: int) -> None:
        """Mines so that the next transaction runs at exactly ``timestamp`` (a future time)."""
        self.advance(timestamp - 1 - self.now())
        assert self.next_time() == timestamp, "the wall clock is ahead of the requested time"

    def transact(self, call: Any, sender: LocalAccount | str) -> Any:
        address = sender if isinstance(sender, str) else sender.address
        tx_hash = call.transact({"from": address})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        assert receipt["status"] == 1
        return receipt

    @contextmanager
    def reverts(self, name: str, *args: Any) -> Iterator[None]:
        """Asserts the block reverts with custom error ``name`` and exactly ``args``."""
        try:
            yield
        except ContractCustomError as exc:
            got = decode_revert(
                self.error_abi, exc.data if isinstance(exc.data, str) else exc.message
            )
            expected = (name, tuple(_normalize(a) for a in args))
            actual = (got[0], tuple(_normalize(a) for a in got[1]))
            if actual != expected:
                raise RevertMismatch(f"expected {expected}, got {actual}") from exc
        except TransactionFailed as exc:
            # The eth-tester provider raises this (not ContractCustomError) with the revert data.
            data = revert_data(exc)
            if data is None:
                raise RevertMismatch(f"expected {name}{args}, got {exc!r}") from exc
            got = decode_revert(self.error_abi, data)
            expected = (name, tuple(_normalize(a) for a in args))
            actual = (got[0], tuple(_normalize(a) for a in got[1]))
            if actual != expected:
                raise RevertMismatch(f"expected {expected}, got {actual}") from exc
        except ContractLogicError as exc:
            raise RevertMismatch(f"expected {name}{args}, got {exc!r}") from exc
        else:
            raise RevertMismatch(f"expected revert {name}{args}, but the call succeeded")

    def events(self, receipt: Any, name: str) -> list[dict[str, Any]]:
        """Decoded args of every ``name`` event the ledger emitted in ``receipt``, in log order."""
        event = getattr(self.contract.events, name)()
        return [
            dict(e["args"])
            for e in event.process_receipt(receipt, errors=DISCARD)
            if e["address"] == self.contract.address
        ]

    def all_events(self, receipt: Any) -> list[str]:
        """Names of every event in ``receipt`` emitted by the ledger, in order."""
        names = []
        topics = {
            keccak(text=f"{e['name']}({','.join(_canonical(i) for i in e['inputs'])})"): e["name"]
            for e in self.contract.abi
            if e.get("type") == "event"
        }
        for log in receipt["logs"]:
            if log["address"] == self.contract.address:
                names.append(topics[bytes(log["topics"][0])])
        return names

    # ------------------------------------------------------------------ roles and twins

    def role(self, name: str) -> bytes:
        return bytes(getattr(self.fn, name)().call())

    def mint(
        self, owner: LocalAccount | str, uri: str = "ipfs://twin", consent: bytes = CONSENT_RECORD
    ) -> int:
        address = owner if isinstance(owner, str) else owner.address
        receipt = self.transact(self.fn.mint(address, uri, consent), self.actors.registrar)
        return int(self.events(receipt, "TwinMinted")[0]["twinId"])

    def terms(
        self,
        brand: LocalAccount | str,
        prices: dict[int, int] | None = None,
        *,
        valid_from: int = 0,
        valid_until: int | None = None,
        max_uses: int = 0,
        purpose: bytes = PURPOSE,
        consent: bytes = CONSENT,
    ) -> tuple[Any, ...]:
        """License terms as the ABI tuple; ``prices`` maps usage type to price per use."""
        address = brand if isinstance(brand, str) else brand.address
        prices = {0: 1_000_000} if prices is None else prices
        until = self.now() + 30 * DAY if valid_until is None else valid_until
        return (
            address,
            valid_from,
            until,
            max_uses,
            purpose,
            consent,
            [(t, p) for t, p in prices.items()],
        )

    def grant(self, twin_id: int, terms: tuple[Any, ...], sender: LocalAccount | str) -> Any:
        return self.transact(self.fn.grantLicense(twin_id, terms), sender)

    def deposit(self, brand: LocalAccount, amount: int) -> Any:
        return self.transact(self.fn.deposit(brand.address, amount), brand)

    # ------------------------------------------------------------------ usage batches

    def usage(
        self,
        twin_id: int,
        *,
        used_at: int | None = None,
        quantity: int = 1,
        usage_type: int = 0,
        usage_id: int | None = None,
    ) -> int:
        """A usage word with a fresh id (unless given), used one second ago by default."""
        return Usage(
            usage_id=next(self._ids) if usage_id is None else usage_id,
            twin_id=twin_id,
            used_at=self.now() - 1 if used_at is None else used_at,
            quantity=quantity,
            usage_type=usage_type,
        ).encode()

    def sign_batch(
        self,
        groups: Sequence[tuple[str, Sequence[int]]],
        *,
        deadline: int | None = None,
        signer: LocalAccount | None = None,
        chain_id: int | None = None,
        ledger: str | None = None,
    ) -> tuple[tuple[Any, ...], bytes]:
        deadline = self.now() + 3600 if deadline is None else deadline
        data = eip712.usage_batch(
            deadline,
            groups,
            chain_id=self.w3.eth.chain_id if chain_id is None else chain_id,
            ledger=self.contract.address if ledger is None else ledger,
        )
        signature = eip712.sign(signer or self.actors.attester, data)
        return (deadline, [(brand, list(usages)) for brand, usages in groups]), signature

    def settle(
        self,
        groups: Sequence[tuple[str, Sequence[int]]],
        *,
        sender: LocalAccount | None = None,
        **sign_kwargs: Any,
    ) -> Any:
        batch, signature = self.sign_batch(groups, **sign_kwargs)
        return self.transact(self.fn.settle(batch, signature), sender or self.actors.outsider)

    def outcomes(self, receipt: Any) -> list[tuple[Usage, Outcome]]:
        """Every settled usage and its outcome, across the receipt's groups."""
        return [
            decode_result(w) for e in self.events(receipt, "UsagesSettled") for w in e["results"]
        ]

    # ------------------------------------------------------------------ balances

    def token_balance(self, account: str) -> int:
        return int(self.token.functions.balanceOf(account).call())

    def brand_account(self, brand: LocalAccount | str) -> dict[str, int]:
        address = brand if isinstance(brand, str) else brand.address
        escrow, debt, reserve, pending, unlocks = self.fn.brandAccount(address).call()
        return {
            "escrow": escrow,
            "debt": debt,
            "debtReserve": reserve,
            "pending": pending,
            "unlocksAt": unlocks,
        }


def _canonical(item: dict[str, Any]) -> str:
    if item["type"].startswith("tuple"):
        return "(" + ",".join(_canonical(c) for c in item["components"]) + ")" + item["type"][5:]
    return str(item["type"])


def _normalize(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str) and value.startswith("0x") and len(value) == 42:
        return value.lower()
    if isinstance(value, (list, tuple)):
        return tuple(_normalize(v) for v in value)
    return value
