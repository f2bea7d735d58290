"""Read queries over the indexer's tables (migration 0005) for the public read API.

Everything here is answered from what the indexer stored from confirmed ledger events; nothing asks
the chain. Amounts are exact integers (token base units); each figure keeps the event it came from
(``Source``: transaction, block, log index and block time).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, Literal

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from bridge.domain.codec import Outcome
from bridge.domain.usage import UsageType
from bridge.store.models import (
    BrandAccountChange,
    BrandAccountRow,
    IndexedBlock,
    IndexerCursor,
    LedgerEventRow,
    LicenseRevocation,
    LicenseVersionRow,
    PayeePayout,
    RoyaltyDistribution,
    SettledUsageRow,
    TwinChange,
    TwinRow,
)

BPS_DENOMINATOR: Final = 10_000
_IN_CHUNK: Final = 500
"""Bound parameters per ``IN (...)`` list."""

Period = Literal["day", "month"]


# ---------------------------------------------------------------- shared shapes


@dataclass(frozen=True, slots=True)
class Source:
    """The ledger event a figure came from."""

    tx_hash: str
    block_number: int
    log_index: int
    block_time: datetime


def _source(row: Any) -> Source:
    return Source(
        tx_hash=row.tx_hash,
        block_number=row.block_number,
        log_index=row.log_index,
        block_time=row.block_time,
    )


def usage_type_name(code: int) -> str | None:
    """The API name of a usage type code, None for a code the bridge does not name."""
    try:
        return UsageType(code).api_name
    except ValueError:
        return None


def outcome_name(code: int) -> str:
    """An outcome code in words (``license_revoked``); ``unknown_<code>`` for a code the bridge
    does not know."""
    try:
        return Outcome(code).name.lower()
    except ValueError:
        return f"unknown_{code}"


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


# ---------------------------------------------------------------- twins and licenses


class LicenseState(StrEnum):
    """Where a license version stands at a given time."""

    ACTIVE = "active"
    NOT_STARTED = "not_started"
    EXPIRED = "expired"
    REVOKED = "revoked"
    SUPERSEDED = "superseded"
    """Ended (or never started) because a later version replaced it from its start."""


def license_state(
    *, effective_from: int, effective_until: int, valid_until: int, revoked: bool, at: int
) -> LicenseState:
    """The state at ``at`` of a version with the effective window the indexer computed."""
    if revoked and at >= effective_until:
        return LicenseState.REVOKED
    if effective_from <= at < effective_until:
        return LicenseState.ACTIVE
    if at < effective_from:
        return LicenseState.NOT_STARTED
    if effective_until < valid_until:
        return LicenseState.SUPERSEDED
    return LicenseState.EXPIRED


@dataclass(frozen=True, slots=True)
class Price:
    usage_type: str | None
    usage_type_code: int
    price: int


@dataclass(frozen=True, slots=True)
class LicenseVersion:
    version: int
    state: LicenseState
    valid_from: int
    valid_until: int
    effective_from: int
    effective_until: int
    revoked: bool
    max_uses: int | None
    uses: int
    purpose_hash: str
    consent_hash: str
    prices: list[Price]
    source: Source


@dataclass(frozen=True, slots=True)
class Revocation:
    version: int
    revoked_at: int
    source: Source


@dataclass(frozen=True, slots=True)
class License:
    brand: str
    state: LicenseState
    current_version: int
    current: LicenseVersion
    versions: list[LicenseVersion]
    revocations: list[Revocation]


@dataclass(frozen=True, slots=True)
class Owner:
    address: str
    source: Source


@dataclass(frozen=True, slots=True)
class PauseInterval:
    paused_at: int
    paused_source: Source
    unpaused_at: int | None
    unpaused_source: Source | None


@dataclass(frozen=True, slots=True)
class PauseState:
    paused: bool
    paused_since: int | None
    source: Source | None
    history: list[PauseInterval]


@dataclass(frozen=True, slots=True)
class Payee:
    account: str
    bps: int


@dataclass(frozen=True, slots=True)
class Split:
    payees: list[Payee]
    owner_bps: int
    source: Source | None


@dataclass(frozen=True, slots=True)
class Twin:
    twin_id: int
    owner: Owner
    metadata_uri: str
    consent_hash: str
    minted: Source
    pause: PauseState
    payees: Split
    licenses: list[License]


def twins_page(
    session: Session, *, owner: str | None, after: int | None, limit: int, at: int
) -> tuple[list[Twin], bool]:
    """Up to ``limit`` twins by id after ``after``, optionally only ``owner``'s, with license
    states as of unix time ``at``; and whether more follow."""
    query = select(TwinRow).order_by(TwinRow.twin_id).limit(limit + 1)
    if owner is not None:
        query = query.where(TwinRow.owner == owner)
    if after is not None:
        query = query.where(TwinRow.twin_id > after)
    rows = list(session.scalars(query))
    return _load_twins(session, rows[:limit], at=at), len(rows) > limit


def twin_exists(session: Session, twin_id: int) -> bool:
    return session.scalar(select(TwinRow.twin_id).where(TwinRow.twin_id == twin_id)) is not None


def twin(session: Session, twin_id: int, *, at: int) -> Twin | None:
    row = session.get(TwinRow, twin_id)
    return None if row is None else _load_twins(session, [row], at=at)[0]


def _load_twins(session: Session, rows: list[TwinRow], *, at: int) -> list[Twin]:
    """The twins of ``rows`` with their sources, pauses and licenses, in a few queries."""
    ids = [row.twin_id for row in rows]
    changes: defaultdict[int, list[TwinChange]] = defaultdict(list)
    pauses: defaultdict[int, list[LedgerEventRow]] = defaultdict(list)
    versions: defaultdict[tuple[int, str], list[LicenseVersionRow]] = defaultdict(list)
    revocations: defaultdict[tuple[int, str], list[LicenseRevocation]] = defaultdict(list)
    uses: dict[tuple[int, str, int], int] = {}
    for chunk in _chunks(ids):
        for change in session.scalars(
            select(TwinChange)
            .where(TwinChange.twin_id.in_(chunk))
            .order_by(TwinChange.block_number, TwinChange.log_index)
        ):
            changes[change.twin_id].append(change)
        for event in session.scalars(
            select(LedgerEventRow)
            .where(
                LedgerEventRow.twin_id.in_(chunk),
                LedgerEventRow.name.in_(("TwinPaused", "TwinUnpaused")),
            )
            .order_by(LedgerEventRow.block_number, LedgerEventRow.log_index)
        ):
            assert event.twin_id is not None  # noqa: S101 - selected by twin
            pauses[event.twin_id].append(event)
        for version in session.scalars(
            select(LicenseVersionRow)
            .where(LicenseVersionRow.twin_id.in_(chunk))
            .order_by(LicenseVersionRow.version)
        ):
            versions[version.twin_id, version.brand].append(version)
        for revocation in session.scalars(
            select(LicenseRevocation)
            .where(LicenseRevocation.twin_id.in_(chunk))
            .order_by(LicenseRevocation.block_number, LicenseRevocation.log_index)
        ):
            revocations[revocation.twin_id, revocation.brand].append(revocation)
        for twin_id, brand, number, quantity in session.execute(
            select(
                SettledUsageRow.twin_id,
                SettledUsageRow.brand,
                SettledUsageRow.license_version,
                func.sum(SettledUsageRow.quantity),
            )
            .where(
                SettledUsageRow.twin_id.in_(chunk),
                SettledUsageRow.outcome == int(Outcome.PAID),
                SettledUsageRow.license_version.is_not(None),
            )
            .group_by(
                SettledUsageRow.twin_id, SettledUsageRow.brand, SettledUsageRow.license_version
            )
        ):
            if number is not None:  # selected so
                uses[twin_id, brand, number] = int(quantity)

    twins = []
    for row in rows:
        history = changes[row.twin_id]
        licenses = [
            _license(brand, versions[twin_id, brand], revocations[twin_id, brand], uses, at)
            for twin_id, brand in sorted(versions)
            if twin_id == row.twin_id
        ]
        twins.append(
            Twin(
                twin_id=row.twin_id,
                owner=Owner(
                    address=row.owner,
                    source=_source(_last(history, ("TwinMinted", "Transfer"))),
                ),
                metadata_uri=row.uri,
                consent_hash=row.consent_hash,
                minted=_source(_last(history, ("TwinMinted",))),
                pause=_pause(row, pauses[row.twin_id]),
                payees=_split(row, history),
                licenses=licenses,
            )
        )
    return twins


def _last(history: list[TwinChange], events: tuple[str, ...]) -> TwinChange:
    return next(c for c in reversed(history) if c.event in events)


def _pause(row: TwinRow, events: list[LedgerEventRow]) -> PauseState:
    intervals: list[PauseInterval] = []
    for event in events:
        at = int(event.args["at"])
        if event.name == "TwinPaused":
            intervals.append(PauseInterval(at, _source(event), None, None))
        elif intervals and intervals[-1].unpaused_at is None:
            last = intervals[-1]
            intervals[-1] = PauseInterval(last.paused_at, last.paused_source, at, _source(event))
    return PauseState(
        paused=row.paused,
        paused_since=row.paused_since,
        source=_source(events[-1]) if events else None,
        history=intervals,
    )


def _split(row: TwinRow, history: list[TwinChange]) -> Split:
    payees = [Payee(account=p["account"], bps=int(p["bps"])) for p in row.payees]
    setting = next((c for c in reversed(history) if c.event == "PayeesSet"), None)
    return Split(
        payees=payees,
        owner_bps=BPS_DENOMINATOR - sum(p.bps for p in payees),
        source=None if setting is None else _source(setting),
    )


def _license(
    brand: str,
    rows: list[LicenseVersionRow],
    revocations: list[LicenseRevocation],
    uses: dict[tuple[int, str, int], int],
    at: int,
) -> License:
    versions = [
        LicenseVersion(
            version=row.version,
            state=license_state(
                effective_from=row.effective_from,
                effective_until=row.effective_until,
                valid_until=row.valid_until,
                revoked=row.revoked,
                at=at,
            ),
            valid_from=row.valid_from,
            valid_until=row.valid_until,
            effective_from=row.effective_from,
            effective_until=row.effective_until,
            revoked=row.revoked,
            max_uses=row.max_uses or None,
            uses=uses.get((row.twin_id, row.brand, row.version), 0),
            purpose_hash=row.purpose_hash,
            consent_hash=row.consent_hash,
            prices=[
                Price(
                    usage_type=usage_type_name(int(p["usageType"])),
                    usage_type_code=int(p["usageType"]),
                    price=int(p["price"]),
                )
                for p in row.prices
            ],
            source=_source(row),
        )
        for row in rows
    ]
    current = next((v for v in versions if v.state is LicenseState.ACTIVE), versions[-1])
    return License(
        brand=brand,
        state=current.state,
        current_version=current.version,
        current=current,
        versions=versions,
        revocations=[Revocation(r.version, r.revoked_at, _source(r)) for r in revocations],
    )


# ---------------------------------------------------------------- usages


@dataclass(frozen=True, slots=True)
class UsageFilter:
    twin_id: int | None = None
    brand: str | None = None
    usage_type: int | None = None
    outcome: int | None = None
    used_from: datetime | None = None
    used_to: datetime | None = None


UsageKey = tuple[int, int, int]
"""(block number, log index, position in the event): the stable order of settled usages."""


def usages_page(
    session: Session, where: UsageFilter, *, after: UsageKey | None, limit: int
) -> tuple[list[SettledUsageRow], UsageKey | None]:
    """Up to ``limit`` settled usages in ledger order after ``after``, and the key to continue
    from (None on the last page)."""
    order = (SettledUsageRow.block_number, SettledUsageRow.log_index, SettledUsageRow.position)
    query = select(SettledUsageRow).order_by(*order).limit(limit + 1)
    if where.twin_id is not None:
        query = query.where(SettledUsageRow.twin_id == where.twin_id)
    if where.brand is not None:
        query = query.where(SettledUsageRow.brand == where.brand)
    if where.usage_type is not None:
        query = query.where(SettledUsageRow.usage_type == where.usage_type)
    if where.outcome is not None:
        query = query.where(SettledUsageRow.outcome == where.outcome)
    if where.used_from is not None:
        query = query.where(SettledUsageRow.used_at >= where.used_from)
    if where.used_to is not None:
        query = query.where(SettledUsageRow.used_at < where.used_to)
    if after is not None:
        query = query.where(tuple_(*order) > tuple_(*after))
    rows = list(session.scalars(query))
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    last = rows[-1]
    return rows, (last.block_number, last.log_index, last.position)


# ---------------------------------------------------------------- earnings


def period_of(moment: datetime, period: Period) -> str:
    """The UTC day (``2030-01-31``) or month (``2030-01``) of ``moment``."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d" if period == "day" else "%Y-%m")


