"""Dependencies of the routes, as ``Annotated`` aliases."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from bridge.api.metrics import Metrics
from bridge.api.problems import ProblemError
from bridge.api.ratelimit import RateLimiter
from bridge.chain.views import LicenseView
from bridge.ingest import Ingestor
from bridge.keys import hash_api_key, key_matches
from bridge.owner_actions import ActionVerifier
from bridge.settings import Settings
from bridge.store.repository import BrandRecord, Store, brand_by_key_hash


@dataclass(frozen=True)
class AppContext:
    """What one app holds for its requests."""

    settings: Settings
    store: Store
    chain: LicenseView | None
    ingestor: Ingestor
    limiter: RateLimiter
    metrics: Metrics
    actions: ActionVerifier | None = None
    """Checks relayed owner actions against the chain (None: no chain configured)."""
    action_limiter: RateLimiter | None = None
    """Per-signer token buckets of the owner-action relay."""


async def get_context(request: Request) -> AppContext:
    """The app's context (async: no thread hop for a lookup)."""
    context = request.app.state.context
    assert isinstance(context, AppContext)  # noqa: S101 - set by create_app
    return context


ContextDep = Annotated[AppContext, Depends(get_context)]


def get_session(context: ContextDep) -> Iterator[Session]:
    with context.store.session() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]

_bearer = HTTPBearer(auto_error=False, description="The brand's API key (tb_live_...).")


def _unauthorized() -> ProblemError:
    return ProblemError(
        401,
        "unauthorized",
        "Unauthorized",
        "a valid API key is required: Authorization: Bearer <key>",
        headers={"WWW-Authenticate": "Bearer"},
    )


def get_current_brand(
    context: ContextDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> BrandRecord:
    """The brand whose API key came with the request, within its rate limit.

    Raises:
        ProblemError: 401 for a missing, unknown or wrong key (one answer for all three),
            429 with ``Retry-After`` beyond the brand's rate limit.
    """
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized()
    key_hash = hash_api_key(credentials.credentials)
    with context.store.session() as session:
        found = brand_by_key_hash(session, key_hash)
    if found is None or not key_matches(credentials.credentials, found[1]):
        raise _unauthorized()
    brand = found[0]
    wait = context.limiter.acquire(brand.id)
    if wait is not None:
        retry_after = max(1, math.ceil(wait))
        raise ProblemError(
            429,
            "rate-limited",
            "Too many requests",
            f"rate limit of {context.settings.rate_limit_per_s:g} requests/s "
            f"(burst {context.settings.rate_limit_burst}) exceeded; retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
    return brand


CurrentBrand = Annotated[BrandRecord, Depends(get_current_brand)]
