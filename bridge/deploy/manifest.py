"""``deploy/deployments/<network>.json``: what was deployed where, from which build.

The manifest records each contract's address (the ledger's access manager among them), transaction
and block, the hashes of its ABI, its creation code and the code on chain, the libraries, the
token, the compiler, the ledger's settings (``Config``), the roles and their delay;
``manifest_problems`` / ``verify_manifest`` check it against the chain and the current build, and
``apply_deployment`` gives the bridge's settings the ledger it names.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from pydantic import Field, ValidationError
from web3 import Web3

from bridge.chain.deploy import ACCESS_MANAGER, LEDGER
from bridge.chain.ledger import LedgerConfig
from bridge.chain.toolchain import Artifact, ToolchainError, load_artifact
from bridge.deploy.errors import DeploymentError
from bridge.deploy.networks import FrozenModel, chain_id_of, connect, endpoint_of

if TYPE_CHECKING:
    from bridge.settings import Settings

MANIFEST_FORMAT: Final = "twin-bridge-deployment-2"


class ContractRecord(FrozenModel):
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


class CompilerRecord(FrozenModel):
    version: str
    settings: dict[str, Any]


class Manifest(FrozenModel):
    """``deploy/deployments/<network>.json``: what was deployed where, from which build."""

    format: Literal["twin-bridge-deployment-2"] = MANIFEST_FORMAT
    network: str
    chain_id: int
    contracts: dict[str, ContractRecord]
    libraries: dict[str, str]
    payment_token: str
    compiler: CompilerRecord
    deployer: str
    ledger_config: dict[str, int] = Field(
        description="The ledger's Config: notice_period, spending_period, raise_delay (seconds), "
        "default_per_usage, default_per_period (token base units)."
    )
    role_delay: int = Field(
        description="Grant delay of the registrar, attester and pauser roles and the admin's "
        "execution delay, in seconds."
    )
    roles: dict[str, list[str]] = Field(
        description="Role name -> accounts holding it in the access manager when the deployment "
        "finished."
    )
    created_at: datetime

    @property
    def ledger_address(self) -> ChecksumAddress:
        return to_checksum_address(self.contracts[LEDGER].address)

    @property
    def access_manager_address(self) -> ChecksumAddress:
        return to_checksum_address(self.contracts[ACCESS_MANAGER].address)

    @property
    def config(self) -> LedgerConfig:
        return LedgerConfig.of(self.ledger_config)

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
    for name in (LEDGER, ACCESS_MANAGER):
        if name not in manifest.contracts:
            raise DeploymentError(f"{path} records no {name}")
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
    for source, libs in artifact.link_references.items():
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


def load_artifacts(names: Iterable[str], artifacts_dir: Path | None) -> dict[str, Artifact]:
    """The build's artifacts of ``names`` (default build: ``build/artifacts``).

    Raises:
        DeploymentError: one is not built.
    """
    try:
        return {name: load_artifact(name, artifacts_dir=artifacts_dir) for name in names}
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
            f"the RPC {endpoint_of(w3)} is chain {chain_id}, but the manifest of network "
            f"{manifest.network} is for chain {manifest.chain_id}"
        ]
    problems: list[str] = []
    artifacts = load_artifacts(manifest.contracts, artifacts_dir)
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
