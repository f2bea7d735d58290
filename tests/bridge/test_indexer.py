"""The indexer against a real anvil (Prague) with the deployed ledger, on SQLite and PostgreSQL:
every event, settled usage, twin, license version, brand account and royalty row matches the
chain; only confirmed blocks are indexed; a reorg that replaces indexed blocks is rewound; a
restarted indexer resumes from its cursor; ranges shrink when the node refuses them.

Anvil, the ledger and its world (20 twins licensed to 3 brands, payees, escrow) are set up once per
module (the gas benchmark's setup) and each test runs from an ``evm_snapshot`` of that state."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session
from typer.testing import CliRunner
from web3 import Web3
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD
from web3.types import TxReceipt

from bridge.chain.client import Block, BlockTag, LogEntry, Web3ChainClient, classify_rpc_error
from bridge.cli.app import app
from bridge.domain.codec import Outcome, Usage
from bridge.errors import LogRangeTooLargeError
from bridge.indexer.follow import Indexer, IndexerChain, IndexerConflictError, IndexerError
from bridge.indexer.licenses import PricedVersion, covering_version, license_windows
from bridge.store import migrate
from bridge.store.ledger_queries import brand_limits, pending_offers, role_members
from bridge.store.models import (
    INDEXER_TABLES,
    BrandAccountChange,
    BrandAccountRow,
    IndexedBlock,
    IndexerCursor,
    LedgerEventRow,
    LicenseOfferRow,
    LicenseVersionRow,
    PayeePayout,
    RoleChange,
    RoyaltyDistribution,
    SettledUsageRow,
    TwinChange,
    TwinRow,
)
from bridge.store.repository import Store
from bridge.testing.world import NOTICE_PERIOD, USD, AnvilChain, World, sign_batch

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"

pytestmark = pytest.mark.integration

INDEX_TABLES = tuple(table.__tablename__ for table in INDEXER_TABLES)


Chain = AnvilChain


@pytest.fixture(scope="module")
def anvil_chain(anvil: AnvilChain) -> AnvilChain:
    return anvil


@pytest.fixture
def index_store(store: Store, backend: str) -> Store:
    """The migrated store of each backend with empty indexer tables."""
    if backend == "postgresql":
        with store.engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {', '.join(INDEX_TABLES)} RESTART IDENTITY"))
    return store


# ---------------------------------------------------------------- the chain


def _rpc(w3: Web3, method: str, *params: Any) -> Any:
    response = w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    assert "error" not in response, response
    return response["result"]


def _mine(w3: Web3, blocks: int = 1) -> None:
    for _ in range(blocks):
        _rpc(w3, "evm_mine")


def _latest(w3: Web3) -> int:
    return int(w3.eth.block_number)


def _now(w3: Web3) -> int:
    return int(w3.eth.get_block("latest")["timestamp"])


def _wait(w3: Web3, tx: HexBytes) -> TxReceipt:
    receipt = w3.eth.wait_for_transaction_receipt(tx, timeout=30, poll_latency=0.01)
    assert receipt["status"] == 1
    return receipt


def _settle(world: World, groups: Sequence[tuple[str, Sequence[Usage]]]) -> TxReceipt:
    w3 = world.w3
    words = [(brand, [u.encode() for u in usages]) for brand, usages in groups]
    batch = (_now(w3) + 3600, words)
    call = world.ledger.functions.settle(batch, world.attester.address, sign_batch(world, batch))
    return _wait(w3, call.transact({"from": world.relayer}))


def _offer(world: World, twin: int, terms: tuple[Any, ...]) -> tuple[TxReceipt, int, bytes]:
    """The twin's owner offers ``terms``: the receipt, the offer's version and terms hash."""
    receipt = _as_owner(world, twin, world.ledger.functions.offerLicense(twin, terms))
    [offered] = world.ledger.events.LicenseOffered().process_receipt(receipt, errors=DISCARD)
    return receipt, int(offered["args"]["version"]), bytes(offered["args"]["termsHash"])


def _accept(world: World, twin: int, brand: str, version: int, terms_hash: bytes) -> TxReceipt:
    call = world.ledger.functions.acceptLicense(twin, version, terms_hash)
    return _wait(world.w3, call.transact({"from": brand}))


def _as_owner(world: World, twin: int, call: Any) -> TxReceipt:
    owner = world.ledger.functions.ownerOf(twin).call()
    return _wait(world.w3, call.transact({"from": owner}))


def _block_time(w3: Web3, receipt: TxReceipt) -> int:
    return int(w3.eth.get_block(receipt["blockNumber"])["timestamp"])


def _licensed(world: World, brand: int) -> list[tuple[int, int, int]]:
    """(twin, usage type, price) of each license of the brand, by twin."""
    return sorted(
        (twin, min(plan.prices), plan.prices[min(plan.prices)])
        for (twin, b), plan in world.licenses.items()
        if b == brand
    )


def _unlicensed_type(world: World, twin: int, brand: int) -> int:
    return next(t for t in range(4) if t not in world.licenses[twin, brand].prices)


def _chain_events(world: World, to_block: int) -> list[tuple[int, int, str, str]]:
    """(block, log index, tx hash, event name) of every log of the ledger and of its access
    manager up to ``to_block``."""
    names = {
        bytes(HexBytes(contract.events[e["name"]]().topic)): e["name"]
        for contract in (world.ledger, world.manager)
        for e in contract.abi
        if e["type"] == "event"
    }
    logs = world.w3.eth.get_logs(
        {
            "address": [world.ledger.address, world.manager.address],
            "fromBlock": 0,
            "toBlock": to_block,
        }
    )
    return sorted(
        (
            int(entry["blockNumber"]),
            int(entry["logIndex"]),
            HexBytes(entry["transactionHash"]).to_0x_hex(),
            names[bytes(entry["topics"][0])],
        )
        for entry in logs
    )


# ---------------------------------------------------------------- the store


def _indexer(
    chain: Chain, store: Store, *, client: IndexerChain | None = None, **options: int
) -> Indexer:
    settings = {"confirmations": 1, "start_block": 0, "max_block_range": 2000, **options}
    return Indexer(
        store,
        client or Web3ChainClient([chain.url], backoff=0),
        ledger_address=chain.world.ledger.address,
        **settings,
    )


def _events(store: Store) -> list[tuple[int, int, str, str]]:
    with store.session() as session:
        rows = session.execute(
            select(
                LedgerEventRow.block_number,
                LedgerEventRow.log_index,
                LedgerEventRow.tx_hash,
                LedgerEventRow.name,
            ).order_by(LedgerEventRow.block_number, LedgerEventRow.log_index)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def _usages(store: Store) -> dict[int, tuple[Any, ...]]:
    """usage id -> (brand, twin, used_at, quantity, type, outcome, amount, license version)."""
    with store.session() as session:
        return {
            row.usage_id: (
                row.brand,
                row.twin_id,
                int(row.used_at.timestamp()),
                row.quantity,
                row.usage_type,
                Outcome(row.outcome),
                row.amount,
                row.license_version,
            )
            for row in session.scalars(select(SettledUsageRow))
        }


def _dump(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every indexer table's rows without surrogate ids, sorted (for idempotency checks)."""
    dumped = {}
    with store.engine.connect() as conn:
        for table in INDEX_TABLES:
            result = conn.execute(text(f"SELECT * FROM {table}"))  # noqa: S608 - fixed names
            keys = [k for k in result.keys() if k not in ("id", "updated_at")]  # noqa: SIM118
            dumped[table] = sorted(
                (tuple(repr(row._mapping[k]) for k in keys) for row in result), key=repr
            )
    return dumped


