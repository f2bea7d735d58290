"""Deploy the ledger to a named network, record it in a manifest, check a manifest on chain.

Networks live in ``deploy/networks.toml`` (``load_networks``); a deployment is written to
``deploy/deployments/<network>.json`` (``Manifest``). ``deploy`` signs every transaction locally
with the deployer's key (EIP-1559, fees under the network's cap), so it works against any RPC
endpoint, not only a dev node's unlocked accounts. Running it again with unchanged code and
configuration does nothing; changed code or configuration is refused unless forced.

Roles are set at deploy time from the network's configuration: the registrar, attester and pauser
roles are granted to the configured accounts, and when the configured admin is not the deployer,
the default-admin transfer is begun. ``AccessControlDefaultAdminRules`` makes that transfer
two-step: the new admin must call ``acceptDefaultAdminTransfer()`` once the admin delay has passed,
and until then the deployer stays admin (the manifest records the pending transfer; ``twin-bridge
doctor`` reports it). Accepting revokes the role from the deployer.
"""

from __future__ import annotations

import json
import os
import re
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils.address import is_address, to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from rich.console import Console
from rich.table import Table
from web3 import Web3
from web3.exceptions import TimeExhausted
from web3.types import Nonce, TxParams, TxReceipt
from web3.utils.address import get_create_address

from bridge.chain.signers import DEV_CHAIN_IDS, load_signer, read_password
from bridge.chain.toolchain import REPO_ROOT, Artifact, ToolchainError, load_artifact
from bridge.errors import BridgeError, SigningKeyError

if TYPE_CHECKING:
    from bridge.settings import Settings

DEFAULT_NETWORKS_FILE: Final = REPO_ROOT / "deploy" / "networks.toml"
DEFAULT_DEPLOYMENTS_DIR: Final = REPO_ROOT / "deploy" / "deployments"
MANIFEST_FORMAT: Final = "twin-bridge-deployment-1"

LEDGER: Final = "TwinLedger"
STABLECOIN: Final = "MockStablecoin"
DEPLOYER: Final = "deployer"
"""In a network's roles: the deployer's own address."""
MOCK_TOKEN: Final = "mock"  # noqa: S105 - a token contract, not a secret
"""As a network's token: deploy the MockStablecoin (test chains only)."""

TEST_CHAIN_IDS: Final = DEV_CHAIN_IDS | {11155111, 17000, 560048}
"""Chains where the MockStablecoin (anyone may mint it) may be deployed: local dev chains,
Sepolia, Holesky and Hoodi."""

ROLE_NAMES: Final = ("REGISTRAR_ROLE", "ATTESTER_ROLE", "PAUSER_ROLE")
"""The ledger's roles besides the default admin, as its public constants name them."""
DEFAULT_ADMIN_ROLE: Final = "DEFAULT_ADMIN_ROLE"

GAS_MARGIN: Final = 1.2
"""Gas limit = estimate x this."""
CALL_GAS_GUESS: Final = {"grantRole": 60_000, "beginDefaultAdminTransfer": 60_000}
"""Gas of role transactions in a dry run, where the ledger does not exist yet to estimate against
(measured: 51,000 to 52,000)."""

_ENV_REFERENCE: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class DeploymentError(BridgeError):
    """A deployment cannot go ahead, or a manifest does not match the chain or the artifacts."""


# ====================================================================== networks


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeySource(_Frozen):
    """Where a key comes from: a keystore v3 file with its password (from a file or an environment
    variable), or, on local dev chains only, a raw private key (inline or from a variable)."""

    keystore: Path | None = None
    password_file: Path | None = None
    password_env: str | None = None
    private_key: SecretStr | None = None
    private_key_env: str | None = None

    def describe(self) -> str:
        """Where the key comes from, in words (never the secret)."""
        if self.keystore is not None:
            password = (
                f"password file {self.password_file}"
                if self.password_file is not None
                else f"password in ${self.password_env}"
            )
            return f"keystore {self.keystore} ({password})"
        if self.private_key_env is not None:
            return f"raw key in ${self.private_key_env}"
        return "raw key in the networks file"

    def password_available(self, environ: Mapping[str, str] | None = None) -> bool:
        """Whether a password can be had without asking (keystores only)."""
        env = os.environ if environ is None else environ
        if self.password_file is not None:
            return self.password_file.is_file()
        return self.password_env is not None and self.password_env in env

    def load(
        self, role: str, *, chain_id: int, environ: Mapping[str, str] | None = None
    ) -> LocalAccount:
        """The key, decrypted; the rules of :func:`bridge.chain.signers.load_signer` apply (raw keys
        only on chains 31337 and 1337).

        Raises:
            SigningKeyError: no key, no password, or a key that cannot be read or decrypted.
        """
        env = os.environ if environ is None else environ
        private_key: str | None = None
        if self.private_key is not None:
            private_key = self.private_key.get_secret_value()
        elif self.private_key_env is not None:
            private_key = env.get(self.private_key_env)
            if private_key is None:
                raise SigningKeyError(role, f"${self.private_key_env} is not set")
        password: str | None = None
        if self.keystore is not None:
            try:
                password = read_password(
                    password_file=self.password_file,
                    password=None if self.password_env is None else env.get(self.password_env),
                )
            except OSError as exc:
                raise SigningKeyError(role, f"cannot read password file: {exc}") from exc
            if password is None and self.password_env is not None:
                raise SigningKeyError(
                    role, f"no password for keystore {self.keystore}: set ${self.password_env}"
                )
        return load_signer(
            role,
            chain_id=chain_id,
            keystore=self.keystore,
            password=password,
            private_key=private_key,
        )


