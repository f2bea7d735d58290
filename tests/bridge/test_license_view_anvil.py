"""``Web3LicenseView.check_usages`` against the ledger on a real anvil: many usages in one JSON-RPC
batch, answered in order like one ``check_usage`` each, then from the cache; a payable usage dated
before the answering block stays cached past the TTL. The batch's pooled HTTP connection: answers
after the node closed it; a refused connection or a bad answer is ``ChainUnavailableError``."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
import urllib3
from eth_account import Account
from web3 import Web3

from bridge.chain.views import Web3LicenseView
from bridge.domain.codec import Outcome
from bridge.errors import ChainUnavailableError
from bridge.testing import World, free_port, local_anvil, setup

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
    # the latest block, priceAt and isPausedAt per distinct usage, brandLimits of the brand
    assert batches == [10]
    stranger = Web3.to_checksum_address("0x" + "ab" * 20)
    assert (
        view.check_usage(brand=stranger, twin_id=twin, usage_type=priced, used_at=now)
        is Outcome.NO_LICENSE
    )
    assert batches == [10, 4]
    assert view.check_usages(brand=world.brands[brand].lower(), usages=usages) == expected
    assert batches == [10, 4]  # all cached


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
    assert batches == [6]
    now[0] = 10.0  # the TTL is up: only the usage ahead of the chain (and the limit) is asked again
    assert view.check_usages(brand=world.brands[brand], usages=usages) == [Outcome.PAID] * 2
    assert batches == [6, 4]


def test_a_verdict_carries_the_price_and_the_brands_limit_per_usage(world: World) -> None:
    """The limit per usage in force (``brandLimits``) with each verdict: a usage whose price times
    quantity passes it is ``OVER_USAGE_LIMIT``, as the ledger would settle it; a lowering counts
    at once."""
    w3 = world.w3
    url = w3.provider.endpoint_uri  # type: ignore[attr-defined]
    view = Web3LicenseView(w3, world.ledger, ttl=0, rpc_url=url)
    (twin, brand), plan = next(iter(world.licenses.items()))
    address = world.brands[brand]
    priced = min(plan.prices)
    price = plan.prices[priced]
    now = int(w3.eth.get_block("latest")["timestamp"])
    limit = int(world.ledger.functions.brandLimits(address).call()[0])
    [verdict] = view.check_many([(address, twin, priced, now - 1)])
    assert verdict == (Outcome.PAID, price, limit, None)
    assert verdict.outcome_for(limit // price) is Outcome.PAID
    assert verdict.outcome_for(limit // price + 1) is Outcome.OVER_USAGE_LIMIT

    w3.eth.wait_for_transaction_receipt(
        world.ledger.functions.setSpendingLimits(2 * price, 10 * price).transact({"from": address})
    )
    [lowered] = view.check_many([(address, twin, priced, now - 1)])
    assert lowered == (Outcome.PAID, price, 2 * price, None)
    assert [lowered.outcome_for(q) for q in (1, 2, 3)] == [
        Outcome.PAID, Outcome.PAID, Outcome.OVER_USAGE_LIMIT,
    ]  # fmt: skip
    [unlicensed] = view.check_many([(address, 999, priced, now - 1)])
    assert unlicensed == (Outcome.UNKNOWN_TWIN, 0, 2 * price, None)
    assert unlicensed.outcome_for(10**6) is Outcome.UNKNOWN_TWIN

    own = Account.create().address
    w3.eth.wait_for_transaction_receipt(
        world.ledger.functions.setBrandAttester(own).transact({"from": address})
    )
    [attested] = view.check_many([(address, twin, priced, now - 1)])
    assert attested == (Outcome.PAID, price, 2 * price, own)


# ---------------------------------------------------------------- the pooled HTTP connection


@dataclass
class RpcStub:
    """A local JSON-RPC endpoint in a thread: ``answer(body)`` gives the status and body of each
    POST, or ``None`` to close the connection without answering. Counts connections and what it
    answered and dropped."""

    answer: Callable[[bytes, int], tuple[int, bytes] | None]
    """Called with the request body and the number of requests before it on its connection."""
    close_after_answer: bool = False
    """Close each connection once it has answered (without ``Connection: close``)."""
    connections: int = 0
    answered: list[bytes] = field(default_factory=list)
    dropped: list[bytes] = field(default_factory=list)
    url: str = ""

    @contextmanager
    def running(self) -> Iterator[RpcStub]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            served = 0

            def setup(self) -> None:
                super().setup()
                stub.connections += 1

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                reply = stub.answer(body, self.served)
                self.served += 1
                if reply is None:
                    stub.dropped.append(body)
                    self.close_connection = True
                    return
                status, data = reply
                stub.answered.append(body)  # before the answer: the client may act on it at once
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                self.close_connection = stub.close_after_answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)


def forward_to(url: str) -> Callable[[bytes], tuple[int, bytes]]:
    def forward(body: bytes) -> tuple[int, bytes]:
        request = urllib.request.Request(  # noqa: S310 - the test's anvil
            url, data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, response.read()

    return forward


def _usages(world: World) -> tuple[str, list[tuple[int, int, int]], list[Outcome]]:
    """A brand, three usages ahead of the chain (asked again, never cached for good) and their
    outcomes."""
    (twin, brand), plan = next(iter(world.licenses.items()))
    unlicensed = next(t for t in range(4) if t not in plan.prices)
    ahead = int(world.w3.eth.get_block("latest")["timestamp"]) + 120
    usages = [(twin, min(plan.prices), ahead), (twin, unlicensed, ahead), (999, 0, ahead)]
    outcomes = [Outcome.PAID, Outcome.USAGE_TYPE_NOT_LICENSED, Outcome.UNKNOWN_TWIN]
    return world.brands[brand], usages, outcomes


@pytest.mark.parametrize("closed", ["idle, after answering", "on the next request, unanswered"])
def test_the_pooled_connection_answers_after_the_node_closed_it(world: World, closed: str) -> None:
    anvil = forward_to(world.w3.provider.endpoint_uri)  # type: ignore[attr-defined]
    if closed == "idle, after answering":
        stub = RpcStub(lambda body, _before: anvil(body), close_after_answer=True)
    else:  # the node closes a kept-alive connection as the next request arrives on it
        stub = RpcStub(lambda body, before: None if before else anvil(body))
    brand, usages, outcomes = _usages(world)
    with stub.running():
        view = Web3LicenseView.connect(stub.url, world.ledger.address, ttl=0)
        for usage, outcome in zip(usages, outcomes, strict=True):
            assert view.check_usages(brand=brand, usages=[usage]) == [outcome]
            if stub.close_after_answer:  # closed before the next request is sent
                time.sleep(0.05)
    # One batch a usage (the latest block, priceAt, isPausedAt, brandLimits), each on a new
    # connection.
    assert [len(orjson.loads(body)) for body in stub.answered] == [4, 4, 4]
    assert stub.connections == 3
    if stub.close_after_answer:
        assert stub.dropped == []  # the pool saw the connection closed before using it
    else:
        assert stub.dropped == stub.answered[1:]  # sent once more, on a fresh connection


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (500, b"boom", "HTTP 500: b'boom'"),
        (
            200,
            b'{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"no batches"}}',
            "batch answered {'jsonrpc': '2.0', 'id': None, "
            "'error': {'code': -32600, 'message': 'no batches'}}",
        ),
        (
            200,
            b'[{"jsonrpc":"2.0","id":0,"result":{"timestamp":"0x10"}},'
            b'{"jsonrpc":"2.0","id":2,"result":"0x"},'
            b'{"jsonrpc":"2.0","id":3,"result":"0x"},'
            b'{"jsonrpc":"2.0","id":1,"error":{"code":3,"message":"execution reverted"}}]',
            "1 failed: {'code': 3, 'message': 'execution reverted'}",
        ),
        (
            200,
            b'[{"jsonrpc":"2.0","id":0,"result":{"timestamp":"0x10"}}]',
            "batch answered [{'jsonrpc': '2.0', 'id': 0, 'result': {'timestamp': '0x10'}}]",
        ),
    ],
    ids=["http-500", "not-a-list", "error-member", "short-batch"],
)
def test_a_bad_answer_is_the_chain_unavailable(
    world: World, status: int, body: bytes, reason: str
) -> None:
    stub = RpcStub(lambda _body, _before: (status, body))
    brand, usages, _outcomes = _usages(world)
    with stub.running():
        view = Web3LicenseView.connect(stub.url, world.ledger.address, ttl=60)
        for asked in (1, 2):  # nothing cached from a bad answer
            with pytest.raises(ChainUnavailableError) as caught:
                view.check_usages(brand=brand, usages=usages[:1])
            assert (caught.value.rpc_url, caught.value.reason) == (stub.url, reason)
            assert str(caught.value) == f"chain at {stub.url} unavailable: {reason}"
            assert len(stub.answered) == asked  # no retry
    assert stub.connections == 1


def test_an_answer_that_is_not_json_is_the_chain_unavailable(world: World) -> None:
    stub = RpcStub(lambda _body, _before: (200, b"<html>gateway</html>"))
    brand, usages, _outcomes = _usages(world)
    with stub.running():
        view = Web3LicenseView.connect(stub.url, world.ledger.address, ttl=60)
        with pytest.raises(ChainUnavailableError) as caught:
            view.check_usages(brand=brand, usages=usages[:1])
    assert caught.value.rpc_url == stub.url
    assert isinstance(caught.value.__cause__, orjson.JSONDecodeError)
    assert caught.value.reason == str(caught.value.__cause__)
    assert len(stub.answered) == 1


def test_connection_refused_is_the_chain_unavailable(world: World) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    brand, usages, _outcomes = _usages(world)
    view = Web3LicenseView.connect(url, world.ledger.address, ttl=60)
    with pytest.raises(ChainUnavailableError) as caught:
        view.check_usages(brand=brand, usages=usages)
    assert caught.value.rpc_url == url
    assert isinstance(caught.value.__cause__, urllib3.exceptions.MaxRetryError)
    assert isinstance(caught.value.__cause__.reason, urllib3.exceptions.NewConnectionError)
    assert "Connection refused" in caught.value.reason
    assert str(caught.value) == f"chain at {url} unavailable: {caught.value.reason}"
