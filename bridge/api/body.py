"""Reading a JSON request body within a size limit, before anything parses it, and parsing it
into its model with the problems a bad body answers."""

from __future__ import annotations

from collections.abc import Collection
from typing import TypeVar

from fastapi import Request
from pydantic import TypeAdapter, ValidationError

from bridge.api.problems import ProblemError, validation_problem

_T = TypeVar("_T")


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


async def read_json_body(request: Request, limit: int) -> bytes:
    """The body of ``request``, at most ``limit`` bytes, read as it streams in.

    A missing ``Content-Type`` is read as JSON; any other than ``application/json`` or
    ``application/*+json`` (CloudEvents) is refused.

    Raises:
        ProblemError: 413 when the declared or the streamed body exceeds ``limit``; 400 for a
            ``Content-Length`` that is not a number or disagrees with the body; 415 for a
            content type other than JSON.
    """
    declared = _declared_length(request, limit)
    content_type = request.headers.get("content-type")
    if content_type is not None and not _is_json(content_type):
        raise ProblemError(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            f"the body must be JSON (application/json), not {content_type[:80]!r}",
        )
    body = await _stream(request, limit)
    if declared is not None and len(body) != declared:
        raise ProblemError(
            400,
            "bad-content-length",
            "Bad Content-Length",
            f"Content-Length says {declared} bytes, the body has {len(body)}",
        )
    return body


def _too_large(limit: int) -> ProblemError:
    return ProblemError(
        413, "body-too-large", "Body too large", f"the body is larger than {limit} bytes"
    )


def _declared_length(request: Request, limit: int) -> int | None:
    """The ``Content-Length``, if the request declares one, within ``limit``."""
    declared = request.headers.get("content-length")
    if declared is None:
        return None
    if not (declared.isascii() and declared.isdigit()):
        raise ProblemError(
            400,
            "bad-content-length",
            "Bad Content-Length",
            f"Content-Length must be a number of bytes, not {declared[:40]!r}",
        )
    if int(declared) > limit:
        raise _too_large(limit)
    return int(declared)


async def _stream(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json_body(adapter: TypeAdapter[_T], body: bytes, *, tags: Collection[str] = ()) -> _T:
    """``body`` validated by ``adapter``; ``tags`` are the tags of a union the adapter's errors
    may be located under (their pointers leave them out).

    Raises:
        ProblemError: 400 for a body that is not JSON; 422 listing each error with a JSON pointer.
    """
    try:
        return adapter.validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
    if errors and errors[0]["type"] == "json_invalid":
        raise ProblemError(
            400, "malformed-json", "Malformed JSON", f"the body is not JSON: {errors[0]['msg']}"
        )
    skip = 1 if errors and errors[0]["loc"] and errors[0]["loc"][0] in tags else 0
    raise validation_problem(errors, skip=skip)