class RolesConfig(_Frozen):
    """Who holds each role after deployment: addresses or ``"deployer"``."""

    admin: str = DEPLOYER
    registrar: tuple[str, ...] = (DEPLOYER,)
    attester: tuple[str, ...] = ()
    pauser: tuple[str, ...] = (DEPLOYER,)


class NetworkConfig(_Frozen):
    """One network of ``deploy/networks.toml``.

    String values may name environment variables as ``${NAME}`` or ``${NAME:-default}``; RPC URLs
    whose variables are unset are left out, and any other unset variable is listed in
    ``missing_env`` (``require_env`` then refuses the network).
    """

    name: str
    chain_id: int = Field(gt=0)
    rpc_urls: tuple[str, ...] = ()
    confirmations: int = Field(default=1, ge=1, le=1000)
    max_fee_per_gas_wei: int = Field(gt=0)
    token: str = MOCK_TOKEN
    admin_delay: int = Field(default=0, ge=0, lt=2**48)
    notice_period: int = Field(default=0, ge=0, lt=2**40)
    block_time_s: float = Field(default=12.0, gt=0, description="Expected seconds per block.")
    receipt_timeout_s: float = Field(default=600.0, gt=0)
    roles: RolesConfig = RolesConfig()
    deployer: KeySource = KeySource()
    missing_env: tuple[str, ...] = ()

    def require_env(self) -> None:
        """Raises DeploymentError naming the environment variables the network needs but lacks."""
        if self.missing_env:
            raise DeploymentError(
                f"network {self.name} needs the environment variable"
                f"{'s' if len(self.missing_env) > 1 else ''} {', '.join(self.missing_env)}"
            )

    def default_manifest_path(self, deployments_dir: Path = DEFAULT_DEPLOYMENTS_DIR) -> Path:
        """``deploy/deployments/<name>.json``."""
        return deployments_dir / f"{self.name}.json"

    def load_deployer(self, environ: Mapping[str, str] | None = None) -> LocalAccount:
        """The deployer's key (see :meth:`KeySource.load`)."""
        return self.deployer.load("deployer", chain_id=self.chain_id, environ=environ)

    def role_holders(self, deployer: str) -> dict[str, tuple[ChecksumAddress, ...]]:
        """Role constant name -> the accounts that should hold it, ``"deployer"`` resolved.

        Raises:
            DeploymentError: an entry is neither ``"deployer"`` nor an address.
        """

        def resolve(value: str, role: str) -> ChecksumAddress:
            if value == DEPLOYER:
                return to_checksum_address(deployer)
            if not is_address(value):
                raise DeploymentError(
                    f"network {self.name}: {role} {value!r} is neither {DEPLOYER!r} nor an address"
                )
            return to_checksum_address(value)

        def resolve_all(values: Sequence[str], role: str) -> tuple[ChecksumAddress, ...]:
            return tuple(dict.fromkeys(resolve(v, role) for v in values))

        return {
            DEFAULT_ADMIN_ROLE: (resolve(self.roles.admin, "admin"),),
            "REGISTRAR_ROLE": resolve_all(self.roles.registrar, "registrar"),
            "ATTESTER_ROLE": resolve_all(self.roles.attester, "attester"),
            "PAUSER_ROLE": resolve_all(self.roles.pauser, "pauser"),
        }

    @property
    def deploys_mock_token(self) -> bool:
        return self.token == MOCK_TOKEN


def load_networks(
    path: Path = DEFAULT_NETWORKS_FILE, *, environ: Mapping[str, str] | None = None
) -> dict[str, NetworkConfig]:
    """The networks of a ``networks.toml`` file (``[networks.<name>]`` tables), with environment
    references expanded (relative paths stay relative to the working directory).

    Raises:
        DeploymentError: the file cannot be read or a network is malformed.
    """
    env = os.environ if environ is None else environ
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DeploymentError(f"cannot read networks file {path}: {exc}") from exc
    tables = data.get("networks")
    if not isinstance(tables, dict) or not tables:
        raise DeploymentError(f"{path} defines no [networks.<name>] table")
    networks: dict[str, NetworkConfig] = {}
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise DeploymentError(f"{path}: networks.{name} is not a table")
        missing: list[str] = []
        urls: list[str] = []
        url_missing: list[str] = []
        for url in table.get("rpc_urls", []):
            unset: list[str] = []
            expanded = _expand(url, env, unset)
            if expanded is not None:
                urls.append(expanded)
            elif not url_missing:
                url_missing = unset  # the first URL's variables are the ones to ask for
        if not urls:
            missing.extend(url_missing)
        rest = {k: v for k, v in table.items() if k != "rpc_urls"}
        expanded_rest = _expand_tree(rest, env, missing)
        try:
            networks[name] = NetworkConfig(
                name=name,
                rpc_urls=tuple(urls),
                missing_env=tuple(dict.fromkeys(missing)),
                **expanded_rest,
            )
        except ValidationError as exc:
            raise DeploymentError(f"{path}: network {name} is malformed:\n{exc}") from exc
    return networks


