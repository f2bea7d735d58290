"""Bounds on escrow withdrawals and signed actions: a request capped at the escrow, a notice period
of at least MIN_NOTICE_PERIOD enforced by the constructor, a request that lapses CLAIM_WINDOW after
it unlocks, an emergency pause that moves both times later and stops withdrawals, and
``invalidateNonces`` cancelling signatures in flight."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from bridge.chain.deploy import deploy_contract, deploy_libraries
from bridge.chain.toolchain import load_artifact

from .conftest import CLAIM_WINDOW, MAX_NONCE_JUMP, MIN_NOTICE_PERIOD, Chain
from .helpers import DAY, Ledger, Outcome, sign_typed

UNIT = 10**6
DEPOSIT = 1_000 * UNIT
HUGE = 2**128 - 1


# ---------------------------------------------------------------------- helpers


@pytest.fixture
def brand(lg: Ledger) -> LocalAccount:
    return lg.actors.brands[0]


def request(lg: Ledger, brand: LocalAccount, amount: int) -> tuple[int, int]:
    """Requests a withdrawal of ``amount``: its ``(unlocksAt, lapsesAt)``."""
    receipt = lg.transact(lg.fn.requestEscrowWithdrawal(amount), brand)
    unlocks = lg.block_time(receipt) + MIN_NOTICE_PERIOD
    return unlocks, unlocks + CLAIM_WINDOW


def withdraw(lg: Ledger, brand: LocalAccount) -> int:
    """Withdraws the brand's pending escrow: the amount that left (checked against its balance)."""
    before = lg.token_balance(brand.address)
    receipt = lg.transact(lg.fn.withdrawEscrow(), brand)
    [event] = lg.events(receipt, "EscrowWithdrawn")
    assert event["brand"] == brand.address
    assert lg.token_balance(brand.address) - before == event["amount"]
    return int(event["amount"])


def set_paused(lg: Ledger, paused: bool) -> int:
    """Pauses or unpauses the ledger as the pauser: the block time it happened."""
    call = lg.fn.pause() if paused else lg.fn.unpause()
    return lg.block_time(lg.transact(call, lg.actors.pauser))


def ledger_factory(chain: Chain) -> Any:
    """An undeployed ledger, linked to freshly deployed libraries."""
    artifact = load_artifact("TwinLedger")
    libraries = deploy_libraries(chain.w3, artifact, sender=chain.actors.admin.address)
    return chain.w3.eth.contract(abi=artifact.abi, bytecode=artifact.linked_bytecode(libraries))


# ---------------------------------------------------------------------- requests


def test_a_request_is_capped_at_the_escrow(lg: Ledger, brand: LocalAccount) -> None:
    lg.deposit(brand, DEPOSIT)

    receipt = lg.transact(lg.fn.requestEscrowWithdrawal(HUGE), brand)

    unlocks = lg.block_time(receipt) + MIN_NOTICE_PERIOD
    assert lg.events(receipt, "EscrowWithdrawalRequested") == [
        {"brand": brand.address, "amount": DEPOSIT, "unlocksAt": unlocks}
    ]
    assert lg.brand_account(brand) == {
        "escrow": DEPOSIT,
        "debt": 0,
        "debtReserve": 0,
        "pending": DEPOSIT,
        "unlocksAt": unlocks,
        "lapsesAt": unlocks + CLAIM_WINDOW,
    }


def test_a_request_with_nothing_to_take_reverts_zero_amount(
    lg: Ledger, brand: LocalAccount
) -> None:
    with lg.reverts("EscrowZeroAmount"):
        lg.fn.requestEscrowWithdrawal(DEPOSIT).transact({"from": brand.address})
    lg.deposit(brand, DEPOSIT)
    with lg.reverts("EscrowZeroAmount"):
        lg.fn.requestEscrowWithdrawal(0).transact({"from": brand.address})


