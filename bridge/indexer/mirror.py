"""The mirror: the store's copy of the ledger's history, written from decoded events.

``MirrorWriter`` applies the events of one range in one session: every event lands in
``ledger_events``; the events that change a twin, an offer or license, a brand's account, limits
or attester, a role (the access manager's events) or the royalties also update their projection
(twins, offers, license versions from acceptances with their offer's terms, brand accounts,
spending limits, attesters, roles, settled usages, royalties and payouts), and the current-state
tables keep one change row per event, so that ``delete_above`` can take a reorged range out and
restore the current state from what remains.
"""

from __future__ import annotations

import copy
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Generic, TypeVar

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from bridge.chain.client import Block
from bridge.chain.events import LedgerEvent, SettledUsage, settled_usages
from bridge.domain.codec import Outcome
from bridge.domain.usage import split_payment
from bridge.indexer.licenses import PricedVersion, covering_version, license_windows
from bridge.store.models import (
    BrandAccountChange,
    BrandAccountRow,
    BrandAccountState,
    BrandAttesterChange,
    IndexedBlock,
    LedgerEventRow,
    LicenseOfferRow,
    LicenseRevocation,
    LicenseVersionRow,
    OfferStatus,
    PayeePayout,
    RoleChange,
    RoyaltyDistribution,
    SettledUsageRow,
    SpendingLimitChange,
    TwinChange,
    TwinRow,
    TwinState,
)

log = logging.getLogger(__name__)

ZERO_ADDRESS: Final = "0x0000000000000000000000000000000000000000"

_TWIN_STATE: Final = tuple(TwinState.__annotations__)
"""The columns of a twin's state, in ``twins`` and in each ``twin_changes`` row."""
_ACCOUNT_STATE: Final = tuple(BrandAccountState.__annotations__)
"""The columns of a brand's account, in ``brand_accounts`` and each ``brand_account_changes``."""


def _state(row: object, columns: tuple[str, ...]) -> dict[str, Any]:
    """``columns`` of ``row`` (JSON lists copied, so two rows never share one)."""
    return {column: copy.copy(getattr(row, column)) for column in columns}


def _prices(prices: list[Any]) -> dict[int, int]:
    return {int(p["usageType"]): int(p["price"]) for p in prices}


