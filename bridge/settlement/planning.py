"""A settlement batch planned: accepted usages grouped by brand, signed by the attester (EIP-712)
as the ledger's ``settle`` calldata, and estimated; a batch whose estimate reverts is halved until
a part estimates (``Planner``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address

from bridge.chain.ledger import decode_usages_settled, settle_calldata
from bridge.chain.reverts import describe_revert
from bridge.domain import eip712
from bridge.domain.codec import Outcome, Usage
from bridge.errors import ExecutionRevertedError
from bridge.settlement.context import WorkerContext
from bridge.settlement.outcomes import paid_amounts, split
from bridge.settlement.recognition import Recogniser, UsageElsewhere
from bridge.store import settlement
from bridge.store.settlement import PendingUsage

log = logging.getLogger(__name__)

UsageGroups = list[tuple[str, list[Usage]]]
"""One group of usages per brand, as ``settle`` takes them."""


def group_usages(usages: Sequence[PendingUsage]) -> UsageGroups:
    """One group per brand, brands in order of their oldest usage, each sorted by twin then id
    (the ledger takes any order; consecutive usages of one twin cost less gas)."""
    groups: dict[str, list[Usage]] = {}
    for u in sorted(usages, key=lambda u: u.usage_id):
        groups.setdefault(to_checksum_address(u.brand), []).append(_usage(u))
    return [
        (brand, sorted(members, key=lambda u: (u.twin_id, u.usage_id)))
        for brand, members in groups.items()
    ]


def _usage(u: PendingUsage) -> Usage:
    """The pending usage as the ledger's usage."""
    return Usage(
        usage_id=u.usage_id,
        twin_id=u.twin_id,
        used_at=int(u.used_at.timestamp()),
        quantity=u.quantity,
        usage_type=u.usage_type,
    )


