"""The settlements: each usage of a ``UsagesSettled`` group decided again from the rebuilt
licenses, offers, pauses, caps and the brand's spending limits, and priced, exactly as
``TwinLedger._settleGroup`` does; the group's escrow paid out in order and the shortfalls matched
with its ``DebtRecorded`` events; the group's attester checked against the brand's own attester,
else against the access manager's role events as they stood at the settlement's block time."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from bridge.audit.logs import SettledLog, TxInfo
from bridge.audit.state import (
    ZERO_ADDRESS,
    Batch,
    BrandBook,
    LedgerState,
    LicensePair,
    Twin,
    UsageRow,
    Version,
    outcome_words,
)
from bridge.domain.codec import Outcome, Usage, result_code

ATTESTER_ROLE: Final = "ATTESTER_ROLE"
"""The attester role's name in ``LedgerState.roles`` (id 2 in the access manager)."""
_PAID: Final = int(Outcome.PAID)
_LIMIT_OUTCOMES: Final = frozenset({int(Outcome.OVER_USAGE_LIMIT), int(Outcome.OVER_PERIOD_LIMIT)})
_LOW_BITS: Final = (1 << 48) - 1
_OUTCOME_BITS: Final = 0xFF
_NO_TIME: Final = 2**63
"""A settlement time later than any: a batch whose block time is unknown."""


def decide(
    usage: Usage,
    *,
    block_time: int,
    twin: Twin | None,
    pair: LicensePair | None,
    offer_waiting: bool = False,
) -> tuple[Outcome, Version | None]:
    """The outcome ``TwinLedger._slowPrice`` / ``_fastPrice`` give ``usage`` settled at
    ``block_time`` (0: unknown), and the license version that pays it when paid: before the
    brand's spending limits and then the version's cap on uses, which the ledger checks in that
    order (see :meth:`GroupTally.limit`, :func:`over_cap`). ``offer_waiting``: an offer of the pair
    waits for the brand's acceptance."""
    if usage.quantity == 0:
        return Outcome.ZERO_QUANTITY, None
    if block_time and usage.used_at > block_time:
        return Outcome.USAGE_IN_FUTURE, None
    if pair is None or pair.current is None:
        if twin is None:
            return Outcome.UNKNOWN_TWIN, None
        return (Outcome.OFFER_NOT_ACCEPTED if offer_waiting else Outcome.NO_LICENSE), None
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
    """What ``version`` says of ``usage``: its window, its prices, the twin's pauses."""
    if usage.used_at >= version.valid_until:
        return Outcome.LICENSE_REVOKED if version.revoked else Outcome.LICENSE_EXPIRED
    if usage.usage_type not in version.prices:
        return Outcome.USAGE_TYPE_NOT_LICENSED
    if twin is not None and twin.paused_at(usage.used_at):
        return Outcome.TWIN_PAUSED
    return Outcome.PAID


def over_cap(version: Version, usage: Usage) -> bool:
    """Whether ``usage`` would take ``version`` past its cap on uses (checked after the limits)."""
    return bool(version.max_uses) and version.uses + usage.quantity > version.max_uses


def limits_in_force(
    book: BrandBook, config: Sequence[int] | None, at: int
) -> tuple[int | None, int | None]:
    """The brand's limits per usage and per period at ``at`` (``SpendingBook.current``): a setting
    whose time has come counts (and stays), else the ledger's defaults; (None, None) when the
    brand never set its own and the ledger's ``config()`` is unknown."""
    pending = book.pending_limits
    if pending is not None and pending[2] <= at:
        book.limits, book.pending_limits = pending, None
    if book.limits is not None:
        return book.limits[0], book.limits[1]
    if config is not None:
        return int(config[3]), int(config[4])
    return None, None


@dataclass(slots=True)
class GroupTally:
    """A group's running figures: what it paid, the brand's escrow left, the shortfalls, and
    the spend of the period against the brand's limits (None: not known, not checked)."""

    escrow: int
    total: int = 0
    paid: int = 0
    """Usages the event reports paid."""
    shortfalls: list[tuple[int, int]] = field(default_factory=list)
    """``(twin id, amount)`` per usage the escrow did not cover in full, in order."""
    spent: int = 0
    """What the brand's settlements of the period cost so far."""
    per_usage: int | None = None
    per_period: int | None = None

    def limit(self, usage: Usage, version: Version) -> Outcome:
        """``OverUsageLimit``, ``OverPeriodLimit`` or ``Paid`` for a usage its license pays."""
        amount = version.prices[usage.usage_type] * usage.quantity
        if self.per_usage is not None and amount > self.per_usage:
            return Outcome.OVER_USAGE_LIMIT
        if self.per_period is not None and self.spent + amount > self.per_period:
            return Outcome.OVER_PERIOD_LIMIT
        return Outcome.PAID

    def pay(self, usage: Usage, version: Version, twin: Twin | None) -> int:
        """Pays ``usage`` at ``version``'s price from the escrow (the rest becomes debt), counts
        it against the cap and the period's spend, credits the twin; returns the amount."""
        amount = version.prices[usage.usage_type] * usage.quantity
        if version.max_uses:
            version.uses += usage.quantity
        self.total += amount
        self.spent += amount
        funded = min(amount, self.escrow)
        self.escrow -= funded
        if amount > funded:
            self.shortfalls.append((usage.twin_id, amount - funded))
        if twin is not None:
            twin.accrued += funded
            twin.earned += funded
            twin.paid_usages += 1
        return amount


