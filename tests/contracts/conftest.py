"""Fixtures for the contract suite: one in-process chain (eth-tester on py-evm) per session,
the access manager and the ledger deployed once, and every test starting from a snapshot of that
state (reverted after).

The session world maps the ledger's restricted functions to their roles in the manager
(``mint`` → REGISTRAR_ROLE, ``pause``/``unpause`` → PAUSER_ROLE) and grants the registrar,
attester and pauser at once (no grant delay, no execution delay for the admin), with a test
``Config`` (the minimum notice period, no raise delay, the largest spending limits) so that the
tests of licenses, settlement and payouts keep their meaning. Tests of the delays and the real
defaults deploy their own world with ``deploy_world``/``deploy_system``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_tester import EthereumTester, PyEVMBackend
from eth_typing import ChecksumAddress
from eth_utils import function_abi_to_4byte_selector, keccak
from web3 import EthereumTesterProvider, Web3
from web3.contract import Contract

from bridge.chain.deploy import contract_at, deploy_contract
from bridge.chain.toolchain import load_artifact

from .helpers import DAY, Ledger

ADMIN_ROLE = 0
REGISTRAR_ROLE = 1
ATTESTER_ROLE = 2
PAUSER_ROLE = 3
PUBLIC_ROLE = 2**64 - 1
ROLE_IDS = {"registrar": REGISTRAR_ROLE, "attester": ATTESTER_ROLE, "pauser": PAUSER_ROLE}
"""The ledger's roles in the manager, by the actor that holds them in the session world."""
ARBITER_ROLE = 4
ROLE_FUNCTIONS = {
    REGISTRAR_ROLE: ("mint",),
    PAUSER_ROLE: ("pause", "unpause"),
    ARBITER_ROLE: ("releaseDispute", "resolveDisputeByVoid", "resolveDisputeByCharge"),
}
"""The ledger's ``restricted`` functions, by the role the manager maps them to."""

MIN_NOTICE_PERIOD = 36 * DAY
CLAIM_WINDOW = 7 * DAY
MAX_NONCE_JUMP = 256
NOTICE_PERIOD = MIN_NOTICE_PERIOD
SPENDING_PERIOD = DAY
LIMIT_MAX = (2**28 - 1) * 10**15
"""The largest spending limit the ledger can keep (28-bit mantissa, exponent 15)."""
TEST_CONFIG = (NOTICE_PERIOD, SPENDING_PERIOD, 0, LIMIT_MAX, LIMIT_MAX, 0)
"""The session world's ``Config``: (noticePeriod, spendingPeriod, raiseDelay, defaultPerUsage,
defaultPerPeriod, holdWindow): limits that never bind, raises that apply at once, no hold."""
REAL_CONFIG = (NOTICE_PERIOD, DAY, 60, 50_000 * 10**6, 250_000 * 10**6, 0)
"""The local deployment defaults (6-decimal token): for tests of the bounds."""

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


@dataclass(frozen=True)
class System:
    """One deployment: the ledger, its payment token, its access manager and its libraries."""

    ledger: Contract
    token: Contract
    manager: Contract
    libraries: dict[str, ChecksumAddress]


@dataclass
class Chain:
    w3: Web3
    tester: EthereumTester
    ledger: Contract
    token: Contract
    actors: Actors
    manager: Contract

    def snapshot(self) -> Any:
        return self.tester.take_snapshot()

    def revert(self, snapshot_id: Any) -> None:
        self.tester.revert_to_snapshot(snapshot_id)


def selectors(contract: Contract, names: Sequence[str]) -> list[bytes]:
    """The 4-byte selectors of the contract's functions ``names`` (each name unambiguous)."""
    by_name = {e["name"]: e for e in contract.abi if e.get("type") == "function"}
    return [function_abi_to_4byte_selector(by_name[name]) for name in names]


def _send(w3: Web3, call: Any, sender: str) -> Any:
    receipt = w3.eth.wait_for_transaction_receipt(call.transact({"from": sender}))
    assert receipt["status"] == 1
    return receipt


