// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {ERC721Holder} from "@openzeppelin/contracts/token/ERC721/utils/ERC721Holder.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

/// @title Minimal smart wallet for tests: one EOA signer, an on/off switch for ERC-1271 answers
contract MockERC1271Wallet is IERC1271, ERC721Holder {
    address public immutable signer;
    bool public accepting = true;

    error MockWalletCallFailed(bytes reason);

    constructor(address signer_) {
        signer = signer_;
    }

    /// @notice Makes the wallet reject (or accept again) every signature.
    function setAccepting(bool accepting_) external {
        accepting = accepting_;
    }

    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecover(hash, signature);
        if (accepting && err == ECDSA.RecoverError.NoError && recovered == signer) {
            return IERC1271.isValidSignature.selector;
        }
        return 0xffffffff;
    }

    /// @notice Calls `target` with `data` as the wallet (only the signer may).
    function execute(address target, bytes calldata data) external returns (bytes memory) {
        require(msg.sender == signer, MockWalletCallFailed("not signer"));
        (bool ok, bytes memory result) = target.call(data);
        if (!ok) revert MockWalletCallFailed(result);
        return result;
    }
}
