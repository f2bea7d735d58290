"""The brand endpoints the dashboard's brand view reads: ``GET /v1/brand`` and the brand's usage
events newest first, paged; and the dashboard page itself."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from eth_abi.abi import decode, encode
from eth_account import Account
from eth_utils.address import to_checksum_address
from fastapi.testclient import TestClient
from sqlalchemy import update

from bridge.api import create_app
from bridge.api.routes.ledger import now
from bridge.chain import brand_ledger, escrow
from bridge.chain.brand_ledger import BrandLedger, selector
from bridge.chain.client import Block, BlockTag
from bridge.chain.toolchain import load_artifact
from bridge.domain import eip712
from bridge.domain.times import rfc3339
from bridge.errors import ChainUnavailableError, ExecutionRevertedError
from bridge.intake.ingest import Ingestor
from bridge.intake.owner_actions import ActionVerifier
from bridge.settings import Settings
from bridge.store.models import LicenseOfferRow, OfferStatus, UsageEvent, UsageStatus
from bridge.store.repository import Store

from .conftest import BRAND_ADDRESS, NOW, OTHER_ADDRESS, TWIN, Api, register_brand
from .fakes import FakeLicenseView

URL = "/v1/usage-events"


def _report(api: Api, n: int, key: str | None = None) -> None:
    auth = {"Authorization": f"Bearer {key or api.key}"}
    events = [
        {
            "event_id": f"e-{i}",
            "twin_id": TWIN,
            "usage_type": "video",
            "quantity": i,
            "used_at": "2026-03-01T11:00:00Z",
        }
        for i in range(1, n + 1)
    ]
    response = api.client.post(URL, json={"events": events}, headers=auth)
    assert response.status_code == 200, response.text


def _without_received_at(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in item.items() if k != "received_at"} for item in items]


def test_brand_of_the_key(api: Api) -> None:
    response = api.client.get("/v1/brand", headers=api.auth)
    assert response.status_code == 200
    assert response.json() == {"name": "Atelier", "address": BRAND_ADDRESS}


@pytest.mark.parametrize("path", ["/v1/brand", URL])
@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer tb_live_nope"}], ids=["missing", "unknown"]
)
def test_brand_endpoints_without_a_valid_key_are_401(
    api: Api, path: str, headers: dict[str, str]
) -> None:
    response = api.client.get(path, headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["type"] == "urn:twin-bridge:problem:unauthorized"


def test_usage_events_newest_first_in_pages(api: Api) -> None:
    _report(api, 5)
    tx = "0x" + "cd" * 32
    with api.store.session() as session:
        session.execute(
            update(UsageEvent)
            .where(UsageEvent.event_id == "e-4")
            .values(
                status=UsageStatus.SETTLED,
                tx_hash=tx,
                block_number=77,
                log_index=2,
                amount=900,
                paid_from_escrow=600,
                recorded_as_debt=300,
            )
        )
        session.commit()
    first = api.client.get(URL, params={"limit": 2}, headers=api.auth)
    assert first.status_code == 200
    body = first.json()
    assert body["next"] == f"{URL}?limit=2&cursor=4"
    assert _without_received_at(body["items"]) == [
        {
            "event_id": "e-5",
            "usage_id": 5,
            "status": "accepted",
            "twin_id": TWIN,
            "usage_type": "video",
            "quantity": 5,
            "used_at": "2026-03-01T11:00:00Z",
        },
        {
            "event_id": "e-4",
            "usage_id": 4,
            "status": "settled",
            "twin_id": TWIN,
            "usage_type": "video",
            "quantity": 4,
            "used_at": "2026-03-01T11:00:00Z",
            "code": "paid",
            "sentence": "paid",
            "outcome_code": 0,
            "tx_hash": tx,
            "block_number": 77,
            "log_index": 2,
            "amount": "900",
            "paid_from_escrow": "600",
            "recorded_as_debt": "300",
        },
    ]
    second = api.client.get(body["next"], headers=api.auth).json()
    assert [i["event_id"] for i in second["items"]] == ["e-3", "e-2"]
    assert second["next"] == f"{URL}?limit=2&cursor=2"
    last = api.client.get(second["next"], headers=api.auth).json()
    assert [i["event_id"] for i in last["items"]] == ["e-1"]
    assert last["next"] is None


def test_usage_events_are_the_brands_own(api: Api) -> None:
    _report(api, 2)
    _, other_key = register_brand(api.store, "Other", OTHER_ADDRESS)
    assert api.client.get(URL, headers={"Authorization": f"Bearer {other_key}"}).json() == {
        "items": [],
        "next": None,
    }
    body = api.client.get(URL, headers=api.auth).json()
    assert [i["event_id"] for i in body["items"]] == ["e-2", "e-1"]
    assert body["next"] is None


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 501}, {"cursor": 0}, {"cursor": "x"}], ids=str
)
def test_usage_events_bad_paging_is_422(api: Api, params: dict[str, Any]) -> None:
    response = api.client.get(URL, params=params, headers=api.auth)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


def test_dashboard_is_served_at_the_root_with_its_assets(api: Api) -> None:
    page = api.client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert '<script type="module" src="/web/app.js"></script>' in page.text
    script = api.client.get("/web/app.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert api.client.get("/web/style.css").status_code == 200
    assert api.client.get("/web/missing.js").status_code == 404


@pytest.mark.parametrize("path", ["/v1/audit", "/v1/audit/csv?table=usages"])
def test_audit_without_a_chain_is_503_saying_so(api: Api, path: str) -> None:
    response = api.client.get(path)
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "urn:twin-bridge:problem:audit-unavailable"
    assert body["detail"] == "this bridge has no chain configured to audit"


def test_audit_csv_of_an_unknown_table_is_422(api: Api) -> None:
    response = api.client.get("/v1/audit/csv", params={"table": "secrets"})
    assert response.status_code == 422


def test_brand_directory_is_public_by_name(api: Api) -> None:
    register_brand(api.store, "Maison", OTHER_ADDRESS)
    response = api.client.get("/v1/brands")
    assert response.status_code == 200
    assert response.json() == {
        "items": [
            {"name": "Atelier", "address": BRAND_ADDRESS},
            {"name": "Maison", "address": OTHER_ADDRESS},
        ]
    }


# ---------------------------------------------------------------- offers and limits

LEDGER = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
CHAIN_ID = 31337
CHAIN_TIME = int(NOW.timestamp())
DAY = 86_400
TERMS_HASH = "0x" + "7e" * 32
BRAND_KEY = Account.from_key("0x" + "42" * 32)
ZERO = "0x" + "00" * 20
BRAND = to_checksum_address(BRAND_ADDRESS)
"""The brand's address as the ledger and the indexer spell it."""


