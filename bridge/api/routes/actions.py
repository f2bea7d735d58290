"""Owner actions: what to sign (EIP-712 domain, types, the signer's next nonce), the relay that
submits a signed action through the bridge's relayer, and its status."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from starlette.concurrency import run_in_threadpool

from bridge.api.body import parse_json_body, read_json_body
from bridge.api.deps import AppContext, ContextDep
from bridge.api.ledger_schemas import LedgerTime
from bridge.api.problems import ProblemError, problem_responses
from bridge.intake.owner_actions import ActionVerifier, VerifiedAction, action_types
from bridge.intake.owner_messages import Address, PayoutIn, SignedActionIn
from bridge.store import actions as store_actions
from bridge.store.actions import ActionRecord

router = APIRouter(prefix="/v1", tags=["owner actions"])

ActionBody = Annotated[SignedActionIn | PayoutIn, Field(discriminator="type")]
_BODY: Final[TypeAdapter[SignedActionIn | PayoutIn]] = TypeAdapter(ActionBody)
MAX_ACTION_BYTES: Final = 64 * 1024
_BODY_SCHEMA: Final = _BODY.json_schema(ref_template="#/components/schemas/{model}")
REQUEST_BODY_DEFS: Final[dict[str, Any]] = _BODY_SCHEMA.pop("$defs", {})
"""Schemas the request body refers to; ``create_app`` puts them into the OpenAPI components."""


class ActionOut(BaseModel):
    """A relayed action: accepted (held) → submitted (in a transaction) → confirmed, or failed
    with the reason."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    type: str = Field(validation_alias="kind")
    signer: str = Field(
        description="Who signed: the owner, the brand for an acceptance (for a payout, the payee)."
    )
    twin_id: int | None
    nonce: int | None
    deadline: LedgerTime | None = Field(
        description="The signed deadline (its unix seconds are in `message`)."
    )
    message: dict[str, Any]
    digest: str = Field(description="EIP-712 digest of the signed message.")
    status: Literal["accepted", "submitted", "confirmed", "failed"]
    error: str | None = None
    tx_hash: str | None = Field(default=None, description="The relayer's transaction.")
    block_number: int | None = None
    created_at: datetime
    updated_at: datetime


class NonceOut(BaseModel):
    address: str
    on_chain_nonce: int = Field(description="The ledger's current nonce of the account.")
    next_nonce: int = Field(description="The nonce to sign the next action with.")
    held_nonces: list[int] = Field(description="Nonces of actions the bridge holds, not yet mined.")
    chain_time_unix: int = Field(
        description="The latest block's time in unix seconds: signed deadlines and license "
        "windows count on it."
    )


def _verifier(context: AppContext) -> ActionVerifier:
    if context.actions is None:
        raise ProblemError(
            503, "no-chain", "No chain", "this bridge has no chain configured for owner actions"
        )
    return context.actions


@router.get("/owner-actions/types", summary="EIP-712 domain and types of the owner actions")
def types(context: ContextDep) -> dict[str, Any]:
    """The ledger's EIP-712 domain and, per relayed action (the owner's ``OfferLicense``,
    ``RevokeLicense``, ``SetTwinPaused``, ``SetPayees``; the brand's ``AcceptLicense``), its
    primary type and types, ready for ``eth_signTypedData_v4``; the message names its signer
    (``owner`` or ``brand``) and also carries ``nonce`` (see the nonce endpoint) and ``deadline``
    (unix seconds)."""
    verifier = _verifier(context)
    return action_types(verifier.chain_id, verifier.ledger)


@router.get(
    "/accounts/{address}/nonce",
    summary="The nonce to sign an owner action with",
    responses=problem_responses(422, 503),
)
def nonce(
    context: ContextDep,
    address: Annotated[str, Path(pattern=r"^0x[0-9a-fA-F]{40}$")],
) -> NonceOut:
    verifier = _verifier(context)
    account = TypeAdapter(Address).validate_python(address)
    on_chain = verifier.on_chain_nonce(account)
    chain_time = verifier.chain_time()
    with context.store.session() as session:
        held = store_actions.held_nonces(session, account)
    following = [n + 1 for n in held if n >= on_chain]
    return NonceOut(
        address=account,
        on_chain_nonce=on_chain,
        next_nonce=max([on_chain, *following]),
        held_nonces=held,
        chain_time_unix=chain_time,
    )


def _limit(context: AppContext, account: str) -> None:
    if context.action_limiter is not None:
        limit = f"too many owner actions for {account}"
        context.action_limiter.take(int(account, 16), limit=limit)


def verify_and_store(
    context: AppContext, body: SignedActionIn | PayoutIn
) -> tuple[ActionRecord, bool]:
    """The action as stored and whether it is new (a signed action seen before answers as it is
    stored, unless it failed)."""
    verifier = _verifier(context)
    _limit(context, body.signer if isinstance(body, SignedActionIn) else body.payee)
    verified: VerifiedAction
    if isinstance(body, SignedActionIn):
        prepared = verifier.prepare(body)
        with context.store.session() as session:
            known = store_actions.action_by_digest(session, prepared.hex_digest)
            if known is not None and known.status != "failed":
                return known, False  # the same signed action again: its stored state
            held = store_actions.held_nonces(session, body.signer)
        verified = verifier.verify_signed(prepared, held_nonces=held)
    else:
        verified = verifier.verify_payout(body)
    with context.store.session() as session:
        return store_actions.insert_action(session, verified)


@router.post(
    "/owner-actions",
    summary="Relay a signed owner action (or a payout)",
    status_code=202,
    responses={
        200: {"model": ActionOut, "description": "The same signed action again."},
        **problem_responses(400, 401, 403, 404, 409, 413, 415, 422, 429, 503),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _BODY_SCHEMA}},
        }
    },
)
async def relay(request: Request, context: ContextDep) -> Response:
    """Verifies the action off chain (well-formed, deadline ahead, the message names its signer,
    who owns the twin — or, for an acceptance, has that offer waiting — and signed it — ECDSA or
    ERC-1271 —, the next nonce, the ledger would take it), stores it and
    answers 202; the relayer sends it and ``GET /v1/owner-actions/{id}`` follows it. A refused
    action costs no gas and is not stored."""
    body = await read_json_body(request, MAX_ACTION_BYTES)
    parsed = parse_json_body(_BODY, body)
    record, created = await run_in_threadpool(verify_and_store, context, parsed)
    return Response(
        ActionOut.model_validate(record).model_dump_json(),
        status_code=202 if created else 200,
        media_type="application/json",
        headers={"Location": f"/v1/owner-actions/{record.id}"},
    )


@router.get(
    "/owner-actions/{action_id}",
    summary="Status of a relayed owner action",
    responses=problem_responses(404),
)
def status(context: ContextDep, action_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> ActionOut:
    with context.store.session() as session:
        record = store_actions.get_action(session, action_id)
    if record is None:
        raise ProblemError(404, "not-found", "Not found", f"no owner action {action_id}")
    return ActionOut.model_validate(record)