@dataclass(slots=True)
class PayeeFlow:
    """What one payee got from one twin: distributed, and of that paid out so far."""

    payee: str
    distributed: int = 0
    paid_out: int = 0
    claimable: int = 0


@dataclass(slots=True)
class TwinEarningsRow:
    """The flows of one period (or of the whole range), and the balances at its end."""

    period: str | None
    paid: int = 0
    debt_recorded: int = 0
    debt_repaid: int = 0
    accrued: int = 0
    distributed: int = 0
    paid_out: int = 0
    undistributed: int = 0
    unpaid_debt: int = 0
    claimable: int = 0
    payees: dict[str, PayeeFlow] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TwinEarnings:
    twin_id: int
    periods: list[TwinEarningsRow]
    totals: TwinEarningsRow


@dataclass(frozen=True, slots=True)
class _Move:
    """One money movement of the earnings history, in ledger order."""

    position: tuple[int, int, int]
    time: datetime
    kind: Literal["paid", "debt_recorded", "debt_repaid", "distributed", "payout"]
    amount: int
    account: str | None = None
    twin_id: int | None = None


def _until(column: Any, end: datetime | None) -> list[Any]:
    return [] if end is None else [column < end]


def _in_range(time: datetime, start: datetime | None, end: datetime | None) -> bool:
    return (start is None or time >= start) and (end is None or time < end)