def _assert_matches_chain(chain: Chain, store: Store, to_block: int) -> None:
    """Events, blocks, twins, license versions and brand accounts equal what the chain says."""
    world, w3 = chain.world, chain.w3
    fn = world.ledger.functions
    assert _events(store) == _chain_events(world, to_block)
    with store.session() as session:
        blocks = session.scalars(select(IndexedBlock).order_by(IndexedBlock.number)).all()
        assert blocks[-1].number == to_block
        for block in blocks:
            header = w3.eth.get_block(block.number)
            assert (block.hash, block.parent_hash, block.timestamp) == (
                header["hash"].to_0x_hex(),
                header["parentHash"].to_0x_hex(),
                header["timestamp"],
            )
        cursor = session.get(IndexerCursor, world.ledger.address)
        assert cursor is not None
        assert (cursor.block_number, cursor.block_hash) == (to_block, blocks[-1].hash)

        twins = {row.twin_id: row for row in session.scalars(select(TwinRow))}
        twin_ids = sorted(twins)
        assert twin_ids == list(range(1, len(twin_ids) + 1))  # every twin minted, in order
        assert twin_ids[: len(world.twin_ids)] == world.twin_ids
        for twin, row in twins.items():
            paused_since = fn.twinState(twin).call(block_identifier=to_block)[1]
            payees = fn.payeesOf(twin).call(block_identifier=to_block)
            assert (row.owner, row.uri, row.consent_hash, row.paused, row.paused_since) == (
                fn.ownerOf(twin).call(block_identifier=to_block),
                fn.tokenURI(twin).call(block_identifier=to_block),
                "0x" + fn.consentHashOf(twin).call(block_identifier=to_block).hex(),
                paused_since != 0,
                paused_since or None,
            )
            assert row.payees == [{"account": a, "bps": bps} for a, bps in payees]

        versions = session.scalars(select(LicenseVersionRow)).all()
        expected_count = sum(
            fn.licenseVersionCount(twin, brand).call(block_identifier=to_block)
            for twin in twin_ids
            for brand in world.brands
        )
        assert len(versions) == expected_count
        for v in versions:
            valid_from, valid_until, max_uses, _uses, revoked, prices = fn.licenseVersion(
                v.twin_id, v.brand, v.version
            ).call(block_identifier=to_block)
            assert (v.effective_from, v.effective_until, v.max_uses, v.revoked) == (
                valid_from,
                valid_until,
                max_uses,
                revoked,
            )
            assert sorted((p["usageType"], p["price"]) for p in v.prices) == sorted(prices)
        _assert_offers_match_chain(chain, session, to_block, twin_ids)
        _assert_limits_match_chain(chain, session, to_block)

        accounts = {row.brand: row for row in session.scalars(select(BrandAccountRow))}
        assert sorted(accounts) == sorted(world.brands)
        for brand, row in accounts.items():
            assert (
                row.escrow,
                row.debt,
                row.debt_reserve,
                row.pending_withdrawal,
                row.withdrawal_unlocks_at,
            ) == tuple(fn.brandAccount(brand).call(block_identifier=to_block))[:5]


def _assert_offers_match_chain(
    chain: Chain, session: Session, to_block: int, twin_ids: Sequence[int]
) -> None:
    """The store's waiting offers are the chain's ``offerOf`` of every (twin, brand)."""
    world, fn = chain.world, chain.world.ledger.functions
    onchain = {}
    for twin in twin_ids:
        for brand in world.brands:
            try:
                terms, version, terms_hash = fn.offerOf(twin, brand).call(block_identifier=to_block)
            except ContractLogicError:
                continue
            onchain[twin, brand] = (version, "0x" + terms_hash.hex(), terms[0], terms[1])
    stored = {
        (o.twin_id, o.brand): (o.version, o.terms_hash, o.valid_from, o.valid_until)
        for brand in world.brands
        for o in pending_offers(session, brand)
    }
    assert stored == onchain


def _assert_limits_match_chain(chain: Chain, session: Session, to_block: int) -> None:
    """The store's limits of each brand are the chain's ``brandLimits`` at ``to_block``."""
    world, fn = chain.world, chain.world.ledger.functions
    config = fn.config().call(block_identifier=to_block)
    at = int(chain.w3.eth.get_block(to_block)["timestamp"])
    for brand in world.brands:
        limits = brand_limits(session, brand, at=at, spending_period=config[1])
        in_force = limits.in_force
        pending = limits.pending
        assert (
            config[3] if in_force is None else in_force.per_usage,
            config[4] if in_force is None else in_force.per_period,
            limits.spent_in_period,
            limits.period_start,
            0 if pending is None else pending.per_usage,
            0 if pending is None else pending.per_period,
            0 if pending is None else pending.effective_at,
            limits.attester or ZERO_ADDRESS,
        ) == tuple(fn.brandLimits(brand).call(block_identifier=to_block))


# ---------------------------------------------------------------- tests


def test_the_covering_version_is_the_newest_granted_before_the_settlement() -> None:
    v0 = PricedVersion(version=0, valid_from=100, prices={1: 5}, position=(10, 0))
    v1 = PricedVersion(version=1, valid_from=300, prices={1: 7}, position=(20, 3))
    versions = [v0, v1]
    assert covering_version(versions, at=299, before=(30, 0)) == v0
    assert covering_version(versions, at=300, before=(30, 0)) == v1
    assert covering_version(versions, at=300, before=(20, 3)) == v0  # granted after the settle
    assert covering_version(versions, at=300, before=(20, 4)) == v1
    assert covering_version(versions, at=99, before=(30, 0)) is None


def test_license_windows_follow_grants_and_revocations() -> None:
    assert license_windows(
        [
            ("grant", 0, 100, 1_000),
            ("grant", 1, 500, 900),  # starts later: version 0 ends at 500
            ("grant", 2, 200, 800),  # starts earlier: version 1 never runs, version 0 ends at 200
            ("revoke", 0, 300, 0),  # ends version 2 at 300
            ("grant", 3, 400, 600),
        ]
    ) == {
        0: (100, 200, False),
        1: (200, 200, False),
        2: (200, 300, True),
        3: (400, 600, False),
    }


