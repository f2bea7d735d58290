// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title Packing of a license version into one storage word
/// @notice From the high bits down:
/// `validFrom (32) | validUntil (32) | maxUses (32) | uses (32) | flags (8) | price2 (40) | price1 (40) | price0 (40)`.
/// An inline price entry is `usageType (8) | exponent (4) | mantissa (28)` for a price of
/// `mantissa * 10**exponent`: every price below 2**28 base units, and every larger one with enough
/// trailing zeros (e.g. 5,000.00 USD at 6 decimals), fits. Other prices, and usage types beyond three,
/// live in an overflow mapping (flag `HAS_OVERFLOW`). Times are seconds since 1970 as uint32 (until
/// 2106). Ordering the words of a history by value orders them by `validFrom`, which binary search
/// relies on.
library LicenseCodec {
    uint256 internal constant VALID_FROM_SHIFT = 224;
    uint256 internal constant VALID_UNTIL_SHIFT = 192;
    uint256 internal constant MAX_USES_SHIFT = 160;
    uint256 internal constant USES_SHIFT = 128;
    uint256 internal constant FLAGS_SHIFT = 120;
    uint256 internal constant ENTRY_BITS = 40;
    uint256 internal constant INLINE_ENTRIES = 3;

    uint256 internal constant EXISTS = 1;
    uint256 internal constant REVOKED = 2;
    uint256 internal constant HAS_OVERFLOW = 4;
    /// @dev Flag of inline entry `i` is `INLINE0 << i`.
    uint256 internal constant INLINE0 = 8;

    uint256 internal constant MAX_TIME = type(uint32).max;
    uint256 private constant _MANTISSA_LIMIT = 1 << 28;
    uint256 private constant _MAX_EXPONENT = 15;
    uint256 private constant _USES_MASK = uint256(type(uint32).max) << USES_SHIFT;
    uint256 private constant _UNTIL_MASK = uint256(type(uint32).max) << VALID_UNTIL_SHIFT;
    uint256 private constant _FROM_MASK = uint256(type(uint32).max) << VALID_FROM_SHIFT;

    function validFrom(uint256 word) internal pure returns (uint40) {
        return uint40(word >> VALID_FROM_SHIFT);
    }

    function validUntil(uint256 word) internal pure returns (uint40) {
        return uint32(word >> VALID_UNTIL_SHIFT);
    }

    function maxUses(uint256 word) internal pure returns (uint32) {
        return uint32(word >> MAX_USES_SHIFT);
    }

    function uses(uint256 word) internal pure returns (uint32) {
        return uint32(word >> USES_SHIFT);
    }

    function has(uint256 word, uint256 flag) internal pure returns (bool) {
        return (word >> FLAGS_SHIFT) & flag != 0;
    }

    /// @param from start of validity, at most `MAX_TIME`
    /// @param until end of validity, at most `MAX_TIME`
    function encode(uint256 from, uint256 until, uint32 cap, uint256 flagBits, uint256 entries)
        internal
        pure
        returns (uint256)
    {
        return (from << VALID_FROM_SHIFT) | (until << VALID_UNTIL_SHIFT) | (uint256(cap) << MAX_USES_SHIFT)
            | (flagBits << FLAGS_SHIFT) | entries;
    }

    /// @notice The inline entry for `price`, or `ok == false` if it has no exact inline form.
    function inlineEntry(uint8 usageType, uint256 price) internal pure returns (bool ok, uint256 entry) {
        uint256 exponent;
        while (price >= _MANTISSA_LIMIT && price % 10 == 0 && exponent < _MAX_EXPONENT) {
            price /= 10;
            ++exponent;
        }
        if (price >= _MANTISSA_LIMIT) return (false, 0);
        return (true, (uint256(usageType) << 32) | (exponent << 28) | price);
    }

    /// @notice Usage type and price of inline entry `index` (0..2).
    function entryAt(uint256 word, uint256 index) internal pure returns (uint8 usageType, uint256 price) {
        uint256 entry = (word >> (index * ENTRY_BITS)) & ((1 << ENTRY_BITS) - 1);
        return (uint8(entry >> 32), (entry & (_MANTISSA_LIMIT - 1)) * 10 ** ((entry >> 28) & 0xf));
    }

    /// @notice The inline price for `usageType`, if an inline entry holds it.
    function inlinePrice(uint256 word, uint8 usageType) internal pure returns (bool found, uint256 price) {
        uint256 f = word >> FLAGS_SHIFT;
        for (uint256 i = 0; i < INLINE_ENTRIES; ++i) {
            if (f & (INLINE0 << i) != 0) {
                uint8 kind;
                (kind, price) = entryAt(word, i);
                if (kind == usageType) return (true, price);
            }
        }
        return (false, 0);
    }

    function withUses(uint256 word, uint32 newUses) internal pure returns (uint256) {
        return (word & ~_USES_MASK) | (uint256(newUses) << USES_SHIFT);
    }

    /// @notice The word ended at `end` (if it ended later), starting no later than `end`.
    function endedAt(uint256 word, uint40 end) internal pure returns (uint256) {
        if (validUntil(word) > end) {
            word = (word & ~_UNTIL_MASK) | (uint256(end) << VALID_UNTIL_SHIFT);
        }
        if (validFrom(word) > end) {
            word = (word & ~_FROM_MASK) | (uint256(end) << VALID_FROM_SHIFT);
        }
        return word;
    }

    /// @notice The word with its start moved to `start` (not after its end).
    function startingAt(uint256 word, uint40 start) internal pure returns (uint256) {
        return (word & ~_FROM_MASK) | (uint256(start) << VALID_FROM_SHIFT);
    }

    function withFlag(uint256 word, uint256 flag) internal pure returns (uint256) {
        return word | (flag << FLAGS_SHIFT);
    }

    /// @notice Upper probe for binary search: sorts after every word starting at or before `at`.
    function probe(uint40 at) internal pure returns (uint256) {
        return (uint256(at) << VALID_FROM_SHIFT) | ((uint256(1) << VALID_FROM_SHIFT) - 1);
    }
}
