"""Settlement of signed usage batches: outcomes, payment math, digests, replays and refusals."""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from bridge.domain.codec import Usage

from .conftest import LIMIT_MAX
from .helpers import DAY, Ledger, Outcome, typed_digest

ZERO = "0x0000000000000000000000000000000000000000"
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def block_time(lg: Ledger, receipt: Any) -> int:
    return int(lg.w3.eth.get_block(receipt["blockNumber"])["timestamp"])


def licensed_twin(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, prices: dict[int, int], **terms: Any
) -> tuple[int, int]:
    """A new twin of ``model`` licensed to ``brand``; returns ``(twin id, grant block time)``."""
    twin = lg.mint(model)
    receipt = lg.offer_and_accept(twin, lg.terms(brand, prices, **terms), model)
    return twin, block_time(lg, receipt)


def accrued(lg: Ledger, twin: int) -> int:
    return int(lg.fn.twinState(twin).call()[0])


def python_digest(lg: Ledger, deadline: int, groups: list[tuple[str, list[int]]]) -> bytes:
    return typed_digest(lg.batch_data(groups, deadline))


def snapshot_state(lg: Ledger, brands: list[LocalAccount], twins: list[int]) -> Any:
    return (
        [lg.brand_account(b) for b in brands],
        [lg.fn.twinState(t).call() for t in twins],
        lg.fn.totalLiabilities().call(),
        lg.token_balance(lg.contract.address),
    )


# ---------------------------------------------------------------------- outcomes


def test_every_outcome_code_is_reported_with_its_usage_word(lg: Ledger) -> None:
    brand, other_brand = lg.actors.brands[0], lg.actors.brands[1]
    m = lg.actors.models
    twin_a, granted_a = licensed_twin(lg, m[0], brand, {0: 1_000_000, 1: 250_000})
    twin_b, _ = licensed_twin(lg, m[1], other_brand, {0: 1_000_000})  # not licensed to `brand`
    twin_c, granted_c = licensed_twin(lg, m[2], brand, {0: 500_000}, valid_until=lg.now() + 50)
    twin_d, _ = licensed_twin(lg, m[3], brand, {0: 300_000})
    twin_e, _ = licensed_twin(lg, m[0], brand, {0: 70_000}, max_uses=2)
    twin_f, _ = licensed_twin(lg, m[1], brand, {0: 90_000})
    twin_g = lg.mint(m[2])
    lg.offer(twin_g, lg.terms(brand, {0: 10}), m[2])  # offered, never accepted
    lg.advance(10)
    revoked_at = block_time(lg, lg.revoke(twin_d, brand, m[3]))
    # The brand's own limits: no use above 2_000_000, no more than 6_530_000 per period.
    lg.transact(lg.fn.setSpendingLimits(2_000_000, 6_530_000), brand)
    paused_at = block_time(lg, lg.transact(lg.fn.setTwinPaused(twin_f, True), m[1]))
    lg.advance(100)
    lg.deposit(brand, 10_000_000)
    now = lg.now()
    expired_at = lg.fn.licenseOf(twin_c, brand.address).call()[0][1]  # validUntil
    assert granted_c < expired_at < now

    cases = [
        (lg.usage(twin_a, quantity=2), Outcome.PAID, 2_000_000),
        (lg.usage(twin_a, quantity=4, usage_type=1), Outcome.PAID, 1_000_000),
        (lg.usage(999), Outcome.UNKNOWN_TWIN, 0),
        (lg.usage(twin_b), Outcome.NO_LICENSE, 0),
        (lg.usage(twin_a, used_at=granted_a - 5), Outcome.LICENSE_NOT_STARTED, 0),
        (lg.usage(twin_c, used_at=expired_at), Outcome.LICENSE_EXPIRED, 0),
        (lg.usage(twin_c, used_at=expired_at - 1), Outcome.PAID, 500_000),
        (lg.usage(twin_d, used_at=revoked_at), Outcome.LICENSE_REVOKED, 0),
        (lg.usage(twin_d, used_at=revoked_at - 1), Outcome.PAID, 300_000),
        (lg.usage(twin_a, usage_type=7), Outcome.USAGE_TYPE_NOT_LICENSED, 0),
        (lg.usage(twin_e, quantity=3), Outcome.USE_CAP_REACHED, 0),
        (lg.usage(twin_e, quantity=2), Outcome.PAID, 140_000),
        (lg.usage(twin_e, quantity=1), Outcome.USE_CAP_REACHED, 0),
        (lg.usage(twin_f, used_at=paused_at), Outcome.TWIN_PAUSED, 0),
        (lg.usage(twin_f, used_at=paused_at - 1), Outcome.PAID, 90_000),
        (lg.usage(twin_a, quantity=0), Outcome.ZERO_QUANTITY, 0),
        (lg.usage(twin_a, used_at=now + 10**6), Outcome.USAGE_IN_FUTURE, 0),
        (lg.usage(twin_g), Outcome.OFFER_NOT_ACCEPTED, 0),
        (lg.usage(twin_a, quantity=3), Outcome.OVER_USAGE_LIMIT, 0),  # 3_000_000 in one use
        (lg.usage(twin_a, quantity=2), Outcome.PAID, 2_000_000),  # exactly the usage limit
        (lg.usage(twin_a, quantity=1), Outcome.OVER_PERIOD_LIMIT, 0),  # 6_030_000 + 1_000_000
        (lg.usage(twin_c, used_at=expired_at - 1), Outcome.PAID, 500_000),
    ]
    assert sorted({int(code) for _, code, _ in cases}) == list(range(14))
    words = [w for w, _, _ in cases]

    receipt = lg.settle([(brand.address, words)])

    assert lg.all_events(receipt) == ["UsagesSettled"]
    [event] = lg.events(receipt, "UsagesSettled")
    assert event["results"] == [w | int(code) for w, code, _ in cases]
    assert [o for _, o in lg.outcomes(receipt)] == [code for _, code, _ in cases]
    total = sum(cost for _, _, cost in cases)
    assert total == 6_530_000
    assert event["paid"] == total
    assert event["brand"] == brand.address
    assert event["attester"] == lg.actors.attester.address
    assert lg.brand_account(brand)["escrow"] == 10_000_000 - total
    assert [accrued(lg, t) for t in (twin_a, twin_b, twin_c, twin_d, twin_e, twin_f)] == [
        5_000_000,
        0,
        1_000_000,
        300_000,
        140_000,
        90_000,
    ]
    assert accrued(lg, twin_g) == 0
    assert lg.brand_limits(brand)["spentInPeriod"] == total
    assert all(
        lg.fn.isUsageProcessed(brand.address, Usage.decode(w).usage_id).call() for w in words
    )
    assert lg.fn.isUsageProcessed(brand.address, len(words) + 1).call() is False
    assert lg.fn.licenseOf(twin_e, brand.address).call()[0][3] == 2  # uses
    assert lg.fn.totalLiabilities().call() == 10_000_000 == lg.token_balance(lg.contract.address)


