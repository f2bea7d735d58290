"""Scenarios 5, 6, 7, 9, 10 and 11: the chain misbehaves under a worker (in process, stepped, so
each fault lands at a known moment) on a real anvil, with the store on SQLite and PostgreSQL.

5. A nonce gap (``anvil_dropTransaction`` on the batch's nonce N while N+1 waits): resent, or,
   when someone else filled N, the batch fails and its usages go out again with a fresh nonce.
6. A stuck transaction (``anvil_setNextBlockBaseFeePerGas`` high, then low): replaced with a fee
   bump under the cap; a spike above the cap waits, never overpays, and the base fee coming down
   lets the transaction through; paid once.
7. A reorg (``anvil_rollback`` / ``anvil_reorg``) removing a confirmed settlement's block: the
   usages go back, settle again, are paid once; the indexer rewinds to the new block.
9. A brand's escrow runs out mid-batch and is refilled: debt recorded, then paid first.
10. A license revoked, a twin paused, a license expiring between acceptance and settlement:
    rejected on chain with the right reason, and the brand reads it over HTTP.
11. The attester rotated while a batch is in flight: the batch reverts, its usages are signed again
    by the new attester and settle once.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from eth_account import Account
from eth_utils.crypto import keccak
from fastapi.testclient import TestClient
from sqlalchemy import select

from bridge.api import create_app
from bridge.chain.client import Receipt, Web3ChainClient
from bridge.chain.views import Web3LicenseView
from bridge.domain.codec import Outcome
from bridge.indexer.follow import Indexer
from bridge.settlement.worker import SettlementWorker
from bridge.store.models import BatchStatus, SettledUsageRow, UsageStatus
from bridge.testing import rpc
from bridge.testing.world import NOTICE_PERIOD

from .rig import RELAYER_KEY, Rig

pytestmark = pytest.mark.faults

GWEI = 10**9
ATTESTER_ROLE = 2
"""The attester role's id in the access manager."""


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC) + timedelta(seconds=10)  # after the usages are stored

    def __call__(self) -> datetime:
        return self.now

    def advance(self, minutes: int) -> None:
        self.now += timedelta(minutes=minutes)


@pytest.fixture
def manual_mining(rig: Rig) -> Iterator[None]:
    rpc(rig.w3, "evm_setAutomine", False)
    try:
        yield
    finally:
        rpc(rig.w3, "evm_setAutomine", True)


def _mine(rig: Rig, blocks: int = 1) -> None:
    for _ in range(blocks):
        rpc(rig.w3, "evm_mine")


def _events(worker: SettlementWorker, event: str) -> float:
    value = worker.metrics.registry.get_sample_value(
        "twin_bridge_worker_batches_total", {"event": event}
    )
    return value or 0.0


def _relayer_tx(rig: Rig, nonce: int) -> bytes:
    """A relayer transaction outside the worker (an operator's top-up to itself)."""
    account = Account.from_key(RELAYER_KEY)
    signed = account.sign_transaction(
        {
            "type": 2,
            "chainId": rig.w3.eth.chain_id,
            "nonce": nonce,
            "to": account.address,
            "value": 1,
            "gas": 21_000,
            "maxFeePerGas": 50 * GWEI,
            "maxPriorityFeePerGas": GWEI,
        }
    )
    return bytes(signed.raw_transaction)


def _receipt(rig: Rig, tx_hash: str) -> Receipt | None:
    return Web3ChainClient([rig.url]).receipt(tx_hash)


def _paid_by(rig: Rig, brand: int) -> int:
    return sum(u.amount or 0 for u in rig.usages().values() if u.brand_id == rig.brands[brand].id)


# ---------------------------------------------------------------- 5. nonce gap


