"""The settlements: each usage of a ``UsagesSettled`` group decided again from the rebuilt
licenses, pauses and caps, and priced, exactly as ``TwinLedger._settleGroup`` does; the group's
escrow paid out in order and the shortfalls matched with its ``DebtRecorded`` events; the
batch's attester checked against the role events as they stood then."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from bridge.audit.logs import SettledLog, TxInfo
from bridge.audit.state import (
    Batch,
    BrandBook,
    LedgerState,
    LicensePair,
    Twin,
    UsageRow,
    Version,
    outcome_words,
)
from bridge.chain.ledger import ROLE_IDS
from bridge.domain.codec import Outcome, Usage, result_code

ATTESTER_ROLE: Final = "0x" + ROLE_IDS["ATTESTER_ROLE"].hex()
"""The attester role's id as decoded role events spell it."""
_PAID: Final = int(Outcome.PAID)


def decide(
    usage: Usage, *, block_time: int, twin: Twin | None, pair: LicensePair | None
) -> tuple[Outcome, Version | None]:
    """The outcome ``TwinLedger._slowPrice`` / ``_fastPrice`` and the cap on uses give ``usage``
    settled at ``block_time`` (0: unknown), and the license version that pays it when paid."""
    if usage.quantity == 0:
        return Outcome.ZERO_QUANTITY, None
    if block_time and usage.used_at > block_time:
        return Outcome.USAGE_IN_FUTURE, None
    if pair is None or pair.current is None:
        return (Outcome.UNKNOWN_TWIN if twin is None else Outcome.NO_LICENSE), None
    version = version_at(pair, usage.used_at)
    if version is None:
        return Outcome.LICENSE_NOT_STARTED, None
    outcome = _license_outcome(version, usage, twin)
    return outcome, (version if outcome is Outcome.PAID else None)


def version_at(pair: LicensePair, at: int) -> Version | None:
    """The version of ``pair`` in force at ``at`` (the current one unless ``at`` is before its
    start), None when ``at`` is before the first version."""
    current = pair.current
    if current is not None and at >= current.valid_from:
        return current
    index = bisect_right(pair.froms, at)
    return pair.history[index - 1] if index else None


def _license_outcome(version: Version, usage: Usage, twin: Twin | None) -> Outcome:
    """What ``version`` says of ``usage``: its window, its prices, the twin's pauses, its cap."""
    if usage.used_at >= version.valid_until:
        return Outcome.LICENSE_REVOKED if version.revoked else Outcome.LICENSE_EXPIRED
    if usage.usage_type not in version.prices:
        return Outcome.USAGE_TYPE_NOT_LICENSED
    if twin is not None and twin.paused_at(usage.used_at):
        return Outcome.TWIN_PAUSED
    if version.max_uses and version.uses + usage.quantity > version.max_uses:
        return Outcome.USE_CAP_REACHED
    return Outcome.PAID


@dataclass(slots=True)
class GroupTally:
    """A group's running figures: what it paid, the brand's escrow left, the shortfalls."""

    escrow: int
    total: int = 0
    paid: int = 0
    """Usages the event reports paid."""
    shortfalls: list[tuple[int, int]] = field(default_factory=list)
    """``(twin id, amount)`` per usage the escrow did not cover in full, in order."""

    def pay(self, usage: Usage, version: Version, twin: Twin | None) -> int:
        """Pays ``usage`` at ``version``'s price from the escrow (the rest becomes debt), counts
        it against the cap, credits the twin; returns the amount."""
        amount = version.prices[usage.usage_type] * usage.quantity
        if version.max_uses:
            version.uses += usage.quantity
        self.total += amount
        funded = min(amount, self.escrow)
        self.escrow -= funded
        if amount > funded:
            self.shortfalls.append((usage.twin_id, amount - funded))
        if twin is not None:
            twin.accrued += funded
            twin.earned += funded
            twin.paid_usages += 1
        return amount