def test_twin_ids_never_minted_are_unknown_twins(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    twin, _ = licensed_twin(lg, lg.actors.models[0], brand, {0: 1_000})
    lg.deposit(brand, 10_000)
    lg.advance(2)
    twins = [0, twin + 1, twin, 2**64 - 1, 0]

    receipt = lg.settle([(brand.address, [lg.usage(t) for t in twins])])

    assert [(u.twin_id, o) for u, o in lg.outcomes(receipt)] == [
        (0, Outcome.UNKNOWN_TWIN),
        (twin + 1, Outcome.UNKNOWN_TWIN),
        (twin, Outcome.PAID),
        (2**64 - 1, Outcome.UNKNOWN_TWIN),
        (0, Outcome.UNKNOWN_TWIN),
    ]
    assert lg.events(receipt, "UsagesSettled")[0]["paid"] == 1_000
    assert lg.brand_account(brand)["escrow"] == 9_000
    assert [accrued(lg, t) for t in (0, twin, twin + 1)] == [0, 1_000, 0]


def test_usage_used_at_block_time_is_not_in_the_future(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    twin, _ = licensed_twin(lg, lg.actors.models[0], brand, {0: 1_000})
    lg.deposit(brand, 1_000_000)
    lg.advance(1_000)  # ahead of the wall clock: the next block is exactly one second later
    at = lg.now() + 1

    receipt = lg.settle(
        [(brand.address, [lg.usage(twin, used_at=at), lg.usage(twin, used_at=at + 1)])]
    )

    assert block_time(lg, receipt) == at
    assert [o for _, o in lg.outcomes(receipt)] == [Outcome.PAID, Outcome.USAGE_IN_FUTURE]
    assert lg.events(receipt, "UsagesSettled")[0]["paid"] == 1_000


def test_free_usage_type_is_paid_at_zero_and_counts_against_the_cap(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    twin, _ = licensed_twin(lg, lg.actors.models[0], brand, {0: 0, 1: 5}, max_uses=3)
    lg.advance(2)

    receipt = lg.settle(
        [
            (
                brand.address,
                [
                    lg.usage(twin, quantity=2),
                    lg.usage(twin, quantity=1, usage_type=1),
                    lg.usage(twin, quantity=1),
                ],
            )
        ]
    )

    assert [o for _, o in lg.outcomes(receipt)] == [
        Outcome.PAID,
        Outcome.PAID,
        Outcome.USE_CAP_REACHED,
    ]
    # The brand has no escrow: the one non-free use became debt, the free ones cost nothing.
    assert lg.events(receipt, "UsagesSettled")[0]["paid"] == 5
    assert lg.brand_account(brand)["debt"] == 5
    assert lg.fn.licenseOf(twin, brand.address).call()[0][3] == 3


def test_paused_interval_rejects_only_uses_inside_it(lg: Ledger) -> None:
    brand, model = lg.actors.brands[0], lg.actors.models[0]
    twin, _ = licensed_twin(lg, model, brand, {0: 10})
    lg.advance(10)
    paused_at = block_time(lg, lg.transact(lg.fn.setTwinPaused(twin, True), model))
    lg.advance(10)
    resumed_at = block_time(lg, lg.transact(lg.fn.setTwinPaused(twin, False), model))
    lg.advance(10)
    lg.deposit(brand, 1_000)

    receipt = lg.settle(
        [
            (
                brand.address,
                [
                    lg.usage(twin, used_at=paused_at - 1),
                    lg.usage(twin, used_at=paused_at),
                    lg.usage(twin, used_at=resumed_at - 1),
                    lg.usage(twin, used_at=resumed_at),
                ],
            )
        ]
    )

    assert [o for _, o in lg.outcomes(receipt)] == [
        Outcome.PAID,
        Outcome.TWIN_PAUSED,
        Outcome.TWIN_PAUSED,
        Outcome.PAID,
    ]
    assert lg.events(receipt, "UsagesSettled")[0]["paid"] == 20


# ---------------------------------------------------------------------- payment math


def test_inline_and_overflow_prices_pay_price_times_quantity(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    big = 2**44 + 7  # too large to be stored inline
    prices = {0: 1_000, 1: big, 2: 3_333, 3: 7, 9: 123_456}  # types 3 and 9: past two inline slots
    twin, _ = licensed_twin(lg, lg.actors.models[0], brand, prices)
    license_prices = lg.fn.licenseOf(twin, brand.address).call()[0][5]
    assert sorted(map(tuple, license_prices)) == sorted(prices.items())
    lg.deposit(brand, 10**14)
    lg.advance(2)
    quantities = {0: 5, 1: 2, 2: 3, 3: 1_000, 9: 11}

    receipt = lg.settle(
        [(brand.address, [lg.usage(twin, quantity=q, usage_type=t) for t, q in quantities.items()])]
    )

    assert [o for _, o in lg.outcomes(receipt)] == [Outcome.PAID] * 5
    expected = sum(prices[t] * q for t, q in quantities.items())
    assert expected == 5_000 + 2 * big + 9_999 + 7_000 + 1_358_016
    assert lg.events(receipt, "UsagesSettled")[0]["paid"] == expected
    assert lg.brand_account(brand)["escrow"] == 10**14 - expected
    assert accrued(lg, twin) == expected
    assert lg.fn.totalLiabilities().call() == 10**14 == lg.token_balance(lg.contract.address)


def test_round_and_odd_large_prices_pay_exactly(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    prices = {
        0: 2**28 - 1,
        1: 2**28,
        2: 2**28 * 10,
        3: 5_000 * 10**6,
        4: 10**20,
        5: 123_456_789 * 10**15,
        6: 10**28,
        7: 2**96 - 1,
        8: 1,
        9: 0,
    }
    twin, _ = licensed_twin(lg, lg.actors.models[0], brand, prices)
    assert sorted(map(tuple, lg.fn.licenseOf(twin, brand.address).call()[0][5])) == sorted(
        prices.items()
    )
    lg.deposit(brand, 10**15)
    lg.advance(2)
    for kind, price in prices.items():
        assert lg.fn.priceAt(twin, brand.address, kind, lg.now()).call() == [0, price]

    receipt = lg.settle(
        [(brand.address, [lg.usage(twin, quantity=3, usage_type=t) for t in prices])]
    )

    # Three uses of types 5, 6 and 7 cost more than the largest spending limit a brand can have.
    over = {5, 6, 7}
    assert all(3 * prices[t] > LIMIT_MAX for t in over)
    assert [o for _, o in lg.outcomes(receipt)] == [
        Outcome.OVER_USAGE_LIMIT if t in over else Outcome.PAID for t in prices
    ]
    expected = 3 * sum(p for t, p in prices.items() if t not in over)
    assert expected == 3 * (2**28 - 1 + 2**28 + 2**28 * 10 + 5_000 * 10**6 + 10**20 + 1)
    assert lg.events(receipt, "UsagesSettled")[0]["paid"] == expected
    account = lg.brand_account(brand)
    assert (account["escrow"], account["debt"]) == (0, expected - 10**15)
    assert accrued(lg, twin) == 10**15


def test_maximum_price_times_maximum_quantity_is_refused_and_the_largest_limit_pays_exactly(
    lg: Ledger,
) -> None:
    brand = lg.actors.brands[0]
    max_price = lg.fn.MAX_PRICE().call()
    assert max_price == 2**96 - 1
    twin, _ = licensed_twin(lg, lg.actors.models[0], brand, {4: max_price, 5: LIMIT_MAX})
    lg.deposit(brand, 1_000_000)
    lg.advance(2)
    assert lg.brand_limits(brand)["perUsage"] == LIMIT_MAX

    receipt = lg.settle(
        [
            (
                brand.address,
                [
                    lg.usage(twin, quantity=2**32 - 1, usage_type=4),
                    lg.usage(twin, quantity=1, usage_type=4),
                    lg.usage(twin, quantity=1, usage_type=5),
                ],
            )
        ]
    )

    assert [o for _, o in lg.outcomes(receipt)] == [
        Outcome.OVER_USAGE_LIMIT,
        Outcome.OVER_USAGE_LIMIT,
        Outcome.PAID,
    ]
    assert lg.events(receipt, "UsagesSettled")[0]["paid"] == LIMIT_MAX
    assert lg.events(receipt, "DebtRecorded") == [
        {"brand": brand.address, "twinId": twin, "amount": LIMIT_MAX - 1_000_000, "entry": 0}
    ]
    assert lg.brand_account(brand)["debt"] == LIMIT_MAX - 1_000_000
    assert lg.brand_limits(brand)["spentInPeriod"] == LIMIT_MAX
    assert accrued(lg, twin) == 1_000_000


def test_earlier_license_version_prices_uses_made_under_it(lg: Ledger) -> None:
    brand, model = lg.actors.brands[0], lg.actors.models[0]
    twin, first_at = licensed_twin(lg, model, brand, {0: 100, 1: 2**45})
    lg.advance(10)
    second_at = block_time(
        lg, lg.offer_and_accept(twin, lg.terms(brand, {0: 300, 1: 2**46}), model)
    )
    lg.deposit(brand, 10**15)
    lg.advance(2)

    receipt = lg.settle(
        [
            (
                brand.address,
                [
                    lg.usage(twin, used_at=first_at, quantity=2),
                    lg.usage(twin, used_at=second_at - 1, usage_type=1),
                    lg.usage(twin, used_at=second_at, quantity=2),
                    lg.usage(twin, used_at=second_at, usage_type=1),
                ],
            )
        ]
    )

    assert [o for _, o in lg.outcomes(receipt)] == [Outcome.PAID] * 4
    assert lg.events(receipt, "UsagesSettled")[0]["paid"] == 200 + 2**45 + 600 + 2**46


def test_use_cap_counts_across_batches(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    twin, _ = licensed_twin(lg, lg.actors.models[0], brand, {0: 1_000}, max_uses=5)
    lg.deposit(brand, 1_000_000)
    lg.advance(2)

    first = lg.settle([(brand.address, [lg.usage(twin, quantity=3)])])
    second = lg.settle([(brand.address, [lg.usage(twin, quantity=3), lg.usage(twin, quantity=2)])])
    third = lg.settle([(brand.address, [lg.usage(twin, quantity=1)])])

    assert [o for _, o in lg.outcomes(first)] == [Outcome.PAID]
    assert [o for _, o in lg.outcomes(second)] == [Outcome.USE_CAP_REACHED, Outcome.PAID]
    assert [o for _, o in lg.outcomes(third)] == [Outcome.USE_CAP_REACHED]
    assert [lg.events(r, "UsagesSettled")[0]["paid"] for r in (first, second, third)] == [
        3_000,
        2_000,
        0,
    ]
    assert lg.fn.licenseOf(twin, brand.address).call()[0][3] == 5
    assert lg.brand_account(brand)["escrow"] == 995_000
    assert accrued(lg, twin) == 5_000


def test_settlement_accrues_across_batches_and_twins(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    twin_a, _ = licensed_twin(lg, lg.actors.models[0], brand, {0: 1_000})
    twin_b, _ = licensed_twin(lg, lg.actors.models[1], brand, {0: 3_000})
    lg.deposit(brand, 100_000)
    lg.advance(2)

    lg.settle([(brand.address, [lg.usage(twin_a), lg.usage(twin_b), lg.usage(twin_a)])])
    receipt = lg.settle([(brand.address, [lg.usage(twin_b, quantity=4), lg.usage(twin_a)])])

    assert lg.events(receipt, "UsagesSettled")[0]["paid"] == 13_000
    assert accrued(lg, twin_a) == 3_000
    assert accrued(lg, twin_b) == 15_000
    assert lg.brand_account(brand)["escrow"] == 100_000 - 18_000
    assert lg.fn.totalLiabilities().call() == 100_000 == lg.token_balance(lg.contract.address)


# ---------------------------------------------------------------------- groups and digest


def test_each_group_is_settled_in_order_under_the_batch_digest(lg: Ledger) -> None:
    brand_0, brand_1 = lg.actors.brands[0], lg.actors.brands[1]
    twin, _ = licensed_twin(lg, lg.actors.models[0], brand_0, {0: 1_000})
    lg.offer_and_accept(twin, lg.terms(brand_1, {0: 7_000}), lg.actors.models[0])
    lg.deposit(brand_0, 50_000)
    lg.deposit(brand_1, 50_000)
    lg.advance(2)
    groups = [
        (brand_1.address, [lg.usage(twin, quantity=2)]),
        (brand_0.address, [lg.usage(twin), lg.usage(twin, quantity=3)]),
        (brand_1.address, []),
        (brand_0.address, [lg.usage(twin, quantity=5)]),
    ]
    batch, signature = lg.sign_batch(groups)

    digest = bytes(lg.fn.hashUsageBatch(batch).call())
    assert digest == python_digest(lg, batch[0], [(b, list(u)) for b, u in groups])
    receipt = lg.transact(
        lg.fn.settle(batch, lg.actors.attester.address, signature), lg.actors.models[2]
    )

    events = lg.events(receipt, "UsagesSettled")
    assert lg.all_events(receipt) == ["UsagesSettled"] * 4
    assert [bytes(e["batchDigest"]) for e in events] == [digest] * 4
    assert [(e["brand"], e["paid"]) for e in events] == [
        (brand_1.address, 14_000),
        (brand_0.address, 4_000),
        (brand_1.address, 0),
        (brand_0.address, 5_000),
    ]
    assert [e["attester"] for e in events] == [lg.actors.attester.address] * 4
    assert [e["results"] for e in events] == [[w | int(Outcome.PAID) for w in u] for _, u in groups]
    assert lg.brand_account(brand_0)["escrow"] == 41_000
    assert lg.brand_account(brand_1)["escrow"] == 36_000
    assert accrued(lg, twin) == 23_000


def test_digest_changes_with_every_signed_field(lg: Ledger) -> None:
    brand_0, brand_1 = lg.actors.brands[0].address, lg.actors.brands[1].address
    word = lg.usage(1)
    base = lg.fn.hashUsageBatch((1_000, [(brand_0, [word])])).call()
    variants = [
        (1_001, [(brand_0, [word])]),
        (1_000, [(brand_1, [word])]),
        (1_000, [(brand_0, [word + 1])]),
        (1_000, [(brand_0, [word, word])]),
        (1_000, [(brand_0, [word]), (brand_0, [])]),
        (1_000, [(brand_0, []), (brand_0, [word])]),
    ]
    digests = [bytes(lg.fn.hashUsageBatch(v).call()) for v in variants]
    assert len({bytes(base), *digests}) == len(variants) + 1
    for (deadline, groups), digest in zip(variants, digests, strict=True):
        assert digest == python_digest(lg, deadline, groups)


# ---------------------------------------------------------------------- replays


def test_usage_id_twice_in_a_group_reverts_and_changes_nothing(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    twin, _ = licensed_twin(lg, lg.actors.models[0], brand, {0: 1_000})
    lg.deposit(brand, 100_000)
    lg.advance(2)
    before = snapshot_state(lg, [brand], [twin])
    groups = [
        (
            brand.address,
            [
                lg.usage(twin, usage_id=7),
                lg.usage(twin, usage_id=8),
                lg.usage(twin, usage_id=7, quantity=2),
            ],
        )
    ]
    batch, signature = lg.sign_batch(groups)

    with lg.reverts("UsageAlreadyProcessed", brand.address, 7):
        lg.fn.settle(batch, lg.actors.attester.address, signature).transact(
            {"from": lg.actors.outsider.address}
        )
    assert snapshot_state(lg, [brand], [twin]) == before
    assert lg.fn.isUsageProcessed(brand.address, 7).call() is False
    assert lg.fn.isUsageProcessed(brand.address, 8).call() is False


def test_usage_id_repeated_across_bitmap_words_in_a_group_reverts(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    twin, _ = licensed_twin(lg, lg.actors.models[0], brand, {0: 1_000})
    lg.advance(2)
    ids = [5, 300, 2**62 - 1, 5]
    batch, signature = lg.sign_batch([(brand.address, [lg.usage(twin, usage_id=i) for i in ids])])

    with lg.reverts("UsageAlreadyProcessed", brand.address, 5):
        lg.fn.settle(batch, lg.actors.attester.address, signature).transact(
            {"from": lg.actors.outsider.address}
        )
    assert [lg.fn.isUsageProcessed(brand.address, i).call() for i in ids] == [False] * 4


def test_usage_id_repeated_in_another_group_reverts_the_whole_batch(lg: Ledger) -> None:
    brand_0, brand_1 = lg.actors.brands[0], lg.actors.brands[1]
    twin, _ = licensed_twin(lg, lg.actors.models[0], brand_0, {0: 1_000})
    lg.offer_and_accept(twin, lg.terms(brand_1, {0: 1_000}), lg.actors.models[0])
    lg.deposit(brand_0, 100_000)
    lg.deposit(brand_1, 100_000)
    lg.advance(2)
    before = snapshot_state(lg, [brand_0, brand_1], [twin])
    # The bridge's attesters have one id space for all the brands they attest.
    groups = [
        (brand_0.address, [lg.usage(twin, usage_id=41), lg.usage(twin, usage_id=42)]),
        (brand_1.address, [lg.usage(twin, usage_id=43), lg.usage(twin, usage_id=42)]),
    ]
    batch, signature = lg.sign_batch(groups)

    with lg.reverts("UsageAlreadyProcessed", brand_1.address, 42):
        lg.transact(lg.fn.settle(batch, lg.actors.attester.address, signature), lg.actors.outsider)
    assert snapshot_state(lg, [brand_0, brand_1], [twin]) == before
    for b in (brand_0, brand_1):
        assert [lg.fn.isUsageProcessed(b.address, i).call() for i in (41, 42, 43)] == [False] * 3


def test_bridge_ids_are_shared_and_own_attester_ids_are_the_brands(lg: Ledger) -> None:
    brand_0, brand_1, own = lg.actors.brands
    twin, _ = licensed_twin(lg, lg.actors.models[0], brand_0, {0: 1_000})
    for brand in (brand_1, own):
        lg.offer_and_accept(twin, lg.terms(brand, {0: 2_000}), lg.actors.models[0])
    lg.transact(lg.fn.setBrandAttester(own.address), own)  # the brand attests its own usages
    lg.advance(2)
    top = 2**62  # ids in [2**62, 2**63): brands with their own attester; ids from 2**63: nobody's

    first = lg.settle([(brand_0.address, [lg.usage(twin, usage_id=5)])])

    assert [o for _, o in lg.outcomes(first)] == [Outcome.PAID]
    assert [lg.fn.isUsageProcessed(b.address, 5).call() for b in lg.actors.brands] == [True] * 3
    with lg.reverts("UsageAlreadyProcessed", brand_1.address, 5):
        lg.settle([(brand_1.address, [lg.usage(twin, usage_id=5)])])
    # Ids from 2**62 belong to brands with their own attester: one space per brand.
    high = lg.usage(twin, usage_id=top + 5)
    with lg.reverts("SettlementMalformedUsage", high):
        lg.settle([(brand_1.address, [high])])
    low = lg.usage(twin, usage_id=6)
    with lg.reverts("SettlementMalformedUsage", low):
        lg.settle([(own.address, [low])], signer=own)
    for word in (lg.usage(twin, usage_id=2**63 + 5), lg.usage(twin, usage_id=2**64 - 1)):
        with lg.reverts("SettlementMalformedUsage", word):
            lg.settle([(own.address, [word])], signer=own)
        with lg.reverts("SettlementMalformedUsage", word):
            lg.settle([(brand_0.address, [word])])
    receipt = lg.settle([(own.address, [high])], signer=own)
    assert [
        (o, e["paid"])
        for (_, o), e in zip(lg.outcomes(receipt), lg.events(receipt, "UsagesSettled"), strict=True)
    ] == [(Outcome.PAID, 2_000)]
    assert lg.fn.isUsageProcessed(own.address, top + 5).call() is True
    assert lg.fn.isUsageProcessed(brand_0.address, top + 5).call() is False
    assert lg.fn.isUsageProcessed(own.address, 6).call() is False


def test_usage_word_with_low_bits_set_reverts_malformed(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    twin, _ = licensed_twin(lg, lg.actors.models[0], brand, {0: 1_000})
    lg.advance(2)
    good, other = lg.usage(twin, usage_id=1), lg.usage(twin, usage_id=2)
    for low in (1, 5, 1 << 47):
        with lg.reverts("SettlementMalformedUsage", other | low):
            lg.settle([(brand.address, [good, other | low])])
    assert lg.fn.isUsageProcessed(brand.address, 1).call() is False


def test_usage_id_settled_in_an_earlier_batch_reverts(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    twin, _ = licensed_twin(lg, lg.actors.models[0], brand, {0: 1_000})
    lg.deposit(brand, 100_000)
    lg.advance(2)
    lg.settle([(brand.address, [lg.usage(twin, usage_id=256)])])
    before = snapshot_state(lg, [brand], [twin])
    batch, signature = lg.sign_batch(
        [(brand.address, [lg.usage(twin, usage_id=255), lg.usage(twin, usage_id=256)])]
    )

    with lg.reverts("UsageAlreadyProcessed", brand.address, 256):
        lg.fn.settle(batch, lg.actors.attester.address, signature).transact(
            {"from": lg.actors.outsider.address}
        )
    assert snapshot_state(lg, [brand], [twin]) == before
    assert lg.fn.isUsageProcessed(brand.address, 255).call() is False
    assert lg.fn.isUsageProcessed(brand.address, 256).call() is True


def test_resubmitting_the_same_signed_batch_reverts(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    twin, _ = licensed_twin(lg, lg.actors.models[0], brand, {0: 1_000})
    lg.deposit(brand, 100_000)
    lg.advance(2)
    batch, signature = lg.sign_batch([(brand.address, [lg.usage(twin, usage_id=9)])])
    lg.transact(lg.fn.settle(batch, lg.actors.attester.address, signature), lg.actors.outsider)

    with lg.reverts("UsageAlreadyProcessed", brand.address, 9):
        lg.fn.settle(batch, lg.actors.attester.address, signature).transact(
            {"from": lg.actors.brands[1].address}
        )
    assert lg.brand_account(brand)["escrow"] == 99_000


def test_rejected_usage_id_is_processed_and_cannot_be_retried(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    twin = lg.mint(lg.actors.models[0])  # no license yet
    lg.advance(2)
    first = lg.settle([(brand.address, [lg.usage(twin, usage_id=77)])])
    assert [o for _, o in lg.outcomes(first)] == [Outcome.NO_LICENSE]
    assert lg.fn.isUsageProcessed(brand.address, 77).call() is True
    lg.offer_and_accept(twin, lg.terms(brand, {0: 1_000}, valid_from=0), lg.actors.models[0])

    batch, signature = lg.sign_batch([(brand.address, [lg.usage(twin, usage_id=77)])])
    with lg.reverts("UsageAlreadyProcessed", brand.address, 77):
        lg.fn.settle(batch, lg.actors.attester.address, signature).transact(
            {"from": lg.actors.outsider.address}
        )


def test_usage_ids_are_tracked_individually(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    twin, _ = licensed_twin(lg, lg.actors.models[0], brand, {0: 1})
    lg.advance(2)
    ids = [0, 1, 255, 256, 511, 512, 2**61, 2**62 - 1]

    lg.settle([(brand.address, [lg.usage(twin, usage_id=i) for i in ids])])

    assert all(lg.fn.isUsageProcessed(brand.address, i).call() for i in ids)
    neighbours = [2, 254, 257, 510, 513, 2**61 - 1, 2**61 + 1, 2**62 - 2]
    assert not any(lg.fn.isUsageProcessed(brand.address, i).call() for i in neighbours)


# ---------------------------------------------------------------------- refusals


def test_expired_batch_reverts_settlement_expired(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    twin, _ = licensed_twin(lg, lg.actors.models[0], brand, {0: 1_000})
    lg.advance(1_000)  # ahead of the wall clock: the next block is exactly one second later
    deadline = lg.now()
    batch, signature = lg.sign_batch([(brand.address, [lg.usage(twin)])], deadline=deadline)

    with lg.reverts("SettlementExpired", deadline):
        lg.fn.settle(batch, lg.actors.attester.address, signature).transact(
            {"from": lg.actors.outsider.address}
        )
    assert lg.fn.isUsageProcessed(brand.address, 1).call() is False


def test_batch_is_accepted_in_the_block_of_its_deadline(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    twin, _ = licensed_twin(lg, lg.actors.models[0], brand, {0: 1_000})
    lg.advance(1_000)
    deadline = lg.now() + 1

    receipt = lg.settle([(brand.address, [lg.usage(twin)])], deadline=deadline)

    assert block_time(lg, receipt) == deadline
    assert [o for _, o in lg.outcomes(receipt)] == [Outcome.PAID]


def test_batch_signed_by_a_non_attester_reverts(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    twin, _ = licensed_twin(lg, lg.actors.models[0], brand, {0: 1_000})
    lg.advance(2)
    for signer in (lg.actors.outsider, lg.actors.admin, brand):
        batch, signature = lg.sign_batch([(brand.address, [lg.usage(twin)])], signer=signer)
        # Named as the attester: a valid signature, but no ATTESTER_ROLE (and no own attester).
        with lg.reverts("SettlementInvalidAttester", signer.address):
            lg.fn.settle(batch, signer.address, signature).transact(
                {"from": lg.actors.outsider.address}
            )
        # Passed off as the attester's: the signature is not the named attester's.
        with lg.reverts("SettlementInvalidAttester", lg.actors.attester.address):
            lg.fn.settle(batch, lg.actors.attester.address, signature).transact(
                {"from": lg.actors.outsider.address}
            )


def test_batch_signed_by_a_revoked_attester_reverts(lg: Ledger) -> None:
    brand, attester = lg.actors.brands[0], lg.actors.attester
    twin, _ = licensed_twin(lg, lg.actors.models[0], brand, {0: 1_000})
    lg.advance(2)
    batch, signature = lg.sign_batch([(brand.address, [lg.usage(twin)])])
    receipt = lg.revoke_role(lg.role("ATTESTER_ROLE"), attester)
    assert lg.manager_events(receipt, "RoleRevoked") == [{"roleId": 2, "account": attester.address}]
    assert lg.has_role(2, attester) is False

    with lg.reverts("SettlementInvalidAttester", attester.address):
        lg.fn.settle(batch, lg.actors.attester.address, signature).transact(
            {"from": lg.actors.outsider.address}
        )


def test_batch_signed_by_a_newly_granted_attester_settles(lg: Ledger) -> None:
    brand, newcomer = lg.actors.brands[0], lg.actors.payees[0]
    twin, _ = licensed_twin(lg, lg.actors.models[0], brand, {0: 1_000})
    lg.advance(2)
    with lg.reverts("SettlementInvalidAttester", newcomer.address):
        lg.settle([(brand.address, [lg.usage(twin)])], signer=newcomer)
    lg.grant_role(lg.role("ATTESTER_ROLE"), newcomer)

    receipt = lg.settle([(brand.address, [lg.usage(twin)])], signer=newcomer)

    assert lg.events(receipt, "UsagesSettled")[0]["attester"] == newcomer.address


def test_signature_for_another_chain_recovers_a_stranger(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    twin, _ = licensed_twin(lg, lg.actors.models[0], brand, {0: 1_000})
    lg.advance(2)
    batch, signature = lg.sign_batch(
        [(brand.address, [lg.usage(twin)])], chain_id=lg.w3.eth.chain_id + 1
    )
    recovered = Account._recover_hash(
        bytes(lg.fn.hashUsageBatch(batch).call()), signature=signature
    )
    assert recovered != lg.actors.attester.address

    # Named as the attester, the signature is not its; the key it recovers holds no role.
    with lg.reverts("SettlementInvalidAttester", lg.actors.attester.address):
        lg.transact(lg.fn.settle(batch, lg.actors.attester.address, signature), lg.actors.outsider)
    with lg.reverts("SettlementInvalidAttester", recovered):
        lg.transact(lg.fn.settle(batch, recovered, signature), lg.actors.outsider)


def test_signature_for_another_ledger_recovers_a_stranger(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    twin, _ = licensed_twin(lg, lg.actors.models[0], brand, {0: 1_000})
    lg.advance(2)
    batch, signature = lg.sign_batch([(brand.address, [lg.usage(twin)])], ledger=lg.token.address)
    recovered = Account._recover_hash(
        bytes(lg.fn.hashUsageBatch(batch).call()), signature=signature
    )
    assert recovered != lg.actors.attester.address

    # Named as the attester, the signature is not its; the key it recovers holds no role.
    with lg.reverts("SettlementInvalidAttester", lg.actors.attester.address):
        lg.transact(lg.fn.settle(batch, lg.actors.attester.address, signature), lg.actors.outsider)
    with lg.reverts("SettlementInvalidAttester", recovered):
        lg.transact(lg.fn.settle(batch, recovered, signature), lg.actors.outsider)


def test_signature_over_other_contents_recovers_a_stranger(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    twin, _ = licensed_twin(lg, lg.actors.models[0], brand, {0: 1_000})
    lg.advance(2)
    word = lg.usage(twin)
    batch, signature = lg.sign_batch([(brand.address, [word])])
    tampered = (batch[0], [(brand.address, [word | (2 << 56)])])  # quantity 1 -> 3
    recovered = Account._recover_hash(
        bytes(lg.fn.hashUsageBatch(tampered).call()), signature=signature
    )

    # Named as the attester, the signature is not its; the key it recovers holds no role.
    with lg.reverts("SettlementInvalidAttester", lg.actors.attester.address):
        lg.transact(
            lg.fn.settle(tampered, lg.actors.attester.address, signature), lg.actors.outsider
        )
    with lg.reverts("SettlementInvalidAttester", recovered):
        lg.transact(lg.fn.settle(tampered, recovered, signature), lg.actors.outsider)


def test_malformed_and_malleated_signatures_are_refused(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    twin, _ = licensed_twin(lg, lg.actors.models[0], brand, {0: 1_000})
    lg.advance(2)
    batch, signature = lg.sign_batch([(brand.address, [lg.usage(twin)])])
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    high_s = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])  # 27 <-> 28
    # The malleated twin of a valid signature still recovers the attester with plain ecrecover.
    assert (
        Account._recover_hash(
            bytes(lg.fn.hashUsageBatch(batch).call()),
            vrs=(55 - v, r, (SECP256K1_N - s).to_bytes(32, "big")),
        )
        == lg.actors.attester.address
    )

    for bad in (b"\x00" * 64, b"\x00" * 65, b"", signature[:64], signature + b"\x00", high_s):
        with lg.reverts("SettlementInvalidAttester", lg.actors.attester.address):
            lg.transact(lg.fn.settle(batch, lg.actors.attester.address, bad), lg.actors.outsider)
        with lg.reverts("SettlementInvalidAttester", ZERO):
            lg.transact(lg.fn.settle(batch, ZERO, bad), lg.actors.outsider)
    assert lg.fn.isUsageProcessed(brand.address, 1).call() is False


def test_batch_without_groups_reverts_settlement_empty_batch(lg: Ledger) -> None:
    batch, signature = lg.sign_batch([])
    with lg.reverts("SettlementEmptyBatch"):
        lg.fn.settle(batch, lg.actors.attester.address, signature).transact(
            {"from": lg.actors.outsider.address}
        )
    # Emptiness is refused before the signature is looked at.
    with lg.reverts("SettlementEmptyBatch"):
        lg.fn.settle(batch, lg.actors.attester.address, b"\x00" * 65).transact(
            {"from": lg.actors.outsider.address}
        )


def test_group_for_the_zero_brand_reverts_the_whole_batch(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    twin, _ = licensed_twin(lg, lg.actors.models[0], brand, {0: 1_000})
    lg.deposit(brand, 100_000)
    lg.advance(2)
    before = snapshot_state(lg, [brand], [twin])
    batch, signature = lg.sign_batch(
        [(brand.address, [lg.usage(twin, usage_id=1)]), (ZERO, [lg.usage(twin, usage_id=2)])]
    )

    with lg.reverts("SettlementInvalidBrand", ZERO):
        lg.fn.settle(batch, lg.actors.attester.address, signature).transact(
            {"from": lg.actors.outsider.address}
        )
    assert snapshot_state(lg, [brand], [twin]) == before
    assert lg.fn.isUsageProcessed(brand.address, 1).call() is False


def test_settlement_is_refused_while_paused_and_resumes_after(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    twin, _ = licensed_twin(lg, lg.actors.models[0], brand, {0: 1_000})
    lg.deposit(brand, 100_000)
    lg.advance(2)
    batch, signature = lg.sign_batch([(brand.address, [lg.usage(twin)])], deadline=lg.now() + DAY)
    lg.transact(lg.fn.pause(), lg.actors.pauser)

    with lg.reverts("EnforcedPause"):
        lg.fn.settle(batch, lg.actors.attester.address, signature).transact(
            {"from": lg.actors.outsider.address}
        )
    lg.transact(lg.fn.unpause(), lg.actors.pauser)
    receipt = lg.transact(
        lg.fn.settle(batch, lg.actors.attester.address, signature), lg.actors.outsider
    )
    assert lg.events(receipt, "UsagesSettled")[0]["paid"] == 1_000