def test_indexes_settlements_owner_actions_and_payouts_exactly(
    snapshot: Chain, index_store: Store
) -> None:
    world, w3 = snapshot.world, snapshot.w3
    fn = world.ledger.functions
    brand0, brand1, brand2 = world.brands
    now = _now(w3)
    licensed = _licensed(world, 0)
    t1, type1, price1 = next(x for x in licensed if not fn.payeesOf(x[0]).call())
    (t2, type2, price2), (t3, _, _) = [x for x in licensed if x[0] != t1][:2]
    t4, type4, price4 = next(x for x in _licensed(world, 1) if x[0] not in (t1, t2, t3))
    paid1 = Usage(usage_id=1_001, twin_id=t1, used_at=now - 100, quantity=2, usage_type=type1)
    paid2 = Usage(usage_id=1_002, twin_id=t2, used_at=now - 90, quantity=3, usage_type=type2)
    unlicensed = Usage(
        usage_id=1_003,
        twin_id=t1,
        used_at=now - 80,
        quantity=1,
        usage_type=_unlicensed_type(world, t1, 0),
    )
    unknown = Usage(usage_id=1_004, twin_id=999, used_at=now - 70, quantity=1, usage_type=0)
    zero = Usage(usage_id=1_005, twin_id=t2, used_at=now - 60, quantity=0, usage_type=type2)
    paid4 = Usage(usage_id=1_006, twin_id=t4, used_at=now - 50, quantity=1, usage_type=type4)
    settled = _settle(
        world, [(brand0, [paid1, paid2, unlicensed, unknown, zero]), (brand1, [paid4])]
    )

    # Owner actions: revoke, pause, payees, a transfer; a payout; a brand asks for its escrow.
    agency = w3.eth.accounts[-1]
    owner1 = fn.ownerOf(t1).call()
    new_owner = w3.eth.accounts[-2]
    receipts = [
        settled,
        _as_owner(world, t3, fn.revokeLicense(t3, brand0, 0)),
        _as_owner(world, t2, fn.setTwinPaused(t2, True)),
        _as_owner(world, t4, fn.setPayees(t4, [(agency, 2_500)])),  # distributes t4 first
        transfer := _as_owner(world, t1, fn.transferFrom(owner1, new_owner, t1)),
        payout := _wait(w3, fn.payout(owner1, [t1]).transact({"from": agency})),
        _wait(w3, fn.requestEscrowWithdrawal(5 * USD).transact({"from": brand2})),
        _wait(w3, fn.requestEscrowWithdrawal(7 * USD).transact({"from": brand1})),
        _wait(w3, fn.cancelEscrowWithdrawal().transact({"from": brand1})),
        _as_owner(world, t3, fn.setTwinPaused(t3, True)),
        _as_owner(world, t3, fn.setTwinPaused(t3, False)),
    ]
    last = _latest(w3)

    indexer = _indexer(snapshot, index_store)
    assert indexer.cursor() is None
    assert indexer.catch_up() == last + 1
    assert indexer.step() == 0
    assert indexer.cursor() == last

    _assert_matches_chain(snapshot, index_store, last)
    with index_store.session() as session:
        account2 = session.get(BrandAccountRow, brand2)
        twin3 = session.get(TwinRow, t3)
        assert account2 is not None
        assert twin3 is not None
        assert (account2.pending_withdrawal, twin3.paused, twin3.paused_since) == (
            5 * USD,
            False,
            None,
        )
        assert [
            (c.event, c.pending_withdrawal, c.escrow_delta)
            for c in session.scalars(
                select(BrandAccountChange)
                .where(BrandAccountChange.brand == brand1)
                .order_by(BrandAccountChange.block_number, BrandAccountChange.log_index)
            )
        ] == [
            ("EscrowDeposited", 0, 100_000_000 * USD),
            ("UsagesSettled", 0, -price4),
            ("EscrowWithdrawalRequested", 7 * USD, 0),
            ("EscrowWithdrawalCancelled", 0, 0),
        ]
        assert [
            (c.event, c.paused, c.paused_since)
            for c in session.scalars(
                select(TwinChange).where(TwinChange.twin_id == t3).order_by(TwinChange.id)
            )
        ][-2:] == [
            ("TwinPaused", True, _block_time(w3, receipts[-2])),
            ("TwinUnpaused", False, None),
        ]
    assert _usages(index_store) == {
        1_001: (brand0, t1, now - 100, 2, type1, Outcome.PAID, 2 * price1, 0),
        1_002: (brand0, t2, now - 90, 3, type2, Outcome.PAID, 3 * price2, 0),
        1_003: (brand0, t1, now - 80, 1, unlicensed.usage_type, Outcome.USAGE_TYPE_NOT_LICENSED,
                None, None),
        1_004: (brand0, 999, now - 70, 1, 0, Outcome.UNKNOWN_TWIN, None, None),
        1_005: (brand0, t2, now - 60, 0, type2, Outcome.ZERO_QUANTITY, None, None),
        1_006: (brand1, t4, now - 50, 1, type4, Outcome.PAID, price4, 0),
    }  # fmt: skip
    with index_store.session() as session:
        [row] = session.scalars(select(SettledUsageRow).where(SettledUsageRow.usage_id == 1_002))
        log_index = {
            e["args"]["brand"]: e["logIndex"]
            for e in world.ledger.events.UsagesSettled().process_receipt(settled)
        }
        assert (row.block_number, row.tx_hash, row.log_index, row.position) == (
            settled["blockNumber"],
            settled["transactionHash"].to_0x_hex(),
            log_index[brand0],
            1,
        )
        assert row.block_time == datetime.fromtimestamp(
            w3.eth.get_block(settled["blockNumber"])["timestamp"], UTC
        )
        assert (
            row.batch_digest
            == "0x"
            + world.ledger.events.UsagesSettled()
            .process_receipt(settled)[0]["args"]["batchDigest"]
            .hex()
        )
        [minted] = session.scalars(
            select(LedgerEventRow).where(
                LedgerEventRow.name == "TwinMinted", LedgerEventRow.twin_id == t1
            )
        )
        assert minted.args == {
            "twinId": t1,
            "owner": owner1,
            "uri": fn.tokenURI(t1).call(),
            "consentHash": "0x" + fn.consentHashOf(t1).call().hex(),
        }
        # The royalties of t1 went to its first owner on the transfer, then out in the payout.
        distributed = [
            (
                int(e["args"]["twinId"]),
                e["args"]["payee"],
                int(e["args"]["amount"]),
                e["transactionHash"].to_0x_hex(),
            )
            for receipt in receipts
            for e in world.ledger.events.RoyaltiesDistributed().process_receipt(
                receipt, errors=DISCARD
            )
        ]
        assert (t1, owner1, 2 * price1, transfer["transactionHash"].to_0x_hex()) in distributed
        assert {twin for twin, *_ in distributed} == {t1, t4}
        assert [
            (r.twin_id, r.payee, r.amount, r.tx_hash)
            for r in session.scalars(
                select(RoyaltyDistribution).order_by(
                    RoyaltyDistribution.block_number, RoyaltyDistribution.log_index
                )
            )
        ] == distributed
        assert [
            (p.payee, p.caller, p.amount, p.block_number)
            for p in session.scalars(select(PayeePayout))
        ] == [(owner1, agency, 2 * price1, payout["blockNumber"])]
        # Escrow moves of brand 0: the setup's deposit, then the settlement of its group.
        assert [
            (c.event, c.escrow_delta, c.debt_delta, c.escrow)
            for c in session.scalars(
                select(BrandAccountChange)
                .where(BrandAccountChange.brand == brand0)
                .order_by(BrandAccountChange.block_number, BrandAccountChange.log_index)
            )
        ] == [
            ("EscrowDeposited", 100_000_000 * USD, 0, 100_000_000 * USD),
            (
                "UsagesSettled",
                -(2 * price1 + 3 * price2),
                0,
                100_000_000 * USD - 2 * price1 - 3 * price2,
            ),
        ]