def twin_earnings(
    session: Session,
    twin_id: int,
    *,
    period: Period,
    start: datetime | None,
    end: datetime | None,
) -> TwinEarnings:
    """A twin's earnings per period of settlement time, from its events before ``end``; the flows
    count those at or after ``start``, the balances at each period's end count all before it.

    Derivation (in token base units, every event in ledger order, bucketed by its block's UTC
    time):
        paid: Σ ``price x quantity`` of the twin's Paid usages (``UsagesSettled``), what the
            brands were charged, from escrow or as debt.
        debt_recorded: Σ ``DebtRecorded.amount`` of the twin: the part of ``paid`` the brand's
            escrow did not cover at settlement.
        debt_repaid: Σ ``DebtRepaid.amount`` of the twin: debt later paid into its account.
        accrued: ``paid - debt_recorded + debt_repaid``, the tokens credited to the twin's royalty
            account.
        distributed: Σ ``RoyaltiesDistributed.amount`` of the twin, per payee (the owner included).
        paid_out: the part of the twin's distributions that left the ledger in the period. On
            chain a payee's claimable balance is pooled over twins and every ``PayeePaid`` pays
            all of it, so each distribution to a payee is paid out by that payee's first
            ``PayeePaid`` after it.
        undistributed (balance): accrued - distributed up to the period's end, the twin's
            royalty account on chain.
        unpaid_debt (balance): debt_recorded - debt_repaid up to the period's end.
        claimable (balance): distributed - paid_out up to the period's end, still in the
            payees' claimable balances.
    """
    moves: list[_Move] = []
    paid = select(
        SettledUsageRow.block_number,
        SettledUsageRow.log_index,
        SettledUsageRow.position,
        SettledUsageRow.block_time,
        SettledUsageRow.amount,
    ).where(
        SettledUsageRow.twin_id == twin_id,
        SettledUsageRow.outcome == int(Outcome.PAID),
        SettledUsageRow.amount.is_not(None),
        *_until(SettledUsageRow.block_time, end),
    )
    for block, log_index, position, time, amount in session.execute(paid):
        moves.append(_Move((block, log_index, position), time, "paid", amount or 0))
    debts = select(LedgerEventRow).where(
        LedgerEventRow.twin_id == twin_id,
        LedgerEventRow.name.in_(("DebtRecorded", "DebtRepaid")),
        *_until(LedgerEventRow.block_time, end),
    )
    for event in session.scalars(debts):
        kind: Literal["debt_recorded", "debt_repaid"] = (
            "debt_recorded" if event.name == "DebtRecorded" else "debt_repaid"
        )
        moves.append(
            _Move(
                (event.block_number, event.log_index, 0),
                event.block_time,
                kind,
                int(event.args["amount"]),
            )
        )
    payees: set[str] = set()
    distributions = select(RoyaltyDistribution).where(
        RoyaltyDistribution.twin_id == twin_id, *_until(RoyaltyDistribution.block_time, end)
    )
    for share in session.scalars(distributions):
        payees.add(share.payee)
        moves.append(
            _Move(
                (share.block_number, share.log_index, 0),
                share.block_time,
                "distributed",
                share.amount,
                account=share.payee,
            )
        )
    for chunk in _chunks(sorted(payees)):
        payouts = select(PayeePayout).where(
            PayeePayout.payee.in_(chunk), *_until(PayeePayout.block_time, end)
        )
        for payout in session.scalars(payouts):
            moves.append(
                _Move(
                    (payout.block_number, payout.log_index, 0),
                    payout.block_time,
                    "payout",
                    payout.amount,
                    account=payout.payee,
                )
            )
    moves.sort(key=lambda m: m.position)

    periods: dict[str, TwinEarningsRow] = {}
    totals = TwinEarningsRow(period=None)
    balance = TwinEarningsRow(period=None)
    waiting: defaultdict[str, int] = defaultdict(int)
    """payee -> this twin's distributions to them not yet paid out."""
    for move in moves:
        amount = move.amount
        if move.kind == "payout":
            assert move.account is not None  # noqa: S101 - payouts name their payee
            amount = waiting.pop(move.account, 0)
            if amount == 0:
                continue
        flows: list[TwinEarningsRow] = [balance]
        if _in_range(move.time, start, end):
            key = period_of(move.time, period)
            row = periods.get(key)
            if row is None:
                row = periods[key] = TwinEarningsRow(period=key)
            flows += [row, totals]
        for flow in flows:
            _add(flow, move, amount)
        if flows[1:]:
            _close(flows[1], balance)
        if move.kind == "distributed":
            assert move.account is not None  # noqa: S101 - distributions name their payee
            waiting[move.account] += amount
    _close(totals, balance)
    return TwinEarnings(twin_id=twin_id, periods=list(periods.values()), totals=totals)


