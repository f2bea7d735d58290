"""``twin-bridge db upgrade``, ``brand create``, ``brand list`` on a temporary data dir; the
brand's side (``brand offers``, ``accept``, ``decline``, ``limits``) and the model's offer and
revocation against a fake bridge API and a fake chain."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_abi.abi import encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.typed_transactions import TypedTransaction
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from sqlalchemy import inspect
from typer.testing import CliRunner

from bridge.chain.brand_ledger import selector
from bridge.chain.client import FeeData, LogEntry, Receipt
from bridge.cli import brand_offers, remote
from bridge.cli.app import app
from bridge.cli.money import CACHE_FILE
from bridge.client import BridgeHttp
from bridge.domain import eip712
from bridge.domain.times import rfc3339
from bridge.errors import ExecutionRevertedError
from bridge.intake.api_keys import API_KEY_PREFIX, hash_api_key
from bridge.intake.owner_actions import action_types
from bridge.store.engine import make_engine
from bridge.store.repository import Store, brand_by_key_hash

ADDRESS = "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"
CHECKSUMMED = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in ("TWIN_BRIDGE_DATABASE_URL", "TWIN_BRIDGE_RPC_URL", "TWIN_BRIDGE_LEDGER_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TWIN_BRIDGE_DATA_DIR", str(tmp_path / "state"))
    (tmp_path / "state").mkdir()
    tokens = {f"31337:{LEDGER.lower()}": {"symbol": "mUSD", "decimals": 6}}  # as anvil's mock
    (tmp_path / "state" / CACHE_FILE).write_text(json.dumps(tokens), encoding="utf-8")
    return CliRunner()


def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state' / 'bridge.db'}"


def test_db_upgrade_creates_the_default_sqlite_database(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "is up to date" in result.output
    engine = make_engine(db_url(tmp_path))
    try:
        assert {"brands", "usage_events"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_brand_create_prints_the_key_once_and_stores_its_hash(
    runner: CliRunner, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["brand", "create", "--name", "Atelier", "--address", ADDRESS])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith(API_KEY_PREFIX)
    assert len(key) == len(API_KEY_PREFIX) + 43
    store = Store.from_url(db_url(tmp_path))
    try:
        with store.session() as session:
            found = brand_by_key_hash(session, hash_api_key(key))
    finally:
        store.close()
    assert found is not None
    brand, stored_hash = found
    assert (brand.name, brand.address) == ("Atelier", CHECKSUMMED)
    assert stored_hash == hash_api_key(key)
    assert key not in Path(db_url(tmp_path).removeprefix("sqlite:///")).read_bytes().decode(
        "latin-1"
    )

    listing = runner.invoke(app, ["brand", "list"])
    assert listing.exit_code == 0
    assert "Atelier" in listing.stdout
    assert CHECKSUMMED in listing.stdout
    assert key not in listing.stdout


def test_brand_create_refuses_a_taken_name_and_a_bad_address(runner: CliRunner) -> None:
    assert (
        runner.invoke(app, ["brand", "create", "--name", "A", "--address", ADDRESS]).exit_code == 0
    )
    taken = runner.invoke(app, ["brand", "create", "--name", "A", "--address", ADDRESS])
    assert taken.exit_code == 1
    assert "already exists" in taken.output
    bad = runner.invoke(app, ["brand", "create", "--name", "B", "--address", "0x1234"])
    assert bad.exit_code == 2
    assert "'0x1234' is not an Ethereum address" in bad.output


def test_serve_without_a_chain_explains_what_to_set(runner: CliRunner) -> None:
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 2
    assert "TWIN_BRIDGE_RPC_URL" in result.output


def test_invalid_settings_are_reported(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWIN_BRIDGE_RPC_URL", "http://127.0.0.1:8545")
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 2
    assert "rpc_url and ledger_address must be set together" in result.output


def test_worker_needs_an_rpc_url_and_a_ledger(runner: CliRunner) -> None:
    result = runner.invoke(app, ["worker"])
    assert result.exit_code == 2
    assert "the worker needs TWIN_BRIDGE_RPC_URL and TWIN_BRIDGE_LEDGER_ADDRESS" in result.output


# ---------------------------------------------------------------- the brand's and the model's side

LEDGER = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
BRAND_KEY = Account.from_key("0x" + "42" * 32)
MODEL_KEY = Account.from_key("0x" + "43" * 32)
API = "http://bridge.test"
TX_HASH = "0x" + "ab" * 32
DEV_KEYS = {"BRAND_KEY": "0x" + "42" * 32, "MODEL_KEY": "0x" + "43" * 32}
TOKEN = {
    "address": "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
    "symbol": "mUSD",
    "name": "Mock USD",
    "decimals": 6,
}
"""``GET /v1/token`` of a bridge on anvil's mock stablecoin."""


