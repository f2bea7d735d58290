"""Read-only questions the API asks the ledger before it accepts a usage.

``LicenseView`` is the protocol the API depends on; ``Web3LicenseView`` answers it from a deployed
``TwinLedger`` (``priceAt`` for twin, accepted license and usage type, ``isPausedAt`` for pauses,
``brandLimits`` for the brand's spending limit per usage) behind a small TTL cache. Tests use an
in-memory fake.

A usage found payable at a time before the block the ledger answered from stays payable: nothing
the ledger does reaches back (an acceptance starts no earlier than its block, a revocation or a
pause ends what follows it, an unpause leaves past pauses in force). Such answers are kept until
the cache is full, not only for the TTL; the cap on uses and the spending limit per period are the
settlement's to enforce. The limit per usage is asked once per brand and TTL and applied to each
usage's price times its quantity (``Verdict.outcome_for``).
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, NamedTuple, Protocol

import orjson
import urllib3
from eth_abi.abi import encode
from eth_utils.crypto import keccak
from web3 import HTTPProvider, Web3
from web3.contract import Contract
from web3.exceptions import Web3Exception
from web3.types import RPCEndpoint

from bridge.chain.brand_ledger import BRAND_LIMITS, BrandLimits, decode_brand_limits, selector
from bridge.chain.deploy import LEDGER, contract_at
from bridge.chain.ledger import decode_price_at, price_at_calldata
from bridge.domain.codec import Outcome
from bridge.errors import ChainUnavailableError

_CACHE_LIMIT: Final = 100_000
_RPC_TIMEOUT_S: Final = 5.0
_KEYS_PER_REQUEST: Final = 250
"""Usages asked per JSON-RPC batch (two calls each: ``priceAt`` and ``isPausedAt``)."""
IS_PAUSED_AT_SELECTOR: Final = keccak(text="isPausedAt(uint256,uint40)")[:4]
BRAND_LIMITS_SELECTOR: Final = selector(BRAND_LIMITS)

UsageKey = tuple[int, int, int]
"""``(twin_id, usage_type, used_at)`` of one usage to check."""
BrandUsageKey = tuple[str, int, int, int]
"""``(brand, twin_id, usage_type, used_at)`` of one usage to check."""


class Verdict(NamedTuple):
    """What the ledger would say of one ``(brand, twin, usage type, time)``: the license check's
    outcome, the price per use (0 unless paid), the brand's spending limit per usage in force
    (None: not known) and the brand's own attester (None: the bridge's attesters sign for it)."""

    outcome: Outcome
    price: int = 0
    per_usage_limit: int | None = None
    own_attester: str | None = None

    def outcome_for(self, quantity: int) -> Outcome:
        """The outcome of a usage of ``quantity`` uses: ``OVER_USAGE_LIMIT`` when a payable one
        would cost more than the brand's limit per usage, as the ledger rejects it."""
        limit = self.per_usage_limit
        if self.outcome is Outcome.PAID and limit is not None and self.price * quantity > limit:
            return Outcome.OVER_USAGE_LIMIT
        return self.outcome


class LicenseView(Protocol):
    """What the API needs to know from the chain to refuse a usage at the door."""

    def check_many(self, usages: Sequence[BrandUsageKey]) -> list[Verdict]:
        """The verdict of the ledger on each ``(brand, twin_id, usage_type, used_at)`` now
        (brand address, twin, usage type number, time of use in unix seconds), ignoring the cap on
        uses and the limit per period; in order, of any brands, in as few round trips as the
        chain allows.

        Raises:
            ChainUnavailableError: when the chain cannot be asked.
        """
        ...

    def ping(self) -> None:
        """Raises ``ChainUnavailableError`` unless the RPC answers and the ledger has code."""
        ...


BrandTerms = tuple[int, str | None]
"""A brand's spending limit per usage in force and its own attester (None: the bridge's)."""


def _terms(limits: BrandLimits) -> BrandTerms:
    own = int(limits.attester, 16) != 0
    return limits.per_usage, limits.attester if own else None


class _Key(NamedTuple):
    brand: str
    twin_id: int
    usage_type: int
    used_at: int


@functools.lru_cache(maxsize=4096)
def _checksum(address: str) -> str:
    """EIP-55 form of a brand's address (keccak in pure Python: worth remembering)."""
    return str(Web3.to_checksum_address(address))


