"""The demo world ``twin-bridge dev`` seeds on a fresh local chain: a registrar, 30 models with one
twin each, three brands with escrow in the mock stablecoin, and licenses with different usage types,
prices, validity windows and royalty splits (an agency and a photographer).

Every party is an account of anvil's well-known dev mnemonic (its keys are public: they guard
nothing and must never hold value on a real network)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.logs import DISCARD
from web3.types import TxReceipt

from bridge.domain.usage import UsageType
from bridge.errors import BridgeError

DEV_MNEMONIC: Final = "test test test test test test test test test test test junk"
"""Anvil's and Hardhat's default mnemonic: a well-known dev-chain key set, public by design."""
DEV_ACCOUNTS: Final = 40
"""Accounts anvil derives from the mnemonic (``--accounts``); the demo uses all of them."""

DEPLOYER, REGISTRAR, ATTESTER, RELAYER, PAUSER = 0, 1, 2, 3, 4
BRAND_ACCOUNTS: Final = (5, 6, 7)
MODEL_ACCOUNTS: Final = tuple(range(8, 38))
AGENCY, PHOTOGRAPHER = 38, 39

USD: Final = 10**6
"""One mock USD in the stablecoin's base units (6 decimals)."""
ESCROW_PER_BRAND: Final = 250_000 * USD
DAY: Final = 24 * 3600
SEED: Final = 20_261_128

BRAND_NAMES: Final = ("Maison Lumiere", "Nordic Thread", "Atelier Kei")
MODEL_NAMES: Final = (
    "Ada Okafor", "Bea Lindqvist", "Chloe Martin", "Dara Chen", "Elif Kaya", "Freya Olsen",
    "Gia Romano", "Hana Sato", "Iris Novak", "Jade Moreau", "Kira Ivanova", "Lea Schmidt",
    "Maya Patel", "Nia Mensah", "Ola Nowak", "Pia Costa", "Qiu Lan", "Rosa Diaz", "Sana Malik",
    "Tara Byrne", "Uma Rao", "Vera Horvat", "Wren Hughes", "Xena Pappas", "Yara Haddad",
    "Zoe Laurent", "Amara Diallo", "Bianca Rossi", "Carmen Vidal", "Dalia Nasser",
)  # fmt: skip

PRICE_RANGES: Final = {
    UsageType.CAMPAIGN_IMAGE: (40, 250),
    UsageType.VIDEO: (150, 900),
    UsageType.SOCIAL_POST: (5, 40),
    UsageType.PRINT: (80, 400),
    UsageType.ECOMMERCE: (2, 15),
    UsageType.OUTDOOR: (300, 1500),
}
"""Usage type -> lowest and highest demo price per use, in whole USD."""

AGENCY_BPS: Final = 1_500
PHOTOGRAPHER_BPS: Final = 500


class DemoError(BridgeError):
    """Seeding the demo failed."""


def dev_account(index: int) -> LocalAccount:
    """Account ``index`` of the dev mnemonic (``m/44'/60'/0'/0/index``)."""
    Account.enable_unaudited_hdwallet_features()
    account: LocalAccount = Account.from_mnemonic(
        DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}"
    )
    return account


@dataclass(frozen=True)
class DemoLicense:
    brand: str
    valid_from: int
    valid_until: int
    max_uses: int
    prices: dict[int, int]
    """Usage type -> price per use in token base units."""


@dataclass(frozen=True)
class DemoModel:
    name: str
    account: LocalAccount
    twin_id: int
    licenses: list[DemoLicense]
    payees: list[tuple[str, int]]


@dataclass
class Demo:
    """What was seeded."""

    brands: list[tuple[str, LocalAccount]]
    models: list[DemoModel]
    registrar: LocalAccount
    agency: LocalAccount
    photographer: LocalAccount
    escrow_per_brand: int = ESCROW_PER_BRAND
    tx_count: int = 0
    notes: list[str] = field(default_factory=list)


def _send(w3: Web3, calls: Sequence[tuple[ContractFunction, str]]) -> list[TxReceipt]:
    """Sends each call from its (anvil-unlocked) account, then waits for all receipts."""
    hashes = [call.transact({"from": Web3.to_checksum_address(sender)}) for call, sender in calls]
    receipts = [w3.eth.wait_for_transaction_receipt(h, timeout=120) for h in hashes]
    for receipt in receipts:
        if receipt["status"] != 1:
            raise DemoError(f"demo transaction {receipt['transactionHash'].hex()} reverted")
    return receipts


def _license(
    rng: random.Random, brand: str, now: int, twin_index: int, brand_index: int
) -> DemoLicense:
    types = sorted(rng.sample(sorted(PRICE_RANGES), rng.randint(1, 3)))
    prices = {int(t): rng.randint(*PRICE_RANGES[t]) * USD for t in types}
    window = (twin_index + brand_index) % 6
    if window == 0:  # starts next month: usages are refused until then
        valid_from, valid_until = now + 30 * DAY, now + 395 * DAY
    elif window == 1:  # a short campaign: one week
        valid_from, valid_until = 0, now + 7 * DAY
    else:  # a year from the grant
        valid_from, valid_until = 0, now + 365 * DAY
    max_uses = 1_000 if window == 2 else 0
    return DemoLicense(brand, valid_from, valid_until, max_uses, prices)