def _add(row: TwinEarningsRow, move: _Move, amount: int) -> None:
    match move.kind:
        case "paid":
            row.paid += amount
            row.accrued += amount
        case "debt_recorded":
            row.debt_recorded += amount
            row.accrued -= amount
        case "debt_repaid":
            row.debt_repaid += amount
            row.accrued += amount
        case "distributed":
            assert move.account is not None  # noqa: S101
            row.distributed += amount
            row.payees.setdefault(move.account, PayeeFlow(move.account)).distributed += amount
        case "payout":
            assert move.account is not None  # noqa: S101
            row.paid_out += amount
            row.payees.setdefault(move.account, PayeeFlow(move.account)).paid_out += amount


def _close(row: TwinEarningsRow, balance: TwinEarningsRow) -> None:
    """Copies the running balances (everything before ``end`` so far) into ``row``."""
    row.undistributed = balance.accrued - balance.distributed
    row.unpaid_debt = balance.debt_recorded - balance.debt_repaid
    row.claimable = balance.distributed - balance.paid_out
    for payee, flow in row.payees.items():
        total = balance.payees[payee]
        flow.claimable = total.distributed - total.paid_out


@dataclass(slots=True)
class PayeeEarningsRow:
    period: str | None
    distributed: int = 0
    paid_out: int = 0
    claimable: int = 0
    twins: dict[int, int] = field(default_factory=dict)
    """twin id -> distributed from it."""


