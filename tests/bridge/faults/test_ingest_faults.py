"""Scenarios 1 and 2: usage events at the door, on a real anvil and a real store.

1. The same event id twice: in one batch, across batches, and across two API processes
   (``python -m bridge serve``) on one database at the same moment: stored once, answered with
   one usage id, settled once.
2. The store write fails after the event passed every check (the session's commit raises once):
   the brand client's retry stores the usage once, never zero times.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from bridge.api import create_app
from bridge.chain.views import Web3LicenseView
from bridge.client import BridgeClient, RetryPolicy, usage_event
from bridge.store.models import UsageStatus
from bridge.testing import free_port

from .rig import REPO_ROOT, Rig

pytestmark = pytest.mark.faults


def _event(rig: Rig, event_id: str, brand: int, index: int, used_at: int) -> dict[str, Any]:
    twin, usage_type = rig.licensed(brand, 10)[index % 10]
    return {
        "event_id": event_id,
        "twin_id": twin,
        "usage_type": usage_type,
        "quantity": 1 + index % 3,
        "used_at": datetime.fromtimestamp(used_at, UTC).isoformat(),
    }


@contextmanager
def _api_process(rig: Rig) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_BRIDGE_")}
    env.update(
        {
            "TWIN_BRIDGE_DATA_DIR": str(rig.tmp / f"api-{port}"),
            "TWIN_BRIDGE_DATABASE_URL": rig.db_url,
            "TWIN_BRIDGE_RPC_URL": rig.url,
            "TWIN_BRIDGE_LEDGER_ADDRESS": rig.world.ledger.address,
            "TWIN_BRIDGE_RATE_LIMIT_PER_S": "10000",
            "TWIN_BRIDGE_RATE_LIMIT_BURST": "10000",
            # The benchmark's world runs an hour ahead of the wall clock.
            "TWIN_BRIDGE_USAGE_MAX_AHEAD": "PT2H",
            "PYTHONPATH": str(REPO_ROOT),
        }
    )
    command = [sys.executable, "-m", "bridge", "serve", "--port", str(port)]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, log.seek(0) or log.read().decode()
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the API did not start"
                time.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_the_same_event_id_twice_in_a_batch_across_batches_and_across_two_api_processes_is_stored_once(  # noqa: E501
    rig: Rig,
) -> None:
    now = rig.now()
    auth = {"Authorization": f"Bearer {rig.api_keys[0]}"}
    with ExitStack() as stack:
        one = stack.enter_context(_api_process(rig))
        two = stack.enter_context(_api_process(rig))

        # In one batch: the second copy is answered as a duplicate of the first.
        dup = _event(rig, "dup-in-batch", 0, 0, now - 60)
        other = _event(rig, "other", 0, 1, now - 60)
        answer = httpx.post(
            f"{one}/v1/usage-events", json={"events": [dup, other, dup]}, headers=auth
        )
        assert answer.status_code == 200, answer.text
        results = answer.json()["results"]
        assert [(r["status"], r["replayed"]) for r in results] == [
            ("accepted", False),
            ("accepted", False),
            ("accepted", True),
        ]
        assert results[2]["usage_id"] == results[0]["usage_id"]

        # Across batches, through the other process.
        again = httpx.post(f"{two}/v1/usage-events", json={"events": [dup]}, headers=auth)
        assert [(r["replayed"], r["usage_id"]) for r in again.json()["results"]] == [
            (True, results[0]["usage_id"])
        ]

        # The same 20 events sent to both processes at the same moment, one by one and batched.
        events = [_event(rig, f"race-{i}", 0, i, now - 50 + i) for i in range(20)]
        answers: dict[str, list[tuple[int, int]]] = {e["event_id"]: [] for e in events}
        batch_answers: list[list[dict[str, Any]]] = []
        barrier = threading.Barrier(4)
        lock = threading.Lock()

        def singles(url: str) -> None:
            with httpx.Client(base_url=url, headers=auth) as client:
                barrier.wait()
                for event in events:
                    response = client.post("/v1/usage-events", json=event)
                    with lock:
                        answers[event["event_id"]].append(
                            (response.status_code, response.json()["usage_id"])
                        )

        def batch(url: str) -> None:
            barrier.wait()
            response = httpx.post(
                f"{url}/v1/usage-events", json={"events": events[::-1]}, headers=auth
            )
            assert response.status_code == 200, response.text
            with lock:
                batch_answers.append(response.json()["results"])

        threads = [
            threading.Thread(target=send, args=(url,))
            for send in (singles, batch)
            for url in (one, two)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

    stored = {u.event_id: u.usage_id for u in rig.usages().values()}
    assert len(stored) == 22  # dup-in-batch, other and the 20 raced events
    for event_id, seen in answers.items():
        assert len(seen) == 2
        assert {usage_id for _, usage_id in seen} == {stored[event_id]}
        assert {status for status, _ in seen} <= {200, 202}
    accepted = sum(status == 202 for seen in answers.values() for status, _ in seen)
    for results in batch_answers:
        assert {(r["event_id"], r["usage_id"]) for r in results} == {
            (e["event_id"], stored[e["event_id"]]) for e in events
        }
        accepted += sum(not r["replayed"] for r in results)
    assert accepted == 20  # each raced event accepted by exactly one of the four requests

    rig.settle(rig.worker())
    summary = rig.audit()
    assert (summary["usages"], summary["usages_paid"]) == (22, 22)


def test_a_store_write_failing_after_the_checks_is_counted_once_by_the_retry(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    licenses = Web3LicenseView(rig.w3, rig.world.ledger, ttl=0, rpc_url=rig.url)
    api = create_app(rig.settings(), store=rig.store, chain=licenses, ingestor=rig.ingestor)
    commit = Session.commit
    failures: list[str] = []

    def commit_failing_once(session: Session) -> None:
        """The commit of the usage rows fails once (after the license check, in the insert)."""
        caller = sys._getframe(1).f_code.co_name
        if caller == "insert_brand_usages" and not failures:
            failures.append(caller)
            raise OperationalError("COMMIT", {}, Exception("disk I/O error"))
        commit(session)

    now = rig.now()
    event = usage_event(
        "write-fails-once",
        twin_id=rig.licensed(1, 1)[0][0],
        usage_type=rig.licensed(1, 1)[0][1],
        quantity=2,
        used_at=datetime.fromtimestamp(now - 30, UTC),
    )
    with TestClient(api, raise_server_exceptions=False) as test_client:
        sleeps: list[float] = []
        client = BridgeClient(
            "http://testserver",
            rig.api_keys[1],
            retry=RetryPolicy(max_attempts=3, initial_wait=0.01),
            transport=test_client._transport,
            sleep=sleeps.append,
        )
        monkeypatch.setattr(Session, "commit", commit_failing_once)
        result = client.submit(event)
        monkeypatch.setattr(Session, "commit", commit)
        assert failures == ["insert_brand_usages"]
        assert len(sleeps) == 1  # the first attempt failed and was retried
        assert result.status == "accepted"
        [usage] = rig.usages().values()
        assert (usage.usage_id, usage.event_id, usage.status) == (
            result.usage_id,
            "write-fails-once",
            UsageStatus.ACCEPTED,
        )
        # Once more, as a client that never heard the answer would: the same usage.
        assert client.submit(event).replayed
        assert len(rig.usages()) == 1

    rig.settle(rig.worker())
    summary = rig.audit()
    assert (summary["usages"], summary["usages_paid"]) == (1, 1)
