"""Scenario 4: the RPC node goes away and comes back. The worker's RPC list is a proxy in front of
anvil, then anvil itself: with the proxy down the second URL takes over; with anvil itself
stopped mid-send (it writes its ``--state`` file) and started again from that state, the worker
keeps retrying both and settles every usage once when the node is back."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.chain.client import Web3ChainClient
from bridge.store.models import BatchStatus, UsageStatus
from bridge.testing import Anvil, AnvilOptions, Proxy, rpc

from .conftest import Chain, start_world
from .rig import Rig

pytestmark = pytest.mark.faults


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[Chain, Proxy]]:
    anvil = Anvil(AnvilOptions(state=tmp_path / "anvil-state.json"))
    proxy = Proxy(anvil.port)
    try:
        chain = start_world(anvil)
        proxy.up()
        yield chain, proxy
    finally:
        proxy.down()
        anvil.close()


@pytest.mark.parametrize("point", ["after_signing", "after_sending", "before_receipt"])
def test_the_node_going_away_mid_send_and_a_second_url_taking_over_lose_and_repeat_nothing(
    node: tuple[Chain, Proxy], db_url: str, tmp_path: Path, point: str
) -> None:
    chain, proxy = node
    rig = Rig.build(w3=chain.w3, url=chain.url, world=chain.world, db_url=db_url, tmp=tmp_path)
    armed = threading.Event()
    restarted = threading.Event()

    def node_goes_away(at: str) -> None:
        if at == point and armed.is_set():
            armed.clear()
            rpc(chain.w3, "evm_mine")  # the batch's block is no longer the newest
            chain.anvil.stop()  # SIGTERM: anvil writes its state file and exits

            def back() -> None:
                chain.anvil.start()  # from its state file
                restarted.set()

            threading.Timer(1.0, back).start()

    client = Web3ChainClient([proxy.url, chain.url], timeout=2, backoff=0, attempts=2)
    worker = rig.worker(client=client, crash_point=node_goes_away)
    try:
        # The first URL goes down: the second one takes over.
        proxy.down()
        now = rig.now()
        first = rig.accept(0, *[(t, u, 1, now - 30) for t, u in rig.licensed(0, 3)])
        n = rig.nonce()
        rig.settle(worker)
        assert client.current_url == chain.url
        proxy.up()

        # The node itself goes away mid-send and comes back from its state.
        second = rig.accept(1, *[(t, u, 2, now - 20) for t, u in rig.licensed(1, 3)])
        armed.set()
        stop = threading.Event()
        runner = threading.Thread(target=worker.run, args=(stop,))
        runner.start()
        try:
            rig.wait_until(restarted.is_set, "anvil to come back from its state")
            rig.wait_until(lambda: not rig.open_usages(), "the worker to settle after the restart")
        finally:
            stop.set()
            runner.join(timeout=30)
    finally:
        worker.release()

    batches = rig.batches()
    assert [(b.status, b.nonce) for b in batches] == [
        (BatchStatus.CONFIRMED, n),
        (BatchStatus.CONFIRMED, n + 1),
    ]
    assert rig.nonce() == n + 2
    usages = rig.usages()
    assert {usages[i].tx_hash for i in first} == {batches[0].tx_hash}
    assert {usages[i].tx_hash for i in second} == {batches[1].tx_hash}
    assert {i: (u.status, u.reason_code) for i, u in usages.items()} == dict.fromkeys(
        first + second, (UsageStatus.SETTLED, None)
    )
    summary = rig.audit(url=proxy.url)
    assert (summary["usages"], summary["usages_paid"], summary["batches"]) == (6, 6, 2)
