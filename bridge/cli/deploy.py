"""``twin-bridge deploy``, ``twin-bridge doctor`` and ``twin-bridge keystore new``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final

import typer
from rich.console import Console

from bridge.cli.common import (
    DevOption,
    announce,
    dev_stack,
    fail,
    load_settings,
    no_secret_file,
    stderr,
)
from bridge.errors import BridgeError

if TYPE_CHECKING:
    from bridge.deploy.networks import NetworkConfig
    from bridge.devstack.datadir import RunningStack
    from bridge.settings import Settings

DEFAULT_NETWORKS_FILE: Final = Path(__file__).resolve().parents[2] / "deploy" / "networks.toml"
"""``bridge.deploy.networks.DEFAULT_NETWORKS_FILE`` (a test keeps them equal: this module does not
import web3, to start fast)."""
DEFAULT_BATCHES: Final = 10
"""``bridge.deploy.doctor.DEFAULT_BATCHES`` (a test keeps them equal)."""

keystore_app = typer.Typer(help="Encrypted keystore (v3) files.", no_args_is_help=True)

NetworkOption = Annotated[
    str, typer.Option("--network", help="A network of the networks file (local, sepolia, ...).")
]
NetworksOption = Annotated[
    Path, typer.Option("--networks", help="The networks file.", dir_okay=False)
]
ManifestOption = Annotated[
    Path | None,
    typer.Option(
        "--manifest", help="Deployment manifest (default deploy/deployments/<network>.json)."
    ),
]


def network_config(name: str, networks_file: Path) -> NetworkConfig:
    """Network ``name`` of ``networks_file``; exits 2 when the file or the network is not there."""
    from bridge.deploy.errors import DeploymentError
    from bridge.deploy.networks import load_networks

    try:
        networks = load_networks(networks_file)
    except DeploymentError as exc:
        raise fail(str(exc), 2) from exc
    if name not in networks:
        raise fail(f"no network {name!r} in {networks_file}; there are: {', '.join(networks)}", 2)
    return networks[name]


def deploy_command(
    network: NetworkOption,
    networks_file: NetworksOption = DEFAULT_NETWORKS_FILE,
    manifest: ManifestOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Deploy anew although the code or config changed.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Show the transactions with gas and cost; send nothing."),
    ] = False,
) -> None:
    """Deploy the ledger to a network and write its manifest (nothing to do if unchanged)."""
    from bridge.deploy.deployer import deploy
    from bridge.deploy.networks import connect

    config = network_config(network, networks_file)
    console = stderr()
    try:
        config.require_env()
        deployer = config.load_deployer()
        w3 = connect(config.rpc_urls)
        outcome = deploy(
            w3,
            config,
            deployer,
            manifest_path=manifest or config.default_manifest_path(),
            force=force,
            dry_run=dry_run,
            console=console,
        )
    except BridgeError as exc:
        raise fail(str(exc), 1) from exc
    if outcome.manifest is not None:
        typer.echo(outcome.manifest.ledger_address)


def _dev_network(config: NetworkConfig, stack: RunningStack) -> NetworkConfig:
    """The network ``config`` on the dev stack's RPC, with the role holders its ``dev.json``
    names (the dev stack may run on other ports than the networks file says)."""
    from bridge.deploy.networks import RolesConfig

    roles = stack.roles
    return config.model_copy(
        update={
            "rpc_urls": (stack.rpc_url,),
            "roles": RolesConfig(
                admin=roles["admin"],
                registrar=(roles["registrar"],),
                attester=(roles["attester"],),
                pauser=(roles["pauser"],),
            ),
        }
    )


def _dev_settings(settings: Settings, stack: RunningStack) -> Settings:
    """``settings`` with the dev stack's attester and relayer keys, unless keys are set: the
    stack's worker signs with them, not with the caller's environment."""
    from pydantic import SecretStr

    if settings.attester_keystore is not None or settings.attester_private_key is not None:
        return settings
    keys = stack.bridge_keys
    if "attester" not in keys or "relayer" not in keys:
        raise fail(f"{stack.dev_json} names no bridge keys: restart the dev stack", 2)
    return settings.model_copy(
        update={
            "attester_private_key": SecretStr(keys["attester"]),
            "relayer_private_key": SecretStr(keys["relayer"]),
        }
    )


def doctor_command(
    dev: DevOption = False,
    network: Annotated[
        str | None,
        typer.Option(
            "--network",
            help="A network of the networks file (local, sepolia, ...); with --dev, or when a dev "
            "stack runs and none is given: local, on the dev stack.",
        ),
    ] = None,
    networks_file: NetworksOption = DEFAULT_NETWORKS_FILE,
    manifest: ManifestOption = None,
    batches: Annotated[
        int,
        typer.Option(
            "--batches", min=1, help="The relayer must afford this many batches at the fee cap."
        ),
    ] = DEFAULT_BATCHES,
) -> None:
    """Check a network for the bridge: RPCs, chain id, keys, contracts, roles, relayer balance.
    Exits 1 if any check fails.

    On a running dev stack (``--dev``, or ``--network local`` while ``make run`` serves its RPC)
    the manifest and the bridge's keys are the stack's own, from its ``dev.json``.
    """
    from bridge.deploy.doctor import run_doctor

    stack = dev_stack(asked=dev, elsewhere=network is not None)
    if stack is None and network is None:
        raise fail("give --network NAME, or --dev on a running dev stack (`make run`)", 2)
    config = network_config(network or "local", networks_file)
    settings = load_settings()
    if stack is None and network is not None:
        from bridge.devstack.datadir import running_stack

        running = running_stack(settings.data_dir)
        stack = running if running is not None and running.rpc_url in config.rpc_urls else None
        if stack is not None:
            announce(stack)
    elif stack is not None and network is None:
        config = _dev_network(config, stack)
    if stack is not None:
        settings = _dev_settings(settings, stack)
        manifest = manifest or stack.deployment
    checks = run_doctor(
        config,
        settings,
        manifest_path=manifest or config.default_manifest_path(),
        batches=batches,
    )
    console = Console(highlight=False, soft_wrap=True)
    marks = {True: "[green]✓[/]", False: "[red]✗[/]", None: "[yellow]-[/]"}
    for check in checks:
        console.print(f"{marks[check.ok]} {check.name}: ", end="")
        console.print(check.detail, markup=False)
    failed = [check for check in checks if check.ok is False]
    if failed:
        console.print(f"[red]{len(failed)} of {len(checks)} checks failed[/]")
        raise typer.Exit(1)
    console.print(f"[green]network {config.name} is ready[/]")


@keystore_app.command("new")
def keystore_new(
    out: Annotated[
        Path, typer.Option("--out", help="The keystore file to write (must not exist).")
    ],
    password_file: Annotated[
        Path | None,
        typer.Option("--password-file", help="Read the password from this file's first line."),
    ] = None,
) -> None:
    """Create a new key and write it as an encrypted keystore v3 file; prints its address."""
    from eth_account import Account

    if out.exists():
        raise fail(f"{out} exists; refusing to overwrite a key", 2)
    if password_file is not None:
        if not password_file.is_file():
            raise fail(no_secret_file("--password-file"), 2)
        lines = password_file.read_text(encoding="utf-8").splitlines()
        password = lines[0] if lines else ""
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    if not password:
        raise fail("an empty password protects nothing", 2)
    account = Account.create()
    encrypted = Account.encrypt(account.key, password)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(encrypted, handle)
    stderr().print(f"wrote keystore {out} for", markup=False)
    typer.echo(account.address)


def register(app: typer.Typer) -> None:
    """Adds ``deploy``, ``doctor`` and ``keystore`` to the ``twin-bridge`` app."""
    app.command("deploy")(deploy_command)
    app.command("doctor")(doctor_command)
    app.add_typer(keystore_app, name="keystore")
