"""Reading a JSON request body within a size limit, before anything parses it."""

from __future__ import annotations

from fastapi import Request

from bridge.api.problems import ProblemError


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
    too_large = ProblemError(
        413, "body-too-large", "Body too large", f"the body is larger than {limit} bytes"
    )
    declared = request.headers.get("content-length")
    if declared is not None and not (declared.isascii() and declared.isdigit()):
        raise ProblemError(
            400,
            "bad-content-length",
            "Bad Content-Length",
            f"Content-Length must be a number of bytes, not {declared[:40]!r}",
        )
    if declared is not None and int(declared) > limit:
        raise too_large
    content_type = request.headers.get("content-type")
    if content_type is not None and not _is_json(content_type):
        raise ProblemError(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            f"the body must be JSON (application/json), not {content_type[:80]!r}",
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    if declared is not None and size != int(declared):
        raise ProblemError(
            400,
            "bad-content-length",
            "Bad Content-Length",
            f"Content-Length says {int(declared)} bytes, the body has {size}",
        )
    return b"".join(chunks)
