"""Roles in the access manager: every role-gated function (the ledger's ``restricted`` ones and the
manager's admin functions) against every actor, grants and revocations (attester rotation is a
grant of the new key and a revocation of the old), grant delays, an admin behind an execution
delay (schedule, wait, execute) and the emergency pause.

The registrar's gate on ``mint`` is checked against every other actor in ``test_twins.py``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from web3.logs import DISCARD

from bridge.domain.codec import Usage

from .conftest import (
    ADMIN_ROLE,
    ATTESTER_ROLE,
    NOTICE_PERIOD,
    PAUSER_ROLE,
    PUBLIC_ROLE,
    REGISTRAR_ROLE,
    ROLE_FUNCTIONS,
    selectors,
)
from .helpers import DAY, Ledger, Outcome

ZERO = "0x0000000000000000000000000000000000000000"
ACTORS = ["admin", "registrar", "attester", "pauser", "outsider", "model", "brand"]
ADMIN_DELAY = 2 * DAY
"""An execution delay for an admin in these tests (deployments set their own)."""
MIN_SETBACK = 5 * DAY
"""OpenZeppelin AccessManager's minimum setback: a longer grant delay applies only after it."""


def actor(lg: Ledger, name: str) -> LocalAccount:
    if name == "model":
        return lg.actors.models[0]
    if name == "brand":
        return lg.actors.brands[0]
    return getattr(lg.actors, name)


def role_events(lg: Ledger, receipt: Any) -> list[tuple[Any, ...]]:
    """The manager's RoleGranted ``(name, role, account, delay, since, newMember)`` and
    RoleRevoked ``(name, role, account)`` events, in log order."""
    assert lg.manager is not None
    found = []
    for name in ("RoleGranted", "RoleRevoked"):
        event = getattr(lg.manager.events, name)()
        for e in event.process_receipt(receipt, errors=DISCARD):
            if e["address"] != lg.manager.address:
                continue
            args = e["args"]
            row: tuple[Any, ...] = (name, args["roleId"], args["account"])
            if name == "RoleGranted":
                row += (args["delay"], args["since"], args["newMember"])
            found.append((int(e["logIndex"]), row))
    return [row for _, row in sorted(found, key=lambda f: f[0])]


def event_names(lg: Ledger, receipt: Any) -> list[str]:
    """Names of the ledger's and the manager's events in ``receipt``, in log order."""
    assert lg.manager is not None
    names = {lg.contract.address: lg.contract, lg.manager.address: lg.manager}
    found = []
    for contract in names.values():
        for entry in contract.abi:
            if entry.get("type") != "event":
                continue
            event = getattr(contract.events, entry["name"])()
            for e in event.process_receipt(receipt, errors=DISCARD):
                if e["address"] == contract.address:
                    found.append((int(e["logIndex"]), entry["name"]))
    return [name for _, name in sorted(set(found))]


# Every role-gated function but mint: (role, setup, call, events); setup prepares a state in
# which the authorised caller succeeds, emitting exactly ``events``.
Gate = tuple[int, Callable[[Ledger], None], Callable[[Ledger], Any], list[str]]


def _pause(lg: Ledger) -> None:
    lg.transact(lg.fn.pause(), lg.actors.pauser)


def _nothing(lg: Ledger) -> None:
    return None


GATES: dict[str, Gate] = {
    "pause": (PAUSER_ROLE, _nothing, lambda lg: lg.fn.pause(), ["Paused"]),
    "unpause": (PAUSER_ROLE, _pause, lambda lg: lg.fn.unpause(), ["Unpaused"]),
    "grantRole": (
        ADMIN_ROLE,
        _nothing,
        lambda lg: lg.mgr.grantRole(ATTESTER_ROLE, lg.actors.payees[0].address, 0),
        ["RoleGranted"],
    ),
    "revokeRole": (
        ADMIN_ROLE,
        _nothing,
        lambda lg: lg.mgr.revokeRole(PAUSER_ROLE, lg.actors.pauser.address),
        ["RoleRevoked"],
    ),
    "setGrantDelay": (
        ADMIN_ROLE,
        _nothing,
        lambda lg: lg.mgr.setGrantDelay(ATTESTER_ROLE, 300),
        ["RoleGrantDelayChanged"],
    ),
    "setTargetFunctionRole": (
        ADMIN_ROLE,
        _nothing,
        lambda lg: lg.mgr.setTargetFunctionRole(
            lg.contract.address, selectors(lg.contract, ["mint"]), PAUSER_ROLE
        ),
        ["TargetFunctionRoleUpdated"],
    ),
    "setTargetClosed": (
        ADMIN_ROLE,
        _nothing,
        lambda lg: lg.mgr.setTargetClosed(lg.contract.address, True),
        ["TargetClosed"],
    ),
}
AUTHORISED = {PAUSER_ROLE: "pauser", ADMIN_ROLE: "admin"}
DENIALS = [
    (gate, name)
    for gate, (role, *_) in GATES.items()
    for name in ACTORS
    if name != AUTHORISED[role]
]


