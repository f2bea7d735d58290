"""The settlement worker's durable state: ``batches`` (a batch and its relayer transaction through
every status, and the relayer's nonce), ``claims`` (accepted usages waiting for a batch),
``leases`` (one worker per relayer key, every write fenced), ``clock`` (the chain heads the
workers read) and ``stats`` (what the metrics
show)."""

from bridge.store.settlement.batches import (
    OPEN_STATUSES,
    BatchRecord,
    ClaimConflictError,
    MinedIn,
    NewBatch,
    UsageResult,
    confirm_batch,
    confirmed_batches,
    create_batch,
    fail_batch,
    mark_mined,
    mark_sent,
    open_batch,
    recorded_nonce,
    reopen_batch,
    replace_tx,
    resettle_batch,
)
from bridge.store.settlement.claims import (
    PendingUsage,
    SettledElsewhere,
    add_attempt,
    count_attempt,
    oldest_accepted,
    pick_accepted,
    settle_elsewhere,
)
from bridge.store.settlement.clock import chain_time, record_chain_head
from bridge.store.settlement.leases import (
    Lease,
    LeaseLostError,
    acquire_lease,
    check_lease,
    lease_holder,
    release_lease,
)
from bridge.store.settlement.stats import (
    InflightBatch,
    RelayerState,
    SettlementStats,
    settlement_stats,
)

__all__ = [
    "OPEN_STATUSES",
    "BatchRecord",
    "ClaimConflictError",
    "InflightBatch",
    "Lease",
    "LeaseLostError",
    "MinedIn",
    "NewBatch",
    "PendingUsage",
    "RelayerState",
    "SettledElsewhere",
    "SettlementStats",
    "UsageResult",
    "acquire_lease",
    "add_attempt",
    "chain_time",
    "check_lease",
    "confirm_batch",
    "confirmed_batches",
    "count_attempt",
    "create_batch",
    "fail_batch",
    "lease_holder",
    "mark_mined",
    "mark_sent",
    "oldest_accepted",
    "open_batch",
    "pick_accepted",
    "record_chain_head",
    "recorded_nonce",
    "release_lease",
    "reopen_batch",
    "replace_tx",
    "resettle_batch",
    "settle_elsewhere",
    "settlement_stats",
]