class Settlement:
    """Applies ``UsagesSettled`` groups to ``state``, naming each disagreement through
    ``problem(kind, message)``."""

    def __init__(self, state: LedgerState, problem: Callable[[str, str], None]) -> None:
        self.state = state
        self.problem = problem
        self._seen_usages = {u.usage_id for u in state.usages}
        self.batch_results: list[int] = []
        """The result words of the open batch, in order (what its signed words must be)."""

    def open_batch(self, event: SettledLog, info: TxInfo | None) -> Batch:
        """The batch of a settlement transaction, at its first group."""
        batch = Batch(
            tx_hash=event.tx_hash,
            block_number=event.block_number,
            block_time=info.block_time if info else 0,
            digest=event.digest,
            attester=event.attester,
            first_usage=len(self.state.usages),
        )
        self.state.batches.append(batch)
        self.batch_results = []
        return batch

    def settle_group(
        self, event: SettledLog, batch: Batch, book: BrandBook, debts: Sequence[tuple[int, int]]
    ) -> None:
        """Decides every usage of a group again and applies it to the brand's ``book``, like
        ``_settleGroup``; ``debts`` are the ``(twin, amount)`` of the ``DebtRecorded`` events
        before it."""
        self._check_attester(event, batch)
        tally = GroupTally(escrow=book.escrow)
        for word in event.results:
            self._settle_usage(word, event, batch, tally)
        self._check_totals(event, tally, debts)
        book.spent += book.escrow - tally.escrow
        book.escrow = tally.escrow
        book.usages_paid += tally.paid
        book.usages_rejected += len(event.results) - tally.paid
        book.amount_paid += event.paid
        batch.groups.append([event.brand, event.log_index, len(event.results), event.paid])
        self.batch_results.extend(event.results)

    def _check_attester(self, event: SettledLog, batch: Batch) -> None:
        """The batch's attester held ``ATTESTER_ROLE`` at this point of the role events, and each
        group of the batch names the same digest and attester."""
        if not batch.groups and event.attester not in self.state.roles.get(ATTESTER_ROLE, ()):
            self.problem(
                "attester",
                f"batch {event.digest} (tx {event.tx_hash}, block {event.block_number}) was "
                f"signed by {event.attester}, which did not hold ATTESTER_ROLE then according to "
                "the role events",
            )
        if event.attester != batch.attester or event.digest != batch.digest:
            batch.problems.append(
                f"its events name different digests or attesters ({event.digest}, {event.attester})"
            )

    def _settle_usage(self, word: int, event: SettledLog, batch: Batch, tally: GroupTally) -> None:
        """One result word: the usage decided again, checked against the reported outcome, paid
        when the event says it was, and recorded."""
        usage, code = Usage.decode(word), result_code(word)
        if usage.usage_id in self._seen_usages:
            self.problem("usage", f"usage {usage.usage_id} settled again in tx {event.tx_hash}")
        self._seen_usages.add(usage.usage_id)
        twin = self.state.twins.get(usage.twin_id)
        pair = self.state.licenses.get((usage.twin_id, event.brand))
        expected, version = decide(usage, block_time=batch.block_time, twin=twin, pair=pair)
        if expected != code:
            self.problem(
                "outcome",
                f"usage {usage.usage_id} (twin {usage.twin_id}, brand {event.brand}, type "
                f"{usage.usage_type}, time {usage.used_at}) is '{outcome_words(code)}' on chain "
                f"(tx {event.tx_hash}), but the licenses and pauses of the events make it "
                f"'{outcome_words(expected)}'",
            )
        amount: int | None = None
        number: int | None = None
        if code == _PAID:
            tally.paid += 1
            if version is not None:
                amount, number = tally.pay(usage, version, twin), version.number
        self.state.usages.append(
            UsageRow(
                usage.usage_id,
                event.brand,
                usage.twin_id,
                usage.used_at,
                usage.quantity,
                usage.usage_type,
                code,
                amount,
                number,
                len(self.state.batches) - 1,
                event.log_index,
            )
        )

    def _check_totals(
        self, event: SettledLog, tally: GroupTally, debts: Sequence[tuple[int, int]]
    ) -> None:
        """The group's ``paid`` is the sum of its amounts; its shortfalls are its debts."""
        if tally.total != event.paid:
            self.problem(
                "amount",
                f"the group of {event.brand} in tx {event.tx_hash} says {event.paid} was paid; "
                f"its paid usages at the prices of their licenses add up to {tally.total}",
            )
        if tally.shortfalls != debts:
            self.problem(
                "debt",
                f"the group of {event.brand} in tx {event.tx_hash} ran short of escrow by "
                f"{tally.shortfalls} (twin, amount); its DebtRecorded events say {debts}",
            )