@dataclass
class FakeLedger:
    """The ledger's read-only calls the brand routes make: nonces, brandLimits and offerOf
    answered from dicts (ABI-encoded as the ledger answers), a block at ``time``."""

    time: int = CHAIN_TIME
    nonces: dict[str, int] = field(default_factory=dict)
    limits: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    offers: dict[tuple[int, str], tuple[Any, ...]] = field(default_factory=dict)
    down: bool = False
    relayed: list[bytes] = field(default_factory=list)
    """Calldata of each ``acceptLicenseBySig`` asked (the relay checks the ledger takes it)."""

    def chain_id(self) -> int:
        return CHAIN_ID

    def block(self, tag: BlockTag = "latest") -> Block | None:
        return Block(number=100, hash="0x" + "11" * 32, timestamp=self.time)

    def code(self, address: str, block: BlockTag = "latest") -> bytes:
        return b""

    def call(self, *, to: str, data: bytes, block: BlockTag = "latest") -> bytes:
        if self.down:
            raise ChainUnavailableError("http://rpc.test", "connection refused")
        assert to == LEDGER
        head, args = data[:4], data[4:]
        if head == selector("nonces(address)"):
            (who,) = decode(["address"], args)
            return encode(["uint256"], [self.nonces.get(to_checksum_address(who), 0)])
        if head == selector("brandLimits(address)"):
            (who,) = decode(["address"], args)
            return encode([LIMITS_TYPE], [self.limits[to_checksum_address(who)]])
        if head == selector("ownerOf(uint256)"):
            return encode(["address"], [OTHER_ADDRESS])
        if head == selector(ACCEPT_BY_SIG):
            self.relayed.append(data)
            return b""
        assert head == selector("offerOf(uint256,address)")
        twin_id, who = decode(["uint256", "address"], args)
        offer = self.offers.get((twin_id, to_checksum_address(who)))
        if offer is None:
            error = selector("LicenseNoOffer(uint256,address)")
            revert = error + encode(["uint256", "address"], [twin_id, who])
            raise ExecutionRevertedError("http://rpc.test", 3, "reverted", revert)
        return encode([LICENSE_TYPE, "uint256", "bytes32"], offer)


