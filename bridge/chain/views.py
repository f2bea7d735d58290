"""Read-only questions the API asks the ledger before it accepts a usage.

``LicenseView`` is the protocol the API depends on; ``Web3LicenseView`` answers it from a deployed
``TwinLedger`` (``priceAt`` for twin, license and usage type, ``isPausedAt`` for pauses) behind a
small TTL cache. Tests use an in-memory fake.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Final, NamedTuple, Protocol

from web3 import Web3
from web3.contract import Contract
from web3.exceptions import Web3Exception

from bridge.chain.deploy import LEDGER, contract_at
from bridge.codec import Outcome
from bridge.errors import ChainUnavailableError

_CACHE_LIMIT: Final = 100_000


class LicenseView(Protocol):
    """What the API needs to know from the chain to refuse a usage at the door."""

    def check_usage(self, *, brand: str, twin_id: int, usage_type: int, used_at: int) -> Outcome:
        """The outcome the ledger would give the usage now, ignoring the cap on uses.

        Args:
            brand: the brand's address.
            twin_id: the twin used.
            usage_type: the usage type's number.
            used_at: time of use, unix seconds.

        Raises:
            ChainUnavailableError: when the chain cannot be asked.
        """
        ...

    def ping(self) -> None:
        """Raises ``ChainUnavailableError`` unless the RPC answers and the ledger has code."""
        ...


class _Key(NamedTuple):
    brand: str
    twin_id: int
    usage_type: int
    used_at: int


class Web3LicenseView:
    """``LicenseView`` over a deployed ledger, caching each answer for ``ttl`` seconds."""

    def __init__(
        self,
        w3: Web3,
        ledger: Contract,
        *,
        ttl: float,
        rpc_url: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._w3 = w3
        self._ledger = ledger
        self._ttl = ttl
        self._rpc_url = rpc_url
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[_Key, tuple[float, Outcome]] = {}

    @classmethod
    def connect(cls, rpc_url: str, ledger_address: str, *, ttl: float) -> Web3LicenseView:
        """A view over the ledger at ``ledger_address`` reached through ``rpc_url``."""
        w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 5}))
        return cls(w3, contract_at(w3, LEDGER, ledger_address), ttl=ttl, rpc_url=rpc_url)

    def check_usage(self, *, brand: str, twin_id: int, usage_type: int, used_at: int) -> Outcome:
        key = _Key(Web3.to_checksum_address(brand), twin_id, usage_type, used_at)
        now = self._clock()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        outcome = self._ask(key)
        with self._lock:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            self._cache[key] = (now + self._ttl, outcome)
        return outcome

    def _ask(self, key: _Key) -> Outcome:
        functions = self._ledger.functions
        try:
            code, _price = functions.priceAt(
                key.twin_id, key.brand, key.usage_type, key.used_at
            ).call()
            outcome = Outcome(code)
            if outcome is Outcome.PAID and functions.isPausedAt(key.twin_id, key.used_at).call():
                outcome = Outcome.TWIN_PAUSED
        except (Web3Exception, OSError, ValueError) as exc:
            raise ChainUnavailableError(self._rpc_url, str(exc) or type(exc).__name__) from exc
        return outcome

    def ping(self) -> None:
        try:
            code = self._w3.eth.get_code(self._ledger.address)
        except (Web3Exception, OSError, ValueError) as exc:
            raise ChainUnavailableError(self._rpc_url, str(exc) or type(exc).__name__) from exc
        if not code:
            raise ChainUnavailableError(self._rpc_url, f"no contract at {self._ledger.address}")
