// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title Packing of a license version into one storage word
/// @notice From the high bits down:
/// `validFrom (40) | validUntil (40) | maxUses (32) | uses (32) | flags (8) | price1 (52) | price0 (52)`
/// where each inline price is `usageType (8) | price (44)`. Usage types beyond two inline prices, or with
/// a price of 2**44 or more, live in an overflow mapping (flag `HAS_OVERFLOW`). Ordering the words of a
/// history by value orders them by `validFrom`, which binary search relies on.
library LicenseCodec {
    uint256 internal constant VALID_FROM_SHIFT = 216;
    uint256 internal constant VALID_UNTIL_SHIFT = 176;
    uint256 internal constant MAX_USES_SHIFT = 144;
    uint256 internal constant USES_SHIFT = 112;
    uint256 internal constant FLAGS_SHIFT = 104;
    uint256 internal constant PRICE1_SHIFT = 52;

    uint256 internal constant EXISTS = 1;
    uint256 internal constant REVOKED = 2;
    uint256 internal constant HAS_OVERFLOW = 4;
    uint256 internal constant INLINE0 = 8;
    uint256 internal constant INLINE1 = 16;

    uint256 internal constant INLINE_PRICE_LIMIT = 1 << 44;
    uint256 private constant _PRICE_MASK = (1 << 44) - 1;
    uint256 private constant _USES_MASK = uint256(type(uint32).max) << USES_SHIFT;
    uint256 private constant _UNTIL_MASK = uint256(type(uint40).max) << VALID_UNTIL_SHIFT;
    uint256 private constant _FROM_MASK = uint256(type(uint40).max) << VALID_FROM_SHIFT;

    function validFrom(uint256 word) internal pure returns (uint40) {
        return uint40(word >> VALID_FROM_SHIFT);
    }

    function validUntil(uint256 word) internal pure returns (uint40) {
        return uint40(word >> VALID_UNTIL_SHIFT);
    }

    function maxUses(uint256 word) internal pure returns (uint32) {
        return uint32(word >> MAX_USES_SHIFT);
    }

    function uses(uint256 word) internal pure returns (uint32) {
        return uint32(word >> USES_SHIFT);
    }

    function flags(uint256 word) internal pure returns (uint256) {
        return uint8(word >> FLAGS_SHIFT);
    }

    function has(uint256 word, uint256 flag) internal pure returns (bool) {
        return (word >> FLAGS_SHIFT) & flag != 0;
    }

    function encode(uint40 from, uint40 until, uint32 cap, uint256 flagBits, uint256 inline0, uint256 inline1)
        internal
        pure
        returns (uint256)
    {
        return (uint256(from) << VALID_FROM_SHIFT) | (uint256(until) << VALID_UNTIL_SHIFT)
            | (uint256(cap) << MAX_USES_SHIFT) | (flagBits << FLAGS_SHIFT) | (inline1 << PRICE1_SHIFT) | inline0;
    }

    /// @notice An inline price entry; `price` must be below `INLINE_PRICE_LIMIT`.
    function inlineEntry(uint8 usageType, uint256 price) internal pure returns (uint256) {
        return (uint256(usageType) << 44) | price;
    }

    /// @notice The inline price for `usageType`, if one of the two inline entries holds it.
    function inlinePrice(uint256 word, uint8 usageType) internal pure returns (bool found, uint256 price) {
        uint256 f = word >> FLAGS_SHIFT;
        if (f & INLINE0 != 0 && uint8(word >> 44) == usageType) {
            return (true, word & _PRICE_MASK);
        }
        if (f & INLINE1 != 0 && uint8(word >> (PRICE1_SHIFT + 44)) == usageType) {
            return (true, (word >> PRICE1_SHIFT) & _PRICE_MASK);
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

    function withFlag(uint256 word, uint256 flag) internal pure returns (uint256) {
        return word | (flag << FLAGS_SHIFT);
    }

    function inline0Type(uint256 word) internal pure returns (uint8) {
        return uint8(word >> 44);
    }

    function inline0Price(uint256 word) internal pure returns (uint256) {
        return word & _PRICE_MASK;
    }

    function inline1Type(uint256 word) internal pure returns (uint8) {
        return uint8(word >> (PRICE1_SHIFT + 44));
    }

    function inline1Price(uint256 word) internal pure returns (uint256) {
        return (word >> PRICE1_SHIFT) & _PRICE_MASK;
    }

    /// @notice Upper probe for binary search: sorts after every word starting at or before `at`.
    function probe(uint40 at) internal pure returns (uint256) {
        return (uint256(at) << VALID_FROM_SHIFT) | ((uint256(1) << VALID_FROM_SHIFT) - 1);
    }
}