def _expand(value: str, environ: Mapping[str, str], missing: list[str]) -> str | None:
    """``value`` with ``${NAME}`` / ``${NAME:-default}`` replaced; None if a variable is unset."""
    unset: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ and environ[name] != "":
            return environ[name]
        if default is not None:
            return default
        unset.append(name)
        return match.group(0)

    result = _ENV_REFERENCE.sub(replace, value)
    missing.extend(unset)
    return None if unset else result


def _expand_tree(value: Any, environ: Mapping[str, str], missing: list[str]) -> Any:
    if isinstance(value, str):
        expanded = _expand(value, environ, missing)
        return value if expanded is None else expanded
    if isinstance(value, dict):
        return {k: _expand_tree(v, environ, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_tree(v, environ, missing) for v in value]
    return value


# ====================================================================== the manifest


class ContractRecord(_Frozen):
    """One deployed contract."""

    address: str
    tx_hash: str
    block_number: int
    abi_hash: str = Field(description="keccak256 of the artifact's ABI (canonical JSON).")
    bytecode_hash: str = Field(
        description="keccak256 of the artifact's unlinked creation code, as hex text."
    )
    runtime_code_hash: str = Field(description="keccak256 of the code on chain after deployment.")
    constructor_args: dict[str, Any] = Field(default_factory=dict)


class CompilerRecord(_Frozen):
    version: str
    settings: dict[str, Any]


class PendingAdminTransfer(_Frozen):
    """A begun default-admin transfer: ``new_admin`` accepts it after ``accept_after``."""

    new_admin: str
    accept_after: int
    tx_hash: str


class Manifest(_Frozen):
    """``deploy/deployments/<network>.json``: what was deployed where, from which build."""

    format: Literal["twin-bridge-deployment-1"] = MANIFEST_FORMAT
    network: str
    chain_id: int
    contracts: dict[str, ContractRecord]
    libraries: dict[str, str]
    payment_token: str
    compiler: CompilerRecord
    deployer: str
    roles: dict[str, list[str]] = Field(
        description="Role constant name -> accounts holding it when the deployment finished."
    )
    pending_admin: PendingAdminTransfer | None = None
    created_at: datetime

    @property
    def ledger_address(self) -> ChecksumAddress:
        return to_checksum_address(self.contracts[LEDGER].address)

    @property
    def token_address(self) -> ChecksumAddress:
        return to_checksum_address(self.payment_token)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2) + "\n"


def load_manifest(path: Path) -> Manifest:
    """Reads a deployment manifest.

    Raises:
        DeploymentError: the file is missing or not a manifest.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DeploymentError(f"cannot read deployment manifest {path}: {exc}") from exc
    try:
        manifest = Manifest.model_validate_json(text)
    except ValidationError as exc:
        raise DeploymentError(f"{path} is not a deployment manifest:\n{exc}") from exc
    if LEDGER not in manifest.contracts:
        raise DeploymentError(f"{path} records no {LEDGER}")
    return manifest


def write_manifest(path: Path, manifest: Manifest) -> None:
    """Writes ``manifest`` to ``path`` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(manifest.to_json(), encoding="utf-8")
    staging.replace(path)


def abi_hash(artifact: Artifact) -> str:
    """keccak256 of the ABI as canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(artifact.abi, sort_keys=True, separators=(",", ":"))
    return "0x" + keccak(text=canonical).hex()


def bytecode_hash(artifact: Artifact) -> str:
    """keccak256 of the unlinked creation code's hex text (library placeholders are not hex)."""
    return "0x" + keccak(text=artifact.bytecode.lower()).hex()


def code_hash(code: bytes) -> str:
    return "0x" + keccak(code).hex()


def runtime_code_matches(artifact: Artifact, code: bytes, libraries: Mapping[str, str]) -> bool:
    """Whether ``code`` (from the chain) is ``artifact``'s runtime code once deployed.

    Library placeholders must hold the given library addresses; other bytes may differ only where
    the artifact has zero bytes (immutables, which the constructor fills, and a library's own
    address), and the length must be equal.
    """
    expected = artifact.deployed_bytecode[2:]
    for source_libs in artifact.link_references.items():
        source, libs = source_libs
        for lib in libs:
            placeholder = "__$" + keccak(text=f"{source}:{lib}").hex()[:34] + "$__"
            if lib not in libraries:
                return False
            expected = expected.replace(placeholder, libraries[lib].lower().removeprefix("0x"))
    if "__$" in expected:
        return False
    want = bytes.fromhex(expected)
    if len(want) != len(code):
        return False
    return all(a == b or a == 0 for a, b in zip(want, code, strict=True))