@dataclass(frozen=True, slots=True)
class PayeeEarnings:
    payee: str
    periods: list[PayeeEarningsRow]
    totals: PayeeEarningsRow


def payee_earnings(
    session: Session,
    payee: str,
    *,
    period: Period,
    start: datetime | None,
    end: datetime | None,
) -> PayeeEarnings:
    """A payee's (or owner's) earnings per period, from its events before ``end``; the flows count
    those at or after ``start``, the claimable balance at each period's end counts all before it.

    Derivation (token base units, bucketed by the UTC time of the event's block):
        distributed: Σ ``RoyaltiesDistributed.amount`` to the payee, per twin.
        paid_out: Σ ``PayeePaid.amount`` to the payee (``withdraw`` or anyone's ``payout``).
        claimable (balance): distributed - paid_out up to the period's end, the ledger's
            ``claimable(payee)``.
    """
    moves: list[tuple[tuple[int, int], datetime, int | None, int]] = []
    distributions = select(RoyaltyDistribution).where(
        RoyaltyDistribution.payee == payee, *_until(RoyaltyDistribution.block_time, end)
    )
    for share in session.scalars(distributions):
        moves.append(
            ((share.block_number, share.log_index), share.block_time, share.twin_id, share.amount)
        )
    payouts = select(PayeePayout).where(
        PayeePayout.payee == payee, *_until(PayeePayout.block_time, end)
    )
    for payout in session.scalars(payouts):
        moves.append(
            ((payout.block_number, payout.log_index), payout.block_time, None, payout.amount)
        )
    moves.sort(key=lambda m: m[0])
    periods: dict[str, PayeeEarningsRow] = {}
    totals = PayeeEarningsRow(period=None)
    claimable = 0
    for _, time, twin_id, amount in moves:
        claimable += amount if twin_id is not None else -amount
        if not _in_range(time, start, end):
            continue
        key = period_of(time, period)
        row = periods.get(key)
        if row is None:
            row = periods[key] = PayeeEarningsRow(period=key)
        for flow in (row, totals):
            if twin_id is None:
                flow.paid_out += amount
            else:
                flow.distributed += amount
                flow.twins[twin_id] = flow.twins.get(twin_id, 0) + amount
            flow.claimable = claimable
    totals.claimable = claimable
    return PayeeEarnings(payee=payee, periods=list(periods.values()), totals=totals)


