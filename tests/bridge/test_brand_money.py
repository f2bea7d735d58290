"""A brand's money on the ledger, end to end on anvil.

``twin-bridge brand withdraw-request``, ``withdraw`` and ``deposit`` are the brand's own
transactions and print what the ledger recorded: the request's unlock and lapse times, the amount
withdrawn, and of a deposit what repaid debt and what became escrow (with an EIP-2612 permit on the
world's mock stablecoin, with ``approve`` then ``deposit`` on a token without one). The escrow
routes the dashboard signs with (``GET /v1/brand/escrow`` and the transactions of the deposit, the
withdrawal request and the withdrawal) answer from the chain and give calldata the ledger takes
from the brand's address."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from bridge.api import create_app
from bridge.chain.brand_ledger import (
    deposit_calldata,
    deposit_with_permit_calldata,
    request_withdrawal_calldata,
    withdraw_escrow_calldata,
)
from bridge.chain.deploy import deploy_contract, deploy_ledger
from bridge.chain.escrow import approve_calldata, utc
from bridge.chain.toolchain import load_artifact
from bridge.cli.app import app
from bridge.cli.money import CACHE_FILE, Token
from bridge.devstack.demo import dev_account
from bridge.domain.codec import Usage
from bridge.domain.times import rfc3339
from bridge.settings import Settings
from bridge.store.repository import Store
from bridge.testing import AnvilChain, settle
from bridge.testing.world import ESCROW_PER_BRAND, NOTICE_PERIOD, USD, WORLD_CONFIG, advance

from .conftest import register_brand

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def anvil_chain(anvil: AnvilChain) -> AnvilChain:
    return anvil


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    for name in ("TWIN_BRIDGE_RPC_URL", "TWIN_BRIDGE_LEDGER_ADDRESS", "TWIN_BRIDGE_API_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TWIN_BRIDGE_DATA_DIR", str(tmp_path / "state"))
    return CliRunner()


def musd(amount: int) -> str:
    """``amount`` base units of the mock stablecoin as the commands show it."""
    return Token("mUSD", 6).show(amount)


def _dev_key(address: str) -> str:
    """The well-known dev key of one of anvil's accounts."""
    index = next(i for i in range(41) if dev_account(i).address == address)
    return "0x" + bytes(dev_account(index).key).hex()


def _mined(chain: AnvilChain, number: int | None = None) -> str:
    """How the commands name a block (default: the latest) and its only transaction."""
    block = chain.w3.eth.get_block("latest" if number is None else number)
    [tx] = block["transactions"]
    assert isinstance(tx, bytes)
    return f"in block {block['number']}, transaction 0x{tx.hex()}"


def _brand_cli(
    runner: CliRunner, chain: AnvilChain, brand: str, *args: str, ledger: str | None = None
) -> Any:
    ledger = ledger or chain.world.ledger.address
    return runner.invoke(
        app,
        ["brand", *args, "--rpc", chain.url, "--ledger", ledger, "--private-key-env", "BRAND_KEY"],
        env={"BRAND_KEY": _dev_key(brand)},
    )


