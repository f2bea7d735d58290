"""Re-entrancy: a malicious payment token calls back into the ledger on every transfer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from web3.contract import Contract

from bridge.chain.deploy import deploy_contract
from bridge.chain.toolchain import load_artifact

from .conftest import BRAND_FUNDS, NOTICE_PERIOD, ROLE_IDS, Chain, deploy_system
from .helpers import Ledger, Outcome, decode_revert

PRICE = 1_000_000


@pytest.fixture(scope="module")
def reentrant_deployment(
    session_chain: Chain,
) -> Iterator[tuple[Contract, Contract, Contract]]:
    """A second ledger paying in ``ReentrantToken`` (unarmed), with roles and funded brands.

    Deployed once for the module and removed (the chain reverted) when the module is done."""
    base = session_chain.snapshot()
    w3, actors = session_chain.w3, session_chain.actors
    admin = actors.admin.address
    token = deploy_contract(w3, load_artifact("ReentrantToken"), sender=admin)
    system = deploy_system(
        w3,
        admin=admin,
        token=token,
        members={role: [getattr(actors, name).address] for name, role in ROLE_IDS.items()},
    )
    ledger = system.ledger
    lg = Ledger(w3, ledger, token, actors, system.manager)
    for brand in actors.brands:
        lg.transact(token.functions.mint(brand.address, BRAND_FUNDS), brand)
        lg.transact(token.functions.approve(ledger.address, 2**256 - 1), brand)
    yield ledger, token, system.manager
    session_chain.revert(base)


@pytest.fixture
def rlg(
    session_chain: Chain, reentrant_deployment: tuple[Contract, Contract, Contract]
) -> Iterator[Ledger]:
    """A driver for the re-entrant-token ledger, reverted to its deployment state after the test."""
    snapshot_id = session_chain.snapshot()
    ledger, token, manager = reentrant_deployment
    assert ledger.functions.paymentToken().call() == token.address
    yield Ledger(session_chain.w3, ledger, token, session_chain.actors, manager)
    session_chain.revert(snapshot_id)


def arm(lg: Ledger, function: str, *args: Any) -> None:
    payload = lg.contract.encode_abi(function, args=list(args))
    lg.transact(lg.token.functions.arm(lg.contract.address, payload), lg.actors.outsider)


def assert_blocked(lg: Ledger, attempts: int = 1) -> None:
    """The armed call was made ``attempts`` times and every time failed on the re-entrancy guard."""
    token = lg.token.functions
    assert token.attempts().call() == attempts
    assert token.attackSucceeded().call() is False
    last = bytes(token.lastRevert().call())
    assert decode_revert(lg.error_abi, last) == ("ReentrancyGuardReentrantCall", ())


def assert_solvent(lg: Ledger) -> None:
    assert lg.fn.totalLiabilities().call() == lg.token_balance(lg.contract.address)


def earning_twin(lg: Ledger, payees: list[tuple[str, int]], uses: int) -> int:
    """A twin of model 0 with ``payees``, used ``uses`` times by brand 0 at ``PRICE``."""
    model, brand = lg.actors.models[0], lg.actors.brands[0]
    twin = lg.mint(model)
    lg.offer_and_accept(twin, lg.terms(brand, {0: PRICE}), model)
    if payees:
        lg.transact(lg.fn.setPayees(twin, payees), model)
    lg.deposit(brand, uses * PRICE)
    lg.advance(2)
    receipt = lg.settle([(brand.address, [lg.usage(twin, quantity=uses)])])
    assert [o for _, o in lg.outcomes(receipt)] == [Outcome.PAID]
    return twin


# ---------------------------------------------------------------------- payouts


def test_reentrant_withdraw_during_a_payout_is_blocked(rlg: Ledger) -> None:
    model, token = rlg.actors.models[0], rlg.token
    # The token itself is a payee, so an unguarded re-entrant withdraw would pay it.
    twin = earning_twin(rlg, [(token.address, 5_000)], uses=2)
    arm(rlg, "withdraw", [twin])

    receipt = rlg.transact(rlg.fn.withdraw([twin]), model)

    assert_blocked(rlg)
    assert rlg.events(receipt, "PayeePaid") == [
        {"payee": model.address, "caller": model.address, "amount": PRICE}
    ]
    assert rlg.token_balance(model.address) == PRICE
    assert rlg.token_balance(token.address) == 0
    assert rlg.fn.claimable(token.address).call() == PRICE
    assert rlg.fn.totalLiabilities().call() == PRICE
    assert_solvent(rlg)


def test_reentrant_payout_of_the_same_payee_is_blocked_no_double_payout(rlg: Ledger) -> None:
    model = rlg.actors.models[0]
    twin = earning_twin(rlg, [], uses=3)
    arm(rlg, "payout", model.address, [twin])

    receipt = rlg.transact(rlg.fn.payout(model.address, [twin]), rlg.actors.outsider)

    assert_blocked(rlg)
    assert [e["amount"] for e in rlg.events(receipt, "PayeePaid")] == [3 * PRICE]
    assert rlg.token_balance(model.address) == 3 * PRICE
    assert rlg.fn.totalLiabilities().call() == 0
    assert_solvent(rlg)


def test_reentrant_payout_of_another_payee_is_blocked(rlg: Ledger) -> None:
    model, payee = rlg.actors.models[0], rlg.actors.payees[0]
    twin = earning_twin(rlg, [(payee.address, 2_500)], uses=4)
    rlg.transact(rlg.fn.distribute([twin]), rlg.actors.outsider)
    arm(rlg, "payout", payee.address, [])

    rlg.transact(rlg.fn.withdraw([]), model)

    assert_blocked(rlg)
    assert rlg.token_balance(model.address) == 3 * PRICE
    assert rlg.token_balance(payee.address) == 0
    assert rlg.fn.claimable(payee.address).call() == PRICE
    assert_solvent(rlg)


def test_reentrant_distribute_only_moves_royalties_between_accounts(rlg: Ledger) -> None:
    model, payee = rlg.actors.models[0], rlg.actors.payees[0]
    twin_a = earning_twin(rlg, [], uses=1)
    twin_b = earning_twin(rlg, [(payee.address, 5_000)], uses=2)
    rlg.transact(rlg.fn.distribute([twin_a]), rlg.actors.outsider)
    # distribute is not guarded: re-entering it is harmless, it only credits royalties.
    arm(rlg, "distribute", [twin_b])

    receipt = rlg.transact(rlg.fn.withdraw([]), model)

    token = rlg.token.functions
    assert (token.attempts().call(), token.attackSucceeded().call()) == (1, True)
    assert rlg.events(receipt, "PayeePaid")[0]["amount"] == PRICE
    assert [(e["payee"], e["amount"]) for e in rlg.events(receipt, "RoyaltiesDistributed")] == [
        (payee.address, PRICE),
        (model.address, PRICE),
    ]
    assert rlg.token_balance(model.address) == PRICE
    assert rlg.fn.claimable(model.address).call() == PRICE
    assert rlg.fn.claimable(payee.address).call() == PRICE
    assert rlg.fn.totalLiabilities().call() == 2 * PRICE
    assert_solvent(rlg)


# ---------------------------------------------------------------------- escrow


def test_reentrant_withdraw_escrow_during_an_escrow_withdrawal_is_blocked(rlg: Ledger) -> None:
    brand = rlg.actors.brands[0]
    rlg.deposit(brand, 5 * PRICE)
    rlg.transact(rlg.fn.requestEscrowWithdrawal(2 * PRICE), brand)
    rlg.advance(NOTICE_PERIOD)
    arm(rlg, "withdrawEscrow")

    receipt = rlg.transact(rlg.fn.withdrawEscrow(), brand)

    assert_blocked(rlg)
    assert rlg.events(receipt, "EscrowWithdrawn") == [{"brand": brand.address, "amount": 2 * PRICE}]
    assert rlg.token_balance(brand.address) == BRAND_FUNDS - 3 * PRICE
    assert rlg.brand_account(brand)["escrow"] == 3 * PRICE
    assert rlg.fn.totalLiabilities().call() == 3 * PRICE
    assert_solvent(rlg)


def test_reentrant_deposit_during_a_deposit_is_blocked(rlg: Ledger) -> None:
    brand, other = rlg.actors.brands[0], rlg.actors.brands[1]
    arm(rlg, "deposit", other.address, PRICE)

    receipt = rlg.deposit(brand, 2 * PRICE)

    assert_blocked(rlg)
    assert [e["brand"] for e in rlg.events(receipt, "EscrowDeposited")] == [brand.address]
    assert rlg.brand_account(brand)["escrow"] == 2 * PRICE
    assert rlg.brand_account(other)["escrow"] == 0
    assert rlg.fn.totalLiabilities().call() == 2 * PRICE
    assert_solvent(rlg)


def test_reentrant_repay_debt_during_a_deposit_is_blocked(rlg: Ledger) -> None:
    brand, model = rlg.actors.brands[1], rlg.actors.models[1]
    twin = rlg.mint(model)
    rlg.offer_and_accept(twin, rlg.terms(brand, {0: 1_000}), model)
    rlg.advance(2)
    rlg.settle([(brand.address, [rlg.usage(twin)])])
    assert rlg.brand_account(brand)["debt"] == 1_000
    arm(rlg, "repayDebt", brand.address, 16)

    receipt = rlg.deposit(brand, 5_000)

    assert_blocked(rlg)
    assert [e["amount"] for e in rlg.events(receipt, "DebtRepaid")] == [1_000]
    assert rlg.brand_account(brand)["escrow"] == 4_000
    assert rlg.fn.twinState(twin).call()[0] == 1_000
    assert_solvent(rlg)


# ---------------------------------------------------------------------- settlement


def test_reentrant_settle_during_a_deposit_is_blocked(rlg: Ledger) -> None:
    brand, model = rlg.actors.brands[0], rlg.actors.models[0]
    twin = rlg.mint(model)
    rlg.offer_and_accept(twin, rlg.terms(brand, {0: PRICE}), model)
    rlg.deposit(brand, PRICE)
    rlg.advance(2)
    batch, signature = rlg.sign_batch([(brand.address, [rlg.usage(twin, usage_id=5)])])
    arm(rlg, "settle", batch, rlg.actors.attester.address, signature)

    rlg.deposit(brand, PRICE)

    assert_blocked(rlg)
    assert rlg.fn.isUsageProcessed(brand.address, 5).call() is False
    assert rlg.brand_account(brand)["escrow"] == 2 * PRICE
    # The batch itself was valid: settled directly, it pays once (the settle makes no transfer).
    receipt = rlg.transact(
        rlg.fn.settle(batch, rlg.actors.attester.address, signature), rlg.actors.outsider
    )
    assert rlg.events(receipt, "UsagesSettled")[0]["paid"] == PRICE
    assert rlg.token.functions.attempts().call() == 1
    assert rlg.brand_account(brand)["escrow"] == PRICE
    assert_solvent(rlg)


@pytest.mark.parametrize(
    "function", ["withdraw", "payout", "withdrawEscrow", "deposit", "repayDebt", "settle"]
)
def test_every_guarded_entry_point_is_blocked_during_a_payout(rlg: Ledger, function: str) -> None:
    brand, model = rlg.actors.brands[0], rlg.actors.models[0]
    twin = earning_twin(rlg, [], uses=2)
    batch, signature = rlg.sign_batch([(brand.address, [rlg.usage(twin, usage_id=99)])])
    args: dict[str, tuple[Any, ...]] = {
        "withdraw": ([twin],),
        "payout": (model.address, [twin]),
        "withdrawEscrow": (),
        "deposit": (brand.address, 1),
        "repayDebt": (brand.address, 1),
        "settle": (batch, rlg.actors.attester.address, signature),
    }
    arm(rlg, function, *args[function])

    receipt = rlg.transact(rlg.fn.payout(model.address, [twin]), rlg.actors.outsider)

    assert_blocked(rlg)
    assert [e["amount"] for e in rlg.events(receipt, "PayeePaid")] == [2 * PRICE]
    assert rlg.token_balance(model.address) == 2 * PRICE
    assert rlg.fn.isUsageProcessed(brand.address, 99).call() is False
    assert rlg.fn.totalLiabilities().call() == 0
    assert_solvent(rlg)
