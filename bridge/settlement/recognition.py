"""The worker's own work done by someone else: a batch whose transaction reverted, or whose nonce
went elsewhere, may have been settled all the same by another transaction carrying the same signed
batch (anyone may call ``settle``, so a copy of a pending one front-runs it).

Before a batch counts as failed, ``Recogniser.settled_elsewhere`` asks the ledger whether its
usages are processed (``isUsageProcessed(brand, id)``, one batched call) and, when they are, finds
the ``UsagesSettled`` events of the batch's digest (its ``batchDigest`` topic) and the receipt of
the transaction that emitted them. The worker then follows that receipt exactly as it follows its
own: the usages end settled or rejected with that transaction, not handed back or held.

A single usage whose id is processed on chain by a batch this bridge did not record (a copy of
one of its usages signed anew by a leaked attester key, another bridge with the same key) is looked
for the same way, by its brand's ``UsagesSettled`` events: ``Recogniser.usage_elsewhere`` finds the
event whose results carry the usage's id and says whether it is the very usage (same twin, time,
quantity and type) or a different one under the same id.

None of this is on the hot path: it runs only where a batch would otherwise fail.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from eth_abi.abi import encode
from eth_utils.address import to_checksum_address

from bridge.chain.client import ChainClient, LogEntry, Receipt
from bridge.chain.ledger import (
    USAGES_SETTLED_TOPIC,
    SettledGroup,
    decode_usages_settled,
    usages_processed,
)
from bridge.domain.codec import Outcome, Usage
from bridge.errors import LogRangeTooLargeError
from bridge.store.settlement import BatchRecord

log = logging.getLogger(__name__)

LOOKBACK_BLOCKS: Final = 4096
"""How far below the head the batch's ``UsagesSettled`` events are looked for: a copy can only be
mined while the batch's deadline runs (an hour by default)."""
_MIN_LOG_SPAN: Final = 16


@dataclass(frozen=True, slots=True)
class UsageElsewhere:
    """The ``UsagesSettled`` event that processed a usage id of a brand, and what it says of it."""

    entry: LogEntry
    group: SettledGroup
    usage: Usage
    """The usage the event processed under that id."""
    outcome: Outcome

    def same_as(self, usage: Usage) -> bool:
        """Whether the event processed ``usage`` itself (every field equal), not another usage
        under its id."""
        return self.usage == usage


def batch_usages(batch: BatchRecord) -> list[tuple[str, int]]:
    """``(brand, usage id)`` of every usage of the batch, in the batch's order."""
    return [(brand, Usage.decode(word).usage_id) for brand, words in batch.groups for word in words]


class Recogniser:
    """Finds where the ledger settled a batch of the worker when its own transaction did not."""

    def __init__(self, chain: ChainClient, ledger: str, *, lookback: int = LOOKBACK_BLOCKS) -> None:
        self._chain = chain
        self._ledger = to_checksum_address(ledger)
        self._lookback = lookback

    def processed(self, usages: Sequence[tuple[str, int]]) -> list[bool]:
        """Whether the ledger has processed each ``(brand, usage id)``, in order."""
        return usages_processed(self._chain, self._ledger, usages)

    def settled_elsewhere(self, batch: BatchRecord, *, up_to: int | None = None) -> Receipt | None:
        """The successful receipt of the transaction that settled the batch's signed usages, when
        every usage of the batch is processed and the batch's ``UsagesSettled`` events are found
        at or below block ``up_to`` (the head when None); else None."""
        if batch.calldata is not None or not batch.groups:
            return None  # an owner action: its nonce makes a copy of it fail, not pass
        usages = batch_usages(batch)
        done = self.processed(usages)
        if not all(done):
            if any(done):
                log.warning(
                    "batch %d: %d of %d usages were processed by other batches",
                    batch.id, sum(done), len(usages),
                )  # fmt: skip
            return None
        entry = self._digest_log(bytes.fromhex(batch.digest.removeprefix("0x")), up_to)
        if entry is None:
            log.warning("batch %d: usages processed, but no UsagesSettled of its digest", batch.id)
            return None
        receipt = self._chain.receipt(entry.tx_hash)
        if receipt is None or receipt.status != 1:
            return None
        log.info(
            "batch %d was settled by another transaction, %s in block %d",
            batch.id, receipt.tx_hash, receipt.block_number,
        )  # fmt: skip
        return receipt

    def usage_elsewhere(self, brand: str, usage_id: int) -> UsageElsewhere | None:
        """The latest ``UsagesSettled`` event of ``brand`` within the lookback whose results
        carry ``usage_id``, with the usage and outcome it gives it; None if none is found."""

        def carries(entry: LogEntry) -> bool:
            return any(u.usage_id == usage_id for u, _ in _group(entry, self._ledger).results)

        brand_topic = encode(["address"], [to_checksum_address(brand)])
        entry = self._latest_log([USAGES_SETTLED_TOPIC, None, brand_topic], None, carries)
        if entry is None:
            return None
        group = _group(entry, self._ledger)
        usage, outcome = next((u, o) for u, o in group.results if u.usage_id == usage_id)
        return UsageElsewhere(entry, group, usage, outcome)

    def _digest_log(self, digest: bytes, up_to: int | None) -> LogEntry | None:
        """The latest ``UsagesSettled`` event of the batch digest within the lookback."""
        return self._latest_log([USAGES_SETTLED_TOPIC, digest], up_to, lambda _: True)

    def _latest_log(
        self,
        topics: Sequence[bytes | None],
        up_to: int | None,
        wanted: Callable[[LogEntry], bool],
    ) -> LogEntry | None:
        """The latest ledger event of ``topics`` that is ``wanted``, at or below block ``up_to``
        (the head when None) and within the lookback, looked for from there down in spans the
        node accepts."""
        if up_to is None:
            head = self._chain.block("latest")
            if head is None:
                return None
            up_to = head.number
        low = max(0, up_to - self._lookback + 1)
        span = self._lookback
        to_block = up_to
        while to_block >= low:
            from_block = max(low, to_block - span + 1)
            try:
                found = self._chain.logs(
                    address=self._ledger,
                    from_block=from_block,
                    to_block=to_block,
                    topics=topics,
                )
            except LogRangeTooLargeError:
                if span <= _MIN_LOG_SPAN:
                    raise
                span //= 2
                continue
            found = [entry for entry in found if wanted(entry)]
            if found:
                return max(found, key=lambda e: (e.block_number, e.log_index))
            to_block = from_block - 1
        return None


def _group(entry: LogEntry, ledger: str) -> SettledGroup:
    [group] = decode_usages_settled([entry], ledger=ledger)
    return group
