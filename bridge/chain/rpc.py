"""The bridge's raw JSON-RPC client, and the one rule for picking an endpoint.

``JsonRpc`` posts plain (and batched) JSON-RPC over HTTP, retrying what is worth asking again and
turning node refusals into the bridge's errors (``classify_rpc_error``); the audit reads the whole
chain through it. ``first_answering`` is how every part that is given a list of RPC URLs (the
deployer, the doctor, ``twin-bridge audit``, the audit endpoint) picks the one to use: the first
that answers, on the expected chain.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

import orjson
import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential
from web3 import Web3

from bridge.chain.client import classify_rpc_error
from bridge.errors import BridgeError, ChainUnavailableError

T = TypeVar("T")

_CALLS_PER_REQUEST: Final = 200
"""Requests per JSON-RPC batch (providers cap batches at 100-1,000)."""


class WrongChainError(BridgeError):
    """An RPC endpoint answers for another chain than the one expected."""

    def __init__(self, rpc_url: str, chain_id: int, expected: int) -> None:
        self.rpc_url = rpc_url
        self.chain_id = chain_id
        self.expected = expected
        super().__init__(f"the RPC {rpc_url} is chain {chain_id}, expected chain {expected}")


class NoRpcAnswersError(ChainUnavailableError):
    """None of the configured RPC URLs answered; ``errors`` holds why, one entry per URL."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = tuple(errors)
        reason = f"no RPC answers: {'; '.join(errors)}" if errors else "no RPC URL configured"
        super().__init__("", reason)
        self.args = (reason,)


def first_answering(
    urls: Sequence[str],
    open_endpoint: Callable[[str], T],
    chain_id_of: Callable[[T], int],
    *,
    chain_id: int | None = None,
    close: Callable[[T], None] | None = None,
) -> T:
    """The endpoint of the first of ``urls`` that answers ``chain_id_of`` (a round trip).

    Args:
        urls: the RPC URLs, in order of preference.
        open_endpoint: makes a client for one URL (no round trip needed).
        chain_id_of: asks the client for its chain id; any exception means "no answer".
        chain_id: the chain expected; an endpoint on another chain is refused outright.
        close: releases a client that is not used.

    Raises:
        WrongChainError: an endpoint answered for another chain.
        NoRpcAnswersError: none answered (or ``urls`` is empty).
    """
    errors: list[str] = []
    for url in urls:
        endpoint = open_endpoint(url)
        try:
            answered = chain_id_of(endpoint)
        except Exception as exc:  # any failure to answer means: try the next URL
            errors.append(
                str(exc) if isinstance(exc, BridgeError) else f"{url}: {type(exc).__name__}"
            )
            if close is not None:
                close(endpoint)
            continue
        if chain_id is not None and answered != chain_id:
            if close is not None:
                close(endpoint)
            raise WrongChainError(url, answered, chain_id)
        return endpoint
    raise NoRpcAnswersError(errors)


class _Transient(Exception):
    """An answer worth asking again: the endpoint unreachable, or a 5xx without JSON-RPC."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JsonRpc:
    """Plain JSON-RPC over HTTP with batch requests; node refusals become the bridge's errors
    (``classify_rpc_error``), unreachable endpoints ``ChainUnavailableError``."""

    def __init__(self, url: str, *, timeout: float = 120.0, attempts: int = 3) -> None:
        self.url = url
        self._timeout = timeout
        self._attempts = attempts
        self._session = requests.Session()
        self.requests = 0
        """HTTP requests sent so far."""

    def close(self) -> None:
        self._session.close()

    def _post(self, payload: Any) -> Any:
        body = orjson.dumps(payload)
        retrying = Retrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=0.2, max=2.0),
            retry=retry_if_exception_type(_Transient),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._post_once(body)
        except _Transient as exc:
            raise ChainUnavailableError(self.url, exc.reason) from exc
        raise AssertionError("tenacity returns or raises")  # pragma: no cover

    def _post_once(self, body: bytes) -> Any:
        self.requests += 1
        try:
            response = self._session.post(
                self.url,
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=self._timeout,
            )
        except requests.RequestException as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            reason = f"HTTP {response.status_code}: {response.text[:200]!r}"
            if response.status_code >= 500:
                raise _Transient(reason) from exc
            raise ChainUnavailableError(self.url, reason) from exc

    def _result(self, answer: Any) -> Any:
        if not isinstance(answer, dict):
            raise ChainUnavailableError(self.url, f"not a JSON-RPC answer: {str(answer)[:200]}")
        error = answer.get("error")
        if error is not None:
            if isinstance(error, dict):
                code = error.get("code")
                raise classify_rpc_error(
                    self.url, code if isinstance(code, int) else None, str(error.get("message"))
                )
            raise classify_rpc_error(self.url, None, str(error))
        return answer.get("result")

    def request(self, method: str, params: Sequence[Any]) -> Any:
        """One call's result.

        Raises:
            RpcError: the node refused (classified: ``LogRangeTooLargeError``, ...).
            ChainUnavailableError: the endpoint could not be reached.
        """
        return self._result(
            self._post({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
        )

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """The results of ``calls`` in order, in as few HTTP requests as batches allow; the first
        refused call raises."""
        results: list[Any] = []
        for start in range(0, len(calls), _CALLS_PER_REQUEST):
            chunk = calls[start : start + _CALLS_PER_REQUEST]
            payload = [
                {"jsonrpc": "2.0", "id": i, "method": method, "params": list(params)}
                for i, (method, params) in enumerate(chunk)
            ]
            answers = self._post(payload)
            if isinstance(answers, dict):  # the whole batch refused
                self._result(answers)
                raise ChainUnavailableError(self.url, "a batch request was answered with one reply")
            by_id = {answer.get("id"): answer for answer in answers if isinstance(answer, dict)}
            for i in range(len(chunk)):
                if i not in by_id:
                    raise ChainUnavailableError(self.url, f"no answer to call {i} of a batch")
                results.append(self._result(by_id[i]))
        return results

    def call(self, to: str, data: bytes, block: int) -> bytes:
        return bytes.fromhex(
            str(self.request("eth_call", [{"to": to, "data": "0x" + data.hex()}, hex(block)]))[2:]
        )

    def call_many(self, to: str, calls: Sequence[bytes], block: int) -> list[bytes]:
        answers = self.batch(
            [("eth_call", [{"to": to, "data": "0x" + data.hex()}, hex(block)]) for data in calls]
        )
        return [bytes.fromhex(str(answer)[2:]) for answer in answers]


def connect_json_rpc(
    urls: Sequence[str], *, chain_id: int | None = None, timeout: float = 120.0
) -> JsonRpc:
    """A ``JsonRpc`` on the first of ``urls`` that answers (see ``first_answering``)."""
    return first_answering(
        urls,
        lambda url: JsonRpc(url, timeout=timeout),
        lambda rpc: int(rpc.request("eth_chainId", []), 16),
        chain_id=chain_id,
        close=JsonRpc.close,
    )


def connect_web3(
    urls: Sequence[str], *, chain_id: int | None = None, timeout: float = 30.0
) -> Web3:
    """A ``Web3`` on the first of ``urls`` that answers (see ``first_answering``)."""
    return first_answering(
        urls,
        lambda url: Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout})),
        lambda w3: int(w3.eth.chain_id),
        chain_id=chain_id,
    )
