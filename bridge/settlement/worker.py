"""The settlement worker: accepted usages -> signed batch -> relayer transaction -> settled.

One batch is in flight at a time per relayer. Each step is a committed transition in the store
(``bridge.store.settlement``), so a worker that dies anywhere resumes where it was:

- ``signed``: the batch, its signature and the signed relayer transaction (with its nonce) are
  stored; it is (re)sent byte for byte, so a resend can only be "already known" or mined.
- ``sent``: the receipt is looked up by hash before anything else; a transaction the node forgot
  is resent; "nonce too low" means "possibly mined", answered by the chain, never by a new nonce.
- ``mined``: once the block is ``confirmations`` deep and still carries the transaction, the
  usages are marked settled or rejected from the ``UsagesSettled`` events.
- a transaction that reverted, or whose nonce went to another one, fails the batch only once the
  ledger says its usages were not settled by a copy of it (anyone may send a signed batch): a
  copy that settled them is followed as the batch's own transaction (``.recognition``).
- ``confirmed``: watched for ``reorg_watch_blocks`` more blocks. A reorg deeper than the depth
  that re-included the transaction elsewhere moves the usages' outcomes to the new receipt; one
  that left it in no block puts the batch back to ``sent`` and resends the stored bytes (same
  nonce; the ledger pays a usage id once).

The clock, the chain client (and with it the RPC URL list) and a crash hook called at named points
(``CRASH_POINTS``) are injected, for the fault-injection suite. What a worker process did is
counted in ``WorkerMetrics`` (its own Prometheus registry); what every worker did is read from the
store by the API's ``/metrics``.

This module is the loop, the lease and the start of each transaction; the other steps are in
``bridge.settlement.planning`` (batches signed and estimated), ``.sending`` (nonces, fees, the
durable send and the fee bump), ``.confirming`` (receipts and the confirmation depth),
``.outcomes`` (each usage's outcome from the receipt), ``.recognition`` (the batch settled by
another transaction) and ``.reorgs`` (reorgs deeper than the depth).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, cast

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from sqlalchemy.exc import OperationalError

from bridge.chain.client import Block, ChainClient
from bridge.chain.reverts import describe_revert
from bridge.domain.fees import FeePolicy
from bridge.errors import ChainUnavailableError, ExecutionRevertedError, RpcError
from bridge.settings import Settings
from bridge.settlement.confirming import Confirmer
from bridge.settlement.context import CrashHook, WorkerContext
from bridge.settlement.metrics import CountedChain, WorkerMetrics
from bridge.settlement.planning import PlannedBatch, Planner
from bridge.settlement.reorgs import ReorgWatch
from bridge.settlement.sending import Payload, Sender
from bridge.store import actions, settlement
from bridge.store.models import BatchStatus
from bridge.store.repository import Store
from bridge.store.settlement import BatchRecord, ClaimConflictError, LeaseLostError

log = logging.getLogger(__name__)

CRASH_POINTS: Final = (
    "after_batching",
    "after_signing",
    "after_sending",
    "before_receipt",
    "before_marking_settled",
)


def _no_crash(point: str) -> None:
    pass


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
        self._chain = cast(ChainClient, CountedChain(chain, self.metrics.rpc_errors))
        self._config = config
        self._clock = clock
        self._crash_point = crash_point
        self._chain_id: int | None = None
        self._head_recorded: int | None = None
        """The latest block recorded for the API (``settlement.record_chain_head``)."""
        self.relayer_address: str = relayer.address
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._leased = False
        self._context = WorkerContext(
            store=store,
            chain=self._chain,
            ledger=to_checksum_address(config.ledger),
            relayer=relayer,
            lease=settlement.Lease(relayer=self.relayer_address, holder=self.holder),
            clock=clock,
            metrics=self.metrics,
            crash=self._crash,
            chain_id=lambda: self.chain_id,
            confirmations=config.confirmations,
            max_settle_attempts=config.max_settle_attempts,
        )
        self._planner = Planner(self._context, attester)
        self._sender = Sender(self._context, FeePolicy(cap=config.max_fee_per_gas))
        self._watch = ReorgWatch(self._context, self._sender, window=config.reorg_watch_blocks)
        self._confirmer = Confirmer(
            self._context, self._sender, self._watch, replace_after=config.replace_after
        )

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
            self._watch.reset()
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
        if self._watch.check():
            return True
        with self._store.session() as session:
            batch = settlement.open_batch(session, relayer=self.relayer_address)
        if batch is None:
            return self._start_action() or self._start_batch()
        match batch.status:
            case BatchStatus.SIGNED:
                return self._sender.send(batch, "sent")
            case BatchStatus.SENT:
                return self._confirmer.check_sent(batch)
            case BatchStatus.MINED:
                return self._confirmer.check_mined(batch)
            case _:  # pragma: no cover - open_batch returns open batches only
                raise AssertionError(batch.status)

    # ------------------------------------------------------------ new transactions

    def _crash(self, point: str) -> None:
        self._crash_point(point)

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = self._chain.chain_id()
        return self._chain_id

    def _latest(self) -> Block:
        latest = self._chain.block("latest")
        if latest is None:
            raise ChainUnavailableError("chain", "no latest block")
        if latest.number != self._head_recorded:
            # The API's clock for usages waiting on the chain: written once per new block.
            with self._store.session() as session:
                settlement.record_chain_head(
                    session,
                    relayer=self.relayer_address,
                    block_number=latest.number,
                    block_time=datetime.fromtimestamp(latest.timestamp, UTC),
                )
            self._head_recorded = latest.number
        return latest

    def _ready(self, pending: int, oldest: datetime) -> bool:
        return pending >= self._config.batch_size or (
            self._clock() - oldest >= self._config.max_age
        )

    def _start_batch(self) -> bool:
        """Signs and sends a batch of the accepted usages once there are ``batch_size`` or the
        oldest is ``max_age`` old."""
        latest = self._latest()
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
        nonce = self._sender.next_nonce()
        planned = self._planner.plan(usages, deadline)
        if planned is None:
            return True  # every usage tried got its attempt counted
        batch = self._sender.open(nonce, planned.gas_estimate, _batch_payload(planned, deadline))
        log.info(
            "batch %d signed: %d usages in %d groups, nonce %d, tx %s",
            batch.id, len(planned.usages), len(planned.groups), nonce, batch.tx_hash,
        )  # fmt: skip
        return self._launch(batch)

    def _start_action(self) -> bool:
        """Sends the oldest relayed owner action (they go before usages: a model waits on each),
        through the same durable transaction path as a batch. One the ledger would refuse now, or
        whose deadline has passed, fails before it costs gas."""
        with self._store.session() as session:
            action = actions.next_action(session)
        if action is None:
            return False
        latest = self._latest()
        if action.deadline is not None and action.deadline <= latest.timestamp:
            self._fail_action(action.id, f"its deadline {action.deadline} passed before sending")
            return True
        nonce = self._sender.next_nonce()
        try:
            estimate = self._chain.estimate_gas(
                sender=self.relayer_address, to=self._context.ledger, data=action.calldata
            )
        except ExecutionRevertedError as exc:
            reason = describe_revert(exc.data) or exc.message
            self._fail_action(action.id, f"the ledger refuses it: {reason}")
            return True
        payload = Payload(
            digest=action.digest,
            deadline=action.deadline or 0,
            calldata=action.calldata,
            signature=action.signature,
            action_id=action.id,
        )
        batch = self._sender.open(nonce, estimate, payload)
        log.info(
            "owner action %d (%s) rides transaction %d, nonce %d, tx %s",
            action.id, action.kind, batch.id, nonce, batch.tx_hash,
        )  # fmt: skip
        return self._launch(batch)

    def _launch(self, batch: BatchRecord) -> bool:
        """Sends a transaction just stored signed; True whether or not the node took it."""
        self._crash("after_signing")
        return self._sender.send(batch, "sent") or True

    def _fail_action(self, action_id: int, error: str) -> None:
        log.warning("owner action %d failed: %s", action_id, error)
        with self._store.session() as session:
            actions.fail_action(session, action_id, error=error, lease=self._context.lease)


def _batch_payload(planned: PlannedBatch, deadline: int) -> Payload:
    return Payload(
        digest=planned.digest,
        deadline=deadline,
        calldata=planned.calldata,
        signature=planned.signature,
        groups=planned.words,
        usage_ids=[u.usage_id for u in planned.usages],
    )
