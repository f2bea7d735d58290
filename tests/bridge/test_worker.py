"""The settlement worker on the fake chain and SQLite: batching, grouping, state transitions,
restarts at every crash point, nonce and receipt edge cases, reorgs deeper than the confirmation
depth, and the metrics of the worker process and of the store."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from bridge.api.metrics import StoreCollector
from bridge.domain.codec import Outcome
from bridge.errors import NonceTooLowError, ReplacementUnderpricedError
from bridge.settlement.planning import group_usages
from bridge.settlement.worker import CRASH_POINTS, SettlementWorker, WorkerConfig
from bridge.store.models import BatchStatus, SettlementBatch, UsageStatus
from bridge.store.repository import NewUsage, Store, StoredUsage, create_brand, insert_usages
from bridge.store.settlement import (
    LeaseLostError,
    PendingUsage,
    acquire_lease,
    lease_holder,
    recorded_nonce,
)

from .fake_chain import DEFAULT_PRICE, LEDGER, START_TIME, FakeChain

ATTESTER: LocalAccount = Account.from_key(keccak(text="worker test attester"))
RELAYER: LocalAccount = Account.from_key(keccak(text="worker test relayer"))
BRAND_A = "0x000000000000000000000000000000000000aAaA"
BRAND_B = "0x000000000000000000000000000000000000bBbB"
USED_AT = datetime.fromtimestamp(START_TIME - 600, UTC)


class Crash(Exception):
    """The worker process dies here."""


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Env:
    store: Store
    chain: FakeChain
    clock: Clock
    brands: dict[str, int]

    def add(
        self, brand: str, *specs: tuple[int, int, int], used_at: datetime = USED_AT
    ) -> list[int]:
        """Stores accepted usages ``(twin, usage type, quantity)`` of ``brand``; their ids."""
        brand_id = self.brands[brand]
        with self.store.session() as session:
            start = len(self.usages())
            usages = [
                NewUsage(
                    event_id=f"e{start + i}",
                    body_hash="h" * 64,
                    twin_id=twin,
                    usage_type=usage_type,
                    quantity=quantity,
                    used_at=used_at,
                    campaign_ref=None,
                    asset_ref=None,
                )
                for i, (twin, usage_type, quantity) in enumerate(specs)
            ]
            written = insert_usages(session, brand_id=brand_id, usages=usages)
        return [written[u.event_id].usage_id for u in usages]

    def usages(self) -> list[StoredUsage]:
        from bridge.store.models import UsageEvent

        with self.store.session() as session:
            return [
                StoredUsage.of(row)
                for row in session.scalars(select(UsageEvent).order_by(UsageEvent.id))
            ]

    def batches(self) -> list[SettlementBatch]:
        with self.store.session() as session:
            return list(session.scalars(select(SettlementBatch).order_by(SettlementBatch.id)))

    def worker(
        self,
        crash_point: Callable[[str], None] | None = None,
        holder: str = "the-worker",
        **config: object,
    ) -> SettlementWorker:
        """A worker; by default every worker of a test has one identity (a process restarted
        under the same name), so it does not wait out its predecessor's lease."""
        options: dict[str, object] = {"batch_size": 10, "max_age": timedelta(seconds=2)}
        options.update(config)
        return SettlementWorker(
            store=self.store,
            chain=self.chain,
            attester=ATTESTER,
            relayer=RELAYER,
            config=WorkerConfig(ledger=LEDGER, **options),  # type: ignore[arg-type]
            clock=self.clock,
            crash_point=crash_point or (lambda point: None),
            holder=holder,
        )


@pytest.fixture
def env(store: Store) -> Env:
    """The worker's world on each store backend (SQLite and PostgreSQL)."""
    brands = {}
    with store.session() as session:
        for name, address in (("A", BRAND_A), ("B", BRAND_B)):
            brands[address] = create_brand(
                session, name=name, address=address, api_key_hash=name * 64
            ).id
    chain = FakeChain(attesters={ATTESTER.address.lower()})
    return Env(store, chain, Clock(datetime.now(UTC) + timedelta(seconds=10)), brands)


def crash_at(point: str, times: int = 1) -> Callable[[str], None]:
    left = [times]

    def hook(name: str) -> None:
        if name == point and left[0] > 0:
            left[0] -= 1
            raise Crash(point)

    return hook


# ---------------------------------------------------------------- batching


def test_group_usages_groups_by_brand_in_order_of_oldest_and_sorts_by_twin_then_id() -> None:
    def pending(usage_id: int, brand: str, twin: int) -> PendingUsage:
        return PendingUsage(usage_id, brand, twin, 0, 1, USED_AT, USED_AT)

    groups = group_usages(
        [
            pending(5, BRAND_A, 2),
            pending(1, BRAND_B, 9),
            pending(2, BRAND_A, 3),
            pending(3, BRAND_B, 1),
            pending(4, BRAND_A, 2),
        ]
    )
    assert [(brand, [(u.twin_id, u.usage_id) for u in usages]) for brand, usages in groups] == [
        (to_checksum_address(BRAND_B), [(1, 3), (9, 1)]),
        (to_checksum_address(BRAND_A), [(2, 4), (2, 5), (3, 2)]),
    ]


def test_waits_for_a_full_batch_or_for_the_oldest_usage_to_age(env: Env) -> None:
    env.add(BRAND_A, (1, 0, 1), (2, 0, 1))
    env.clock.now = datetime.now(UTC)
    worker = env.worker(batch_size=3, max_age=timedelta(seconds=30))
    assert worker.step() is False
    assert env.batches() == []

    env.clock.now += timedelta(seconds=31)
    assert worker.run_until_idle() > 0
    assert [u.status for u in env.usages()] == [UsageStatus.SETTLED] * 2

    env.clock.now = datetime.now(UTC)
    env.add(BRAND_A, (1, 0, 1), (1, 0, 1), (1, 0, 1))  # a full batch goes at once
    assert worker.run_until_idle() > 0
    assert [u.status for u in env.usages()] == [UsageStatus.SETTLED] * 5