@pytest.mark.parametrize("gate", list(GATES))
def test_role_holder_may_call(lg: Ledger, gate: str) -> None:
    role, setup, call, events = GATES[gate]
    setup(lg)

    receipt = lg.transact(call(lg), actor(lg, AUTHORISED[role]))

    assert event_names(lg, receipt) == events


@pytest.mark.parametrize(("gate", "name"), DENIALS)
def test_other_actors_are_refused(lg: Ledger, gate: str, name: str) -> None:
    role, setup, call, _ = GATES[gate]
    setup(lg)
    caller = actor(lg, name)

    # The ledger's restricted functions ask the manager; the manager's own check its roles.
    if role == ADMIN_ROLE:
        expected: tuple[Any, ...] = ("AccessManagerUnauthorizedAccount", caller.address, ADMIN_ROLE)
    else:
        expected = ("AccessManagedUnauthorized", caller.address)
    with lg.reverts(*expected):
        lg.transact(call(lg), caller)


# ---------------------------------------------------------------------- roles


def test_the_ledger_is_managed_with_its_functions_mapped_to_roles(lg: Ledger) -> None:
    assert lg.manager is not None
    assert lg.fn.authority().call() == lg.manager.address
    assert [lg.role(n) for n in ("REGISTRAR_ROLE", "ATTESTER_ROLE", "PAUSER_ROLE")] == [1, 2, 3]
    for role, names in ROLE_FUNCTIONS.items():
        for selector in selectors(lg.contract, names):
            assert lg.mgr.getTargetFunctionRole(lg.contract.address, selector).call() == role
    # Everything else on the ledger is unrestricted by the manager (ADMIN_ROLE: never called).
    [settle] = selectors(lg.contract, ["settle"])
    assert lg.mgr.getTargetFunctionRole(lg.contract.address, settle).call() == ADMIN_ROLE
    for role in (REGISTRAR_ROLE, ATTESTER_ROLE, PAUSER_ROLE, ADMIN_ROLE):
        assert lg.mgr.getRoleAdmin(role).call() == ADMIN_ROLE
    for name, role in (
        ("registrar", REGISTRAR_ROLE),
        ("attester", ATTESTER_ROLE),
        ("pauser", PAUSER_ROLE),
        ("admin", ADMIN_ROLE),
    ):
        assert lg.mgr.hasRole(role, actor(lg, name).address).call() == [True, 0]
    assert lg.mgr.hasRole(ATTESTER_ROLE, lg.actors.admin.address).call() == [False, 0]


@pytest.mark.parametrize("role", [REGISTRAR_ROLE, ATTESTER_ROLE, PAUSER_ROLE])
def test_admin_grants_and_revokes_roles(lg: Ledger, role: int) -> None:
    account = lg.actors.payees[1]

    granted = lg.grant_role(role, account)
    assert role_events(lg, granted) == [
        ("RoleGranted", role, account.address, 0, lg.block_time(granted), True)
    ]
    assert lg.has_role(role, account)

    revoked = lg.revoke_role(role, account)
    assert role_events(lg, revoked) == [("RoleRevoked", role, account.address)]
    assert not lg.has_role(role, account)
    # Revoking a non-member changes nothing and says nothing.
    again = lg.revoke_role(role, account)
    assert role_events(lg, again) == []


