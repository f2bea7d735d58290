"""Usage events: report them (one or a batch) and read their status."""

from __future__ import annotations

from typing import Annotated, Any, Final

import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from bridge.api.body import parse_json_body, read_json_body
from bridge.api.deps import ContextDep, CurrentBrand, SessionDep
from bridge.api.problems import ProblemError, problem_responses
from bridge.api.schemas import (
    EVENT_ID_PATTERN,
    USAGE_BODY,
    BatchResultOut,
    BrandOut,
    CloudEventIn,
    UsageBatchIn,
    UsageEventIn,
    UsageEventOut,
    UsageEventPageOut,
    UsageResultOut,
)
from bridge.domain.codec import Outcome
from bridge.domain.usage import Refusal, UsageType
from bridge.intake.grouping import ARRIVAL_SCOPE_KEY
from bridge.intake.ingest import ItemResult, ItemStatus, Submission, UsageReport
from bridge.store.models import UsageStatus
from bridge.store.repository import StoredUsage, get_usage, recent_usages

router = APIRouter(prefix="/v1/usage-events", tags=["usage"])
brand_router = APIRouter(prefix="/v1", tags=["usage"])

_TAGS: Final = frozenset({"event", "batch", "cloudevent", "cloudevent_batch"})
_BODY_SCHEMA: Final = USAGE_BODY.json_schema(ref_template="#/components/schemas/{model}")
REQUEST_BODY_DEFS: Final[dict[str, Any]] = _BODY_SCHEMA.pop("$defs", {})
"""Schemas the request body refers to; ``create_app`` puts them into the OpenAPI components."""


def _parse(body: bytes, max_events: int) -> tuple[list[UsageReport], bool]:
    """The reports in the body and whether it was a batch."""
    parsed = parse_json_body(USAGE_BODY, body, tags=_TAGS)
    match parsed:
        case UsageEventIn():
            return [_report(parsed)], False
        case CloudEventIn():
            return [_report(parsed)], False
        case UsageBatchIn(events=events):
            reports = [_report(e) for e in events]
        case list():
            reports = [_report(e) for e in parsed]
        case _:  # pragma: no cover - the adapter returns only the shapes above
            raise TypeError(type(parsed))
    if len(reports) > max_events:
        raise ProblemError(
            422,
            "batch-too-large",
            "Batch too large",
            f"{len(reports)} events in one batch; at most {max_events}",
        )
    return reports, True


def _report(event: UsageEventIn | CloudEventIn) -> UsageReport:
    if isinstance(event, CloudEventIn):
        data = event.data
        return UsageReport(
            event_id=event.id,
            twin_id=data.twin_id,
            usage_type=data.usage_type,
            quantity=data.quantity,
            used_at=event.time,
            campaign_ref=data.campaign_ref,
            asset_ref=data.asset_ref,
        )
    return UsageReport(
        event_id=event.event_id,
        twin_id=event.twin_id,
        usage_type=event.usage_type,
        quantity=event.quantity,
        used_at=event.used_at,
        campaign_ref=event.campaign_ref,
        asset_ref=event.asset_ref,
    )


def _out(result: ItemResult) -> dict[str, Any]:
    """The result as ``UsageResultOut`` dumps it without its nulls, built directly: a batch
    answers a thousand of them."""
    out: dict[str, Any] = {"event_id": result.event_id, "status": result.status.value}
    if result.usage_id is not None:
        out["usage_id"] = result.usage_id
    if result.reason is not None:
        out["reason"] = result.reason.value
    if result.detail is not None:
        out["detail"] = result.detail
    return out


