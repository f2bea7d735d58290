// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {ITwinLedgerTypes} from "../interfaces/ITwinLedgerTypes.sol";

/// @title Every twin's royalty account and pause state
/// @notice A twin's account is one word (accrued royalties, the start of a running pause, the end of the
/// last pause), which settlement reads and writes directly; finished pauses are kept as ordered
/// `(since << 40) | until` intervals so a use at any past time can be checked.
/// @dev Pausing is external (linked) to keep the ledger under the code-size limit.
library TwinBook {
    /// @notice A twin's royalty account as the ledger stores it.
    struct TwinAccount {
        uint128 accrued;
        uint40 pausedSince;
        uint40 lastPauseEnd;
    }

    /// @notice Pauses (from now) or unpauses the twin. Emits {ITwinLedgerTypes-TwinPaused} or
    /// {ITwinLedgerTypes-TwinUnpaused}.
    function setPaused(
        mapping(uint256 => TwinAccount) storage twins,
        mapping(uint256 => uint256[]) storage history,
        uint256 twinId,
        bool paused
    ) external {
        TwinAccount storage twin = twins[twinId];
        uint40 now40 = uint40(block.timestamp);
        uint40 since = twin.pausedSince;
        if (paused == (since != 0)) revert ITwinLedgerTypes.TwinPauseUnchanged(twinId, paused);
        if (paused) {
            twin.pausedSince = now40;
            emit ITwinLedgerTypes.TwinPaused(twinId, now40);
        } else {
            history[twinId].push((uint256(since) << 40) | now40);
            twin.pausedSince = 0;
            twin.lastPauseEnd = now40;
            emit ITwinLedgerTypes.TwinUnpaused(twinId, now40);
        }
    }
}