def test_granted_registrar_may_mint_until_revoked(lg: Ledger) -> None:
    account = lg.actors.payees[1]
    lg.grant_role(REGISTRAR_ROLE, account)

    receipt = lg.transact(
        lg.fn.mint(lg.actors.models[0].address, "ipfs://x", b"\x01" * 32), account
    )
    assert lg.events(receipt, "TwinMinted")[0]["twinId"] == 1

    lg.revoke_role(REGISTRAR_ROLE, account)
    with lg.reverts("AccessManagedUnauthorized", account.address):
        lg.transact(lg.fn.mint(lg.actors.models[0].address, "ipfs://x", b"\x01" * 32), account)


def test_role_holder_may_renounce_only_for_itself(lg: Ledger) -> None:
    registrar = lg.actors.registrar

    with lg.reverts("AccessManagerBadConfirmation"):
        lg.transact(lg.mgr.renounceRole(REGISTRAR_ROLE, registrar.address), lg.actors.admin)

    receipt = lg.transact(lg.mgr.renounceRole(REGISTRAR_ROLE, registrar.address), registrar)
    assert role_events(lg, receipt) == [("RoleRevoked", REGISTRAR_ROLE, registrar.address)]
    assert not lg.has_role(REGISTRAR_ROLE, registrar)


@pytest.mark.parametrize("name", ["admin", "outsider"])
def test_public_role_cannot_be_granted_or_revoked(lg: Ledger, name: str) -> None:
    caller = actor(lg, name)
    expected: tuple[Any, ...] = (
        ("AccessManagerLockedRole", PUBLIC_ROLE)
        if name == "admin"
        else ("AccessManagerUnauthorizedAccount", caller.address, ADMIN_ROLE)
    )

    with lg.reverts(*expected):
        lg.transact(lg.mgr.grantRole(PUBLIC_ROLE, lg.actors.outsider.address, 0), caller)
    with lg.reverts(*expected):
        lg.transact(lg.mgr.revokeRole(PUBLIC_ROLE, lg.actors.admin.address), caller)
    assert lg.has_role(ADMIN_ROLE, lg.actors.admin)


# ---------------------------------------------------------------------- attester rotation


def test_rotation_grants_the_new_attester_and_revokes_the_old(lg: Ledger) -> None:
    old, new = lg.actors.attester, lg.actors.payees[0]

    granted = lg.grant_role(ATTESTER_ROLE, new)
    revoked = lg.revoke_role(ATTESTER_ROLE, old)

    assert role_events(lg, granted) == [
        ("RoleGranted", ATTESTER_ROLE, new.address, 0, lg.block_time(granted), True)
    ]
    assert role_events(lg, revoked) == [("RoleRevoked", ATTESTER_ROLE, old.address)]
    assert lg.has_role(ATTESTER_ROLE, new)
    assert not lg.has_role(ATTESTER_ROLE, old)


def test_after_rotation_only_the_new_attester_batches_settle(lg: Ledger) -> None:
    model, brand = lg.actors.models[0], lg.actors.brands[0]
    old, new = lg.actors.attester, lg.actors.payees[0]
    twin = lg.mint(model)
    lg.offer_and_accept(twin, lg.terms(brand, {0: 10}), model)
    lg.deposit(brand, 1_000)
    lg.advance(5)
    usage = lg.usage(twin, used_at=lg.now())
    old_batch, old_signature = lg.sign_batch([(brand.address, [usage])])

    lg.grant_role(ATTESTER_ROLE, new)
    lg.revoke_role(ATTESTER_ROLE, old)

    with lg.reverts("SettlementInvalidAttester", old.address):
        lg.transact(lg.fn.settle(old_batch, old.address, old_signature), lg.actors.outsider)
    with lg.reverts("SettlementInvalidAttester", old.address):
        lg.settle([(brand.address, [usage])])
    receipt = lg.settle([(brand.address, [usage])], signer=new)
    [event] = lg.events(receipt, "UsagesSettled")
    assert (event["attester"], event["paid"]) == (new.address, 10)
    assert [o for _, o in lg.outcomes(receipt)] == [Outcome.PAID]


