"""``twin-bridge brand offers|accept|decline|limits``: a brand's side of its agreements, from the
brand's machine.

Reads go to the bridge with the brand's API key (``--api``, ``--api-key``). Accepting signs the
bridge's EIP-712 ``AcceptLicense`` typed data with the brand's key and has the bridge relay it
(gas-free), or, with ``--rpc``, sends the brand's own ``acceptLicense``. Declining an offer and
setting the spending limits are always the brand's own transactions (``--rpc`` and its key): the
key never leaves the machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from eth_abi.abi import decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from bridge.chain.brand_ledger import decline_calldata, set_limits_calldata
from bridge.chain.client import Receipt, Web3ChainClient
from bridge.cli.common import load_settings, stdout
from bridge.cli.money import Token, token_for_api, token_over_chain
from bridge.cli.own_tx import OwnTransaction
from bridge.cli.remote import (
    DEFAULT_API,
    ApiOption,
    KeyEnvOption,
    Relay,
    RemoteCliError,
    WaitOption,
    address,
    follow,
    load_key,
    reported,
)
from bridge.domain.times import unix_seconds

GWEI: Final = 10**9
LIMITS_SET_TOPIC: Final = keccak(text="SpendingLimitsSet(address,uint256,uint256,uint40)")

ApiKeyOption = Annotated[
    str, typer.Option("--api-key", envvar="TWIN_BRIDGE_API_KEY", help="The brand's API key.")
]
TwinOption = Annotated[int, typer.Option("--twin", min=1, help="The twin's token id.")]
VersionOption = Annotated[
    int, typer.Option("--version", min=0, help="The offer's version (see `brand offers`).")
]
KeystoreOption = Annotated[
    Path | None,
    typer.Option(
        "--keystore",
        envvar="TWIN_BRIDGE_BRAND_KEYSTORE",
        help="The keystore of the brand's on-chain address.",
    ),
]
PasswordFileOption = Annotated[
    Path | None,
    typer.Option(
        "--password-file",
        envvar="TWIN_BRIDGE_BRAND_PASSWORD_FILE",
        help="File holding the keystore's password (else $TWIN_BRIDGE_BRAND_PASSWORD).",
    ),
]
OwnRpcOption = Annotated[
    str | None,
    typer.Option(
        "--rpc",
        help="Send your own acceptLicense through this JSON-RPC URL instead of the relay "
        "(never read from the environment: the relay is the default).",
    ),
]
LedgerOption = Annotated[
    str | None,
    typer.Option(
        "--ledger",
        envvar="TWIN_BRIDGE_LEDGER_ADDRESS",
        help="The ledger's address (default: the one the bridge at --api names).",
    ),
]
TxRpcOption = Annotated[
    str, typer.Option("--rpc", envvar="TWIN_BRIDGE_RPC_URL", help="JSON-RPC URL.")
]
"""The chain a brand's own transaction goes to (decline, limits set)."""
MaxFeeOption = Annotated[
    float,
    typer.Option("--max-fee-gwei", min=0.0, help="The most to pay per unit of gas, in gwei."),
]


@dataclass(frozen=True)
class BrandKey:
    """Where the brand's key is (a keystore, or a raw key in a variable on a dev chain); ``role``
    names it in messages and its password variable (``TWIN_BRIDGE_<ROLE>_PASSWORD``)."""

    keystore: Path | None
    password_file: Path | None
    key_env: str | None
    role: str = "brand"

    def load(self, chain_id: int) -> LocalAccount:
        return load_key(
            self.role,
            chain_id=chain_id,
            keystore=self.keystore,
            password_file=self.password_file,
            key_env=self.key_env,
        )


def _when(seconds: int) -> str:
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%d %H:%M:%S} UTC"


def sender_over(
    rpc: str, key: BrandKey, max_fee_gwei: float, *, chain_id: int | None = None
) -> OwnTransaction:
    """The brand's ``OwnTransaction`` over ``rpc``, whose chain must be ``chain_id`` if given.

    Raises:
        RemoteCliError: the RPC URL serves another chain.
    """
    chain = Web3ChainClient([rpc])
    actual = chain.chain_id()
    if chain_id is not None and actual != chain_id:
        raise RemoteCliError(f"{rpc} serves chain {actual}, not the ledger's chain {chain_id}")
    return OwnTransaction(chain, key.load(actual), fee_cap=int(max_fee_gwei * GWEI))