# ====================================================================== verification


def chain_id_of(w3: Web3) -> int:
    """The RPC's chain id, or DeploymentError in words when it cannot be asked."""
    try:
        return int(w3.eth.chain_id)
    except Exception as exc:  # any failure to reach the node means the same here
        raise DeploymentError(f"cannot reach the RPC {_endpoint(w3)}: {exc}") from exc


def _endpoint(w3: Web3) -> str:
    return str(getattr(w3.provider, "endpoint_uri", None) or w3.provider)


def _artifacts_for(manifest: Manifest, artifacts_dir: Path | None) -> dict[str, Artifact]:
    try:
        return {
            name: load_artifact(name, artifacts_dir=artifacts_dir) for name in manifest.contracts
        }
    except ToolchainError as exc:
        raise DeploymentError(str(exc)) from exc


def manifest_problems(
    w3: Web3, manifest: Manifest, *, artifacts_dir: Path | None = None
) -> list[str]:
    """Every way ``manifest`` disagrees with the chain at ``w3`` or with the current artifacts,
    in plain words; empty when it matches."""
    chain_id = chain_id_of(w3)
    if chain_id != manifest.chain_id:
        return [
            f"the RPC {_endpoint(w3)} is chain {chain_id}, but the manifest of network "
            f"{manifest.network} is for chain {manifest.chain_id}"
        ]
    problems: list[str] = []
    artifacts = _artifacts_for(manifest, artifacts_dir)
    for name, record in manifest.contracts.items():
        artifact = artifacts[name]
        if abi_hash(artifact) != record.abi_hash or bytecode_hash(artifact) != record.bytecode_hash:
            problems.append(
                f"the compiled {name} differs from the one deployed at {record.address} on "
                f"{manifest.created_at:%Y-%m-%d %H:%M} UTC (the contracts changed since): "
                "redeploy, or build the deployed sources"
            )
        code = bytes(w3.eth.get_code(to_checksum_address(record.address)))
        if not code:
            problems.append(
                f"no contract at {record.address} ({name}) on chain {chain_id}: the chain was "
                "reset, or the manifest belongs to another chain"
            )
        elif code_hash(code) != record.runtime_code_hash:
            problems.append(
                f"the code at {record.address} ({name}) is not the code deployed there "
                f"(hash {code_hash(code)}, manifest {record.runtime_code_hash})"
            )
        elif not runtime_code_matches(artifact, code, manifest.libraries):
            problems.append(f"the code at {record.address} ({name}) is not the compiled {name}")
    return problems


def verify_manifest(w3: Web3, manifest: Manifest, *, artifacts_dir: Path | None = None) -> None:
    """Checks that ``w3`` is the manifest's chain and that every contract's code on chain is the
    one deployed and the one compiled.

    Raises:
        DeploymentError: naming each disagreement.
    """
    problems = manifest_problems(w3, manifest, artifacts_dir=artifacts_dir)
    if problems:
        raise DeploymentError(
            f"deployment {manifest.network} does not match the chain: " + "; ".join(problems)
        )


def connect(rpc_urls: Sequence[str], *, timeout: float = 30.0) -> Web3:
    """A Web3 on the first of ``rpc_urls`` that answers.

    Raises:
        DeploymentError: none answers.
    """
    if not rpc_urls:
        raise DeploymentError("no RPC URL configured")
    errors: list[str] = []
    for url in rpc_urls:
        w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout}))
        try:
            w3.eth.chain_id  # noqa: B018 - a round trip to see that it answers
        except Exception as exc:  # any failure means: try the next
            errors.append(f"{url}: {type(exc).__name__}")
            continue
        return w3
    raise DeploymentError(f"no RPC answers ({'; '.join(errors)})")


def apply_deployment(settings: Settings) -> Settings:
    """``settings`` with the ledger address of its deployment manifest (``TWIN_BRIDGE_DEPLOYMENT``),
    after checking the manifest against the chain; unchanged when no manifest is named.

    Raises:
        DeploymentError: the manifest does not match the chain or the artifacts, or names another
            ledger than ``TWIN_BRIDGE_LEDGER_ADDRESS``.
    """
    if settings.deployment is None:
        return settings
    manifest = load_manifest(settings.deployment)
    verify_manifest(connect(settings.rpc_urls), manifest)
    if settings.ledger_address is not None and to_checksum_address(settings.ledger_address) != (
        manifest.ledger_address
    ):
        raise DeploymentError(
            f"TWIN_BRIDGE_LEDGER_ADDRESS {settings.ledger_address} is not the ledger of "
            f"{settings.deployment} ({manifest.ledger_address})"
        )
    return settings.model_copy(update={"ledger_address": manifest.ledger_address})


