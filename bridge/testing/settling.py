"""The bridge's side of the test world: the keys a settlement worker signs with, and what its
store holds (usages and batches, in id order)."""

from __future__ import annotations

from eth_account.signers.local import LocalAccount
from sqlalchemy import select

from bridge.chain.signers import load_signer
from bridge.store.models import SettlementBatch, UsageEvent
from bridge.store.repository import Store, StoredUsage
from bridge.testing.world import World


def worker_signers(
    world: World, *, chain_id: int, relayer_key: str, attester_key: bytes | None = None
) -> tuple[LocalAccount, LocalAccount]:
    """(attester, relayer) of a worker on ``world``: the world's attester (or ``attester_key``)
    and the caller's relayer, loaded as the worker loads its keys."""
    attester = load_signer(
        "attester",
        chain_id=chain_id,
        private_key="0x" + (attester_key or bytes(world.attester.key)).hex(),
    )
    relayer = load_signer("relayer", chain_id=chain_id, private_key=relayer_key)
    return attester, relayer


def stored_usages(store: Store) -> dict[int, StoredUsage]:
    """Every usage of the store by id."""
    with store.session() as session:
        rows = session.scalars(select(UsageEvent).order_by(UsageEvent.id))
        return {row.id: StoredUsage.of(row) for row in rows}


def settlement_batches(store: Store) -> list[SettlementBatch]:
    """Every settlement batch of the store, oldest first."""
    with store.session() as session:
        return list(session.scalars(select(SettlementBatch).order_by(SettlementBatch.id)))
