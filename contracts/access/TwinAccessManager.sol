// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {AccessManager} from "@openzeppelin/contracts/access/manager/AccessManager.sol";

/// @title The roles of a Twin Bridge deployment
/// @notice OpenZeppelin's {AccessManager}, unchanged: it holds the ledger's registrar, attester and pauser
/// roles. A deployment sets a grant delay on each role (a new member counts only after it) and grants its
/// admin with an execution delay (every admin action is scheduled and waits), so no key can add an
/// attester, registrar or pauser at once.
contract TwinAccessManager is AccessManager {
    constructor(address initialAdmin) AccessManager(initialAdmin) {}
}
