"""Following the chain: the indexer mirrors the ledger's confirmed event history (and its access
manager's role events) into the store, rewinding on reorg.

Each ``step`` indexes the next range of confirmed blocks (``confirmations`` deep, counting the
block itself, as the worker does) in one store transaction: the decoded events
(``bridge.chain.events``) as ``bridge.indexer.mirror`` writes them (each settled usage with its
outcome and amount, the projections the read API serves: twins, license versions, brand accounts,
royalties and payouts), the hashes of the blocks it went through and the cursor. A crash anywhere
leaves the store at the previous cursor; re-indexing a range first deletes whatever the store
holds from its first block, so nothing is ever stored twice.

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
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from sqlalchemy import delete, exists, func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session
from web3 import Web3

from bridge.chain.client import Block, BlockTag, LogEntry, Web3ChainClient
from bridge.chain.events import LedgerEvent, decode_logs
from bridge.errors import BridgeError, ChainUnavailableError, LogRangeTooLargeError, RpcError
from bridge.indexer.mirror import MirrorWriter, delete_above
from bridge.store.models import IndexedBlock, IndexerCursor, LedgerEventRow
from bridge.store.repository import Store

log = logging.getLogger(__name__)

_AUTHORITY_UPDATED: Final = keccak(text="AuthorityUpdated(address)")
"""The ledger's ``AccessManaged`` event naming its access manager (emitted at deployment)."""
_WALK_BACK_BATCH: Final = 64
"""Stored blocks compared with the chain per query while looking for a fork point."""


class IndexerChain(Protocol):
    """What the indexer asks of the chain (``Web3ChainClient`` answers it)."""

    def block(self, tag: BlockTag = "latest") -> Block | None: ...

    def logs(
        self, *, address: str, from_block: int, to_block: int, topics: Sequence[bytes | None] = ()
    ) -> list[LogEntry]: ...

    def code(self, address: str, block: BlockTag = "latest") -> bytes: ...


def _named_manager(logs: Sequence[LogEntry]) -> str | None:
    """The access manager the last ``AuthorityUpdated`` among ``logs`` names (None if none)."""
    named = [e for e in logs if e.topics and e.topics[0] == _AUTHORITY_UPDATED]
    return to_checksum_address(named[-1].data[12:32]) if named else None


class IndexerError(BridgeError):
    """The indexer cannot go on with this store or chain."""


class IndexerConflictError(IndexerError):
    """Another indexer wrote to the store since this one read its cursor; nothing was written."""


class ChainMovedError(BridgeError):
    """The chain changed under a range while it was read; the range is read again next step."""


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


def _summary(read: _Range) -> str:
    """``blocks 100-120: 3 UsagesSettled, 1 DebtRecorded``: the events by kind, most first."""
    blocks = (
        f"block {read.first}" if read.first == read.last else f"blocks {read.first}-{read.last}"
    )
    kinds = Counter(event.name for event in read.events).most_common()
    return f"{blocks}: " + (", ".join(f"{n} {name}" for name, n in kinds) or "no events")


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
        manager_address: the ledger's access manager, whose role events are mirrored too (None:
            the one the ledger's ``AuthorityUpdated`` event names, from the range holding it on;
            its grants in blocks before the ledger's deployment are not indexed).
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
        manager_address: str | None = None,
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
        self.manager = None if manager_address is None else to_checksum_address(manager_address)
        """The access manager whose role events are indexed (None until known)."""

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
        end, before, logs = self._logs_from(first, last)
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
        manager = self.manager or self._stored_manager() or _named_manager(logs)
        events = decode_logs(logs, ledger=self.ledger, manager=manager)
        return _Range(first, end, events, headers)

    def _logs_from(self, first: int, last: int) -> tuple[int, Block, list[LogEntry]]:
        """The ledger's logs from ``first`` to at most ``last``, as many blocks as the node answers
        for: the range's last block, its header (read before the logs) and the logs.

        The range halves while the node refuses it, and doubles after a full one (up to
        ``max_block_range``)."""
        while True:
            end = min(last, first + self.block_range - 1)
            before = self._header(end)
            try:
                logs = self._chain.logs(address=self.ledger, from_block=first, to_block=end)
                logs += self._manager_logs(first, end, logs)
            except LogRangeTooLargeError as exc:
                if end == first:
                    raise
                self.block_range = max(1, (end - first + 1) // 2)
                log.info("eth_getLogs refused %d blocks (%s); asking for %d", end - first + 1,
                         exc.message, self.block_range)  # fmt: skip
                continue
            if end - first + 1 >= self.block_range:
                self.block_range = min(self.max_block_range, self.block_range * 2)
            return end, before, logs

    def _manager_logs(
        self, first: int, end: int, ledger_logs: Sequence[LogEntry]
    ) -> list[LogEntry]:
        """The access manager's logs of [first, end]; from ``start_block`` on when the range's
        ledger logs name it first (its deployment and first grants precede the ledger's)."""
        known = self.manager or self._stored_manager()
        manager = _named_manager(ledger_logs) or known
        if manager is None:
            return []
        since = first if manager == known else self.start_block
        return self._chain.logs(address=manager, from_block=since, to_block=end)

    def _stored_manager(self) -> str | None:
        """The access manager the stored ledger events last named (None if none)."""
        with self._store.session() as session:
            args = session.scalars(
                select(LedgerEventRow.args)
                .where(LedgerEventRow.name == "AuthorityUpdated")
                .order_by(LedgerEventRow.block_number.desc(), LedgerEventRow.log_index.desc())
                .limit(1)
            ).first()
        if args is not None:
            self.manager = to_checksum_address(str(args["authority"]))
        return self.manager

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
        # Ranges without events at DEBUG: an idle chain would fill the log with them.
        log.log(logging.INFO if read.events else logging.DEBUG, "indexed %s", _summary(read))

    def _write_range(self, session: Session, read: _Range, tip: _Tip | None) -> None:
        cursor = self._lock_cursor(session, tip)
        highest = session.scalar(select(func.max(IndexedBlock.number)))
        if highest is not None and highest >= read.first:  # a range indexed before
            delete_above(session, read.first - 1)
        for block in read.headers.values():
            row = IndexedBlock(
                number=block.number,
                hash=block.hash,
                parent_hash=block.parent_hash,
                timestamp=block.timestamp,
            )
            # A block below the range holds access manager events read late (see _manager_logs).
            if block.number < read.first:
                session.merge(row)
            else:
                session.add(row)
        writer = MirrorWriter(session, read.headers)
        for event in read.events:
            writer.apply(event)
        self._forget_empty_blocks(session, read)
        end = read.headers[read.last]
        if cursor is None:
            session.add(
                IndexerCursor(ledger=self.ledger, block_number=end.number, block_hash=end.hash)
            )
        else:
            cursor.block_number, cursor.block_hash = end.number, end.hash

    def _forget_empty_blocks(self, session: Session, read: _Range) -> None:
        """Forgets the range ends without events that fell out of the recent window
        (``keep_empty_blocks``); the window moves with the ranges, so each block is looked at
        once."""
        session.execute(
            delete(IndexedBlock).where(
                IndexedBlock.number >= read.first - self.keep_empty_blocks,
                IndexedBlock.number < read.last + 1 - self.keep_empty_blocks,
                ~exists().where(LedgerEventRow.block_number == IndexedBlock.number),
            )
        )

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
