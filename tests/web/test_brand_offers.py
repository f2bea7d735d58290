"""The dashboard's agreements in headless Chromium (Debian's ``chromium``, driven by Playwright)
against a fake bridge (Playwright routes answer the API; the pages and scripts are the shipped
files) and an injected EIP-1193 wallet whose keys stay in Python:

- the brand view shows the spending limits with a raise waiting for its delay, lists the offers
  waiting for the brand, accepts one (the wallet signs the bridge's AcceptLicense typed data, the
  bridge relays it) and declines another (the brand's own transaction with the offer's calldata);
- a wallet of another address cannot decide for the brand;
- the model view offers a license (OfferLicense naming its owner) and revokes a named version.
"""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from playwright.sync_api import Route, sync_playwright

from bridge.api.web import WEB_DIR
from bridge.domain import eip712
from bridge.domain.times import rfc3339
from bridge.intake.owner_actions import action_types

from .test_dashboard import CHROMIUM, WALLET_SCRIPT, _low_contrast, _shot, _unlabelled_controls

ORIGIN = "http://bridge.test"
LEDGER = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
BRAND_KEY = "0x" + "42" * 32
MODEL_KEY = "0x" + "43" * 32
BRAND = Account.from_key(BRAND_KEY).address
MODEL = Account.from_key(MODEL_KEY).address
API_KEY = "tb_live_test-key"
CHAIN_TIME = 1_772_366_400  # 2026-03-01 12:00 UTC
TX_ACCEPT = "0x" + "a1" * 32
TX_DECLINE = "0x" + "d2" * 32
DECLINE_DATA = "0x" + "cd" * 68


@dataclass
class Wallet:
    """One dev key behind the injected provider: accounts, chain id, typed-data signatures and
    sent transactions (recorded, answered with ``tx_hash``)."""

    key: str
    signed: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    tx_hash: str = TX_DECLINE

    @property
    def address(self) -> str:
        return str(Account.from_key(self.key).address)

    def __call__(self, method: str, params: list[Any]) -> dict[str, Any]:
        if method in ("eth_requestAccounts", "eth_accounts"):
            return {"result": [self.address]}
        if method == "eth_chainId":
            return {"result": hex(31337)}
        if method == "eth_signTypedData_v4":
            signer, data = params
            assert signer == self.address
            typed = json.loads(data)
            self.signed.append(typed)
            signature = Account.sign_typed_data(self.key, full_message=typed).signature
            return {"result": "0x" + bytes(signature).hex()}
        if method == "eth_sendTransaction":
            self.sent.append(params[0])
            return {"result": self.tx_hash}
        return {"error": {"code": 4200, "message": f"{method} is not supported"}}


Answer = Callable[[Any], tuple[int, Any]]


@dataclass
class FakeBridge:
    """The bridge's API by (method, path): a JSON answer or a function of the request body; the
    dashboard's files from ``bridge/web``. Records each API request (method, path, key, body)."""

    answers: dict[tuple[str, str], Answer] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # The payment token whose symbol and decimals the dashboard shows amounts in.
        token = {"address": "0x" + "70" * 20, "symbol": "mUSD", "name": "Mock USD", "decimals": 6}
        self.on("GET", "/v1/token", token)

    def on(self, method: str, path: str, answer: Any, status: int = 200) -> None:
        self.answers[(method, path)] = answer if callable(answer) else lambda _b: (status, answer)

    def __call__(self, route: Route) -> None:
        request = route.request
        path = request.url.removeprefix(ORIGIN)
        if path == "/" or path.startswith("/web/"):
            file = WEB_DIR / ("index.html" if path == "/" else path.removeprefix("/web/"))
            kind = mimetypes.guess_type(file.name)[0] or "text/plain"
            route.fulfill(status=200, body=file.read_bytes(), content_type=kind)
            return
        body = json.loads(request.post_data) if request.post_data else None
        auth = request.headers.get("authorization")
        self.requests.append((request.method, path, auth, body))
        answer = self.answers.get((request.method, path))
        if answer is None:
            route.fulfill(status=404, json={"title": "Not found", "detail": f"no {path}"})
            return
        status, payload = answer(body)
        route.fulfill(status=status, json=payload)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            yield browser
        finally:
            browser.close()


def _open(browser: Any, bridge: FakeBridge, wallet: Wallet, view: str) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.expose_function("__testWallet", wallet)
    context.add_init_script(WALLET_SCRIPT)
    context.route(f"{ORIGIN}/**", bridge)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    page.set_default_timeout(15_000)
    page.goto(f"{ORIGIN}/#{view}")
    return page


