"""The rebuild: the ledger's events applied in order to a ``bridge.audit.state.LedgerState``, each
step checked against what the ledger must have done.

Twins (owner history, URI, consent hash, pauses, payees), every license version with its effective
window after later grants and revocations (``bridge.domain.licenses``), every usage with its
outcome and, when paid, its amount (``bridge.audit.settle``), each brand's escrow, debt queue
(recorded and repaid first in, first out), deposits and withdrawals, each twin's accrued
royalties, each payee's claimable balance and payouts, and who held which role when. Each
settlement transaction is verified against its signed input (``bridge.audit.verify``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from bridge.audit.logs import RawLog, SettledLog, TxInfo, is_settlement, log_entry
from bridge.audit.settle import Settlement
from bridge.audit.state import (
    Batch,
    BrandBook,
    DebtChange,
    Deposit,
    Discrepancy,
    Distribution,
    LedgerState,
    LicensePair,
    PayeeBook,
    Payout,
    Twin,
    Version,
    Withdrawal,
)
from bridge.audit.verify import verify_batch
from bridge.chain.events import LedgerEvent, ledger_decoder
from bridge.chain.ledger import ROLE_NAMES
from bridge.domain.licenses import end_running

ZERO_ADDRESS: Final = "0x0000000000000000000000000000000000000000"
BPS: Final = 10_000
_ROLE_NAMES: Final = {"0x" + role_id.hex(): name for role_id, name in ROLE_NAMES.items()}
"""Role names by id as decoded role events spell it (``0x`` hex)."""


class Rebuilder:
    """Applies the ledger's events, in order, to a :class:`LedgerState`, checking each step."""

    def __init__(self, state: LedgerState) -> None:
        self.state = state
        self._decoder = ledger_decoder()
        self._settlement = Settlement(state, self.problem)
        self._pending_debts: list[tuple[int, int]] = []
        self._pending_tx = ""
        self._distribution: list[LedgerEvent] = []

    def problem(self, kind: str, message: str) -> None:
        self.state.discrepancies.append(Discrepancy(kind, message))

    # ---------------------------------------------------------------- a range of logs

    def apply_range(self, raw_logs: Sequence[RawLog], txs: dict[str, TxInfo], chain_id: int) -> int:
        """Applies the logs of whole blocks (in log order) and verifies their settlement
        transactions (``txs`` by hash). Returns the number of usages settled in them."""
        settled_before = len(self.state.usages)
        batch: Batch | None = None
        for raw in raw_logs:
            if raw["transactionHash"] != self._pending_tx:
                self._end_tx()
                self._pending_tx = raw["transactionHash"]
            if not is_settlement(raw):
                self._apply(self._decoder.decode(log_entry(raw)))
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

    def _on_LicenseGranted(self, e: LedgerEvent) -> None:
        twin_id, brand = e.int_arg("twinId"), e.str_arg("brand")
        self._twin(twin_id, e)
        pair = self.state.licenses.setdefault((twin_id, brand), LicensePair())
        start = e.int_arg("validFrom")
        if pair.current is not None:
            pair.history.append(pair.current)
            end_running(reversed(pair.history), start)
        number = len(pair.history)
        if e.int_arg("version") != number:
            self.problem(
                "license",
                f"license of twin {twin_id} to {brand} granted in tx {e.tx_hash} as version "
                f"{e.int_arg('version')}; its history makes it version {number}",
            )
        pair.current = Version(
            number=number,
            valid_from=start,
            valid_until=e.int_arg("validUntil"),
            max_uses=e.int_arg("maxUses"),
            prices={int(p["usageType"]): int(p["price"]) for p in e.json_args()["prices"]},
            purpose_hash=e.str_arg("purposeHash"),
            consent_hash=e.str_arg("consentHash"),
            granted_block=e.block_number,
            granted_tx=e.tx_hash,
            granted_from=start,
            granted_until=e.int_arg("validUntil"),
        )
        pair.reindex()

    def _on_LicenseRevoked(self, e: LedgerEvent) -> None:
        twin_id, brand, at = e.int_arg("twinId"), e.str_arg("brand"), e.int_arg("revokedAt")
        pair = self.state.licenses.get((twin_id, brand))
        if pair is None or pair.current is None:
            self.problem(
                "license",
                f"tx {e.tx_hash} revokes a license of twin {twin_id} to "
                f"{brand} that was never granted",
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

    # ---------------------------------------------------------------- roles and pauses

    def _on_RoleGranted(self, e: LedgerEvent) -> None:
        holders = self.state.roles.setdefault(e.str_arg("role"), [])
        if e.str_arg("account") not in holders:
            holders.append(e.str_arg("account"))
        self._record_role(e, "granted")

    def _on_RoleRevoked(self, e: LedgerEvent) -> None:
        holders = self.state.roles.setdefault(e.str_arg("role"), [])
        if e.str_arg("account") in holders:
            holders.remove(e.str_arg("account"))
        self._record_role(e, "revoked")

    def _record_role(self, e: LedgerEvent, change: str) -> None:
        role = e.str_arg("role")
        self.state.role_history.append(
            [
                e.block_number,
                e.tx_hash,
                _ROLE_NAMES.get(role, role),
                e.str_arg("account"),
                change,
                e.str_arg("sender"),
            ]
        )

    def _on_Paused(self, e: LedgerEvent) -> None:
        self.state.paused = True

    def _on_Unpaused(self, e: LedgerEvent) -> None:
        self.state.paused = False

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

    def _on_EscrowWithdrawalRequested(self, e: LedgerEvent) -> None:
        book = self._brand(e.str_arg("brand"))
        book.pending_withdrawal = e.int_arg("amount")
        book.unlocks_at = e.int_arg("unlocksAt")

    def _on_EscrowWithdrawalCancelled(self, e: LedgerEvent) -> None:
        book = self._brand(e.str_arg("brand"))
        book.pending_withdrawal = 0
        book.unlocks_at = 0

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
        book.unlocks_at = 0
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
