"""The directory of brands registered with this bridge (name and on-chain address), public so a
model can tell whom it licenses and whose usages it is paid for."""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from bridge.api.deps import SessionDep
from bridge.api.problems import PROBLEM_JSON
from bridge.api.routes.ledger import limit_client
from bridge.api.schemas import BrandOut
from bridge.store.repository import list_brands

router = APIRouter(prefix="/v1", tags=["brands"], dependencies=[Depends(limit_client)])

_PROBLEM: Final[dict[str, Any]] = {"content": {PROBLEM_JSON: {}}}


class BrandListOut(BaseModel):
    items: list[BrandOut]


@router.get(
    "/brands",
    summary="The brands registered with this bridge",
    response_model=BrandListOut,
    responses={429: _PROBLEM},
)
def brands(session: SessionDep) -> BrandListOut:
    """Each brand's name and on-chain address, by name (no API key needed)."""
    found = sorted(list_brands(session), key=lambda b: b.name)
    return BrandListOut(items=[BrandOut(name=b.name, address=b.address) for b in found])
