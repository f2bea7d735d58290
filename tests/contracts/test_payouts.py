"""Royalty payouts: distribution between payees and owner, withdraw by payees, payout by anyone."""

from __future__ import annotations

from typing import Any

from eth_account.signers.local import LocalAccount

from .conftest import NOTICE_PERIOD
from .helpers import Ledger

UNIT = 1_000_003  # price per use: an odd amount so that splits round


def earning_twin(
    lg: Ledger, model: LocalAccount, payees: list[tuple[str, int]] | None = None
) -> int:
    """A twin of ``model`` licensed to brand 0 at ``UNIT`` per use, with ``payees``."""
    twin = lg.mint(model)
    lg.offer_and_accept(twin, lg.terms(lg.actors.brands[0], {0: UNIT}), model)
    if payees:
        lg.transact(lg.fn.setPayees(twin, payees), model)
    return twin


def use(lg: Ledger, *twins_quantities: tuple[int, int]) -> Any:
    """Brand 0 deposits what the uses cost and settles them."""
    brand = lg.actors.brands[0]
    lg.deposit(brand, sum(UNIT * q for _, q in twins_quantities))
    lg.advance(2)
    return lg.settle([(brand.address, [lg.usage(t, quantity=q) for t, q in twins_quantities])])


def accrued(lg: Ledger, twin: int) -> int:
    return int(lg.fn.twinState(twin).call()[0])


def claimable(lg: Ledger, account: LocalAccount | str) -> int:
    address = account if isinstance(account, str) else account.address
    return int(lg.fn.claimable(address).call())


def distributed(lg: Ledger, receipt: Any) -> list[tuple[int, str, int]]:
    return [
        (e["twinId"], e["payee"], e["amount"]) for e in lg.events(receipt, "RoyaltiesDistributed")
    ]


def assert_solvent(lg: Ledger) -> None:
    assert lg.fn.totalLiabilities().call() == lg.token_balance(lg.contract.address)


# ---------------------------------------------------------------------- distribute


def test_distribute_splits_royalties_between_payees_and_owner(lg: Ledger) -> None:
    model, (p0, p1, _) = lg.actors.models[0], lg.actors.payees
    twin = earning_twin(lg, model, [(p0.address, 2_500), (p1.address, 1_234)])
    use(lg, (twin, 1))
    assert accrued(lg, twin) == 1_000_003
    liabilities = lg.fn.totalLiabilities().call()

    receipt = lg.transact(lg.fn.distribute([twin]), lg.actors.outsider)

    # 1,000,003 x 25% = 250,000.75 and x 12.34% = 123,400.37, rounded down; the owner gets the rest.
    assert lg.all_events(receipt) == ["RoyaltiesDistributed"] * 3
    assert lg.events(receipt, "RoyaltiesDistributed") == [
        {"twinId": twin, "payee": p0.address, "amount": 250_000},
        {"twinId": twin, "payee": p1.address, "amount": 123_400},
        {"twinId": twin, "payee": model.address, "amount": 626_603},
    ]
    assert accrued(lg, twin) == 0
    assert (claimable(lg, p0), claimable(lg, p1), claimable(lg, model)) == (
        250_000,
        123_400,
        626_603,
    )
    assert lg.fn.totalLiabilities().call() == liabilities
    assert_solvent(lg)


def test_distribute_without_payees_credits_the_owner(lg: Ledger) -> None:
    model = lg.actors.models[1]
    twin = earning_twin(lg, model)
    use(lg, (twin, 3))

    receipt = lg.transact(lg.fn.distribute([twin]), model)

    assert distributed(lg, receipt) == [(twin, model.address, 3 * UNIT)]
    assert claimable(lg, model) == 3 * UNIT


def test_payees_taking_everything_leave_the_owner_only_the_rounding(lg: Ledger) -> None:
    model, (p0, p1, p2) = lg.actors.models[0], lg.actors.payees
    twin = earning_twin(lg, model, [(p0.address, 5_000), (p1.address, 4_999), (p2.address, 1)])
    use(lg, (twin, 1))

    receipt = lg.transact(lg.fn.distribute([twin]), lg.actors.outsider)

    # 50% = 500,001 (of 500,001.5); 49.99% = 499,901 (of 499,901.4997); 0.01% = 100 (of 100.0003).
    assert distributed(lg, receipt) == [
        (twin, p0.address, 500_001),
        (twin, p1.address, 499_901),
        (twin, p2.address, 100),
        (twin, model.address, 1),
    ]


