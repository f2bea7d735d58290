"""Amounts in the CLI are in the payment token's own symbol and decimals (read from the chain once
per ledger, then kept in the data directory), never a currency assumed by the code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.cli.money import CACHE_FILE, Token, cached_token, token_of_bridge
from bridge.cli.remote import Relay, RemoteCliError
from bridge.client import BridgeHttp

MUSD = Token("mUSD", 6)


def test_amounts_show_the_tokens_symbol_and_decimals() -> None:
    assert MUSD.show(1_070_000_000) == "1,070.00 mUSD"
    assert MUSD.show(1_250) == "0.00125 mUSD"
    assert MUSD.show(0) == "0.00 mUSD"
    assert Token("RE", 18).show(299_999_999 * 10**12) == "299.999999 RE"
    assert Token("WHOLE", 0).show(1_234) == "1,234.00 WHOLE"


def test_typed_amounts_become_base_units_within_the_tokens_decimals() -> None:
    assert MUSD.parse("2500", "AMOUNT") == 2_500_000_000
    assert MUSD.parse(" 99.5 ", "AMOUNT") == 99_500_000
    assert Token("RE", 18).parse("0.000000000000000001", "AMOUNT") == 1
    for text, message in (
        ("0", "AMOUNT '0': a positive amount of mUSD with at most 6 decimals"),
        ("1.0000001", "AMOUNT '1.0000001': a positive amount of mUSD with at most 6 decimals"),
        ("-3", "AMOUNT '-3': a positive amount of mUSD with at most 6 decimals"),
        ("inf", "AMOUNT 'inf': a positive amount of mUSD with at most 6 decimals"),
        ("ten", "AMOUNT 'ten': not an amount of mUSD"),
    ):
        with pytest.raises(RemoteCliError) as caught:
            MUSD.parse(text, "AMOUNT")
        assert str(caught.value) == message


def test_the_token_is_read_once_per_chain_and_ledger(tmp_path: Path) -> None:
    reads: list[str] = []

    def read(symbol: str) -> Token:
        reads.append(symbol)
        return Token(symbol, 6)

    assert cached_token(tmp_path, 31337, "0xAbC", lambda: read("mUSD")) == MUSD
    assert cached_token(tmp_path, 31337, "0xabc", lambda: read("other")) == MUSD
    assert cached_token(tmp_path, 1, "0xabc", lambda: read("USDC")) == Token("USDC", 6)
    assert reads == ["mUSD", "USDC"]
    assert json.loads((tmp_path / CACHE_FILE).read_text(encoding="utf-8")) == {
        "31337:0xabc": {"symbol": "mUSD", "decimals": 6},
        "1:0xabc": {"symbol": "USDC", "decimals": 6},
    }


def _relay(answers: dict[str, tuple[int, Any]], asked: list[str]) -> Relay:
    """A bridge answering ``answers`` by path (the paths asked are kept in ``asked``)."""

    def handle(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        status, body = answers[request.url.path]
        return httpx.Response(status, json=body)

    return Relay(BridgeHttp("http://bridge.test", transport=httpx.MockTransport(handle)))


def test_without_an_rpc_url_the_bridge_says_which_token(tmp_path: Path) -> None:
    asked: list[str] = []
    token = {"address": "0x" + "e7" * 20, "symbol": "mUSD", "name": "Mock USD", "decimals": 6}
    relay = _relay({"/v1/token": (200, token)}, asked)
    assert token_of_bridge(relay, data_dir=tmp_path, rpc=None) == MUSD
    assert asked == ["/v1/token"]
    assert not (tmp_path / CACHE_FILE).exists()


def test_a_bridge_that_publishes_no_token_leaves_the_cache_then_the_chain(tmp_path: Path) -> None:
    asked: list[str] = []
    missing = {"type": "about:blank", "title": "Not Found", "status": 404, "detail": "Not Found"}
    types = {"domain": {"chainId": 31337, "verifyingContract": "0xAbC"}}
    relay = _relay({"/v1/token": (404, missing), "/v1/owner-actions/types": (200, types)}, asked)
    with pytest.raises(RemoteCliError) as caught:
        token_of_bridge(relay, data_dir=tmp_path, rpc=None)
    assert str(caught.value) == (
        "the payment token's symbol and decimals are read from the chain once: set "
        "TWIN_BRIDGE_RPC_URL to a JSON-RPC URL of chain 31337 (or run against the dev stack)"
    )
    cached_token(tmp_path, 31337, "0xabc", lambda: Token("USDC", 6))
    assert token_of_bridge(relay, data_dir=tmp_path, rpc=None) == Token("USDC", 6)
    assert asked == ["/v1/token", "/v1/owner-actions/types"] * 2
