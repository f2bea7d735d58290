"""The relayed actions' messages: the ledger's EIP-712 owner messages (``OfferLicense``,
``RevokeLicense``, ``SetTwinPaused``, ``SetPayees``, each naming its ``owner``), the brand's
``AcceptLicense`` (naming the ``brand``) and the payout as the relay takes them, checked for form by
the ledger's own rules (price count and range, distinct usage types, payee shares), and the
calldata of the ledger function that carries each. ``bridge.intake.owner_actions`` checks them
against the chain."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Annotated, Any, Final, Literal

from eth_utils.address import is_address, to_checksum_address
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

from bridge.chain.toolchain import load_artifact
from bridge.domain import eip712
from bridge.errors import BridgeError

SIGNED_KINDS: Final = (
    "OfferLicense",
    "RevokeLicense",
    "SetTwinPaused",
    "SetPayees",
    "AcceptLicense",
)
BRAND_KINDS: Final = frozenset({"AcceptLicense"})
"""Messages a brand signs (for a license offered to it); the others are the twin owner's."""
PAYOUT: Final = "Payout"

MAX_PRICES: Final = 16
MAX_PRICE: Final = 2**96 - 1
MAX_PAYEES: Final = 8
MAX_BPS: Final = 10_000
MAX_PAYOUT_TWINS: Final = 64
ZERO_ADDRESS: Final = "0x" + "00" * 20

_FUNCTIONS: Final = {
    "OfferLicense": "offerLicenseBySig",
    "RevokeLicense": "revokeLicenseBySig",
    "SetTwinPaused": "setTwinPausedBySig",
    "SetPayees": "setPayeesBySig",
    "AcceptLicense": "acceptLicenseBySig",
    PAYOUT: "payout",
}


class ActionRefusedError(BridgeError):
    """The action is refused before it costs gas; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        super().__init__(detail)


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


class SignedMsg(_Strict):
    """A signed message: each names its twin and carries the signer's next nonce and a deadline
    (unix s)."""

    twinId: Uint256
    nonce: Uint256
    deadline: Uint256

    @property
    def signer(self) -> str:
        """The account the message names as its signer."""
        raise NotImplementedError


class OwnerMsg(SignedMsg):
    """An owner message: names the twin's owner, who signs it."""

    owner: Address

    @property
    def signer(self) -> str:
        return self.owner


class OfferLicenseMsg(OwnerMsg):
    terms: LicenseTermsMsg


class RevokeLicenseMsg(OwnerMsg):
    brand: Address
    version: Uint256


class SetTwinPausedMsg(OwnerMsg):
    paused: StrictBool


class PayeeMsg(_Strict):
    account: Address
    bps: Annotated[Uint16, Field(gt=0, le=MAX_BPS)]


class SetPayeesMsg(OwnerMsg):
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


class AcceptLicenseMsg(SignedMsg):
    """The brand accepts offer ``version`` of the twin, whose terms hash is ``termsHash``."""

    brand: Address
    version: Uint256
    termsHash: Bytes32

    @property
    def signer(self) -> str:
        return self.brand


MESSAGE_MODELS: Final[Mapping[str, type[SignedMsg]]] = {
    "OfferLicense": OfferLicenseMsg,
    "RevokeLicense": RevokeLicenseMsg,
    "SetTwinPaused": SetTwinPausedMsg,
    "SetPayees": SetPayeesMsg,
    "AcceptLicense": AcceptLicenseMsg,
}


class SignedActionIn(_Strict):
    """A signed action: the EIP-712 ``message`` of ``type``, its ``signer`` (the account the
    message names: the twin's owner, or the brand for ``AcceptLicense``; a contract wallet for
    ERC-1271) and the 65-byte (or longer, for ERC-1271) signature."""

    type: Literal["OfferLicense", "RevokeLicense", "SetTwinPaused", "SetPayees", "AcceptLicense"]
    signer: Address
    message: dict[str, Any]
    signature: Annotated[str, Field(pattern=r"^0x([0-9a-fA-F]{2}){1,4096}$")]


class PayoutIn(_Strict):
    """Pays ``payee`` what the ledger holds for them, distributing ``twinIds`` first."""

    type: Literal["Payout"]
    payee: Address
    twinIds: Annotated[list[Uint256], Field(max_length=MAX_PAYOUT_TWINS)]


def plain(value: Any) -> Any:
    """Numbers as decimal strings (JSON-safe for uint256), the rest unchanged."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def parse_message(kind: str, message: Mapping[str, Any]) -> SignedMsg:
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


def typed_message(parsed: SignedMsg) -> dict[str, Any]:
    """The message as EIP-712 typed data wants it (ints, checksum addresses, 0x hashes)."""
    return parsed.model_dump()


def typed_data(kind: str, parsed: SignedMsg, *, chain_id: int, ledger: str) -> dict[str, Any]:
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


def signed_calldata(kind: str, parsed: SignedMsg, signature: bytes) -> bytes:
    """Calldata of the ledger's ``…BySig`` function for the signed message (the signer it names
    first, as the ledger takes it)."""
    head = (parsed.signer, parsed.twinId)
    tail = (parsed.nonce, parsed.deadline, signature)
    match parsed:
        case OfferLicenseMsg():
            args: tuple[Any, ...] = (*head, _terms_tuple(parsed.terms), *tail)
        case RevokeLicenseMsg():
            args = (*head, parsed.brand, parsed.version, *tail)
        case SetTwinPausedMsg():
            args = (*head, parsed.paused, *tail)
        case SetPayeesMsg():
            args = (*head, [(p.account, p.bps) for p in parsed.payees], *tail)
        case AcceptLicenseMsg():
            args = (*head, parsed.version, bytes.fromhex(parsed.termsHash[2:]), *tail)
        case _:  # pragma: no cover - MESSAGE_MODELS is exhaustive
            raise AssertionError(kind)
    return _encode(_FUNCTIONS[kind], args)


def payout_calldata(payee: str, twin_ids: Sequence[int]) -> bytes:
    return _encode("payout", (to_checksum_address(payee), list(twin_ids)))