def halves(usages: Sequence[PendingUsage]) -> tuple[list[PendingUsage], list[PendingUsage]]:
    """Splits by brand (the brands in order of their first usage) while several are in, else by
    count."""
    brands = list(dict.fromkeys(u.brand.lower() for u in usages))
    if len(brands) > 1:
        first = set(brands[: len(brands) // 2])
        return (
            [u for u in usages if u.brand.lower() in first],
            [u for u in usages if u.brand.lower() not in first],
        )
    middle = len(usages) // 2
    return list(usages[:middle]), list(usages[middle:])


@dataclass(frozen=True, slots=True)
class PlannedBatch:
    """A signed batch of usages, ready to go into a relayer transaction."""

    usages: list[PendingUsage]
    groups: UsageGroups
    typed_data: dict[str, Any]
    """The EIP-712 ``UsageBatch`` the attester signed."""
    signature: bytes
    calldata: bytes
    """``settle(batch, attester, signature)``."""
    gas_estimate: int

    @property
    def words(self) -> list[tuple[str, list[int]]]:
        """The groups as the ledger's usage words."""
        return _words(self.groups)

    @property
    def digest(self) -> str:
        return "0x" + eip712.digest(self.typed_data).hex()


def _words(groups: UsageGroups) -> list[tuple[str, list[int]]]:
    return [(brand, [u.encode() for u in members]) for brand, members in groups]


class Planner:
    """Plans the batches of one worker, signed by its attester."""

    def __init__(self, context: WorkerContext, attester: LocalAccount) -> None:
        self._context = context
        self._attester = attester
        self._recogniser = Recogniser(context.chain, context.ledger)

    def plan(self, usages: Sequence[PendingUsage], deadline: int) -> PlannedBatch | None:
        """The signed batch of ``usages`` and its gas estimate; when the estimate reverts, the
        first half (by brand while several brands are in, else by count) that estimates, the
        other half waiting for the next batch. A single usage whose estimate reverts gets an
        attempt counted (held after ``max_settle_attempts``); None if no part estimates."""
        groups = group_usages(usages)
        words = _words(groups)
        context = self._context
        data = eip712.usage_batch(
            deadline, words, chain_id=context.chain_id(), ledger=context.ledger
        )
        signature = eip712.sign(self._attester, data)
        calldata = settle_calldata(deadline, words, self._attester.address, signature)
        try:
            estimate = context.chain.estimate_gas(
                sender=context.relayer.address, to=context.ledger, data=calldata
            )
        except ExecutionRevertedError as exc:
            return self._split(usages, deadline, exc)
        return PlannedBatch(list(usages), groups, data, signature, calldata, estimate)

    def _split(
        self, usages: Sequence[PendingUsage], deadline: int, exc: ExecutionRevertedError
    ) -> PlannedBatch | None:
        if len(usages) == 1:
            self._single_failure(usages[0], exc)
            return None
        left, right = halves(usages)
        log.warning(
            "gas estimation of %d usages reverted (%s), trying %d and %d apart",
            len(usages), exc.message, len(left), len(right),
        )  # fmt: skip
        return self.plan(left, deadline) or self.plan(right, deadline)

    def _single_failure(self, usage: PendingUsage, exc: ExecutionRevertedError) -> None:
        """One usage cannot settle. Its id already processed on chain for its brand by a batch
        this bridge did not record (a leaked attester key, another bridge): when that batch
        carried this very usage, it is recorded settled or rejected with that transaction once
        the block is confirmed (and left accepted until then); when it carried another usage
        under this id, or none is found, the usage is held at once, naming the transaction, as
        it can never settle under its id. Otherwise the revert in words counts an attempt
        (``SettlementWrongAttester`` for a brand that attests its own usages)."""
        [processed] = self._recogniser.processed([(usage.brand, usage.usage_id)])
        if not processed:
            error = f"gas estimation reverted: {describe_revert(exc.data) or exc.message}"
            self._count_attempt([usage], error)
            return
        mine = _usage(usage)
        found = self._recogniser.usage_elsewhere(usage.brand, usage.usage_id)
        if found is None or not found.same_as(mine):
            where = (
                "by a batch found nowhere within the lookback"
                if found is None
                else f"for another usage ({found.usage}) by tx {found.entry.tx_hash}"
            )
            error = (
                f"usage id {usage.usage_id} of brand {to_checksum_address(usage.brand)} was "
                f"already processed on chain {where}: it cannot settle under this id"
            )
            self._count_attempt([usage], error, max_attempts=1)
            return
        self._settled_elsewhere(usage, found)

    def _paid_elsewhere(self, found: UsageElsewhere) -> tuple[int, int | None, int | None]:
        """What a paid usage settled elsewhere cost, and how it was paid (from escrow, as debt):
        its group as the settling receipt logs it, with the ``DebtRecorded`` logs before it; how
        it was paid is unknown (None) when the node no longer gives the receipt."""
        context = self._context
        entry = found.entry
        receipt = context.chain.receipt(entry.tx_hash)
        group = None
        if receipt is not None:
            groups = decode_usages_settled(receipt.logs, ledger=context.ledger)
            group = next((g for g in groups if g.log_index == entry.log_index), None)
        if group is None:
            one = replace(found.group, results=((found.usage, found.outcome),))
            amounts = paid_amounts(context.chain, context.ledger, [one], entry.block_number)
            return amounts[(one.brand, found.usage.usage_id)], None, None
        amounts = paid_amounts(context.chain, context.ledger, [group], entry.block_number)
        ids = [u.usage_id for u, o in group.results if o is Outcome.PAID]
        ways = split(group, [amounts[(group.brand, i)] for i in ids])
        amount = amounts[(group.brand, found.usage.usage_id)]
        if ways is None:
            return amount, None, None
        escrow, debt = ways[ids.index(found.usage.usage_id)]
        return amount, escrow, debt

    def _settled_elsewhere(self, usage: PendingUsage, found: UsageElsewhere) -> None:
        """Records ``usage`` as ``found`` settled it, once its block is confirmed."""
        context = self._context
        head = context.chain.block("latest")
        entry = found.entry
        if head is None or head.number - entry.block_number + 1 < context.depth:
            log.info(
                "usage %d was settled by tx %s in block %d: waiting for it to be confirmed",
                usage.usage_id, entry.tx_hash, entry.block_number,
            )  # fmt: skip
            return
        paid = found.outcome is Outcome.PAID
        amount, escrow, debt = self._paid_elsewhere(found) if paid else (None, None, None)
        outcome = settlement.SettledElsewhere(
            usage_id=usage.usage_id,
            settled=paid,
            reason_code=None if paid else int(found.outcome),
            tx_hash=entry.tx_hash,
            block_number=entry.block_number,
            log_index=entry.log_index,
            amount=amount,
            paid_from_escrow=escrow,
            recorded_as_debt=debt,
        )
        with context.store.session() as session:
            settlement.settle_elsewhere(session, outcome, lease=context.lease)
        log.warning(
            "usage %d was settled by tx %s, a batch this bridge did not send (%s)",
            usage.usage_id, entry.tx_hash, found.outcome.name,
        )  # fmt: skip
        context.metrics.batches.labels("settled_elsewhere").inc()

    def _count_attempt(
        self, usages: Sequence[PendingUsage], error: str, *, max_attempts: int | None = None
    ) -> None:
        log.warning("usages %s: %s", [u.usage_id for u in usages][:10], error)
        with self._context.store.session() as session:
            settlement.count_attempt(
                session,
                [u.usage_id for u in usages],
                error=error,
                max_attempts=max_attempts or self._context.max_settle_attempts,
                lease=self._context.lease,
            )
