"""``twin-bridge brand attester set`` and ``twin-bridge brand settle``: a brand that attests its own
usages, trusting no key of the bridge's.

A brand names its own attester on the ledger (``setBrandAttester``, its own transaction). From then
on the ledger takes the brand's usages only signed by that attester, numbered in the brand's own id
space, from 2**62, with a bitmap of its own: the bridge's attesters can neither settle nor burn
them, and the bridge's API refuses the brand's usage events at the door
(``brand_attests_itself``).

``brand settle`` is the brand's side of it, run where its attester key lives: it reads usage
events from a JSON file, numbers each by its event id (``own_usage_id``: the same event always
gets the same id, so a usage is settled once however often the file is run), leaves out those the
ledger has already processed, signs each batch of up to ``--batch-size`` with the attester key
(EIP-712 ``UsageBatch``, as the bridge's worker does), sends ``settle`` from that key and prints
each usage's outcome and amount from the receipt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from bridge.chain.brand_ledger import BrandLedger, set_attester_calldata
from bridge.chain.client import Receipt, Web3ChainClient
from bridge.chain.ledger import (
    decode_usages_settled,
    settle_calldata,
    usages_processed,
)
from bridge.cli.brand_offers import (
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
from bridge.cli.money import Token, cached_token, read_token
from bridge.cli.own_tx import OwnTransaction
from bridge.cli.remote import (
    DEFAULT_API,
    ApiOption,
    KeyEnvOption,
    RemoteCliError,
    address,
    reported,
)
from bridge.domain import eip712
from bridge.domain.codec import MAX_QUANTITY, Outcome, Usage
from bridge.domain.usage import UsageType
from bridge.settlement.outcomes import paid_amounts

OWN_ID_BASE: Final = 1 << 62
"""The first usage id of a brand's own id space; the bridge's attesters number below it."""
DEADLINE_S: Final = 3600
"""A signed batch is valid this long after the chain's latest block."""
ZERO_ADDRESS: Final = "0x" + "00" * 20


def own_usage_id(brand: str, event_id: str) -> int:
    """The usage id of the brand's event in its own id space: 2**62 plus the low 62 bits of
    keccak256(brand address || event id). One event id, one usage id, however often it is sent;
    two event ids share one with odds of about n**2 / 2**63 for n events."""
    digest = keccak(bytes.fromhex(to_checksum_address(brand)[2:]) + event_id.encode())
    return OWN_ID_BASE | (int.from_bytes(digest[:8]) & (OWN_ID_BASE - 1))


@dataclass(frozen=True, slots=True)
class OwnUsage:
    """One usage event of the file, numbered in the brand's id space."""

    event_id: str
    usage: Usage


def read_usages(path: Path, brand: str) -> list[OwnUsage]:
    """The usage events of the JSON file at ``path``: a list of objects with ``event_id``,
    ``twin_id``, ``usage_type`` (a name or a number), ``quantity`` (default 1) and ``used_at``
    (ISO 8601 with a zone offset).

    Raises:
        RemoteCliError: the file is not such a list (naming the first bad item and field), or
            holds an event id twice.
    """
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RemoteCliError(f"{path}: {exc}") from None
    if not isinstance(items, list) or not items:
        raise RemoteCliError(f"{path}: expected a non-empty JSON list of usage events")
    usages: list[OwnUsage] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        usage = _read_usage(item, brand, f"{path} item {index}")
        if usage.event_id in seen:
            raise RemoteCliError(f"{path} item {index}: event_id {usage.event_id!r} is repeated")
        seen.add(usage.event_id)
        usages.append(usage)
    return usages


def _read_usage(item: Any, brand: str, where: str) -> OwnUsage:
    if not isinstance(item, dict):
        raise RemoteCliError(f"{where}: expected an object")
    unknown = sorted(set(item) - {"event_id", "twin_id", "usage_type", "quantity", "used_at"})
    if unknown:
        raise RemoteCliError(f"{where}: unknown field {unknown[0]!r}")
    event_id = item.get("event_id")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= 128:
        raise RemoteCliError(f"{where}: event_id must be a string of 1 to 128 characters")
    try:
        twin_id = _whole(item.get("twin_id"), "twin_id", 1)
        quantity = _whole(item.get("quantity", 1), "quantity", 1)
        if quantity > MAX_QUANTITY:
            raise ValueError(f"quantity {quantity} is above {MAX_QUANTITY}")
        kind = item.get("usage_type")
        if not isinstance(kind, str | int) or isinstance(kind, bool):
            raise ValueError("usage_type must be a name or a number")
        usage_type = UsageType.parse(kind)
        used_at = _time(item.get("used_at"))
        usage = Usage(
            usage_id=own_usage_id(brand, event_id),
            twin_id=twin_id,
            used_at=used_at,
            quantity=quantity,
            usage_type=int(usage_type),
        )
    except ValueError as exc:
        raise RemoteCliError(f"{where} ({event_id}): {exc}") from None
    return OwnUsage(event_id, usage)


