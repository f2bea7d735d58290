"""``twin-bridge model …``: a model's owner actions, signed locally and relayed by the bridge.

The key stays on the model's machine: each command asks the bridge for the EIP-712 domain and the
next nonce, signs the message with the model's keystore (eth-account), and posts the signature to
the relay; the bridge pays the gas. ``show`` reads the model's twins, licenses and money from
the bridge's index of the chain: per twin what it accrued (held on the twin until distributed),
distributed, claimable and the debt brands owe it; ``withdraw`` has the bridge distribute the
model's twins and pay it (``payout``), and tells what the ledger paid; ``status`` follows a relayed
action.

Paid uses credit the twin's royalty account, not the model: until a ``distribute`` (which
``payout`` does for the twins it names) the model's own claimable balance stays 0, so both read
and pay per twin.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer

from bridge.cli.common import DevOption, OptionsAnywhere, dev_stack, stderr, stdout
from bridge.cli.money import Token, token_for_api
from bridge.cli.remote import (
    DEFAULT_API,
    FINAL,
    ApiOrDevOption,
    BridgeRefusedError,
    KeyEnvOption,
    Relay,
    RemoteCliError,
    WaitOption,
    follow,
    load_key,
    reported,
)
from bridge.cli.remote import address as checked
from bridge.domain.usage import UsageType

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from rich.console import Console

model_app = typer.Typer(no_args_is_help=True, cls=OptionsAnywhere)

DAY: Final = 24 * 3600
BPS: Final = 10_000
MAX_PAYOUT_TWINS: Final = 64
"""``bridge.intake.owner_messages.MAX_PAYOUT_TWINS`` (a test keeps them equal; that module
imports web3)."""
NOTHING_TO_PAY: Final = "PayoutNothingToPay("
"""The ledger's error, as the relay names it when it refuses a payout."""

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


def _price(text: str, money: Token) -> dict[str, int]:
    """``video=120.50`` -> ``{"usageType": 1, "price": 120500000}`` (in base units of the
    payment token, here of 6 decimals)."""
    name, sep, amount = text.partition("=")
    if not sep:
        raise RemoteCliError(f"--price {text!r}: expected TYPE=AMOUNT, e.g. video=120.50")
    try:
        usage_type = UsageType.parse(name.strip())
    except ValueError as exc:
        raise RemoteCliError(f"--price {text!r}: {exc}") from None
    return {"usageType": int(usage_type), "price": money.parse(amount, "--price")}


def _hash(text: str | None) -> str:
    """A bytes32 given as 0x-hex, or the keccak-256 of a text (a document's reference)."""
    if text is None:
        return "0x" + "00" * 32
    if text.startswith("0x") and len(text) == 66:
        return text.lower()
    from eth_utils.crypto import keccak

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

    def money(self) -> Token:
        """The payment token's symbol and decimals (read once from the chain, then cached)."""
        return token_for_api(self.relay, str(self.relay.http.base_url))

    def chain_id(self) -> int:
        return int(self.relay.json("GET", "/v1/owner-actions/types")["domain"]["chainId"])

    def submit(self, kind: str, build: Any, *, deadline_s: int = 3600) -> dict[str, Any]:
        """Signs the ``kind`` message ``build(chain_time)`` makes, naming the key's address as
        its ``owner``, with the next nonce and a deadline ``deadline_s`` after the chain's time;
        posts it and follows it."""
        from eth_account import Account

        types = self.relay.json("GET", "/v1/owner-actions/types")
        domain = types["domain"]
        account = self.key(int(domain["chainId"]))
        state = self.relay.json("GET", f"/v1/accounts/{account.address}/nonce")
        now = int(state["chain_time_unix"])
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
    dev: DevOption = False,
    api: ApiOrDevOption = None,
    keystore: KeystoreOption = None,
    password_file: PasswordFileOption = None,
    private_key_env: KeyEnvOption = None,
    wait: WaitOption = True,
) -> None:
    """A model's owner actions (signed locally, relayed gas-free) and earnings. The options
    (before or after the command) say where the bridge is and where the model's key is; without
    --api, the bridge is the running dev stack's (`make run`), else http://127.0.0.1:8000."""
    if ctx.resilient_parsing:  # completion or --help: no dev stack to look for
        return
    stack = dev_stack(asked=dev, elsewhere=api is not None)
    url = api or (stack.api_url if stack is not None else DEFAULT_API)
    ctx.obj = Model(Relay.at(url), keystore, password_file, private_key_env, wait)


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
            "--price", help="TYPE=tokens per use, repeatable (e.g. video=120.50 social_post=15)."
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
        model = _model(ctx)
        money = model.money()
        prices = [_price(p, money) for p in price]
        terms = OfferTerms(
            checked(brand, "--brand"), prices, days, starts_in_days, max_uses, purpose, consent
        )
        model.submit("OfferLicense", lambda now: {"twinId": twin, "terms": terms.at(now)})


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