def test_a_regranted_license_prices_each_usage_by_the_version_in_force_at_its_time(
    snapshot: Chain, index_store: Store
) -> None:
    world, w3 = snapshot.world, snapshot.w3
    brand = world.brands[0]
    (twin, usage_type, price), *_ = _licensed(world, 0)
    before = _now(w3) - 10
    terms = (
        brand,
        0,  # from the grant
        _now(w3) + 30 * 24 * 3600,
        0,
        keccak(text="second campaign"),
        keccak(text="second consent"),
        [(usage_type, 2 * price + 1)],
    )
    _, version, terms_hash = _offer(world, twin, terms)
    assert version == 1
    grant = _accept(world, twin, brand, version, terms_hash)
    granted_at = int(w3.eth.get_block(grant["blockNumber"])["timestamp"])
    _mine(w3)
    after = _now(w3)
    old_use = Usage(9_401, twin, before, 2, usage_type)
    new_use = Usage(9_402, twin, after, 3, usage_type)
    _settle(world, [(brand, [old_use, new_use])])
    last = _latest(w3)

    _indexer(snapshot, index_store).catch_up()
    _assert_matches_chain(snapshot, index_store, last)
    assert _usages(index_store) == {
        9_401: (brand, twin, before, 2, usage_type, Outcome.PAID, 2 * price, 0),
        9_402: (brand, twin, after, 3, usage_type, Outcome.PAID, 3 * (2 * price + 1), 1),
    }
    with index_store.session() as session:
        first = session.get(LicenseVersionRow, (twin, brand, 0))
        second = session.get(LicenseVersionRow, (twin, brand, 1))
        assert first is not None
        assert second is not None
        assert first.effective_until == granted_at < first.valid_until
        assert (second.valid_from, second.effective_from, second.effective_until) == (
            granted_at,
            granted_at,
            terms[2],
        )
        assert (second.purpose_hash, second.prices) == (
            "0x" + keccak(text="second campaign").hex(),
            [{"usageType": usage_type, "price": 2 * price + 1}],
        )


def test_escrow_shortfall_becomes_debt_and_a_deposit_repays_it(
    snapshot: Chain, index_store: Store
) -> None:
    world, w3 = snapshot.world, snapshot.w3
    fn = world.ledger.functions
    brand = world.brands[2]
    escrow = fn.brandAccount(brand).call()[0]
    _wait(w3, fn.requestEscrowWithdrawal(escrow - 1).transact({"from": brand}))
    _rpc(w3, "evm_increaseTime", NOTICE_PERIOD + 1)
    _mine(w3)
    _wait(w3, fn.withdrawEscrow().transact({"from": brand}))
    (twin, usage_type, price), *_ = _licensed(world, 2)
    now = _now(w3)
    usage = Usage(usage_id=5_001, twin_id=twin, used_at=now - 5, quantity=4, usage_type=usage_type)
    _settle(world, [(brand, [usage])])
    amount = 4 * price
    repay = amount // 2
    _wait(w3, world.token.functions.mint(brand, repay).transact({"from": brand}))
    _wait(w3, world.token.functions.approve(world.ledger.address, repay).transact({"from": brand}))
    _wait(w3, fn.deposit(brand, repay).transact({"from": brand}))
    last = _latest(w3)

    _indexer(snapshot, index_store).catch_up()
    _assert_matches_chain(snapshot, index_store, last)
    assert _usages(index_store) == {
        5_001: (brand, twin, now - 5, 4, usage_type, Outcome.PAID, amount, 0)
    }
    with index_store.session() as session:
        changes = session.scalars(
            select(BrandAccountChange)
            .where(BrandAccountChange.brand == brand)
            .order_by(BrandAccountChange.block_number, BrandAccountChange.log_index)
        )
        assert [
            (c.event, c.escrow_delta, c.debt_delta, c.escrow, c.debt, c.debt_reserve)
            for c in changes
        ] == [
            ("EscrowDeposited", escrow, 0, escrow, 0, 0),
            ("EscrowWithdrawalRequested", 0, 0, escrow, 0, 0),
            ("EscrowWithdrawn", -(escrow - 1), 0, 1, 0, 0),
            ("DebtRecorded", 0, amount - 1, 1, amount - 1, 0),
            ("UsagesSettled", -1, 0, 0, amount - 1, 0),
            ("EscrowDeposited", 0, 0, 0, amount - 1, repay),
            ("DebtRepaid", 0, -repay, 0, amount - 1 - repay, 0),
        ]


def test_only_blocks_past_the_confirmation_depth_are_indexed(
    snapshot: Chain, index_store: Store
) -> None:
    world, w3 = snapshot.world, snapshot.w3
    (twin, usage_type, price), *_ = _licensed(world, 1)
    usage = Usage(
        usage_id=7_001, twin_id=twin, used_at=_now(w3) - 1, quantity=1, usage_type=usage_type
    )
    receipt = _settle(world, [(world.brands[1], [usage])])
    mined = int(receipt["blockNumber"])
    assert _latest(w3) == mined

    indexer = _indexer(snapshot, index_store, confirmations=3)
    assert indexer.catch_up() == mined - 1  # blocks 0 .. mined - 2
    assert indexer.cursor() == mined - 2
    assert _usages(index_store) == {}
    _mine(w3)
    assert indexer.step() == 1
    assert (indexer.cursor(), _usages(index_store)) == (mined - 1, {})
    _mine(w3)
    assert indexer.step() == 1
    assert indexer.cursor() == mined
    assert _usages(index_store) == {
        7_001: (world.brands[1], twin, usage.used_at, 1, usage_type, Outcome.PAID, price, 0)
    }
    assert indexer.step() == 0
    _assert_matches_chain(snapshot, index_store, mined)