ACCEPT_BY_SIG = "acceptLicenseBySig(address,uint256,uint256,bytes32,uint256,uint256,bytes)"
LIMITS_TYPE = "(uint256,uint256,uint256,uint40,uint256,uint256,uint40,address)"
LICENSE_TYPE = "(uint40,uint40,uint32,uint32,bool,(uint8,uint256)[])"


def _waiting(version: int, valid_until: int = CHAIN_TIME + 30 * DAY) -> tuple[Any, ...]:
    """An ``offerOf`` answer: video at 2.5 tokens, no cap, terms hash TERMS_HASH."""
    terms = (0, valid_until, 0, 0, False, [(1, 2_500_000)])
    return (terms, version, bytes.fromhex(TERMS_HASH[2:]))


@dataclass
class BrandApi:
    client: TestClient
    store: Store
    ledger: FakeLedger
    auth: dict[str, str]
    signer_auth: dict[str, str]
    """The API key of a brand whose address is BRAND_KEY's."""


@pytest.fixture
def brand_api(settings: Settings, license_view: FakeLicenseView) -> Iterator[BrandApi]:
    """The API over a fake ledger at LEDGER (chain 31337, its clock at NOW) with two brands:
    Atelier (BRAND) and Signer (BRAND_KEY's address)."""
    app_settings = settings.model_copy(
        update={"rpc_url": "http://rpc.test", "ledger_address": LEDGER}
    )
    store = Store.from_url(app_settings.resolved_database_url)
    ledger = FakeLedger()
    app = create_app(
        app_settings,
        store=store,
        chain=license_view,
        ingestor=Ingestor(settings=app_settings, licenses=license_view),
        actions=ActionVerifier(ledger, LEDGER),
    )
    app.state.brand_ledger = BrandLedger(ledger, LEDGER)
    app.dependency_overrides[now] = lambda: NOW
    with TestClient(app) as client:
        _, key = register_brand(store, "Atelier", BRAND)
        _, signer_key = register_brand(store, "Signer", BRAND_KEY.address)
        yield BrandApi(
            client,
            store,
            ledger,
            {"Authorization": f"Bearer {key}"},
            {"Authorization": f"Bearer {signer_key}"},
        )
    store.close()


def _store_offer(
    store: Store,
    twin_id: int,
    version: int,
    *,
    brand: str = BRAND,
    status: OfferStatus = OfferStatus.PENDING,
    block: int = 40,
    valid_until: int = CHAIN_TIME + 30 * DAY,
) -> None:
    """A ``LicenseOffered`` event as the indexer stores it (video at 2.5, photos at 1 token)."""
    with store.session() as session:
        session.add(
            LicenseOfferRow(
                twin_id=twin_id,
                brand=brand,
                version=version,
                valid_from=0,
                valid_until=valid_until,
                max_uses=0 if twin_id % 2 else 10,
                purpose_hash="0x" + "aa" * 32,
                consent_hash="0x" + "cc" * 32,
                prices=[{"usageType": 1, "price": 2_500_000}, {"usageType": 0, "price": 1_000_000}],
                terms_hash="0x" + f"{twin_id:02x}" * 32,
                status=status,
                block_number=block,
                log_index=3,
                tx_hash="0x" + f"{block:02x}" * 32,
                block_time=datetime(2026, 2, 20, 9, 0, tzinfo=UTC),
            )
        )
        session.commit()