@dataclass
class MirrorWriter:
    """Applies the events of one range to the store, in one session."""

    session: Session
    headers: dict[int, Block]
    """The headers of the range's blocks with events (their times)."""
    versions: dict[tuple[int, str], list[PricedVersion]] = field(default_factory=dict)
    """(twin, brand) -> its license versions, once a settlement needed them."""
    shortfall: defaultdict[tuple[str, str], list[int]] = field(
        default_factory=lambda: defaultdict(list)
    )
    """(tx hash, brand) -> the amounts of the ``DebtRecorded`` events since the brand's last
    ``UsagesSettled`` in that tx (one per usage its escrow fell short of, in usage order)."""

    def time_of(self, event: LedgerEvent) -> datetime:
        return datetime.fromtimestamp(self.headers[event.block_number].timestamp, UTC)

    def where(self, event: LedgerEvent) -> dict[str, Any]:
        """The ``EventSource`` columns of ``event``."""
        return {
            "block_number": event.block_number,
            "log_index": event.log_index,
            "tx_hash": event.tx_hash,
            "block_time": self.time_of(event),
        }

    def apply(self, event: LedgerEvent) -> None:
        twin = event.args.get("twinId", event.args.get("tokenId"))
        brand = event.args.get("brand")
        self.session.add(
            LedgerEventRow(
                block_hash=event.block_hash,
                name=event.name,
                twin_id=twin if isinstance(twin, int) else None,
                brand=brand if isinstance(brand, str) else None,
                args=event.json_args(),
                **self.where(event),
            )
        )
        handler = _HANDLERS.get(event.name)
        if handler is not None:
            handler(self, event)

    # ------------------------------------------------------------ twins

    def _twin(self, event: LedgerEvent, twin_id: int, change: Callable[[TwinRow], None]) -> None:
        row = self.session.get(TwinRow, twin_id)
        if row is None:
            row = TwinRow(
                twin_id=twin_id,
                owner=ZERO_ADDRESS,
                uri="",
                consent_hash="0x" + "00" * 32,
                paused=False,
                paused_since=None,
                payees=[],
                minted_block=event.block_number,
                updated_block=event.block_number,
            )
            self.session.add(row)
            self.session.flush()
        change(row)
        row.updated_block = event.block_number
        self.session.add(
            TwinChange(
                twin_id=twin_id,
                event=event.name,
                **_state(row, _TWIN_STATE),
                **self.where(event),
            )
        )

    def twin_minted(self, event: LedgerEvent) -> None:
        def mint(row: TwinRow) -> None:
            row.owner = event.str_arg("owner")
            row.uri = event.str_arg("uri")
            row.consent_hash = event.str_arg("consentHash")

        self._twin(event, event.int_arg("twinId"), mint)

    def transfer(self, event: LedgerEvent) -> None:
        def move(row: TwinRow) -> None:
            row.owner = event.str_arg("to")

        self._twin(event, event.int_arg("tokenId"), move)

    def twin_paused(self, event: LedgerEvent) -> None:
        def pause(row: TwinRow) -> None:
            row.paused = True
            row.paused_since = event.int_arg("at")

        self._twin(event, event.int_arg("twinId"), pause)

    def twin_unpaused(self, event: LedgerEvent) -> None:
        def unpause(row: TwinRow) -> None:
            row.paused = False
            row.paused_since = None

        self._twin(event, event.int_arg("twinId"), unpause)

    def payees_set(self, event: LedgerEvent) -> None:
        payees = event.json_args()["payees"]

        def split(row: TwinRow) -> None:
            row.payees = [{"account": p["account"], "bps": p["bps"]} for p in payees]

        self._twin(event, event.int_arg("twinId"), split)

    # ------------------------------------------------------------ licenses

    def license_offered(self, event: LedgerEvent) -> None:
        """A waiting offer (a replaced one was withdrawn by the event before)."""
        prices = event.json_args()["prices"]
        self.session.add(
            LicenseOfferRow(
                twin_id=event.int_arg("twinId"),
                brand=event.str_arg("brand"),
                version=event.int_arg("version"),
                valid_from=event.int_arg("validFrom"),
                valid_until=event.int_arg("validUntil"),
                max_uses=event.int_arg("maxUses"),
                purpose_hash=event.str_arg("purposeHash"),
                consent_hash=event.str_arg("consentHash"),
                prices=[{"usageType": p["usageType"], "price": p["price"]} for p in prices],
                terms_hash=event.str_arg("termsHash"),
                status=OfferStatus.PENDING,
                **self.where(event),
            )
        )
        self.session.flush()

    def _close_offer(self, event: LedgerEvent, status: OfferStatus) -> LicenseOfferRow | None:
        """Closes the pair's waiting offer that ``event`` names (None, logged, if none waits)."""
        twin, brand, version = (
            event.int_arg("twinId"), event.str_arg("brand"), event.int_arg("version")
        )  # fmt: skip
        offer = self.session.scalars(
            select(LicenseOfferRow)
            .where(
                LicenseOfferRow.twin_id == twin,
                LicenseOfferRow.brand == brand,
                LicenseOfferRow.version == version,
                LicenseOfferRow.status == OfferStatus.PENDING,
            )
            .order_by(LicenseOfferRow.block_number.desc(), LicenseOfferRow.log_index.desc())
            .limit(1)
        ).first()
        if offer is None:
            log.error("%s in tx %s: no waiting offer %d of twin %d to %s",
                      event.name, event.tx_hash, version, twin, brand)  # fmt: skip
            return None
        offer.status = status
        offer.closed_block, offer.closed_log_index = event.block_number, event.log_index
        offer.closed_tx_hash, offer.closed_time = event.tx_hash, self.time_of(event)
        return offer

    def license_declined(self, event: LedgerEvent) -> None:
        self._close_offer(event, OfferStatus.DECLINED)

    def offer_withdrawn(self, event: LedgerEvent) -> None:
        self._close_offer(event, OfferStatus.WITHDRAWN)

    def license_accepted(self, event: LedgerEvent) -> None:
        """The accepted offer becomes a license version from ``validFrom`` with its terms."""
        offer = self._close_offer(event, OfferStatus.ACCEPTED)
        if offer is None:
            return
        start = event.int_arg("validFrom")
        offer.accepted_from = start
        self.session.add(
            LicenseVersionRow(
                twin_id=offer.twin_id,
                brand=offer.brand,
                version=offer.version,
                valid_from=start,
                valid_until=offer.valid_until,
                max_uses=offer.max_uses,
                purpose_hash=offer.purpose_hash,
                consent_hash=offer.consent_hash,
                prices=list(offer.prices),
                effective_from=start,
                effective_until=offer.valid_until,
                revoked=False,
                terms_hash=offer.terms_hash,
                offered_from=offer.valid_from,
                **self.where(event),
            )
        )
        cached = self.versions.get((offer.twin_id, offer.brand))
        if cached is not None:
            cached.append(
                PricedVersion(
                    version=offer.version,
                    valid_from=start,
                    prices=_prices(offer.prices),
                    position=(event.block_number, event.log_index),
                )
            )
        self.session.flush()
        refresh_license_windows(self.session, offer.twin_id, offer.brand)

    def license_revoked(self, event: LedgerEvent) -> None:
        twin, brand = event.int_arg("twinId"), event.str_arg("brand")
        self.session.add(
            LicenseRevocation(
                twin_id=twin,
                brand=brand,
                version=event.int_arg("version"),
                revoked_at=event.int_arg("revokedAt"),
                **self.where(event),
            )
        )
        self.session.flush()
        refresh_license_windows(self.session, twin, brand)

    def _versions(self, twin: int, brand: str) -> list[PricedVersion]:
        cached = self.versions.get((twin, brand))
        if cached is None:
            cached = [
                PricedVersion(
                    version=row.version,
                    valid_from=row.valid_from,
                    prices=_prices(row.prices),
                    position=(row.block_number, row.log_index),
                )
                for row in _pair_rows(self.session, LicenseVersionRow, twin, brand)
            ]
            self.versions[twin, brand] = cached
        return cached

    # ------------------------------------------------------------ settlement

    def usages_settled(self, event: LedgerEvent) -> None:
        rows = [self._settled_row(event, usage) for usage in settled_usages(event)]
        total = sum(row["amount"] or 0 for row in rows)
        paid = event.int_arg("paid")
        brand = event.str_arg("brand")
        debts = self.shortfall.pop((event.tx_hash, brand), [])
        if total != paid:
            # The license history in the store does not explain the ledger's total: store no
            # amount rather than a wrong one (the event's own total stays in ledger_events).
            log.error(
                "UsagesSettled in tx %s (log %d): priced %d, the ledger paid %d; amounts left out",
                event.tx_hash, event.log_index, total, paid,
            )  # fmt: skip
            for row in rows:
                row["amount"] = row["license_version"] = None
        else:
            _split(event, rows, debts)
        if rows:
            self.session.execute(insert(SettledUsageRow), rows)
        self._brand(event, brand, escrow_delta=-(paid - sum(debts)))

    def _settled_row(self, event: LedgerEvent, usage: SettledUsage) -> dict[str, Any]:
        """The ``settled_usages`` row of one usage, priced by the version that covered it (a paid
        usage without a covering version or price keeps no amount)."""
        amount: int | None = None
        version: int | None = None
        if usage.outcome is Outcome.PAID:
            covering = covering_version(
                self._versions(usage.twin_id, usage.brand),
                at=usage.used_at,
                before=(event.block_number, event.log_index),
            )
            price = None if covering is None else covering.prices.get(usage.usage_type)
            if covering is not None and price is not None:
                amount, version = price * usage.quantity, covering.version
        return {
            "usage_id": usage.usage_id,
            "brand": usage.brand,
            "twin_id": usage.twin_id,
            "used_at": datetime.fromtimestamp(usage.used_at, UTC),
            "quantity": usage.quantity,
            "usage_type": usage.usage_type,
            "outcome": int(usage.outcome),
            "amount": amount,
            "paid_from_escrow": None,
            "recorded_as_debt": None,
            "license_version": version,
            "batch_digest": usage.batch_digest,
            "attester": usage.attester,
            "position": usage.position,
            **self.where(event),
        }

    # ------------------------------------------------------------ brands

    def _brand(
        self,
        event: LedgerEvent,
        brand: str,
        *,
        escrow_delta: int = 0,
        debt_delta: int = 0,
        reserve_delta: int = 0,
        withdrawal: tuple[int, int] | None = None,
    ) -> None:
        row = self.session.get(BrandAccountRow, brand)
        if row is None:
            row = BrandAccountRow(
                brand=brand,
                escrow=0,
                debt=0,
                debt_reserve=0,
                pending_withdrawal=0,
                withdrawal_unlocks_at=0,
                updated_block=event.block_number,
            )
            self.session.add(row)
            self.session.flush()
        row.escrow += escrow_delta
        row.debt += debt_delta
        row.debt_reserve += reserve_delta
        if withdrawal is not None:
            row.pending_withdrawal, row.withdrawal_unlocks_at = withdrawal
        row.updated_block = event.block_number
        self.session.add(
            BrandAccountChange(
                brand=brand,
                event=event.name,
                escrow_delta=escrow_delta,
                debt_delta=debt_delta,
                **_state(row, _ACCOUNT_STATE),
                **self.where(event),
            )
        )

    def escrow_deposited(self, event: LedgerEvent) -> None:
        amount, to_debt = event.int_arg("amount"), event.int_arg("toDebt")
        self._brand(
            event, event.str_arg("brand"), escrow_delta=amount - to_debt, reserve_delta=to_debt
        )

    def debt_recorded(self, event: LedgerEvent) -> None:
        brand, amount = event.str_arg("brand"), event.int_arg("amount")
        self.shortfall[event.tx_hash, brand].append(amount)
        self._brand(event, brand, debt_delta=amount)

    def debt_repaid(self, event: LedgerEvent) -> None:
        amount = event.int_arg("amount")
        self._brand(event, event.str_arg("brand"), debt_delta=-amount, reserve_delta=-amount)

    def withdrawal_requested(self, event: LedgerEvent) -> None:
        withdrawal = (event.int_arg("amount"), event.int_arg("unlocksAt"))
        self._brand(event, event.str_arg("brand"), withdrawal=withdrawal)

    def withdrawal_cancelled(self, event: LedgerEvent) -> None:
        self._brand(event, event.str_arg("brand"), withdrawal=(0, 0))

    def escrow_withdrawn(self, event: LedgerEvent) -> None:
        amount = event.int_arg("amount")
        self._brand(event, event.str_arg("brand"), escrow_delta=-amount, withdrawal=(0, 0))

    def spending_limits_set(self, event: LedgerEvent) -> None:
        self.session.add(
            SpendingLimitChange(
                brand=event.str_arg("brand"),
                per_usage=event.int_arg("perUsage"),
                per_period=event.int_arg("perPeriod"),
                effective_at=event.int_arg("effectiveAt"),
                **self.where(event),
            )
        )

    def brand_attester_set(self, event: LedgerEvent) -> None:
        self.session.add(
            BrandAttesterChange(
                brand=event.str_arg("brand"),
                attester=event.str_arg("attester"),
                **self.where(event),
            )
        )

    # ------------------------------------------------------------ roles (the access manager's)

    def role_changed(self, event: LedgerEvent) -> None:
        """``RoleGranted`` (member from ``since``), ``RoleRevoked`` or ``RoleGrantDelayChanged``
        (the role's grant delay from ``since``)."""
        args = event.args
        granted = event.name == "RoleGranted"
        self.session.add(
            RoleChange(
                event=event.name,
                role_id=event.int_arg("roleId"),
                account=event.str_arg("account") if "account" in args else None,
                delay=event.int_arg("delay") if "delay" in args else 0,
                since=event.int_arg("since") if "since" in args else None,
                new_member=bool(args["newMember"]) if granted else None,
                **self.where(event),
            )
        )

    # ------------------------------------------------------------ royalties

    def royalties_distributed(self, event: LedgerEvent) -> None:
        self.session.add(
            RoyaltyDistribution(
                twin_id=event.int_arg("twinId"),
                payee=event.str_arg("payee"),
                amount=event.int_arg("amount"),
                **self.where(event),
            )
        )

    def payee_paid(self, event: LedgerEvent) -> None:
        self.session.add(
            PayeePayout(
                payee=event.str_arg("payee"),
                caller=event.str_arg("caller"),
                amount=event.int_arg("amount"),
                **self.where(event),
            )
        )


