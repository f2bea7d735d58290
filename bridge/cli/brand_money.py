"""``twin-bridge brand deposit|withdraw-request|withdraw|escrow``: the brand's money in the ledger,
from the brand's machine.

Funding escrow and taking it back are the brand's own transactions (``--rpc`` and its key, as
``brand limits set``; ``bridge.cli.brand_offers``): ``deposit`` signs an EIP-2612 permit to the
ledger when the payment token takes one and sends ``depositWithPermit`` (one transaction), else
``approve`` (when the allowance falls short) and ``deposit``; ``withdraw-request`` sends
``requestEscrowWithdrawal`` and ``withdraw`` ``withdrawEscrow``. Each prints what the ledger
recorded, from the receipt's events. ``escrow`` reads the brand's account with its API key.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from eth_account import Account

from bridge.chain.brand_ledger import (
    deposit_calldata,
    deposit_with_permit_calldata,
    request_withdrawal_calldata,
    withdraw_escrow_calldata,
)
from bridge.chain.client import Receipt, Web3ChainClient
from bridge.chain.escrow import (
    PERMIT_DEADLINE_S,
    EscrowEvents,
    EscrowLedger,
    TokenFacts,
    approve_calldata,
    escrow_events,
    permit_typed_data,
    utc,
)
from bridge.cli.brand_offers import (
    ApiKeyOption,
    BrandKey,
    KeystoreOption,
    LedgerOption,
    MaxFeeOption,
    PasswordFileOption,
    TxRpcOption,
    ledger_of,
    mined,
    sender_over,
)
from bridge.cli.common import load_settings, stdout
from bridge.cli.money import Token, token_for_api, token_over_chain
from bridge.cli.own_tx import OwnTransaction
from bridge.cli.remote import (
    DEFAULT_API,
    ApiOption,
    KeyEnvOption,
    Relay,
    RemoteCliError,
    reported,
)
from bridge.domain.times import unix_seconds

AmountArgument = Annotated[
    str,
    typer.Argument(
        help="Tokens of the payment token, up to its decimals (e.g. 2500 or 99.5).",
        show_default=False,
    ),
]


class _Brand:
    """The brand's ledger over ``--rpc``: its own transactions (``sender``) and the reads of its
    escrow and of the payment token (``escrow``)."""

    def __init__(self, rpc: str, ledger: str, sender: OwnTransaction) -> None:
        self.ledger = ledger
        self.sender = sender
        self.address = sender.account.address
        self.escrow = EscrowLedger(Web3ChainClient([rpc]), ledger)
        self.money = token_over_chain(load_settings().data_dir, self.escrow.chain, ledger)

    def send(self, data: bytes, what: str) -> tuple[Receipt, EscrowEvents]:
        """Sends ``data`` to the ledger; its receipt and the escrow events it emitted."""
        receipt = self.sender.send(to=self.ledger, data=data, what=what)
        return receipt, escrow_events(receipt.logs, ledger=self.ledger, brand=self.address)


def _brand(rpc: str, api: str, ledger: str | None, key: BrandKey, max_fee_gwei: float) -> _Brand:
    return _Brand(rpc, ledger_of(api, ledger), sender_over(rpc, key, max_fee_gwei))


def _emitted(receipt: Receipt, event: str) -> RemoteCliError:
    return RemoteCliError(f"transaction {receipt.tx_hash} emitted no {event}")


def _permit_deposit(brand: _Brand, token: TokenFacts, amount: int) -> bytes:
    """``depositWithPermit`` calldata with the brand's permit to the ledger for ``amount``,
    signed here, valid an hour after the chain's time."""
    assert token.permit_domain is not None  # noqa: S101 - the caller checked
    permit = permit_typed_data(
        token.permit_domain,
        owner=brand.address,
        spender=brand.ledger,
        value=amount,
        nonce=brand.escrow.permit_nonce(brand.address),
        deadline=brand.escrow.chain_time() + PERMIT_DEADLINE_S,
    )
    signed = Account.sign_typed_data(brand.sender.account.key, full_message=permit)
    deadline = int(permit["message"]["deadline"])
    return deposit_with_permit_calldata(
        brand.address, amount, deadline=deadline, signature=bytes(signed.signature)
    )


def deposit(
    amount: AmountArgument,
    rpc: TxRpcOption,
    api: ApiOption = DEFAULT_API,
    ledger: LedgerOption = None,
    keystore: KeystoreOption = None,
    password_file: PasswordFileOption = None,
    private_key_env: KeyEnvOption = None,
    max_fee_gwei: MaxFeeOption = 200.0,
) -> None:
    """Deposit AMOUNT of the payment token into your escrow (your own transactions).

    With a token that takes EIP-2612 permits, one depositWithPermit signed here; else approve (if
    the ledger's allowance falls short) and deposit. Outstanding debt is repaid first; the rest is
    escrow that pays your usages.
    """
    with reported():
        brand = _brand(
            rpc, api, ledger, BrandKey(keystore, password_file, private_key_env), max_fee_gwei
        )
        money = brand.money
        value = money.parse(amount, "AMOUNT")
        token = brand.escrow.token_facts(brand.address)
        if token.balance < value:
            raise RemoteCliError(
                f"{brand.address} holds {money.show(token.balance)} of the payment token "
                f"{token.address}, less than the {money.show(value)} to deposit"
            )
        console = stdout()
        if token.permit_domain is not None:
            data, what = _permit_deposit(brand, token, value), "depositWithPermit"
        else:
            data, what = deposit_calldata(brand.address, value), "deposit"
            if token.allowance < value:
                approval = brand.sender.send(
                    to=token.address,
                    data=approve_calldata(brand.ledger, value),
                    what=f"approve of {money.show(value)} to the ledger",
                )
                console.print(
                    f"approved the ledger to take {money.show(value)} {mined(approval)}",
                    soft_wrap=True,
                )
        receipt, events = brand.send(data, what)
        if events.deposited is None:
            raise _emitted(receipt, "EscrowDeposited")
        deposited, to_debt = events.deposited
        console.print(
            f"deposited {money.show(deposited)} for {brand.address}: "
            f"{money.show(deposited - to_debt)} to escrow, {money.show(to_debt)} to debt, "
            f"{mined(receipt)}",
            soft_wrap=True,
        )


