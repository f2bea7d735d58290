"""Roles live in the access manager (OpenZeppelin AccessManager): registrar, pauser and attester
granted and revoked there, a role's grant delay that makes a new member count only after it, an
admin with an execution delay that must schedule its calls, a contract (ERC-1271) as attester,
and a brand's own attester replacing the bridge's for its usages."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from web3.contract import Contract

from .conftest import ADMIN_ROLE, ATTESTER_ROLE, PAUSER_ROLE, REGISTRAR_ROLE, selectors
from .helpers import CONSENT_RECORD, Ledger, Outcome

ZERO = "0x0000000000000000000000000000000000000000"
PRICE = 1_000_000
ROLE_DELAY = 300
MIN_SETBACK = 5 * 24 * 3600

OWN_IDS = 1 << 62
"""First usage id of a brand's own id space (brands that name their own attester)."""


# ---------------------------------------------------------------------- helpers


@pytest.fixture
def brand(lg: Ledger) -> LocalAccount:
    return lg.actors.brands[0]


@pytest.fixture
def newcomer(lg: Ledger) -> LocalAccount:
    """An unlocked account that holds no role."""
    return lg.actors.payees[0]


@pytest.fixture
def twin(lg: Ledger, brand: LocalAccount) -> int:
    """A twin licensed to ``brand`` (accepted) with escrow behind it."""
    model = lg.actors.models[0]
    twin_id = lg.mint(model)
    lg.offer_and_accept(twin_id, lg.terms(brand, {0: PRICE}), model)
    lg.deposit(brand, 100 * PRICE)
    lg.advance(1)
    return twin_id


def settled_by(lg: Ledger, receipt: Any) -> list[tuple[str, Outcome]]:
    """``(attester, outcome)`` of every usage settled in ``receipt``."""
    return [
        (e["attester"], o)
        for e in lg.events(receipt, "UsagesSettled")
        for o in (w & 0xFF for w in e["results"])
    ]


def restricted_call(lg: Ledger, role_id: int, account: LocalAccount) -> Any:
    """The ledger function the role guards, called as ``account``."""
    if role_id == REGISTRAR_ROLE:
        return lg.fn.mint(account.address, "ipfs://twin", CONSENT_RECORD)
    return lg.fn.pause()


# ---------------------------------------------------------------------- registrar and pauser


def test_the_manager_maps_the_restricted_functions_to_their_roles(lg: Ledger) -> None:
    ledger = lg.contract.address
    mint, pause, unpause = selectors(lg.contract, ["mint", "pause", "unpause"])

    assert lg.mgr.getTargetFunctionRole(ledger, mint).call() == REGISTRAR_ROLE
    assert lg.mgr.getTargetFunctionRole(ledger, pause).call() == PAUSER_ROLE
    assert lg.mgr.getTargetFunctionRole(ledger, unpause).call() == PAUSER_ROLE
    assert (lg.role("REGISTRAR_ROLE"), lg.role("ATTESTER_ROLE"), lg.role("PAUSER_ROLE")) == (
        1,
        2,
        3,
    )
    assert lg.manager is not None
    assert lg.fn.authority().call() == lg.manager.address


@pytest.mark.parametrize("role_id", [REGISTRAR_ROLE, PAUSER_ROLE])
def test_registrar_and_pauser_act_by_their_role_in_the_manager(
    lg: Ledger, newcomer: LocalAccount, role_id: int
) -> None:
    with lg.reverts("AccessManagedUnauthorized", newcomer.address):
        restricted_call(lg, role_id, newcomer).transact({"from": newcomer.address})

    receipt = lg.grant_role(role_id, newcomer)

    assert lg.manager_events(receipt, "RoleGranted") == [
        {
            "roleId": role_id,
            "account": newcomer.address,
            "delay": 0,
            "since": lg.block_time(receipt),
            "newMember": True,
        }
    ]
    lg.transact(restricted_call(lg, role_id, newcomer), newcomer)

    revoked = lg.revoke_role(role_id, newcomer)
    assert lg.manager_events(revoked, "RoleRevoked") == [
        {"roleId": role_id, "account": newcomer.address}
    ]
    call = restricted_call(lg, role_id, newcomer)
    if role_id == PAUSER_ROLE:
        call = lg.fn.unpause()
    with lg.reverts("AccessManagedUnauthorized", newcomer.address):
        call.transact({"from": newcomer.address})