def ledger_of(api: str, ledger: str | None) -> str:
    """``--ledger``, else the ledger the bridge at ``api`` signs for."""
    if ledger is not None:
        return address(ledger, "--ledger")
    types = Relay.at(api).json("GET", "/v1/owner-actions/types")
    return address(str(types["domain"]["verifyingContract"]), "the bridge's ledger")


def mined(receipt: Receipt) -> str:
    return f"in block {receipt.block_number}, transaction {receipt.tx_hash}"


# ---------------------------------------------------------------- offers


def _offer_line(offer: dict[str, Any], money: Token) -> str:
    prices = ", ".join(
        f"{p['usage_type'] or 'type ' + str(p['usage_type_code'])}={money.number(int(p['price']))}"
        for p in offer["prices"]
    )
    cap = f"at most {offer['max_uses']} uses" if offer["max_uses"] else "no cap"
    ended = " (expired)" if offer["expired"] else ""
    return (
        f"twin {offer['twin_id']} version {offer['version']}: {prices} {money.symbol} per use, "
        f"until {_when(unix_seconds(offer['valid_until']))}, {cap}; "
        f"terms {offer['terms_hash']}{ended}"
    )


def offers(api_key: ApiKeyOption, api: ApiOption = DEFAULT_API) -> None:
    """The license offers waiting for your acceptance.

    A usage of such a twin is refused as "offer not accepted" until you accept (an earlier
    accepted version, if any, stays in force meanwhile).
    """
    with reported():
        relay = Relay.at(api, api_key=api_key)
        brand = relay.json("GET", "/v1/brand")
        items = relay.json("GET", "/v1/offers")["items"]
        console = stdout()
        if not items:
            console.print(
                f"no offer waits for {brand['name']} ({brand['address']})",
                soft_wrap=True,
                markup=False,
            )
            return
        money = token_for_api(relay, api)
        for offer in items:
            console.print(_offer_line(offer, money), soft_wrap=True, markup=False)


def accept(
    twin: TwinOption,
    version: VersionOption,
    api_key: ApiKeyOption,
    api: ApiOption = DEFAULT_API,
    keystore: KeystoreOption = None,
    password_file: PasswordFileOption = None,
    private_key_env: KeyEnvOption = None,
    rpc: OwnRpcOption = None,
    max_fee_gwei: MaxFeeOption = 200.0,
    wait: WaitOption = True,
) -> None:
    """Accept a license offer: signed here, relayed by the bridge (or --rpc: your own tx).

    The acceptance names the version and the terms hash the ledger holds for it, so a price
    changed since is a new version to accept again.
    """
    with reported():
        relay = Relay.at(api, api_key=api_key)
        path = f"/v1/offers/{twin}/{version}/accept"
        answer = relay.json("POST", path)
        typed = answer["typed_data"]
        key = BrandKey(keystore, password_file, private_key_env)
        if rpc is not None:
            sender = sender_over(rpc, key, max_fee_gwei, chain_id=int(typed["domain"]["chainId"]))
            tx = answer["transaction"]
            what = f"acceptLicense of twin {twin} version {version}"
            receipt = sender.send(to=tx["to"], data=bytes.fromhex(tx["data"][2:]), what=what)
            stdout().print(
                f"accepted twin {twin} version {version} {mined(receipt)}", soft_wrap=True
            )
            return
        account = _brand_account(key, typed)
        signature = Account.sign_typed_data(account.key, full_message=typed).signature
        body = {"message": typed["message"], "signature": "0x" + bytes(signature).hex()}
        follow(relay, relay.json("POST", path, json=body), wait=wait, timeout=120.0)


def _brand_account(key: BrandKey, typed: dict[str, Any]) -> LocalAccount:
    """The brand's key, which must be the address the acceptance names."""
    account = key.load(int(typed["domain"]["chainId"]))
    if account.address != typed["message"]["brand"]:
        raise RemoteCliError(
            f"the key's address {account.address} is not the brand's {typed['message']['brand']}"
        )
    return account


