"""Dependencies of the routes, as ``Annotated`` aliases."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Final

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from bridge.api.metrics import Metrics
from bridge.api.problems import ProblemError
from bridge.api.ratelimit import RateLimiter
from bridge.chain.views import LicenseView
from bridge.intake.api_keys import hash_api_key, key_matches
from bridge.intake.grouping import GroupCommit
from bridge.intake.ingest import Ingestor
from bridge.intake.owner_actions import ActionVerifier
from bridge.settings import Settings
from bridge.store.repository import BrandRecord, Store, brand_by_key_hash

_BRAND_CACHE_LIMIT: Final = 10_000


class BrandCache:
    """The brand of an API key hash, kept ``ttl`` seconds so that most requests authenticate
    without the store. A key is issued once for one brand and is neither rotated nor revoked, so
    an answer cannot go stale; were revocation added, it would take hold within ``ttl``. Unknown
    keys are not kept: a brand created a moment ago authenticates at once."""

    def __init__(self, *, ttl: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[str, tuple[float, tuple[BrandRecord, str]]] = {}

    def get(self, key_hash: str) -> tuple[BrandRecord, str] | None:
        entry = self._entries.get(key_hash)
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]

    def put(self, key_hash: str, found: tuple[BrandRecord, str]) -> None:
        if len(self._entries) >= _BRAND_CACHE_LIMIT:
            self._entries.clear()
        self._entries[key_hash] = (self._clock() + self._ttl, found)


@dataclass(frozen=True)
class AppContext:
    """What one app holds for its requests."""

    settings: Settings
    store: Store
    chain: LicenseView | None
    ingestor: Ingestor
    limiter: RateLimiter
    metrics: Metrics
    group_commit: GroupCommit
    """Usage reports of concurrent requests, ingested in one transaction."""
    actions: ActionVerifier | None = None
    """Checks relayed owner actions against the chain (None: no chain configured)."""
    action_limiter: RateLimiter | None = None
    """Per-signer token buckets of the owner-action relay."""
    brands: BrandCache = field(default_factory=BrandCache)
    """Brands of the API keys seen lately (used by the event loop only)."""


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


def _brand_of(store: Store, key_hash: str) -> tuple[BrandRecord, str] | None:
    with store.session() as session:
        return brand_by_key_hash(session, key_hash)


async def get_current_brand(
    context: ContextDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> BrandRecord:
    """The brand whose API key came with the request, within its rate limit.

    Raises:
        ProblemError: 401 for a missing, unknown or wrong key (one answer for all three).
        RateLimitedError: beyond the brand's rate limit.
    """
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized()
    key_hash = hash_api_key(credentials.credentials)
    found = context.brands.get(key_hash)
    if found is None:
        found = await run_in_threadpool(_brand_of, context.store, key_hash)
        if found is not None:
            context.brands.put(key_hash, found)
    if found is None or not key_matches(credentials.credentials, found[1]):
        raise _unauthorized()
    brand = found[0]
    settings = context.settings
    limit = (
        f"rate limit of {settings.rate_limit_per_s:g} requests/s "
        f"(burst {settings.rate_limit_burst}) exceeded"
    )
    context.limiter.take(brand.id, limit=limit)
    return brand


CurrentBrand = Annotated[BrandRecord, Depends(get_current_brand)]
