"""``twin-bridge deploy``: deploy the ledger to a named network and record it in a manifest.

A deployment is planned (``bridge.deploy.plan``: every transaction, from the manifest and the
network's configuration), then either priced and printed (the dry run) or executed (each
transaction signed locally and sent by ``bridge.deploy.sending``, so it works against any RPC
endpoint) and recorded (``deploy/deployments/<network>.json``, ``bridge.deploy.manifest``).
Running it again with unchanged code and configuration does nothing; changed code or
configuration is refused unless forced.

Roles live in the ledger's access manager (OpenZeppelin ``AccessManager``) and are set at deploy
time from the network's configuration (``bridge.chain.deploy.access_calls``): ``mint`` is mapped to
REGISTRAR_ROLE and ``pause``/``unpause`` to PAUSER_ROLE; the configured registrars, attesters and
pausers are granted while no grant delay exists, so they count at once; then those roles get the
network's ``role_delay`` as their grant delay (the manager applies it after its ``minSetback``,
five days) and the configured admin gets the admin role with ``role_delay`` as its execution delay,
so every later admin action (a new attester, registrar or pauser among them) is scheduled and
waits. When the configured admin is not the deployer, the deployer renounces the admin role last.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal, NamedTuple

from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils.address import is_address, to_checksum_address
from rich.console import Console
from rich.table import Table
from web3 import Web3
from web3.types import TxReceipt

from bridge.chain.deploy import LEDGER, MOCK_DECIMALS, STABLECOIN
from bridge.chain.ledger import ROLE_IDS
from bridge.deploy.errors import DeploymentError
from bridge.deploy.manifest import (
    ContractRecord,
    Manifest,
    abi_hash,
    bytecode_hash,
    code_hash,
    load_artifacts,
    load_manifest,
    manifest_problems,
    runtime_code_matches,
    write_manifest,
)
from bridge.deploy.networks import (
    MOCK_TOKEN,
    TEST_CHAIN_IDS,
    NetworkConfig,
    chain_id_of,
    endpoint_of,
)
from bridge.deploy.plan import (
    Creation,
    DeployPlan,
    ManagerCall,
    has_role,
    plan_deployment,
    token_decimals,
)
from bridge.deploy.sending import GAS_MARGIN, FeeQuote, Sender

CALL_GAS_GUESS: Final = {
    "setTargetFunctionRole": 80_000,
    "grantRole": 60_000,
    "setGrantDelay": 60_000,
    "renounceRole": 30_000,
}
LEDGER_GAS_GUESS: Final = 6_600_000
"""Gas limit of the ledger's creation in a dry run, where its extension, which its constructor asks
for its settings, does not exist yet: enough for a ledger at the 24,576-byte code-size limit
(200 gas a byte) with the margin; the ledger now takes 4,044,339 on anvil."""
"""Gas of access manager calls in a dry run, where the manager does not exist yet to estimate
against (measured on anvil: 52,678 and 76,998 to map the mint and the pause functions, 53,953 a
grant, 50,164 a grant delay, 24,687 a renunciation)."""


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


class Executed(NamedTuple):
    """The receipts of an executed plan."""

    creations: tuple[TxReceipt, ...]
    """One per creation of the plan, in its order."""
    calls: tuple[tuple[ManagerCall, TxReceipt], ...]
    """The access manager calls that were needed, with their receipts."""


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
    chain_id = _check_network(w3, network)
    holders = network.role_holders(deployer.address)
    ledger_artifact = load_artifacts([LEDGER], artifacts_dir)[LEDGER]
    if manifest_path.exists():
        manifest = load_manifest(manifest_path)
        problems = _differences(w3, manifest, network, deployer.address, chain_id, artifacts_dir)
        if not problems:
            return _unchanged(network, manifest, manifest_path, console)
        _override(manifest_path, problems, force=force, console=console)
    plan = plan_deployment(
        w3,
        network,
        deployer.address,
        chain_id=chain_id,
        holders=holders,
        ledger_artifact=ledger_artifact,
        artifacts_dir=artifacts_dir,
    )
    sender = Sender(w3, network, deployer, console)
    if dry_run:
        return _dry_run(plan, sender, console)
    manifest = record(w3, plan, execute(plan, sender, console), console)
    write_manifest(manifest_path, manifest)
    console.print(
        f"[green]deployed[/] {LEDGER} at {plan.ledger_address} on {network.name}; manifest "
        f"{manifest_path}",
        highlight=False,
    )
    return DeployOutcome(manifest=manifest, action="deployed")


# ---------------------------------------------------------------- before planning


def _check_network(w3: Web3, network: NetworkConfig) -> int:
    """The chain id of ``w3``, once it is the network's and the network's token can be used."""
    network.require_env()
    chain_id = chain_id_of(w3)
    if chain_id != network.chain_id:
        raise DeploymentError(
            f"the RPC {endpoint_of(w3)} is chain {chain_id}, but network {network.name} is chain "
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
    return chain_id


def _differences(
    w3: Web3,
    manifest: Manifest,
    network: NetworkConfig,
    deployer: str,
    chain_id: int,
    artifacts_dir: Path | None,
) -> list[str]:
    """How an existing manifest differs from the chain, the build and the configuration."""
    if manifest.chain_id != chain_id:
        return [f"it is for chain {manifest.chain_id}, the RPC is chain {chain_id}"]
    problems = manifest_problems(w3, manifest, artifacts_dir=artifacts_dir)
    decimals = MOCK_DECIMALS if network.deploys_mock_token else token_decimals(w3, network.token)
    drift = _config_drift(manifest, network, deployer, decimals)
    if drift:
        problems.append("the network configuration changed: " + ", ".join(drift))
    return problems


def _config_drift(
    manifest: Manifest, network: NetworkConfig, deployer: str, decimals: int
) -> list[str]:
    """How the network's configuration differs from what the manifest deployed."""
    drift: list[str] = []
    wanted = network.ledger_config(decimals).as_dict()
    for name, value in manifest.ledger_config.items():
        if wanted.get(name) != value:
            drift.append(f"{name.replace('_', ' ')} {value} -> {wanted.get(name)}")
    if manifest.role_delay != network.role_delay:
        drift.append(f"role delay {manifest.role_delay} -> {network.role_delay}")
    if network.deploys_mock_token != (STABLECOIN in manifest.contracts) or (
        not network.deploys_mock_token
        and to_checksum_address(network.token) != manifest.token_address
    ):
        drift.append(f"token {manifest.token_address} -> {network.token}")
    for role, holders in network.role_holders(manifest.deployer).items():
        if sorted(holders) != sorted(manifest.roles.get(role, [])):
            drift.append(f"{role} {manifest.roles.get(role, [])} -> {list(holders)}")
    if to_checksum_address(manifest.deployer) != to_checksum_address(deployer):
        drift.append(f"deployer {manifest.deployer} -> {deployer}")
    return drift


