"""A real anvil with the gas benchmark's world (the ledger, twins, licenses, payees and brand escrow
of ``scripts.bench_gas.setup``), shared by the integration tests: one per test module (the
``chain`` fixture of conftest.py), and an ``evm_snapshot`` per test (``snapshot``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from web3 import Web3

from scripts.bench_gas import World, local_anvil, setup


@dataclass
class AnvilChain:
    w3: Web3
    url: str
    world: World

    def rpc(self, method: str, *params: Any) -> Any:
        """A JSON-RPC call's result (anvil's own methods included); an error fails the test."""
        response = self.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
        assert "error" not in response, response
        return response["result"]

    def fund(self, address: str, wei: int = 10**20) -> None:
        self.rpc("anvil_setBalance", address, hex(wei))

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    @contextmanager
    def snapshot(self) -> Iterator[AnvilChain]:
        """The chain as it is now, restored when the block exits."""
        snap = self.rpc("evm_snapshot")
        try:
            yield self
        finally:
            self.rpc("evm_revert", snap)


@contextmanager
def anvil_chain() -> Iterator[AnvilChain]:
    """A fresh anvil with the world set up, stopped when the block exits."""
    with local_anvil() as w3:
        world = setup(w3)
        yield AnvilChain(w3, w3.provider.endpoint_uri, world)  # type: ignore[attr-defined]