_HANDLERS: Final[dict[str, Callable[[MirrorWriter, LedgerEvent], None]]] = {
    "TwinMinted": MirrorWriter.twin_minted,
    "Transfer": MirrorWriter.transfer,
    "TwinPaused": MirrorWriter.twin_paused,
    "TwinUnpaused": MirrorWriter.twin_unpaused,
    "PayeesSet": MirrorWriter.payees_set,
    "LicenseOffered": MirrorWriter.license_offered,
    "LicenseAccepted": MirrorWriter.license_accepted,
    "LicenseDeclined": MirrorWriter.license_declined,
    "LicenseOfferWithdrawn": MirrorWriter.offer_withdrawn,
    "LicenseRevoked": MirrorWriter.license_revoked,
    "SpendingLimitsSet": MirrorWriter.spending_limits_set,
    "BrandAttesterSet": MirrorWriter.brand_attester_set,
    "RoleGranted": MirrorWriter.role_changed,
    "RoleRevoked": MirrorWriter.role_changed,
    "RoleGrantDelayChanged": MirrorWriter.role_changed,
    "UsagesSettled": MirrorWriter.usages_settled,
    "EscrowDeposited": MirrorWriter.escrow_deposited,
    "DebtRecorded": MirrorWriter.debt_recorded,
    "DebtRepaid": MirrorWriter.debt_repaid,
    "EscrowWithdrawalRequested": MirrorWriter.withdrawal_requested,
    "EscrowWithdrawalCancelled": MirrorWriter.withdrawal_cancelled,
    "EscrowWithdrawn": MirrorWriter.escrow_withdrawn,
    "RoyaltiesDistributed": MirrorWriter.royalties_distributed,
    "PayeePaid": MirrorWriter.payee_paid,
}
"""Event name -> the projection it updates; every event also lands in ``ledger_events``."""