def _offer(twin_id: int, version: int, **changes: Any) -> dict[str, Any]:
    return {
        "twin_id": twin_id,
        "version": version,
        "valid_from": rfc3339(0),
        "valid_until": rfc3339(1_775_044_800),  # 2026-04-01 12:00 UTC
        "max_uses": None,
        "purpose_hash": "0x" + "aa" * 32,
        "consent_hash": "0x" + "cc" * 32,
        "prices": [{"usage_type": "campaign_image", "usage_type_code": 0, "price": "2500000"}],
        "terms_hash": "0x" + f"{twin_id:02x}" * 32,
        "expired": False,
        "source": {
            "tx_hash": "0x" + "0f" * 32,
            "block_number": 40,
            "log_index": 3,
            "block_time": "2026-02-20T09:00:00Z",
        },
        "accept": f"/v1/offers/{twin_id}/{version}/accept",
        "decline": {"to": LEDGER, "data": DECLINE_DATA},
        **changes,
    }


LIMITS = {
    "brand": BRAND,
    "per_usage": "50000000000",
    "per_period": "250000000000",
    "spent_in_period": "240000000000",
    "remaining_in_period": "10000000000",
    "period_start": rfc3339(1_772_323_200),  # 2026-03-01 00:00 UTC
    "pending_raise": {
        "per_usage": "60000000000",
        "per_period": "300000000000",
        "effective_at": rfc3339(1_772_409_600),  # 2026-03-02 00:00 UTC
    },
    "attester": None,
    "chain_time": rfc3339(CHAIN_TIME),
    "decimals": 6,
}


def _acceptance(twin_id: int, version: int) -> dict[str, Any]:
    message = {
        "brand": BRAND,
        "twinId": twin_id,
        "version": version,
        "termsHash": "0x" + f"{twin_id:02x}" * 32,
        "nonce": 0,
        "deadline": CHAIN_TIME + 3600,
    }
    return {
        "typed_data": eip712.typed_data("AcceptLicense", message, chain_id=31337, ledger=LEDGER),
        "transaction": {"to": LEDGER, "data": "0x00"},
    }


def _brand_bridge() -> FakeBridge:
    bridge = FakeBridge()
    bridge.on("GET", "/v1/brand", {"name": "Atelier", "address": BRAND})
    bridge.on("GET", "/v1/brands", {"items": [{"name": "Atelier", "address": BRAND}]})
    bridge.on("GET", "/v1/brand/limits", LIMITS)
    expired = _offer(11, 0, expired=True, max_uses=40)
    bridge.on("GET", "/v1/offers", {"items": [_offer(7, 2), _offer(9, 0), expired]})
    bridge.on("GET", f"/v1/brands/{BRAND}/account?changes=5", {"title": "no account"}, 404)
    bridge.on("GET", "/v1/twins?limit=500", {"items": [], "next": None})
    bridge.on("GET", "/v1/usage-events?limit=20", {"items": [], "next": None})
    bridge.on("GET", "/v1/owner-actions/types", action_types(31337, LEDGER))
    return bridge


def _login(page: Any) -> None:
    page.fill("#api-key", API_KEY)
    page.click("#brand-login button[type=submit]")
    page.wait_for_selector("#brand-offers table")


def _offer_row(page: Any, twin_id: int) -> Any:
    return page.locator("#brand-offers tbody tr", has=page.locator(f"td:text-is('#{twin_id}')"))


