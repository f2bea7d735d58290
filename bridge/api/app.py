"""``create_app(settings)``: the brand API."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.concurrency import run_in_threadpool

import bridge
from bridge.api import problems, web
from bridge.api.deps import AppContext
from bridge.api.metrics import LatencyMiddleware, Metrics
from bridge.api.ratelimit import RateLimiter
from bridge.api.routes import actions as action_routes
from bridge.api.routes import audit, brands, health, ledger, usage
from bridge.chain.client import Web3ChainClient
from bridge.chain.views import LicenseView, Web3LicenseView
from bridge.intake.grouping import ArrivalMiddleware, GroupCommit
from bridge.intake.ingest import Ingestor, ItemResult, Submission
from bridge.intake.owner_actions import ActionVerifier
from bridge.settings import Settings
from bridge.store import migrate
from bridge.store.repository import Store


def _ingest_many(
    store: Store, ingestor: Ingestor, submissions: Sequence[Submission]
) -> list[list[ItemResult]]:
    with store.session() as session:
        return ingestor.ingest_many(session, submissions)


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
    if chain is None and settings.rpc_url is not None and settings.ledger_address is not None:
        chain = Web3LicenseView.connect(
            settings.rpc_url, settings.ledger_address, ttl=settings.license_cache_ttl_s
        )
    if chain is None and ingestor is None:
        raise ValueError(
            "the API checks licenses on chain: set TWIN_BRIDGE_RPC_URL and "
            "TWIN_BRIDGE_LEDGER_ADDRESS (or pass a LicenseView)"
        )
    owns_store = store is None
    store = store or Store.from_url(settings.resolved_database_url)
    if ingestor is None:
        assert chain is not None  # noqa: S101 - checked above
        ingestor = Ingestor(settings=settings, licenses=chain)
    if actions is None and settings.rpc_urls and settings.ledger_address is not None:
        actions = ActionVerifier(Web3ChainClient(settings.rpc_urls), settings.ledger_address)
    metrics = Metrics(store)
    context = AppContext(
        settings=settings,
        store=store,
        chain=chain,
        ingestor=ingestor,
        actions=actions,
        action_limiter=RateLimiter(rate=settings.action_rate_limit_per_s, burst=10),
        limiter=RateLimiter(rate=settings.rate_limit_per_s, burst=settings.rate_limit_burst),
        metrics=metrics,
        group_commit=GroupCommit(
            functools.partial(_ingest_many, store, ingestor),
            max_events=settings.group_commit_max_events,
            on_group=metrics.group_requests.observe,
        ),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(migrate.upgrade, context.store.engine)
        try:
            yield
        finally:
            if owns_store:
                context.store.close()

    app = FastAPI(
        title="Twin Bridge",
        version=bridge.__version__,
        description="Brands report each use of a model's digital twin; the bridge settles the "
        "royalty on chain and reports the proof.",
        lifespan=lifespan,
    )
    app.state.context = context
    app.state.read_limiter = RateLimiter(
        rate=settings.rate_limit_per_s, burst=settings.rate_limit_burst
    )
    problems.install(app)
    app.include_router(usage.router)
    app.include_router(action_routes.router)
    app.include_router(ledger.router)
    app.include_router(health.router)
    app.include_router(usage.brand_router)
    app.include_router(audit.router)
    app.include_router(brands.router)
    web.install(app)
    app.add_middleware(
        ArrivalMiddleware, group_commit=context.group_commit, path=usage.router.prefix
    )
    app.add_middleware(LatencyMiddleware, metrics=context.metrics)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(usage.REQUEST_BODY_DEFS)
            components.update(action_routes.REQUEST_BODY_DEFS)
            problems.document(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
