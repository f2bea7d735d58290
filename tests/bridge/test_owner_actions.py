"""Owner actions relayed by the bridge, against a real anvil and the deployed ledger: a model signs
with eth-account (or through an ERC-1271 wallet), the API checks the action off chain and stores
it, the settlement worker sends it through the relayer, and its status follows the transaction.
Every refusal is a clear 4xx that stores nothing and sends nothing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from web3 import Web3
from web3.logs import DISCARD

from bridge.api import create_app
from bridge.chain.client import Web3ChainClient
from bridge.chain.deploy import deploy_contract
from bridge.chain.signers import load_signer
from bridge.chain.toolchain import load_artifact
from bridge.devstack.demo import dev_account
from bridge.domain import eip712
from bridge.intake.owner_actions import ActionVerifier
from bridge.settings import Settings
from bridge.settlement.worker import SettlementWorker, WorkerConfig
from bridge.store.models import OwnerAction
from bridge.store.repository import Store
from bridge.testing import AnvilChain, World
from bridge.testing.world import FIRST_MODEL_ACCOUNT

pytestmark = pytest.mark.integration

RELAYER_KEY = "0x" + keccak(text="twin-bridge owner action test relayer").hex()
BYTES32_A = "0x" + "aa" * 32
BYTES32_B = "0x" + "bb" * 32


Chain = AnvilChain


@pytest.fixture(scope="module")
def anvil_chain(anvil: AnvilChain) -> AnvilChain:
    anvil.fund(Account.from_key(RELAYER_KEY).address)
    return anvil


@dataclass
class Relay:
    chain: Chain
    store: Store
    api: TestClient

    @property
    def world(self) -> World:
        return self.chain.world

    @property
    def ledger(self) -> Any:
        return self.chain.world.ledger

    def now(self) -> int:
        return int(self.chain.w3.eth.get_block("latest")["timestamp"])

    def model(self, twin_id: int) -> LocalAccount:
        account = dev_account(FIRST_MODEL_ACCOUNT + self.world.twin_ids.index(twin_id))
        assert self.ledger.functions.ownerOf(twin_id).call() == account.address
        return account

    def sign(
        self, kind: str, message: dict[str, Any], key: LocalAccount, signer: str | None = None
    ) -> dict[str, Any]:
        data = eip712.typed_data(
            kind, message, chain_id=self.chain.w3.eth.chain_id, ledger=self.ledger.address
        )
        signature = Account.sign_typed_data(key.key, full_message=data).signature
        return {
            "type": kind,
            "signer": signer or key.address,
            "message": message,
            "signature": "0x" + bytes(signature).hex(),
        }

    def post(self, body: dict[str, Any]) -> Any:
        return self.api.post("/v1/owner-actions", json=body)

    def stored(self) -> int:
        with self.store.session() as session:
            return int(session.scalar(select(func.count()).select_from(OwnerAction)) or 0)

    def relayer_nonce(self) -> int:
        return int(self.chain.w3.eth.get_transaction_count(Account.from_key(RELAYER_KEY).address))

    def worker(self) -> SettlementWorker:
        client = Web3ChainClient([self.chain.url], timeout=5, backoff=0)
        chain_id = client.chain_id()
        return SettlementWorker(
            store=self.store,
            chain=client,
            attester=load_signer(
                "attester", chain_id=chain_id, private_key="0x" + self.world.attester.key.hex()
            ),
            relayer=load_signer("relayer", chain_id=chain_id, private_key=RELAYER_KEY),
            config=WorkerConfig(ledger=self.ledger.address, confirmations=1, max_age=timedelta(0)),
        )

    def status(self, action_id: int) -> dict[str, Any]:
        response = self.api.get(f"/v1/owner-actions/{action_id}")
        assert response.status_code == 200
        return dict(response.json())


@pytest.fixture
def relay(snapshot: Chain, store: Store, tmp_path: Path) -> Iterator[Relay]:
    settings = Settings(
        data_dir=tmp_path / "data",
        rpc_url=snapshot.url,
        ledger_address=snapshot.world.ledger.address,
    )
    verifier = ActionVerifier(Web3ChainClient([snapshot.url]), snapshot.world.ledger.address)
    app = create_app(settings, store=store, actions=verifier)
    with TestClient(app) as api:
        yield Relay(snapshot, store, api)


def _terms(
    relay: Relay, brand: str, *, prices: list[dict[str, int]] | None = None
) -> dict[str, Any]:
    return {
        "brand": brand,
        "validFrom": 0,
        "validUntil": relay.now() + 90 * 24 * 3600,
        "maxUses": 500,
        "purposeHash": BYTES32_A,
        "consentHash": BYTES32_B,
        "prices": prices
        or [{"usageType": 1, "price": 4_000_000}, {"usageType": 4, "price": 250_000}],
    }


def _new_brand() -> str:
    return Web3.to_checksum_address("0x" + "b7" * 20)


def test_types_and_nonce_endpoints_publish_what_a_wallet_signs(relay: Relay) -> None:
    answer = relay.api.get("/v1/owner-actions/types").json()
    assert answer["domain"] == {
        "name": "TwinLedger",
        "version": "1",
        "chainId": 31337,
        "verifyingContract": relay.ledger.address,
    }
    assert sorted(answer["actions"]) == [
        "GrantLicense",
        "RevokeLicense",
        "SetPayees",
        "SetTwinPaused",
    ]
    grant = answer["actions"]["GrantLicense"]
    assert grant["primaryType"] == "GrantLicense"
    assert grant["types"] == {"EIP712Domain": eip712.DOMAIN_TYPE, **eip712.TYPES["GrantLicense"]}

    model = relay.model(relay.world.twin_ids[0])
    assert relay.api.get(f"/v1/accounts/{model.address}/nonce").json() == {
        "address": model.address,
        "on_chain_nonce": 0,
        "next_nonce": 0,
        "held_nonces": [],
        "chain_time": relay.now(),
    }
    bad = relay.api.get("/v1/accounts/0x1234/nonce")
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"


def test_the_nonce_endpoint_is_a_503_problem_when_the_chain_gives_no_latest_block(
    relay: Relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = relay.model(relay.world.twin_ids[0])
    monkeypatch.setattr(Web3ChainClient, "block", lambda self, tag="latest": None)
    answer = relay.api.get(f"/v1/accounts/{model.address}/nonce")
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["type"] == "urn:twin-bridge:problem:chain-unavailable"
    assert problem["detail"] == "the chain gave no latest block"


def test_a_signed_grant_is_relayed_confirmed_and_answered_again_unchanged(relay: Relay) -> None:
    twin = relay.world.twin_ids[0]
    model = relay.model(twin)
    brand = _new_brand()
    message = {
        "twinId": twin,
        "terms": _terms(relay, brand),
        "nonce": 0,
        "deadline": relay.now() + 3600,
    }
    body = relay.sign("GrantLicense", message, model)
    before = relay.relayer_nonce()

    first = relay.post(body)
    assert first.status_code == 202, first.text
    accepted = first.json()
    assert accepted["status"] == "accepted"
    assert accepted["type"] == "GrantLicense"
    assert accepted["signer"] == model.address
    assert accepted["twin_id"] == twin
    assert accepted["nonce"] == 0
    assert first.headers["location"] == f"/v1/owner-actions/{accepted['id']}"
    again = relay.post(body)
    assert again.status_code == 200
    assert again.json()["id"] == accepted["id"]
    assert relay.stored() == 1
    assert relay.api.get(f"/v1/accounts/{model.address}/nonce").json()["next_nonce"] == 1

    worker = relay.worker()
    assert worker.run_until_idle() >= 2  # send, then confirm
    done = relay.status(accepted["id"])
    assert done["status"] == "confirmed"
    receipt = relay.chain.w3.eth.get_transaction_receipt(done["tx_hash"])
    assert receipt["status"] == 1
    assert receipt["blockNumber"] == done["block_number"]
    assert receipt["from"] == Account.from_key(RELAYER_KEY).address
    assert relay.relayer_nonce() == before + 1
    license_, version = relay.ledger.functions.licenseOf(twin, brand).call()
    assert version == 0  # the first version
    assert relay.ledger.functions.licenseVersionCount(twin, brand).call() == 1
    granted_at = relay.chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"]
    assert license_[0:4] == (granted_at, message["terms"]["validUntil"], 500, 0)  # from the grant
    assert [tuple(p) for p in license_[5]] == [(1, 4_000_000), (4, 250_000)]
    assert relay.ledger.functions.nonces(model.address).call() == 1

    # the same signature once more: the stored, confirmed action; a fresh message on nonce 0: used
    assert relay.post(body).json()["status"] == "confirmed"
    stale = relay.sign(
        "RevokeLicense",
        {"twinId": twin, "brand": brand, "nonce": 0, "deadline": relay.now() + 3600},
        model,
    )
    refused = relay.post(stale)
    assert refused.status_code == 409
    assert refused.json()["type"] == "urn:twin-bridge:problem:nonce-used"
    assert refused.json()["detail"] == f"nonce 0 of {model.address} was used already; the next is 1"
    assert relay.stored() == 1


def test_refusals_are_clear_cost_nothing_and_store_nothing(relay: Relay) -> None:
    twin, other_twin = relay.world.twin_ids[0], relay.world.twin_ids[1]
    model, stranger = relay.model(twin), relay.model(other_twin)
    brand = _new_brand()
    deadline = relay.now() + 3600
    before = relay.relayer_nonce()

    def refused(body: dict[str, Any], status: int, slug: str, detail: str) -> None:
        response = relay.post(body)
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["type"] == f"urn:twin-bridge:problem:{slug}"
        assert problem["detail"] == detail

    grant = {"twinId": twin, "terms": _terms(relay, brand), "nonce": 0, "deadline": deadline}
    # signed by someone else for the owner
    forged = relay.sign("GrantLicense", grant, stranger, signer=model.address)
    refused(
        forged,
        401,
        "bad-signature",
        f"the signature is not {model.address}'s over this GrantLicense message (EIP-712 domain "
        f"TwinLedger v1, chain 31337, ledger {relay.ledger.address})",
    )
    # a signer who does not own the twin
    refused(
        relay.sign("GrantLicense", grant, stranger),
        403,
        "not-owner",
        f"{stranger.address} does not own twin {twin} (its owner is {model.address})",
    )
    # a twin that does not exist
    refused(
        relay.sign("GrantLicense", {**grant, "twinId": 999}, model),
        404,
        "unknown-twin",
        "twin 999 does not exist",
    )
    # a deadline already passed
    refused(
        relay.sign("GrantLicense", {**grant, "deadline": relay.now() - 1}, model),
        422,
        "deadline-passed",
        f"the signature's deadline {relay.now() - 1} is not after the chain's time {relay.now()}",
    )
    # a nonce ahead of the next one
    refused(
        relay.sign("GrantLicense", {**grant, "nonce": 2}, model),
        422,
        "nonce-gap",
        f"nonce 2 of {model.address} leaves a gap: sign with 0",
    )
    # malformed terms: the same usage type priced twice
    twice = _terms(
        relay, brand, prices=[{"usageType": 1, "price": 5}, {"usageType": 1, "price": 6}]
    )
    refused(
        relay.sign("GrantLicense", {**grant, "terms": twice}, model),
        422,
        "invalid-message",
        "GrantLicense message: terms.prices: Value error, each usage type may be priced once",
    )
    # well formed, but the ledger refuses it: there is no license of that brand to revoke
    revoke = {"twinId": twin, "brand": brand, "nonce": 0, "deadline": deadline}
    refused(
        relay.sign("RevokeLicense", revoke, model),
        422,
        "ledger-refuses",
        f"the ledger would refuse this RevokeLicense: LicenseNotFound(twinId={twin}, "
        f"brand={brand})",
    )
    # a payout with nothing to pay
    nobody = Web3.to_checksum_address("0x" + "c3" * 20)
    refused(
        {"type": "Payout", "payee": nobody, "twinIds": []},
        422,
        "ledger-refuses",
        f"the ledger would refuse this Payout: PayoutNothingToPay(payee={nobody})",
    )
    # an unknown field and a wrong type are validation problems
    bad = relay.post({**relay.sign("GrantLicense", grant, model), "extra": 1})
    assert bad.status_code == 422
    assert (
        relay.post(
            {"type": "SetTwinPaused", "signer": model.address, "message": {}, "signature": "0x01"}
        ).status_code
        == 422
    )

    assert relay.stored() == 0
    assert relay.relayer_nonce() == before
    assert relay.ledger.functions.nonces(model.address).call() == 0


def test_actions_held_in_order_go_out_in_nonce_order(relay: Relay) -> None:
    twin = relay.world.twin_ids[2]
    model = relay.model(twin)
    deadline = relay.now() + 3600
    agency = Web3.to_checksum_address("0x" + "a9" * 20)
    pause = relay.post(
        relay.sign(
            "SetTwinPaused",
            {"twinId": twin, "paused": True, "nonce": 0, "deadline": deadline},
            model,
        )
    )
    payees = relay.post(
        relay.sign(
            "SetPayees",
            {
                "twinId": twin,
                "payees": [{"account": agency, "bps": 1_200}],
                "nonce": 1,
                "deadline": deadline,
            },
            model,
        )
    )
    assert (pause.status_code, payees.status_code) == (202, 202)
    assert relay.api.get(f"/v1/accounts/{model.address}/nonce").json() == {
        "address": model.address,
        "on_chain_nonce": 0,
        "next_nonce": 2,
        "held_nonces": [0, 1],
        "chain_time": relay.now(),
    }
    relay.worker().run_until_idle()
    first, second = relay.status(pause.json()["id"]), relay.status(payees.json()["id"])
    assert (first["status"], second["status"]) == ("confirmed", "confirmed")
    assert first["block_number"] <= second["block_number"]
    assert relay.ledger.functions.isPausedAt(twin, relay.now()).call() is True
    assert [tuple(p) for p in relay.ledger.functions.payeesOf(twin).call()] == [(agency, 1_200)]
    assert relay.ledger.functions.nonces(model.address).call() == 2


def test_an_erc1271_wallet_owner_signs_through_its_key(relay: Relay) -> None:
    w3 = relay.chain.w3
    key = dev_account(30)
    admin, registrar = w3.eth.accounts[0], w3.eth.accounts[1]
    wallet = deploy_contract(w3, load_artifact("MockERC1271Wallet"), key.address, sender=admin)
    tx = relay.ledger.functions.mint(wallet.address, "ipfs://wallet-twin", BYTES32_A).transact(
        {"from": registrar}
    )
    (minted,) = relay.ledger.events.TwinMinted().process_receipt(
        w3.eth.wait_for_transaction_receipt(tx), errors=DISCARD
    )
    twin = int(minted["args"]["twinId"])
    assert relay.ledger.functions.ownerOf(twin).call() == wallet.address
    message = {"twinId": twin, "paused": True, "nonce": 0, "deadline": relay.now() + 3600}
    body = relay.sign("SetTwinPaused", message, key, signer=wallet.address)
    accepted = relay.post(body)
    assert accepted.status_code == 202, accepted.text
    relay.worker().run_until_idle()
    assert relay.status(accepted.json()["id"])["status"] == "confirmed"
    assert relay.ledger.functions.isPausedAt(twin, relay.now()).call() is True

    # the wallet stops accepting: a signature by its key no longer counts
    w3.eth.wait_for_transaction_receipt(
        wallet.functions.setAccepting(False).transact({"from": admin})
    )
    unpause = relay.sign(
        "SetTwinPaused", {**message, "paused": False, "nonce": 1}, key, signer=wallet.address
    )
    refused = relay.post(unpause)
    assert refused.status_code == 401
    assert refused.json()["type"] == "urn:twin-bridge:problem:bad-signature"


def test_a_payout_relays_the_claimable_royalties_to_the_payee(relay: Relay) -> None:
    from bridge.testing import random_usages, settle

    world = relay.world
    settle(world, random_usages(world, 40))
    twin = world.twin_ids[3]
    owner = relay.model(twin)
    relay.chain.w3.eth.wait_for_transaction_receipt(
        world.ledger.functions.distribute([twin]).transact({"from": relay.chain.w3.eth.accounts[0]})
    )
    claimable = world.ledger.functions.claimable(owner.address).call()
    assert world.ledger.functions.twinState(twin).call()[0] == 0  # all distributed
    assert claimable > 0
    balance = world.token.functions.balanceOf(owner.address).call()

    response = relay.post({"type": "Payout", "payee": owner.address, "twinIds": [twin]})
    assert response.status_code == 202, response.text
    relay.worker().run_until_idle()
    done = relay.status(response.json()["id"])
    assert done["status"] == "confirmed"
    assert world.ledger.functions.claimable(owner.address).call() == 0
    assert world.token.functions.balanceOf(owner.address).call() - balance == claimable


# ---------------------------------------------------------------- twin-bridge model


@dataclass
class Served:
    relay: Relay
    url: str


@pytest.fixture
def served(relay: Relay) -> Iterator[Served]:
    """The relay's app on a real HTTP port, with a settlement worker running beside it."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(relay.api.app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    worker = relay.worker()
    stop = threading.Event()
    runner = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    runner.start()
    try:
        yield Served(relay, f"http://127.0.0.1:{port}")
    finally:
        stop.set()
        runner.join(timeout=10)
        server.should_exit = True
        thread.join(timeout=10)


