"""Amounts as people read them: in the payment token's own units, with the symbol and decimals the
chain gives (``symbol()`` and ``decimals()`` of the ledger's ``paymentToken()``), never a currency
assumed here.

A command that only talks to the bridge's API (``model show``) asks the bridge (``GET
/v1/token``). Else they are read once per chain and ledger and kept in ``<data_dir>/tokens.json``
(a token's symbol and decimals do not change): over ``TWIN_BRIDGE_RPC_URL``, or the running dev
stack's chain when the API is the dev stack's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Final

from bridge.cli.remote import BridgeRefusedError, Relay, RemoteCliError
from bridge.domain.money import token_number
from bridge.errors import BridgeError

if TYPE_CHECKING:
    from bridge.chain.brand_ledger import LedgerChain

CACHE_FILE: Final = "tokens.json"


@dataclass(frozen=True)
class Token:
    """The payment token as amounts are shown and typed: ``1,234.50 mUSD``."""

    symbol: str
    decimals: int

    def number(self, amount: int) -> str:
        """Base units as a number of tokens, two decimals at least (more when finer)."""
        return token_number(amount, self.decimals)

    def show(self, amount: int) -> str:
        """Base units with the token's symbol: ``1,234.50 mUSD``."""
        return f"{self.number(amount)} {self.symbol}"

    def parse(self, text: str, what: str) -> int:
        """A positive amount of tokens (``2500``, ``99.5``) as base units.

        Raises:
            RemoteCliError: not such an amount, or finer than the token's decimals.
        """
        try:
            value = Decimal(text.strip()).scaleb(self.decimals)
        except InvalidOperation:
            raise RemoteCliError(f"{what} {text!r}: not an amount of {self.symbol}") from None
        if not value.is_finite() or value <= 0 or value != value.to_integral_value():
            raise RemoteCliError(
                f"{what} {text!r}: a positive amount of {self.symbol} with at most "
                f"{self.decimals} decimals"
            )
        return int(value)


def read_token(chain: LedgerChain, ledger: str) -> Token:
    """The ledger's payment token's symbol and decimals, from the chain."""
    from eth_abi.exceptions import DecodingError

    from bridge.chain.escrow import EscrowLedger

    reader = EscrowLedger(chain, ledger)
    try:
        info = reader.token_info()
    except DecodingError:
        raise RemoteCliError(
            f"the payment token {reader.token()} answers no symbol(), name() or decimals() as an "
            "ERC-20 does"
        ) from None
    return Token(info.symbol, info.decimals)


def cached_token(data_dir: Path, chain_id: int, ledger: str, read: Callable[[], Token]) -> Token:
    """The token of ``ledger`` on ``chain_id`` from ``<data_dir>/tokens.json``, else ``read()``
    and kept there."""
    path = data_dir / CACHE_FILE
    key = f"{chain_id}:{ledger.lower()}"
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    entry = known.get(key)
    if isinstance(entry, dict):
        try:
            return Token(str(entry["symbol"]), int(entry["decimals"]))
        except (KeyError, TypeError, ValueError):
            pass
    token = read()
    known[key] = asdict(token)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(known, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
    except OSError:
        pass  # a cache: the next command reads the chain again
    return token


def token_over_chain(data_dir: Path, chain: LedgerChain, ledger: str) -> Token:
    """The token of ``ledger`` on ``chain`` (cached)."""
    return _reading(
        lambda: cached_token(data_dir, chain.chain_id(), ledger, lambda: read_token(chain, ledger))
    )


def token_of_bridge(relay: Relay, *, data_dir: Path, rpc: str | None) -> Token:
    """The token of the ledger the bridge behind ``relay`` serves (its EIP-712 domain names the
    chain and the ledger): cached, else read over ``rpc``.

    Without ``rpc`` the bridge is asked first (``GET /v1/token``, read from its chain): a bridge
    that does not publish it (an older one, or one without a chain) leaves the cache and the chain.

    Raises:
        RemoteCliError: not published by the bridge, not cached and no RPC URL to read it with.
    """
    if rpc is None:
        published = _published_token(relay)
        if published is not None:
            return published
    domain = relay.json("GET", "/v1/owner-actions/types")["domain"]
    chain_id, ledger = int(domain["chainId"]), str(domain["verifyingContract"])

    def read() -> Token:
        if rpc is None:
            raise RemoteCliError(
                "the payment token's symbol and decimals are read from the chain once: set "
                "TWIN_BRIDGE_RPC_URL to a JSON-RPC URL of chain "
                f"{chain_id} (or run against the dev stack)"
            )
        from bridge.chain.client import Web3ChainClient

        return read_token(Web3ChainClient([rpc]), ledger)

    return _reading(lambda: cached_token(data_dir, chain_id, ledger, read))


def _published_token(relay: Relay) -> Token | None:
    """The token the bridge publishes at ``/v1/token``; None when it refuses (no such route, or
    no chain to read it from) or answers no symbol and decimals."""
    try:
        answer = relay.json("GET", "/v1/token")
    except BridgeRefusedError:
        return None
    try:
        return Token(str(answer["symbol"]), int(answer["decimals"]))
    except (KeyError, TypeError, ValueError):
        return None


def _reading(read: Callable[[], Token]) -> Token:
    """``read()``; a chain that cannot say becomes a ``RemoteCliError`` in words."""
    try:
        return read()
    except RemoteCliError:
        raise
    except BridgeError as exc:
        raise RemoteCliError(f"cannot read the payment token's symbol and decimals: {exc}") from exc


def token_for_api(relay: Relay, api: str) -> Token:
    """The token of the bridge at ``api``, read (once) over ``TWIN_BRIDGE_RPC_URL``, or over the
    running dev stack's chain when ``api`` is the dev stack's API."""
    from bridge.cli.common import load_settings
    from bridge.devstack.datadir import running_stack

    settings = load_settings()
    rpc = settings.rpc_url
    if rpc is None:
        stack = running_stack(settings.data_dir)
        if stack is not None and stack.api_url.rstrip("/") == api.rstrip("/"):
            rpc = stack.rpc_url
    return token_of_bridge(relay, data_dir=settings.data_dir, rpc=rpc)
