"""Usage events: report them (one or a batch) and read their status."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Final

import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from bridge.api.body import parse_json_body, read_json_body
from bridge.api.deps import ContextDep, CurrentBrand, SessionDep
from bridge.api.problems import ProblemError, problem_responses
from bridge.api.schemas import (
    EVENT_ID_PATTERN,
    USAGE_BODY,
    BatchResultOut,
    BrandOut,
    CloudEventIn,
    UsageAnswerOut,
    UsageBatchIn,
    UsageEventIn,
    UsageEventOut,
    UsageEventPageOut,
)
from bridge.domain.codec import Outcome
from bridge.domain.usage import UsageCode, UsageType
from bridge.intake.grouping import ARRIVAL_SCOPE_KEY
from bridge.intake.ingest import ItemResult, ItemStatus, Submission, UsageReport
from bridge.store.models import UsageStatus
from bridge.store.repository import StoredUsage, get_usage, recent_usages
from bridge.store.settlement import chain_time

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


def _time(value: datetime) -> str:
    """RFC 3339 in UTC, as pydantic writes it (``Z``, microseconds only when there are some)."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def usage_state(usage: StoredUsage, chain_time: datetime | None = None) -> dict[str, Any]:
    """The usage as ``UsageEventOut`` dumps it without its nulls, built directly (a batch answers
    a thousand); ``chain_time``, when the usage is accepted and used after it, adds ``waiting``."""
    out: dict[str, Any] = {
        "event_id": usage.event_id,
        "usage_id": usage.usage_id,
        "status": usage.status.value,
        "twin_id": usage.twin_id,
        "usage_type": UsageType(usage.usage_type).api_name,
        "quantity": usage.quantity,
        "used_at": _time(usage.used_at),
    }
    if usage.campaign_ref is not None:
        out["campaign_ref"] = usage.campaign_ref
    if usage.asset_ref is not None:
        out["asset_ref"] = usage.asset_ref
    out["received_at"] = _time(usage.created_at)
    match usage.status:
        case UsageStatus.SETTLED | UsageStatus.REJECTED:
            outcome = Outcome(usage.reason_code or 0)
            out["code"] = UsageCode.of_outcome(outcome).value
            out["sentence"] = outcome.description
            out["outcome_code"] = int(outcome)
            out["tx_hash"] = usage.tx_hash
            out["block_number"] = usage.block_number
            out["log_index"] = usage.log_index
            for name in ("amount", "paid_from_escrow", "recorded_as_debt"):
                value = getattr(usage, name)
                if value is not None:
                    out[name] = str(value)
        case UsageStatus.ACCEPTED if chain_time is not None and usage.used_at > chain_time:
            out["waiting"] = _waiting(usage.used_at, chain_time)
        case UsageStatus.HELD:
            out["error"] = usage.last_error
    return out


def _waiting(used_at: datetime, chain_time: datetime) -> dict[str, str]:
    ahead = math.ceil((used_at - chain_time).total_seconds())
    return {
        "code": UsageCode.WAITING_FOR_CHAIN_CLOCK.value,
        "sentence": f"settles once the chain's clock passes {_time(used_at)} "
        f"(in about {_about(ahead)})",
        "until": _time(used_at),
    }


def _about(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{round(seconds / 60)} min"
    return f"{round(seconds / 3600)} h"


def _out(result: ItemResult) -> dict[str, Any]:
    """One event's answer: its usage as it stands and whether it was replayed, or its refusal."""
    if result.usage is None:
        return {
            "event_id": result.event_id,
            "status": ItemStatus.REFUSED.value,
            "code": result.code and result.code.value,
            "sentence": result.sentence,
        }
    out = usage_state(result.usage, result.chain_time)
    out["replayed"] = result.status is ItemStatus.REPLAYED
    return out


def _answer(body: Any, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def _single(result: ItemResult) -> Response:
    """The answer to a single event: 202 accepted, 200 replayed (the event as it stands), else
    the refusal's problem (409 for another body under a stored id, 422 otherwise)."""
    location = {"Location": f"{router.prefix}/{result.event_id}"}
    match result.status:
        case ItemStatus.ACCEPTED:
            return _answer(_out(result), 202, location)
        case ItemStatus.REPLAYED:
            return _answer(_out(result), 200, location)
    code, sentence = result.code, result.sentence or ""
    extra = {"event_id": result.event_id, "code": code and code.value, "sentence": sentence}
    if code is UsageCode.EVENT_ID_CONFLICT:
        raise ProblemError(409, "event-id-conflict", "Event id conflict", sentence, extra=extra)
    raise ProblemError(422, "usage-refused", "Usage refused", sentence, extra=extra)


@router.post(
    "",
    summary="Report usage events",
    description=(
        'One usage event, `{"events": [...]}` with up to 1,000, a CloudEvent (type '
        "`dev.twinbridge.usage.v1`) or an array of CloudEvents. Idempotent per stored event id, "
        "forever. A single event answers 202 (stored now) or 200 (stored before with the same "
        "body: a replay), each with the event as it stands, as `GET /v1/usage-events/{event_id}` "
        "answers it, and `replayed`; 409 (the id was stored with another body) or 422 (refused, "
        "with `code` and `sentence`). A refused event is not stored: its id may be sent again "
        "with a corrected body. A batch answers 200 with one result per event, in order."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _BODY_SCHEMA}},
        }
    },
    response_model=UsageAnswerOut,
    response_description="A single event stored now.",
    status_code=202,
    responses={
        200: {
            "description": "A replayed event, or the answers of a batch.",
            "model": UsageAnswerOut | BatchResultOut,
        },
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
    """The usage as it stands; an accepted one dated after the chain's clock (as the settlement
    worker last read it) says so in ``waiting``."""
    usage = get_usage(session, brand_id=brand.id, event_id=event_id)
    if usage is None:
        raise ProblemError(
            404, "not-found", "Not found", f"no usage event {event_id!r} for this brand"
        )
    return _answer(usage_state(usage, _clock(session, [usage])), 200)


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
    clock = _clock(session, usages)
    return _answer({"items": [usage_state(u, clock) for u in usages], "next": following}, 200)


def _clock(session: Session, usages: list[StoredUsage]) -> datetime | None:
    """The chain's clock, asked of the store only when one of ``usages`` is accepted."""
    if any(u.status is UsageStatus.ACCEPTED for u in usages):
        return chain_time(session)
    return None


@brand_router.get(
    "/brand",
    summary="The brand of the API key",
    response_model=BrandOut,
    responses=problem_responses(401, 429),
)
def get_brand(brand: CurrentBrand) -> BrandOut:
    """Its name and on-chain address (its escrow and debt: ``GET /v1/brands/{address}/account``)."""
    return BrandOut(name=brand.name, address=brand.address)