def test_a_usage_reported_ahead_of_the_chain_clock_waits_for_it(env: Env) -> None:
    (ahead,) = env.add(BRAND_A, (1, 0, 1), used_at=datetime.fromtimestamp(START_TIME + 5, UTC))
    (now,) = env.add(BRAND_A, (1, 0, 1))
    worker = env.worker()
    worker.run_until_idle()
    assert {u.usage_id: u.status for u in env.usages()} == {
        ahead: UsageStatus.ACCEPTED,
        now: UsageStatus.SETTLED,
    }
    for _ in range(5):  # the fake chain's blocks are a second apart
        env.chain.mine(empty=True)
    worker.run_until_idle()
    assert [u.status for u in env.usages()] == [UsageStatus.SETTLED] * 2
    assert env.chain.paid == {ahead: DEFAULT_PRICE, now: DEFAULT_PRICE}


def test_splits_usages_into_batches_of_batch_size_with_consecutive_nonces(env: Env) -> None:
    env.add(BRAND_A, *[(1, 0, 1)] * 5)
    env.worker(batch_size=2).run_until_idle()
    batches = env.batches()
    assert [(b.nonce, b.status) for b in batches] == [
        (0, BatchStatus.CONFIRMED),
        (1, BatchStatus.CONFIRMED),
        (2, BatchStatus.CONFIRMED),
    ]
    assert [u.tx_hash for u in env.usages()] == [
        batches[0].tx_hash,
        batches[0].tx_hash,
        batches[1].tx_hash,
        batches[1].tx_hash,
        batches[2].tx_hash,
    ]
    with env.store.session() as session:
        assert recorded_nonce(session, RELAYER.address) == 3


def test_settles_paid_usages_and_rejects_refused_ones_with_the_reason(env: Env) -> None:
    a1, a2 = env.add(BRAND_A, (4, 1, 3), (2, 0, 1))
    (b1,) = env.add(BRAND_B, (4, 2, 2))
    env.chain.outcomes[a2] = Outcome.LICENSE_REVOKED
    env.chain.prices[(4, BRAND_A.lower(), 1)] = 7_000
    env.worker().run_until_idle()

    [batch] = env.batches()
    receipt = env.chain.receipt(batch.tx_hash)
    assert receipt is not None
    usages = {u.usage_id: u for u in env.usages()}
    assert (usages[a1].status, usages[a1].amount, usages[a1].reason_code) == (
        UsageStatus.SETTLED,
        21_000,
        None,
    )
    assert (usages[a2].status, usages[a2].amount, usages[a2].reason_code) == (
        UsageStatus.REJECTED,
        None,
        Outcome.LICENSE_REVOKED,
    )
    assert (usages[b1].status, usages[b1].amount) == (UsageStatus.SETTLED, 2 * DEFAULT_PRICE)
    assert {u.tx_hash for u in usages.values()} == {batch.tx_hash}
    assert {u.block_number for u in usages.values()} == {receipt.block_number}
    # brand A's group comes first (oldest usage), one UsagesSettled log per group
    assert (usages[a1].log_index, usages[a2].log_index, usages[b1].log_index) == (0, 0, 1)
    assert env.chain.paid == {a1: 21_000, b1: 2 * DEFAULT_PRICE}
    assert (batch.status, batch.block_hash, batch.gas_used) == (
        BatchStatus.CONFIRMED,
        receipt.block_hash,
        receipt.gas_used,
    )


def test_new_and_unknown_outcome_codes_are_rejections_with_their_code_not_a_crash(
    env: Env,
) -> None:
    """The limits' outcomes (12, 13), the waiting offer's (11) and a code this bridge does not
    know yet (a newer ledger) are stored as rejections with their code; nothing raises."""
    ids = env.add(BRAND_A, (1, 0, 1), (2, 0, 1), (3, 0, 1), (4, 0, 1), (5, 0, 1))
    codes = {
        ids[0]: Outcome.OFFER_NOT_ACCEPTED,
        ids[1]: Outcome.OVER_USAGE_LIMIT,
        ids[2]: Outcome.OVER_PERIOD_LIMIT,
        ids[3]: Outcome(200),
    }
    env.chain.outcomes.update(codes)
    env.worker().run_until_idle()

    [batch] = env.batches()
    assert batch.status is BatchStatus.CONFIRMED
    assert [(u.status, u.reason_code, u.amount) for u in env.usages()] == [
        (UsageStatus.REJECTED, 11, None),
        (UsageStatus.REJECTED, 12, None),
        (UsageStatus.REJECTED, 13, None),
        (UsageStatus.REJECTED, 200, None),
        (UsageStatus.SETTLED, None, DEFAULT_PRICE),
    ]
    assert env.chain.paid == {ids[4]: DEFAULT_PRICE}


def test_usages_stay_submitted_until_the_confirmation_depth(env: Env) -> None:
    env.add(BRAND_A, (1, 0, 1))
    worker = env.worker(confirmations=3)
    worker.run_until_idle()
    assert [u.status for u in env.usages()] == [UsageStatus.SUBMITTED]
    assert env.batches()[0].status is BatchStatus.MINED
    env.chain.mine(empty=True)
    assert worker.run_until_idle() == 0
    env.chain.mine(empty=True)
    worker.run_until_idle()
    assert [u.status for u in env.usages()] == [UsageStatus.SETTLED]


def test_fees_follow_the_base_fee_under_the_cap(env: Env) -> None:
    env.add(BRAND_A, (1, 0, 1))
    env.chain.base_fee = 30 * 10**9
    env.chain.priority_fee = 2 * 10**9
    env.worker(max_fee_per_gas=50 * 10**9).run_until_idle()
    [batch] = env.batches()
    assert (batch.max_fee_per_gas, batch.max_priority_fee_per_gas) == (50 * 10**9, 2 * 10**9)

    env.add(BRAND_A, (1, 0, 1))
    env.chain.base_fee = 10 * 10**9
    env.worker(max_fee_per_gas=50 * 10**9).run_until_idle()
    assert env.batches()[1].max_fee_per_gas == 22 * 10**9


# ---------------------------------------------------------------- crashes and restarts


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_worker_restarted_after_a_crash_settles_every_usage_once(env: Env, point: str) -> None:
    ids = env.add(BRAND_A, (1, 0, 1), (2, 0, 2)) + env.add(BRAND_B, (1, 1, 1))
    with pytest.raises(Crash):
        env.worker(crash_at(point)).run_until_idle()

    env.worker().run_until_idle()
    assert [u.status for u in env.usages()] == [UsageStatus.SETTLED] * 3
    assert env.chain.paid == {
        ids[0]: DEFAULT_PRICE,
        ids[1]: 2 * DEFAULT_PRICE,
        ids[2]: DEFAULT_PRICE,
    }
    batches = env.batches()
    if point == "after_batching":  # nothing was stored: the new worker batches afresh
        assert len(batches) == 1
    assert [(b.nonce, b.status) for b in batches] == [(0, BatchStatus.CONFIRMED)]
    assert env.chain.sent == [batches[0].tx_hash]


