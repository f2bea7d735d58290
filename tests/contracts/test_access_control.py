"""Roles: every role-gated ledger function against every actor, attester rotation, the delayed
default-admin transfer (AccessControlDefaultAdminRules) and the emergency pause.

The registrar's gate on ``mint`` is checked against every other actor in ``test_twins.py``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from web3.logs import DISCARD

from bridge.domain.codec import Outcome, Usage

from .conftest import ADMIN_DELAY, NOTICE_PERIOD
from .helpers import Ledger

ZERO = "0x0000000000000000000000000000000000000000"
ADMIN_ROLE = b"\x00" * 32
ACTORS = ["admin", "registrar", "attester", "pauser", "outsider", "model", "brand"]


def actor(lg: Ledger, name: str) -> LocalAccount:
    if name == "model":
        return lg.actors.models[0]
    if name == "brand":
        return lg.actors.brands[0]
    return getattr(lg.actors, name)


def role_events(lg: Ledger, receipt: Any) -> list[tuple[str, bytes, str, str]]:
    """``(event, role, account, sender)`` of every RoleGranted/RoleRevoked, in log order."""
    found = [
        (log_index, name, e)
        for name in ("RoleGranted", "RoleRevoked")
        for log_index, e in _with_index(lg, receipt, name)
    ]
    return [
        (name, bytes(e["role"]), e["account"], e["sender"])
        for _, name, e in sorted(found, key=lambda f: f[0])
    ]


def _with_index(lg: Ledger, receipt: Any, name: str) -> list[tuple[int, dict[str, Any]]]:
    event = getattr(lg.contract.events, name)()
    return [
        (int(e["logIndex"]), dict(e["args"]))
        for e in event.process_receipt(receipt, errors=DISCARD)
        if e["address"] == lg.contract.address
    ]


# Every role-gated function but mint: (role, setup, call, events); setup prepares a state in
# which the authorised caller succeeds, emitting exactly ``events``.
Gate = tuple[str, Callable[[Ledger], None], Callable[[Ledger], Any], list[str]]


def _pause(lg: Ledger) -> None:
    lg.transact(lg.fn.pause(), lg.actors.pauser)


def _nothing(lg: Ledger) -> None:
    return None


GATES: dict[str, Gate] = {
    "pause": ("PAUSER_ROLE", _nothing, lambda lg: lg.fn.pause(), ["Paused"]),
    "unpause": ("PAUSER_ROLE", _pause, lambda lg: lg.fn.unpause(), ["Unpaused"]),
    "rotateAttester": (
        "DEFAULT_ADMIN_ROLE",
        _nothing,
        lambda lg: lg.fn.rotateAttester(lg.actors.attester.address, lg.actors.payees[0].address),
        ["RoleGranted", "RoleRevoked"],
    ),
    "grantRole": (
        "DEFAULT_ADMIN_ROLE",
        _nothing,
        lambda lg: lg.fn.grantRole(lg.role("REGISTRAR_ROLE"), lg.actors.payees[0].address),
        ["RoleGranted"],
    ),
    "revokeRole": (
        "DEFAULT_ADMIN_ROLE",
        _nothing,
        lambda lg: lg.fn.revokeRole(lg.role("PAUSER_ROLE"), lg.actors.pauser.address),
        ["RoleRevoked"],
    ),
    "beginDefaultAdminTransfer": (
        "DEFAULT_ADMIN_ROLE",
        _nothing,
        lambda lg: lg.fn.beginDefaultAdminTransfer(lg.actors.payees[0].address),
        ["DefaultAdminTransferScheduled"],
    ),
    "changeDefaultAdminDelay": (
        "DEFAULT_ADMIN_ROLE",
        _nothing,
        lambda lg: lg.fn.changeDefaultAdminDelay(3600),
        ["DefaultAdminDelayChangeScheduled"],
    ),
}
AUTHORISED = {"PAUSER_ROLE": "pauser", "DEFAULT_ADMIN_ROLE": "admin"}
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

    assert lg.all_events(receipt) == events


@pytest.mark.parametrize(("gate", "name"), DENIALS)
def test_other_actors_are_refused(lg: Ledger, gate: str, name: str) -> None:
    role, setup, call, _ = GATES[gate]
    setup(lg)
    caller = actor(lg, name)

    with lg.reverts("AccessControlUnauthorizedAccount", caller.address, lg.role(role)):
        lg.transact(call(lg), caller)


# ---------------------------------------------------------------------- roles


def test_role_admin_of_every_ledger_role_is_the_default_admin(lg: Ledger) -> None:
    for role in ("REGISTRAR_ROLE", "ATTESTER_ROLE", "PAUSER_ROLE", "DEFAULT_ADMIN_ROLE"):
        assert lg.fn.getRoleAdmin(lg.role(role)).call() == ADMIN_ROLE
    assert lg.role("DEFAULT_ADMIN_ROLE") == ADMIN_ROLE
    assert lg.fn.defaultAdmin().call() == lg.actors.admin.address
    assert lg.fn.owner().call() == lg.actors.admin.address
    assert lg.fn.defaultAdminDelay().call() == ADMIN_DELAY


@pytest.mark.parametrize("role_name", ["REGISTRAR_ROLE", "ATTESTER_ROLE", "PAUSER_ROLE"])
def test_admin_grants_and_revokes_roles(lg: Ledger, role_name: str) -> None:
    admin, account = lg.actors.admin, lg.actors.payees[1]
    role = lg.role(role_name)

    granted = lg.transact(lg.fn.grantRole(role, account.address), admin)
    assert role_events(lg, granted) == [("RoleGranted", role, account.address, admin.address)]
    assert lg.fn.hasRole(role, account.address).call()

    revoked = lg.transact(lg.fn.revokeRole(role, account.address), admin)
    assert role_events(lg, revoked) == [("RoleRevoked", role, account.address, admin.address)]
    assert not lg.fn.hasRole(role, account.address).call()


def test_granted_registrar_may_mint_until_revoked(lg: Ledger) -> None:
    admin, account = lg.actors.admin, lg.actors.payees[1]
    role = lg.role("REGISTRAR_ROLE")
    lg.transact(lg.fn.grantRole(role, account.address), admin)

    receipt = lg.transact(
        lg.fn.mint(lg.actors.models[0].address, "ipfs://x", b"\x01" * 32), account
    )
    assert lg.events(receipt, "TwinMinted")[0]["twinId"] == 1

    lg.transact(lg.fn.revokeRole(role, account.address), admin)
    with lg.reverts("AccessControlUnauthorizedAccount", account.address, role):
        lg.transact(lg.fn.mint(lg.actors.models[0].address, "ipfs://x", b"\x01" * 32), account)


def test_role_holder_may_renounce_only_for_itself(lg: Ledger) -> None:
    registrar = lg.actors.registrar
    role = lg.role("REGISTRAR_ROLE")

    with lg.reverts("AccessControlBadConfirmation"):
        lg.transact(lg.fn.renounceRole(role, registrar.address), lg.actors.admin)

    receipt = lg.transact(lg.fn.renounceRole(role, registrar.address), registrar)
    assert role_events(lg, receipt) == [("RoleRevoked", role, registrar.address, registrar.address)]
    assert not lg.fn.hasRole(role, registrar.address).call()


@pytest.mark.parametrize("name", ["admin", "outsider"])
def test_default_admin_role_cannot_be_granted_or_revoked_directly(lg: Ledger, name: str) -> None:
    caller = actor(lg, name)

    with lg.reverts("AccessControlEnforcedDefaultAdminRules"):
        lg.transact(lg.fn.grantRole(ADMIN_ROLE, lg.actors.outsider.address), caller)
    with lg.reverts("AccessControlEnforcedDefaultAdminRules"):
        lg.transact(lg.fn.revokeRole(ADMIN_ROLE, lg.actors.admin.address), caller)
    assert lg.fn.defaultAdmin().call() == lg.actors.admin.address


# ---------------------------------------------------------------------- attester rotation


def test_rotate_attester_swaps_the_role(lg: Ledger) -> None:
    admin, old, new = lg.actors.admin, lg.actors.attester, lg.actors.payees[0]
    role = lg.role("ATTESTER_ROLE")

    receipt = lg.transact(lg.fn.rotateAttester(old.address, new.address), admin)

    assert role_events(lg, receipt) == [
        ("RoleGranted", role, new.address, admin.address),
        ("RoleRevoked", role, old.address, admin.address),
    ]
    assert lg.fn.hasRole(role, new.address).call()
    assert not lg.fn.hasRole(role, old.address).call()


def test_after_rotation_only_the_new_attester_batches_settle(lg: Ledger) -> None:
    model, brand = lg.actors.models[0], lg.actors.brands[0]
    old, new = lg.actors.attester, lg.actors.payees[0]
    twin = lg.mint(model)
    lg.grant(twin, lg.terms(brand, {0: 10}), model)
    lg.deposit(brand, 1_000)
    lg.advance(5)
    usage = lg.usage(twin, used_at=lg.now())
    old_batch, old_signature = lg.sign_batch([(brand.address, [usage])])

    lg.transact(lg.fn.rotateAttester(old.address, new.address), lg.actors.admin)

    with lg.reverts("SettlementInvalidAttester", old.address):
        lg.transact(lg.fn.settle(old_batch, old_signature), lg.actors.outsider)
    with lg.reverts("SettlementInvalidAttester", old.address):
        lg.settle([(brand.address, [usage])])
    receipt = lg.settle([(brand.address, [usage])], signer=new)
    [event] = lg.events(receipt, "UsagesSettled")
    assert (event["attester"], event["paid"]) == (new.address, 10)
    assert [o for _, o in lg.outcomes(receipt)] == [Outcome.PAID]


@pytest.mark.parametrize(
    "case", ["old-not-attester", "new-is-zero", "same-account", "new-already-attester"]
)
def test_invalid_rotations_revert(lg: Ledger, case: str) -> None:
    attester, outsider, payee = lg.actors.attester, lg.actors.outsider, lg.actors.payees[0]
    if case == "new-already-attester":
        lg.transact(lg.fn.grantRole(lg.role("ATTESTER_ROLE"), payee.address), lg.actors.admin)
    old, new = {
        "old-not-attester": (outsider.address, payee.address),
        "new-is-zero": (attester.address, ZERO),
        "same-account": (attester.address, attester.address),
        "new-already-attester": (attester.address, payee.address),
    }[case]

    with lg.reverts("AttesterRotationInvalid", old, new):
        lg.transact(lg.fn.rotateAttester(old, new), lg.actors.admin)
    assert lg.fn.hasRole(lg.role("ATTESTER_ROLE"), attester.address).call()


# ---------------------------------------------------------------------- delayed admin transfer


def test_default_admin_transfer_waits_for_the_delay(lg: Ledger) -> None:
    admin, successor = lg.actors.admin, lg.actors.payees[2]

    begun = lg.transact(lg.fn.beginDefaultAdminTransfer(successor.address), admin)

    schedule = lg.block_time(begun) + ADMIN_DELAY
    assert lg.events(begun, "DefaultAdminTransferScheduled") == [
        {"newAdmin": successor.address, "acceptSchedule": schedule}
    ]
    assert lg.fn.pendingDefaultAdmin().call() == [successor.address, schedule]
    with lg.reverts("AccessControlEnforcedDefaultAdminDelay", schedule):
        lg.transact(lg.fn.acceptDefaultAdminTransfer(), successor)
    lg.warp(schedule)
    with lg.reverts("AccessControlEnforcedDefaultAdminDelay", schedule):
        lg.transact(lg.fn.acceptDefaultAdminTransfer(), successor)
    lg.advance(1)
    with lg.reverts("AccessControlInvalidDefaultAdmin", lg.actors.outsider.address):
        lg.transact(lg.fn.acceptDefaultAdminTransfer(), lg.actors.outsider)

    accepted = lg.transact(lg.fn.acceptDefaultAdminTransfer(), successor)

    assert role_events(lg, accepted) == [
        ("RoleRevoked", ADMIN_ROLE, admin.address, successor.address),
        ("RoleGranted", ADMIN_ROLE, successor.address, successor.address),
    ]
    assert lg.fn.defaultAdmin().call() == successor.address
    assert lg.fn.pendingDefaultAdmin().call() == [ZERO, 0]
    assert not lg.fn.hasRole(ADMIN_ROLE, admin.address).call()
    with lg.reverts("AccessControlUnauthorizedAccount", admin.address, ADMIN_ROLE):
        lg.transact(
            lg.fn.rotateAttester(lg.actors.attester.address, lg.actors.payees[0].address), admin
        )
    rotated = lg.transact(
        lg.fn.rotateAttester(lg.actors.attester.address, lg.actors.payees[0].address), successor
    )
    assert role_events(lg, rotated)[0] == (
        "RoleGranted",
        lg.role("ATTESTER_ROLE"),
        lg.actors.payees[0].address,
        successor.address,
    )


def test_cancelled_admin_transfer_cannot_be_accepted(lg: Ledger) -> None:
    admin, successor = lg.actors.admin, lg.actors.payees[2]
    lg.transact(lg.fn.beginDefaultAdminTransfer(successor.address), admin)

    cancelled = lg.transact(lg.fn.cancelDefaultAdminTransfer(), admin)

    assert lg.all_events(cancelled) == ["DefaultAdminTransferCanceled"]
    lg.advance(ADMIN_DELAY + 1)
    with lg.reverts("AccessControlInvalidDefaultAdmin", successor.address):
        lg.transact(lg.fn.acceptDefaultAdminTransfer(), successor)
    assert lg.fn.defaultAdmin().call() == admin.address


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
    lg.grant(twin, lg.terms(brand, {0: 10}), model)
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
    assert not lg.fn.isUsageProcessed(Usage.decode(usage).usage_id).call()

    lg.transact(lg.fn.unpause(), lg.actors.pauser)
    receipt = lg.settle([(brand.address, [usage])])
    assert [o for _, o in lg.outcomes(receipt)] == [Outcome.PAID]
    lg.deposit(brand, 1_000)
    assert lg.brand_account(brand)["escrow"] == 1_990


def test_withdrawals_and_payouts_work_while_paused(lg: Ledger) -> None:
    model, brand, payee = lg.actors.models[0], lg.actors.brands[0], lg.actors.payees[0]
    twin = lg.mint(model)
    lg.grant(twin, lg.terms(brand, {0: 100}), model)
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
    assert lg.fn.paused().call()
