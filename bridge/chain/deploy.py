"""Deploy the ledger with its access manager and linked libraries (and the mock stablecoin), and
the access manager calls that set its roles up: one definition of that sequence, sent from an
unlocked account here (tests, test worlds, benchmarks) and planned, priced and signed by
``bridge.deploy`` on a named network.

The sequence: deploy ``TwinAccessManager(deployer)``, the libraries,
``TwinLedgerExtension(token, manager, config)``, ``TwinLedger(token, manager, config,
extension)``; map ``mint`` to REGISTRAR_ROLE and ``pause``/``unpause`` to PAUSER_ROLE; grant
the registrars, attesters and pausers (no grant delay yet, so they count at once); then set
``role_delay`` as the grant delay of those three roles (OpenZeppelin applies a new grant delay
only after the manager's ``minSetback``, five days) and grant the admin role with
``role_delay`` as its execution delay (at once), so every later admin action is scheduled and
waits; when the admin is not the deployer, the deployer renounces the admin role last.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from eth_typing import ChecksumAddress
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract

from bridge.chain.ledger import (
    ADMIN_ROLE,
    GRANTED_ROLES,
    MINT_SELECTOR,
    PAUSE_SELECTOR,
    RESTRICTED_SELECTORS,
    ROLE_IDS,
    UNPAUSE_SELECTOR,
    LedgerConfig,
)
from bridge.chain.toolchain import Artifact, load_artifact

LEDGER = "TwinLedger"
EXTENSION = "TwinLedgerExtension"
"""The ledger's extension (``@custom:extension``): deployed first, with the ledger's arguments."""
STABLECOIN = "MockStablecoin"
ACCESS_MANAGER = "TwinAccessManager"
MOCK_DECIMALS = 6
"""The mock stablecoin's decimals."""
_FUNCTION_NAMES = {MINT_SELECTOR: "mint", PAUSE_SELECTOR: "pause", UNPAUSE_SELECTOR: "unpause"}


@dataclass(frozen=True)
class LedgerDeployment:
    """Addresses (and bound contracts) of one ledger deployment."""

    ledger: Contract
    token: Contract
    manager: Contract
    libraries: dict[str, ChecksumAddress]
    extension: ChecksumAddress


class AccessCall(NamedTuple):
    """One call to the access manager that sets the deployment's roles up."""

    description: str
    function: str
    """The manager's function: setTargetFunctionRole, grantRole, setGrantDelay or renounceRole."""
    data: HexBytes
    grant: tuple[str, ChecksumAddress] | None = None
    """For a grant of a role other than the admin's: the role's name and the account."""


def contract_at(w3: Web3, name: str, address: str) -> Contract:
    """The compiled contract ``name`` bound to ``address``."""
    return w3.eth.contract(address=Web3.to_checksum_address(address), abi=load_artifact(name).abi)


def access_calls(
    manager: Contract,
    ledger: str,
    *,
    holders: Mapping[str, Sequence[str]],
    admin: str,
    deployer: str,
    role_delay: int,
) -> tuple[AccessCall, ...]:
    """The manager calls, from the deployer (its admin without delay), that restrict the ledger's
    functions, grant ``holders`` (role name -> accounts), set ``role_delay`` and hand the admin
    role (with ``role_delay`` as its execution delay) to ``admin``."""
    ledger = Web3.to_checksum_address(ledger)
    admin, deployer = Web3.to_checksum_address(admin), Web3.to_checksum_address(deployer)
    calls = [
        _call(manager, f"map {role} to {_names(selectors)}", "setTargetFunctionRole",
              [ledger, list(selectors), ROLE_IDS[role]])
        for role, selectors in RESTRICTED_SELECTORS.items()
    ]  # fmt: skip
    for role in GRANTED_ROLES:
        for account in holders.get(role, ()):
            holder = Web3.to_checksum_address(account)
            call = _call(manager, f"grant {role} to {holder}", "grantRole",
                         [ROLE_IDS[role], holder, 0])  # fmt: skip
            calls.append(call._replace(grant=(role, holder)))
    if role_delay:
        calls += [
            _call(manager, f"set the grant delay of {role} to {role_delay} s", "setGrantDelay",
                  [ROLE_IDS[role], role_delay])
            for role in GRANTED_ROLES
        ]  # fmt: skip
    if role_delay or admin != deployer:
        calls.append(
            _call(manager, f"grant ADMIN_ROLE to {admin} with a {role_delay} s execution delay",
                  "grantRole", [ADMIN_ROLE, admin, role_delay])
        )  # fmt: skip
    if admin != deployer:
        calls.append(
            _call(manager, f"the deployer {deployer} renounces ADMIN_ROLE", "renounceRole",
                  [ADMIN_ROLE, deployer])
        )  # fmt: skip
    return tuple(calls)