def test_shares_rounding_to_zero_are_skipped(lg: Ledger) -> None:
    model, p0, p1 = lg.actors.models[0], lg.actors.payees[0], lg.actors.payees[1]
    twin = lg.mint(model)
    lg.offer_and_accept(twin, lg.terms(lg.actors.brands[0], {0: 9_999}), model)
    lg.transact(lg.fn.setPayees(twin, [(p0.address, 1), (p1.address, 10_000 - 1)]), model)
    lg.deposit(lg.actors.brands[0], 9_999)
    lg.advance(2)
    lg.settle([(lg.actors.brands[0].address, [lg.usage(twin)])])

    receipt = lg.transact(lg.fn.distribute([twin]), lg.actors.outsider)

    # 9,999 x 0.01% rounds to 0: no event for p0; 9,999 x 99.99% = 9,998.0001 -> 9,998.
    assert distributed(lg, receipt) == [(twin, p1.address, 9_998), (twin, model.address, 1)]
    assert claimable(lg, p0) == 0


def test_distribute_handles_several_twins_in_the_given_order(lg: Ledger) -> None:
    m0, m1, p0 = lg.actors.models[0], lg.actors.models[1], lg.actors.payees[0]
    twin_a = earning_twin(lg, m0, [(p0.address, 1_000)])
    twin_b = earning_twin(lg, m1)
    twin_c = earning_twin(lg, m1)  # never used
    use(lg, (twin_a, 1), (twin_b, 2))

    receipt = lg.transact(lg.fn.distribute([twin_b, twin_c, twin_a, twin_b, 999]), m0)

    assert distributed(lg, receipt) == [
        (twin_b, m1.address, 2 * UNIT),
        (twin_a, p0.address, 100_000),
        (twin_a, m0.address, UNIT - 100_000),
    ]
    assert claimable(lg, p0) == 100_000
    assert claimable(lg, m0) == UNIT - 100_000
    assert claimable(lg, m1) == 2 * UNIT


def test_distribute_with_nothing_accrued_emits_nothing(lg: Ledger) -> None:
    twin = earning_twin(lg, lg.actors.models[0], [(lg.actors.payees[0].address, 100)])

    receipt = lg.transact(lg.fn.distribute([twin, twin + 1]), lg.actors.outsider)
    empty = lg.transact(lg.fn.distribute([]), lg.actors.outsider)

    assert lg.all_events(receipt) == []
    assert lg.all_events(empty) == []


def test_royalties_accumulate_over_several_distributions(lg: Ledger) -> None:
    model, p0 = lg.actors.models[0], lg.actors.payees[0]
    twin = earning_twin(lg, model, [(p0.address, 3_000)])
    use(lg, (twin, 1))
    lg.transact(lg.fn.distribute([twin]), lg.actors.outsider)
    use(lg, (twin, 2))
    lg.transact(lg.fn.distribute([twin]), lg.actors.outsider)

    # 300,000 (of 300,000.9) then 600,001 (of 600,001.8).
    assert claimable(lg, p0) == 900_001
    assert claimable(lg, model) == 3 * UNIT - 900_001


def test_new_payees_apply_only_to_royalties_accrued_after_the_change(lg: Ledger) -> None:
    model, p0, p1 = lg.actors.models[0], lg.actors.payees[0], lg.actors.payees[1]
    twin = earning_twin(lg, model, [(p0.address, 5_000)])
    use(lg, (twin, 1))

    changed = lg.transact(lg.fn.setPayees(twin, [(p1.address, 5_000)]), model)
    assert distributed(lg, changed) == [
        (twin, p0.address, 500_001),
        (twin, model.address, 500_002),
    ]
    use(lg, (twin, 1))
    lg.transact(lg.fn.distribute([twin]), lg.actors.outsider)

    assert (claimable(lg, p0), claimable(lg, p1), claimable(lg, model)) == (
        500_001,
        500_001,
        1_000_004,
    )


def test_royalties_accrued_before_a_transfer_stay_with_the_previous_owner(lg: Ledger) -> None:
    seller, buyer = lg.actors.models[0], lg.actors.models[1]
    twin = earning_twin(lg, seller)
    use(lg, (twin, 1))

    receipt = lg.transact(lg.fn.transferFrom(seller.address, buyer.address, twin), seller)
    assert distributed(lg, receipt) == [(twin, seller.address, UNIT)]
    use(lg, (twin, 2))
    lg.transact(lg.fn.distribute([twin]), lg.actors.outsider)

    assert claimable(lg, seller) == UNIT
    assert claimable(lg, buyer) == 2 * UNIT