def _unchanged(
    network: NetworkConfig, manifest: Manifest, manifest_path: Path, console: Console
) -> DeployOutcome:
    console.print(
        f"{network.name}: unchanged — ledger {manifest.ledger_address} matches the "
        f"build and the configuration ({manifest_path})",
        highlight=False,
    )
    return DeployOutcome(manifest=manifest, action="unchanged")


def _override(manifest_path: Path, problems: list[str], *, force: bool, console: Console) -> None:
    """Deploying over a manifest that differs: refused unless forced."""
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


# ---------------------------------------------------------------- the dry run


def _dry_run(plan: DeployPlan, sender: Sender, console: Console) -> DeployOutcome:
    """Prices every transaction of ``plan`` and prints them; sends nothing."""
    quote = sender.quote()
    *before, ledger = plan.creations
    steps = [
        *(_step(c.description, int(sender.estimate(c) * GAS_MARGIN), True, quote)
          for c in before),
        _step(ledger.description, LEDGER_GAS_GUESS, False, quote),
        *(_step(c.description, CALL_GAS_GUESS[c.function], False, quote) for c in plan.calls),
    ]  # fmt: skip
    console.print(_dry_run_table(plan.network, quote, steps))
    console.print("dry run: nothing was sent and no manifest was written", highlight=False)
    return DeployOutcome(manifest=None, action="dry-run", steps=tuple(steps))


def _step(description: str, gas: int, estimated: bool, quote: FeeQuote) -> PlannedStep:
    return PlannedStep(
        description=description,
        gas=gas,
        gas_estimated=estimated,
        cost_wei=gas * quote.per_gas_now,
        max_cost_wei=gas * quote.fees.max_fee,
    )


