"""The brand's side of its agreements on the ledger: the license offers waiting for its acceptance
(accepted with an EIP-712 ``AcceptLicense`` signature the bridge relays, or with the brand's own
transaction; declined with its own transaction only) and its spending limits. Every route needs
the brand's API key and speaks for the brand's own address."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Final, TypeVar

from eth_utils.address import to_checksum_address
from fastapi import APIRouter, Body, Depends, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from bridge.api.deps import AppContext, ContextDep, CurrentBrand, SessionDep
from bridge.api.ledger_schemas import (
    TOKEN_DECIMALS,
    Address,
    Amount,
    Decimals,
    Hash32,
    LedgerTime,
    PriceOut,
    SourceOut,
)
from bridge.api.problems import ProblemError, problem_responses
from bridge.api.routes import actions as action_routes
from bridge.api.routes.ledger import now
from bridge.chain.brand_ledger import (
    BrandLedger,
    BrandLimits,
    WaitingOffer,
    accept_calldata,
    decline_calldata,
)
from bridge.chain.client import Web3ChainClient
from bridge.domain import eip712
from bridge.errors import ChainUnavailableError, RpcError
from bridge.intake.owner_messages import SignedActionIn
from bridge.store.ledger_queries import Offer, pending_offers

router = APIRouter(prefix="/v1", tags=["brand offers and limits"])

ACCEPT: Final = "AcceptLicense"
ACCEPT_DEADLINE_S: Final = 3600
"""An acceptance's signature is valid this long after the chain's time."""
MAX_TWIN_ID: Final = 2**63 - 1

_T = TypeVar("_T")


# ---------------------------------------------------------------- the ledger


def get_brand_ledger(request: Request, context: ContextDep) -> BrandLedger:
    """The app's ``BrandLedger`` over the configured chain, made at its first use (tests put
    their own into ``app.state.brand_ledger``).

    Raises:
        ProblemError: 503 when the bridge has no chain configured.
    """
    ledger = getattr(request.app.state, "brand_ledger", None)
    if ledger is None:
        settings = context.settings
        if not settings.rpc_urls or settings.ledger_address is None:
            raise ProblemError(
                503, "no-chain", "No chain", "this bridge has no chain configured to read"
            )
        ledger = BrandLedger(Web3ChainClient(settings.rpc_urls), settings.ledger_address)
        request.app.state.brand_ledger = ledger
    assert isinstance(ledger, BrandLedger)  # noqa: S101 - only this module sets it
    return ledger


BrandLedgerDep = Annotated[BrandLedger, Depends(get_brand_ledger)]


def read_chain(read: Callable[[], _T]) -> _T:
    """``read()``, with the chain's failure to answer as a problem.

    Raises:
        ProblemError: 503 when no node answers, 502 when the node answers with an error.
    """
    try:
        return read()
    except ChainUnavailableError as exc:
        raise ProblemError(
            503,
            "chain-unavailable",
            "Chain unavailable",
            f"the ledger could not be read; retry later ({exc})",
            headers={"Retry-After": "5"},
        ) from exc
    except RpcError as exc:
        raise ProblemError(502, "chain-error", "Chain error", f"the node refused: {exc}") from exc


# ---------------------------------------------------------------- schemas


class TransactionOut(BaseModel):
    """A transaction for the brand to send from its own address (``eth_sendTransaction``)."""

    to: Address = Field(description="The ledger.")
    data: str = Field(description="Calldata, 0x-hex.")


class OfferOut(BaseModel):
    """A license offer waiting for the brand: payable only once the brand accepts it."""

    twin_id: int
    version: int = Field(description="The version the acceptance names.")
    valid_from: LedgerTime = Field(description="As offered; it starts no earlier than acceptance.")
    valid_until: LedgerTime
    max_uses: int | None = Field(description="Cap on uses (quantity); null: no cap.")
    purpose_hash: Hash32
    consent_hash: Hash32
    prices: list[PriceOut]
    terms_hash: Hash32 = Field(description="EIP-712 struct hash of the terms: what is accepted.")
    expired: bool = Field(description="Its window has ended: it can no longer be accepted.")
    source: SourceOut = Field(description="The LicenseOffered event.")
    accept: str = Field(description="The path that accepts it (POST).")
    decline: TransactionOut | None = Field(
        description="The brand's own transaction that declines it (null: no ledger configured)."
    )


class OfferListOut(BaseModel):
    items: list[OfferOut]


class AcceptIn(BaseModel):
    """The ``AcceptLicense`` message as the brand signed it (from the typed data this endpoint
    gave) and its signature (65 bytes, or longer for an ERC-1271 wallet)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    message: dict[str, Any]
    signature: Annotated[str, Field(pattern=r"^0x([0-9a-fA-F]{2}){1,4096}$")]


