"""The public read API (``/v1/twins``, ``/v1/usages``, earnings, brand accounts, index status)
over an index built from a real anvil world, on SQLite and PostgreSQL.

The world is made once per module with every block's timestamp set, so the figures are known in
advance: two twins, two brands, licenses offered and accepted (one versioned, another revoked, an
offer declined, one waiting), a pause, payees, deposits,
paid and rejected usages, an escrow shortfall that becomes debt and is repaid, a payout by a third
party, a transfer, a withdrawal and a payout over two twins, from January to March 2030. Each
test indexes it into a fresh store and checks the JSON the API answers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from fastapi.testclient import TestClient
from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD
from web3.types import TxReceipt

from bridge.api import create_app
from bridge.api.routes import ledger as ledger_routes
from bridge.chain.client import Web3ChainClient
from bridge.chain.deploy import deploy_ledger
from bridge.chain.ledger import LedgerConfig
from bridge.domain.codec import Usage
from bridge.domain.times import rfc3339
from bridge.indexer.follow import Indexer
from bridge.settings import Settings
from bridge.store.repository import Store
from bridge.testing import local_anvil

from .fakes import FakeLicenseView
from .test_indexer import _rpc, index_store  # noqa: F401 - a fixture

pytestmark = pytest.mark.integration

USD = 10**6
DAY = 86_400
T0 = int(datetime(2030, 1, 10, tzinfo=UTC).timestamp())
"""The world's first block time; everything after is T0 + offset."""
NOW = datetime(2030, 2, 24, tzinfo=UTC)
"""The request time the API is given (license states are judged at it)."""
ATTESTER: LocalAccount = Account.from_key(keccak(text="twin-bridge read api test attester"))
NOTICE = 36 * DAY
"""The ledger's shortest notice period (MIN_NOTICE_PERIOD)."""
CONFIG = LedgerConfig(
    notice_period=NOTICE,
    spending_period=DAY,
    raise_delay=0,
    default_per_usage=10**6 * USD,
    default_per_period=10**9 * USD,
)
"""Limits no usage here reaches."""


def iso(at: int) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- the world


@dataclass
class World:
    w3: Web3
    url: str
    ledger: Contract
    token: Contract
    accounts: dict[str, str]
    receipts: dict[str, TxReceipt] = field(default_factory=dict)
    times: dict[str, int] = field(default_factory=dict)

    @property
    def fn(self) -> Any:
        return self.ledger.functions

    def send(self, name: str, call: Any, sender: str, at: int) -> TxReceipt:
        """Sends ``call`` from ``sender`` in a block of its own at time T0 + ``at``."""
        _rpc(self.w3, "evm_setNextBlockTimestamp", T0 + at)
        receipt = self.w3.eth.wait_for_transaction_receipt(
            call.transact({"from": self.accounts[sender], "gas": 5_000_000}),
            timeout=30,
            poll_latency=0.01,
        )
        assert receipt["status"] == 1, name
        self.receipts[name] = receipt
        self.times[name] = T0 + at
        return receipt

    def settle(self, name: str, at: int, groups: list[tuple[str, list[Usage]]]) -> TxReceipt:
        words = [(self.accounts[brand], [u.encode() for u in us]) for brand, us in groups]
        batch = (T0 + at + 3600, words)
        digest = self.fn.hashUsageBatch(batch).call()
        signature = bytes(ATTESTER.unsafe_sign_hash(digest).signature)
        return self.send(name, self.fn.settle(batch, ATTESTER.address, signature), "relayer", at)

    def grant(self, name: str, twin: int, owner: str, brand: str, at: int, terms: Any) -> None:
        """The owner offers ``terms`` at ``at - 1`` (step ``offer ...``), the brand accepts them
        at ``at`` (step ``name``)."""
        offered = self.offer(name.replace("grant", "offer"), twin, owner, at - 1, terms)
        version, terms_hash = offered["version"], offered["termsHash"]
        self.send(name, self.fn.acceptLicense(twin, version, terms_hash), brand, at)

    def offer(self, name: str, twin: int, owner: str, at: int, terms: Any) -> Any:
        """The owner offers ``terms`` at ``at``: the ``LicenseOffered`` arguments."""
        receipt = self.send(name, self.fn.offerLicense(twin, terms), owner, at)
        [offered] = self.ledger.events.LicenseOffered().process_receipt(receipt, errors=DISCARD)
        return offered["args"]

    def source(self, name: str, event: str, nth: int = 0) -> dict[str, Any]:
        """The API's source object of the ``nth`` ``event`` log of step ``name``."""
        receipt = self.receipts[name]
        logs = getattr(self.ledger.events, event)().process_receipt(receipt, errors=DISCARD)
        entry = logs[nth]
        return {
            "tx_hash": receipt["transactionHash"].to_0x_hex(),
            "block_number": receipt["blockNumber"],
            "log_index": entry["logIndex"],
            "block_time": iso(self.times[name]),
        }

    def tx(self, name: str) -> str:
        return str(self.receipts[name]["transactionHash"].to_0x_hex())

    def block(self, name: str) -> int:
        return int(self.receipts[name]["blockNumber"])


def _terms(world: World, brand: str, until: int, max_uses: int, prices: dict[int, int]) -> Any:
    return (
        world.accounts[brand],
        0,  # from the grant
        T0 + until,
        max_uses,
        keccak(text=f"purpose {brand}"),
        keccak(text=f"consent {brand}"),
        list(prices.items()),
    )


