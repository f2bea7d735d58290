"""The access-control matrix: every state-changing external function of TwinLedger (taken from its
ABI, so a new function fails ``test_matrix_covers_every_state_changing_function`` until it is
classified here) called by every role, each with its exact outcome: success with exactly the
ledger events expected, or the exact custom error with its arguments.

The roles are distinct accounts in one world: the default admin, a registrar, an attester, a pauser,
the owner of twin 1 (a model), an operator the owner approved for all its tokens, a brand with
escrow, a license on the twin and an unlocked escrow withdrawal pending, a payee of the twin, and
an outsider holding nothing. Twin 1 has accrued royalties from a settled use. For the signed entry
points (``settle`` and the four ``…BySig`` owner actions) the role both signs and sends: who may
*send* them is nobody in particular, who may *sign* them is the gate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from bridge.chain.toolchain import load_artifact

from .conftest import ADMIN_DELAY, NOTICE_PERIOD, Chain
from .helpers import Ledger
from .test_escrow import sign_permit
from .test_owner_signatures import sign_action

ROLES = (
    "admin",
    "registrar",
    "attester",
    "pauser",
    "owner",
    "operator",
    "brand",
    "payee",
    "outsider",
)
ADMIN_ROLE = b"\x00" * 32
TWIN = 1
PRICE = 1_000


@dataclass
class World:
    lg: Ledger
    accounts: dict[str, LocalAccount]
    stranger: LocalAccount
    """Holds nothing and is no role: the target of approvals, transfers and grants."""

    def __getitem__(self, role: str) -> LocalAccount:
        return self.accounts[role]

    def address(self, role: str) -> str:
        return self.accounts[role].address


@pytest.fixture(scope="module")
def world_snapshot(session_chain: Chain) -> Iterator[tuple[World, Any]]:
    """The world built once for the module; reverted when the module ends."""
    base = session_chain.snapshot()
    lg = Ledger(session_chain.w3, session_chain.ledger, session_chain.token, session_chain.actors)
    actors = lg.actors
    accounts = {
        "admin": actors.admin,
        "registrar": actors.registrar,
        "attester": actors.attester,
        "pauser": actors.pauser,
        "owner": actors.models[0],
        "operator": actors.models[1],
        "brand": actors.brands[0],
        "payee": actors.payees[0],
        "outsider": actors.outsider,
    }
    owner, brand, payee = accounts["owner"], accounts["brand"], accounts["payee"]
    assert lg.mint(owner) == TWIN
    lg.transact(lg.fn.setApprovalForAll(accounts["operator"].address, True), owner)
    lg.grant(TWIN, lg.terms(brand, {0: PRICE}, valid_until=lg.now() + 365 * 86400), owner)
    lg.transact(lg.fn.setPayees(TWIN, [(payee.address, 2_500)]), owner)
    lg.deposit(brand, 1_000_000)
    lg.advance(5)
    lg.settle([(brand.address, [lg.usage(TWIN, used_at=lg.now(), quantity=10)])])
    lg.transact(lg.fn.requestEscrowWithdrawal(1_000), brand)
    lg.advance(NOTICE_PERIOD + 1)
    world = World(lg, accounts, actors.payees[2])
    snapshot = session_chain.snapshot()
    yield world, snapshot
    session_chain.revert(base)


@pytest.fixture
def world(world_snapshot: tuple[World, Any], session_chain: Chain) -> Iterator[World]:
    world, _ = world_snapshot
    snapshot = session_chain.snapshot()
    yield world
    session_chain.revert(snapshot)


# ---------------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class Ok:
    events: tuple[str, ...]


@dataclass(frozen=True)
class Err:
    name: str
    args: tuple[Any, ...] = ()


Outcome = Ok | Err
Expect = Callable[[World, str], Outcome]
Call = Callable[[World, str], Any]


def only(roles: set[str], events: tuple[str, ...], otherwise: Expect) -> Expect:
    """``Ok(events)`` for ``roles``, ``otherwise`` for everyone else."""
    return lambda w, role: Ok(events) if role in roles else otherwise(w, role)


def everyone(events: tuple[str, ...]) -> Expect:
    return lambda w, role: Ok(events)


def unauthorized(role_name: str) -> Expect:
    def expect(w: World, role: str) -> Outcome:
        role_id = ADMIN_ROLE if role_name == "DEFAULT_ADMIN_ROLE" else w.lg.role(role_name)
        return Err("AccessControlUnauthorizedAccount", (w.address(role), role_id))

    return expect


def not_approved(w: World, role: str) -> Outcome:
    return Err("ERC721InsufficientApproval", (w.address(role), TWIN))


def caller_error(name: str) -> Expect:
    return lambda w, role: Err(name, (w.address(role),))


# ---------------------------------------------------------------------- signed entry points


def _signed(action: str, params: Callable[[World], Any]) -> Call:
    """The owner action ``action`` signed by the role itself (nonce 0) and sent by it."""
    fn = {
        "GrantLicense": "grantLicenseBySig",
        "RevokeLicense": "revokeLicenseBySig",
        "SetTwinPaused": "setTwinPausedBySig",
        "SetPayees": "setPayeesBySig",
    }[action]

    def call(w: World, role: str) -> Any:
        deadline = w.lg.now() + 3600
        signature, _ = sign_action(
            w.lg, w[role], action, TWIN, params(w), nonce=0, deadline=deadline
        )
        return getattr(w.lg.fn, fn)(TWIN, params(w), 0, deadline, signature)

    return call


def _settle(w: World, role: str) -> Any:
    usage = w.lg.usage(TWIN, used_at=w.lg.now(), usage_id=10_000)
    batch, signature = w.lg.sign_batch([(w.address("brand"), [usage])], signer=w[role])
    return w.lg.fn.settle(batch, signature)


def _permit_deposit(w: World, role: str) -> Any:
    deadline = w.lg.now() + 3600
    v, r, s = sign_permit(w.lg, w[role], 500, deadline)
    return w.lg.fn.depositWithPermit(w.address("brand"), 500, deadline, v, r, s)


def _grant_terms(w: World) -> Any:
    return w.lg.terms(w.stranger, {1: 7})


def _begin_transfer_to_outsider(w: World) -> None:
    w.lg.transact(w.lg.fn.beginDefaultAdminTransfer(w.address("outsider")), w["admin"])
    w.lg.advance(ADMIN_DELAY + 1)


def _change_delay(w: World) -> None:
    w.lg.transact(w.lg.fn.changeDefaultAdminDelay(3600), w["admin"])


def _pause(w: World) -> None:
    w.lg.transact(w.lg.fn.pause(), w["pauser"])


def _no_setup(w: World) -> None:
    return None


@dataclass(frozen=True)
class Row:
    call: Call
    expect: Expect
    setup: Callable[[World], None] = _no_setup


OWNER_OR_OPERATOR = {"owner", "operator"}
INVALID_SIGNER: Expect = lambda w, role: Err("TwinInvalidSigner", (w.address("owner"),))  # noqa: E731
DISTRIBUTED = ("RoyaltiesDistributed", "RoyaltiesDistributed")
"""The twin's accrued royalties split between the payee (25 %) and the owner."""