class AcceptanceOut(BaseModel):
    """What to sign to accept the offer, and the alternative of the brand's own transaction."""

    typed_data: dict[str, Any] = Field(
        description="EIP-712 AcceptLicense typed data (domain, types, message with the next "
        "nonce and a deadline), ready for eth_signTypedData_v4."
    )
    transaction: TransactionOut = Field(description="acceptLicense from the brand's address.")


class PendingRaiseOut(BaseModel):
    per_usage: Amount
    per_period: Amount
    effective_at: LedgerTime = Field(description="When the raise takes effect.")


class BrandLimitsOut(BaseModel):
    """The brand's spending limits on the ledger now (a usage over either is rejected, not
    turned into debt)."""

    brand: Address
    per_usage: Amount = Field(description="Most one usage (price x quantity) may cost.")
    per_period: Amount = Field(description="Most the usages settled in one period may cost.")
    spent_in_period: Amount = Field(description="What the usages settled this period cost.")
    remaining_in_period: Amount
    period_start: LedgerTime = Field(description="Start of the current spending period.")
    pending_raise: PendingRaiseOut | None = Field(
        description="A raise waiting for its delay (null: none)."
    )
    attester: Address | None = Field(
        description="The brand's own attester (null: the bridge's attesters sign its usages)."
    )
    chain_time: LedgerTime = Field(description="The latest block's time: the figures are as of it.")
    decimals: Decimals = TOKEN_DECIMALS


# ---------------------------------------------------------------- offers


def _offer_out(offer: Offer, *, at: int, ledger: str | None) -> OfferOut:
    decline = None
    if ledger is not None:
        data = decline_calldata(offer.twin_id, offer.version)
        decline = TransactionOut(to=ledger, data="0x" + data.hex())
    return OfferOut(
        twin_id=offer.twin_id,
        version=offer.version,
        valid_from=offer.valid_from,
        valid_until=offer.valid_until,
        max_uses=offer.max_uses,
        purpose_hash=offer.purpose_hash,
        consent_hash=offer.consent_hash,
        prices=[PriceOut.model_validate(p) for p in offer.prices],
        terms_hash=offer.terms_hash,
        expired=offer.valid_until <= at,
        source=SourceOut.model_validate(offer.source),
        accept=f"/v1/offers/{offer.twin_id}/{offer.version}/accept",
        decline=decline,
    )


@router.get(
    "/offers",
    summary="License offers waiting for the brand's acceptance",
    response_model=OfferListOut,
    responses=problem_responses(401, 429),
)
def offers(
    context: ContextDep,
    session: SessionDep,
    brand: CurrentBrand,
    at: Annotated[datetime, Depends(now)],
) -> OfferListOut:
    """The offers of each twin waiting for the brand (from the bridge's index of the chain), by
    twin. Usages of a twin whose offer waits are refused with ``offer_not_accepted`` until the
    brand accepts it (its earlier accepted version, if any, stays in force meanwhile)."""
    ledger = context.settings.ledger_address
    items = pending_offers(session, to_checksum_address(brand.address))
    moment = int(at.timestamp())
    return OfferListOut(items=[_offer_out(o, at=moment, ledger=ledger) for o in items])


def _waiting_offer(ledger: BrandLedger, twin_id: int, brand: str, version: int) -> WaitingOffer:
    """The offer of the twin waiting for the brand, which must be ``version``.

    Raises:
        ProblemError: 404 when none waits, 409 when another version waits.
    """
    offer = read_chain(lambda: ledger.offer_of(twin_id, brand))
    if offer is None:
        raise ProblemError(
            404, "no-offer", "No offer", f"no offer of twin {twin_id} waits for {brand}"
        )
    if offer.version != version:
        raise ProblemError(
            409,
            "offer-version",
            "Another offer waits",
            f"the offer of twin {twin_id} waiting for {brand} is version {offer.version}, "
            f"not {version}",
        )
    return offer


def _acceptance(context: AppContext, offer: WaitingOffer) -> AcceptanceOut:
    """The typed data of the brand's acceptance of ``offer`` with its next nonce (after the
    actions of the brand the bridge holds) and a deadline an hour after the chain's time."""
    state = action_routes.nonce(context, offer.brand)
    verifier = context.actions
    assert verifier is not None  # noqa: S101 - the nonce route answered 503 otherwise
    message = {
        "brand": offer.brand,
        "twinId": offer.twin_id,
        "version": offer.version,
        "termsHash": offer.terms_hash,
        "nonce": state.next_nonce,
        "deadline": state.chain_time_unix + ACCEPT_DEADLINE_S,
    }
    data = accept_calldata(offer.twin_id, offer.version, offer.terms_hash)
    return AcceptanceOut(
        typed_data=eip712.typed_data(
            ACCEPT, message, chain_id=verifier.chain_id, ledger=verifier.ledger
        ),
        transaction=TransactionOut(to=verifier.ledger, data="0x" + data.hex()),
    )


