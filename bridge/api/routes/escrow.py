"""The brand's escrow on the ledger, for the dashboard's brand view: its escrow, debt and pending
withdrawal read from the chain now, and the brand's own transactions that fund it and take it back
(``deposit`` after an ``approve``, or ``depositWithPermit`` with an EIP-2612 permit the brand signs;
``requestEscrowWithdrawal``; ``withdrawEscrow``), for the brand's wallet to send. Every route needs
the brand's API key and speaks for the brand's own address; the bridge sends nothing."""

from __future__ import annotations

from typing import Annotated, Any

from eth_utils.address import to_checksum_address
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from bridge.api.deps import CurrentBrand
from bridge.api.ledger_schemas import TOKEN_DECIMALS, Address, Amount, Decimals, LedgerTime
from bridge.api.problems import ProblemError, problem_responses
from bridge.api.routes.offers import BrandLedgerDep, TransactionOut, read_chain
from bridge.chain.brand_ledger import (
    BrandLedger,
    deposit_calldata,
    deposit_with_permit_calldata,
    request_withdrawal_calldata,
    withdraw_escrow_calldata,
)
from bridge.chain.escrow import (
    PERMIT_DEADLINE_S,
    EscrowLedger,
    approve_calldata,
    permit_typed_data,
)

router = APIRouter(prefix="/v1", tags=["brand escrow"])

AmountIn = Annotated[
    int,
    Field(
        gt=0,
        lt=2**128,
        description="Token base units (10^decimals per token), a JSON number or decimal string.",
    ),
]


class BrandEscrowOut(BaseModel):
    """The brand's money in the ledger now (``brandAccount``), and the payment token in its
    wallet."""

    brand: Address
    escrow: Amount = Field(description="Unspent escrow: what usages are paid from.")
    debt: Amount = Field(description="Owed to twins, not yet repaid (deposits repay it first).")
    debt_reserve: Amount = Field(description="Deposited towards the debt, not yet paid to twins.")
    pending_withdrawal: Amount = Field(description="Requested escrow withdrawal (0: none).")
    withdrawal_unlocks_at: LedgerTime | None = Field(
        description="From when it may be withdrawn (null: none pending); later by any pause."
    )
    withdrawal_lapses_at: LedgerTime | None = Field(
        description="Until when it may be withdrawn; after it, request again."
    )
    withdrawable: bool = Field(description="Whether withdrawEscrow would pay now.")
    token: Address = Field(description="The payment token.")
    wallet_balance: Amount = Field(description="The payment token held by the brand's address.")
    allowance: Amount = Field(description="What the ledger may take from it (approve).")
    permit: bool = Field(description="Whether deposits may be authorised by an EIP-2612 permit.")
    chain_id: int
    chain_time: LedgerTime = Field(description="The latest block's time: the figures are as of it.")
    decimals: Decimals = TOKEN_DECIMALS


class PermitIn(BaseModel):
    """The brand's signature of the ``Permit`` typed data this endpoint gave."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    deadline: Annotated[int, Field(ge=0, lt=2**256, description="The permit's deadline.")]
    signature: Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{130}$", description="65 bytes.")]


class DepositIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    amount: AmountIn
    permit: PermitIn | None = Field(
        default=None, description="The signed permit (then: the depositWithPermit transaction)."
    )


class WithdrawalRequestIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    amount: AmountIn


class EscrowTransactionsOut(BaseModel):
    """The brand's own transactions to send in order, each once the one before is mined."""

    permit: dict[str, Any] | None = Field(
        default=None,
        description="EIP-2612 Permit typed data to sign instead (eth_signTypedData_v4): post the "
        "signature back for the single depositWithPermit transaction. Null: none.",
    )
    transactions: list[TransactionOut]


def _escrow(ledger: BrandLedger) -> EscrowLedger:
    return EscrowLedger(ledger.chain, ledger.ledger)


def _tx(to: str, data: bytes) -> TransactionOut:
    return TransactionOut(to=to, data="0x" + data.hex())


