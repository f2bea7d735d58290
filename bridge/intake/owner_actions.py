"""Owner actions a model signs in any wallet and the bridge relays, paying the gas.

A model signs one of the ledger's EIP-712 owner messages (``GrantLicense``, ``RevokeLicense``,
``SetTwinPaused``, ``SetPayees``) with ``eth_signTypedData_v4`` (MetaMask), ethers, viem or
eth-account; the bridge checks it off chain before it costs anything:

- the message is well formed (the ledger's own rules: price count and range, distinct usage types,
  a window that ends in the future, payee shares), and its deadline is ahead of the chain's clock;
- the signer owns the twin, and the signature is theirs: ECDSA recovery for a key, ERC-1271
  ``isValidSignature`` for a contract wallet;
- the nonce is the next one: the ledger's current nonce of the signer, after the actions of theirs
  the bridge already holds;
- the ledger, asked with ``eth_call``, would take it.

A payout (``Payout``: the ledger's ``payout(payee, twinIds)``, which anyone may call because the
money can only go to the payee) needs no signature; the bridge relays it when there is something to
pay.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, Final, Literal, Protocol

from eth_abi.abi import decode, encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.address import is_address, to_checksum_address
from eth_utils.crypto import keccak
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
)
from web3 import Web3

from bridge.chain.client import Block, BlockTag
from bridge.chain.reverts import describe_revert
from bridge.chain.toolchain import load_artifact
from bridge.domain import eip712
from bridge.errors import BridgeError, ExecutionRevertedError

SIGNED_KINDS: Final = ("GrantLicense", "RevokeLicense", "SetTwinPaused", "SetPayees")
PAYOUT: Final = "Payout"
KINDS: Final = (*SIGNED_KINDS, PAYOUT)

MAX_PRICES: Final = 16
MAX_PRICE: Final = 2**96 - 1
MAX_PAYEES: Final = 8
MAX_BPS: Final = 10_000
MAX_PAYOUT_TWINS: Final = 64
ZERO_ADDRESS: Final = "0x" + "00" * 20
ERC1271_MAGIC: Final = bytes.fromhex("1626ba7e")

_OWNER_OF = keccak(text="ownerOf(uint256)")[:4]
_NONCES = keccak(text="nonces(address)")[:4]
_CLAIMABLE = keccak(text="claimable(address)")[:4]
_IS_VALID_SIGNATURE = keccak(text="isValidSignature(bytes32,bytes)")[:4]

_FUNCTIONS: Final = {
    "GrantLicense": "grantLicenseBySig",
    "RevokeLicense": "revokeLicenseBySig",
    "SetTwinPaused": "setTwinPausedBySig",
    "SetPayees": "setPayeesBySig",
    PAYOUT: "payout",
}


class ActionChain(Protocol):
    """The read-only calls the verifier makes (``Web3ChainClient`` has them)."""

    def chain_id(self) -> int: ...

    def block(self, tag: BlockTag = "latest") -> Block | None: ...

    def call(self, *, to: str, data: bytes, block: BlockTag = "latest") -> bytes: ...

    def code(self, address: str, block: BlockTag = "latest") -> bytes: ...


class ActionRefusedError(BridgeError):
    """The action is refused before it costs gas; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        super().__init__(detail)


# ---------------------------------------------------------------- messages


def _uint(bits: int) -> Any:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError("expected an integer, not a boolean")
        if isinstance(value, str):
            text = value.strip()
            if not text:
                raise ValueError("expected an integer")
            value = int(text, 16) if text.lower().startswith("0x") else int(text, 10)
        if not isinstance(value, int):
            raise ValueError("expected an integer (JSON number or decimal string)")
        if not 0 <= value < 2**bits:
            raise ValueError(f"out of range for uint{bits}")
        return value

    return BeforeValidator(parse)


def _address(value: Any) -> str:
    if not isinstance(value, str) or not is_address(value):
        raise ValueError("expected a 20-byte hex address")
    return to_checksum_address(value)


def _bytes32(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) != 66:
        raise ValueError("expected 32 bytes as 0x-prefixed hex")
    try:
        bytes.fromhex(value[2:])
    except ValueError:
        raise ValueError("expected 32 bytes as 0x-prefixed hex") from None
    return value.lower()


