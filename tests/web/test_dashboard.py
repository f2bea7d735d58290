"""The dashboard end to end, in headless Chromium (Debian's ``chromium``, driven by Playwright)
against the dev stack of ``make run``: a model connects a wallet (an injected EIP-1193 provider
whose keys stay in Python) and offers a license through the form; the brand's usages are refused
as "offer not accepted" until the brand accepts the offer in its view (signing with its own
wallet); then a usage settles, the model sees the earning and withdraws it (the token balance
moves on chain), the brand sees its escrow, its spending limits and the usage's proof, and the
auditor view shows what ``twin-bridge audit`` says of the same blocks. Screenshots of every view,
desktop and phone, go to build/screenshots/."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from playwright.sync_api import sync_playwright
from web3 import Web3

from bridge.chain.deploy import contract_at
from bridge.chain.toolchain import REPO_ROOT
from bridge.devstack.demo import ESCROW_PER_BRAND

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO_ROOT / "build" / "screenshots"
START_TIMEOUT_S = 180.0
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
PRICE_USD = "123.45"
PRICE = 123_450_000
QUANTITY = 2


WALLET_SCRIPT = """
window.ethereum = {
  isTwinBridgeTestWallet: true,
  async request({ method, params }) {
    const answer = await window.__testWallet(method, params || []);
    if (answer && answer.error) {
      const error = new Error(answer.error.message);
      error.code = answer.error.code;
      throw error;
    }
    return answer.result;
  },
  on() {},
  removeListener() {},
};
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Wallet:
    """The Python side of the injected provider: one dev key; says no while ``refuse`` is set."""

    key: str
    chain_id: int = 31337
    refuse: bool = False
    calls: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return str(Account.from_key(self.key).address)

    def __call__(self, method: str, params: list[Any]) -> dict[str, Any]:
        self.calls.append(method)
        if self.refuse:
            return {"error": {"code": 4001, "message": "User rejected the request."}}
        if method in ("eth_requestAccounts", "eth_accounts"):
            return {"result": [self.address]}
        if method == "eth_chainId":
            return {"result": hex(self.chain_id)}
        if method == "eth_signTypedData_v4":
            signer, data = params
            assert signer == self.address
            signed = Account.sign_typed_data(self.key, full_message=json.loads(data))
            return {"result": "0x" + bytes(signed.signature).hex()}
        return {"error": {"code": 4200, "message": f"{method} is not supported"}}


