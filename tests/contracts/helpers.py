"""A small driver for the ledger in tests: actors, terms, signed batches, reverts, events."""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from eth_abi import decode as abi_decode
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_tester.exceptions import TransactionFailed
from eth_utils import function_abi_to_4byte_selector, keccak
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError, ContractLogicError
from web3.logs import DISCARD

from bridge.domain import eip712
from bridge.domain.codec import Outcome, Usage
from bridge.domain.eip712 import DOMAIN_NAME, DOMAIN_TYPE, DOMAIN_VERSION, TYPES

DAY = 24 * 3600
PURPOSE = keccak(text="campaign: spring 2027")
CONSENT = keccak(text="consent document v1")
CONSENT_RECORD = keccak(text="capture consent record")


def decode_result(word: int) -> tuple[Usage, Outcome]:
    """The usage and its outcome from a word of ``UsagesSettled.results``."""
    return Usage.decode(word), Outcome(word & 0xFF)


def typed_data(
    primary: str,
    message: dict[str, Any],
    *,
    chain_id: int,
    ledger: str,
    version: str = DOMAIN_VERSION,
) -> dict[str, Any]:
    """The full typed-data dict of ``message`` in the ledger's domain."""
    return {
        "types": {"EIP712Domain": DOMAIN_TYPE, **TYPES[primary]},
        "primaryType": primary,
        "domain": {
            "name": DOMAIN_NAME,
            "version": version,
            "chainId": chain_id,
            "verifyingContract": ledger,
        },
        "message": message,
    }


def sign_typed(account: LocalAccount, data: dict[str, Any]) -> bytes:
    """65-byte ``r || s || v`` signature of typed data."""
    return bytes(account.sign_message(encode_typed_data(full_message=data)).signature)


def typed_digest(data: dict[str, Any]) -> bytes:
    """The EIP-712 digest of typed data (what the ledger checks signatures against)."""
    message = encode_typed_data(full_message=data)
    return keccak(b"\x19" + message.version + message.header + message.body)


def terms_message(terms: Sequence[Any]) -> dict[str, Any]:
    """LicenseTerms as a typed-data message from the ABI tuple."""
    brand, valid_from, valid_until, max_uses, purpose, consent, prices = terms
    return {
        "brand": brand,
        "validFrom": valid_from,
        "validUntil": valid_until,
        "maxUses": max_uses,
        "purposeHash": bytes(purpose),
        "consentHash": bytes(consent),
        "prices": [{"usageType": t, "price": p} for t, p in prices],
    }


def terms_hash(terms: Sequence[Any]) -> bytes:
    """The EIP-712 struct hash of license terms (what a brand accepts) from the ABI tuple."""
    return eip712.terms_hash(terms_message(terms))


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


class Agreement(dict):  # type: ignore[type-arg]
    """The acceptance receipt of an offer-and-accept, its ``logs`` the offer's then the
    acceptance's (so ``events(r, "LicenseOffered")`` and ``events(r, "LicenseAccepted")`` both
    work, and ``block_time(r)`` is the acceptance's); ``offer``/``accept`` are both receipts."""

    offer: Any
    accept: Any
    version: int
    terms_hash: bytes

    @classmethod
    def of(cls, offered: Any, accepted: Any, version: int, digest: bytes) -> Agreement:
        merged = cls(accepted)
        merged["logs"] = list(offered["logs"]) + list(accepted["logs"])
        merged.offer, merged.accept = offered, accepted
        merged.version, merged.terms_hash = version, digest
        return merged


