"""Disputes: within the hold window the twin's owner disputes a brand, a group or a usage (held
royalties of the twin stop maturing), and the arbiter (ARBITER_ROLE, behind the role delays)
releases, voids or charges."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from .conftest import ARBITER_ROLE
from .helpers import Ledger
from .holds import (
    BRAND,
    GROUP,
    HOLD,
    PRICE,
    REPORTED_AFTER_REVOCATION,
    USAGE,
    Group,
    aligned,
    held,
    hold_world,
    licensed,
    settled_group,
)

REASON = b"\x0f" * 32


@pytest.fixture
def arbiter(lg: Ledger) -> LocalAccount:
    return lg.actors.payees[2]


@pytest.fixture
def hl(deploy_world: Callable[..., Ledger], arbiter: LocalAccount) -> Ledger:
    world = hold_world(deploy_world, arbiter)
    world.deposit(world.actors.brands[0], 100 * PRICE)
    return world


def _settled(hl: Ledger, *, offset: int = 100) -> tuple[int, Group]:
    """Twin of model 0, and brand 0's group of two paid usages (2 and 1 uses) settled at the
    start of a hold period plus ``offset``."""
    brand = hl.actors.brands[0]
    twin = licensed(hl)
    at = aligned(hl, offset=offset)
    hl.warp(at)
    usages = [hl.usage(twin, used_at=at - 1, quantity=2), hl.usage(twin, used_at=at - 1)]
    return twin, settled_group(hl, hl.settle([(brand.address, usages)]), brand.address)


def _open(hl: Ledger, twin: int, kind: int, target: Any, sender: Any = None) -> Any:
    return hl.transact(hl.fn.openDispute(twin, kind, target, REASON), sender or hl.actors.models[0])


def test_the_owner_opens_a_usage_dispute_and_the_held_royalties_freeze(hl: Ledger) -> None:
    brand = hl.actors.brands[0]
    twin, group = _settled(hl)
    receipt = _open(hl, twin, USAGE, group.proof(1))

    assert hl.events(receipt, "DisputeOpened") == [
        {
            "id": 1,
            "twinId": twin,
            "brand": brand.address,
            "kind": USAGE,
            "batchDigest": group.digest,
            "usageId": group.usage_id(1),
            "reasonHash": REASON,
        }
    ]
    assert list(hl.fn.disputeOf(1).call()) == [
        brand.address,
        twin,
        USAGE,
        True,
        group.digest,
        group.usage_id(1),
        1,
        hl.block_time(receipt),
    ]
    matures = (group.settled_at // HOLD + 2) * HOLD
    hl.warp(matures + 5 * HOLD)
    assert held(hl, twin)["openDisputes"] == 1
    assert held(hl, twin)["matured"] == 0
    receipt = hl.transact(hl.fn.distribute([twin]), hl.actors.outsider)
    assert hl.events(receipt, "RoyaltiesDistributed") == []
    assert hl.fn.twinState(twin).call()[0] == 0
    assert held(hl, twin)["earlier"] == 3 * PRICE


def test_only_the_owner_or_its_operator_disputes_within_the_window(hl: Ledger) -> None:
    brand = hl.actors.brands[0]
    twin, group = _settled(hl)
    for caller in (brand, hl.actors.models[1], hl.actors.outsider):
        with hl.reverts("ERC721InsufficientApproval", caller.address, twin):
            _open(hl, twin, USAGE, group.proof(0), caller)
    other_twin = licensed(hl, model=1)
    with hl.reverts("DisputeInvalidTarget", other_twin, USAGE):
        _open(hl, other_twin, USAGE, group.proof(0), hl.actors.models[1])
    with hl.reverts("DisputeInvalidTarget", twin, BRAND):
        _open(hl, twin, BRAND, group.proof(0, brand="0x" + "00" * 20))

    closes = group.settled_at + HOLD
    hl.warp(closes - 1)
    _open(hl, twin, GROUP, group.proof(0))
    assert hl.next_time() == closes
    with hl.reverts("HoldWindowClosed", group.digest, brand.address, closes):
        _open(hl, twin, USAGE, group.proof(1))
    # A dispute of the brand itself names no group and has no window.
    opened = _open(hl, twin, BRAND, group.proof(0))
    assert hl.events(opened, "DisputeOpened")[0]["batchDigest"] == b"\x00" * 32
    assert held(hl, twin)["openDisputes"] == 2


def test_the_arbiter_releases_and_the_funds_mature_within_a_window(
    hl: Ledger, arbiter: LocalAccount
) -> None:
    owner = hl.actors.models[0]
    twin, group = _settled(hl)
    _open(hl, twin, GROUP, group.proof(0))
    k = group.settled_at // HOLD
    hl.warp((k + 4) * HOLD + 30)

    with hl.reverts("AccessManagedUnauthorized", owner.address):
        hl.transact(hl.fn.releaseDispute(1), owner)
    released = hl.transact(hl.fn.releaseDispute(1), arbiter)

    assert hl.events(released, "DisputeReleased") == [{"id": 1, "twinId": twin}]
    assert held(hl, twin) == {
        "matured": 0,
        "earlier": 3 * PRICE,
        "earlierMaturesAt": (k + 5) * HOLD,
        "later": 0,
        "laterMaturesAt": 0,
        "openDisputes": 0,
    }
    with hl.reverts("DisputeNotOpen", 1):
        hl.transact(hl.fn.releaseDispute(1), arbiter)
    hl.warp((k + 5) * HOLD)
    paid = hl.transact(hl.fn.withdraw([twin]), owner)
    assert hl.events(paid, "PayeePaid")[0]["amount"] == 3 * PRICE


def test_the_arbiter_voids_the_disputed_usage_after_the_window(
    hl: Ledger, arbiter: LocalAccount
) -> None:
    brand = hl.actors.brands[0]
    twin, group = _settled(hl)
    _open(hl, twin, USAGE, group.proof(0))
    escrow = hl.brand_account(brand)["escrow"]
    hl.warp(group.settled_at + 3 * HOLD)

    with hl.reverts("DisputeTargetMismatch", 1):
        hl.transact(hl.fn.resolveDisputeByVoid(1, group.proof(1), 2), arbiter)
    receipt = hl.transact(hl.fn.resolveDisputeByVoid(1, group.proof(0), 2), arbiter)

    assert hl.all_events(receipt) == ["UsageVoided", "DisputeVoided"]
    assert hl.events(receipt, "DisputeVoided") == [
        {"id": 1, "twinId": twin, "usageId": group.usage_id(0)}
    ]
    assert hl.events(receipt, "UsageVoided")[0]["refunded"] == 2 * PRICE
    assert hl.brand_account(brand)["escrow"] == escrow + 2 * PRICE
    assert held(hl, twin)["openDisputes"] == 0
    assert hl.fn.totalLiabilities().call() == hl.token_balance(hl.contract.address)


def test_the_arbiter_charges_the_brand_from_escrow_and_the_rest_as_debt(
    hl: Ledger, arbiter: LocalAccount
) -> None:
    brand = hl.actors.brands[0]
    twin, group = _settled(hl)
    _open(hl, twin, BRAND, group.proof(0))
    escrow = hl.brand_account(brand)["escrow"]
    with hl.reverts("DisputeTargetMismatch", 1):  # a brand dispute names no usage to void
        hl.transact(hl.fn.resolveDisputeByVoid(1, group.proof(0), 2), arbiter)

    receipt = hl.transact(hl.fn.resolveDisputeByCharge(1, escrow + 5), arbiter)

    assert hl.events(receipt, "DisputeCharged") == [
        {"id": 1, "twinId": twin, "brand": brand.address, "amount": escrow + 5, "toDebt": 5}
    ]
    assert hl.events(receipt, "DebtRecorded")[0]["amount"] == 5
    account = hl.brand_account(brand)
    assert (account["escrow"], account["debt"]) == (0, 5)
    assert hl.fn.twinState(twin).call()[0] == escrow
    assert hl.fn.totalLiabilities().call() == hl.token_balance(hl.contract.address)


def test_a_use_before_a_revocation_reported_after_it_can_be_disputed_and_voided(
    hl: Ledger, arbiter: LocalAccount
) -> None:
    brand, owner = hl.actors.brands[0], hl.actors.models[0]
    twin = licensed(hl)
    used_at = hl.now()
    hl.advance(60)
    revoked = hl.revoke(twin, brand, owner)
    revoked_at = hl.events(revoked, "LicenseRevoked")[0]["revokedAt"]
    hl.advance(60)
    receipt = hl.settle([(brand.address, [hl.usage(twin, used_at=used_at)])])
    group = settled_group(hl, receipt, brand.address)
    assert used_at < revoked_at < group.settled_at  # the data the arbiter decides on
    assert hl.fn.groupRecord(group.digest, brand.address).call()[1] == group.settled_at

    opened = _open(hl, twin, REPORTED_AFTER_REVOCATION, group.proof(0))
    assert hl.events(opened, "DisputeOpened")[0]["kind"] == REPORTED_AFTER_REVOCATION
    voided = hl.transact(hl.fn.resolveDisputeByVoid(1, group.proof(0), 3), arbiter)
    assert hl.events(voided, "UsageVoided")[0]["refunded"] == PRICE


def test_an_arbiter_with_an_execution_delay_must_schedule_and_wait(
    hl: Ledger, arbiter: LocalAccount
) -> None:
    slow = hl.actors.payees[1]
    hl.grant_role(ARBITER_ROLE, slow, delay=HOLD)
    twin, group = _settled(hl)
    _open(hl, twin, GROUP, group.proof(0))
    data = hl.contract.encode_abi("releaseDispute", [1])
    operation = bytes(hl.mgr.hashOperation(slow.address, hl.contract.address, data).call())
    with hl.reverts("AccessManagerNotScheduled", operation):
        hl.transact(hl.fn.releaseDispute(1), slow)

    scheduled = hl.transact(hl.mgr.schedule(hl.contract.address, data, 0), slow)
    when = hl.block_time(scheduled) + HOLD
    hl.warp(when - 1)
    with hl.reverts("AccessManagerNotReady", operation):
        hl.transact(hl.fn.releaseDispute(1), slow)
    hl.warp(when + 1)
    released = hl.transact(hl.fn.releaseDispute(1), slow)
    assert hl.events(released, "DisputeReleased") == [{"id": 1, "twinId": twin}]


def test_a_new_arbiter_counts_only_after_the_grant_delay(hl: Ledger) -> None:
    newcomer = hl.actors.payees[1]
    twin, group = _settled(hl, offset=10)
    _open(hl, twin, GROUP, group.proof(0))
    hl.transact(hl.mgr.setGrantDelay(ARBITER_ROLE, HOLD), hl.actors.admin)
    hl.advance(5 * 24 * 3600 + 1)  # the manager's minSetback before a new grant delay applies
    granted = hl.grant_role(ARBITER_ROLE, newcomer)
    since = hl.manager_events(granted, "RoleGranted")[0]["since"]
    assert since == hl.block_time(granted) + HOLD
    assert hl.has_role(ARBITER_ROLE, newcomer) is False
    with hl.reverts("AccessManagedUnauthorized", newcomer.address):
        hl.transact(hl.fn.releaseDispute(1), newcomer)
    hl.warp(since)
    hl.transact(hl.fn.releaseDispute(1), newcomer)
