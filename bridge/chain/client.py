"""The few chain operations the settlement worker needs, apart from how they are answered.

``ChainClient`` is the protocol; ``Web3ChainClient`` answers it over a list of JSON-RPC URLs,
retrying and failing over to the next URL when one cannot be reached, and turning node errors into
the bridge's own (``classify_rpc_error``). Unit tests use an in-memory fake.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol, TypeVar

import requests
from hexbytes import HexBytes
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential
from web3 import Web3
from web3.exceptions import BlockNotFound, ContractLogicError, TransactionNotFound, Web3RPCError

from bridge.errors import (
    ChainUnavailableError,
    ExecutionRevertedError,
    FeeTooLowError,
    InsufficientFundsError,
    LogRangeTooLargeError,
    NonceTooLowError,
    ReplacementUnderpricedError,
    RpcError,
    TransactionAlreadyKnownError,
)

T = TypeVar("T")
BlockTag = int | Literal["latest", "finalized"]


@dataclass(frozen=True, slots=True)
class Block:
    number: int
    hash: str
    timestamp: int
    parent_hash: str = ""


@dataclass(frozen=True, slots=True)
class FeeData:
    """EIP-1559 fee inputs: the latest block's base fee and the node's suggested tip, in wei."""

    base_fee: int
    priority_fee: int


@dataclass(frozen=True, slots=True)
class LogEntry:
    address: str
    topics: tuple[bytes, ...]
    data: bytes
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int


@dataclass(frozen=True, slots=True)
class Receipt:
    tx_hash: str
    status: int
    block_number: int
    block_hash: str
    gas_used: int
    effective_gas_price: int
    logs: tuple[LogEntry, ...]


@dataclass(frozen=True, slots=True)
class PendingTx:
    """A transaction the node knows; ``block_number`` is None while it waits in the mempool."""

    tx_hash: str
    nonce: int
    block_number: int | None


class ChainClient(Protocol):
    """What the worker asks of the chain. Methods raise ``ChainUnavailableError`` when no RPC URL
    answers and an ``RpcError`` subclass when a node refuses."""

    def chain_id(self) -> int: ...

    def block(self, tag: BlockTag = "latest") -> Block | None: ...

    def pending_nonce(self, address: str) -> int: ...

    def fee_data(self) -> FeeData: ...

    def estimate_gas(self, *, sender: str, to: str, data: bytes) -> int: ...

    def call(self, *, to: str, data: bytes, block: BlockTag = "latest") -> bytes: ...

    def call_many(
        self, *, to: str, calls: Sequence[bytes], block: BlockTag = "latest"
    ) -> list[bytes]:
        """``call`` for each calldata, in as few round trips as the node allows."""
        ...

    def send_raw_transaction(self, raw: bytes) -> str:
        """Broadcasts a signed transaction; returns its hash (0x-hex)."""
        ...

    def receipt(self, tx_hash: str) -> Receipt | None: ...

    def transaction(self, tx_hash: str) -> PendingTx | None: ...

    def logs(
        self, *, address: str, from_block: int, to_block: int, topics: Sequence[bytes | None] = ()
    ) -> list[LogEntry]: ...


# ---------------------------------------------------------------- errors

_BY_MESSAGE: Final[tuple[tuple[str, type[RpcError]], ...]] = (
    ("nonce too low", NonceTooLowError),  # geth, anvil, reth, erigon
    ("nonce is too low", NonceTooLowError),
    ("oldnonce", NonceTooLowError),  # nethermind
    ("already known", TransactionAlreadyKnownError),  # geth
    ("known transaction", TransactionAlreadyKnownError),  # parity/openethereum, older geth
    ("already imported", TransactionAlreadyKnownError),  # anvil, besu
    ("alreadyknown", TransactionAlreadyKnownError),  # nethermind
    ("already in mempool", TransactionAlreadyKnownError),
    ("replacement transaction underpriced", ReplacementUnderpricedError),  # geth, anvil
    ("replacement fee too low", ReplacementUnderpricedError),  # erigon
    ("replacement underpriced", ReplacementUnderpricedError),
    ("feetoolowtocompete", ReplacementUnderpricedError),  # nethermind
    ("max fee per gas less than block base fee", FeeTooLowError),  # geth, anvil
    ("fee cap less than block base fee", FeeTooLowError),  # older geth
    ("transaction underpriced", FeeTooLowError),  # geth's pool, below its minimum price
    ("insufficient funds", InsufficientFundsError),  # geth, anvil, erigon
    ("insufficientfunds", InsufficientFundsError),  # nethermind
    ("insufficient balance", InsufficientFundsError),
    ("execution reverted", ExecutionRevertedError),  # geth, anvil
    ("query returned more than", LogRangeTooLargeError),  # geth-based providers, infura
    ("log response size exceeded", LogRangeTooLargeError),  # alchemy
    ("block range", LogRangeTooLargeError),  # "block range is too wide", "exceed max block range"
    ("too many results", LogRangeTooLargeError),
    ("response size", LogRangeTooLargeError),  # "response size should not be greater than"
)
"""Lower-cased message fragments, newest wording first; the codes of these refusals are generic
(-32000, -32003) on most nodes, so the message decides."""

_BY_CODE: Final[dict[int, type[RpcError]]] = {
    -32010: TransactionAlreadyKnownError,  # nethermind: AlreadyKnown
}


def classify_rpc_error(rpc_url: str, code: int | None, message: str) -> RpcError:
    """The bridge error for a node's refusal, by code where it is specific, else by message."""
    lowered = message.lower().replace("_", "")
    for fragment, cls in _BY_MESSAGE:
        if fragment.replace("_", "") in lowered:
            return cls(rpc_url, code, message)
    if code is not None and code in _BY_CODE:
        return _BY_CODE[code](rpc_url, code, message)
    return RpcError(rpc_url, code, message)


