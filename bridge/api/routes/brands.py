"""The directory of brands registered with this bridge (name and on-chain address), public so a
model can tell whom it licenses and whose usages it is paid for."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from bridge.api.deps import SessionDep
from bridge.api.problems import problem_responses
from bridge.api.routes.ledger import limit_client
from bridge.api.schemas import BrandOut
from bridge.store.repository import list_brands

router = APIRouter(prefix="/v1", tags=["brands"], dependencies=[Depends(limit_client)])


class BrandListOut(BaseModel):
    items: list[BrandOut]


@router.get(
    "/brands",
    summary="The brands registered with this bridge",
    response_model=BrandListOut,
    responses=problem_responses(429),
)
def brands(session: SessionDep) -> BrandListOut:
    """Each brand's name and on-chain address, by name (no API key needed)."""
    found = sorted(list_brands(session), key=lambda b: b.name)
    return BrandListOut(items=[BrandOut(name=b.name, address=b.address) for b in found])