def _mint_twins(
    w3: Web3, ledger: Contract, registrar: str, models: list[LocalAccount]
) -> list[int]:
    """One twin per model, minted by the registrar; their ids in the models' order."""
    fn = ledger.functions
    receipts = _send(
        w3,
        [
            (
                fn.mint(
                    model.address,
                    f"ipfs://twin-bridge-demo/twin-{i + 1:02d}.json",
                    keccak(text=f"consent record of {MODEL_NAMES[i]}"),
                ),
                registrar,
            )
            for i, model in enumerate(models)
        ],
    )
    twin_ids = [
        int(event["args"]["twinId"])
        for receipt in receipts
        for event in ledger.events.TwinMinted().process_receipt(receipt, errors=DISCARD)
    ]
    if len(twin_ids) != len(models):
        raise DemoError(f"minted {len(twin_ids)} twins, expected {len(models)}")
    return twin_ids


def _payees(i: int, agency: str, photographer: str) -> list[tuple[str, int]]:
    """Model ``i``'s royalty split: an agency for two models in three, a photographer for some."""
    payees: list[tuple[str, int]] = []
    if i % 3 != 2:
        payees.append((agency, AGENCY_BPS))
    if i % 3 == 1 or i % 5 == 0:
        payees.append((photographer, PHOTOGRAPHER_BPS))
    return payees


def _grant_calls(
    fn: Any, twin: int, model: DemoModel, licensed: list[int]
) -> list[tuple[ContractFunction, str]]:
    calls: list[tuple[ContractFunction, str]] = []
    for b, lic in zip(licensed, model.licenses, strict=True):
        terms: tuple[Any, ...] = (
            lic.brand,
            lic.valid_from,
            lic.valid_until,
            lic.max_uses,
            keccak(text=f"{BRAND_NAMES[b]} campaign with {model.name}"),
            keccak(text=f"consent of {model.name} for {BRAND_NAMES[b]}"),
            sorted(lic.prices.items()),
        )
        calls.append((fn.grantLicense(twin, terms), model.account.address))
    return calls


def _fund(w3: Web3, ledger: Contract, token: Contract, brands: list[LocalAccount]) -> int:
    """Mints each brand its escrow, approves the ledger and deposits; returns the transactions."""
    funding: list[tuple[ContractFunction, str]] = []
    for brand in brands:
        funding.append((token.functions.mint(brand.address, ESCROW_PER_BRAND), brand.address))
        funding.append((token.functions.approve(ledger.address, ESCROW_PER_BRAND), brand.address))
    _send(w3, funding)
    fn = ledger.functions
    _send(w3, [(fn.deposit(brand.address, ESCROW_PER_BRAND), brand.address) for brand in brands])
    return len(funding) + len(brands)


def seed(w3: Web3, ledger: Contract, token: Contract) -> Demo:
    """Mints the twins, grants the licenses, sets payees and funds the brands' escrow.

    The ledger's roles must already be in place: ``REGISTRAR`` holds the registrar role.
    """
    rng = random.Random(SEED)  # noqa: S311 - a reproducible demo, nothing secret
    fn = ledger.functions
    registrar = dev_account(REGISTRAR)
    agency, photographer = dev_account(AGENCY), dev_account(PHOTOGRAPHER)
    brands = [(name, dev_account(i)) for name, i in zip(BRAND_NAMES, BRAND_ACCOUNTS, strict=True)]
    models = [dev_account(i) for i in MODEL_ACCOUNTS]
    if not fn.hasRole(fn.REGISTRAR_ROLE().call(), registrar.address).call():
        raise DemoError(f"the demo registrar {registrar.address} lacks REGISTRAR_ROLE")
    twin_ids = _mint_twins(w3, ledger, registrar.address, models)

    now = int(w3.eth.get_block("latest")["timestamp"])
    calls: list[tuple[ContractFunction, str]] = []
    seeded: list[DemoModel] = []
    for i, (model, twin) in enumerate(zip(models, twin_ids, strict=True)):
        licensed = [b for b in range(len(brands)) if b == i % len(brands) or rng.random() < 0.45]
        licenses = [_license(rng, brands[b][1].address, now, i, b) for b in licensed]
        payees = _payees(i, agency.address, photographer.address)
        demo_model = DemoModel(MODEL_NAMES[i], model, twin, licenses, payees)
        calls += _grant_calls(fn, twin, demo_model, licensed)
        if payees:
            calls.append((fn.setPayees(twin, payees), model.address))
        seeded.append(demo_model)
    _send(w3, calls)
    funding_txs = _fund(w3, ledger, token, [brand for _, brand in brands])
    return Demo(
        brands=brands,
        models=seeded,
        registrar=registrar,
        agency=agency,
        photographer=photographer,
        tx_count=len(models) + len(calls) + funding_txs,
    )