# ---------------------------------------------------------------------- withdraw and payout


def test_payee_withdraws_everything_owed_across_twins(lg: Ledger) -> None:
    m0, m1, payee = lg.actors.models[0], lg.actors.models[1], lg.actors.payees[2]
    twin_a = earning_twin(lg, m0, [(payee.address, 2_000)])
    twin_b = earning_twin(lg, m1, [(payee.address, 4_000)])
    use(lg, (twin_a, 1), (twin_b, 1))
    lg.transact(lg.fn.distribute([twin_a]), lg.actors.outsider)  # 200,000 credited already
    balance = lg.token_balance(payee.address)
    liabilities = lg.fn.totalLiabilities().call()

    receipt = lg.transact(lg.fn.withdraw([twin_b]), payee)

    assert lg.all_events(receipt) == ["RoyaltiesDistributed", "RoyaltiesDistributed", "PayeePaid"]
    assert distributed(lg, receipt) == [
        (twin_b, payee.address, 400_001),
        (twin_b, m1.address, UNIT - 400_001),
    ]
    assert lg.events(receipt, "PayeePaid") == [
        {"payee": payee.address, "caller": payee.address, "amount": 600_001}
    ]
    assert lg.token_balance(payee.address) == balance + 600_001
    assert claimable(lg, payee) == 0
    assert claimable(lg, m1) == UNIT - 400_001
    assert lg.fn.totalLiabilities().call() == liabilities - 600_001
    assert_solvent(lg)


def test_owner_withdraws_with_an_empty_twin_list_after_distribution(lg: Ledger) -> None:
    model = lg.actors.models[2]
    twin = earning_twin(lg, model)
    use(lg, (twin, 2))
    lg.transact(lg.fn.distribute([twin]), lg.actors.outsider)
    balance = lg.token_balance(model.address)

    receipt = lg.transact(lg.fn.withdraw([]), model)

    assert lg.all_events(receipt) == ["PayeePaid"]
    assert lg.events(receipt, "PayeePaid") == [
        {"payee": model.address, "caller": model.address, "amount": 2 * UNIT}
    ]
    assert lg.token_balance(model.address) == balance + 2 * UNIT


def test_anyone_can_pay_out_a_payee_and_the_funds_go_to_the_payee(lg: Ledger) -> None:
    model, payee, caller = lg.actors.models[0], lg.actors.payees[0], lg.actors.outsider
    twin = earning_twin(lg, model, [(payee.address, 1_500)])
    use(lg, (twin, 1))
    payee_balance = lg.token_balance(payee.address)
    caller_balance = lg.token_balance(caller.address)

    receipt = lg.transact(lg.fn.payout(payee.address, [twin]), caller)

    assert distributed(lg, receipt) == [
        (twin, payee.address, 150_000),
        (twin, model.address, UNIT - 150_000),
    ]
    assert lg.events(receipt, "PayeePaid") == [
        {"payee": payee.address, "caller": caller.address, "amount": 150_000}
    ]
    assert lg.token_balance(payee.address) == payee_balance + 150_000
    assert lg.token_balance(caller.address) == caller_balance
    assert claimable(lg, payee) == 0
    assert claimable(lg, model) == UNIT - 150_000
    assert_solvent(lg)


def test_payout_with_nothing_owed_reverts_payout_nothing_to_pay(lg: Ledger) -> None:
    model, payee = lg.actors.models[0], lg.actors.payees[0]
    twin = earning_twin(lg, model, [(payee.address, 1_000)])

    with lg.reverts("PayoutNothingToPay", payee.address):
        lg.fn.payout(payee.address, [twin]).transact({"from": lg.actors.outsider.address})
    with lg.reverts("PayoutNothingToPay", lg.actors.outsider.address):
        lg.fn.withdraw([twin]).transact({"from": lg.actors.outsider.address})

    use(lg, (twin, 1))
    lg.transact(lg.fn.payout(payee.address, [twin]), lg.actors.outsider)
    with lg.reverts("PayoutNothingToPay", payee.address):
        lg.fn.payout(payee.address, [twin]).transact({"from": lg.actors.outsider.address})
    with lg.reverts("PayoutNothingToPay", payee.address):
        lg.fn.withdraw([twin]).transact({"from": payee.address})
    # The successful payout distributed the twin: the owner's share waits, credited.
    assert claimable(lg, model) == UNIT - 100_000