def test_only_the_admin_grants_roles(lg: Ledger, newcomer: LocalAccount) -> None:
    with lg.reverts("AccessManagerUnauthorizedAccount", newcomer.address, ADMIN_ROLE):
        lg.mgr.grantRole(ATTESTER_ROLE, newcomer.address, 0).transact({"from": newcomer.address})


# ---------------------------------------------------------------------- attesters


def test_a_rotated_attester_is_refused_and_the_new_one_accepted(
    lg: Ledger, brand: LocalAccount, twin: int, newcomer: LocalAccount
) -> None:
    old = lg.actors.attester
    lg.grant_role(ATTESTER_ROLE, newcomer)
    lg.revoke_role(ATTESTER_ROLE, old)

    with lg.reverts("SettlementInvalidAttester", old.address):
        lg.settle_call([(brand.address, [lg.usage(twin)])]).call()
    receipt = lg.settle([(brand.address, [lg.usage(twin)])], signer=newcomer)

    assert settled_by(lg, receipt) == [(newcomer.address, Outcome.PAID)]


def test_the_signature_must_be_the_named_attesters(
    lg: Ledger, brand: LocalAccount, twin: int
) -> None:
    attester = lg.actors.attester.address
    call = lg.settle_call(
        [(brand.address, [lg.usage(twin)])], signer=lg.actors.outsider, attester=attester
    )

    with lg.reverts("SettlementInvalidAttester", attester):
        call.transact({"from": lg.actors.outsider.address})


def test_a_grant_delay_makes_a_new_attester_count_only_after_it(
    lg: Ledger, brand: LocalAccount, twin: int, newcomer: LocalAccount
) -> None:
    assert lg.mgr.minSetback().call() == MIN_SETBACK
    changed = lg.transact(lg.mgr.setGrantDelay(ATTESTER_ROLE, ROLE_DELAY), lg.actors.admin)
    delay_since = lg.block_time(changed) + MIN_SETBACK
    assert lg.manager_events(changed, "RoleGrantDelayChanged") == [
        {"roleId": ATTESTER_ROLE, "delay": ROLE_DELAY, "since": delay_since}
    ]
    lg.warp(delay_since)

    receipt = lg.grant_role(ATTESTER_ROLE, newcomer)

    since = lg.block_time(receipt) + ROLE_DELAY
    assert lg.manager_events(receipt, "RoleGranted") == [
        {
            "roleId": ATTESTER_ROLE,
            "account": newcomer.address,
            "delay": 0,
            "since": since,
            "newMember": True,
        }
    ]
    lg.warp(since - 1)
    assert lg.has_role(ATTESTER_ROLE, newcomer) is False
    with lg.reverts("SettlementInvalidAttester", newcomer.address):
        lg.settle_call([(brand.address, [lg.usage(twin)])], signer=newcomer).call()
    lg.warp(since)
    receipt = lg.settle([(brand.address, [lg.usage(twin)])], signer=newcomer)
    assert settled_by(lg, receipt) == [(newcomer.address, Outcome.PAID)]


