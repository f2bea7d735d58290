"""Owner actions a model signs in any wallet and the bridge relays, paying the gas.

A model signs one of the ledger's EIP-712 owner messages (``OfferLicense``, ``RevokeLicense``,
``SetTwinPaused``, ``SetPayees``; ``bridge.intake.owner_messages``), a brand the ``AcceptLicense``
of an offer made to it, with ``eth_signTypedData_v4`` (MetaMask), ethers, viem or eth-account; the
bridge checks it off chain before it costs anything:

- the message is well formed (the ledger's own rules: price count and range, distinct usage types,
  a window that ends in the future, payee shares), and its deadline is ahead of the chain's clock;
- the message names its signer (``owner``, or ``brand`` for an acceptance) and the signer is the
  one who sent it; an owner message's signer owns the twin, an acceptance's brand has that offer
  (that version, that terms hash) waiting;
- the signature is the signer's: ECDSA recovery for a key, ERC-1271 ``isValidSignature`` for a
  contract wallet;
- the nonce is the next one: the ledger's current nonce of the signer, after the actions of theirs
  the bridge already holds;
- the ledger, asked with ``eth_call``, would take it.

A payout (``Payout``: the ledger's ``payout(payee, twinIds)``, which anyone may call because the
money can only go to the payee) needs no signature; the bridge relays it when there is something to
pay.
"""

from __future__ import annotations

import functools
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, ParamSpec, Protocol, TypeVar

from eth_abi.abi import decode, encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from bridge.chain.brand_ledger import OFFER_OF, call_data, decode_offer
from bridge.chain.client import Block, BlockTag
from bridge.chain.reverts import describe_revert
from bridge.domain import eip712
from bridge.errors import BridgeError, ChainUnavailableError, ExecutionRevertedError, RpcError
from bridge.intake.owner_messages import (
    PAYOUT,
    SIGNED_KINDS,
    AcceptLicenseMsg,
    ActionRefusedError,
    OfferLicenseMsg,
    PayoutIn,
    SignedActionIn,
    SignedMsg,
    parse_message,
    payout_calldata,
    plain,
    signed_calldata,
    typed_data,
    typed_message,
)

ERC1271_MAGIC: Final = bytes.fromhex("1626ba7e")

_OWNER_OF = keccak(text="ownerOf(uint256)")[:4]
_NONCES = keccak(text="nonces(address)")[:4]
_IS_VALID_SIGNATURE = keccak(text="isValidSignature(bytes32,bytes)")[:4]

_P = ParamSpec("_P")
_R = TypeVar("_R")


class ActionChain(Protocol):
    """The read-only calls the verifier makes (``Web3ChainClient`` has them)."""

    def chain_id(self) -> int: ...

    def block(self, tag: BlockTag = "latest") -> Block | None: ...

    def call(self, *, to: str, data: bytes, block: BlockTag = "latest") -> bytes: ...

    def code(self, address: str, block: BlockTag = "latest") -> bytes: ...


class ActionChainError(BridgeError):
    """The chain could not answer a check of an owner action: it did not answer
    (``ChainUnavailableError``) or answered with an error (``RpcError``), kept as ``cause``."""

    def __init__(self, cause: ChainUnavailableError | RpcError) -> None:
        self.cause = cause
        super().__init__(str(cause))


