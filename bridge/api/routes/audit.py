"""The audit over HTTP, for the dashboard's auditor view: the ledger rebuilt from its events alone
(``bridge.audit.core``, no bridge database), its verdict, totals and CSV exports. Public and
rate-limited per client like the read API; one audit runs at a time and each block is audited once.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from bridge.api.deps import ContextDep
from bridge.api.problems import PROBLEM_JSON, ProblemError
from bridge.api.routes.ledger import limit_client
from bridge.audit.cache import (
    AuditBlockError,
    AuditBusyError,
    AuditCache,
    AuditUnavailableError,
    CsvTable,
    csv_table,
    report,
)

router = APIRouter(prefix="/v1/audit", tags=["audit"], dependencies=[Depends(limit_client)])

_PROBLEM: Final[dict[str, Any]] = {"content": {PROBLEM_JSON: {}}}
ToBlock = Annotated[
    int | None,
    Query(ge=0, le=2**63 - 1, description="Audit through this block (default: the latest)."),
]


def _cache(request: Request, context: ContextDep) -> AuditCache:
    cache = getattr(request.app.state, "audit_cache", None)
    if cache is None:
        try:
            cache = AuditCache.of(context.settings)
        except AuditUnavailableError as exc:
            raise _unavailable(exc) from exc
        request.app.state.audit_cache = cache
    assert isinstance(cache, AuditCache)  # noqa: S101 - set just above
    return cache


def _unavailable(exc: Exception) -> ProblemError:
    return ProblemError(503, "audit-unavailable", "Audit unavailable", str(exc))


def _busy(exc: AuditBusyError) -> ProblemError:
    return ProblemError(503, "audit-busy", "Audit busy", str(exc), headers={"Retry-After": "2"})


def _bad_block(exc: AuditBlockError) -> ProblemError:
    return ProblemError(422, "block-not-auditable", "Block not auditable", str(exc))


@router.get(
    "",
    summary="The ledger rebuilt from its events, checked against the chain",
    responses={422: _PROBLEM, 429: _PROBLEM, 503: _PROBLEM},
)
def get_audit(request: Request, context: ContextDep, to_block: ToBlock = None) -> JSONResponse:
    """``twin-bridge audit`` of the bridge's ledger through ``to_block``: the verdict (``clean``),
    its ``summary`` (the same figures as ``twin-bridge audit --json``), every discrepancy in words,
    the balance checks that failed, and usages and amounts per twin, brand and month of
    settlement, each with the latest transaction counted. Resumes from a checkpoint in the data
    directory; a block already audited is answered from memory."""
    try:
        result, ran_at = _cache(request, context).audit(to_block)
    except AuditBlockError as exc:
        raise _bad_block(exc) from exc
    except AuditBusyError as exc:
        raise _busy(exc) from exc
    except AuditUnavailableError as exc:
        raise _unavailable(exc) from exc
    return JSONResponse(report(result, audited_at=ran_at))


@router.get(
    "/csv",
    summary="One table of the audit as CSV",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}, 422: _PROBLEM, 429: _PROBLEM, 503: _PROBLEM},
)
def get_audit_csv(
    request: Request, context: ContextDep, table: CsvTable = "usages", to_block: ToBlock = None
) -> Response:
    """The table as ``twin-bridge audit --csv`` writes it (``usages.csv``, ...)."""
    try:
        result, _ = _cache(request, context).audit(to_block)
    except AuditBlockError as exc:
        raise _bad_block(exc) from exc
    except AuditBusyError as exc:
        raise _busy(exc) from exc
    except AuditUnavailableError as exc:
        raise _unavailable(exc) from exc
    filename = f"audit-{result.to_block}-{table}.csv"
    return Response(
        csv_table(result, table),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
