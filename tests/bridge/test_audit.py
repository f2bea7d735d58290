"""The audit against a real anvil (Prague) with the deployed ledger: a clean history rebuilds with
exact counts and totals; every tampering a test can stage is caught and named (settlements the
database does not know, database rows the chain does not know or records otherwise, tokens sent
straight to the ledger, a view that disagrees with the events, a batch signed by a key that never
received the attester role in an event); a resumed audit equals a full scan; ranges shrink when a
node refuses them.

Anvil, the ledger and its world (20 twins licensed to 3 brands, payees, escrow) are set up once per
module (the gas benchmark's setup) and each test runs from an ``evm_snapshot`` of that state."""

from __future__ import annotations

import csv
import itertools
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner
from web3 import Web3
from web3.logs import DISCARD
from web3.types import TxReceipt

from bridge.audit.export import write_csv
from bridge.audit.logs import SettledLog, TxInfo
from bridge.audit.reconcile import compare as reconcile_compare
from bridge.audit.reconcile import open_read_only, reconcile
from bridge.audit.report import AuditResult
from bridge.audit.run import run_audit
from bridge.audit.scan import RangeSizer, ScanStats
from bridge.audit.settle import Settlement
from bridge.audit.state import AuditError, BrandBook, LedgerState, LicensePair, Twin, Version
from bridge.chain.rpc import JsonRpc
from bridge.cli.app import app
from bridge.deploy.manifest import CompilerRecord, ContractRecord, Manifest, write_manifest
from bridge.domain.codec import Outcome, Usage
from bridge.store import migrate
from bridge.store.models import Brand, UsageEvent, UsageStatus
from bridge.store.repository import Store
from bridge.testing.world import (
    ESCROW_PER_BRAND,
    NOTICE_PERIOD,
    WORLD_CONFIG,
    AnvilChain,
    World,
)

pytestmark = pytest.mark.integration

ESCROW_SLOT = 26
"""Storage slot of ``TwinLedger._escrow.escrows`` (build/artifacts/TwinLedger.json
storageLayout)."""
ROLES_SLOT = 1
"""Storage slot of ``AccessManager._roles`` (build/artifacts/TwinAccessManager.json)."""
ATTESTER_ROLE = 2


Chain = AnvilChain


@pytest.fixture(scope="module")
def anvil_chain(anvil: AnvilChain) -> AnvilChain:
    return anvil


# ---------------------------------------------------------------- the chain


def _rpc(w3: Web3, method: str, *params: Any) -> Any:
    response = w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    assert "error" not in response, response
    return response["result"]


def _now(w3: Web3) -> int:
    return int(w3.eth.get_block("latest")["timestamp"])


def _advance(w3: Web3, seconds: int) -> None:
    _rpc(w3, "evm_increaseTime", seconds)
    _rpc(w3, "evm_mine")


def _wait(w3: Web3, tx: HexBytes) -> TxReceipt:
    receipt = w3.eth.wait_for_transaction_receipt(tx, timeout=30, poll_latency=0.01)
    assert receipt["status"] == 1
    return receipt


def _settle(
    world: World,
    groups: Sequence[tuple[str, Sequence[Usage]]],
    *,
    attester: LocalAccount | None = None,
) -> TxReceipt:
    w3 = world.w3
    key = attester or world.attester
    words = [(brand, [u.encode() for u in usages]) for brand, usages in groups]
    batch = (_now(w3) + 3600, words)
    digest = world.ledger.functions.hashUsageBatch(batch).call()
    signature = bytes(key.unsafe_sign_hash(digest).signature)
    call = world.ledger.functions.settle(batch, key.address, signature)
    return _wait(w3, call.transact({"from": world.relayer}))


def _owner(world: World, twin: int) -> str:
    return str(world.ledger.functions.ownerOf(twin).call())


def _as(world: World, sender: str, call: Any) -> TxReceipt:
    return _wait(world.w3, call.transact({"from": sender}))


def _audit(chain: Chain, **kwargs: Any) -> AuditResult:
    rpc = JsonRpc(chain.url)
    try:
        return run_audit(rpc, ledger=chain.world.ledger.address, start_block=0, **kwargs)
    finally:
        rpc.close()


def _messages(result: AuditResult) -> list[str]:
    return [f"{d.kind}: {d.message}" for d in result.discrepancies]


class Ids:
    """Usage ids above those the setup and other usages of a test took."""

    def __init__(self, start: int = 1_000) -> None:
        self.next = start

    def __call__(self) -> int:
        self.next += 1
        return self.next


@dataclass
class History:
    """What :func:`_history` did, with the figures the audit must find."""

    paid: dict[int, int]
    """Usage id -> amount of every paid usage."""
    rejected: dict[int, Outcome]
    receipts: list[TxReceipt]
    paid_out: int
    debt: int
    withdrawn: int


