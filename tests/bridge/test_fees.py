"""The EIP-1559 fee rule every transaction of the bridge follows (``bridge.domain.fees``), with
exact wei values: ``max_fee = min(cap, 2 * base_fee + tip)``, the tip capped too, and the
replacement bump of at least 10 % (rounded up, at least one wei), refused above the cap."""

from __future__ import annotations

import pytest

from bridge.domain.fees import FeePolicy, Fees, bumped

GWEI = 10**9
POLICY = FeePolicy(cap=100 * GWEI)


def test_under_the_cap_the_max_fee_is_twice_the_base_fee_plus_the_tip() -> None:
    assert POLICY.fees(base_fee=30 * GWEI, tip=2 * GWEI) == Fees(
        max_fee=62 * GWEI, priority=2 * GWEI
    )
    assert POLICY.fees(base_fee=0, tip=0) == Fees(max_fee=0, priority=0)
    assert POLICY.fees(base_fee=7, tip=3) == Fees(max_fee=17, priority=3)


def test_over_the_cap_the_max_fee_is_the_cap() -> None:
    assert POLICY.fees(base_fee=60 * GWEI, tip=2 * GWEI) == Fees(
        max_fee=100 * GWEI, priority=2 * GWEI
    )
    assert POLICY.fees(base_fee=49 * GWEI, tip=2 * GWEI + 1) == Fees(
        max_fee=100 * GWEI, priority=2 * GWEI + 1
    )


def test_a_tip_over_the_cap_is_capped() -> None:
    policy = FeePolicy(cap=10 * GWEI)
    assert policy.fees(base_fee=3 * GWEI, tip=15 * GWEI) == Fees(
        max_fee=10 * GWEI, priority=10 * GWEI
    )
    assert policy.fees(base_fee=0, tip=15 * GWEI) == Fees(max_fee=10 * GWEI, priority=10 * GWEI)


def test_a_base_fee_above_the_cap_is_not_payable() -> None:
    policy = FeePolicy(cap=10 * GWEI)
    assert policy.payable(10 * GWEI)
    assert not policy.payable(10 * GWEI + 1)
    # The fees of such a block stay at the cap, below the base fee.
    assert policy.fees(base_fee=20 * GWEI, tip=GWEI) == Fees(max_fee=10 * GWEI, priority=GWEI)


@pytest.mark.parametrize(
    ("fee", "expected"),
    [
        (0, 1),  # at least one wei more
        (1, 2),
        (5, 6),  # 0.5 rounded up
        (9, 10),
        (10, 11),
        (11, 13),  # 1.1 rounded up
        (100, 110),
        (101, 112),
        (2 * GWEI, 2_200_000_000),
        (62 * GWEI + 1, 68_200_000_002),
    ],
)
def test_bumped_is_ten_percent_more_rounded_up_and_at_least_one_wei(
    fee: int, expected: int
) -> None:
    assert bumped(fee) == expected


def test_a_bump_is_at_least_ten_percent_over_the_previous_fees() -> None:
    previous = Fees(max_fee=62 * GWEI, priority=2 * GWEI)
    assert POLICY.bump(previous, base_fee=30 * GWEI, tip=2 * GWEI) == Fees(
        max_fee=68_200_000_000, priority=2_200_000_000
    )
    # Tiny fees still go up by one wei each.
    assert POLICY.bump(Fees(max_fee=3, priority=1), base_fee=1, tip=0) == Fees(
        max_fee=4, priority=2
    )


def test_a_bump_follows_a_risen_base_fee_and_tip() -> None:
    previous = Fees(max_fee=62 * GWEI, priority=2 * GWEI)
    assert POLICY.bump(previous, base_fee=45 * GWEI, tip=2 * GWEI) == Fees(
        max_fee=92_200_000_000, priority=2_200_000_000
    )
    assert POLICY.bump(previous, base_fee=30 * GWEI, tip=5 * GWEI) == Fees(
        max_fee=68_200_000_000, priority=5 * GWEI
    )
    # A base fee that doubled: the new fees are what the network asks, capped.
    assert POLICY.bump(previous, base_fee=60 * GWEI, tip=2 * GWEI) == Fees(
        max_fee=100 * GWEI, priority=2_200_000_000
    )


def test_a_bump_that_would_pass_the_cap_is_refused() -> None:
    assert (
        POLICY.bump(Fees(max_fee=95 * GWEI, priority=2 * GWEI), base_fee=30 * GWEI, tip=0) is None
    )
    assert POLICY.bump(Fees(max_fee=100 * GWEI, priority=2 * GWEI), base_fee=0, tip=0) is None
    # Right at the cap is still allowed.
    assert POLICY.bump(Fees(max_fee=90_909_090_909, priority=2 * GWEI), base_fee=0, tip=0) == Fees(
        max_fee=100 * GWEI, priority=2_200_000_000
    )
    # A tip bumped past the cap is refused too.
    assert FeePolicy(cap=10).bump(Fees(max_fee=10, priority=10), base_fee=0, tip=0) is None