@router.get(
    "/brand/escrow",
    summary="The brand's escrow, debt and pending withdrawal on the ledger",
    response_model=BrandEscrowOut,
    responses=problem_responses(401, 429, 502, 503),
)
def escrow(brand: CurrentBrand, ledger: BrandLedgerDep) -> BrandEscrowOut:
    """Read from the chain now: the escrow usages are paid from, the debt a deposit repays first,
    a withdrawal waiting for its notice period (it may be withdrawn from its unlock time until it
    lapses), and the payment token in the brand's wallet."""
    address = to_checksum_address(brand.address)
    reader = _escrow(ledger)
    account = read_chain(lambda: reader.account(address))
    token = read_chain(lambda: reader.token_facts(address))
    now = read_chain(reader.chain_time)
    pending = account.pending_withdrawal > 0
    return BrandEscrowOut(
        brand=address,
        escrow=account.escrow,
        debt=account.debt,
        debt_reserve=account.debt_reserve,
        pending_withdrawal=account.pending_withdrawal,
        withdrawal_unlocks_at=account.unlocks_at if pending else None,
        withdrawal_lapses_at=account.lapses_at if pending else None,
        withdrawable=account.withdrawal_refusal(now) is None,
        token=token.address,
        wallet_balance=token.balance,
        allowance=token.allowance,
        permit=token.permit_domain is not None,
        chain_id=read_chain(ledger.chain_id),
        chain_time=now,
    )


@router.post(
    "/brand/escrow/deposit",
    summary="The brand's transactions that deposit into its escrow",
    response_model=EscrowTransactionsOut,
    responses=problem_responses(400, 401, 422, 429, 502, 503),
)
def deposit(body: DepositIn, brand: CurrentBrand, ledger: BrandLedgerDep) -> EscrowTransactionsOut:
    """Without ``permit``: ``approve`` of the amount to the ledger (left out when the allowance
    covers it) then ``deposit``, and, when the token takes EIP-2612 permits, the ``Permit`` typed
    data to sign instead (valid an hour). With the signed ``permit``: the one
    ``depositWithPermit``. A deposit repays the brand's debt first; the rest is escrow."""
    address = to_checksum_address(brand.address)
    if body.permit is not None:
        signature = bytes.fromhex(body.permit.signature[2:])
        data = deposit_with_permit_calldata(
            address, body.amount, deadline=body.permit.deadline, signature=signature
        )
        return EscrowTransactionsOut(transactions=[_tx(ledger.ledger, data)])
    reader = _escrow(ledger)
    token = read_chain(lambda: reader.token_facts(address))
    transactions = [_tx(ledger.ledger, deposit_calldata(address, body.amount))]
    if token.allowance < body.amount:
        transactions.insert(0, _tx(token.address, approve_calldata(ledger.ledger, body.amount)))
    permit = None
    if token.permit_domain is not None:
        nonce = read_chain(lambda: reader.permit_nonce(address))
        deadline = read_chain(reader.chain_time) + PERMIT_DEADLINE_S
        permit = permit_typed_data(
            token.permit_domain,
            owner=address,
            spender=ledger.ledger,
            value=body.amount,
            nonce=nonce,
            deadline=deadline,
        )
    return EscrowTransactionsOut(permit=permit, transactions=transactions)


@router.post(
    "/brand/escrow/withdrawal-request",
    summary="The brand's transaction that requests an escrow withdrawal",
    response_model=EscrowTransactionsOut,
    responses=problem_responses(400, 401, 422, 429, 502, 503),
)
def withdrawal_request(
    body: WithdrawalRequestIn, brand: CurrentBrand, ledger: BrandLedgerDep
) -> EscrowTransactionsOut:
    """``requestEscrowWithdrawal``: the amount (capped at the escrow then) unlocks after the
    ledger's notice period and may be withdrawn until it lapses; it replaces an earlier request."""
    return EscrowTransactionsOut(
        transactions=[_tx(ledger.ledger, request_withdrawal_calldata(body.amount))]
    )


@router.post(
    "/brand/escrow/withdrawal",
    summary="The brand's transaction that withdraws its unlocked escrow withdrawal",
    response_model=EscrowTransactionsOut,
    responses=problem_responses(401, 409, 429, 502, 503),
)
def withdrawal(brand: CurrentBrand, ledger: BrandLedgerDep) -> EscrowTransactionsOut:
    """``withdrawEscrow``, when the brand's request is unlocked and has not lapsed.

    A 409 says why not (no request, locked until a time, lapsed)."""
    address = to_checksum_address(brand.address)
    reader = _escrow(ledger)
    account = read_chain(lambda: reader.account(address))
    refusal = account.withdrawal_refusal(read_chain(reader.chain_time))
    if refusal is not None:
        raise ProblemError(409, "no-withdrawal", "Nothing to withdraw", refusal)
    return EscrowTransactionsOut(transactions=[_tx(ledger.ledger, withdraw_escrow_calldata())])
