"""The audit's entry point: open the state (a checkpoint that still matches the chain, or an
empty one), scan and rebuild through the target block (``bridge.audit.scan``), then check the
balances at that block (``bridge.audit.balances``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from eth_utils.address import to_checksum_address

from bridge.audit.balances import balance_discrepancies, check_balances
from bridge.audit.report import AuditResult
from bridge.audit.scan import DEFAULT_MAX_BLOCK_RANGE, RangeSizer, block_hash, scan
from bridge.audit.state import AuditError, LedgerState
from bridge.chain.rpc import JsonRpc


def open_state(
    rpc: JsonRpc, *, ledger: str, start_block: int, checkpoint: Path | None
) -> tuple[LedgerState, int | None]:
    """The checkpoint's state when it exists and still matches the chain, else an empty one.

    Raises:
        AuditError: the checkpoint belongs to another ledger or chain, or its last block is no
            longer on the chain (a reorg: delete it and scan again).
    """
    chain_id = int(rpc.request("eth_chainId", []), 16)
    ledger = to_checksum_address(ledger)
    if checkpoint is None or not checkpoint.exists():
        return LedgerState(ledger, chain_id, start_block, start_block - 1), None
    state = LedgerState.load(checkpoint)
    if state.ledger != ledger or state.chain_id != chain_id:
        raise AuditError(
            f"{checkpoint} is the audit of ledger {state.ledger} on chain "
            f"{state.chain_id}, not {ledger} on chain {chain_id}"
        )
    if state.start_block != start_block:
        raise AuditError(f"{checkpoint} starts at block {state.start_block}, not {start_block}")
    if state.last_block >= start_block and block_hash(rpc, state.last_block) != (
        state.last_block_hash
    ):
        raise AuditError(
            f"block {state.last_block} of {checkpoint} left the chain (a reorg): "
            "delete the checkpoint and audit again"
        )
    return state, state.last_block


def run_audit(
    rpc: JsonRpc,
    *,
    ledger: str,
    start_block: int,
    to_block: int | None = None,
    checkpoint: Path | None = None,
    max_block_range: int = DEFAULT_MAX_BLOCK_RANGE,
    sizer: RangeSizer | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> AuditResult:
    """The audit of ``ledger`` from ``start_block`` through ``to_block`` (default: the latest),
    resuming from ``checkpoint`` when it exists; ``progress`` is called after each range with
    (block scanned up to, target block, usages so far).

    Raises:
        AuditError: the audit cannot run (see :func:`open_state`, ``check_balances``).
        RpcError, ChainUnavailableError: the node refused or could not be reached.
    """
    latest = int(rpc.request("eth_blockNumber", []), 16)
    target = latest if to_block is None else to_block
    if target > latest:
        raise AuditError(f"block {target} is not mined yet (the latest is {latest})")
    state, resumed = open_state(rpc, ledger=ledger, start_block=start_block, checkpoint=checkpoint)
    if state.last_block > target:
        raise AuditError(f"the checkpoint is at block {state.last_block}, past {target}")

    def report(block: int, usages: int) -> None:
        if progress is not None:
            progress(block, target, usages)

    report(state.last_block, len(state.usages))
    stats = scan(
        rpc,
        state,
        to_block=target,
        sizer=sizer or RangeSizer(max_block_range),
        checkpoint=checkpoint,
        progress=report,
    )
    checks = check_balances(rpc, state, block=target)
    discrepancies = [*state.discrepancies, *balance_discrepancies(state, checks)]
    return AuditResult(state, target, checks, discrepancies, stats, resumed)