def withdraw_request(
    amount: AmountArgument,
    rpc: TxRpcOption,
    api: ApiOption = DEFAULT_API,
    ledger: LedgerOption = None,
    keystore: KeystoreOption = None,
    password_file: PasswordFileOption = None,
    private_key_env: KeyEnvOption = None,
    max_fee_gwei: MaxFeeOption = 200.0,
) -> None:
    """Ask to withdraw AMOUNT of your escrow (requestEscrowWithdrawal, your own transaction).

    The ledger caps it at your escrow; it unlocks after the ledger's notice period and may be
    withdrawn (`brand withdraw`) until it lapses. It replaces an earlier request.
    """
    with reported():
        brand = _brand(
            rpc, api, ledger, BrandKey(keystore, password_file, private_key_env), max_fee_gwei
        )
        money = brand.money
        value = money.parse(amount, "AMOUNT")
        receipt, events = brand.send(request_withdrawal_calldata(value), "requestEscrowWithdrawal")
        if events.requested is None:
            raise _emitted(receipt, "EscrowWithdrawalRequested")
        requested, unlocks_at = events.requested
        account = brand.escrow.account(brand.address, block=receipt.block_number)
        capped = f" (capped at the escrow; {money.show(value)} asked)" if requested < value else ""
        stdout().print(
            f"withdrawal of {money.show(requested)} requested for {brand.address}{capped}: it "
            f"unlocks at {utc(unlocks_at)} and may be withdrawn until {utc(account.lapses_at)}, "
            f"{mined(receipt)}",
            soft_wrap=True,
        )


def withdraw(
    rpc: TxRpcOption,
    api: ApiOption = DEFAULT_API,
    ledger: LedgerOption = None,
    keystore: KeystoreOption = None,
    password_file: PasswordFileOption = None,
    private_key_env: KeyEnvOption = None,
    max_fee_gwei: MaxFeeOption = 200.0,
) -> None:
    """Withdraw your requested escrow once unlocked (withdrawEscrow, your own transaction)."""
    with reported():
        brand = _brand(
            rpc, api, ledger, BrandKey(keystore, password_file, private_key_env), max_fee_gwei
        )
        account = brand.escrow.account(brand.address)
        refusal = account.withdrawal_refusal(brand.escrow.chain_time())
        if refusal is not None:
            raise RemoteCliError(f"{brand.address} cannot withdraw escrow now: {refusal}")
        receipt, events = brand.send(withdraw_escrow_calldata(), "withdrawEscrow")
        if events.withdrawn is None:
            raise _emitted(receipt, "EscrowWithdrawn")
        money = brand.money
        stdout().print(
            f"withdrew {money.show(events.withdrawn)} from the escrow of {brand.address} "
            f"{mined(receipt)}",
            soft_wrap=True,
        )


def _withdrawal_line(account: dict[str, Any], money: Token) -> str:
    if not int(account["pending_withdrawal"]):
        return "no withdrawal pending"
    unlocks = unix_seconds(account["withdrawal_unlocks_at"])
    lapses = unix_seconds(account["withdrawal_lapses_at"])
    now = unix_seconds(account["chain_time"])
    state = (
        "withdrawable now (`twin-bridge brand withdraw`)"
        if account["withdrawable"]
        else "lapsed: request it again"
        if now >= lapses
        else "locked until then"
    )
    return (
        f"withdrawal pending: {money.show(int(account['pending_withdrawal']))}, unlocks at "
        f"{utc(unlocks)}, lapses at {utc(lapses)}; {state}"
    )


def escrow(api_key: ApiKeyOption, api: ApiOption = DEFAULT_API) -> None:
    """Your escrow, debt and pending withdrawal on the ledger now, and the token in your wallet."""
    with reported():
        relay = Relay.at(api, api_key=api_key)
        account = relay.json("GET", "/v1/brand/escrow")
        money = token_for_api(relay, api)
        console = stdout()
        console.print(
            f"escrow of {account['brand']}: {money.show(int(account['escrow']))}; debt "
            f"{money.show(int(account['debt']))} (reserve "
            f"{money.show(int(account['debt_reserve']))}) at "
            f"{utc(unix_seconds(account['chain_time']))}",
            soft_wrap=True,
        )
        console.print(_withdrawal_line(account, money), soft_wrap=True)
        deposits = (
            "deposits by permit"
            if account["permit"]
            else f"the ledger may take {money.show(int(account['allowance']))} of it"
        )
        console.print(
            f"wallet: {money.show(int(account['wallet_balance']))} of the payment token "
            f"{account['token']}; {deposits}",
            soft_wrap=True,
        )


def add_commands(brand_app: typer.Typer) -> None:
    """Adds the brand's money commands to ``twin-bridge brand``."""
    brand_app.command("deposit")(deposit)
    brand_app.command("withdraw-request")(withdraw_request)
    brand_app.command("withdraw")(withdraw)
    brand_app.command("escrow")(escrow)
