"""The hold window: a settlement's royalties are held (two buckets per twin, by period of the hold
window) and distributable only once they mature; each settled group is recorded for voids and
disputes; a hold window of 0 keeps the ledger as it was."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bridge.chain.deploy import deploy_contract, deploy_libraries
from bridge.chain.toolchain import load_artifact

from .conftest import TEST_CONFIG, Chain
from .helpers import Ledger, Outcome, decode_result
from .holds import (
    HOLD,
    PRICE,
    aligned,
    commitment,
    held,
    hold_world,
    licensed,
    settled_group,
    split,
)
from .test_escrow_bounds import ledger_factory

NOTHING_HELD = {
    "matured": 0,
    "earlier": 0,
    "earlierMaturesAt": 0,
    "later": 0,
    "laterMaturesAt": 0,
    "openDisputes": 0,
}


@pytest.fixture
def hl(deploy_world: Callable[..., Ledger], lg: Ledger) -> Ledger:
    """A ledger with a one-hour hold window; brand 0 has 100 uses' escrow."""
    world = hold_world(deploy_world, lg.actors.payees[2])
    world.deposit(world.actors.brands[0], 100 * PRICE)
    return world


def _liabilities_held(lg: Ledger) -> None:
    """The ledger holds exactly what it owes."""
    assert lg.fn.totalLiabilities().call() == lg.token_balance(lg.contract.address)


def test_config_reports_the_hold_window(hl: Ledger, lg: Ledger) -> None:
    assert hl.fn.config().call() == (*TEST_CONFIG[:5], HOLD)
    assert lg.fn.config().call() == TEST_CONFIG
    assert hl.role("ARBITER_ROLE") == 4


def test_the_ledger_refuses_an_extension_with_another_hold_window(
    hl: Ledger, tester_chain: Chain
) -> None:
    admin = hl.actors.admin.address
    authority = hl.fn.authority().call()
    artifact = load_artifact("TwinLedgerExtension")
    libraries = deploy_libraries(tester_chain.w3, artifact, sender=admin)
    other = deploy_contract(
        tester_chain.w3,
        artifact,
        hl.token.address,
        authority,
        (*TEST_CONFIG[:5], HOLD + 1),
        sender=admin,
        libraries=libraries,
    )
    factory = ledger_factory(tester_chain)
    with hl.reverts("LedgerExtensionMismatch", other.address):
        factory.constructor(
            hl.token.address, authority, (*TEST_CONFIG[:5], HOLD), other.address
        ).transact({"from": admin})


