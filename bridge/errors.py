"""The bridge's error tree: one root, a subclass per failure, each keeping its fields."""

from __future__ import annotations


class BridgeError(Exception):
    """Root of every error the bridge raises on purpose."""


class ChainUnavailableError(BridgeError):
    """The chain could not be asked (RPC down, contract missing, bad answer)."""

    def __init__(self, rpc_url: str, reason: str) -> None:
        self.rpc_url = rpc_url
        self.reason = reason
        super().__init__(f"chain at {rpc_url} unavailable: {reason}")


class BrandExistsError(BridgeError):
    """A brand with that name or address is already registered."""

    def __init__(self, name: str, address: str) -> None:
        self.name = name
        self.address = address
        super().__init__(f"a brand named {name!r} or with address {address} already exists")