def test_after_signing_the_restarted_worker_sends_the_stored_transaction_with_its_nonce(
    env: Env,
) -> None:
    env.add(BRAND_A, (1, 0, 1))
    with pytest.raises(Crash):
        env.worker(crash_at("after_signing")).run_until_idle()
    [signed] = env.batches()
    assert (signed.status, signed.nonce, env.chain.sent) == (BatchStatus.SIGNED, 0, [])
    assert [u.status for u in env.usages()] == [UsageStatus.SUBMITTED]

    env.worker().run_until_idle()
    [batch] = env.batches()
    assert (batch.id, batch.nonce, batch.tx_hash) == (signed.id, 0, signed.tx_hash)
    assert env.chain.sent == [signed.tx_hash]


@pytest.mark.parametrize("mined", [False, True], ids=["already-known", "nonce-too-low"])
def test_a_resend_of_a_transaction_sent_before_the_crash_checks_the_chain(
    env: Env, mined: bool
) -> None:
    """Crash between the send and the store's 'sent': the node knows the tx (pending or mined)."""
    (usage_id,) = env.add(BRAND_A, (1, 0, 1))
    env.chain.automine = mined
    with pytest.raises(Crash):
        env.worker(crash_at("after_signing")).run_until_idle()
    [signed] = env.batches()
    env.chain.send_raw_transaction(bytes.fromhex(signed.raw_tx))  # the send the crash hid

    worker = env.worker()
    worker.run_until_idle()
    if not mined:
        assert env.batches()[0].status is BatchStatus.SENT
        env.chain.mine()
        worker.run_until_idle()
    assert [u.status for u in env.usages()] == [UsageStatus.SETTLED]
    assert env.chain.paid == {usage_id: DEFAULT_PRICE}
    assert env.chain.sent == [signed.tx_hash]


def test_nonce_taken_by_another_transaction_hands_the_usages_back(env: Env) -> None:
    env.add(BRAND_A, (1, 0, 1))
    env.chain.send_errors.append(NonceTooLowError("fake://chain", -32000, "nonce too low"))
    worker = env.worker()
    assert worker.step() is True
    [failed] = env.batches()
    assert failed.status is BatchStatus.FAILED
    assert "nonce 0 was used by another transaction" in (failed.error or "")
    assert [(u.status, u.batch_id) for u in env.usages()] == [(UsageStatus.ACCEPTED, None)]

    env.chain.nonces[RELAYER.address.lower()] = 1  # what the other transaction did
    worker.run_until_idle()
    assert [(b.nonce, b.status) for b in env.batches()] == [
        (0, BatchStatus.FAILED),
        (1, BatchStatus.CONFIRMED),
    ]
    assert [u.status for u in env.usages()] == [UsageStatus.SETTLED]


def test_a_reverted_transaction_hands_the_usages_back_for_a_new_batch(env: Env) -> None:
    (usage_id,) = env.add(BRAND_A, (1, 0, 1))
    env.chain.attesters.clear()
    worker = env.worker()
    assert worker.step() is True  # signed, sent, mined with status 0
    assert worker.step() is True  # the receipt is read
    [failed] = env.batches()
    assert failed.status is BatchStatus.FAILED
    assert "reverted" in (failed.error or "")
    assert [u.status for u in env.usages()] == [UsageStatus.ACCEPTED]

    env.chain.attesters.add(ATTESTER.address.lower())
    worker.run_until_idle()
    assert [b.status for b in env.batches()] == [BatchStatus.FAILED, BatchStatus.CONFIRMED]
    assert env.batches()[1].nonce == 1  # the reverted tx used nonce 0
    assert env.chain.paid == {usage_id: DEFAULT_PRICE}


# ---------------------------------------------------------------- our work done by someone else


def test_a_pending_settlement_copied_by_a_stranger_ends_settled_with_the_copy(env: Env) -> None:
    """A stranger sends the worker's pending ``settle`` calldata and gets it mined first: the
    worker's transaction reverts, the batch follows the copy's receipt, each usage is settled
    with the copy's transaction and amount, paid once, no attempt counted."""
    ids = env.add(BRAND_A, (1, 0, 1), (2, 0, 3)) + env.add(BRAND_B, (1, 1, 2))
    env.chain.outcomes[ids[1]] = Outcome.OVER_USAGE_LIMIT
    env.chain.automine = False
    worker = env.worker()
    env.clock.now += timedelta(seconds=5)
    assert worker.step() is True  # signed and sent, pending
    [sent] = env.batches()
    copy = env.chain.front_run(sent.tx_hash)
    env.chain.mine()  # ours, after the copy: reverts
    assert env.chain.receipt(sent.tx_hash).status == 0  # type: ignore[union-attr]
    copied = env.chain.receipt(copy)
    assert copied is not None
    assert copied.status == 1

    worker.run_until_idle()

    [batch] = env.batches()
    assert (batch.status, batch.tx_hash, batch.block_number, batch.nonce) == (
        BatchStatus.CONFIRMED,
        copy,
        copied.block_number,
        0,
    )
    assert batch.error is None
    assert batch.gas_used == env.chain.receipt(sent.tx_hash).gas_used  # type: ignore[union-attr]
    assert sample(worker, "twin_bridge_worker_gas_used_total") == 0  # not the stranger's gas
    assert [
        (u.status, u.reason_code, u.tx_hash, u.amount, u.settle_attempts) for u in env.usages()
    ] == [
        (UsageStatus.SETTLED, None, copy, DEFAULT_PRICE, 0),
        (UsageStatus.REJECTED, int(Outcome.OVER_USAGE_LIMIT), copy, None, 0),
        (UsageStatus.SETTLED, None, copy, 2 * DEFAULT_PRICE, 0),
    ]
    assert env.chain.paid == {ids[0]: DEFAULT_PRICE, ids[2]: 2 * DEFAULT_PRICE}
    assert sample(worker, "twin_bridge_worker_batches_total", event="settled_elsewhere") == 1
    assert sample(worker, "twin_bridge_worker_batches_total", event="failed") == 0