Uint256 = Annotated[int, _uint(256)]
Uint40 = Annotated[int, _uint(40)]
Uint32 = Annotated[int, _uint(32)]
Uint16 = Annotated[int, _uint(16)]
Uint8 = Annotated[int, _uint(8)]
Address = Annotated[str, BeforeValidator(_address)]
Bytes32 = Annotated[str, BeforeValidator(_bytes32)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UsagePriceMsg(_Strict):
    usageType: Uint8
    price: Annotated[Uint256, Field(gt=0, le=MAX_PRICE)]


class LicenseTermsMsg(_Strict):
    brand: Address
    validFrom: Uint40
    validUntil: Uint40
    maxUses: Uint32
    purposeHash: Bytes32
    consentHash: Bytes32
    prices: Annotated[list[UsagePriceMsg], Field(min_length=1, max_length=MAX_PRICES)]

    @field_validator("brand")
    @classmethod
    def _brand(cls, value: str) -> str:
        if value == to_checksum_address(ZERO_ADDRESS):
            raise ValueError("the brand must not be the zero address")
        return value

    @field_validator("prices")
    @classmethod
    def _distinct(cls, prices: list[UsagePriceMsg]) -> list[UsagePriceMsg]:
        types = [p.usageType for p in prices]
        if len(set(types)) != len(types):
            raise ValueError("each usage type may be priced once")
        return prices


class _Signed(_Strict):
    nonce: Uint256
    deadline: Uint256


class GrantLicenseMsg(_Signed):
    twinId: Uint256
    terms: LicenseTermsMsg


class RevokeLicenseMsg(_Signed):
    twinId: Uint256
    brand: Address


class SetTwinPausedMsg(_Signed):
    twinId: Uint256
    paused: StrictBool


class PayeeMsg(_Strict):
    account: Address
    bps: Annotated[Uint16, Field(gt=0, le=MAX_BPS)]


class SetPayeesMsg(_Signed):
    twinId: Uint256
    payees: Annotated[list[PayeeMsg], Field(max_length=MAX_PAYEES)]

    @field_validator("payees")
    @classmethod
    def _shares(cls, payees: list[PayeeMsg]) -> list[PayeeMsg]:
        accounts = [p.account for p in payees]
        if len(set(accounts)) != len(accounts):
            raise ValueError("each payee may appear once")
        if to_checksum_address(ZERO_ADDRESS) in accounts:
            raise ValueError("a payee must not be the zero address")
        if sum(p.bps for p in payees) > MAX_BPS:
            raise ValueError(f"payee shares add up to more than {MAX_BPS} bps")
        return payees


MESSAGE_MODELS: Final[Mapping[str, type[_Signed]]] = {
    "GrantLicense": GrantLicenseMsg,
    "RevokeLicense": RevokeLicenseMsg,
    "SetTwinPaused": SetTwinPausedMsg,
    "SetPayees": SetPayeesMsg,
}


class SignedActionIn(_Strict):
    """A signed owner action: the EIP-712 ``message`` of ``type``, its ``signer`` (the twin's
    owner; a contract wallet for ERC-1271) and the 65-byte (or longer, for ERC-1271) signature."""

    type: Literal["GrantLicense", "RevokeLicense", "SetTwinPaused", "SetPayees"]
    signer: Address
    message: dict[str, Any]
    signature: Annotated[str, Field(pattern=r"^0x([0-9a-fA-F]{2}){1,4096}$")]


class PayoutIn(_Strict):
    """Pays ``payee`` what the ledger holds for them, distributing ``twinIds`` first."""

    type: Literal["Payout"]
    payee: Address
    twinIds: Annotated[list[Uint256], Field(max_length=MAX_PAYOUT_TWINS)]


def _plain(value: Any) -> Any:
    """Numbers as decimal strings (JSON-safe for uint256), the rest unchanged."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def parse_message(kind: str, message: Mapping[str, Any]) -> _Signed:
    """The typed message of ``kind``.

    Raises:
        ActionRefusedError: 422 naming each field that is wrong.
    """
    try:
        return MESSAGE_MODELS[kind].model_validate(dict(message))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'message'}: {e['msg']}" for e in exc.errors()
        )
        raise ActionRefusedError(422, "invalid_message", f"{kind} message: {problems}") from None


def typed_message(parsed: _Signed) -> dict[str, Any]:
    """The message as EIP-712 typed data wants it (ints, checksum addresses, 0x hashes)."""
    return parsed.model_dump()


def typed_data(kind: str, parsed: _Signed, *, chain_id: int, ledger: str) -> dict[str, Any]:
    return eip712.typed_data(kind, typed_message(parsed), chain_id=chain_id, ledger=ledger)


# ---------------------------------------------------------------- calldata


def _terms_tuple(terms: LicenseTermsMsg) -> tuple[Any, ...]:
    return (
        terms.brand,
        terms.validFrom,
        terms.validUntil,
        terms.maxUses,
        bytes.fromhex(terms.purposeHash[2:]),
        bytes.fromhex(terms.consentHash[2:]),
        [(p.usageType, p.price) for p in terms.prices],
    )


@lru_cache(maxsize=1)
def _ledger_contract() -> Any:
    """The ledger's ABI bound to no address, read once: it only encodes calldata."""
    return Web3().eth.contract(abi=load_artifact("TwinLedger").abi)


def _encode(function: str, args: Sequence[Any]) -> bytes:
    return bytes.fromhex(_ledger_contract().encode_abi(function, args=list(args))[2:])


def signed_calldata(kind: str, parsed: _Signed, signature: bytes) -> bytes:
    """Calldata of the ledger's ``…BySig`` function for the signed message."""
    tail = (parsed.nonce, parsed.deadline, signature)
    match parsed:
        case GrantLicenseMsg():
            args: tuple[Any, ...] = (parsed.twinId, _terms_tuple(parsed.terms), *tail)
        case RevokeLicenseMsg():
            args = (parsed.twinId, parsed.brand, *tail)
        case SetTwinPausedMsg():
            args = (parsed.twinId, parsed.paused, *tail)
        case SetPayeesMsg():
            args = (parsed.twinId, [(p.account, p.bps) for p in parsed.payees], *tail)
        case _:  # pragma: no cover - MESSAGE_MODELS is exhaustive
            raise AssertionError(kind)
    return _encode(_FUNCTIONS[kind], args)


def payout_calldata(payee: str, twin_ids: Sequence[int]) -> bytes:
    return _encode("payout", (to_checksum_address(payee), list(twin_ids)))


# ---------------------------------------------------------------- verification


@dataclass(frozen=True, slots=True)
class VerifiedAction:
    """An action the bridge will relay: everything the store keeps."""

    kind: str
    signer: str
    twin_id: int | None
    nonce: int | None
    deadline: int | None
    message: dict[str, Any]
    signature: bytes | None
    digest: str
    calldata: bytes

    def message_json(self) -> str:
        return json.dumps(_plain(self.message), sort_keys=True)


@dataclass(frozen=True, slots=True)
class PreparedAction:
    """A signed action's body with its typed message, typed data and EIP-712 digest."""

    body: SignedActionIn
    parsed: _Signed
    data: dict[str, Any]
    digest: bytes

    @property
    def hex_digest(self) -> str:
        return "0x" + self.digest.hex()


class ActionVerifier:
    """Checks owner actions against the chain (read-only calls; nothing is sent)."""

    def __init__(self, chain: ActionChain, ledger: str) -> None:
        self._chain = chain
        self.ledger = to_checksum_address(ledger)
        self._chain_id: int | None = None

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = self._chain.chain_id()
        return self._chain_id

    def domain(self) -> dict[str, Any]:
        return eip712.domain(self.chain_id, self.ledger)

    def on_chain_nonce(self, account: str) -> int:
        answer = self._chain.call(
            to=self.ledger, data=_NONCES + encode(["address"], [to_checksum_address(account)])
        )
        return int(decode(["uint256"], answer)[0])

    def owner_of(self, twin_id: int) -> str | None:
        try:
            answer = self._chain.call(
                to=self.ledger, data=_OWNER_OF + encode(["uint256"], [twin_id])
            )
        except ExecutionRevertedError:
            return None
        return to_checksum_address(decode(["address"], answer)[0])

    def claimable(self, payee: str) -> int:
        answer = self._chain.call(
            to=self.ledger, data=_CLAIMABLE + encode(["address"], [to_checksum_address(payee)])
        )
        return int(decode(["uint256"], answer)[0])

    def chain_time(self) -> int:
        block = self._chain.block("latest")
        if block is None:
            raise ActionRefusedError(503, "chain_unavailable", "the chain gave no latest block")
        return block.timestamp

    def _signature_valid(
        self, signer: str, digest: bytes, data: dict[str, Any], sig: bytes
    ) -> bool:
        if self._chain.code(signer):
            try:
                answer = self._chain.call(
                    to=signer,
                    data=_IS_VALID_SIGNATURE + encode(["bytes32", "bytes"], [digest, sig]),
                )
            except ExecutionRevertedError:
                return False
            return len(answer) >= 4 and answer[:4] == ERC1271_MAGIC
        if len(sig) != 65:
            return False
        try:
            recovered = Account.recover_message(encode_typed_data(full_message=data), signature=sig)
        except (ValueError, TypeError):
            return False
        return bool(to_checksum_address(recovered) == signer)

    def _simulate(self, calldata: bytes, kind: str) -> None:
        try:
            self._chain.call(to=self.ledger, data=calldata)
        except ExecutionRevertedError as exc:
            reason = describe_revert(exc.data) or exc.message
            raise ActionRefusedError(
                422, "ledger_refuses", f"the ledger would refuse this {kind}: {reason}"
            ) from None

    def prepare(self, body: SignedActionIn) -> PreparedAction:
        """The signed action's typed message and its EIP-712 digest (its identity in the store),
        computed once for the lookup of a repeat and for ``verify_signed``.

        Raises:
            ActionRefusedError: 422 for a malformed message.
        """
        parsed = parse_message(body.type, body.message)
        data = typed_data(body.type, parsed, chain_id=self.chain_id, ledger=self.ledger)
        return PreparedAction(body, parsed, data, eip712.digest(data))

    def verify_signed(
        self, prepared: PreparedAction, *, held_nonces: Sequence[int]
    ) -> VerifiedAction:
        """Checks a prepared signed action; ``held_nonces`` are the signer's nonces of actions the
        bridge holds and has not yet seen mined (they come before this one).

        Raises:
            ActionRefusedError: with the status and the reason in words.
        """
        body, parsed, data, digest = (
            prepared.body,
            prepared.parsed,
            prepared.data,
            prepared.digest,
        )
        kind = body.type
        signer = body.signer
        signature = bytes.fromhex(body.signature[2:])
        twin_id = int(getattr(parsed, "twinId"))  # noqa: B009 - every signed message names a twin

        now = self.chain_time()
        if parsed.deadline <= now:
            raise ActionRefusedError(
                422,
                "deadline_passed",
                f"the signature's deadline {parsed.deadline} is not after the chain's time {now}",
            )
        if isinstance(parsed, GrantLicenseMsg):
            terms = parsed.terms
            if terms.validUntil <= max(terms.validFrom, now):
                raise ActionRefusedError(
                    422,
                    "invalid_message",
                    f"the license window [{terms.validFrom}, {terms.validUntil}) must be non-empty "
                    f"and end after the chain's time {now}",
                )
        owner = self.owner_of(twin_id)
        if owner is None:
            raise ActionRefusedError(404, "unknown_twin", f"twin {twin_id} does not exist")
        if owner != signer:
            raise ActionRefusedError(
                403, "not_owner", f"{signer} does not own twin {twin_id} (its owner is {owner})"
            )
        if not self._signature_valid(signer, digest, data, signature):
            raise ActionRefusedError(
                401,
                "bad_signature",
                f"the signature is not {signer}'s over this {kind} message "
                f"(EIP-712 domain {eip712.DOMAIN_NAME} v{eip712.DOMAIN_VERSION}, chain "
                f"{self.chain_id}, ledger {self.ledger})",
            )
        chain_nonce = self.on_chain_nonce(signer)
        expected = max([chain_nonce, *(n + 1 for n in held_nonces if n >= chain_nonce)])
        if parsed.nonce < chain_nonce:
            raise ActionRefusedError(
                409,
                "nonce_used",
                f"nonce {parsed.nonce} of {signer} was used already; the next is {expected}",
            )
        if parsed.nonce in held_nonces:
            raise ActionRefusedError(
                409,
                "nonce_taken",
                f"nonce {parsed.nonce} of {signer} belongs to another action the bridge holds; "
                f"sign with {expected}",
            )
        if parsed.nonce != expected:
            raise ActionRefusedError(
                422,
                "nonce_gap",
                f"nonce {parsed.nonce} of {signer} leaves a gap: sign with {expected}",
            )
        calldata = signed_calldata(kind, parsed, signature)
        if parsed.nonce == chain_nonce:  # later nonces can only be asked once the earlier mine
            self._simulate(calldata, kind)
        return VerifiedAction(
            kind=kind,
            signer=signer,
            twin_id=twin_id,
            nonce=parsed.nonce,
            deadline=parsed.deadline,
            message=typed_message(parsed),
            signature=signature,
            digest="0x" + digest.hex(),
            calldata=calldata,
        )

    def verify_payout(self, body: PayoutIn) -> VerifiedAction:
        """Checks that a payout would pay something now.

        Raises:
            ActionRefusedError: with the status and the reason in words.
        """
        calldata = payout_calldata(body.payee, body.twinIds)
        self._simulate(calldata, PAYOUT)
        message = {"payee": body.payee, "twinIds": list(body.twinIds)}
        # Payouts may repeat (each pays what is claimable then): each request is its own action.
        digest = keccak(text=f"{PAYOUT}:{json.dumps(_plain(message))}:{secrets.token_hex(16)}")
        return VerifiedAction(
            kind=PAYOUT,
            signer=body.payee,
            twin_id=None,
            nonce=None,
            deadline=None,
            message=message,
            signature=None,
            digest="0x" + digest.hex(),
            calldata=calldata,
        )


def action_types(chain_id: int, ledger: str) -> dict[str, Any]:
    """What a wallet needs to sign each owner action: the domain, and per action its primary type
    and types (``EIP712Domain`` included, as ``eth_signTypedData_v4`` takes them)."""
    return {
        "domain": eip712.domain(chain_id, ledger),
        "actions": {
            kind: {
                "primaryType": kind,
                "types": {"EIP712Domain": list(eip712.DOMAIN_TYPE), **eip712.TYPES[kind]},
            }
            for kind in SIGNED_KINDS
        },
    }
