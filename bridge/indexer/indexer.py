"""The indexer: mirrors the ledger's confirmed event history into the store, rewinding on reorg.

Each ``step`` indexes the next range of confirmed blocks (``confirmations`` deep, counting the
block itself, as the worker does) in one store transaction: the decoded events
(``bridge.chain.events``), each settled usage with its outcome and amount, the projections the read
API serves (twins, license versions, brand accounts, royalties and payouts), the hashes of the
blocks it went through and the cursor. A crash anywhere leaves the store at the previous cursor;
re-indexing a range first deletes whatever the store holds from its first block, so nothing is
ever stored twice.

Before each range the stored tip is compared with the chain. If its hash changed (a reorg deeper
than the confirmation depth), the indexer walks back over the stored block hashes to the newest
block the chain still has, deletes every row above it, restores the current-state tables from what
remains and indexes again from there.

The cursor row is locked and compared with the tip the range was read from in the writing
transaction, so a second indexer on the same store never writes a range twice
(``IndexerConflictError``). Everything is rebuilt from the ledger's whole history: a start block
after the ledger's deployment is refused.

``eth_getLogs`` ranges start at ``max_block_range`` blocks, halve when the node answers that a
range holds too many logs or spans too many blocks, and double back after each success.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from eth_utils.address import to_checksum_address
from sqlalchemy import delete, exists, func, insert, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session
from web3 import Web3

from bridge.chain.client import Block, BlockTag, LogEntry, Web3ChainClient
from bridge.chain.events import LedgerEvent, decode_logs, settled_usages
from bridge.domain.codec import Outcome
from bridge.errors import BridgeError, ChainUnavailableError, LogRangeTooLargeError, RpcError
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
from bridge.store.repository import Store

log = logging.getLogger(__name__)

ZERO_ADDRESS: Final = "0x0000000000000000000000000000000000000000"
_WALK_BACK_BATCH: Final = 64
"""Stored blocks compared with the chain per query while looking for a fork point."""


class IndexerChain(Protocol):
    """What the indexer asks of the chain (``Web3ChainClient`` answers it)."""

    def block(self, tag: BlockTag = "latest") -> Block | None: ...

    def logs(
        self, *, address: str, from_block: int, to_block: int, topics: Sequence[bytes | None] = ()
    ) -> list[LogEntry]: ...

    def code(self, address: str, block: BlockTag = "latest") -> bytes: ...


class IndexerError(BridgeError):
    """The indexer cannot go on with this store or chain."""


class IndexerConflictError(IndexerError):
    """Another indexer wrote to the store since this one read its cursor; nothing was written."""


class ChainMovedError(BridgeError):
    """The chain changed under a range while it was read; the range is read again next step."""


# ---------------------------------------------------------------- license windows


@dataclass(slots=True)
class _Window:
    start: int
    end: int
    revoked: bool = False

    def end_at(self, at: int, *, revoked: bool) -> None:
        """``LicenseCodec.endedAt``: a window running past ``at`` ends there (an unstarted one
        becomes empty at ``at``)."""
        if self.end > at:
            self.end = at
            self.start = min(self.start, at)
            self.revoked = self.revoked or revoked


def license_windows(
    actions: Iterable[tuple[str, int, int, int]],
) -> dict[int, tuple[int, int, bool]]:
    """The effective window and revocation flag of each version of one (twin, brand) pair.

    ``actions`` are in log order: ``("grant", version, valid_from, valid_until)`` or
    ``("revoke", 0, revoked_at, 0)``. A grant ends every earlier version still running at its
    start, a revocation every version running at its time, as ``LicenseBook`` does.

    Returns:
        version -> (effective_from, effective_until, revoked)
    """
    windows: dict[int, _Window] = {}
    for kind, version, at, until in actions:
        for window in windows.values():
            window.end_at(at, revoked=kind == "revoke")
        if kind == "grant":
            windows[version] = _Window(at, until)
    return {v: (w.start, w.end, w.revoked) for v, w in windows.items()}


@dataclass(frozen=True, slots=True)
class PricedVersion:
    """A license version of one (twin, brand) pair as far as pricing needs it."""

    version: int
    valid_from: int
    prices: dict[int, int]
    position: tuple[int, int]
    """(block, log index) of the grant."""


def covering_version(
    versions: Sequence[PricedVersion], *, at: int, before: tuple[int, int]
) -> PricedVersion | None:
    """The version that priced a paid use at ``at`` settled at log position ``before``: the newest
    version granted before it that starts at or before ``at`` (a later grant ends every earlier
    version at its own start, so no other can still cover ``at``)."""
    eligible = [v for v in versions if v.position < before and v.valid_from <= at]
    return max(eligible, key=lambda v: v.version, default=None)


# ---------------------------------------------------------------- the indexer


@dataclass(frozen=True, slots=True)
class _Tip:
    """The last indexed block as the cursor holds it."""

    block_number: int
    block_hash: str


@dataclass
class _Range:
    """What one step writes: the events of [first, last] and the headers of the blocks read."""

    first: int
    last: int
    events: list[LedgerEvent]
    headers: dict[int, Block]


@dataclass
class _Writer:
    """Applies the events of one range to the store, in one session."""

    session: Session
    headers: dict[int, Block]
    versions: dict[tuple[int, str], list[PricedVersion]] = field(default_factory=dict)
    shortfall: defaultdict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    """(tx hash, brand) -> debt recorded since the brand's last ``UsagesSettled`` in that tx."""

    def time_of(self, event: LedgerEvent) -> datetime:
        return datetime.fromtimestamp(self.headers[event.block_number].timestamp, UTC)

    def where(self, event: LedgerEvent) -> dict[str, Any]:
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
                block_number=event.block_number,
                log_index=event.log_index,
                block_hash=event.block_hash,
                tx_hash=event.tx_hash,
                block_time=self.time_of(event),
                name=event.name,
                twin_id=twin if isinstance(twin, int) else None,
                brand=brand if isinstance(brand, str) else None,
                args=event.json_args(),
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
                owner=row.owner,
                uri=row.uri,
                consent_hash=row.consent_hash,
                paused=row.paused,
                paused_since=row.paused_since,
                payees=list(row.payees),
                minted_block=row.minted_block,
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

    def license_granted(self, event: LedgerEvent) -> None:
        twin, brand = event.int_arg("twinId"), event.str_arg("brand")
        prices = event.json_args()["prices"]
        self.session.add(
            LicenseVersionRow(
                twin_id=twin,
                brand=brand,
                version=event.int_arg("version"),
                valid_from=event.int_arg("validFrom"),
                valid_until=event.int_arg("validUntil"),
                max_uses=event.int_arg("maxUses"),
                purpose_hash=event.str_arg("purposeHash"),
                consent_hash=event.str_arg("consentHash"),
                prices=[{"usageType": p["usageType"], "price": p["price"]} for p in prices],
                effective_from=event.int_arg("validFrom"),
                effective_until=event.int_arg("validUntil"),
                revoked=False,
                **self.where(event),
            )
        )
        cached = self.versions.get((twin, brand))
        if cached is not None:
            cached.append(
                PricedVersion(
                    version=event.int_arg("version"),
                    valid_from=event.int_arg("validFrom"),
                    prices={int(p["usageType"]): int(p["price"]) for p in prices},
                    position=(event.block_number, event.log_index),
                )
            )
        self.session.flush()
        refresh_license_windows(self.session, twin, brand)

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
            rows = self.session.scalars(
                select(LicenseVersionRow).where(
                    LicenseVersionRow.twin_id == twin, LicenseVersionRow.brand == brand
                )
            )
            cached = [
                PricedVersion(
                    version=row.version,
                    valid_from=row.valid_from,
                    prices={int(p["usageType"]): int(p["price"]) for p in row.prices},
                    position=(row.block_number, row.log_index),
                )
                for row in rows
            ]
            self.versions[twin, brand] = cached
        return cached

    # ------------------------------------------------------------ settlement

    def usages_settled(self, event: LedgerEvent) -> None:
        usages = settled_usages(event)
        position = (event.block_number, event.log_index)
        rows: list[dict[str, Any]] = []
        total = 0
        for usage in usages:
            amount: int | None = None
            version: int | None = None
            if usage.outcome is Outcome.PAID:
                covering = covering_version(
                    self._versions(usage.twin_id, usage.brand), at=usage.used_at, before=position
                )
                price = None if covering is None else covering.prices.get(usage.usage_type)
                if covering is not None and price is not None:
                    amount, version = price * usage.quantity, covering.version
                    total += amount
            rows.append(
                {
                    "usage_id": usage.usage_id,
                    "brand": usage.brand,
                    "twin_id": usage.twin_id,
                    "used_at": datetime.fromtimestamp(usage.used_at, UTC),
                    "quantity": usage.quantity,
                    "usage_type": usage.usage_type,
                    "outcome": int(usage.outcome),
                    "amount": amount,
                    "license_version": version,
                    "batch_digest": usage.batch_digest,
                    "attester": usage.attester,
                    "position": usage.position,
                    **self.where(event),
                }
            )
        paid = event.int_arg("paid")
        if total != paid:
            # The license history in the store does not explain the ledger's total: store no
            # amount rather than a wrong one (the event's own total stays in ledger_events).
            log.error(
                "UsagesSettled in tx %s (log %d): priced %d, the ledger paid %d; amounts left out",
                event.tx_hash, event.log_index, total, paid,
            )  # fmt: skip
            for row in rows:
                row["amount"] = row["license_version"] = None
        if rows:
            self.session.execute(insert(SettledUsageRow), rows)
        brand = event.str_arg("brand")
        funded = paid - self.shortfall.pop((event.tx_hash, brand), 0)
        self._brand(event, brand, escrow_delta=-funded)

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
                escrow=row.escrow,
                debt=row.debt,
                debt_reserve=row.debt_reserve,
                pending_withdrawal=row.pending_withdrawal,
                withdrawal_unlocks_at=row.withdrawal_unlocks_at,
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
        self.shortfall[event.tx_hash, brand] += amount
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