def test_the_withdrawal_takes_at_most_the_escrow_left(lg: Ledger, brand: LocalAccount) -> None:
    model = lg.actors.models[0]
    twin = lg.mint(model)
    lg.offer_and_accept(twin, lg.terms(brand, {0: 400 * UNIT}), model)
    lg.deposit(brand, DEPOSIT)
    unlocks, _ = request(lg, brand, DEPOSIT)
    receipt = lg.settle([(brand.address, [lg.usage(twin)])])
    assert [o for _, o in lg.outcomes(receipt)] == [Outcome.PAID]

    lg.warp(unlocks)
    assert withdraw(lg, brand) == 600 * UNIT
    assert lg.brand_account(brand)["escrow"] == 0
    assert lg.brand_account(brand)["pending"] == 0


# ---------------------------------------------------------------------- notice and claim window


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ((MIN_NOTICE_PERIOD - 1, DAY, 60, 1, 1, 0), ("LedgerConfigInvalid",)),
        ((0, DAY, 60, 1, 1, 0), ("LedgerConfigInvalid",)),
        ((MIN_NOTICE_PERIOD, 0, 60, 1, 1, 0), ("LedgerConfigInvalid",)),
        ((MIN_NOTICE_PERIOD, DAY, 60, 0, 1, 0), ("SpendingLimitsInvalid", 0, 1)),
        ((MIN_NOTICE_PERIOD, DAY, 60, 2, 1, 0), ("SpendingLimitsInvalid", 2, 1)),
    ],
)
def test_the_constructor_refuses_an_invalid_config(
    lg: Ledger, tester_chain: Chain, config: Sequence[int], error: Sequence[Any]
) -> None:
    factory = ledger_factory(tester_chain)
    authority = lg.fn.authority().call()

    with lg.reverts(*error):
        extension = lg.fn.extension().call()
        factory.constructor(lg.token.address, authority, tuple(config), extension).transact(
            {"from": lg.actors.admin.address}
        )


def test_the_constructor_refuses_an_extension_built_with_other_settings(
    lg: Ledger, tester_chain: Chain
) -> None:
    """The extension runs in the ledger's storage with its own immutables: the ledger refuses one
    deployed with another token, manager or config, and an address without code."""
    factory = ledger_factory(tester_chain)
    authority = lg.fn.authority().call()
    admin = lg.actors.admin.address
    config = tuple(lg.fn.config().call())
    artifact = load_artifact("TwinLedgerExtension")
    libraries = deploy_libraries(tester_chain.w3, artifact, sender=admin)
    other = deploy_contract(
        tester_chain.w3,
        artifact,
        lg.token.address,
        authority,
        (config[0] + 1, *config[1:]),
        sender=admin,
        libraries=libraries,
    )
    codeless = tester_chain.actors.brands[0].address
    for extension in (other.address, codeless):
        with lg.reverts("LedgerExtensionMismatch", extension):
            factory.constructor(lg.token.address, authority, config, extension).transact(
                {"from": admin}
            )
    same = deploy_contract(
        tester_chain.w3, artifact, lg.token.address, authority, config, sender=admin,
        libraries=libraries,
    )  # fmt: skip
    deployed = factory.constructor(lg.token.address, authority, config, same.address).transact(
        {"from": admin}
    )
    assert tester_chain.w3.eth.wait_for_transaction_receipt(deployed)["status"] == 1


def test_the_minimum_notice_is_36_days_and_the_claim_window_7(lg: Ledger) -> None:
    assert lg.fn.MIN_NOTICE_PERIOD().call() == 36 * DAY == 3_110_400
    assert lg.fn.CLAIM_WINDOW().call() == 7 * DAY
    assert lg.fn.config().call()[0] == MIN_NOTICE_PERIOD


def test_withdrawal_is_locked_until_unlock_and_lapses_after_the_claim_window(
    lg: Ledger, brand: LocalAccount
) -> None:
    lg.deposit(brand, DEPOSIT)
    unlocks, lapses = request(lg, brand, DEPOSIT)

    lg.warp(unlocks - 1)
    with lg.reverts("EscrowWithdrawalLocked", brand.address, unlocks):
        lg.fn.withdrawEscrow().transact({"from": brand.address})
    lg.warp(lapses)
    with lg.reverts("EscrowWithdrawalLapsed", brand.address, lapses):
        lg.fn.withdrawEscrow().transact({"from": brand.address})
    assert lg.brand_account(brand)["escrow"] == DEPOSIT