def _whole(value: Any, name: str, least: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise ValueError(f"{name} must be a whole number of at least {least}")
    return value


def _time(value: Any) -> int:
    if not isinstance(value, str):
        raise ValueError("used_at must be an ISO 8601 time with a zone offset")
    when = datetime.fromisoformat(value)
    if when.tzinfo is None:
        raise ValueError(f"used_at {value!r} has no zone offset")
    return int(when.timestamp())


# ---------------------------------------------------------------- commands

attester_app = typer.Typer(help="The brand's own attester on the ledger.", no_args_is_help=True)


@attester_app.command("set")
def attester_set(
    attester: Annotated[
        str,
        typer.Argument(help="The attester's address; 0x000…0 gives the bridge's back."),
    ],
    rpc: TxRpcOption,
    api: ApiOption = DEFAULT_API,
    ledger: LedgerOption = None,
    keystore: KeystoreOption = None,
    password_file: PasswordFileOption = None,
    private_key_env: KeyEnvOption = None,
    max_fee_gwei: MaxFeeOption = 200.0,
) -> None:
    """Name your own attester with your own transaction (setBrandAttester).

    From then on only that attester's signature settles your usages (`brand settle`), and the
    bridge refuses your usage events at the door. It holds at once.
    """
    with reported():
        who = address(attester, "the attester")
        to = ledger_of(api, ledger)
        sender = sender_over(rpc, BrandKey(keystore, password_file, private_key_env), max_fee_gwei)
        receipt = sender.send(to=to, data=set_attester_calldata(who), what="setBrandAttester")
        named = "the bridge's attesters" if who == ZERO_ADDRESS else who
        stdout().print(
            f"attester of {sender.account.address}: {named} {mined(receipt)}", soft_wrap=True
        )


def settle(
    usages_file: Annotated[
        Path, typer.Argument(help="JSON list of usage events.", exists=True, dir_okay=False)
    ],
    brand: Annotated[str, typer.Option("--brand", help="The brand's on-chain address.")],
    rpc: TxRpcOption,
    api: ApiOption = DEFAULT_API,
    ledger: LedgerOption = None,
    keystore: Annotated[
        Path | None,
        typer.Option(
            "--keystore",
            envvar="TWIN_BRIDGE_ATTESTER_KEYSTORE",
            help="The keystore of the brand's attester (it signs and pays the gas).",
        ),
    ] = None,
    password_file: Annotated[
        Path | None,
        typer.Option(
            "--password-file",
            envvar="TWIN_BRIDGE_ATTESTER_PASSWORD_FILE",
            help="File holding the keystore's password (else $TWIN_BRIDGE_ATTESTER_PASSWORD).",
        ),
    ] = None,
    private_key_env: KeyEnvOption = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=500, help="Usages per transaction.")
    ] = 100,
    max_fee_gwei: MaxFeeOption = 200.0,
) -> None:
    """Sign and settle your usages with your own attester (self-attestation).

    Each event gets a usage id from its event id in your own id space, so a file run twice
    settles nothing twice. Prints each usage's outcome and what it cost.
    """
    with reported():
        brand_address = address(brand, "--brand")
        usages = read_usages(usages_file, brand_address)
        to = ledger_of(api, ledger)
        chain = Web3ChainClient([rpc])
        chain_id = chain.chain_id()
        key = BrandKey(keystore, password_file, private_key_env, role="attester")
        account = key.load(chain_id)
        _check_attester(BrandLedger(chain, to), brand_address, account)
        fresh = _unprocessed(chain, to, brand_address, usages)
        sender = OwnTransaction(chain, account, fee_cap=int(max_fee_gwei * 10**9))
        console = stdout()
        for done in (u for u in usages if u not in fresh):
            console.print(
                f"{done.event_id}: usage {done.usage.usage_id} already settled on chain",
                soft_wrap=True,
                markup=False,
            )
        totals = _Totals(
            cached_token(load_settings().data_dir, chain_id, to, lambda: read_token(chain, to))
        )
        for start in range(0, len(fresh), batch_size):
            chunk = fresh[start : start + batch_size]
            receipt = _send_batch(chain, sender, to, brand_address, chunk)
            for line in _outcomes(chain, to, receipt, chunk, totals):
                console.print(line, soft_wrap=True, markup=False)
        console.print(totals.summary(len(usages) - len(fresh)), soft_wrap=True)