def test_the_model_cli_signs_locally_and_the_bridge_relays(served: Served, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from bridge.cli.app import app

    relay = served.relay
    twin = relay.world.twin_ids[4]
    model = relay.model(twin)
    brand = _new_brand()
    runner = CliRunner()
    raw = {"MODEL_KEY": "0x" + model.key.hex()}
    model_cmd = ["model", "--api", served.url, "--private-key-env", "MODEL_KEY"]

    granted = runner.invoke(
        app,
        [*model_cmd, "grant", "--twin", str(twin), "--brand", brand, "--price", "video=120.50",
         "--price", "social_post=15", "--days", "30", "--max-uses", "100"],
        env=raw,
    )  # fmt: skip
    assert granted.exit_code == 0, granted.output
    assert "confirmed in block" in granted.output
    license_, _ = relay.ledger.functions.licenseOf(twin, brand).call()
    assert [tuple(p) for p in license_[5]] == [(1, 120_500_000), (2, 15_000_000)]
    assert license_[2] == 100

    agency = Web3.to_checksum_address("0x" + "a7" * 20)
    shared = runner.invoke(
        app, [*model_cmd, "payees", "--twin", str(twin), "--payee", f"{agency}:1500"], env=raw
    )
    assert shared.exit_code == 0, shared.output
    assert [tuple(p) for p in relay.ledger.functions.payeesOf(twin).call()] == [(agency, 1_500)]

    # the same model through an encrypted keystore and a password file
    keystore, password = tmp_path / "model.json", tmp_path / "password"
    password.write_text("correct horse\n", encoding="utf-8")
    keystore.write_text(
        __import__("json").dumps(Account.encrypt(model.key, "correct horse")), encoding="utf-8"
    )
    revoked = runner.invoke(
        app,
        ["model", "--api", served.url, "--keystore", str(keystore), "--password-file",
         str(password), "revoke", "--twin", str(twin), "--brand", brand],
    )  # fmt: skip
    assert revoked.exit_code == 0, revoked.output
    assert relay.ledger.functions.licenseOf(twin, brand).call()[0][4] is True  # revoked
    assert relay.ledger.functions.nonces(model.address).call() == 3

    # nothing to pay: the bridge refuses before any gas is spent
    nothing = runner.invoke(app, [*model_cmd, "withdraw"], env=raw)
    assert nothing.exit_code == 1
    assert "the bridge refused (422): the ledger would refuse this Payout: PayoutNothingToPay" in (
        " ".join(nothing.output.split())
    )
    # show: twins, licenses and earnings from the indexer's mirror of the chain
    from bridge.indexer.follow import Indexer

    indexer = Indexer(
        relay.store,
        Web3ChainClient([relay.chain.url]),
        ledger_address=relay.ledger.address,
        confirmations=1,
    )
    assert indexer.catch_up() > 0
    shown = runner.invoke(app, [*model_cmd, "show"], env=raw)
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    assert f"twin {twin} ipfs://twin-bridge-bench/twin/{twin - 1} active" in text
    assert f"royalties shared with {agency} 1500 bps" in text
    assert "video=120.50, social_post=15.00" in text
    # The read API judges license states at the request's time; this world's chain clock runs
    # an hour ahead of the wall clock (its setup advances it), so the license granted (and revoked)
    # at the chain's time has not started yet by the wall clock.
    assert f"{brand} not_started: video=120.50, social_post=15.00 USD per use" in text
    assert "uses 0/100" in text
    assert "earnings: distributed 0.00 USD, paid out 0.00 USD, claimable 0.00 USD" in text

    # a price with too many decimals never reaches the bridge
    bad = runner.invoke(
        app,
        [*model_cmd, "grant", "--twin", str(twin), "--brand", brand, "--price",
         "video=1.0000001"],
        env=raw,
    )  # fmt: skip
    assert bad.exit_code == 1
    assert "a positive amount with at most 6 decimals" in " ".join(bad.output.split())
