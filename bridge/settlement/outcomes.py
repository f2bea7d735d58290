"""Each usage's outcome in a settlement receipt: the ``UsagesSettled`` events of the batch, the
paid usages priced with ``priceAt`` as the settling block saw them, and how each was paid (from
the brand's escrow, or as debt: the ``DebtRecorded`` events before its group's)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from bridge.chain.client import ChainClient, Receipt
from bridge.chain.ledger import (
    SettledGroup,
    decode_price_at,
    decode_usages_settled,
    price_at_calldata,
)
from bridge.domain.codec import Outcome, Usage
from bridge.domain.usage import split_payment
from bridge.errors import ExecutionRevertedError, RpcError
from bridge.store.settlement import BatchRecord, UsageResult

log = logging.getLogger(__name__)

PriceKey = tuple[int, str, int, int]
"""A paid usage's (twin, brand, usage type, time): what ``priceAt`` is asked."""


def _price_key(usage: Usage, brand: str) -> PriceKey:
    return (usage.twin_id, brand, usage.usage_type, usage.used_at)


def usage_results(
    chain: ChainClient, ledger: str, batch: BatchRecord, receipt: Receipt
) -> list[UsageResult]:
    """Each usage's outcome in ``receipt``, the paid ones with their amount.

    Raises:
        RpcError: the receipt does not report exactly the batch's usages.
    """
    groups = [
        group
        for group in decode_usages_settled(receipt.logs, ledger=ledger)
        if group.batch_digest.hex() == batch.digest.removeprefix("0x")
    ]
    prices = _prices(chain, ledger, groups, receipt.block_number)
    results = [result for group in groups for result in _group_results(batch, group, prices)]
    expected = {Usage.decode(w).usage_id for _, words in batch.groups for w in words}
    found = {r.usage_id for r in results}
    if found != expected:
        raise RpcError(
            "chain",
            None,
            f"receipt of {receipt.tx_hash} reports usages {sorted(found ^ expected)[:5]} "
            f"unlike batch {batch.id}",
        )
    return results


def paid_amounts(
    chain: ChainClient, ledger: str, groups: Sequence[SettledGroup], block_number: int
) -> dict[tuple[str, int], int]:
    """What each paid usage of ``groups``, settled at ``block_number``, cost (its price then
    times its quantity), by ``(brand, usage id)``; asked in one batched call."""
    prices = _prices(chain, ledger, groups, block_number)
    return {
        (group.brand, usage.usage_id): prices[_price_key(usage, group.brand)] * usage.quantity
        for group in groups
        for usage, outcome in group.results
        if outcome is Outcome.PAID
    }


def _prices(
    chain: ChainClient, ledger: str, groups: Sequence[SettledGroup], block_number: int
) -> dict[PriceKey, int]:
    """The price of each paid usage's (twin, brand, type, time) as the settling block saw it,
    asked of ``priceAt`` in batched calls."""
    keys = sorted(
        {
            _price_key(usage, group.brand)
            for group in groups
            for usage, outcome in group.results
            if outcome is Outcome.PAID
        }
    )
    calls = [
        price_at_calldata(twin_id=twin, brand=brand, usage_type=kind, at=at)
        for twin, brand, kind, at in keys
    ]
    try:
        answers = chain.call_many(to=ledger, calls=calls, block=block_number)
    except ExecutionRevertedError:
        raise
    except RpcError as exc:
        # A node without that block's state (pruned, or an anvil restarted from its state
        # file). The ledger keeps every license version, so a time before the block is priced
        # the same at the latest block.
        log.warning("prices at block %d unavailable (%s); asking the latest", block_number, exc)
        answers = chain.call_many(to=ledger, calls=calls, block="latest")
    return {key: decode_price_at(answer)[1] for key, answer in zip(keys, answers, strict=True)}


def _group_results(
    batch: BatchRecord, group: SettledGroup, prices: dict[PriceKey, int]
) -> list[UsageResult]:
    """The outcomes of one brand's group, each paid usage with how it was paid (from escrow, as
    debt: ``split``); logs an error when they do not add up to what the event says was paid."""
    amounts = {
        usage.usage_id: prices[_price_key(usage, group.brand)] * usage.quantity
        for usage, outcome in group.results
        if outcome is Outcome.PAID
    }
    total = sum(amounts.values())
    if total != group.paid:
        log.error(
            "batch %d, brand %s: usages priced at %d but the event says %d paid",
            batch.id, group.brand, total, group.paid,
        )  # fmt: skip
    paid_by = split(group, list(amounts.values()))
    ways = dict(zip(amounts, paid_by, strict=True)) if paid_by is not None else {}
    results: list[UsageResult] = []
    for usage, outcome in group.results:
        paid = outcome is Outcome.PAID
        escrow, debt = ways.get(usage.usage_id, (None, None))
        results.append(
            UsageResult(
                usage_id=usage.usage_id,
                settled=paid,
                reason_code=None if paid else int(outcome),
                log_index=group.log_index,
                amount=amounts.get(usage.usage_id),
                paid_from_escrow=escrow,
                recorded_as_debt=debt,
            )
        )
    return results


def split(group: SettledGroup, amounts: list[int]) -> list[tuple[int, int]] | None:
    """How each paid usage of ``group`` (costing ``amounts``, in order) was paid:
    ``(paid_from_escrow, recorded_as_debt)`` from the group's ``DebtRecorded`` amounts; None, with
    an error logged, when they cannot be the debts of these amounts."""
    try:
        return split_payment(amounts, group.debts)
    except ValueError as exc:
        log.error(
            "usages of %s settled in group log %d: %s; how they were paid is left unknown",
            group.brand, group.log_index, exc,
        )  # fmt: skip
        return None