def _history(world: World) -> History:
    """Settlements paid and rejected for every reason a test can stage, a revocation, a pause, a
    payout, an escrow withdrawal, a debt and its repayment."""
    w3, ledger, fn = world.w3, world.ledger, world.ledger.functions
    ids = Ids()
    paid: dict[int, int] = {}
    rejected: dict[int, Outcome] = {}
    receipts: list[TxReceipt] = []
    now = _now(w3)

    def use(twin: int, b: int, *, at: int, quantity: int = 2, kind: int | None = None) -> Usage:
        plan = world.licenses[twin, b]
        return Usage(ids(), twin, at, quantity, min(plan.prices) if kind is None else kind)

    def price(usage: Usage, b: int) -> int:
        return world.licenses[usage.twin_id, b].prices[usage.usage_type] * usage.quantity

    # 1. One paid usage of every license, plus rejections: unknown twin, zero quantity, a type
    # the license does not price.
    groups: list[tuple[str, list[Usage]]] = []
    for b, brand in enumerate(world.brands):
        usages = [use(twin, b, at=now - 60) for twin in world.twin_ids]
        paid.update({u.usage_id: price(u, b) for u in usages})
        groups.append((brand, usages))
    unknown = Usage(ids(), 999, now - 60, 1, 0)
    zero = use(1, 0, at=now - 60, quantity=0)
    unlicensed_type = next(t for t in range(4) if t not in world.licenses[2, 0].prices)
    not_priced = use(2, 0, at=now - 60, kind=unlicensed_type)
    groups[0][1].extend([unknown, zero, not_priced])
    rejected |= {
        unknown.usage_id: Outcome.UNKNOWN_TWIN,
        zero.usage_id: Outcome.ZERO_QUANTITY,
        not_priced.usage_id: Outcome.USAGE_TYPE_NOT_LICENSED,
    }
    receipts.append(_settle(world, groups))

    # 2. Twin 3's license to brand 0 revoked, twin 4 paused: uses after them are rejected, uses
    # before still pay. Twin 1 is paid out to its owner.
    before = _now(w3) - 5
    _as(world, _owner(world, 3), fn.revokeLicense(3, world.brands[0], 0))
    _as(world, _owner(world, 4), fn.setTwinPaused(4, True))
    _advance(w3, 30)
    after = _now(w3) - 10
    early, late = use(3, 0, at=before), use(3, 0, at=after)
    paused_use = use(4, 0, at=after)
    paid[early.usage_id] = price(early, 0)
    rejected |= {late.usage_id: Outcome.LICENSE_REVOKED, paused_use.usage_id: Outcome.TWIN_PAUSED}
    receipts.append(_settle(world, [(world.brands[0], [early, late, paused_use])]))
    _as(world, _owner(world, 4), fn.setTwinPaused(4, False))
    owner1 = _owner(world, 1)
    receipt = _as(world, world.relayer, fn.payout(owner1, [1]))
    paid_out = sum(
        e["args"]["amount"]
        for e in ledger.events.PayeePaid().process_receipt(receipt, errors=DISCARD)
    )

    # 3. Brand 2 withdraws all its escrow; its next usages run into debt, which a deposit repays.
    brand2 = world.brands[2]
    escrow2 = int(fn.brandAccount(brand2).call()[0])
    _as(world, brand2, fn.requestEscrowWithdrawal(escrow2))
    _advance(w3, NOTICE_PERIOD + 1)
    _as(world, brand2, fn.withdrawEscrow())
    now = _now(w3)
    # Licenses of the setup run for a year: still valid after the notice period.
    owed = [use(twin, 2, at=now - 5) for twin in (5, 6, 5)]
    paid.update({u.usage_id: price(u, 2) for u in owed})
    receipts.append(_settle(world, [(brand2, owed)]))
    debt = sum(price(u, 2) for u in owed)
    _as(world, brand2, world.token.functions.mint(brand2, debt))
    _as(world, brand2, world.token.functions.approve(ledger.address, debt))
    _as(world, brand2, fn.deposit(brand2, debt))
    return History(paid, rejected, receipts, paid_out, debt, escrow2)


# ---------------------------------------------------------------- a clean history


def test_a_clean_history_rebuilds_with_exact_counts_and_totals(snapshot: Chain) -> None:
    world = snapshot.world
    history = _history(world)
    result = _audit(snapshot)

    assert _messages(result) == []
    assert result.clean
    summary = result.summary()
    assert summary["twins"] == 20
    assert summary["licenses"] == 60
    assert summary["license_versions"] == 60
    assert summary["license_versions_revoked"] == 1
    assert summary["twins_paused"] == 0
    assert summary["usages"] == len(history.paid) + len(history.rejected) == 69
    assert summary["usages_paid"] == len(history.paid) == 64
    assert summary["rejected_by_reason"] == {
        "unknown_twin": 1,
        "usage_type_not_licensed": 1,
        "license_revoked": 1,
        "twin_paused": 1,
        "zero_quantity": 1,
    }
    assert summary["amount_paid"] == sum(history.paid.values())
    assert summary["batches"] == summary["batches_verified"] == 3
    assert summary["deposits"] == 4
    assert summary["deposited"] == 3 * ESCROW_PER_BRAND + history.debt
    assert summary["escrow_withdrawals"] == 1
    assert summary["escrow_withdrawn"] == history.withdrawn
    assert summary["debt_recorded"] == summary["debt_repaid"] == history.debt
    assert summary["debt_outstanding"] == 0
    assert summary["payouts"] == 1
    assert summary["payouts_by_payee"] == 0  # the relayer paid the owner out
    assert summary["paid_out"] == history.paid_out > 0
    ledger = world.ledger.functions
    assert summary["liabilities"] == ledger.totalLiabilities().call()
    assert summary["liabilities"] == world.token.functions.balanceOf(world.ledger.address).call()
    assert summary["balance_checks_failed"] == 0

    usages = {u[0]: u for u in result.state.usages}
    assert {i: u[7] for i, u in usages.items() if u[6] == 0} == history.paid
    assert {i: Outcome(u[6]) for i, u in usages.items() if u[6] != 0} == history.rejected
    tx_of = {u[0]: result.state.batches[u[9]].tx_hash for u in result.state.usages}
    for receipt in history.receipts:
        assert receipt["transactionHash"].to_0x_hex() in tx_of.values()
    batch = result.state.batches[0]
    assert batch.signer == batch.attester == world.attester.address
    assert len(batch.groups) == 3
    pair = result.state.licenses[3, world.brands[0]]
    assert pair.current is not None
    assert pair.current.revoked
    assert pair.current.valid_until == pair.current.revoked_at
    assert len(result.state.twins[4].pauses) == 1
    assert result.state.twins[4].paused_since == 0
    assert result.state.brands[world.brands[2]].debt_head == 3  # twins 5, 6, 5: three entries