def test_a_brand_takes_its_escrow_back_then_a_deposit_repays_its_debt_first(
    snapshot: AnvilChain, runner: CliRunner
) -> None:
    world, w3 = snapshot.world, snapshot.w3
    ledger, token = world.ledger, world.token
    brand = world.brands[1]
    claim_window = ledger.functions.CLAIM_WINDOW().call()

    requested = _brand_cli(runner, snapshot, brand, "withdraw-request", "100000000")
    assert requested.exit_code == 0, requested.output
    unlocks_at = snapshot.now() + NOTICE_PERIOD
    assert requested.stdout == (
        f"withdrawal of 100,000,000.00 mUSD requested for {brand}: it unlocks at {utc(unlocks_at)} "
        f"and may be withdrawn until {utc(unlocks_at + claim_window)}, {_mined(snapshot)}\n"
    )
    assert ledger.functions.brandAccount(brand).call()[3:] == (
        ESCROW_PER_BRAND,
        unlocks_at,
        unlocks_at + claim_window,
    )

    early = _brand_cli(runner, snapshot, brand, "withdraw")
    assert early.exit_code == 1
    assert early.stderr == (
        f"{brand} cannot withdraw escrow now: the withdrawal unlocks at {utc(unlocks_at)}, after "
        "the notice period\n"
    )

    advance(w3, NOTICE_PERIOD)
    withdrawn = _brand_cli(runner, snapshot, brand, "withdraw")
    assert withdrawn.exit_code == 0, withdrawn.output
    assert withdrawn.stdout == (
        f"withdrew 100,000,000.00 mUSD from the escrow of {brand} {_mined(snapshot)}\n"
    )
    assert ledger.functions.brandAccount(brand).call() == (0, 0, 0, 0, 0, 0)
    assert token.functions.balanceOf(brand).call() == ESCROW_PER_BRAND
    again = _brand_cli(runner, snapshot, brand, "withdraw")
    assert again.exit_code == 1
    assert again.stderr == (
        f"{brand} cannot withdraw escrow now: no escrow withdrawal is pending; request one first\n"
    )

    # a use settled with no escrow left is paid to the twin as debt of the brand
    twin = world.twin_ids[0]
    usage_type, price = min(world.licenses[twin, 1].prices.items())
    usage = Usage(world.next_usage_id, twin, snapshot.now() - 60, 1, usage_type)
    world.next_usage_id += 1
    settle(world, [(1, usage)])
    assert ledger.functions.brandAccount(brand).call()[:2] == (0, price)

    deposited = _brand_cli(runner, snapshot, brand, "deposit", "2500")
    assert deposited.exit_code == 0, deposited.output
    assert deposited.stdout == (
        f"deposited 2,500.00 mUSD for {brand}: {musd(2500 * USD - price)} to escrow, "
        f"{musd(price)} to debt, {_mined(snapshot)}\n"
    )
    assert ledger.functions.brandAccount(brand).call()[:2] == (2500 * USD - price, 0)
    assert token.functions.nonces(brand).call() == 1  # one permit, no approve transaction
    assert token.functions.allowance(brand, ledger.address).call() == 0

    poor = _brand_cli(runner, snapshot, world.brands[2], "deposit", "0.5")
    assert poor.exit_code == 1
    assert poor.stderr == (
        f"{world.brands[2]} holds 0.00 mUSD of the payment token {token.address}, less than "
        "the 0.50 mUSD to deposit\n"
    )


def test_a_deposit_in_a_token_without_permit_approves_the_ledger_first(
    snapshot: AnvilChain, runner: CliRunner, tmp_path: Path
) -> None:
    world, w3 = snapshot.world, snapshot.w3
    admin = w3.eth.accounts[0]
    plain = deploy_contract(w3, load_artifact("ReentrantToken"), sender=admin)
    other = deploy_ledger(w3, sender=admin, config=WORLD_CONFIG, token=plain.address).ledger
    brand = world.brands[2]
    w3.eth.wait_for_transaction_receipt(
        plain.functions.mint(brand, 300 * 10**18).transact({"from": brand})  # 18 decimals
    )

    result = _brand_cli(runner, snapshot, brand, "deposit", "299.999999", ledger=other.address)

    assert result.exit_code == 0, result.output
    latest = w3.eth.get_block("latest")["number"]
    assert result.stdout.splitlines() == [
        f"approved the ledger to take 299.999999 RE {_mined(snapshot, latest - 1)}",
        f"deposited 299.999999 RE for {brand}: 299.999999 RE to escrow, 0.00 RE to debt, "
        f"{_mined(snapshot)}",
    ]  # the token's own symbol and decimals, read from the chain and kept per ledger
    cached = json.loads((tmp_path / "state" / CACHE_FILE).read_text(encoding="utf-8"))
    assert cached[f"31337:{other.address.lower()}"] == {"symbol": "RE", "decimals": 18}
    assert other.functions.brandAccount(brand).call()[0] == 299_999_999 * 10**12
    assert plain.functions.allowance(brand, other.address).call() == 0
    assert plain.functions.balanceOf(brand).call() == 10**12


# ---------------------------------------------------------------- the escrow routes