# ---------------------------------------------------------------- license windows


_Pair = TypeVar("_Pair", LicenseVersionRow, LicenseRevocation)


def _split(event: LedgerEvent, rows: list[dict[str, Any]], debts: list[int]) -> None:
    """Sets how each paid (and priced) row of one ``UsagesSettled`` was paid, from escrow and as
    debt, from the ``DebtRecorded`` amounts before it (``bridge.domain.usage.split_payment``); a
    group they do not fit is logged and left unknown."""
    paid = [row for row in rows if row["amount"] is not None]
    try:
        ways = split_payment([row["amount"] for row in paid], debts)
    except ValueError as exc:
        log.error(
            "UsagesSettled in tx %s (log %d): %s; how its usages were paid is left unknown",
            event.tx_hash, event.log_index, exc,
        )  # fmt: skip
        return
    for row, (escrow, debt) in zip(paid, ways, strict=True):
        row["paid_from_escrow"], row["recorded_as_debt"] = escrow, debt


def _pair_rows(session: Session, table: type[_Pair], twin: int, brand: str) -> list[_Pair]:
    return list(session.scalars(select(table).where(table.twin_id == twin, table.brand == brand)))


def refresh_license_windows(session: Session, twin: int, brand: str) -> None:
    """Recomputes the effective windows of the pair's versions from its acceptances and
    revocations."""
    versions = _pair_rows(session, LicenseVersionRow, twin, brand)
    revocations = _pair_rows(session, LicenseRevocation, twin, brand)
    actions = sorted(
        [((v.block_number, v.log_index), ("grant", v.version, v.valid_from, v.valid_until))
         for v in versions]
        + [((r.block_number, r.log_index), ("revoke", 0, r.revoked_at, 0)) for r in revocations]
    )  # fmt: skip
    windows = license_windows(action for _, action in actions)
    for row in versions:
        row.effective_from, row.effective_until, row.revoked = windows[row.version]


