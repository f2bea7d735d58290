"""A brand's account as the read API shows it: escrow, debt and withdrawal now, its totals and
debt entries from its events, and its latest account changes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.store.ledger_queries.common import Source, source_of
from bridge.store.models import BrandAccountChange, BrandAccountRow, LedgerEventRow


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


_TOTALS_EVENTS: Final = (
    "EscrowDeposited",
    "UsagesSettled",
    "DebtRecorded",
    "DebtRepaid",
    "EscrowWithdrawn",
)
"""The events a brand's totals and debt entries add up."""


def brand_account(session: Session, brand: str, *, changes: int) -> BrandAccount | None:
    """The brand's account, totals and debt entries from its events, and its latest ``changes``
    account changes (newest first); None when the ledger has no event of the brand's account."""
    row = session.get(BrandAccountRow, brand)
    if row is None:
        return None
    recent = _recent_changes(session, brand, max(changes, 1))
    tally = _BrandTally()
    for event in session.scalars(
        select(LedgerEventRow)
        .where(LedgerEventRow.brand == brand, LedgerEventRow.name.in_(_TOTALS_EVENTS))
        .order_by(LedgerEventRow.block_number, LedgerEventRow.log_index)
    ):
        tally.add(event)
    return BrandAccount(
        brand=brand,
        escrow=row.escrow,
        debt=row.debt,
        debt_reserve=row.debt_reserve,
        pending_withdrawal=row.pending_withdrawal,
        withdrawal_unlocks_at=row.withdrawal_unlocks_at or None,
        source=source_of(recent[0]),
        totals=tally.totals(spent_from_escrow=_spent_from_escrow(session, brand)),
        debt_entries=[entry.of(number) for number, entry in sorted(tally.entries.items())],
        changes=[_account_change(c) for c in recent[:changes]],
    )


def _recent_changes(session: Session, brand: str, count: int) -> list[BrandAccountChange]:
    """The brand's latest ``count`` account changes, newest first."""
    return list(
        session.scalars(
            select(BrandAccountChange)
            .where(BrandAccountChange.brand == brand)
            .order_by(BrandAccountChange.block_number.desc(), BrandAccountChange.log_index.desc())
            .limit(count)
        )
    )


def _spent_from_escrow(session: Session, brand: str) -> int:
    """What the brand's settlements took from its escrow (the rest of their charge became debt)."""
    return -sum(
        int(delta)
        for delta in session.scalars(
            select(BrandAccountChange.escrow_delta).where(
                BrandAccountChange.brand == brand, BrandAccountChange.event == "UsagesSettled"
            )
        )
    )


@dataclass(slots=True)
class _DebtTally:
    """One debt entry's ``DebtRecorded`` and ``DebtRepaid`` events so far."""

    twin_id: int
    recorded: int = 0
    repaid: int = 0
    sources: list[Source] = field(default_factory=list)

    def of(self, entry: int) -> DebtEntry:
        return DebtEntry(
            entry=entry,
            twin_id=self.twin_id,
            recorded=self.recorded,
            repaid=self.repaid,
            outstanding=self.recorded - self.repaid,
            sources=self.sources,
        )


@dataclass(slots=True)
class _BrandTally:
    """A brand's totals and debt entries, added up from its events in ledger order."""

    deposited: int = 0
    deposited_to_debt: int = 0
    charged: int = 0
    debt_recorded: int = 0
    debt_repaid: int = 0
    withdrawn: int = 0
    entries: dict[int, _DebtTally] = field(default_factory=dict)
    """``DebtRecorded.entry`` -> that entry's events."""

    def add(self, event: LedgerEventRow) -> None:
        args = event.args
        match event.name:
            case "EscrowDeposited":
                self.deposited += int(args["amount"])
                self.deposited_to_debt += int(args["toDebt"])
            case "UsagesSettled":
                self.charged += int(args["paid"])
            case "EscrowWithdrawn":
                self.withdrawn += int(args["amount"])
            case "DebtRecorded" | "DebtRepaid":
                self._debt(event)

    def _debt(self, event: LedgerEventRow) -> None:
        args, amount = event.args, int(event.args["amount"])
        entry = self.entries.setdefault(int(args["entry"]), _DebtTally(int(args["twinId"])))
        if event.name == "DebtRecorded":
            self.debt_recorded += amount
            entry.recorded += amount
        else:
            self.debt_repaid += amount
            entry.repaid += amount
        entry.sources.append(source_of(event))

    def totals(self, *, spent_from_escrow: int) -> BrandTotals:
        return BrandTotals(
            deposited=self.deposited,
            deposited_to_debt=self.deposited_to_debt,
            charged=self.charged,
            spent_from_escrow=spent_from_escrow,
            debt_recorded=self.debt_recorded,
            debt_repaid=self.debt_repaid,
            withdrawn=self.withdrawn,
        )


def _account_change(change: BrandAccountChange) -> AccountChange:
    return AccountChange(
        event=change.event,
        escrow_delta=change.escrow_delta,
        debt_delta=change.debt_delta,
        escrow=change.escrow,
        debt=change.debt,
        debt_reserve=change.debt_reserve,
        pending_withdrawal=change.pending_withdrawal,
        source=source_of(change),
    )