def _check_attester(ledger: BrandLedger, brand: str, account: LocalAccount) -> None:
    """Raises ``RemoteCliError`` unless ``account`` is the brand's attester on the ledger."""
    named = ledger.brand_limits(brand).attester
    if named == ZERO_ADDRESS:
        raise RemoteCliError(
            f"brand {brand} has no attester of its own: the bridge's attesters settle its "
            "usages (name yours with `twin-bridge brand attester set`)"
        )
    if named != account.address:
        raise RemoteCliError(
            f"the key's address {account.address} is not brand {brand}'s attester {named}"
        )


def _unprocessed(
    chain: Web3ChainClient, ledger: str, brand: str, usages: list[OwnUsage]
) -> list[OwnUsage]:
    """The usages whose id the ledger has not processed for the brand yet."""
    done = usages_processed(chain, ledger, [(brand, u.usage.usage_id) for u in usages])
    return [u for u, processed in zip(usages, done, strict=True) if not processed]


def _send_batch(
    chain: Web3ChainClient,
    sender: OwnTransaction,
    ledger: str,
    brand: str,
    chunk: list[OwnUsage],
) -> Receipt:
    """Signs the chunk as one batch with the attester key, valid ``DEADLINE_S`` past the chain's
    clock, and sends ``settle``."""
    block = chain.block("latest")
    if block is None:
        raise RemoteCliError("the chain gave no latest block")
    deadline = block.timestamp + DEADLINE_S
    words = [(brand, [u.usage.encode() for u in sorted(chunk, key=_order)])]
    data = eip712.usage_batch(deadline, words, chain_id=chain.chain_id(), ledger=ledger)
    signature = eip712.sign(sender.account, data)
    calldata = settle_calldata(deadline, words, sender.account.address, signature)
    return sender.send(to=ledger, data=calldata, what=f"settle of {len(chunk)} usages")


def _order(u: OwnUsage) -> tuple[int, int]:
    """Twin then id: consecutive usages of one twin cost less gas."""
    return u.usage.twin_id, u.usage.usage_id


@dataclass
class _Totals:
    money: Token
    paid: int = 0
    paid_count: int = 0
    rejected: int = 0
    transactions: int = 0

    def summary(self, skipped: int) -> str:
        return (
            f"{self.paid_count} paid ({self.money.show(self.paid)}), {self.rejected} rejected in "
            f"{self.transactions} transaction{'' if self.transactions == 1 else 's'}; "
            f"{skipped} already settled"
        )


def _outcomes(
    chain: Web3ChainClient, ledger: str, receipt: Receipt, chunk: list[OwnUsage], totals: _Totals
) -> list[str]:
    """One line per usage of the chunk: its outcome in ``receipt`` and, paid, what it cost."""
    totals.transactions += 1
    by_id = {u.usage.usage_id: u for u in chunk}
    lines: list[str] = []
    groups = decode_usages_settled(receipt.logs, ledger=ledger)
    amounts = paid_amounts(chain, ledger, groups, receipt.block_number)
    for group in groups:
        for usage, outcome in group.results:
            own = by_id[usage.usage_id]
            if outcome is Outcome.PAID:
                amount = amounts[(group.brand, usage.usage_id)]
                totals.paid += amount
                totals.paid_count += 1
                what = f"paid {totals.money.show(amount)}"
            else:
                totals.rejected += 1
                what = f"rejected ({outcome.name.lower()}): {outcome.description}"
            lines.append(
                f"{own.event_id}: usage {usage.usage_id} {what} in block "
                f"{receipt.block_number}, transaction {receipt.tx_hash}"
            )
    return lines


def add_commands(brand_app: typer.Typer) -> None:
    """Adds the self-attestation commands to ``twin-bridge brand``."""
    brand_app.add_typer(attester_app, name="attester")
    brand_app.command("settle")(settle)
