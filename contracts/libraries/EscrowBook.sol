// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {ITwinLedgerTypes} from "../interfaces/ITwinLedgerTypes.sol";
import {TwinBook} from "./TwinBook.sol";

/// @title Every brand's escrow, debt queue and escrow withdrawal request
/// @notice Escrow (with the spending period's spend) is one word per brand, which settlement reads and
/// writes directly; debt sits apart, written only when escrow runs short. Debt is
/// a queue of entries (twin, amount) paid in order from the brand's deposits. A withdrawal request
/// unlocks after the notice period and lapses a claim window later; both count only time the ledger
/// was not paused (`pausedSeconds` is the ledger's running total of paused time).
/// @dev Everything but the settlement path is external (linked) to keep the ledger under the code-size
/// limit. The token transfers stay in the ledger.
library EscrowBook {
    using SafeCast for uint256;

    /// @dev Escrow and the spending period's spend share the word settlement writes anyway; `custom`
    /// says whether the brand ever set its own limits or attester (else its limits word is not read).
    struct Escrow {
        uint128 balance;
        uint88 spent;
        uint32 periodIndex;
        bool custom;
    }

    struct Account {
        uint128 debt;
        uint128 debtReserve;
        uint128 pendingWithdrawal;
        uint40 unlocksAt;
        uint40 pauseMark;
        uint48 debtHead;
    }

    struct DebtEntry {
        uint64 twinId;
        uint192 amount;
    }

    struct Book {
        mapping(address brand => Escrow) escrows;
        mapping(address brand => Account) accounts;
        // slither-disable-next-line uninitialized-state (entries are pushed through a storage pointer)
        mapping(address brand => DebtEntry[]) debts;
    }

    uint256 internal constant AUTO_REPAY_ENTRIES = 16;

    /// @notice Credits `amount` to the brand: outstanding debt first (paying up to AUTO_REPAY_ENTRIES
    /// entries at once), the rest to escrow. Emits {ITwinLedgerTypes-EscrowDeposited} and {ITwinLedgerTypes-DebtRepaid}.
    function deposit(
        Book storage book,
        mapping(uint256 => TwinBook.TwinAccount) storage twins,
        address brand,
        address from,
        uint256 amount
    ) external {
        if (amount == 0) revert ITwinLedgerTypes.EscrowZeroAmount();
        if (brand == address(0)) revert ITwinLedgerTypes.EscrowInvalidBrand(brand);
        Escrow storage escrow = book.escrows[brand];
        Account storage account = book.accounts[brand];
        uint256 owed = account.debt - account.debtReserve;
        uint256 toDebt = Math.min(amount, owed);
        account.debtReserve += uint128(toDebt);
        escrow.balance += (amount - toDebt).toUint128();
        emit ITwinLedgerTypes.EscrowDeposited(brand, from, amount, toDebt);
        if (toDebt > 0) repayDebt(book, twins, brand, AUTO_REPAY_ENTRIES);
    }

    /// @notice Pays debt entries in order from the brand's reserve, crediting the twins owed, at most
    /// `maxEntries`. Emits {ITwinLedgerTypes-DebtRepaid} per entry paid into.
    function repayDebt(
        Book storage book,
        mapping(uint256 => TwinBook.TwinAccount) storage twins,
        address brand,
        uint256 maxEntries
    ) public {
        Account storage account = book.accounts[brand];
        DebtEntry[] storage entries = book.debts[brand];
        uint256 reserve = account.debtReserve;
        uint256 head = account.debtHead;
        uint256 length = entries.length;
        uint256 paid = 0;
        for (uint256 n = 0; n < maxEntries && reserve > 0 && head < length; ++n) {
            DebtEntry storage entry = entries[head];
            uint256 amount = Math.min(entry.amount, reserve);
            if (amount != 0) {
                // An entry a void cancelled in full is skipped without an event.
                uint256 twinId = entry.twinId;
                entry.amount -= uint192(amount);
                reserve -= amount;
                paid += amount;
                twins[twinId].accrued += uint128(amount);
                emit ITwinLedgerTypes.DebtRepaid(brand, twinId, amount, head);
            }
            if (entry.amount == 0) ++head;
        }
        account.debtReserve = uint128(reserve);
        account.debtHead = uint48(head);
        account.debt -= uint128(paid);
    }

    /// @notice Adds `amount` owed to `twinId` to the brand's queue (to its last entry if that is the
    /// same twin's and unpaid) and returns the entry's index. Emits {ITwinLedgerTypes-DebtRecorded}.
    function recordDebt(Book storage book, address brand, uint256 twinId, uint256 amount)
        external
        returns (uint256 entry)
    {
        DebtEntry[] storage entries = book.debts[brand];
        uint256 length = entries.length;
        if (length > book.accounts[brand].debtHead && entries[length - 1].twinId == twinId) {
            entry = length - 1;
            entries[entry].amount += amount.toUint192();
        } else {
            entry = length;
            entries.push(DebtEntry({twinId: uint64(twinId), amount: amount.toUint192()}));
        }
        emit ITwinLedgerTypes.DebtRecorded(brand, twinId, amount, entry);
    }

    /// @notice Cancels up to `amount` of what debt entry `entry` still owes (a voided usage's debt) and
    /// returns what it cancelled; debt reserve beyond the debt left goes back to escrow.
    /// Emits {ITwinLedgerTypes-DebtCancelled} when anything was cancelled.
    function cancelDebt(Book storage book, address brand, uint256 entry, uint256 amount)
        external
        returns (uint256 cancelled)
    {
        if (amount == 0) return 0;
        DebtEntry storage debt = book.debts[brand][entry];
        cancelled = Math.min(debt.amount, amount);
        if (cancelled == 0) return 0;
        debt.amount -= uint192(cancelled);
        Account storage account = book.accounts[brand];
        uint256 left = account.debt - cancelled;
        account.debt = uint128(left);
        uint256 excess = account.debtReserve > left ? account.debtReserve - left : 0;
        if (excess != 0) {
            account.debtReserve = uint128(left);
            book.escrows[brand].balance += uint128(excess);
        }
        emit ITwinLedgerTypes.DebtCancelled(brand, debt.twinId, cancelled, entry, excess);
    }

    /// @notice Records the brand's request to withdraw up to `amount`, capped at its escrow now.
    /// Emits {ITwinLedgerTypes-EscrowWithdrawalRequested}.
    function requestWithdrawal(Book storage book, address brand, uint256 amount, uint40 notice, uint256 pausedSeconds)
        external
    {
        amount = Math.min(amount, book.escrows[brand].balance);
        if (amount == 0) revert ITwinLedgerTypes.EscrowZeroAmount();
        Account storage account = book.accounts[brand];
        uint40 unlocksAt = uint40(block.timestamp) + notice;
        account.pendingWithdrawal = uint128(amount);
        account.unlocksAt = unlocksAt;
        account.pauseMark = uint40(pausedSeconds);
        emit ITwinLedgerTypes.EscrowWithdrawalRequested(brand, amount, unlocksAt);
    }

    /// @notice Drops the brand's request. Emits {ITwinLedgerTypes-EscrowWithdrawalCancelled}.
    function cancelWithdrawal(Book storage book, address brand) external {
        Account storage account = book.accounts[brand];
        if (account.pendingWithdrawal == 0) revert ITwinLedgerTypes.EscrowNoPendingWithdrawal(brand);
        _clearRequest(account);
        emit ITwinLedgerTypes.EscrowWithdrawalCancelled(brand);
    }

    /// @notice Takes the requested amount (capped at the escrow) out of the brand's escrow once unlocked
    /// and before it lapses; the ledger transfers it. Emits {ITwinLedgerTypes-EscrowWithdrawn}.
    function takeWithdrawal(Book storage book, address brand, uint256 pausedSeconds, uint40 claimWindow)
        external
        returns (uint256 amount)
    {
        Account storage account = book.accounts[brand];
        uint256 pending = account.pendingWithdrawal;
        if (pending == 0) revert ITwinLedgerTypes.EscrowNoPendingWithdrawal(brand);
        uint40 unlocksAt = _unlocksAt(account, pausedSeconds);
        // slither-disable-next-line timestamp
        if (block.timestamp < unlocksAt) revert ITwinLedgerTypes.EscrowWithdrawalLocked(brand, unlocksAt);
        // slither-disable-next-line timestamp
        if (block.timestamp >= unlocksAt + claimWindow) {
            revert ITwinLedgerTypes.EscrowWithdrawalLapsed(brand, unlocksAt + claimWindow);
        }
        Escrow storage escrow = book.escrows[brand];
        amount = Math.min(pending, escrow.balance);
        _clearRequest(account);
        escrow.balance -= uint128(amount);
        emit ITwinLedgerTypes.EscrowWithdrawn(brand, amount);
    }

    /// @notice The brand's escrow, debt, reserve and request, its times as of now.
    function accountOf(Book storage book, address brand, uint256 pausedSeconds, uint40 claimWindow)
        external
        view
        returns (ITwinLedgerTypes.BrandAccount memory)
    {
        Escrow storage escrow = book.escrows[brand];
        Account storage account = book.accounts[brand];
        uint40 unlocksAt = account.pendingWithdrawal == 0 ? 0 : _unlocksAt(account, pausedSeconds);
        return ITwinLedgerTypes.BrandAccount({
            escrow: escrow.balance,
            debt: account.debt,
            debtReserve: account.debtReserve,
            pendingWithdrawal: account.pendingWithdrawal,
            withdrawalUnlocksAt: unlocksAt,
            withdrawalLapsesAt: unlocksAt == 0 ? 0 : unlocksAt + claimWindow
        });
    }

    /// @dev The unlock time of the request, later by the time the ledger was paused since it was made.
    function _unlocksAt(Account storage account, uint256 pausedSeconds) private view returns (uint40) {
        return uint40(account.unlocksAt + pausedSeconds - account.pauseMark);
    }

    function _clearRequest(Account storage account) private {
        account.pendingWithdrawal = 0;
        account.unlocksAt = 0;
        account.pauseMark = 0;
    }
}