# ====================================================================== deploying


@dataclass(frozen=True)
class PlannedStep:
    """One transaction of a deployment: gas as estimated (or a fixed guess where the contract it
    calls does not exist yet), cost at the fees of the moment and at the cap."""

    description: str
    gas: int
    gas_estimated: bool
    cost_wei: int
    max_cost_wei: int


@dataclass(frozen=True)
class DeployOutcome:
    manifest: Manifest | None
    action: Literal["deployed", "unchanged", "dry-run"]
    steps: tuple[PlannedStep, ...] = ()

    @property
    def total_cost_wei(self) -> int:
        return sum(step.cost_wei for step in self.steps)


@dataclass(frozen=True)
class _Fees:
    base_fee: int
    priority_fee: int
    max_fee: int

    @property
    def current(self) -> int:
        """What a unit of gas costs now: base fee plus tip."""
        return min(self.max_fee, self.base_fee + self.priority_fee)


@dataclass(frozen=True)
class _Tx:
    description: str
    data: HexBytes
    to: ChecksumAddress | None = None
    creates: str | None = None
    """Artifact name, for contract creations."""
    function: str | None = None


class _Deployer:
    """Sends one deployment's transactions, signed locally, and waits for them."""

    def __init__(
        self, w3: Web3, network: NetworkConfig, account: LocalAccount, console: Console
    ) -> None:
        self.w3 = w3
        self.network = network
        self.account = account
        self.console = console

    def fees(self) -> _Fees:
        block = self.w3.eth.get_block("latest")
        base_fee = int(block.get("baseFeePerGas", 0))
        try:
            tip = int(self.w3.eth.max_priority_fee)
        except Exception:  # nodes without eth_maxPriorityFeePerGas
            tip = 10**9
        cap = self.network.max_fee_per_gas_wei
        if base_fee > cap:
            raise DeploymentError(
                f"the base fee on {self.network.name} is {base_fee:,} wei, above the network's "
                f"fee cap of {cap:,} wei (max_fee_per_gas_wei): wait for cheaper blocks or "
                "raise the cap"
            )
        max_fee = min(cap, 2 * base_fee + tip)
        return _Fees(base_fee=base_fee, priority_fee=min(tip, max_fee), max_fee=max_fee)

    def estimate(self, tx: _Tx) -> int:
        params: TxParams = {"from": self.account.address, "data": tx.data}
        if tx.to is not None:
            params["to"] = tx.to
        try:
            return int(self.w3.eth.estimate_gas(params))
        except Exception as exc:  # reverts and RPC errors alike stop the deploy
            raise DeploymentError(f"{tx.description} would fail: {exc}") from exc

    def send(self, tx: _Tx, nonce: int, fees: _Fees) -> HexBytes:
        gas = int(self.estimate(tx) * GAS_MARGIN)
        params: TxParams = {
            "type": 2,
            "chainId": self.network.chain_id,
            "nonce": nonce,  # type: ignore[typeddict-item]
            "gas": gas,
            "maxFeePerGas": fees.max_fee,  # type: ignore[typeddict-item]
            "maxPriorityFeePerGas": fees.priority_fee,  # type: ignore[typeddict-item]
            "value": 0,  # type: ignore[typeddict-item]
            "data": tx.data,
        }
        if tx.to is not None:
            params["to"] = tx.to
        signed = self.account.sign_transaction(params)  # type: ignore[arg-type]
        try:
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        except Exception as exc:  # report the node's refusal in words
            raise DeploymentError(f"the node refused {tx.description}: {exc}") from exc
        self.console.print(f"  sent {tx.description}: {tx_hash.to_0x_hex()}", highlight=False)
        return HexBytes(tx_hash)

    def send_all(self, txs: Sequence[_Tx], nonce: int) -> tuple[list[TxReceipt], int]:
        """Sends ``txs`` with consecutive nonces from ``nonce``, then waits for every receipt."""
        fees = self.fees()
        hashes = [self.send(tx, nonce + i, fees) for i, tx in enumerate(txs)]
        receipts: list[TxReceipt] = []
        for tx, tx_hash in zip(txs, hashes, strict=True):
            try:
                receipt = self.w3.eth.wait_for_transaction_receipt(
                    tx_hash,
                    timeout=self.network.receipt_timeout_s,
                    poll_latency=min(1.0, self.network.block_time_s / 4),
                )
            except TimeExhausted as exc:
                raise DeploymentError(
                    f"{tx.description} ({tx_hash.to_0x_hex()}) was not mined within "
                    f"{self.network.receipt_timeout_s:.0f} s"
                ) from exc
            if receipt["status"] != 1:
                raise DeploymentError(f"{tx.description} reverted in {tx_hash.to_0x_hex()}")
            self.console.print(
                f"  [green]✓[/] {tx.description}: block {receipt['blockNumber']}, "
                f"gas {receipt['gasUsed']:,}",
                highlight=False,
            )
            receipts.append(receipt)
        return receipts, nonce + len(txs)

    def wait_confirmations(self, receipts: Sequence[TxReceipt]) -> None:
        """Waits until the last receipt has ``confirmations`` blocks (its own included) and checks
        that no receipt moved to another block meanwhile."""
        if not receipts:
            return
        target = max(int(r["blockNumber"]) for r in receipts) + self.network.confirmations - 1
        deadline = time.monotonic() + self.network.receipt_timeout_s
        with self.console.status(
            f"waiting for {self.network.confirmations} confirmation(s) (block {target})"
        ):
            while self.w3.eth.block_number < target:
                if time.monotonic() > deadline:
                    raise DeploymentError(f"block {target} did not come within the timeout")
                time.sleep(min(1.0, self.network.block_time_s / 4))
        for receipt in receipts:
            again = self.w3.eth.get_transaction_receipt(receipt["transactionHash"])
            if again is None or again["blockHash"] != receipt["blockHash"]:
                raise DeploymentError(
                    f"transaction {receipt['transactionHash'].to_0x_hex()} was reorganised out "
                    "of its block while waiting for confirmations: run the deployment again"
                )
        self.console.print(
            f"  [green]✓[/] {self.network.confirmations} confirmation(s) at block {target}",
            highlight=False,
        )


