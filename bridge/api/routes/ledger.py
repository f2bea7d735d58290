"""The public read API: twins, licenses, usages, earnings and brand accounts as the indexer mirrored
them from confirmed ledger events. No API key; rate-limited per client IP. Every answer comes from
the store (``bridge.store.ledger_queries``); nothing here asks the chain."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlencode

from eth_utils.address import to_checksum_address
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import AwareDatetime

from bridge.api.deps import ContextDep, SessionDep
from bridge.api.ledger_schemas import (
    BrandAccountOut,
    IndexStatusOut,
    PayeeEarningsOut,
    PayeeEarningsPeriodOut,
    PayeeFlowOut,
    PayoutOut,
    PayoutPageOut,
    SettledUsageOut,
    TwinEarningsOut,
    TwinEarningsPeriodOut,
    TwinOut,
    TwinPageOut,
    TwinShareOut,
    UsagePageOut,
)
from bridge.api.problems import ProblemError, problem_responses, validation_problem
from bridge.api.ratelimit import RateLimiter
from bridge.api.schemas import MAX_TWIN_ID
from bridge.domain.codec import Outcome
from bridge.domain.usage import UsageCode, UsageType
from bridge.store import ledger_queries as queries
from bridge.store.models import SettledUsageRow

ADDRESS_PATTERN: Final = r"^0x[0-9a-fA-F]{40}$"
CURSOR_PATTERN: Final = r"^[0-9]{1,18}-[0-9]{1,9}-[0-9]{1,9}$"
PAYOUT_CURSOR_PATTERN: Final = r"^[0-9]{1,18}-[0-9]{1,9}$"
TX_HASH_PATTERN: Final = r"^0x[0-9a-fA-F]{64}$"
MAX_PAGE: Final = 500


def now() -> datetime:
    """The request time (a dependency, so tests can fix it)."""
    return datetime.now(UTC)


def _client_key(request: Request) -> int:
    host = request.client.host if request.client is not None else ""
    try:
        return int.from_bytes(ipaddress.ip_address(host).packed, "big")
    except ValueError:
        return int.from_bytes(hashlib.sha256(host.encode()).digest()[:8], "big")


def limit_client(request: Request, context: ContextDep) -> None:
    """One token of the client IP's bucket (the brand API's rate and burst, per IP).

    Raises:
        RateLimitedError: beyond it.
    """
    limiter = request.app.state.read_limiter
    assert isinstance(limiter, RateLimiter)  # noqa: S101 - set by create_app
    settings = context.settings
    limit = (
        f"rate limit of {settings.rate_limit_per_s:g} requests/s per client "
        f"(burst {settings.rate_limit_burst}) exceeded"
    )
    limiter.take(_client_key(request), limit=limit)


router = APIRouter(prefix="/v1", tags=["ledger (read)"], dependencies=[Depends(limit_client)])

NowDep = Annotated[datetime, Depends(now)]
TwinIdPath = Annotated[int, Path(ge=1, le=MAX_TWIN_ID, description="The twin's token id.")]
AddressPath = Annotated[str, Path(pattern=ADDRESS_PATTERN, description="0x address, any case.")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Items per page.")]
PeriodQuery = Annotated[
    Literal["day", "month"], Query(description="Bucket by UTC day or month of the block time.")
]
FromQuery = Annotated[
    AwareDatetime | None,
    Query(alias="from", description="Only events at or after this time (RFC 3339)."),
]
ToQuery = Annotated[
    AwareDatetime | None, Query(description="Only events before this time (RFC 3339).")
]


def _invalid(name: str, message: str) -> ProblemError:
    return validation_problem(
        [{"type": "value_error", "loc": ("query", name), "msg": message, "input": None}]
    )


def _range(
    start: datetime | None, end: datetime | None, names: Sequence[str]
) -> tuple[datetime | None, datetime | None]:
    """``[start, end)`` in UTC.

    Raises:
        ProblemError: 422 when a time has no UTC equivalent or the range is empty.
    """
    bounds: list[datetime | None] = []
    for name, value in zip(names, (start, end), strict=True):
        if value is None:
            bounds.append(None)
            continue
        try:
            bounds.append(value.astimezone(UTC))
        except OverflowError:
            raise _invalid(name, f"{value.isoformat()} is out of range in UTC") from None
    if bounds[0] is not None and bounds[1] is not None and bounds[0] >= bounds[1]:
        raise _invalid(names[1], f"'{names[1]}' must be after '{names[0]}'")
    return bounds[0], bounds[1]


def _not_found(detail: str) -> ProblemError:
    return ProblemError(404, "not-found", "Not found", detail)


def _next_link(request: Request, **params: str) -> str:
    query = dict(request.query_params)
    query.update(params)
    return f"{request.url.path}?{urlencode(query)}"


def _address(value: str) -> str:
    return to_checksum_address(value)


# ---------------------------------------------------------------- twins


@router.get(
    "/twins",
    summary="Twins, with their owners, pauses, payees and licenses",
    response_model=TwinPageOut,
    responses=problem_responses(422, 429),
)
def list_twins(
    request: Request,
    session: SessionDep,
    at: NowDep,
    owner: Annotated[
        str | None, Query(pattern=ADDRESS_PATTERN, description="Only this owner's twins.")
    ] = None,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_TWIN_ID, description="Twins with a greater id (paging).")
    ] = None,
    limit: Limit = 50,
) -> TwinPageOut:
    """Twins by id. Follow ``next`` for the following page; each twin is as in
    ``GET /v1/twins/{twin_id}``."""
    twins, more = queries.twins_page(
        session,
        owner=None if owner is None else _address(owner),
        after=after,
        limit=limit,
        at=int(at.timestamp()),
    )
    return TwinPageOut(
        items=[TwinOut.model_validate(t) for t in twins],
        next=_next_link(request, after=str(twins[-1].twin_id)) if more else None,
    )


@router.get(
    "/twins/{twin_id}",
    summary="One twin",
    response_model=TwinOut,
    responses=problem_responses(404, 422, 429),
)
def get_twin(twin_id: TwinIdPath, session: SessionDep, at: NowDep) -> TwinOut:
    """Owner, metadata URI, consent hash, pause state and history, payees (the owner receives the
    rest) and every license with its current terms, state at the request time, uses and full
    version history; each figure with the event (transaction, block) it came from."""
    found = queries.twin(session, twin_id, at=int(at.timestamp()))
    if found is None:
        raise _not_found(f"no twin {twin_id} in the index")
    return TwinOut.model_validate(found)


# ---------------------------------------------------------------- earnings


def _flows(flows: dict[str, queries.PayeeFlow]) -> list[PayeeFlowOut]:
    return [PayeeFlowOut.model_validate(flow) for _, flow in sorted(flows.items())]


def _twin_period(row: queries.TwinEarningsRow) -> TwinEarningsPeriodOut:
    return TwinEarningsPeriodOut(
        period=row.period,
        paid=row.paid,
        debt_recorded=row.debt_recorded,
        debt_repaid=row.debt_repaid,
        accrued=row.accrued,
        distributed=row.distributed,
        paid_out=row.paid_out,
        undistributed=row.undistributed,
        unpaid_debt=row.unpaid_debt,
        claimable=row.claimable,
        payees=_flows(row.payees),
    )


@router.get(
    "/twins/{twin_id}/earnings",
    summary="A twin's royalties per day or month",
    response_model=TwinEarningsOut,
    responses=problem_responses(404, 422, 429),
)
def twin_earnings(
    twin_id: TwinIdPath,
    session: SessionDep,
    period: PeriodQuery = "month",
    start: FromQuery = None,
    to: ToQuery = None,
) -> TwinEarningsOut:
    """Per period of the events' block time (UTC), in token base units:

    - **paid**: Σ price x quantity of the twin's Paid usages (``UsagesSettled``): what brands were
      charged, from escrow or as debt;
    - **debt_recorded** / **debt_repaid**: Σ ``DebtRecorded`` / ``DebtRepaid`` amounts of the twin;
    - **accrued** = paid - debt_recorded + debt_repaid: credited to the twin's royalty account;
    - **distributed**: Σ ``RoyaltiesDistributed`` of the twin, also per payee (owner included);
    - **paid_out**: the twin's distributions that left the ledger in the period: a payee's
      claimable balance is pooled over twins and each ``PayeePaid`` pays all of it, so every
      distribution is paid out by its payee's first ``PayeePaid`` after it;
    - balances at the period's end (all events before it): **undistributed** (accrued -
      distributed, the twin's account), **unpaid_debt** (recorded - repaid) and **claimable**
      (distributed - paid_out), also per payee.

    Flows count events in [from, to); ``totals`` sums them and holds the balances at the end.
    """
    start, to = _range(start, to, ("from", "to"))
    if not queries.twin_exists(session, twin_id):
        raise _not_found(f"no twin {twin_id} in the index")
    earnings = queries.twin_earnings(session, twin_id, period=period, start=start, end=to)
    return TwinEarningsOut(
        twin_id=twin_id,
        period=period,
        from_=start,
        to=to,
        periods=[_twin_period(row) for row in earnings.periods],
        totals=_twin_period(earnings.totals),
    )


def _payee_period(row: queries.PayeeEarningsRow) -> PayeeEarningsPeriodOut:
    return PayeeEarningsPeriodOut(
        period=row.period,
        distributed=row.distributed,
        paid_out=row.paid_out,
        claimable=row.claimable,
        twins=[
            TwinShareOut(twin_id=twin_id, distributed=amount)
            for twin_id, amount in sorted(row.twins.items())
        ],
    )


@router.get(
    "/payees/{address}/earnings",
    summary="A payee's or owner's royalties per day or month",
    response_model=PayeeEarningsOut,
    responses=problem_responses(422, 429),
)
def payee_earnings(
    address: AddressPath,
    session: SessionDep,
    period: PeriodQuery = "month",
    start: FromQuery = None,
    to: ToQuery = None,
) -> PayeeEarningsOut:
    """Per period of the events' block time (UTC), in token base units:

    - **distributed**: Σ ``RoyaltiesDistributed`` to the address (as a payee or as the owner
      receiving the remainder), also per twin;
    - **paid_out**: Σ ``PayeePaid`` to the address (its ``withdraw`` or anyone's ``payout``);
    - **claimable**: distributed - paid_out over all events before the period's end, the ledger's
      ``claimable(address)``.

    Flows count events in [from, to); ``totals`` sums them and holds claimable at the end. An
    address that never received anything answers zeros.
    """
    start, to = _range(start, to, ("from", "to"))
    payee = _address(address)
    earnings = queries.payee_earnings(session, payee, period=period, start=start, end=to)
    return PayeeEarningsOut(
        payee=payee,
        period=period,
        from_=start,
        to=to,
        periods=[_payee_period(row) for row in earnings.periods],
        totals=_payee_period(earnings.totals),
    )


@router.get(
    "/payees/{address}/payouts",
    summary="A payee's payouts, newest first",
    response_model=PayoutPageOut,
    responses=problem_responses(422, 429),
)
def payee_payouts(
    request: Request,
    address: AddressPath,
    session: SessionDep,
    tx_hash: Annotated[
        str | None,
        Query(pattern=TX_HASH_PATTERN, description="Only the payouts of this transaction."),
    ] = None,
    cursor: Annotated[
        str | None,
        Query(
            pattern=PAYOUT_CURSOR_PATTERN,
            description="Continue before this key (block-logindex); take it from `next`.",
        ),
    ] = None,
    limit: Limit = 50,
) -> PayoutPageOut:
    """Every ``PayeePaid`` to the address (its ``withdraw`` or anyone's ``payout``, the relay's
    included), each with its amount and event: with ``tx_hash``, what one transaction paid it
    (a relayed ``Payout`` action's, once the indexer has its block)."""
    before = None
    if cursor is not None:
        block, log_index = (int(part) for part in cursor.split("-"))
        before = (block, log_index)
    payouts, last = queries.payee_payouts(
        session, _address(address), tx_hash=tx_hash, before=before, limit=limit
    )
    return PayoutPageOut(
        items=[PayoutOut.model_validate(p) for p in payouts],
        next=None if last is None else _next_link(request, cursor=f"{last[0]}-{last[1]}"),
    )


# ---------------------------------------------------------------- usages


def _code(name: str, value: str, names: dict[str, int], top: int) -> int:
    """A name of ``names`` or a number 0..top."""
    if value.isascii() and value.isdigit() and int(value) <= top:
        return int(value)
    if value in names:
        return names[value]
    raise _invalid(name, f"{value!r} is none of {', '.join(names)} and no number 0..{top}")


_USAGE_TYPES: Final = {t.api_name: int(t) for t in UsageType}
_OUTCOME_CODES: Final = {UsageCode.of_outcome(o).value: int(o) for o in Outcome}
_OUTCOME_WORDS: Final = (
    "paid, rejected (every outcome but paid), "
    + ", ".join(name for name in _OUTCOME_CODES if name != "paid")
    + ", unknown_outcome (codes this bridge does not know) or an outcome number 0-255"
)


def _outcome_filter(value: str | None) -> dict[str, Any]:
    """The ``UsageFilter`` fields of an ``outcome`` parameter (``_OUTCOME_WORDS``)."""
    if value is None:
        return {}
    if value == "rejected":
        return {"rejected": True}
    if value == UsageCode.UNKNOWN_OUTCOME.value:
        return {"unknown_outcome": True}
    if value.isascii() and value.isdigit() and int(value) <= 255:
        return {"outcome": int(value)}
    if value in _OUTCOME_CODES:
        return {"outcome": _OUTCOME_CODES[value]}
    raise _invalid("outcome", f"{value!r} is not an outcome: one of {_OUTCOME_WORDS}")


@router.get(
    "/usages",
    summary="Settled usages, in ledger order",
    response_model=UsagePageOut,
    responses=problem_responses(422, 429),
)
def list_usages(
    request: Request,
    session: SessionDep,
    twin_id: Annotated[int | None, Query(ge=0, le=MAX_TWIN_ID)] = None,
    brand: Annotated[str | None, Query(pattern=ADDRESS_PATTERN)] = None,
    usage_type: Annotated[
        str | None, Query(description="A usage type name (campaign_image, ...) or number 0-255.")
    ] = None,
    outcome: Annotated[str | None, Query(description=f"One of {_OUTCOME_WORDS}.")] = None,
    used_from: Annotated[
        AwareDatetime | None, Query(description="Only usages at or after this time of use.")
    ] = None,
    used_to: Annotated[
        AwareDatetime | None, Query(description="Only usages before this time of use.")
    ] = None,
    cursor: Annotated[
        str | None,
        Query(
            pattern=CURSOR_PATTERN,
            description="Continue after this key (block-logindex-position); take it from `next`.",
        ),
    ] = None,
    limit: Limit = 100,
) -> UsagePageOut:
    """Every usage of every ``UsagesSettled`` event, paid or rejected, ordered by block, log index
    and position in the event (a stable order: pages never repeat or skip a usage, even while the
    indexer adds blocks). Follow ``next`` until it is null."""
    used_from, used_to = _range(used_from, used_to, ("used_from", "used_to"))
    where = queries.UsageFilter(
        twin_id=twin_id,
        brand=None if brand is None else _address(brand),
        usage_type=None
        if usage_type is None
        else _code("usage_type", usage_type, _USAGE_TYPES, 255),
        **_outcome_filter(outcome),
        used_from=used_from,
        used_to=used_to,
    )
    rows, last = queries.usages_page(session, where, after=_after(cursor), limit=limit)
    return UsagePageOut(
        items=[_settled_usage(row) for row in rows],
        next=None if last is None else _next_link(request, cursor="-".join(map(str, last))),
    )


def _after(cursor: str | None) -> queries.UsageKey | None:
    """The key (block, log index, position) a ``cursor`` continues after."""
    if cursor is None:
        return None
    block, log_index, position = (int(part) for part in cursor.split("-"))
    return block, log_index, position


def _settled_usage(row: SettledUsageRow) -> SettledUsageOut:
    outcome = Outcome(row.outcome)
    return SettledUsageOut(
        usage_id=row.usage_id,
        twin_id=row.twin_id,
        brand=row.brand,
        usage_type=queries.usage_type_name(row.usage_type),
        usage_type_code=row.usage_type,
        quantity=row.quantity,
        used_at=row.used_at,
        code=UsageCode.of_outcome(outcome),
        sentence=outcome.description,
        outcome_code=row.outcome,
        amount=row.amount,
        paid_from_escrow=row.paid_from_escrow,
        recorded_as_debt=row.recorded_as_debt,
        license_version=row.license_version,
        batch_digest=row.batch_digest,
        attester=row.attester,
        tx_hash=row.tx_hash,
        block_number=row.block_number,
        log_index=row.log_index,
        position=row.position,
        settled_at=row.block_time,
    )


# ---------------------------------------------------------------- brands and the index


@router.get(
    "/brands/{address}/account",
    summary="A brand's escrow, debt and their history",
    response_model=BrandAccountOut,
    responses=problem_responses(404, 422, 429),
)
def brand_account(
    address: AddressPath,
    session: SessionDep,
    changes: Annotated[
        int, Query(ge=0, le=MAX_PAGE, description="How many latest account changes to list.")
    ] = 20,
) -> BrandAccountOut:
    """Escrow, debt, debt reserve and pending withdrawal as of the indexer's cursor, with the
    event of the last change; totals from the brand's events (deposits, charges, escrow spent,
    debt recorded and repaid, withdrawals); every debt entry with what was recorded and repaid;
    the latest ``changes`` account changes."""
    brand = _address(address)
    account = queries.brand_account(session, brand, changes=changes)
    if account is None:
        raise _not_found(f"no escrow or debt event of brand {brand} in the index")
    return BrandAccountOut.model_validate(account)


@router.get(
    "/index/status",
    summary="How far the indexer got",
    response_model=IndexStatusOut,
    responses=problem_responses(429),
)
def index_status(session: SessionDep, at: NowDep) -> IndexStatusOut:
    """The indexer's cursor: the last confirmed block it indexed, its hash and time, and how far
    that time lags behind the request time (the chain's head is not asked at request time)."""
    status = queries.index_status(session)
    if status is None:
        return IndexStatusOut(
            indexed=False,
            ledger=None,
            block_number=None,
            block_hash=None,
            block_time=None,
            updated_at=None,
            block_age_seconds=None,
        )
    age = None if status.block_time is None else (at - status.block_time).total_seconds()
    return IndexStatusOut(
        indexed=True,
        ledger=status.ledger,
        block_number=status.block_number,
        block_hash=status.block_hash,
        block_time=status.block_time,
        updated_at=status.updated_at,
        block_age_seconds=age,
    )
