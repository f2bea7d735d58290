"""``twin-bridge model …``: a model's owner actions, signed locally and relayed by the bridge.

The key stays on the model's machine: each command asks the bridge for the EIP-712 domain and the
next nonce, signs the message with the model's keystore (eth-account), and posts the signature to
the relay; the bridge pays the gas. ``show`` reads the model's twins, licenses and earnings from
the bridge's index of the chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from rich.console import Console

from bridge.cli.common import stdout
from bridge.cli.remote import (
    DEFAULT_API,
    ApiOption,
    KeyEnvOption,
    Relay,
    RemoteCliError,
    WaitOption,
    follow,
    load_key,
    reported,
    units,
    usd,
)
from bridge.cli.remote import address as checked
from bridge.domain.usage import UsageType

model_app = typer.Typer(no_args_is_help=True)

DAY: Final = 24 * 3600

KeystoreOption = Annotated[
    Path | None,
    typer.Option("--keystore", envvar="TWIN_BRIDGE_MODEL_KEYSTORE", help="The model's keystore."),
]
PasswordFileOption = Annotated[
    Path | None,
    typer.Option(
        "--password-file",
        envvar="TWIN_BRIDGE_MODEL_PASSWORD_FILE",
        help="File holding the keystore's password (else $TWIN_BRIDGE_MODEL_PASSWORD).",
    ),
]
TwinOption = Annotated[int, typer.Option("--twin", min=1, help="The twin's token id.")]


def _price(text: str) -> dict[str, int]:
    """``video=120.50`` -> ``{"usageType": 1, "price": 120500000}`` (6-decimal token units)."""
    name, sep, amount = text.partition("=")
    if not sep:
        raise RemoteCliError(f"--price {text!r}: expected TYPE=AMOUNT, e.g. video=120.50")
    try:
        usage_type = UsageType.parse(name.strip())
    except ValueError as exc:
        raise RemoteCliError(f"--price {text!r}: {exc}") from None
    return {"usageType": int(usage_type), "price": units(amount, "--price")}


def _hash(text: str | None) -> str:
    """A bytes32 given as 0x-hex, or the keccak-256 of a text (a document's reference)."""
    if text is None:
        return "0x" + "00" * 32
    if text.startswith("0x") and len(text) == 66:
        return text.lower()
    return "0x" + keccak(text=text).hex()


@dataclass(frozen=True)
class Model:
    """The options every model command shares (given before the command)."""

    relay: Relay
    keystore: Path | None
    password_file: Path | None
    key_env: str | None
    wait: bool
    timeout: float = 120.0

    def key(self, chain_id: int) -> LocalAccount:
        return load_key(
            "model",
            chain_id=chain_id,
            keystore=self.keystore,
            password_file=self.password_file,
            key_env=self.key_env,
        )

    def chain_id(self) -> int:
        return int(self.relay.json("GET", "/v1/owner-actions/types")["domain"]["chainId"])

    def submit(self, kind: str, build: Any, *, deadline_s: int = 3600) -> dict[str, Any]:
        """Signs the ``kind`` message ``build(chain_time)`` makes, naming the key's address as
        its ``owner``, with the next nonce and a deadline ``deadline_s`` after the chain's time;
        posts it and follows it."""
        types = self.relay.json("GET", "/v1/owner-actions/types")
        domain = types["domain"]
        account = self.key(int(domain["chainId"]))
        state = self.relay.json("GET", f"/v1/accounts/{account.address}/nonce")
        now = int(state["chain_time"])
        message = {
            "owner": account.address,
            **build(now),
            "nonce": state["next_nonce"],
            "deadline": now + deadline_s,
        }
        spec = types["actions"][kind]
        data = {"types": spec["types"], "primaryType": kind, "domain": domain, "message": message}
        signature = Account.sign_typed_data(account.key, full_message=data).signature
        body = {
            "type": kind,
            "signer": account.address,
            "message": message,
            "signature": "0x" + bytes(signature).hex(),
        }
        return self.follow(self.relay.json("POST", "/v1/owner-actions", json=body))

    def follow(self, action: dict[str, Any]) -> dict[str, Any]:
        return follow(self.relay, action, wait=self.wait, timeout=self.timeout)


def _model(ctx: typer.Context) -> Model:
    model = ctx.obj
    assert isinstance(model, Model)  # noqa: S101 - set by the group's callback
    return model


@model_app.callback()
def _options(
    ctx: typer.Context,
    api: ApiOption = DEFAULT_API,
    keystore: KeystoreOption = None,
    password_file: PasswordFileOption = None,
    private_key_env: KeyEnvOption = None,
    wait: WaitOption = True,
) -> None:
    """A model's owner actions (signed locally, relayed gas-free) and earnings. The options
    before the command say where the bridge is and where the model's key is."""
    ctx.obj = Model(Relay.at(api), keystore, password_file, private_key_env, wait)


@dataclass(frozen=True)
class OfferTerms:
    """A license's terms as the ``offer`` options give them."""

    brand: str
    prices: list[dict[str, int]]
    days: int
    starts_in_days: int
    max_uses: int
    purpose: str | None
    consent: str | None

    def at(self, now: int) -> dict[str, Any]:
        """The OfferLicense message's terms, signed at the chain's time ``now``."""
        start = now + self.starts_in_days * DAY if self.starts_in_days else 0
        return {
            "brand": self.brand,
            "validFrom": start,
            "validUntil": max(now, start) + self.days * DAY,
            "maxUses": self.max_uses,
            "purposeHash": _hash(self.purpose),
            "consentHash": _hash(self.consent),
            "prices": self.prices,
        }


@model_app.command("offer")
def offer(
    ctx: typer.Context,
    twin: TwinOption,
    brand: Annotated[str, typer.Option("--brand", help="The brand's address.")],
    price: Annotated[
        list[str],
        typer.Option(
            "--price", help="TYPE=USD per use, repeatable (e.g. video=120.50 social_post=15)."
        ),
    ],
    days: Annotated[int, typer.Option("--days", min=1, help="Valid for this many days.")] = 365,
    starts_in_days: Annotated[
        int, typer.Option("--starts-in-days", min=0, help="Starts this many days from now.")
    ] = 0,
    max_uses: Annotated[int, typer.Option("--max-uses", min=0, help="Cap on uses; 0: none.")] = 0,
    purpose: Annotated[
        str | None, typer.Option("--purpose", help="Purpose document (text or 0x bytes32).")
    ] = None,
    consent: Annotated[
        str | None, typer.Option("--consent", help="Consent record (text or 0x bytes32).")
    ] = None,
) -> None:
    """Offer a brand a license of a twin; it pays once the brand accepts it.

    The terms: usage types with a price per use, a validity window, a cap. Until the brand
    accepts (``twin-bridge brand accept``), its accepted version, if any, stays in force.
    """
    with reported():
        prices = [_price(p) for p in price]
        terms = OfferTerms(
            checked(brand, "--brand"), prices, days, starts_in_days, max_uses, purpose, consent
        )
        _model(ctx).submit("OfferLicense", lambda now: {"twinId": twin, "terms": terms.at(now)})


@model_app.command("revoke")
def revoke(
    ctx: typer.Context,
    twin: TwinOption,
    brand: Annotated[str, typer.Option("--brand", help="The brand's address.")],
    version: Annotated[
        int,
        typer.Option(
            "--version",
            min=0,
            help="The brand's current license version, or the number of the offer it has not "
            "accepted yet (see `model show`).",
        ),
    ],
) -> None:
    """End a brand's license version now, or withdraw an offer it has not accepted.

    Uses before now still pay. The version is named so that a late relay cannot end a newer one.
    """
    with reported():
        brand_address = checked(brand, "--brand")
        _model(ctx).submit(
            "RevokeLicense",
            lambda _now: {"twinId": twin, "brand": brand_address, "version": version},
        )


def _set_paused(ctx: typer.Context, twin: int, paused: bool) -> None:
    with reported():
        _model(ctx).submit("SetTwinPaused", lambda _now: {"twinId": twin, "paused": paused})


@model_app.command("pause")
def pause(ctx: typer.Context, twin: TwinOption) -> None:
    """Pause the twin: no use from now on is payable, under any license."""
    _set_paused(ctx, twin, True)


@model_app.command("unpause")
def unpause(ctx: typer.Context, twin: TwinOption) -> None:
    """Unpause the twin."""
    _set_paused(ctx, twin, False)


def _shares(entries: list[str]) -> list[dict[str, Any]]:
    """``ADDRESS:BPS`` options as the SetPayees message's payees."""
    shares = []
    for entry in entries:
        address, sep, bps = entry.rpartition(":")
        if not sep or not bps.isdigit():
            raise RemoteCliError(f"--payee {entry!r}: expected ADDRESS:BPS")
        shares.append({"account": checked(address, "--payee"), "bps": int(bps)})
    return shares


@model_app.command("payees")
def payees(
    ctx: typer.Context,
    twin: TwinOption,
    payee: Annotated[
        list[str] | None,
        typer.Option("--payee", help="ADDRESS:BPS, repeatable (1500 bps = 15 %); none clears."),
    ] = None,
) -> None:
    """Set who shares the twin's royalties (the owner keeps what the shares leave)."""
    with reported():
        shares = _shares(payee or [])
        _model(ctx).submit("SetPayees", lambda _now: {"twinId": twin, "payees": shares})


@model_app.command("withdraw")
def withdraw(
    ctx: typer.Context,
    twin: Annotated[
        list[int] | None,
        typer.Option("--twin", help="Twins whose accrued royalties to distribute first."),
    ] = None,
) -> None:
    """Have the bridge pay out what the ledger holds for you (gas-free)."""
    with reported():
        model = _model(ctx)
        account = model.key(model.chain_id())
        body = {"type": "Payout", "payee": account.address, "twinIds": list(twin or [])}
        model.follow(model.relay.json("POST", "/v1/owner-actions", json=body))


def _print_twin(console: Console, twin: dict[str, Any]) -> None:
    """One twin of ``GET /v1/twins``: its state, royalty split and licenses."""
    state = "paused" if twin["pause"]["paused"] else "active"
    console.print(
        f"twin {twin['twin_id']}  {twin['metadata_uri']}  {state}", style="bold", soft_wrap=True
    )
    split = ", ".join(f"{p['account']} {p['bps']} bps" for p in twin["payees"]["payees"])
    if split:
        console.print(f"  royalties shared with {split}", soft_wrap=True)
    for lic in twin["licenses"]:
        current = lic["current"]
        prices = ", ".join(
            f"{p['usage_type'] or p['usage_type_code']}={usd(int(p['price']))}"
            for p in current["prices"]
        )
        until = datetime.fromtimestamp(int(current["valid_until"]), UTC)
        console.print(
            f"  {lic['brand']} version {lic['current_version']} {lic['state']}: {prices} USD "
            "per use, until "
            f"{until:%Y-%m-%d %H:%M} UTC, uses {current['uses']}/"
            f"{current['max_uses'] or 'no cap'}",
            soft_wrap=True,
        )


def _print_earnings(console: Console, earnings: dict[str, Any]) -> None:
    totals = earnings["totals"]
    console.print(
        f"earnings: distributed {usd(int(totals['distributed']))} USD, paid out "
        f"{usd(int(totals['paid_out']))} USD, claimable {usd(int(totals['claimable']))} USD",
        soft_wrap=True,
    )


@model_app.command("show")
def show(
    ctx: typer.Context,
    address: Annotated[
        str | None, typer.Option("--address", help="Whose twins (default: the key's address).")
    ] = None,
) -> None:
    """Your twins, their licenses and your earnings, from the bridge's index of the chain."""
    with reported():
        model = _model(ctx)
        if address is not None:
            owner = checked(address, "--address")
        else:
            owner = model.key(model.chain_id()).address
        console = stdout()
        page = model.relay.json("GET", "/v1/twins", params={"owner": owner})
        if not page["items"]:
            console.print(f"{owner} owns no twin")
        for twin in page["items"]:
            _print_twin(console, twin)
        earnings = model.relay.json(
            "GET", f"/v1/payees/{owner}/earnings", params={"period": "month"}
        )
        _print_earnings(console, earnings)


def register(app: typer.Typer) -> None:
    """Adds ``model`` to the ``twin-bridge`` app."""
    app.add_typer(model_app, name="model")