def _gwei(wei: int) -> str:
    return f"{wei / 10**9:,.3f} gwei"


def _eth(wei: int) -> str:
    return f"{wei / 10**18:.6f} ETH"


def _load(name: str, artifacts_dir: Path | None) -> Artifact:
    try:
        return load_artifact(name, artifacts_dir=artifacts_dir)
    except ToolchainError as exc:
        raise DeploymentError(str(exc)) from exc


def _config_drift(manifest: Manifest, network: NetworkConfig, deployer: str) -> list[str]:
    """How the network's configuration differs from what the manifest deployed."""
    drift: list[str] = []
    args = manifest.contracts[LEDGER].constructor_args
    if args.get("adminDelay") != network.admin_delay:
        drift.append(f"admin delay {args.get('adminDelay')} -> {network.admin_delay}")
    if args.get("noticePeriod") != network.notice_period:
        drift.append(f"notice period {args.get('noticePeriod')} -> {network.notice_period}")
    if network.deploys_mock_token != (STABLECOIN in manifest.contracts) or (
        not network.deploys_mock_token
        and to_checksum_address(network.token) != manifest.token_address
    ):
        drift.append(f"token {manifest.token_address} -> {network.token}")
    wanted = network.role_holders(manifest.deployer)
    recorded = dict(manifest.roles)
    if manifest.pending_admin is not None:
        recorded[DEFAULT_ADMIN_ROLE] = [manifest.pending_admin.new_admin]
    for role, holders in wanted.items():
        if sorted(holders) != sorted(recorded.get(role, [])):
            drift.append(f"{role} {recorded.get(role, [])} -> {list(holders)}")
    if to_checksum_address(manifest.deployer) != to_checksum_address(deployer):
        drift.append(f"deployer {manifest.deployer} -> {deployer}")
    return drift