def _offer_json(twin_id: int, version: int, *, block: int, expired: bool) -> dict[str, Any]:
    max_uses = None if twin_id % 2 else 10
    return {
        "twin_id": twin_id,
        "version": version,
        "valid_from": rfc3339(0),
        "valid_until": rfc3339(CHAIN_TIME - DAY if expired else CHAIN_TIME + 30 * DAY),
        "max_uses": max_uses,
        "purpose_hash": "0x" + "aa" * 32,
        "consent_hash": "0x" + "cc" * 32,
        "prices": [
            {"usage_type": "video", "usage_type_code": 1, "price": "2500000"},
            {"usage_type": "campaign_image", "usage_type_code": 0, "price": "1000000"},
        ],
        "terms_hash": "0x" + f"{twin_id:02x}" * 32,
        "expired": expired,
        "source": {
            "tx_hash": "0x" + f"{block:02x}" * 32,
            "block_number": block,
            "log_index": 3,
            "block_time": "2026-02-20T09:00:00Z",
        },
        "accept": f"/v1/offers/{twin_id}/{version}/accept",
        "decline": {
            "to": LEDGER,
            "data": "0x"
            + (
                selector("declineLicense(uint256,uint256)")
                + encode(["uint256", "uint256"], [twin_id, version])
            ).hex(),
        },
    }


def test_offers_are_the_brands_waiting_ones_by_twin(brand_api: BrandApi) -> None:
    _store_offer(brand_api.store, 9, 1, block=41)
    _store_offer(brand_api.store, 7, 0, block=42, valid_until=CHAIN_TIME - DAY)
    _store_offer(brand_api.store, 7, 0, block=30, status=OfferStatus.WITHDRAWN)
    _store_offer(brand_api.store, 11, 2, block=31, status=OfferStatus.ACCEPTED)
    _store_offer(brand_api.store, 13, 0, block=43, brand=to_checksum_address(OTHER_ADDRESS))
    response = brand_api.client.get("/v1/offers", headers=brand_api.auth)
    assert response.status_code == 200
    assert response.json() == {
        "items": [
            _offer_json(7, 0, block=42, expired=True),
            _offer_json(9, 1, block=41, expired=False),
        ]
    }
    other = brand_api.client.get("/v1/offers", headers=brand_api.signer_auth)
    assert other.json() == {"items": []}


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/offers"), ("POST", "/v1/offers/7/0/accept"), ("GET", "/v1/brand/limits")],
)
def test_offer_and_limit_routes_need_the_brands_key(
    brand_api: BrandApi, method: str, path: str
) -> None:
    response = brand_api.client.request(method, path)
    assert response.status_code == 401
    assert response.json()["type"] == "urn:twin-bridge:problem:unauthorized"


def _accept_typed_data(brand: str, *, twin_id: int, version: int, nonce: int) -> dict[str, Any]:
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "AcceptLicense": [
                {"name": "brand", "type": "address"},
                {"name": "twinId", "type": "uint256"},
                {"name": "version", "type": "uint256"},
                {"name": "termsHash", "type": "bytes32"},
                {"name": "nonce", "type": "uint256"},
                {"name": "deadline", "type": "uint256"},
            ],
        },
        "primaryType": "AcceptLicense",
        "domain": {
            "name": "TwinLedger",
            "version": "2",
            "chainId": CHAIN_ID,
            "verifyingContract": LEDGER,
        },
        "message": {
            "brand": brand,
            "twinId": twin_id,
            "version": version,
            "termsHash": TERMS_HASH,
            "nonce": nonce,
            "deadline": CHAIN_TIME + 3600,
        },
    }