class Web3LicenseView:
    """``LicenseView`` over a deployed ledger, caching each answer for ``ttl`` seconds (a payable
    use dated before the answering block for good)."""

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
        self._cache: dict[_Key, tuple[float, tuple[Outcome, int]]] = {}
        self._limits: dict[str, tuple[float, BrandTerms]] = {}
        provider = w3.provider
        self._endpoint = str(provider.endpoint_uri) if isinstance(provider, HTTPProvider) else None
        self._http = urllib3.PoolManager(
            maxsize=4,
            timeout=urllib3.Timeout(total=_RPC_TIMEOUT_S),
            # eth_call and eth_getBlockByNumber are reads: a batch is safe to send again over a
            # fresh connection when a pooled one was closed by the node.
            retries=urllib3.Retry(total=2, read=1, redirect=0, status=0, allowed_methods=None),
            headers={"Content-Type": "application/json"},
        )

    @classmethod
    def connect(cls, rpc_url: str, ledger_address: str, *, ttl: float) -> Web3LicenseView:
        """A view over the ledger at ``ledger_address`` reached through ``rpc_url``."""
        w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": _RPC_TIMEOUT_S}))
        return cls(w3, contract_at(w3, LEDGER, ledger_address), ttl=ttl, rpc_url=rpc_url)

    def check_usage(self, *, brand: str, twin_id: int, usage_type: int, used_at: int) -> Outcome:
        [outcome] = self.check_usages(brand=brand, usages=[(twin_id, usage_type, used_at)])
        return outcome

    def check_usages(self, *, brand: str, usages: Sequence[UsageKey]) -> list[Outcome]:
        """The license check's outcome of each usage of one brand (spending limits aside)."""
        return [verdict.outcome for verdict in self.check_many([(brand, *u) for u in usages])]

    def check_many(self, usages: Sequence[BrandUsageKey]) -> list[Verdict]:
        keys = [_Key(_checksum(brand), *usage) for brand, *usage in usages]
        now = self._clock()
        with self._lock:
            answers = {
                key: hit[1] for key in keys if (hit := self._cache.get(key)) and hit[0] > now
            }
            limits = {
                key.brand: known[1]
                for key in keys
                if (known := self._limits.get(key.brand)) and known[0] > now
            }
        missing = [key for key in dict.fromkeys(keys) if key not in answers]
        brands = [
            brand for brand in dict.fromkeys(key.brand for key in keys) if brand not in limits
        ]
        if missing or brands:
            asked, asked_limits, chain_time = self._ask_many(missing, brands)
            self._remember(asked, asked_limits, chain_time, now)
            answers.update(asked)
            limits.update(asked_limits)
        return [Verdict(*answers[key], *limits.get(key.brand, (None, None))) for key in keys]

    def _remember(
        self,
        asked: dict[_Key, tuple[Outcome, int]],
        limits: dict[str, BrandTerms],
        chain_time: int,
        now: float,
    ) -> None:
        """Caches fresh answers: a payable use dated before ``chain_time`` for good, the rest and
        the brands' limits for the TTL."""
        with self._lock:
            if len(self._cache) + len(asked) > _CACHE_LIMIT:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
                if len(self._cache) + len(asked) > _CACHE_LIMIT:
                    self._cache = {}
            for key, answer in asked.items():
                final = answer[0] is Outcome.PAID and key.used_at < chain_time
                self._cache[key] = (math.inf if final else now + self._ttl, answer)
            if len(self._limits) + len(limits) > _CACHE_LIMIT:
                self._limits = {}
            for brand, limit in limits.items():
                self._limits[brand] = (now + self._ttl, limit)

    def _ask_many(
        self, keys: Sequence[_Key], brands: Sequence[str]
    ) -> tuple[dict[_Key, tuple[Outcome, int]], dict[str, BrandTerms], int]:
        """Asks the ledger about each key (outcome and price) and each brand (limit per usage):
        the latest block, then every call, in one JSON-RPC batch (up to ``_KEYS_PER_REQUEST`` keys
        a request; the brands with the first); the answers and the earliest block time they were
        given at. One call at a time where the provider takes no batches (the in-process test
        chain), with no block time (0)."""
        provider: Any = self._w3.provider
        if not hasattr(provider, "make_batch_request"):
            return (
                {key: self._ask(key) for key in keys},
                {brand: self._ask_limit(brand) for brand in brands},
                0,
            )
        answers: dict[_Key, tuple[Outcome, int]] = {}
        limits: dict[str, BrandTerms] = {}
        chain_time: int | None = None
        for start in range(0, max(len(keys), 1), _KEYS_PER_REQUEST):
            chunk = keys[start : start + _KEYS_PER_REQUEST]
            asked_brands = brands if start == 0 else []
            try:
                at = self._ask_chunk(chunk, asked_brands, answers, limits)
            except (
                Web3Exception,
                OSError,
                urllib3.exceptions.HTTPError,
                ValueError,
                KeyError,
                TypeError,
            ) as exc:
                raise ChainUnavailableError(self._rpc_url, str(exc) or type(exc).__name__) from exc
            chain_time = at if chain_time is None else min(chain_time, at)
        return answers, limits, chain_time or 0

    def _ask_chunk(
        self,
        chunk: Sequence[_Key],
        brands: Sequence[str],
        answers: dict[_Key, tuple[Outcome, int]],
        limits: dict[str, BrandTerms],
    ) -> int:
        """One batch: the latest block, both calls of each key, ``brandLimits`` of each brand;
        fills ``answers`` and ``limits`` and returns the block's time."""
        # Nodes answer a batch in order (geth, anvil), so the calls run on this block or a later
        # one. Were a node to run them earlier, a usage cached as payable could be one revoked
        # since: the ledger still rejects it at settlement, as after any cached answer.
        calls: list[bytes] = []
        for key in chunk:
            calls.append(
                price_at_calldata(
                    twin_id=key.twin_id, brand=key.brand, usage_type=key.usage_type, at=key.used_at
                )
            )
            calls.append(
                IS_PAUSED_AT_SELECTOR + encode(["uint256", "uint40"], [key.twin_id, key.used_at])
            )
        calls.extend(BRAND_LIMITS_SELECTOR + encode(["address"], [brand]) for brand in brands)
        requests: list[tuple[RPCEndpoint, Any]] = [
            (RPCEndpoint("eth_getBlockByNumber"), ["latest", False]),
            *(
                (
                    RPCEndpoint("eth_call"),
                    [{"to": self._ledger.address, "data": "0x" + c.hex()}, "latest"],
                )
                for c in calls
            ),
        ]
        responses = self._post_batch(requests)
        if not isinstance(responses, list) or len(responses) != len(requests):
            raise ValueError(f"batch answered {str(responses)[:200]}")
        for response in responses:
            if "error" in response:
                raise ValueError(f"{response.get('id')} failed: {response['error']}")
        block, *answered = responses
        results = [bytes.fromhex(str(c["result"]).removeprefix("0x")) for c in answered]
        for i, key in enumerate(chunk):
            outcome, price = decode_price_at(results[2 * i])
            if outcome is Outcome.PAID and int.from_bytes(results[2 * i + 1]):
                outcome = Outcome.TWIN_PAUSED
            answers[key] = (outcome, price)
        for brand, data in zip(brands, results[2 * len(chunk) :], strict=True):
            limits[brand] = _terms(decode_brand_limits(data))
        return int(block["result"]["timestamp"], 16)

    def _post_batch(self, requests: list[tuple[RPCEndpoint, Any]]) -> Any:
        """One JSON-RPC batch: over HTTP, a POST on a pooled keep-alive connection (a third of the
        CPU of web3's provider, which this hot path of the API felt); through any other provider,
        its own batch call. Responses sorted by id, as requested."""
        if self._endpoint is None:
            return self._w3.provider.make_batch_request(requests)  # type: ignore[attr-defined]
        body = orjson.dumps(
            [
                {"jsonrpc": "2.0", "id": i, "method": method, "params": params}
                for i, (method, params) in enumerate(requests)
            ]
        )
        response = self._http.request("POST", self._endpoint, body=body)
        if response.status != 200:
            raise ValueError(f"HTTP {response.status}: {response.data[:200]!r}")
        answers = orjson.loads(response.data)
        if not isinstance(answers, list):
            raise ValueError(f"batch answered {str(answers)[:200]}")
        return sorted(answers, key=lambda answer: int(answer.get("id", -1)))

    def _ask(self, key: _Key) -> tuple[Outcome, int]:
        functions = self._ledger.functions
        try:
            code, price = functions.priceAt(
                key.twin_id, key.brand, key.usage_type, key.used_at
            ).call()
            outcome = Outcome(code)
            if outcome is Outcome.PAID and functions.isPausedAt(key.twin_id, key.used_at).call():
                outcome = Outcome.TWIN_PAUSED
        except (Web3Exception, OSError, ValueError) as exc:
            raise ChainUnavailableError(self._rpc_url, str(exc) or type(exc).__name__) from exc
        return outcome, int(price)

    def _ask_limit(self, brand: str) -> BrandTerms:
        """The brand's spending limit per usage in force and own attester, asked on their own."""
        try:
            limits = self._ledger.functions.brandLimits(brand).call()
        except (Web3Exception, OSError, ValueError) as exc:
            raise ChainUnavailableError(self._rpc_url, str(exc) or type(exc).__name__) from exc
        attester = str(limits[7])
        return int(limits[0]), None if int(attester, 16) == 0 else _checksum(attester)

    def ping(self) -> None:
        try:
            code = self._w3.eth.get_code(self._ledger.address)
        except (Web3Exception, OSError, ValueError) as exc:
            raise ChainUnavailableError(self._rpc_url, str(exc) or type(exc).__name__) from exc
        if not code:
            raise ChainUnavailableError(self._rpc_url, f"no contract at {self._ledger.address}")