OWN_ID_SPACE: Final = 1 << 62
"""Usage ids from here to 2**63 - 1 belong to brands with their own attester, each in an id space of
its own; ids below belong to the bridge's attesters, one space for every brand they attest."""


def id_space(brand: str, usage_id: int) -> tuple[str, int]:
    """The ledger's processed-bitmap key of a usage: ``(brand, id)`` in a brand's own id space,
    ``("", id)`` in the bridge's attesters' shared one."""
    return (brand if usage_id >= OWN_ID_SPACE else "", usage_id)


class Settlement:
    """Applies ``UsagesSettled`` groups to ``state``, naming each disagreement through
    ``problem(kind, message)``."""

    def __init__(self, state: LedgerState, problem: Callable[[str, str], None]) -> None:
        self.state = state
        self.problem = problem
        self._seen_usages = {id_space(u.brand, u.usage_id) for u in state.usages}
        """(id space, usage id) of every processed usage (see :func:`id_space`)."""
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
        self._check_attester(event, batch, book)
        tally = self._tally(book, batch.block_time)
        for word in event.results:
            self._settle_usage(word, event, batch, tally)
        self._check_totals(event, tally, debts)
        book.spent += book.escrow - tally.escrow
        book.escrow = tally.escrow
        book.spent_in_period = tally.spent
        book.usages_paid += tally.paid
        book.usages_rejected += len(event.results) - tally.paid
        book.amount_paid += event.paid
        batch.groups.append([event.brand, event.log_index, len(event.results), event.paid])
        self.batch_results.extend(event.results)

    def _tally(self, book: BrandBook, block_time: int) -> GroupTally:
        """The group's tally: the brand's escrow, its limits in force at ``block_time`` and what
        it spent in that period (periods aligned: ``block_time // spendingPeriod``)."""
        config = self.state.config
        if not block_time:
            return GroupTally(escrow=book.escrow)
        per_usage, per_period = limits_in_force(book, config, block_time)
        if config is not None and int(config[1]) > 0:
            index = block_time // int(config[1])
            if index != book.period_index:
                book.period_index, book.spent_in_period = index, 0
        return GroupTally(
            escrow=book.escrow,
            spent=book.spent_in_period,
            per_usage=per_usage,
            per_period=per_period,
        )

    def _check_attester(self, event: SettledLog, batch: Batch, book: BrandBook) -> None:
        """The group's attester is the brand's own attester when it named one, else held
        ``ATTESTER_ROLE`` at the settlement's time according to the manager's role events; each
        group of the batch names the same digest and attester."""
        where = f"batch {event.digest} (tx {event.tx_hash}, block {event.block_number})"
        if book.attester != ZERO_ADDRESS:
            if event.attester != book.attester:
                self.problem(
                    "attester",
                    f"{where} settled usages of {event.brand} attested by {event.attester}, but "
                    f"the brand named its own attester {book.attester}",
                )
        elif self.state.manager is not None and not self.state.is_member(
            ATTESTER_ROLE, event.attester, batch.block_time or _NO_TIME
        ):
            self.problem(
                "attester",
                f"{where} was signed by {event.attester}, which did not hold ATTESTER_ROLE then "
                "according to the access manager's role events",
            )
        if event.attester != batch.attester or event.digest != batch.digest:
            batch.problems.append(
                f"its events name different digests or attesters ({event.digest}, {event.attester})"
            )

    def _settle_usage(self, word: int, event: SettledLog, batch: Batch, tally: GroupTally) -> None:
        """One result word: the usage decided again, checked against the reported outcome, paid
        when the event says it was, and recorded."""
        usage, code = Usage.decode(word), result_code(word)
        self._check_word(word, usage, event)
        twin = self.state.twins.get(usage.twin_id)
        pair = self.state.licenses.get((usage.twin_id, event.brand))
        expected, version = decide(
            usage,
            block_time=batch.block_time,
            twin=twin,
            pair=pair,
            offer_waiting=(usage.twin_id, event.brand) in self.state.pending,
        )
        if version is not None:
            expected = tally.limit(usage, version)
            if expected is Outcome.PAID and over_cap(version, usage):
                expected, version = Outcome.USE_CAP_REACHED, None
        if tally.per_usage is None and code in _LIMIT_OUTCOMES and expected is Outcome.PAID:
            expected = Outcome(code)  # the limits are unknown: the ledger's word stands
        if int(expected) != code:
            self._wrong_outcome(usage, code, expected, event)
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

    def _check_word(self, word: int, usage: Usage, event: SettledLog) -> None:
        """A result word has zero bits between its usage and its outcome code, and an id the
        brand has not had processed."""
        if word & _LOW_BITS & ~_OUTCOME_BITS:
            self.problem(
                "usage",
                f"usage {usage.usage_id} of {event.brand} in tx {event.tx_hash} has non-zero "
                f"low bits ({word & _LOW_BITS:#x}): the ledger refuses such usage words",
            )
        key = id_space(event.brand, usage.usage_id)
        if key in self._seen_usages:
            self.problem(
                "usage",
                f"usage {usage.usage_id} of {event.brand} settled again in tx {event.tx_hash}",
            )
        self._seen_usages.add(key)

    def _wrong_outcome(self, usage: Usage, code: int, expected: Outcome, event: SettledLog) -> None:
        self.problem(
            "outcome",
            f"usage {usage.usage_id} (twin {usage.twin_id}, brand {event.brand}, type "
            f"{usage.usage_type}, time {usage.used_at}) is '{outcome_words(code)}' on chain "
            f"(tx {event.tx_hash}), but the licenses, offers, pauses and spending limits of the "
            f"events make it '{outcome_words(int(expected))}'",
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
