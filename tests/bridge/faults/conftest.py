"""Fixtures of the fault suite: one anvil per module with the test world of ``bridge.testing``
(each test runs from an ``evm_snapshot``), and a bridge store per test on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.store import migrate
from bridge.testing import Anvil, AnvilChain, rpc
from bridge.testing import start_world as start_bare_world

from .rig import RELAYER, Rig

Chain = AnvilChain


def start_world(anvil: Anvil) -> Chain:
    """Starts ``anvil`` with the world on it, and funds the rig's relayer."""
    chain = start_bare_world(anvil)
    chain.fund(RELAYER, 10**21)
    return chain


@pytest.fixture(scope="module")
def anvil_chain() -> Iterator[Chain]:
    anvil = Anvil()
    try:
        yield start_world(anvil)
    finally:
        anvil.close()


@pytest.fixture
def fresh_chain(anvil_chain: Chain) -> Iterator[Chain]:
    """The module's chain, reverted to its setup after the test."""
    w3 = anvil_chain.w3
    snap = rpc(w3, "evm_snapshot")
    try:
        yield anvil_chain
    finally:
        rpc(w3, "evm_setAutomine", True)
        rpc(w3, "evm_revert", snap)
        base_fee = w3.eth.get_block("latest")["baseFeePerGas"]
        rpc(w3, "anvil_setNextBlockBaseFeePerGas", hex(base_fee))  # undo a test's fee spike


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new migrated bridge database of the backend (a database of its own on PostgreSQL)."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'bridge.db'}"
    else:
        url = request.getfixturevalue("postgres").new_database()
    migrate.upgrade(url)
    return url


@pytest.fixture
def rig(fresh_chain: Chain, db_url: str, tmp_path: Path) -> Iterator[Rig]:
    built = Rig.build(
        w3=fresh_chain.w3, url=fresh_chain.url, world=fresh_chain.world, db_url=db_url, tmp=tmp_path
    )
    try:
        yield built
    finally:
        built.store.close()
