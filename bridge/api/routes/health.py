"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from bridge.api.deps import ContextDep
from bridge.api.schemas import HealthOut, ReadyOut
from bridge.errors import ChainUnavailableError

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut)
def healthz() -> HealthOut:
    """The process is up."""
    return HealthOut(status="ok")


@router.get("/readyz", response_model=ReadyOut, responses={503: {"model": ReadyOut}})
def readyz(context: ContextDep) -> Response:
    """The store answers, and the chain (RPC and ledger contract) when one is configured."""
    checks: dict[str, str] = {}
    try:
        context.store.ping()
        checks["store"] = "ok"
    except SQLAlchemyError as exc:
        checks["store"] = f"unavailable: {type(exc).__name__}"
    if context.chain is not None:
        try:
            context.chain.ping()
            checks["chain"] = "ok"
        except ChainUnavailableError as exc:
            checks["chain"] = f"unavailable: {exc.reason}"
    ready = all(v == "ok" for v in checks.values())
    body = ReadyOut(status="ready" if ready else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response)
def metrics(context: ContextDep) -> Response:
    """Prometheus metrics: of every worker process of the server, and the settlement's."""
    return Response(generate_latest(context.metrics.exposed), media_type=CONTENT_TYPE_LATEST)