def _asks_chain(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """``method``, with the chain's failure to answer raised as ``ActionChainError``."""

    @functools.wraps(method)
    def asking(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except (ChainUnavailableError, RpcError) as exc:
            raise ActionChainError(exc) from exc

    return asking


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
        return json.dumps(plain(self.message), sort_keys=True)


@dataclass(frozen=True, slots=True)
class PreparedAction:
    """A signed action's body with its typed message, typed data and EIP-712 digest."""

    body: SignedActionIn
    parsed: SignedMsg
    data: dict[str, Any]
    digest: bytes

    @property
    def hex_digest(self) -> str:
        return "0x" + self.digest.hex()

    @property
    def signature(self) -> bytes:
        return bytes.fromhex(self.body.signature[2:])

    @property
    def twin_id(self) -> int:
        return int(getattr(self.parsed, "twinId"))  # noqa: B009 - every signed message names one


class ActionVerifier:
    """Checks owner actions against the chain (read-only calls; nothing is sent).

    Its public methods raise ``ActionChainError`` when the chain cannot answer them.
    """

    def __init__(self, chain: ActionChain, ledger: str) -> None:
        self._chain = chain
        self.ledger = to_checksum_address(ledger)
        self._chain_id: int | None = None

    @property
    @_asks_chain
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = self._chain.chain_id()
        return self._chain_id

    @_asks_chain
    def on_chain_nonce(self, account: str) -> int:
        answer = self._chain.call(
            to=self.ledger, data=_NONCES + encode(["address"], [to_checksum_address(account)])
        )
        return int(decode(["uint256"], answer)[0])

    @_asks_chain
    def owner_of(self, twin_id: int) -> str | None:
        try:
            answer = self._chain.call(
                to=self.ledger, data=_OWNER_OF + encode(["uint256"], [twin_id])
            )
        except ExecutionRevertedError:
            return None
        return to_checksum_address(decode(["address"], answer)[0])

    @_asks_chain
    def chain_time(self) -> int:
        block = self._chain.block("latest")
        if block is None:
            raise ActionRefusedError(503, "chain_unavailable", "the chain gave no latest block")
        return block.timestamp

    @_asks_chain
    def prepare(self, body: SignedActionIn) -> PreparedAction:
        """The signed action's typed message and its EIP-712 digest (its identity in the store),
        computed once for the lookup of a repeat and for ``verify_signed``.

        Raises:
            ActionRefusedError: 422 for a malformed message.
        """
        parsed = parse_message(body.type, body.message)
        data = typed_data(body.type, parsed, chain_id=self.chain_id, ledger=self.ledger)
        return PreparedAction(body, parsed, data, eip712.digest(data))

    @_asks_chain
    def verify_signed(
        self, prepared: PreparedAction, *, held_nonces: Sequence[int]
    ) -> VerifiedAction:
        """Checks a prepared signed action; ``held_nonces`` are the signer's nonces of actions the
        bridge holds and has not yet seen mined (they come before this one).

        Raises:
            ActionRefusedError: with the status and the reason in words.
        """
        self._check_times(prepared.parsed)
        self._check_named_signer(prepared)
        if isinstance(prepared.parsed, AcceptLicenseMsg):
            self._check_offer(prepared.parsed)
        else:
            self._check_owner(prepared.body.signer, prepared.twin_id)
        self._check_signature(prepared)
        chain_nonce = self._check_nonce(prepared, held_nonces)
        kind, parsed = prepared.body.type, prepared.parsed
        calldata = signed_calldata(kind, parsed, prepared.signature)
        if parsed.nonce == chain_nonce:  # later nonces can only be asked once the earlier mine
            self._simulate(calldata, kind)
        return VerifiedAction(
            kind=kind,
            signer=prepared.body.signer,
            twin_id=prepared.twin_id,
            nonce=parsed.nonce,
            deadline=parsed.deadline,
            message=typed_message(parsed),
            signature=prepared.signature,
            digest=prepared.hex_digest,
            calldata=calldata,
        )

    @_asks_chain
    def verify_payout(self, body: PayoutIn) -> VerifiedAction:
        """Checks that a payout would pay something now.

        Raises:
            ActionRefusedError: with the status and the reason in words.
        """
        calldata = payout_calldata(body.payee, body.twinIds)
        self._simulate(calldata, PAYOUT)
        message = {"payee": body.payee, "twinIds": list(body.twinIds)}
        # Payouts may repeat (each pays what is claimable then): each request is its own action.
        digest = keccak(text=f"{PAYOUT}:{json.dumps(plain(message))}:{secrets.token_hex(16)}")
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

    def _check_times(self, parsed: SignedMsg) -> None:
        """The deadline, and a license's window, end after the chain's time."""
        now = self.chain_time()
        if parsed.deadline <= now:
            raise ActionRefusedError(
                422,
                "deadline_passed",
                f"the signature's deadline {parsed.deadline} is not after the chain's time {now}",
            )
        if isinstance(parsed, OfferLicenseMsg):
            terms = parsed.terms
            if terms.validUntil <= max(terms.validFrom, now):
                raise ActionRefusedError(
                    422,
                    "invalid_message",
                    f"the license window [{terms.validFrom}, {terms.validUntil}) must be non-empty "
                    f"and end after the chain's time {now}",
                )

    @staticmethod
    def _check_named_signer(prepared: PreparedAction) -> None:
        """The message names the account that sends it as its signer (the ledger checks the
        signature against the account the message names)."""
        named, signer = prepared.parsed.signer, prepared.body.signer
        if named != signer:
            field = "brand" if isinstance(prepared.parsed, AcceptLicenseMsg) else "owner"
            raise ActionRefusedError(
                422,
                "signer_mismatch",
                f"the {prepared.body.type} message names {field} {named}, not the signer {signer}",
            )

    @_asks_chain
    def offer_of(self, twin_id: int, brand: str) -> tuple[int, bytes] | None:
        """The version and terms hash of the offer waiting for ``brand``'s acceptance of the twin,
        or None when none waits."""
        try:
            answer = self._chain.call(
                to=self.ledger, data=call_data(OFFER_OF, ["uint256", "address"], [twin_id, brand])
            )
        except ExecutionRevertedError:
            return None
        offer = decode_offer(answer, twin_id=twin_id, brand=brand)
        return offer.version, bytes.fromhex(offer.terms_hash.removeprefix("0x"))

    def _check_offer(self, parsed: AcceptLicenseMsg) -> None:
        """An offer of the twin waits for the brand, with the version and terms hash accepted."""
        if self.owner_of(parsed.twinId) is None:
            raise ActionRefusedError(404, "unknown_twin", f"twin {parsed.twinId} does not exist")
        offer = self.offer_of(parsed.twinId, parsed.brand)
        if offer is None:
            raise ActionRefusedError(
                404,
                "no_offer",
                f"no license offer of twin {parsed.twinId} waits for {parsed.brand}",
            )
        version, terms_hash = offer
        if (version, "0x" + terms_hash.hex()) != (parsed.version, parsed.termsHash):
            raise ActionRefusedError(
                409,
                "offer_mismatch",
                f"the offer waiting is version {version} with terms hash 0x{terms_hash.hex()}, "
                f"not version {parsed.version} with {parsed.termsHash}",
            )

    def _check_owner(self, signer: str, twin_id: int) -> None:
        owner = self.owner_of(twin_id)
        if owner is None:
            raise ActionRefusedError(404, "unknown_twin", f"twin {twin_id} does not exist")
        if owner != signer:
            raise ActionRefusedError(
                403, "not_owner", f"{signer} does not own twin {twin_id} (its owner is {owner})"
            )

    def _check_signature(self, prepared: PreparedAction) -> None:
        signer = prepared.body.signer
        if not self._signature_valid(signer, prepared.digest, prepared.data, prepared.signature):
            raise ActionRefusedError(
                401,
                "bad_signature",
                f"the signature is not {signer}'s over this {prepared.body.type} message "
                f"(EIP-712 domain {eip712.DOMAIN_NAME} v{eip712.DOMAIN_VERSION}, chain "
                f"{self.chain_id}, ledger {self.ledger})",
            )

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

    def _check_nonce(self, prepared: PreparedAction, held_nonces: Sequence[int]) -> int:
        """The ledger's current nonce of the signer, once the action's nonce is the next one."""
        signer, nonce = prepared.body.signer, prepared.parsed.nonce
        chain_nonce = self.on_chain_nonce(signer)
        expected = max([chain_nonce, *(n + 1 for n in held_nonces if n >= chain_nonce)])
        if nonce < chain_nonce:
            raise ActionRefusedError(
                409,
                "nonce_used",
                f"nonce {nonce} of {signer} was used already; the next is {expected}",
            )
        if nonce in held_nonces:
            raise ActionRefusedError(
                409,
                "nonce_taken",
                f"nonce {nonce} of {signer} belongs to another action the bridge holds; "
                f"sign with {expected}",
            )
        if nonce != expected:
            raise ActionRefusedError(
                422, "nonce_gap", f"nonce {nonce} of {signer} leaves a gap: sign with {expected}"
            )
        return chain_nonce

    def _simulate(self, calldata: bytes, kind: str) -> None:
        try:
            self._chain.call(to=self.ledger, data=calldata)
        except ExecutionRevertedError as exc:
            reason = describe_revert(exc.data) or exc.message
            raise ActionRefusedError(
                422, "ledger_refuses", f"the ledger would refuse this {kind}: {reason}"
            ) from None


def action_types(chain_id: int, ledger: str) -> dict[str, Any]:
    """What a wallet needs to sign each relayed action (the owner's, and the brand's
    ``AcceptLicense``): the domain, and per action its primary type and types (``EIP712Domain``
    included, as ``eth_signTypedData_v4`` takes them)."""
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
