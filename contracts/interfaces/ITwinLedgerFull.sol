// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ITwinLedger} from "./ITwinLedger.sol";
import {ITwinLedgerActions} from "./ITwinLedgerActions.sol";

/// @title Everything the Twin Bridge ledger's address answers: its own functions and its extension's
interface ITwinLedgerFull is ITwinLedger, ITwinLedgerActions {}
