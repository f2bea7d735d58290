"""The brand view's escrow in headless Chromium (Debian's ``chromium``, driven by Playwright)
against a fake bridge and an injected EIP-1193 wallet whose keys stay in Python (the fakes of
``test_brand_offers``):

- the view shows the escrow, debt and wallet read from the chain (``GET /v1/brand/escrow``);
- a deposit signs the token's EIP-2612 permit in the wallet and sends the one depositWithPermit
  the bridge builds from the signature; a withdrawal is requested (the brand's own transaction),
  shown locked until it unlocks, then withdrawn;
- with a token without permit the wallet sends approve then deposit, each once the one before is
  mined; amounts beyond the wallet, malformed amounts, a reverted transaction, a refusal of the
  bridge and a wallet of another address are told in the form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data

from bridge.domain.times import rfc3339

from .test_brand_offers import (
    API_KEY,
    BRAND,
    BRAND_KEY,
    CHAIN_TIME,
    LEDGER,
    MODEL,
    MODEL_KEY,
    FakeBridge,
    Wallet,
    _brand_bridge,
    _login,
    _open,
    browser,  # noqa: F401 - a fixture
)
from .test_dashboard import _low_contrast, _shot, _unlabelled_controls

TOKEN = "0x" + "70" * 20
APPROVE = {"to": TOKEN, "data": "0x095ea7b3" + "00" * 64}
DEPOSIT = {"to": LEDGER, "data": "0x47e7ef24" + "11" * 64}
DEPOSIT_WITH_PERMIT = {"to": LEDGER, "data": "0x1f5d1b6e" + "22" * 192}
REQUEST = {"to": LEDGER, "data": "0x8ad49a22" + "33" * 32}
WITHDRAW = {"to": LEDGER, "data": "0xa6e4a2f5"}
UNLOCKS_AT = 1_775_476_800  # 2026-04-06 12:00 UTC
LAPSES_AT = 1_776_081_600  # 2026-04-13 12:00 UTC


@dataclass
class ChainWallet(Wallet):
    """``Wallet`` that also answers receipts: each sent transaction gets its own hash and is mined
    (status 1), or reverted when its number is in ``reverts``."""

    reverts: set[int] = field(default_factory=set)

    def __call__(self, method: str, params: list[Any]) -> dict[str, Any]:
        if method == "eth_sendTransaction":
            self.sent.append(params[0])
            return {"result": _tx_hash(len(self.sent))}
        if method == "eth_getTransactionReceipt":
            number = int(params[0][2:4], 16)
            status = "0x0" if number in self.reverts else "0x1"
            return {"result": {"transactionHash": params[0], "status": status}}
        return super().__call__(method, params)


def _tx_hash(number: int) -> str:
    return "0x" + f"{number:02x}" * 32


def _escrow(**changes: Any) -> dict[str, Any]:
    """``GET /v1/brand/escrow``: 1,000 mUSD of escrow, 40 mUSD of debt, 5,000 mUSD in the wallet."""
    return {
        "brand": BRAND,
        "escrow": "1000000000",
        "debt": "40000000",
        "debt_reserve": "0",
        "pending_withdrawal": "0",
        "withdrawal_unlocks_at": None,
        "withdrawal_lapses_at": None,
        "withdrawable": False,
        "token": TOKEN,
        "wallet_balance": "5000000000",
        "allowance": "0",
        "permit": True,
        "chain_id": 31337,
        "chain_time": rfc3339(CHAIN_TIME),
        "decimals": 6,
        **changes,
    }


REQUESTED = {
    "pending_withdrawal": "500000000",
    "withdrawal_unlocks_at": rfc3339(UNLOCKS_AT),
    "withdrawal_lapses_at": rfc3339(LAPSES_AT),
}


def _states(bridge: FakeBridge, *states: dict[str, Any]) -> None:
    """``GET /v1/brand/escrow`` answers ``states`` in turn, the last one again."""
    queue = list(states)
    bridge.on(
        "GET", "/v1/brand/escrow", lambda _b: (200, queue.pop(0) if len(queue) > 1 else queue[0])
    )


def _permit() -> dict[str, Any]:
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Permit": [
                {"name": "owner", "type": "address"},
                {"name": "spender", "type": "address"},
                {"name": "value", "type": "uint256"},
                {"name": "nonce", "type": "uint256"},
                {"name": "deadline", "type": "uint256"},
            ],
        },
        "primaryType": "Permit",
        "domain": {
            "name": "Mock USD",
            "version": "1",
            "chainId": 31337,
            "verifyingContract": TOKEN,
        },
        "message": {
            "owner": BRAND,
            "spender": LEDGER,
            "value": "250000000",
            "nonce": "0",
            "deadline": str(CHAIN_TIME + 3600),
        },
    }


def _posted(bridge: FakeBridge, path: str) -> list[Any]:
    return [b for m, p, _, b in bridge.requests if (m, p) == ("POST", path)]


def _text(page: Any, selector: str) -> str:
    return " ".join(page.inner_text(selector).split())


def _submit(page: Any, form: str, status: str) -> Any:
    """Submits ``form`` and waits for its status to start with ``status``."""
    page.click(f"#{form} button[type=submit]")
    done = page.locator(f"#{form} .escrow-status:has-text('{status}')")
    done.wait_for()
    return done


def test_brand_deposits_with_a_permit_requests_a_withdrawal_and_withdraws(browser: Any) -> None:  # noqa: F811
    bridge = _brand_bridge()
    _states(
        bridge,
        _escrow(),
        _escrow(escrow="1210000000", debt="0", wallet_balance="4750000000"),
        _escrow(escrow="1210000000", debt="0", wallet_balance="4750000000", **REQUESTED),
        _escrow(
            escrow="1210000000",
            debt="0",
            wallet_balance="4750000000",
            withdrawable=True,
            chain_time=rfc3339(UNLOCKS_AT),
            **REQUESTED,
        ),
        _escrow(escrow="710000000", debt="0", wallet_balance="5250000000"),
    )
    permit = _permit()

    def deposit(body: Any) -> tuple[int, Any]:
        if "permit" not in body:
            return 200, {"permit": permit, "transactions": [APPROVE, DEPOSIT]}
        return 200, {"permit": None, "transactions": [DEPOSIT_WITH_PERMIT]}

    bridge.on("POST", "/v1/brand/escrow/deposit", deposit)
    bridge.on("POST", "/v1/brand/escrow/withdrawal-request", {"transactions": [REQUEST]})
    bridge.on("POST", "/v1/brand/escrow/withdrawal", {"transactions": [WITHDRAW]})
    wallet = ChainWallet(BRAND_KEY)
    page = _open(browser, bridge, wallet, "brand")
    _login(page)
    page.wait_for_selector("#escrow-now")

    assert page.text_content("#escrow-now") == "1,000.00 mUSD"
    assert page.text_content("#escrow-debt") == (
        "Debt 40.00 mUSD (reserve 0.00 mUSD), on chain at 2026-03-01 12:00 UTC."
    )
    assert _text(page, "#escrow-withdrawal") == "Withdrawal requested None"
    assert _text(page, "#escrow-wallet") == "5,000.00 mUSD"
    assert page.locator("#withdraw-escrow").is_disabled()
    assert _unlabelled_controls(page) == []

    page.fill("#deposit-amount", "250")
    status = _submit(page, "form-deposit", "deposited")
    assert (
        _text(page, "#form-deposit .escrow-status")
        == f"deposited 250.00 mUSD in {_tx_hash(1)[:8]}…{_tx_hash(1)[-6:]}"
    )
    assert status.locator("button.tx").get_attribute("data-tx") == _tx_hash(1)
    assert wallet.signed == [permit]
    first, signed = _posted(bridge, "/v1/brand/escrow/deposit")
    assert first == {"amount": "250000000"}
    assert signed["amount"] == "250000000"
    assert signed["permit"]["deadline"] == str(CHAIN_TIME + 3600)
    recovered = Account.recover_message(
        encode_typed_data(full_message=permit),
        signature=bytes.fromhex(signed["permit"]["signature"][2:]),
    )
    assert recovered == BRAND
    assert wallet.sent == [{"from": BRAND, **DEPOSIT_WITH_PERMIT}]  # one transaction, no approve
    assert page.text_content("#notice") == (
        "Deposited 250.00 mUSD: debt is repaid first, the rest is escrow."
    )
    page.wait_for_selector("#escrow-now:text-is('1,210.00 mUSD')")
    assert page.input_value("#deposit-amount") == ""

    page.fill("#withdrawal-amount", "500")
    _submit(page, "form-withdrawal-request", "requested")
    assert _posted(bridge, "/v1/brand/escrow/withdrawal-request") == [{"amount": "500000000"}]
    assert wallet.sent[1:] == [{"from": BRAND, **REQUEST}]
    page.wait_for_selector("#escrow-withdrawal:has-text('500.00 mUSD')")
    assert _text(page, "#escrow-withdrawal") == (
        "Withdrawal requested 500.00 mUSD locked Unlocks 2026-04-06 12:00 UTC, lapses "
        "2026-04-13 12:00 UTC."
    )
    assert page.locator("#withdraw-escrow").is_disabled()
    _shot(page, "brand-escrow-desktop")

    page.reload()  # the notice period has passed
    page.wait_for_selector("#escrow-withdrawal:has-text('withdrawable')")
    assert not page.locator("#withdraw-escrow").is_disabled()
    _submit(page, "form-withdraw", "withdrawn")
    assert _text(page, "#form-withdraw .escrow-status").startswith("withdrawn 500.00 mUSD in ")
    assert _posted(bridge, "/v1/brand/escrow/withdrawal") == [None]
    assert wallet.sent[2:] == [{"from": BRAND, **WITHDRAW}]
    assert page.text_content("#notice") == "Withdrew 500.00 mUSD from your escrow to your wallet."
    page.wait_for_selector("#escrow-now:text-is('710.00 mUSD')")
    assert page.locator("#withdraw-escrow").is_disabled()
    assert {a for m, p, a, _ in bridge.requests if p.startswith("/v1/brand/escrow")} == {
        f"Bearer {API_KEY}"
    }
    assert _low_contrast(page) == []
    assert page.errors == []


def test_brand_deposit_without_permit_approves_first_and_errors_are_told(browser: Any) -> None:  # noqa: F811
    bridge = _brand_bridge()
    _states(bridge, _escrow(permit=False, withdrawable=True, **REQUESTED))
    bridge.on(
        "POST", "/v1/brand/escrow/deposit", {"permit": None, "transactions": [APPROVE, DEPOSIT]}
    )
    refusal = {
        "type": "urn:twin-bridge:problem:no-withdrawal",
        "title": "Nothing to withdraw",
        "status": 409,
        "detail": "the withdrawal request lapsed at 2026-04-13 12:00:00 UTC; request it again",
    }
    bridge.on("POST", "/v1/brand/escrow/withdrawal", refusal, status=409)
    wallet = ChainWallet(BRAND_KEY)
    page = _open(browser, bridge, wallet, "brand")
    _login(page)
    page.wait_for_selector("#escrow-now")
    assert "a deposit approves the ledger first (two transactions)" in _text(
        page, "#brand-escrow-now"
    )

    def deposit_error(amount: str) -> str:
        page.fill("#deposit-amount", amount)
        page.click("#form-deposit button[type=submit]")
        error = page.locator("#form-deposit p.error")
        error.wait_for()
        text = str(error.text_content())
        page.evaluate("document.querySelector('#form-deposit p.error').textContent = ''")
        return text

    assert deposit_error("6000") == (
        "Your wallet holds 5,000.00 mUSD of the payment token, less than 6,000.00 mUSD."
    )
    assert deposit_error("12.1234567") == '"12.1234567" is not an amount in mUSD (up to 6 decimals)'
    assert deposit_error("0") == "Give an amount in mUSD above 0 (up to 6 decimals)."
    assert _posted(bridge, "/v1/brand/escrow/deposit") == []

    page.fill("#deposit-amount", "99.5")
    _submit(page, "form-deposit", "deposited")
    assert _posted(bridge, "/v1/brand/escrow/deposit") == [{"amount": "99500000"}]
    assert wallet.signed == []
    assert wallet.sent == [{"from": BRAND, **APPROVE}, {"from": BRAND, **DEPOSIT}]

    wallet.reverts = {4}  # the deposit after the next approve
    assert (
        deposit_error("1") == f"The ledger refused the deposit: transaction {_tx_hash(4)} reverted."
    )

    page.click("#form-withdraw button[type=submit]")
    page.locator("#form-withdraw p.error").wait_for()
    assert page.text_content("#form-withdraw p.error") == (
        "The bridge refused the withdrawal: the withdrawal request lapsed at 2026-04-13 12:00:00 "
        "UTC; request it again"
    )
    assert len(wallet.sent) == 4  # nothing sent for the refused withdrawal
    assert page.errors == []


def test_a_wallet_of_another_address_cannot_move_the_brands_escrow(browser: Any) -> None:  # noqa: F811
    bridge = _brand_bridge()
    _states(bridge, _escrow())
    wallet = ChainWallet(MODEL_KEY)
    page = _open(browser, bridge, wallet, "brand")
    _login(page)
    page.wait_for_selector("#escrow-now")
    page.fill("#withdrawal-amount", "10")
    page.click("#form-withdrawal-request button[type=submit]")
    error = page.locator("#form-withdrawal-request p.error")
    error.wait_for()
    assert error.text_content() == (
        f"Connect the wallet of the brand's address {BRAND}; this one is {MODEL}."
    )
    assert wallet.sent == []
    assert _posted(bridge, "/v1/brand/escrow/withdrawal-request") == []
    assert not page.locator("#form-withdrawal-request button[type=submit]").is_disabled()
    assert page.errors == []
