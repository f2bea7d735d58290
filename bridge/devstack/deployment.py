"""The dev stack's ledger: the deployment kept in ``<data_dir>/deployment.json`` while the chain
still runs its code, else a new one with the demo's role holders."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console
from web3 import Web3

from bridge.deploy.deployer import deploy
from bridge.deploy.manifest import Manifest, load_manifest, manifest_problems
from bridge.deploy.networks import NetworkConfig, RolesConfig, load_networks
from bridge.devstack.datadir import seeded_ledger, timestamp
from bridge.devstack.demo import ATTESTER, DEPLOYER, PAUSER, REGISTRAR, dev_account
from bridge.devstack.options import DevError, DevOptions


@dataclass(frozen=True)
class DevDeployment:
    manifest: Manifest
    fresh: bool
    """Deployed by this start: the demo must be seeded on it."""

    @property
    def ledger(self) -> str:
        return self.manifest.ledger_address

    @property
    def token(self) -> str:
        return self.manifest.token_address

    @property
    def access_manager(self) -> str:
        return self.manifest.access_manager_address

    @property
    def contracts(self) -> dict[str, str]:
        return {name: record.address for name, record in self.manifest.contracts.items()}


def dev_network(options: DevOptions) -> NetworkConfig:
    """The ``local`` network of ``deploy/networks.toml`` (its ledger settings and role delay) on
    this stack's port, with the demo's role holders (one well-known dev account per role)."""
    local = load_networks()["local"]
    return local.model_copy(
        update={
            "rpc_urls": (options.rpc_url,),
            "block_time_s": options.block_time,
            "roles": RolesConfig(
                admin=dev_account(DEPLOYER).address,
                registrar=(dev_account(REGISTRAR).address,),
                attester=(dev_account(ATTESTER).address,),
                pauser=(dev_account(PAUSER).address,),
            ),
        }
    )


def _reusable(
    w3: Web3, options: DevOptions, network: NetworkConfig, console: Console
) -> DevDeployment | None:
    """The deployment of ``<data_dir>/deployment.json`` if it can be used as it is."""
    manifest = load_manifest(options.deployment_file)
    problems = (
        ["the demo was not seeded completely"]
        if seeded_ledger(options) != manifest.ledger_address
        else manifest_problems(w3, manifest)
    )
    if problems:
        console.print(f"deploying anew: {'; '.join(problems)}", markup=False, highlight=False)
        return None
    outcome = deploy(
        w3, network, dev_account(DEPLOYER), manifest_path=options.deployment_file, console=console
    )
    if outcome.action == "unchanged" and outcome.manifest is not None:
        return DevDeployment(outcome.manifest, fresh=False)
    return None


def ensure_deployment(w3: Web3, options: DevOptions, console: Console) -> DevDeployment:
    """The deployment of ``<data_dir>/deployment.json`` when this chain runs its code, it was
    compiled from the current sources and its demo was seeded; else a new one (the manifest of the
    old one is kept beside it)."""
    network = dev_network(options)
    path = options.deployment_file
    if path.exists():
        reused = _reusable(w3, options, network, console)
        if reused is not None:
            return reused
        path.replace(path.with_name(f"{path.name}.{timestamp()}.old"))
    outcome = deploy(w3, network, dev_account(DEPLOYER), manifest_path=path, console=console)
    if outcome.manifest is None:
        raise DevError(f"deploying to the dev chain gave no manifest ({outcome.action})")
    return DevDeployment(outcome.manifest, fresh=True)