def decline(
    twin: TwinOption,
    version: VersionOption,
    rpc: TxRpcOption,
    api: ApiOption = DEFAULT_API,
    ledger: LedgerOption = None,
    keystore: KeystoreOption = None,
    password_file: PasswordFileOption = None,
    private_key_env: KeyEnvOption = None,
    max_fee_gwei: MaxFeeOption = 200.0,
) -> None:
    """Decline a license offer with your own transaction (declineLicense)."""
    with reported():
        to = ledger_of(api, ledger)
        sender = sender_over(rpc, BrandKey(keystore, password_file, private_key_env), max_fee_gwei)
        data = decline_calldata(twin, version)
        what = f"declineLicense of twin {twin} version {version}"
        receipt = sender.send(to=to, data=data, what=what)
        stdout().print(f"declined twin {twin} version {version} {mined(receipt)}", soft_wrap=True)


# ---------------------------------------------------------------- limits

limits_app = typer.Typer(help="The brand's spending limits on the ledger.", no_args_is_help=True)


@limits_app.command("show")
def limits_show(api_key: ApiKeyOption, api: ApiOption = DEFAULT_API) -> None:
    """Your spending limits, this period's spend and a raise waiting for its delay."""
    with reported():
        relay = Relay.at(api, api_key=api_key)
        limits = relay.json("GET", "/v1/brand/limits")
        money = token_for_api(relay, api)
        console = stdout()
        console.print(
            f"limits of {limits['brand']}: {money.show(int(limits['per_usage']))} per usage, "
            f"{money.show(int(limits['per_period']))} per period",
            soft_wrap=True,
        )
        console.print(
            f"spent since {_when(unix_seconds(limits['period_start']))}: "
            f"{money.show(int(limits['spent_in_period']))}, "
            f"{money.show(int(limits['remaining_in_period']))} left",
            soft_wrap=True,
        )
        raise_ = limits["pending_raise"]
        if raise_ is not None:
            console.print(
                f"raise waiting: {money.show(int(raise_['per_usage']))} per usage, "
                f"{money.show(int(raise_['per_period']))} per period from "
                f"{_when(unix_seconds(raise_['effective_at']))}",
                soft_wrap=True,
            )
        attester = limits["attester"] or "the bridge's"
        console.print(f"attester: {attester}", soft_wrap=True)


def _limits_set(receipt: Receipt) -> tuple[int, int, int]:
    """``perUsage``, ``perPeriod`` and ``effectiveAt`` of the ``SpendingLimitsSet`` it emitted.

    Raises:
        RemoteCliError: it emitted none.
    """
    for log in receipt.logs:
        if log.topics and log.topics[0] == LIMITS_SET_TOPIC:
            per_usage, per_period, effective_at = decode(["uint256", "uint256", "uint40"], log.data)
            return int(per_usage), int(per_period), int(effective_at)
    raise RemoteCliError(f"transaction {receipt.tx_hash} emitted no SpendingLimitsSet")


@limits_app.command("set")
def limits_set(
    per_usage: Annotated[
        str, typer.Option("--per-usage", help="Most one usage may cost, in tokens.")
    ],
    per_period: Annotated[str, typer.Option("--per-period", help="Most per period, in tokens.")],
    rpc: TxRpcOption,
    api: ApiOption = DEFAULT_API,
    ledger: LedgerOption = None,
    keystore: KeystoreOption = None,
    password_file: PasswordFileOption = None,
    private_key_env: KeyEnvOption = None,
    max_fee_gwei: MaxFeeOption = 200.0,
) -> None:
    """Set your spending limits with your own transaction (setSpendingLimits).

    A lowering holds at once, a raise after the ledger's raise delay. The ledger keeps the
    amounts to 28 bits of mantissa (about 8 significant digits), rounding down.
    """
    with reported():
        to = ledger_of(api, ledger)
        money = token_over_chain(load_settings().data_dir, Web3ChainClient([rpc]), to)
        amounts = money.parse(per_usage, "--per-usage"), money.parse(per_period, "--per-period")
        sender = sender_over(rpc, BrandKey(keystore, password_file, private_key_env), max_fee_gwei)
        receipt = sender.send(to=to, data=set_limits_calldata(*amounts), what="setSpendingLimits")
        usage_limit, period_limit, effective_at = _limits_set(receipt)
        stdout().print(
            f"limits set: {money.show(usage_limit)} per usage, {money.show(period_limit)} per "
            f"period, in force from {_when(effective_at)} {mined(receipt)}",
            soft_wrap=True,
        )


def add_commands(brand_app: typer.Typer) -> None:
    """Adds the brand-side commands to ``twin-bridge brand``."""
    brand_app.command("offers")(offers)
    brand_app.command("accept")(accept)
    brand_app.command("decline")(decline)
    brand_app.add_typer(limits_app, name="limits")