def test_an_admin_with_an_execution_delay_must_schedule_and_wait(
    lg: Ledger, newcomer: LocalAccount
) -> None:
    slow_admin, manager = lg.actors.payees[1], lg.manager
    assert manager is not None
    lg.grant_role(ADMIN_ROLE, slow_admin, delay=ROLE_DELAY)
    data = manager.encode_abi("grantRole", [ATTESTER_ROLE, newcomer.address, 0])
    operation = bytes(lg.mgr.hashOperation(slow_admin.address, manager.address, data).call())
    with lg.reverts("AccessManagerNotScheduled", operation):
        lg.mgr.grantRole(ATTESTER_ROLE, newcomer.address, 0).transact({"from": slow_admin.address})

    scheduled = lg.transact(lg.mgr.schedule(manager.address, data, 0), slow_admin)

    when = lg.block_time(scheduled) + ROLE_DELAY
    [event] = lg.manager_events(scheduled, "OperationScheduled")
    assert (event["operationId"], event["nonce"], event["schedule"]) == (operation, 1, when)
    assert (event["caller"], event["target"], bytes(event["data"])) == (
        slow_admin.address,
        manager.address,
        bytes.fromhex(data[2:]),
    )
    lg.warp(when - 1)
    with lg.reverts("AccessManagerNotReady", operation):
        lg.mgr.execute(manager.address, data).transact({"from": slow_admin.address})
    lg.warp(when)
    executed = lg.transact(lg.mgr.execute(manager.address, data), slow_admin)
    assert lg.manager_events(executed, "OperationExecuted") == [
        {"operationId": operation, "nonce": 1}
    ]
    assert [e["account"] for e in lg.manager_events(executed, "RoleGranted")] == [newcomer.address]
    assert lg.has_role(ATTESTER_ROLE, newcomer) is True


def test_a_contract_attester_signs_by_erc1271(
    lg: Ledger, brand: LocalAccount, twin: int, deploy: Any
) -> None:
    key = lg.actors.payees[2]
    wallet: Contract = deploy("MockERC1271Wallet", key.address)
    lg.grant_role(ATTESTER_ROLE, wallet.address)

    receipt = lg.settle([(brand.address, [lg.usage(twin)])], signer=key, attester=wallet.address)

    assert settled_by(lg, receipt) == [(wallet.address, Outcome.PAID)]
    lg.transact(wallet.functions.setAccepting(False), key)
    call = lg.settle_call([(brand.address, [lg.usage(twin)])], signer=key, attester=wallet.address)
    with lg.reverts("SettlementInvalidAttester", wallet.address):
        call.transact({"from": lg.actors.outsider.address})


# ---------------------------------------------------------------------- self-attestation


def test_a_brand_with_its_own_attester_trusts_only_it_until_it_resets_to_zero(
    lg: Ledger, brand: LocalAccount, twin: int
) -> None:
    own, bridge = lg.actors.payees[2], lg.actors.attester
    receipt = lg.transact(lg.fn.setBrandAttester(own.address), brand)
    assert lg.events(receipt, "BrandAttesterSet") == [
        {"brand": brand.address, "attester": own.address}
    ]
    assert lg.brand_limits(brand)["attester"] == own.address

    settled = lg.settle([(brand.address, [lg.usage(twin, usage_id=OWN_IDS + 1)])], signer=own)
    assert settled_by(lg, settled) == [(own.address, Outcome.PAID)]
    with lg.reverts("SettlementWrongAttester", brand.address, bridge.address):
        lg.settle_call([(brand.address, [lg.usage(twin, usage_id=OWN_IDS + 2)])]).call()

    reset = lg.transact(lg.fn.setBrandAttester(ZERO), brand)
    assert lg.events(reset, "BrandAttesterSet") == [{"brand": brand.address, "attester": ZERO}]
    assert lg.brand_limits(brand)["attester"] == ZERO
    with lg.reverts("SettlementInvalidAttester", own.address):
        lg.settle_call([(brand.address, [lg.usage(twin)])], signer=own).call()
    settled = lg.settle([(brand.address, [lg.usage(twin)])])
    assert settled_by(lg, settled) == [(bridge.address, Outcome.PAID)]


def test_a_brand_attester_signs_for_its_brand_only(
    lg: Ledger, brand: LocalAccount, twin: int
) -> None:
    own, other = lg.actors.payees[2], lg.actors.brands[1]
    lg.transact(lg.fn.setBrandAttester(own.address), brand)
    groups = [
        (brand.address, [lg.usage(twin, usage_id=OWN_IDS + 1)]),
        (other.address, [lg.usage(twin)]),
    ]

    with lg.reverts("SettlementInvalidAttester", own.address):
        lg.settle_call(groups, signer=own).call()
    with lg.reverts("SettlementWrongAttester", brand.address, lg.actors.attester.address):
        lg.settle_call(groups).call()
