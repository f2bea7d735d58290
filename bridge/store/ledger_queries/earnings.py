"""Earnings over time as the read API shows them: a twin's royalties (charged, in debt, distributed,
paid out) and a payee's, per UTC day or month, and a payee's payouts one by one, from the indexed
events alone."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from bridge.domain.codec import Outcome
from bridge.store.engine import in_chunks
from bridge.store.ledger_queries.common import Period, Source, source_of
from bridge.store.models import LedgerEventRow, PayeePayout, RoyaltyDistribution, SettledUsageRow


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
    tally = _TwinTally(period=period, start=start, end=end)
    for move in _twin_moves(session, twin_id, end):
        tally.add(move)
    _close(tally.totals, tally.balance)
    return TwinEarnings(twin_id=twin_id, periods=list(tally.periods.values()), totals=tally.totals)


def _twin_moves(session: Session, twin_id: int, end: datetime | None) -> list[_Move]:
    """The twin's money movements before ``end``, in ledger order; the payouts are every payout
    to a payee the twin distributed to."""
    distributed = list(_distributions(session, twin_id, end))
    payees = sorted({move.account for move in distributed if move.account is not None})
    moves = [
        *_paid(session, twin_id, end),
        *_debts(session, twin_id, end),
        *distributed,
        *_payouts(session, payees, end),
    ]
    moves.sort(key=lambda m: m.position)
    return moves


def _paid(session: Session, twin_id: int, end: datetime | None) -> Iterator[_Move]:
    usage = SettledUsageRow
    paid = select(
        usage.block_number, usage.log_index, usage.position, usage.block_time, usage.amount
    ).where(
        usage.twin_id == twin_id,
        usage.outcome == int(Outcome.PAID),
        usage.amount.is_not(None),
        *_until(usage.block_time, end),
    )
    for block, log_index, position, time, amount in session.execute(paid):
        yield _Move((block, log_index, position), time, "paid", amount or 0)


def _debts(session: Session, twin_id: int, end: datetime | None) -> Iterator[_Move]:
    debts = select(LedgerEventRow).where(
        LedgerEventRow.twin_id == twin_id,
        LedgerEventRow.name.in_(("DebtRecorded", "DebtRepaid")),
        *_until(LedgerEventRow.block_time, end),
    )
    for event in session.scalars(debts):
        kind: Literal["debt_recorded", "debt_repaid"] = (
            "debt_recorded" if event.name == "DebtRecorded" else "debt_repaid"
        )
        position = (event.block_number, event.log_index, 0)
        yield _Move(position, event.block_time, kind, int(event.args["amount"]))


def _distributions(session: Session, twin_id: int, end: datetime | None) -> Iterator[_Move]:
    distributions = select(RoyaltyDistribution).where(
        RoyaltyDistribution.twin_id == twin_id, *_until(RoyaltyDistribution.block_time, end)
    )
    for share in session.scalars(distributions):
        position = (share.block_number, share.log_index, 0)
        yield _Move(position, share.block_time, "distributed", share.amount, account=share.payee)


def _payouts(session: Session, payees: Iterable[str], end: datetime | None) -> Iterator[_Move]:
    for chunk in in_chunks(list(payees)):
        payouts = select(PayeePayout).where(
            PayeePayout.payee.in_(chunk), *_until(PayeePayout.block_time, end)
        )
        for payout in session.scalars(payouts):
            position = (payout.block_number, payout.log_index, 0)
            yield _Move(position, payout.block_time, "payout", payout.amount, account=payout.payee)


@dataclass(slots=True)
class _TwinTally:
    """Adds a twin's moves, in ledger order, to the flows of their period and of the range, and
    to the running balances (every move before ``end``)."""

    period: Period
    start: datetime | None
    end: datetime | None
    periods: dict[str, TwinEarningsRow] = field(default_factory=dict)
    totals: TwinEarningsRow = field(default_factory=lambda: TwinEarningsRow(period=None))
    balance: TwinEarningsRow = field(default_factory=lambda: TwinEarningsRow(period=None))
    waiting: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    """payee -> this twin's distributions to them not yet paid out."""

    def add(self, move: _Move) -> None:
        amount = move.amount
        if move.kind == "payout":
            assert move.account is not None  # noqa: S101 - payouts name their payee
            amount = self.waiting.pop(move.account, 0)
            if amount == 0:
                return
        flows: list[TwinEarningsRow] = [self.balance]
        if _in_range(move.time, self.start, self.end):
            flows += [self._period_row(move.time), self.totals]
        for flow in flows:
            _add(flow, move, amount)
        if flows[1:]:
            _close(flows[1], self.balance)
        if move.kind == "distributed":
            assert move.account is not None  # noqa: S101 - distributions name their payee
            self.waiting[move.account] += amount

    def _period_row(self, time: datetime) -> TwinEarningsRow:
        key = period_of(time, self.period)
        row = self.periods.get(key)
        if row is None:
            row = self.periods[key] = TwinEarningsRow(period=key)
        return row


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


@dataclass(frozen=True, slots=True)
class Payout:
    """One ``PayeePaid``: what left the ledger to the payee, and who called for it."""

    payee: str
    caller: str
    amount: int
    source: Source


PayoutKey = tuple[int, int]
"""(block number, log index) of a ``PayeePaid``."""


def payee_payouts(
    session: Session, payee: str, *, tx_hash: str | None, before: PayoutKey | None, limit: int
) -> tuple[list[Payout], PayoutKey | None]:
    """Up to ``limit`` of the payee's payouts, newest first, before ``before`` (only those of the
    transaction ``tx_hash`` when given), and the key to continue before (None on the last page)."""
    order = (PayeePayout.block_number, PayeePayout.log_index)
    query = select(PayeePayout).where(PayeePayout.payee == payee)
    if tx_hash is not None:
        query = query.where(PayeePayout.tx_hash == tx_hash.lower())
    if before is not None:
        query = query.where(tuple_(*order) < tuple_(*before))
    rows = list(session.scalars(query.order_by(*(c.desc() for c in order)).limit(limit + 1)))
    more = len(rows) > limit
    payouts = [Payout(r.payee, r.caller, r.amount, source_of(r)) for r in rows[:limit]]
    last = rows[limit - 1] if more else None
    return payouts, None if last is None else (last.block_number, last.log_index)