def test_accept_without_a_signature_answers_what_to_sign(brand_api: BrandApi) -> None:
    brand_api.ledger.offers[(7, BRAND)] = _waiting(3)
    brand_api.ledger.nonces[BRAND] = 5
    response = brand_api.client.post("/v1/offers/7/3/accept", headers=brand_api.auth)
    assert response.status_code == 200
    accept_data = selector("acceptLicense(uint256,uint256,bytes32)") + encode(
        ["uint256", "uint256", "bytes32"], [7, 3, bytes.fromhex(TERMS_HASH[2:])]
    )
    assert response.json() == {
        "typed_data": _accept_typed_data(BRAND, twin_id=7, version=3, nonce=5),
        "transaction": {"to": LEDGER, "data": "0x" + accept_data.hex()},
    }


def test_accept_of_no_offer_or_another_version_is_refused(brand_api: BrandApi) -> None:
    missing = brand_api.client.post("/v1/offers/7/0/accept", headers=brand_api.auth)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["type"] == "urn:twin-bridge:problem:no-offer"
    assert missing.json()["detail"] == f"no offer of twin 7 waits for {BRAND}"
    brand_api.ledger.offers[(7, BRAND)] = _waiting(2)
    stale = brand_api.client.post("/v1/offers/7/1/accept", headers=brand_api.auth)
    assert stale.status_code == 409
    assert stale.json()["type"] == "urn:twin-bridge:problem:offer-version"
    assert stale.json()["detail"] == (
        f"the offer of twin 7 waiting for {BRAND} is version 2, not 1"
    )


def _signed(typed: dict[str, Any]) -> dict[str, Any]:
    signature = Account.sign_typed_data(BRAND_KEY.key, full_message=typed).signature
    return {"message": typed["message"], "signature": "0x" + bytes(signature).hex()}


def test_accept_signed_for_other_terms_is_refused_naming_the_field(brand_api: BrandApi) -> None:
    brand = BRAND_KEY.address
    brand_api.ledger.offers[(7, brand)] = _waiting(0)
    typed = _accept_typed_data(brand, twin_id=7, version=0, nonce=0)
    typed["message"]["termsHash"] = "0x" + "00" * 32  # an offer replaced since it was signed
    response = brand_api.client.post(
        "/v1/offers/7/0/accept", headers=brand_api.signer_auth, json=_signed(typed)
    )
    assert response.status_code == 409
    assert response.json()["type"] == "urn:twin-bridge:problem:offer-changed"
    assert response.json()["detail"] == (
        f"the signed AcceptLicense has termsHash '0x{'00' * 32}'; the offer of twin 7 waiting "
        f"for {brand} has {TERMS_HASH}: sign its typed data again"
    )


def test_accept_signed_is_relayed_once(brand_api: BrandApi) -> None:
    brand = BRAND_KEY.address
    brand_api.ledger.offers[(7, brand)] = _waiting(0)
    brand_api.ledger.nonces[brand] = 2
    url = "/v1/offers/7/0/accept"
    typed = brand_api.client.post(url, headers=brand_api.signer_auth).json()["typed_data"]
    assert typed == _accept_typed_data(brand, twin_id=7, version=0, nonce=2)
    signed = _signed(typed)
    response = brand_api.client.post(url, headers=brand_api.signer_auth, json=signed)
    assert response.status_code == 202, response.text
    action = response.json()
    assert response.headers["location"] == f"/v1/owner-actions/{action['id']}"
    assert {k: action[k] for k in ("type", "signer", "twin_id", "nonce", "deadline", "status")} == {
        "type": "AcceptLicense",
        "signer": brand,
        "twin_id": 7,
        "nonce": 2,
        "deadline": rfc3339(CHAIN_TIME + 3600),
        "status": "accepted",
    }
    assert action["digest"] == "0x" + eip712.digest(typed).hex()
    signature = bytes.fromhex(signed["signature"][2:])
    assert brand_api.ledger.relayed == [
        selector(ACCEPT_BY_SIG)
        + encode(
            ["address", "uint256", "uint256", "bytes32", "uint256", "uint256", "bytes"],
            [brand, 7, 0, bytes.fromhex(TERMS_HASH[2:]), 2, CHAIN_TIME + 3600, signature],
        )
    ]
    again = brand_api.client.post(url, headers=brand_api.signer_auth, json=signed)
    assert again.status_code == 200
    assert again.json()["id"] == action["id"]