def _same(signed: Any, expected: str | int) -> bool:
    """Whether a signed message's value is ``expected`` (numbers as JSON numbers or decimal
    strings, addresses and hashes in any case)."""
    if isinstance(expected, int):
        return not isinstance(signed, bool) and str(signed) == str(expected)
    return isinstance(signed, str) and signed.lower() == expected.lower()


def _check_signed(message: dict[str, Any], offer: WaitingOffer) -> None:
    """The signed message names the brand, the twin, the version and the terms hash of the offer
    waiting on chain.

    Raises:
        ProblemError: 409 naming the first field that differs.
    """
    expected: dict[str, str | int] = {
        "brand": offer.brand,
        "twinId": offer.twin_id,
        "version": offer.version,
        "termsHash": offer.terms_hash,
    }
    for name, value in expected.items():
        if not _same(message.get(name), value):
            raise ProblemError(
                409,
                "offer-changed",
                "Not the offer that waits",
                f"the signed AcceptLicense has {name} {message.get(name)!r}; the offer of twin "
                f"{offer.twin_id} waiting for {offer.brand} has {value}: sign its typed data again",
            )


@router.post(
    "/offers/{twin_id}/{version}/accept",
    summary="Accept a license offer (what to sign, or relay the signed acceptance)",
    response_model=AcceptanceOut,
    responses={
        202: {"model": action_routes.ActionOut, "description": "The signed acceptance, relayed."},
        **problem_responses(400, 401, 404, 409, 413, 415, 422, 429, 502, 503),
    },
)
async def accept(
    context: ContextDep,
    brand: CurrentBrand,
    ledger: BrandLedgerDep,
    twin_id: Annotated[int, Path(ge=1, le=MAX_TWIN_ID, description="The twin's token id.")],
    version: Annotated[int, Path(ge=0, le=2**32, description="The offer's version.")],
    body: Annotated[AcceptIn | None, Body()] = None,
) -> Response:
    """Without a body: the EIP-712 ``AcceptLicense`` typed data of the offer waiting for the brand
    (its terms hash read from the chain) to sign with the brand's key, and the ``acceptLicense``
    transaction for the brand to send itself instead. With the signed ``message`` and
    ``signature``: the bridge checks and relays it like an owner action (202, followed at
    ``GET /v1/owner-actions/{id}``; the same signed acceptance again answers 200)."""
    address = to_checksum_address(brand.address)
    offer = await run_in_threadpool(_waiting_offer, ledger, twin_id, address, version)
    if body is None:
        answer = await run_in_threadpool(_acceptance, context, offer)
        return Response(answer.model_dump_json(), media_type="application/json")
    _check_signed(body.message, offer)
    signed = SignedActionIn.model_validate(
        {
            "type": ACCEPT,
            "signer": offer.brand,
            "message": body.message,
            "signature": body.signature,
        }
    )
    record, created = await run_in_threadpool(
        action_routes.verify_and_store,  # the owner-action relay's one pipeline
        context,
        signed,
    )
    return Response(
        action_routes.ActionOut.model_validate(record).model_dump_json(),
        status_code=202 if created else 200,
        media_type="application/json",
        headers={"Location": f"/v1/owner-actions/{record.id}"},
    )


# ---------------------------------------------------------------- limits


def _limits_out(brand: str, limits: BrandLimits, chain_time: int) -> BrandLimitsOut:
    pending = None
    if limits.pending_effective_at:
        pending = PendingRaiseOut(
            per_usage=limits.pending_per_usage,
            per_period=limits.pending_per_period,
            effective_at=limits.pending_effective_at,
        )
    own = int(limits.attester, 16) != 0
    return BrandLimitsOut(
        brand=brand,
        per_usage=limits.per_usage,
        per_period=limits.per_period,
        spent_in_period=limits.spent_in_period,
        remaining_in_period=max(0, limits.per_period - limits.spent_in_period),
        period_start=limits.period_start,
        pending_raise=pending,
        attester=limits.attester if own else None,
        chain_time=chain_time,
    )


@router.get(
    "/brand/limits",
    summary="The brand's spending limits on the ledger",
    response_model=BrandLimitsOut,
    responses=problem_responses(401, 429, 502, 503),
)
def limits(brand: CurrentBrand, ledger: BrandLedgerDep) -> BrandLimitsOut:
    """The limits in force (the deployment's defaults until the brand sets its own with
    ``setSpendingLimits``), what the brand's usages settled this period cost, a raise waiting
    for its delay, and the brand's own attester, read from the chain now."""
    address = to_checksum_address(brand.address)
    answer = read_chain(lambda: ledger.brand_limits(address))
    chain_time = read_chain(ledger.chain_time)
    return _limits_out(address, answer, chain_time)
