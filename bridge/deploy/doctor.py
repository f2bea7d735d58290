"""``twin-bridge doctor``: is a network ready for the bridge? Each check says what is wrong.

Checks, in order: every RPC URL answers, with the network's chain id; the deployer, attester and
relayer keys decrypt; the deployment manifest matches the chain and the build; the roles in the
ledger's access manager are the configured ones (and the bridge's attester holds ``ATTESTER_ROLE``),
the admin's execution delay and the roles' grant delays are the network's ``role_delay``; the
relayer holds enough ether for some batches at the fee cap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from pydantic import SecretStr
from web3 import Web3
from web3.contract import Contract

from bridge.chain.deploy import ACCESS_MANAGER
from bridge.chain.ledger import ADMIN_ROLE, GRANTED_ROLES, ROLE_IDS
from bridge.chain.signers import load_signer, read_password
from bridge.chain.toolchain import ToolchainError, load_artifact
from bridge.deploy.errors import DeploymentError
from bridge.deploy.manifest import Manifest, load_manifest, manifest_problems
from bridge.deploy.networks import NetworkConfig
from bridge.deploy.plan import has_role
from bridge.errors import BridgeError
from bridge.settings import Settings

DEFAULT_BATCHES: Final = 10
"""The relayer should afford this many full batches at the fee cap."""


def settle_gas(batch_size: int) -> int:
    """A generous upper bound of the gas of one settle transaction of ``batch_size`` usages
    (measured: 560,261 at 100 usages, 1,437,817 at 500; README "Gas")."""
    return 400_000 + 2_400 * batch_size


@dataclass(frozen=True)
class Check:
    """One check: ``ok`` is None when it was skipped (``detail`` says why)."""

    name: str
    ok: bool | None
    detail: str


def _eth(wei: int) -> str:
    return f"{wei / 10**18:.6f} ETH"


def _raw(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()


def _connect(url: str, timeout: float) -> Web3:
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout}))
    w3.provider.exception_retry_configuration = None  # type: ignore[attr-defined]
    return w3


def run_doctor(
    network: NetworkConfig,
    settings: Settings,
    *,
    manifest_path: Path,
    batches: int = DEFAULT_BATCHES,
    environ: Mapping[str, str] | None = None,
    artifacts_dir: Path | None = None,
    timeout: float = 10.0,
) -> list[Check]:
    """Runs every check that can run and returns them all; none raises.

    Args:
        network: the network to check.
        settings: the bridge's settings, for the attester and relayer keys and the batch size.
        manifest_path: the network's deployment manifest.
        batches: the relayer must afford this many batches of ``settings.batch_size`` usages at
            the network's fee cap.
        environ: for the deployer's password (default: the process environment).
        artifacts_dir: the build the manifest is checked against (default ``build/artifacts``).
        timeout: seconds per RPC request.
    """
    checks = _config_checks(network)
    w3 = _rpc_checks(network, timeout, checks)
    deployer = _deployer_check(network, environ, checks)
    attester, relayer = _bridge_key_checks(network, settings, checks)
    if w3 is None:
        checks.append(
            Check(
                "chain",
                False,
                f"no RPC of network {network.name} answers with chain {network.chain_id}: "
                "manifest, roles and balance not checked",
            )
        )
        return checks
    manifest = _manifest_check(w3, manifest_path, artifacts_dir, checks)
    if manifest is not None:
        _role_checks(w3, network, manifest, attester, deployer, artifacts_dir, checks)
    if relayer is not None:
        _balance_check(w3, network, settings, relayer, batches, checks)
    return checks


def _config_checks(network: NetworkConfig) -> list[Check]:
    checks: list[Check] = []
    if network.missing_env:
        checks.append(
            Check(
                "environment",
                False,
                f"network {network.name} needs {', '.join(network.missing_env)}",
            )
        )
    if not network.rpc_urls:
        checks.append(Check("rpc", False, f"network {network.name} has no RPC URL"))
    return checks


def _rpc_checks(network: NetworkConfig, timeout: float, checks: list[Check]) -> Web3 | None:
    """Checks every RPC URL (a report, unlike the deployer's first that answers); the first on
    the network's chain is the one the other checks use."""
    answering = [_rpc_check(network, url, timeout, checks) for url in network.rpc_urls]
    return next((w3 for w3 in answering if w3 is not None), None)


def _rpc_check(
    network: NetworkConfig, url: str, timeout: float, checks: list[Check]
) -> Web3 | None:
    """Whether ``url`` answers, and with the network's chain id; a Web3 on it if both."""
    w3 = _connect(url, timeout)
    try:
        chain_id = int(w3.eth.chain_id)
        block = int(w3.eth.block_number)
    except Exception as exc:  # any failure to get an answer means it is unreachable
        checks.append(
            Check(f"rpc {url}", False, f"cannot reach {url}: {type(exc).__name__}: {exc}")
        )
        return None
    checks.append(Check(f"rpc {url}", True, f"answers, at block {block}"))
    if chain_id != network.chain_id:
        checks.append(
            Check(
                f"chain id {url}",
                False,
                f"{url} is chain {chain_id}, but network {network.name} is chain "
                f"{network.chain_id}",
            )
        )
        return None
    checks.append(Check(f"chain id {url}", True, f"{chain_id}, as configured"))
    return w3


def _deployer_check(
    network: NetworkConfig, environ: Mapping[str, str] | None, checks: list[Check]
) -> LocalAccount | None:
    source = network.deployer
    if source.keystore is not None and not source.keystore.is_file():
        checks.append(Check("deployer key", False, f"no keystore file at {source.keystore}"))
        return None
    if source.keystore is not None and not source.password_available(environ):
        checks.append(
            Check(
                "deployer key",
                None,
                f"not checked: no password for {source.describe()} (needed only to deploy)",
            )
        )
        return None
    try:
        account = network.load_deployer(environ)
    except BridgeError as exc:
        checks.append(Check("deployer key", False, str(exc)))
        return None
    checks.append(Check("deployer key", True, f"{account.address} from {source.describe()}"))
    return account


def _bridge_key_checks(
    network: NetworkConfig, settings: Settings, checks: list[Check]
) -> tuple[LocalAccount | None, LocalAccount | None]:
    try:
        password = read_password(
            password_file=settings.keystore_password_file,
            password=_raw(settings.keystore_password),
        )
    except OSError as exc:
        checks.append(Check("keystore password", False, f"cannot read the password file: {exc}"))
        password = None

    def load(role: str, keystore: Path | None, key: SecretStr | None) -> LocalAccount | None:
        try:
            account = load_signer(
                role,
                chain_id=network.chain_id,
                keystore=keystore,
                password=password,
                private_key=_raw(key),
            )
        except BridgeError as exc:
            checks.append(Check(f"{role} key", False, str(exc)))
            return None
        origin = f"keystore {keystore}" if keystore is not None else "raw key"
        checks.append(Check(f"{role} key", True, f"{account.address} from {origin}"))
        return account

    if settings.attester_keystore is None and settings.attester_private_key is None:
        checks.append(
            Check(
                "attester key",
                False,
                "no attester key: set TWIN_BRIDGE_ATTESTER_KEYSTORE and the keystore password "
                "(TWIN_BRIDGE_KEYSTORE_PASSWORD_FILE or TWIN_BRIDGE_KEYSTORE_PASSWORD)",
            )
        )
        attester = None
    else:
        attester = load("attester", settings.attester_keystore, settings.attester_private_key)
    if settings.relayer_keystore is None and settings.relayer_private_key is None:
        if attester is not None:
            checks.append(
                Check("relayer key", True, f"{attester.address}: the attester key relays too")
            )
        return attester, attester
    relayer = load("relayer", settings.relayer_keystore, settings.relayer_private_key)
    return attester, relayer


def _manifest_check(
    w3: Web3, path: Path, artifacts_dir: Path | None, checks: list[Check]
) -> Manifest | None:
    try:
        manifest = load_manifest(path)
        problems = manifest_problems(w3, manifest, artifacts_dir=artifacts_dir)
    except DeploymentError as exc:
        checks.append(Check("contracts", False, str(exc)))
        return None
    if problems:
        checks.append(Check("contracts", False, "; ".join(problems)))
        return None
    checks.append(
        Check(
            "contracts",
            True,
            f"ledger {manifest.ledger_address} and {len(manifest.contracts) - 1} other "
            f"contract(s) match {path} and the build",
        )
    )
    return manifest


def _manager(w3: Web3, manifest: Manifest, artifacts_dir: Path | None) -> Contract:
    abi = load_artifact(ACCESS_MANAGER, artifacts_dir=artifacts_dir).abi
    return w3.eth.contract(address=manifest.access_manager_address, abi=abi)


def _role_checks(
    w3: Web3,
    network: NetworkConfig,
    manifest: Manifest,
    attester: LocalAccount | None,
    deployer: LocalAccount | None,
    artifacts_dir: Path | None,
    checks: list[Check],
) -> None:
    try:
        manager = _manager(w3, manifest, artifacts_dir)
        wanted = network.role_holders(manifest.deployer)
    except (ToolchainError, DeploymentError) as exc:
        checks.append(Check("roles", False, str(exc)))
        return
    deployer_address = to_checksum_address(manifest.deployer)
    if deployer is not None and deployer.address != deployer_address:
        checks.append(
            Check(
                "deployer key",
                False,
                f"the deployer key is {deployer.address}, but {deployer_address} deployed the "
                "ledger",
            )
        )
    for role in GRANTED_ROLES:
        checks.append(_role_check(manager, role, wanted[role], attester, deployer_address))
    checks.append(_admin_check(manager, wanted["ADMIN_ROLE"][0], network.role_delay))
    since_block = manifest.contracts[ACCESS_MANAGER].block_number
    checks.append(_grant_delay_check(manager, network.role_delay, since_block))


def _role_check(
    manager: Contract,
    role: str,
    wanted: Sequence[str],
    attester: LocalAccount | None,
    deployer: str,
) -> Check:
    """Whether the configured holders of ``role`` (and, for the attester role, the bridge's
    attester) hold it, and the deployer only if configured."""
    bridge_attester = attester.address if role == "ATTESTER_ROLE" and attester is not None else None
    holders = list(wanted)
    if bridge_attester is not None and bridge_attester not in holders:
        holders.append(bridge_attester)
    lacking = [account for account in holders if not has_role(manager, role, account)]
    problems = [
        f"the bridge's attester {account} lacks it: its batches would be refused"
        if account == bridge_attester
        else f"{account} lacks it"
        for account in lacking
    ]
    if deployer not in holders and has_role(manager, role, deployer):
        problems.append(f"the deployer {deployer} still holds it but should not")
    if problems:
        return Check(role, False, "; ".join(problems))
    return Check(role, True, "held by " + ", ".join(holders) if holders else "none")


def _admin_check(manager: Contract, admin: str, role_delay: int) -> Check:
    """Whether the network's admin holds the manager's admin role with ``role_delay`` as its
    execution delay (so that every admin action waits)."""
    is_member, delay = manager.functions.hasRole(ADMIN_ROLE, admin).call()
    if not is_member:
        return Check("ADMIN_ROLE", False, f"the network's admin {admin} does not hold it")
    if int(delay) != role_delay:
        return Check(
            "ADMIN_ROLE",
            False,
            f"held by {admin} with an execution delay of {int(delay):,} s, but the network's "
            f"role_delay is {role_delay:,} s",
        )
    return Check("ADMIN_ROLE", True, f"held by {admin}; its actions wait {role_delay:,} s")


def _grant_delay_check(manager: Contract, role_delay: int, since_block: int) -> Check:
    """Whether the registrar, attester and pauser roles have ``role_delay`` as their grant delay,
    in force or (within the manager's minSetback after the deployment) on its way."""
    now = int(manager.w3.eth.get_block("latest")["timestamp"])
    pending: dict[str, int] = {}
    wrong: list[str] = []
    for role in GRANTED_ROLES:
        current = int(manager.functions.getRoleGrantDelay(ROLE_IDS[role]).call())
        if current == role_delay:
            continue
        since = _scheduled_grant_delay(manager, ROLE_IDS[role], role_delay, since_block)
        if since is not None and since > now:
            pending[role] = since
        else:
            wrong.append(f"{role} {current:,} s")
    if wrong:
        return Check(
            "grant delays",
            False,
            f"{', '.join(wrong)}; the network's role_delay is {role_delay:,} s",
        )
    if pending:
        when = datetime.fromtimestamp(max(pending.values()), UTC)
        return Check(
            "grant delays",
            True,
            f"{role_delay:,} s on {', '.join(GRANTED_ROLES)} from {when:%Y-%m-%d %H:%M:%S} UTC "
            "(the access manager's minSetback); until then a new member counts at once",
        )
    return Check("grant delays", True, f"{role_delay:,} s on {', '.join(GRANTED_ROLES)}")


def _scheduled_grant_delay(
    manager: Contract, role_id: int, delay: int, since_block: int
) -> int | None:
    """When the last ``RoleGrantDelayChanged`` of ``role_id`` takes effect, if it sets ``delay``."""
    logs = manager.events.RoleGrantDelayChanged().get_logs(
        from_block=since_block, argument_filters={"roleId": role_id}
    )
    if not logs or int(logs[-1]["args"]["delay"]) != delay:
        return None
    return int(logs[-1]["args"]["since"])


def _balance_check(
    w3: Web3,
    network: NetworkConfig,
    settings: Settings,
    relayer: LocalAccount,
    batches: int,
    checks: list[Check],
) -> None:
    balance = int(w3.eth.get_balance(relayer.address))
    gas = settle_gas(settings.batch_size)
    needed = batches * gas * network.max_fee_per_gas_wei
    terms = (
        f"{batches} batches of {settings.batch_size} usages ({gas:,} gas each) at the fee cap of "
        f"{network.max_fee_per_gas_wei / 10**9:,.3f} gwei"
    )
    if balance >= needed:
        checks.append(Check("relayer balance", True, f"{_eth(balance)}, enough for {terms}"))
    else:
        checks.append(
            Check(
                "relayer balance",
                False,
                f"the relayer {relayer.address} holds {_eth(balance)} but needs {_eth(needed)} "
                f"for {terms}: fund it",
            )
        )