def test_withdrawal_in_the_last_second_of_the_claim_window_pays(
    lg: Ledger, brand: LocalAccount
) -> None:
    lg.deposit(brand, DEPOSIT)
    _, lapses = request(lg, brand, DEPOSIT)

    lg.warp(lapses - 1)
    assert withdraw(lg, brand) == DEPOSIT
    assert lg.brand_account(brand) == {
        "escrow": 0,
        "debt": 0,
        "debtReserve": 0,
        "pending": 0,
        "unlocksAt": 0,
        "lapsesAt": 0,
    }


# ---------------------------------------------------------------------- emergency pause


def test_a_pause_moves_unlock_and_lapse_later_by_its_length(
    lg: Ledger, brand: LocalAccount
) -> None:
    lg.deposit(brand, DEPOSIT)
    unlocks, lapses = request(lg, brand, DEPOSIT)
    lg.advance(DAY)
    paused_at = set_paused(lg, True)
    lg.advance(3 * DAY)
    so_far = lg.now() - paused_at
    assert lg.fn.pausedSeconds().call() == so_far
    assert lg.brand_account(brand)["unlocksAt"] == unlocks + so_far

    length = set_paused(lg, False) - paused_at

    assert lg.fn.pausedSeconds().call() == length
    account = lg.brand_account(brand)
    assert (account["unlocksAt"], account["lapsesAt"]) == (unlocks + length, lapses + length)
    lg.warp(unlocks + length - 1)
    with lg.reverts("EscrowWithdrawalLocked", brand.address, unlocks + length):
        lg.fn.withdrawEscrow().transact({"from": brand.address})
    lg.warp(lapses + length - 1)
    assert withdraw(lg, brand) == DEPOSIT


def test_withdrawal_is_refused_while_the_ledger_is_paused(lg: Ledger, brand: LocalAccount) -> None:
    lg.deposit(brand, DEPOSIT)
    unlocks, _ = request(lg, brand, DEPOSIT)
    lg.warp(unlocks + 10)
    paused_at = set_paused(lg, True)

    with lg.reverts("EnforcedPause"):
        lg.fn.withdrawEscrow().transact({"from": brand.address})

    length = set_paused(lg, False) - paused_at
    assert lg.brand_account(brand)["unlocksAt"] == unlocks + length
    assert withdraw(lg, brand) == DEPOSIT


# ---------------------------------------------------------------------- nonces


def test_invalidate_nonces_cancels_a_signature_in_flight(lg: Ledger) -> None:
    model = lg.actors.models[0]
    twin = lg.mint(model)
    deadline = lg.now() + DAY
    message = {"owner": model.address, "twinId": twin, "paused": True, "nonce": 0}
    signature = sign_typed(model, lg.typed("SetTwinPaused", {**message, "deadline": deadline}))

    receipt = lg.transact(lg.fn.invalidateNonces(3), model)

    assert lg.events(receipt, "NoncesInvalidated") == [{"account": model.address, "newNonce": 3}]
    assert lg.nonce(model) == 3
    with lg.reverts("InvalidAccountNonce", model.address, 3):
        lg.fn.setTwinPausedBySig(model.address, twin, True, 0, deadline, signature).transact(
            {"from": lg.actors.outsider.address}
        )
    assert lg.fn.twinState(twin).call()[1] == 0


@pytest.mark.parametrize(("jump", "accepted"), [(0, False), (1, True), (256, True), (257, False)])
def test_invalidate_nonces_jumps_by_one_to_max_nonce_jump(
    lg: Ledger, jump: int, accepted: bool
) -> None:
    account = lg.actors.models[1]
    lg.transact(lg.fn.invalidateNonces(2), account)

    if accepted:
        lg.transact(lg.fn.invalidateNonces(2 + jump), account)
        assert lg.nonce(account) == 2 + jump
    else:
        with lg.reverts("NonceJumpInvalid", 2, 2 + jump):
            lg.fn.invalidateNonces(2 + jump).transact({"from": account.address})
    assert lg.fn.MAX_NONCE_JUMP().call() == MAX_NONCE_JUMP == 256
