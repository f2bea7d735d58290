"""The audit as a service of the API: ``bridge.audit.run.run_audit`` against the bridge's own
RPC and ledger, resumed from a checkpoint file in the data directory (so each run scans only the
blocks since the last one) and cached per audited block. What the API answers is built by
``bridge.audit.report`` and ``bridge.audit.export``."""

from __future__ import annotations

import contextlib
import fcntl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from bridge.audit.report import AuditResult
from bridge.audit.run import run_audit
from bridge.audit.scan import DEFAULT_MAX_BLOCK_RANGE
from bridge.audit.state import AuditError
from bridge.chain.deploy import LEDGER
from bridge.chain.rpc import JsonRpc, NoRpcAnswersError, connect_json_rpc
from bridge.deploy.manifest import load_manifest
from bridge.errors import BridgeError
from bridge.settings import Settings

ACCESS_MANAGER_KEYS: Final = ("access_manager", "TwinAccessManager")
"""The keys a deployment manifest may name its access manager by under ``contracts``."""
BUSY_WAIT_S: Final = 2.0
"""How long a request waits for a running audit before it is answered without it."""
EARLIER_KEPT: Final = 8
"""Audits of explicitly requested earlier blocks kept in memory."""


class AuditUnavailableError(BridgeError):
    """The audit cannot run: no chain configured, the RPC does not answer, a bad checkpoint."""


class AuditBusyError(BridgeError):
    """Another audit is running and there is no earlier answer to give meanwhile."""


class AuditBlockError(BridgeError):
    """The block asked for cannot be audited: before the ledger's deployment or not mined yet."""


@dataclass
class AuditCache:
    """Runs the audit at most once per block, one at a time; the rebuilt state is checkpointed
    in ``checkpoint`` so a later run scans only the new blocks. While an audit runs, a request
    for the latest block gets the previous answer rather than a thread waiting for it."""

    rpc_urls: Sequence[str]
    ledger: str
    start_block: int
    checkpoint: Path
    max_block_range: int = DEFAULT_MAX_BLOCK_RANGE
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    manager: str | None = None
    """The ledger's access manager (None: the ledger's ``authority()``)."""
    manager_from_block: int | None = None
    """The access manager's deployment block (None: its events from ``start_block``)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _latest: tuple[AuditResult, datetime] | None = field(default=None, init=False, repr=False)
    _earlier: OrderedDict[int, tuple[AuditResult, datetime]] = field(
        default_factory=OrderedDict, init=False, repr=False
    )

    @classmethod
    def of(cls, settings: Settings) -> AuditCache:
        """The audit of the bridge's ledger, from its deployment block (the manifest's, else
        ``indexer_start_block`` or 0), checkpointed in ``<data_dir>/audit/checkpoint.json``.

        Raises:
            AuditUnavailableError: no chain or ledger is configured.
        """
        if not settings.rpc_urls or settings.ledger_address is None:
            raise AuditUnavailableError("this bridge has no chain configured to audit")
        start = settings.indexer_start_block or 0
        manager = None
        if settings.deployment is not None:
            manifest = load_manifest(settings.deployment)
            start = manifest.contracts[LEDGER].block_number
            manager = next(
                (manifest.contracts[k] for k in ACCESS_MANAGER_KEYS if k in manifest.contracts),
                None,
            )
        return cls(
            rpc_urls=settings.rpc_urls,
            ledger=settings.ledger_address,
            start_block=start,
            checkpoint=settings.data_dir / "audit" / "checkpoint.json",
            manager=None if manager is None else manager.address,
            manager_from_block=None if manager is None else manager.block_number,
        )

    def _latest_block(self, rpc: JsonRpc) -> int:
        return int(rpc.request("eth_blockNumber", []), 16)

    def _connect(self) -> JsonRpc:
        try:
            return connect_json_rpc(self.rpc_urls, timeout=30.0)
        except NoRpcAnswersError as exc:
            raise AuditUnavailableError(str(exc)) from exc

    def audit(self, to_block: int | None = None) -> tuple[AuditResult, datetime]:
        """The audit through ``to_block`` (default: the latest block) and when it ran.

        Raises:
            AuditBlockError: ``to_block`` is before the ledger's deployment or not mined yet.
            AuditBusyError: another audit runs and there is no answer for this block yet.
            AuditUnavailableError: the chain cannot be read.
        """
        if to_block is not None and to_block < self.start_block:
            raise AuditBlockError(
                f"block {to_block} is before the ledger's deployment (block {self.start_block})"
            )
        if self._lock.acquire(timeout=BUSY_WAIT_S):
            try:
                with self._file_lock() as held:
                    if held:
                        return self._audit_locked(to_block)
            finally:
                self._lock.release()
        # another thread, or another API process on this data directory, is auditing
        meanwhile = self._latest if to_block is None else self._earlier.get(to_block)
        if meanwhile is not None:
            return meanwhile
        raise AuditBusyError("another audit is running; ask again in a few seconds")

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[bool]:
        """The checkpoint's lock file, for API processes sharing the data directory; whether it
        was had within ``BUSY_WAIT_S``."""
        path = self.checkpoint.with_name(f"{self.checkpoint.name}.lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            deadline = time.monotonic() + BUSY_WAIT_S
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        yield False
                        return
                    time.sleep(0.05)
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _audit_locked(self, to_block: int | None) -> tuple[AuditResult, datetime]:
        kept = None if to_block is None else self._earlier.get(to_block)
        if kept is not None:
            return kept
        rpc = self._connect()
        try:
            latest = self._latest_block(rpc)
            if to_block is not None and to_block > latest:
                raise AuditBlockError(f"block {to_block} is not mined yet (the latest is {latest})")
            target = latest if to_block is None else to_block
            if self._latest is not None and self._latest[0].to_block == target:
                return self._latest
            if to_block is None:
                result = self._run(rpc, target, self.checkpoint, start_over=True)
                self._latest = (result, self.clock())
                return self._latest
            # a block of its own: resumed from the checkpoint when it is past it, else
            # scanned from the start; kept apart from the latest
            ran = (self._run(rpc, target, self.checkpoint, start_over=False), self.clock())
            self._earlier[target] = ran
            while len(self._earlier) > EARLIER_KEPT:
                self._earlier.popitem(last=False)
            return ran
        except AuditBlockError:
            raise
        except BridgeError as exc:
            raise AuditUnavailableError(f"the audit could not run: {exc}") from exc
        finally:
            rpc.close()

    def _run(self, rpc: JsonRpc, target: int, checkpoint: Path, *, start_over: bool) -> AuditResult:
        """Resumes from ``checkpoint``; when it cannot (past ``target``, or its last block left
        the chain), deletes it and scans anew (``start_over``) or scans without it."""

        def once(resume_from: Path | None) -> AuditResult:
            return run_audit(
                rpc,
                ledger=self.ledger,
                start_block=self.start_block,
                to_block=target,
                checkpoint=resume_from,
                max_block_range=self.max_block_range,
                manager=self.manager,
                manager_from_block=self.manager_from_block,
            )

        try:
            return once(checkpoint)
        except AuditError:
            if not checkpoint.exists():
                raise
            if not start_over:
                return once(None)
            checkpoint.unlink()
            return once(checkpoint)