def test_granting_a_member_again_is_not_a_new_membership(lg: Ledger) -> None:
    attester = lg.actors.attester

    receipt = lg.grant_role(ATTESTER_ROLE, attester)

    [(_, role, account, delay, _, new_member)] = role_events(lg, receipt)
    assert (role, account, delay, new_member) == (ATTESTER_ROLE, attester.address, 0, False)
    assert lg.has_role(ATTESTER_ROLE, attester)


# ---------------------------------------------------------------------- delays


def test_a_grant_delay_makes_a_new_attester_wait(lg: Ledger) -> None:
    model, brand, newcomer = lg.actors.models[0], lg.actors.brands[0], lg.actors.payees[0]
    changed = lg.transact(lg.mgr.setGrantDelay(ATTESTER_ROLE, 300), lg.actors.admin)
    effect = lg.block_time(changed) + MIN_SETBACK
    assert lg.events(changed, "RoleGrantDelayChanged", lg.manager) == [
        {"roleId": ATTESTER_ROLE, "delay": 300, "since": effect}
    ]
    lg.warp(effect + 1)
    assert lg.mgr.getRoleGrantDelay(ATTESTER_ROLE).call() == 300
    twin = lg.mint(model)
    lg.offer_and_accept(twin, lg.terms(brand, {0: 10}), model)

    granted = lg.grant_role(ATTESTER_ROLE, newcomer)

    since = lg.block_time(granted) + 300
    assert role_events(lg, granted) == [
        ("RoleGranted", ATTESTER_ROLE, newcomer.address, 0, since, True)
    ]
    assert not lg.has_role(ATTESTER_ROLE, newcomer)
    with lg.reverts("SettlementInvalidAttester", newcomer.address):
        lg.settle([(brand.address, [lg.usage(twin)])], signer=newcomer)
    lg.warp(since)
    receipt = lg.settle([(brand.address, [lg.usage(twin)])], signer=newcomer)
    assert [o for _, o in lg.outcomes(receipt)] == [Outcome.PAID]
    assert lg.block_time(receipt) == since
    assert lg.has_role(ATTESTER_ROLE, newcomer)


def test_an_admin_with_an_execution_delay_schedules_and_waits(lg: Ledger) -> None:
    admin, successor, newcomer = lg.actors.admin, lg.actors.payees[2], lg.actors.payees[0]
    lg.grant_role(ADMIN_ROLE, successor, delay=ADMIN_DELAY)
    lg.transact(lg.mgr.renounceRole(ADMIN_ROLE, admin.address), admin)
    grant = lg.mgr.grantRole(ATTESTER_ROLE, newcomer.address, 0)
    data = bytes.fromhex(grant._encode_transaction_data()[2:])
    operation = bytes(lg.mgr.hashOperation(successor.address, lg.manager.address, data).call())

    with lg.reverts("AccessManagerNotScheduled", operation):
        lg.transact(grant, successor)
    with lg.reverts("AccessManagerUnauthorizedAccount", admin.address, ADMIN_ROLE):
        lg.grant_role(ATTESTER_ROLE, newcomer)
    scheduled = lg.transact(lg.mgr.schedule(lg.manager.address, data, 0), successor)
    when = lg.block_time(scheduled) + ADMIN_DELAY
    [event] = lg.events(scheduled, "OperationScheduled", lg.manager)
    assert (bytes(event["operationId"]), event["nonce"], event["schedule"]) == (operation, 1, when)
    lg.warp(when - 1)
    with lg.reverts("AccessManagerNotReady", operation):
        lg.transact(lg.mgr.execute(lg.manager.address, data), successor)
    assert not lg.has_role(ATTESTER_ROLE, newcomer)
    lg.warp(when)

    executed = lg.transact(lg.mgr.execute(lg.manager.address, data), successor)

    assert role_events(lg, executed) == [
        ("RoleGranted", ATTESTER_ROLE, newcomer.address, 0, lg.block_time(executed), True)
    ]
    assert lg.has_role(ATTESTER_ROLE, newcomer)
    assert lg.events(executed, "OperationExecuted", lg.manager) == [
        {"operationId": operation, "nonce": 1}
    ]


# ---------------------------------------------------------------------- emergency pause


