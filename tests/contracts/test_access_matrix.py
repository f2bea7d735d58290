"""The access-control matrix: every state-changing external function of TwinLedger (taken from its
ABI, so a new function fails ``test_matrix_covers_every_state_changing_function`` until it is
classified here) called by every role, each with its exact outcome: success with exactly the
ledger events expected, or the exact custom error with its arguments. The new views (config,
pausedSeconds, brandLimits, offerOf, hashLicenseTerms) answer every role the same exact values.

The roles are distinct accounts in one world: the manager's admin, a registrar, an attester, a
pauser (the last three granted in the access manager), the owner of twin 1 (a model), an operator
the owner approved for all its tokens, a brand with escrow, an accepted license (version 0) on the
twin and an unlocked escrow withdrawal pending, a payee of the twin, and an outsider holding
nothing. Twin 1 has accrued royalties from a settled use. For the signed entry points (``settle``,
the four ``…BySig`` owner actions and the brand's ``acceptLicenseBySig``) the role both signs
(naming itself) and sends: who may *send* them is nobody in particular, who may *sign* them is
the gate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from bridge.chain.toolchain import load_artifact

from .conftest import LIMIT_MAX, NOTICE_PERIOD, SPENDING_PERIOD, Chain
from .helpers import Ledger, terms_hash
from .test_escrow import sign_permit
from .test_owner_signatures import call_of, sign_action

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
ZERO = "0x0000000000000000000000000000000000000000"
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
    lg = Ledger(
        session_chain.w3,
        session_chain.ledger,
        session_chain.token,
        session_chain.actors,
        session_chain.manager,
    )
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
    lg.offer_and_accept(
        TWIN, lg.terms(brand, {0: PRICE}, valid_until=lg.now() + 365 * 86400), owner
    )
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


def unauthorized(w: World, role: str) -> Outcome:
    """A ``restricted`` function the manager does not let the caller call."""
    return Err("AccessManagedUnauthorized", (w.address(role),))


def not_approved(w: World, role: str) -> Outcome:
    return Err("ERC721InsufficientApproval", (w.address(role), TWIN))


def caller_error(name: str) -> Expect:
    return lambda w, role: Err(name, (w.address(role),))


# ---------------------------------------------------------------------- signed entry points


def _signed(action: str, params: Callable[[World], Any]) -> Call:
    """The action ``action`` signed by the role itself (naming itself, nonce 0) and sent by it."""

    def call(w: World, role: str) -> Any:
        deadline = w.lg.now() + 3600
        signature, _ = sign_action(
            w.lg, w[role], action, TWIN, params(w), nonce=0, deadline=deadline
        )
        return call_of(w.lg, action, w.address(role), TWIN, params(w), 0, deadline, signature)

    return call


def _settle(w: World, role: str) -> Any:
    """A batch signed by the role, naming it as the attester."""
    usage = w.lg.usage(TWIN, used_at=w.lg.now(), usage_id=10_000)
    batch, signature = w.lg.sign_batch([(w.address("brand"), [usage])], signer=w[role])
    return w.lg.fn.settle(batch, w.address(role), signature)


def _permit_deposit(w: World, role: str) -> Any:
    deadline = w.lg.now() + 3600
    v, r, s = sign_permit(w.lg, w[role], 500, deadline)
    return w.lg.fn.depositWithPermit(w.address("brand"), 500, deadline, v, r, s)


def _offer_terms(w: World) -> Any:
    return w.lg.terms(w.stranger, {1: 7})


def _new_terms(w: World) -> Any:
    """The terms of version 1 offered to the brand by ``_offer_to_brand``."""
    return w.lg.terms(w["brand"], {0: 2 * PRICE}, valid_until=OFFER_UNTIL)


def _offer_to_brand(w: World) -> None:
    w.lg.offer(TWIN, _new_terms(w), w["owner"])


def _acceptance(w: World) -> tuple[int, bytes]:
    return (1, terms_hash(_new_terms(w)))


def _pause(w: World) -> None:
    w.lg.transact(w.lg.fn.pause(), w["pauser"])


def _no_setup(w: World) -> None:
    return None


OFFER_UNTIL = 4_000_000_000
PROOF = "(bytes32,address,uint256,uint256[],uint256[])"
DIGEST = b"\x07" * 32


def _proof(w: World) -> tuple[Any, ...]:
    """A proof of usage 0 of the brand's group in a batch that was never recorded."""
    return (DIGEST, w.address("brand"), 0, [0], [0])