def test_a_reorg_deeper_than_the_confirmations_is_rewound_and_indexed_again(
    snapshot: Chain, index_store: Store
) -> None:
    world, w3 = snapshot.world, snapshot.w3
    fn = world.ledger.functions
    brand0, brand1, _ = world.brands
    (t1, type1, _), (t2, _, _), *_ = _licensed(world, 0)
    (t3, type3, price3), *_ = _licensed(world, 1)
    fork = _latest(w3)
    snap = _rpc(w3, "evm_snapshot")
    now = _now(w3)
    lost = Usage(usage_id=8_001, twin_id=t1, used_at=now - 10, quantity=2, usage_type=type1)
    _settle(world, [(brand0, [lost])])
    _as_owner(world, t2, fn.revokeLicense(t2, brand0, 0))
    _as_owner(world, t3, fn.setTwinPaused(t3, True))
    indexer = _indexer(snapshot, index_store)
    indexer.catch_up()
    assert indexer.cursor() == fork + 3
    assert set(_usages(index_store)) == {8_001}
    with index_store.session() as session:
        twin3 = session.get(TwinRow, t3)
        assert twin3 is not None
        assert twin3.paused is True

    # The chain drops the three blocks and grows another branch past them.
    _rpc(w3, "evm_revert", snap)
    assert _latest(w3) == fork
    kept = Usage(usage_id=8_002, twin_id=t3, used_at=now - 5, quantity=3, usage_type=type3)
    _settle(world, [(brand1, [kept])])
    _mine(w3, 3)
    # Rewound to the newest stored block the branch shares (the setup's last deposit, fork - 1),
    # then indexed again up to the branch's tip.
    assert indexer.catch_up() == 5
    assert indexer.cursor() == fork + 4
    _assert_matches_chain(snapshot, index_store, fork + 4)
    assert _usages(index_store) == {
        8_002: (brand1, t3, now - 5, 3, type3, Outcome.PAID, 3 * price3, 0)
    }
    with index_store.session() as session:
        twin3 = session.get(TwinRow, t3)
        assert twin3 is not None
        assert (twin3.paused, twin3.paused_since) == (False, None)
        license2 = session.get(LicenseVersionRow, (t2, brand0, 0))
        assert license2 is not None
        assert license2.revoked is False
        account0 = session.get(BrandAccountRow, brand0)
        assert account0 is not None
        assert account0.escrow == fn.brandAccount(brand0).call()[0]
        assert session.scalar(select(func.count()).select_from(BrandAccountChange)) == 4


def test_a_chain_shorter_than_the_stored_tip_is_rewound(
    snapshot: Chain, index_store: Store
) -> None:
    world, w3 = snapshot.world, snapshot.w3
    (twin, usage_type, _), *_ = _licensed(world, 1)
    fork = _latest(w3)
    snap = _rpc(w3, "evm_snapshot")
    _settle(world, [(world.brands[1], [Usage(8_101, twin, _now(w3) - 1, 1, usage_type)])])
    _mine(w3, 2)
    indexer = _indexer(snapshot, index_store)
    indexer.catch_up()
    assert (indexer.cursor(), set(_usages(index_store))) == (fork + 3, {8_101})

    _rpc(w3, "evm_revert", snap)  # the stored tip's block no longer exists
    assert indexer.catch_up() == 1  # rewound to fork - 1 (its last stored block), then block fork
    assert indexer.cursor() == fork
    _assert_matches_chain(snapshot, index_store, fork)
    assert _usages(index_store) == {}


def test_anvil_reorg_replacing_the_tip_is_detected_and_rewound(
    snapshot: Chain, index_store: Store
) -> None:
    world, w3 = snapshot.world, snapshot.w3
    (twin, usage_type, _), *_ = _licensed(world, 2)
    usage = Usage(
        usage_id=9_001, twin_id=twin, used_at=_now(w3) - 3, quantity=1, usage_type=usage_type
    )
    receipt = _settle(world, [(world.brands[2], [usage])])
    _mine(w3)
    indexer = _indexer(snapshot, index_store)
    indexer.catch_up()
    assert set(_usages(index_store)) == {9_001}
    old_hash = w3.eth.get_block(receipt["blockNumber"])["hash"].to_0x_hex()

    _rpc(w3, "anvil_reorg", 2, [])  # the last two blocks (the settlement's) are replaced
    _mine(w3)
    assert w3.eth.get_block(receipt["blockNumber"])["hash"].to_0x_hex() != old_hash
    indexer.catch_up()
    last = _latest(w3)
    _assert_matches_chain(snapshot, index_store, last)
    settled_on_chain = {
        u.usage_id
        for e in world.ledger.events.UsagesSettled().get_logs(from_block=0, to_block=last)
        for u in [Usage.decode(w) for w in e["args"]["results"]]
    }
    assert set(_usages(index_store)) == settled_on_chain


def test_range_ends_without_events_are_forgotten_below_the_recent_window(
    snapshot: Chain, index_store: Store
) -> None:
    world, w3 = snapshot.world, snapshot.w3
    _mine(w3, 20)
    last = _latest(w3)
    indexer = _indexer(snapshot, index_store, max_block_range=2)
    indexer.keep_empty_blocks = 3
    assert indexer.catch_up() == last + 1
    with_events = {block for block, *_ in _chain_events(world, last)}
    range_ends = set(range(1, last + 1, 2)) | {last}  # [0, 1], [2, 3], ...
    with index_store.session() as session:
        stored = set(session.scalars(select(IndexedBlock.number)))
    assert stored == with_events | {end for end in range_ends if end >= last - 2}
    assert max(with_events) < last - 20


def test_a_restarted_indexer_resumes_from_its_cursor_without_duplicates(
    snapshot: Chain, index_store: Store
) -> None:
    world, w3 = snapshot.world, snapshot.w3
    (twin, usage_type, _), *_ = _licensed(world, 0)
    now = _now(w3)
    _settle(
        world,
        [(world.brands[0], [Usage(9_101, twin, now - 2, 1, usage_type)])],
    )
    _mine(w3, 2)
    last = _latest(w3)

    first = _indexer(snapshot, index_store, max_block_range=3)
    assert [first.step() for _ in range(2)] == [3, 3]
    assert first.cursor() == 5
    second = _indexer(snapshot, index_store, max_block_range=3)
    assert second.cursor() == 5
    assert second.catch_up() == last - 5
    _assert_matches_chain(snapshot, index_store, last)
    done = _dump(index_store)

    # The cursor moved back (an operator re-indexing): the same ranges again change nothing.
    block = w3.eth.get_block(2)
    with index_store.session() as session, session.begin():
        session.execute(
            update(IndexerCursor).values(block_number=2, block_hash=block["hash"].to_0x_hex())
        )
    assert _indexer(snapshot, index_store, max_block_range=3).catch_up() == last - 2
    assert _dump(index_store) == done
    assert sum(len(rows) for rows in done.values()) > 100


