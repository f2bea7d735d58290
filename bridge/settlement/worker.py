"""The settlement worker: accepted usages -> signed batch -> relayer transaction -> settled.

One batch is in flight at a time per relayer. Each step is a committed transition in the store
(``bridge.store.settlement``), so a worker that dies anywhere resumes where it was:

- ``signed``: the batch, its signature and the signed relayer transaction (with its nonce) are
  stored; it is (re)sent byte for byte, so a resend can only be "already known" or mined.
- ``sent``: the receipt is looked up by hash before anything else; a transaction the node forgot
  is resent; "nonce too low" means "possibly mined", answered by the chain, never by a new nonce.
- ``mined``: once the block is ``confirmations`` deep and still carries the transaction, the
  usages are marked settled or rejected from the ``UsagesSettled`` events.
- ``confirmed``: watched for ``reorg_watch_blocks`` more blocks. A reorg deeper than the depth
  that re-included the transaction elsewhere moves the usages' outcomes to the new receipt; one
  that left it in no block puts the batch back to ``sent`` and resends the stored bytes (same
  nonce; the ledger pays a usage id once).

The clock, the chain client (and with it the RPC URL list) and a crash hook called at named points
(``CRASH_POINTS``) are injected, for the fault-injection suite. What a worker process did is
counted in ``WorkerMetrics`` (its own Prometheus registry); what every worker did is read from the
store by the API's ``/metrics``.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy.exc import OperationalError

from bridge.chain.client import Block, ChainClient, Receipt
from bridge.chain.ledger import (
    SettledGroup,
    decode_price_at,
    decode_usages_settled,
    price_at_calldata,
    settle_calldata,
)
from bridge.chain.reverts import describe_revert
from bridge.domain import eip712
from bridge.domain.codec import Outcome, Usage
from bridge.errors import (
    ChainUnavailableError,
    ExecutionRevertedError,
    FeeTooLowError,
    NonceTooLowError,
    ReplacementUnderpricedError,
    RpcError,
    TransactionAlreadyKnownError,
)
from bridge.settings import Settings
from bridge.store import actions, settlement
from bridge.store.models import BatchStatus
from bridge.store.repository import Store
from bridge.store.settlement import (
    BatchRecord,
    ClaimConflictError,
    LeaseLostError,
    MinedIn,
    NewBatch,
    PendingUsage,
    UsageResult,
)

log = logging.getLogger(__name__)

CRASH_POINTS: Final = (
    "after_batching",
    "after_signing",
    "after_sending",
    "before_receipt",
    "before_marking_settled",
)
CrashHook = Callable[[str], None]
GAS_MARGIN_PERCENT: Final = 25
"""Head room over the gas estimate (the estimate runs against a block that may differ)."""


def bumped(fee: int) -> int:
    """The least fee a node takes to replace a pending transaction paying ``fee``: 10 % more,
    rounded up (geth's and anvil's price bump), and at least one wei more."""
    return fee + max(1, -(-fee // 10))


def _no_crash(point: str) -> None:
    pass


BATCH_EVENTS: Final = ("sent", "resent", "replaced", "confirmed", "failed")


class WorkerMetrics:
    """What one worker process did, in a Prometheus registry of its own (served by
    ``twin-bridge worker --metrics-port``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.batches = Counter(
            "twin_bridge_worker_batches",
            "Settlement batches by event: sent (first time), resent (the stored bytes again), "
            "replaced (fee bump), confirmed, failed (usages handed back).",
            ["event"],
            registry=self.registry,
        )
        for event in BATCH_EVENTS:
            self.batches.labels(event)
        self.usages = Counter(
            "twin_bridge_worker_usages",
            "Usages of the batches this process confirmed, by outcome (settled, rejected).",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in ("settled", "rejected"):
            self.usages.labels(outcome)
        self.gas_used = Counter(
            "twin_bridge_worker_gas_used",
            "Gas used by the batches this process confirmed.",
            registry=self.registry,
        )
        self.reorged = Counter(
            "twin_bridge_worker_reorged_batches",
            "Batches whose block a reorg replaced, by what they were then: mined (before the "
            "confirmation depth) or confirmed (a reorg deeper than the depth).",
            ["stage"],
            registry=self.registry,
        )
        for stage in ("mined", "confirmed"):
            self.reorged.labels(stage)
        self.rpc_errors = Counter(
            "twin_bridge_worker_rpc_errors",
            "Errors of the chain client by kind: unreachable endpoints (chain_unavailable) and "
            "node refusals, answered by the worker or not.",
            ["error"],
            registry=self.registry,
        )
        self.lease_held = Gauge(
            "twin_bridge_worker_lease_held",
            "1 while this process holds its relayer's lease.",
            registry=self.registry,
        )


def _error_kind(exc: Exception) -> str:
    """``NonceTooLowError`` -> ``nonce_too_low``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__.removesuffix("Error")).lower()


class _CountedChain:
    """The chain client, counting each error it raises in ``errors``."""

    def __init__(self, chain: ChainClient, errors: Counter) -> None:
        self._chain = chain
        self._errors = errors

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._chain, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except (ChainUnavailableError, RpcError) as exc:
                self._errors.labels(_error_kind(exc)).inc()
                raise

        return counted


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    ledger: str
    batch_size: int = 500
    max_age: timedelta = timedelta(seconds=2)
    confirmations: int = 1
    max_fee_per_gas: int = 500 * 10**9
    deadline_s: int = 3600
    poll_s: float = 0.2
    replace_after: timedelta = timedelta(seconds=60)
    lease_ttl: timedelta = timedelta(seconds=30)
    max_settle_attempts: int = 3
    reorg_watch_blocks: int = 64
    """Confirmed batches mined in the last this many blocks are checked still to be there."""

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerConfig:
        if settings.ledger_address is None:
            raise ValueError("the worker needs ledger_address")
        return cls(
            ledger=to_checksum_address(settings.ledger_address),
            batch_size=settings.batch_size,
            max_age=settings.batch_max_age,
            confirmations=settings.confirmations,
            max_fee_per_gas=settings.max_fee_per_gas_wei,
            deadline_s=settings.batch_deadline_s,
            poll_s=settings.worker_poll_s,
            replace_after=settings.replace_after,
            lease_ttl=settings.worker_lease_ttl,
            max_settle_attempts=settings.max_settle_attempts,
            reorg_watch_blocks=settings.reorg_watch_blocks,
        )


def _price_key(usage: Usage, brand: str) -> tuple[int, str, int, int]:
    return (usage.twin_id, brand, usage.usage_type, usage.used_at)


def group_usages(usages: Sequence[PendingUsage]) -> list[tuple[str, list[Usage]]]:
    """One group per brand, brands in order of their oldest usage, each sorted by twin then id
    (the ledger takes any order; consecutive usages of one twin cost less gas)."""
    groups: dict[str, list[Usage]] = {}
    for u in sorted(usages, key=lambda u: u.usage_id):
        groups.setdefault(to_checksum_address(u.brand), []).append(
            Usage(
                usage_id=u.usage_id,
                twin_id=u.twin_id,
                used_at=int(u.used_at.timestamp()),
                quantity=u.quantity,
                usage_type=u.usage_type,
            )
        )
    return [
        (brand, sorted(members, key=lambda u: (u.twin_id, u.usage_id)))
        for brand, members in groups.items()
    ]


_Planned = tuple[
    list[PendingUsage], list[tuple[str, list[Usage]]], dict[str, Any], bytes, bytes, int
]
"""Usages of a batch, their groups, the typed data, its signature, the calldata, the estimate."""


def _halves(
    usages: Sequence[PendingUsage],
) -> tuple[list[PendingUsage], list[PendingUsage]]:
    """Splits by brand (the brands in order of their first usage) while several are in, else by
    count."""
    brands = list(dict.fromkeys(u.brand.lower() for u in usages))
    if len(brands) > 1:
        first = set(brands[: len(brands) // 2])
        return (
            [u for u in usages if u.brand.lower() in first],
            [u for u in usages if u.brand.lower() not in first],
        )
    middle = len(usages) // 2
    return list(usages[:middle]), list(usages[middle:])


class SettlementWorker:
    """Settles accepted usages of the store on the ledger, one durable batch at a time."""

    def __init__(
        self,
        *,
        store: Store,
        chain: ChainClient,
        attester: LocalAccount,
        relayer: LocalAccount,
        config: WorkerConfig,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        crash_point: CrashHook = _no_crash,
        holder: str | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.metrics = metrics or WorkerMetrics()
        self._store = store
        self._chain = cast(ChainClient, _CountedChain(chain, self.metrics.rpc_errors))
        self._attester = attester
        self._relayer = relayer
        self._config = config
        self._ledger = to_checksum_address(config.ledger)
        self._clock = clock
        self._crash_point = crash_point
        self._chain_id: int | None = None
        self.relayer_address: str = relayer.address
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._leased = False
        self._fence = settlement.Lease(relayer=self.relayer_address, holder=self.holder)
        """Every store write of the worker is fenced by its lease (``LeaseLostError``)."""
        self._watch_anchor: Block | None = None
        """A head under which every confirmed batch of the watch window was found in its block
        (None: look at them all again)."""
        self._unwatched: set[int] = set()
        """Batches confirmed since the anchor was set."""

    # ------------------------------------------------------------ loop

    def run(self, stop: threading.Event) -> None:
        """Steps until ``stop`` is set. Stopping never abandons a batch half-way: each step ends in
        a stored state that this or the next worker resumes."""
        log.info("settlement worker %s for relayer %s started", self.holder, self.relayer_address)
        try:
            while not stop.is_set():
                try:
                    progressed = self.step()
                except LeaseLostError as exc:
                    # Paused past the lease (GC, a frozen VM, a slow node): another worker has
                    # taken over, and nothing of this step was written. Stop processing.
                    log.error("settlement worker stops: %s", exc)
                    self._set_leased(False)
                    break
                except (
                    ChainUnavailableError,
                    RpcError,
                    OperationalError,
                    ClaimConflictError,
                ) as exc:
                    log.warning("settlement step failed, retrying: %s", exc)
                    progressed = False
                if not progressed:
                    stop.wait(self._config.poll_s)
        finally:
            self.release()
        log.info("settlement worker %s for relayer %s stopped", self.holder, self.relayer_address)

    def release(self) -> None:
        """Gives up the relayer's lease, so a waiting worker takes over without waiting it out."""
        with self._store.session() as session:
            settlement.release_lease(session, relayer=self.relayer_address, holder=self.holder)
        self._set_leased(False)

    def _set_leased(self, held: bool) -> None:
        if held and not self._leased:
            # Other workers may have confirmed batches meanwhile: the watch looks at them all.
            self._watch_anchor = None
        self._leased = held
        self.metrics.lease_held.set(1 if held else 0)

    def _hold_lease(self) -> bool:
        with self._store.session() as session:
            held = settlement.acquire_lease(
                session,
                relayer=self.relayer_address,
                holder=self.holder,
                now=self._clock(),
                ttl=self._config.lease_ttl,
            )
        if held != self._leased:
            log.info(
                "worker %s %s the lease of relayer %s",
                self.holder, "holds" if held else "lost", self.relayer_address,
            )  # fmt: skip
            self._set_leased(held)
        return held

    def run_until_idle(self, *, max_steps: int = 10_000) -> int:
        """Steps until nothing is left to do now; the number of steps that made progress."""
        steps = 0
        while steps < max_steps and self.step():
            steps += 1
        return steps

    def step(self) -> bool:
        """Moves the open batch on by one stored transition, or starts a batch; whether anything
        happened (False: waiting for the chain, for usages or for another worker's lease).

        Only the holder of the relayer's lease acts; each step renews it (``lease_ttl``), and each
        store write checks, in its own transaction, that it is still held.

        Raises:
            LeaseLostError: another worker took the lease over during the step (this worker was
                paused past ``lease_ttl``); the write was not done.
        """
        if not self._hold_lease():
            return False
        if self._watch_confirmed():
            return True
        with self._store.session() as session:
            batch = settlement.open_batch(session, relayer=self.relayer_address)
        if batch is None:
            return self._start_action() or self._start_batch()
        match batch.status:
            case BatchStatus.SIGNED:
                return self._send(batch, "sent")
            case BatchStatus.SENT:
                return self._check_sent(batch)
            case BatchStatus.MINED:
                return self._check_mined(batch)
            case _:  # pragma: no cover - open_batch returns open batches only
                raise AssertionError(batch.status)

    # ------------------------------------------------------------ transitions

    def _crash(self, point: str) -> None:
        self._crash_point(point)

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = self._chain.chain_id()
        return self._chain_id

    def _ready(self, pending: int, oldest: datetime) -> bool:
        return pending >= self._config.batch_size or (
            self._clock() - oldest >= self._config.max_age
        )

    def _start_batch(self) -> bool:
        latest = self._chain.block("latest")
        if latest is None:
            raise ChainUnavailableError("chain", "no latest block")
        # A usage reported a little ahead (the API takes up to a few minutes) waits for the chain's
        # clock: settled now, the ledger would reject it as a usage in the future.
        used_by = datetime.fromtimestamp(latest.timestamp, UTC)
        with self._store.session() as session:
            oldest = settlement.oldest_accepted(session, used_by=used_by)
            if oldest is None:
                return False
            usages = settlement.pick_accepted(
                session, limit=self._config.batch_size, used_by=used_by
            )
        if not usages or not self._ready(len(usages), oldest):
            return False
        self._crash("after_batching")

        deadline = latest.timestamp + self._config.deadline_s
        nonce = self._plan_nonce()
        planned = self._estimable(usages, deadline)
        if planned is None:
            return True  # every usage tried got its attempt counted
        usages, groups, data, signature, calldata, estimate = planned
        words = [(brand, [u.encode() for u in members]) for brand, members in groups]
        gas_limit = estimate + estimate * GAS_MARGIN_PERCENT // 100
        max_fee, priority = self._fees()
        raw_tx, tx_hash = self._sign_tx(
            nonce=nonce, data=calldata, gas=gas_limit, max_fee=max_fee, priority=priority
        )
        with self._store.session() as session:
            batch = settlement.create_batch(
                session,
                NewBatch(
                    relayer=self.relayer_address,
                    nonce=nonce,
                    digest="0x" + eip712.digest(data).hex(),
                    deadline=deadline,
                    groups=words,
                    signature=signature,
                    raw_tx=raw_tx,
                    tx_hash=tx_hash,
                    gas_limit=gas_limit,
                    max_fee_per_gas=max_fee,
                    max_priority_fee_per_gas=priority,
                    usage_ids=[u.usage_id for u in usages],
                ),
                lease=self._fence,
            )
        log.info(
            "batch %d: %d usages in %d groups, nonce %d, tx %s",
            batch.id, len(usages), len(groups), nonce, batch.tx_hash,
        )  # fmt: skip
        self._crash("after_signing")
        return self._send(batch, "sent") or True

    def _start_action(self) -> bool:
        """Sends the oldest relayed owner action (they go before usages: a model waits on each),
        through the same durable transaction path as a batch. One the ledger would refuse now, or
        whose deadline has passed, fails before it costs gas."""
        with self._store.session() as session:
            action = actions.next_action(session)
        if action is None:
            return False
        latest = self._chain.block("latest")
        if latest is None:
            raise ChainUnavailableError("chain", "no latest block")
        if action.deadline is not None and action.deadline <= latest.timestamp:
            self._fail_action(action.id, f"its deadline {action.deadline} passed before sending")
            return True
        nonce = self._plan_nonce()
        try:
            estimate = self._chain.estimate_gas(
                sender=self.relayer_address, to=self._ledger, data=action.calldata
            )
        except ExecutionRevertedError as exc:
            reason = describe_revert(exc.data) or exc.message
            self._fail_action(action.id, f"the ledger refuses it: {reason}")
            return True
        gas_limit = estimate + estimate * GAS_MARGIN_PERCENT // 100
        max_fee, priority = self._fees()
        raw_tx, tx_hash = self._sign_tx(
            nonce=nonce, data=action.calldata, gas=gas_limit, max_fee=max_fee, priority=priority
        )
        with self._store.session() as session:
            batch = settlement.create_batch(
                session,
                NewBatch(
                    relayer=self.relayer_address,
                    nonce=nonce,
                    digest=action.digest,
                    deadline=action.deadline or 0,
                    groups=[],
                    signature=action.signature,
                    raw_tx=raw_tx,
                    tx_hash=tx_hash,
                    gas_limit=gas_limit,
                    max_fee_per_gas=max_fee,
                    max_priority_fee_per_gas=priority,
                    usage_ids=[],
                    calldata=action.calldata,
                    action_id=action.id,
                ),
                lease=self._fence,
            )
        log.info(
            "owner action %d (%s) rides transaction %d, nonce %d, tx %s",
            action.id, action.kind, batch.id, nonce, batch.tx_hash,
        )  # fmt: skip
        self._crash("after_signing")
        return self._send(batch, "sent") or True

    def _fail_action(self, action_id: int, error: str) -> None:
        log.warning("owner action %d failed: %s", action_id, error)
        with self._store.session() as session:
            actions.fail_action(session, action_id, error=error, lease=self._fence)

    def _plan(
        self, usages: Sequence[PendingUsage], deadline: int
    ) -> tuple[list[tuple[str, list[Usage]]], dict[str, Any], bytes, bytes]:
        groups = group_usages(usages)
        words = [(brand, [u.encode() for u in members]) for brand, members in groups]
        data = eip712.usage_batch(deadline, words, chain_id=self.chain_id, ledger=self._ledger)
        signature = eip712.sign(self._attester, data)
        return groups, data, signature, settle_calldata(deadline, words, signature)

    def _estimable(self, usages: Sequence[PendingUsage], deadline: int) -> _Planned | None:
        """The signed batch of ``usages`` and its gas estimate; when the estimate reverts, the
        first half (by brand while several brands are in, else by count) that estimates, the
        other half waiting for the next batch. A single usage whose estimate reverts gets an
        attempt counted (held after ``max_settle_attempts``); None if no part estimates."""
        groups, data, signature, calldata = self._plan(usages, deadline)
        try:
            estimate = self._chain.estimate_gas(
                sender=self.relayer_address, to=self._ledger, data=calldata
            )
        except ExecutionRevertedError as exc:
            if len(usages) == 1:
                self._count_attempt(usages, f"gas estimation reverted: {exc.message}")
                return None
            left, right = _halves(usages)
            log.warning(
                "gas estimation of %d usages reverted (%s), trying %d and %d apart",
                len(usages), exc.message, len(left), len(right),
            )  # fmt: skip
            return self._estimable(left, deadline) or self._estimable(right, deadline)
        return list(usages), groups, data, signature, calldata, estimate

    def _count_attempt(self, usages: Sequence[PendingUsage], error: str) -> None:
        log.warning("usages %s: %s", [u.usage_id for u in usages][:10], error)
        with self._store.session() as session:
            settlement.count_attempt(
                session,
                [u.usage_id for u in usages],
                error=error,
                max_attempts=self._config.max_settle_attempts,
                lease=self._fence,
            )

    def _sign_tx(
        self, *, nonce: int, data: bytes, gas: int, max_fee: int, priority: int
    ) -> tuple[bytes, str]:
        """The relayer's signed EIP-1559 transaction to the ledger and its hash."""
        tx: dict[str, Any] = {
            "type": 2,
            "chainId": self.chain_id,
            "nonce": nonce,
            "to": self._ledger,
            "value": 0,
            "data": data,
            "gas": gas,
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": priority,
        }
        signed = self._relayer.sign_transaction(tx)
        return bytes(signed.raw_transaction), signed.hash.to_0x_hex()

    def _plan_nonce(self) -> int:
        """The nonce of a new batch. No batch of ours is open, so every nonce we used is mined and
        the chain's pending count is the next free one; the durable record is checked against it."""
        on_chain = self._chain.pending_nonce(self.relayer_address)
        with self._store.session() as session:
            recorded = settlement.recorded_nonce(session, self.relayer_address)
        if recorded is not None and recorded != on_chain:
            log.warning(
                "relayer %s: recorded next nonce %d, chain says %d; using the chain's",
                self.relayer_address, recorded, on_chain,
            )  # fmt: skip
        return on_chain

    def _fees(self) -> tuple[int, int]:
        fees = self._chain.fee_data()
        cap = self._config.max_fee_per_gas
        priority = min(fees.priority_fee, cap)
        max_fee = min(cap, 2 * fees.base_fee + priority)
        if max_fee < fees.base_fee:
            log.warning("fee cap %d wei is below the base fee %d wei", cap, fees.base_fee)
        return max_fee, priority

    def _send(self, batch: BatchRecord, event: str) -> bool:
        """Broadcasts the batch's stored transaction and marks it sent; ``event`` is what the send
        counts as (``BATCH_EVENTS``). False when the node refused it for paying less than the
        base fee: it is marked sent all the same, and the next step replaces it."""
        try:
            self._chain.send_raw_transaction(batch.raw_tx)
        except FeeTooLowError as exc:
            log.warning("batch %d: tx %s not taken: %s", batch.id, batch.tx_hash, exc.message)
            with self._store.session() as session:
                settlement.mark_sent(session, batch.id, at=self._clock(), lease=self._fence)
            return False
        except TransactionAlreadyKnownError:
            log.info("batch %d: tx %s already known to the node", batch.id, batch.tx_hash)
        except ReplacementUnderpricedError as exc:
            # Another transaction with this nonce is pending: an earlier one of this batch (the
            # next replacement bumps further) or a stranger's, which "nonce too low" will reveal.
            log.warning("batch %d: tx %s not taken: %s", batch.id, batch.tx_hash, exc.message)
        except NonceTooLowError:
            # Possibly mined (ours) or the nonce went to another transaction: ask the chain.
            if self._receipt(batch) is None and self._chain.transaction(batch.tx_hash) is None:
                self._fail(batch, f"nonce {batch.nonce} was used by another transaction")
                return True
            log.info("batch %d: nonce %d used by our own tx", batch.id, batch.nonce)
        with self._store.session() as session:
            settlement.mark_sent(session, batch.id, at=self._clock(), lease=self._fence)
        self.metrics.batches.labels(event).inc()
        self._crash("after_sending")
        return True

    def _receipt(self, batch: BatchRecord) -> Receipt | None:
        for tx_hash in batch.tx_hashes:
            receipt = self._chain.receipt(tx_hash)
            if receipt is not None:
                return receipt
        return None

    def _check_sent(self, batch: BatchRecord) -> bool:
        self._crash("before_receipt")
        receipt = self._receipt(batch)
        if receipt is None:
            if all(self._chain.transaction(h) is None for h in batch.tx_hashes):
                log.warning(
                    "batch %d: tx %s unknown to the node, resending", batch.id, batch.tx_hash
                )
                # A node that dropped it for a base fee above its max fee takes it back only
                # with fees of now: replaced at once (nothing else holds its nonce).
                return self._send(batch, "resent") or self._replace(batch)
            sent_at = batch.sent_at or self._clock()
            if self._clock() - sent_at >= self._config.replace_after:
                return self._replace(batch)
            return False
        if receipt.status != 1:
            self._fail(
                batch,
                f"tx {receipt.tx_hash} reverted in block {receipt.block_number}",
                counts_attempt=True,
            )
            return True
        with self._store.session() as session:
            settlement.mark_mined(
                session,
                batch.id,
                tx_hash=receipt.tx_hash,
                block_number=receipt.block_number,
                block_hash=receipt.block_hash,
                gas_used=receipt.gas_used,
                lease=self._fence,
            )
        return True

    def _replace(self, batch: BatchRecord) -> bool:
        """Replaces the stuck transaction: same nonce and calldata, fees up by at least 10 % (more
        if the network asks for more), never above the cap. Stored before it is sent."""
        fees = self._chain.fee_data()
        cap = self._config.max_fee_per_gas
        priority = max(min(fees.priority_fee, cap), bumped(batch.max_priority_fee_per_gas))
        max_fee = max(min(cap, 2 * fees.base_fee + priority), bumped(batch.max_fee_per_gas))
        if max_fee > cap or priority > max_fee:
            log.warning(
                "batch %d: tx %s is stuck but a 10%% fee bump would pass the cap of %d wei",
                batch.id, batch.tx_hash, cap,
            )  # fmt: skip
            return False
        raw_tx, tx_hash = self._sign_tx(
            nonce=batch.nonce,
            data=batch.calldata
            if batch.calldata is not None
            else settle_calldata(batch.deadline, batch.groups, batch.signature),
            gas=batch.gas_limit,
            max_fee=max_fee,
            priority=priority,
        )
        with self._store.session() as session:
            replacement = settlement.replace_tx(
                session,
                batch.id,
                raw_tx=raw_tx,
                tx_hash=tx_hash,
                max_fee_per_gas=max_fee,
                max_priority_fee_per_gas=priority,
                at=self._clock(),
                lease=self._fence,
            )
        log.info(
            "batch %d: replacing %s with %s (max fee %d, tip %d wei)",
            batch.id, batch.tx_hash, tx_hash, max_fee, priority,
        )  # fmt: skip
        return self._send(replacement, "replaced")

    def _check_mined(self, batch: BatchRecord) -> bool:
        assert batch.block_number is not None  # noqa: S101 - mined batches have a block
        latest = self._chain.block("latest")
        depth = max(self._config.confirmations, 1)
        if latest is None or latest.number - batch.block_number + 1 < depth:
            return False
        receipt = self._chain.receipt(batch.tx_hash)
        if receipt is None or receipt.block_hash != batch.block_hash:
            log.warning("batch %d: tx %s left block %s", batch.id, batch.tx_hash, batch.block_hash)
            with self._store.session() as session:
                if receipt is None:
                    settlement.mark_sent(session, batch.id, at=self._clock(), lease=self._fence)
                else:
                    settlement.mark_mined(
                        session,
                        batch.id,
                        tx_hash=receipt.tx_hash,
                        block_number=receipt.block_number,
                        block_hash=receipt.block_hash,
                        gas_used=receipt.gas_used,
                        lease=self._fence,
                    )
            self.metrics.reorged.labels("mined").inc()
            return True
        results = self._results(batch, receipt)
        self._crash("before_marking_settled")
        with self._store.session() as session:
            settlement.confirm_batch(session, batch.id, results=results, lease=self._fence)
        self._unwatched.add(batch.id)
        settled = sum(1 for r in results if r.settled)
        self.metrics.batches.labels("confirmed").inc()
        self.metrics.usages.labels("settled").inc(settled)
        self.metrics.usages.labels("rejected").inc(len(results) - settled)
        self.metrics.gas_used.inc(receipt.gas_used)
        log.info(
            "batch %d confirmed in block %d: %d settled, %d rejected",
            batch.id, receipt.block_number, settled, len(results) - settled,
        )  # fmt: skip
        return True

    def _results(self, batch: BatchRecord, receipt: Receipt) -> list[UsageResult]:
        expected = {Usage.decode(w).usage_id for _, words in batch.groups for w in words}
        groups = [
            group
            for group in decode_usages_settled(receipt.logs, ledger=self._ledger)
            if group.batch_digest.hex() == batch.digest.removeprefix("0x")
        ]
        prices = self._prices(groups, receipt.block_number)
        results: list[UsageResult] = []
        for group in groups:
            total = 0
            for usage, outcome in group.results:
                amount: int | None = None
                if outcome is Outcome.PAID:
                    amount = prices[_price_key(usage, group.brand)] * usage.quantity
                    total += amount
                results.append(
                    UsageResult(
                        usage_id=usage.usage_id,
                        settled=outcome is Outcome.PAID,
                        reason_code=None if outcome is Outcome.PAID else int(outcome),
                        log_index=group.log_index,
                        amount=amount,
                    )
                )
            if total != group.paid:
                log.error(
                    "batch %d, brand %s: usages priced at %d but the event says %d paid",
                    batch.id, group.brand, total, group.paid,
                )  # fmt: skip
        found = {r.usage_id for r in results}
        if found != expected:
            raise RpcError(
                "chain",
                None,
                f"receipt of {receipt.tx_hash} reports usages {sorted(found ^ expected)[:5]} "
                f"unlike batch {batch.id}",
            )
        return results

    def _prices(
        self, groups: Sequence[SettledGroup], block_number: int
    ) -> dict[tuple[int, str, int, int], int]:
        """The price of each paid usage's (twin, brand, type, time) as the settling block saw it,
        asked of ``priceAt`` in batched calls."""
        keys = sorted(
            {
                _price_key(usage, group.brand)
                for group in groups
                for usage, outcome in group.results
                if outcome is Outcome.PAID
            }
        )
        calls = [
            price_at_calldata(twin_id=twin, brand=brand, usage_type=kind, at=at)
            for twin, brand, kind, at in keys
        ]
        try:
            answers = self._chain.call_many(to=self._ledger, calls=calls, block=block_number)
        except ExecutionRevertedError:
            raise
        except RpcError as exc:
            # A node without that block's state (pruned, or an anvil restarted from its state
            # file). The ledger keeps every license version, so a time before the block is priced
            # the same at the latest block.
            log.warning("prices at block %d unavailable (%s); asking the latest", block_number, exc)
            answers = self._chain.call_many(to=self._ledger, calls=calls, block="latest")
        return {key: decode_price_at(answer)[1] for key, answer in zip(keys, answers, strict=True)}

    def _fail(self, batch: BatchRecord, error: str, *, counts_attempt: bool = False) -> None:
        """Hands the batch's usages back; ``counts_attempt``: the batch itself reverted, so each
        usage's attempt is counted (held after ``max_settle_attempts``)."""
        log.error("batch %d failed, its usages go back to accepted: %s", batch.id, error)
        with self._store.session() as session:
            settlement.fail_batch(
                session,
                batch.id,
                error=error,
                max_attempts=self._config.max_settle_attempts if counts_attempt else None,
                lease=self._fence,
            )
        self.metrics.batches.labels("failed").inc()

    # ------------------------------------------------------------ reorgs deeper than the depth

    def _watch_confirmed(self) -> bool:
        """Checks that the confirmed batches mined in the last ``reorg_watch_blocks`` blocks are
        still in their blocks, and moves those that are not (``_recheck``); whether any moved.

        Cheap on a quiet chain: while the head is the anchor (the head of the last look that
        found everything in place), one lookup of the head. A new head costs one lookup of the
        anchor's number: if the anchor is still there, so is every block below it, and only the
        batches confirmed since are looked at; if not, every batch of the window is.
        """
        window = self._config.reorg_watch_blocks
        if window <= 0:
            return False
        head = self._chain.block("latest")
        if head is None:
            raise ChainUnavailableError("chain", "no latest block")
        anchor = self._watch_anchor
        if anchor is not None and (
            head.number < anchor.number  # a node behind the last one asked: wait for it
            or (head.hash == anchor.hash and not self._unwatched)
        ):
            return False
        hashes: dict[int, str | None] = {}

        def hash_at(number: int) -> str | None:
            if number not in hashes:
                block = self._chain.block(number)
                hashes[number] = None if block is None else block.hash
            return hashes[number]

        since = anchor is not None and hash_at(anchor.number) == anchor.hash
        if since and not self._unwatched:
            self._watch_anchor = head
            return False
        with self._store.session() as session:
            batches = settlement.confirmed_batches(
                session,
                relayer=self.relayer_address,
                from_block=head.number - window + 1,
                ids=sorted(self._unwatched) if since else None,
            )
        moved = False
        for batch in batches:  # oldest first: resent transactions go out in nonce order
            assert batch.block_number is not None  # noqa: S101 - confirmed batches have a block
            if batch.block_number > head.number:
                continue  # above a head that has not grown back (yet): wait for it
            if hash_at(batch.block_number) != batch.block_hash:
                moved = self._recheck(batch, head) or moved
        self._watch_anchor = None if moved else head
        self._unwatched.clear()
        return moved

    def _recheck(self, batch: BatchRecord, head: Block) -> bool:
        """A confirmed batch whose block is no longer the block at its number; whether it moved.

        Mined again elsewhere (any of its transactions): its usages follow the new receipt, at
        once if it is deep enough, else back to submitted until it is. In no block: back to sent
        with its usages submitted, and the stored transaction is resent (its nonce is free
        again; no other transaction of ours can have taken it, since later batches' nonces
        were above it and went out of the chain with it).
        """
        receipt = self._receipt(batch)
        if receipt is not None and receipt.block_hash == batch.block_hash:
            return False  # the block lookup was answered by a node seeing another chain
        now = self._clock()
        if receipt is not None and receipt.status == 1:
            mined = MinedIn(
                tx_hash=receipt.tx_hash,
                block_number=receipt.block_number,
                block_hash=receipt.block_hash,
                gas_used=receipt.gas_used,
            )
            deep = head.number - receipt.block_number + 1 >= max(self._config.confirmations, 1)
            log.warning(
                "batch %d: a reorg moved tx %s from block %s (%s) to block %d (%s)%s",
                batch.id, batch.tx_hash, batch.block_number, batch.block_hash,
                receipt.block_number, receipt.block_hash,
                "" if deep else "; its usages wait for the confirmation depth again",
            )  # fmt: skip
            with self._store.session() as session:
                if deep:
                    settlement.resettle_batch(
                        session,
                        batch.id,
                        mined=mined,
                        results=self._results(batch, receipt),
                        lease=self._fence,
                    )
                else:
                    settlement.reopen_batch(
                        session, batch.id, at=now, mined=mined, lease=self._fence
                    )
            self.metrics.reorged.labels("confirmed").inc()
            return True
        log.warning(
            "batch %d: a reorg took tx %s out of the chain (it was in block %s); its usages are "
            "submitted again and the transaction goes out again with nonce %d",
            batch.id, batch.tx_hash, batch.block_number, batch.nonce,
        )  # fmt: skip
        with self._store.session() as session:
            reopened = settlement.reopen_batch(session, batch.id, at=now, lease=self._fence)
        self.metrics.reorged.labels("confirmed").inc()
        if receipt is None:
            self._send(reopened, "resent")
        # else: mined again but reverted; the next step fails the batch from the receipt
        return True
