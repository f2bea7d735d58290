"""What a deployment will send, computed before anything is sent: the contract creations (the
optional mock token, the ledger's libraries, the ledger) at the addresses the deployer's next
nonces give them, and the ledger calls that set the configured roles. The dry run prices this
plan; the deployer sends it (``bridge.deploy.deployer``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.types import Nonce
from web3.utils.address import get_create_address

from bridge.chain.deploy import LEDGER, STABLECOIN
from bridge.chain.ledger import DEFAULT_ADMIN_ROLE, GRANTED_ROLES, ROLE_IDS
from bridge.chain.toolchain import Artifact
from bridge.deploy.manifest import CompilerRecord, load_artifacts
from bridge.deploy.networks import NetworkConfig

RoleHolders = Mapping[str, tuple[ChecksumAddress, ...]]
"""Role constant name -> the accounts that should hold it."""


@dataclass(frozen=True, slots=True)
class Creation:
    """A contract creation: ``name`` lands at ``address``."""

    name: str
    artifact: Artifact
    address: ChecksumAddress
    data: HexBytes

    @property
    def description(self) -> str:
        return f"deploy {self.name}"

    @property
    def to(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class RoleCall:
    """A call to the ledger that sets a role: ``grantRole`` or ``beginDefaultAdminTransfer``."""

    description: str
    function: Literal["grantRole", "beginDefaultAdminTransfer"]
    data: HexBytes
    to: ChecksumAddress
    grant: tuple[str, ChecksumAddress] | None = None
    """For ``grantRole``: the role and the account (no call needed if it already holds it)."""


@dataclass(frozen=True)
class DeployPlan:
    """Every transaction of one deployment, and what the manifest will record of it."""

    network: NetworkConfig
    chain_id: int
    deployer: ChecksumAddress
    nonce: int
    """The deployer's next nonce: the first creation's."""
    token: ChecksumAddress
    libraries: dict[str, ChecksumAddress]
    constructor_args: dict[str, Any]
    """The ledger's, by parameter name."""
    creations: tuple[Creation, ...]
    calls: tuple[RoleCall, ...]
    """Every role call, as if no role were held yet."""
    holders: RoleHolders
    ledger: Contract
    """The ledger, bound to the address it will have."""
    compiler: CompilerRecord

    @property
    def ledger_address(self) -> ChecksumAddress:
        return self.ledger.address


def plan_deployment(
    w3: Web3,
    network: NetworkConfig,
    deployer: ChecksumAddress,
    *,
    chain_id: int,
    holders: RoleHolders,
    ledger_artifact: Artifact,
    artifacts_dir: Path | None,
) -> DeployPlan:
    """The plan of a deployment from ``deployer``'s next (pending) nonce."""
    nonce = int(w3.eth.get_transaction_count(deployer, "pending"))
    mock = [STABLECOIN] if network.deploys_mock_token else []
    names = [*mock, *ledger_artifact.libraries, LEDGER]
    addresses = {
        name: get_create_address(deployer, Nonce(nonce + i)) for i, name in enumerate(names)
    }
    artifacts = {**load_artifacts(names[:-1], artifacts_dir), LEDGER: ledger_artifact}
    token = addresses[STABLECOIN] if mock else to_checksum_address(network.token)
    libraries = {lib: addresses[lib] for lib in ledger_artifact.libraries}
    constructor_args = {
        "token": token,
        "admin": deployer,
        "adminDelay": network.admin_delay,
        "noticePeriod": network.notice_period,
    }
    factory = w3.eth.contract(
        abi=ledger_artifact.abi, bytecode=ledger_artifact.linked_bytecode(libraries)
    )
    code = {name: HexBytes(artifacts[name].bytecode) for name in names[:-1]}
    code[LEDGER] = HexBytes(factory.constructor(*constructor_args.values()).data_in_transaction)
    ledger = w3.eth.contract(address=addresses[LEDGER], abi=ledger_artifact.abi)
    return DeployPlan(
        network=network,
        chain_id=chain_id,
        deployer=deployer,
        nonce=nonce,
        token=token,
        libraries=libraries,
        constructor_args=constructor_args,
        creations=tuple(
            Creation(name, artifacts[name], addresses[name], code[name]) for name in names
        ),
        calls=role_calls(ledger, holders, deployer),
        holders=holders,
        ledger=ledger,
        compiler=CompilerRecord(
            version=ledger_artifact.compiler_version, settings=dict(ledger_artifact.settings)
        ),
    )


def role_calls(
    ledger: Contract, holders: RoleHolders, deployer: ChecksumAddress
) -> tuple[RoleCall, ...]:
    """The grants of every configured role holder, then the start of the default-admin transfer
    when the configured admin is not the deployer."""
    calls = [
        RoleCall(
            f"grant {role} to {account}",
            "grantRole",
            HexBytes(ledger.encode_abi("grantRole", [ROLE_IDS[role], account])),
            ledger.address,
            grant=(role, account),
        )
        for role in GRANTED_ROLES
        for account in holders[role]
    ]
    new_admin = holders[DEFAULT_ADMIN_ROLE][0]
    if new_admin != deployer:
        calls.append(
            RoleCall(
                f"begin the default-admin transfer to {new_admin}",
                "beginDefaultAdminTransfer",
                HexBytes(ledger.encode_abi("beginDefaultAdminTransfer", [new_admin])),
                ledger.address,
            )
        )
    return tuple(calls)


def has_role(ledger: Contract, role: str, account: str) -> bool:
    """Whether ``account`` holds ``role`` (a role constant name) on ``ledger`` now."""
    return bool(ledger.functions.hasRole(ROLE_IDS[role], account).call())