@dataclass
class Ledger:
    """Drives the deployed ledger (and its access manager) as the test actors."""

    w3: Web3
    contract: Contract
    token: Contract
    actors: Any
    manager: Contract | None = None
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        # Errors declared by the ledger, its libraries and OpenZeppelin bases are all in its ABI;
        # the payment token's errors (e.g. ERC20InsufficientAllowance) bubble up through SafeERC20,
        # and the access manager's (AccessManagerUnauthorizedAccount, ...) come from its calls.
        self.error_abi = [e for e in self.contract.abi if e.get("type") == "error"]
        known = {function_abi_to_4byte_selector(e) for e in self.error_abi}
        others = list(self.token.abi) + (list(self.manager.abi) if self.manager else [])
        for entry in others:
            if entry.get("type") == "error" and function_abi_to_4byte_selector(entry) not in known:
                known.add(function_abi_to_4byte_selector(entry))
                self.error_abi.append(entry)

    # ------------------------------------------------------------------ chain

    @property
    def fn(self) -> Any:
        return self.contract.functions

    @property
    def mgr(self) -> Any:
        """The access manager's functions."""
        assert self.manager is not None, "this driver has no access manager"
        return self.manager.functions

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

    def events(
        self, receipt: Any, name: str, contract: Contract | None = None
    ) -> list[dict[str, Any]]:
        """Decoded args of every ``name`` event ``contract`` (the ledger by default) emitted in
        ``receipt``, in log order."""
        source = self.contract if contract is None else contract
        event = getattr(source.events, name)()
        return [
            dict(e["args"])
            for e in event.process_receipt(receipt, errors=DISCARD)
            if e["address"] == source.address
        ]

    def manager_events(self, receipt: Any, name: str) -> list[dict[str, Any]]:
        """Decoded args of every ``name`` event of the access manager in ``receipt``."""
        assert self.manager is not None
        return self.events(receipt, name, self.manager)

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

    def role(self, name: str) -> int:
        """A role id of the ledger (``REGISTRAR_ROLE``, ``ATTESTER_ROLE``, ``PAUSER_ROLE``)."""
        return int(getattr(self.fn, name)().call())

    def has_role(self, role_id: int, account: LocalAccount | str) -> bool:
        """Whether ``account`` is an effective member of the role in the manager now."""
        address = account if isinstance(account, str) else account.address
        is_member, _ = self.mgr.hasRole(role_id, address).call()
        return bool(is_member)

    def grant_role(
        self, role_id: int, account: LocalAccount | str, *, delay: int = 0, sender: Any = None
    ) -> Any:
        """``manager.grantRole(role, account, delay)`` from the admin (no execution delay)."""
        address = account if isinstance(account, str) else account.address
        return self.transact(
            self.mgr.grantRole(role_id, address, delay), sender or self.actors.admin
        )

    def revoke_role(self, role_id: int, account: LocalAccount | str, *, sender: Any = None) -> Any:
        """``manager.revokeRole(role, account)`` from the admin."""
        address = account if isinstance(account, str) else account.address
        return self.transact(self.mgr.revokeRole(role_id, address), sender or self.actors.admin)

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

    # ------------------------------------------------------------------ licenses

    def offer(self, twin_id: int, terms: tuple[Any, ...], sender: LocalAccount | str) -> Any:
        """``offerLicense`` from ``sender`` (the owner or an operator)."""
        return self.transact(self.fn.offerLicense(twin_id, terms), sender)

    def offered(self, receipt: Any) -> tuple[int, bytes]:
        """``(version, termsHash)`` of the ``LicenseOffered`` event in ``receipt``."""
        event = self.events(receipt, "LicenseOffered")[-1]
        return int(event["version"]), bytes(event["termsHash"])

    def accept(
        self,
        twin_id: int,
        version: int,
        terms_hash: bytes,
        brand: LocalAccount | str,
    ) -> Any:
        """``acceptLicense`` from the brand."""
        return self.transact(self.fn.acceptLicense(twin_id, version, terms_hash), brand)

    def offer_and_accept(
        self, twin_id: int, terms: tuple[Any, ...], sender: LocalAccount | str
    ) -> Agreement:
        """What "granting" a license is now: the owner (``sender``) offers ``terms`` and the brand
        (``terms[0]``, an unlocked account) accepts that version and terms hash at once.
        Returns the acceptance receipt with the offer's logs first (see ``Agreement``)."""
        offered = self.offer(twin_id, terms, sender)
        version, digest = self.offered(offered)
        assert digest == terms_hash(terms)
        accepted = self.accept(twin_id, version, digest, terms[0])
        return Agreement.of(offered, accepted, version, digest)

    def current_version(self, twin_id: int, brand: LocalAccount | str) -> int:
        """The number of the brand's current accepted version (licenseVersionCount - 1)."""
        address = brand if isinstance(brand, str) else brand.address
        return int(self.fn.licenseVersionCount(twin_id, address).call()) - 1

    def revoke(
        self,
        twin_id: int,
        brand: LocalAccount | str,
        sender: LocalAccount | str,
        version: int | None = None,
    ) -> Any:
        """``revokeLicense`` of ``version`` (the current accepted one by default)."""
        address = brand if isinstance(brand, str) else brand.address
        if version is None:
            version = self.current_version(twin_id, address)
        return self.transact(self.fn.revokeLicense(twin_id, address, version), sender)

    def typed(self, primary: str, message: dict[str, Any]) -> dict[str, Any]:
        """Typed data of ``message`` in this ledger's domain."""
        return typed_data(
            primary, message, chain_id=self.w3.eth.chain_id, ledger=self.contract.address
        )

    def nonce(self, account: LocalAccount | str) -> int:
        address = account if isinstance(account, str) else account.address
        return int(self.fn.nonces(address).call())

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

    def batch_data(
        self,
        groups: Sequence[tuple[str, Sequence[int]]],
        deadline: int,
        *,
        chain_id: int | None = None,
        ledger: str | None = None,
    ) -> dict[str, Any]:
        """Typed data of a usage batch."""
        message = {
            "deadline": deadline,
            "groups": [{"brand": brand, "usages": list(usages)} for brand, usages in groups],
        }
        return typed_data(
            "UsageBatch",
            message,
            chain_id=self.w3.eth.chain_id if chain_id is None else chain_id,
            ledger=self.contract.address if ledger is None else ledger,
        )

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
        data = self.batch_data(groups, deadline, chain_id=chain_id, ledger=ledger)
        signature = sign_typed(signer or self.actors.attester, data)
        return (deadline, [(brand, list(usages)) for brand, usages in groups]), signature

    def settle(
        self,
        groups: Sequence[tuple[str, Sequence[int]]],
        *,
        sender: LocalAccount | None = None,
        attester: str | None = None,
        **sign_kwargs: Any,
    ) -> Any:
        """Signs the batch (by ``signer``, the attester actor by default) and settles it naming
        ``attester`` (the signer's address by default)."""
        batch, signature = self.sign_batch(groups, **sign_kwargs)
        signer = sign_kwargs.get("signer") or self.actors.attester
        named = signer.address if attester is None else attester
        return self.transact(
            self.fn.settle(batch, named, signature), sender or self.actors.outsider
        )

    def settle_call(
        self,
        groups: Sequence[tuple[str, Sequence[int]]],
        *,
        attester: str | None = None,
        **sign_kwargs: Any,
    ) -> Any:
        """The unsent ``settle`` call of a signed batch (for ``reverts`` and ``.call()``)."""
        batch, signature = self.sign_batch(groups, **sign_kwargs)
        signer = sign_kwargs.get("signer") or self.actors.attester
        return self.fn.settle(batch, signer.address if attester is None else attester, signature)

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
        escrow, debt, reserve, pending, unlocks, lapses = self.fn.brandAccount(address).call()
        return {
            "escrow": escrow,
            "debt": debt,
            "debtReserve": reserve,
            "pending": pending,
            "unlocksAt": unlocks,
            "lapsesAt": lapses,
        }

    def brand_limits(self, brand: LocalAccount | str) -> dict[str, Any]:
        """``brandLimits(brand)`` by field name."""
        address = brand if isinstance(brand, str) else brand.address
        names = (
            "perUsage",
            "perPeriod",
            "spentInPeriod",
            "periodStart",
            "pendingPerUsage",
            "pendingPerPeriod",
            "pendingEffectiveAt",
            "attester",
        )
        return dict(zip(names, self.fn.brandLimits(address).call(), strict=True))


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
