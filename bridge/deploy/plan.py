"""What a deployment will send, computed before anything is sent: the contract creations (the
optional mock token, the access manager, the ledger's libraries, the ledger) at the addresses the
deployer's next nonces give them, and the access manager calls that set the roles up
(``bridge.chain.deploy.access_calls``). The dry run prices this plan; the deployer sends it
(``bridge.deploy.deployer``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.types import Nonce
from web3.utils.address import get_create_address

from bridge.chain.deploy import (
    ACCESS_MANAGER,
    EXTENSION,
    LEDGER,
    MOCK_DECIMALS,
    STABLECOIN,
    AccessCall,
    access_calls,
)
from bridge.chain.ledger import ROLE_IDS, LedgerConfig
from bridge.chain.toolchain import Artifact
from bridge.deploy.errors import DeploymentError
from bridge.deploy.manifest import CompilerRecord, load_artifacts
from bridge.deploy.networks import NetworkConfig

RoleHolders = Mapping[str, tuple[ChecksumAddress, ...]]
"""Role name -> the accounts that should hold it."""


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
class ManagerCall:
    """A call to the access manager that sets the roles up (see ``AccessCall``)."""

    call: AccessCall
    to: ChecksumAddress

    @property
    def description(self) -> str:
        return self.call.description

    @property
    def function(self) -> str:
        return self.call.function

    @property
    def data(self) -> HexBytes:
        return self.call.data

    @property
    def grant(self) -> tuple[str, ChecksumAddress] | None:
        return self.call.grant


@dataclass(frozen=True)
class DeployPlan:
    """Every transaction of one deployment, and what the manifest will record of it."""

    network: NetworkConfig
    chain_id: int
    deployer: ChecksumAddress
    nonce: int
    """The deployer's next nonce: the first creation's."""
    token: ChecksumAddress
    config: LedgerConfig
    libraries: dict[str, ChecksumAddress]
    constructor_args: dict[str, dict[str, Any]]
    """Contract name -> its constructor's arguments, by parameter name."""
    creations: tuple[Creation, ...]
    calls: tuple[ManagerCall, ...]
    """Every access manager call, as if no role were held yet."""
    holders: RoleHolders
    ledger: Contract
    """The ledger, bound to the address it will have."""
    manager: Contract
    """The access manager, bound to the address it will have."""
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
    extension_artifact = load_artifacts([EXTENSION], artifacts_dir)[EXTENSION]
    linked = sorted({*ledger_artifact.libraries, *extension_artifact.libraries})
    names = [*mock, ACCESS_MANAGER, *linked, EXTENSION, LEDGER]
    addresses = {
        name: get_create_address(deployer, Nonce(nonce + i)) for i, name in enumerate(names)
    }
    artifacts = {
        **load_artifacts(names[:-2], artifacts_dir),
        EXTENSION: extension_artifact,
        LEDGER: ledger_artifact,
    }
    token = addresses[STABLECOIN] if mock else to_checksum_address(network.token)
    config = network.ledger_config(MOCK_DECIMALS if mock else token_decimals(w3, token))
    libraries = {lib: addresses[lib] for lib in linked}
    shared = {"token": token, "authority": addresses[ACCESS_MANAGER], "settings": config}
    args: dict[str, dict[str, Any]] = {
        ACCESS_MANAGER: {"initialAdmin": deployer},
        EXTENSION: shared,
        LEDGER: {**shared, "extension": addresses[EXTENSION]},
    }
    code = {name: HexBytes(artifacts[name].bytecode) for name in [*mock, *libraries]}
    code[ACCESS_MANAGER] = _creation_code(w3, artifacts[ACCESS_MANAGER], {}, [deployer])
    ledger_args = [token, addresses[ACCESS_MANAGER], config.as_abi()]
    code[EXTENSION] = _creation_code(w3, extension_artifact, libraries, ledger_args)
    code[LEDGER] = _creation_code(
        w3, ledger_artifact, libraries, [*ledger_args, addresses[EXTENSION]]
    )
    ledger = w3.eth.contract(address=addresses[LEDGER], abi=ledger_artifact.abi)
    manager = w3.eth.contract(address=addresses[ACCESS_MANAGER], abi=artifacts[ACCESS_MANAGER].abi)
    return DeployPlan(
        network=network,
        chain_id=chain_id,
        deployer=deployer,
        nonce=nonce,
        token=token,
        config=config,
        libraries=libraries,
        constructor_args={
            ACCESS_MANAGER: args[ACCESS_MANAGER],
            EXTENSION: {**args[EXTENSION], "settings": config.as_dict()},
            LEDGER: {**args[LEDGER], "settings": config.as_dict()},
        },
        creations=tuple(
            Creation(name, artifacts[name], addresses[name], code[name]) for name in names
        ),
        calls=_manager_calls(manager, ledger.address, holders, deployer, network.role_delay),
        holders=holders,
        ledger=ledger,
        manager=manager,
        compiler=CompilerRecord(
            version=ledger_artifact.compiler_version, settings=dict(ledger_artifact.settings)
        ),
    )


def _creation_code(
    w3: Web3, artifact: Artifact, libraries: Mapping[str, str], args: list[Any]
) -> HexBytes:
    bytecode = artifact.linked_bytecode(libraries) if artifact.libraries else artifact.bytecode
    factory = w3.eth.contract(abi=artifact.abi, bytecode=bytecode)
    return HexBytes(factory.constructor(*args).data_in_transaction)


def token_decimals(w3: Web3, token: str) -> int:
    """The decimals of the network's ERC-20, which scale its default spending limits."""
    abi = [
        {
            "type": "function",
            "name": "decimals",
            "inputs": [],
            "outputs": [{"name": "", "type": "uint8"}],
            "stateMutability": "view",
        }
    ]
    try:
        contract = w3.eth.contract(address=to_checksum_address(token), abi=abi)
        return int(contract.functions.decimals().call())
    except Exception as exc:  # no contract, or not an ERC-20 with decimals()
        raise DeploymentError(f"cannot read decimals() of the token {token}: {exc}") from exc


def _manager_calls(
    manager: Contract,
    ledger: ChecksumAddress,
    holders: RoleHolders,
    deployer: ChecksumAddress,
    role_delay: int,
) -> tuple[ManagerCall, ...]:
    calls = access_calls(
        manager,
        ledger,
        holders=holders,
        admin=holders["ADMIN_ROLE"][0],
        deployer=deployer,
        role_delay=role_delay,
    )
    return tuple(ManagerCall(call, manager.address) for call in calls)


def has_role(manager: Contract, role: str, account: str) -> bool:
    """Whether ``account`` holds ``role`` (a role name) in the access manager now (a member whose
    grant delay has not passed yet does not)."""
    is_member, _ = manager.functions.hasRole(ROLE_IDS[role], account).call()
    return bool(is_member)