@dataclass
class FakeBridge:
    """The bridge's HTTP API as a table of ``(method, path) -> answers`` (the last repeats), and
    every request it got (method, path, Authorization header, JSON body or None)."""

    answers: dict[tuple[str, str], list[tuple[int, Any]]] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None, Any]] = field(default_factory=list)

    def on(self, method: str, path: str, *answers: tuple[int, Any]) -> None:
        self.answers[(method, path)] = list(answers)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        path = request.url.path
        self.requests.append((request.method, path, request.headers.get("authorization"), body))
        queue = self.answers[(request.method, path)]
        status, answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if callable(answer):
            answer = answer(body)
        return httpx.Response(status, json=answer)


@pytest.fixture
def bridge(monkeypatch: pytest.MonkeyPatch) -> FakeBridge:
    fake = FakeBridge()
    http = functools.partial(BridgeHttp, transport=httpx.MockTransport(fake))
    monkeypatch.setattr(remote, "BridgeHttp", http)
    for name, value in DEV_KEYS.items():
        monkeypatch.setenv(name, value)
    return fake


@dataclass
class FakeTxChain:
    """A dev chain for the brand's own transactions: estimates (or reverts with ``revert``),
    takes the signed transaction, mines it in block 9 with ``logs``."""

    revert: bytes | None = None
    logs: tuple[LogEntry, ...] = ()
    sent: list[dict[str, Any]] = field(default_factory=list)

    def chain_id(self) -> int:
        return 31337

    def pending_nonce(self, address: str) -> int:
        assert address == BRAND_KEY.address
        return 4

    def fee_data(self) -> FeeData:
        return FeeData(base_fee=10**9, priority_fee=10**9)

    def estimate_gas(self, *, sender: str, to: str, data: bytes) -> int:
        if self.revert is not None:
            raise ExecutionRevertedError("http://rpc.test", 3, "execution reverted", self.revert)
        return 50_000

    def send_raw_transaction(self, raw: bytes) -> str:
        tx = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
        self.sent.append(
            {
                "from": Account.recover_transaction(raw),
                "to": to_checksum_address(bytes(tx["to"])),
                "data": "0x" + bytes(tx["data"]).hex(),
                **{k: int(tx[k]) for k in ("chainId", "nonce", "gas", "maxFeePerGas")},
                "tip": int(tx["maxPriorityFeePerGas"]),
            }
        )
        return TX_HASH

    def receipt(self, tx_hash: str) -> Receipt | None:
        return Receipt(tx_hash, 1, 9, "0x" + "99" * 32, 48_000, 2 * 10**9, self.logs)


@pytest.fixture
def chain(monkeypatch: pytest.MonkeyPatch) -> FakeTxChain:
    fake = FakeTxChain()
    monkeypatch.setattr(brand_offers, "Web3ChainClient", lambda urls: fake)
    return fake


def _sent(data: bytes) -> dict[str, Any]:
    """The brand's transaction as the fake chain records it: to the ledger, priced at twice the
    base fee plus the tip, 20 % over the estimate."""
    return {
        "from": BRAND_KEY.address,
        "to": LEDGER,
        "data": "0x" + data.hex(),
        "chainId": 31337,
        "nonce": 4,
        "gas": 60_000,
        "maxFeePerGas": 3 * 10**9,
        "tip": 10**9,
    }


OFFER = {
    "twin_id": 7,
    "version": 2,
    "valid_from": rfc3339(0),
    "valid_until": rfc3339(1_775_044_800),  # 2026-04-01 12:00 UTC
    "max_uses": None,
    "purpose_hash": "0x" + "aa" * 32,
    "consent_hash": "0x" + "cc" * 32,
    "prices": [
        {"usage_type": "video", "usage_type_code": 1, "price": "2500000"},
        {"usage_type": None, "usage_type_code": 9, "price": "1250"},
    ],
    "terms_hash": "0x" + "7e" * 32,
    "expired": False,
    "accept": "/v1/offers/7/2/accept",
}