_HANDLERS: Final[dict[str, Callable[[_Writer, LedgerEvent], None]]] = {
    "TwinMinted": _Writer.twin_minted,
    "Transfer": _Writer.transfer,
    "TwinPaused": _Writer.twin_paused,
    "TwinUnpaused": _Writer.twin_unpaused,
    "PayeesSet": _Writer.payees_set,
    "LicenseGranted": _Writer.license_granted,
    "LicenseRevoked": _Writer.license_revoked,
    "UsagesSettled": _Writer.usages_settled,
    "EscrowDeposited": _Writer.escrow_deposited,
    "DebtRecorded": _Writer.debt_recorded,
    "DebtRepaid": _Writer.debt_repaid,
    "EscrowWithdrawalRequested": _Writer.withdrawal_requested,
    "EscrowWithdrawalCancelled": _Writer.withdrawal_cancelled,
    "EscrowWithdrawn": _Writer.escrow_withdrawn,
    "RoyaltiesDistributed": _Writer.royalties_distributed,
    "PayeePaid": _Writer.payee_paid,
}
"""Event name -> the projection it updates; every event also lands in ``ledger_events``."""


def refresh_license_windows(session: Session, twin: int, brand: str) -> None:
    """Recomputes the effective windows of the pair's versions from its grants and revocations."""
    versions = list(
        session.scalars(
            select(LicenseVersionRow).where(
                LicenseVersionRow.twin_id == twin, LicenseVersionRow.brand == brand
            )
        )
    )
    revocations = session.scalars(
        select(LicenseRevocation).where(
            LicenseRevocation.twin_id == twin, LicenseRevocation.brand == brand
        )
    )
    actions = sorted(
        [((v.block_number, v.log_index), ("grant", v.version, v.valid_from, v.valid_until))
         for v in versions]
        + [((r.block_number, r.log_index), ("revoke", 0, r.revoked_at, 0)) for r in revocations]
    )  # fmt: skip
    windows = license_windows(action for _, action in actions)
    for row in versions:
        row.effective_from, row.effective_until, row.revoked = windows[row.version]


