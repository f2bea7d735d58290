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
from bridge.client import BridgeHttp
from bridge.domain import eip712
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
    "valid_from": 0,
    "valid_until": 1_775_044_800,  # 2026-04-01 12:00 UTC
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
    bridge.on("GET", "/v1/brand", (200, {"name": "Atelier", "address": BRAND_KEY.address}))
    capped = {**OFFER, "twin_id": 9, "version": 0, "max_uses": 40, "expired": True}
    bridge.on("GET", "/v1/offers", (200, {"items": [OFFER, capped]}))
    result = runner.invoke(app, ["brand", "offers", "--api", API, "--api-key", "tb_live_k"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "twin 7 version 2: video=2.50, type 9=0.00125 USD per use, until 2026-04-01 12:00:00 "
        f"UTC, no cap; terms 0x{'7e' * 32}",
        "twin 9 version 0: video=2.50, type 9=0.00125 USD per use, until 2026-04-01 12:00:00 "
        f"UTC, at most 40 uses; terms 0x{'7e' * 32} (expired)",
    ]
    assert [(m, p, auth) for m, p, auth, _ in bridge.requests] == [
        ("GET", "/v1/brand", "Bearer tb_live_k"),
        ("GET", "/v1/offers", "Bearer tb_live_k"),
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
        f"LicenseNoOffer(twinId=7, brand={BRAND_KEY.address})\n"
    )
    assert chain.sent == []


LIMITS = {
    "brand": BRAND_KEY.address,
    "per_usage": "50000000000",
    "per_period": "250000000000",
    "spent_in_period": "240000000000",
    "remaining_in_period": "10000000000",
    "period_start": 1_772_323_200,  # 2026-03-01 00:00 UTC
    "pending_raise": None,
    "attester": None,
    "chain_time": 1_772_366_400,
    "decimals": 6,
}


def test_brand_limits_show(runner: CliRunner, bridge: FakeBridge) -> None:
    attester = "0x000000000000000000000000000000000000A77E"
    raised = {
        **LIMITS,
        "pending_raise": {
            "per_usage": "60000000000",
            "per_period": "300000000000",
            "effective_at": 1_772_409_600,
        },
        "attester": attester,
    }
    bridge.on("GET", "/v1/brand/limits", (200, LIMITS), (200, raised))
    args = ["brand", "limits", "show", "--api", API, "--api-key", "tb_live_k"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines() == [
        f"limits of {BRAND_KEY.address}: 50,000.00 USD per usage, 250,000.00 USD per period",
        "spent since 2026-03-01 00:00:00 UTC: 240,000.00 USD, 10,000.00 USD left",
        "attester: the bridge's",
    ]
    second = runner.invoke(app, args)
    assert second.stdout.splitlines()[2:] == [
        "raise waiting: 60,000.00 USD per usage, 300,000.00 USD per period from "
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
        "limits set: 123.45678 USD per usage, 999,999.99 USD per period, in force from "
        f"2026-03-01 12:01:00 UTC in block 9, transaction {TX_HASH}\n"
    )
    data = selector("setSpendingLimits(uint256,uint256)") + encode(
        ["uint256", "uint256"], [123_456_789, 999_999_990_000]
    )
    assert chain.sent == [_sent(data)]


@pytest.mark.parametrize(
    ("per_usage", "message"),
    [
        ("0", "--per-usage '0': a positive amount with at most 6 decimals"),
        ("1.0000001", "--per-usage '1.0000001': a positive amount with at most 6 decimals"),
        ("ten", "--per-usage 'ten': not an amount in USD"),
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
    bridge.on(
        "GET",
        f"/v1/accounts/{MODEL_KEY.address}/nonce",
        (200, {"next_nonce": 3, "chain_time": 1_772_366_400}),
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
