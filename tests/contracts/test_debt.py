"""Escrow shortfalls: paid uses become debt entries, repaid first (FIFO) from later deposits."""

from __future__ import annotations

from typing import Any

from eth_account.signers.local import LocalAccount

from .helpers import Ledger, Outcome

A_PRICE = 1_000_000
B_PRICE = 700_000


def licensed_twin(lg: Ledger, model: LocalAccount, brand: LocalAccount, price: int) -> int:
    twin = lg.mint(model)
    lg.offer_and_accept(twin, lg.terms(brand, {0: price}), model)
    return twin


def two_twins(lg: Ledger, *brands: LocalAccount) -> tuple[int, int]:
    """Twins A (price 1,000,000) and B (price 700,000) licensed to each of ``brands``."""
    model_a, model_b = lg.actors.models[0], lg.actors.models[1]
    twin_a, twin_b = lg.mint(model_a), lg.mint(model_b)
    for brand in brands:
        lg.offer_and_accept(twin_a, lg.terms(brand, {0: A_PRICE}), model_a)
        lg.offer_and_accept(twin_b, lg.terms(brand, {0: B_PRICE}), model_b)
    lg.advance(2)
    return twin_a, twin_b


def accrued(lg: Ledger, twin: int) -> int:
    return int(lg.fn.twinState(twin).call()[0])


def queue(lg: Ledger, brand: LocalAccount) -> tuple[int, int]:
    head, length = lg.fn.debtQueue(brand.address).call()
    return int(head), int(length)


def entries(lg: Ledger, brand: LocalAccount) -> list[tuple[int, int]]:
    """Every debt entry of ``brand`` (paid ones included) as ``(twin id, unpaid amount)``."""
    _, length = queue(lg, brand)
    return [tuple(lg.fn.debtEntry(brand.address, i).call()) for i in range(length)]  # type: ignore[misc]


def recorded(lg: Ledger, receipt: Any) -> list[tuple[int, int, int]]:
    return [(e["twinId"], e["amount"], e["entry"]) for e in lg.events(receipt, "DebtRecorded")]


def repaid(lg: Ledger, receipt: Any) -> list[tuple[int, int, int]]:
    return [(e["twinId"], e["amount"], e["entry"]) for e in lg.events(receipt, "DebtRepaid")]


def assert_solvent(lg: Ledger) -> None:
    assert lg.fn.totalLiabilities().call() == lg.token_balance(lg.contract.address)


# ---------------------------------------------------------------------- recording


