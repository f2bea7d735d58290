"""Every error the API answers, mapped to its problem details in one table (``PROBLEMS``).

Routes raise and the handlers answer: Starlette looks a handler up along the exception's class
hierarchy, so each entry serves its class and the subclasses that have none of their own.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic_core import ErrorDetails
from starlette.exceptions import HTTPException as StarletteHTTPException

from bridge.api.problems import ProblemError, problem_response, validation_problem
from bridge.api.ratelimit import RateLimitedError
from bridge.audit.cache import AuditBlockError, AuditBusyError, AuditUnavailableError
from bridge.errors import ChainUnavailableError
from bridge.intake.owner_actions import ActionChainError
from bridge.intake.owner_messages import ActionRefusedError

_log = logging.getLogger(__name__)

_HTTP_PROBLEMS: Final = {
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
}


def _validation(exc: RequestValidationError) -> ProblemError:
    errors: list[ErrorDetails] = [
        {"type": e["type"], "loc": tuple(e["loc"]), "msg": e["msg"], "input": None}
        for e in exc.errors()
    ]
    return validation_problem(errors)


def _http(exc: StarletteHTTPException) -> ProblemError:
    slug, title = _HTTP_PROBLEMS.get(exc.status_code, ("http", "HTTP error"))
    return ProblemError(exc.status_code, slug, title, str(exc.detail), headers=exc.headers)


def _chain_unavailable(exc: ChainUnavailableError) -> ProblemError:
    _log.warning("license check failed: %s", exc)
    return ProblemError(
        503,
        "chain-unavailable",
        "Chain unavailable",
        "the license check could not reach the chain; retry later",
        headers={"Retry-After": "5"},
    )


def _action_chain(exc: ActionChainError) -> ProblemError:
    return ProblemError(503, "chain-unavailable", "Chain unavailable", f"the chain: {exc}")


def _action_refused(exc: ActionRefusedError) -> ProblemError:
    return ProblemError(exc.status, exc.code.replace("_", "-"), "Owner action refused", exc.detail)


def _rate_limited(exc: RateLimitedError) -> ProblemError:
    retry_after = {"Retry-After": str(exc.retry_after)}
    return ProblemError(429, "rate-limited", "Too many requests", str(exc), headers=retry_after)


def _audit_unavailable(exc: AuditUnavailableError) -> ProblemError:
    return ProblemError(503, "audit-unavailable", "Audit unavailable", str(exc))


def _audit_busy(exc: AuditBusyError) -> ProblemError:
    return ProblemError(503, "audit-busy", "Audit busy", str(exc), headers={"Retry-After": "2"})


def _audit_block(exc: AuditBlockError) -> ProblemError:
    return ProblemError(422, "block-not-auditable", "Block not auditable", str(exc))


def _own(exc: ProblemError) -> ProblemError:
    return exc


PROBLEMS: Final[Mapping[type[Exception], Callable[[Any], ProblemError]]] = {
    ProblemError: _own,
    RequestValidationError: _validation,  # FastAPI's: a 422 pointing at each error
    StarletteHTTPException: _http,  # Starlette's 404 and 405
    ChainUnavailableError: _chain_unavailable,  # the license check of a usage report
    ActionChainError: _action_chain,  # a check of an owner action
    ActionRefusedError: _action_refused,
    RateLimitedError: _rate_limited,
    AuditUnavailableError: _audit_unavailable,
    AuditBusyError: _audit_busy,
    AuditBlockError: _audit_block,
}
"""Each error class and the problem it is answered with."""


def _handler(to_problem: Callable[[Any], ProblemError]) -> Callable[..., Awaitable[Response]]:
    async def handle(request: Request, exc: Exception) -> Response:
        return problem_response(request, to_problem(exc))

    return handle


def install(app: FastAPI) -> None:
    """Registers a handler per entry of ``PROBLEMS``."""
    for error, to_problem in PROBLEMS.items():
        app.add_exception_handler(error, _handler(to_problem))