def test_brand_view_shows_limits_with_a_waiting_raise_and_the_offers(browser: Any) -> None:
    bridge = _brand_bridge()
    page = _open(browser, bridge, Wallet(BRAND_KEY), "brand")
    _login(page)
    assert page.text_content("#limit-usage") == "50,000.00 mUSD"
    assert page.text_content("#limit-period") == "250,000.00 mUSD"
    assert page.text_content("#limit-spent") == (
        "Spent since 2026-03-01 00:00 UTC: 240,000.00 mUSD; 10,000.00 mUSD left."
    )
    assert page.inner_text("#limit-raise") == (
        "Raise waiting\n\n60,000.00 mUSD\n\nper usage and 300,000.00 mUSD per period from "
        "2026-03-02 00:00 UTC.\n\nYour usages are attested by the bridge."
    )
    cells = page.eval_on_selector_all(
        "#brand-offers tbody tr",
        "rows => rows.map((r) => [...r.cells].slice(0, 6).map((c) => c.innerText.trim()))",
    )
    assert cells == [
        [
            "#7",
            "2",
            "campaign image: 2.50 mUSD",
            "on acceptance → 2026-04-01",
            "no cap",
            "0x070707…070707",
        ],
        [
            "#9",
            "0",
            "campaign image: 2.50 mUSD",
            "on acceptance → 2026-04-01",
            "no cap",
            "0x090909…090909",
        ],
        [
            "#11",
            "0",
            "campaign image: 2.50 mUSD",
            "on acceptance → 2026-04-01",
            "at most 40",
            "0x0b0b0b…0b0b0b",
        ],
    ]
    expired = _offer_row(page, 11)
    assert "expired" in expired.inner_text()
    assert expired.locator("button.accept").is_disabled()
    assert not _offer_row(page, 7).locator("button.accept").is_disabled()
    brand_reads = sorted(
        (m, p, a) for m, p, a, _ in bridge.requests if p in ("/v1/offers", "/v1/brand/limits")
    )
    assert brand_reads == [
        ("GET", "/v1/brand/limits", f"Bearer {API_KEY}"),
        ("GET", "/v1/offers", f"Bearer {API_KEY}"),
    ]
    assert _unlabelled_controls(page) == []
    assert _low_contrast(page) == []
    _shot(page, "brand-offers-desktop")
    assert page.errors == []


def test_brand_accepts_one_offer_and_declines_another(browser: Any) -> None:
    bridge = _brand_bridge()
    acceptance = _acceptance(7, 2)
    confirmed = {
        "id": 5,
        "type": "AcceptLicense",
        "status": "confirmed",
        "tx_hash": TX_ACCEPT,
        "block_number": 44,
        "error": None,
    }

    def accept(body: Any) -> tuple[int, Any]:
        if body is None:
            return 200, acceptance
        return 202, {**confirmed, "status": "accepted", "tx_hash": None, "block_number": None}

    bridge.on("POST", "/v1/offers/7/2/accept", accept)
    bridge.on("GET", "/v1/owner-actions/5", confirmed)
    wallet = Wallet(BRAND_KEY)
    page = _open(browser, bridge, wallet, "brand")
    _login(page)

    row = _offer_row(page, 7)
    row.locator("button.accept").click()
    row.locator(".offer-status:has-text('accepted in')").wait_for()
    assert row.locator(".offer-status button.tx").get_attribute("data-tx") == TX_ACCEPT
    assert page.text_content("#notice") == (
        "Accepted the offer of twin #7 (version 2): its usages are payable from now on."
    )
    assert wallet.signed == [acceptance["typed_data"]]
    posted = [b for m, p, _, b in bridge.requests if (m, p) == ("POST", "/v1/offers/7/2/accept")]
    assert posted[0] is None
    signed = posted[1]
    assert signed["message"] == acceptance["typed_data"]["message"]
    recovered = Account.recover_message(
        encode_typed_data(full_message=acceptance["typed_data"]),
        signature=bytes.fromhex(signed["signature"][2:]),
    )
    assert recovered == BRAND
    assert row.locator("button.accept").is_disabled()

    other = _offer_row(page, 9)
    other.locator("button.decline").click()
    other.locator(".offer-status:has-text('declined in')").wait_for()
    assert wallet.sent == [{"from": BRAND, "to": LEDGER, "data": DECLINE_DATA}]
    assert other.locator(".offer-status button.tx").get_attribute("data-tx") == TX_DECLINE
    assert page.text_content("#notice") == "Declined the offer of twin #9 (version 0)."
    assert _low_contrast(page) == []
    _shot(page, "brand-offers-decided-desktop")
    assert page.errors == []


def test_a_wallet_of_another_address_cannot_decide_for_the_brand(browser: Any) -> None:
    bridge = _brand_bridge()
    wallet = Wallet(MODEL_KEY)
    page = _open(browser, bridge, wallet, "brand")
    _login(page)
    row = _offer_row(page, 7)
    row.locator("button.accept").click()
    error = row.locator(".offer-status p.error")
    error.wait_for()
    assert error.text_content() == (
        f"Connect the wallet of the brand's address {BRAND}; this one is {MODEL}."
    )
    assert not row.locator("button.accept").is_disabled()  # given back
    assert wallet.signed == []
    assert wallet.sent == []
    assert not any(m == "POST" for m, *_ in bridge.requests)