@pytest.mark.usefixtures("manual_mining")
@pytest.mark.parametrize("gap", ["resent", "filled"])
def test_a_nonce_gap_is_resent_or_the_filled_nonce_is_never_reused(rig: Rig, gap: str) -> None:
    now = rig.now()
    ids = rig.accept(0, *[(t, u, 1, now - 30) for t, u in rig.licensed(0, 3)])
    escrow_before = rig.escrow(0)[0]
    n = rig.nonce()
    worker = rig.worker()
    worker.run_until_idle()
    [first] = rig.batches()
    assert (first.status, first.nonce) == (BatchStatus.SENT, n)

    # The node drops N, and N+1 arrives and waits behind the gap.
    assert rpc(rig.w3, "anvil_dropTransaction", first.tx_hash) == first.tx_hash
    waiting = rig.w3.eth.send_raw_transaction(_relayer_tx(rig, n + 1)).to_0x_hex()
    _mine(rig)
    assert rpc(rig.w3, "txpool_content")["queued"] != {}
    assert rig.nonce() == n  # nothing can be mined over the gap
    if gap == "filled":  # someone else's transaction takes nonce N
        rig.w3.eth.send_raw_transaction(_relayer_tx(rig, n))
        _mine(rig)
        assert rig.nonce() == n + 2
    rig.settle(worker, mine=True)

    batches = rig.batches()
    usages = rig.usages()
    if gap == "resent":
        assert [(b.status, b.nonce, b.tx_hash) for b in batches] == [
            (BatchStatus.CONFIRMED, n, first.tx_hash)
        ]
        assert _events(worker, "resent") == 1
    else:
        assert [(b.status, b.nonce) for b in batches] == [
            (BatchStatus.FAILED, n),
            (BatchStatus.CONFIRMED, n + 2),
        ]
        assert batches[0].error == f"nonce {n} was used by another transaction"
        assert _receipt(rig, first.tx_hash) is None
    assert rig.w3.eth.get_transaction_receipt(waiting)["status"] == 1
    following = n + 2 if gap == "resent" else n + 3
    assert rig.nonce() == following  # no nonce burnt, none used twice
    assert {usages[i].status for i in ids} == {UsageStatus.SETTLED}
    assert {usages[i].tx_hash for i in ids} == {batches[-1].tx_hash}
    assert escrow_before - rig.escrow(0)[0] == _paid_by(rig, 0) > 0

    # The next batch takes the next free nonce.
    more = rig.accept(1, (*rig.licensed(1, 1)[0], 1, now - 10))
    rig.settle(worker, mine=True)
    assert (rig.batches()[-1].nonce, rig.usages()[more[0]].status) == (
        following,
        UsageStatus.SETTLED,
    )
    summary = rig.audit()
    assert (summary["usages"], summary["usages_paid"]) == (4, 4)


# ---------------------------------------------------------------- 6. stuck transaction


def test_a_stuck_transaction_is_replaced_with_a_fee_bump_and_a_spike_past_the_cap_waits(
    rig: Rig, manual_mining: None
) -> None:
    now = rig.now()
    cap = 100 * GWEI
    clock = Clock()
    worker = rig.worker(clock=clock, max_fee_per_gas=cap, replace_after=timedelta(minutes=1))
    n = rig.nonce()
    ids = rig.accept(0, *[(t, u, 1, now - 30) for t, u in rig.licensed(0, 2)])
    worker.run_until_idle()
    [first] = rig.batches()
    assert first.status is BatchStatus.SENT
    assert first.max_fee_per_gas < 20 * GWEI

    rpc(rig.w3, "anvil_setNextBlockBaseFeePerGas", hex(20 * GWEI))  # high, under the cap
    _mine(rig)
    assert _receipt(rig, first.tx_hash) is None
    assert rig.nonce() == n  # priced out, and anvil drops it from its pool
    assert rig.w3.eth.get_block("latest")["baseFeePerGas"] == 20 * GWEI
    assert worker.step() is True  # resending is refused, so it is replaced at once
    [bumped] = rig.batches()
    assert bumped.nonce == n
    assert bumped.tx_hash != first.tx_hash
    assert bumped.max_fee_per_gas >= first.max_fee_per_gas * 11 // 10
    assert 20 * GWEI < bumped.max_fee_per_gas <= cap
    rpc(rig.w3, "anvil_setNextBlockBaseFeePerGas", hex(GWEI))  # then low
    rig.settle(worker, mine=True)
    [batch] = rig.batches()
    assert (batch.status, batch.tx_hash) == (BatchStatus.CONFIRMED, bumped.tx_hash)
    assert rig.nonce() == n + 1
    assert _events(worker, "replaced") == 1

    # A spike past the cap: no replacement may pay more than the cap, so the worker waits.
    more = rig.accept(1, *[(t, u, 1, now - 10) for t, u in rig.licensed(1, 2)])
    worker.run_until_idle()
    second = rig.batches()[-1]
    assert (second.status, second.nonce) == (BatchStatus.SENT, n + 1)
    rpc(rig.w3, "anvil_setNextBlockBaseFeePerGas", hex(5 * cap))
    _mine(rig)
    clock.advance(2)
    for _ in range(3):
        assert worker.step() is False
    stuck = rig.batches()[-1]
    assert stuck.max_fee_per_gas <= cap  # a replacement at most at the cap, never above
    assert rig.nonce() == n + 1
    rpc(rig.w3, "anvil_setNextBlockBaseFeePerGas", hex(GWEI))  # the base fee comes down
    rig.settle(worker, mine=True)
    last = rig.batches()[-1]
    assert (last.status, last.tx_hash) == (BatchStatus.CONFIRMED, stuck.tx_hash)
    assert rig.nonce() == n + 2
    usages = rig.usages()
    assert {usages[i].tx_hash for i in ids} == {bumped.tx_hash}
    assert {usages[i].tx_hash for i in more} == {stuck.tx_hash}
    summary = rig.audit()
    assert (summary["usages"], summary["usages_paid"], summary["batches"]) == (4, 4, 2)


