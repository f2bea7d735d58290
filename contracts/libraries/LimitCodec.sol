// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title Packing of a brand's spending limits into one storage word
/// @notice From the high bits down: `flags (32) | perPeriod (32) | perUsage (32)`, the low 160 bits zero.
/// A limit is kept as `exponent (4) | mantissa (28)` for `mantissa * 10**exponent`, rounded down (so
/// every limit is below 2**28 * 10**15 < 2**88, the width the ledger keeps a period's spend in).
library LimitCodec {
    uint256 internal constant PER_USAGE_SHIFT = 160;
    uint256 internal constant PER_PERIOD_SHIFT = 192;
    uint256 internal constant FLAGS_SHIFT = 224;

    /// @dev The word holds the brand's own limits (else the deployment's defaults apply).
    uint256 internal constant CONFIGURED = 1 << FLAGS_SHIFT;
    /// @dev The brand named its own attester.
    uint256 internal constant OWN_ATTESTER = 2 << FLAGS_SHIFT;
    /// @dev A raise waits for its delay.
    uint256 internal constant PENDING = 4 << FLAGS_SHIFT;

    uint256 private constant _MANTISSA_LIMIT = 1 << 28;
    uint256 private constant _MAX_EXPONENT = 15;
    uint256 private constant _CODE_MASK = type(uint32).max;
    uint256 private constant _CODES_MASK = (uint256(type(uint64).max) << PER_USAGE_SHIFT);

    /// @notice The compact code of `amount`, rounded down; amounts beyond the largest code get it.
    function encode(uint256 amount) internal pure returns (uint32) {
        uint256 exponent = 0;
        while (amount >= _MANTISSA_LIMIT && exponent < _MAX_EXPONENT) {
            amount /= 10;
            ++exponent;
        }
        if (amount >= _MANTISSA_LIMIT) amount = _MANTISSA_LIMIT - 1;
        return uint32((exponent << 28) | amount);
    }

    /// @notice The amount a code stands for (below 2**28 * 10**15).
    function decode(uint256 code) internal pure returns (uint256) {
        return (code & (_MANTISSA_LIMIT - 1)) * 10 ** ((code >> 28) & 0xf);
    }

    function perUsage(uint256 word) internal pure returns (uint256) {
        return decode((word >> PER_USAGE_SHIFT) & _CODE_MASK);
    }

    function perPeriod(uint256 word) internal pure returns (uint256) {
        return decode((word >> PER_PERIOD_SHIFT) & _CODE_MASK);
    }

    /// @notice The codes of both limits, in their place in the word.
    function codes(uint32 perUsageCode, uint32 perPeriodCode) internal pure returns (uint256) {
        return (uint256(perUsageCode) << PER_USAGE_SHIFT) | (uint256(perPeriodCode) << PER_PERIOD_SHIFT);
    }

    function withCodes(uint256 word, uint256 codeBits) internal pure returns (uint256) {
        return (word & ~_CODES_MASK) | codeBits;
    }
}