def deploy(
    w3: Web3,
    network: NetworkConfig,
    deployer: LocalAccount,
    *,
    manifest_path: Path,
    force: bool = False,
    dry_run: bool = False,
    console: Console | None = None,
    artifacts_dir: Path | None = None,
) -> DeployOutcome:
    """Deploys the ledger (libraries, optional mock token, roles) to ``network`` through ``w3`` and
    writes the manifest, unless the manifest already describes this very build and configuration.

    Args:
        w3: a connection to one of the network's RPC endpoints.
        network: the network, as ``load_networks`` returns it.
        deployer: signs and pays for every transaction.
        manifest_path: where the manifest is read from and written to.
        force: deploy anew even when a manifest exists and the code or configuration changed.
        dry_run: print the planned transactions with gas and cost; send nothing, write nothing.
        console: where progress goes (default: stderr).
        artifacts_dir: the build to deploy (default ``build/artifacts``).

    Raises:
        DeploymentError: wrong chain, fees above the cap, changed code or configuration without
            ``force``, a failed or reverted transaction.
    """
    console = console or Console(stderr=True, highlight=False)
    network.require_env()
    chain_id = chain_id_of(w3)
    if chain_id != network.chain_id:
        raise DeploymentError(
            f"the RPC {_endpoint(w3)} is chain {chain_id}, but network {network.name} is chain "
            f"{network.chain_id}: wrong RPC URL or wrong --network"
        )
    if network.deploys_mock_token and chain_id not in TEST_CHAIN_IDS:
        raise DeploymentError(
            f"network {network.name} asks for the mock token, which anyone can mint; it is "
            f"deployed only on test chains ({', '.join(map(str, sorted(TEST_CHAIN_IDS)))}): "
            "set token to the address of a real ERC-20"
        )
    if not network.deploys_mock_token and not is_address(network.token):
        raise DeploymentError(
            f"network {network.name}: token {network.token!r} is neither {MOCK_TOKEN!r} nor an "
            "address"
        )
    holders = network.role_holders(deployer.address)
    ledger_artifact = _load(LEDGER, artifacts_dir)

    if manifest_path.exists():
        manifest = load_manifest(manifest_path)
        if manifest.chain_id != chain_id:
            problems = [f"it is for chain {manifest.chain_id}, the RPC is chain {chain_id}"]
        else:
            problems = manifest_problems(w3, manifest, artifacts_dir=artifacts_dir)
            drift = _config_drift(manifest, network, deployer.address)
            if drift:
                problems.append("the network configuration changed: " + ", ".join(drift))
        if not problems:
            console.print(
                f"{network.name}: unchanged — ledger {manifest.ledger_address} matches the "
                f"build and the configuration ({manifest_path})",
                highlight=False,
            )
            return DeployOutcome(manifest=manifest, action="unchanged")
        if not force:
            raise DeploymentError(
                f"{manifest_path} records a deployment that differs from this one: "
                + "; ".join(problems)
                + ". Deploy anew with --force (the old contracts stay where they are)"
            )
        console.print(
            f"[yellow]forced:[/] deploying anew over {manifest_path}: " + "; ".join(problems),
            highlight=False,
        )

    sender = _Deployer(w3, network, deployer, console)
    nonce = int(w3.eth.get_transaction_count(deployer.address, "pending"))
    creations: list[_Tx] = []
    addresses: dict[str, ChecksumAddress] = {}
    artifacts: dict[str, Artifact] = {}

    def create(name: str, artifact: Artifact, data: HexBytes) -> None:
        addresses[name] = get_create_address(deployer.address, Nonce(nonce + len(creations)))
        artifacts[name] = artifact
        creations.append(_Tx(f"deploy {name}", data, creates=name))

    if network.deploys_mock_token:
        token_artifact = _load(STABLECOIN, artifacts_dir)
        create(STABLECOIN, token_artifact, HexBytes(token_artifact.bytecode))
        token = addresses[STABLECOIN]
    else:
        token = to_checksum_address(network.token)
    for lib in ledger_artifact.libraries:
        artifact = _load(lib, artifacts_dir)
        create(lib, artifact, HexBytes(artifact.bytecode))
    libraries = {lib: addresses[lib] for lib in ledger_artifact.libraries}
    constructor_args = {
        "token": token,
        "admin": to_checksum_address(deployer.address),
        "adminDelay": network.admin_delay,
        "noticePeriod": network.notice_period,
    }
    factory = w3.eth.contract(
        abi=ledger_artifact.abi, bytecode=ledger_artifact.linked_bytecode(libraries)
    )
    create(
        LEDGER,
        ledger_artifact,
        HexBytes(factory.constructor(*constructor_args.values()).data_in_transaction),
    )
    ledger_address = addresses[LEDGER]
    ledger = w3.eth.contract(address=ledger_address, abi=ledger_artifact.abi)
    role_ids = {name: HexBytes(keccak(text=name)) for name in ROLE_NAMES}
    role_ids[DEFAULT_ADMIN_ROLE] = HexBytes(bytes(32))

    def role_txs(on_chain: bool) -> list[_Tx]:
        """The role transactions still needed (all of them before the ledger exists)."""
        txs: list[_Tx] = []
        for role in ROLE_NAMES:
            for account in holders[role]:
                if on_chain and ledger.functions.hasRole(role_ids[role], account).call():
                    continue
                data = ledger.encode_abi("grantRole", [role_ids[role], account])
                txs.append(
                    _Tx(
                        f"grant {role} to {account}",
                        HexBytes(data),
                        ledger_address,
                        None,
                        "grantRole",
                    )
                )
        new_admin = holders[DEFAULT_ADMIN_ROLE][0]
        if new_admin != deployer.address:
            data = ledger.encode_abi("beginDefaultAdminTransfer", [new_admin])
            txs.append(
                _Tx(
                    f"begin the default-admin transfer to {new_admin}",
                    HexBytes(data),
                    ledger_address,
                    None,
                    "beginDefaultAdminTransfer",
                )
            )
        return txs

    if dry_run:
        return _dry_run(sender, network, creations, role_txs(on_chain=False), console)

    console.print(
        f"deploying to {network.name} (chain {chain_id}) from {deployer.address}, "
        f"nonce {nonce}, fee cap {_gwei(network.max_fee_per_gas_wei)}",
        highlight=False,
    )
    receipts, nonce = sender.send_all(creations, nonce)
    records_in: dict[str, TxReceipt] = {}
    for tx, receipt in zip(creations, receipts, strict=True):
        assert tx.creates is not None  # noqa: S101 - every creation names its artifact
        if receipt["contractAddress"] != addresses[tx.creates]:
            raise DeploymentError(
                f"{tx.creates} was created at {receipt['contractAddress']}, not at the expected "
                f"{addresses[tx.creates]}: did another transaction from the deployer interfere?"
            )
        records_in[tx.creates] = receipt
    roles_sent = role_txs(on_chain=True)
    role_receipts, nonce = sender.send_all(roles_sent, nonce)
    sender.wait_confirmations([*receipts, *role_receipts])

    contracts: dict[str, ContractRecord] = {}
    for name, receipt in records_in.items():
        artifact = artifacts[name]
        code = bytes(w3.eth.get_code(addresses[name]))
        if not runtime_code_matches(artifact, code, libraries):
            raise DeploymentError(
                f"the code deployed at {addresses[name]} is not the compiled {name}"
            )
        contracts[name] = ContractRecord(
            address=addresses[name],
            tx_hash=receipt["transactionHash"].to_0x_hex(),
            block_number=int(receipt["blockNumber"]),
            abi_hash=abi_hash(artifact),
            bytecode_hash=bytecode_hash(artifact),
            runtime_code_hash=code_hash(code),
            constructor_args=constructor_args if name == LEDGER else {},
        )
    roles_on_chain: dict[str, list[str]] = {}
    for role in (DEFAULT_ADMIN_ROLE, *ROLE_NAMES):
        candidates = dict.fromkeys([deployer.address, *holders[role]])
        roles_on_chain[role] = [
            account
            for account in candidates
            if ledger.functions.hasRole(role_ids[role], account).call()
        ]
    pending: PendingAdminTransfer | None = None
    new_admin_tx = next(
        (
            (tx, receipt)
            for tx, receipt in zip(roles_sent, role_receipts, strict=True)
            if tx.function == "beginDefaultAdminTransfer"
        ),
        None,
    )
    if new_admin_tx is not None:
        pending_admin, schedule = ledger.functions.pendingDefaultAdmin().call()
        pending = PendingAdminTransfer(
            new_admin=to_checksum_address(pending_admin),
            accept_after=int(schedule),
            tx_hash=new_admin_tx[1]["transactionHash"].to_0x_hex(),
        )
        console.print(
            f"  [yellow]![/] {pending.new_admin} must call acceptDefaultAdminTransfer() on the "
            f"ledger after {datetime.fromtimestamp(pending.accept_after, UTC):%Y-%m-%d %H:%M:%S} "
            f"UTC; until then the deployer stays admin",
            highlight=False,
        )
    manifest = Manifest(
        network=network.name,
        chain_id=chain_id,
        contracts=contracts,
        libraries=dict(libraries),
        payment_token=token,
        compiler=CompilerRecord(
            version=ledger_artifact.compiler_version, settings=dict(ledger_artifact.settings)
        ),
        deployer=to_checksum_address(deployer.address),
        roles=roles_on_chain,
        pending_admin=pending,
        created_at=datetime.now(UTC).replace(microsecond=0),
    )
    write_manifest(manifest_path, manifest)
    console.print(
        f"[green]deployed[/] {LEDGER} at {ledger_address} on {network.name}; manifest "
        f"{manifest_path}",
        highlight=False,
    )
    return DeployOutcome(manifest=manifest, action="deployed")