# ---------------------------------------------------------------- 7. reorg


def _indexed(rig: Rig) -> dict[int, tuple[str, int, int]]:
    with rig.store.session() as session:
        return {
            row.usage_id: (row.tx_hash, row.block_number, row.outcome)
            for row in session.scalars(select(SettledUsageRow))
        }


@pytest.mark.parametrize("how", ["anvil_rollback", "anvil_reorg"])
def test_a_reorg_removing_a_confirmed_settlement_settles_again_once_and_the_indexer_rewinds(
    rig: Rig, how: str
) -> None:
    now = rig.now()
    ids = rig.accept(2, *[(t, u, 3, now - 30) for t, u in rig.licensed(2, 3)])
    escrow_before = rig.escrow(2)[0]
    n = rig.nonce()
    worker = rig.worker(confirmations=1)
    indexer = Indexer(
        rig.store, Web3ChainClient([rig.url], backoff=0), ledger_address=rig.world.ledger.address
    )
    rig.settle(worker)
    [settled] = rig.batches()
    amounts = {i: u.amount for i, u in rig.usages().items()}
    paid = sum(a or 0 for a in amounts.values())
    _mine(rig)
    indexer.catch_up()
    assert _indexed(rig) == dict.fromkeys(
        ids, (settled.tx_hash, settled.block_number, Outcome.PAID)
    )

    # The settlement's block (and the one above it) leave the chain; a longer branch grows.
    if how == "anvil_rollback":
        rpc(rig.w3, "anvil_rollback", 2)
        assert _receipt(rig, settled.tx_hash) is None
        assert rig.escrow(2)[0] == escrow_before
        _mine(rig, 3)
    else:
        rpc(rig.w3, "anvil_reorg", 2, [])
        _mine(rig)
    receipt = _receipt(rig, settled.tx_hash)
    assert receipt is None or receipt.block_hash != settled.block_hash
    rig.settle(worker, mine=True)
    # Usages went back to submitted while the settlement was off the chain, then settled again.
    [batch] = rig.batches()
    assert (batch.status, batch.nonce, batch.tx_hash) == (
        BatchStatus.CONFIRMED,
        n,
        settled.tx_hash,
    )
    assert batch.block_hash != settled.block_hash
    usages = rig.usages()
    assert {i: (u.status, u.block_number, u.amount) for i, u in usages.items()} == {
        i: (UsageStatus.SETTLED, batch.block_number, amounts[i]) for i in ids
    }
    assert escrow_before - rig.escrow(2)[0] == paid  # paid once
    assert rig.nonce() == n + 1
    stage = {"stage": "confirmed"}
    assert (
        worker.metrics.registry.get_sample_value("twin_bridge_worker_reorged_batches_total", stage)
        == 1
    )

    _mine(rig)
    indexer.catch_up()
    assert _indexed(rig) == dict.fromkeys(ids, (batch.tx_hash, batch.block_number, Outcome.PAID))
    summary = rig.audit()
    assert (summary["usages"], summary["usages_paid"], summary["amount_paid"]) == (3, 3, paid)


# ---------------------------------------------------------------- 9. escrow runs out


