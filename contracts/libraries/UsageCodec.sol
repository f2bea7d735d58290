// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title Packing of usage words and settlement outcomes
/// @notice A usage is one 256-bit word, from the high bits down:
/// `usageId (64) | twinId (64) | usedAt (40) | quantity (32) | usageType (8)`, the low 48 bits zero.
/// A settlement result is the usage word with the outcome code in the low 8 bits.
library UsageCodec {
    uint256 internal constant USAGE_ID_SHIFT = 192;
    uint256 internal constant TWIN_ID_SHIFT = 128;
    uint256 internal constant USED_AT_SHIFT = 88;
    uint256 internal constant QUANTITY_SHIFT = 56;
    uint256 internal constant USAGE_TYPE_SHIFT = 48;

    function usageId(uint256 usage) internal pure returns (uint64) {
        return uint64(usage >> USAGE_ID_SHIFT);
    }

    function twinId(uint256 usage) internal pure returns (uint256) {
        return uint64(usage >> TWIN_ID_SHIFT);
    }

    function usedAt(uint256 usage) internal pure returns (uint40) {
        return uint40(usage >> USED_AT_SHIFT);
    }

    function quantity(uint256 usage) internal pure returns (uint32) {
        return uint32(usage >> QUANTITY_SHIFT);
    }

    function usageType(uint256 usage) internal pure returns (uint8) {
        return uint8(usage >> USAGE_TYPE_SHIFT);
    }
}