def test_a_settlement_copied_before_a_lost_nonce_is_followed_not_failed(env: Env) -> None:
    """The node says "nonce too low" and knows none of the batch's transactions, but a copy of
    the batch was mined: the batch follows the copy instead of handing its usages back."""
    (usage_id,) = env.add(BRAND_A, (1, 0, 1))
    env.chain.automine = False
    worker = env.worker()
    env.clock.now += timedelta(seconds=5)
    assert worker.step() is True
    [sent] = env.batches()
    copy = env.chain.front_run(sent.tx_hash)
    env.chain.drop(sent.tx_hash)
    env.chain.nonces[RELAYER.address.lower()] = 1  # its nonce went to another transaction
    env.chain.automine = True

    worker.run_until_idle()

    [batch] = env.batches()
    assert (batch.status, batch.tx_hash, batch.error) == (BatchStatus.CONFIRMED, copy, None)
    assert batch.gas_used == 0  # the relayer's transaction never ran
    [usage] = env.usages()
    assert (usage.status, usage.tx_hash, usage.amount) == (UsageStatus.SETTLED, copy, DEFAULT_PRICE)
    assert env.chain.paid == {usage_id: DEFAULT_PRICE}


def test_a_revert_with_usages_processed_by_another_batch_still_fails(env: Env) -> None:
    """Only a copy of the batch itself settles it: a usage id processed by another batch (a leaked
    attester key burning ids) leaves the batch failed, its attempt counted."""
    first, second = env.add(BRAND_A, (1, 0, 1), (2, 0, 1))
    env.chain.automine = False
    worker = env.worker()
    env.clock.now += timedelta(seconds=5)
    assert worker.step() is True
    [sent] = env.batches()
    env.chain.processed.add(first)  # burned by another batch: ours reverts
    env.chain.mine()

    assert worker.step() is True

    [failed] = env.batches()
    assert (failed.status, failed.tx_hash) == (BatchStatus.FAILED, sent.tx_hash)
    assert "reverted" in (failed.error or "")
    assert [(u.status, u.settle_attempts) for u in env.usages()] == [
        (UsageStatus.ACCEPTED, 1),
        (UsageStatus.ACCEPTED, 1),
    ]
    assert second not in env.chain.processed
    assert sample(worker, "twin_bridge_worker_batches_total", event="settled_elsewhere") == 0


# ---------------------------------------------------------------- batches that cannot succeed


def test_a_batch_whose_estimation_always_reverts_is_held_after_three_attempts(env: Env) -> None:
    ids = env.add(BRAND_A, (1, 0, 1), (1, 0, 2))
    env.chain.estimate_reverts.update(ids)
    worker = env.worker()
    for attempt in (1, 2):
        assert worker.step() is True
        assert [(u.status, u.settle_attempts) for u in env.usages()] == [
            (UsageStatus.ACCEPTED, attempt)
        ] * 2
    assert worker.step() is True
    usages = env.usages()
    assert [(u.status, u.settle_attempts) for u in usages] == [(UsageStatus.HELD, 3)] * 2
    assert all("reverted" in (u.last_error or "") for u in usages)
    estimates = env.chain.estimates
    assert worker.run_until_idle() == 0  # held usages are never batched again
    assert env.chain.estimates == estimates
    assert (env.batches(), env.chain.sent) == ([], [])


def test_one_usage_whose_estimation_reverts_is_held_and_the_others_settle(env: Env) -> None:
    a1, a2, a3 = env.add(BRAND_A, (1, 0, 1), (2, 0, 1), (3, 0, 1))
    (b1,) = env.add(BRAND_B, (1, 0, 1))
    env.chain.estimate_reverts.add(a2)
    worker = env.worker(max_settle_attempts=2)
    worker.run_until_idle()
    by_id = {u.usage_id: u for u in env.usages()}
    assert {i: by_id[i].status for i in (a1, a3, b1)} == dict.fromkeys(
        (a1, a3, b1), UsageStatus.SETTLED
    )
    assert (by_id[a2].status, by_id[a2].settle_attempts) == (UsageStatus.HELD, 2)
    assert str(a2) in (by_id[a2].last_error or "")
    assert set(env.chain.paid) == {a1, a3, b1}
    assert all(b.status is BatchStatus.CONFIRMED for b in env.batches())


def test_a_usage_id_processed_by_a_batch_the_bridge_did_not_send_is_held_saying_so(
    env: Env,
) -> None:
    """An id burned on chain by another batch (a leaked attester key) whose event is not found
    never settles: it is held at its first attempt with the reason, and the others settle."""
    burned, kept = env.add(BRAND_A, (1, 0, 1), (2, 0, 1))
    env.chain.processed.add(burned)
    env.worker(max_settle_attempts=3).run_until_idle()
    by_id = {u.usage_id: u for u in env.usages()}
    assert (by_id[burned].status, by_id[burned].settle_attempts, by_id[burned].last_error) == (
        UsageStatus.HELD,
        1,
        f"usage id {burned} of brand {to_checksum_address(BRAND_A)} was already processed on "
        "chain by a batch found nowhere within the lookback: it cannot settle under this id",
    )
    assert by_id[kept].status is UsageStatus.SETTLED
    assert env.chain.paid == {kept: DEFAULT_PRICE}


def test_an_on_chain_revert_counts_an_attempt_and_holds_after_the_maximum(env: Env) -> None:
    (usage_id,) = env.add(BRAND_A, (1, 0, 1))
    env.chain.attesters.clear()  # the attester lost its role: every batch reverts on chain
    worker = env.worker()
    assert worker.step() is True  # signed, sent, mined with status 0
    assert worker.step() is True  # the receipt is read
    [usage] = env.usages()
    assert (usage.status, usage.settle_attempts) == (UsageStatus.ACCEPTED, 1)
    assert "reverted" in (usage.last_error or "")

    worker.run_until_idle()
    [usage] = env.usages()
    assert (usage.status, usage.settle_attempts) == (UsageStatus.HELD, 3)
    assert [b.status for b in env.batches()] == [BatchStatus.FAILED] * 3
    assert len(env.chain.sent) == 3
    assert worker.run_until_idle() == 0
    assert len(env.chain.sent) == 3
    assert env.chain.paid == {}
    assert usage.usage_id == usage_id


def test_a_dropped_transaction_is_resent_byte_for_byte(env: Env) -> None:
    env.add(BRAND_A, (1, 0, 1))
    env.chain.automine = False
    worker = env.worker()
    worker.run_until_idle()
    [batch] = env.batches()
    env.chain.drop(batch.tx_hash)
    worker.run_until_idle()
    assert env.chain.sent == [batch.tx_hash, batch.tx_hash]
    env.chain.mine()
    worker.run_until_idle()
    assert [u.status for u in env.usages()] == [UsageStatus.SETTLED]