def test_escrow_running_out_mid_batch_becomes_debt_paid_first_from_the_refill(rig: Rig) -> None:
    world, w3 = rig.world, rig.w3
    brand = world.brands[1]
    fn = world.ledger.functions
    pairs = rig.licensed(1, 4)
    prices = [world.licenses[t, 1].prices[u] for t, u in pairs]
    # The brand takes its escrow back but for the price of the first usage and a half.
    escrow, _ = rig.escrow(1)
    keep = prices[0] + prices[1] // 2
    w3.eth.wait_for_transaction_receipt(
        fn.requestEscrowWithdrawal(escrow - keep).transact({"from": brand})
    )
    rpc(w3, "evm_increaseTime", NOTICE_PERIOD + 1)
    _mine(rig)
    w3.eth.wait_for_transaction_receipt(fn.withdrawEscrow().transact({"from": brand}))
    assert rig.escrow(1) == (keep, 0)

    now = rig.now()
    ids = rig.accept(1, *[(t, u, 1, now - 30) for t, u in pairs])
    worker = rig.worker()
    rig.settle(worker)
    usages = rig.usages()
    assert [usages[i].status for i in ids] == [UsageStatus.SETTLED] * 4  # nothing dropped
    assert [usages[i].amount for i in ids] == prices
    debt = sum(prices) - keep
    assert rig.escrow(1) == (0, debt)
    accrued = {t: int(fn.twinState(t).call()[0]) for t, _ in pairs}

    # A refill pays the debt first (to the twins owed), the rest becomes escrow.
    refill = 10 * sum(prices)
    token = world.token.functions
    for call in (
        token.mint(brand, refill),
        token.approve(world.ledger.address, refill),
        fn.deposit(brand, refill),
    ):
        w3.eth.wait_for_transaction_receipt(call.transact({"from": brand}))
    assert rig.escrow(1) == (refill - debt, 0)
    repaid = sum(int(fn.twinState(t).call()[0]) - accrued[t] for t, _ in pairs)
    assert repaid == debt

    later = rig.accept(1, (*pairs[0], 2, rig.now() - 5))
    rig.settle(worker)
    assert rig.usages()[later[0]].amount == 2 * prices[0]
    assert rig.escrow(1) == (refill - debt - 2 * prices[0], 0)
    summary = rig.audit()
    assert (summary["usages_paid"], summary["debt_recorded"], summary["debt_repaid"]) == (
        5,
        debt,
        debt,
    )
    assert summary["debt_outstanding"] == 0


# ---------------------------------------------------------------- 10. license changes


def test_a_license_revoked_a_twin_paused_and_a_license_expired_before_settlement_are_rejected_with_the_reason_the_brand_reads(  # noqa: E501
    rig: Rig,
) -> None:
    world, w3 = rig.world, rig.w3
    fn = world.ledger.functions
    brand = world.brands[0]
    licenses = Web3LicenseView(w3, world.ledger, ttl=0, rpc_url=rig.url)
    api = create_app(rig.settings(), store=rig.store, chain=licenses, ingestor=rig.ingestor)
    (t1, u1), (t2, u2), (t3, u3), (t4, u4) = rig.licensed(0, 4)
    now = rig.now()
    ahead = datetime.fromtimestamp(now + 120, UTC).isoformat()
    auth = {"Authorization": f"Bearer {rig.api_keys[0]}"}
    events = {
        "revoked": (t1, u1, ahead),
        "paused": (t2, u2, ahead),
        "expired": (t3, u3, ahead),
        "paid": (t4, u4, datetime.fromtimestamp(now - 10, UTC).isoformat()),
    }
    with TestClient(api) as client:
        for event_id, (twin, usage_type, used_at) in events.items():
            body = {
                "event_id": event_id,
                "twin_id": twin,
                "usage_type": usage_type,
                "quantity": 1,
                "used_at": used_at,
            }
            response = client.post("/v1/usage-events", json=body, headers=auth)
            assert response.status_code == 202, response.text

        def owner(twin: int, call: Any) -> None:
            sender = fn.ownerOf(twin).call()
            receipt = w3.eth.wait_for_transaction_receipt(call.transact({"from": sender}))
            assert receipt["status"] == 1

        owner(t1, fn.revokeLicense(t1, brand, 0))
        owner(t2, fn.setTwinPaused(t2, True))
        plan = world.licenses[t3, 0]
        terms = (brand, 0, now + 60, 0, keccak(text="short"), keccak(text="consent"),
                 list(plan.prices.items()))  # fmt: skip
        owner(t3, fn.offerLicense(t3, terms))
        # The brand accepts version 1: it ends before the usage's time (and ends version 0).
        terms_hash = fn.hashLicenseTerms(terms).call()
        accepted = fn.acceptLicense(t3, 1, terms_hash).transact({"from": brand})
        assert w3.eth.wait_for_transaction_receipt(accepted)["status"] == 1
        rpc(w3, "evm_increaseTime", 300)
        _mine(rig)
        rig.settle(rig.worker())

        seen = {
            event_id: client.get(f"/v1/usage-events/{event_id}", headers=auth).json()
            for event_id in events
        }
    expected = {
        "revoked": Outcome.LICENSE_REVOKED,
        "paused": Outcome.TWIN_PAUSED,
        "expired": Outcome.LICENSE_EXPIRED,
    }
    for event_id, outcome in expected.items():
        status = seen[event_id]
        assert (status["status"], status["outcome_code"], status["code"], status["sentence"]) == (
            "rejected",
            int(outcome),
            outcome.name.lower(),
            outcome.description,
        ), status
        assert "amount" not in status
        assert status["tx_hash"] == rig.batches()[0].tx_hash
    price = world.licenses[t4, 0].prices[u4]
    assert (seen["paid"]["status"], seen["paid"]["amount"]) == ("settled", str(price))
    summary = rig.audit()
    assert summary["rejected_by_reason"] == {
        "license_expired": 1,
        "license_revoked": 1,
        "twin_paused": 1,
    }
    assert (summary["usages_paid"], summary["amount_paid"]) == (1, price)