def _model_bridge() -> FakeBridge:
    bridge = FakeBridge()
    twin = {
        "twin_id": 7,
        "owner": {"address": MODEL, "source": None},
        "metadata_uri": "ipfs://twin-7",
        "consent_hash": "0x" + "cc" * 32,
        "minted": {
            "tx_hash": "0x" + "01" * 32,
            "block_number": 2,
            "log_index": 0,
            "block_time": "2026-02-01T00:00:00Z",
        },
        "pause": {"paused": False, "paused_since": None, "source": None, "history": []},
        "payees": {"payees": [], "owner_bps": 10_000, "source": None},
        "licenses": [],
    }
    bridge.on("GET", "/v1/owner-actions/types", action_types(31337, LEDGER))
    bridge.on("GET", f"/v1/twins?owner={MODEL}&limit=500", {"items": [twin], "next": None})
    bridge.on("GET", "/v1/brands", {"items": [{"name": "Atelier", "address": BRAND}]})
    bridge.on(
        "GET",
        f"/v1/payees/{MODEL}/earnings?period=month",
        {"totals": {"claimable": "0", "paid_out": "0"}, "periods": []},
    )
    bridge.on(
        "GET",
        "/v1/twins/7/earnings?period=month",
        {"totals": {"undistributed": "0"}, "periods": []},
    )
    bridge.on("GET", "/v1/usages?limit=20&twin_id=7", {"items": [], "next": None})
    bridge.on(
        "GET", f"/v1/accounts/{MODEL}/nonce", {"next_nonce": 3, "chain_time_unix": CHAIN_TIME}
    )
    bridge.on(
        "POST",
        "/v1/owner-actions",
        lambda body: (
            202,
            {"id": 8, "type": body["type"], "status": "accepted", "message": body["message"]},
        ),
    )
    bridge.on("GET", "/v1/owner-actions/8", {"id": 8, "type": "OfferLicense", "status": "accepted"})
    return bridge


def _relayed(bridge: FakeBridge) -> dict[str, Any]:
    """The last owner action posted, once its signature is checked to be the model's."""
    body = [b for m, p, _, b in bridge.requests if (m, p) == ("POST", "/v1/owner-actions")][-1]
    types = action_types(31337, LEDGER)
    typed = {
        "types": types["actions"][body["type"]]["types"],
        "primaryType": body["type"],
        "domain": types["domain"],
        "message": body["message"],
    }
    signature = bytes.fromhex(body["signature"][2:])
    assert (
        Account.recover_message(encode_typed_data(full_message=typed), signature=signature) == MODEL
    )
    return dict(body)


def test_model_offers_a_license_and_revokes_a_named_version(browser: Any) -> None:
    bridge = _model_bridge()
    page = _open(browser, bridge, Wallet(MODEL_KEY), "model")
    page.click("#connect")
    page.locator("article[data-twin='7']").wait_for()
    assert _unlabelled_controls(page) == []
    page.select_option("#offer-twin", "7")
    page.fill("#offer-brand", BRAND)
    page.fill("#price-video", "2.5")
    page.fill("#offer-days", "30")
    page.click("#form-offer button[type=submit]")
    page.locator("#actions li", has_text="Offer twin #7 to Atelier").wait_for()
    offered = _relayed(bridge)
    assert (offered["type"], offered["signer"].lower()) == ("OfferLicense", MODEL.lower())
    assert offered["message"] == {
        "owner": MODEL,
        "twinId": 7,
        "terms": {
            "brand": BRAND,
            "validFrom": 0,
            "validUntil": CHAIN_TIME + 30 * 86_400,
            "maxUses": 0,
            "purposeHash": "0x" + "00" * 32,
            "consentHash": "0x" + "00" * 32,
            "prices": [{"usageType": 1, "price": 2_500_000}],
        },
        "nonce": 3,
        "deadline": CHAIN_TIME + 3600,
    }

    page.select_option("#revoke-twin", "7")
    page.fill("#revoke-brand", BRAND)
    page.click("#form-revoke button[type=submit]")
    page.wait_for_selector(
        "#form-revoke p.error:has-text("
        "\"the version must be a whole number (the license's, or the waiting offer's)\")"
    )
    page.fill("#revoke-version", "4")
    page.click("#form-revoke button[type=submit]")
    page.locator("#actions li", has_text="Revoke version 4 of Atelier on twin #7").wait_for()
    revoked = _relayed(bridge)
    assert revoked["message"] == {
        "owner": MODEL,
        "twinId": 7,
        "brand": BRAND,
        "version": 4,
        "nonce": 3,
        "deadline": CHAIN_TIME + 3600,
    }
    assert page.errors == []
