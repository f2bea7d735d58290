"""RFC 9457 problem details: the exception routes raise for an HTTP error of their own, its
application/problem+json rendering and its OpenAPI schema (``bridge.api.handlers`` maps every
other error to one)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson
from fastapi import Request
from fastapi.responses import Response
from pydantic_core import ErrorDetails

PROBLEM_JSON: Final = "application/problem+json"


class ProblemError(Exception):
    """An HTTP error answered as problem details; ``slug`` names the problem type."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


def problem_type(slug: str) -> str:
    return f"urn:twin-bridge:problem:{slug}"


def problem_response(request: Request, problem: ProblemError) -> Response:
    body = {
        "type": problem_type(problem.slug),
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": request.url.path,
        **problem.extra,
    }
    return Response(
        orjson.dumps(body),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=problem.headers,
    )


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route that answers problem details with ``statuses`` (``document``
    gives them the ``Problem`` schema)."""
    return {status: {"content": {PROBLEM_JSON: {}}} for status in statuses}


def _pointer(loc: Sequence[int | str]) -> str:
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in loc)


def validation_problem(errors: Sequence[ErrorDetails], *, skip: int = 0) -> ProblemError:
    """A 422 listing every error with a JSON pointer into the body (``skip`` drops loc prefixes)."""
    items = [
        {"pointer": _pointer(e["loc"][skip:]), "type": e["type"], "detail": e["msg"]}
        for e in errors
    ]
    first = items[0]
    return ProblemError(
        422,
        "validation",
        "Invalid request",
        f"{len(items)} error(s); first at '{first['pointer'] or '/'}': {first['detail']}",
        extra={"errors": items},
    )


PROBLEM_SCHEMA: Final[dict[str, Any]] = {
    "title": "Problem",
    "description": "RFC 9457 problem details; some problems add members (``errors``, "
    "``event_id``, ``reason``).",
    "type": "object",
    "properties": {
        "type": {"type": "string", "description": "urn:twin-bridge:problem:<slug>"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string", "description": "The request path."},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "pointer": {"type": "string"},
                    "type": {"type": "string"},
                    "detail": {"type": "string"},
                },
                "required": ["pointer", "type", "detail"],
            },
        },
    },
    "required": ["type", "title", "status", "detail", "instance"],
}
_PROBLEM_REF: Final = {"$ref": "#/components/schemas/Problem"}


def document(schema: dict[str, Any]) -> None:
    """Makes the OpenAPI ``schema`` say what the handlers answer: every problem response carries
    the ``Problem`` schema, and request validation errors (which FastAPI documents as its own
    ``HTTPValidationError`` JSON) are problem details too."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                fastapi_422 = content.get("application/json", {}).get("schema") == {
                    "$ref": "#/components/schemas/HTTPValidationError"
                }
                if status == "422" and fastapi_422:
                    response["content"] = {PROBLEM_JSON: {"schema": _PROBLEM_REF}}
                elif PROBLEM_JSON in content and not content[PROBLEM_JSON].get("schema"):
                    content[PROBLEM_JSON] = {"schema": _PROBLEM_REF}
    for unused in ("HTTPValidationError", "ValidationError"):
        if unused not in json_refs(schema):
            components.pop(unused, None)


def json_refs(node: Any) -> set[str]:
    """The component names ``node`` refers to with ``$ref``."""
    if isinstance(node, dict):
        found = {str(node["$ref"]).rsplit("/", 1)[-1]} if "$ref" in node else set()
        for value in node.values():
            found |= json_refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(json_refs(v) for v in node)) if node else set()
    return set()
