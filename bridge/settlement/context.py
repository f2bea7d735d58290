"""What the settlement worker's parts share: the store and the chain, the relayer and its lease,
the clock, the metrics and the crash hook (``bridge.settlement.worker``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from eth_account.signers.local import LocalAccount

from bridge.chain.client import ChainClient
from bridge.settlement.metrics import WorkerMetrics
from bridge.store import settlement
from bridge.store.repository import Store
from bridge.store.settlement import BatchRecord

log = logging.getLogger(__name__)

CrashHook = Callable[[str], None]
"""Called with the name of each crash point the worker passes (``CRASH_POINTS``)."""


@dataclass(frozen=True)
class WorkerContext:
    """One worker's store, chain and relayer, shared by its parts.

    Every store write is fenced by ``lease`` (``LeaseLostError`` once another worker took it).
    """

    store: Store
    chain: ChainClient
    """The chain client, counting its errors in the metrics."""
    ledger: str
    relayer: LocalAccount
    lease: settlement.Lease
    clock: Callable[[], datetime]
    metrics: WorkerMetrics
    crash: CrashHook
    """The worker's crash hook (``bridge.settlement.worker.CRASH_POINTS``)."""
    chain_id: Callable[[], int]
    confirmations: int
    max_settle_attempts: int

    @property
    def depth(self) -> int:
        """The blocks a transaction's block needs (its own included) to count as confirmed."""
        return max(self.confirmations, 1)

    def fail(self, batch: BatchRecord, error: str, *, counts_attempt: bool = False) -> None:
        """Hands the batch's usages back; ``counts_attempt``: the batch itself reverted, so each
        usage's attempt is counted (held after ``max_settle_attempts``)."""
        log.error("batch %d failed, its usages go back to accepted: %s", batch.id, error)
        with self.store.session() as session:
            settlement.fail_batch(
                session,
                batch.id,
                error=error,
                max_attempts=self.max_settle_attempts if counts_attempt else None,
                lease=self.lease,
            )
        self.metrics.batches.labels("failed").inc()
