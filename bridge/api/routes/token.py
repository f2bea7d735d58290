"""The payment token every amount of the API is in: its address, symbol, name and decimals, read
from the chain once (a token's symbol and decimals do not change) and kept in the app's state, so
that a client (the CLI, the dashboard) shows amounts in the token's own units without a chain of
its own."""

from __future__ import annotations

from typing import Annotated

from eth_abi.exceptions import DecodingError
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from bridge.api.ledger_schemas import Address, Decimals
from bridge.api.problems import ProblemError, problem_responses
from bridge.api.routes.ledger import limit_client
from bridge.api.routes.offers import BrandLedgerDep, read_chain
from bridge.chain.escrow import EscrowLedger

router = APIRouter(prefix="/v1", tags=["token"], dependencies=[Depends(limit_client)])


class TokenOut(BaseModel):
    """The ledger's payment token (``paymentToken()``), as its ERC-20 functions answer."""

    model_config = ConfigDict(frozen=True)

    address: Address
    symbol: str = Field(description="``symbol()``: what amounts are shown in (``mUSD``).")
    name: str = Field(description="``name()``.")
    decimals: Decimals


def get_token(request: Request, ledger: BrandLedgerDep) -> TokenOut:
    """The payment token, read at its first use and then kept in ``app.state.token``.

    Raises:
        ProblemError: 503 without a chain or when no node answers, 502 when the node answers
            with an error or the token answers not as an ERC-20 does.
    """
    token = getattr(request.app.state, "token", None)
    if token is None:
        reader = EscrowLedger(ledger.chain, ledger.ledger)
        try:
            info = read_chain(reader.token_info)
        except DecodingError:
            raise ProblemError(
                502,
                "chain-error",
                "Chain error",
                f"the payment token {reader.token()} answers no symbol(), name() or decimals() "
                "as an ERC-20 does",
            ) from None
        token = TokenOut(
            address=info.address, symbol=info.symbol, name=info.name, decimals=info.decimals
        )
        request.app.state.token = token
    assert isinstance(token, TokenOut)  # noqa: S101 - only this module sets it
    return token


TokenDep = Annotated[TokenOut, Depends(get_token)]


@router.get(
    "/token",
    summary="The payment token amounts are in",
    response_model=TokenOut,
    responses=problem_responses(502, 503),
)
def token(found: TokenDep) -> TokenOut:
    """The ledger's payment token: amounts of this API are in its base units; divide by
    10^decimals for tokens of ``symbol``. Needs no key."""
    return found