MATRIX: dict[str, Row] = {
    # ---------------------------------------------------------------- roles and admin
    "grantRole(bytes32,address)": Row(
        lambda w, r: w.lg.fn.grantRole(w.lg.role("REGISTRAR_ROLE"), w.stranger.address),
        only({"admin"}, ("RoleGranted",), unauthorized("DEFAULT_ADMIN_ROLE")),
    ),
    "revokeRole(bytes32,address)": Row(
        lambda w, r: w.lg.fn.revokeRole(w.lg.role("PAUSER_ROLE"), w.address("pauser")),
        only({"admin"}, ("RoleRevoked",), unauthorized("DEFAULT_ADMIN_ROLE")),
    ),
    "renounceRole(bytes32,address)": Row(
        lambda w, r: w.lg.fn.renounceRole(w.lg.role("REGISTRAR_ROLE"), w.address("registrar")),
        only({"registrar"}, ("RoleRevoked",), lambda w, r: Err("AccessControlBadConfirmation")),
    ),
    "rotateAttester(address,address)": Row(
        lambda w, r: w.lg.fn.rotateAttester(w.address("attester"), w.stranger.address),
        only({"admin"}, ("RoleGranted", "RoleRevoked"), unauthorized("DEFAULT_ADMIN_ROLE")),
    ),
    "beginDefaultAdminTransfer(address)": Row(
        lambda w, r: w.lg.fn.beginDefaultAdminTransfer(w.stranger.address),
        only({"admin"}, ("DefaultAdminTransferScheduled",), unauthorized("DEFAULT_ADMIN_ROLE")),
    ),
    "cancelDefaultAdminTransfer()": Row(
        lambda w, r: w.lg.fn.cancelDefaultAdminTransfer(),
        only({"admin"}, ("DefaultAdminTransferCanceled",), unauthorized("DEFAULT_ADMIN_ROLE")),
        setup=_begin_transfer_to_outsider,
    ),
    "acceptDefaultAdminTransfer()": Row(
        lambda w, r: w.lg.fn.acceptDefaultAdminTransfer(),
        only(
            {"outsider"},
            ("RoleRevoked", "RoleGranted"),
            caller_error("AccessControlInvalidDefaultAdmin"),
        ),
        setup=_begin_transfer_to_outsider,
    ),
    "changeDefaultAdminDelay(uint48)": Row(
        lambda w, r: w.lg.fn.changeDefaultAdminDelay(3600),
        only({"admin"}, ("DefaultAdminDelayChangeScheduled",), unauthorized("DEFAULT_ADMIN_ROLE")),
    ),
    "rollbackDefaultAdminDelay()": Row(
        lambda w, r: w.lg.fn.rollbackDefaultAdminDelay(),
        only({"admin"}, ("DefaultAdminDelayChangeCanceled",), unauthorized("DEFAULT_ADMIN_ROLE")),
        setup=_change_delay,
    ),
    "pause()": Row(
        lambda w, r: w.lg.fn.pause(),
        only({"pauser"}, ("Paused",), unauthorized("PAUSER_ROLE")),
    ),
    "unpause()": Row(
        lambda w, r: w.lg.fn.unpause(),
        only({"pauser"}, ("Unpaused",), unauthorized("PAUSER_ROLE")),
        setup=_pause,
    ),
    # ---------------------------------------------------------------- twins (ERC-721)
    "mint(address,string,bytes32)": Row(
        lambda w, r: w.lg.fn.mint(w.stranger.address, "ipfs://new", b"\x01" * 32),
        only(
            {"registrar"},
            ("MetadataUpdate", "TwinMinted", "Transfer"),
            unauthorized("REGISTRAR_ROLE"),
        ),
    ),
    "approve(address,uint256)": Row(
        lambda w, r: w.lg.fn.approve(w.stranger.address, TWIN),
        only(OWNER_OR_OPERATOR, ("Approval",), caller_error("ERC721InvalidApprover")),
    ),
    "setApprovalForAll(address,bool)": Row(
        lambda w, r: w.lg.fn.setApprovalForAll(w.stranger.address, True),
        everyone(("ApprovalForAll",)),
    ),
    "transferFrom(address,address,uint256)": Row(
        lambda w, r: w.lg.fn.transferFrom(w.address("owner"), w.stranger.address, TWIN),
        only(OWNER_OR_OPERATOR, (*DISTRIBUTED, "Transfer"), not_approved),
    ),
    "safeTransferFrom(address,address,uint256)": Row(
        lambda w, r: w.lg.fn.safeTransferFrom(w.address("owner"), w.stranger.address, TWIN),
        only(OWNER_OR_OPERATOR, (*DISTRIBUTED, "Transfer"), not_approved),
    ),
    "safeTransferFrom(address,address,uint256,bytes)": Row(
        lambda w, r: w.lg.fn.safeTransferFrom(w.address("owner"), w.stranger.address, TWIN, b"x"),
        only(OWNER_OR_OPERATOR, (*DISTRIBUTED, "Transfer"), not_approved),
    ),
    # ---------------------------------------------------------------- owner actions
    "grantLicense(uint256,(address,uint40,uint40,uint32,bytes32,bytes32,(uint8,uint256)[]))": Row(
        lambda w, r: w.lg.fn.grantLicense(TWIN, _grant_terms(w)),
        only(OWNER_OR_OPERATOR, ("LicenseGranted",), not_approved),
    ),
    "revokeLicense(uint256,address)": Row(
        lambda w, r: w.lg.fn.revokeLicense(TWIN, w.address("brand")),
        only(OWNER_OR_OPERATOR, ("LicenseRevoked",), not_approved),
    ),
    "setTwinPaused(uint256,bool)": Row(
        lambda w, r: w.lg.fn.setTwinPaused(TWIN, True),
        only(OWNER_OR_OPERATOR, ("TwinPaused",), not_approved),
    ),
    "setPayees(uint256,(address,uint16)[])": Row(
        lambda w, r: w.lg.fn.setPayees(TWIN, [(w.stranger.address, 1_000)]),
        only(OWNER_OR_OPERATOR, (*DISTRIBUTED, "PayeesSet"), not_approved),
    ),
    "grantLicenseBySig(uint256,(address,uint40,uint40,uint32,bytes32,bytes32,(uint8,uint256)[]),"
    "uint256,uint256,bytes)": Row(
        _signed("GrantLicense", _grant_terms),
        only({"owner"}, ("SignedActionUsed", "LicenseGranted"), INVALID_SIGNER),
    ),
    "revokeLicenseBySig(uint256,address,uint256,uint256,bytes)": Row(
        _signed("RevokeLicense", lambda w: w.address("brand")),
        only({"owner"}, ("SignedActionUsed", "LicenseRevoked"), INVALID_SIGNER),
    ),
    "setTwinPausedBySig(uint256,bool,uint256,uint256,bytes)": Row(
        _signed("SetTwinPaused", lambda w: True),
        only({"owner"}, ("SignedActionUsed", "TwinPaused"), INVALID_SIGNER),
    ),
    "setPayeesBySig(uint256,(address,uint16)[],uint256,uint256,bytes)": Row(
        _signed("SetPayees", lambda w: [(w.stranger.address, 1_000)]),
        only({"owner"}, ("SignedActionUsed", *DISTRIBUTED, "PayeesSet"), INVALID_SIGNER),
    ),
    # ---------------------------------------------------------------- escrow
    "deposit(address,uint256)": Row(
        lambda w, r: w.lg.fn.deposit(w.address("brand"), 500),
        only(
            {"brand"},
            ("EscrowDeposited",),
            lambda w, r: Err("ERC20InsufficientAllowance", (w.lg.contract.address, 0, 500)),
        ),
    ),
    "depositWithPermit(address,uint256,uint256,uint8,bytes32,bytes32)": Row(
        _permit_deposit,
        only(
            {"brand"},
            ("EscrowDeposited",),
            lambda w, r: Err("ERC20InsufficientBalance", (w.address(r), 0, 500)),
        ),
    ),
    "repayDebt(address,uint256)": Row(
        lambda w, r: w.lg.fn.repayDebt(w.address("brand"), 10),
        everyone(()),
    ),
    "requestEscrowWithdrawal(uint256)": Row(
        lambda w, r: w.lg.fn.requestEscrowWithdrawal(100),
        everyone(("EscrowWithdrawalRequested",)),
    ),
    "cancelEscrowWithdrawal()": Row(
        lambda w, r: w.lg.fn.cancelEscrowWithdrawal(),
        only({"brand"}, ("EscrowWithdrawalCancelled",), caller_error("EscrowNoPendingWithdrawal")),
    ),
    "withdrawEscrow()": Row(
        lambda w, r: w.lg.fn.withdrawEscrow(),
        only({"brand"}, ("EscrowWithdrawn",), caller_error("EscrowNoPendingWithdrawal")),
    ),
    # ---------------------------------------------------------------- settlement and payouts
    "settle((uint256,(address,uint256[])[]),bytes)": Row(
        _settle,
        only({"attester"}, ("UsagesSettled",), caller_error("SettlementInvalidAttester")),
    ),
    "distribute(uint256[])": Row(
        lambda w, r: w.lg.fn.distribute([TWIN]),
        everyone(DISTRIBUTED),
    ),
    "withdraw(uint256[])": Row(
        lambda w, r: w.lg.fn.withdraw([TWIN]),
        only({"owner", "payee"}, (*DISTRIBUTED, "PayeePaid"), caller_error("PayoutNothingToPay")),
    ),
    "payout(address,uint256[])": Row(
        lambda w, r: w.lg.fn.payout(w.address("payee"), [TWIN]),
        everyone((*DISTRIBUTED, "PayeePaid")),
    ),
}