def test_brand_limits_are_read_from_the_ledger(brand_api: BrandApi) -> None:
    period_start = CHAIN_TIME // DAY * DAY
    brand_api.ledger.limits[BRAND] = (
        50_000_000_000,
        250_000_000_000,
        240_000_000_000,
        period_start,
        0,
        0,
        0,
        ZERO,
    )
    response = brand_api.client.get("/v1/brand/limits", headers=brand_api.auth)
    assert response.status_code == 200
    assert response.json() == {
        "brand": BRAND,
        "per_usage": "50000000000",
        "per_period": "250000000000",
        "spent_in_period": "240000000000",
        "remaining_in_period": "10000000000",
        "period_start": rfc3339(period_start),
        "pending_raise": None,
        "attester": None,
        "chain_time": rfc3339(CHAIN_TIME),
        "decimals": 6,
    }


def test_brand_limits_show_a_waiting_raise_and_the_brands_attester(brand_api: BrandApi) -> None:
    attester = "0x000000000000000000000000000000000000a77e"
    brand_api.ledger.limits[BRAND] = (
        1_000,
        5_000,
        5_000,
        0,
        2_000,
        9_000,
        CHAIN_TIME + 60,
        attester,
    )
    body = brand_api.client.get("/v1/brand/limits", headers=brand_api.auth).json()
    assert body["remaining_in_period"] == "0"
    assert body["pending_raise"] == {
        "per_usage": "2000",
        "per_period": "9000",
        "effective_at": rfc3339(CHAIN_TIME + 60),
    }
    assert body["attester"] == to_checksum_address(attester)


def test_brand_limits_when_the_chain_does_not_answer_are_503(brand_api: BrandApi) -> None:
    brand_api.ledger.down = True
    response = brand_api.client.get("/v1/brand/limits", headers=brand_api.auth)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["type"] == "urn:twin-bridge:problem:chain-unavailable"
    assert response.json()["detail"] == (
        "the ledger could not be read; retry later (chain at http://rpc.test unavailable: "
        "connection refused)"
    )


def test_brand_limits_without_a_chain_are_503_saying_so(api: Api) -> None:
    response = api.client.get("/v1/brand/limits", headers=api.auth)
    assert response.status_code == 503
    assert response.json()["type"] == "urn:twin-bridge:problem:no-chain"
    assert response.json()["detail"] == "this bridge has no chain configured to read"


