// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title Malicious ERC-20 for tests: on every transfer it calls back into `target` with `payload`
/// @notice Records whether the re-entrant call succeeded and what it returned, without failing the transfer.
contract ReentrantToken is ERC20 {
    address public target;
    bytes public payload;
    bool public attackSucceeded;
    uint256 public attempts;
    bytes public lastRevert;
    bool private _attacking;

    constructor() ERC20("Reentrant", "RE") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice Arms the attack: every later transfer calls `target_` with `payload_`.
    function arm(address target_, bytes calldata payload_) external {
        target = target_;
        payload = payload_;
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        if (target != address(0) && !_attacking) {
            _attacking = true;
            ++attempts;
            (bool ok, bytes memory result) = target.call(payload);
            if (ok) {
                attackSucceeded = true;
            } else {
                lastRevert = result;
            }
            _attacking = false;
        }
    }
}
