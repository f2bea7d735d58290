"""``create_app(settings)``: the brand API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Final

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.concurrency import run_in_threadpool

import bridge
from bridge.api import docs, handlers, problems, web
from bridge.api.deps import AppContext
from bridge.api.metrics import LatencyMiddleware, Metrics
from bridge.api.ratelimit import RateLimiter
from bridge.api.routes import actions as action_routes
from bridge.api.routes import audit, brands, escrow, health, ledger, offers, token, usage
from bridge.chain.client import Web3ChainClient
from bridge.chain.views import LicenseView, Web3LicenseView
from bridge.intake.grouping import ArrivalMiddleware, GroupCommit, IngestInStore
from bridge.intake.ingest import Ingestor
from bridge.intake.owner_actions import ActionVerifier
from bridge.settings import Settings
from bridge.store import migrate
from bridge.store.repository import Store

ROUTERS: Final[tuple[APIRouter, ...]] = (
    usage.router,
    action_routes.router,
    ledger.router,
    health.router,
    usage.brand_router,
    audit.router,
    brands.router,
    offers.router,
    escrow.router,
    token.router,
)
DESCRIPTION: Final = (
    "Brands report each use of a model's digital twin; the bridge settles the royalty on chain "
    "and reports the proof."
)


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    chain: LicenseView | None = None,
    ingestor: Ingestor | None = None,
    actions: ActionVerifier | None = None,
) -> FastAPI:
    """The API over ``store`` (default: ``settings``' database, migrated at startup) checking
    licenses with ``chain`` (default: the ledger at ``settings.rpc_url``).

    Raises:
        ValueError: when no license view is given and no chain is configured.
    """
    if chain is None:
        chain = _license_view(settings)
    if ingestor is None:
        ingestor = _ingestor(settings, chain)
    context = _context(
        settings,
        store=store or Store.from_url(settings.resolved_database_url),
        chain=chain,
        ingestor=ingestor,
        actions=_action_verifier(settings) if actions is None else actions,
    )
    app = FastAPI(
        title="Twin Bridge",
        version=bridge.__version__,
        description=DESCRIPTION,
        docs_url=None,  # bridge.api.docs serves /docs and /redoc with local assets
        redoc_url=None,
        lifespan=_lifespan(context, owns_store=store is None),
    )
    app.state.context = context
    app.state.read_limiter = RateLimiter(
        rate=settings.rate_limit_per_s, burst=settings.rate_limit_burst
    )
    _assemble(app, context)
    return app


def _ingestor(settings: Settings, chain: LicenseView | None) -> Ingestor:
    if chain is None:
        raise ValueError(
            "the API checks licenses on chain: set TWIN_BRIDGE_RPC_URL and "
            "TWIN_BRIDGE_LEDGER_ADDRESS (or pass a LicenseView)"
        )
    return Ingestor(settings=settings, licenses=chain)


def _license_view(settings: Settings) -> LicenseView | None:
    """The ledger's licenses at ``settings.rpc_url``, if a chain is configured."""
    if settings.rpc_url is None or settings.ledger_address is None:
        return None
    return Web3LicenseView.connect(
        settings.rpc_url, settings.ledger_address, ttl=settings.license_cache_ttl_s
    )


def _action_verifier(settings: Settings) -> ActionVerifier | None:
    """The owner-action checks against the configured chain (None: no chain)."""
    if not settings.rpc_urls or settings.ledger_address is None:
        return None
    return ActionVerifier(Web3ChainClient(settings.rpc_urls), settings.ledger_address)


def _context(
    settings: Settings,
    *,
    store: Store,
    chain: LicenseView | None,
    ingestor: Ingestor,
    actions: ActionVerifier | None,
) -> AppContext:
    """What the requests share: the store, the checks, the rate limits, the metrics and the group
    commit that hands the usage reports of concurrent requests to the ingestor together."""
    metrics = Metrics(store)
    group_commit = GroupCommit(
        IngestInStore(store, ingestor),
        max_events=settings.group_commit_max_events,
        on_group=metrics.group_requests.observe,
    )
    return AppContext(
        settings=settings,
        store=store,
        chain=chain,
        ingestor=ingestor,
        actions=actions,
        action_limiter=RateLimiter(rate=settings.action_rate_limit_per_s, burst=10),
        limiter=RateLimiter(rate=settings.rate_limit_per_s, burst=settings.rate_limit_burst),
        metrics=metrics,
        group_commit=group_commit,
    )


def _lifespan(
    context: AppContext, *, owns_store: bool
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Migrates the store at startup; closes it at shutdown if the app opened it."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(migrate.upgrade, context.store.engine)
        try:
            yield
        finally:
            if owns_store:
                context.store.close()

    return lifespan


def _assemble(app: FastAPI, context: AppContext) -> None:
    """The error handlers, the routes, the web pages, the middleware and the OpenAPI schema."""
    handlers.install(app)
    for router in ROUTERS:
        app.include_router(router)
    web.install(app)
    docs.install(app)
    app.add_middleware(
        ArrivalMiddleware, group_commit=context.group_commit, path=usage.router.prefix
    )
    app.add_middleware(LatencyMiddleware, metrics=context.metrics)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with the request bodies' definitions and the problem responses."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(usage.REQUEST_BODY_DEFS)
        components.update(action_routes.REQUEST_BODY_DEFS)
        problems.document(schema)
        app.openapi_schema = schema
    return app.openapi_schema
