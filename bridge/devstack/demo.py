"""The demo world ``twin-bridge dev`` seeds on a fresh local chain: a registrar, 30 models with one
twin each, three brands with escrow in the mock stablecoin (and more of it in their wallets), and
licenses (offered by the models and accepted by the brands) with different usage types, prices,
validity windows and royalty splits (an agency and a photographer). So that the API and the
dashboard have something waiting to show, one offer is left for a brand to accept, one brand sets
spending limits of its own below the network's defaults, and the admin schedules a role grant that
waits its execution delay.

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

from bridge.chain.ledger import ATTESTER_ROLE, REGISTRAR_ROLE
from bridge.domain.usage import UsageType
from bridge.errors import BridgeError
from bridge.testing.world import Accepted, Offer, offer_and_accept

DEV_MNEMONIC: Final = "test test test test test test test test test test test junk"
"""Anvil's and Hardhat's default mnemonic: a well-known dev-chain key set, public by design."""
DEV_ACCOUNTS: Final = 41
"""Accounts anvil derives from the mnemonic (``--accounts``); the demo uses all of them."""

DEPLOYER, REGISTRAR, ATTESTER, RELAYER, PAUSER = 0, 1, 2, 3, 4
BRAND_ACCOUNTS: Final = (5, 6, 7)
MODEL_ACCOUNTS: Final = tuple(range(8, 38))
AGENCY, PHOTOGRAPHER = 38, 39
STANDBY_ATTESTER: Final = 40
"""The account the admin schedules ATTESTER_ROLE for: the grant waits the admin's delay."""

USD: Final = 10**6
"""One mock USD in the stablecoin's base units (6 decimals)."""
ESCROW_PER_BRAND: Final = 250_000 * USD
WALLET_PER_BRAND: Final = 10_000 * USD
"""The payment token each brand keeps in its wallet besides its escrow, to deposit more."""
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
LIMITED_BRAND: Final = 2
"""The brand (Atelier Kei) that sets spending limits of its own, below the network's defaults."""
LIMIT_PER_USAGE: Final = 2_000 * USD
"""Above every demo price (quantity 1 always fits); 2 outdoor uses at 1,500 do not."""
LIMIT_PER_PERIOD: Final = 10_000 * USD


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


@dataclass(frozen=True)
class PendingOffer:
    """The offer left waiting for the brand's acceptance."""

    model: str
    license: DemoLicense
    twin_id: int
    version: int
    terms_hash: bytes


@dataclass(frozen=True)
class PendingGrant:
    """The role grant the admin scheduled: the manager executes it from ``ready_at`` on."""

    role_id: int
    account: str
    operation_id: bytes
    ready_at: int


@dataclass
class Demo:
    """What was seeded."""

    brands: list[tuple[str, LocalAccount]]
    models: list[DemoModel]
    registrar: LocalAccount
    agency: LocalAccount
    photographer: LocalAccount
    pending_offer: PendingOffer
    pending_grant: PendingGrant
    limits: dict[str, tuple[int, int]]
    """Brand address -> (per usage, per period) it set itself."""
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


def _terms(lic: DemoLicense, model: str, brand_name: str) -> tuple[Any, ...]:
    """The ``LicenseTerms`` tuple of a demo license."""
    return (
        lic.brand,
        lic.valid_from,
        lic.valid_until,
        lic.max_uses,
        keccak(text=f"{brand_name} campaign with {model}"),
        keccak(text=f"consent of {model} for {brand_name}"),
        sorted(lic.prices.items()),
    )


def _offers(model: DemoModel, licensed: list[int]) -> list[Offer]:
    return [
        Offer(model.twin_id, model.account.address, _terms(lic, model.name, BRAND_NAMES[b]))
        for b, lic in zip(licensed, model.licenses, strict=True)
    ]


def _pending_offer(
    w3: Web3, ledger: Contract, rng: random.Random, models: list[DemoModel], now: int
) -> PendingOffer:
    """The first model not licensed to every brand offers the first brand it lacks a license;
    the brand has not accepted it yet."""
    brand_addresses = [dev_account(i).address for i in BRAND_ACCOUNTS]
    model, b = next(
        (m, b)
        for m in models
        for b, address in enumerate(brand_addresses)
        if address not in {lic.brand for lic in m.licenses}
    )
    lic = _license(rng, brand_addresses[b], now, 3, 0)  # a year from acceptance, no cap
    [receipt] = _send(
        w3,
        [(ledger.functions.offerLicense(model.twin_id, _terms(lic, model.name, BRAND_NAMES[b])),
          model.account.address)],
    )  # fmt: skip
    [event] = ledger.events.LicenseOffered().process_receipt(receipt, errors=DISCARD)
    return PendingOffer(
        model.name, lic, model.twin_id, int(event["args"]["version"]), event["args"]["termsHash"]
    )


