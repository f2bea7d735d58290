"""Brand corrections: within the hold window the brand voids a paid usage of its own (directly or
by a relayed EIP-712 signature), proved against the group's record; the funded part returns from
the twin's held royalties to its escrow and the unpaid debt part is cancelled."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from bridge.domain.eip712 import DOMAIN_TYPE, domain

from .helpers import Ledger, sign_typed
from .holds import HOLD, PRICE, Group, held, hold_world, licensed, settled_group, split

REASON = 7
VOID_USAGE = {
    "VoidUsage": [
        {"name": "brand", "type": "address"},
        {"name": "batchDigest", "type": "bytes32"},
        {"name": "usageId", "type": "uint256"},
        {"name": "reason", "type": "uint8"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ]
}


@pytest.fixture
def hl(deploy_world: Callable[..., Ledger], lg: Ledger) -> Ledger:
    world = hold_world(deploy_world, lg.actors.payees[2])
    world.deposit(world.actors.brands[0], 100 * PRICE)
    return world


def _settle_two(hl: Ledger) -> tuple[int, Group]:
    brand = hl.actors.brands[0]
    twin = licensed(hl)
    receipt = hl.settle([(brand.address, [hl.usage(twin, quantity=2), hl.usage(twin)])])
    return twin, settled_group(hl, receipt, brand.address)


def test_the_brand_voids_a_paid_usage_within_the_window(hl: Ledger) -> None:
    brand = hl.actors.brands[0]
    twin, group = _settle_two(hl)
    escrow = hl.brand_account(brand)["escrow"]

    receipt = hl.transact(hl.fn.voidUsage(group.proof(0), REASON), brand)

    assert hl.events(receipt, "UsageVoided") == [
        {
            "batchDigest": group.digest,
            "brand": brand.address,
            "usageId": group.usage_id(0),
            "twinId": twin,
            "refunded": 2 * PRICE,
            "debtCancelled": 0,
            "reason": REASON,
        }
    ]
    assert hl.all_events(receipt) == ["UsageVoided"]
    assert hl.brand_account(brand)["escrow"] == escrow + 2 * PRICE
    assert held(hl, twin)["later"] == PRICE
    assert hl.fn.isUsageVoided(group.digest, brand.address, 0).call() is True
    assert hl.fn.isUsageVoided(group.digest, brand.address, 1).call() is False
    assert hl.fn.totalLiabilities().call() == hl.token_balance(hl.contract.address)


def test_the_window_closes_at_settlement_plus_the_hold_window(hl: Ledger) -> None:
    brand = hl.actors.brands[0]
    _, group = _settle_two(hl)
    closes = group.settled_at + HOLD

    hl.warp(closes - 1)
    hl.transact(hl.fn.voidUsage(group.proof(0), REASON), brand)
    assert hl.next_time() == closes
    with hl.reverts("HoldWindowClosed", group.digest, brand.address, closes):
        hl.transact(hl.fn.voidUsage(group.proof(1), REASON), brand)


def test_a_usage_is_voided_once(hl: Ledger) -> None:
    brand = hl.actors.brands[0]
    _, group = _settle_two(hl)
    hl.transact(hl.fn.voidUsage(group.proof(1), REASON), brand)
    with hl.reverts("UsageAlreadyVoided", group.digest, brand.address, group.usage_id(1)):
        hl.transact(hl.fn.voidUsage(group.proof(1), REASON), brand)


def test_only_the_brand_voids_its_usage(hl: Ledger) -> None:
    brand, stranger = hl.actors.brands[0], hl.actors.brands[1]
    _, group = _settle_two(hl)
    for caller in (stranger, hl.actors.models[0], hl.actors.outsider):
        with hl.reverts("VoidUnauthorized", caller.address, brand.address):
            hl.transact(hl.fn.voidUsage(group.proof(0), REASON), caller)
    # Naming itself as the brand, a stranger has no group in that batch.
    with hl.reverts("GroupUnknown", group.digest, stranger.address):
        hl.transact(hl.fn.voidUsage(group.proof(0, brand=stranger.address), REASON), stranger)


def test_calldata_that_differs_from_the_group_record_is_refused(hl: Ledger) -> None:
    brand = hl.actors.brands[0]
    twin = licensed(hl)
    unlicensed = hl.mint(hl.actors.models[1])
    receipt = hl.settle([(brand.address, [hl.usage(twin), hl.usage(unlicensed)])])
    group = settled_group(hl, receipt, brand.address)
    richer = [split(10 * PRICE), 0]
    other_results = [group.results[0] + (1 << 56), group.results[1]]  # quantity + 1

    for proof in (
        group.proof(0, splits=richer),
        group.proof(0, results=other_results),
        group.proof(0, splits=group.splits[:1]),
    ):
        with hl.reverts("GroupProofMismatch", group.digest, brand.address):
            hl.transact(hl.fn.voidUsage(proof, REASON), brand)
    for index in (1, 2):  # not paid; out of range
        with hl.reverts("GroupUsageNotPaid", group.digest, brand.address, index):
            hl.transact(hl.fn.voidUsage(group.proof(index), REASON), brand)
    assert held(hl, twin)["later"] == PRICE


def test_a_void_of_a_usage_partly_in_debt_refunds_the_funded_part_and_cancels_the_debt(
    hl: Ledger,
) -> None:
    brand = hl.actors.brands[1]
    hl.deposit(brand, PRICE // 4)
    twin = licensed(hl, brand=1)
    receipt = hl.settle([(brand.address, [hl.usage(twin, quantity=2)])])
    group = settled_group(hl, receipt, brand.address)
    assert group.splits == [split(PRICE // 4, 2 * PRICE - PRICE // 4, 0)]
    assert hl.brand_account(brand)["debt"] == 2 * PRICE - PRICE // 4

    voided = hl.transact(hl.fn.voidUsage(group.proof(0), REASON), brand)

    assert hl.events(voided, "DebtCancelled") == [
        {
            "brand": brand.address,
            "twinId": twin,
            "amount": 2 * PRICE - PRICE // 4,
            "entry": 0,
            "reserveReturned": 0,
        }
    ]
    [event] = hl.events(voided, "UsageVoided")
    assert (event["refunded"], event["debtCancelled"]) == (PRICE // 4, 2 * PRICE - PRICE // 4)
    account = hl.brand_account(brand)
    assert (account["escrow"], account["debt"], account["debtReserve"]) == (PRICE // 4, 0, 0)
    assert hl.fn.debtEntry(brand.address, 0).call() == [twin, 0]
    assert held(hl, twin)["later"] == 0
    # A later deposit repays nothing to the twin: the debt is gone.
    deposited = hl.deposit(brand, PRICE)
    assert hl.events(deposited, "DebtRepaid") == []
    assert hl.events(deposited, "EscrowDeposited")[0]["toDebt"] == 0
    assert hl.fn.totalLiabilities().call() == hl.token_balance(hl.contract.address)


def _signed_void(
    hl: Ledger, group: Group, index: int, *, nonce: int = 0, signer: LocalAccount | None = None
) -> Any:
    """``voidUsageBySig`` of usage ``index``, signed by ``signer`` (the brand by default)."""
    brand = hl.actors.brands[0]
    deadline = hl.now() + 3600
    message = {
        "brand": brand.address,
        "batchDigest": group.digest,
        "usageId": group.usage_id(index),
        "reason": REASON,
        "nonce": nonce,
        "deadline": deadline,
    }
    full = {
        "types": {"EIP712Domain": DOMAIN_TYPE, **VOID_USAGE},
        "primaryType": "VoidUsage",
        "domain": domain(hl.w3.eth.chain_id, hl.contract.address),
        "message": message,
    }
    signature = sign_typed(signer or brand, full)
    return hl.fn.voidUsageBySig(group.proof(index), REASON, nonce, deadline, signature)


def test_a_signed_void_is_relayed_by_anyone_once(hl: Ledger) -> None:
    brand = hl.actors.brands[0]
    twin, group = _settle_two(hl)

    receipt = hl.transact(_signed_void(hl, group, 1), hl.actors.outsider)

    assert hl.all_events(receipt) == ["SignedActionUsed", "UsageVoided"]
    assert hl.events(receipt, "UsageVoided")[0]["refunded"] == PRICE
    with hl.reverts("InvalidAccountNonce", brand.address, 1):
        hl.transact(_signed_void(hl, group, 1), hl.actors.outsider)
    with hl.reverts("TwinInvalidSigner", brand.address):
        forged = _signed_void(hl, group, 0, nonce=1, signer=hl.actors.brands[1])
        hl.transact(forged, hl.actors.outsider)
    assert held(hl, twin)["later"] == 2 * PRICE


def test_distributed_royalties_cannot_be_voided(hl: Ledger) -> None:
    """Funds mature no earlier than the window closes: while a void is possible they are held, and
    once they can be distributed the window is closed."""
    brand, owner = hl.actors.brands[0], hl.actors.models[0]
    twin, group = _settle_two(hl)
    matures = (group.settled_at // HOLD + 2) * HOLD
    assert held(hl, twin)["laterMaturesAt"] == matures >= group.settled_at + HOLD

    hl.warp(group.settled_at + HOLD)
    with hl.reverts("HoldWindowClosed", group.digest, brand.address, group.settled_at + HOLD):
        hl.transact(hl.fn.voidUsage(group.proof(0), REASON), brand)
    hl.warp(matures)
    paid = hl.transact(hl.fn.withdraw([twin]), owner)
    assert hl.events(paid, "PayeePaid")[0]["amount"] == 3 * PRICE
