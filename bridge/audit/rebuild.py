"""The rebuild: the ledger's events applied in order to a ``bridge.audit.state.LedgerState``, each
step checked against what the ledger must have done.

Twins (owner history, URI, consent hash, pauses, payees), every license offer (waiting, accepted,
declined, withdrawn) and every accepted version with the terms of its offer and its effective
window after later acceptances and revocations (``bridge.domain.licenses``), each brand's spending
limits (a raise in force after its delay) and own attester, every usage with its
outcome and, when paid, its amount (``bridge.audit.settle``), each brand's escrow, debt queue
(recorded and repaid first in, first out), deposits and withdrawals, each twin's accrued
royalties, each payee's claimable balance and payouts, and who held which role of the access
manager when (a grant counts from its ``since``). Each
settlement transaction is verified against its signed input (``bridge.audit.verify``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from bridge.audit.logs import RawLog, SettledLog, TxInfo, is_settlement, log_entry
from bridge.audit.settle import Settlement, limits_in_force
from bridge.audit.state import (
    Batch,
    BrandBook,
    DebtChange,
    Deposit,
    Discrepancy,
    Distribution,
    LedgerState,
    LicensePair,
    Offer,
    PayeeBook,
    Payout,
    Twin,
    Version,
    Withdrawal,
)
from bridge.audit.terms import MAX_STORED_TIME, terms_hash
from bridge.audit.verify import verify_batch
from bridge.chain.events import LedgerEvent, ledger_decoder, manager_decoder
from bridge.chain.ledger import role_name
from bridge.domain.licenses import end_running

ZERO_ADDRESS: Final = "0x0000000000000000000000000000000000000000"
BPS: Final = 10_000


class Rebuilder:
    """Applies the ledger's events, in order, to a :class:`LedgerState`, checking each step."""

    def __init__(self, state: LedgerState) -> None:
        self.state = state
        self._decoder = ledger_decoder()
        self._manager_decoder = manager_decoder()
        self.times: dict[int, int] = {}
        """Block number -> its time, for the blocks whose events need it (acceptances, limits)."""
        self._settlement = Settlement(state, self.problem)
        self._pending_debts: list[tuple[int, int]] = []
        self._pending_tx = ""
        self._distribution: list[LedgerEvent] = []

    def problem(self, kind: str, message: str) -> None:
        self.state.discrepancies.append(Discrepancy(kind, message))

    # ---------------------------------------------------------------- a range of logs

    def apply_range(
        self,
        raw_logs: Sequence[RawLog],
        txs: dict[str, TxInfo],
        chain_id: int,
        times: dict[int, int] | None = None,
    ) -> int:
        """Applies the logs of whole blocks (in log order; the ledger's and its access
        manager's) and verifies their settlement transactions (``txs`` by hash); ``times`` are the
        times of the blocks with acceptances and limit settings. Returns the number of usages
        settled in them."""
        self.times.update(times or {})
        settled_before = len(self.state.usages)
        batch: Batch | None = None
        for raw in raw_logs:
            if raw["transactionHash"] != self._pending_tx:
                self._end_tx()
                self._pending_tx = raw["transactionHash"]
            if not is_settlement(raw):
                self._apply(self._decode(raw))
                continue
            self._flush_distribution()
            event = SettledLog.from_raw(raw)
            if batch is None or batch.tx_hash != event.tx_hash:
                if batch is not None:
                    self._verify(batch, txs, chain_id)
                batch = self._settlement.open_batch(event, txs.get(event.tx_hash))
            book = self._brand(event.brand)
            self._settlement.settle_group(event, batch, book, self._pending_debts)
            self._pending_debts = []
            self.state.events["UsagesSettled"] += 1
        if batch is not None:
            self._verify(batch, txs, chain_id)
        self._end_tx()
        return len(self.state.usages) - settled_before

    def _decode(self, raw: RawLog) -> LedgerEvent:
        """A log of the ledger, or of its access manager, decoded with its contract's ABI."""
        entry = log_entry(raw)
        if self.state.manager is not None and entry.address == self.state.manager:
            return self._manager_decoder.decode(entry)
        return self._decoder.decode(entry)

    def _end_tx(self) -> None:
        self._flush_distribution()
        if self._pending_debts:
            self.problem(
                "debt",
                f"tx {self._pending_tx} records debt {self._pending_debts} that no settlement "
                "in it accounts for",
            )
            self._pending_debts = []

    def _apply(self, event: LedgerEvent) -> None:
        """One event other than ``UsagesSettled``, by its ``_on_<name>`` handler."""
        if event.name != "RoyaltiesDistributed" or not self._continues_distribution(event):
            self._flush_distribution()
        self.state.events[event.name] += 1
        handler = getattr(self, f"_on_{event.name}", None)
        if handler is not None:
            handler(event)

    # ---------------------------------------------------------------- books

    def _twin(self, twin_id: int, event: LedgerEvent) -> Twin | None:
        twin = self.state.twins.get(twin_id)
        if twin is None:
            self.problem(
                "twin",
                f"{event.name} in tx {event.tx_hash} names twin {twin_id}, which was never minted",
            )
        return twin

    def _brand(self, brand: str) -> BrandBook:
        book = self.state.brands.get(brand)
        if book is None:
            book = self.state.brands[brand] = BrandBook()
        return book

    def _payee(self, payee: str) -> PayeeBook:
        book = self.state.payees.get(payee)
        if book is None:
            book = self.state.payees[payee] = PayeeBook()
        return book

    # ---------------------------------------------------------------- twins

    def _on_TwinMinted(self, e: LedgerEvent) -> None:
        twin_id, owner = e.int_arg("twinId"), e.str_arg("owner")
        if twin_id in self.state.twins:
            self.problem("twin", f"twin {twin_id} minted twice (again in tx {e.tx_hash})")
        expected = max(self.state.twins, default=0) + 1
        if twin_id != expected:
            self.problem("twin", f"twin {twin_id} minted in tx {e.tx_hash}; expected id {expected}")
        self.state.twins[twin_id] = Twin(
            twin_id=twin_id,
            owner=owner,
            uri=e.str_arg("uri"),
            consent_hash=e.str_arg("consentHash"),
            minted_block=e.block_number,
            minted_tx=e.tx_hash,
            owners=[[e.block_number, e.tx_hash, owner]],
        )

    def _on_Transfer(self, e: LedgerEvent) -> None:
        source, target, twin_id = e.str_arg("from"), e.str_arg("to"), e.int_arg("tokenId")
        twin = self._twin(twin_id, e)
        if twin is None:
            return
        if source == ZERO_ADDRESS:
            if target != twin.owner:
                self.problem(
                    "twin", f"twin {twin_id} minted to {target}, TwinMinted says {twin.owner}"
                )
            return
        if source != twin.owner:
            self.problem(
                "twin",
                f"twin {twin_id} transferred from {source} in tx {e.tx_hash}, but its owner was "
                f"{twin.owner}",
            )
        if twin.accrued:
            self.problem(
                "royalties",
                f"twin {twin_id} changed hands in tx {e.tx_hash} with {twin.accrued} undistributed",
            )
        twin.owner = target
        twin.owners.append([e.block_number, e.tx_hash, target])

    def _on_TwinPaused(self, e: LedgerEvent) -> None:
        twin = self._twin(e.int_arg("twinId"), e)
        if twin is None:
            return
        if twin.paused_since:
            self.problem("pause", f"twin {twin.twin_id} paused again in tx {e.tx_hash}")
        twin.paused_since = e.int_arg("at")

    def _on_TwinUnpaused(self, e: LedgerEvent) -> None:
        twin = self._twin(e.int_arg("twinId"), e)
        if twin is None:
            return
        if not twin.paused_since:
            self.problem(
                "pause", f"twin {twin.twin_id} unpaused in tx {e.tx_hash} while not paused"
            )
        twin.pauses.append([twin.paused_since, e.int_arg("at")])
        twin.paused_since = 0

    def _on_PayeesSet(self, e: LedgerEvent) -> None:
        twin = self._twin(e.int_arg("twinId"), e)
        if twin is None:
            return
        payees = e.json_args()["payees"]
        twin.payees = [[str(p["account"]), int(p["bps"])] for p in payees]
        if twin.accrued:
            self.problem(
                "royalties",
                f"payees of twin {twin.twin_id} replaced in tx {e.tx_hash} with "
                f"{twin.accrued} undistributed",
            )

    # ---------------------------------------------------------------- licenses

    def _on_LicenseOffered(self, e: LedgerEvent) -> None:
        """A waiting offer numbered as the pair's next version (count of accepted versions); an
        offer still waiting must have been withdrawn by the event before."""
        twin_id, brand, number = e.int_arg("twinId"), e.str_arg("brand"), e.int_arg("version")
        self._twin(twin_id, e)
        pair = self.state.licenses.get((twin_id, brand))
        expected = 0 if pair is None else len(pair.versions())
        if number != expected:
            self.problem(
                "license",
                f"offer to {brand} of twin {twin_id} in tx {e.tx_hash} is version {number}; "
                f"{expected} versions were accepted before it",
            )
        if (twin_id, brand) in self.state.pending:
            self.problem(
                "license",
                f"offer of tx {e.tx_hash} replaces a waiting offer of twin {twin_id} to {brand} "
                "that no LicenseOfferWithdrawn ended",
            )
        prices = {int(p["usageType"]): int(p["price"]) for p in e.json_args()["prices"]}
        offer = Offer(
            twin_id=twin_id,
            brand=brand,
            version=number,
            valid_from=e.int_arg("validFrom"),
            valid_until=e.int_arg("validUntil"),
            max_uses=e.int_arg("maxUses"),
            prices=prices,
            purpose_hash=e.str_arg("purposeHash"),
            consent_hash=e.str_arg("consentHash"),
            terms_hash=e.str_arg("termsHash"),
            offered_block=e.block_number,
            offered_tx=e.tx_hash,
        )
        self._check_terms_hash(offer, e)
        self.state.offers.append(offer)
        self.state.pending[twin_id, brand] = offer

    def _check_terms_hash(self, offer: Offer, e: LedgerEvent) -> None:
        """The offer's terms hash is the EIP-712 struct hash of its terms (times beyond the
        ledger's 32-bit storage are clamped in the event, so they are not checked)."""
        if max(offer.valid_from, offer.valid_until) >= MAX_STORED_TIME:
            return
        expected = terms_hash(offer)
        if expected != offer.terms_hash:
            self.problem(
                "license",
                f"offer of twin {offer.twin_id} to {offer.brand} in tx {e.tx_hash} names terms "
                f"hash {offer.terms_hash}; its terms hash to {expected}",
            )

    def _close_offer(self, e: LedgerEvent, status: str) -> Offer | None:
        """The pair's waiting offer that ``e`` names, closed with ``status``."""
        twin_id, brand, number = e.int_arg("twinId"), e.str_arg("brand"), e.int_arg("version")
        offer = self.state.pending.get((twin_id, brand))
        if offer is None or offer.version != number:
            self.problem(
                "license",
                f"{e.name} in tx {e.tx_hash} names offer {number} of twin {twin_id} to {brand}; "
                + ("none waits" if offer is None else f"offer {offer.version} waits"),
            )
            return None
        del self.state.pending[twin_id, brand]
        offer.status, offer.closed_block, offer.closed_tx = status, e.block_number, e.tx_hash
        return offer

    def _on_LicenseDeclined(self, e: LedgerEvent) -> None:
        self._close_offer(e, "declined")

    def _on_LicenseOfferWithdrawn(self, e: LedgerEvent) -> None:
        self._close_offer(e, "withdrawn")

    def _on_LicenseAccepted(self, e: LedgerEvent) -> None:
        """The accepted offer becomes the pair's current version from ``validFrom`` (the later
        of its offered start and the acceptance); earlier versions end there."""
        offer = self._close_offer(e, "accepted")
        if offer is None:
            return
        start = e.int_arg("validFrom")
        offer.accepted_from = start
        accepted_at = self.times.get(e.block_number)
        if accepted_at is not None and start != max(offer.valid_from, accepted_at):
            self.problem(
                "license",
                f"offer {offer.version} of twin {offer.twin_id} accepted by {offer.brand} in tx "
                f"{e.tx_hash} starts at {start}; its start {offer.valid_from} and the acceptance "
                f"at {accepted_at} make it {max(offer.valid_from, accepted_at)}",
            )
        if start >= offer.valid_until:
            self.problem("license", f"tx {e.tx_hash} accepts an offer whose window has ended")
        pair = self.state.licenses.setdefault((offer.twin_id, offer.brand), LicensePair())
        if pair.current is not None:
            pair.history.append(pair.current)
            end_running(reversed(pair.history), start)
        pair.current = Version(
            number=offer.version,
            valid_from=start,
            valid_until=offer.valid_until,
            max_uses=offer.max_uses,
            prices=dict(offer.prices),
            purpose_hash=offer.purpose_hash,
            consent_hash=offer.consent_hash,
            granted_block=e.block_number,
            granted_tx=e.tx_hash,
            granted_from=start,
            granted_until=offer.valid_until,
            offered_from=offer.valid_from,
            terms_hash=offer.terms_hash,
        )
        pair.reindex()

    def _on_LicenseRevoked(self, e: LedgerEvent) -> None:
        twin_id, brand, at = e.int_arg("twinId"), e.str_arg("brand"), e.int_arg("revokedAt")
        pair = self.state.licenses.get((twin_id, brand))
        if pair is None or pair.current is None:
            self.problem(
                "license",
                f"tx {e.tx_hash} revokes a license of twin {twin_id} to "
                f"{brand} that was never accepted",
            )
            return
        for version in end_running(pair.newest_first(), at):
            version.revoked = True
            version.revoked_at = at
        if e.int_arg("version") != len(pair.history):
            self.problem(
                "license",
                f"revocation in tx {e.tx_hash} names version "
                f"{e.int_arg('version')}, the current one is {len(pair.history)}",
            )
        pair.reindex()

    # ---------------------------------------------------------------- brands' limits

    def _on_SpendingLimitsSet(self, e: LedgerEvent) -> None:
        """Limits in force from ``effectiveAt``: at once (a lowering: it drops a waiting raise)
        or after the raise delay (a raise: it replaces a raise still waiting)."""
        brand, at = e.str_arg("brand"), e.int_arg("effectiveAt")
        book = self._brand(brand)
        setting = [e.int_arg("perUsage"), e.int_arg("perPeriod"), at]
        now = self.times.get(e.block_number)
        if now is None:
            book.pending_limits = setting
            return
        limits_in_force(book, self.state.config, now)
        book.pending_limits = None
        if at <= now:
            book.limits = setting
        else:
            book.pending_limits = setting
        config = self.state.config
        if config is not None and at not in (now, now + int(config[2])):
            self.problem(
                "limits",
                f"limits of {brand} set in tx {e.tx_hash} take effect at {at}; the ledger makes "
                f"it {now} (a lowering) or {now + int(config[2])} (a raise)",
            )

    def _on_BrandAttesterSet(self, e: LedgerEvent) -> None:
        self._brand(e.str_arg("brand")).attester = e.str_arg("attester")

    def _on_EscrowWithdrawalRequested(self, e: LedgerEvent) -> None:
        brand, amount = e.str_arg("brand"), e.int_arg("amount")
        book = self._brand(brand)
        if not 0 < amount <= book.escrow:
            self.problem(
                "escrow",
                f"{brand} asked in tx {e.tx_hash} to withdraw {amount}; the ledger caps a "
                f"request at the escrow then ({book.escrow}) and refuses 0",
            )
        book.pending_withdrawal = amount
        book.unlocks_at = e.int_arg("unlocksAt")
        now = self.times.get(e.block_number, 0)
        book.pause_mark = self.state.paused_seconds_at(now)

    # ---------------------------------------------------------------- roles (the access manager's)

    def _on_AuthorityUpdated(self, e: LedgerEvent) -> None:
        authority = e.str_arg("authority")
        if self.state.manager is None:
            self.state.manager = authority
        elif authority != self.state.manager:
            self.problem(
                "roles",
                f"the ledger's access manager became {authority} in tx {e.tx_hash}; the audit "
                f"follows the role events of {self.state.manager}",
            )

    def _on_RoleGranted(self, e: LedgerEvent) -> None:
        """A member from ``since`` (now, or after the role's grant delay)."""
        role, account = role_name(e.int_arg("roleId")), e.str_arg("account")
        since = e.int_arg("since")
        self.state.roles.setdefault(role, {})[account] = since
        self._record_role(e, role, account, "granted", since)

    def _on_RoleRevoked(self, e: LedgerEvent) -> None:
        role, account = role_name(e.int_arg("roleId")), e.str_arg("account")
        self.state.roles.setdefault(role, {}).pop(account, None)
        self._record_role(e, role, account, "revoked", None)

    def _on_RoleGrantDelayChanged(self, e: LedgerEvent) -> None:
        role = role_name(e.int_arg("roleId"))
        self._record_role(e, role, None, f"grant delay {e.int_arg('delay')}", e.int_arg("since"))

    def _record_role(
        self, e: LedgerEvent, role: str, account: str | None, change: str, since: int | None
    ) -> None:
        self.state.role_history.append([e.block_number, e.tx_hash, role, account, change, since])

    def _on_Paused(self, e: LedgerEvent) -> None:
        self.state.paused = True
        self.state.paused_at = self.times.get(e.block_number, 0)

    def _on_Unpaused(self, e: LedgerEvent) -> None:
        now = self.times.get(e.block_number)
        if self.state.paused_at and now is not None:
            self.state.paused_seconds += now - self.state.paused_at
        self.state.paused, self.state.paused_at = False, 0

    # ---------------------------------------------------------------- escrow and debt

    def _on_EscrowDeposited(self, e: LedgerEvent) -> None:
        brand, amount, to_debt = e.str_arg("brand"), e.int_arg("amount"), e.int_arg("toDebt")
        book = self._brand(brand)
        expected = min(amount, book.debt - book.debt_reserve)
        if to_debt != expected:
            self.problem(
                "escrow",
                f"deposit of {amount} for {brand} in tx {e.tx_hash} put "
                f"{to_debt} to debt; its outstanding debt makes it {expected}",
            )
        book.debt_reserve += to_debt
        book.escrow += amount - to_debt
        book.deposited += amount
        self.state.deposits.append(
            Deposit(e.block_number, e.tx_hash, brand, e.str_arg("from"), amount, to_debt)
        )

    def _on_EscrowWithdrawalCancelled(self, e: LedgerEvent) -> None:
        book = self._brand(e.str_arg("brand"))
        book.pending_withdrawal = 0
        book.unlocks_at = book.pause_mark = 0

    def _on_EscrowWithdrawn(self, e: LedgerEvent) -> None:
        brand, amount = e.str_arg("brand"), e.int_arg("amount")
        book = self._brand(brand)
        expected = min(book.pending_withdrawal, book.escrow)
        if amount != expected:
            self.problem(
                "escrow",
                f"{brand} withdrew {amount} of escrow in tx {e.tx_hash}; its "
                f"request and escrow allow {expected}",
            )
        book.escrow -= amount
        book.withdrawn += amount
        book.pending_withdrawal = 0
        book.unlocks_at = book.pause_mark = 0
        self.state.withdrawals.append(Withdrawal(e.block_number, e.tx_hash, brand, amount))

    def _on_DebtRecorded(self, e: LedgerEvent) -> None:
        brand, twin_id = e.str_arg("brand"), e.int_arg("twinId")
        amount, entry = e.int_arg("amount"), e.int_arg("entry")
        book = self._brand(brand)
        entries = book.debt_entries
        merge = len(entries) > book.debt_head and entries[-1][0] == twin_id
        expected = len(entries) - 1 if merge else len(entries)
        if entry != expected:
            self.problem(
                "debt",
                f"debt of {brand} to twin {twin_id} in tx {e.tx_hash} recorded "
                f"as entry {entry}; its queue makes it entry {expected}",
            )
        if merge:
            entries[-1][1] += amount
        else:
            entries.append([twin_id, amount])
        book.debt += amount
        book.debt_recorded += amount
        self._pending_debts.append((twin_id, amount))
        self.state.debts.append(
            DebtChange(e.block_number, e.tx_hash, "recorded", brand, twin_id, amount, entry)
        )

    def _on_DebtRepaid(self, e: LedgerEvent) -> None:
        brand, twin_id = e.str_arg("brand"), e.int_arg("twinId")
        amount, entry = e.int_arg("amount"), e.int_arg("entry")
        book = self._brand(brand)
        self._repay_entry(book, e)
        book.debt_reserve -= amount
        book.debt -= amount
        book.debt_repaid += amount
        twin = self._twin(twin_id, e)
        if twin is not None:
            twin.accrued += amount
            twin.earned += amount
        self.state.debts.append(
            DebtChange(e.block_number, e.tx_hash, "repaid", brand, twin_id, amount, entry)
        )

    def _repay_entry(self, book: BrandBook, e: LedgerEvent) -> None:
        """The repayment comes off the first entry in line, which it must name."""
        brand, twin_id = e.str_arg("brand"), e.int_arg("twinId")
        amount, entry = e.int_arg("amount"), e.int_arg("entry")
        head = book.debt_head
        if head >= len(book.debt_entries) or entry != head:
            self.problem(
                "debt",
                f"tx {e.tx_hash} repays debt entry {entry} of {brand}; first in "
                f"line is entry {head} of {len(book.debt_entries)}",
            )
            return
        owed_twin, owed = book.debt_entries[head]
        expected = min(owed, book.debt_reserve)
        if owed_twin != twin_id or amount != expected:
            self.problem(
                "debt",
                f"tx {e.tx_hash} repays {amount} of entry {entry} of {brand} "
                f"to twin {twin_id}; the entry owes {owed} to twin {owed_twin} and "
                f"the reserve pays {expected}",
            )
        book.debt_entries[head][1] -= amount
        if book.debt_entries[head][1] <= 0:
            book.debt_head += 1

    # ---------------------------------------------------------------- royalties

    def _on_RoyaltiesDistributed(self, e: LedgerEvent) -> None:
        self._distribution.append(e)
        payee, amount = e.str_arg("payee"), e.int_arg("amount")
        book = self._payee(payee)
        book.claimable += amount
        book.credited += amount
        self.state.distributions.append(
            Distribution(e.block_number, e.tx_hash, e.int_arg("twinId"), payee, amount)
        )

    def _continues_distribution(self, e: LedgerEvent) -> bool:
        """Whether ``e`` (a ``RoyaltiesDistributed``) belongs to the distribution under way: the
        same twin in the same transaction (or there is none under way)."""
        if not self._distribution:
            return True
        first = self._distribution[0]
        return first.int_arg("twinId") == e.int_arg("twinId") and first.tx_hash == e.tx_hash

    def _flush_distribution(self) -> None:
        """Checks one distribution (consecutive ``RoyaltiesDistributed`` of a twin in one tx): it
        empties the twin's account, split as its payees say, the rest to the owner."""
        if not self._distribution:
            return
        events, self._distribution = self._distribution, []
        first = events[0]
        twin = self._twin(first.int_arg("twinId"), first)
        if twin is None:
            return
        expected = _royalty_split(twin)
        actual = [(e.str_arg("payee"), e.int_arg("amount")) for e in events]
        if actual != expected:
            self.problem(
                "royalties",
                f"twin {twin.twin_id}'s royalties distributed in tx "
                f"{first.tx_hash} as {actual}; its account of {twin.accrued} and payees "
                f"make it {expected}",
            )
        total = sum(amount for _, amount in actual)
        twin.accrued -= total
        twin.distributed += total

    def _on_PayeePaid(self, e: LedgerEvent) -> None:
        payee, amount = e.str_arg("payee"), e.int_arg("amount")
        book = self._payee(payee)
        if amount != book.claimable:
            self.problem(
                "payout",
                f"{payee} was paid {amount} in tx {e.tx_hash}; its claimable "
                f"balance was {book.claimable}",
            )
        book.claimable -= amount
        book.paid_out += amount
        book.payouts += 1
        self.state.payouts.append(
            Payout(e.block_number, e.tx_hash, payee, e.str_arg("caller"), amount)
        )

    # ---------------------------------------------------------------- settlement

    def _verify(self, batch: Batch, txs: dict[str, TxInfo], chain_id: int) -> None:
        state = self.state
        verify_batch(
            batch,
            txs.get(batch.tx_hash),
            ledger=state.ledger,
            chain_id=chain_id,
            results=self._settlement.batch_results,
        )
        if batch.problems:
            self.problem(
                "batch",
                f"batch {batch.digest} in tx {batch.tx_hash} (block {batch.block_number}): "
                + "; ".join(batch.problems),
            )


def _royalty_split(twin: Twin) -> list[tuple[str, int]]:
    """How the twin's account is distributed: each payee's share in basis points (none when it
    rounds to zero), the rest to its owner."""
    split: list[tuple[str, int]] = []
    rest = twin.accrued
    for account, bps in twin.payees:
        share = twin.accrued * int(bps) // BPS
        if share:
            split.append((str(account), share))
            rest -= share
    if rest:
        split.append((twin.owner, rest))
    return split
