"""The scan: ``eth_getLogs`` of the ledger (and of its access manager, for the role events) in
ranges that halve when the node refuses them ("too
many results", "block range too wide") and grow back after each answer, each range's settlement
transactions fetched in one batch, and the logs applied by ``bridge.audit.rebuild``; the rebuilt
state is checkpointed every few seconds and at the end."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bridge.audit.logs import TIMED_TOPICS, RawLog, TxInfo, checksum, is_settlement
from bridge.audit.rebuild import Rebuilder
from bridge.audit.state import AuditError, LedgerState
from bridge.chain.rpc import JsonRpc
from bridge.errors import LogRangeTooLargeError

DEFAULT_MAX_BLOCK_RANGE: Final = 10_000
CHECKPOINT_EVERY_S: Final = 10.0
"""Seconds between checkpoint writes during a scan (one is always written at its end)."""


@dataclass
class RangeSizer:
    """The ``eth_getLogs`` range: halves while the node refuses, doubles back after an answer."""

    max_range: int = DEFAULT_MAX_BLOCK_RANGE
    current: int = 0
    refusals: list[int] = field(default_factory=list)
    """The size of every refused range, in order."""

    def __post_init__(self) -> None:
        if self.max_range < 1:
            raise ValueError("max_range must be >= 1")
        self.current = self.current or self.max_range

    def refused(self, size: int) -> None:
        self.refusals.append(size)
        self.current = max(1, size // 2)

    def answered(self, size: int) -> None:
        if size >= self.current:
            self.current = min(self.max_range, self.current * 2)


@dataclass
class ScanStats:
    ranges: int = 0
    logs: int = 0
    usages: int = 0
    rpc_requests: int = 0
    seconds: float = 0.0


def fetch_logs(
    rpc: JsonRpc, address: str | list[str], first: int, last: int, sizer: RangeSizer
) -> tuple[int, list[RawLog]]:
    """The raw logs of ``address`` (or of each of several) in ``[first, end]`` for the largest
    ``end <= last`` the node serves, in chain order, and ``end``."""
    while True:
        end = min(last, first + sizer.current - 1)
        try:
            logs = rpc.request(
                "eth_getLogs", [{"address": address, "fromBlock": hex(first), "toBlock": hex(end)}]
            )
        except LogRangeTooLargeError:
            if end == first:
                raise
            sizer.refused(end - first + 1)
            continue
        sizer.answered(end - first + 1)
        return end, sorted(
            logs, key=lambda raw: (int(raw["blockNumber"], 16), int(raw["logIndex"], 16))
        )


def transactions(rpc: JsonRpc, raw_logs: Sequence[RawLog]) -> dict[str, TxInfo]:
    """The settlement transactions of ``raw_logs`` with their block times, in one batch. A
    transaction's block is the one its logs name: a node may still answer a transaction just
    mined as pending (anvil does, for a moment, with no block number)."""
    return transactions_and_times(rpc, raw_logs)[0]


def transactions_and_times(
    rpc: JsonRpc, raw_logs: Sequence[RawLog]
) -> tuple[dict[str, TxInfo], dict[int, int]]:
    """The settlement transactions of ``raw_logs`` with their block times, and the times of the
    blocks with settlements, acceptances or limit settings (block number -> time), in one batch."""
    block_of: dict[str, str] = {}
    timed: list[str] = []
    for raw in raw_logs:
        if is_settlement(raw):
            block_of.setdefault(raw["transactionHash"], raw["blockNumber"])
        if raw["topics"] and raw["topics"][0] in TIMED_TOPICS:
            timed.append(raw["blockNumber"])
    if not block_of and not timed:
        return {}, {}
    hashes = list(block_of)
    blocks = list(dict.fromkeys([*block_of.values(), *timed]))
    answers = rpc.batch(
        [("eth_getTransactionByHash", [h]) for h in hashes]
        + [("eth_getBlockByNumber", [b, False]) for b in blocks]
    )
    times = {
        b: int(answer["timestamp"], 16)
        for b, answer in zip(blocks, answers[len(hashes) :], strict=True)
    }
    txs = {
        tx_hash: TxInfo(
            to=None if tx.get("to") is None else checksum(tx["to"]),
            input=bytes.fromhex(tx["input"][2:]),
            block_time=times[block_of[tx_hash]],
        )
        for tx_hash, tx in zip(hashes, answers[: len(hashes)], strict=True)
        if tx is not None
    }
    return txs, {int(b, 16): t for b, t in times.items()}


def _position(raw: RawLog) -> tuple[int, int]:
    return int(raw["blockNumber"], 16), int(raw["logIndex"], 16)


ProgressFn = Callable[[int, int], None]
"""Called after each range with (last scanned block, usages so far)."""


def scan(
    rpc: JsonRpc,
    state: LedgerState,
    *,
    to_block: int,
    sizer: RangeSizer | None = None,
    checkpoint: Path | None = None,
    progress: ProgressFn | None = None,
) -> ScanStats:
    """Rebuilds ``state`` from the block after its ``last_block`` through ``to_block``, saving it
    to ``checkpoint`` every few seconds and at the end."""
    sizer = sizer or RangeSizer()
    rebuilder = Rebuilder(state)
    stats = ScanStats()
    started = time.perf_counter()
    requests_before = rpc.requests
    last_saved = time.monotonic()
    addresses = [state.ledger, *([state.manager] if state.manager else [])]
    while state.last_block < to_block:
        end, logs = fetch_logs(rpc, addresses, state.last_block + 1, to_block, sizer)
        txs, times = transactions_and_times(rpc, logs)
        stats.usages += rebuilder.apply_range(logs, txs, state.chain_id, times)
        stats.logs += len(logs)
        stats.ranges += 1
        state.last_block, state.last_block_hash = end, ""
        if progress is not None:
            progress(end, len(state.usages))
        if checkpoint is not None and time.monotonic() - last_saved >= CHECKPOINT_EVERY_S:
            _save(rpc, state, checkpoint)
            last_saved = time.monotonic()
    _save(rpc, state, checkpoint)
    stats.seconds = time.perf_counter() - started
    stats.rpc_requests = rpc.requests - requests_before
    return stats


def scan_manager_before(
    rpc: JsonRpc, state: LedgerState, *, from_block: int, sizer: RangeSizer | None = None
) -> int:
    """Applies the access manager's events of ``[from_block, state.start_block)`` to a new
    ``state``: the manager is deployed, and its first roles granted, before the ledger. Returns
    the number of logs applied."""
    if state.manager is None or from_block >= state.start_block:
        return 0
    sizer = sizer or RangeSizer()
    rebuilder = Rebuilder(state)
    applied, first = 0, from_block
    while first < state.start_block:
        end, logs = fetch_logs(rpc, state.manager, first, state.start_block - 1, sizer)
        rebuilder.apply_range(logs, {}, state.chain_id)
        applied, first = applied + len(logs), end + 1
    return applied


def _save(rpc: JsonRpc, state: LedgerState, checkpoint: Path | None) -> None:
    """Names the last scanned block by its hash (a later run checks it is still on the chain),
    then writes ``checkpoint`` if there is one."""
    if state.last_block >= 0 and not state.last_block_hash:
        state.last_block_hash = block_hash(rpc, state.last_block)
    if checkpoint is not None:
        state.save(checkpoint)


def block_hash(rpc: JsonRpc, number: int) -> str:
    """Raises:
    AuditError: there is no block ``number``."""
    block = rpc.request("eth_getBlockByNumber", [hex(number), False])
    if block is None:
        raise AuditError(f"block {number} is not on the chain")
    return str(block["hash"])