_BLOCK_TABLES: Final = (
    LedgerEventRow,
    SettledUsageRow,
    TwinChange,
    LicenseVersionRow,
    LicenseRevocation,
    BrandAccountChange,
    RoyaltyDistribution,
    PayeePayout,
)
"""Tables whose rows come from the event at ``block_number``."""


def delete_above(session: Session, block: int) -> None:
    """Deletes every indexed row of the blocks after ``block`` and restores the current-state
    tables (twins, brand accounts, license windows) to what the remaining rows say."""
    twins = set(session.scalars(select(TwinChange.twin_id).where(TwinChange.block_number > block)))
    brands = set(
        session.scalars(
            select(BrandAccountChange.brand).where(BrandAccountChange.block_number > block)
        )
    )
    pairs: set[tuple[int, str]] = set()
    for source in (LicenseVersionRow, LicenseRevocation):
        rows = session.execute(
            select(source.twin_id, source.brand).where(source.block_number > block)
        )
        pairs.update((twin_id, brand) for twin_id, brand in rows)
    for table in _BLOCK_TABLES:
        session.execute(delete(table).where(table.block_number > block))
    session.execute(delete(IndexedBlock).where(IndexedBlock.number > block))
    for twin_id in twins:
        _restore_twin(session, twin_id)
    for brand in brands:
        _restore_brand(session, brand)
    for twin_id, brand in pairs:
        refresh_license_windows(session, twin_id, brand)