def test_shortfall_is_paid_in_full_and_recorded_as_debt(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    twin_a, _ = two_twins(lg, brand)
    lg.deposit(brand, 1_500_000)

    receipt = lg.settle([(brand.address, [lg.usage(twin_a, quantity=2)])])

    assert lg.all_events(receipt) == ["DebtRecorded", "UsagesSettled"]
    assert lg.events(receipt, "DebtRecorded") == [
        {"brand": brand.address, "twinId": twin_a, "amount": 500_000, "entry": 0}
    ]
    [(_, outcome)] = lg.outcomes(receipt)
    assert outcome == Outcome.PAID
    assert lg.events(receipt, "UsagesSettled")[0]["paid"] == 2_000_000
    assert lg.brand_account(brand) == {
        "escrow": 0,
        "debt": 500_000,
        "debtReserve": 0,
        "pending": 0,
        "unlocksAt": 0,
        "lapsesAt": 0,
    }
    assert queue(lg, brand) == (0, 1)
    assert entries(lg, brand) == [(twin_a, 500_000)]
    assert accrued(lg, twin_a) == 1_500_000
    assert lg.fn.totalLiabilities().call() == 1_500_000
    assert_solvent(lg)


def test_escrow_running_out_mid_group_splits_the_use_between_escrow_and_debt(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    twin_a, twin_b = two_twins(lg, brand)
    lg.deposit(brand, 2_000_000)

    receipt = lg.settle(
        [(brand.address, [lg.usage(twin_b), lg.usage(twin_a), lg.usage(twin_a), lg.usage(twin_b)])]
    )

    assert [o for _, o in lg.outcomes(receipt)] == [Outcome.PAID] * 4
    assert lg.events(receipt, "UsagesSettled")[0]["paid"] == 3_400_000
    # 700,000 + 1,000,000 from escrow, then 300,000 of the second A use; the rest is owed.
    assert recorded(lg, receipt) == [(twin_a, 700_000, 0), (twin_b, 700_000, 1)]
    assert accrued(lg, twin_a) == 1_300_000
    assert accrued(lg, twin_b) == 700_000
    assert lg.brand_account(brand)["escrow"] == 0
    assert lg.brand_account(brand)["debt"] == 1_400_000
    assert entries(lg, brand) == [(twin_a, 700_000), (twin_b, 700_000)]


def test_brand_without_escrow_owes_every_paid_use(lg: Ledger) -> None:
    brand = lg.actors.brands[2]
    twin_a, _ = two_twins(lg, brand)

    receipt = lg.settle([(brand.address, [lg.usage(twin_a, quantity=3)])])

    assert recorded(lg, receipt) == [(twin_a, 3_000_000, 0)]
    assert lg.brand_account(brand)["debt"] == 3_000_000
    assert accrued(lg, twin_a) == 0
    assert lg.fn.totalLiabilities().call() == 0


def test_rejected_uses_create_no_debt(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    twin_a, _ = two_twins(lg, brand)

    receipt = lg.settle(
        [(brand.address, [lg.usage(twin_a, quantity=0), lg.usage(twin_a, usage_type=3)])]
    )

    assert [o for _, o in lg.outcomes(receipt)] == [
        Outcome.ZERO_QUANTITY,
        Outcome.USAGE_TYPE_NOT_LICENSED,
    ]
    assert lg.all_events(receipt) == ["UsagesSettled"]
    assert queue(lg, brand) == (0, 0)
    assert lg.brand_account(brand)["debt"] == 0


def test_consecutive_shortfalls_for_one_twin_merge_into_one_entry(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    twin_a, twin_b = two_twins(lg, brand)

    first = lg.settle(
        [
            (
                brand.address,
                [
                    lg.usage(twin_a),
                    lg.usage(twin_a, quantity=2),
                    lg.usage(twin_b),
                    lg.usage(twin_b),
                    lg.usage(twin_a),
                ],
            )
        ]
    )
    # The last entry is A's: A's next shortfall (next batch, next group) still merges into it.
    second = lg.settle(
        [
            (brand.address, [lg.usage(twin_a)]),
            (brand.address, [lg.usage(twin_a), lg.usage(twin_b)]),
        ]
    )

    assert recorded(lg, first) == [
        (twin_a, 1_000_000, 0),
        (twin_a, 2_000_000, 0),
        (twin_b, 700_000, 1),
        (twin_b, 700_000, 1),
        (twin_a, 1_000_000, 2),
    ]
    assert recorded(lg, second) == [
        (twin_a, 1_000_000, 2),
        (twin_a, 1_000_000, 2),
        (twin_b, 700_000, 3),
    ]
    assert [e["brand"] for e in lg.events(second, "DebtRecorded")] == [brand.address] * 3
    assert queue(lg, brand) == (0, 4)
    assert entries(lg, brand) == [
        (twin_a, 3_000_000),
        (twin_b, 1_400_000),
        (twin_a, 3_000_000),
        (twin_b, 700_000),
    ]
    assert lg.brand_account(brand)["debt"] == 8_100_000


def test_debts_of_different_brands_are_kept_apart(lg: Ledger) -> None:
    brand_0, brand_1 = lg.actors.brands[0], lg.actors.brands[1]
    twin_a, _ = two_twins(lg, brand_0, brand_1)

    receipt = lg.settle(
        [(brand_0.address, [lg.usage(twin_a)]), (brand_1.address, [lg.usage(twin_a, quantity=2)])]
    )

    assert [(e["brand"], e["amount"], e["entry"]) for e in lg.events(receipt, "DebtRecorded")] == [
        (brand_0.address, 1_000_000, 0),
        (brand_1.address, 2_000_000, 0),
    ]
    assert entries(lg, brand_0) == [(twin_a, 1_000_000)]
    assert entries(lg, brand_1) == [(twin_a, 2_000_000)]
    lg.deposit(brand_1, 5_000_000)
    assert lg.brand_account(brand_0)["debt"] == 1_000_000
    assert lg.brand_account(brand_1)["debt"] == 0


# ---------------------------------------------------------------------- repayment


def make_debt(lg: Ledger, brand: LocalAccount) -> tuple[int, int]:
    """Debt entries [A: 500,000, B: 700,000] with zero escrow left."""
    twin_a, twin_b = two_twins(lg, brand)
    lg.deposit(brand, 500_000)
    receipt = lg.settle([(brand.address, [lg.usage(twin_a), lg.usage(twin_b)])])
    assert recorded(lg, receipt) == [(twin_a, 500_000, 0), (twin_b, 700_000, 1)]
    return twin_a, twin_b


def test_shortfall_becomes_debt_paid_first_from_next_deposit(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    twin_a, twin_b = make_debt(lg, brand)

    receipt = lg.deposit(brand, 2_000_000)

    assert lg.all_events(receipt) == ["EscrowDeposited", "DebtRepaid", "DebtRepaid"]
    assert lg.events(receipt, "EscrowDeposited") == [
        {"brand": brand.address, "from": brand.address, "amount": 2_000_000, "toDebt": 1_200_000}
    ]
    assert lg.events(receipt, "DebtRepaid") == [
        {"brand": brand.address, "twinId": twin_a, "amount": 500_000, "entry": 0},
        {"brand": brand.address, "twinId": twin_b, "amount": 700_000, "entry": 1},
    ]
    assert lg.brand_account(brand) == {
        "escrow": 800_000,
        "debt": 0,
        "debtReserve": 0,
        "pending": 0,
        "unlocksAt": 0,
        "lapsesAt": 0,
    }
    assert queue(lg, brand) == (2, 2)
    assert entries(lg, brand) == [(twin_a, 0), (twin_b, 0)]
    assert accrued(lg, twin_a) == 1_000_000
    assert accrued(lg, twin_b) == 700_000
    assert lg.fn.totalLiabilities().call() == 2_500_000
    assert_solvent(lg)


def test_debt_is_repaid_whoever_deposits(lg: Ledger) -> None:
    brand, sponsor = lg.actors.brands[0], lg.actors.outsider
    twin_a, _ = make_debt(lg, brand)
    lg.transact(lg.token.functions.mint(sponsor.address, 300_000), sponsor)
    lg.transact(lg.token.functions.approve(lg.contract.address, 300_000), sponsor)

    receipt = lg.transact(lg.fn.deposit(brand.address, 300_000), sponsor)

    assert lg.events(receipt, "EscrowDeposited") == [
        {"brand": brand.address, "from": sponsor.address, "amount": 300_000, "toDebt": 300_000}
    ]
    assert repaid(lg, receipt) == [(twin_a, 300_000, 0)]
    assert lg.brand_account(brand)["debt"] == 900_000


def test_partial_repayment_leaves_the_head_on_a_partly_paid_entry(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    twin_a, twin_b = make_debt(lg, brand)

    partial = lg.deposit(brand, 600_000)

    assert lg.events(partial, "EscrowDeposited")[0]["toDebt"] == 600_000
    assert repaid(lg, partial) == [(twin_a, 500_000, 0), (twin_b, 100_000, 1)]
    assert queue(lg, brand) == (1, 2)
    assert entries(lg, brand) == [(twin_a, 0), (twin_b, 600_000)]
    account = lg.brand_account(brand)
    assert (account["escrow"], account["debt"], account["debtReserve"]) == (0, 600_000, 0)
    assert accrued(lg, twin_b) == 100_000

    rest = lg.deposit(brand, 1_000_000)

    assert lg.events(rest, "EscrowDeposited")[0]["toDebt"] == 600_000
    assert repaid(lg, rest) == [(twin_b, 600_000, 1)]
    assert queue(lg, brand) == (2, 2)
    account = lg.brand_account(brand)
    assert (account["escrow"], account["debt"], account["debtReserve"]) == (400_000, 0, 0)
    assert accrued(lg, twin_b) == 700_000
    assert_solvent(lg)


def test_shortfall_for_the_twin_of_a_partly_paid_last_entry_merges_into_it(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    twin_a, twin_b = make_debt(lg, brand)
    lg.deposit(brand, 600_000)  # entry 1 (B) is left with 600,000

    receipt = lg.settle([(brand.address, [lg.usage(twin_b), lg.usage(twin_a)])])

    assert recorded(lg, receipt) == [(twin_b, 700_000, 1), (twin_a, 1_000_000, 2)]
    assert queue(lg, brand) == (1, 3)
    assert entries(lg, brand)[1:] == [(twin_b, 1_300_000), (twin_a, 1_000_000)]
    assert lg.brand_account(brand)["debt"] == 2_300_000


def test_shortfall_after_full_repayment_opens_a_new_entry(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    twin_a, _ = two_twins(lg, brand)
    lg.settle([(brand.address, [lg.usage(twin_a)])])
    lg.deposit(brand, 1_000_000)  # exactly the debt: entry 0 paid, escrow stays empty
    assert queue(lg, brand) == (1, 1)

    receipt = lg.settle([(brand.address, [lg.usage(twin_a)])])

    assert recorded(lg, receipt) == [(twin_a, 1_000_000, 1)]
    assert queue(lg, brand) == (1, 2)
    assert entries(lg, brand) == [(twin_a, 0), (twin_a, 1_000_000)]


def test_debt_beyond_the_auto_repay_limit_is_repaid_by_anyone(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    assert lg.fn.AUTO_REPAY_ENTRIES().call() == 16
    model_a, model_b = lg.actors.models[0], lg.actors.models[1]
    twin_a = licensed_twin(lg, model_a, brand, 1_000)
    twin_b = licensed_twin(lg, model_b, brand, 2_000)
    lg.advance(2)
    twins = [twin_a, twin_b] * 10
    settled = lg.settle([(brand.address, [lg.usage(t) for t in twins])])
    price = {twin_a: 1_000, twin_b: 2_000}
    assert recorded(lg, settled) == [(t, price[t], i) for i, t in enumerate(twins)]
    assert lg.brand_account(brand)["debt"] == 30_000

    deposited = lg.deposit(brand, 100_000)

    assert lg.events(deposited, "EscrowDeposited")[0]["toDebt"] == 30_000
    assert repaid(lg, deposited) == [(t, price[t], i) for i, t in enumerate(twins[:16])]
    account = lg.brand_account(brand)
    assert (account["escrow"], account["debt"], account["debtReserve"]) == (70_000, 6_000, 6_000)
    assert queue(lg, brand) == (16, 20)
    assert_solvent(lg)

    some = lg.transact(lg.fn.repayDebt(brand.address, 2), lg.actors.outsider)

    assert lg.all_events(some) == ["DebtRepaid", "DebtRepaid"]
    assert lg.events(some, "DebtRepaid")[0]["brand"] == brand.address
    assert repaid(lg, some) == [(twin_a, 1_000, 16), (twin_b, 2_000, 17)]
    assert queue(lg, brand) == (18, 20)
    account = lg.brand_account(brand)
    assert (account["escrow"], account["debt"], account["debtReserve"]) == (70_000, 3_000, 3_000)

    rest = lg.transact(lg.fn.repayDebt(brand.address, 100), lg.actors.models[3])

    assert repaid(lg, rest) == [(twin_a, 1_000, 18), (twin_b, 2_000, 19)]
    assert queue(lg, brand) == (20, 20)
    account = lg.brand_account(brand)
    assert (account["escrow"], account["debt"], account["debtReserve"]) == (70_000, 0, 0)
    assert accrued(lg, twin_a) == 10_000
    assert accrued(lg, twin_b) == 20_000
    assert all(amount == 0 for _, amount in entries(lg, brand))
    assert lg.fn.totalLiabilities().call() == 100_000
    assert_solvent(lg)

    nothing = lg.transact(lg.fn.repayDebt(brand.address, 100), lg.actors.outsider)
    assert lg.all_events(nothing) == []


def test_deposit_tops_up_the_reserve_while_entries_wait(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    twin_a = licensed_twin(lg, lg.actors.models[0], brand, 1_000)
    twin_b = licensed_twin(lg, lg.actors.models[1], brand, 2_000)
    lg.advance(2)
    lg.settle([(brand.address, [lg.usage(t) for t in [twin_a, twin_b] * 10])])
    lg.deposit(brand, 30_000)  # exactly the debt: 16 entries paid, 6,000 reserved, escrow empty
    assert lg.brand_account(brand)["debtReserve"] == 6_000

    # New shortfalls add entries behind the waiting ones; the next deposit covers only them.
    lg.settle([(brand.address, [lg.usage(twin_a, quantity=5)])])
    assert lg.brand_account(brand)["debt"] == 11_000
    receipt = lg.deposit(brand, 8_000)

    assert lg.events(receipt, "EscrowDeposited")[0]["toDebt"] == 5_000
    assert repaid(lg, receipt) == [
        (twin_a, 1_000, 16),
        (twin_b, 2_000, 17),
        (twin_a, 1_000, 18),
        (twin_b, 2_000, 19),
        (twin_a, 5_000, 20),
    ]
    account = lg.brand_account(brand)
    assert (account["escrow"], account["debt"], account["debtReserve"]) == (3_000, 0, 0)
    assert queue(lg, brand) == (21, 21)
    assert_solvent(lg)


def test_repay_debt_without_a_reserve_changes_nothing(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    twin_a, twin_b = make_debt(lg, brand)
    before = (lg.brand_account(brand), entries(lg, brand), queue(lg, brand))

    receipt = lg.transact(lg.fn.repayDebt(brand.address, 16), lg.actors.outsider)

    assert lg.all_events(receipt) == []
    assert (lg.brand_account(brand), entries(lg, brand), queue(lg, brand)) == before
    assert accrued(lg, twin_a) == 500_000
    assert accrued(lg, twin_b) == 0


def test_repay_debt_works_while_paused(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    twin_a = licensed_twin(lg, lg.actors.models[0], brand, 1_000)
    twin_b = licensed_twin(lg, lg.actors.models[1], brand, 2_000)
    lg.advance(2)
    lg.settle([(brand.address, [lg.usage(t) for t in [twin_a, twin_b] * 9])])
    lg.deposit(brand, 27_000)
    lg.transact(lg.fn.pause(), lg.actors.pauser)

    receipt = lg.transact(lg.fn.repayDebt(brand.address, 5), lg.actors.outsider)

    assert repaid(lg, receipt) == [(twin_a, 1_000, 16), (twin_b, 2_000, 17)]
    assert lg.brand_account(brand)["debt"] == 0


def test_repay_debt_with_zero_entries_pays_nothing(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    twin_a = licensed_twin(lg, lg.actors.models[0], brand, 1_000)
    twin_b = licensed_twin(lg, lg.actors.models[1], brand, 2_000)
    lg.advance(2)
    lg.settle([(brand.address, [lg.usage(t) for t in [twin_a, twin_b] * 9])])
    lg.deposit(brand, 27_000)

    receipt = lg.transact(lg.fn.repayDebt(brand.address, 0), lg.actors.outsider)

    assert lg.all_events(receipt) == []
    assert lg.brand_account(brand)["debtReserve"] == 3_000


def test_nothing_is_ever_dropped(lg: Ledger) -> None:
    brands = lg.actors.brands
    model_a, model_b = lg.actors.models[0], lg.actors.models[1]
    twin_a, twin_b = lg.mint(model_a), lg.mint(model_b)
    for brand in brands:
        lg.offer_and_accept(twin_a, lg.terms(brand, {0: 1_000, 1: 333}), model_a)
        lg.offer_and_accept(twin_b, lg.terms(brand, {0: 2_000}), model_b)
    lg.advance(2)

    paid = 0
    into_escrow = {b.address: 0 for b in brands}
    debt_repaid = 0

    def settle(groups: list[tuple[LocalAccount, list[tuple[int, int, int]]]]) -> None:
        nonlocal paid
        receipt = lg.settle(
            [
                (b.address, [lg.usage(t, quantity=q, usage_type=k) for t, q, k in uses])
                for b, uses in groups
            ]
        )
        paid += sum(e["paid"] for e in lg.events(receipt, "UsagesSettled"))
        check()

    def deposit(brand: LocalAccount, amount: int) -> None:
        nonlocal debt_repaid
        receipt = lg.deposit(brand, amount)
        [event] = lg.events(receipt, "EscrowDeposited")
        into_escrow[brand.address] += amount - event["toDebt"]
        debt_repaid += sum(e["amount"] for e in lg.events(receipt, "DebtRepaid"))
        check()

    def repay(brand: LocalAccount, n: int) -> None:
        nonlocal debt_repaid
        receipt = lg.transact(lg.fn.repayDebt(brand.address, n), lg.actors.outsider)
        debt_repaid += sum(e["amount"] for e in lg.events(receipt, "DebtRepaid"))
        check()

    def check() -> None:
        accounts = [lg.brand_account(b) for b in brands]
        escrow_spent = sum(
            into_escrow[b.address] - a["escrow"] for b, a in zip(brands, accounts, strict=True)
        )
        outstanding = sum(a["debt"] for a in accounts)
        reserves = sum(a["debtReserve"] for a in accounts)
        assert paid == escrow_spent + debt_repaid + outstanding
        assert accrued(lg, twin_a) + accrued(lg, twin_b) == escrow_spent + debt_repaid
        assert lg.fn.totalLiabilities().call() == (
            sum(a["escrow"] for a in accounts)
            + reserves
            + accrued(lg, twin_a)
            + accrued(lg, twin_b)
        )
        assert_solvent(lg)

    b0, b1, b2 = brands
    deposit(b0, 2_500)
    settle([(b0, [(twin_a, 1, 0), (twin_b, 1, 0), (twin_a, 3, 1)]), (b1, [(twin_b, 2, 0)])])
    settle([(b1, [(twin_a, 1, 0), (twin_b, 1, 0)] * 10), (b2, [(twin_a, 7, 1)])])
    deposit(b0, 1_000)
    deposit(b1, 5_000)
    settle([(b0, [(twin_b, 4, 0)]), (b2, [(twin_b, 1, 0), (twin_a, 1, 0)])])
    deposit(b1, 40_000)
    repay(b1, 3)
    deposit(b2, 1_234)
    settle([(b1, [(twin_a, 50, 0)]), (b2, [(twin_a, 2, 0)] * 3)])
    repay(b1, 50)
    deposit(b0, 100_000)
    deposit(b1, 39_000)
    deposit(b2, 100_000)
    assert paid == 107_330
    assert sum(lg.brand_account(b)["debt"] for b in brands) == 0
    assert accrued(lg, twin_a) + accrued(lg, twin_b) == paid