def _dry_run(
    sender: _Deployer,
    network: NetworkConfig,
    creations: Sequence[_Tx],
    calls: Sequence[_Tx],
    console: Console,
) -> DeployOutcome:
    fees = sender.fees()
    steps: list[PlannedStep] = []
    for tx in creations:
        gas = int(sender.estimate(tx) * GAS_MARGIN)
        steps.append(_step(tx.description, gas, True, fees))
    for tx in calls:
        assert tx.function is not None  # noqa: S101 - every call names its function
        steps.append(_step(tx.description, CALL_GAS_GUESS[tx.function], False, fees))
    table = Table(
        "#", "transaction", "gas limit", "cost now", "cost at the cap",
        title=f"dry run on {network.name}: base fee {_gwei(fees.base_fee)}, tip "
        f"{_gwei(fees.priority_fee)}, cap {_gwei(network.max_fee_per_gas_wei)}",
    )  # fmt: skip
    for i, step in enumerate(steps, 1):
        gas_text = f"{step.gas:,}" + ("" if step.gas_estimated else " (guess)")
        table.add_row(
            str(i), step.description, gas_text, _eth(step.cost_wei), _eth(step.max_cost_wei)
        )
    table.add_row(
        "",
        "total",
        f"{sum(s.gas for s in steps):,}",
        _eth(sum(s.cost_wei for s in steps)),
        _eth(sum(s.max_cost_wei for s in steps)),
    )
    console.print(table)
    console.print("dry run: nothing was sent and no manifest was written", highlight=False)
    return DeployOutcome(manifest=None, action="dry-run", steps=tuple(steps))


def _step(description: str, gas: int, estimated: bool, fees: _Fees) -> PlannedStep:
    return PlannedStep(
        description=description,
        gas=gas,
        gas_estimated=estimated,
        cost_wei=gas * fees.current,
        max_cost_wei=gas * fees.max_fee,
    )