def _call(manager: Contract, description: str, function: str, args: list[Any]) -> AccessCall:
    return AccessCall(description, function, HexBytes(manager.encode_abi(function, args)))


def _names(selectors: Sequence[bytes]) -> str:
    return "/".join(_FUNCTION_NAMES[bytes(s)] for s in selectors)


def deploy_contract(
    w3: Web3,
    artifact: Artifact,
    *args: Any,
    sender: str,
    libraries: dict[str, ChecksumAddress] | None = None,
) -> Contract:
    """Deploys ``artifact`` from ``sender`` (an unlocked or middleware-signed account) and waits."""
    bytecode = (
        artifact.linked_bytecode(libraries or {}) if artifact.libraries else artifact.bytecode
    )
    factory = w3.eth.contract(abi=artifact.abi, bytecode=bytecode)
    tx_hash = factory.constructor(*args).transact({"from": Web3.to_checksum_address(sender)})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
    if receipt["status"] != 1 or receipt["contractAddress"] is None:
        raise RuntimeError(f"deploying {artifact.contract_name} failed in {tx_hash.hex()}")
    return w3.eth.contract(address=receipt["contractAddress"], abi=artifact.abi)


def deploy_libraries(
    w3: Web3, artifact: Artifact, *, sender: str, skip: Mapping[str, str] = {}
) -> dict[str, ChecksumAddress]:
    """Deploys every library ``artifact`` links against but those in ``skip`` (deployed already)."""
    return {
        name: deploy_contract(w3, load_artifact(name), sender=sender).address
        for name in artifact.libraries
        if name not in skip
    }


def send_access_calls(
    w3: Web3, manager: Contract, calls: Sequence[AccessCall], sender: str
) -> None:
    """Sends ``calls`` to ``manager`` from the unlocked ``sender``, one after the other.

    Raises:
        RuntimeError: one reverted.
    """
    for call in calls:
        tx_hash = w3.eth.send_transaction(
            {"from": Web3.to_checksum_address(sender), "to": manager.address, "data": call.data}
        )
        if w3.eth.wait_for_transaction_receipt(tx_hash)["status"] != 1:
            raise RuntimeError(f"{call.description} reverted in {tx_hash.hex()}")


def deploy_ledger(
    w3: Web3,
    *,
    sender: str,
    config: LedgerConfig,
    roles: Mapping[str, Sequence[str]] | None = None,
    role_delay: int = 0,
    admin: str | None = None,
    token: str | None = None,
) -> LedgerDeployment:
    """Deploys the access manager, the libraries, the ledger and (unless ``token`` is given) a
    mock stablecoin from the unlocked ``sender``, then sets the roles up (see the module).

    Args:
        w3: a node with ``sender`` unlocked.
        sender: deploys everything and is the manager's first admin.
        config: the ledger's ``Config``.
        roles: role name (``REGISTRAR_ROLE``, ``ATTESTER_ROLE``, ``PAUSER_ROLE``) -> accounts.
        role_delay: grant delay of those roles and the admin's execution delay (0: none).
        admin: who holds the admin role in the end (default ``sender``).
        token: an existing ERC-20 to use instead of a new mock stablecoin.
    """
    ledger_artifact = load_artifact(LEDGER)
    token_contract = (
        contract_at(w3, STABLECOIN, token)
        if token
        else deploy_contract(w3, load_artifact(STABLECOIN), sender=sender)
    )
    manager = deploy_contract(
        w3, load_artifact(ACCESS_MANAGER), Web3.to_checksum_address(sender), sender=sender
    )
    extension_artifact = load_artifact(EXTENSION)
    libraries = deploy_libraries(w3, ledger_artifact, sender=sender)
    libraries.update(deploy_libraries(w3, extension_artifact, sender=sender, skip=libraries))
    args = (token_contract.address, manager.address, config.as_abi())
    extension = deploy_contract(w3, extension_artifact, *args, sender=sender, libraries=libraries)
    ledger = deploy_contract(
        w3, ledger_artifact, *args, extension.address, sender=sender, libraries=libraries
    )
    calls = access_calls(
        manager,
        ledger.address,
        holders=roles or {},
        admin=admin or sender,
        deployer=sender,
        role_delay=role_delay,
    )
    send_access_calls(w3, manager, calls, sender)
    return LedgerDeployment(
        ledger=ledger,
        token=token_contract,
        manager=manager,
        libraries=libraries,
        extension=extension.address,
    )