# ---------------------------------------------------------------- rewinding


_BLOCK_TABLES: Final = (
    LedgerEventRow,
    SettledUsageRow,
    TwinChange,
    LicenseVersionRow,
    LicenseRevocation,
    LicenseOfferRow,
    SpendingLimitChange,
    BrandAttesterChange,
    RoleChange,
    BrandAccountChange,
    RoyaltyDistribution,
    PayeePayout,
)
"""Tables whose rows come from the event at ``block_number``."""


_Now = TypeVar("_Now", TwinRow, BrandAccountRow)
_Change = TypeVar("_Change", TwinChange, BrandAccountChange)


@dataclass(frozen=True, slots=True)
class _Projection(Generic[_Now, _Change]):
    """A current-state table, restored after a rewind from the last row left in its history."""

    table: type[_Now]
    history: type[_Change]
    key: str
    """The column both tables name the twin or brand by."""
    state: tuple[str, ...]
    """The columns the history copies from the current state."""

    def touched_above(self, session: Session, block: int) -> set[Any]:
        """The keys with a history row after ``block``."""
        column = getattr(self.history, self.key)
        return set(session.scalars(select(column).where(self.history.block_number > block)))

    def restore(self, session: Session, key: Any) -> None:
        """Replaces the current row of ``key`` by its last history row's state (no row if none
        is left)."""
        history = self.history
        last = session.scalars(
            select(history)
            .where(getattr(history, self.key) == key)
            .order_by(history.block_number.desc(), history.log_index.desc())
            .limit(1)
        ).first()
        session.execute(delete(self.table).where(getattr(self.table, self.key) == key))
        if last is not None:
            state = _state(last, self.state)
            session.add(self.table(**{self.key: key}, **state, updated_block=last.block_number))


