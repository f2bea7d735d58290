// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {ITwinLedgerTypes} from "../interfaces/ITwinLedgerTypes.sol";
import {LimitCodec} from "./LimitCodec.sol";

/// @title Every brand's spending limits, the current period's spend and its own attester
/// @notice A brand's limits and spend are one word (see {LimitCodec}); a raise waits in `pending` until
/// its delay has passed, and counts from then on without any further transaction.
/// @dev Setting and reading are external (linked) functions to keep the ledger under the code-size
/// limit; {current}, which settlement calls once per brand and batch, is internal.
library SpendingBook {
    using LimitCodec for uint256;

    struct Pending {
        uint32 perUsage;
        uint32 perPeriod;
        uint40 effectiveAt;
    }

    struct Book {
        mapping(address brand => uint256 word) words;
        mapping(address brand => Pending) pending;
        mapping(address brand => address attester) attesters;
    }

    /// @notice Sets the brand's limits: at once if neither is higher than in force, else after `raiseDelay`.
    /// Emits {ITwinLedgerTypes-SpendingLimitsSet}.
    function setLimits(
        Book storage book,
        address brand,
        uint256 perUsage,
        uint256 perPeriod,
        uint256 defaults,
        uint32 raiseDelay
    ) external {
        if (perUsage == 0 || perUsage > perPeriod) revert ITwinLedgerTypes.SpendingLimitsInvalid(perUsage, perPeriod);
        uint256 word = current(book, brand, defaults);
        uint32 usageCode = LimitCodec.encode(perUsage);
        uint32 periodCode = LimitCodec.encode(perPeriod);
        uint256 newPerUsage = LimitCodec.decode(usageCode);
        uint256 newPerPeriod = LimitCodec.decode(periodCode);
        uint40 effectiveAt = uint40(block.timestamp);
        delete book.pending[brand];
        if (newPerUsage <= word.perUsage() && newPerPeriod <= word.perPeriod()) {
            word = word.withCodes(LimitCodec.codes(usageCode, periodCode)) & ~LimitCodec.PENDING;
        } else {
            effectiveAt += raiseDelay;
            book.pending[brand] = Pending(usageCode, periodCode, effectiveAt);
            word |= LimitCodec.PENDING;
        }
        book.words[brand] = word;
        emit ITwinLedgerTypes.SpendingLimitsSet(brand, newPerUsage, newPerPeriod, effectiveAt);
    }

    /// @notice Names the brand's own attester (zero: none). Emits {ITwinLedgerTypes-BrandAttesterSet}.
    function setAttester(Book storage book, address brand, address attester, uint256 defaults) external {
        uint256 word = current(book, brand, defaults);
        book.attesters[brand] = attester;
        book.words[brand] = attester == address(0) ? word & ~LimitCodec.OWN_ATTESTER : word | LimitCodec.OWN_ATTESTER;
        emit ITwinLedgerTypes.BrandAttesterSet(brand, attester);
    }

    /// @notice The brand's limits in force, the current period's start, a waiting raise and its attester
    /// (the ledger adds the period's spend, which it keeps with the escrow).
    function limitsOf(Book storage book, address brand, uint256 defaults, uint256 period)
        external
        view
        returns (ITwinLedgerTypes.BrandLimits memory limits)
    {
        uint256 word = current(book, brand, defaults);
        limits.perUsage = word.perUsage();
        limits.perPeriod = word.perPeriod();
        uint256 index = block.timestamp / period;
        // Periods are aligned on purpose: a period starts at its index times its length.
        // slither-disable-next-line divide-before-multiply
        limits.periodStart = uint40(index * period);
        if (word & LimitCodec.PENDING != 0) {
            Pending storage pending = book.pending[brand];
            limits.pendingPerUsage = LimitCodec.decode(pending.perUsage);
            limits.pendingPerPeriod = LimitCodec.decode(pending.perPeriod);
            limits.pendingEffectiveAt = pending.effectiveAt;
        }
        limits.attester = book.attesters[brand];
    }

    /// @notice The brand's word as in force now: `defaults` (codes with the CONFIGURED flag) until the brand
    /// set its own, a raise whose delay has passed applied (callers that write the word back keep it).
    function current(Book storage book, address brand, uint256 defaults) internal view returns (uint256 word) {
        word = book.words[brand];
        if (word & LimitCodec.CONFIGURED == 0) word |= defaults;
        if (word & LimitCodec.PENDING != 0) {
            Pending memory pending = book.pending[brand];
            // slither-disable-next-line timestamp
            if (block.timestamp >= pending.effectiveAt) {
                word = word.withCodes(LimitCodec.codes(pending.perUsage, pending.perPeriod)) & ~LimitCodec.PENDING;
            }
        }
    }
}