def _answer(body: Any, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def _json(model: BaseModel, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(
        model.model_dump_json(exclude_none=True),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _single(result: ItemResult) -> Response:
    """The answer to a single event: 202 accepted, 200 duplicate, else the refusal's problem."""
    location = {"Location": f"{router.prefix}/{result.event_id}"}
    match result.status:
        case ItemStatus.ACCEPTED:
            return _answer(_out(result), 202, location)
        case ItemStatus.DUPLICATE:
            return _answer(_out(result), 200, location)
    if result.reason is Refusal.EVENT_ID_CONFLICT:
        raise ProblemError(
            409,
            "event-id-conflict",
            "Event id conflict",
            result.detail or "",
            extra={"event_id": result.event_id, "reason": result.reason.value},
        )
    raise ProblemError(
        422,
        "usage-refused",
        "Usage refused",
        result.detail or "",
        extra={"event_id": result.event_id, "reason": result.reason and result.reason.value},
    )


@router.post(
    "",
    summary="Report usage events",
    description=(
        'One usage event, `{"events": [...]}` with up to 1,000, a CloudEvent (type '
        "`dev.twinbridge.usage.v1`) or an array of CloudEvents. Idempotent per event id, forever. "
        "A single event answers 202 (accepted), 200 (duplicate: the original result), "
        "409 (same id, different body) or 422 (refused, with `reason`); a batch answers 200 "
        "with one result per event, in order."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _BODY_SCHEMA}},
        }
    },
    response_model=UsageResultOut | BatchResultOut,
    status_code=202,
    responses={
        200: {"description": "Duplicate event, or the answers of a batch."},
        **problem_responses(400, 401, 409, 413, 415, 422, 429, 503),
    },
)
async def post_usage_events(request: Request, brand: CurrentBrand, context: ContextDep) -> Response:
    body = await read_json_body(request, context.settings.max_body_bytes)
    reports, is_batch = _parse(body, context.settings.max_batch_events)

    arrival = request.scope.get(ARRIVAL_SCOPE_KEY)
    results = await context.group_commit.submit(Submission(brand, reports), arrival=arrival)
    context.metrics.count(results)
    if is_batch:
        return _answer({"results": [_out(r) for r in results]}, 200)
    return _single(results[0])


def _status_out(usage: StoredUsage) -> UsageEventOut:
    code = usage.reason_code if usage.status is UsageStatus.REJECTED else None
    return UsageEventOut(
        event_id=usage.event_id,
        usage_id=usage.usage_id,
        status=usage.status.value,
        twin_id=usage.twin_id,
        usage_type=UsageType(usage.usage_type).api_name,
        quantity=usage.quantity,
        used_at=usage.used_at,
        campaign_ref=usage.campaign_ref,
        asset_ref=usage.asset_ref,
        received_at=usage.created_at,
        tx_hash=usage.tx_hash,
        block_number=usage.block_number,
        log_index=usage.log_index,
        amount=None if usage.amount is None else str(usage.amount),
        reason_code=code,
        reason=None if code is None else Outcome(code).description,
        error=usage.last_error if usage.status is UsageStatus.HELD else None,
    )


@router.get(
    "/{event_id}",
    summary="Status of a usage event",
    response_model=UsageEventOut,
    responses=problem_responses(401, 404, 429),
)
def get_usage_event(
    event_id: Annotated[str, Path(pattern=EVENT_ID_PATTERN)],
    brand: CurrentBrand,
    session: SessionDep,
) -> Response:
    usage = get_usage(session, brand_id=brand.id, event_id=event_id)
    if usage is None:
        raise ProblemError(
            404, "not-found", "Not found", f"no usage event {event_id!r} for this brand"
        )
    return _json(_status_out(usage), 200)


@router.get(
    "",
    summary="The brand's usage events, newest first",
    response_model=UsageEventPageOut,
    responses=problem_responses(401, 422, 429),
)
def list_usage_events(
    brand: CurrentBrand,
    session: SessionDep,
    cursor: Annotated[
        int | None,
        Query(ge=1, le=2**63 - 1, description="Continue below this usage id; take it from `next`."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Events per page.")] = 50,
) -> Response:
    """Each event as ``GET /v1/usage-events/{event_id}`` answers it, newest first; follow ``next``
    until it is null."""
    usages, more = recent_usages(session, brand_id=brand.id, before=cursor, limit=limit)
    following = (
        f"{router.prefix}?limit={limit}&cursor={usages[-1].usage_id}" if more and usages else None
    )
    items = [_status_out(u).model_dump(mode="json", exclude_none=True) for u in usages]
    return JSONResponse({"items": items, "next": following})


@brand_router.get(
    "/brand",
    summary="The brand of the API key",
    response_model=BrandOut,
    responses=problem_responses(401, 429),
)
def get_brand(brand: CurrentBrand) -> BrandOut:
    """Its name and on-chain address (its escrow and debt: ``GET /v1/brands/{address}/account``)."""
    return BrandOut(name=brand.name, address=brand.address)