def _restore_twin(session: Session, twin_id: int) -> None:
    last = session.scalars(
        select(TwinChange)
        .where(TwinChange.twin_id == twin_id)
        .order_by(TwinChange.block_number.desc(), TwinChange.log_index.desc())
        .limit(1)
    ).first()
    session.execute(delete(TwinRow).where(TwinRow.twin_id == twin_id))
    if last is not None:
        session.add(
            TwinRow(
                twin_id=twin_id,
                owner=last.owner,
                uri=last.uri,
                consent_hash=last.consent_hash,
                paused=last.paused,
                paused_since=last.paused_since,
                payees=list(last.payees),
                minted_block=last.minted_block,
                updated_block=last.block_number,
            )
        )


def _restore_brand(session: Session, brand: str) -> None:
    last = session.scalars(
        select(BrandAccountChange)
        .where(BrandAccountChange.brand == brand)
        .order_by(BrandAccountChange.block_number.desc(), BrandAccountChange.log_index.desc())
        .limit(1)
    ).first()
    session.execute(delete(BrandAccountRow).where(BrandAccountRow.brand == brand))
    if last is not None:
        session.add(
            BrandAccountRow(
                brand=brand,
                escrow=last.escrow,
                debt=last.debt,
                debt_reserve=last.debt_reserve,
                pending_withdrawal=last.pending_withdrawal,
                withdrawal_unlocks_at=last.withdrawal_unlocks_at,
                updated_block=last.block_number,
            )
        )