# ---------------------------------------------------------------- brand accounts


@dataclass(frozen=True, slots=True)
class DebtEntry:
    """One entry of a brand's debt queue (``DebtRecorded.entry``), owed to a twin."""

    entry: int
    twin_id: int
    recorded: int
    repaid: int
    outstanding: int
    sources: list[Source]


@dataclass(frozen=True, slots=True)
class AccountChange:
    event: str
    escrow_delta: int
    debt_delta: int
    escrow: int
    debt: int
    debt_reserve: int
    pending_withdrawal: int
    source: Source


@dataclass(frozen=True, slots=True)
class BrandTotals:
    deposited: int
    deposited_to_debt: int
    charged: int
    spent_from_escrow: int
    debt_recorded: int
    debt_repaid: int
    withdrawn: int


@dataclass(frozen=True, slots=True)
class BrandAccount:
    brand: str
    escrow: int
    debt: int
    debt_reserve: int
    pending_withdrawal: int
    withdrawal_unlocks_at: int | None
    source: Source
    totals: BrandTotals
    debt_entries: list[DebtEntry]
    changes: list[AccountChange]


_ACCOUNT_EVENTS: Final = (
    "EscrowDeposited",
    "UsagesSettled",
    "DebtRecorded",
    "DebtRepaid",
    "EscrowWithdrawn",
)


