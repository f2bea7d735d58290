"""Fixtures for the contract suite: one in-process chain (eth-tester on py-evm) per session,
the ledger deployed once, and every test starting from a snapshot of that state (reverted after)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_tester import EthereumTester, PyEVMBackend
from eth_utils import keccak
from web3 import EthereumTesterProvider, Web3
from web3.contract import Contract

from bridge.chain.deploy import contract_at, deploy_contract, deploy_ledger
from bridge.chain.toolchain import load_artifact

from .helpers import Ledger

ADMIN_DELAY = 2 * 24 * 3600
NOTICE_PERIOD = 3 * 24 * 3600
ROLES = ("admin", "registrar", "attester", "pauser", "outsider")
MODELS = 4
BRANDS = 3
PAYEES = 3
BRAND_FUNDS = 10**15  # 1e9 mUSD (6 decimals)


def _account(label: str) -> LocalAccount:
    """A deterministic test key (test-only, never funded anywhere but the in-process chain)."""
    return Account.from_key(keccak(text=f"twin-bridge test key {label}"))


@dataclass
class Actors:
    """Every account a test may act as, with keys for signing."""

    admin: LocalAccount
    registrar: LocalAccount
    attester: LocalAccount
    pauser: LocalAccount
    outsider: LocalAccount
    models: list[LocalAccount] = field(default_factory=list)
    brands: list[LocalAccount] = field(default_factory=list)
    payees: list[LocalAccount] = field(default_factory=list)


@dataclass
class Chain:
    w3: Web3
    tester: EthereumTester
    ledger: Contract
    token: Contract
    actors: Actors

    def snapshot(self) -> Any:
        return self.tester.take_snapshot()

    def revert(self, snapshot_id: Any) -> None:
        self.tester.revert_to_snapshot(snapshot_id)


@pytest.fixture(scope="session")
def session_chain() -> Chain:
    backend = PyEVMBackend(
        PyEVMBackend.generate_genesis_params(overrides={"gas_limit": 60_000_000})
    )
    tester = EthereumTester(backend)
    w3 = Web3(EthereumTesterProvider(tester))
    funder = w3.eth.accounts[0]

    actors = Actors(**{role: _account(role) for role in ROLES})
    actors.models = [_account(f"model {i}") for i in range(MODELS)]
    actors.brands = [_account(f"brand {i}") for i in range(BRANDS)]
    actors.payees = [_account(f"payee {i}") for i in range(PAYEES)]
    everyone = (
        [getattr(actors, role) for role in ROLES] + actors.models + actors.brands + actors.payees
    )
    for account in everyone:
        tester.add_account(account.key.hex())
        w3.eth.send_transaction({"from": funder, "to": account.address, "value": 10**21})

    deployment = deploy_ledger(
        w3,
        sender=actors.admin.address,
        admin=actors.admin.address,
        admin_delay=ADMIN_DELAY,
        notice_period=NOTICE_PERIOD,
    )
    ledger, token = deployment.ledger, deployment.token
    for role, account in (
        ("REGISTRAR_ROLE", actors.registrar),
        ("ATTESTER_ROLE", actors.attester),
        ("PAUSER_ROLE", actors.pauser),
    ):
        role_id = getattr(ledger.functions, role)().call()
        ledger.functions.grantRole(role_id, account.address).transact(
            {"from": actors.admin.address}
        )
    for brand in actors.brands:
        token.functions.mint(brand.address, BRAND_FUNDS).transact({"from": brand.address})
        token.functions.approve(ledger.address, 2**256 - 1).transact({"from": brand.address})
    return Chain(w3=w3, tester=tester, ledger=ledger, token=token, actors=actors)


@pytest.fixture
def tester_chain(session_chain: Chain) -> Iterator[Chain]:
    """The deployed chain, reverted to its deployment state after the test."""
    snapshot_id = session_chain.snapshot()
    yield session_chain
    session_chain.revert(snapshot_id)


@pytest.fixture
def lg(tester_chain: Chain) -> Ledger:
    """A driver for the ledger with the test actors (see ``helpers.Ledger``)."""
    return Ledger(tester_chain.w3, tester_chain.ledger, tester_chain.token, tester_chain.actors)


@pytest.fixture
def deploy(tester_chain: Chain):  # type: ignore[no-untyped-def]
    """Deploys another compiled contract (e.g. a mock) from the admin: ``deploy(name, *args)``."""

    def _deploy(name: str, *args: Any) -> Contract:
        return deploy_contract(
            tester_chain.w3, load_artifact(name), *args, sender=tester_chain.actors.admin.address
        )

    return _deploy


__all__ = ["Chain", "contract_at"]
