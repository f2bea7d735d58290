"""The audit over HTTP, for the dashboard's auditor view: the ledger rebuilt from its events alone
(``bridge.audit``, no bridge database), its verdict, totals and CSV exports. Public and
rate-limited per client like the read API; one audit runs at a time and each block is audited once.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from bridge.api.deps import ContextDep
from bridge.api.problems import problem_responses
from bridge.api.routes.ledger import limit_client
from bridge.audit.cache import AuditCache
from bridge.audit.export import CsvTable, csv_table
from bridge.audit.report import report

router = APIRouter(prefix="/v1/audit", tags=["audit"], dependencies=[Depends(limit_client)])

ToBlock = Annotated[
    int | None,
    Query(ge=0, le=2**63 - 1, description="Audit through this block (default: the latest)."),
]


def _cache(request: Request, context: ContextDep) -> AuditCache:
    cache = getattr(request.app.state, "audit_cache", None)
    if cache is None:
        cache = request.app.state.audit_cache = AuditCache.of(context.settings)
    assert isinstance(cache, AuditCache)  # noqa: S101 - set just above
    return cache


@router.get(
    "",
    summary="The ledger rebuilt from its events, checked against the chain",
    responses=problem_responses(422, 429, 503),
)
def get_audit(request: Request, context: ContextDep, to_block: ToBlock = None) -> JSONResponse:
    """``twin-bridge audit`` of the bridge's ledger through ``to_block``: the verdict (``clean``),
    its ``summary`` (the same figures as ``twin-bridge audit --json``), every discrepancy in words,
    the balance checks that failed, and usages and amounts per twin, brand and month of
    settlement, each with the latest transaction counted. Resumes from a checkpoint in the data
    directory; a block already audited is answered from memory."""
    result, ran_at = _cache(request, context).audit(to_block)
    return JSONResponse(report(result, audited_at=ran_at))


@router.get(
    "/csv",
    summary="One table of the audit as CSV",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}, **problem_responses(422, 429, 503)},
)
def get_audit_csv(
    request: Request, context: ContextDep, table: CsvTable = "usages", to_block: ToBlock = None
) -> Response:
    """The table as ``twin-bridge audit --csv`` writes it (``usages.csv``, ...)."""
    result, _ = _cache(request, context).audit(to_block)
    filename = f"audit-{result.to_block}-{table}.csv"
    return Response(
        csv_table(result, table),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