def _signature(entry: dict[str, Any]) -> str:
    def kind(item: dict[str, Any]) -> str:
        if item["type"].startswith("tuple"):
            inner = ",".join(kind(c) for c in item["components"])
            return f"({inner}){item['type'][5:]}"
        return str(item["type"])

    return f"{entry['name']}({','.join(kind(i) for i in entry['inputs'])})"


def state_changing_functions() -> set[str]:
    return {
        _signature(entry)
        for entry in load_artifact("TwinLedger").abi
        if entry.get("type") == "function" and entry["stateMutability"] not in ("view", "pure")
    }


def test_matrix_covers_every_state_changing_function() -> None:
    functions = state_changing_functions()
    assert set(MATRIX) == functions, (
        f"unclassified: {sorted(functions - set(MATRIX))}; gone: {sorted(set(MATRIX) - functions)}"
    )
    assert len(functions) == 35


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("function", list(MATRIX))
def test_access_matrix(world: World, function: str, role: str) -> None:
    row = MATRIX[function]
    row.setup(world)
    expected = row.expect(world, role)
    lg = world.lg
    if isinstance(expected, Err):
        with lg.reverts(expected.name, *expected.args):
            lg.transact(row.call(world, role), world[role])
    else:
        receipt = lg.transact(row.call(world, role), world[role])
        assert tuple(lg.all_events(receipt)) == expected.events


def test_matrix_roles_are_distinct_accounts(world: World) -> None:
    addresses = [world.address(role) for role in ROLES]
    assert len(set(addresses)) == len(ROLES)
    assert world.stranger.address not in addresses
    lg = world.lg
    assert lg.fn.ownerOf(TWIN).call() == world.address("owner")
    assert lg.fn.isApprovedForAll(world.address("owner"), world.address("operator")).call()
    assert [tuple(p) for p in lg.fn.payeesOf(TWIN).call()] == [(world.address("payee"), 2_500)]
    assert lg.brand_account(world["brand"])["pending"] == 1_000
    assert lg.fn.twinState(TWIN).call()[0] == 10 * PRICE  # accrued, not yet distributed