def test_pauser_pauses_and_unpauses_the_ledger(lg: Ledger) -> None:
    pauser = lg.actors.pauser

    paused = lg.transact(lg.fn.pause(), pauser)
    assert lg.events(paused, "Paused") == [{"account": pauser.address}]
    assert lg.fn.paused().call()
    with lg.reverts("EnforcedPause"):
        lg.transact(lg.fn.pause(), pauser)

    unpaused = lg.transact(lg.fn.unpause(), pauser)
    assert lg.events(unpaused, "Unpaused") == [{"account": pauser.address}]
    assert not lg.fn.paused().call()
    with lg.reverts("ExpectedPause"):
        lg.transact(lg.fn.unpause(), pauser)


def test_emergency_pause_stops_settlement_and_deposits(lg: Ledger) -> None:
    model, brand = lg.actors.models[0], lg.actors.brands[0]
    twin = lg.mint(model)
    lg.offer_and_accept(twin, lg.terms(brand, {0: 10}), model)
    lg.deposit(brand, 1_000)
    lg.advance(5)
    usage = lg.usage(twin, used_at=lg.now())
    lg.transact(lg.fn.pause(), lg.actors.pauser)

    with lg.reverts("EnforcedPause"):
        lg.settle([(brand.address, [usage])])
    with lg.reverts("EnforcedPause"):
        lg.deposit(brand, 1_000)
    with lg.reverts("EnforcedPause"):
        lg.transact(
            lg.fn.depositWithPermit(
                brand.address, 1_000, lg.now() + 3600, 27, b"\x00" * 32, b"\x00" * 32
            ),
            brand,
        )
    assert lg.brand_account(brand)["escrow"] == 1_000
    assert not lg.fn.isUsageProcessed(brand.address, Usage.decode(usage).usage_id).call()

    lg.transact(lg.fn.unpause(), lg.actors.pauser)
    receipt = lg.settle([(brand.address, [usage])])
    assert [o for _, o in lg.outcomes(receipt)] == [Outcome.PAID]
    lg.deposit(brand, 1_000)
    assert lg.brand_account(brand)["escrow"] == 1_990


def test_payouts_work_while_paused_and_escrow_withdrawal_waits_for_the_unpause(
    lg: Ledger,
) -> None:
    model, brand, payee = lg.actors.models[0], lg.actors.brands[0], lg.actors.payees[0]
    twin = lg.mint(model)
    lg.offer_and_accept(twin, lg.terms(brand, {0: 100}), model)
    lg.transact(lg.fn.setPayees(twin, [(payee.address, 2_500)]), model)
    lg.deposit(brand, 10_000)
    lg.advance(5)
    lg.settle([(brand.address, [lg.usage(twin, used_at=lg.now(), quantity=40)])])
    lg.transact(lg.fn.requestEscrowWithdrawal(2_000), brand)
    lg.advance(NOTICE_PERIOD)
    lg.transact(lg.fn.pause(), lg.actors.pauser)
    balances = {a.address: lg.token_balance(a.address) for a in (model, brand, payee)}

    withdrawn = lg.transact(lg.fn.withdraw([twin]), model)
    paid_out = lg.transact(lg.fn.payout(payee.address, []), lg.actors.outsider)
    with lg.reverts("EnforcedPause"):
        lg.transact(lg.fn.withdrawEscrow(), brand)
    lg.transact(lg.fn.unpause(), lg.actors.pauser)
    escrow_out = lg.transact(lg.fn.withdrawEscrow(), brand)

    assert lg.events(withdrawn, "PayeePaid") == [
        {"payee": model.address, "caller": model.address, "amount": 3_000}
    ]
    assert lg.events(paid_out, "PayeePaid") == [
        {"payee": payee.address, "caller": lg.actors.outsider.address, "amount": 1_000}
    ]
    assert lg.events(escrow_out, "EscrowWithdrawn") == [{"brand": brand.address, "amount": 2_000}]
    assert lg.token_balance(model.address) - balances[model.address] == 3_000
    assert lg.token_balance(payee.address) - balances[payee.address] == 1_000
    assert lg.token_balance(brand.address) - balances[brand.address] == 2_000
    assert lg.brand_account(brand)["escrow"] == 4_000
    assert lg.fn.totalLiabilities().call() == 4_000 == lg.token_balance(lg.contract.address)
    assert not lg.fn.paused().call()
