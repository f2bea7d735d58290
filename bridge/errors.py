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


class RpcError(BridgeError):
    """A node answered a JSON-RPC call with an error."""

    def __init__(self, rpc_url: str, code: int | None, message: str) -> None:
        self.rpc_url = rpc_url
        self.code = code
        self.message = message
        super().__init__(f"{rpc_url} answered error {code}: {message}")


class NonceTooLowError(RpcError):
    """The nonce is used already: the transaction (or another one) may be mined."""


class TransactionAlreadyKnownError(RpcError):
    """The node holds the very same transaction already."""


class ReplacementUnderpricedError(RpcError):
    """A transaction with that nonce is pending and the new one does not pay enough more."""


class FeeTooLowError(RpcError):
    """The node takes no transaction whose max fee per gas is below the block's base fee (or its
    pool's minimum price)."""


class ExecutionRevertedError(RpcError):
    """The call or gas estimation reverted: the transaction would revert as it stands."""

    def __init__(
        self, rpc_url: str, code: int | None, message: str, data: bytes | None = None
    ) -> None:
        super().__init__(rpc_url, code, message)
        self.data = data
        """The revert data (a custom error's selector and arguments), when the node gave it."""


class InsufficientFundsError(RpcError):
    """The sender cannot pay gas times fee plus value."""


class LogRangeTooLargeError(RpcError):
    """``eth_getLogs`` over that block range returns more logs, or spans more blocks, than the node
    serves in one answer: ask for a smaller range."""


class SigningKeyError(BridgeError):
    """A signing key could not be loaded or is not allowed on this chain."""

    def __init__(self, role: str, reason: str) -> None:
        self.role = role
        self.reason = reason
        super().__init__(f"{role} key: {reason}")