def test_a_reorg_before_the_confirmation_depth_settles_the_usages_once(env: Env) -> None:
    (usage_id,) = env.add(BRAND_A, (1, 0, 1))
    worker = env.worker(confirmations=2)
    worker.run_until_idle()
    mined = env.batches()[0]
    assert mined.status is BatchStatus.MINED
    env.chain.automine = False
    env.chain.reorg(1)
    env.chain.mine(empty=True)  # the new chain is longer, without our tx
    env.chain.mine(empty=True)
    worker.run_until_idle()
    assert env.batches()[0].status is BatchStatus.SENT
    env.chain.mine()  # the tx comes back in another block
    env.chain.mine(empty=True)
    worker.run_until_idle()
    [batch] = env.batches()
    assert batch.status is BatchStatus.CONFIRMED
    assert batch.block_number != mined.block_number
    [usage] = env.usages()
    assert (usage.status, usage.block_number) == (UsageStatus.SETTLED, batch.block_number)
    assert env.chain.paid == {usage_id: DEFAULT_PRICE}
    assert (
        worker.metrics.registry.get_sample_value(
            "twin_bridge_worker_reorged_batches_total", {"stage": "mined"}
        )
        == 1
    )


def test_run_stops_promptly_when_asked(env: Env) -> None:
    env.add(BRAND_A, (1, 0, 1))
    stop = threading.Event()
    thread = threading.Thread(target=env.worker(poll_s=0.01).run, args=(stop,))
    thread.start()
    for _ in range(200):
        if env.usages()[0].status is UsageStatus.SETTLED:
            break
        stop.wait(0.01)
    stop.set()
    thread.join(timeout=2)
    assert not thread.is_alive()
    assert env.usages()[0].status is UsageStatus.SETTLED


# ---------------------------------------------------------------- stuck transactions


def test_a_stuck_transaction_is_replaced_with_a_ten_percent_fee_bump(env: Env) -> None:
    (usage_id,) = env.add(BRAND_A, (1, 0, 1))
    env.chain.automine = False
    worker = env.worker(replace_after=timedelta(seconds=30), max_fee_per_gas=100 * 10**9)
    worker.run_until_idle()
    [first] = env.batches()
    assert (first.status, first.max_fee_per_gas, first.max_priority_fee_per_gas) == (
        BatchStatus.SENT,
        3 * 10**9,
        10**9,
    )
    env.clock.now += timedelta(seconds=29)
    assert worker.step() is False  # not stuck yet

    env.clock.now += timedelta(seconds=1)
    assert worker.step() is True
    [replaced] = env.batches()
    assert (replaced.nonce, replaced.max_fee_per_gas, replaced.max_priority_fee_per_gas) == (
        first.nonce,
        3_300_000_000,
        1_100_000_000,
    )
    assert replaced.tx_hashes == f'["{first.tx_hash}", "{replaced.tx_hash}"]'
    assert list(env.chain.mempool) == [replaced.tx_hash]

    env.chain.mine()
    worker.run_until_idle()
    [batch] = env.batches()
    assert (batch.status, batch.tx_hash) == (BatchStatus.CONFIRMED, replaced.tx_hash)
    assert env.usages()[0].tx_hash == replaced.tx_hash
    assert env.chain.paid == {usage_id: DEFAULT_PRICE}


def test_a_replacement_follows_a_rising_base_fee(env: Env) -> None:
    env.add(BRAND_A, (1, 0, 1))
    env.chain.automine = False
    worker = env.worker(replace_after=timedelta(seconds=30), max_fee_per_gas=100 * 10**9)
    worker.run_until_idle()
    env.chain.base_fee = 20 * 10**9
    env.clock.now += timedelta(seconds=30)
    worker.step()
    [batch] = env.batches()
    assert (batch.max_fee_per_gas, batch.max_priority_fee_per_gas) == (
        41_100_000_000,
        1_100_000_000,
    )


def test_no_replacement_when_the_bump_would_pass_the_cap(env: Env) -> None:
    env.add(BRAND_A, (1, 0, 1))
    env.chain.automine = False
    worker = env.worker(replace_after=timedelta(seconds=30), max_fee_per_gas=3 * 10**9)
    worker.run_until_idle()
    env.clock.now += timedelta(seconds=60)
    assert worker.step() is False
    [batch] = env.batches()
    assert (batch.status, batch.max_fee_per_gas) == (BatchStatus.SENT, 3 * 10**9)
    assert batch.tx_hashes == f'["{batch.tx_hash}"]'


def test_an_earlier_transaction_of_the_batch_mined_after_its_replacement_settles_it(
    env: Env,
) -> None:
    """The node refused the replacement (underpriced): the first transaction gets mined."""
    (usage_id,) = env.add(BRAND_A, (1, 0, 1))
    env.chain.automine = False
    worker = env.worker(replace_after=timedelta(seconds=30))
    worker.run_until_idle()
    [first] = env.batches()
    env.chain.send_errors.append(
        ReplacementUnderpricedError("fake://chain", -32000, "replacement transaction underpriced")
    )
    env.clock.now += timedelta(seconds=30)
    assert worker.step() is True
    [replaced] = env.batches()
    assert replaced.tx_hash != first.tx_hash
    assert list(env.chain.mempool) == [first.tx_hash]
    env.chain.mine()
    worker.run_until_idle()
    [batch] = env.batches()
    assert (batch.status, batch.tx_hash) == (BatchStatus.CONFIRMED, first.tx_hash)
    assert env.usages()[0].tx_hash == first.tx_hash
    assert env.chain.paid == {usage_id: DEFAULT_PRICE}


# ---------------------------------------------------------------- one worker per relayer


def test_a_second_worker_waits_for_the_lease_and_takes_over_when_the_first_dies(
    env: Env,
) -> None:
    (usage_id,) = env.add(BRAND_A, (1, 0, 1))
    first = env.worker(crash_at("after_signing"), holder="first", lease_ttl=timedelta(seconds=30))
    with pytest.raises(Crash):
        first.run_until_idle()
    second = env.worker(holder="second", lease_ttl=timedelta(seconds=30))
    assert second.step() is False
    env.clock.now += timedelta(seconds=29)
    assert second.run_until_idle() == 0
    assert env.chain.sent == []
    with env.store.session() as session:
        assert lease_holder(session, RELAYER.address) == "first"

    env.clock.now += timedelta(seconds=1)  # the first worker's lease runs out
    assert second.run_until_idle() > 0
    with env.store.session() as session:
        assert lease_holder(session, RELAYER.address) == "second"
    [batch] = env.batches()
    assert (batch.status, env.chain.sent) == (BatchStatus.CONFIRMED, [batch.tx_hash])
    assert env.chain.paid == {usage_id: DEFAULT_PRICE}
    env.add(BRAND_A, (1, 0, 1))
    assert first.run_until_idle() == 0  # the first one, back, has lost the lease