def _group_unknown(w: World, role: str) -> Outcome:
    return Err("GroupUnknown", (DIGEST, w.address("brand")))


def _not_the_brand(w: World, role: str) -> Outcome:
    return Err("VoidUnauthorized", (w.address(role), w.address("brand")))


@dataclass(frozen=True)
class Row:
    call: Call
    expect: Expect
    setup: Callable[[World], None] = _no_setup


OWNER_OR_OPERATOR = {"owner", "operator"}
INVALID_SIGNER: Expect = lambda w, role: Err("TwinInvalidSigner", (w.address("owner"),))  # noqa: E731
DISTRIBUTED = ("RoyaltiesDistributed", "RoyaltiesDistributed")
"""The twin's accrued royalties split between the payee (25 %) and the owner."""

TERMS = "(address,uint40,uint40,uint32,bytes32,bytes32,(uint8,uint256)[])"
NO_OFFER: Expect = lambda w, role: Err("LicenseNoOffer", (TWIN, w.address(role)))  # noqa: E731

MATRIX: dict[str, Row] = {
    # ---------------------------------------------------------------- admin (access manager)
    "pause()": Row(
        lambda w, r: w.lg.fn.pause(),
        only({"pauser"}, ("Paused",), unauthorized),
    ),
    "unpause()": Row(
        lambda w, r: w.lg.fn.unpause(),
        only({"pauser"}, ("Unpaused",), unauthorized),
        setup=_pause,
    ),
    # ---------------------------------------------------------------- twins (ERC-721)
    "mint(address,string,bytes32)": Row(
        lambda w, r: w.lg.fn.mint(w.stranger.address, "ipfs://new", b"\x01" * 32),
        only({"registrar"}, ("MetadataUpdate", "TwinMinted", "Transfer"), unauthorized),
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
    f"offerLicense(uint256,{TERMS})": Row(
        lambda w, r: w.lg.fn.offerLicense(TWIN, _offer_terms(w)),
        only(OWNER_OR_OPERATOR, ("LicenseOffered",), not_approved),
    ),
    "revokeLicense(uint256,address,uint256)": Row(
        lambda w, r: w.lg.fn.revokeLicense(TWIN, w.address("brand"), 0),
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
    f"offerLicenseBySig(address,uint256,{TERMS},uint256,uint256,bytes)": Row(
        _signed("OfferLicense", _offer_terms),
        only({"owner"}, ("SignedActionUsed", "LicenseOffered"), INVALID_SIGNER),
    ),
    "revokeLicenseBySig(address,uint256,address,uint256,uint256,uint256,bytes)": Row(
        _signed("RevokeLicense", lambda w: (w.address("brand"), 0)),
        only({"owner"}, ("SignedActionUsed", "LicenseRevoked"), INVALID_SIGNER),
    ),
    "setTwinPausedBySig(address,uint256,bool,uint256,uint256,bytes)": Row(
        _signed("SetTwinPaused", lambda w: True),
        only({"owner"}, ("SignedActionUsed", "TwinPaused"), INVALID_SIGNER),
    ),
    "setPayeesBySig(address,uint256,(address,uint16)[],uint256,uint256,bytes)": Row(
        _signed("SetPayees", lambda w: [(w.stranger.address, 1_000)]),
        only({"owner"}, ("SignedActionUsed", *DISTRIBUTED, "PayeesSet"), INVALID_SIGNER),
    ),
    "invalidateNonces(uint256)": Row(
        lambda w, r: w.lg.fn.invalidateNonces(1),
        everyone(("NoncesInvalidated",)),
    ),
    # ---------------------------------------------------------------- brand actions
    "acceptLicense(uint256,uint256,bytes32)": Row(
        lambda w, r: w.lg.fn.acceptLicense(TWIN, *_acceptance(w)),
        only({"brand"}, ("LicenseAccepted",), NO_OFFER),
        setup=_offer_to_brand,
    ),
    "acceptLicenseBySig(address,uint256,uint256,bytes32,uint256,uint256,bytes)": Row(
        _signed("AcceptLicense", _acceptance),
        only({"brand"}, ("SignedActionUsed", "LicenseAccepted"), NO_OFFER),
        setup=_offer_to_brand,
    ),
    "declineLicense(uint256,uint256)": Row(
        lambda w, r: w.lg.fn.declineLicense(TWIN, 1),
        only({"brand"}, ("LicenseDeclined",), NO_OFFER),
        setup=_offer_to_brand,
    ),
    "setSpendingLimits(uint256,uint256)": Row(
        lambda w, r: w.lg.fn.setSpendingLimits(1_000, 10_000),
        everyone(("SpendingLimitsSet",)),
    ),
    "setBrandAttester(address)": Row(
        lambda w, r: w.lg.fn.setBrandAttester(w.stranger.address),
        everyone(("BrandAttesterSet",)),
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
    "requestEscrowWithdrawal(uint256)": Row(  # capped at the caller's escrow: nothing, for most
        lambda w, r: w.lg.fn.requestEscrowWithdrawal(100),
        only({"brand"}, ("EscrowWithdrawalRequested",), lambda w, r: Err("EscrowZeroAmount")),
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
    "settle((uint256,(address,uint256[])[]),address,bytes)": Row(
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
    # ---------------------------------------------------------------- corrections and disputes
    # This world has no hold window: no group is recorded, so nothing can be voided or disputed
    # (tests/contracts/test_voids.py and test_disputes.py drive them on a ledger with one).
    f"voidUsage({PROOF},uint8)": Row(
        lambda w, r: w.lg.fn.voidUsage(_proof(w), 1),
        lambda w, r: (_group_unknown if r == "brand" else _not_the_brand)(w, r),
    ),
    f"voidUsageBySig({PROOF},uint8,uint256,uint256,bytes)": Row(
        lambda w, r: w.lg.fn.voidUsageBySig(_proof(w), 1, 0, w.lg.now() + 3600, b"\x00" * 65),
        _group_unknown,
    ),
    f"openDispute(uint256,uint8,{PROOF},bytes32)": Row(
        lambda w, r: w.lg.fn.openDispute(TWIN, 0, _proof(w), b"\x01" * 32),
        lambda w, r: Err("HoldWindowDisabled") if r in OWNER_OR_OPERATOR else not_approved(w, r),
    ),
    "releaseDispute(uint256)": Row(lambda w, r: w.lg.fn.releaseDispute(1), unauthorized),
    f"resolveDisputeByVoid(uint256,{PROOF},uint8)": Row(
        lambda w, r: w.lg.fn.resolveDisputeByVoid(1, _proof(w), 1), unauthorized
    ),
    "resolveDisputeByCharge(uint256,uint256)": Row(
        lambda w, r: w.lg.fn.resolveDisputeByCharge(1, 100), unauthorized
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
    assert len(functions) == 38


@pytest.mark.parametrize("role", ROLES)
def test_nobody_replaces_the_ledgers_access_manager(world: World, role: str) -> None:
    """``setAuthority`` is pure and always reverts: the manager is fixed at deployment."""
    lg = world.lg
    with lg.reverts("LedgerAuthorityFixed"):
        lg.transact(lg.fn.setAuthority(world.stranger.address), world[role])
    assert lg.manager is not None
    assert lg.fn.authority().call() == lg.manager.address


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


# ---------------------------------------------------------------------- new views


def _views(w: World) -> dict[str, tuple[Any, Any]]:
    """``name → (call, exact value)`` of the views added with agreements and limits."""
    lg, brand = w.lg, w.address("brand")
    terms = _new_terms(w)
    period_start = lg.next_time() // SPENDING_PERIOD * SPENDING_PERIOD
    return {
        "config": (lg.fn.config(), [NOTICE_PERIOD, SPENDING_PERIOD, 0, LIMIT_MAX, LIMIT_MAX, 0]),
        "pausedSeconds": (lg.fn.pausedSeconds(), 0),
        "brandLimits": (
            lg.fn.brandLimits(brand),
            [LIMIT_MAX, LIMIT_MAX, 0, period_start, 0, 0, 0, ZERO],
        ),
        "offerOf": (
            lg.fn.offerOf(TWIN, brand),
            [[0, OFFER_UNTIL, 0, 0, False, [[0, 2 * PRICE]]], 1, terms_hash(terms)],
        ),
        "hashLicenseTerms": (lg.fn.hashLicenseTerms(terms), terms_hash(terms)),
    }


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return bytes(value) if isinstance(value, (bytes, bytearray)) else value


@pytest.mark.parametrize("role", ROLES)
def test_new_views_answer_every_role_alike(world: World, role: str) -> None:
    _offer_to_brand(world)
    for name, (call, expected) in _views(world).items():
        assert _plain(call.call({"from": world.address(role)})) == _plain(expected), name
    # With no offer waiting, offerOf names the missing offer.
    with world.lg.reverts("LicenseNoOffer", TWIN, world.address("payee")):
        world.lg.fn.offerOf(TWIN, world.address("payee")).call({"from": world.address(role)})