class Indexer:
    """Follows the ledger's confirmed events into the store; see the module docstring.

    Args:
        store: the bridge's (migrated) store.
        chain: a chain client (``Web3ChainClient`` with its RPC fail-over) or a ``Web3`` on an
            HTTP provider.
        ledger_address: the ``TwinLedger`` to follow.
        confirmations: blocks on top of a block, counting itself, before it is indexed (0 and 1
            both mean the latest block).
        start_block: the first block to index when the store has no cursor: the ledger's
            deployment block or earlier (a later one is refused, see ``step``).
        max_block_range: the most blocks one ``eth_getLogs`` asks for.
    """

    def __init__(
        self,
        store: Store,
        chain: IndexerChain | Web3,
        *,
        ledger_address: str,
        confirmations: int = 1,
        start_block: int = 0,
        max_block_range: int = 2_000,
    ) -> None:
        if confirmations < 0 or start_block < 0 or max_block_range < 1:
            raise ValueError("confirmations and start_block must be >= 0, max_block_range >= 1")
        if isinstance(chain, Web3):
            chain = Web3ChainClient([str(chain.provider.endpoint_uri)])  # type: ignore[attr-defined]
        self._store = store
        self._chain: IndexerChain = chain
        self.ledger = to_checksum_address(ledger_address)
        self.confirmations = confirmations
        self.start_block = start_block
        self.max_block_range = max_block_range
        self.block_range = max_block_range
        """The range the next ``eth_getLogs`` asks for (shrinks on node limits, grows back)."""
        self.keep_empty_blocks = 256
        """Range ends without ledger events are kept this many blocks below the newest one (they
        only serve the search for a fork point); blocks with events are kept for good."""
        self._history_checked = False

    # ------------------------------------------------------------ loop

    def run(self, stop: threading.Event, poll_s: float = 1.0) -> None:
        """Steps until ``stop`` is set, waiting ``poll_s`` whenever it is caught up; chain and
        store hiccups are logged and retried."""
        log.info("indexer of ledger %s started", self.ledger)
        while not stop.is_set():
            try:
                advanced = self.step()
            except (
                ChainUnavailableError,
                RpcError,
                OperationalError,
                ChainMovedError,
                IndexerConflictError,
            ) as exc:
                log.warning("indexer step failed, retrying: %s", exc)
                advanced = 0
            if advanced == 0:
                stop.wait(poll_s)
        log.info("indexer of ledger %s stopped at block %s", self.ledger, self.cursor())

    def catch_up(self, *, max_steps: int = 10_000) -> int:
        """Steps until no confirmed block is left to index; the blocks advanced in all."""
        total = 0
        for _ in range(max_steps):
            advanced = self.step()
            if advanced == 0:
                break
            total += advanced
        return total

    def cursor(self) -> int | None:
        """The last indexed block, None before the first range."""
        with self._store.session() as session:
            row = session.get(IndexerCursor, self.ledger)
            return None if row is None else row.block_number

    # ------------------------------------------------------------ one step

    def step(self) -> int:
        """Rewinds if the stored tip left the chain, then indexes the next confirmed range in one
        transaction; the number of blocks indexed (0: nothing confirmed is left).

        Raises:
            ChainMovedError: the chain changed while the range was read (nothing was written).
            IndexerConflictError: another indexer moved the cursor meanwhile (nothing was written).
            IndexerError: the store follows another ledger, or ``start_block`` is after the
                ledger's deployment.
        """
        tip = self._tip()
        if tip is None:
            self._check_whole_history()
        else:
            onchain = self._chain.block(tip.block_number)
            if onchain is None or onchain.hash != tip.block_hash:
                tip = self._rewind(tip)
        first = self.start_block if tip is None else tip.block_number + 1
        latest = self._chain.block("latest")
        if latest is None:
            return 0
        safe = latest.number - max(self.confirmations, 1) + 1
        if safe < first:
            return 0
        read = self._read(first, min(safe, first + self.block_range - 1), tip)
        self._write(read, tip)
        return read.last - read.first + 1

    def _tip(self) -> _Tip | None:
        with self._store.session() as session:
            other = session.scalars(
                select(IndexerCursor.ledger).where(IndexerCursor.ledger != self.ledger)
            ).first()
            if other is not None:
                raise IndexerError(f"the store indexes ledger {other}, not {self.ledger}")
            cursor = session.get(IndexerCursor, self.ledger)
            return None if cursor is None else _Tip(cursor.block_number, cursor.block_hash)

    def _check_whole_history(self) -> None:
        """Refuses a start block after the ledger's deployment: twins, license prices and
        balances are rebuilt from every event since, and would be wrong without the first ones.

        Raises:
            IndexerError: the ledger has code before ``start_block``.
        """
        if self.start_block == 0 or self._history_checked:
            return
        try:
            code = self._chain.code(self.ledger, self.start_block - 1)
        except RpcError as exc:  # a node without the state of old blocks
            log.warning("cannot check that the ledger is younger than block %d: %s",
                        self.start_block, exc)  # fmt: skip
            code = b""
        if code:
            raise IndexerError(
                f"ledger {self.ledger} exists before block {self.start_block}: start from its "
                "deployment block (the indexer rebuilds twins, licenses and balances from every "
                "event since)"
            )
        self._history_checked = True

    def _lock_cursor(self, session: Session, expected: _Tip | None) -> IndexerCursor | None:
        """The cursor row, locked until the transaction ends, if it is still at ``expected``.

        Raises:
            IndexerConflictError: it moved.
        """
        cursor = session.scalars(
            select(IndexerCursor).where(IndexerCursor.ledger == self.ledger).with_for_update()
        ).first()
        found = None if cursor is None else _Tip(cursor.block_number, cursor.block_hash)
        if found != expected:
            raise IndexerConflictError(f"the cursor moved from {expected} to {found}")
        return cursor

    def _read(self, first: int, last: int, tip: _Tip | None) -> _Range:
        """The ledger's logs of [first, last] (fewer blocks if the node refuses the range) with
        the headers of their blocks, checked to be one chain that still extends ``tip``."""
        while True:
            end = min(last, first + self.block_range - 1)
            before = self._header(end)
            try:
                logs = self._chain.logs(address=self.ledger, from_block=first, to_block=end)
            except LogRangeTooLargeError as exc:
                if end == first:
                    raise
                self.block_range = max(1, (end - first + 1) // 2)
                log.info("eth_getLogs refused %d blocks (%s); asking for %d", end - first + 1,
                         exc.message, self.block_range)  # fmt: skip
                continue
            if end - first + 1 >= self.block_range:
                self.block_range = min(self.max_block_range, self.block_range * 2)
            break
        headers = {end: before}
        for number in sorted({entry.block_number for entry in logs} - {end}):
            headers[number] = self._header(number)
        moved = [e for e in logs if headers[e.block_number].hash != e.block_hash]
        if self._header(end).hash != before.hash or moved:
            raise ChainMovedError(f"blocks {first}-{end} changed while they were read")
        if tip is not None:
            still = self._chain.block(tip.block_number)
            if still is None or still.hash != tip.block_hash:
                raise ChainMovedError(f"block {tip.block_number} left the chain during the read")
        return _Range(first, end, decode_logs(logs, ledger=self.ledger), headers)

    def _header(self, number: int) -> Block:
        block = self._chain.block(number)
        if block is None:
            raise ChainMovedError(f"block {number} is gone")
        return block

    def _write(self, read: _Range, tip: _Tip | None) -> None:
        try:
            with self._store.session() as session, session.begin():
                self._write_range(session, read, tip)
        except IntegrityError as exc:
            if tip is not None:
                raise
            # Two first ranges at once: the other one's rows and cursor were committed first.
            raise IndexerConflictError("another indexer wrote the first range") from exc
        if read.events:
            log.info("indexed blocks %d-%d: %d events", read.first, read.last, len(read.events))

    def _write_range(self, session: Session, read: _Range, tip: _Tip | None) -> None:
        cursor = self._lock_cursor(session, tip)
        highest = session.scalar(select(func.max(IndexedBlock.number)))
        if highest is not None and highest >= read.first:  # a range indexed before
            delete_above(session, read.first - 1)
        for block in read.headers.values():
            session.add(
                IndexedBlock(
                    number=block.number,
                    hash=block.hash,
                    parent_hash=block.parent_hash,
                    timestamp=block.timestamp,
                )
            )
        writer = _Writer(session, read.headers)
        for event in read.events:
            writer.apply(event)
        end = read.headers[read.last]
        # Forget the range ends without events that fell out of the recent window; the window
        # moves with the ranges, so each block is looked at once.
        session.execute(
            delete(IndexedBlock).where(
                IndexedBlock.number >= read.first - self.keep_empty_blocks,
                IndexedBlock.number < read.last + 1 - self.keep_empty_blocks,
                ~exists().where(LedgerEventRow.block_number == IndexedBlock.number),
            )
        )
        if cursor is None:
            session.add(
                IndexerCursor(ledger=self.ledger, block_number=end.number, block_hash=end.hash)
            )
        else:
            cursor.block_number, cursor.block_hash = end.number, end.hash

    # ------------------------------------------------------------ reorgs

    def _rewind(self, tip: _Tip) -> _Tip | None:
        """Deletes everything above the newest stored block the chain still has; the new tip."""
        fork = self._common_ancestor(tip.block_number)
        with self._store.session() as session, session.begin():
            cursor = self._lock_cursor(session, tip)
            assert cursor is not None  # noqa: S101 - equal to ``tip``
            if fork is None:
                delete_above(session, -1)
                session.delete(cursor)
                log.warning("reorg below every indexed block: indexing again from the start")
                return None
            delete_above(session, fork.number)
            cursor.block_number, cursor.block_hash = fork.number, fork.hash
        log.warning(
            "reorg: block %d left the chain, rewound to block %d", tip.block_number, fork.number
        )
        return _Tip(fork.number, fork.hash)

    def _common_ancestor(self, below: int) -> IndexedBlock | None:
        """The newest stored block at or below ``below`` whose hash the chain still has."""
        while True:
            with self._store.session() as session:
                batch = list(
                    session.scalars(
                        select(IndexedBlock)
                        .where(IndexedBlock.number <= below)
                        .order_by(IndexedBlock.number.desc())
                        .limit(_WALK_BACK_BATCH)
                    )
                )
            if not batch:
                return None
            for stored in batch:
                onchain = self._chain.block(stored.number)
                if onchain is not None and onchain.hash == stored.hash:
                    return stored
            below = batch[-1].number - 1
