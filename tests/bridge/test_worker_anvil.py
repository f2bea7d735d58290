"""The settlement worker against a real anvil (Prague) with the deployed ledger: usages accepted
through the ingest layer settle on chain, a license revoked after acceptance comes back rejected,
and a worker that dies between signing and sending is replaced without paying anything twice.

Anvil, the ledger and its twins, licenses and escrow are set up once per module (the gas
benchmark's setup) and each test runs from an ``evm_snapshot`` of that state."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_utils.crypto import keccak
from web3.logs import DISCARD

from bridge.chain.client import Web3ChainClient
from bridge.chain.ledger import USAGES_SETTLED_TOPIC, settle_calldata
from bridge.chain.views import Web3LicenseView
from bridge.domain import eip712
from bridge.domain.codec import Outcome, Usage
from bridge.domain.money import token_amount
from bridge.domain.usage import UsageType
from bridge.errors import NonceTooLowError, ReplacementUnderpricedError
from bridge.intake.ingest import Ingestor, ItemStatus, UsageReport
from bridge.settings import Settings
from bridge.settlement.worker import SettlementWorker, WorkerConfig
from bridge.store import migrate
from bridge.store.models import BatchStatus, SettlementBatch, UsageStatus
from bridge.store.repository import BrandRecord, Store, StoredUsage, create_brand
from bridge.store.settlement import chain_time, lease_holder
from bridge.testing import AnvilChain, World
from bridge.testing.settling import settlement_batches, stored_usages, worker_signers
from bridge.testing.world import NOTICE_PERIOD

pytestmark = pytest.mark.integration

RELAYER_KEY = "0x" + keccak(text="twin-bridge worker test relayer").hex()
DEAD_URL = "http://127.0.0.1:9"  # nothing listens on the discard port: the client fails over


class Crash(Exception):
    """The worker process dies here."""


Chain = AnvilChain


@pytest.fixture(scope="module")
def anvil_chain(anvil: AnvilChain) -> AnvilChain:
    anvil.fund(Account.from_key(RELAYER_KEY).address)
    return anvil


@dataclass
class Bridge:
    chain: Chain
    store: Store
    brands: list[BrandRecord]
    ingestor: Ingestor

    def now(self) -> int:
        return int(self.chain.w3.eth.get_block("latest")["timestamp"])

    def accept(self, brand: int, *usages: tuple[int, int, int, int]) -> list[int]:
        """Ingests ``(twin, usage type, quantity, used_at)`` usages of brand ``brand``: ids."""
        reports = [
            UsageReport(
                event_id=f"b{brand}-{twin}-{used_at}-{i}",
                twin_id=twin,
                usage_type=UsageType(usage_type),
                quantity=quantity,
                used_at=datetime.fromtimestamp(used_at, UTC),
            )
            for i, (twin, usage_type, quantity, used_at) in enumerate(usages)
        ]
        with self.store.session() as session:
            results = self.ingestor.ingest(session, brand=self.brands[brand], reports=reports)
        assert [r.status for r in results] == [ItemStatus.ACCEPTED] * len(usages), results
        return [r.usage_id for r in results if r.usage_id is not None]

    def usages(self) -> dict[int, StoredUsage]:
        return stored_usages(self.store)

    def batches(self) -> list[SettlementBatch]:
        return settlement_batches(self.store)

    def worker(self, confirmations: int = 1, **hooks: Any) -> SettlementWorker:
        client = Web3ChainClient([DEAD_URL, self.chain.url], timeout=5, backoff=0)
        chain_id = client.chain_id()
        attester, relayer = worker_signers(
            self.chain.world, chain_id=chain_id, relayer_key=RELAYER_KEY
        )
        return SettlementWorker(
            store=self.store,
            chain=client,
            attester=attester,
            relayer=relayer,
            config=WorkerConfig(
                ledger=self.chain.world.ledger.address,
                batch_size=100,
                confirmations=confirmations,
                max_age=timedelta(0),  # settle at once
            ),
            **hooks,
        )


@pytest.fixture
def bridge(snapshot: Chain, tmp_path: Path) -> Iterator[Bridge]:
    url = f"sqlite:///{tmp_path / 'bridge.db'}"
    migrate.upgrade(url)
    store = Store.from_url(url)
    with store.session() as session:
        brands = [
            create_brand(session, name=f"brand {i}", address=address, api_key_hash=f"{i:064}")
            for i, address in enumerate(snapshot.world.brands)
        ]
    w3 = snapshot.w3
    licenses = Web3LicenseView(w3, snapshot.world.ledger, ttl=0, rpc_url=snapshot.url)

    def chain_clock() -> datetime:
        return datetime.fromtimestamp(int(w3.eth.get_block("latest")["timestamp"]), UTC)

    ingestor = Ingestor(
        settings=Settings(data_dir=tmp_path / "data"), licenses=licenses, clock=chain_clock
    )
    try:
        yield Bridge(snapshot, store, brands, ingestor)
    finally:
        store.close()


def _licensed(world: World, brand: int, count: int) -> list[tuple[int, int]]:
    """``count`` (twin, usage type) pairs the brand holds a license for."""
    pairs = [(twin, min(plan.prices)) for (twin, b), plan in world.licenses.items() if b == brand]
    return pairs[:count]


def _escrow(world: World, brand: int) -> int:
    return int(world.ledger.functions.brandAccount(world.brands[brand]).call()[0])


def _accrued(world: World, twin: int) -> int:
    return int(world.ledger.functions.twinState(twin).call()[0])


def test_accepted_usages_settle_on_chain_and_a_revoked_license_comes_back_rejected(
    bridge: Bridge,
) -> None:
    world = bridge.chain.world
    w3 = bridge.chain.w3
    now = bridge.now()
    (t1, u1), (t2, u2), (t3, u3) = _licensed(world, 0, 3)
    (t4, u4), (t5, u5) = _licensed(world, 1, 2)
    paid_ids = bridge.accept(
        0, (t1, u1, 2, now - 100), (t2, u2, 1, now - 90), (t3, u3, 3, now - 80)
    )
    paid_ids += bridge.accept(1, (t4, u4, 1, now - 70), (t5, u5, 2, now - 60))
    # Accepted while licensed for a use two minutes ahead; then the model revokes the license.
    (revoked_id,) = bridge.accept(0, (t3, u3, 1, now + 120))
    owner = world.ledger.functions.ownerOf(t3).call()
    version = world.ledger.functions.licenseVersionCount(t3, world.brands[0]).call() - 1
    w3.eth.wait_for_transaction_receipt(
        world.ledger.functions.revokeLicense(t3, world.brands[0], version).transact({"from": owner})
    )
    w3.provider.make_request("evm_increaseTime", [300])  # type: ignore[arg-type]
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    twins = {t1, t2, t3, t4, t5}
    escrow_before = [_escrow(world, b) for b in (0, 1)]
    accrued_before = {t: _accrued(world, t) for t in twins}
    assert bridge.worker().run_until_idle() > 0

    [batch] = bridge.batches()
    assert batch.status is BatchStatus.CONFIRMED
    receipt = w3.eth.get_transaction_receipt(batch.tx_hash)
    events = world.ledger.events.UsagesSettled().process_receipt(receipt)
    log_index = {e["args"]["brand"]: e["logIndex"] for e in events}
    usages = bridge.usages()
    for usage_id in paid_ids:
        usage = usages[usage_id]
        brand = world.brands[0] if usage.brand_id == bridge.brands[0].id else world.brands[1]
        plan = world.licenses[usage.twin_id, world.brands.index(brand)]
        assert (usage.status, usage.reason_code) == (UsageStatus.SETTLED, None)
        assert usage.amount == plan.prices[usage.usage_type] * usage.quantity
        assert (usage.tx_hash, usage.block_number, usage.log_index) == (
            batch.tx_hash,
            receipt["blockNumber"],
            log_index[brand],
        )
    rejected = usages[revoked_id]
    assert (rejected.status, rejected.reason_code, rejected.amount) == (
        UsageStatus.REJECTED,
        Outcome.LICENSE_REVOKED,
        None,
    )
    assert (rejected.tx_hash, rejected.log_index) == (batch.tx_hash, log_index[world.brands[0]])

    def paid_by(brand: int) -> int:
        return sum(u.amount or 0 for u in usages.values() if u.brand_id == bridge.brands[brand].id)

    assert [escrow_before[b] - _escrow(world, b) for b in (0, 1)] == [paid_by(0), paid_by(1)]
    for twin in twins:
        earned = sum(u.amount or 0 for u in usages.values() if u.twin_id == twin)
        assert _accrued(world, twin) - accrued_before[twin] == earned
    brand_of = {b.id: b.address for b in bridge.brands}
    assert all(
        world.ledger.functions.isUsageProcessed(brand_of[u.brand_id], i).call()
        for i, u in usages.items()
    )


def test_an_escrow_that_runs_short_mid_batch_pays_in_order_and_the_rest_becomes_debt(
    bridge: Bridge,
) -> None:
    """The brand's escrow covers the first usage and part of the second: the second is split, the
    third owed in full, each as its ``DebtRecorded`` says; the worker records the chain head it
    read for the API's clock."""
    world = bridge.chain.world
    w3 = bridge.chain.w3
    brand = world.brands[0]
    escrow = _escrow(world, 0)
    _wait_ok(w3, world.ledger.functions.requestEscrowWithdrawal(escrow).transact({"from": brand}))
    w3.provider.make_request("evm_increaseTime", [NOTICE_PERIOD + 1])  # type: ignore[arg-type]
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    _wait_ok(w3, world.ledger.functions.withdrawEscrow().transact({"from": brand}))
    pairs = _licensed(world, 0, 3)
    costs = [world.licenses[twin, 0].prices[kind] * 2 for twin, kind in pairs]
    deposit = costs[0] + costs[1] // 3
    _wait_ok(w3, world.token.functions.mint(brand, deposit).transact({"from": brand}))
    _wait_ok(
        w3,
        world.token.functions.approve(world.ledger.address, deposit).transact({"from": brand}),
    )
    _wait_ok(w3, world.ledger.functions.deposit(brand, deposit).transact({"from": brand}))
    assert _escrow(world, 0) == deposit
    now = bridge.now()
    ids = bridge.accept(0, *[(twin, kind, 2, now - 30 + i) for i, (twin, kind) in enumerate(pairs)])

    assert bridge.worker().run_until_idle() > 0

    usages = bridge.usages()
    assert [
        (usages[i].status, usages[i].amount, usages[i].paid_from_escrow, usages[i].recorded_as_debt)
        for i in ids
    ] == [
        (UsageStatus.SETTLED, costs[0], costs[0], 0),
        (UsageStatus.SETTLED, costs[1], costs[1] // 3, costs[1] - costs[1] // 3),
        (UsageStatus.SETTLED, costs[2], 0, costs[2]),
    ]
    [batch] = bridge.batches()
    receipt = w3.eth.get_transaction_receipt(batch.tx_hash)
    debts = world.ledger.events.DebtRecorded().process_receipt(receipt, errors=DISCARD)
    assert [e["args"]["amount"] for e in debts] == [costs[1] - costs[1] // 3, costs[2]]
    assert _escrow(world, 0) == 0
    head = w3.eth.get_block("latest")
    with bridge.store.session() as session:
        assert chain_time(session) == datetime.fromtimestamp(head["timestamp"], UTC)


def _wait_ok(w3: Any, tx: Any) -> None:
    assert w3.eth.wait_for_transaction_receipt(tx)["status"] == 1


def test_a_worker_dead_between_signing_and_sending_is_replaced_without_double_payment(
    bridge: Bridge,
) -> None:
    world = bridge.chain.world
    w3 = bridge.chain.w3
    relayer = Account.from_key(RELAYER_KEY).address
    now = bridge.now()
    ids = bridge.accept(0, *[(t, u, 1, now - 50) for t, u in _licensed(world, 0, 4)])
    escrow_before = _escrow(world, 0)
    nonce_before = w3.eth.get_transaction_count(relayer)

    def crash(point: str) -> None:
        if point == "after_signing":
            raise Crash(point)

    with pytest.raises(Crash):
        bridge.worker(crash_point=crash).run_until_idle()
    [signed] = bridge.batches()
    assert (signed.status, signed.nonce) == (BatchStatus.SIGNED, nonce_before)
    assert w3.eth.get_transaction_count(relayer) == nonce_before  # nothing went out

    # A new process: it waits out the dead worker's lease (its clock is past it), then resumes.
    later = datetime.now(UTC) + timedelta(minutes=1)
    bridge.worker(clock=lambda: later).run_until_idle()
    [batch] = bridge.batches()
    assert (batch.status, batch.nonce, batch.tx_hash) == (
        BatchStatus.CONFIRMED,
        nonce_before,
        signed.tx_hash,
    )
    assert w3.eth.get_transaction_count(relayer) == nonce_before + 1  # exactly one transaction
    assert w3.eth.get_transaction(batch.tx_hash)["nonce"] == nonce_before
    usages = bridge.usages()
    assert [usages[i].status for i in ids] == [UsageStatus.SETTLED] * 4
    assert escrow_before - _escrow(world, 0) == sum(usages[i].amount or 0 for i in ids)

    # The node's own words for a resend of a mined transaction: "possibly mined".
    client = Web3ChainClient([bridge.chain.url])
    with pytest.raises(NonceTooLowError):
        client.send_raw_transaction(bytes.fromhex(batch.raw_tx))


def test_the_web3_client_reads_blocks_transactions_and_ledger_logs(bridge: Bridge) -> None:
    world = bridge.chain.world
    now = bridge.now()
    bridge.accept(1, *[(t, u, 1, now - 30) for t, u in _licensed(world, 1, 2)])
    bridge.worker().run_until_idle()
    [batch] = bridge.batches()

    client = Web3ChainClient([bridge.chain.url])
    latest = client.block("latest")
    assert latest is not None
    assert client.block(latest.number) == latest
    assert client.block(latest.number + 1_000) is None
    finalized = client.block("finalized")
    assert finalized is not None
    assert finalized.number <= latest.number
    sent = client.transaction(batch.tx_hash)
    assert sent is not None
    assert (sent.nonce, sent.block_number) == (batch.nonce, batch.block_number)
    assert client.transaction("0x" + "00" * 32) is None
    assert client.receipt("0x" + "00" * 32) is None
    [log] = client.logs(
        address=world.ledger.address,
        from_block=batch.block_number or 0,
        to_block=latest.number,
        topics=[USAGES_SETTLED_TOPIC],
    )
    assert (log.tx_hash, log.block_hash) == (batch.tx_hash, batch.block_hash)


def test_a_stuck_transaction_is_replaced_and_anvil_takes_the_bump(bridge: Bridge) -> None:
    world = bridge.chain.world
    w3 = bridge.chain.w3
    relayer = Account.from_key(RELAYER_KEY)
    now = bridge.now()
    ids = bridge.accept(0, *[(t, u, 1, now - 40) for t, u in _licensed(world, 0, 2)])
    nonce_before = w3.eth.get_transaction_count(relayer.address)
    clock = [datetime.now(UTC)]
    worker = bridge.worker(clock=lambda: clock[0])
    w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    try:
        worker.run_until_idle()
        [first] = bridge.batches()
        assert first.status is BatchStatus.SENT

        # A replacement paying no more is refused (anvil asks for more, geth for 10 % more), in
        # words the client classifies.
        client = Web3ChainClient([bridge.chain.url])
        tx = w3.eth.get_transaction(first.tx_hash)
        same_fees = relayer.sign_transaction(
            {
                "type": 2,
                "chainId": w3.eth.chain_id,
                "nonce": first.nonce,
                "to": tx["to"],
                "value": 0,
                "data": tx["input"],
                "gas": first.gas_limit + 1,
                "maxFeePerGas": first.max_fee_per_gas,
                "maxPriorityFeePerGas": first.max_priority_fee_per_gas,
            }
        )
        with pytest.raises(ReplacementUnderpricedError):
            client.send_raw_transaction(bytes(same_fees.raw_transaction))

        clock[0] += timedelta(minutes=5)
        assert worker.step() is True
        [replaced] = bridge.batches()
        assert replaced.tx_hash != first.tx_hash
        assert replaced.nonce == first.nonce
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        worker.run_until_idle()
    finally:
        w3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
    [batch] = bridge.batches()
    assert (batch.status, batch.tx_hash) == (BatchStatus.CONFIRMED, replaced.tx_hash)
    assert w3.eth.get_transaction_count(relayer.address) == nonce_before + 1
    usages = bridge.usages()
    assert [usages[i].status for i in ids] == [UsageStatus.SETTLED] * 2
    assert {usages[i].tx_hash for i in ids} == {replaced.tx_hash}


def test_the_worker_command_settles_and_stops_cleanly_on_sigterm(
    bridge: Bridge, tmp_path: Path
) -> None:
    world = bridge.chain.world
    now = bridge.now()
    ids = bridge.accept(0, *[(t, u, 1, now - 20) for t, u in _licensed(world, 0, 2)])
    keystore = tmp_path / "relayer.json"
    keystore.write_text(
        json.dumps(Account.encrypt(RELAYER_KEY, "pw", kdf="pbkdf2", iterations=1024)),
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_BRIDGE_")}
    env.update(
        {
            "TWIN_BRIDGE_DATA_DIR": str(tmp_path / "state"),
            "TWIN_BRIDGE_DATABASE_URL": bridge.store.engine.url.render_as_string(False),
            "TWIN_BRIDGE_RPC_URL": DEAD_URL,
            "TWIN_BRIDGE_RPC_FALLBACK_URLS": json.dumps([bridge.chain.url]),
            "TWIN_BRIDGE_LEDGER_ADDRESS": world.ledger.address,
            "TWIN_BRIDGE_ATTESTER_PRIVATE_KEY": "0x" + world.attester.key.hex(),
            "TWIN_BRIDGE_RELAYER_KEYSTORE": str(keystore),
            "TWIN_BRIDGE_KEYSTORE_PASSWORD": "pw",
            "TWIN_BRIDGE_BATCH_MAX_AGE": "PT0S",
            "TWIN_BRIDGE_WORKER_POLL_S": "0.05",
        }
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        metrics_port = sock.getsockname()[1]
    command = [
        str(Path(sys.executable).parent / "twin-bridge"),
        "worker",
        "--metrics-port",
        str(metrics_port),
    ]
    metrics = ""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and proc.poll() is None:
                if all(bridge.usages()[i].status is UsageStatus.SETTLED for i in ids):
                    url = f"http://127.0.0.1:{metrics_port}/metrics"
                    with urllib.request.urlopen(url, timeout=5) as response:
                        metrics = response.read().decode()
                    break
                time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            returncode = proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        log.seek(0)
        output = log.read().decode()
    assert returncode == 0, output
    relayer = Account.from_key(RELAYER_KEY).address
    assert f"settling for relayer {relayer}" in output, output
    assert [bridge.usages()[i].status for i in ids] == [UsageStatus.SETTLED] * 2
    # the process's own counters, on its metrics port
    assert 'twin_bridge_worker_batches_total{event="sent"} 1.0' in metrics, metrics
    assert 'twin_bridge_worker_batches_total{event="confirmed"} 1.0' in metrics
    assert 'twin_bridge_worker_usages_total{outcome="settled"} 2.0' in metrics
    assert "twin_bridge_worker_lease_held 1.0" in metrics
    with bridge.store.session() as session:
        assert lease_holder(session, relayer) is None


def test_a_reorg_before_the_confirmation_depth_is_settled_again_and_paid_once(
    bridge: Bridge,
) -> None:
    world = bridge.chain.world
    w3 = bridge.chain.w3
    now = bridge.now()
    ids = bridge.accept(1, *[(t, u, 2, now - 20) for t, u in _licensed(world, 1, 2)])
    escrow_before = _escrow(world, 1)
    worker = bridge.worker(confirmations=3)
    worker.run_until_idle()
    [mined] = bridge.batches()
    assert mined.status is BatchStatus.MINED

    w3.provider.make_request("anvil_reorg", [1, []])  # type: ignore[arg-type]
    for _ in range(2):
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    worker.run_until_idle()
    for _ in range(2):
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    worker.run_until_idle()

    [batch] = bridge.batches()
    assert batch.status is BatchStatus.CONFIRMED
    assert batch.block_hash != mined.block_hash
    usages = bridge.usages()
    assert [(usages[i].status, usages[i].block_number) for i in ids] == [
        (UsageStatus.SETTLED, batch.block_number)
    ] * 2
    assert escrow_before - _escrow(world, 1) == sum(usages[i].amount or 0 for i in ids)


def test_a_settlement_rolled_back_past_the_confirmation_depth_is_resent_and_paid_once(
    bridge: Bridge,
) -> None:
    world = bridge.chain.world
    w3 = bridge.chain.w3
    relayer = Account.from_key(RELAYER_KEY).address
    now = bridge.now()
    ids = bridge.accept(0, *[(t, u, 1, now - 30) for t, u in _licensed(world, 0, 3)])
    escrow_before = _escrow(world, 0)
    nonce_before = w3.eth.get_transaction_count(relayer)
    worker = bridge.worker(confirmations=1)
    worker.run_until_idle()
    [settled] = bridge.batches()
    assert settled.status is BatchStatus.CONFIRMED
    amounts = {i: u.amount for i, u in bridge.usages().items()}
    paid = sum(a or 0 for a in amounts.values())
    assert paid > 0
    assert escrow_before - _escrow(world, 0) == paid

    # The chain forgets the settlement's block, and its transaction with it; the new chain grows
    # longer than the old one without it.
    w3.provider.make_request("anvil_rollback", [1])  # type: ignore[arg-type]
    assert w3.eth.get_transaction_count(relayer) == nonce_before
    assert _escrow(world, 0) == escrow_before
    assert Web3ChainClient([bridge.chain.url]).receipt(settled.tx_hash) is None
    for _ in range(2):
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    assert worker.step() is True  # the watch puts the batch back to sent and resends it
    [resent] = bridge.batches()
    assert (resent.status, resent.block_number) == (BatchStatus.SENT, None)
    assert {u.status for u in bridge.usages().values()} == {UsageStatus.SUBMITTED}
    worker.run_until_idle()  # anvil mined it at once: mined, then confirmed

    [batch] = bridge.batches()
    receipt = w3.eth.get_transaction_receipt(settled.tx_hash)
    assert (batch.status, batch.nonce, batch.tx_hash) == (
        BatchStatus.CONFIRMED,
        nonce_before,
        settled.tx_hash,
    )
    assert (batch.block_number, batch.block_hash) == (
        receipt["blockNumber"],
        receipt["blockHash"].to_0x_hex(),
    )
    assert batch.block_number == (settled.block_number or 0) + 2
    usages = bridge.usages()
    assert {i: (u.status, u.block_number, u.amount) for i, u in usages.items()} == {
        i: (UsageStatus.SETTLED, batch.block_number, amounts[i]) for i in ids
    }
    assert escrow_before - _escrow(world, 0) == paid  # paid once
    assert w3.eth.get_transaction_count(relayer) == nonce_before + 1
    assert all(world.ledger.functions.isUsageProcessed(world.brands[0], i).call() for i in ids)
    assert all(
        world.ledger.functions.isUsageProcessed(world.brands[1], i).call() for i in ids
    )  # the bridge's attesters' ids are one space for every brand they attest
    metrics = worker.metrics.registry
    assert (
        metrics.get_sample_value("twin_bridge_worker_reorged_batches_total", {"stage": "confirmed"})
        == 1
    )
    assert metrics.get_sample_value("twin_bridge_worker_batches_total", {"event": "resent"}) == 1


def test_a_settlement_copied_by_another_account_ends_settled_with_the_copy(
    bridge: Bridge,
) -> None:
    """Anyone may call ``settle``: a stranger who copies the worker's pending transaction and
    outbids it gets the batch settled first and the worker's own transaction reverts
    (``UsageAlreadyProcessed``). The worker finds the usages processed and the batch's
    ``UsagesSettled`` events in the copy's receipt: the usages end settled with the copy, paid
    once, and none is handed back or held."""
    world = bridge.chain.world
    w3 = bridge.chain.w3
    now = bridge.now()
    pairs = _licensed(world, 0, 2)
    ids = bridge.accept(0, *[(t, u, 1, now - 40) for t, u in pairs])
    escrow_before = _escrow(world, 0)
    copier = Account.create()
    bridge.chain.fund(copier.address)
    worker = bridge.worker()
    w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    try:
        worker.run_until_idle()
        [sent] = bridge.batches()
        assert sent.status is BatchStatus.SENT
        ours = w3.eth.get_transaction(sent.tx_hash)
        copy = copier.sign_transaction(
            {
                "type": 2,
                "chainId": w3.eth.chain_id,
                "nonce": 0,
                "to": ours["to"],
                "value": 0,
                "data": ours["input"],
                "gas": ours["gas"],
                "maxFeePerGas": ours["maxFeePerGas"] * 2,
                "maxPriorityFeePerGas": ours["maxPriorityFeePerGas"] * 2 + 1,
            }
        )
        copy_hash = w3.eth.send_raw_transaction(copy.raw_transaction).to_0x_hex()
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    finally:
        w3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
    copied = w3.eth.get_transaction_receipt(copy_hash)
    reverted = w3.eth.get_transaction_receipt(sent.tx_hash)
    assert (copied["status"], reverted["status"]) == (1, 0)
    assert copied["blockNumber"] == reverted["blockNumber"]
    assert copied["transactionIndex"] < reverted["transactionIndex"]

    worker.run_until_idle()

    [batch] = bridge.batches()
    assert (batch.status, batch.tx_hash, batch.block_number) == (
        BatchStatus.CONFIRMED,
        copy_hash,
        copied["blockNumber"],
    )
    assert (batch.error, batch.gas_used) == (None, reverted["gasUsed"])
    usages = bridge.usages()
    prices = [world.licenses[(twin, 0)].prices[kind] for twin, kind in pairs]
    assert [
        (usages[i].status, usages[i].tx_hash, usages[i].amount, usages[i].settle_attempts)
        for i in ids
    ] == [(UsageStatus.SETTLED, copy_hash, price, 0) for price in prices]
    assert _escrow(world, 0) == escrow_before - sum(prices)
    registry = worker.metrics.registry
    batches = "twin_bridge_worker_batches_total"
    assert registry.get_sample_value(batches, {"event": "settled_elsewhere"}) == 1
    assert registry.get_sample_value(batches, {"event": "failed"}) == 0


def test_usages_of_a_brand_that_attests_itself_are_held_naming_the_wrong_attester(
    bridge: Bridge,
) -> None:
    """A brand that named its own attester after the API accepted its usages refuses the
    bridge's signature for them (``SettlementWrongAttester``): they are held with that reason in
    words, and the other brand's usages of the same batch settle. (The API refuses the events of
    a brand that attests itself from then on: ``brand_attests_itself``.)"""
    world = bridge.chain.world
    w3 = bridge.chain.w3
    now = bridge.now()
    settled = bridge.accept(0, *[(t, u, 1, now - 30) for t, u in _licensed(world, 0, 2)])
    held = bridge.accept(1, *[(t, u, 1, now - 30) for t, u in _licensed(world, 1, 2)])
    own_attester = Account.create().address
    w3.eth.wait_for_transaction_receipt(
        world.ledger.functions.setBrandAttester(own_attester).transact({"from": world.brands[1]})
    )
    worker = bridge.worker()

    worker.run_until_idle()

    usages = bridge.usages()
    assert [usages[i].status for i in settled] == [UsageStatus.SETTLED] * 2
    attester, _relayer = worker_signers(world, chain_id=w3.eth.chain_id, relayer_key=RELAYER_KEY)
    bridge_attester = attester.address
    reason = (
        "gas estimation reverted: SettlementWrongAttester("
        f"brand={world.brands[1]}, attester={bridge_attester})"
    )
    assert [(usages[i].status, usages[i].settle_attempts, usages[i].last_error) for i in held] == [
        (UsageStatus.HELD, 3, reason)
    ] * 2
    assert not any(world.ledger.functions.isUsageProcessed(world.brands[1], i).call() for i in held)


def test_usage_ids_burned_by_a_batch_the_bridge_did_not_send(bridge: Bridge) -> None:
    """The attester key signs a batch the bridge never recorded (a leaked key, another bridge)
    that carries two of the bridge's accepted usage ids: one with the very usage (it ends settled
    with that transaction and its price, never paid twice), one with another usage under the id
    (it is held at once naming the transaction, as it can never settle under its id). The third
    usage settles in the worker's own batch."""
    world = bridge.chain.world
    w3 = bridge.chain.w3
    now = bridge.now()
    pairs = _licensed(world, 0, 3)
    same, other, kept = bridge.accept(0, *[(t, u, 1, now - 40) for t, u in pairs])
    usages = bridge.usages()
    words = [
        Usage(
            usage_id=same,
            twin_id=pairs[0][0],
            used_at=now - 40,
            quantity=1,
            usage_type=pairs[0][1],
        ).encode(),
        Usage(  # the id of `other`, with a quantity of 7
            usage_id=other,
            twin_id=pairs[1][0],
            used_at=now - 40,
            quantity=7,
            usage_type=pairs[1][1],
        ).encode(),
    ]
    assert int(usages[same].used_at.timestamp()) == now - 40
    chain_id = w3.eth.chain_id
    attester, _relayer = worker_signers(world, chain_id=chain_id, relayer_key=RELAYER_KEY)
    deadline = now + 3600
    brand = world.brands[0]
    data = eip712.usage_batch(
        deadline, [(brand, words)], chain_id=chain_id, ledger=world.ledger.address
    )
    stranger = Account.create()
    bridge.chain.fund(stranger.address)
    leaked = stranger.sign_transaction(
        {
            "type": 2,
            "chainId": chain_id,
            "nonce": 0,
            "to": world.ledger.address,
            "value": 0,
            "data": settle_calldata(
                deadline, [(brand, words)], attester.address, eip712.sign(attester, data)
            ),
            "gas": 1_000_000,
            "maxFeePerGas": 10**11,
            "maxPriorityFeePerGas": 10**9,
        }
    )
    leaked_hash = w3.eth.send_raw_transaction(leaked.raw_transaction).to_0x_hex()
    receipt = w3.eth.wait_for_transaction_receipt(leaked_hash)
    assert receipt["status"] == 1
    escrow_before = _escrow(world, 0)
    worker = bridge.worker()

    worker.run_until_idle()

    usages = bridge.usages()
    price_same = world.licenses[(pairs[0][0], 0)].prices[pairs[0][1]]
    price_kept = world.licenses[(pairs[2][0], 0)].prices[pairs[2][1]]
    assert (
        usages[same].status,
        usages[same].tx_hash,
        usages[same].block_number,
        usages[same].amount,
        usages[same].settle_attempts,
    ) == (UsageStatus.SETTLED, leaked_hash, receipt["blockNumber"], price_same, 0)
    # how it was paid, from the leaked receipt's logs: the brand's escrow covered it
    assert (usages[same].paid_from_escrow, usages[same].recorded_as_debt) == (price_same, 0)
    assert (usages[other].status, usages[other].settle_attempts, usages[other].last_error) == (
        UsageStatus.HELD,
        1,
        f"usage id {other} of brand {brand} was already processed on chain for another usage "
        f"({Usage.decode(words[1])}) by tx {leaked_hash}: it cannot settle under this id",
    )
    assert (usages[kept].status, usages[kept].amount) == (UsageStatus.SETTLED, price_kept)
    assert usages[kept].tx_hash != leaked_hash
    # only `kept` was paid after the leaked batch: `same` is not paid twice
    assert _escrow(world, 0) == escrow_before - price_kept
    assert [b.status for b in bridge.batches()] == [BatchStatus.CONFIRMED]
    registry = worker.metrics.registry
    batches = "twin_bridge_worker_batches_total"
    assert registry.get_sample_value(batches, {"event": "settled_elsewhere"}) == 1


def test_the_worker_logs_one_line_when_a_batch_is_sent_and_one_when_it_settles(
    bridge: Bridge, caplog: pytest.LogCaptureFixture
) -> None:
    """The settled line counts the batch's usages (paid and rejected) and names the block, the
    transaction and what the brands paid, in the payment token's symbol and decimals."""
    world = bridge.chain.world
    w3 = bridge.chain.w3
    now = bridge.now()
    (t1, u1), (t2, u2) = _licensed(world, 0, 2)
    bridge.accept(0, (t1, u1, 2, now - 100), (t2, u2, 1, now - 90))
    bridge.accept(0, (t2, u2, 1, now + 120))  # rejected: the license is revoked before it
    owner = world.ledger.functions.ownerOf(t2).call()
    version = world.ledger.functions.licenseVersionCount(t2, world.brands[0]).call() - 1
    w3.eth.wait_for_transaction_receipt(
        world.ledger.functions.revokeLicense(t2, world.brands[0], version).transact({"from": owner})
    )
    w3.provider.make_request("evm_increaseTime", [300])  # type: ignore[arg-type]
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    caplog.set_level(logging.INFO, logger="bridge.settlement")

    bridge.worker().run_until_idle()

    [batch] = bridge.batches()
    assert batch.status is BatchStatus.CONFIRMED
    paid = 2 * world.licenses[t1, 0].prices[u1] + world.licenses[t2, 0].prices[u2]
    assert sum(u.amount or 0 for u in bridge.usages().values()) == paid
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.INFO and r.getMessage().startswith(f"batch {batch.id}")
    ]
    assert lines == [
        f"batch {batch.id} signed: 3 usages in 1 groups, nonce {batch.nonce}, tx {batch.tx_hash}",
        f"batch {batch.id} sent: 3 usages, nonce {batch.nonce}, tx {batch.tx_hash}",
        f"batch {batch.id}: 3 usages (2 paid, 1 rejected) settled in block {batch.block_number}, "
        f"tx {batch.tx_hash}, paid {token_amount(paid, 'mUSD', 6)}",
    ]