def build(w3: Web3) -> World:
    names = ["admin", "registrar", "relayer", "brandA", "brandB", "model1", "model2", "agency",
             "manager", "heir"]  # fmt: skip
    accounts: dict[str, str] = dict(
        zip(names, (Web3.to_checksum_address(a) for a in w3.eth.accounts), strict=False)
    )
    deployment = deploy_ledger(
        w3,
        sender=accounts["admin"],
        config=CONFIG,
        roles={"REGISTRAR_ROLE": [accounts["registrar"]], "ATTESTER_ROLE": [ATTESTER.address]},
    )
    url = w3.provider.endpoint_uri  # type: ignore[attr-defined]
    world = World(w3, url, deployment.ledger, deployment.token, accounts)
    fn = world.fn
    world.send(
        "mint 1",
        fn.mint(accounts["model1"], "ipfs://twin/1", keccak(text="consent 1")),
        "registrar",
        100,
    )
    world.send(
        "mint 2",
        fn.mint(accounts["model2"], "ipfs://twin/2", keccak(text="consent 2")),
        "registrar",
        200,
    )
    world.grant(
        "grant 1A v0",
        1,
        "model1",
        "brandA",
        300,
        _terms(world, "brandA", 60 * DAY, 0, {0: 1_500_000, 1: 20 * USD}),
    )
    world.grant(
        "grant 1B v0",
        1,
        "model1",
        "brandB",
        400,
        _terms(world, "brandB", 30 * DAY, 3, {2: 5 * USD}),
    )
    world.grant("grant 2A v0", 2, "model2", "brandA", 500,
                _terms(world, "brandA", 365 * DAY, 0, {0: 2 * USD}))  # fmt: skip
    world.send(
        "payees 1",
        fn.setPayees(1, [(accounts["agency"], 2_000), (accounts["manager"], 1_000)]),
        "model1",
        600,
    )
    token = world.token.functions
    for brand, amount, at in (("brandA", 1_000 * USD, 700), ("brandB", 6 * USD, 800)):
        world.send(f"mint {brand}", token.mint(accounts[brand], amount), brand, at)
        world.send(
            f"approve {brand}", token.approve(world.ledger.address, 2**256 - 1), brand, at + 10
        )
        world.send(f"deposit {brand}", fn.deposit(accounts[brand], amount), brand, at + 20)
    # Jan 11: A pays 3 + 2 USD, one usage type is not licensed; B owes 10 USD with 6 in escrow.
    world.settle("settle 1", DAY, [
        ("brandA", [Usage(1, 1, T0 + DAY - 500, 2, 0), Usage(2, 1, T0 + DAY - 400, 1, 3),
                    Usage(3, 2, T0 + DAY - 300, 1, 0)]),
        ("brandB", [Usage(4, 1, T0 + DAY - 200, 2, 2)]),
    ])  # fmt: skip
    # Jan 12: version 1 of twin 1's license for A: 2.50 USD for images only, capped at 10.
    world.grant("grant 1A v1", 1, "model1", "brandA", 2 * DAY,
                _terms(world, "brandA", 60 * DAY, 10, {0: 2_500_000}))  # fmt: skip
    # Jan 13: a use before version 1 is priced by version 0; the cap of B's license is reached.
    world.settle("settle 2", 3 * DAY, [
        ("brandA", [Usage(5, 1, T0 + DAY + DAY // 2, 1, 0),
                    Usage(6, 1, T0 + 2 * DAY + DAY // 2, 4, 0),
                    Usage(7, 1, T0 + 2 * DAY + DAY // 2, 1, 1)]),
        ("brandB", [Usage(8, 1, T0 + 2 * DAY + 100, 2, 2)]),
    ])  # fmt: skip
    world.send("pause 2", fn.setTwinPaused(2, True), "model2", 4 * DAY)
    world.settle("settle 3", 4 * DAY + 100, [("brandA", [Usage(9, 2, T0 + 4 * DAY + 50, 1, 0)])])
    world.send("unpause 2", fn.setTwinPaused(2, False), "model2", 5 * DAY)
    world.send("revoke 1B", fn.revokeLicense(1, accounts["brandB"], 0), "model1", 6 * DAY)
    world.settle("settle 4", 7 * DAY, [("brandB", [Usage(10, 1, T0 + 6 * DAY + 10, 1, 2)])])
    # Feb 19: anyone pays the agency (twin 1 is distributed first); Feb 20: B repays its debt;
    # Feb 21: twin 1 moves to a new wallet (distributed again first); Mar 1: model 1 withdraws.
    world.send("payout agency", fn.payout(accounts["agency"], [1]), "relayer", 40 * DAY)
    world.send("mint more B", token.mint(accounts["brandB"], 5 * USD), "brandB", 41 * DAY - 10)
    world.send("deposit B again", fn.deposit(accounts["brandB"], 5 * USD), "brandB", 41 * DAY)
    world.send(
        "transfer 1", fn.transferFrom(accounts["model1"], accounts["heir"], 1), "model1", 42 * DAY
    )
    world.send("withdrawal A", fn.requestEscrowWithdrawal(100 * USD), "brandA", 43 * DAY)
    # Feb 22: twin 2 splits with the agency (its 2 USD go to model 2 first); Feb 23: 2 USD more.
    world.send("payees 2", fn.setPayees(2, [(accounts["agency"], 5_000)]), "model2", 43 * DAY + 100)
    world.settle("settle 5", 44 * DAY, [("brandA", [Usage(11, 2, T0 + 44 * DAY - 100, 1, 0)])])
    # Feb 24: model 2 offers brand B a license that waits; brand A declines version 2 of twin 1
    # (offered by its new owner).
    world.offer(
        "offer 2B v0",
        2,
        "model2",
        45 * DAY,
        _terms(world, "brandB", 400 * DAY, 5, {1: 30 * USD, 2: 4 * USD}),
    )
    world.offer(
        "offer 1A v2", 1, "heir", 46 * DAY, _terms(world, "brandA", 90 * DAY, 0, {0: 9 * USD})
    )
    world.send("decline 1A v2", fn.declineLicense(1, 2), "brandA", 46 * DAY + 10)
    world.send("withdraw model1", fn.withdraw([1]), "model1", 50 * DAY)
    # Mar 2: the agency is paid what it has from both twins (twin 2 is distributed first).
    world.send("payout agency 2", fn.payout(accounts["agency"], [1, 2]), "relayer", 51 * DAY)
    return world


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with local_anvil() as w3:
        yield build(w3)


@pytest.fixture
def empty_api(make_api: Callable[..., Any]) -> Any:
    """The API over an empty SQLite store: parameters are checked before any query."""
    return make_api()


@pytest.fixture
def api(world: World, index_store: Store, tmp_path: Path) -> Iterator[TestClient]:  # noqa: F811
    """The API over ``index_store`` indexed up to the world's last block, its clock at NOW."""
    indexer = Indexer(
        index_store,
        Web3ChainClient([world.url], backoff=0),
        ledger_address=world.ledger.address,
    )
    indexer.catch_up()
    assert indexer.cursor() == world.w3.eth.block_number
    app = create_app(
        Settings(data_dir=tmp_path / "data", rate_limit_per_s=1000, rate_limit_burst=1000),
        store=index_store,
        chain=FakeLicenseView(),
    )
    app.dependency_overrides[ledger_routes.now] = lambda: NOW
    with TestClient(app) as client:
        yield client


def get(client: TestClient, url: str, status: int = 200) -> Any:
    response = client.get(url)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == (
        "application/json" if status == 200 else "application/problem+json"
    )
    return response.json()


def h(text: str) -> str:
    return "0x" + keccak(text=text).hex()


def offer_terms_hash(world: World, step: str) -> str:
    """The terms hash of the offer of ``step``."""
    [offered] = world.ledger.events.LicenseOffered().process_receipt(
        world.receipts[step], errors=DISCARD
    )
    return "0x" + offered["args"]["termsHash"].hex()


def version(
    world: World,
    grant: str,
    *,
    number: int,
    state: str,
    brand: str,
    until: int,
    effective: tuple[int, int] | None = None,
    revoked: bool = False,
    max_uses: int | None,
    uses: int,
    prices: list[tuple[str | None, int, int]],
) -> dict[str, Any]:
    start = world.times[grant]
    return {
        "version": number,
        "state": state,
        "valid_from": rfc3339(start),
        "valid_until": rfc3339(T0 + until),
        "effective_from": rfc3339((effective or (start, T0 + until))[0]),
        "effective_until": rfc3339((effective or (start, T0 + until))[1]),
        "revoked": revoked,
        "max_uses": max_uses,
        "uses": uses,
        "purpose_hash": h(f"purpose {brand}"),
        "consent_hash": h(f"consent {brand}"),
        "prices": [
            {"usage_type": name, "usage_type_code": code, "price": str(price)}
            for name, code, price in prices
        ],
        "terms_hash": offer_terms_hash(world, grant.replace("grant", "offer")),
        "offered_from": rfc3339(0),
        "source": world.source(grant, "LicenseAccepted"),
    }


def twin1(world: World) -> dict[str, Any]:
    a = world.accounts
    v0_a = version(world, "grant 1A v0", number=0, state="superseded", brand="brandA",
                   until=60 * DAY, effective=(world.times["grant 1A v0"], T0 + 2 * DAY),
                   max_uses=None, uses=3,
                   prices=[("campaign_image", 0, 1_500_000), ("video", 1, 20 * USD)])  # fmt: skip
    v1_a = version(world, "grant 1A v1", number=1, state="active", brand="brandA", until=60 * DAY,
                   max_uses=10, uses=4, prices=[("campaign_image", 0, 2_500_000)])  # fmt: skip
    v0_b = version(world, "grant 1B v0", number=0, state="revoked", brand="brandB",
                   until=30 * DAY, effective=(world.times["grant 1B v0"], T0 + 6 * DAY),
                   revoked=True, max_uses=3, uses=2,
                   prices=[("social_post", 2, 5 * USD)])  # fmt: skip
    license_a = {
        "brand": a["brandA"],
        "state": "active",
        "current_version": 1,
        "current": v1_a,
        "versions": [v0_a, v1_a],
        "revocations": [],
    }
    license_b = {
        "brand": a["brandB"],
        "state": "revoked",
        "current_version": 0,
        "current": v0_b,
        "versions": [v0_b],
        "revocations": [
            {"version": 0, "revoked_at": rfc3339(T0 + 6 * DAY),
             "source": world.source("revoke 1B", "LicenseRevoked")}
        ],
    }  # fmt: skip
    return {
        "twin_id": 1,
        "owner": {"address": a["heir"], "source": world.source("transfer 1", "Transfer")},
        "metadata_uri": "ipfs://twin/1",
        "consent_hash": h("consent 1"),
        "minted": world.source("mint 1", "TwinMinted"),
        "pause": {"paused": False, "paused_since": None, "source": None, "history": []},
        "payees": {
            "payees": [
                {"account": a["agency"], "bps": 2_000},
                {"account": a["manager"], "bps": 1_000},
            ],
            "owner_bps": 7_000,
            "source": world.source("payees 1", "PayeesSet"),
        },
        # By brand address: brand B's (0x15d3...) sorts before brand A's (0x90F7...).
        "licenses": sorted([license_a, license_b], key=lambda lic: str(lic["brand"])),
        "offers": [],  # version 2 for brand A was declined
    }


def twin2(world: World) -> dict[str, Any]:
    a = world.accounts
    v0 = version(world, "grant 2A v0", number=0, state="active", brand="brandA", until=365 * DAY,
                 max_uses=None, uses=2, prices=[("campaign_image", 0, 2 * USD)])  # fmt: skip
    return {
        "twin_id": 2,
        "owner": {"address": a["model2"], "source": world.source("mint 2", "Transfer")},
        "metadata_uri": "ipfs://twin/2",
        "consent_hash": h("consent 2"),
        "minted": world.source("mint 2", "TwinMinted"),
        "pause": {
            "paused": False,
            "paused_since": None,
            "source": world.source("unpause 2", "TwinUnpaused"),
            "history": [
                {
                    "paused_at": rfc3339(T0 + 4 * DAY),
                    "paused_source": world.source("pause 2", "TwinPaused"),
                    "unpaused_at": rfc3339(T0 + 5 * DAY),
                    "unpaused_source": world.source("unpause 2", "TwinUnpaused"),
                }
            ],
        },
        "payees": {
            "payees": [{"account": a["agency"], "bps": 5_000}],
            "owner_bps": 5_000,
            "source": world.source("payees 2", "PayeesSet"),
        },
        "licenses": [
            {
                "brand": a["brandA"],
                "state": "active",
                "current_version": 0,
                "current": v0,
                "versions": [v0],
                "revocations": [],
            }
        ],
        "offers": [
            {
                "brand": a["brandB"],
                "version": 0,
                "valid_from": rfc3339(0),
                "valid_until": rfc3339(T0 + 400 * DAY),
                "max_uses": 5,
                "purpose_hash": h("purpose brandB"),
                "consent_hash": h("consent brandB"),
                "prices": [
                    {"usage_type": "video", "usage_type_code": 1, "price": str(30 * USD)},
                    {"usage_type": "social_post", "usage_type_code": 2, "price": str(4 * USD)},
                ],
                "terms_hash": offer_terms_hash(world, "offer 2B v0"),
                "source": world.source("offer 2B v0", "LicenseOffered"),
            }
        ],
    }


# ---------------------------------------------------------------- twins


def test_twins_answer_owner_pauses_payees_and_every_license_version(
    world: World, api: TestClient
) -> None:
    assert get(api, "/v1/twins/1") == twin1(world)
    assert get(api, "/v1/twins/2") == twin2(world)
    assert get(api, "/v1/twins") == {"items": [twin1(world), twin2(world)], "next": None}


def test_twins_page_by_id_and_filter_by_owner(world: World, api: TestClient) -> None:
    first = get(api, "/v1/twins?limit=1")
    assert first == {"items": [twin1(world)], "next": "/v1/twins?limit=1&after=1"}
    assert get(api, first["next"]) == {"items": [twin2(world)], "next": None}
    owner = world.accounts["model2"]
    assert get(api, f"/v1/twins?owner={owner.lower()}") == {"items": [twin2(world)], "next": None}
    # Model 1 gave twin 1 away: it owns none now.
    assert get(api, f"/v1/twins?owner={world.accounts['model1']}") == {"items": [], "next": None}


def test_license_states_follow_the_request_time(world: World, api: TestClient) -> None:
    # Before version 1 started, version 0 of brand A's license was the one in force.
    api.app.dependency_overrides[ledger_routes.now] = lambda: datetime(  # type: ignore[attr-defined]
        2030, 1, 11, tzinfo=UTC
    )
    twin = get(api, "/v1/twins/1")
    by_brand = {lic["brand"]: lic for lic in twin["licenses"]}
    license_a = by_brand[world.accounts["brandA"]]
    assert (license_a["state"], license_a["current_version"]) == ("active", 0)
    assert [v["state"] for v in license_a["versions"]] == ["active", "not_started"]
    # After the end of every window: expired (brand A), still revoked (brand B).
    api.app.dependency_overrides[ledger_routes.now] = lambda: datetime(  # type: ignore[attr-defined]
        2031, 1, 1, tzinfo=UTC
    )
    twin = get(api, "/v1/twins/1")
    assert [(lic["state"], [v["state"] for v in lic["versions"]]) for lic in twin["licenses"]] == [
        ("revoked", ["revoked"]),
        ("expired", ["superseded", "expired"]),
    ]


# ---------------------------------------------------------------- usages

USAGES = [
    # id, twin, brand, type, quantity, used at (T0 +), outcome, amount, version, settlement,
    # group in it, position in the group
    (1, 1, "brandA", 0, 2, DAY - 500, 0, 3 * USD, 0, "settle 1", 0, 0),
    (2, 1, "brandA", 3, 1, DAY - 400, 6, None, None, "settle 1", 0, 1),
    (3, 2, "brandA", 0, 1, DAY - 300, 0, 2 * USD, 0, "settle 1", 0, 2),
    (4, 1, "brandB", 2, 2, DAY - 200, 0, 10 * USD, 0, "settle 1", 1, 0),
    (5, 1, "brandA", 0, 1, DAY + DAY // 2, 0, 1_500_000, 0, "settle 2", 0, 0),
    (6, 1, "brandA", 0, 4, 2 * DAY + DAY // 2, 0, 10 * USD, 1, "settle 2", 0, 1),
    (7, 1, "brandA", 1, 1, 2 * DAY + DAY // 2, 6, None, None, "settle 2", 0, 2),
    (8, 1, "brandB", 2, 2, 2 * DAY + 100, 7, None, None, "settle 2", 1, 0),
    (9, 2, "brandA", 0, 1, 4 * DAY + 50, 8, None, None, "settle 3", 0, 0),
    (10, 1, "brandB", 2, 1, 6 * DAY + 10, 5, None, None, "settle 4", 0, 0),
    (11, 2, "brandA", 0, 1, 44 * DAY - 100, 0, 2 * USD, 0, "settle 5", 0, 0),
]
DEBTS = {4: 4 * USD}
"""Usage id -> what became debt: brand B's 10 USD usage found 6 USD in escrow."""
TYPE_NAMES = {0: "campaign_image", 1: "video", 2: "social_post", 3: "print"}
OUTCOMES = {
    0: ("paid", "paid"),
    5: ("license_revoked", "the license had been revoked at the time of use"),
    6: ("usage_type_not_licensed", "the license does not cover this usage type"),
    7: ("use_cap_reached", "the license's cap on uses was reached"),
    8: ("twin_paused", "the twin was paused at the time of use"),
}


def usage_rows(world: World) -> list[dict[str, Any]]:
    rows = []
    for (usage_id, twin, brand, kind, quantity, used_at, outcome, amount, version_, settle,
         group, position) in USAGES:  # fmt: skip
        event = world.ledger.events.UsagesSettled().process_receipt(
            world.receipts[settle], errors=DISCARD
        )[group]
        rows.append(
            {
                "usage_id": usage_id,
                "twin_id": twin,
                "brand": world.accounts[brand],
                "usage_type": TYPE_NAMES[kind],
                "usage_type_code": kind,
                "quantity": quantity,
                "used_at": iso(T0 + used_at),
                "code": OUTCOMES[outcome][0],
                "sentence": OUTCOMES[outcome][1],
                "outcome_code": outcome,
                "amount": None if amount is None else str(amount),
                "paid_from_escrow": None
                if amount is None
                else str(amount - DEBTS.get(usage_id, 0)),
                "recorded_as_debt": None if amount is None else str(DEBTS.get(usage_id, 0)),
                "license_version": version_,
                "batch_digest": "0x" + event["args"]["batchDigest"].hex(),
                "attester": ATTESTER.address,
                "tx_hash": world.tx(settle),
                "block_number": world.block(settle),
                "log_index": event["logIndex"],
                "position": position,
                "settled_at": iso(world.times[settle]),
            }
        )
    return rows


def pages(api: TestClient, url: str) -> tuple[list[dict[str, Any]], list[str | None]]:
    """Every item following ``next`` from ``url``, and the links followed."""
    items: list[dict[str, Any]] = []
    links: list[str | None] = []
    next_url: str | None = url
    while next_url is not None:
        page = get(api, next_url)
        assert page["decimals"] == 6
        items += page["items"]
        next_url = page["next"]
        links.append(next_url)
    return items, links


def test_usages_list_every_settled_usage_in_ledger_order(world: World, api: TestClient) -> None:
    expected = usage_rows(world)
    assert get(api, "/v1/usages") == {"items": expected, "next": None, "decimals": 6}
    assert [r["usage_id"] for r in expected] == list(range(1, 12))  # ledger order here


def test_usage_pages_neither_repeat_nor_skip(world: World, api: TestClient) -> None:
    expected = usage_rows(world)
    for limit in (1, 3, 4, 10, 11):
        items, links = pages(api, f"/v1/usages?limit={limit}")
        assert items == expected, limit
        assert len(links) == -(-11 // limit)
    # The cursor is the last row's (block, log index, position); the filter stays in the link.
    items, links = pages(api, f"/v1/usages?brand={world.accounts['brandB']}&limit=2")
    assert [r["usage_id"] for r in items] == [4, 8, 10]
    row8 = expected[7]
    assert links == [
        f"/v1/usages?brand={world.accounts['brandB']}&limit=2"
        f"&cursor={row8['block_number']}-{row8['log_index']}-0",
        None,
    ]


@pytest.mark.parametrize(
    ("query", "ids"),
    [
        ("twin_id=2", [3, 9, 11]),
        ("twin_id=3", []),
        ("usage_type=social_post", [4, 8, 10]),
        ("usage_type=1", [7]),
        ("outcome=paid", [1, 3, 4, 5, 6, 11]),
        ("outcome=rejected", [2, 7, 8, 9, 10]),
        ("outcome=license_revoked", [10]),
        ("outcome=7", [8]),
        ("outcome=0", [1, 3, 4, 5, 6, 11]),
        ("outcome=unknown_outcome", []),
        ("twin_id=1&outcome=usage_type_not_licensed", [2, 7]),
        (f"used_from={iso(T0 + DAY)}", [5, 6, 7, 8, 9, 10, 11]),
        (f"used_from={iso(T0 + DAY)}&used_to={iso(T0 + 2 * DAY + DAY // 2)}", [5, 8]),
        ("used_to=2030-01-10T23:55:00%2B00:00", [1, 2]),
    ],
)
def test_usage_filters(world: World, api: TestClient, query: str, ids: list[int]) -> None:
    expected = {r["usage_id"]: r for r in usage_rows(world)}
    assert get(api, f"/v1/usages?{query}") == {
        "items": [expected[i] for i in ids],
        "next": None,
        "decimals": 6,
    }
    brand = world.accounts["brandA"].lower()
    by_brand = get(api, f"/v1/usages?brand={brand}&twin_id=2")["items"]
    assert [r["usage_id"] for r in by_brand] == [3, 9, 11]


# ---------------------------------------------------------------- earnings


def twin_period(
    world: World,
    period: str | None,
    *,
    paid: int = 0,
    debt_recorded: int = 0,
    debt_repaid: int = 0,
    distributed: int = 0,
    paid_out: int = 0,
    undistributed: int,
    unpaid_debt: int,
    claimable: int,
    payees: dict[str, tuple[int, int, int]] | None = None,
) -> dict[str, Any]:
    return {
        "period": period,
        "paid": str(paid),
        "debt_recorded": str(debt_recorded),
        "debt_repaid": str(debt_repaid),
        "accrued": str(paid - debt_recorded + debt_repaid),
        "distributed": str(distributed),
        "paid_out": str(paid_out),
        "undistributed": str(undistributed),
        "unpaid_debt": str(unpaid_debt),
        "claimable": str(claimable),
        "payees": sorted(
            (
                {
                    "payee": world.accounts[name],
                    "distributed": str(d),
                    "paid_out": str(p),
                    "claimable": str(c),
                }
                for name, (d, p, c) in (payees or {}).items()
            ),
            key=lambda flow: flow["payee"],
        ),
    }


def test_twin_earnings_per_month_follow_the_money(world: World, api: TestClient) -> None:
    jan = twin_period(world, "2030-01", paid=24_500_000, debt_recorded=4 * USD,
                      undistributed=20_500_000, unpaid_debt=4 * USD, claimable=0)  # fmt: skip
    feb = twin_period(
        world, "2030-02", debt_repaid=4 * USD, distributed=24_500_000, paid_out=4_100_000,
        undistributed=0, unpaid_debt=0, claimable=20_400_000,
        payees={"agency": (4_900_000, 4_100_000, 800_000),
                "manager": (2_450_000, 0, 2_450_000),
                "model1": (17_150_000, 0, 17_150_000)},
    )  # fmt: skip
    # March: model 1 withdraws; the agency's payout of both twins pays 0.8 USD of twin 1's.
    mar = twin_period(world, "2030-03", paid_out=17_950_000, undistributed=0, unpaid_debt=0,
                      claimable=2_450_000,
                      payees={"agency": (0, 800_000, 0), "model1": (0, 17_150_000, 0)})  # fmt: skip
    totals = twin_period(
        world, None, paid=24_500_000, debt_recorded=4 * USD, debt_repaid=4 * USD,
        distributed=24_500_000, paid_out=22_050_000, undistributed=0, unpaid_debt=0,
        claimable=2_450_000,
        payees={"agency": (4_900_000, 4_900_000, 0),
                "manager": (2_450_000, 0, 2_450_000),
                "model1": (17_150_000, 17_150_000, 0)},
    )  # fmt: skip
    assert get(api, "/v1/twins/1/earnings") == {
        "twin_id": 1,
        "period": "month",
        "from": None,
        "to": None,
        "decimals": 6,
        "periods": [jan, feb, mar],
        "totals": totals,
    }
    # The balances agree with the chain: nothing left in twin 1's account, claimable per payee.
    fn = world.fn
    assert fn.twinState(1).call()[0] == 0
    assert {
        name: fn.claimable(world.accounts[name]).call() for name in ("agency", "manager", "model1")
    } == {"agency": 0, "manager": 2_450_000, "model1": 0}
    # Twin 2: distributed to model 2 alone before the agency joined, then half each.
    assert get(api, "/v1/twins/2/earnings?period=month")["periods"] == [
        twin_period(world, "2030-01", paid=2 * USD, undistributed=2 * USD, unpaid_debt=0,
                    claimable=0),
        twin_period(world, "2030-02", paid=2 * USD, distributed=2 * USD, undistributed=2 * USD,
                    unpaid_debt=0, claimable=2 * USD, payees={"model2": (2 * USD, 0, 2 * USD)}),
        twin_period(world, "2030-03", distributed=2 * USD, paid_out=USD, undistributed=0,
                    unpaid_debt=0, claimable=3 * USD,
                    payees={"agency": (USD, USD, 0), "model2": (USD, 0, 3 * USD)}),
    ]  # fmt: skip
    assert (fn.twinState(2).call()[0], fn.claimable(world.accounts["model2"]).call()) == (
        0,
        3 * USD,
    )


def test_twin_earnings_per_day_within_a_range(world: World, api: TestClient) -> None:
    url = "/v1/twins/1/earnings?period=day&from=2030-02-01T00:00:00Z&to=2030-03-01T00:00:00Z"
    assert get(api, url) == {
        "twin_id": 1,
        "period": "day",
        "from": "2030-02-01T00:00:00Z",
        "to": "2030-03-01T00:00:00Z",
        "decimals": 6,
        "periods": [
            twin_period(world, "2030-02-19", distributed=20_500_000, paid_out=4_100_000,
                        undistributed=0, unpaid_debt=4 * USD, claimable=16_400_000,
                        payees={"agency": (4_100_000, 4_100_000, 0),
                                "manager": (2_050_000, 0, 2_050_000),
                                "model1": (14_350_000, 0, 14_350_000)}),
            twin_period(world, "2030-02-20", debt_repaid=4 * USD, undistributed=4 * USD,
                        unpaid_debt=0, claimable=16_400_000),
            twin_period(world, "2030-02-21", distributed=4 * USD, undistributed=0,
                        unpaid_debt=0, claimable=20_400_000,
                        payees={"agency": (800_000, 0, 800_000),
                                "manager": (400_000, 0, 2_450_000),
                                "model1": (2_800_000, 0, 17_150_000)}),
        ],
        "totals": twin_period(
            world, None, debt_repaid=4 * USD, distributed=24_500_000, paid_out=4_100_000,
            undistributed=0, unpaid_debt=0, claimable=20_400_000,
            payees={"agency": (4_900_000, 4_100_000, 800_000),
                    "manager": (2_450_000, 0, 2_450_000),
                    "model1": (17_150_000, 0, 17_150_000)},
        ),
    }  # fmt: skip


def payee_period(
    period: str | None, distributed: int, paid_out: int, claimable: int, twins: dict[int, int]
) -> dict[str, Any]:
    return {
        "period": period,
        "distributed": str(distributed),
        "paid_out": str(paid_out),
        "claimable": str(claimable),
        "twins": [{"twin_id": t, "distributed": str(a)} for t, a in sorted(twins.items())],
    }


def test_payee_earnings_per_period(world: World, api: TestClient) -> None:
    model1 = world.accounts["model1"]
    assert get(api, f"/v1/payees/{model1.lower()}/earnings") == {
        "payee": model1,
        "period": "month",
        "from": None,
        "to": None,
        "decimals": 6,
        "periods": [
            payee_period("2030-02", 17_150_000, 0, 17_150_000, {1: 17_150_000}),
            payee_period("2030-03", 0, 17_150_000, 0, {}),
        ],
        "totals": payee_period(None, 17_150_000, 17_150_000, 0, {1: 17_150_000}),
    }
    agency = world.accounts["agency"]
    assert get(api, f"/v1/payees/{agency}/earnings?period=day") == {
        "payee": agency,
        "period": "day",
        "from": None,
        "to": None,
        "decimals": 6,
        "periods": [
            payee_period("2030-02-19", 4_100_000, 4_100_000, 0, {1: 4_100_000}),
            payee_period("2030-02-21", 800_000, 0, 800_000, {1: 800_000}),
            payee_period("2030-03-02", USD, 1_800_000, 0, {2: USD}),
        ],
        "totals": payee_period(None, 5_900_000, 5_900_000, 0, {1: 4_900_000, 2: USD}),
    }
    until = get(api, f"/v1/payees/{agency}/earnings?period=day&to=2030-02-20T00:00:00%2B00:00")
    assert until["totals"] == payee_period(None, 4_100_000, 4_100_000, 0, {1: 4_100_000})
    since = get(api, f"/v1/payees/{agency}/earnings?from=2030-02-20T00:00:00Z")
    assert since["periods"] == [
        payee_period("2030-02", 800_000, 0, 800_000, {1: 800_000}),
        payee_period("2030-03", USD, 1_800_000, 0, {2: USD}),
    ]
    # The heir received nothing yet: zeros.
    heir = world.accounts["heir"]
    assert get(api, f"/v1/payees/{heir}/earnings")["totals"] == payee_period(None, 0, 0, 0, {})


def test_payee_payouts_newest_first_in_pages_and_by_transaction(
    world: World, api: TestClient
) -> None:
    agency, relayer = world.accounts["agency"], world.accounts["relayer"]

    def payout(step: str, amount: int, caller: str = relayer) -> dict[str, Any]:
        source = world.source(step, "PayeePaid")
        return {"payee": agency, "caller": caller, "amount": str(amount), "source": source}

    url = f"/v1/payees/{agency}/payouts"
    first = get(api, f"{url}?limit=1")
    newest = payout("payout agency 2", 1_800_000)
    cursor = f"{newest['source']['block_number']}-{newest['source']['log_index']}"
    assert first == {"items": [newest], "next": f"{url}?limit=1&cursor={cursor}", "decimals": 6}
    assert get(api, first["next"]) == {
        "items": [payout("payout agency", 4_100_000)],
        "next": None,
        "decimals": 6,
    }
    tx = world.tx("payout agency")
    assert get(api, f"{url}?tx_hash=0x{tx[2:].upper()}")["items"] == [
        payout("payout agency", 4_100_000)
    ]
    model1 = world.accounts["model1"]
    assert get(api, f"/v1/payees/{model1.lower()}/payouts?tx_hash={tx}")["items"] == []
    withdrawn = get(api, f"/v1/payees/{model1}/payouts")["items"]
    assert [(p["caller"], p["amount"]) for p in withdrawn] == [(model1, "17150000")]
    assert withdrawn[0]["source"] == world.source("withdraw model1", "PayeePaid")
    get(api, f"{url}?cursor=7", status=422)
    get(api, f"{url}?tx_hash=0x12", status=422)


# ---------------------------------------------------------------- brand accounts


def change(
    world: World, step: str, event: str, *, escrow_delta: int, debt_delta: int, escrow: int,
    debt: int, reserve: int = 0, pending: int = 0, nth: int = 0,
) -> dict[str, Any]:  # fmt: skip
    return {
        "event": event,
        "escrow_delta": str(escrow_delta),
        "debt_delta": str(debt_delta),
        "escrow": str(escrow),
        "debt": str(debt),
        "debt_reserve": str(reserve),
        "pending_withdrawal": str(pending),
        "source": world.source(step, event, nth),
    }


def test_brand_account_with_debt_entries_totals_and_changes(world: World, api: TestClient) -> None:
    brand = world.accounts["brandB"]
    repaid = change(world, "deposit B again", "DebtRepaid", escrow_delta=0, debt_delta=-4 * USD,
                    escrow=USD, debt=0)  # fmt: skip
    assert get(api, f"/v1/brands/{brand.lower()}/account") == {
        "brand": brand,
        "decimals": 6,
        "escrow": str(USD),
        "debt": "0",
        "debt_reserve": "0",
        "pending_withdrawal": "0",
        "withdrawal_unlocks_at": None,
        "source": repaid["source"],
        "totals": {
            "deposited": str(11 * USD),
            "deposited_to_debt": str(4 * USD),
            "charged": str(10 * USD),
            "spent_from_escrow": str(6 * USD),
            "debt_recorded": str(4 * USD),
            "debt_repaid": str(4 * USD),
            "withdrawn": "0",
        },
        "debt_entries": [
            {
                "entry": 0,
                "twin_id": 1,
                "recorded": str(4 * USD),
                "repaid": str(4 * USD),
                "outstanding": "0",
                "sources": [
                    world.source("settle 1", "DebtRecorded"),
                    world.source("deposit B again", "DebtRepaid"),
                ],
            }
        ],
        "changes": [
            repaid,
            change(world, "deposit B again", "EscrowDeposited", escrow_delta=USD, debt_delta=0,
                   escrow=USD, debt=4 * USD, reserve=4 * USD),
            change(world, "settle 4", "UsagesSettled", escrow_delta=0, debt_delta=0, escrow=0,
                   debt=4 * USD),
            change(world, "settle 2", "UsagesSettled", escrow_delta=0, debt_delta=0, escrow=0,
                   debt=4 * USD, nth=1),
            change(world, "settle 1", "UsagesSettled", escrow_delta=-6 * USD, debt_delta=0,
                   escrow=0, debt=4 * USD, nth=1),
            change(world, "settle 1", "DebtRecorded", escrow_delta=0, debt_delta=4 * USD,
                   escrow=6 * USD, debt=4 * USD),
            change(world, "deposit brandB", "EscrowDeposited", escrow_delta=6 * USD, debt_delta=0,
                   escrow=6 * USD, debt=0),
        ],
    }  # fmt: skip
    assert tuple(world.fn.brandAccount(brand).call()) == (USD, 0, 0, 0, 0, 0)

    brand_a = world.accounts["brandA"]
    account = get(api, f"/v1/brands/{brand_a}/account?changes=2")
    escrow = 1_000 * USD - 18_500_000
    keys = ("escrow", "debt", "pending_withdrawal", "withdrawal_unlocks_at")
    assert {k: account[k] for k in keys} == {
        "escrow": str(escrow),
        "debt": "0",
        "pending_withdrawal": str(100 * USD),
        "withdrawal_unlocks_at": rfc3339(T0 + 43 * DAY + NOTICE),
    }  # fmt: skip
    assert account["changes"] == [
        change(world, "settle 5", "UsagesSettled", escrow_delta=-2 * USD, debt_delta=0,
               escrow=escrow, debt=0, pending=100 * USD),
        change(world, "withdrawal A", "EscrowWithdrawalRequested", escrow_delta=0, debt_delta=0,
               escrow=escrow + 2 * USD, debt=0, pending=100 * USD),
    ]  # fmt: skip
    assert account["totals"]["charged"] == account["totals"]["spent_from_escrow"] == "18500000"
    assert account["debt_entries"] == []


# ---------------------------------------------------------------- the index, errors, limits


def test_index_status_reports_the_cursor(world: World, api: TestClient) -> None:
    api.app.dependency_overrides[ledger_routes.now] = lambda: datetime(  # type: ignore[attr-defined]
        2030, 3, 3, tzinfo=UTC
    )
    status = get(api, "/v1/index/status")
    updated_at = status.pop("updated_at")
    assert datetime.fromisoformat(updated_at) <= datetime.now(UTC)
    assert status == {
        "indexed": True,
        "ledger": world.ledger.address,
        "block_number": world.block("payout agency 2"),
        "block_hash": world.w3.eth.get_block("latest")["hash"].to_0x_hex(),
        "block_time": iso(T0 + 51 * DAY),
        "block_age_seconds": 86_400.0,
    }


def test_unknown_twins_and_brands_are_404_problems(world: World, api: TestClient) -> None:
    for url, detail in [
        ("/v1/twins/3", "no twin 3 in the index"),
        ("/v1/twins/3/earnings", "no twin 3 in the index"),
        (
            f"/v1/brands/{world.accounts['heir']}/account",
            f"no escrow or debt event of brand {world.accounts['heir']} in the index",
        ),
    ]:
        assert get(api, url, 404) == {
            "type": "urn:twin-bridge:problem:not-found",
            "title": "Not found",
            "status": 404,
            "detail": detail,
            "instance": url,
        }


@pytest.mark.parametrize(
    ("url", "pointer", "error"),
    [
        ("/v1/twins/0", "/path/twin_id", "greater_than_equal"),
        ("/v1/twins/x", "/path/twin_id", "int_parsing"),
        ("/v1/twins?owner=0x12", "/query/owner", "string_pattern_mismatch"),
        ("/v1/twins?limit=0", "/query/limit", "greater_than_equal"),
        ("/v1/twins?limit=501", "/query/limit", "less_than_equal"),
        ("/v1/twins/1/earnings?period=week", "/query/period", "literal_error"),
        ("/v1/twins/1/earnings?from=2030-01-01", "/query/from", "timezone_aware"),
        ("/v1/twins/1/earnings?from=2030-02-01T00:00:00Z&to=2030-02-01T00:00:00Z", "/query/to",
         "value_error"),
        ("/v1/payees/agency/earnings", "/path/address", "string_pattern_mismatch"),
        ("/v1/usages?cursor=1-2", "/query/cursor", "string_pattern_mismatch"),
        ("/v1/usages?cursor=9999999999999999999-0-0", "/query/cursor", "string_pattern_mismatch"),
        ("/v1/usages?usage_type=hologram", "/query/usage_type", "value_error"),
        ("/v1/usages?usage_type=256", "/query/usage_type", "value_error"),
        ("/v1/usages?outcome=refunded", "/query/outcome", "value_error"),
        ("/v1/usages?outcome=%C2%B2", "/query/outcome", "value_error"),  # a digit, not ASCII
        ("/v1/usages?used_from=0001-01-01T00:00:00%2B01:00", "/query/used_from", "value_error"),
        ("/v1/payees/0x0000000000000000000000000000000000000001/earnings"
         "?to=9999-12-31T23:00:00-02:00", "/query/to", "value_error"),
        ("/v1/usages?used_from=2030-01-02T00:00:00Z&used_to=2030-01-01T00:00:00Z",
         "/query/used_to", "value_error"),
        ("/v1/brands/0xZZ/account", "/path/address", "string_pattern_mismatch"),
        ("/v1/brands/0x0000000000000000000000000000000000000001/account?changes=-1",
         "/query/changes", "greater_than_equal"),
    ],
)  # fmt: skip
def test_bad_parameters_are_422_problems(
    empty_api: Any, url: str, pointer: str, error: str
) -> None:
    body = get(empty_api.client, url, 422)
    assert (body["type"], body["status"], body["instance"]) == (
        "urn:twin-bridge:problem:validation",
        422,
        url.split("?")[0],
    )
    assert [(e["pointer"], e["type"]) for e in body["errors"]] == [(pointer, error)]
    assert body["detail"].startswith(f"1 error(s); first at '{pointer}': ")


def test_usage_type_and_outcome_errors_name_the_choices(empty_api: Any) -> None:
    body = get(empty_api.client, "/v1/usages?outcome=refunded", 422)
    assert body["errors"][0]["detail"] == (
        "'refunded' is not an outcome: one of paid, rejected (every outcome but paid), "
        "unknown_twin, no_license, license_not_started, license_expired, license_revoked, "
        "usage_type_not_licensed, use_cap_reached, twin_paused, zero_quantity, usage_in_future, "
        "offer_not_accepted, over_usage_limit, over_period_limit, unknown_outcome (codes this "
        "bridge does not know) or an outcome number 0-255"
    )


# ---------------------------------------------------------------- without a chain


@pytest.fixture
def bare_api(make_api: Callable[..., Any]) -> Any:
    """The API over an empty store (no index yet), at most 2 requests per client IP at once."""
    return make_api(rate_limit_per_s=0.001, rate_limit_burst=2)


def test_public_reads_need_no_key_and_are_limited_per_client_ip(bare_api: Any) -> None:
    client: TestClient = bare_api.client
    assert get(client, "/v1/index/status") == {
        "indexed": False,
        "ledger": None,
        "block_number": None,
        "block_hash": None,
        "block_time": None,
        "updated_at": None,
        "block_age_seconds": None,
    }
    assert get(client, "/v1/usages") == {"items": [], "next": None, "decimals": 6}
    response = client.get("/v1/twins")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1000"
    assert response.json()["detail"] == (
        "rate limit of 0.001 requests/s per client (burst 2) exceeded; retry in 1000 s"
    )
    # Another client address has its own bucket.
    other = TestClient(client.app, client=("203.0.113.9", 50000))
    assert get(other, "/v1/twins") == {"items": [], "next": None}


def test_the_read_api_is_documented_in_openapi(bare_api: Any) -> None:
    schema = bare_api.client.get("/openapi.json").json()
    paths = schema["paths"]
    for path, model in [
        ("/v1/twins", "TwinPageOut"),
        ("/v1/twins/{twin_id}", "TwinOut"),
        ("/v1/twins/{twin_id}/earnings", "TwinEarningsOut"),
        ("/v1/payees/{address}/earnings", "PayeeEarningsOut"),
        ("/v1/payees/{address}/payouts", "PayoutPageOut"),
        ("/v1/usages", "UsagePageOut"),
        ("/v1/brands/{address}/account", "BrandAccountOut"),
        ("/v1/index/status", "IndexStatusOut"),
    ]:
        get_op = paths[path]["get"]
        assert "security" not in get_op
        content = get_op["responses"]["200"]["content"]["application/json"]["schema"]
        assert content == {"$ref": f"#/components/schemas/{model}"}
        problems = {"429"} if path == "/v1/index/status" else {"422", "429"}
        for status in problems:
            assert "application/problem+json" in get_op["responses"][status]["content"]
    components = schema["components"]["schemas"]
    assert "accrued" in paths["/v1/twins/{twin_id}/earnings"]["get"]["description"]
    assert components["TwinEarningsPeriodOut"]["properties"]["claimable"]["description"] == (
        "Distributed from the twin and not yet paid out, at the period's end."
    )
    assert components["SettledUsageOut"]["properties"]["amount"]["anyOf"][0]["pattern"] == (
        "^[0-9]+$"
    )