def _rpc_error(rpc_url: str, exc: Web3RPCError) -> RpcError:
    error: Any = (exc.rpc_response or {}).get("error") or {}
    if isinstance(error, dict):
        code = error.get("code")
        message = str(error.get("message") or exc.message)
        return classify_rpc_error(rpc_url, code if isinstance(code, int) else None, message)
    return classify_rpc_error(rpc_url, None, str(error or exc.message))


# ---------------------------------------------------------------- web3


def _hex(value: bytes | str) -> str:
    return HexBytes(value).to_0x_hex()


def _log(entry: Any) -> LogEntry:
    return LogEntry(
        address=Web3.to_checksum_address(entry["address"]),
        topics=tuple(bytes(t) for t in entry["topics"]),
        data=bytes(entry["data"]),
        block_number=int(entry["blockNumber"]),
        block_hash=_hex(entry["blockHash"]),
        tx_hash=_hex(entry["transactionHash"]),
        log_index=int(entry["logIndex"]),
    )


_CALLS_PER_BATCH: Final = 250
"""eth_calls per JSON-RPC batch request (providers cap batches at 100-1,000)."""

_UNREACHABLE: Final = (
    requests.exceptions.ConnectionError,
    requests.exceptions.HTTPError,  # 5xx and 429 from the endpoint or a proxy in front of it
    requests.exceptions.Timeout,
    ConnectionError,
    TimeoutError,
)


