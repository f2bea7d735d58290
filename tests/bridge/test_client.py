"""``bridge.client``: retries on a mock transport, and the real API served by uvicorn."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import update

from bridge.api import create_app
from bridge.client import (
    BridgeApiError,
    BridgeClient,
    EventConflictError,
    RetryableError,
    RetryPolicy,
    SettlementTimeoutError,
    SubmitResult,
    usage_event,
)
from bridge.intake.ingest import Ingestor
from bridge.settings import Settings
from bridge.store.models import UsageEvent, UsageStatus
from bridge.store.repository import Store

from .conftest import BRAND_ADDRESS, NOW, TWIN, Clock, register_brand
from .fakes import FakeLicenseView

ACCEPTED = {"event_id": "e-1", "status": "accepted", "usage_id": 1}


def event(event_id: str = "e-1", **changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "twin_id": TWIN,
        "usage_type": "campaign_image",
        "quantity": 1,
        "used_at": datetime(2026, 3, 1, 11, tzinfo=UTC),
    }
    fields.update(changes)
    return usage_event(event_id, **fields)


# ---------------------------------------------------------------- retries (mock transport)


def mock_client(
    handler: Callable[[httpx.Request], httpx.Response], sleeps: list[float]
) -> BridgeClient:
    return BridgeClient(
        "http://bridge.test",
        "tb_live_k",
        transport=httpx.MockTransport(handler),
        retry=RetryPolicy(max_attempts=4, initial_wait=0.1, max_wait=2.0),
        sleep=sleeps.append,
    )


def test_retries_network_errors_and_5xx_then_succeeds() -> None:
    answers: list[Callable[[httpx.Request], httpx.Response]] = [
        lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused", request=r)),
        lambda r: httpx.Response(503, json={"detail": "down"}),
        lambda r: httpx.Response(202, json=ACCEPTED),
    ]
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        assert request.headers["authorization"] == "Bearer tb_live_k"
        return answers.pop(0)(request)

    sleeps: list[float] = []
    with mock_client(handler, sleeps) as client:
        result = client.submit(event())
    assert result == SubmitResult("e-1", "accepted", usage_id=1)
    assert len(seen) == 3
    assert len(set(seen)) == 1  # the same body (the same event id) each time
    assert len(sleeps) == 2


def test_429_waits_for_retry_after() -> None:
    answers = [
        httpx.Response(429, headers={"Retry-After": "1"}, json={"detail": "slow down"}),
        httpx.Response(202, json=ACCEPTED),
    ]
    sleeps: list[float] = []
    with mock_client(lambda r: answers.pop(0), sleeps) as client:
        assert client.submit(event()).status == "accepted"
    assert sleeps == [1.0]


def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(500, json={"detail": "boom"})

    sleeps: list[float] = []
    with mock_client(handler, sleeps) as client, pytest.raises(RetryableError) as caught:
        client.submit(event())
    assert (caught.value.status, str(caught.value)) == (500, "bridge answered 500: boom")
    assert len(calls) == 4
    assert len(sleeps) == 3
    assert all(0 < s <= 2.0 for s in sleeps)


def test_4xx_is_not_retried() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(401, json={"detail": "a valid API key is required"})

    with mock_client(handler, []) as client, pytest.raises(BridgeApiError) as caught:
        client.status("e-1")
    assert caught.value.status == 401
    assert len(calls) == 1


def test_wait_for_settlement_times_out_with_the_last_status() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    client = BridgeClient(
        "http://bridge.test",
        "k",
        transport=httpx.MockTransport(
            lambda r: httpx.Response(200, json={"event_id": "e-1", "status": "submitted"})
        ),
        sleep=sleep,
    )
    with client, pytest.raises(SettlementTimeoutError) as caught:
        client.wait_for_settlement("e-1", timeout=3, poll_interval=1, clock=lambda: now[0])
    assert str(caught.value) == "event 'e-1' still submitted after 3 s"
    assert now[0] == 3


def test_usage_event_needs_a_time_zone() -> None:
    with pytest.raises(ValueError, match="time zone"):
        usage_event(
            "e",
            twin_id=1,
            usage_type=0,
            quantity=1,
            used_at=datetime(2026, 1, 1),
        )


# ---------------------------------------------------------------- against uvicorn


class ServedApi:
    def __init__(self, url: str, store: Store, key: str) -> None:
        self.url = url
        self.store = store
        self.key = key


@pytest.fixture
def served(settings: Settings, license_view: FakeLicenseView) -> Iterator[ServedApi]:
    store = Store.from_url(settings.resolved_database_url)
    ingestor = Ingestor(settings=settings, licenses=license_view, clock=Clock(NOW))
    app = create_app(settings, store=store, chain=license_view, ingestor=ingestor)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    _, key = register_brand(store, "Atelier", BRAND_ADDRESS)
    try:
        yield ServedApi(f"http://127.0.0.1:{port}", store, key)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        store.close()


def test_client_against_the_served_api(served: ServedApi) -> None:
    with BridgeClient(served.url, served.key) as client:
        assert client.submit(event()) == SubmitResult("e-1", "accepted", usage_id=1)
        assert client.submit(event()) == SubmitResult("e-1", "accepted", 1, replayed=True)
        with pytest.raises(EventConflictError) as conflict:
            client.submit(event(quantity=2))
        assert conflict.value.problem["code"] == "event_id_conflict"
        refused = client.submit(event("e-2", twin_id=99))
        assert refused == SubmitResult(
            "e-2", "refused", code="unknown_twin", sentence="the twin does not exist"
        )
        batch = client.submit_batch([event("e-1"), event("e-3"), event("e-4", quantity=0)])
        assert [(r.event_id, r.status, r.usage_id, r.replayed, r.code) for r in batch] == [
            ("e-1", "accepted", 1, True, None),
            ("e-3", "accepted", 2, False, None),
            ("e-4", "refused", None, False, "quantity_out_of_range"),
        ]
        assert client.status("e-3")["status"] == "accepted"
        with pytest.raises(BridgeApiError) as missing:
            client.status("nope")
        assert missing.value.status == 404


def test_wait_for_settlement_returns_the_settled_status(served: ServedApi) -> None:
    tx = "0x" + "ef" * 32

    def settle_soon() -> None:
        time.sleep(0.3)
        with served.store.session() as session:
            session.execute(
                update(UsageEvent).values(
                    status=UsageStatus.SETTLED, tx_hash=tx, block_number=5, log_index=1, amount=10
                )
            )
            session.commit()

    with BridgeClient(served.url, served.key) as client:
        client.submit(event())
        settler = threading.Thread(target=settle_soon)
        settler.start()
        status = client.wait_for_settlement("e-1", timeout=10, poll_interval=0.05)
        settler.join()
    assert (status["status"], status["tx_hash"], status["block_number"], status["amount"]) == (
        "settled",
        tx,
        5,
        "10",
    )
