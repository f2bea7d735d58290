"""The settlement's progress as the metrics show it, across every process that writes the store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bridge.store.models import (
    BatchStatus,
    RelayerNonce,
    SettlementBatch,
    UsageEvent,
    UsageStatus,
    WorkerLease,
)
from bridge.store.settlement.batches import OPEN_STATUSES


@dataclass(frozen=True, slots=True)
class InflightBatch:
    """A relayer's oldest open batch."""

    id: int
    status: BatchStatus
    usages: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RelayerState:
    """A relayer's worker as the store sees it."""

    relayer: str
    """Lower case, as the lease and nonce tables hold it."""
    lease_holder: str | None
    lease_expires_at: datetime | None
    last_block: int | None
    """The block of the relayer's latest mined or confirmed batch."""
    inflight: InflightBatch | None


@dataclass(frozen=True, slots=True)
class SettlementStats:
    """The settlement's progress across every process that writes the store."""

    usages: dict[UsageStatus, int]
    """Usages by status, every status present."""
    oldest_unsettled: datetime | None
    """When the oldest usage still accepted or submitted was stored."""
    batches: dict[BatchStatus, int]
    """Batches by status, every status present."""
    confirmed_gas_used: int
    relayers: tuple[RelayerState, ...]
    """Every relayer that ever planned a nonce or holds a lease, by address."""


def settlement_stats(session: Session) -> SettlementStats:
    """A handful of aggregate queries, each on an index (usages and batches by status) or on the
    few rows of the lease and nonce tables, and two index lookups per relayer."""
    usages = dict.fromkeys(UsageStatus, 0)
    for usage_status, count in session.execute(
        select(UsageEvent.status, func.count()).group_by(UsageEvent.status)
    ):
        usages[usage_status] = int(count)
    oldest = session.scalar(
        select(func.min(UsageEvent.created_at)).where(
            UsageEvent.status.in_((UsageStatus.ACCEPTED, UsageStatus.SUBMITTED))
        )
    )
    batches = dict.fromkeys(BatchStatus, 0)
    gas_used = 0
    for batch_status, count, gas in session.execute(
        select(
            SettlementBatch.status,
            func.count(),
            func.sum(SettlementBatch.gas_used),
        ).group_by(SettlementBatch.status)
    ):
        batches[batch_status] = int(count)
        if batch_status is BatchStatus.CONFIRMED:
            gas_used = int(gas or 0)
    leases = {row.relayer: row for row in session.scalars(select(WorkerLease))}
    relayers = sorted(set(leases) | set(session.scalars(select(RelayerNonce.address))))
    return SettlementStats(
        usages=usages,
        oldest_unsettled=oldest,
        batches=batches,
        confirmed_gas_used=gas_used,
        relayers=tuple(_relayer_state(session, r, leases.get(r)) for r in relayers),
    )


def _relayer_state(session: Session, relayer: str, lease: WorkerLease | None) -> RelayerState:
    of_relayer = func.lower(SettlementBatch.relayer) == relayer
    last_block = session.scalar(
        select(SettlementBatch.block_number)
        .where(
            of_relayer,
            SettlementBatch.status.in_((BatchStatus.MINED, BatchStatus.CONFIRMED)),
        )
        .order_by(SettlementBatch.id.desc())
        .limit(1)
    )
    row = session.execute(
        select(SettlementBatch.id, SettlementBatch.status, SettlementBatch.created_at)
        .where(of_relayer, SettlementBatch.status.in_(OPEN_STATUSES))
        .order_by(SettlementBatch.id)
        .limit(1)
    ).one_or_none()
    inflight = None
    if row is not None:
        count = session.scalar(
            select(func.count()).select_from(UsageEvent).where(UsageEvent.batch_id == row.id)
        )
        inflight = InflightBatch(
            id=row.id, status=row.status, usages=int(count or 0), created_at=row.created_at
        )
    return RelayerState(
        relayer=relayer,
        lease_holder=None if lease is None else lease.holder,
        lease_expires_at=None if lease is None else lease.expires_at,
        last_block=last_block,
        inflight=inflight,
    )