def test_a_stopped_worker_hands_the_lease_over_at_once(env: Env) -> None:
    stop = threading.Event()
    stop.set()
    first = env.worker(holder="first")
    assert first.step() is False  # takes the lease, nothing to do
    first.run(stop)  # returns at once and releases the lease
    with env.store.session() as session:
        assert lease_holder(session, RELAYER.address) is None
    env.add(BRAND_A, (1, 0, 1))
    assert env.worker(holder="second").run_until_idle() > 0
    assert [u.status for u in env.usages()] == [UsageStatus.SETTLED]


def test_only_one_of_two_racing_workers_gets_the_lease(env: Env) -> None:
    barrier = threading.Barrier(8)
    won: list[str] = []

    def race(holder: str) -> None:
        barrier.wait()
        with env.store.session() as session:
            if acquire_lease(
                session,
                relayer=RELAYER.address,
                holder=holder,
                now=env.clock.now,
                ttl=timedelta(seconds=30),
            ):
                won.append(holder)

    threads = [threading.Thread(target=race, args=(f"w{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1


@pytest.mark.parametrize("point", ["after_batching", "after_signing", "before_marking_settled"])
def test_a_worker_paused_past_its_lease_writes_nothing_once_another_took_over(
    env: Env, point: str
) -> None:
    (usage_id,) = env.add(BRAND_A, (1, 0, 1))
    ttl = timedelta(seconds=30)
    second = env.worker(holder="second", lease_ttl=ttl)
    snapshot: list[object] = []

    def pause(name: str) -> None:
        if name == point and not snapshot:
            env.clock.now += ttl  # the first worker freezes past its lease ...
            assert second.run_until_idle() > 0  # ... and the second takes over
            snapshot.append((env.usages(), [(b.id, b.status) for b in env.batches()]))

    first = env.worker(pause, holder="first", lease_ttl=ttl)
    if point == "before_marking_settled":
        assert first.step() is True  # signs and sends the batch
        assert first.step() is True  # mined
    with pytest.raises(LeaseLostError):
        first.run_until_idle()
    assert snapshot == [(env.usages(), [(b.id, b.status) for b in env.batches()])]
    with env.store.session() as session:
        assert lease_holder(session, RELAYER.address) == "second"
    assert [u.status for u in env.usages()] == [UsageStatus.SETTLED]
    assert env.chain.paid == {usage_id: DEFAULT_PRICE}


def test_run_stops_when_the_lease_is_lost(env: Env) -> None:
    env.add(BRAND_A, (1, 0, 1))
    second = env.worker(holder="second")

    def pause(name: str) -> None:
        if name == "after_batching":
            env.clock.now += timedelta(seconds=30)
            second.step()  # takes the lease over

    first = env.worker(pause, holder="first")
    stop = threading.Event()
    thread = threading.Thread(target=first.run, args=(stop,))
    thread.start()
    thread.join(timeout=10)
    stopped = not thread.is_alive()
    stop.set()
    thread.join()
    assert stopped
    with env.store.session() as session:
        assert lease_holder(session, RELAYER.address) == "second"


# ---------------------------------------------------------------- reorgs deeper than the depth


def sample(worker: SettlementWorker, name: str, **labels: str) -> float | None:
    return worker.metrics.registry.get_sample_value(name, labels)


@pytest.mark.parametrize("confirmations", [1, 2])
def test_a_confirmed_settlement_a_deeper_reorg_mines_in_another_block_follows_its_receipt(
    env: Env, confirmations: int
) -> None:
    (usage_id,) = env.add(BRAND_A, (1, 0, 2))
    worker = env.worker(confirmations=confirmations)
    worker.run_until_idle()
    env.chain.mine(empty=True)
    worker.run_until_idle()
    [settled] = env.batches()
    assert (settled.status, settled.block_number) == (BatchStatus.CONFIRMED, 1)
    assert env.chain.paid == {usage_id: 2 * DEFAULT_PRICE}

    # A reorg of both blocks (deeper than the depth); the new chain mines the transaction one
    # block later, and the usage's price (the license version in force) differs there.
    env.chain.automine = False
    env.chain.reorg(2)
    env.chain.prices[(1, BRAND_A.lower(), 0)] = 3_000
    env.chain.mine(empty=True)
    env.chain.mine()
    assert worker.step() is True
    if confirmations == 2:  # one block deep only: back to mined, the usage waits again
        [batch] = env.batches()
        assert (batch.status, batch.block_number) == (BatchStatus.MINED, 2)
        [usage] = env.usages()
        assert (usage.status, usage.tx_hash, usage.block_number, usage.amount) == (
            UsageStatus.SUBMITTED,
            None,
            None,
            None,
        )
        assert worker.run_until_idle() == 0
        env.chain.mine(empty=True)
    worker.run_until_idle()

    [batch] = env.batches()
    receipt = env.chain.receipt(settled.tx_hash)
    assert receipt is not None
    assert (batch.status, batch.tx_hash, batch.block_number, batch.block_hash) == (
        BatchStatus.CONFIRMED,
        settled.tx_hash,
        2,
        receipt.block_hash,
    )
    assert batch.block_hash != settled.block_hash
    [usage] = env.usages()
    assert (usage.status, usage.tx_hash, usage.block_number, usage.log_index, usage.amount) == (
        UsageStatus.SETTLED,
        settled.tx_hash,
        2,
        0,
        6_000,
    )
    assert env.chain.paid == {usage_id: 6_000}
    assert env.chain.sent == [settled.tx_hash]  # never sent again
    assert sample(worker, "twin_bridge_worker_reorged_batches_total", stage="confirmed") == 1
    assert sample(worker, "twin_bridge_worker_batches_total", event="confirmed") == (
        1 if confirmations == 1 else 2
    )


@pytest.mark.parametrize("dropped", [True, False], ids=["dropped", "kept-in-the-pool"])
def test_settlements_a_deeper_reorg_takes_out_of_the_chain_are_resent_with_their_nonces(
    env: Env, dropped: bool
) -> None:
    a, b = env.add(BRAND_A, (1, 0, 1), (2, 0, 1))
    worker = env.worker(batch_size=1)
    worker.run_until_idle()
    first, second = env.batches()
    assert [(x.nonce, x.status, x.block_number) for x in (first, second)] == [
        (0, BatchStatus.CONFIRMED, 1),
        (1, BatchStatus.CONFIRMED, 2),
    ]

    env.chain.automine = False
    env.chain.reorg(2)  # both transactions go back to the pool ...
    if dropped:  # ... and the node forgets them
        env.chain.drop(first.tx_hash)
        env.chain.drop(second.tx_hash)
    for _ in range(3):  # the new chain is longer, without them
        env.chain.mine(empty=True)
    assert worker.step() is True
    assert [(x.nonce, x.status, x.block_number) for x in env.batches()] == [
        (0, BatchStatus.SENT, None),
        (1, BatchStatus.SENT, None),
    ]
    assert [(u.status, u.tx_hash, u.block_number, u.amount) for u in env.usages()] == [
        (UsageStatus.SUBMITTED, None, None, None)
    ] * 2
    # the stored bytes went out again, in nonce order (a kept transaction is "already known")
    resent = [first.tx_hash, second.tx_hash] if dropped else []
    assert env.chain.sent == [first.tx_hash, second.tx_hash, *resent]
    assert sorted(env.chain.mempool) == sorted([first.tx_hash, second.tx_hash])

    env.chain.mine()
    worker.run_until_idle()
    assert [(x.nonce, x.status, x.tx_hash, x.block_number) for x in env.batches()] == [
        (0, BatchStatus.CONFIRMED, first.tx_hash, 4),
        (1, BatchStatus.CONFIRMED, second.tx_hash, 4),
    ]
    assert [(u.status, u.tx_hash, u.block_number, u.amount) for u in env.usages()] == [
        (UsageStatus.SETTLED, first.tx_hash, 4, DEFAULT_PRICE),
        (UsageStatus.SETTLED, second.tx_hash, 4, DEFAULT_PRICE),
    ]
    assert env.chain.paid == {a: DEFAULT_PRICE, b: DEFAULT_PRICE}
    assert sample(worker, "twin_bridge_worker_reorged_batches_total", stage="confirmed") == 2
    assert sample(worker, "twin_bridge_worker_batches_total", event="resent") == 2
    assert sample(worker, "twin_bridge_worker_batches_total", event="confirmed") == 4
    assert sample(
        worker, "twin_bridge_worker_rpc_errors_total", error="transaction_already_known"
    ) == (None if dropped else 2)

    # no nonce burnt or used twice: the next batch takes the next one
    env.chain.automine = True
    (c,) = env.add(BRAND_A, (3, 0, 1))
    worker.run_until_idle()
    assert [(x.nonce, x.status) for x in env.batches()][2:] == [(2, BatchStatus.CONFIRMED)]
    assert env.chain.nonces[RELAYER.address.lower()] == 3
    with env.store.session() as session:
        assert recorded_nonce(session, RELAYER.address) == 3
    assert env.chain.paid == {a: DEFAULT_PRICE, b: DEFAULT_PRICE, c: DEFAULT_PRICE}


def test_the_watch_costs_one_head_lookup_per_step_on_a_quiet_chain(env: Env) -> None:
    env.add(BRAND_A, (1, 0, 1))
    worker = env.worker()
    worker.run_until_idle()
    env.chain.block_lookups.clear()
    assert worker.step() is False
    assert env.chain.block_lookups == ["latest", "latest"]  # the watch's, the batcher's
    env.chain.block_lookups.clear()
    env.chain.mine(empty=True)
    assert worker.step() is False  # a new head: is the last one looked at still there?
    assert env.chain.block_lookups == ["latest", 1, "latest"]
    env.chain.block_lookups.clear()
    assert worker.step() is False
    assert env.chain.block_lookups == ["latest", "latest"]


def test_confirmed_batches_below_the_watch_window_stay_as_they_are(env: Env) -> None:
    (usage_id,) = env.add(BRAND_A, (1, 0, 1))
    worker = env.worker(reorg_watch_blocks=2)
    worker.run_until_idle()
    for _ in range(2):  # block 1 falls out of a window of 2 blocks
        env.chain.mine(empty=True)
    worker.run_until_idle()
    [settled] = env.batches()
    env.chain.automine = False
    env.chain.reorg(3)
    env.chain.drop(settled.tx_hash)
    for _ in range(3):
        env.chain.mine(empty=True)
    env.chain.block_lookups.clear()
    assert worker.run_until_idle() == 0
    assert 1 not in env.chain.block_lookups
    [batch] = env.batches()
    assert (batch.status, batch.block_hash) == (BatchStatus.CONFIRMED, settled.block_hash)
    assert [u.status for u in env.usages()] == [UsageStatus.SETTLED]
    assert env.chain.sent == [settled.tx_hash]
    assert sample(worker, "twin_bridge_worker_reorged_batches_total", stage="confirmed") == 0
    assert usage_id not in env.chain.paid


# ---------------------------------------------------------------- metrics


def store_metrics(store: Store, clock: Clock) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(StoreCollector(store, clock=clock))
    return registry


def test_the_store_metrics_show_usages_batches_gas_lag_and_the_worker_exactly(env: Env) -> None:
    a1, a2, a3 = env.add(BRAND_A, (1, 0, 1), (2, 0, 1), (3, 0, 1))
    (b1,) = env.add(BRAND_B, (1, 0, 1))
    env.chain.outcomes[a2] = Outcome.LICENSE_REVOKED
    env.chain.estimate_reverts.add(b1)
    worker = env.worker(max_settle_attempts=1)
    worker.run_until_idle()  # A's three in batch 1 (65,000 gas), B's one held
    env.chain.automine = False
    (a4,) = env.add(BRAND_A, (4, 0, 1))
    (a5,) = env.add(BRAND_A, (5, 0, 1), used_at=datetime.fromtimestamp(START_TIME + 3600, UTC))
    worker.run_until_idle()  # a4 in batch 2, sent; a5 waits for the chain's clock

    registry = store_metrics(env.store, env.clock)
    relayer = RELAYER.address
    usages = {u.usage_id: u for u in env.usages()}
    batches = env.batches()
    now = env.clock.now

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("twin_bridge_store_up") == 1
    assert {s.value: value("twin_bridge_usages", status=s.value) for s in UsageStatus} == {
        "accepted": 1,
        "submitted": 1,
        "settled": 2,
        "rejected": 1,
        "held": 1,
    }
    assert {
        s.value: value("twin_bridge_settlement_batches", status=s.value) for s in BatchStatus
    } == {
        "signed": 0,
        "sent": 1,
        "mined": 0,
        "confirmed": 1,
        "failed": 0,
    }
    assert value("twin_bridge_settlement_lag_seconds") == (
        (now - usages[a4].created_at).total_seconds()
    )
    assert value("twin_bridge_settlement_gas_used") == 65_000
    assert value("twin_bridge_settlement_gas_per_usage") == 65_000 / 3
    assert value("twin_bridge_relayer_lease_held", relayer=relayer) == 1
    assert (
        value(
            "twin_bridge_relayer_lease_expiry_timestamp_seconds",
            relayer=relayer,
            holder="the-worker",
        )
        == (now + timedelta(seconds=30)).timestamp()
    )
    assert value("twin_bridge_relayer_last_batch_block", relayer=relayer) == 1
    assert value("twin_bridge_relayer_inflight_batch_id", relayer=relayer) == batches[1].id
    assert {
        s: value("twin_bridge_relayer_inflight_batch_status", relayer=relayer, status=s)
        for s in ("signed", "sent", "mined")
    } == {"signed": 0, "sent": 1, "mined": 0}
    assert value("twin_bridge_relayer_inflight_batch_usages", relayer=relayer) == 1
    assert value("twin_bridge_relayer_inflight_batch_age_seconds", relayer=relayer) == (
        (now - batches[1].created_at).total_seconds()
    )

    env.chain.mine()
    worker.run_until_idle()  # batch 2 confirmed in block 2 (55,000 gas)
    worker.release()
    later = env.clock.now
    assert value("twin_bridge_usages", status="submitted") == 0
    assert value("twin_bridge_usages", status="settled") == 3
    assert value("twin_bridge_settlement_lag_seconds") == (
        (later - usages[a5].created_at).total_seconds()
    )
    assert value("twin_bridge_settlement_gas_used") == 120_000
    assert value("twin_bridge_settlement_gas_per_usage") == 30_000
    assert value("twin_bridge_relayer_lease_held", relayer=relayer) == 0
    assert (
        value(
            "twin_bridge_relayer_lease_expiry_timestamp_seconds",
            relayer=relayer,
            holder="the-worker",
        )
        is None
    )
    assert value("twin_bridge_relayer_last_batch_block", relayer=relayer) == 2
    assert value("twin_bridge_relayer_inflight_batch_id", relayer=relayer) == 0
    assert value("twin_bridge_relayer_inflight_batch_usages", relayer=relayer) == 0
    assert value("twin_bridge_relayer_inflight_batch_status", relayer=relayer, status="sent") == 0

    # what this worker process counted itself
    assert {e: sample(worker, "twin_bridge_worker_batches_total", event=e) for e in (
        "sent", "resent", "replaced", "confirmed", "failed"
    )} == {"sent": 2, "resent": 0, "replaced": 0, "confirmed": 2, "failed": 0}  # fmt: skip
    assert sample(worker, "twin_bridge_worker_usages_total", outcome="settled") == 3
    assert sample(worker, "twin_bridge_worker_usages_total", outcome="rejected") == 1
    assert sample(worker, "twin_bridge_worker_gas_used_total") == 120_000
    assert sample(worker, "twin_bridge_worker_rpc_errors_total", error="execution_reverted") == 2
    assert sample(worker, "twin_bridge_worker_reorged_batches_total", stage="mined") == 0
    assert sample(worker, "twin_bridge_worker_lease_held") == 0
    assert {u.usage_id: u.status for u in env.usages()} == {
        a1: UsageStatus.SETTLED,
        a2: UsageStatus.REJECTED,
        a3: UsageStatus.SETTLED,
        b1: UsageStatus.HELD,
        a4: UsageStatus.SETTLED,
        a5: UsageStatus.ACCEPTED,
    }


def test_the_store_metrics_before_any_settlement(env: Env) -> None:
    registry = store_metrics(env.store, env.clock)
    assert registry.get_sample_value("twin_bridge_store_up") == 1
    assert registry.get_sample_value("twin_bridge_usages", {"status": "accepted"}) == 0
    assert registry.get_sample_value("twin_bridge_settlement_lag_seconds") == 0
    assert registry.get_sample_value("twin_bridge_settlement_gas_used") == 0
    gas_per_usage = registry.get_sample_value("twin_bridge_settlement_gas_per_usage")
    assert gas_per_usage is not None
    assert math.isnan(gas_per_usage)
    assert (
        registry.get_sample_value("twin_bridge_relayer_lease_held", {"relayer": RELAYER.address})
        is None
    )


def test_the_store_metrics_say_so_when_the_store_does_not_answer(tmp_path: Path) -> None:
    store = Store.from_url(f"sqlite:///{tmp_path / 'unmigrated.db'}")  # no tables
    try:
        registry = store_metrics(store, Clock(datetime.now(UTC)))
        assert registry.get_sample_value("twin_bridge_store_up") == 0
        assert registry.get_sample_value("twin_bridge_usages", {"status": "accepted"}) is None
    finally:
        store.close()


def test_the_worker_counts_replacements_failures_and_node_refusals(env: Env) -> None:
    env.add(BRAND_A, (1, 0, 1))
    env.chain.send_errors.append(NonceTooLowError("fake://chain", -32000, "nonce too low"))
    worker = env.worker(replace_after=timedelta(seconds=30))
    assert worker.step() is True  # the nonce went to another transaction: failed
    env.chain.nonces[RELAYER.address.lower()] = 1
    env.chain.automine = False
    worker.run_until_idle()
    env.clock.now += timedelta(seconds=30)
    worker.run_until_idle()  # replaced
    env.chain.mine()
    worker.run_until_idle()
    assert {e: sample(worker, "twin_bridge_worker_batches_total", event=e) for e in (
        "sent", "resent", "replaced", "confirmed", "failed"
    )} == {"sent": 1, "resent": 0, "replaced": 1, "confirmed": 1, "failed": 1}  # fmt: skip
    assert sample(worker, "twin_bridge_worker_rpc_errors_total", error="nonce_too_low") == 1
    assert sample(worker, "twin_bridge_worker_lease_held") == 1