def test_brand_ledger_signatures_are_the_compiled_abis() -> None:
    abi = load_artifact("TwinLedger").abi
    functions = {
        f"{e['name']}({','.join(_abi_type(i) for i in e['inputs'])})"
        for e in abi
        if e["type"] in ("function", "error")
    }
    for signature in (
        brand_ledger.BRAND_LIMITS,
        brand_ledger.OFFER_OF,
        brand_ledger.NONCES,
        brand_ledger.ACCEPT_LICENSE,
        brand_ledger.DECLINE_LICENSE,
        brand_ledger.SET_SPENDING_LIMITS,
        brand_ledger.SET_BRAND_ATTESTER,
        brand_ledger.NO_OFFER_ERROR,
        brand_ledger.DEPOSIT,
        brand_ledger.DEPOSIT_WITH_PERMIT,
        brand_ledger.REQUEST_ESCROW_WITHDRAWAL,
        brand_ledger.WITHDRAW_ESCROW,
        *escrow.LEDGER_SIGNATURES,
    ):
        assert signature in functions
    outputs = {e["name"]: e["outputs"] for e in abi if e["type"] == "function"}
    assert [_abi_type(o) for o in outputs["brandLimits"]] == [LIMITS_TYPE]
    assert [_abi_type(o) for o in outputs["offerOf"]] == [LICENSE_TYPE, "uint256", "bytes32"]
    assert [_abi_type(o) for o in outputs["brandAccount"]] == [
        "(uint256,uint256,uint256,uint256,uint40,uint40)"
    ]
    events = {
        f"{e['name']}({','.join(_abi_type(i) for i in e['inputs'])})": [
            i["indexed"] for i in e["inputs"]
        ]
        for e in abi
        if e["type"] == "event"
    }
    assert events[escrow.ESCROW_DEPOSITED] == [True, True, False, False]
    assert events[escrow.ESCROW_WITHDRAWAL_REQUESTED] == [True, False, False]
    assert events[escrow.ESCROW_WITHDRAWN] == [True, False]
    token = {
        f"{e['name']}({','.join(_abi_type(i) for i in e['inputs'])})"
        for e in load_artifact("MockStablecoin").abi
        if e["type"] == "function"
    }
    assert set(escrow.TOKEN_SIGNATURES) | {escrow.EIP712_DOMAIN} <= token


def _abi_type(entry: Mapping[str, Any]) -> str:
    kind = str(entry["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in entry["components"])
        return f"({inner}){kind[len('tuple') :]}"
    return kind


def test_accept_with_a_malformed_body_is_422(brand_api: BrandApi) -> None:
    brand_api.ledger.offers[(7, BRAND)] = _waiting(0)
    response = brand_api.client.post(
        "/v1/offers/7/0/accept",
        headers=brand_api.auth,
        json={"message": {}, "signature": "0xzz", "extra": 1},
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [(e["pointer"], e["type"]) for e in response.json()["errors"]] == [
        ("/body/signature", "string_pattern_mismatch"),
        ("/body/extra", "extra_forbidden"),
    ]


def test_offer_and_limit_routes_are_documented_with_their_problems(brand_api: BrandApi) -> None:
    paths = brand_api.client.get("/openapi.json").json()["paths"]
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    routes = {
        ("get", "/v1/offers"): {"200", "401", "429"},
        ("post", "/v1/offers/{twin_id}/{version}/accept"): {
            *("200", "202", "400", "401", "404", "409", "413", "415", "422", "429", "502", "503"),
        },
        ("get", "/v1/brand/limits"): {"200", "401", "429", "502", "503"},
    }
    for (method, path), statuses in routes.items():
        responses = paths[path][method]["responses"]
        assert set(responses) == statuses
        for status in statuses - {"200", "202"}:
            assert responses[status]["content"] == problem, (path, status)
    accepted = paths["/v1/offers/{twin_id}/{version}/accept"]["post"]["responses"]["202"]
    assert accepted["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ActionOut"
    }


ESCROW_ROUTES = {
    ("get", "/v1/brand/escrow"): {"200", "401", "429", "502", "503"},
    ("post", "/v1/brand/escrow/deposit"): {"200", "400", "401", "422", "429", "502", "503"},
    ("post", "/v1/brand/escrow/withdrawal-request"): {
        *("200", "400", "401", "422", "429", "502", "503"),
    },
    ("post", "/v1/brand/escrow/withdrawal"): {"200", "401", "409", "429", "502", "503"},
}


def test_escrow_routes_are_documented_need_the_key_and_a_chain(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for (method, path), statuses in ESCROW_ROUTES.items():
        responses = paths[path][method]["responses"]
        assert set(responses) == statuses
        for status in statuses - {"200"}:
            assert responses[status]["content"] == problem, (path, status)
        body = {"amount": "1"} if method == "post" else None
        anonymous = api.client.request(method.upper(), path, json=body)
        assert anonymous.status_code == 401
        unchained = api.client.request(method.upper(), path, json=body, headers=api.auth)
        assert unchained.status_code == 503
        assert unchained.json()["detail"] == "this bridge has no chain configured to read"
