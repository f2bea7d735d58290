"""``Web3LicenseView`` against the real ledger on an in-process chain (eth-tester)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from eth_tester import EthereumTester, PyEVMBackend
from web3 import EthereumTesterProvider, Web3
from web3.contract import Contract

from bridge.chain.deploy import deploy_ledger
from bridge.chain.ledger import LedgerConfig
from bridge.chain.views import Web3LicenseView
from bridge.domain.codec import Outcome
from bridge.errors import ChainUnavailableError

DAY = 86400


@dataclass
class Deployed:
    w3: Web3
    ledger: Contract
    brand: str
    other_brand: str
    offered_brand: str
    model: str
    twin_id: int
    now: int


@pytest.fixture(scope="module")
def deployed() -> Deployed:
    backend = PyEVMBackend(
        PyEVMBackend.generate_genesis_params(overrides={"gas_limit": 60_000_000})
    )
    w3 = Web3(EthereumTesterProvider(EthereumTester(backend)))
    admin, model, brand, other_brand, offered_brand = w3.eth.accounts[:5]
    config = LedgerConfig(
        notice_period=36 * DAY,
        spending_period=DAY,
        raise_delay=0,
        default_per_usage=10_000,
        default_per_period=10**9,
    )
    ledger = deploy_ledger(
        w3, sender=admin, config=config, roles={"REGISTRAR_ROLE": [admin]}
    ).ledger
    ledger.functions.mint(model, "ipfs://twin", b"\x01" * 32).transact({"from": admin})
    twin_id = 1
    assert ledger.functions.ownerOf(twin_id).call() == model
    now = w3.eth.get_block("latest")["timestamp"]
    for who in (brand, offered_brand):
        terms = (who, 0, now + 30 * DAY, 0, b"\x02" * 32, b"\x03" * 32, [(0, 1000), (3, 50)])
        ledger.functions.offerLicense(twin_id, terms).transact({"from": model})
    _terms, version, terms_hash = ledger.functions.offerOf(twin_id, brand).call()
    ledger.functions.acceptLicense(twin_id, version, terms_hash).transact({"from": brand})
    return Deployed(w3, ledger, brand, other_brand, offered_brand, model, twin_id, now)


@pytest.fixture
def view(deployed: Deployed) -> Web3LicenseView:
    return Web3LicenseView(deployed.w3, deployed.ledger, ttl=0, rpc_url="eth-tester")


@pytest.mark.parametrize(
    ("who", "twin", "usage_type", "offset", "expected"),
    [
        ("brand", 1, 0, 60, Outcome.PAID),
        ("brand", 1, 3, 60, Outcome.PAID),
        ("brand", 1, 1, 60, Outcome.USAGE_TYPE_NOT_LICENSED),
        ("brand", 1, 0, 31 * DAY, Outcome.LICENSE_EXPIRED),
        ("other_brand", 1, 0, 60, Outcome.NO_LICENSE),
        ("offered_brand", 1, 0, 60, Outcome.OFFER_NOT_ACCEPTED),
        ("brand", 999, 0, 60, Outcome.UNKNOWN_TWIN),
    ],
)
def test_check_usage_answers_like_the_ledger(
    deployed: Deployed,
    view: Web3LicenseView,
    who: str,
    twin: int,
    usage_type: int,
    offset: int,
    expected: Outcome,
) -> None:
    brand = getattr(deployed, who)
    at = deployed.now + offset
    assert (
        view.check_usage(brand=brand, twin_id=twin, usage_type=usage_type, used_at=at) is expected
    )


def test_a_verdict_has_the_price_and_the_default_limit_per_usage(
    deployed: Deployed, view: Web3LicenseView
) -> None:
    at = deployed.now + 60
    verdicts = view.check_many(
        [(deployed.brand, 1, 0, at), (deployed.brand, 1, 3, at), (deployed.offered_brand, 1, 0, at)]
    )
    assert verdicts == [
        (Outcome.PAID, 1000, 10_000, None),
        (Outcome.PAID, 50, 10_000, None),
        (Outcome.OFFER_NOT_ACCEPTED, 0, 10_000, None),
    ]
    assert [verdicts[0].outcome_for(q) for q in (10, 11)] == [
        Outcome.PAID,
        Outcome.OVER_USAGE_LIMIT,
    ]


def test_pause_is_reported_and_cached_answers_expire(deployed: Deployed) -> None:
    now = [0.0]
    view = Web3LicenseView(
        deployed.w3, deployed.ledger, ttl=10, rpc_url="eth-tester", clock=lambda: now[0]
    )
    at = deployed.now + 10 * DAY
    ask = {"brand": deployed.brand.lower(), "twin_id": 1, "usage_type": 0, "used_at": at}
    assert view.check_usage(**ask) is Outcome.PAID
    snapshot = deployed.w3.provider.ethereum_tester.take_snapshot()
    try:
        deployed.ledger.functions.setTwinPaused(1, True).transact({"from": deployed.model})
        now[0] = 9.9
        assert view.check_usage(**ask) is Outcome.PAID
        now[0] = 10.0
        assert view.check_usage(**ask) is Outcome.TWIN_PAUSED
    finally:
        deployed.w3.provider.ethereum_tester.revert_to_snapshot(snapshot)


def test_ping_needs_code_at_the_ledger_address(deployed: Deployed) -> None:
    Web3LicenseView(deployed.w3, deployed.ledger, ttl=0, rpc_url="eth-tester").ping()
    empty = deployed.w3.eth.contract(address=deployed.model, abi=deployed.ledger.abi)
    with pytest.raises(ChainUnavailableError) as caught:
        Web3LicenseView(deployed.w3, empty, ttl=0, rpc_url="eth-tester").ping()
    assert caught.value.reason == f"no contract at {deployed.model}"


def test_unreachable_rpc_is_chain_unavailable() -> None:
    view = Web3LicenseView.connect("http://127.0.0.1:9", "0x" + "11" * 20, ttl=0)
    with pytest.raises(ChainUnavailableError) as caught:
        view.check_usage(brand="0x" + "22" * 20, twin_id=1, usage_type=0, used_at=0)
    assert caught.value.rpc_url == "http://127.0.0.1:9"
    with pytest.raises(ChainUnavailableError):
        view.ping()