def deploy_system(
    w3: Web3,
    *,
    admin: str,
    config: Sequence[int] = TEST_CONFIG,
    members: dict[int, Sequence[str]] | None = None,
    token: Contract | None = None,
    map_roles: bool = True,
) -> System:
    """Deploys a manager (``admin`` its initial admin), the libraries, the ledger's extension and
    the ledger with ``config`` and (unless ``token`` is given) a mock stablecoin; maps the
    restricted functions to their roles and grants ``members`` (role id → accounts) with no
    execution delay. Sent by ``admin``."""
    token = token or deploy_contract(w3, load_artifact("MockStablecoin"), sender=admin)
    manager = deploy_contract(w3, load_artifact("TwinAccessManager"), admin, sender=admin)
    artifact = load_artifact("TwinLedger")
    extension_artifact = load_artifact("TwinLedgerExtension")
    libraries = {
        name: deploy_contract(w3, load_artifact(name), sender=admin).address
        for name in sorted({*artifact.libraries, *extension_artifact.libraries})
    }
    args = (token.address, manager.address, tuple(config))
    extension = deploy_contract(w3, extension_artifact, *args, sender=admin, libraries=libraries)
    ledger = deploy_contract(
        w3, artifact, *args, extension.address, sender=admin, libraries=libraries
    )
    if map_roles:
        for role_id, names in ROLE_FUNCTIONS.items():
            call = manager.functions.setTargetFunctionRole(
                ledger.address, selectors(ledger, names), role_id
            )
            _send(w3, call, admin)
    for role_id, accounts in (members or {}).items():
        for account in accounts:
            _send(w3, manager.functions.grantRole(role_id, account, 0), admin)
    return System(ledger=ledger, token=token, manager=manager, libraries=libraries)


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

    system = deploy_system(
        w3,
        admin=actors.admin.address,
        members={role_id: [getattr(actors, name).address] for name, role_id in ROLE_IDS.items()},
    )
    ledger, token = system.ledger, system.token
    for brand in actors.brands:
        token.functions.mint(brand.address, BRAND_FUNDS).transact({"from": brand.address})
        token.functions.approve(ledger.address, 2**256 - 1).transact({"from": brand.address})
    return Chain(
        w3=w3, tester=tester, ledger=ledger, token=token, actors=actors, manager=system.manager
    )


@pytest.fixture
def tester_chain(session_chain: Chain) -> Iterator[Chain]:
    """The deployed chain, reverted to its deployment state after the test."""
    snapshot_id = session_chain.snapshot()
    yield session_chain
    session_chain.revert(snapshot_id)


@pytest.fixture
def lg(tester_chain: Chain) -> Ledger:
    """A driver for the ledger with the test actors (see ``helpers.Ledger``)."""
    return Ledger(
        tester_chain.w3,
        tester_chain.ledger,
        tester_chain.token,
        tester_chain.actors,
        tester_chain.manager,
    )


@pytest.fixture
def deploy(tester_chain: Chain):  # type: ignore[no-untyped-def]
    """Deploys another compiled contract (e.g. a mock) from the admin: ``deploy(name, *args)``."""

    def _deploy(name: str, *args: Any) -> Contract:
        return deploy_contract(
            tester_chain.w3, load_artifact(name), *args, sender=tester_chain.actors.admin.address
        )

    return _deploy


@pytest.fixture
def deploy_world(tester_chain: Chain) -> Callable[..., Ledger]:
    """Deploys another manager + ledger on the session chain (reverted after the test), sharing
    its token (the brands' allowances are set), its actors granted their roles as in the session
    world: ``deploy_world(config=REAL_CONFIG, members=None, map_roles=True)`` → a ``Ledger``."""

    def _world(
        config: Sequence[int] = TEST_CONFIG,
        members: dict[int, Sequence[str]] | None = None,
        map_roles: bool = True,
    ) -> Ledger:
        actors = tester_chain.actors
        if members is None:
            members = {
                role_id: [getattr(actors, name).address] for name, role_id in ROLE_IDS.items()
            }
        system = deploy_system(
            tester_chain.w3,
            admin=actors.admin.address,
            config=config,
            members=members,
            token=tester_chain.token,
            map_roles=map_roles,
        )
        for brand in actors.brands:
            _send(
                tester_chain.w3,
                tester_chain.token.functions.approve(system.ledger.address, 2**256 - 1),
                brand.address,
            )
        return Ledger(tester_chain.w3, system.ledger, system.token, actors, system.manager)

    return _world


__all__ = ["Chain", "System", "contract_at", "deploy_system"]
