"""Brand spending limits, on a ledger with the real defaults (50,000 per usage, 250,000 per day of a
6-decimal token, raises after 60 s): defaults for a new brand, the per-usage and per-period
outcomes (no debt, no cap use), aligned periods, a raise waiting its delay, a lowering at once,
the rounding of the kept codes and the ``brandLimits`` view."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from .conftest import REAL_CONFIG, ROLE_IDS, Chain, System, deploy_system
from .helpers import DAY, Ledger, Outcome

UNIT = 10**6
PER_USAGE = 50_000 * UNIT
PER_PERIOD = 250_000 * UNIT
RAISE_DELAY = 60
LIMIT_MAX = (2**28 - 1) * 10**15
ZERO = "0x0000000000000000000000000000000000000000"


# ---------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def real_world(session_chain: Chain) -> Iterator[System]:
    """A manager and ledger with the real defaults, deployed once for this module on the session
    chain (the session world's actors granted their roles, the brands' allowances set), and
    reverted away after the module."""
    snapshot_id = session_chain.snapshot()
    actors = session_chain.actors
    system = deploy_system(
        session_chain.w3,
        admin=actors.admin.address,
        config=REAL_CONFIG,
        members={role: [getattr(actors, name).address] for name, role in ROLE_IDS.items()},
        token=session_chain.token,
    )
    for brand in actors.brands:
        approve = session_chain.token.functions.approve(system.ledger.address, 2**256 - 1)
        approve.transact({"from": brand.address})
    yield system
    session_chain.revert(snapshot_id)


@pytest.fixture
def bounded(real_world: System, tester_chain: Chain) -> Ledger:
    """The real-defaults ledger (reverted after the test), its clock 1,000 s into a fresh
    spending period."""
    ledger = Ledger(
        tester_chain.w3,
        real_world.ledger,
        real_world.token,
        tester_chain.actors,
        real_world.manager,
    )
    ledger.warp((ledger.now() // DAY + 1) * DAY + 1_000)
    return ledger


@pytest.fixture
def brand(bounded: Ledger) -> LocalAccount:
    return bounded.actors.brands[0]


def licensed_twin(
    lg: Ledger, brand: LocalAccount, prices: dict[int, int], *, max_uses: int = 0
) -> int:
    """A twin of the first model whose license at ``prices`` the brand accepted."""
    model = lg.actors.models[0]
    twin = lg.mint(model)
    lg.offer_and_accept(twin, lg.terms(brand, prices, max_uses=max_uses), model)
    lg.advance(1)
    return twin


def settle_uses(
    lg: Ledger, brand: LocalAccount, twin: int, uses: Sequence[tuple[int, int]]
) -> tuple[list[Outcome], int, Any]:
    """Settles ``(usageType, quantity)`` usages in one group: outcomes, ``paid`` and receipt."""
    words = [lg.usage(twin, usage_type=t, quantity=q) for t, q in uses]
    receipt = lg.settle([(brand.address, words)])
    [event] = lg.events(receipt, "UsagesSettled")
    return [o for _, o in lg.outcomes(receipt)], int(event["paid"]), receipt


def period_start(lg: Ledger) -> int:
    return lg.next_time() // DAY * DAY


def uses(lg: Ledger, twin: int, brand: LocalAccount) -> int:
    return int(lg.fn.licenseOf(twin, brand.address).call()[0][3])


def set_limits(lg: Ledger, brand: LocalAccount, per_usage: int, per_period: int) -> Any:
    return lg.transact(lg.fn.setSpendingLimits(per_usage, per_period), brand)


# ---------------------------------------------------------------------- defaults


def test_a_new_brand_has_the_deployment_defaults(bounded: Ledger, brand: LocalAccount) -> None:
    assert bounded.fn.config().call() == (36 * DAY, DAY, RAISE_DELAY, PER_USAGE, PER_PERIOD, 0)
    assert bounded.brand_limits(brand) == {
        "perUsage": PER_USAGE,
        "perPeriod": PER_PERIOD,
        "spentInPeriod": 0,
        "periodStart": period_start(bounded),
        "pendingPerUsage": 0,
        "pendingPerPeriod": 0,
        "pendingEffectiveAt": 0,
        "attester": ZERO,
    }


# ---------------------------------------------------------------------- outcomes


def test_usage_over_the_per_usage_limit_is_rejected_without_debt_or_cap_use(
    bounded: Ledger, brand: LocalAccount
) -> None:
    twin = licensed_twin(bounded, brand, {0: 30_000 * UNIT, 1: PER_USAGE}, max_uses=10)
    bounded.deposit(brand, 10 * UNIT)

    outcomes, paid, receipt = settle_uses(bounded, brand, twin, [(0, 2), (1, 1)])

    assert outcomes == [Outcome.OVER_USAGE_LIMIT, Outcome.PAID]
    assert paid == PER_USAGE
    assert [e["amount"] for e in bounded.events(receipt, "DebtRecorded")] == [PER_USAGE - 10 * UNIT]
    assert bounded.brand_account(brand)["escrow"] == 0
    assert bounded.brand_account(brand)["debt"] == PER_USAGE - 10 * UNIT
    assert uses(bounded, twin, brand) == 1
    assert bounded.brand_limits(brand)["spentInPeriod"] == PER_USAGE


def test_usage_over_the_per_period_limit_is_rejected_without_debt_or_cap_use(
    bounded: Ledger, brand: LocalAccount
) -> None:
    twin = licensed_twin(bounded, brand, {0: PER_USAGE}, max_uses=10)
    bounded.deposit(brand, 300_000 * UNIT)

    outcomes, paid, receipt = settle_uses(bounded, brand, twin, [(0, 1)] * 6)

    assert outcomes == [Outcome.PAID] * 5 + [Outcome.OVER_PERIOD_LIMIT]
    assert paid == PER_PERIOD
    assert bounded.events(receipt, "DebtRecorded") == []
    assert bounded.brand_account(brand)["escrow"] == 50_000 * UNIT
    assert uses(bounded, twin, brand) == 5
    assert bounded.brand_limits(brand)["spentInPeriod"] == PER_PERIOD

    bounded.advance(3_600)
    assert settle_uses(bounded, brand, twin, [(0, 1)])[:2] == ([Outcome.OVER_PERIOD_LIMIT], 0)
    assert bounded.brand_account(brand)["escrow"] == 50_000 * UNIT
    assert uses(bounded, twin, brand) == 5


def test_debt_never_exceeds_what_the_period_limit_allowed(
    bounded: Ledger, brand: LocalAccount
) -> None:
    twin = licensed_twin(bounded, brand, {0: PER_USAGE})

    outcomes, paid, receipt = settle_uses(bounded, brand, twin, [(0, 1)] * 8)

    assert outcomes == [Outcome.PAID] * 5 + [Outcome.OVER_PERIOD_LIMIT] * 3
    assert paid == PER_PERIOD
    assert sum(e["amount"] for e in bounded.events(receipt, "DebtRecorded")) == PER_PERIOD
    assert bounded.brand_account(brand)["debt"] == PER_PERIOD
    assert bounded.fn.debtQueue(brand.address).call() == [0, 1]
    assert bounded.fn.debtEntry(brand.address, 0).call() == [twin, PER_PERIOD]


def test_groups_of_one_brand_in_a_batch_share_its_period_limit(
    bounded: Ledger, brand: LocalAccount
) -> None:
    twin = licensed_twin(bounded, brand, {0: PER_USAGE})
    bounded.deposit(brand, PER_PERIOD)
    groups = [(brand.address, [bounded.usage(twin) for _ in range(3)]) for _ in range(2)]

    receipt = bounded.settle(groups)

    assert [o for _, o in bounded.outcomes(receipt)] == [Outcome.PAID] * 5 + [
        Outcome.OVER_PERIOD_LIMIT
    ]
    assert [e["paid"] for e in bounded.events(receipt, "UsagesSettled")] == [
        3 * PER_USAGE,
        2 * PER_USAGE,
    ]
    assert bounded.brand_limits(brand)["spentInPeriod"] == PER_PERIOD


# ---------------------------------------------------------------------- periods


def test_the_period_rolls_over_at_its_aligned_boundary_by_settlement_time(
    bounded: Ledger, brand: LocalAccount
) -> None:
    twin = licensed_twin(bounded, brand, {0: PER_USAGE})
    bounded.deposit(brand, 10 * PER_PERIOD)
    start = period_start(bounded)
    settle_uses(bounded, brand, twin, [(0, 1)] * 5)

    bounded.warp(start + DAY - 1)
    assert settle_uses(bounded, brand, twin, [(0, 1)])[:2] == ([Outcome.OVER_PERIOD_LIMIT], 0)

    used_before = bounded.usage(twin, used_at=start + DAY - 2)
    receipt = bounded.settle([(brand.address, [used_before])])

    assert bounded.block_time(receipt) == start + DAY
    assert [o for _, o in bounded.outcomes(receipt)] == [Outcome.PAID]
    limits = bounded.brand_limits(brand)
    assert (limits["periodStart"], limits["spentInPeriod"]) == (start + DAY, PER_USAGE)


# ---------------------------------------------------------------------- raising and lowering


def test_a_raise_takes_effect_only_after_the_raise_delay(
    bounded: Ledger, brand: LocalAccount
) -> None:
    twin = licensed_twin(bounded, brand, {0: 60_000 * UNIT})
    bounded.deposit(brand, PER_PERIOD)

    receipt = set_limits(bounded, brand, 100_000 * UNIT, 500_000 * UNIT)

    effective = bounded.block_time(receipt) + RAISE_DELAY
    assert bounded.events(receipt, "SpendingLimitsSet") == [
        {
            "brand": brand.address,
            "perUsage": 100_000 * UNIT,
            "perPeriod": 500_000 * UNIT,
            "effectiveAt": effective,
        }
    ]
    assert bounded.brand_limits(brand) == {
        "perUsage": PER_USAGE,
        "perPeriod": PER_PERIOD,
        "spentInPeriod": 0,
        "periodStart": period_start(bounded),
        "pendingPerUsage": 100_000 * UNIT,
        "pendingPerPeriod": 500_000 * UNIT,
        "pendingEffectiveAt": effective,
        "attester": ZERO,
    }
    bounded.warp(effective - 1)
    assert settle_uses(bounded, brand, twin, [(0, 1)])[:2] == ([Outcome.OVER_USAGE_LIMIT], 0)
    assert settle_uses(bounded, brand, twin, [(0, 1)])[:2] == ([Outcome.PAID], 60_000 * UNIT)
    limits = bounded.brand_limits(brand)
    assert (limits["perUsage"], limits["perPeriod"], limits["pendingEffectiveAt"]) == (
        100_000 * UNIT,
        500_000 * UNIT,
        0,
    )


def test_a_second_raise_replaces_the_waiting_one_and_restarts_the_delay(
    bounded: Ledger, brand: LocalAccount
) -> None:
    first = set_limits(bounded, brand, 100_000 * UNIT, 500_000 * UNIT)
    bounded.warp(bounded.block_time(first) + RAISE_DELAY - 10)

    second = set_limits(bounded, brand, 70_000 * UNIT, 300_000 * UNIT)

    effective = bounded.block_time(second) + RAISE_DELAY
    limits = bounded.brand_limits(brand)
    assert (
        limits["pendingPerUsage"],
        limits["pendingPerPeriod"],
        limits["pendingEffectiveAt"],
    ) == (70_000 * UNIT, 300_000 * UNIT, effective)
    bounded.warp(bounded.block_time(first) + RAISE_DELAY + 1)  # the first raise's time
    assert bounded.brand_limits(brand)["perUsage"] == PER_USAGE
    bounded.warp(effective + 1)  # views run in the latest block: at ``effective``
    assert bounded.brand_limits(brand)["perUsage"] == 70_000 * UNIT


def test_raising_one_limit_and_lowering_the_other_waits_as_a_raise(
    bounded: Ledger, brand: LocalAccount
) -> None:
    twin = licensed_twin(bounded, brand, {0: 45_000 * UNIT})
    bounded.deposit(brand, PER_PERIOD)

    receipt = set_limits(bounded, brand, 40_000 * UNIT, 300_000 * UNIT)

    effective = bounded.block_time(receipt) + RAISE_DELAY
    assert bounded.events(receipt, "SpendingLimitsSet")[0]["effectiveAt"] == effective
    assert settle_uses(bounded, brand, twin, [(0, 1)])[:2] == ([Outcome.PAID], 45_000 * UNIT)
    bounded.warp(effective)
    assert settle_uses(bounded, brand, twin, [(0, 1)])[:2] == ([Outcome.OVER_USAGE_LIMIT], 0)


def test_a_lowering_applies_at_once_and_drops_a_waiting_raise(
    bounded: Ledger, brand: LocalAccount
) -> None:
    twin = licensed_twin(bounded, brand, {0: 10_000 * UNIT + 1})
    bounded.deposit(brand, PER_PERIOD)
    raised = set_limits(bounded, brand, 100_000 * UNIT, 500_000 * UNIT)

    receipt = set_limits(bounded, brand, 10_000 * UNIT, 20_000 * UNIT)

    assert bounded.events(receipt, "SpendingLimitsSet") == [
        {
            "brand": brand.address,
            "perUsage": 10_000 * UNIT,
            "perPeriod": 20_000 * UNIT,
            "effectiveAt": bounded.block_time(receipt),
        }
    ]
    bounded.warp(bounded.block_time(raised) + RAISE_DELAY + 10)
    assert bounded.brand_limits(brand) == {
        "perUsage": 10_000 * UNIT,
        "perPeriod": 20_000 * UNIT,
        "spentInPeriod": 0,
        "periodStart": period_start(bounded),
        "pendingPerUsage": 0,
        "pendingPerPeriod": 0,
        "pendingEffectiveAt": 0,
        "attester": ZERO,
    }
    assert settle_uses(bounded, brand, twin, [(0, 1)])[:2] == ([Outcome.OVER_USAGE_LIMIT], 0)
    other = bounded.actors.brands[1]
    assert (bounded.brand_limits(other)["perUsage"], bounded.brand_limits(other)["perPeriod"]) == (
        PER_USAGE,
        PER_PERIOD,
    )


# ---------------------------------------------------------------------- codes


@pytest.mark.parametrize(
    ("requested", "kept"),
    [
        (2**28 - 1, 2**28 - 1),
        (2**28, 268_435_450),
        (123_456_789_123, 123_456_789_000),
        (987_654_321_987_654, 987_654_320_000_000),
        (10**40, LIMIT_MAX),
    ],
)
def test_limits_are_kept_rounded_down_to_a_28_bit_mantissa(
    bounded: Ledger, brand: LocalAccount, requested: int, kept: int
) -> None:
    receipt = set_limits(bounded, brand, requested, requested)

    [event] = bounded.events(receipt, "SpendingLimitsSet")
    assert (event["perUsage"], event["perPeriod"]) == (kept, kept)
    bounded.advance(RAISE_DELAY)
    limits = bounded.brand_limits(brand)
    assert (limits["perUsage"], limits["perPeriod"]) == (kept, kept)


def test_the_rounded_limit_is_the_one_that_binds(bounded: Ledger, brand: LocalAccount) -> None:
    kept = 123_456_789_000
    twin = licensed_twin(bounded, brand, {0: kept + 1, 1: kept})
    bounded.deposit(brand, 10 * kept)
    receipt = set_limits(bounded, brand, 123_456_789_123, 987_654_321_987_654)
    bounded.warp(bounded.block_time(receipt) + RAISE_DELAY)

    outcomes, paid, _ = settle_uses(bounded, brand, twin, [(0, 1), (1, 1)])

    assert outcomes == [Outcome.OVER_USAGE_LIMIT, Outcome.PAID]
    assert paid == kept


@pytest.mark.parametrize(("per_usage", "per_period"), [(0, 1), (2, 1), (0, 0)])
def test_limits_must_be_positive_and_per_usage_at_most_per_period(
    bounded: Ledger, brand: LocalAccount, per_usage: int, per_period: int
) -> None:
    with bounded.reverts("SpendingLimitsInvalid", per_usage, per_period):
        bounded.fn.setSpendingLimits(per_usage, per_period).transact({"from": brand.address})