@dataclass
class DevStack:
    info: dict[str, Any]
    data_dir: Path

    @property
    def url(self) -> str:
        return str(self.info["api_url"])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    """``make run`` in a temporary data directory with 0.5 s blocks, until the module ends."""
    root = tmp_path_factory.mktemp("dashboard")
    data_dir = root / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_BRIDGE_")}
    env["TWIN_BRIDGE_DATA_DIR"] = str(data_dir)
    args = f"--rpc-port {_free_port()} --api-port {_free_port()} --block-time 0.5"
    out = root / "make-run.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            ["make", "-s", "--no-print-directory", "run", f"DEV_ARGS={args}"],  # noqa: S607
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        info: dict[str, Any] = {}
        while not info.get("ready"):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"make run did not get ready:\n{out.read_text(errors='replace')}")
            time.sleep(0.5)
            try:
                info = json.loads((data_dir / "dev.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                info = {}
        yield DevStack(info, data_dir)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


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


def _page(browser: Any, wallet: Wallet, viewport: dict[str, int], *, phone: bool = False) -> Any:
    context = browser.new_context(
        viewport=viewport, is_mobile=phone, has_touch=phone, device_scale_factor=2 if phone else 1
    )
    context.expose_function("__testWallet", wallet)
    context.add_init_script(WALLET_SCRIPT)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    page.set_default_timeout(30_000)
    return page


def _shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _owner_share(amount: int, payees: list[dict[str, Any]]) -> int:
    return amount - sum(amount * p["bps"] // 10_000 for p in payees)


def _unlabelled_controls(page: Any) -> list[str]:
    """Visible form controls without a label (a <label for>, a wrapping label or aria-label)."""
    found: list[str] = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')]
          .filter((el) => el.offsetParent !== null)
          .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                          && !el.getAttribute('aria-labelledby'))
          .map((el) => el.id || el.name || el.outerHTML)"""
    )
    return found


LOW_CONTRAST_SCRIPT = """() => {
  const rgb = (text) => (text.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const c = [r, g, b].map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const low = [];
  for (const el of document.querySelectorAll('body *')) {
    if (el.offsetParent === null || el.closest('svg')) continue;
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    const style = getComputedStyle(el);
    const [a, b] = [lum(rgb(style.color)), lum(background(el))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    const text = el.textContent.trim().slice(0, 30);
    if (ratio < (large ? 3 : 4.5)) low.push(`${el.tagName} ${text} ${ratio.toFixed(2)}`);
  }
  return low;
}"""


def _low_contrast(page: Any) -> list[str]:
    """Visible text under 4.5:1 against its background (3:1 for large text), WCAG's AA."""
    found: list[str] = page.evaluate(LOW_CONTRAST_SCRIPT)
    return found


def _tab_reaches(page: Any, target_id: str, presses: int = 80) -> bool:
    page.evaluate("() => { document.activeElement && document.activeElement.blur(); }")
    page.locator("body").focus()
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement && document.activeElement.id") == target_id:
            return True
    return False


def _row(page: Any, within: str, first_cell: str) -> Any:
    """The table row under ``within`` whose first cell is exactly ``first_cell``."""
    cell = page.locator("td:first-child", has_text=re.compile(f"^{re.escape(first_cell)}$"))
    row = page.locator(within).locator("tr", has=cell)
    row.wait_for()
    return row


def _cell(page: Any, within: str, row: int) -> str:
    """The text of the first cell of row ``row`` of the table under ``within``."""
    text: str = page.locator(within).locator("tbody tr").nth(row).locator("td").first.inner_text()
    return text.strip()


def _usd(units: int) -> str:
    whole, frac = divmod(units, 10**6)
    text = f"{frac:06d}".rstrip("0").ljust(2, "0")
    return f"{whole:,}.{text} mUSD"


def _report_and_settle(
    stack: DevStack, brand: dict[str, Any], twin_id: int, *, prefix: str, quantities: list[int]
) -> list[dict[str, Any]]:
    """Reports video usages of the twin as the brand (one event, or a batch) and waits until each
    is settled or rejected; their statuses."""
    used_at = (datetime.now(UTC) + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    auth = {"Authorization": f"Bearer {brand['api_key']}"}
    events = [
        {
            "event_id": f"{prefix}-{i}",
            "twin_id": twin_id,
            "usage_type": "video",
            "quantity": quantity,
            "used_at": used_at,
        }
        for i, quantity in enumerate(quantities)
    ]
    body = events[0] if len(events) == 1 else {"events": events}
    posted = httpx.post(f"{stack.url}/v1/usage-events", json=body, headers=auth, timeout=10)
    if len(events) == 1:
        assert posted.status_code == 202, posted.text
    else:
        assert posted.status_code == 200, posted.text
        assert {r["status"] for r in posted.json()["results"]} == {"accepted"}
    deadline = time.monotonic() + 60
    done: list[dict[str, Any]] = []
    for event in events:
        while True:
            status = httpx.get(
                f"{stack.url}/v1/usage-events/{event['event_id']}", headers=auth, timeout=10
            ).json()
            if status["status"] in ("settled", "rejected"):
                done.append(status)
                break
            assert time.monotonic() < deadline, f"usage {event['event_id']} did not settle"
            time.sleep(0.5)
    return done


def _usage_now(
    stack: DevStack, brand: dict[str, Any], twin_id: int, event_id: str
) -> httpx.Response:
    """One video usage of the twin by the brand, reported now."""
    event = {
        "event_id": event_id,
        "twin_id": twin_id,
        "usage_type": "video",
        "quantity": 1,
        "used_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    auth = {"Authorization": f"Bearer {brand['api_key']}"}
    return httpx.post(f"{stack.url}/v1/usage-events", json=event, headers=auth, timeout=10)


def _accept_in_brand_view(
    stack: DevStack, browser: Any, brand: dict[str, Any], twin_id: int
) -> Wallet:
    """The brand opens its view, waits for the offer to be indexed and accepts it with its own
    wallet; the wallet it signed with."""
    wallet = Wallet(brand["private_key"])
    page = _page(browser, wallet, DESKTOP)
    page.goto(f"{stack.url}/#brand")
    page.fill("#api-key", brand["api_key"])
    page.click("#brand-login button[type=submit]")
    offer = page.locator("#brand-offers tbody tr", has=page.locator(f"td:text-is('#{twin_id}')"))
    deadline = time.monotonic() + 30
    while not offer.count():
        assert time.monotonic() < deadline, page.inner_text("#brand-offers")
        page.wait_for_timeout(1000)
        page.click("#brand-login button[type=submit]")
    assert _unlabelled_controls(page) == []
    offer.locator("button.accept").click()
    offer.locator(".offer-status:has-text('accepted in')").wait_for(timeout=60_000)
    assert _low_contrast(page) == []
    _shot(page, "brand-offer-accepted-desktop")
    assert page.errors == []
    page.context.close()
    return wallet


def _wait_claimable(page: Any, units: int) -> None:
    """Reconnects until the model view shows ``units`` claimable (the indexer lags a block)."""
    deadline = time.monotonic() + 30
    while page.get_attribute("#claimable", "data-units") != str(units):
        assert time.monotonic() < deadline, page.text_content("#claimable")
        page.click("#connect")
        page.wait_for_timeout(1500)
    assert page.text_content("#claimable") == _usd(units)


def _cli(stack: DevStack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``twin-bridge ARGS`` as a model or a brand runs it on its machine: the bridge's URL and the
    dev chain's RPC URL in the environment, with ``env``."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_BRIDGE_")}
    environ.update(
        TWIN_BRIDGE_API_URL=stack.url,
        TWIN_BRIDGE_RPC_URL=str(stack.info["rpc_url"]),
        TWIN_BRIDGE_LEDGER_ADDRESS=str(stack.info["contracts"]["TwinLedger"]),
        **env,
    )
    return subprocess.run(
        [str(REPO_ROOT / ".venv" / "bin" / "twin-bridge"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=environ,
        check=False,
    )


def _brand_cli(
    stack: DevStack, brand: dict[str, Any], *args: str
) -> subprocess.CompletedProcess[str]:
    """``twin-bridge brand ARGS`` with the brand's API key, and its raw key in $BRAND_KEY."""
    return _cli(
        stack,
        "brand",
        *args,
        TWIN_BRIDGE_API_KEY=brand["api_key"],
        BRAND_KEY=str(brand["private_key"]),
    )


def _wait_listed(stack: DevStack, brand: dict[str, Any], line: str) -> str:
    """``brand offers`` once it lists ``line`` (the indexer confirms the offer a block later)."""
    deadline = time.monotonic() + 30
    while line not in (listed := _brand_cli(stack, brand, "offers")).stdout:
        assert listed.returncode == 0, listed.stderr
        assert time.monotonic() < deadline, listed.stdout
        time.sleep(1)
    return listed.stdout


def _tokens(units: int) -> str:
    """Token base units as the decimal amount the CLI takes."""
    return str(Decimal(units) / 10**6)


def _when(seconds: int) -> str:
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%d %H:%M:%S} UTC"


def _unlicensed_pairs(info: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(model, brand) pairs of the demo with no license between them, in the demo's order."""
    return [
        (m, b)
        for m in info["models"]
        for b in info["brands"]
        if b["address"] not in {lic["brand"] for lic in m["licenses"]}
    ]


def test_model_cli_offers_brand_cli_accepts_through_the_relay_model_cli_revokes(
    stack: DevStack,
) -> None:
    info = stack.info
    waiting = info["waiting"]["offer"]
    pairs = _unlicensed_pairs(info)
    model, brand = next(  # not the dashboard test's pair (the first), nor the demo's offer
        (m, b)
        for m, b in reversed(pairs[1:])
        if (m["twin_ids"][0], b["address"]) != (waiting["twin_id"], waiting["brand"])
    )
    twin = int(model["twin_ids"][0])
    w3 = Web3(Web3.HTTPProvider(info["rpc_url"]))
    ledger = contract_at(w3, "TwinLedger", info["contracts"]["TwinLedger"])
    as_model = ("model", "--private-key-env", "MODEL_KEY")
    model_key = {"MODEL_KEY": str(model["private_key"])}

    offered = _cli(
        stack, *as_model, "offer", "--twin", str(twin), "--brand", brand["address"],
        "--price", "video=1.5", "--days", "10", **model_key,
    )  # fmt: skip
    assert offered.returncode == 0, offered.stderr
    assert offered.stdout.startswith("confirmed in block ")
    listed = _wait_listed(stack, brand, f"twin {twin} version 0: video=1.50 mUSD per use, until ")
    _, _, terms_hash = ledger.functions.offerOf(twin, brand["address"]).call()
    assert f"no cap; terms 0x{terms_hash.hex()}" in listed

    accepted = _brand_cli(
        stack, brand, "accept", "--twin", str(twin), "--version", "0",
        "--private-key-env", "BRAND_KEY",
    )  # fmt: skip
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout.startswith("confirmed in block ")
    assert re.fullmatch(r"owner action \d+ \(AcceptLicense\): accepted\n", accepted.stderr), (
        accepted.stderr
    )
    assert ledger.functions.licenseVersionCount(twin, brand["address"]).call() == 1
    license_, version = ledger.functions.licenseOf(twin, brand["address"]).call()
    assert version == 0
    assert license_[5] == [(1, 1_500_000)]  # the prices offered, now in force
    again = _brand_cli(
        stack, brand, "accept", "--twin", str(twin), "--version", "0",
        "--private-key-env", "BRAND_KEY",
    )  # fmt: skip
    assert again.returncode == 1
    assert again.stderr == (
        f"the bridge refused (404): no offer of twin {twin} waits for {brand['address']}\n"
    )

    revoked = _cli(
        stack, *as_model, "revoke", "--twin", str(twin), "--brand", brand["address"],
        "--version", "0", **model_key,
    )  # fmt: skip
    assert revoked.returncode == 0, revoked.stderr
    assert ledger.functions.licenseOf(twin, brand["address"]).call()[0][4] is True  # revoked


def test_brand_cli_declines_an_offer_and_raises_its_limits_the_dashboard_shows_it(
    stack: DevStack, browser: Any
) -> None:
    info = stack.info
    waiting = info["waiting"]["offer"]
    brand = next(b for b in info["brands"] if b["address"] == waiting["brand"])
    twin, version = int(waiting["twin_id"]), int(waiting["version"])
    w3 = Web3(Web3.HTTPProvider(info["rpc_url"]))
    ledger = contract_at(w3, "TwinLedger", info["contracts"]["TwinLedger"])

    # the demo's offer waits for the brand: listed (once indexed), then declined on chain
    listed = _wait_listed(stack, brand, f"twin {twin} version {version}: ")
    assert f"; terms {waiting['terms_hash']}" in listed
    declined = _brand_cli(
        stack, brand, "decline", "--twin", str(twin), "--version", str(version),
        "--private-key-env", "BRAND_KEY",
    )  # fmt: skip
    assert declined.returncode == 0, declined.stderr
    assert re.fullmatch(
        f"declined twin {twin} version {version} in block \\d+, transaction 0x[0-9a-f]{{64}}\n",
        declined.stdout,
    )
    assert ledger.functions.licenseVersionCount(twin, brand["address"]).call() == 0
    again = _brand_cli(
        stack, brand, "decline", "--twin", str(twin), "--version", str(version),
        "--private-key-env", "BRAND_KEY",
    )  # fmt: skip
    assert again.returncode == 1
    assert again.stderr == (
        f"the ledger would refuse declineLicense of twin {twin} version {version}: "
        f"twin {twin} has no offer waiting for {brand['address']}\n"
    )

    # a raise of the brand's limits waits for the raise delay; the CLI and the dashboard show it
    per_usage, per_period = ledger.functions.brandLimits(brand["address"]).call()[:2]
    raised = _brand_cli(
        stack, brand, "limits", "set", "--per-usage", _tokens(2 * per_usage),
        "--per-period", _tokens(2 * per_period), "--private-key-env", "BRAND_KEY",
    )  # fmt: skip
    assert raised.returncode == 0, raised.stderr
    limits = ledger.functions.brandLimits(brand["address"]).call()
    assert limits[:2] == (per_usage, per_period)  # not yet
    assert limits[4:6] == (2 * per_usage, 2 * per_period)
    effective_at = limits[6]
    assert raised.stdout.startswith(
        f"limits set: {_usd(2 * per_usage)[:-5]} mUSD per usage, {_usd(2 * per_period)[:-5]} mUSD "
        f"per period, in force from {_when(effective_at)} in block "
    )
    shown = _brand_cli(stack, brand, "limits", "show")
    assert shown.returncode == 0, shown.stderr
    assert (
        f"raise waiting: {_usd(2 * per_usage)[:-5]} mUSD per usage, {_usd(2 * per_period)[:-5]} "
        f"mUSD per period from {_when(effective_at)}"
    ) in shown.stdout.splitlines()
    page = _page(browser, Wallet(brand["private_key"]), DESKTOP)
    page.goto(f"{stack.url}/#brand")
    page.fill("#api-key", brand["api_key"])
    page.click("#brand-login button[type=submit]")
    page.wait_for_selector("#limit-raise")
    raise_text = " ".join(page.inner_text("#limit-raise").split())
    when = datetime.fromtimestamp(effective_at, UTC).strftime("%Y-%m-%d %H:%M")
    assert raise_text.startswith(
        f"Raise waiting {_usd(2 * per_usage)} per usage and {_usd(2 * per_period)} per period "
        f"from {when} UTC."
    )
    assert page.text_content("#limit-usage") == _usd(per_usage)
    assert _low_contrast(page) == []
    _shot(page, "brand-limits-raise-desktop")
    assert page.errors == []
    page.context.close()

    # lowering back holds at once and drops the waiting raise
    lowered = _brand_cli(
        stack, brand, "limits", "set", "--per-usage", _tokens(per_usage),
        "--per-period", _tokens(per_period), "--private-key-env", "BRAND_KEY",
    )  # fmt: skip
    assert lowered.returncode == 0, lowered.stderr
    after = ledger.functions.brandLimits(brand["address"]).call()
    assert after[:2] == (per_usage, per_period)
    assert after[4:7] == (0, 0, 0)


def test_model_offers_brand_accepts_and_uses_model_withdraws_auditor_agrees(
    stack: DevStack, browser: Any
) -> None:
    info = stack.info
    # a model and a brand its twin is not licensed to yet
    model, brand = next(
        (m, b)
        for m in info["models"]
        for b in info["brands"]
        if b["address"] not in {lic["brand"] for lic in m["licenses"]}
    )
    twin_id = model["twin_ids"][0]
    wallet = Wallet(model["private_key"])
    w3 = Web3(Web3.HTTPProvider(info["rpc_url"]))
    token = contract_at(w3, "MockStablecoin", info["contracts"]["MockStablecoin"])
    ledger = contract_at(w3, "TwinLedger", info["contracts"]["TwinLedger"])

    assert info["dashboard_url"] == f"{stack.url}/"
    page = _page(browser, wallet, DESKTOP)
    page.goto(f"{info['dashboard_url']}#model")
    # the views start once the payment token is read (its symbol and decimals)
    page.wait_for_function("document.title === 'Twin Bridge: model view'")
    assert _unlabelled_controls(page) == []
    assert _tab_reaches(page, "connect")

    # a refused connection says why
    wallet.refuse = True
    page.click("#connect")
    page.wait_for_selector("#wallet-error:has-text('You declined the connection in your wallet.')")
    wallet.refuse = False
    page.click("#connect")
    assert page.text_content("#account") == model["address"]
    twin_card = page.locator(f"article[data-twin='{twin_id}']")
    twin_card.wait_for()
    assert page.locator("article.twin").count() == 1
    page.wait_for_selector("#claimable:has-text('mUSD')")
    assert page.text_content("#claimable") == "0.00 mUSD"
    assert _unlabelled_controls(page) == []
    assert page.is_disabled("#withdraw")  # nothing to withdraw yet
    assert _tab_reaches(page, "offer-brand", presses=200)

    # offer through the form; a refused signature first
    page.select_option("#offer-twin", str(twin_id))
    page.fill("#offer-brand", brand["address"])
    page.fill("#price-video", PRICE_USD)
    page.fill("#offer-days", "30")
    page.fill("#offer-consent", f"consent of {model['name']} for {brand['name']}")
    wallet.chain_id = 1  # a wallet on another chain is asked to switch; this one cannot
    page.click("#form-offer button[type=submit]")
    page.wait_for_selector(
        "#form-offer p.error:has-text('Your wallet is on chain 1; switch it to chain 31337, "
        "the ledger\\'s, and try again (wallet_switchEthereumChain is not supported).')"
    )
    assert "eth_signTypedData_v4" not in wallet.calls
    wallet.chain_id = 31337
    wallet.refuse = True
    page.click("#form-offer button[type=submit]")
    page.wait_for_selector(
        "#form-offer p.error:has-text('You declined the signature in your wallet.')"
    )
    wallet.refuse = False
    page.click("#form-offer button[type=submit]")
    offered = page.locator("#actions li[data-status='confirmed']")
    offered.wait_for(timeout=60_000)
    assert f"Offer twin #{twin_id} to {brand['name']}" in offered.text_content()
    assert wallet.calls.count("eth_signTypedData_v4") == 2

    # until the brand accepts, its usages are refused at the door, naming the reason
    refused = _usage_now(stack, brand, twin_id, "before-acceptance")
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "offer_not_accepted"
    assert (
        refused.json()["sentence"] == "the brand had not accepted the license offered for this twin"
    )

    # the brand accepts the offer in its view, with its own wallet; the model sees the license
    brand_wallet = _accept_in_brand_view(stack, browser, brand, twin_id)
    assert brand_wallet.calls.count("eth_signTypedData_v4") == 1
    assert ledger.functions.licenseVersionCount(twin_id, brand["address"]).call() == 1
    license_row = twin_card.locator("tr", has=page.locator(f"[data-brand='{brand['address']}']"))
    deadline = time.monotonic() + 30
    while not license_row.count():
        assert time.monotonic() < deadline, twin_card.inner_text()
        page.click("#connect")
        page.wait_for_timeout(1500)
    assert license_row.text_content().startswith(f"{brand['name']}0")  # version 0
    assert "video: 123.45 mUSD" in license_row.text_content()
    assert "active" in license_row.text_content()

    # a malformed address is caught in the page; an action the ledger would refuse (revoking a
    # license that was never offered) is refused by the bridge, with its reason
    page.fill("#revoke-version", "0")
    page.fill("#revoke-brand", "0x123")
    page.click("#form-revoke button[type=submit]")
    page.wait_for_selector(
        "#form-revoke p.error:has-text('the brand must be a 0x address of 40 hex digits')"
    )
    page.fill("#revoke-brand", "0x" + "ab" * 20)
    page.click("#form-revoke button[type=submit]")
    refused = page.locator("#form-revoke p.error:has-text('The bridge refused the action:')")
    refused.wait_for()
    stranger = Web3.to_checksum_address("0x" + "ab" * 20)
    assert refused.text_content() == (
        "The bridge refused the action: the ledger would refuse this RevokeLicense: "
        f"LicenseNotFound(twinId={twin_id}, brand={stranger})"
    )

    # the brand's usage settles; the model sees the earning
    (settled,) = _report_and_settle(stack, brand, twin_id, prefix="first", quantities=[QUANTITY])
    assert settled["status"] == "settled", settled
    amount = PRICE * QUANTITY
    assert settled["amount"] == str(amount)
    share = _owner_share(amount, model["payees"])
    _wait_claimable(page, share)
    usage_row = page.locator("#usages tr", has_text="paid")
    assert usage_row.count() == 1
    assert _usd(amount) in usage_row.text_content()
    assert usage_row.locator("button.tx").get_attribute("data-tx") == settled["tx_hash"]
    assert page.locator("#earnings-chart svg rect.bar").count() == 1
    assert _low_contrast(page) == []
    usage_row.locator("button.tx").click()
    assert page.text_content("#tx-details code") == settled["tx_hash"]
    _shot(page, "model-proof-desktop")
    page.click("#tx-close")
    _shot(page, "model-desktop")

    # withdraw: the payout moves the owner's share to the wallet, on chain
    before = token.functions.balanceOf(model["address"]).call()
    assert _tab_reaches(page, "withdraw", presses=200)
    page.keyboard.press("Enter")
    paid_out = page.locator("#actions li[data-status='confirmed']", has_text="Withdraw")
    paid_out.wait_for(timeout=60_000)
    assert token.functions.balanceOf(model["address"]).call() - before == share
    assert ledger.functions.claimable(model["address"]).call() == 0
    page.wait_for_selector("#claimable:has-text('0.00 mUSD')", timeout=30_000)

    # twenty more usages in one batch: the history pages by 20, the earning adds up
    more = _report_and_settle(stack, brand, twin_id, prefix="more", quantities=[1] * 20)
    assert {u["status"] for u in more} == {"settled"}
    _wait_claimable(page, _owner_share(20 * PRICE, model["payees"]))
    page.locator("#usages tbody tr").nth(19).wait_for()
    assert page.locator("#usages tbody tr").count() == 20
    page.click("#usages button:text('Next page')")
    page.wait_for_selector("#usages button:text('First page')")
    assert page.locator("#usages tbody tr").count() == 1
    assert page.locator("#usages button:text('Next page')").count() == 0
    total = amount + 20 * PRICE

    # the usage history filters by outcome
    page.select_option("#filter-outcome", "twin_paused")
    page.click("#usage-filter button[type=submit]")
    page.wait_for_selector("#usages:has-text('No settled usage matches.')")
    page.select_option("#filter-outcome", "rejected")
    page.click("#usage-filter button[type=submit]")
    page.wait_for_selector("#usages:has-text('No settled usage matches.')")
    page.select_option("#filter-outcome", "paid")
    page.click("#usage-filter button[type=submit]")
    page.locator("#usages tbody tr").nth(19).wait_for()

    # pause the twin, then revoke the brand's license: each confirmed and shown
    page.select_option("#pause-twin", str(twin_id))
    page.select_option("#pause-state", "true")
    page.click("#form-pause button[type=submit]")
    page.locator("#actions li[data-status='confirmed']", has_text="Pause twin").wait_for(
        timeout=60_000
    )
    page.wait_for_selector(f"#twin-{twin_id}:has-text('paused')", timeout=30_000)
    assert ledger.functions.twinState(twin_id).call()[1] > 0  # paused since
    page.fill("#revoke-brand", brand["address"])
    page.click("#form-revoke button[type=submit]")
    page.locator(
        "#actions li[data-status='confirmed']",
        has_text=f"Revoke version 0 of {brand['name']} on twin #{twin_id}",
    ).wait_for(timeout=60_000)
    license_row.filter(has_text="revoked").wait_for(timeout=30_000)

    # payees: the agency alone at 10 %, the model keeps 90 %
    agency = info["payees"]["agency"]
    page.select_option("#payees-twin", str(twin_id))
    page.fill("#payees-list", f"{agency} 10")
    page.click("#form-payees button[type=submit]")
    page.locator("#actions li[data-status='confirmed']", has_text="Set 1 payee").wait_for(
        timeout=60_000
    )
    twin_card.locator("p", has_text="you keep 90 %").wait_for(timeout=30_000)
    assert ledger.functions.payeesOf(twin_id).call() == [(agency, 1_000)]
    assert page.errors == []

    # the brand view: escrow, the licensed twin, the usage with its proof
    page.goto(f"{stack.url}/#brand")
    assert _unlabelled_controls(page) == []
    assert _tab_reaches(page, "api-key")
    page.fill("#api-key", "tb_live_not-a-key")
    page.click("#brand-login button[type=submit]")
    page.wait_for_selector("#brand-error:has-text('This API key is not valid for this bridge.')")
    page.fill("#api-key", brand["api_key"])
    page.keyboard.press("Enter")
    page.wait_for_selector("#brand-escrow")
    page.wait_for_selector("#limit-usage")
    per_usage, per_period, spent = ledger.functions.brandLimits(brand["address"]).call()[:3]
    assert page.text_content("#limit-usage") == _usd(per_usage)
    assert page.text_content("#limit-period") == _usd(per_period)
    assert f"{_usd(per_period - spent)} left" in page.text_content("#limit-spent")
    page.wait_for_selector("#brand-offers:has-text('No offer waits for your acceptance.')")
    escrow = ledger.functions.brandAccount(brand["address"]).call()[0]
    assert escrow == ESCROW_PER_BRAND - total
    page.wait_for_selector(f"#brand-escrow:has-text('{_usd(escrow)}')", timeout=30_000)
    assert page.evaluate("() => sessionStorage.getItem('twin-bridge.api-key')") == brand["api_key"]
    page.locator("#brand-events tbody tr").nth(19).wait_for()
    newest = [_cell(page, "#brand-events", i) for i in range(20)]
    assert newest == [f"more-{i}" for i in reversed(range(20))]
    licensed = _row(page, "#brand-licenses", f"#{twin_id}")
    assert "video: 123.45 mUSD" in licensed.text_content()
    assert f"{QUANTITY + 20} (no cap)" in licensed.text_content()  # uses count quantity
    assert "revoked" in licensed.text_content()
    assert "paused" in licensed.text_content()
    assert _low_contrast(page) == []
    page.click("#brand-events button:text('Older events')")
    event_row = page.locator("#brand-events tbody tr", has_text=settled["event_id"])
    event_row.wait_for()
    assert page.locator("#brand-events tbody tr").count() == 1
    assert "settled" in event_row.text_content()
    assert _usd(amount) in event_row.text_content()
    assert event_row.locator("button.tx").get_attribute("data-tx") == settled["tx_hash"]
    assert _low_contrast(page) == []
    _shot(page, "brand-desktop")

    # the auditor view shows what `twin-bridge audit` says of the same blocks
    page.goto(f"{stack.url}/#audit")
    page.wait_for_selector("#verdict", timeout=60_000)
    assert page.text_content("#verdict").startswith("Clean:")
    block = int(page.text_content("#audit-block"))
    shown = dict(
        page.eval_on_selector_all(
            "[data-key]", "els => els.map((el) => [el.dataset.key, el.dataset.value])"
        )
    )
    out = stack.data_dir.parent / "audit"
    cli = subprocess.run(
        [
            str(REPO_ROOT / ".venv" / "bin" / "twin-bridge"),
            "audit",
            "--rpc",
            info["rpc_url"],
            "--deployment",
            info["deployment"],
            "--to-block",
            str(block),
            "--json",
            str(out / "audit.json"),
            "--csv",
            str(out),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr + cli.stdout
    summary = json.loads((out / "audit.json").read_text(encoding="utf-8"))["summary"]
    assert shown == {key: str(summary[key]) for key in shown}
    assert len(shown) == 23
    assert summary["usages_paid"] == 21
    assert summary["amount_paid"] == total
    assert summary["payouts"] == 1
    paid_row = _row(page, "table:has(caption:text('Summary'))", "Amount paid for usages")
    assert paid_row.locator("button.tx").get_attribute("data-tx") == more[-1]["tx_hash"]
    twin_row = _row(page, "table:has(caption:text('Per twin'))", f"#{twin_id}")
    assert _usd(total) in twin_row.text_content()
    assert twin_row.locator("button.tx").get_attribute("data-tx") == more[-1]["tx_hash"]
    csv_href = page.get_attribute("#csv-link", "href")
    assert csv_href == f"/v1/audit/csv?table=usages&to_block={block}"
    downloaded = httpx.get(f"{stack.url}{csv_href}", timeout=30).text
    assert list(csv.reader(io.StringIO(downloaded))) == list(
        csv.reader(io.StringIO((out / "usages.csv").read_text(encoding="utf-8")))
    )
    assert _low_contrast(page) == []
    _shot(page, "auditor-desktop")
    assert page.errors == []
    page.context.close()

    # a phone: every view readable, nothing wider than the screen
    phone = _page(browser, wallet, PHONE, phone=True)
    phone.goto(f"{stack.url}/#model")
    phone.click("#connect")
    phone.locator(f"article[data-twin='{twin_id}']").wait_for()
    phone.wait_for_selector("#claimable:has-text('mUSD')")
    assert phone.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    _shot(phone, "model-phone")
    phone.goto(f"{stack.url}/#brand")
    phone.fill("#api-key", brand["api_key"])
    phone.click("#brand-login button[type=submit]")
    phone.wait_for_selector("#brand-escrow")
    phone.locator("#brand-events tr", has_text="more-19").wait_for()
    assert phone.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    _shot(phone, "brand-phone")
    phone.goto(f"{stack.url}/#audit")
    phone.wait_for_selector("#verdict", timeout=60_000)
    _shot(phone, "auditor-phone")
    width = phone.evaluate("() => document.documentElement.scrollWidth")
    assert width <= PHONE["width"]
    assert phone.errors == []
    phone.context.close()
