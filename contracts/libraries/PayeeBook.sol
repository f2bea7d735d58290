// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {ITwinLedgerTypes} from "../interfaces/ITwinLedgerTypes.sol";
import {BipsLibrary} from "./BipsLibrary.sol";

/// @title Royalty payees of every twin
/// @dev External (linked) functions keep the ledger under the code-size limit.
library PayeeBook {
    uint256 internal constant MAX_PAYEES = 8;
    bytes32 internal constant PAYEE_TYPEHASH = keccak256("Payee(address account,uint16 bps)");

    /// @notice Validates and stores `payees` for `twinId`. Emits {ITwinLedgerTypes-PayeesSet}.
    function set(
        mapping(uint256 twinId => ITwinLedgerTypes.Payee[]) storage book,
        uint256 twinId,
        ITwinLedgerTypes.Payee[] calldata payees
    ) external {
        uint256 count = payees.length;
        if (count > MAX_PAYEES) revert ITwinLedgerTypes.PayeesTooMany(count, MAX_PAYEES);
        uint256 total = 0;
        for (uint256 i = 0; i < count; ++i) {
            ITwinLedgerTypes.Payee calldata payee = payees[i];
            if (payee.account == address(0)) revert ITwinLedgerTypes.PayeesInvalidAccount(payee.account);
            if (payee.bps == 0) revert ITwinLedgerTypes.PayeesInvalidShare(payee.account, payee.bps);
            for (uint256 j = 0; j < i; ++j) {
                if (payees[j].account == payee.account) revert ITwinLedgerTypes.PayeesDuplicateAccount(payee.account);
            }
            total += payee.bps;
        }
        if (total > BipsLibrary.BPS_DENOMINATOR) revert ITwinLedgerTypes.PayeesTotalTooHigh(total);
        ITwinLedgerTypes.Payee[] storage stored = book[twinId];
        while (stored.length > 0) {
            stored.pop();
        }
        for (uint256 i = 0; i < count; ++i) {
            stored.push(payees[i]);
        }
        emit ITwinLedgerTypes.PayeesSet(twinId, payees);
    }

    /// @notice EIP-712 hash of a payee array (`keccak256` of the concatenated struct hashes).
    function hash(ITwinLedgerTypes.Payee[] calldata payees) external pure returns (bytes32) {
        bytes32[] memory hashes = new bytes32[](payees.length);
        for (uint256 i = 0; i < payees.length; ++i) {
            hashes[i] = keccak256(abi.encode(PAYEE_TYPEHASH, payees[i].account, payees[i].bps));
        }
        return keccak256(abi.encodePacked(hashes));
    }
}
