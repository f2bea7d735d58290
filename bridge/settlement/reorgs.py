"""Reorgs deeper than the confirmation depth: confirmed batches mined in the last
``reorg_watch_blocks`` blocks are checked still to be in their blocks; a batch mined again
elsewhere follows its new receipt, one in no block is sent again with its stored bytes and nonce
(the ledger pays a usage id once)."""

from __future__ import annotations

import logging

from bridge.chain.client import Block, Receipt
from bridge.errors import ChainUnavailableError
from bridge.settlement.context import WorkerContext
from bridge.settlement.outcomes import usage_results
from bridge.settlement.sending import Sender
from bridge.store import settlement
from bridge.store.settlement import BatchRecord, MinedIn

log = logging.getLogger(__name__)


class ReorgWatch:
    """Watches one worker's confirmed batches for reorgs deeper than the confirmation depth."""

    def __init__(self, context: WorkerContext, sender: Sender, *, window: int) -> None:
        self._context = context
        self._sender = sender
        self._window = window
        self._anchor: Block | None = None
        """A head under which every confirmed batch of the window was found in its block
        (None: look at them all again)."""
        self._unwatched: set[int] = set()
        """Batches confirmed since the anchor was set."""

    def reset(self) -> None:
        """Looks at every batch of the window next time (other workers may have confirmed
        batches meanwhile)."""
        self._anchor = None

    def confirmed(self, batch_id: int) -> None:
        """``batch_id`` was just confirmed: the next look includes it."""
        self._unwatched.add(batch_id)

    def check(self) -> bool:
        """Checks that the confirmed batches mined in the last ``window`` blocks are still in
        their blocks, and moves those that are not (``_recheck``); whether any moved.

        Cheap on a quiet chain: while the head is the anchor (the head of the last look that
        found everything in place), one lookup of the head. A new head costs one lookup of the
        anchor's number: if the anchor is still there, so is every block below it, and only the
        batches confirmed since are looked at; if not, every batch of the window is.
        """
        if self._window <= 0:
            return False
        head = self._context.chain.block("latest")
        if head is None:
            raise ChainUnavailableError("chain", "no latest block")
        anchor = self._anchor
        if anchor is not None and (
            head.number < anchor.number  # a node behind the last one asked: wait for it
            or (head.hash == anchor.hash and not self._unwatched)
        ):
            return False
        hashes = _BlockHashes(self._context)
        since = anchor is not None and hashes.at(anchor.number) == anchor.hash
        if since and not self._unwatched:
            self._anchor = head
            return False
        moved = self._look(head, hashes, only_unwatched=since)
        self._anchor = None if moved else head
        self._unwatched.clear()
        return moved

    def _look(self, head: Block, hashes: _BlockHashes, *, only_unwatched: bool) -> bool:
        """Rechecks the confirmed batches of the window (or only those confirmed since the anchor)
        whose block is no longer at their number; whether any moved."""
        context = self._context
        with context.store.session() as session:
            batches = settlement.confirmed_batches(
                session,
                relayer=context.relayer.address,
                from_block=head.number - self._window + 1,
                ids=sorted(self._unwatched) if only_unwatched else None,
            )
        moved = False
        for batch in batches:  # oldest first: resent transactions go out in nonce order
            assert batch.block_number is not None  # noqa: S101 - confirmed batches have a block
            if batch.block_number > head.number:
                continue  # above a head that has not grown back (yet): wait for it
            if hashes.at(batch.block_number) != batch.block_hash:
                moved = self._recheck(batch, head) or moved
        return moved

    def _recheck(self, batch: BatchRecord, head: Block) -> bool:
        """A confirmed batch whose block is no longer the block at its number; whether it moved.

        Mined again elsewhere (any of its transactions): its usages follow the new receipt, at
        once if it is deep enough, else back to submitted until it is. In no block: back to sent
        with its usages submitted, and the stored transaction is resent (its nonce is free
        again; no other transaction of ours can have taken it, since later batches' nonces
        were above it and went out of the chain with it).
        """
        receipt = self._sender.receipt(batch)
        if receipt is not None and receipt.block_hash == batch.block_hash:
            return False  # the block lookup was answered by a node seeing another chain
        if receipt is not None and receipt.status == 1:
            self._follow(batch, receipt, head)
            return True
        log.warning(
            "batch %d: a reorg took tx %s out of the chain (it was in block %s); its usages are "
            "submitted again and the transaction goes out again with nonce %d",
            batch.id, batch.tx_hash, batch.block_number, batch.nonce,
        )  # fmt: skip
        context = self._context
        with context.store.session() as session:
            reopened = settlement.reopen_batch(
                session, batch.id, at=context.clock(), lease=context.lease
            )
        context.metrics.reorged.labels("confirmed").inc()
        if receipt is None:
            self._sender.send(reopened, "resent")
        # else: mined again but reverted; the next step fails the batch from the receipt
        return True

    def _follow(self, batch: BatchRecord, receipt: Receipt, head: Block) -> None:
        """The batch's transaction was mined again in another block: its usages follow it."""
        context = self._context
        mined = MinedIn(
            tx_hash=receipt.tx_hash,
            block_number=receipt.block_number,
            block_hash=receipt.block_hash,
            gas_used=receipt.gas_used,
        )
        deep = head.number - receipt.block_number + 1 >= context.depth
        log.warning(
            "batch %d: a reorg moved tx %s from block %s (%s) to block %d (%s)%s",
            batch.id, batch.tx_hash, batch.block_number, batch.block_hash,
            receipt.block_number, receipt.block_hash,
            "" if deep else "; its usages wait for the confirmation depth again",
        )  # fmt: skip
        with context.store.session() as session:
            if deep:
                settlement.resettle_batch(
                    session,
                    batch.id,
                    mined=mined,
                    results=usage_results(context.chain, context.ledger, batch, receipt),
                    lease=context.lease,
                )
            else:
                settlement.reopen_batch(
                    session, batch.id, at=context.clock(), mined=mined, lease=context.lease
                )
        context.metrics.reorged.labels("confirmed").inc()


class _BlockHashes:
    """Block hashes by number, each asked of the chain once per look."""

    def __init__(self, context: WorkerContext) -> None:
        self._context = context
        self._hashes: dict[int, str | None] = {}

    def at(self, number: int) -> str | None:
        if number not in self._hashes:
            block = self._context.chain.block(number)
            self._hashes[number] = None if block is None else block.hash
        return self._hashes[number]
