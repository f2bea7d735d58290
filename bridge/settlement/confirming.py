"""From sent to confirmed: the receipt of a sent transaction (resent when the node forgot it,
replaced when stuck), the confirmation depth, and each usage's outcome read from the
``UsagesSettled`` events of the receipt, priced with ``priceAt`` at the settling block."""

from __future__ import annotations

import logging
from datetime import timedelta

from eth_abi.exceptions import DecodingError

from bridge.chain.client import Receipt
from bridge.chain.escrow import EscrowLedger
from bridge.domain.money import token_amount
from bridge.errors import BridgeError
from bridge.settlement.context import WorkerContext
from bridge.settlement.outcomes import usage_results
from bridge.settlement.reorgs import ReorgWatch
from bridge.settlement.sending import Sender, describe
from bridge.store import settlement
from bridge.store.settlement import BatchRecord

log = logging.getLogger(__name__)


class Confirmer:
    """Follows a worker's sent and mined transactions to their confirmed outcomes."""

    def __init__(
        self,
        context: WorkerContext,
        sender: Sender,
        watch: ReorgWatch,
        *,
        replace_after: timedelta,
    ) -> None:
        self._context = context
        self._sender = sender
        self._watch = watch
        self._replace_after = replace_after
        self._token: tuple[str, int] | None = None

    def check_sent(self, batch: BatchRecord) -> bool:
        """Looks the sent transaction up: mined (``mined``, or failed if it reverted), unknown to
        the node (resent), or stuck past ``replace_after`` (replaced)."""
        context = self._context
        context.crash("before_receipt")
        receipt = self._sender.receipt(batch)
        if receipt is None:
            return self._not_mined(batch)
        if receipt.status != 1:
            self._sender.fail_unless_settled_elsewhere(
                batch,
                f"tx {receipt.tx_hash} reverted in block {receipt.block_number}",
                own=receipt,
                counts_attempt=True,
            )
            return True
        self._sender.mark_mined(batch, receipt)
        return True

    def _not_mined(self, batch: BatchRecord) -> bool:
        context = self._context
        if all(context.chain.transaction(h) is None for h in batch.tx_hashes):
            log.warning("batch %d: tx %s unknown to the node, resending", batch.id, batch.tx_hash)
            # A node that dropped it for a base fee above its max fee takes it back only
            # with fees of now: replaced at once (nothing else holds its nonce).
            return self._sender.send(batch, "resent") or self._sender.replace(batch)
        sent_at = batch.sent_at or context.clock()
        if context.clock() - sent_at >= self._replace_after:
            return self._sender.replace(batch)
        return False

    def check_mined(self, batch: BatchRecord) -> bool:
        """Once the block is deep enough: back to sent (or to the new block) if a reorg moved the
        transaction, else the usages' outcomes are stored and the batch is confirmed."""
        assert batch.block_number is not None  # noqa: S101 - mined batches have a block
        context = self._context
        latest = context.chain.block("latest")
        if latest is None or latest.number - batch.block_number + 1 < context.depth:
            return False
        receipt = context.chain.receipt(batch.tx_hash)
        if receipt is None or receipt.block_hash != batch.block_hash:
            log.warning("batch %d: tx %s left block %s", batch.id, batch.tx_hash, batch.block_hash)
            if receipt is None:
                self._sender.mark_sent(batch)
            else:
                self._sender.mark_mined(batch, receipt)
            context.metrics.reorged.labels("mined").inc()
            return True
        self._confirm(batch, receipt)
        return True

    def _confirm(self, batch: BatchRecord, receipt: Receipt) -> None:
        context = self._context
        results = usage_results(context.chain, context.ledger, batch, receipt)
        context.crash("before_marking_settled")
        with context.store.session() as session:
            settlement.confirm_batch(session, batch.id, results=results, lease=context.lease)
        self._watch.confirmed(batch.id)
        settled = sum(1 for r in results if r.settled)
        context.metrics.batches.labels("confirmed").inc()
        context.metrics.usages.labels("settled").inc(settled)
        context.metrics.usages.labels("rejected").inc(len(results) - settled)
        if receipt.tx_hash in batch.tx_hashes:  # not the gas of a stranger who settled it
            context.metrics.gas_used.inc(receipt.gas_used)
        if batch.action_id is not None:
            log.info(
                "%s confirmed in block %d, tx %s",
                describe(batch), receipt.block_number, receipt.tx_hash,
            )  # fmt: skip
            return
        log.info(
            "batch %d: %d usages (%d paid, %d rejected) settled in block %d, tx %s, paid %s",
            batch.id, len(results), settled, len(results) - settled, receipt.block_number,
            receipt.tx_hash, self._amount(sum(r.amount or 0 for r in results)),
        )  # fmt: skip

    def _amount(self, amount: int) -> str:
        """``amount`` in the payment token's symbol and decimals, read from the chain once; in
        base units, so labelled, while the token cannot be read."""
        if self._token is None:
            try:
                info = EscrowLedger(self._context.chain, self._context.ledger).token_info()
            except (BridgeError, DecodingError) as exc:
                log.debug("payment token unreadable: %s", exc)
                return f"{amount} token base units"
            self._token = (info.symbol, info.decimals)
        return token_amount(amount, *self._token)
