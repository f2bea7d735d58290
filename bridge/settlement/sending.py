"""The relayer's transactions: nonces, fees (``bridge.domain.fees.FeePolicy``), signing, and the
durable send. A transaction is stored signed before it is broadcast, so a resend is the same bytes;
a stuck one is replaced with the same nonce and calldata and bumped fees, stored first too."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from eth_account.typed_transactions.typed_transaction import TypedTransaction
from hexbytes import HexBytes

from bridge.chain.client import Receipt
from bridge.domain.fees import FeePolicy, Fees
from bridge.errors import (
    FeeTooLowError,
    NonceTooLowError,
    ReplacementUnderpricedError,
    TransactionAlreadyKnownError,
)
from bridge.settlement.context import WorkerContext
from bridge.settlement.recognition import Recogniser
from bridge.store import settlement
from bridge.store.settlement import BatchRecord, NewBatch

log = logging.getLogger(__name__)

GAS_MARGIN_PERCENT: Final = 25
"""Head room over the gas estimate (the estimate runs against a block that may differ)."""


@dataclass(frozen=True, slots=True)
class Payload:
    """What a new relayer transaction carries: a usage batch or an owner action."""

    digest: str
    deadline: int
    calldata: bytes
    signature: bytes
    groups: Sequence[tuple[str, Sequence[int]]] = ()
    usage_ids: Sequence[int] = ()
    action_id: int | None = None
    """An owner action's id; its calldata is stored (a usage batch's is rebuilt from its groups)."""


def describe(batch: BatchRecord) -> str:
    """How the logs name a relayer transaction: by its usage batch, or by the owner action it
    carries (whose transaction is a batch without usages)."""
    if batch.action_id is None:
        return f"batch {batch.id}"
    return f"owner action {batch.action_id} (transaction {batch.id})"


class Sender:
    """Signs, stores and sends the relayer's transactions to the ledger."""

    def __init__(self, context: WorkerContext, policy: FeePolicy) -> None:
        self._context = context
        self._policy = policy
        self.recogniser = Recogniser(context.chain, context.ledger)

    def next_nonce(self) -> int:
        """The nonce of a new transaction. No batch of ours is open, so every nonce we used is
        mined and the chain's pending count is the next free one; the durable record is checked
        against it."""
        context = self._context
        on_chain = context.chain.pending_nonce(context.relayer.address)
        with context.store.session() as session:
            recorded = settlement.recorded_nonce(session, context.relayer.address)
        if recorded is not None and recorded != on_chain:
            log.warning(
                "relayer %s: recorded next nonce %d, chain says %d; using the chain's",
                context.relayer.address, recorded, on_chain,
            )  # fmt: skip
        return on_chain

    def open(self, nonce: int, gas_estimate: int, payload: Payload) -> BatchRecord:
        """Signs the transaction of ``payload`` at the fees of now and stores it (status
        ``signed``); nothing is sent yet."""
        gas_limit = gas_estimate + gas_estimate * GAS_MARGIN_PERCENT // 100
        fees = self._fees()
        raw_tx, tx_hash = self._sign(nonce=nonce, data=payload.calldata, gas=gas_limit, fees=fees)
        new = NewBatch(
            relayer=self._context.relayer.address,
            nonce=nonce,
            digest=payload.digest,
            deadline=payload.deadline,
            groups=payload.groups,
            signature=payload.signature,
            raw_tx=raw_tx,
            tx_hash=tx_hash,
            gas_limit=gas_limit,
            max_fee_per_gas=fees.max_fee,
            max_priority_fee_per_gas=fees.priority,
            usage_ids=payload.usage_ids,
            calldata=None if payload.action_id is None else payload.calldata,
            action_id=payload.action_id,
        )
        with self._context.store.session() as session:
            return settlement.create_batch(session, new, lease=self._context.lease)

    def _fees(self) -> Fees:
        fee_data = self._context.chain.fee_data()
        if not self._policy.payable(fee_data.base_fee):
            log.warning(
                "fee cap %d wei is below the base fee %d wei", self._policy.cap, fee_data.base_fee
            )
        return self._policy.fees(base_fee=fee_data.base_fee, tip=fee_data.priority_fee)

    def _sign(self, *, nonce: int, data: bytes, gas: int, fees: Fees) -> tuple[bytes, str]:
        """The relayer's signed EIP-1559 transaction to the ledger and its hash."""
        context = self._context
        tx: dict[str, Any] = {
            "type": 2,
            "chainId": context.chain_id(),
            "nonce": nonce,
            "to": context.ledger,
            "value": 0,
            "data": data,
            "gas": gas,
            "maxFeePerGas": fees.max_fee,
            "maxPriorityFeePerGas": fees.priority,
        }
        signed = context.relayer.sign_transaction(tx)
        return bytes(signed.raw_transaction), signed.hash.to_0x_hex()

    def send(self, batch: BatchRecord, event: str) -> bool:
        """Broadcasts the batch's stored transaction and marks it sent; ``event`` is what the send
        counts as (``BATCH_EVENTS``). False when the node refused it for paying less than the
        base fee: it is marked sent all the same, and the next step replaces it."""
        context = self._context
        try:
            context.chain.send_raw_transaction(batch.raw_tx)
        except FeeTooLowError as exc:
            log.warning("batch %d: tx %s not taken: %s", batch.id, batch.tx_hash, exc.message)
            self.mark_sent(batch)
            return False
        except TransactionAlreadyKnownError:
            log.info("batch %d: tx %s already known to the node", batch.id, batch.tx_hash)
        except ReplacementUnderpricedError as exc:
            # Another transaction with this nonce is pending: an earlier one of this batch (the
            # next replacement bumps further) or a stranger's, which "nonce too low" will reveal.
            log.warning("batch %d: tx %s not taken: %s", batch.id, batch.tx_hash, exc.message)
        except NonceTooLowError:
            # Possibly mined (ours) or the nonce went to another transaction: ask the chain.
            if self.receipt(batch) is None and context.chain.transaction(batch.tx_hash) is None:
                self.fail_unless_settled_elsewhere(
                    batch, f"nonce {batch.nonce} was used by another transaction"
                )
                return True
            log.info("batch %d: nonce %d used by our own tx", batch.id, batch.nonce)
        self.mark_sent(batch)
        context.metrics.batches.labels(event).inc()
        usages = "" if batch.action_id is not None else f"{batch.usage_count} usages, "
        log.info(
            "%s %s: %snonce %d, tx %s", describe(batch), event, usages, batch.nonce, batch.tx_hash
        )
        context.crash("after_sending")
        return True

    def fail_unless_settled_elsewhere(
        self,
        batch: BatchRecord,
        error: str,
        *,
        own: Receipt | None = None,
        counts_attempt: bool = False,
    ) -> None:
        """Fails the batch (``WorkerContext.fail``) unless another transaction settled its signed
        usages (at or below the block of ``own``, its reverted receipt, if any): then the batch
        follows that transaction's receipt (``mined``), and its usages end settled or rejected
        with it. The gas the batch records stays what the relayer paid (``own``'s)."""
        up_to = None if own is None else own.block_number
        elsewhere = self.recogniser.settled_elsewhere(batch, up_to=up_to)
        if elsewhere is None:
            self._context.fail(batch, error, counts_attempt=counts_attempt)
            return
        log.warning(
            "batch %d: %s, but tx %s settled the batch: following it",
            batch.id, error, elsewhere.tx_hash,
        )  # fmt: skip
        self.mark_mined(batch, elsewhere, gas_used=0 if own is None else own.gas_used)
        self._context.metrics.batches.labels("settled_elsewhere").inc()

    def mark_mined(
        self, batch: BatchRecord, receipt: Receipt, *, gas_used: int | None = None
    ) -> None:
        """The batch is mined in ``receipt`` (its own transaction's or the one that settled it);
        ``gas_used``: what the relayer paid, when that was not ``receipt``'s."""
        with self._context.store.session() as session:
            settlement.mark_mined(
                session,
                batch.id,
                tx_hash=receipt.tx_hash,
                block_number=receipt.block_number,
                block_hash=receipt.block_hash,
                gas_used=receipt.gas_used if gas_used is None else gas_used,
                lease=self._context.lease,
            )

    def mark_sent(self, batch: BatchRecord) -> None:
        with self._context.store.session() as session:
            settlement.mark_sent(
                session, batch.id, at=self._context.clock(), lease=self._context.lease
            )

    def receipt(self, batch: BatchRecord) -> Receipt | None:
        """The receipt of any of the batch's transactions: the one it follows (its latest, or the
        one that settled it for it), the first and its replacements."""
        for tx_hash in dict.fromkeys((batch.tx_hash, *batch.tx_hashes)):
            receipt = self._context.chain.receipt(tx_hash)
            if receipt is not None:
                return receipt
        return None

    def replace(self, batch: BatchRecord) -> bool:
        """Replaces the stuck transaction: same nonce and calldata, fees up by at least 10 % (more
        if the network asks for more), never above the cap. Stored before it is sent."""
        context = self._context
        fee_data = context.chain.fee_data()
        fees = self._policy.bump(
            Fees(max_fee=batch.max_fee_per_gas, priority=batch.max_priority_fee_per_gas),
            base_fee=fee_data.base_fee,
            tip=fee_data.priority_fee,
        )
        if fees is None:
            log.warning(
                "batch %d: tx %s is stuck but a 10%% fee bump would pass the cap of %d wei",
                batch.id, batch.tx_hash, self._policy.cap,
            )  # fmt: skip
            return False
        # The replacement carries the stored transaction's calldata byte for byte.
        data = bytes(TypedTransaction.from_bytes(HexBytes(batch.raw_tx)).as_dict()["data"])
        raw_tx, tx_hash = self._sign(nonce=batch.nonce, data=data, gas=batch.gas_limit, fees=fees)
        with context.store.session() as session:
            replacement = settlement.replace_tx(
                session,
                batch.id,
                raw_tx=raw_tx,
                tx_hash=tx_hash,
                max_fee_per_gas=fees.max_fee,
                max_priority_fee_per_gas=fees.priority,
                at=context.clock(),
                lease=context.lease,
            )
        log.info(
            "batch %d: replacing %s with %s (max fee %d, tip %d wei)",
            batch.id, batch.tx_hash, tx_hash, fees.max_fee, fees.priority,
        )  # fmt: skip
        return self.send(replacement, "replaced")
