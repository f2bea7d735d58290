"""``Web3LicenseView.check_usages`` against the ledger on a real anvil: many usages in one JSON-RPC
batch, answered in order like one ``check_usage`` each, then from the cache; a payable usage dated
before the answering block stays cached past the TTL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from web3 import Web3

from bridge.chain.views import Web3LicenseView
from bridge.codec import Outcome
from scripts.bench_gas import World, local_anvil, setup

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with local_anvil() as w3:
        yield setup(w3)


def test_check_usages_asks_once_in_one_batch_and_answers_in_order(world: World) -> None:
    w3 = world.w3
    url = w3.provider.endpoint_uri  # type: ignore[attr-defined]
    view = Web3LicenseView(w3, world.ledger, ttl=60, rpc_url=url)
    batches: list[int] = []
    post_batch = view._post_batch

    def counting(requests: list[tuple[Any, Any]]) -> Any:
        batches.append(len(requests))
        return post_batch(requests)

    view._post_batch = counting  # type: ignore[method-assign]
    (twin, brand), plan = next(iter(world.licenses.items()))
    paused = next(t for t in world.twin_ids if t != twin)
    unlicensed = next(t for t in range(4) if t not in plan.prices)
    owner = world.ledger.functions.ownerOf(paused).call()
    w3.eth.wait_for_transaction_receipt(
        world.ledger.functions.setTwinPaused(paused, True).transact({"from": owner})
    )
    now = int(w3.eth.get_block("latest")["timestamp"])
    priced = min(plan.prices)
    paused_type = min(world.licenses[paused, brand].prices)
    usages = [
        (twin, priced, now),
        (twin, unlicensed, now),
        (999, priced, now),
        (paused, paused_type, now),
        (twin, priced, now),  # asked once
    ]
    expected = [
        Outcome.PAID,
        Outcome.USAGE_TYPE_NOT_LICENSED,
        Outcome.UNKNOWN_TWIN,
        Outcome.TWIN_PAUSED,
        Outcome.PAID,
    ]

    assert view.check_usages(brand=world.brands[brand], usages=usages) == expected
    assert batches == [9]  # the latest block, then priceAt and isPausedAt per distinct usage
    stranger = Web3.to_checksum_address("0x" + "ab" * 20)
    assert (
        view.check_usage(brand=stranger, twin_id=twin, usage_type=priced, used_at=now)
        is Outcome.NO_LICENSE
    )
    assert batches == [9, 3]
    assert view.check_usages(brand=world.brands[brand].lower(), usages=usages) == expected
    assert batches == [9, 3]  # all cached


def test_a_payable_usage_before_the_answering_block_outlives_the_ttl(world: World) -> None:
    w3 = world.w3
    now = [0.0]
    url = w3.provider.endpoint_uri  # type: ignore[attr-defined]
    view = Web3LicenseView(w3, world.ledger, ttl=10, rpc_url=url, clock=lambda: now[0])
    batches: list[int] = []
    post_batch = view._post_batch

    def counting(requests: list[tuple[Any, Any]]) -> Any:
        batches.append(len(requests))
        return post_batch(requests)

    view._post_batch = counting  # type: ignore[method-assign]
    (twin, brand), plan = next(iter(world.licenses.items()))
    chain_now = int(w3.eth.get_block("latest")["timestamp"])
    priced = min(plan.prices)
    past, ahead = (twin, priced, chain_now - 1), (twin, priced, chain_now + 120)
    usages = [past, ahead]
    assert view.check_usages(brand=world.brands[brand], usages=usages) == [Outcome.PAID] * 2
    now[0] = 9.9
    assert view.check_usages(brand=world.brands[brand], usages=usages) == [Outcome.PAID] * 2
    assert batches == [5]
    now[0] = 10.0  # the TTL is up: only the usage ahead of the chain is asked again
    assert view.check_usages(brand=world.brands[brand], usages=usages) == [Outcome.PAID] * 2
    assert batches == [5, 3]