@pytest.fixture
def escrow_api(snapshot: AnvilChain, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The API on the anvil's ledger, and the API key of the world's first brand."""
    settings = Settings(
        data_dir=tmp_path / "data",
        rpc_url=snapshot.url,
        ledger_address=snapshot.world.ledger.address,
    )
    store = Store.from_url(settings.resolved_database_url)
    with TestClient(create_app(settings, store=store)) as client:
        _, key = register_brand(store, "Atelier", snapshot.world.brands[0])
        yield client, {"Authorization": f"Bearer {key}"}
    store.close()


def _send(chain: AnvilChain, sender: str, tx: dict[str, str]) -> None:
    sent: Any = {"from": sender, "to": tx["to"], "data": tx["data"]}
    receipt = chain.w3.eth.wait_for_transaction_receipt(chain.w3.eth.send_transaction(sent))
    assert receipt["status"] == 1


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def test_the_escrow_routes_read_the_chain_and_give_the_brands_transactions(
    snapshot: AnvilChain, escrow_api: tuple[TestClient, dict[str, str]]
) -> None:
    client, auth = escrow_api
    world = snapshot.world
    ledger, token = world.ledger.address, world.token.address
    brand = world.brands[0]
    claim_window = world.ledger.functions.CLAIM_WINDOW().call()
    expected = {
        "brand": brand,
        "escrow": str(ESCROW_PER_BRAND),
        "debt": "0",
        "debt_reserve": "0",
        "pending_withdrawal": "0",
        "withdrawal_unlocks_at": None,
        "withdrawal_lapses_at": None,
        "withdrawable": False,
        "token": token,
        "wallet_balance": "0",
        "allowance": "0",
        "permit": True,
        "chain_id": 31337,
        "chain_time": rfc3339(snapshot.now()),
        "decimals": 6,
    }
    assert client.get("/v1/brand/escrow", headers=auth).json() == expected
    assert client.get("/v1/brand/escrow").status_code == 401

    # a deposit: approve and deposit, or the permit to sign; signed, one depositWithPermit
    snapshot.w3.eth.wait_for_transaction_receipt(
        world.token.functions.mint(brand, 250 * USD).transact({"from": brand})
    )
    offered = client.post("/v1/brand/escrow/deposit", headers=auth, json={"amount": "250000000"})
    assert offered.status_code == 200, offered.text
    answer = offered.json()
    assert answer["transactions"] == [
        {"to": token, "data": _hex(approve_calldata(ledger, 250 * USD))},
        {"to": ledger, "data": _hex(deposit_calldata(brand, 250 * USD))},
    ]
    permit = answer["permit"]
    assert permit["domain"] == {
        "name": "Mock USD",
        "version": "1",
        "chainId": 31337,
        "verifyingContract": token,
    }
    assert permit["message"] == {
        "owner": brand,
        "spender": ledger,
        "value": "250000000",
        "nonce": "0",
        "deadline": str(snapshot.now() + 3600),
    }
    signature = bytes(Account.sign_typed_data(_dev_key(brand), full_message=permit).signature)
    deadline = int(permit["message"]["deadline"])
    signed = client.post(
        "/v1/brand/escrow/deposit",
        headers=auth,
        json={"amount": 250 * USD, "permit": {"deadline": deadline, "signature": _hex(signature)}},
    ).json()
    data = deposit_with_permit_calldata(brand, 250 * USD, deadline=deadline, signature=signature)
    assert signed == {"permit": None, "transactions": [{"to": ledger, "data": _hex(data)}]}
    _send(snapshot, brand, signed["transactions"][0])
    assert world.ledger.functions.brandAccount(brand).call()[0] == ESCROW_PER_BRAND + 250 * USD

    # a withdrawal request, refused until it unlocks, then withdrawn
    request = client.post(
        "/v1/brand/escrow/withdrawal-request", headers=auth, json={"amount": 100 * USD}
    ).json()
    assert request == {
        "permit": None,
        "transactions": [{"to": ledger, "data": _hex(request_withdrawal_calldata(100 * USD))}],
    }
    _send(snapshot, brand, request["transactions"][0])
    unlocks_at = snapshot.now() + NOTICE_PERIOD
    assert client.get("/v1/brand/escrow", headers=auth).json() == {
        **expected,
        "escrow": str(ESCROW_PER_BRAND + 250 * USD),
        "pending_withdrawal": str(100 * USD),
        "withdrawal_unlocks_at": rfc3339(unlocks_at),
        "withdrawal_lapses_at": rfc3339(unlocks_at + claim_window),
        "chain_time": rfc3339(snapshot.now()),
    }
    locked = client.post("/v1/brand/escrow/withdrawal", headers=auth)
    assert locked.status_code == 409
    assert locked.json()["type"] == "urn:twin-bridge:problem:no-withdrawal"
    assert locked.json()["detail"] == (
        f"the withdrawal unlocks at {utc(unlocks_at)}, after the notice period"
    )
    advance(snapshot.w3, NOTICE_PERIOD)
    assert client.get("/v1/brand/escrow", headers=auth).json()["withdrawable"] is True
    withdrawal = client.post("/v1/brand/escrow/withdrawal", headers=auth).json()
    assert withdrawal == {
        "permit": None,
        "transactions": [{"to": ledger, "data": _hex(withdraw_escrow_calldata())}],
    }
    _send(snapshot, brand, withdrawal["transactions"][0])
    assert world.token.functions.balanceOf(brand).call() == 100 * USD
    assert client.get("/v1/brand/escrow", headers=auth).json()["escrow"] == str(
        ESCROW_PER_BRAND + 150 * USD
    )

    bad = client.post("/v1/brand/escrow/deposit", headers=auth, json={"amount": "0"})
    assert bad.status_code == 422
    assert [e["pointer"] for e in bad.json()["errors"]] == ["/body/amount"]