def test_payout_reverting_for_nothing_owed_keeps_the_twin_undistributed(lg: Ledger) -> None:
    model, stranger = lg.actors.models[0], lg.actors.payees[1]
    twin = earning_twin(lg, model)
    use(lg, (twin, 1))

    with lg.reverts("PayoutNothingToPay", stranger.address):
        lg.fn.payout(stranger.address, [twin]).transact({"from": stranger.address})

    assert accrued(lg, twin) == UNIT
    assert claimable(lg, model) == 0


def test_distribution_withdraw_and_payout_work_while_paused(lg: Ledger) -> None:
    model, payee = lg.actors.models[0], lg.actors.payees[0]
    twin = earning_twin(lg, model, [(payee.address, 5_000)])
    use(lg, (twin, 2))
    lg.transact(lg.fn.pause(), lg.actors.pauser)
    assert lg.fn.paused().call() is True

    distributed_receipt = lg.transact(lg.fn.distribute([twin]), lg.actors.outsider)
    withdrawn = lg.transact(lg.fn.withdraw([]), model)
    paid = lg.transact(lg.fn.payout(payee.address, []), lg.actors.outsider)

    assert distributed(lg, distributed_receipt) == [
        (twin, payee.address, UNIT),
        (twin, model.address, UNIT),
    ]
    assert lg.events(withdrawn, "PayeePaid")[0]["amount"] == UNIT
    assert lg.events(paid, "PayeePaid") == [
        {"payee": payee.address, "caller": lg.actors.outsider.address, "amount": UNIT}
    ]
    assert_solvent(lg)


def test_liabilities_match_the_ledgers_token_balance_after_every_step(lg: Ledger) -> None:
    brand_0, brand_1 = lg.actors.brands[0], lg.actors.brands[1]
    m0, m1 = lg.actors.models[0], lg.actors.models[1]
    p0, p1 = lg.actors.payees[0], lg.actors.payees[1]
    twin_a = earning_twin(lg, m0, [(p0.address, 3_333), (p1.address, 1_111)])
    twin_b = earning_twin(lg, m1, [(p1.address, 7_777)])
    lg.offer_and_accept(twin_a, lg.terms(brand_1, {0: 777_777}), m0)
    lg.advance(2)
    total_paid_out = 0

    def step(call: Any, sender: LocalAccount) -> Any:
        nonlocal total_paid_out
        receipt = lg.transact(call, sender)
        total_paid_out += sum(e["amount"] for e in lg.events(receipt, "PayeePaid"))
        total_paid_out += sum(e["amount"] for e in lg.events(receipt, "EscrowWithdrawn"))
        assert_solvent(lg)
        return receipt

    def settle(groups: list[tuple[str, list[int]]]) -> None:
        batch, signature = lg.sign_batch(groups)
        step(lg.fn.settle(batch, lg.actors.attester.address, signature), lg.actors.outsider)

    step(lg.fn.deposit(brand_0.address, 5_000_000), brand_0)
    settle([(brand_0.address, [lg.usage(twin_a, quantity=2), lg.usage(twin_b)])])
    settle([(brand_1.address, [lg.usage(twin_a, quantity=3)])])  # all debt
    step(lg.fn.distribute([twin_a, twin_b]), lg.actors.outsider)
    step(lg.fn.withdraw([]), p1)
    step(lg.fn.deposit(brand_1.address, 1_000_000), brand_1)  # repays 1,000,000 of 2,333,331
    step(lg.fn.payout(m0.address, [twin_a]), lg.actors.outsider)
    step(lg.fn.requestEscrowWithdrawal(10**9), brand_0)
    settle([(brand_0.address, [lg.usage(twin_b, quantity=1)])])
    step(lg.fn.deposit(brand_1.address, 2_000_000), brand_1)
    lg.advance(NOTICE_PERIOD)
    step(lg.fn.pause(), lg.actors.pauser)
    with lg.reverts("EnforcedPause"):  # escrow withdrawals wait for the pause to end
        lg.transact(lg.fn.withdrawEscrow(), brand_0)
    for account in (p0, p1, m0, m1):
        step(lg.fn.withdraw([twin_a, twin_b]), account)
    step(lg.fn.unpause(), lg.actors.pauser)
    step(lg.fn.withdrawEscrow(), brand_0)

    # Everything brand 0 deposited was spent or withdrawn; brand 1 keeps its unspent escrow.
    remaining = lg.brand_account(brand_1)["escrow"]
    assert remaining == 3_000_000 - 3 * 777_777
    assert lg.fn.totalLiabilities().call() == remaining == lg.token_balance(lg.contract.address)
    assert total_paid_out == 5_000_000 + 3_000_000 - remaining
