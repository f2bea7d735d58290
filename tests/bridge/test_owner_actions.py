"""Owner actions relayed by the bridge, against a real anvil and the deployed ledger: a model signs
with eth-account (or through an ERC-1271 wallet), the API checks the action off chain and stores
it, the settlement worker sends it through the relayer, and its status follows the transaction.
Every refusal is a clear 4xx that stores nothing and sends nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from web3 import Web3
from web3.logs import DISCARD

from bridge.api import create_app
from bridge.chain.brand_ledger import BrandLedger
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
        "version": "2",
        "chainId": 31337,
        "verifyingContract": relay.ledger.address,
    }
    assert sorted(answer["actions"]) == [
        "AcceptLicense",
        "OfferLicense",
        "RevokeLicense",
        "SetPayees",
        "SetTwinPaused",
    ]
    offer = answer["actions"]["OfferLicense"]
    assert offer["primaryType"] == "OfferLicense"
    assert offer["types"] == {"EIP712Domain": eip712.DOMAIN_TYPE, **eip712.TYPES["OfferLicense"]}
    assert [f["name"] for f in offer["types"]["OfferLicense"]] == [
        "owner", "twinId", "terms", "nonce", "deadline",
    ]  # fmt: skip
    accept = answer["actions"]["AcceptLicense"]["types"]["AcceptLicense"]
    assert [f["name"] for f in accept] == [
        "brand", "twinId", "version", "termsHash", "nonce", "deadline",
    ]  # fmt: skip

    model = relay.model(relay.world.twin_ids[0])
    assert relay.api.get(f"/v1/accounts/{model.address}/nonce").json() == {
        "address": model.address,
        "on_chain_nonce": 0,
        "next_nonce": 0,
        "held_nonces": [],
        "chain_time_unix": relay.now(),
    }
    bad = relay.api.get("/v1/accounts/0x1234/nonce")
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"


def test_the_token_endpoint_publishes_the_payment_token_read_once(
    relay: Relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    published = {
        "address": relay.world.token.address,
        "symbol": "mUSD",
        "name": "Mock USD",
        "decimals": 6,
    }
    assert relay.api.get("/v1/token").json() == published
    ledger = relay.api.app.state.brand_ledger  # type: ignore[attr-defined]
    dead = BrandLedger(Web3ChainClient(["http://127.0.0.1:1"], backoff=0), ledger.ledger)
    monkeypatch.setattr(relay.api.app.state, "brand_ledger", dead)  # type: ignore[attr-defined]
    assert relay.api.get("/v1/token").json() == published  # kept: the chain is not asked again


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


def _terms_tuple(terms: dict[str, Any]) -> tuple[Any, ...]:
    return (
        terms["brand"],
        terms["validFrom"],
        terms["validUntil"],
        terms["maxUses"],
        bytes.fromhex(terms["purposeHash"][2:]),
        bytes.fromhex(terms["consentHash"][2:]),
        [(p["usageType"], p["price"]) for p in terms["prices"]],
    )


@pytest.mark.parametrize(
    "prices",
    [
        [{"usageType": 0, "price": 1}],
        [{"usageType": 1, "price": 4_000_000}, {"usageType": 4, "price": 250_000}],
        [{"usageType": t, "price": 2**96 - 1 - t} for t in range(16)],
    ],
)
def test_the_terms_hash_is_the_ledgers_hash_license_terms(
    relay: Relay, prices: list[dict[str, int]]
) -> None:
    terms = {**_terms(relay, _new_brand(), prices=prices), "validFrom": 1_700_000_000}
    on_chain = relay.ledger.functions.hashLicenseTerms(_terms_tuple(terms)).call()
    assert eip712.terms_hash(terms) == bytes(on_chain)
    changed = {**terms, "maxUses": terms["maxUses"] + 1}
    assert eip712.terms_hash(changed) != bytes(on_chain)


def test_a_signed_offer_is_relayed_and_the_brand_accepts_it_by_signature(relay: Relay) -> None:
    """The owner's OfferLicense and the brand's AcceptLicense both go through the relay: the
    offer waits (not payable) until the brand's signed acceptance of its version and terms hash
    is mined; a repeat answers the stored action unchanged."""
    twin = relay.world.twin_ids[0]
    model = relay.model(twin)
    brand = Account.from_key(keccak(text="owner action test brand"))
    terms = _terms(relay, brand.address)
    message = {
        "owner": model.address,
        "twinId": twin,
        "terms": terms,
        "nonce": 0,
        "deadline": relay.now() + 3600,
    }
    body = relay.sign("OfferLicense", message, model)
    before = relay.relayer_nonce()

    first = relay.post(body)
    assert first.status_code == 202, first.text
    accepted = first.json()
    assert (accepted["status"], accepted["type"], accepted["signer"]) == (
        "accepted", "OfferLicense", model.address,
    )  # fmt: skip
    assert (accepted["twin_id"], accepted["nonce"]) == (twin, 0)
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
    assert (receipt["status"], receipt["blockNumber"]) == (1, done["block_number"])
    assert receipt["from"] == Account.from_key(RELAYER_KEY).address
    assert relay.relayer_nonce() == before + 1
    terms_hash = eip712.terms_hash(terms)
    offered, version, on_chain_hash = relay.ledger.functions.offerOf(twin, brand.address).call()
    assert (version, bytes(on_chain_hash)) == (0, terms_hash)
    assert [tuple(p) for p in offered[5]] == [(1, 4_000_000), (4, 250_000)]
    assert relay.ledger.functions.licenseVersionCount(twin, brand.address).call() == 0
    assert relay.ledger.functions.nonces(model.address).call() == 1

    acceptance = {
        "brand": brand.address,
        "twinId": twin,
        "version": 0,
        "termsHash": "0x" + terms_hash.hex(),
        "nonce": 0,
        "deadline": relay.now() + 3600,
    }
    taken = relay.post(relay.sign("AcceptLicense", acceptance, brand))
    assert taken.status_code == 202, taken.text
    assert (taken.json()["type"], taken.json()["signer"]) == ("AcceptLicense", brand.address)
    worker.run_until_idle()
    done = relay.status(taken.json()["id"])
    assert done["status"] == "confirmed"
    accepted_at = relay.chain.w3.eth.get_block(done["block_number"])["timestamp"]
    license_, version = relay.ledger.functions.licenseOf(twin, brand.address).call()
    assert version == 0
    assert license_[0:5] == (accepted_at, terms["validUntil"], 500, 0, False)
    assert relay.ledger.functions.licenseVersionCount(twin, brand.address).call() == 1
    assert relay.ledger.functions.nonces(brand.address).call() == 1
    (event,) = relay.ledger.events.LicenseAccepted().process_receipt(
        relay.chain.w3.eth.get_transaction_receipt(done["tx_hash"]), errors=DISCARD
    )
    assert dict(event["args"]) == {
        "twinId": twin, "brand": brand.address, "version": 0, "validFrom": accepted_at,
    }  # fmt: skip

    # the same signature once more: the stored, confirmed action; a fresh message on nonce 0: used
    assert relay.post(body).json()["status"] == "confirmed"
    stale = relay.sign(
        "RevokeLicense",
        {
            "owner": model.address,
            "twinId": twin,
            "brand": brand.address,
            "version": 0,
            "nonce": 0,
            "deadline": relay.now() + 3600,
        },
        model,
    )
    refused = relay.post(stale)
    assert refused.status_code == 409
    assert refused.json()["type"] == "urn:twin-bridge:problem:nonce-used"
    assert refused.json()["detail"] == f"nonce 0 of {model.address} was used already; the next is 1"

    revoke = relay.post(relay.sign("RevokeLicense", {**stale["message"], "nonce": 1}, model))
    assert revoke.status_code == 202, revoke.text
    worker.run_until_idle()
    assert relay.status(revoke.json()["id"])["status"] == "confirmed"
    assert relay.ledger.functions.licenseOf(twin, brand.address).call()[0][4] is True
    assert relay.stored() == 3


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

    offer = {
        "owner": model.address,
        "twinId": twin,
        "terms": _terms(relay, brand),
        "nonce": 0,
        "deadline": deadline,
    }
    # signed by someone else for the owner
    forged = relay.sign("OfferLicense", offer, stranger, signer=model.address)
    refused(
        forged,
        401,
        "bad-signature",
        f"the signature is not {model.address}'s over this OfferLicense message (EIP-712 domain "
        f"TwinLedger v2, chain 31337, ledger {relay.ledger.address})",
    )
    # the message names another owner than the signer
    refused(
        relay.sign("OfferLicense", offer, stranger),
        422,
        "signer-mismatch",
        f"the OfferLicense message names owner {model.address}, not the signer {stranger.address}",
    )
    # a signer who does not own the twin
    refused(
        relay.sign("OfferLicense", {**offer, "owner": stranger.address}, stranger),
        403,
        "not-owner",
        f"{stranger.address} does not own twin {twin} (its owner is {model.address})",
    )
    # a twin that does not exist
    refused(
        relay.sign("OfferLicense", {**offer, "twinId": 999}, model),
        404,
        "unknown-twin",
        "twin 999 does not exist",
    )
    # a deadline already passed
    refused(
        relay.sign("OfferLicense", {**offer, "deadline": relay.now() - 1}, model),
        422,
        "deadline-passed",
        f"the signature's deadline {relay.now() - 1} is not after the chain's time {relay.now()}",
    )
    # a nonce ahead of the next one
    refused(
        relay.sign("OfferLicense", {**offer, "nonce": 2}, model),
        422,
        "nonce-gap",
        f"nonce 2 of {model.address} leaves a gap: sign with 0",
    )
    # malformed terms: the same usage type priced twice
    twice = _terms(
        relay, brand, prices=[{"usageType": 1, "price": 5}, {"usageType": 1, "price": 6}]
    )
    refused(
        relay.sign("OfferLicense", {**offer, "terms": twice}, model),
        422,
        "invalid-message",
        "OfferLicense message: terms.prices: Value error, each usage type may be priced once",
    )
    # a revocation without its version is malformed
    revoke = {"owner": model.address, "twinId": twin, "brand": brand, "nonce": 0,
              "deadline": deadline}  # fmt: skip
    unversioned = relay.sign("RevokeLicense", {**revoke, "version": 0}, model)
    del unversioned["message"]["version"]
    refused(unversioned, 422, "invalid-message", "RevokeLicense message: version: Field required")
    # well formed, but the ledger refuses it: there is no license of that brand to revoke
    refused(
        relay.sign("RevokeLicense", {**revoke, "version": 0}, model),
        422,
        "ledger-refuses",
        f"the ledger would refuse this RevokeLicense: LicenseNotFound(twinId={twin}, "
        f"brand={brand})",
    )
    # an acceptance of an offer that does not wait, and one naming the wrong version or hash
    buyer = Account.from_key(keccak(text="refusal test brand"))
    acceptance = {
        "brand": buyer.address,
        "twinId": twin,
        "version": 0,
        "termsHash": BYTES32_A,
        "nonce": 0,
        "deadline": deadline,
    }
    refused(
        relay.sign("AcceptLicense", acceptance, buyer),
        404,
        "no-offer",
        f"no license offer of twin {twin} waits for {buyer.address}",
    )
    offered = _terms(relay, buyer.address)
    relay.chain.w3.eth.wait_for_transaction_receipt(
        relay.ledger.functions.offerLicense(twin, _terms_tuple(offered)).transact(
            {"from": model.address}
        )
    )
    real_hash = "0x" + eip712.terms_hash(offered).hex()
    refused(
        relay.sign("AcceptLicense", acceptance, buyer),
        409,
        "offer-mismatch",
        f"the offer waiting is version 0 with terms hash {real_hash}, not version 0 with "
        f"{BYTES32_A}",
    )
    refused(
        relay.sign("AcceptLicense", {**acceptance, "termsHash": real_hash}, model),
        422,
        "signer-mismatch",
        f"the AcceptLicense message names brand {buyer.address}, not the signer {model.address}",
    )
    # a payout with nothing to pay
    nobody = Web3.to_checksum_address("0x" + "c3" * 20)
    refused(
        {"type": "Payout", "payee": nobody, "twinIds": []},
        422,
        "ledger-refuses",
        f"the ledger would refuse this Payout: PayoutNothingToPay(payee={nobody})",
    )
    # the old GrantLicense is no message the relay takes; an unknown field and a wrong type are
    # validation problems
    assert (
        relay.post({**relay.sign("OfferLicense", offer, model), "type": "GrantLicense"}).status_code
        == 422
    )
    bad = relay.post({**relay.sign("OfferLicense", offer, model), "extra": 1})
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
    assert relay.ledger.functions.nonces(buyer.address).call() == 0


def test_actions_held_in_order_go_out_in_nonce_order(relay: Relay) -> None:
    twin = relay.world.twin_ids[2]
    model = relay.model(twin)
    deadline = relay.now() + 3600
    agency = Web3.to_checksum_address("0x" + "a9" * 20)
    pause = relay.post(
        relay.sign(
            "SetTwinPaused",
            {
                "owner": model.address,
                "twinId": twin,
                "paused": True,
                "nonce": 0,
                "deadline": deadline,
            },
            model,
        )
    )
    payees = relay.post(
        relay.sign(
            "SetPayees",
            {
                "owner": model.address,
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
        "chain_time_unix": relay.now(),
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
    message = {
        "owner": wallet.address,
        "twinId": twin,
        "paused": True,
        "nonce": 0,
        "deadline": relay.now() + 3600,
    }
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
    brand = Account.from_key(keccak(text="model cli test brand"))
    runner = CliRunner()
    raw = {"MODEL_KEY": "0x" + model.key.hex()}
    model_cmd = ["model", "--api", served.url, "--private-key-env", "MODEL_KEY"]

    offered = runner.invoke(
        app,
        [*model_cmd, "offer", "--twin", str(twin), "--brand", brand.address, "--price",
         "video=120.50", "--price", "social_post=15", "--days", "30", "--max-uses", "100"],
        env=raw,
    )  # fmt: skip
    assert offered.exit_code == 0, offered.output
    assert "confirmed in block" in offered.output
    terms, version, terms_hash = relay.ledger.functions.offerOf(twin, brand.address).call()
    assert [tuple(p) for p in terms[5]] == [(1, 120_500_000), (2, 15_000_000)]
    assert (terms[2], version) == (100, 0)
    # the brand accepts the offer by a signature the bridge relays
    acceptance = {
        "brand": brand.address,
        "twinId": twin,
        "version": 0,
        "termsHash": "0x" + bytes(terms_hash).hex(),
        "nonce": 0,
        "deadline": relay.now() + 3600,
    }
    taken = relay.post(relay.sign("AcceptLicense", acceptance, brand))
    assert taken.status_code == 202, taken.text
    for _ in range(100):
        if relay.status(taken.json()["id"])["status"] == "confirmed":
            break
        time.sleep(0.1)
    license_, _ = relay.ledger.functions.licenseOf(twin, brand.address).call()
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
         str(password), "revoke", "--twin", str(twin), "--brand", brand.address, "--version",
         "0"],
    )  # fmt: skip
    assert revoked.exit_code == 0, revoked.output
    assert relay.ledger.functions.licenseOf(twin, brand.address).call()[0][4] is True  # revoked
    assert relay.ledger.functions.nonces(model.address).call() == 3

    # nothing to pay: the bridge refuses before any gas is spent, and the command says so (naming
    # the twins the bridge's index knows of the model's, if it has indexed them yet)
    indexed = httpx.get(f"{served.url}/v1/twins", params={"owner": model.address}).json()["items"]
    nothing = runner.invoke(app, [*model_cmd, "withdraw"], env=raw)
    assert nothing.exit_code == 0, nothing.output
    assert nothing.stdout == (
        f"nothing to pay to {model.address}: nothing is claimable and twin {twin} holds no "
        "royalties\n"
        if indexed
        else f"nothing to pay to {model.address}: nothing is claimable, and the bridge's index "
        "knows no twin of it (--twin names one)\n"
    )
    named = runner.invoke(app, [*model_cmd, "withdraw", "--twin", str(twin)], env=raw)
    assert named.exit_code == 0, named.output
    assert named.stdout == (
        f"nothing to pay to {model.address}: nothing is claimable and twin {twin} holds no "
        "royalties\n"
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
    # an hour ahead of the wall clock (its setup advances it), so the license accepted (and
    # revoked) at the chain's time has not started yet by the wall clock.
    assert (
        f"{brand.address} version 0 not_started: video=120.50, social_post=15.00 mUSD per use"
        in text
    )
    assert "uses 0/100" in text
    assert shown.stdout.splitlines()[-2:] == [
        "  accrued 0.00 mUSD (held by the twin, not yet distributed), distributed 0.00 mUSD, "
        "claimable 0.00 mUSD, unpaid debt 0.00 mUSD",
        f"{model.address}: claimable 0.00 mUSD, your share of the accrued 0.00 mUSD, paid out "
        "0.00 mUSD so far; `twin-bridge model withdraw` pays 0.00 mUSD",
    ]

    # a price with too many decimals never reaches the bridge
    bad = runner.invoke(
        app,
        [*model_cmd, "offer", "--twin", str(twin), "--brand", brand.address, "--price",
         "video=1.0000001"],
        env=raw,
    )  # fmt: skip
    assert bad.exit_code == 1
    assert " ".join(bad.output.split()) == (
        "--price '1.0000001': a positive amount of mUSD with at most 6 decimals"
    )


def test_model_show_and_withdraw_after_two_paid_uses(served: Served) -> None:
    """Issue 19: paid uses accrue on the twin, not yet distributed to the model; ``model show``
    gives them per twin (it printed 0.00 everywhere, reading the model's pooled balance only) and
    ``model withdraw`` distributes the model's own twins and tells what the ledger paid (it
    distributed none and was refused with PayoutNothingToPay)."""
    import re
    import threading

    from typer.testing import CliRunner

    from bridge.cli.app import app
    from bridge.cli.money import Token
    from bridge.domain.codec import Usage
    from bridge.indexer.follow import Indexer
    from bridge.testing import settle

    musd = Token("mUSD", 6)  # anvil's mock stablecoin
    relay = served.relay
    world, ledger = relay.world, relay.ledger
    twin = world.twin_ids[2]
    owner = relay.model(twin)
    usage_type, price = min(world.licenses[twin, 0].prices.items())
    now = relay.now()
    uses = [Usage(world.next_usage_id + i, twin, now - 60, i + 1, usage_type) for i in range(2)]
    world.next_usage_id += 2
    settle(world, [(0, u) for u in uses])
    accrued = 3 * price
    assert ledger.functions.twinState(twin).call()[0] == accrued
    assert ledger.functions.claimable(owner.address).call() == 0
    payees = ledger.functions.payeesOf(twin).call()
    share = accrued - sum(accrued * bps // 10_000 for _, bps in payees)
    balance = world.token.functions.balanceOf(owner.address).call()

    runner = CliRunner()
    raw = {"MODEL_KEY": "0x" + owner.key.hex()}
    model_cmd = ["model", "--api", served.url, "--private-key-env", "MODEL_KEY"]
    indexer = Indexer(
        relay.store,
        Web3ChainClient([relay.chain.url]),
        ledger_address=ledger.address,
        confirmations=1,
    )
    stop = threading.Event()
    following = threading.Thread(target=indexer.run, args=(stop, 0.1), daemon=True)
    following.start()

    def indexed() -> None:
        """Waits until the index holds the chain's head (by hash: a shared PostgreSQL store may
        hold another test's blocks of a chain reverted since, which the indexer rewinds)."""
        head = relay.chain.w3.eth.get_block("latest")
        for _ in range(200):
            status = relay.api.get("/v1/index/status").json()
            if (status["block_number"], status["block_hash"]) == (
                head["number"],
                "0x" + bytes(head["hash"]).hex(),
            ):
                return
            time.sleep(0.05)
        raise AssertionError(f"the indexer did not reach block {head['number']}")

    def money(shown: Any) -> list[str]:
        assert shown.exit_code == 0, shown.output
        return [line for line in shown.stdout.splitlines() if line.startswith("  accrued")] + [
            shown.stdout.splitlines()[-1]
        ]

    try:
        indexed()
        assert money(runner.invoke(app, [*model_cmd, "show"], env=raw)) == [
            f"  accrued {musd.show(accrued)} (held by the twin, not yet distributed), distributed "
            "0.00 mUSD, claimable 0.00 mUSD, unpaid debt 0.00 mUSD",
            f"{owner.address}: claimable 0.00 mUSD, your share of the accrued {musd.show(share)}, "
            f"paid out 0.00 mUSD so far; `twin-bridge model withdraw` pays {musd.show(share)}",
        ]

        withdrawn = runner.invoke(app, [*model_cmd, "withdraw"], env=raw)
        assert withdrawn.exit_code == 0, withdrawn.output
        found = re.fullmatch(r"owner action (\d+) \(Payout\): accepted\n", withdrawn.stderr)
        assert found is not None, withdrawn.stderr
        action = relay.status(int(found[1]))
        assert action["message"] == {"payee": owner.address, "twinIds": [str(twin)]}
        paid = (
            f"confirmed in block {action['block_number']}, transaction {action['tx_hash']}\n"
            f"paid {musd.show(share)} to {owner.address}\n"
        )
        assert withdrawn.stdout == paid
        assert world.token.functions.balanceOf(owner.address).call() - balance == share
        assert ledger.functions.twinState(twin).call()[0] == 0

        again = runner.invoke(app, [*model_cmd, "withdraw"], env=raw)
        assert again.exit_code == 0, again.output
        assert again.stdout == (
            f"nothing to pay to {owner.address}: nothing is claimable and twin {twin} holds no "
            "royalties\n"
        )
        indexed()
        assert money(runner.invoke(app, [*model_cmd, "show"], env=raw)) == [
            f"  accrued 0.00 mUSD (held by the twin, not yet distributed), distributed "
            f"{musd.show(accrued)}, claimable {musd.show(accrued - share)}, unpaid debt 0.00 mUSD",
            f"{owner.address}: claimable 0.00 mUSD, your share of the accrued 0.00 mUSD, paid out "
            f"{musd.show(share)} so far; `twin-bridge model withdraw` pays 0.00 mUSD",
        ]
        status = runner.invoke(app, [*model_cmd, "status", found[1]], env=raw)
        assert status.exit_code == 0, status.output
        assert status.stdout == paid
    finally:
        stop.set()
        following.join(timeout=10)