def test_settled_royalties_are_held_until_two_periods_after_their_own(hl: Ledger) -> None:
    brand, owner = hl.actors.brands[0], hl.actors.models[0]
    twin = licensed(hl)
    at = aligned(hl, offset=100)
    hl.warp(at)
    hl.settle([(brand.address, [hl.usage(twin, used_at=at - 50, quantity=3)])])
    matures = (at // HOLD + 2) * HOLD

    assert hl.fn.twinState(twin).call()[0] == 0
    assert held(hl, twin) == {**NOTHING_HELD, "later": 3 * PRICE, "laterMaturesAt": matures}
    _liabilities_held(hl)

    hl.warp(matures - 1)
    receipt = hl.transact(hl.fn.distribute([twin]), hl.actors.outsider)
    assert hl.events(receipt, "RoyaltiesDistributed") == []
    assert hl.fn.claimable(owner.address).call() == 0

    hl.warp(matures + 1)
    assert held(hl, twin) == {**NOTHING_HELD, "matured": 3 * PRICE}
    receipt = hl.transact(hl.fn.withdraw([twin]), owner)
    assert hl.events(receipt, "RoyaltiesDistributed") == [
        {"twinId": twin, "payee": owner.address, "amount": 3 * PRICE}
    ]
    assert held(hl, twin) == NOTHING_HELD
    _liabilities_held(hl)


def test_two_buckets_follow_the_periods_and_a_later_settlement_accrues_what_matured(
    hl: Ledger,
) -> None:
    brand = hl.actors.brands[0]
    twin = licensed(hl)
    start = aligned(hl, offset=10)
    k = start // HOLD
    hl.warp(start)
    hl.settle([(brand.address, [hl.usage(twin, used_at=start - 1)])])
    hl.warp(start + HOLD)
    hl.settle([(brand.address, [hl.usage(twin, used_at=start + HOLD - 1, quantity=2)])])
    assert held(hl, twin) == {
        **NOTHING_HELD,
        "earlier": PRICE,
        "earlierMaturesAt": (k + 2) * HOLD,
        "later": 2 * PRICE,
        "laterMaturesAt": (k + 3) * HOLD,
    }

    hl.warp((k + 2) * HOLD + 1)  # views read the latest block: (k + 2) * HOLD
    assert held(hl, twin) == {
        **NOTHING_HELD,
        "matured": PRICE,
        "earlier": 2 * PRICE,
        "earlierMaturesAt": (k + 3) * HOLD,
    }

    hl.warp((k + 3) * HOLD + 5)
    hl.settle([(brand.address, [hl.usage(twin, used_at=(k + 3) * HOLD, quantity=4)])])
    assert hl.fn.twinState(twin).call()[0] == 3 * PRICE
    assert held(hl, twin) == {**NOTHING_HELD, "later": 4 * PRICE, "laterMaturesAt": (k + 5) * HOLD}
    _liabilities_held(hl)


def test_each_group_is_recorded_with_its_results_splits_and_settlement_time(hl: Ledger) -> None:
    brand = hl.actors.brands[0]
    twin = licensed(hl)
    unlicensed = hl.mint(hl.actors.models[1])
    usages = [hl.usage(twin, quantity=2), hl.usage(unlicensed)]
    receipt = hl.settle([(brand.address, usages)])
    group = settled_group(hl, receipt, brand.address)

    assert [outcome for _, outcome in map(decode_result, group.results)] == [
        Outcome.PAID,
        Outcome.NO_LICENSE,
    ]
    assert group.splits == [split(2 * PRICE), 0]
    assert hl.fn.groupRecord(group.digest, brand.address).call() == [
        commitment(group.results, group.splits),
        group.settled_at,
        group.settled_at + HOLD,
    ]
    assert hl.fn.groupRecord(group.digest, hl.actors.brands[1].address).call() == [
        b"\x00" * 32,
        0,
        0,
    ]


def test_a_split_records_the_debt_and_its_entry_of_a_usage_escrow_could_not_cover(
    hl: Ledger,
) -> None:
    brand = hl.actors.brands[1]
    hl.deposit(brand, PRICE // 2)
    twin = licensed(hl, brand=1)
    receipt = hl.settle([(brand.address, [hl.usage(twin), hl.usage(twin)])])
    group = settled_group(hl, receipt, brand.address)

    assert group.splits == [split(PRICE // 2, PRICE // 2, 0), split(0, PRICE, 0)]
    assert hl.fn.groupRecord(group.digest, brand.address).call()[0] == commitment(
        group.results, group.splits
    )
    assert held(hl, twin)["later"] == PRICE // 2


def test_a_batch_may_not_hold_two_groups_of_one_brand_with_a_hold_window(
    hl: Ledger, lg: Ledger
) -> None:
    for ledger in (hl, lg):
        brand = ledger.actors.brands[0]
        twin = licensed(ledger)
        groups = [(brand.address, [ledger.usage(twin)]), (brand.address, [ledger.usage(twin)])]
        batch, _ = ledger.sign_batch(groups)
        digest = bytes(ledger.fn.hashUsageBatch(batch).call())
        if ledger is hl:
            with ledger.reverts("SettlementDuplicateGroup", digest, brand.address):
                ledger.settle_call(groups).call()
        else:  # without a hold window nothing is recorded and the batch settles as before
            ledger.deposit(brand, 2 * PRICE)
            assert [o for _, o in ledger.outcomes(ledger.settle(groups))] == [Outcome.PAID] * 2


def test_without_a_hold_window_royalties_accrue_at_once_and_nothing_is_recorded(
    lg: Ledger,
) -> None:
    brand = lg.actors.brands[0]
    lg.deposit(brand, 10 * PRICE)
    twin = licensed(lg)
    receipt = lg.settle([(brand.address, [lg.usage(twin, quantity=2)])])
    digest = bytes(lg.events(receipt, "UsagesSettled")[0]["batchDigest"])

    assert lg.fn.twinState(twin).call()[0] == 2 * PRICE
    assert held(lg, twin) == NOTHING_HELD
    assert lg.fn.groupRecord(digest, brand.address).call() == [b"\x00" * 32, 0, 0]
    proof = (digest, brand.address, 0, [], [])
    with lg.reverts("GroupUnknown", digest, brand.address):
        lg.transact(lg.fn.voidUsage(proof, 1), brand)
    with lg.reverts("HoldWindowDisabled"):
        lg.transact(lg.fn.openDispute(twin, 0, proof, b"\x01" * 32), lg.actors.models[0])


def test_held_royalties_travel_with_the_twin(hl: Ledger) -> None:
    brand, seller, buyer = hl.actors.brands[0], hl.actors.models[0], hl.actors.models[1]
    twin = licensed(hl)
    at = aligned(hl, offset=1)
    hl.warp(at)
    hl.settle([(brand.address, [hl.usage(twin, used_at=at - 1)])])

    receipt = hl.transact(hl.fn.transferFrom(seller.address, buyer.address, twin), seller)
    assert hl.events(receipt, "RoyaltiesDistributed") == []
    assert held(hl, twin)["later"] == PRICE

    hl.warp((at // HOLD + 2) * HOLD)
    with hl.reverts("PayoutNothingToPay", seller.address):
        hl.transact(hl.fn.withdraw([twin]), seller)
    paid = hl.transact(hl.fn.withdraw([twin]), buyer)
    assert hl.events(paid, "PayeePaid") == [
        {"payee": buyer.address, "caller": buyer.address, "amount": PRICE}
    ]
    _liabilities_held(hl)