def _owned_twins(relay: Relay, owner: str) -> list[dict[str, Any]]:
    """Every twin ``owner`` holds, as ``GET /v1/twins`` gives them (all pages)."""
    twins: list[dict[str, Any]] = []
    page = relay.json("GET", "/v1/twins", params={"owner": owner, "limit": 500})
    twins += page["items"]
    while page["next"]:
        page = relay.json("GET", page["next"])
        twins += page["items"]
    return twins


def _nothing_to_pay(exc: BridgeRefusedError) -> bool:
    return exc.problem_type == "ledger-refuses" and NOTHING_TO_PAY in exc.detail


def _nothing_held(twin_ids: list[int]) -> str:
    """Why a payout of ``twin_ids`` pays nothing, in words."""
    if not twin_ids:
        return "nothing is claimable, and the bridge's index knows no twin of it (--twin names one)"
    names = ", ".join(map(str, twin_ids))
    held = f"twin {names} holds" if len(twin_ids) == 1 else f"twins {names} hold"
    return f"nothing is claimable and {held} no royalties"


def _print_paid(model: Model, payee: str, action: dict[str, Any]) -> None:
    """Prints what the confirmed payout ``action`` paid ``payee`` (its ``PayeePaid``), once the
    bridge's index has its block."""
    block, tx_hash = int(action["block_number"]), str(action["tx_hash"])
    deadline = time.monotonic() + model.timeout
    while (model.relay.json("GET", "/v1/index/status")["block_number"] or -1) < block:
        if time.monotonic() > deadline:
            stderr().print(
                f"the bridge's index has not reached block {block} yet: `twin-bridge model "
                f"status {action['id']}` tells what it paid later",
                soft_wrap=True,
            )
            return
        time.sleep(0.5)
    page = model.relay.json(
        "GET", f"/v1/payees/{payee}/payouts", params={"tx_hash": tx_hash, "limit": 500}
    )
    paid = sum(int(p["amount"]) for p in page["items"])
    stdout().print(f"paid {model.money().show(paid)} to {payee}", soft_wrap=True)


@model_app.command("withdraw")
def withdraw(
    ctx: typer.Context,
    twin: Annotated[
        list[int] | None,
        typer.Option(
            "--twin", help="Distribute only these twins first (default: every twin you own)."
        ),
    ] = None,
) -> None:
    """Have the bridge distribute your twins' royalties and pay you all the ledger holds for you
    (gas-free), and tell what it paid."""
    with reported():
        model = _model(ctx)
        payee = model.key(model.chain_id()).address
        twin_ids = list(twin) if twin else [t["twin_id"] for t in _owned_twins(model.relay, payee)]
        relayed = False
        for start in range(0, max(len(twin_ids), 1), MAX_PAYOUT_TWINS):
            chunk = twin_ids[start : start + MAX_PAYOUT_TWINS]
            body = {"type": "Payout", "payee": payee, "twinIds": chunk}
            try:
                action = model.relay.json("POST", "/v1/owner-actions", json=body)
            except BridgeRefusedError as exc:
                if _nothing_to_pay(exc):
                    continue
                raise
            relayed = True
            done = model.follow(action)
            if done["status"] == "confirmed":
                _print_paid(model, payee, done)
        if not relayed:
            stdout().print(f"nothing to pay to {payee}: {_nothing_held(twin_ids)}", soft_wrap=True)