class LimitedLogs:
    """A chain client whose node refuses ``eth_getLogs`` over more than ``limit`` blocks, in the
    words of a hosted provider."""

    def __init__(self, inner: Web3ChainClient, limit: int) -> None:
        self.inner = inner
        self.limit = limit
        self.asked: list[tuple[int, int, bool]] = []
        self.addresses: list[str] = []

    def block(self, tag: BlockTag = "latest") -> Block | None:
        return self.inner.block(tag)

    def logs(
        self, *, address: str, from_block: int, to_block: int, topics: Sequence[bytes | None] = ()
    ) -> list[LogEntry]:
        refused = to_block - from_block + 1 > self.limit
        self.asked.append((from_block, to_block, refused))
        self.addresses.append(address)
        if refused:
            raise classify_rpc_error(
                "http://provider", -32005, "query returned more than 10000 results"
            )
        return self.inner.logs(address=address, from_block=from_block, to_block=to_block)

    def code(self, address: str, block: BlockTag = "latest") -> bytes:
        return self.inner.code(address, block)


def test_log_ranges_shrink_when_the_node_refuses_them_and_grow_back(
    snapshot: Chain, index_store: Store
) -> None:
    w3 = snapshot.w3
    assert _latest(w3) < 255
    _mine(w3, 255 - _latest(w3))
    client = LimitedLogs(Web3ChainClient([snapshot.url]), limit=80)
    indexer = _indexer(snapshot, index_store, client=client, max_block_range=256)
    assert indexer.catch_up() == 256
    ledger, manager = snapshot.world.ledger.address, snapshot.world.manager.address
    asked = list(zip(client.addresses, client.asked, strict=True))
    assert [a for address, a in asked if address == ledger] == [
        (0, 255, True), (0, 127, True), (0, 63, False),  # 256 -> 128 -> 64 blocks, back to 128
        (64, 191, True), (64, 127, False),
        (128, 255, True), (128, 191, False),
        (192, 255, False),  # what is left fits
    ]  # fmt: skip
    # The access manager's logs of each range the ledger's were answered for (the first range
    # names it: the ledger's AuthorityUpdated at its deployment).
    assert [a for address, a in asked if address == manager] == [
        (0, 63, False), (64, 127, False), (128, 191, False), (192, 255, False)
    ]  # fmt: skip
    assert indexer.block_range == 128
    _assert_matches_chain(snapshot, index_store, 255)

    # A node that refuses even one block: the step fails, nothing is written.
    _mine(w3)
    client.limit = 0
    with pytest.raises(LogRangeTooLargeError):
        indexer.step()
    assert indexer.cursor() == 255


def test_log_range_refusals_are_classified_by_message() -> None:
    for message in (
        "query returned more than 10000 results",
        "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range",
        "block range is too wide",
        "exceed maximum block range: 5000",
        "eth_getLogs is limited to a 10,000 blocks range; too many results",
    ):
        assert type(classify_rpc_error("http://node", -32005, message)) is LogRangeTooLargeError
    assert type(classify_rpc_error("http://node", -32005, "rate limited")) is not (
        LogRangeTooLargeError
    )


class Racing:
    """A chain client that lets another indexer run while this one reads its range's logs."""

    def __init__(self, inner: Web3ChainClient, race: Callable[[], object]) -> None:
        self.inner = inner
        self.race: Callable[[], object] | None = race

    def block(self, tag: BlockTag = "latest") -> Block | None:
        return self.inner.block(tag)

    def logs(
        self, *, address: str, from_block: int, to_block: int, topics: Sequence[bytes | None] = ()
    ) -> list[LogEntry]:
        race, self.race = self.race, None
        if race is not None:
            race()
        return self.inner.logs(address=address, from_block=from_block, to_block=to_block)

    def code(self, address: str, block: BlockTag = "latest") -> bytes:
        return self.inner.code(address, block)


def test_two_indexers_on_one_store_write_each_range_once(
    snapshot: Chain, index_store: Store
) -> None:
    world, w3 = snapshot.world, snapshot.w3
    first = _latest(w3)
    other = _indexer(snapshot, index_store)
    racing = Racing(Web3ChainClient([snapshot.url]), other.catch_up)
    indexer = _indexer(snapshot, index_store, client=racing)
    with pytest.raises(IndexerConflictError, match="the cursor moved from None to"):
        indexer.step()
    assert indexer.cursor() == first

    (twin, usage_type, price), *_ = _licensed(world, 1)
    usage = Usage(9_201, twin, _now(w3) - 1, 2, usage_type)
    last = int(_settle(world, [(world.brands[1], [usage])])["blockNumber"])
    racing.race = other.catch_up
    with pytest.raises(
        IndexerConflictError, match=f"the cursor moved from .*{first}.* to .*{last}"
    ):
        indexer.step()
    assert indexer.step() == 0
    _assert_matches_chain(snapshot, index_store, last)
    assert _usages(index_store) == {
        9_201: (world.brands[1], twin, usage.used_at, 2, usage_type, Outcome.PAID, 2 * price, 0)
    }


def test_a_start_block_after_the_ledger_deployment_is_refused(
    snapshot: Chain, index_store: Store
) -> None:
    late = _latest(snapshot.w3)
    indexer = _indexer(snapshot, index_store, start_block=late)
    with pytest.raises(IndexerError, match=f"exists before block {late}: start from its deploy"):
        indexer.step()
    assert indexer.cursor() is None
    # Block 1 is the first library's deployment: the ledger has no code before it.
    assert _indexer(snapshot, index_store, start_block=1).step() == late


def test_a_store_following_another_ledger_is_refused(snapshot: Chain, index_store: Store) -> None:
    _indexer(snapshot, index_store).step()
    other = Indexer(
        index_store,
        snapshot.w3,
        ledger_address="0x" + keccak(text="another ledger")[:20].hex(),
    )
    with pytest.raises(IndexerError, match="the store indexes ledger 0x"):
        other.step()