class Web3ChainClient:
    """``ChainClient`` over JSON-RPC URLs tried in order; an unreachable URL hands over to the next.

    Each operation is attempted up to ``attempts`` times with exponential backoff; an attempt that
    cannot reach its URL moves to the next one (round robin). Node refusals are not retried.
    """

    def __init__(
        self,
        rpc_urls: Sequence[str],
        *,
        timeout: float = 10.0,
        attempts: int = 4,
        backoff: float = 0.1,
    ) -> None:
        if not rpc_urls:
            raise ValueError("at least one RPC URL is needed")
        self.rpc_urls = list(rpc_urls)
        self._w3s = [
            Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout})) for url in rpc_urls
        ]
        for w3 in self._w3s:
            w3.provider.exception_retry_configuration = None  # type: ignore[attr-defined]
        self._current = 0
        self._attempts = attempts
        self._backoff = backoff

    @property
    def current_url(self) -> str:
        return self.rpc_urls[self._current]

    def _ask(self, fn: Callable[[Web3], T]) -> T:
        retrying = Retrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=self._backoff, max=2.0),
            retry=retry_if_exception_type(ChainUnavailableError),
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                return self._once(fn)
        raise AssertionError("tenacity stops by raising")  # pragma: no cover

    def _once(self, fn: Callable[[Web3], T]) -> T:
        index = self._current
        url = self.rpc_urls[index]
        try:
            return fn(self._w3s[index])
        except Web3RPCError as exc:
            raise _rpc_error(url, exc) from exc
        except ContractLogicError as exc:
            data = exc.data if isinstance(exc.data, str) and exc.data.startswith("0x") else None
            raise ExecutionRevertedError(
                url, 3, str(exc), bytes.fromhex(data[2:]) if data else None
            ) from exc
        except _UNREACHABLE as exc:
            self._current = (index + 1) % len(self.rpc_urls)
            raise ChainUnavailableError(url, f"{type(exc).__name__}: {exc}") from exc

    def chain_id(self) -> int:
        return self._ask(lambda w3: int(w3.eth.chain_id))

    def block(self, tag: BlockTag = "latest") -> Block | None:
        def get(w3: Web3) -> Block | None:
            try:
                block = w3.eth.get_block(tag)
            except BlockNotFound:
                return None
            except Web3RPCError:
                if tag == "finalized":  # nodes without a finality notion answer an error
                    return None
                raise
            return Block(
                number=int(block["number"]),
                hash=_hex(block["hash"]),
                timestamp=int(block["timestamp"]),
                parent_hash=_hex(block["parentHash"]),
            )

        return self._ask(get)

    def pending_nonce(self, address: str) -> int:
        checksum = Web3.to_checksum_address(address)
        return self._ask(lambda w3: int(w3.eth.get_transaction_count(checksum, "pending")))

    def fee_data(self) -> FeeData:
        def get(w3: Web3) -> FeeData:
            block = w3.eth.get_block("latest")
            return FeeData(
                base_fee=int(block.get("baseFeePerGas", 0)),
                priority_fee=int(w3.eth.max_priority_fee),
            )

        return self._ask(get)

    def estimate_gas(self, *, sender: str, to: str, data: bytes) -> int:
        tx: Any = {
            "from": Web3.to_checksum_address(sender),
            "to": Web3.to_checksum_address(to),
            "data": _hex(data),
        }
        return self._ask(lambda w3: int(w3.eth.estimate_gas(tx)))

    def call(self, *, to: str, data: bytes, block: BlockTag = "latest") -> bytes:
        tx: Any = {"to": Web3.to_checksum_address(to), "data": _hex(data)}
        return self._ask(lambda w3: bytes(w3.eth.call(tx, block)))

    def call_many(
        self, *, to: str, calls: Sequence[bytes], block: BlockTag = "latest"
    ) -> list[bytes]:
        target = Web3.to_checksum_address(to)

        def run(w3: Web3) -> list[bytes]:
            answers: list[bytes] = []
            for start in range(0, len(calls), _CALLS_PER_BATCH):
                with w3.batch_requests() as batch:
                    for data in calls[start : start + _CALLS_PER_BATCH]:
                        tx: Any = {"to": target, "data": _hex(data)}
                        batch.add(w3.eth.call(tx, block))
                    results: list[Any] = list(batch.execute())  # formatted results, not raw
                    answers.extend(bytes(answer) for answer in results)
            return answers

        return self._ask(run)

    def send_raw_transaction(self, raw: bytes) -> str:
        return self._ask(lambda w3: _hex(w3.eth.send_raw_transaction(raw)))

    def receipt(self, tx_hash: str) -> Receipt | None:
        def get(w3: Web3) -> Receipt | None:
            try:
                r = w3.eth.get_transaction_receipt(HexBytes(tx_hash))
            except TransactionNotFound:
                return None
            return Receipt(
                tx_hash=_hex(r["transactionHash"]),
                status=int(r["status"]),
                block_number=int(r["blockNumber"]),
                block_hash=_hex(r["blockHash"]),
                gas_used=int(r["gasUsed"]),
                effective_gas_price=int(r.get("effectiveGasPrice", 0)),
                logs=tuple(_log(entry) for entry in r["logs"]),
            )

        return self._ask(get)

    def code(self, address: str, block: BlockTag = "latest") -> bytes:
        """The contract code at ``address`` as of ``block`` (empty for no contract)."""
        checksum = Web3.to_checksum_address(address)
        return self._ask(lambda w3: bytes(w3.eth.get_code(checksum, block)))

    def transaction(self, tx_hash: str) -> PendingTx | None:
        def get(w3: Web3) -> PendingTx | None:
            try:
                tx = w3.eth.get_transaction(HexBytes(tx_hash))
            except TransactionNotFound:
                return None
            number = tx.get("blockNumber")
            return PendingTx(
                tx_hash=_hex(tx["hash"]),
                nonce=int(tx["nonce"]),
                block_number=None if number is None else int(number),
            )

        return self._ask(get)

    def logs(
        self, *, address: str, from_block: int, to_block: int, topics: Sequence[bytes | None] = ()
    ) -> list[LogEntry]:
        params: Any = {
            "address": Web3.to_checksum_address(address),
            "fromBlock": from_block,
            "toBlock": to_block,
            "topics": [None if t is None else _hex(t) for t in topics],
        }
        return self._ask(lambda w3: [_log(entry) for entry in w3.eth.get_logs(params)])