def test_brand_offers_lists_the_waiting_offers(runner: CliRunner, bridge: FakeBridge) -> None:
    bridge.on("GET", "/v1/token", (200, TOKEN))
    bridge.on("GET", "/v1/brand", (200, {"name": "Atelier", "address": BRAND_KEY.address}))
    capped = {**OFFER, "twin_id": 9, "version": 0, "max_uses": 40, "expired": True}
    bridge.on("GET", "/v1/offers", (200, {"items": [OFFER, capped]}))
    result = runner.invoke(app, ["brand", "offers", "--api", API, "--api-key", "tb_live_k"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "twin 7 version 2: video=2.50, type 9=0.00125 mUSD per use, until 2026-04-01 12:00:00 "
        f"UTC, no cap; terms 0x{'7e' * 32}",
        "twin 9 version 0: video=2.50, type 9=0.00125 mUSD per use, until 2026-04-01 12:00:00 "
        f"UTC, at most 40 uses; terms 0x{'7e' * 32} (expired)",
    ]
    assert [(m, p, auth) for m, p, auth, _ in bridge.requests] == [
        ("GET", "/v1/brand", "Bearer tb_live_k"),
        ("GET", "/v1/offers", "Bearer tb_live_k"),
        ("GET", "/v1/token", "Bearer tb_live_k"),
    ]


def test_brand_offers_says_when_none_waits(runner: CliRunner, bridge: FakeBridge) -> None:
    bridge.on("GET", "/v1/brand", (200, {"name": "Atelier", "address": BRAND_KEY.address}))
    bridge.on("GET", "/v1/offers", (200, {"items": []}))
    result = runner.invoke(app, ["brand", "offers", "--api", API, "--api-key", "tb_live_k"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"no offer waits for Atelier ({BRAND_KEY.address})\n"


def _acceptance(brand: str) -> dict[str, Any]:
    message = {
        "brand": brand,
        "twinId": 7,
        "version": 2,
        "termsHash": "0x" + "7e" * 32,
        "nonce": 0,
        "deadline": 1_772_370_000,
    }
    data = selector("acceptLicense(uint256,uint256,bytes32)") + encode(
        ["uint256", "uint256", "bytes32"], [7, 2, b"\x7e" * 32]
    )
    return {
        "typed_data": eip712.typed_data("AcceptLicense", message, chain_id=31337, ledger=LEDGER),
        "transaction": {"to": LEDGER, "data": "0x" + data.hex()},
    }


def test_brand_accept_signs_the_offer_and_the_bridge_relays_it(
    runner: CliRunner, bridge: FakeBridge
) -> None:
    acceptance = _acceptance(BRAND_KEY.address)
    confirmed = {
        "id": 5,
        "type": "AcceptLicense",
        "status": "confirmed",
        "block_number": 12,
        "tx_hash": TX_HASH,
        "error": None,
    }
    bridge.on("POST", "/v1/offers/7/2/accept", (200, acceptance), (202, confirmed))
    result = runner.invoke(
        app,
        [
            *("brand", "accept", "--twin", "7", "--version", "2", "--api", API),
            *("--api-key", "tb_live_k", "--private-key-env", "BRAND_KEY"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == f"confirmed in block 12, transaction {TX_HASH}\n"
    assert result.stderr == "owner action 5 (AcceptLicense): confirmed\n"
    (_, _, _, first), (_, _, auth, signed) = bridge.requests
    assert first is None
    assert auth == "Bearer tb_live_k"
    typed = acceptance["typed_data"]
    assert signed["message"] == typed["message"]
    recovered = Account.recover_message(
        encode_typed_data(full_message=typed), signature=bytes.fromhex(signed["signature"][2:])
    )
    assert recovered == BRAND_KEY.address


def test_brand_accept_refuses_a_key_of_another_address(
    runner: CliRunner, bridge: FakeBridge
) -> None:
    bridge.on("POST", "/v1/offers/7/2/accept", (200, _acceptance(MODEL_KEY.address)))
    result = runner.invoke(
        app,
        [
            *("brand", "accept", "--twin", "7", "--version", "2", "--api", API),
            *("--api-key", "tb_live_k", "--private-key-env", "BRAND_KEY"),
        ],
    )
    assert result.exit_code == 1
    assert result.stderr == (
        f"the key's address {BRAND_KEY.address} is not the brand's {MODEL_KEY.address}\n"
    )
    assert len(bridge.requests) == 1  # nothing signed was posted


def test_brand_accept_with_rpc_sends_the_brands_own_transaction(
    runner: CliRunner, bridge: FakeBridge, chain: FakeTxChain
) -> None:
    acceptance = _acceptance(BRAND_KEY.address)
    bridge.on("POST", "/v1/offers/7/2/accept", (200, acceptance))
    result = runner.invoke(
        app,
        [
            *("brand", "accept", "--twin", "7", "--version", "2", "--api", API),
            *("--api-key", "tb_live_k", "--private-key-env", "BRAND_KEY", "--rpc", "http://rpc"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == f"accepted twin 7 version 2 in block 9, transaction {TX_HASH}\n"
    data = bytes.fromhex(acceptance["transaction"]["data"][2:])
    assert chain.sent == [_sent(data)]


def test_brand_decline_is_the_brands_own_transaction(
    runner: CliRunner, bridge: FakeBridge, chain: FakeTxChain
) -> None:
    result = runner.invoke(
        app,
        [
            *("brand", "decline", "--twin", "7", "--version", "2", "--rpc", "http://rpc"),
            *("--ledger", LEDGER.lower(), "--private-key-env", "BRAND_KEY"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == f"declined twin 7 version 2 in block 9, transaction {TX_HASH}\n"
    data = selector("declineLicense(uint256,uint256)") + encode(["uint256", "uint256"], [7, 2])
    assert chain.sent == [_sent(data)]
    assert bridge.requests == []  # --ledger given: the bridge is not asked


def test_brand_decline_the_ledger_would_refuse_is_not_sent(
    runner: CliRunner, bridge: FakeBridge, chain: FakeTxChain
) -> None:
    bridge.on("GET", "/v1/owner-actions/types", (200, {"domain": {"verifyingContract": LEDGER}}))
    chain.revert = selector("LicenseNoOffer(uint256,address)") + encode(
        ["uint256", "address"], [7, BRAND_KEY.address]
    )
    result = runner.invoke(
        app,
        [
            *("brand", "decline", "--twin", "7", "--version", "2", "--rpc", "http://rpc"),
            *("--api", API, "--private-key-env", "BRAND_KEY"),
        ],
    )
    assert result.exit_code == 1
    assert result.stderr == (
        "the ledger would refuse declineLicense of twin 7 version 2: "
        f"twin 7 has no offer waiting for {BRAND_KEY.address}\n"
    )
    assert chain.sent == []


LIMITS = {
    "brand": BRAND_KEY.address,
    "per_usage": "50000000000",
    "per_period": "250000000000",
    "spent_in_period": "240000000000",
    "remaining_in_period": "10000000000",
    "period_start": rfc3339(1_772_323_200),  # 2026-03-01 00:00 UTC
    "pending_raise": None,
    "attester": None,
    "chain_time": rfc3339(1_772_366_400),
    "decimals": 6,
}


def test_brand_limits_show(runner: CliRunner, bridge: FakeBridge) -> None:
    bridge.on("GET", "/v1/token", (200, TOKEN))
    attester = "0x000000000000000000000000000000000000A77E"
    raised = {
        **LIMITS,
        "pending_raise": {
            "per_usage": "60000000000",
            "per_period": "300000000000",
            "effective_at": rfc3339(1_772_409_600),
        },
        "attester": attester,
    }
    bridge.on("GET", "/v1/brand/limits", (200, LIMITS), (200, raised))
    args = ["brand", "limits", "show", "--api", API, "--api-key", "tb_live_k"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines() == [
        f"limits of {BRAND_KEY.address}: 50,000.00 mUSD per usage, 250,000.00 mUSD per period",
        "spent since 2026-03-01 00:00:00 UTC: 240,000.00 mUSD, 10,000.00 mUSD left",
        "attester: the bridge's",
    ]
    second = runner.invoke(app, args)
    assert second.stdout.splitlines()[2:] == [
        "raise waiting: 60,000.00 mUSD per usage, 300,000.00 mUSD per period from "
        "2026-03-02 00:00:00 UTC",
        f"attester: {attester}",
    ]


def test_brand_limits_set_reports_what_the_ledger_kept(
    runner: CliRunner, bridge: FakeBridge, chain: FakeTxChain
) -> None:
    kept = encode(["uint256", "uint256", "uint40"], [123_456_780, 999_999_990_000, 1_772_366_460])
    topics = (
        keccak(text="SpendingLimitsSet(address,uint256,uint256,uint40)"),
        bytes(12) + bytes.fromhex(BRAND_KEY.address[2:]),
    )
    chain.logs = (LogEntry(LEDGER, topics, kept, 9, "0x" + "99" * 32, TX_HASH, 0),)
    result = runner.invoke(
        app,
        [
            *("brand", "limits", "set", "--per-usage", "123.456789", "--per-period", "999999.99"),
            *("--rpc", "http://rpc", "--ledger", LEDGER, "--private-key-env", "BRAND_KEY"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "limits set: 123.45678 mUSD per usage, 999,999.99 mUSD per period, in force from "
        f"2026-03-01 12:01:00 UTC in block 9, transaction {TX_HASH}\n"
    )
    data = selector("setSpendingLimits(uint256,uint256)") + encode(
        ["uint256", "uint256"], [123_456_789, 999_999_990_000]
    )
    assert chain.sent == [_sent(data)]


@pytest.mark.parametrize(
    ("per_usage", "message"),
    [
        ("0", "--per-usage '0': a positive amount of mUSD with at most 6 decimals"),
        ("1.0000001", "--per-usage '1.0000001': a positive amount of mUSD with at most 6 decimals"),
        ("ten", "--per-usage 'ten': not an amount of mUSD"),
    ],
)
def test_brand_limits_set_refuses_bad_amounts(
    runner: CliRunner, chain: FakeTxChain, per_usage: str, message: str
) -> None:
    result = runner.invoke(
        app,
        [
            *("brand", "limits", "set", "--per-usage", per_usage, "--per-period", "10"),
            *("--rpc", "http://rpc", "--ledger", LEDGER, "--private-key-env", "BRAND_KEY"),
        ],
    )
    assert result.exit_code == 1
    assert result.stderr == message + "\n"
    assert chain.sent == []


def _owner_action_bridge(bridge: FakeBridge) -> None:
    bridge.on("GET", "/v1/owner-actions/types", (200, action_types(31337, LEDGER)))
    bridge.on("GET", "/v1/token", (200, TOKEN))
    bridge.on(
        "GET",
        f"/v1/accounts/{MODEL_KEY.address}/nonce",
        (200, {"next_nonce": 3, "chain_time_unix": 1_772_366_400}),
    )
    bridge.on(
        "POST",
        "/v1/owner-actions",
        (202, lambda body: {"id": 8, "type": body["type"], "status": "accepted"}),
    )


def _posted_action(bridge: FakeBridge) -> dict[str, Any]:
    """The owner action the model posted, once its signature is checked to be the model's."""
    _, path, _, body = bridge.requests[-1]
    assert path == "/v1/owner-actions"
    types = action_types(31337, LEDGER)
    kind = body["type"]
    typed = {
        "types": types["actions"][kind]["types"],
        "primaryType": kind,
        "domain": types["domain"],
        "message": body["message"],
    }
    signature = bytes.fromhex(body["signature"][2:])
    recovered = Account.recover_message(encode_typed_data(full_message=typed), signature=signature)
    assert recovered == body["signer"] == MODEL_KEY.address
    return dict(body["message"])


def test_model_offer_signs_an_offer_naming_its_owner(runner: CliRunner, bridge: FakeBridge) -> None:
    _owner_action_bridge(bridge)
    result = runner.invoke(
        app,
        [
            *("model", "--api", API, "--private-key-env", "MODEL_KEY", "--no-wait", "offer"),
            *("--twin", "7", "--brand", BRAND_KEY.address.lower(), "--price", "video=2.5"),
            *("--days", "30", "--max-uses", "100", "--purpose", "0x" + "aa" * 32),
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stderr == "owner action 8 (OfferLicense): accepted\n"
    assert _posted_action(bridge) == {
        "owner": MODEL_KEY.address,
        "twinId": 7,
        "terms": {
            "brand": BRAND_KEY.address,
            "validFrom": 0,
            "validUntil": 1_772_366_400 + 30 * 86_400,
            "maxUses": 100,
            "purposeHash": "0x" + "aa" * 32,
            "consentHash": "0x" + "00" * 32,
            "prices": [{"usageType": 1, "price": 2_500_000}],
        },
        "nonce": 3,
        "deadline": 1_772_366_400 + 3600,
    }


def test_model_revoke_names_the_version_it_ends(runner: CliRunner, bridge: FakeBridge) -> None:
    _owner_action_bridge(bridge)
    result = runner.invoke(
        app,
        [
            *("model", "--api", API, "--private-key-env", "MODEL_KEY", "--no-wait", "revoke"),
            *("--twin", "7", "--brand", BRAND_KEY.address, "--version", "4"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert _posted_action(bridge) == {
        "owner": MODEL_KEY.address,
        "twinId": 7,
        "brand": BRAND_KEY.address,
        "version": 4,
        "nonce": 3,
        "deadline": 1_772_366_400 + 3600,
    }
    missing = runner.invoke(
        app,
        ["model", "--api", API, "revoke", "--twin", "7", "--brand", BRAND_KEY.address],
    )
    assert missing.exit_code == 2
    assert "Missing option '--version'" in missing.stderr


# ---------------------------------------------------------------- the model's money

AGENCY = "0x" + "A7" * 20


def _twin(twin_id: int, *, paused: bool = False, payees: list[dict[str, Any]] | None = None) -> Any:
    """A twin of MODEL_KEY's as ``GET /v1/twins`` gives it, licensed to BRAND_KEY's address."""
    return {
        "twin_id": twin_id,
        "metadata_uri": f"ipfs://twin-{twin_id}",
        "pause": {"paused": paused},
        "payees": {"payees": payees or []},
        "licenses": [
            {
                "brand": BRAND_KEY.address,
                "current_version": 0,
                "state": "active",
                "current": {
                    "prices": [{"usage_type": "video", "usage_type_code": 1, "price": "535000000"}],
                    "valid_until": rfc3339(1_775_044_800),  # 2026-04-01 12:00 UTC
                    "uses": 2,
                    "max_uses": None,
                },
            }
        ],
    }


def _money(undistributed: int, distributed: int, claimable: int, unpaid_debt: int) -> Any:
    totals = {
        "undistributed": str(undistributed),
        "distributed": str(distributed),
        "claimable": str(claimable),
        "unpaid_debt": str(unpaid_debt),
    }
    return {"totals": totals}


def _model_money_bridge(bridge: FakeBridge) -> None:
    """Twin 3 (15 % to an agency) accrued 1,070 USD from two paid uses, not yet distributed;
    twin 5 (on the next page) distributed 200 USD, 30 of them the agency's still unpaid, and is
    owed 45.50 USD of debt; MODEL_KEY was paid 170 USD so far."""
    bridge.on("GET", "/v1/owner-actions/types", (200, action_types(31337, LEDGER)))
    bridge.on("GET", "/v1/token", (200, TOKEN))
    next_page = f"/v1/twins?owner={MODEL_KEY.address}&limit=500&after=3"
    bridge.on(
        "GET",
        "/v1/twins",
        (200, {"items": [_twin(3, payees=[{"account": AGENCY, "bps": 1500}])], "next": next_page}),
        (200, {"items": [_twin(5, paused=True)], "next": None}),
    )
    bridge.on("GET", "/v1/twins/3/earnings", (200, _money(1_070_000_000, 0, 0, 0)))
    bridge.on("GET", "/v1/twins/5/earnings", (200, _money(0, 200_000_000, 30_000_000, 45_500_000)))
    bridge.on(
        "GET",
        f"/v1/payees/{MODEL_KEY.address}/earnings",
        (200, {"totals": {"claimable": "0", "paid_out": "170000000"}}),
    )


def test_model_show_gives_each_twins_money_and_what_a_withdrawal_pays(
    runner: CliRunner, bridge: FakeBridge
) -> None:
    _model_money_bridge(bridge)
    result = runner.invoke(app, ["model", "--api", API, "--private-key-env", "MODEL_KEY", "show"])
    assert result.exit_code == 0, result.output
    license_line = (
        f"  {BRAND_KEY.address} version 0 active: video=535.00 mUSD per use, until "
        "2026-04-01 12:00 UTC, uses 2/no cap"
    )
    assert result.stdout.splitlines() == [
        "twin 3  ipfs://twin-3  active",
        f"  royalties shared with {AGENCY} 1500 bps",
        license_line,
        "  accrued 1,070.00 mUSD (held by the twin, not yet distributed), distributed 0.00 mUSD, "
        "claimable 0.00 mUSD, unpaid debt 0.00 mUSD",
        "twin 5  ipfs://twin-5  paused",
        license_line,
        "  accrued 0.00 mUSD (held by the twin, not yet distributed), distributed 200.00 mUSD, "
        "claimable 30.00 mUSD, unpaid debt 45.50 mUSD",
        f"{MODEL_KEY.address}: claimable 0.00 mUSD, your share of the accrued 909.50 mUSD, paid "
        "out 170.00 mUSD so far; `twin-bridge model withdraw` pays 909.50 mUSD",
    ]


def _show(runner: CliRunner, bridge: FakeBridge, args: list[str]) -> Any:
    """``args`` run against a fresh model's money on the fake bridge."""
    bridge.answers.clear()
    _model_money_bridge(bridge)
    return runner.invoke(app, args)


def test_model_options_may_follow_the_command(runner: CliRunner, bridge: FakeBridge) -> None:
    before = _show(
        runner, bridge, ["model", "--api", API, "--private-key-env", "MODEL_KEY", "show"]
    )
    after = _show(runner, bridge, ["model", "show", "--api", API, "--private-key-env=MODEL_KEY"])
    mixed = _show(
        runner,
        bridge,
        ["model", "--private-key-env", "MODEL_KEY", "show", "--api", API, "--no-wait"],
    )
    assert before.exit_code == after.exit_code == mixed.exit_code == 0, after.output
    assert after.stdout == mixed.stdout == before.stdout
    assert before.stdout.startswith("twin 3  ipfs://twin-3  active\n")


def _running_dev_stack(data_dir: Path, api: str) -> Any:
    """A dev stack as the CLI sees it: a ready ``dev.json`` and its ``dev.lock`` held."""
    import fcntl

    data_dir.mkdir(parents=True, exist_ok=True)
    details = {
        "ready": True,
        "api_url": api,
        "rpc_url": "http://127.0.0.1:1",
        "chain_id": 31337,
        "deployment": str(data_dir / "deployment.json"),
    }
    (data_dir / "dev.json").write_text(json.dumps(details), encoding="utf-8")
    lock = (data_dir / "dev.lock").open("a+", encoding="utf-8")
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return lock


def test_model_talks_to_the_running_dev_stack_unless_told_otherwise(
    runner: CliRunner, bridge: FakeBridge, tmp_path: Path
) -> None:
    args = ["model", "show", "--private-key-env", "MODEL_KEY"]
    no_stack = runner.invoke(app, ["model", "--dev", "show"])
    assert (no_stack.exit_code, no_stack.stderr) == (
        2,
        f"no Twin Bridge dev stack is running from {tmp_path / 'state'}: start one with `make "
        "run` (or `twin-bridge dev`) with the same TWIN_BRIDGE_DATA_DIR\n",
    )
    lock = _running_dev_stack(tmp_path / "state", API)
    try:
        found = _show(runner, bridge, args)
        asked = _show(runner, bridge, [*args, "--dev"])
    finally:
        lock.close()
    assert found.exit_code == asked.exit_code == 0, found.output
    assert found.stdout == asked.stdout
    assert found.stdout.startswith("twin 3  ipfs://twin-3  active\n")
    assert found.stderr == (
        f"using the dev stack of {tmp_path / 'state' / 'dev.json'} (API {API}, chain "
        "http://127.0.0.1:1)\n"
    )
    stopped = _show(runner, bridge, args)  # the lock is released: the stack is gone
    assert (stopped.exit_code, stopped.stderr) == (0, "")


PAYOUT_REFUSED = {
    "type": "urn:twin-bridge:problem:ledger-refuses",
    "title": "Owner action refused",
    "status": 422,
    "detail": f"the ledger would refuse this Payout: PayoutNothingToPay(payee={MODEL_KEY.address})",
}


def test_model_withdraw_distributes_every_owned_twin_and_tells_what_was_paid(
    runner: CliRunner, bridge: FakeBridge
) -> None:
    _model_money_bridge(bridge)
    confirmed = {
        "id": 9,
        "type": "Payout",
        "status": "confirmed",
        "message": {"payee": MODEL_KEY.address, "twinIds": ["3", "5"]},
        "block_number": 12,
        "tx_hash": TX_HASH,
        "error": None,
    }
    bridge.on("POST", "/v1/owner-actions", (202, {**confirmed, "status": "accepted"}))
    bridge.on("GET", "/v1/owner-actions/9", (200, confirmed))
    bridge.on("GET", "/v1/index/status", (200, {"block_number": 11}), (200, {"block_number": 12}))
    payout = {"payee": MODEL_KEY.address, "amount": "909500000"}
    bridge.on("GET", f"/v1/payees/{MODEL_KEY.address}/payouts", (200, {"items": [payout]}))
    args = ["model", "--api", API, "--private-key-env", "MODEL_KEY"]

    result = runner.invoke(app, [*args, "withdraw"])

    assert result.exit_code == 0, result.output
    assert result.stderr == "owner action 9 (Payout): accepted\n"
    assert result.stdout == (
        f"confirmed in block 12, transaction {TX_HASH}\npaid 909.50 mUSD to {MODEL_KEY.address}\n"
    )
    posted = [b for m, p, _, b in bridge.requests if (m, p) == ("POST", "/v1/owner-actions")]
    assert posted == [{"type": "Payout", "payee": MODEL_KEY.address, "twinIds": [3, 5]}]

    followed = runner.invoke(app, [*args, "status", "9"])
    assert followed.exit_code == 0, followed.output
    assert followed.stdout == result.stdout

    _model_money_bridge(bridge)  # the twins' pages anew
    bridge.on("POST", "/v1/owner-actions", (422, PAYOUT_REFUSED))
    again = runner.invoke(app, [*args, "withdraw"])
    assert again.exit_code == 0, again.output
    assert again.stdout == (
        f"nothing to pay to {MODEL_KEY.address}: nothing is claimable and twins 3, 5 hold no "
        "royalties\n"
    )
    one = runner.invoke(app, [*args, "withdraw", "--twin", "3"])
    assert one.stdout == (
        f"nothing to pay to {MODEL_KEY.address}: nothing is claimable and twin 3 holds no "
        "royalties\n"
    )
    bridge.on("GET", "/v1/twins", (200, {"items": [], "next": None}))
    none = runner.invoke(app, [*args, "withdraw"])
    assert none.stdout == (
        f"nothing to pay to {MODEL_KEY.address}: nothing is claimable, and the bridge's index "
        "knows no twin of it (--twin names one)\n"
    )
    assert [b["twinIds"] for m, p, _, b in bridge.requests if m == "POST"][1:] == [[3, 5], [3], []]


def test_model_status_tells_where_an_action_is_and_refuses_an_unknown_one(
    runner: CliRunner, bridge: FakeBridge
) -> None:
    submitted = {"id": 4, "type": "OfferLicense", "status": "submitted", "tx_hash": TX_HASH}
    bridge.on("GET", "/v1/owner-actions/4", (200, submitted))
    bridge.on(
        "GET",
        "/v1/owner-actions/99",
        (404, {"type": "urn:twin-bridge:problem:not-found", "detail": "no owner action 99"}),
    )
    args = ["model", "--api", API, "--no-wait", "status"]
    result = runner.invoke(app, [*args, "4"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"owner action 4 (OfferLicense) is submitted in transaction {TX_HASH}\n"
    unknown = runner.invoke(app, [*args, "99"])
    assert unknown.exit_code == 1
    assert unknown.stderr == "the bridge refused (404): no owner action 99\n"


def test_brand_escrow_shows_the_account_a_pending_withdrawal_and_the_wallet(
    runner: CliRunner, bridge: FakeBridge
) -> None:
    bridge.on("GET", "/v1/token", (200, TOKEN))
    token = "0x" + "70" * 20
    account = {
        "brand": BRAND_KEY.address,
        "escrow": "1250500000",
        "debt": "40000000",
        "debt_reserve": "0",
        "pending_withdrawal": "0",
        "withdrawal_unlocks_at": None,
        "withdrawal_lapses_at": None,
        "withdrawable": False,
        "token": token,
        "wallet_balance": "5000000000",
        "allowance": "0",
        "permit": True,
        "chain_id": 31337,
        "chain_time": rfc3339(1_772_366_400),  # 2026-03-01 12:00 UTC
        "decimals": 6,
    }
    pending = {
        **account,
        "pending_withdrawal": "1000000000",
        "withdrawal_unlocks_at": rfc3339(1_775_476_800),  # 2026-04-06 12:00 UTC
        "withdrawal_lapses_at": rfc3339(1_776_081_600),  # 2026-04-13 12:00 UTC
        "permit": False,
        "allowance": "7500000",
    }
    bridge.on(
        "GET",
        "/v1/brand/escrow",
        (200, account),
        (200, pending),
        (200, {**pending, "chain_time": rfc3339(1_775_476_800), "withdrawable": True}),
        (200, {**pending, "chain_time": rfc3339(1_776_081_600)}),
    )
    args = ["brand", "escrow", "--api", API, "--api-key", "tb_live_k"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines() == [
        f"escrow of {BRAND_KEY.address}: 1,250.50 mUSD; debt 40.00 mUSD (reserve 0.00 mUSD) at "
        "2026-03-01 12:00:00 UTC",
        "no withdrawal pending",
        f"wallet: 5,000.00 mUSD of the payment token {token}; deposits by permit",
    ]
    window = "unlocks at 2026-04-06 12:00:00 UTC, lapses at 2026-04-13 12:00:00 UTC"
    wallet = (
        f"wallet: 5,000.00 mUSD of the payment token {token}; the ledger may take 7.50 mUSD of it"
    )
    lines = [runner.invoke(app, args).stdout.splitlines()[1:] for _ in range(3)]
    assert lines == [
        [f"withdrawal pending: 1,000.00 mUSD, {window}; locked until then", wallet],
        [
            f"withdrawal pending: 1,000.00 mUSD, {window}; withdrawable now (`twin-bridge brand "
            "withdraw`)",
            wallet,
        ],
        [f"withdrawal pending: 1,000.00 mUSD, {window}; lapsed: request it again", wallet],
    ]
    assert {auth for _, _, auth, _ in bridge.requests} == {"Bearer tb_live_k"}


# ---------------------------------------------------------------- secrets are never echoed

RAW_KEY = DEV_KEYS["BRAND_KEY"]


def _outputs(result: Any) -> str:
    return f"{result.stdout}{result.stderr}{result.exception or ''}"


@pytest.mark.parametrize(
    "given", [RAW_KEY, RAW_KEY[2:], f"{RAW_KEY} "], ids=["0x", "bare", "space"]
)
def test_a_key_given_to_private_key_env_is_refused_without_being_printed(
    runner: CliRunner, bridge: FakeBridge, chain: FakeTxChain, given: str
) -> None:
    bridge.on("GET", "/v1/owner-actions/types", (200, action_types(31337, LEDGER)))
    runs = {
        "brand": runner.invoke(
            app,
            [
                *("brand", "deposit", "10", "--rpc", "http://rpc", "--ledger", LEDGER),
                *("--private-key-env", given),
            ],
        ),
        "model": runner.invoke(app, ["model", "--api", API, "--private-key-env", given, "show"]),
    }
    for role, result in runs.items():
        assert result.exit_code == 1
        assert result.stderr == (
            "--private-key-env takes the name of an environment variable holding the key (e.g. "
            f"{role.upper()}_KEY), not the key itself; the value given is not repeated here\n"
        )
        assert RAW_KEY[2:].lower() not in _outputs(result).lower()
    assert chain.sent == []


def test_a_keystore_password_or_key_in_the_wrong_place_is_never_printed(
    runner: CliRunner, bridge: FakeBridge, chain: FakeTxChain, tmp_path: Path
) -> None:
    password = "correct horse battery staple"  # noqa: S105 - a test keystore's
    keystore = tmp_path / "brand.json"
    keystore.write_text(
        json.dumps(Account.encrypt(bytes.fromhex(RAW_KEY[2:]), password)), encoding="utf-8"
    )
    wrong = tmp_path / "wrong-password"
    wrong.write_text("tr0ub4dor&3\n", encoding="utf-8")
    deposit = ["brand", "deposit", "10", "--rpc", "http://rpc", "--ledger", LEDGER]

    def run(*key: str) -> Any:
        return runner.invoke(app, [*deposit, *key])

    password_as_file = run("--keystore", str(keystore), "--password-file", password)
    key_as_keystore = run("--keystore", RAW_KEY, "--password-file", str(wrong))
    wrong_password = run("--keystore", str(keystore), "--password-file", str(wrong))
    assert [r.exit_code for r in (password_as_file, key_as_keystore, wrong_password)] == [1] * 3
    for option, result in (("--password-file", password_as_file), ("--keystore", key_as_keystore)):
        assert result.stderr == (
            f"{option} names no readable file; the value given is not repeated here (it may be "
            "a secret typed in the wrong place)\n"
        )
    assert wrong_password.stderr.startswith(f"brand key: cannot decrypt keystore {keystore}")
    created = tmp_path / "new.json"
    new_keystore = runner.invoke(
        app, ["keystore", "new", "--out", str(created), "--password-file", password]
    )
    assert new_keystore.exit_code == 2
    assert new_keystore.stderr == password_as_file.stderr
    assert not created.exists()
    for result in (password_as_file, key_as_keystore, wrong_password, new_keystore):
        text = _outputs(result)
        assert password not in text
        assert "tr0ub4dor" not in text
        assert RAW_KEY[2:] not in text
    assert chain.sent == []