_PROJECTIONS: Final = (
    _Projection(TwinRow, TwinChange, "twin_id", _TWIN_STATE),
    _Projection(BrandAccountRow, BrandAccountChange, "brand", _ACCOUNT_STATE),
)


def delete_above(session: Session, block: int) -> None:
    """Deletes every indexed row of the blocks after ``block`` and restores the current-state
    tables (twins, brand accounts, license windows, offers closed after it waiting again) to what
    the remaining rows say."""
    touched = [(p, p.touched_above(session, block)) for p in _PROJECTIONS]
    pairs: set[tuple[int, str]] = set()
    for source in (LicenseVersionRow, LicenseRevocation):
        rows = session.execute(
            select(source.twin_id, source.brand).where(source.block_number > block)
        )
        pairs.update((twin_id, brand) for twin_id, brand in rows)
    for table in _BLOCK_TABLES:
        session.execute(delete(table).where(table.block_number > block))
    session.execute(
        update(LicenseOfferRow)
        .where(LicenseOfferRow.closed_block > block)
        .values(
            status=OfferStatus.PENDING,
            accepted_from=None,
            closed_block=None,
            closed_log_index=None,
            closed_tx_hash=None,
            closed_time=None,
        )
    )
    session.execute(delete(IndexedBlock).where(IndexedBlock.number > block))
    for projection, keys in touched:
        for key in keys:
            projection.restore(session, key)
    for twin_id, brand in pairs:
        refresh_license_windows(session, twin_id, brand)
