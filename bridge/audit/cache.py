"""The audit as a service of the API: ``bridge.audit.core.run_audit`` against the bridge's own
RPC and ledger, resumed from a checkpoint file in the data directory (so each run scans only the
blocks since the last one) and cached per audited block."""

from __future__ import annotations

import contextlib
import fcntl
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, get_args

from bridge.audit.core import (
    DEFAULT_MAX_BLOCK_RANGE,
    AuditError,
    AuditResult,
    run_audit,
    write_csv,
)
from bridge.chain.rpc import JsonRpc
from bridge.deploy.deployment import LEDGER, load_manifest
from bridge.domain.codec import Outcome
from bridge.errors import BridgeError
from bridge.settings import Settings

CsvTable = Literal[
    "usages",
    "batches",
    "balances",
    "twins",
    "licenses",
    "deposits",
    "debts",
    "payouts",
    "discrepancies",
]
"""The tables ``twin-bridge audit --csv`` writes (``write_csv``)."""
CSV_TABLES: Final = get_args(CsvTable)
_PAID: Final = int(Outcome.PAID)
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
class _Total:
    usages: int = 0
    paid: int = 0
    rejected: int = 0
    amount: int = 0
    last_tx: str | None = None
    last_block: int | None = None

    def add(self, outcome: int, amount: int | None, tx: str, block: int) -> None:
        self.usages += 1
        if outcome == _PAID:
            self.paid += 1
            self.amount += amount or 0
        else:
            self.rejected += 1
        if self.last_block is None or block >= self.last_block:
            self.last_tx, self.last_block = tx, block

    def to_json(self) -> dict[str, Any]:
        return {
            "usages": self.usages,
            "usages_paid": self.paid,
            "usages_rejected": self.rejected,
            "amount_paid": str(self.amount),
            "last_tx_hash": self.last_tx,
            "last_block": self.last_block,
        }


def totals(result: AuditResult) -> dict[str, list[dict[str, Any]]]:
    """Usages and amounts paid per twin, per brand and per UTC month of the settlement block,
    each with the latest transaction counted in it."""
    state = result.state
    twins: dict[int, _Total] = {}
    brands: dict[str, _Total] = {}
    months: dict[str, _Total] = {}
    for usage in state.usages:
        batch = state.batches[usage[9]]
        month = datetime.fromtimestamp(batch.block_time, UTC).strftime("%Y-%m")
        counted = (usage[6], usage[7], batch.tx_hash, batch.block_number)
        twins.setdefault(usage[2], _Total()).add(*counted)
        brands.setdefault(usage[1], _Total()).add(*counted)
        months.setdefault(month, _Total()).add(*counted)
    brand_rows = []
    for brand, total in sorted(brands.items()):
        book = state.brands.get(brand)
        row = {"brand": brand, **total.to_json()}
        if book is not None:
            row |= {"escrow": str(book.escrow), "debt": str(book.debt)}
        brand_rows.append(row)
    return {
        "twins": [{"twin_id": t, **total.to_json()} for t, total in sorted(twins.items())],
        "brands": brand_rows,
        "months": [{"month": m, **total.to_json()} for m, total in sorted(months.items())],
    }


def summary_sources(result: AuditResult) -> dict[str, dict[str, Any]]:
    """Per figure of the summary, the latest transaction it counts (none for counts of twins,
    licenses and checks)."""
    state = result.state
    latest: dict[str, tuple[int, str] | None] = {
        "batch": (state.batches[-1].block_number, state.batches[-1].tx_hash)
        if state.batches
        else None,
        "deposit": (state.deposits[-1][0], state.deposits[-1][1]) if state.deposits else None,
        "withdrawal": (state.withdrawals[-1][0], state.withdrawals[-1][1])
        if state.withdrawals
        else None,
        "debt": (state.debts[-1][0], state.debts[-1][1]) if state.debts else None,
        "distribution": (state.distributions[-1][0], state.distributions[-1][1])
        if state.distributions
        else None,
        "payout": (state.payouts[-1][0], state.payouts[-1][1]) if state.payouts else None,
    }
    figures: dict[str, tuple[str, ...]] = {
        "usages": ("batch",),
        "usages_paid": ("batch",),
        "usages_rejected": ("batch",),
        "amount_paid": ("batch",),
        "batches": ("batch",),
        "batches_verified": ("batch",),
        "deposits": ("deposit",),
        "deposited": ("deposit",),
        "escrow_withdrawals": ("withdrawal",),
        "escrow_withdrawn": ("withdrawal",),
        "debt_recorded": ("debt",),
        "debt_repaid": ("debt",),
        "debt_outstanding": ("debt",),
        "royalties_distributed": ("distribution",),
        "payouts": ("payout",),
        "paid_out": ("payout",),
        "escrow": ("deposit", "batch", "withdrawal"),
        "accrued": ("batch", "debt", "distribution"),
        "claimable": ("distribution", "payout"),
        "liabilities": tuple(latest),
    }
    sources = {}
    for figure, kinds in figures.items():
        found = [source for kind in kinds if (source := latest[kind]) is not None]
        if found:
            block, tx = max(found)
            sources[figure] = {"block_number": block, "tx_hash": tx}
    return sources


def report(result: AuditResult, *, audited_at: datetime) -> dict[str, Any]:
    """What ``GET /v1/audit`` answers: the verdict, the summary of ``twin-bridge audit``, every
    discrepancy, the failed balance checks and the totals."""
    return {
        "ledger": result.state.ledger,
        "chain_id": result.state.chain_id,
        "from_block": result.state.start_block,
        "to_block": result.to_block,
        "to_block_hash": result.state.last_block_hash or None,
        "clean": result.clean,
        "audited_at": audited_at.isoformat(),
        "resumed_from": result.resumed_from,
        "summary": result.summary(),
        "summary_sources": summary_sources(result),
        "discrepancies": [{"kind": d.kind, "message": d.message} for d in result.discrepancies],
        "failed_checks": [
            {
                "kind": c.kind,
                "subject": c.subject,
                "rebuilt": str(c.rebuilt),
                "on_chain": str(c.on_chain),
            }
            for c in result.checks
            if not c.ok
        ],
        "totals": totals(result),
        "csv_tables": list(CSV_TABLES),
    }


def csv_table(result: AuditResult, table: str) -> str:
    """One table of ``write_csv`` as text."""
    with tempfile.TemporaryDirectory(prefix="twin-bridge-audit-") as tmp:
        write_csv(result, Path(tmp))
        return (Path(tmp) / f"{table}.csv").read_text(encoding="utf-8")


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
        if settings.deployment is not None:
            start = load_manifest(settings.deployment).contracts[LEDGER].block_number
        return cls(
            rpc_urls=settings.rpc_urls,
            ledger=settings.ledger_address,
            start_block=start,
            checkpoint=settings.data_dir / "audit" / "checkpoint.json",
        )

    def _latest_block(self, rpc: JsonRpc) -> int:
        return int(rpc.request("eth_blockNumber", []), 16)

    def _connect(self) -> JsonRpc:
        errors = []
        for url in self.rpc_urls:
            rpc = JsonRpc(url, timeout=30.0)
            try:
                rpc.request("eth_chainId", [])
            except BridgeError as exc:
                errors.append(str(exc))
                rpc.close()
                continue
            return rpc
        raise AuditUnavailableError(f"no RPC answers: {'; '.join(errors)}")

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
