// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

/// @title Held royalties of a twin and the records of settled groups
/// @notice With a hold window `H`, the royalties a settlement pays a twin are held, not accrued. Time is
/// cut into periods of length `H`; the funds settled in period `k` (`k = settledAt / H`) mature at
/// `(k + 2) * H`, so never before `H` has passed and at most `2H` after. A twin's held word keeps two
/// buckets, the later one for the period of its last change (`index`) and the earlier one for the period
/// before, plus the number of its open disputes:
/// `disputes (16) | index (32) | earlier (104) | later (104)` from the high bits down.
/// While a dispute is open nothing matures: a change in a later period merges both buckets into the
/// earlier one, which then matures at most `H` after the last dispute is resolved.
///
/// A settled group's record is one word: the high 216 bits of `keccak256(results ++ splits)` (see
/// {ITwinLedgerTypes-UsageProof}) and the settlement time in the low 40 bits.
/// @dev Internal functions only: settlement folds the twin's funded amount into its held word once per
/// twin and group.
library HoldBook {
    using SafeCast for uint256;

    uint256 internal constant AMOUNT_MASK = (1 << 104) - 1;
    uint256 internal constant EARLIER_SHIFT = 104;
    uint256 internal constant INDEX_SHIFT = 208;
    uint256 internal constant DISPUTES_SHIFT = 240;
    uint256 internal constant MAX_DISPUTES = type(uint16).max;
    uint256 internal constant TIME_MASK = (1 << 40) - 1;
    /// @dev A split's layout: `funded << 152 | debt << 48 | entry`.
    uint256 internal constant FUNDED_SHIFT = 152;
    uint256 internal constant DEBT_SHIFT = 48;
    uint256 internal constant ENTRY_MASK = (1 << 48) - 1;

    /// @notice The held word brought to `now_`: returns it with what matured since its last change
    /// taken out (the caller credits `matured` to the twin's accrued royalties).
    function roll(uint256 word, uint256 now_, uint256 window) internal pure returns (uint256, uint256 matured) {
        uint256 index = now_ / window;
        uint256 last = (word >> INDEX_SHIFT) & type(uint32).max;
        if (index == last) return (word, 0);
        uint256 newer = word & AMOUNT_MASK;
        uint256 older = (word >> EARLIER_SHIFT) & AMOUNT_MASK;
        if (word >> DISPUTES_SHIFT != 0) {
            older = (older + newer).toUint104();
        } else if (index == last + 1) {
            matured = older;
            older = newer;
        } else {
            matured = older + newer;
            older = 0;
        }
        // The new period's bucket starts empty.
        return ((word >> DISPUTES_SHIFT << DISPUTES_SHIFT) | (index << INDEX_SHIFT) | (older << EARLIER_SHIFT), matured);
    }

    /// @notice Adds `amount` to the later bucket of a word rolled to now.
    function add(uint256 word, uint256 amount) internal pure returns (uint256) {
        return (word & ~AMOUNT_MASK) | ((word & AMOUNT_MASK) + amount).toUint104();
    }

    /// @notice Takes `amount` settled in period `settledIndex` out of a word rolled to now: from the later
    /// bucket if that is its period, else from the earlier one (which holds every older unmatured fund).
    function take(uint256 word, uint256 settledIndex, uint256 amount) internal pure returns (uint256) {
        if ((word >> INDEX_SHIFT) & type(uint32).max == settledIndex) {
            return (word & ~AMOUNT_MASK) | ((word & AMOUNT_MASK) - amount);
        }
        uint256 left = ((word >> EARLIER_SHIFT) & AMOUNT_MASK) - amount;
        return (word & ~(AMOUNT_MASK << EARLIER_SHIFT)) | (left << EARLIER_SHIFT);
    }

    /// @notice The word with its open-dispute count changed by one (up when `up`).
    function countDispute(uint256 word, bool up) internal pure returns (uint256) {
        return up ? word + (1 << DISPUTES_SHIFT) : word - (1 << DISPUTES_SHIFT);
    }

    function disputesOf(uint256 word) internal pure returns (uint256) {
        return word >> DISPUTES_SHIFT;
    }

    function laterOf(uint256 word) internal pure returns (uint256) {
        return word & AMOUNT_MASK;
    }

    function earlierOf(uint256 word) internal pure returns (uint256) {
        return (word >> EARLIER_SHIFT) & AMOUNT_MASK;
    }

    function indexOf(uint256 word) internal pure returns (uint256) {
        return (word >> INDEX_SHIFT) & type(uint32).max;
    }

    /// @notice The key of the record of `brand`'s group in batch `batchDigest`.
    function groupKey(bytes32 batchDigest, address brand) internal pure returns (bytes32) {
        return keccak256(abi.encode(batchDigest, brand));
    }

    /// @notice A group's record from its commitment hash and settlement time.
    function record(bytes32 commitment, uint256 settledAt) internal pure returns (uint256) {
        return (uint256(commitment) & ~TIME_MASK) | settledAt;
    }
}
