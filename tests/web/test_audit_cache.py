"""The audit behind ``GET /v1/audit`` on a real anvil: each block is audited once, a later block
resumes from the checkpoint in the data directory, an earlier block is scanned apart without
touching it, and the totals per twin, brand and month are exact, each with its latest
transaction."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3

from bridge.audit.cache import AuditBlockError, AuditBusyError, AuditCache
from bridge.audit.report import report
from bridge.domain import eip712
from bridge.domain.codec import Usage
from bridge.testing import World, local_anvil, setup

pytestmark = pytest.mark.integration

AUDITED_AT = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with local_anvil() as w3:
        yield setup(w3)


def _settle(world: World, brand_index: int, usages: list[Usage]) -> str:
    w3 = world.w3
    deadline = int(w3.eth.get_block("latest")["timestamp"]) + 3600
    words = [(world.brands[brand_index], [u.encode() for u in usages])]
    data = eip712.usage_batch(
        deadline, words, chain_id=w3.eth.chain_id, ledger=world.ledger.address
    )
    signature = eip712.sign(world.attester, data)
    tx = world.ledger.functions.settle(
        (deadline, words), world.attester.address, signature
    ).transact({"from": world.relayer})
    receipt = w3.eth.wait_for_transaction_receipt(tx, timeout=30)
    assert receipt["status"] == 1
    return str(receipt["transactionHash"].to_0x_hex())


def _usage(world: World, usage_id: int, twin: int, brand_index: int, quantity: int) -> Usage:
    plan = world.licenses[twin, brand_index]
    now = int(world.w3.eth.get_block("latest")["timestamp"])
    return Usage(usage_id, twin, now - 30, quantity, min(plan.prices))


def _price(world: World, twin: int, brand_index: int) -> int:
    plan = world.licenses[twin, brand_index]
    return int(plan.prices[min(plan.prices)])


def test_each_block_is_audited_once_and_later_ones_resume(world: World, tmp_path: Path) -> None:
    w3: Web3 = world.w3
    checkpoint = tmp_path / "audit" / "checkpoint.json"
    cache = AuditCache(
        rpc_urls=[w3.provider.endpoint_uri],  # type: ignore[attr-defined]
        ledger=world.ledger.address,
        start_block=0,
        checkpoint=checkpoint,
        clock=lambda: AUDITED_AT,
    )
    first, _ = cache.audit()
    assert first.to_block == w3.eth.block_number
    assert first.resumed_from is None
    assert first.clean
    assert checkpoint.exists()
    assert cache.audit()[0] is first  # no new block: answered from memory

    tx1 = _settle(world, 0, [_usage(world, 1, 1, 0, 2), _usage(world, 2, 2, 0, 1)])
    tx2 = _settle(world, 1, [_usage(world, 3, 1, 1, 3), Usage(4, 999, 1, 1, 0)])
    second, ran_at = cache.audit()
    assert second.resumed_from == first.to_block
    assert second.to_block == w3.eth.block_number
    assert ran_at == AUDITED_AT

    paid_1 = 2 * _price(world, 1, 0)
    paid_2 = _price(world, 2, 0)
    paid_3 = 3 * _price(world, 1, 1)
    body: dict[str, Any] = report(second, audited_at=AUDITED_AT)
    block1 = w3.eth.get_transaction_receipt(tx1)["blockNumber"]
    block2 = w3.eth.get_transaction_receipt(tx2)["blockNumber"]
    month = datetime.fromtimestamp(w3.eth.get_block(block2)["timestamp"], UTC).strftime("%Y-%m")
    assert body["clean"] is True
    assert body["discrepancies"] == []
    assert body["failed_checks"] == []
    assert body["audited_at"] == "2030-01-02T03:04:05+00:00"
    assert body["resumed_from"] == first.to_block
    assert body["summary"] == second.summary()
    assert body["summary"]["usages"] == 4
    assert body["summary"]["amount_paid"] == paid_1 + paid_2 + paid_3
    assert body["summary_sources"]["amount_paid"] == {"block_number": block2, "tx_hash": tx2}
    assert body["summary_sources"]["escrow"] == {"block_number": block2, "tx_hash": tx2}
    assert body["summary_sources"]["liabilities"] == {"block_number": block2, "tx_hash": tx2}
    assert "twins" not in body["summary_sources"]
    assert "payouts" not in body["summary_sources"]  # none yet

    def total(usages: int, paid: int, amount: int, tx: str, block: int) -> dict[str, Any]:
        return {
            "usages": usages,
            "usages_paid": paid,
            "usages_rejected": usages - paid,
            "amount_paid": str(amount),
            "last_tx_hash": tx,
            "last_block": block,
        }

    assert body["totals"]["twins"] == [
        {"twin_id": 1, **total(2, 2, paid_1 + paid_3, tx2, block2)},
        {"twin_id": 2, **total(1, 1, paid_2, tx1, block1)},
        {"twin_id": 999, **total(1, 0, 0, tx2, block2)},
    ]
    brands = body["totals"]["brands"]
    assert [b["brand"] for b in brands] == sorted(world.brands[:2])
    by_brand = {b.pop("brand"): b for b in brands}
    escrow = {b: int(world.ledger.functions.brandAccount(b).call()[0]) for b in world.brands[:2]}
    assert by_brand[world.brands[0]] == {
        **total(2, 2, paid_1 + paid_2, tx1, block1),
        "escrow": str(escrow[world.brands[0]]),
        "debt": "0",
    }
    assert by_brand[world.brands[1]] == {
        **total(2, 1, paid_3, tx2, block2),
        "escrow": str(escrow[world.brands[1]]),
        "debt": "0",
    }
    assert body["totals"]["months"] == [
        {"month": month, **total(4, 3, paid_1 + paid_2 + paid_3, tx2, block2)}
    ]

    # an earlier block is scanned apart: its own answer, the checkpoint and cache untouched
    saved = checkpoint.read_bytes()
    earlier, _ = cache.audit(first.to_block)
    assert earlier.to_block == first.to_block
    assert earlier.summary()["usages"] == 0
    assert checkpoint.read_bytes() == saved
    assert cache.audit()[0] is second


def test_blocks_before_the_deployment_or_not_mined_are_refused(
    world: World, tmp_path: Path
) -> None:
    latest = world.w3.eth.block_number
    cache = AuditCache(
        rpc_urls=[world.w3.provider.endpoint_uri],  # type: ignore[attr-defined]
        ledger=world.ledger.address,
        start_block=5,
        checkpoint=tmp_path / "checkpoint.json",
    )
    with pytest.raises(AuditBlockError) as before:
        cache.audit(4)
    assert str(before.value) == "block 4 is before the ledger's deployment (block 5)"
    with pytest.raises(AuditBlockError) as ahead:
        cache.audit(latest + 100)
    assert str(ahead.value) == f"block {latest + 100} is not mined yet (the latest is {latest})"
    assert not (tmp_path / "checkpoint.json").exists()


def test_while_an_audit_runs_others_get_the_last_answer_or_busy(
    world: World, tmp_path: Path
) -> None:
    cache = AuditCache(
        rpc_urls=[world.w3.provider.endpoint_uri],  # type: ignore[attr-defined]
        ledger=world.ledger.address,
        start_block=0,
        checkpoint=tmp_path / "checkpoint.json",
    )
    latest, _ = cache.audit()
    earlier, _ = cache.audit(latest.to_block - 1)
    assert cache.audit(latest.to_block - 1)[0] is earlier  # kept
    world.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    assert cache._lock.acquire()  # an audit running
    try:
        assert cache.audit()[0] is latest  # the previous answer, a block behind
        assert cache.audit(latest.to_block - 1)[0] is earlier
        with pytest.raises(AuditBusyError) as busy:
            cache.audit(latest.to_block)
        assert str(busy.value) == "another audit is running; ask again in a few seconds"
    finally:
        cache._lock.release()
    assert cache.audit()[0].to_block == latest.to_block + 1


def test_an_audit_in_another_process_holds_the_checkpoint(world: World, tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoint.json"
    cache = AuditCache(
        rpc_urls=[world.w3.provider.endpoint_uri],  # type: ignore[attr-defined]
        ledger=world.ledger.address,
        start_block=0,
        checkpoint=checkpoint,
    )
    latest, _ = cache.audit()
    world.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    with (tmp_path / "checkpoint.json.lock").open("a") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as another API process would
        assert cache.audit()[0] is latest
        with pytest.raises(AuditBusyError):
            cache.audit(latest.to_block)
        fcntl.flock(other, fcntl.LOCK_UN)
    assert cache.audit()[0].to_block == latest.to_block + 1