# ---------------------------------------------------------------- 11. attester rotation


def test_a_batch_in_flight_when_the_attester_is_rotated_is_signed_again_and_settles_once(
    rig: Rig, manual_mining: None
) -> None:
    world, w3 = rig.world, rig.w3
    manager = world.manager.functions
    admin = w3.eth.accounts[0]
    new_key = keccak(text="twin-bridge fault suite rotated attester")
    new_attester = Account.from_key(new_key).address
    now = rig.now()
    ids = rig.accept(0, *[(t, u, 1, now - 30) for t, u in rig.licensed(0, 3)])
    old = rig.worker()
    old.run_until_idle()
    [in_flight] = rig.batches()
    assert in_flight.status is BatchStatus.SENT

    # The admin rotates the attester in the access manager (the new key granted, the old one
    # revoked: no grant delay in this world); the rotation is mined ahead of the batch in one block.
    fees = {"from": admin, "maxPriorityFeePerGas": 50 * GWEI, "maxFeePerGas": 100 * GWEI}
    grant = manager.grantRole(ATTESTER_ROLE, new_attester, 0).transact(fees)
    rotation = manager.revokeRole(ATTESTER_ROLE, world.attester.address).transact(fees)
    _mine(rig)
    assert w3.eth.get_transaction_receipt(grant)["status"] == 1
    assert w3.eth.get_transaction_receipt(rotation)["status"] == 1
    reverted = w3.eth.get_transaction_receipt(in_flight.tx_hash)
    assert reverted["status"] == 0
    assert reverted["blockNumber"] == w3.eth.get_transaction_receipt(rotation)["blockNumber"]
    assert old.step() is True  # the batch failed; its usages are handed back
    [failed] = rig.batches()
    assert failed.status is BatchStatus.FAILED
    usages = rig.usages()
    assert {(usages[i].status, usages[i].settle_attempts) for i in ids} == {
        (UsageStatus.ACCEPTED, 1)
    }
    old.release()

    # The operator restarts the worker with the new attester key.
    new = rig.worker(attester_key=new_key)
    rig.settle(new, mine=True)
    batches = rig.batches()
    assert [b.status for b in batches] == [BatchStatus.FAILED, BatchStatus.CONFIRMED]
    usages = rig.usages()
    assert {usages[i].status for i in ids} == {UsageStatus.SETTLED}
    assert {usages[i].tx_hash for i in ids} == {batches[1].tx_hash}
    summary = rig.audit()
    assert (summary["usages_paid"], summary["batches"], summary["batches_verified"]) == (3, 1, 1)