def test_the_command_prints_a_summary_and_writes_json_and_csv(
    snapshot: Chain, tmp_path: Path
) -> None:
    world = snapshot.world
    history = _history(world)
    result = CliRunner().invoke(
        app,
        [
            "audit", "--rpc", snapshot.url, "--ledger", world.ledger.address, "--from-block", "0",
            "--json", str(tmp_path / "audit.json"), "--csv", str(tmp_path / "csv"), "--quiet",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "clean: the ledger's state is what its events say" in result.stdout
    assert "twin paused" in result.stdout
    data = orjson.loads((tmp_path / "audit.json").read_bytes())
    assert data["clean"] is True
    assert data["summary"]["usages"] == 69
    assert data["discrepancies"] == []
    with (tmp_path / "csv" / "usages.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 69
    by_id = {int(r["usage_id"]): r for r in rows}
    some_paid = next(iter(history.paid))
    assert int(by_id[some_paid]["amount"]) == history.paid[some_paid]
    revoked = next(i for i, o in history.rejected.items() if o is Outcome.LICENSE_REVOKED)
    assert (by_id[revoked]["code"], by_id[revoked]["outcome_code"], by_id[revoked]["sentence"]) == (
        "license_revoked",
        "5",
        "the license had been revoked at the time of use",
    )
    with (tmp_path / "csv" / "batches.csv").open() as handle:
        batches = list(csv.DictReader(handle))
    assert [b["verified"] for b in batches] == ["True"] * 3
    with (tmp_path / "csv" / "balances.csv").open() as handle:
        balances = list(csv.DictReader(handle))
    assert {b["ok"] for b in balances} == {"True"}
    assert any(b["kind"] == "token balance" for b in balances)


# ---------------------------------------------------------------- tampering


def test_tokens_sent_straight_to_the_ledger_are_named(snapshot: Chain) -> None:
    world = snapshot.world
    _history(world)
    brand = world.brands[0]
    _as(world, brand, world.token.functions.mint(brand, 7))
    _as(world, brand, world.token.functions.transfer(world.ledger.address, 7))
    result = _audit(snapshot)
    owed = result.state.liabilities()
    assert _messages(result) == [
        f"balance: the ledger holds {owed + 7} tokens but its events say it owes {owed} "
        "(escrow, debt reserves, accrued royalties and claimable balances): 7 more than it owes"
    ]


def test_a_view_that_disagrees_with_the_events_is_named(snapshot: Chain) -> None:
    world = snapshot.world
    brand = world.brands[1]
    slot = keccak(HexBytes(brand).rjust(32, b"\0") + ESCROW_SLOT.to_bytes(32, "big"))
    word = int.from_bytes(bytes(world.w3.eth.get_storage_at(world.ledger.address, slot)), "big")
    assert word & (2**128 - 1) == ESCROW_PER_BRAND  # the slot holds the brand's escrow
    _rpc(world.w3, "anvil_setStorageAt", world.ledger.address, "0x" + slot.hex(),
         "0x" + (word + 1_000).to_bytes(32, "big").hex())  # fmt: skip
    _rpc(world.w3, "evm_mine")
    result = _audit(snapshot)
    assert _messages(result) == [
        f"balance: escrow of {brand} is {ESCROW_PER_BRAND + 1_000} on chain, but the events add "
        f"up to {ESCROW_PER_BRAND}"
    ]
    assert not result.clean


def test_a_batch_signed_while_the_role_was_held_passes_after_revocation(snapshot: Chain) -> None:
    world = snapshot.world
    manager = world.manager.functions
    admin = world.w3.eth.accounts[0]
    key: LocalAccount = Account.from_key(keccak(text="audit test: short-lived attester"))
    _as(world, admin, manager.grantRole(ATTESTER_ROLE, key.address, 0))
    usage = Usage(5_001, 1, _now(world.w3) - 5, 1, min(world.licenses[1, 0].prices))
    _settle(world, [(world.brands[0], [usage])], attester=key)
    _as(world, admin, manager.revokeRole(ATTESTER_ROLE, key.address))
    result = _audit(snapshot)
    assert _messages(result) == []
    assert result.state.batches[-1].signer == key.address
    assert [h[2:5] for h in result.state.role_history if h[3] == key.address] == [
        ["ATTESTER_ROLE", key.address, "granted"],
        ["ATTESTER_ROLE", key.address, "revoked"],
    ]


def test_a_batch_signed_by_a_key_no_role_event_names_attester_is_caught(snapshot: Chain) -> None:
    """The role written straight into the access manager's storage (no RoleGranted): the ledger
    accepts the batch, but by the manager's events the signer never was an attester."""
    world = snapshot.world
    w3 = world.w3
    manager = world.manager
    key: LocalAccount = Account.from_key(keccak(text="audit test: attester without an event"))
    role_members = keccak(ATTESTER_ROLE.to_bytes(32, "big") + ROLES_SLOT.to_bytes(32, "big"))
    bridge_slot = keccak(HexBytes(world.attester.address).rjust(32, b"\0") + role_members)
    since = int.from_bytes(bytes(w3.eth.get_storage_at(manager.address, bridge_slot))) & (2**48 - 1)
    assert 0 < since <= _now(w3)  # the slot holds the world attester's membership
    member = keccak(HexBytes(key.address).rjust(32, b"\0") + role_members)
    _rpc(w3, "anvil_setStorageAt", manager.address, "0x" + member.hex(), "0x" + "00" * 31 + "01")
    assert manager.functions.hasRole(ATTESTER_ROLE, key.address).call()[0]
    usage = Usage(5_002, 2, _now(w3) - 5, 1, min(world.licenses[2, 1].prices))
    receipt = _settle(world, [(world.brands[1], [usage])], attester=key)
    tx = receipt["transactionHash"].to_0x_hex()
    result = _audit(snapshot)
    digest = result.state.batches[-1].digest
    assert _messages(result) == [
        f"attester: batch {digest} (tx {tx}, block {receipt['blockNumber']}) was signed by "
        f"{key.address}, which did not hold ATTESTER_ROLE then according to the access "
        "manager's role events"
    ]


def _database(url: str, world: World, result: AuditResult) -> str:
    """A bridge database that knows every settled usage exactly as the chain does."""
    migrate.upgrade(url)
    store = Store.from_url(url)
    state = result.state
    with store.session() as session:
        brand_ids = {}
        for i, address in enumerate(world.brands):
            row = Brand(name=f"brand {i}", address=address, api_key_hash=f"{i:064x}")
            session.add(row)
            session.flush()
            brand_ids[address] = row.id
        for u in state.usages:
            batch = state.batches[u[9]]
            session.add(
                UsageEvent(
                    id=u[0],
                    brand_id=brand_ids[u[1]],
                    event_id=f"event-{u[0]}",
                    body_hash="0" * 64,
                    twin_id=u[2],
                    usage_type=u[5],
                    quantity=u[4],
                    used_at=datetime.fromtimestamp(u[3], UTC),
                    status=UsageStatus.SETTLED if u[6] == 0 else UsageStatus.REJECTED,
                    reason_code=None if u[6] == 0 else u[6],
                    tx_hash=batch.tx_hash,
                    block_number=batch.block_number,
                    log_index=u[10],
                    amount=u[7],
                )
            )
        session.commit()
    store.close()
    return url


def test_reconciliation_names_each_mismatch_with_the_database(
    snapshot: Chain, empty_db_url: str
) -> None:
    """On SQLite and PostgreSQL, each read in a read-only transaction."""
    world = snapshot.world
    history = _history(world)
    result = _audit(snapshot)
    url = _database(empty_db_url, world, result)
    check = reconcile(url, result.state)
    assert (check.usages, check.batches, check.discrepancies) == (
        len(result.state.usages),
        len({u.batch for u in result.state.usages}),
        [],
    )
    assert check.sentence().endswith(
        f": {len(result.state.usages):,} usages and {check.batches:,} batches compared with the "
        "chain: all agree"
    )

    state = result.state
    paid_ids = sorted(history.paid)
    missing, wrong_amount, wrong_tx = paid_ids[0], paid_ids[1], paid_ids[2]
    rows = {u[0]: u for u in state.usages}
    other_tx = state.batches[-1].tx_hash
    store = Store.from_url(url)
    with store.session() as session:
        session.delete(session.get(UsageEvent, missing))
        session.get(UsageEvent, wrong_amount).amount = history.paid[wrong_amount] + 1
        session.get(UsageEvent, wrong_tx).tx_hash = other_tx
        first = session.get(UsageEvent, paid_ids[3])
        assert first is not None
        session.add(
            UsageEvent(
                id=777_777, brand_id=first.brand_id, event_id="ghost", body_hash="0" * 64,
                twin_id=1, usage_type=0, quantity=1, used_at=first.used_at,
                status=UsageStatus.SETTLED, tx_hash=other_tx, block_number=1, log_index=0,
                amount=5,
            )
        )  # fmt: skip
        session.commit()
    store.close()

    def label(usage_id: int) -> str:
        return f"usage {usage_id} (event 'event-{usage_id}' of {rows[usage_id][1]})"

    tx = state.batches[rows[wrong_tx][9]].tx_hash
    assert sorted(d.message for d in reconcile(url, state).discrepancies) == sorted([
        f"{label(wrong_amount)} was paid {history.paid[wrong_amount]} on chain (tx "
        f"{state.batches[rows[wrong_amount][9]].tx_hash}), but the database records "
        f"{history.paid[wrong_amount] + 1}",
        f"{label(wrong_tx)} was settled in tx {tx} on chain, but the database says tx {other_tx}",
        f"usage 777777 (event 'ghost' of {rows[paid_ids[3]][1]}) is settled in the database "
        f"(tx {other_tx}), but no settlement on chain has it",
        f"usage {missing} of {rows[missing][1]} (paid) was settled on chain in tx "
        f"{state.batches[rows[missing][9]].tx_hash}, but the database does not know it",
    ])  # fmt: skip

    cli = CliRunner().invoke(
        app,
        ["audit", "--rpc", snapshot.url, "--ledger", world.ledger.address, "--quiet",
         "--against-db", url],
    )  # fmt: skip
    assert cli.exit_code == 1, cli.output
    assert "4 discrepancies" in cli.stdout
    assert "but the database does not know it" in cli.stdout
    assert cli.stdout.splitlines()[-1].endswith(
        f"usages and {check.batches:,} batches compared with the chain: 4 disagreement(s)"
    )


# ---------------------------------------------------------------- resuming and ranges


def test_a_resumed_audit_equals_a_full_scan(snapshot: Chain, tmp_path: Path) -> None:
    world = snapshot.world
    history = _history(world)
    middle = history.receipts[1]["blockNumber"]
    checkpoint = tmp_path / "audit-state.json"
    first = _audit(snapshot, to_block=middle, checkpoint=checkpoint)
    assert first.clean
    saved = LedgerState.load(checkpoint)
    assert saved.last_block == middle
    assert len(saved.usages) == 66
    resumed = _audit(snapshot, checkpoint=checkpoint)
    assert resumed.resumed_from == middle
    full = _audit(snapshot)
    assert resumed.to_block == full.to_block
    assert resumed.to_json() == full.to_json()
    assert resumed.stats.usages == 3
    assert LedgerState.load(checkpoint).last_block == full.to_block


class _RefusingProxy(BaseHTTPRequestHandler):
    """Forwards JSON-RPC to anvil but refuses eth_getLogs over more than ``limit`` blocks as
    providers do ("query returned more than 10000 results")."""

    upstream = ""
    limit = 0
    asked: list[tuple[int, int, bool]] = []  # noqa: RUF012 - set per test

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        calls = orjson.loads(body)
        single = isinstance(calls, dict)
        answers = []
        forward = []
        for call in [calls] if single else calls:
            if call["method"] == "eth_getLogs":
                first, last = (int(call["params"][0][k], 16) for k in ("fromBlock", "toBlock"))
                refused = last - first + 1 > self.limit
                self.asked.append((first, last, refused))
                if refused:
                    error = {"code": -32005, "message": "query returned more than 10000 results"}
                    answers.append({"jsonrpc": "2.0", "id": call["id"], "error": error})
                    continue
            forward.append(call)
        if forward:
            reply = requests.post(
                self.upstream,
                data=orjson.dumps(forward),
                headers={"Content-Type": "application/json"},
                timeout=30,
            ).json()
            answers.extend(reply if isinstance(reply, list) else [reply])
        out = orjson.dumps(answers[0] if single else answers)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: Any) -> None:
        pass


def test_log_ranges_halve_on_a_refusal_and_grow_back(snapshot: Chain) -> None:
    world = snapshot.world
    _history(world)
    _RefusingProxy.upstream, _RefusingProxy.limit, _RefusingProxy.asked = snapshot.url, 8, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RefusingProxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        rpc = JsonRpc(f"http://127.0.0.1:{server.server_address[1]}")
        sizer = RangeSizer(max_range=64)
        through_proxy = run_audit(rpc, ledger=world.ledger.address, start_block=0, sizer=sizer)
        rpc.close()
    finally:
        server.shutdown()
        server.server_close()
    direct = _audit(snapshot)
    assert through_proxy.to_json() == direct.to_json()
    assert through_proxy.clean
    asked = _RefusingProxy.asked
    # 64 refused, then 32, then 16, then 8 served; after a served range of 8 it asks 16 again.
    assert sizer.refusals[:3] == [64, 32, 16]
    served = [(a, b) for a, b, refused in asked if not refused]
    assert all(b - a + 1 <= 8 for a, b in served)
    assert served[0][0] == 0
    assert all(nxt[0] == prev[1] + 1 for prev, nxt in itertools.pairwise(served))
    assert served[-1][1] == direct.to_block
    grown = [b - a + 1 for a, b, refused in asked[4:] if refused]
    assert 16 in grown
    assert all(8 < size <= 16 for size in grown)


def test_exports_hold_every_table(snapshot: Chain, tmp_path: Path) -> None:
    history = _history(snapshot.world)
    result = _audit(snapshot)
    written = write_csv(result, tmp_path)
    assert sorted(p.name for p in written) == sorted([
        "usages.csv", "batches.csv", "balances.csv", "twins.csv", "licenses.csv", "offers.csv",
        "deposits.csv", "debts.csv", "payouts.csv", "discrepancies.csv",
    ])  # fmt: skip
    with (tmp_path / "debts.csv").open() as handle:
        debts = list(csv.DictReader(handle))
    assert [d["event"] for d in debts] == ["recorded"] * 3 + ["repaid"] * 3
    with (tmp_path / "usages.csv").open() as handle:
        paid = [u for u in csv.DictReader(handle) if u["code"] == "paid"]
    # Brand 2's three usages found no escrow: each is owed in full; the others were funded.
    owed = [u for u in paid if u["recorded_as_debt"] != "0"]
    assert [(u["paid_from_escrow"], u["recorded_as_debt"]) for u in owed] == [
        ("0", u["amount"]) for u in owed
    ]
    assert len(owed) == 3
    assert sum(int(u["recorded_as_debt"]) for u in owed) == history.debt
    assert {u["paid_from_escrow"] == u["amount"] for u in paid if u not in owed} == {True}
    with (tmp_path / "licenses.csv").open() as handle:
        licenses = list(csv.DictReader(handle))
    with (tmp_path / "offers.csv").open() as handle:
        offers = list(csv.DictReader(handle))
    assert len(licenses) == len(offers) == 60
    assert {o["status"] for o in offers} == {"accepted"}
    # Each version carries the terms hash of the offer it was accepted from.
    assert {(v["twin_id"], v["brand"], v["terms_hash"]) for v in licenses} == {
        (o["twin_id"], o["brand"], o["terms_hash"]) for o in offers
    }


def test_a_checkpoint_keeps_amounts_beyond_64_bits(tmp_path: Path) -> None:
    state = LedgerState("0x" + "ab" * 20, 1, 0, 10)
    state.brands["0x" + "cd" * 20] = BrandBook(escrow=10**30, deposited=2**200)
    state.usages.append((1, "0x" + "cd" * 20, 1, 100, 3, 0, 0, 3 * 10**24, 0, 0, 4))
    state.save(tmp_path / "state.json")
    loaded = LedgerState.load(tmp_path / "state.json")
    assert loaded.to_json() == state.to_json()
    assert loaded.brands["0x" + "cd" * 20].deposited == 2**200


def _deploy_block(w3: Web3, address: str) -> int:
    low, high = 0, int(w3.eth.block_number)
    while low < high:
        middle = (low + high) // 2
        if w3.eth.get_code(Web3.to_checksum_address(address), middle):
            high = middle
        else:
            low = middle + 1
    return low


def _manifest(path: Path, world: World, *, chain_id: int, block: int) -> Path:
    def record(address: str, block_number: int) -> ContractRecord:
        return ContractRecord(
            address=address, tx_hash="0x" + "00" * 32, block_number=block_number,
            abi_hash="0x", bytecode_hash="0x", runtime_code_hash="0x",
        )  # fmt: skip

    contracts = {
        "TwinLedger": record(world.ledger.address, block),
        "TwinAccessManager": record(
            world.manager.address, _deploy_block(world.w3, world.manager.address)
        ),
    }
    manifest = Manifest(
        network="local", chain_id=chain_id, contracts=contracts, libraries={},
        payment_token=world.token.address, compiler=CompilerRecord(version="0", settings={}),
        deployer=world.w3.eth.accounts[0], roles={}, created_at=datetime.now(UTC),
        ledger_config=WORLD_CONFIG.as_dict(), role_delay=0,
    )  # fmt: skip
    write_manifest(path, manifest)
    return path


def test_the_command_audits_from_the_manifests_deployment_block(
    snapshot: Chain, tmp_path: Path
) -> None:
    world = snapshot.world
    _history(world)
    block = _deploy_block(world.w3, world.ledger.address)
    assert block > 0
    manifest = _manifest(tmp_path / "local.json", world, chain_id=31337, block=block)
    out = tmp_path / "audit.json"
    result = CliRunner().invoke(
        app,
        ["audit", "--rpc", snapshot.url, "--deployment", str(manifest), "--json", str(out),
         "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = orjson.loads(out.read_bytes())
    assert data["from_block"] == block
    assert data["summary"]["usages"] == 69

    other_chain = _manifest(tmp_path / "sepolia.json", world, chain_id=11155111, block=block)
    refused = CliRunner().invoke(
        app, ["audit", "--rpc", snapshot.url, "--deployment", str(other_chain), "--quiet"]
    )
    assert refused.exit_code == 2
    assert f"the RPC {snapshot.url} is chain 31337, the deployment is on chain 11155111" in (
        refused.output
    )


class _PendingTxRpc:
    """A node that answers a transaction just mined as still pending (no block number), as anvil
    does for a moment under load, while its logs already name the block."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, list[Any]]] = []

    def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        self.asked.extend(calls)
        answers: list[Any] = []
        for method, params in calls:
            if method == "eth_getTransactionByHash":
                tx = {"to": "0x" + "cd" * 20, "input": "0xabcd", "blockNumber": None}
                answers.append(None if params[0] == "0x" + "99" * 32 else tx)
            else:
                answers.append({"timestamp": hex(1_000 + int(params[0], 16))})
        return answers


def test_a_settlement_transaction_is_timed_by_the_block_its_logs_name() -> None:
    from bridge.audit.logs import SETTLED_TOPIC as _USAGES_SETTLED_TOPIC
    from bridge.audit.logs import TxInfo as _TxInfo
    from bridge.audit.scan import transactions as _transactions

    def log(tx: str, block: int) -> dict[str, Any]:
        return {"topics": [_USAGES_SETTLED_TOPIC], "transactionHash": tx, "blockNumber": hex(block)}

    rpc = _PendingTxRpc()
    one, two, gone = "0x" + "11" * 32, "0x" + "22" * 32, "0x" + "99" * 32
    other = {
        "topics": ["0x" + "00" * 32],
        "transactionHash": "0x" + "33" * 32,
        "blockNumber": "0x1",
    }
    txs = _transactions(rpc, [log(one, 7), log(one, 7), other, log(two, 9), log(gone, 9)])  # type: ignore[arg-type]
    expected = _TxInfo(
        to=Web3.to_checksum_address("0x" + "cd" * 20), input=b"\xab\xcd", block_time=0
    )
    assert txs == {
        one: _TxInfo(expected.to, expected.input, block_time=1_007),
        two: _TxInfo(expected.to, expected.input, block_time=1_009),
    }
    assert rpc.asked == [
        ("eth_getTransactionByHash", [one]),
        ("eth_getTransactionByHash", [two]),
        ("eth_getTransactionByHash", [gone]),
        ("eth_getBlockByNumber", ["0x7", False]),
        ("eth_getBlockByNumber", ["0x9", False]),
    ]


# ---------------------------------------------------------------- agreements, limits, roles

DAY = 86_400


def _terms(brand: str, until: int, prices: dict[int, int], label: str) -> tuple[Any, ...]:
    return (brand, 0, until, 0, keccak(text=f"purpose {label}"), keccak(text=f"consent {label}"),
            list(prices.items()))  # fmt: skip


def _offer(world: World, owner: str, twin: int, terms: tuple[Any, ...]) -> tuple[int, bytes]:
    """The owner's offer: its version and terms hash."""
    receipt = _as(world, owner, world.ledger.functions.offerLicense(twin, terms))
    [offered] = world.ledger.events.LicenseOffered().process_receipt(receipt, errors=DISCARD)
    return int(offered["args"]["version"]), bytes(offered["args"]["termsHash"])


def _at(w3: Web3, when: int) -> None:
    """Mines an empty block timed ``when``."""
    _rpc(w3, "evm_setNextBlockTimestamp", when)
    _rpc(w3, "evm_mine")


def test_offers_limits_and_own_attesters_rebuild_with_the_new_outcomes(snapshot: Chain) -> None:
    world, w3 = snapshot.world, snapshot.world.w3
    fn = world.ledger.functions
    brand0, brand1, brand2 = world.brands
    ids = Ids(6_000)
    kind = min(world.licenses[1, 0].prices)
    price0 = world.licenses[1, 0].prices[kind]
    until = _now(w3) + 200 * DAY
    # A new twin with only an offer to brand 1; an offer to brand 1 of twin 2 is declined, one to
    # brand 2 of twin 2 withdrawn; brand 0 accepts version 1 of twin 1 at twice the price.
    model = w3.eth.accounts[-3]
    _as(world, w3.eth.accounts[1], fn.mint(model, "ipfs://twin/21", keccak(text="consent 21")))
    _offer(world, model, 21, _terms(brand1, until, {kind: 1}, "waits"))
    declined, _ = _offer(world, _owner(world, 2), 2, _terms(brand1, until, {kind: 1}, "no"))
    _as(world, brand1, fn.declineLicense(2, declined))
    withdrawn, _ = _offer(world, _owner(world, 2), 2, _terms(brand2, until, {kind: 1}, "back"))
    _as(world, _owner(world, 2), fn.revokeLicense(2, brand2, withdrawn))
    before = _now(w3) - 1
    version, terms_hash = _offer(
        world, _owner(world, 1), 1, _terms(brand0, until, {kind: 2 * price0}, "v1")
    )
    accepted = _as(world, brand0, fn.acceptLicense(1, version, terms_hash))
    accepted_at = int(w3.eth.get_block(accepted["blockNumber"])["timestamp"])
    # Brand 0 lowers its limits: one use of version 1 per usage, 5 uses of version 0 per day.
    _as(world, brand0, fn.setSpendingLimits(2 * price0, 5 * price0))
    # Brand 2 names its own attester, which holds no role.
    own: LocalAccount = Account.from_key(keccak(text="audit test: brand 2's own attester"))
    _as(world, brand2, fn.setBrandAttester(own.address))
    day = (_now(w3) // DAY + 2) * DAY  # a period starts here, more than a day from now
    _at(w3, day - 300)
    old_price, new_price = Usage(ids(), 1, before, 1, kind), Usage(ids(), 1, day - 400, 1, kind)
    too_dear = Usage(ids(), 1, day - 390, 2, kind)
    second = Usage(ids(), 1, day - 380, 1, kind)
    over_day = Usage(ids(), 1, day - 370, 1, kind)
    no_offer = Usage(ids(), 21, day - 360, 1, kind)
    receipt = _settle(world, [(brand0, [old_price, new_price, too_dear, second, over_day]),
                              (brand1, [no_offer])])  # fmt: skip
    _at(w3, day)
    next_day = Usage(ids(), 1, day - 350, 1, kind)
    _settle(world, [(brand0, [next_day])])
    self_attested = Usage((1 << 62) | ids(), 3, day - 340, 1, min(world.licenses[3, 2].prices))
    _settle(world, [(brand2, [self_attested])], attester=own)

    result = _audit(snapshot)
    assert _messages(result) == []
    assert result.summary()["balance_checks_failed"] == 0
    outcomes = {u.usage_id: (u.outcome, u.amount, u.license_version) for u in result.state.usages}
    assert [outcomes[u.usage_id] for u in (old_price, new_price, too_dear, second, over_day,
                                           no_offer, next_day)] == [
        (Outcome.PAID, price0, 0),
        (Outcome.PAID, 2 * price0, 1),
        (Outcome.OVER_USAGE_LIMIT, None, None),
        (Outcome.PAID, 2 * price0, 1),
        (Outcome.OVER_PERIOD_LIMIT, None, None),  # 1 + 2 + 2 + 2 > 5 (prices of version 0)
        (Outcome.OFFER_NOT_ACCEPTED, None, None),
        (Outcome.PAID, 2 * price0, 1),  # a new period
    ]  # fmt: skip
    assert outcomes[self_attested.usage_id][0] == Outcome.PAID
    assert result.summary()["rejected_by_reason"] == {
        "offer_not_accepted": 1, "over_usage_limit": 1, "over_period_limit": 1,
    }  # fmt: skip
    state = result.state
    assert [(o.twin_id, o.brand, o.version, o.status) for o in state.offers[60:]] == [
        (21, brand1, 0, "pending"),
        (2, brand1, 1, "declined"),
        (2, brand2, 1, "withdrawn"),
        (1, brand0, 1, "accepted"),
    ]
    current = state.licenses[1, brand0].current
    assert current is not None
    assert (current.number, current.valid_from, current.terms_hash) == (
        1, accepted_at, "0x" + terms_hash.hex()
    )  # fmt: skip
    book0, book2 = state.brands[brand0], state.brands[brand2]
    assert (book0.limits, book0.period_index, book0.spent_in_period) == (
        [2 * price0, 5 * price0, book0.limits[2] if book0.limits else 0], day // DAY, 2 * price0
    )  # fmt: skip
    assert book2.attester == own.address
    assert receipt["status"] == 1
    # The bridge's database never knew the usage brand 2's own attester settled.
    messages = [d.message for d in reconcile_compare([], state)]
    assert not any(f"usage {self_attested.usage_id} " in m for m in messages)
    assert any(f"usage {next_day.usage_id} " in m for m in messages)


def test_a_role_grant_counts_from_its_since_after_the_grant_delay(snapshot: Chain) -> None:
    world, w3 = snapshot.world, snapshot.world.w3
    manager = world.manager.functions
    admin = w3.eth.accounts[0]
    key: LocalAccount = Account.from_key(keccak(text="audit test: delayed attester"))
    _as(world, admin, manager.setGrantDelay(ATTESTER_ROLE, 600))
    _advance(w3, 5 * DAY + 1)  # the manager's minimum setback before a new grant delay counts
    granted = _as(world, admin, manager.grantRole(ATTESTER_ROLE, key.address, 0))
    since = int(w3.eth.get_block(granted["blockNumber"])["timestamp"]) + 600
    assert manager.hasRole(ATTESTER_ROLE, key.address).call() == [False, 0]
    _advance(w3, 601)
    usage = Usage(7_001, 1, _now(w3) - 5, 1, min(world.licenses[1, 0].prices))
    _settle(world, [(world.brands[0], [usage])], attester=key)

    result = _audit(snapshot)
    assert _messages(result) == []
    assert result.state.roles["ATTESTER_ROLE"][key.address] == since
    history = [h for h in result.state.role_history if h[3] in (key.address, None)]
    assert [h[2:] for h in history] == [
        ["ATTESTER_ROLE", None, "grant delay 600", history[0][5]],
        ["ATTESTER_ROLE", key.address, "granted", since],
    ]
    assert result.state.is_member("ATTESTER_ROLE", key.address, since)
    assert not result.state.is_member("ATTESTER_ROLE", key.address, since - 1)


# ---------------------------------------------------------------- the settlement rules alone


def _state_with_license(price: int) -> tuple[LedgerState, str]:
    """A state with twin 1 licensed to a brand at ``price`` per use of type 0, no limits."""
    brand = "0x" + "bb" * 20
    state = LedgerState("0x" + "ab" * 20, 1, 0, 10, manager=None, config=[0, DAY, 0, 10**9, 10**9])
    state.twins[1] = Twin(1, "0x" + "cc" * 20, "", "0x", 1, "0x")
    pair = LicensePair(current=Version(0, 0, 10**10, 0, {0: price}, "0x", "0x", 1, "0x"))
    state.licenses[1, brand] = pair
    state.brands[brand] = BrandBook(escrow=10**9)
    return state, brand


def _group(state: LedgerState, brand: str, at: int, words: list[int], paid: int) -> list[str]:
    """Settles one group at block time ``at``; the discrepancies it found."""
    problems: list[str] = []
    settlement = Settlement(state, lambda kind, message: problems.append(f"{kind}: {message}"))
    event = SettledLog(at, "0x" + f"{at:064x}", 0, "0x" + "dd" * 32, brand, "0x" + "ee" * 20,
                       paid, words)  # fmt: skip
    batch = settlement.open_batch(event, TxInfo(None, b"", at))
    settlement.settle_group(event, batch, state.brands[brand], [])
    return problems


def test_a_raise_counts_only_from_its_effective_time() -> None:
    state, brand = _state_with_license(30)
    book = state.brands[brand]
    book.limits, book.pending_limits = [10, 100, 0], [50, 500, 5_000]
    usage = Usage(1, 1, 4_000, 1, 0).encode()
    # At 4,999 the raise waits: 30 is over the limit of 10 per usage.
    assert _group(state, brand, 4_999, [usage | Outcome.OVER_USAGE_LIMIT], 0) == []
    assert book.pending_limits == [50, 500, 5_000]
    # From 5,000 on it is in force: the same usage pays.
    later = Usage(2, 1, 4_000, 1, 0).encode()
    assert _group(state, brand, 5_000, [later], 30) == []
    assert (book.limits, book.pending_limits, book.spent_in_period) == ([50, 500, 5_000], None, 30)
    # A ledger that paid what the limits refuse is named.
    dear = Usage(3, 1, 4_000, 2, 0).encode()
    book.limits = [60, 80, 0]  # 60 is within the limit per usage; 30 + 60 passes the period's
    assert _group(state, brand, 5_001, [dear], 60) == [
        f"outcome: usage 3 (twin 1, brand {brand}, type 0, time 4000) is 'paid' on chain (tx "
        f"0x{5_001:064x}), but the licenses, offers, pauses and spending limits of the events "
        "make it 'the usage would pass the brand's spending limit for the period'"
    ]


def test_an_unknown_outcome_code_is_a_discrepancy_never_a_crash() -> None:
    state, brand = _state_with_license(30)
    word = Usage(9, 1, 4_000, 1, 0).encode() | 200
    assert _group(state, brand, 5_000, [word], 0) == [
        f"outcome: usage 9 (twin 1, brand {brand}, type 0, time 4000) is 'unknown outcome 200' "
        f"on chain (tx 0x{5_000:064x}), but the licenses, offers, pauses and spending limits of "
        "the events make it 'paid'"
    ]
    [row] = state.usages
    assert (row.usage_id, row.outcome, row.amount) == (9, 200, None)
    result = AuditResult(state, 10, [], [], ScanStats())
    assert result.summary()["rejected_by_reason"] == {"unknown_200": 1}
    malformed = Usage(10, 1, 4_000, 1, 0).encode() | (1 << 20)
    assert _group(state, brand, 5_000, [malformed], 30) == [
        f"usage: usage 10 of {brand} in tx 0x{5_000:064x} has non-zero low bits (0x100000): the "
        "ledger refuses such usage words"
    ]


def test_a_pause_moves_a_withdrawals_times_and_the_manager_is_read_from_its_deployment(
    snapshot: Chain,
) -> None:
    world, w3 = snapshot.world, snapshot.world.w3
    fn, manager = world.ledger.functions, world.manager.functions
    admin, brand = w3.eth.accounts[0], world.brands[1]
    _as(world, admin, manager.grantRole(3, admin, 0))  # the pauser role, at once in this world
    requested = _as(world, brand, fn.requestEscrowWithdrawal(5 * 10**6))
    unlocks = int(w3.eth.get_block(requested["blockNumber"])["timestamp"]) + NOTICE_PERIOD
    paused = _as(world, admin, fn.pause())
    _advance(w3, 1_000)
    unpaused = _as(world, admin, fn.unpause())
    pause = int(w3.eth.get_block(unpaused["blockNumber"])["timestamp"]) - int(
        w3.eth.get_block(paused["blockNumber"])["timestamp"]
    )
    assert fn.brandAccount(brand).call()[4:] == (unlocks + pause, unlocks + pause + 7 * DAY)

    rpc = JsonRpc(snapshot.url)
    try:
        result = run_audit(
            rpc,
            ledger=world.ledger.address,
            start_block=_deploy_block(w3, world.ledger.address),
            manager=world.manager.address,
            manager_from_block=_deploy_block(w3, world.manager.address),
        )
    finally:
        rpc.close()
    assert _messages(result) == []
    state = result.state
    assert (state.paused, state.paused_seconds, state.manager) == (
        False,
        pause,
        world.manager.address,
    )
    checks = {(c.kind, c.subject): (c.rebuilt, c.on_chain) for c in result.checks}
    assert checks["withdrawal unlocks at", brand] == (unlocks + pause, unlocks + pause)
    assert checks["withdrawal lapses at", brand] == (unlocks + pause + 7 * DAY,) * 2
    assert checks["paused seconds", "ledger"] == (pause, pause)
    # The manager's events before the ledger's deployment count: its first admin, then the roles.
    assert state.role_history[0][2:5] == ["ADMIN_ROLE", admin, "granted"]
    assert state.roles["PAUSER_ROLE"] == {admin: state.role_history[-1][5]}


def test_against_db_never_creates_a_database_and_says_so_in_a_sentence(
    snapshot: Chain, tmp_path: Path
) -> None:
    world = snapshot.world
    target = ["audit", "--rpc", snapshot.url, "--ledger", world.ledger.address, "--quiet"]
    typo = tmp_path / "brige.db"
    for given in (str(typo), f"sqlite:///{typo}"):
        cli = CliRunner().invoke(app, [*target, "--against-db", given])
        assert (cli.exit_code, cli.stderr) == (2, f"audit stopped: no database at {typo}\n")
        assert not typo.exists()

    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE notes (id INTEGER)").connection.commit()
    before = other.read_bytes()
    cli = CliRunner().invoke(app, [*target, "--against-db", str(other)])
    assert (cli.exit_code, cli.stderr) == (
        2,
        f"audit stopped: {other} is not a Twin Bridge database: it has no brands or "
        "usage_events table\n",
    )
    assert other.read_bytes() == before

    clean = CliRunner().invoke(app, target)
    assert clean.exit_code == 0, clean.output
    assert clean.stdout.splitlines()[-1] == "database: not checked"


def test_against_db_opens_sqlite_read_only(tmp_path: Path) -> None:
    db = tmp_path / "bridge.db"
    sqlite3.connect(db).execute("CREATE TABLE brands (id INTEGER)").connection.commit()
    engine, name = open_read_only(str(db))
    try:
        with engine.connect() as conn, pytest.raises(OperationalError, match="readonly"):
            conn.exec_driver_sql("INSERT INTO brands VALUES (1)")
    finally:
        engine.dispose()
    assert name == str(db)
    with pytest.raises(AuditError, match=r"^no database at :memory:$"):
        open_read_only("sqlite:///:memory:")
