"""The test world: a ledger (with its access manager) on anvil with 20 twins licensed to 3 brands
on realistic terms (offered by the models and accepted by the brands), payees and brand escrow,
and signed usage batches settled on it.

The integration tests, the fault suite, the benchmarks (``scripts.bench_gas``, ``bench_settle``,
``bench_ingest``, ``bench_audit``) and the soak all run on this world. It is reproducible: the
same seed gives the same licenses, prices and usages. Transactions are sent from anvil's unlocked
dev accounts; the attester's key is a throwaway made up here.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.logs import DISCARD
from web3.types import TxReceipt

from bridge.chain.deploy import deploy_ledger
from bridge.chain.ledger import LedgerConfig
from bridge.domain.codec import Outcome, Usage, decode_result
from bridge.testing.anvil import Anvil, AnvilError, latest_timestamp, rpc, started_anvil

TWINS: Final = 20
BRANDS: Final = 3
PAYEE_ACCOUNTS: Final = 4
SEED: Final = 20_270_412
FIRST_MODEL_ACCOUNT: Final = 3 + BRANDS
"""anvil's unlocked accounts: admin, registrar, relayer, the brands, then the models (the owners of
twins 1, 2, ... in order), then the payees."""

USD: Final = 10**6
"""One mock USD in token base units (6 decimals)."""
ESCROW_PER_BRAND: Final = 100_000_000 * USD
NOTICE_PERIOD: Final = 36 * 24 * 3600
"""The ledger's shortest notice period (MIN_NOTICE_PERIOD)."""
WORLD_CONFIG: Final = LedgerConfig(
    notice_period=NOTICE_PERIOD,
    spending_period=24 * 3600,
    raise_delay=0,
    default_per_usage=100_000 * USD,
    default_per_period=ESCROW_PER_BRAND,
)
"""The world's ledger settings: limits no run reaches (a brand may spend its whole escrow in a
day), so that every usage of the workload pays; tests of the limits deploy their own."""
LICENSE_DAYS: Final = 365
SETUP_ADVANCE: Final = 3600
"""Seconds between the license grants and the first settlement."""
USED_WITHIN: Final = 1800
"""Usages happened up to this many seconds before they are signed."""
USE_CAPS: Final = (100_000, 250_000, 1_000_000)
"""Caps of the capped licenses: far above anything a run uses."""

USAGE_TYPES: Final = {
    0: ("social post", 0.50, 5.00),
    1: ("display ad", 2.00, 25.00),
    2: ("video ad", 20.00, 120.00),
    3: ("broadcast or print", 50.00, 250.00),
}
"""Usage type -> (what it stands for, lowest and highest price per use in USD)."""

# A throwaway key made up for the test world: it only signs usage batches on a local anvil, and
# holds nothing anywhere.
ATTESTER_KEY: Final = keccak(text="twin-bridge gas benchmark attester")

BrandUsage = tuple[int, Usage]
"""(brand index, usage)."""
Call = tuple[ContractFunction, str]
"""A contract call and the unlocked account that sends it."""


class WorldError(AnvilError):
    """The world could not be set up, or a settlement on it did not pay every usage."""


@dataclass(frozen=True)
class LicensePlan:
    prices: dict[int, int]
    max_uses: int


@dataclass(frozen=True)
class Offer:
    """A license the twin's owner offers: ``terms`` as the ``LicenseTerms`` tuple (brand first)."""

    twin_id: int
    owner: str
    terms: tuple[Any, ...]

    @property
    def brand(self) -> str:
        return str(self.terms[0])


@dataclass(frozen=True)
class Accepted:
    """An offer the brand accepted: its version number and terms hash (from ``LicenseOffered``)."""

    twin_id: int
    brand: ChecksumAddress
    version: int
    terms_hash: bytes


@dataclass
class World:
    w3: Web3
    ledger: Contract
    token: Contract
    manager: Contract
    attester: LocalAccount
    relayer: ChecksumAddress
    brands: list[ChecksumAddress]
    twin_ids: list[int]
    licenses: dict[tuple[int, int], LicensePlan]
    """(twin id, brand index) -> terms."""
    payee_twins: int = 0
    rng: random.Random = field(default_factory=lambda: _rng())
    next_usage_id: int = 1