@model_app.command("status")
def status(
    ctx: typer.Context,
    action_id: Annotated[
        int, typer.Argument(min=1, help="The owner action's id (printed when it was sent).")
    ],
) -> None:
    """Follow a relayed owner action until it is confirmed or failed (with --no-wait: where it is
    now); for a payout, what it paid."""
    with reported():
        model = _model(ctx)
        action = model.relay.json("GET", f"/v1/owner-actions/{action_id}")
        done = model.follow(action)
        if done["status"] not in FINAL:
            sent = f" in transaction {done['tx_hash']}" if done.get("tx_hash") else ""
            stdout().print(
                f"owner action {action_id} ({done['type']}) is {done['status']}{sent}",
                soft_wrap=True,
            )
        elif done["status"] == "confirmed" and done["type"] == "Payout":
            _print_paid(model, str(done["message"]["payee"]), done)


def _print_twin(console: Console, twin: dict[str, Any], money: Token) -> None:
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
            f"{p['usage_type'] or p['usage_type_code']}={money.number(int(p['price']))}"
            for p in current["prices"]
        )
        until = datetime.fromisoformat(current["valid_until"])
        console.print(
            f"  {lic['brand']} version {lic['current_version']} {lic['state']}: {prices} "
            f"{money.symbol} per use, until "
            f"{until:%Y-%m-%d %H:%M} UTC, uses {current['uses']}/"
            f"{current['max_uses'] or 'no cap'}",
            soft_wrap=True,
        )


def _share(amount: int, twin: dict[str, Any], owner: str) -> int:
    """What ``owner`` gets of ``amount`` distributed from ``twin``: each payee's share rounded
    down, the rest to the owner (as the ledger's ``distribute``)."""
    shares = [(p["account"], amount * int(p["bps"]) // BPS) for p in twin["payees"]["payees"]]
    mine = sum(share for account, share in shares if account == owner)
    return mine + amount - sum(share for _, share in shares)


def _print_money(console: Console, totals: dict[str, Any], money: Token) -> None:
    """A twin's money (``GET /v1/twins/{id}/earnings`` totals)."""
    console.print(
        f"  accrued {money.show(int(totals['undistributed']))} (held by the twin, not yet "
        f"distributed), distributed {money.show(int(totals['distributed']))}, claimable "
        f"{money.show(int(totals['claimable']))}, unpaid debt "
        f"{money.show(int(totals['unpaid_debt']))}",
        soft_wrap=True,
    )


@model_app.command("show")
def show(
    ctx: typer.Context,
    address: Annotated[
        str | None, typer.Option("--address", help="Whose twins (default: the key's address).")
    ] = None,
) -> None:
    """Your twins, their licenses and money, and what a withdrawal pays you, from the bridge's
    index of the chain.

    Per twin: accrued (paid uses credited to the twin, not yet distributed), distributed to its
    payees and you, claimable (distributed, not yet paid out) and unpaid debt (owed by brands whose
    escrow fell short; repaid into the twin as they deposit).
    """
    with reported():
        model = _model(ctx)
        if address is not None:
            owner = checked(address, "--address")
        else:
            owner = model.key(model.chain_id()).address
        console = stdout()
        money = model.money()
        twins = _owned_twins(model.relay, owner)
        if not twins:
            console.print(f"{owner} owns no twin")
        share = 0
        for twin in twins:
            _print_twin(console, twin, money)
            totals = model.relay.json("GET", f"/v1/twins/{twin['twin_id']}/earnings")["totals"]
            _print_money(console, totals, money)
            share += _share(int(totals["undistributed"]), twin, owner)
        mine = model.relay.json("GET", f"/v1/payees/{owner}/earnings")["totals"]
        claimable = int(mine["claimable"])
        console.print(
            f"{owner}: claimable {money.show(claimable)}, your share of the accrued "
            f"{money.show(share)}, paid out {money.show(int(mine['paid_out']))} so far; "
            f"`twin-bridge model withdraw` pays {money.show(claimable + share)}",
            soft_wrap=True,
        )


def register(app: typer.Typer) -> None:
    """Adds ``model`` to the ``twin-bridge`` app."""
    app.add_typer(model_app, name="model")