def _dry_run_table(network: NetworkConfig, quote: FeeQuote, steps: list[PlannedStep]) -> Table:
    table = Table(
        "#", "transaction", "gas limit", "cost now", "cost at the cap",
        title=f"dry run on {network.name}: base fee {_gwei(quote.base_fee)}, tip "
        f"{_gwei(quote.fees.priority)}, cap {_gwei(network.max_fee_per_gas_wei)}",
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
    return table


def _gwei(wei: int) -> str:
    return f"{wei / 10**9:,.3f} gwei"


def _eth(wei: int) -> str:
    return f"{wei / 10**18:.6f} ETH"


# ---------------------------------------------------------------- execute


def execute(plan: DeployPlan, sender: Sender, console: Console) -> Executed:
    """Sends the creations, then the access manager calls still needed once the contracts exist,
    and waits for the confirmations."""
    console.print(
        f"deploying to {plan.network.name} (chain {plan.chain_id}) from {plan.deployer}, "
        f"nonce {plan.nonce}, fee cap {_gwei(plan.network.max_fee_per_gas_wei)}",
        highlight=False,
    )
    # The ledger's constructor asks its extension for its settings: the ledger is estimated and
    # sent once everything before it is mined.
    *before, ledger = plan.creations
    receipts = [
        *sender.send_all(before, plan.nonce),
        *sender.send_all([ledger], plan.nonce + len(before)),
    ]
    for creation, receipt in zip(plan.creations, receipts, strict=True):
        _check_created(creation, receipt)
    calls = [c for c in plan.calls if c.grant is None or not has_role(plan.manager, *c.grant)]
    call_receipts = sender.send_all(calls, plan.nonce + len(plan.creations))
    sender.wait_confirmations([*receipts, *call_receipts])
    return Executed(tuple(receipts), tuple(zip(calls, call_receipts, strict=True)))


def _check_created(creation: Creation, receipt: TxReceipt) -> None:
    if receipt["contractAddress"] != creation.address:
        raise DeploymentError(
            f"{creation.name} was created at {receipt['contractAddress']}, not at the expected "
            f"{creation.address}: did another transaction from the deployer interfere?"
        )


# ---------------------------------------------------------------- record


def record(w3: Web3, plan: DeployPlan, executed: Executed, console: Console) -> Manifest:
    """The manifest of an executed plan, from the chain: the code deployed (checked against the
    build), the ledger's settings and the roles held."""
    contracts = {
        creation.name: _contract_record(w3, plan, creation, receipt)
        for creation, receipt in zip(plan.creations, executed.creations, strict=True)
    }
    roles = {role: _role_holders(plan, role) for role in ROLE_IDS}
    if plan.network.role_delay:
        _say_delays(plan, console)
    return Manifest(
        network=plan.network.name,
        chain_id=plan.chain_id,
        contracts=contracts,
        libraries=dict(plan.libraries),
        payment_token=plan.token,
        compiler=plan.compiler,
        deployer=plan.deployer,
        ledger_config=plan.config.as_dict(),
        role_delay=plan.network.role_delay,
        roles=roles,
        created_at=datetime.now(UTC).replace(microsecond=0),
    )


def _contract_record(
    w3: Web3, plan: DeployPlan, creation: Creation, receipt: TxReceipt
) -> ContractRecord:
    code = bytes(w3.eth.get_code(creation.address))
    if not runtime_code_matches(creation.artifact, code, plan.libraries):
        raise DeploymentError(
            f"the code deployed at {creation.address} is not the compiled {creation.name}"
        )
    return ContractRecord(
        address=creation.address,
        tx_hash=receipt["transactionHash"].to_0x_hex(),
        block_number=int(receipt["blockNumber"]),
        abi_hash=abi_hash(creation.artifact),
        bytecode_hash=bytecode_hash(creation.artifact),
        runtime_code_hash=code_hash(code),
        constructor_args=plan.constructor_args.get(creation.name, {}),
    )


def _role_holders(plan: DeployPlan, role: str) -> list[str]:
    """Who holds ``role`` now, of the deployer and the configured holders."""
    candidates: dict[ChecksumAddress, None] = dict.fromkeys([plan.deployer, *plan.holders[role]])
    return [account for account in candidates if has_role(plan.manager, role, account)]


def _say_delays(plan: DeployPlan, console: Console) -> None:
    """When the grant delays take effect (the manager's setback), and that the admin now waits."""
    setback = int(plan.manager.functions.minSetback().call())
    delay = plan.network.role_delay
    console.print(
        f"  [yellow]![/] every admin action now waits {delay:,} s (schedule, then execute); the "
        f"{delay:,} s grant delay of the registrar, attester and pauser roles takes effect "
        f"{setback:,} s after this deployment (the access manager's minSetback)",
        highlight=False,
    )