def test_the_indexer_command_follows_the_chain_and_stops_on_sigterm(
    snapshot: Chain, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'bridge.db'}"
    migrate.upgrade(url)
    store = Store.from_url(url)
    last = _latest(snapshot.w3)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_BRIDGE_")}
    env.update(
        {
            "TWIN_BRIDGE_DATA_DIR": str(tmp_path / "state"),
            "TWIN_BRIDGE_DATABASE_URL": url,
            "TWIN_BRIDGE_RPC_URL": snapshot.url,
            "TWIN_BRIDGE_LEDGER_ADDRESS": snapshot.world.ledger.address,
            "TWIN_BRIDGE_CONFIRMATIONS": "2",
            "TWIN_BRIDGE_INDEXER_POLL_S": "0.05",
        }
    )
    command = [str(Path(sys.executable).parent / "twin-bridge"), "indexer"]
    indexer = Indexer(store, snapshot.w3, ledger_address=snapshot.world.ledger.address)
    try:
        with tempfile.TemporaryFile() as log:
            proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and indexer.cursor() != last - 1:
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
        assert f"indexing ledger {snapshot.world.ledger.address}" in output, output
        assert indexer.cursor() == last - 1
        assert _events(store) == _chain_events(snapshot.world, last - 1)
    finally:
        store.close()


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in [n for n in os.environ if n.startswith("TWIN_BRIDGE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TWIN_BRIDGE_DATA_DIR", str(tmp_path / "state"))
    return CliRunner()


def test_the_indexer_command_needs_a_chain(cli: CliRunner) -> None:
    result = cli.invoke(app, ["indexer"])
    assert result.exit_code == 2
    assert "the indexer needs TWIN_BRIDGE_RPC_URL and TWIN_BRIDGE_LEDGER_ADDRESS" in result.output


def test_the_indexer_command_stops_with_the_reason_on_a_store_of_another_ledger(
    snapshot: Chain, cli: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'bridge.db'}"
    migrate.upgrade(url)
    store = Store.from_url(url)
    other = "0x" + "11" * 20
    try:
        with store.session() as session, session.begin():
            session.add(IndexerCursor(ledger=other, block_number=1, block_hash="0x" + "22" * 32))
    finally:
        store.close()
    monkeypatch.setenv("TWIN_BRIDGE_DATABASE_URL", url)
    monkeypatch.setenv("TWIN_BRIDGE_RPC_URL", snapshot.url)
    monkeypatch.setenv("TWIN_BRIDGE_LEDGER_ADDRESS", snapshot.world.ledger.address)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        result = cli.invoke(app, ["indexer"])  # in process: it sets its signal handlers
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert result.exit_code == 1, result.output
    assert (
        f"indexer stopped: the store indexes ledger {other}, not {snapshot.world.ledger.address}"
        in " ".join(result.output.split())
    )


# ---------------------------------------------------------------- agreements, limits, roles


def _terms(brand: str, until: int, prices: dict[int, int], *, label: str) -> tuple[Any, ...]:
    """``LicenseTerms`` from the acceptance (validFrom 0) until ``until``, no cap."""
    return (
        brand,
        0,
        until,
        0,
        keccak(text=f"purpose {label}"),
        keccak(text=f"consent {label}"),
        list(prices.items()),
    )


def _offers(store: Store) -> list[tuple[Any, ...]]:
    """(twin, brand, version, status, terms hash, accepted from, closing tx) of every offer."""
    with store.session() as session:
        return [
            (o.twin_id, o.brand, o.version, o.status.value, o.terms_hash, o.accepted_from,
             o.closed_tx_hash)
            for o in session.scalars(
                select(LicenseOfferRow).order_by(
                    LicenseOfferRow.block_number, LicenseOfferRow.log_index
                )
            )
        ]  # fmt: skip


def test_offers_are_mirrored_until_accepted_declined_or_withdrawn_and_a_reorg_reopens_them(
    snapshot: Chain, index_store: Store
) -> None:
    world, w3 = snapshot.world, snapshot.w3
    fn = world.ledger.functions
    brand0, brand1, brand2 = world.brands
    (twin, usage_type, price), *_ = _licensed(world, 0)
    until = _now(w3) + 90 * 24 * 3600
    # A new twin with only an offer: its usages are "offer not accepted".
    registrar, model = w3.eth.accounts[1], w3.eth.accounts[-3]
    mint = fn.mint(model, "ipfs://twin/new", keccak(text="new consent"))
    _wait(w3, mint.transact({"from": registrar}))
    new_twin = len(world.twin_ids) + 1
    _, waiting_version, waiting_hash = _offer(
        world, new_twin, _terms(brand1, until, {usage_type: price}, label="waiting")
    )
    # Twin's brand 0 license gets version 1 offered, replaced by a dearer one, which brand 0
    # accepts; brand 1 declines its version 1; brand 2's version 1 is withdrawn by the owner.
    _, first, first_hash = _offer(world, twin, _terms(brand0, until, {usage_type: price + 1},
                                                       label="first"))  # fmt: skip
    replace, second, second_hash = _offer(
        world, twin, _terms(brand0, until, {usage_type: 2 * price}, label="second")
    )
    accepted = _accept(world, twin, brand0, second, second_hash)
    accepted_at = _block_time(w3, accepted)
    _, declined_version, declined_hash = _offer(
        world, twin, _terms(brand1, until, {usage_type: price}, label="declined")
    )
    declined = _wait(w3, fn.declineLicense(twin, declined_version).transact({"from": brand1}))
    _, withdrawn_version, withdrawn_hash = _offer(
        world, twin, _terms(brand2, until, {usage_type: price}, label="withdrawn")
    )
    withdrawn = _as_owner(world, twin, fn.revokeLicense(twin, brand2, withdrawn_version))
    _mine(w3)
    now = _now(w3)
    usages = [Usage(9_501, new_twin, now - 1, 1, usage_type)]
    _settle(world, [(brand1, usages)])
    last = _latest(w3)

    indexer = _indexer(snapshot, index_store)
    indexer.catch_up()
    _assert_matches_chain(snapshot, index_store, last)
    tx = HexBytes.to_0x_hex
    hx = "0x{}".format
    assert (first, second, declined_version, withdrawn_version, waiting_version) == (1, 1, 1, 1, 0)
    assert _offers(index_store)[-5:] == [
        (new_twin, brand1, 0, "pending", hx(waiting_hash.hex()), None, None),
        (twin, brand0, 1, "withdrawn", hx(first_hash.hex()), None,
         tx(replace["transactionHash"])),
        (twin, brand0, 1, "accepted", hx(second_hash.hex()), accepted_at,
         tx(accepted["transactionHash"])),
        (twin, brand1, 1, "declined", hx(declined_hash.hex()), None,
         tx(declined["transactionHash"])),
        (twin, brand2, 1, "withdrawn", hx(withdrawn_hash.hex()), None,
         tx(withdrawn["transactionHash"])),
    ]  # fmt: skip
    assert _usages(index_store)[9_501] == (
        brand1, new_twin, now - 1, 1, usage_type, Outcome.OFFER_NOT_ACCEPTED, None, None
    )  # fmt: skip
    with index_store.session() as session:
        [waiting] = pending_offers(session, brand1)
        assert (waiting.twin_id, waiting.version, waiting.terms_hash, waiting.valid_until) == (
            new_twin, 0, hx(waiting_hash.hex()), until
        )  # fmt: skip
        assert [p.price for p in waiting.prices] == [price]
        assert pending_offers(session, brand0) == pending_offers(session, brand2) == []
        version = session.get(LicenseVersionRow, (twin, brand0, 1))
        assert version is not None
        assert (version.valid_from, version.offered_from, version.terms_hash, version.prices) == (
            accepted_at, 0, hx(second_hash.hex()), [{"usageType": usage_type, "price": 2 * price}]
        )  # fmt: skip
        old = session.get(LicenseVersionRow, (twin, brand0, 0))
        assert old is not None
        assert old.effective_until == accepted_at

    # A reorg takes the acceptance away: the offer waits again, version 1 is gone.
    fork = int(accepted["blockNumber"]) - 1
    _rpc(w3, "anvil_rollback", last - fork)
    assert _latest(w3) == fork
    _mine(w3, last - fork + 2)
    indexer.catch_up()
    _assert_matches_chain(snapshot, index_store, _latest(w3))
    assert _offers(index_store)[-3:] == [
        (new_twin, brand1, 0, "pending", hx(waiting_hash.hex()), None, None),
        (twin, brand0, 1, "withdrawn", hx(first_hash.hex()), None,
         tx(replace["transactionHash"])),
        (twin, brand0, 1, "pending", hx(second_hash.hex()), None, None),
    ]  # fmt: skip
    with index_store.session() as session:
        assert session.get(LicenseVersionRow, (twin, brand0, 1)) is None
        [reopened] = pending_offers(session, brand0)
        assert (reopened.twin_id, reopened.version, reopened.closed) == (twin, 1, None)


def test_spending_limits_own_attesters_and_manager_roles_are_mirrored(
    snapshot: Chain, index_store: Store
) -> None:
    world, w3 = snapshot.world, snapshot.w3
    fn, manager = world.ledger.functions, world.manager.functions
    brand0, brand1, brand2 = world.brands
    admin = w3.eth.accounts[0]
    (twin, usage_type, price), *_ = _licensed(world, 0)
    # Brand 0 lowers its limits below two uses of its price: one use pays, two are refused, and
    # a third use passes the period's limit. Brand 1 raises its limits (the world's raise delay
    # is 0: at once); brand 2 names its own attester.
    lowered = _wait(
        w3, fn.setSpendingLimits(2 * price - 1, 2 * price - 1).transact({"from": brand0})
    )
    _wait(w3, fn.setSpendingLimits(200_000 * USD, 10**9 * USD).transact({"from": brand1}))
    own = _wait(w3, fn.setBrandAttester(world.relayer).transact({"from": brand2}))
    key = keccak(text="indexer test: second attester")[:20]
    second = Web3.to_checksum_address(key)
    granted = _wait(w3, manager.grantRole(2, second, 0).transact({"from": admin}))
    revoked = _wait(w3, manager.revokeRole(2, second).transact({"from": admin}))
    now = _now(w3)
    _settle(world, [(brand0, [
        Usage(9_601, twin, now - 3, 1, usage_type),
        Usage(9_602, twin, now - 2, 2, usage_type),
        Usage(9_603, twin, now - 1, 1, usage_type),
    ])])  # fmt: skip
    last = _latest(w3)

    _indexer(snapshot, index_store).catch_up()
    _assert_matches_chain(snapshot, index_store, last)
    usages = _usages(index_store)
    assert [usages[i][5:] for i in (9_601, 9_602, 9_603)] == [
        (Outcome.PAID, price, 0),
        (Outcome.OVER_USAGE_LIMIT, None, None),
        (Outcome.OVER_PERIOD_LIMIT, None, None),
    ]
    with index_store.session() as session:
        limits = brand_limits(session, brand0, at=now, spending_period=24 * 3600)
        assert limits.in_force is not None
        assert (limits.in_force.per_usage, limits.in_force.per_period, limits.pending) == (
            2 * price - 1, 2 * price - 1, None
        )  # fmt: skip
        assert limits.in_force.source.tx_hash == lowered["transactionHash"].to_0x_hex()
        assert limits.spent_in_period == price
        own_limits = brand_limits(session, brand2, at=now)
        assert (own_limits.in_force, own_limits.attester, own_limits.spent_in_period) == (
            None, world.relayer, None
        )  # fmt: skip
        assert own_limits.attester_source is not None
        assert own_limits.attester_source.tx_hash == own["transactionHash"].to_0x_hex()
        roles = [
            (r.event, r.role_id, r.account, r.delay, r.since, r.new_member, r.tx_hash)
            for r in session.scalars(
                select(RoleChange).order_by(RoleChange.block_number, RoleChange.log_index)
            )
        ]
    assert roles[-2:] == [
        ("RoleGranted", 2, second, 0, _block_time(w3, granted), True,
         granted["transactionHash"].to_0x_hex()),
        ("RoleRevoked", 2, second, 0, None, None, revoked["transactionHash"].to_0x_hex()),
    ]  # fmt: skip
    # The deployment's grants are there too: the world's attester holds role 2 from its grant.
    assert ("RoleGranted", 2, world.attester.address) in {r[:3] for r in roles}
    with index_store.session() as session:
        members = {(m.role, m.account): m.waiting for m in role_members(session, at=now)}
    manager_view = world.manager.functions.hasRole
    for role, account in members:
        role_id = {"ADMIN_ROLE": 0, "REGISTRAR_ROLE": 1, "ATTESTER_ROLE": 2}[role]
        assert manager_view(role_id, account).call()[0], (role, account)
    assert ("ATTESTER_ROLE", world.attester.address) in members
    assert ("ATTESTER_ROLE", second) not in members


def test_each_range_with_events_is_logged_by_kind_and_an_empty_range_only_at_debug(
    snapshot: Chain, index_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    world, w3 = snapshot.world, snapshot.w3
    (t1, type1, _), (t2, _, _), *_ = _licensed(world, 0)
    indexer = _indexer(snapshot, index_store)
    indexer.catch_up()
    first = _latest(w3) + 1
    now = _now(w3)
    _settle(world, [(world.brands[0], [Usage(9_501, t1, now - 5, 1, type1)])])
    _as_owner(world, t2, world.ledger.functions.setTwinPaused(t2, True))
    _settle(world, [(world.brands[0], [Usage(9_502, t1, now - 4, 1, type1)])])
    caplog.set_level(logging.DEBUG, logger="bridge.indexer")
    caplog.clear()

    assert indexer.step() == 3
    _mine(w3, 4)
    assert indexer.step() == 4
    _mine(w3)
    assert indexer.step() == 1

    assert [
        (r.levelname, r.getMessage()) for r in caplog.records if r.name == "bridge.indexer.follow"
    ] == [
        ("INFO", f"indexed blocks {first}-{first + 2}: 2 UsagesSettled, 1 TwinPaused"),
        ("DEBUG", f"indexed blocks {first + 3}-{first + 6}: no events"),
        ("DEBUG", f"indexed block {first + 7}: no events"),
    ]