@dataclass(frozen=True)
class _Parties:
    """anvil's unlocked accounts, by role."""

    admin: ChecksumAddress
    registrar: ChecksumAddress
    relayer: ChecksumAddress
    brands: list[ChecksumAddress]
    models: list[ChecksumAddress]
    payees: list[ChecksumAddress]

    @classmethod
    def of(cls, w3: Web3) -> _Parties:
        accounts = [Web3.to_checksum_address(a) for a in w3.eth.accounts]
        needed = 3 + BRANDS + TWINS + PAYEE_ACCOUNTS
        if len(accounts) < needed:
            raise WorldError(
                f"anvil has {len(accounts)} unlocked accounts, the world needs {needed}"
            )
        models_from = FIRST_MODEL_ACCOUNT
        return cls(
            admin=accounts[0],
            registrar=accounts[1],
            relayer=accounts[2],
            brands=accounts[3:models_from],
            models=accounts[models_from : models_from + TWINS],
            payees=accounts[models_from + TWINS : needed],
        )


def _rng() -> random.Random:
    """The world's reproducible workload generator (not used for anything secret)."""
    return random.Random(SEED)  # noqa: S311


def _price(rng: random.Random, usage_type: int) -> int:
    _, low, high = USAGE_TYPES[usage_type]
    return round(rng.uniform(low, high) * 100) * (USD // 100)


def send(w3: Web3, calls: Sequence[Call]) -> list[TxReceipt]:
    """Sends independent transactions from unlocked accounts, then waits for all of them.

    Raises:
        WorldError: one of them reverted.
    """
    hashes: list[HexBytes] = [call.transact({"from": sender}) for call, sender in calls]
    receipts = [
        w3.eth.wait_for_transaction_receipt(h, timeout=60, poll_latency=0.01) for h in hashes
    ]
    for receipt in receipts:
        if receipt["status"] != 1:
            raise WorldError(f"transaction {receipt['transactionHash'].hex()} reverted")
    return receipts


def advance(w3: Web3, seconds: int) -> None:
    """Moves the chain's clock ``seconds`` on and mines a block."""
    rpc(w3, "evm_increaseTime", seconds)
    rpc(w3, "evm_mine")


def offer_and_accept(w3: Web3, ledger: Contract, offers: Sequence[Offer]) -> list[Accepted]:
    """Each owner offers its license (``offerLicense``), then each brand accepts the version and
    terms hash its ``LicenseOffered`` event names (``acceptLicense``): the licenses pay at once.
    The brands must be unlocked accounts of the node, like the owners.

    Raises:
        WorldError: a transaction reverted, or an offer emitted no ``LicenseOffered``.
    """
    receipts = send(
        w3, [(ledger.functions.offerLicense(o.twin_id, o.terms), o.owner) for o in offers]
    )
    accepted = [_offered(ledger, receipt) for receipt in receipts]
    send(
        w3,
        [
            (ledger.functions.acceptLicense(a.twin_id, a.version, a.terms_hash), a.brand)
            for a in accepted
        ],
    )
    return accepted


def _offered(ledger: Contract, receipt: TxReceipt) -> Accepted:
    events = ledger.events.LicenseOffered().process_receipt(receipt, errors=DISCARD)
    if len(events) != 1:
        raise WorldError(f"offer {receipt['transactionHash'].hex()}: {len(events)} LicenseOffered")
    args = events[0]["args"]
    return Accepted(
        twin_id=int(args["twinId"]),
        brand=Web3.to_checksum_address(args["brand"]),
        version=int(args["version"]),
        terms_hash=bytes(args["termsHash"]),
    )


# ====================================================================== setup


def setup(w3: Web3) -> World:
    """Deploys the access manager and the ledger (the admin deploys; the registrar and the
    attester hold their roles at once, no delays) and gives the ledger twins, accepted licenses,
    payees and brand escrow."""
    rng = _rng()
    parties = _Parties.of(w3)
    attester: LocalAccount = Account.from_key(ATTESTER_KEY)
    deployment = deploy_ledger(
        w3,
        sender=parties.admin,
        config=WORLD_CONFIG,
        roles={"REGISTRAR_ROLE": [parties.registrar], "ATTESTER_ROLE": [attester.address]},
    )
    ledger, token = deployment.ledger, deployment.token
    owner_of = _mint_twins(w3, ledger, parties)
    licenses = _plan_licenses(rng, list(owner_of))
    payee_twins = _license_and_split(w3, ledger, parties, owner_of, licenses, rng)
    _fund_brands(w3, ledger, token, parties.brands)
    advance(w3, SETUP_ADVANCE)
    return World(
        w3=w3,
        ledger=ledger,
        token=token,
        manager=deployment.manager,
        attester=attester,
        relayer=parties.relayer,
        brands=parties.brands,
        twin_ids=list(owner_of),
        licenses=licenses,
        payee_twins=payee_twins,
        rng=rng,
    )


def _mint_twins(w3: Web3, ledger: Contract, parties: _Parties) -> dict[int, ChecksumAddress]:
    """One twin per model, minted by the registrar: twin id -> its model."""
    receipts = send(
        w3,
        [
            (
                ledger.functions.mint(
                    model, f"ipfs://twin-bridge-bench/twin/{i}", keccak(text=f"consent {i}")
                ),
                parties.registrar,
            )
            for i, model in enumerate(parties.models)
        ],
    )
    twin_ids = [
        int(event["args"]["twinId"])
        for receipt in receipts
        for event in ledger.events.TwinMinted().process_receipt(receipt, errors=DISCARD)
    ]
    if len(twin_ids) != TWINS:
        raise WorldError(f"minted {len(twin_ids)} twins, expected {TWINS}")
    return dict(zip(twin_ids, parties.models, strict=True))


def _plan_licenses(rng: random.Random, twin_ids: list[int]) -> dict[tuple[int, int], LicensePlan]:
    """Every twin licensed to every brand, one in three capped, with 1-3 priced usage types."""
    pairs = [(twin, b) for twin in twin_ids for b in range(BRANDS)]
    capped = set(rng.sample(pairs, round(len(pairs) / 3)))
    licenses: dict[tuple[int, int], LicensePlan] = {}
    for pair in pairs:
        types = sorted(rng.sample(sorted(USAGE_TYPES), rng.randint(1, 3)))
        licenses[pair] = LicensePlan(
            prices={t: _price(rng, t) for t in types},
            max_uses=rng.choice(USE_CAPS) if pair in capped else 0,
        )
    return licenses


def _license_and_split(
    w3: Web3,
    ledger: Contract,
    parties: _Parties,
    owner_of: dict[int, ChecksumAddress],
    licenses: dict[tuple[int, int], LicensePlan],
    rng: random.Random,
) -> int:
    """The models offer the planned licenses and the brands accept them; some models split
    royalties with an agency and/or a manager: how many twins have payees."""
    valid_until = latest_timestamp(w3) + LICENSE_DAYS * 24 * 3600
    offers = [
        Offer(
            twin_id=twin,
            owner=owner_of[twin],
            terms=(
                parties.brands[b],
                0,  # valid from the acceptance
                valid_until,
                plan.max_uses,
                keccak(text=f"campaign of brand {b} with twin {twin}"),
                keccak(text=f"consent document for twin {twin}, brand {b}"),
                sorted(plan.prices.items()),
            ),
        )
        for (twin, b), plan in licenses.items()
    ]
    payee_twins = [twin for twin in owner_of if rng.random() < 0.4]
    splits: list[Call] = []
    for twin in payee_twins:
        chosen = rng.sample(parties.payees, rng.randint(1, 2))
        shares = [(account, bps) for account, bps in zip(chosen, (2_000, 1_000), strict=False)]
        splits.append((ledger.functions.setPayees(twin, shares), owner_of[twin]))
    offer_and_accept(w3, ledger, offers)
    send(w3, splits)
    return len(payee_twins)


def _fund_brands(
    w3: Web3, ledger: Contract, token: Contract, brands: Sequence[ChecksumAddress]
) -> None:
    """Each brand mints itself mock USD and deposits it as escrow."""
    mint, approve = token.functions.mint, token.functions.approve
    send(
        w3,
        [(mint(brand, ESCROW_PER_BRAND), brand) for brand in brands]
        + [(approve(ledger.address, ESCROW_PER_BRAND), brand) for brand in brands],
    )
    send(w3, [(ledger.functions.deposit(brand, ESCROW_PER_BRAND), brand) for brand in brands])


# ====================================================================== usages and batches


def _usage(world: World, twin: int, brand: int, now: int) -> BrandUsage:
    plan = world.licenses[twin, brand]
    usage = Usage(
        usage_id=world.next_usage_id,
        twin_id=twin,
        used_at=now - world.rng.randint(1, USED_WITHIN),
        quantity=world.rng.randint(1, 3),
        usage_type=world.rng.choice(sorted(plan.prices)),
    )
    world.next_usage_id += 1
    return brand, usage


def random_usages(world: World, count: int) -> list[BrandUsage]:
    """``count`` usages spread uniformly over the twins and brands, with sequential ids."""
    now = latest_timestamp(world.w3)
    return [
        _usage(world, world.rng.choice(world.twin_ids), world.rng.randrange(BRANDS), now)
        for _ in range(count)
    ]


def warm_up_usages(world: World) -> list[BrandUsage]:
    """One usage of every (twin, brand) license, so no twin is still at its first-ever accrual."""
    now = latest_timestamp(world.w3)
    return [_usage(world, twin, b, now) for b in range(BRANDS) for twin in world.twin_ids]


def group(world: World, usages: Sequence[BrandUsage]) -> list[tuple[str, list[int]]]:
    """One group per brand, sorted by twin id (then usage id), as the bridge worker batches."""
    groups: list[tuple[str, list[int]]] = []
    for b, brand in enumerate(world.brands):
        mine = sorted((u for ub, u in usages if ub == b), key=lambda u: (u.twin_id, u.usage_id))
        if mine:
            groups.append((brand, [u.encode() for u in mine]))
    return groups


def sign_batch(world: World, batch: tuple[int, list[tuple[str, list[int]]]]) -> bytes:
    """The world's attester's signature of ``batch``: of the EIP-712 digest the ledger computes
    (``hashUsageBatch``), so the world does not depend on the bridge's own encoding."""
    digest = world.ledger.functions.hashUsageBatch(batch).call()
    return bytes(world.attester.unsafe_sign_hash(digest).signature)


def settle(world: World, usages: Sequence[BrandUsage]) -> int:
    """Signs and settles one batch; its receipt's gasUsed, after checking that every usage paid.

    Raises:
        WorldError: the transaction reverted, or a usage was not paid.
    """
    batch = (latest_timestamp(world.w3) + 3600, group(world, usages))
    call = world.ledger.functions.settle(batch, world.attester.address, sign_batch(world, batch))
    [receipt] = send(world.w3, [(call, world.relayer)])
    results = [
        decode_result(word)
        for event in world.ledger.events.UsagesSettled().process_receipt(receipt, errors=DISCARD)
        for word in event["args"]["results"]
    ]
    unpaid = [(u.usage_id, outcome.name) for u, outcome in results if outcome != Outcome.PAID]
    if len(results) != len(usages) or unpaid:
        raise WorldError(f"batch of {len(usages)}: {len(results)} results, not paid: {unpaid[:5]}")
    return int(receipt["gasUsed"])


# ====================================================================== the world on its anvil


@dataclass
class AnvilChain:
    """An anvil with the world set up on it."""

    anvil: Anvil
    world: World

    @property
    def w3(self) -> Web3:
        return self.anvil.w3

    @property
    def url(self) -> str:
        return self.anvil.url

    def rpc(self, method: str, *params: Any) -> Any:
        """A JSON-RPC call's result (anvil's own methods included); ``AnvilError`` on an error."""
        return rpc(self.w3, method, *params)

    def fund(self, address: str, wei: int = 10**20) -> None:
        self.rpc("anvil_setBalance", address, hex(wei))

    def now(self) -> int:
        return latest_timestamp(self.w3)

    @contextmanager
    def snapshot(self) -> Iterator[AnvilChain]:
        """The chain as it is now, restored when the block exits."""
        snap = self.rpc("evm_snapshot")
        try:
            yield self
        finally:
            self.rpc("evm_revert", snap)


def start_world(anvil: Anvil) -> AnvilChain:
    """Starts ``anvil`` and sets the world up on it."""
    anvil.start()
    return AnvilChain(anvil, setup(anvil.w3))


@contextmanager
def anvil_chain() -> Iterator[AnvilChain]:
    """A fresh anvil with the world set up, stopped when the block exits."""
    with started_anvil() as anvil:
        yield AnvilChain(anvil, setup(anvil.w3))