def brand_account(session: Session, brand: str, *, changes: int) -> BrandAccount | None:
    """The brand's account, totals and debt entries from its events, and its latest ``changes``
    account changes (newest first); None when the ledger has no event of the brand's account."""
    row = session.get(BrandAccountRow, brand)
    if row is None:
        return None
    recent = list(
        session.scalars(
            select(BrandAccountChange)
            .where(BrandAccountChange.brand == brand)
            .order_by(BrandAccountChange.block_number.desc(), BrandAccountChange.log_index.desc())
            .limit(max(changes, 1))
        )
    )
    sums: defaultdict[str, int] = defaultdict(int)
    entries: dict[int, dict[str, Any]] = {}
    events = session.scalars(
        select(LedgerEventRow)
        .where(
            LedgerEventRow.brand == brand,
            LedgerEventRow.name.in_(
                (
                    "EscrowDeposited",
                    "UsagesSettled",
                    "DebtRecorded",
                    "DebtRepaid",
                    "EscrowWithdrawn",
                )
            ),
        )
        .order_by(LedgerEventRow.block_number, LedgerEventRow.log_index)
    )
    for event in events:
        args = event.args
        match event.name:
            case "EscrowDeposited":
                sums["deposited"] += int(args["amount"])
                sums["deposited_to_debt"] += int(args["toDebt"])
            case "UsagesSettled":
                sums["charged"] += int(args["paid"])
            case "EscrowWithdrawn":
                sums["withdrawn"] += int(args["amount"])
            case "DebtRecorded" | "DebtRepaid":
                recorded = event.name == "DebtRecorded"
                sums["debt_recorded" if recorded else "debt_repaid"] += int(args["amount"])
                entry = entries.setdefault(
                    int(args["entry"]),
                    {"twin_id": int(args["twinId"]), "recorded": 0, "repaid": 0, "sources": []},
                )
                entry["recorded" if recorded else "repaid"] += int(args["amount"])
                entry["sources"].append(_source(event))
    spent = -sum(
        int(delta)
        for delta in session.scalars(
            select(BrandAccountChange.escrow_delta).where(
                BrandAccountChange.brand == brand, BrandAccountChange.event == "UsagesSettled"
            )
        )
    )
    return BrandAccount(
        brand=brand,
        escrow=row.escrow,
        debt=row.debt,
        debt_reserve=row.debt_reserve,
        pending_withdrawal=row.pending_withdrawal,
        withdrawal_unlocks_at=row.withdrawal_unlocks_at or None,
        source=_source(recent[0]),
        totals=BrandTotals(
            deposited=sums["deposited"],
            deposited_to_debt=sums["deposited_to_debt"],
            charged=sums["charged"],
            spent_from_escrow=spent,
            debt_recorded=sums["debt_recorded"],
            debt_repaid=sums["debt_repaid"],
            withdrawn=sums["withdrawn"],
        ),
        debt_entries=[
            DebtEntry(
                entry=number,
                twin_id=e["twin_id"],
                recorded=e["recorded"],
                repaid=e["repaid"],
                outstanding=e["recorded"] - e["repaid"],
                sources=e["sources"],
            )
            for number, e in sorted(entries.items())
        ],
        changes=[
            AccountChange(
                event=c.event,
                escrow_delta=c.escrow_delta,
                debt_delta=c.debt_delta,
                escrow=c.escrow,
                debt=c.debt,
                debt_reserve=c.debt_reserve,
                pending_withdrawal=c.pending_withdrawal,
                source=_source(c),
            )
            for c in recent[:changes]
        ],
    )


# ---------------------------------------------------------------- the index itself


@dataclass(frozen=True, slots=True)
class IndexStatus:
    ledger: str
    block_number: int
    block_hash: str
    block_time: datetime | None
    updated_at: datetime


def index_status(session: Session) -> IndexStatus | None:
    """The indexer's cursor (None before its first range)."""
    cursor = session.scalars(select(IndexerCursor).limit(1)).first()
    if cursor is None:
        return None
    block = session.get(IndexedBlock, cursor.block_number)
    return IndexStatus(
        ledger=cursor.ledger,
        block_number=cursor.block_number,
        block_hash=cursor.block_hash,
        block_time=None if block is None else datetime.fromtimestamp(block.timestamp, UTC),
        updated_at=cursor.updated_at,
    )