def _schedule_grant(w3: Web3, manager: Contract) -> PendingGrant:
    """The admin schedules ATTESTER_ROLE for the standby attester: with the admin's execution
    delay, the grant can be executed only once that delay has passed."""
    admin, standby = dev_account(DEPLOYER).address, dev_account(STANDBY_ATTESTER).address
    data = manager.encode_abi("grantRole", [ATTESTER_ROLE, standby, 0])
    [receipt] = _send(w3, [(manager.functions.schedule(manager.address, data, 0), admin)])
    [event] = manager.events.OperationScheduled().process_receipt(receipt, errors=DISCARD)
    return PendingGrant(
        ATTESTER_ROLE, standby, bytes(event["args"]["operationId"]), int(event["args"]["schedule"])
    )


def _fund(w3: Web3, ledger: Contract, token: Contract, brands: list[LocalAccount]) -> int:
    """Mints each brand its escrow and some tokens to keep, approves the ledger and deposits the
    escrow; returns the transactions."""
    funding: list[tuple[ContractFunction, str]] = []
    minted = ESCROW_PER_BRAND + WALLET_PER_BRAND
    for brand in brands:
        funding.append((token.functions.mint(brand.address, minted), brand.address))
        funding.append((token.functions.approve(ledger.address, ESCROW_PER_BRAND), brand.address))
    _send(w3, funding)
    fn = ledger.functions
    _send(w3, [(fn.deposit(brand.address, ESCROW_PER_BRAND), brand.address) for brand in brands])
    return len(funding) + len(brands)


def seed(w3: Web3, ledger: Contract, token: Contract, manager: Contract) -> Demo:
    """Mints the twins, has the models offer the licenses and the brands accept them, sets
    payees, funds the brands' escrow, and leaves an offer, a brand's own limits and a scheduled
    role grant for the API and the dashboard to show.

    The roles must already be in place: ``REGISTRAR`` holds the registrar role and ``DEPLOYER``
    the admin role (with the network's execution delay) in ``manager``.
    """
    rng = random.Random(SEED)  # noqa: S311 - a reproducible demo, nothing secret
    fn = ledger.functions
    registrar = dev_account(REGISTRAR)
    agency, photographer = dev_account(AGENCY), dev_account(PHOTOGRAPHER)
    brands = [(name, dev_account(i)) for name, i in zip(BRAND_NAMES, BRAND_ACCOUNTS, strict=True)]
    models = [dev_account(i) for i in MODEL_ACCOUNTS]
    if not manager.functions.hasRole(REGISTRAR_ROLE, registrar.address).call()[0]:
        raise DemoError(f"the demo registrar {registrar.address} lacks REGISTRAR_ROLE")
    twin_ids = _mint_twins(w3, ledger, registrar.address, models)

    now = int(w3.eth.get_block("latest")["timestamp"])
    offers: list[Offer] = []
    splits: list[tuple[ContractFunction, str]] = []
    seeded: list[DemoModel] = []
    for i, (model, twin) in enumerate(zip(models, twin_ids, strict=True)):
        licensed = [b for b in range(len(brands)) if b == i % len(brands) or rng.random() < 0.45]
        licenses = [_license(rng, brands[b][1].address, now, i, b) for b in licensed]
        payees = _payees(i, agency.address, photographer.address)
        demo_model = DemoModel(MODEL_NAMES[i], model, twin, licenses, payees)
        offers += _offers(demo_model, licensed)
        if payees:
            splits.append((fn.setPayees(twin, payees), model.address))
        seeded.append(demo_model)
    accepted: list[Accepted] = offer_and_accept(w3, ledger, offers)
    _send(w3, splits)
    pending_offer = _pending_offer(w3, ledger, rng, seeded, now)
    funding_txs = _fund(w3, ledger, token, [brand for _, brand in brands])
    limited = brands[LIMITED_BRAND][1].address
    _send(w3, [(fn.setSpendingLimits(LIMIT_PER_USAGE, LIMIT_PER_PERIOD), limited)])
    pending_grant = _schedule_grant(w3, manager)
    return Demo(
        brands=brands,
        models=seeded,
        registrar=registrar,
        agency=agency,
        photographer=photographer,
        pending_offer=pending_offer,
        pending_grant=pending_grant,
        limits={limited: (LIMIT_PER_USAGE, LIMIT_PER_PERIOD)},
        tx_count=len(models) + 2 * len(accepted) + len(splits) + 1 + funding_txs + 2,
    )
