"""The audit's entry point: open the state (a checkpoint that still matches the chain, or an
empty one), scan and rebuild through the target block (``bridge.audit.scan``), then check the
balances at that block (``bridge.audit.balances``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final

from eth_abi.exceptions import DecodingError
from eth_utils.address import to_checksum_address

from bridge.audit.balances import View, balance_discrepancies, check_balances
from bridge.audit.report import AuditResult
from bridge.audit.scan import (
    DEFAULT_MAX_BLOCK_RANGE,
    RangeSizer,
    block_hash,
    scan,
    scan_manager_before,
)
from bridge.audit.state import AuditError, Discrepancy, LedgerState
from bridge.chain.rpc import JsonRpc
from bridge.errors import RpcError


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
    manager: str | None = None,
    manager_from_block: int | None = None,
) -> AuditResult:
    """The audit of ``ledger`` from ``start_block`` through ``to_block`` (default: the latest),
    resuming from ``checkpoint`` when it exists; ``progress`` is called after each range with
    (block scanned up to, target block, usages so far).

    Roles come from the ledger's access manager: ``manager`` (a deployment manifest's
    ``access_manager``), else the ledger's ``authority()``; its events from ``manager_from_block``
    (its deployment block) when given, else from ``start_block``. The spending limits' defaults and
    period come from the ledger's ``config()``.

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

    sizer = sizer or RangeSizer(max_block_range)
    if resumed is None:
        _read_settings(rpc, state, manager=manager, block=target)
        if manager_from_block is not None:
            scan_manager_before(rpc, state, from_block=manager_from_block, sizer=sizer)
    report(state.last_block, len(state.usages))
    stats = scan(
        rpc,
        state,
        to_block=target,
        sizer=sizer,
        checkpoint=checkpoint,
        progress=report,
    )
    checks = check_balances(rpc, state, block=target)
    discrepancies = [*state.discrepancies, *balance_discrepancies(state, checks)]
    return AuditResult(state, target, checks, discrepancies, stats, resumed)


AUTHORITY: Final = View("authority", (), ("address",))
CONFIG: Final = View("config", (), ("uint40", "uint32", "uint32", "uint256", "uint256"))


def _read_settings(rpc: JsonRpc, state: LedgerState, *, manager: str | None, block: int) -> None:
    """A new state's access manager (``manager``, else the ledger's ``authority()``) and the
    ledger's ``config()``, read at ``block``; what cannot be read is a discrepancy (the roles or
    the limits are then not checked)."""
    try:
        found = manager or AUTHORITY.decode(rpc.call(state.ledger, AUTHORITY.calldata(), block))[0]
        state.manager = to_checksum_address(found)
    except (RpcError, ValueError, DecodingError) as exc:
        state.discrepancies.append(
            Discrepancy("roles", f"the ledger's access manager is unknown ({exc}): roles unchecked")
        )
    try:
        answer = rpc.call(state.ledger, CONFIG.calldata(), block)
        state.config = [int(value) for value in CONFIG.decode(answer)]
    except (RpcError, ValueError, DecodingError) as exc:
        state.discrepancies.append(
            Discrepancy("limits", f"the ledger's config() cannot be read ({exc}): limits unchecked")
        )
