"""The ``twin-bridge`` command line."""

from __future__ import annotations

from typing import Annotated

import typer
from eth_utils.address import is_address, to_checksum_address
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url

from bridge.chain import toolchain
from bridge.cli.audit import register as register_audit_command
from bridge.cli.deploy import register as register_deploy_commands
from bridge.cli.deploy import with_deployment
from bridge.cli.model import model_app
from bridge.errors import BrandExistsError
from bridge.intake.api_keys import hash_api_key, new_api_key
from bridge.settings import Settings
from bridge.store import migrate
from bridge.store.repository import Store, create_brand, list_brands

app = typer.Typer(
    help="Twin Bridge: digital-twin licenses and royalties, settled on chain.",
    no_args_is_help=True,
)
db_app = typer.Typer(help="The bridge's database.", no_args_is_help=True)
brand_app = typer.Typer(help="Brands and their API keys.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(brand_app, name="brand")
app.add_typer(model_app, name="model")
register_deploy_commands(app)
register_audit_command(app)


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        _stderr().print(f"invalid TWIN_BRIDGE_* settings:\n{exc}", style="red", markup=False)
        raise typer.Exit(2) from exc


def _migrated_store(settings: Settings) -> Store:
    url = settings.resolved_database_url
    migrate.upgrade(url)
    return Store.from_url(url)


@app.callback()
def _root() -> None:
    """Twin Bridge command line."""


@app.command("compile")
def compile_command(
    force: Annotated[
        bool, typer.Option("--force", help="Recompile even if nothing changed.")
    ] = False,
) -> None:
    """Compile contracts/ into build/artifacts/ (one JSON file per contract)."""
    console = Console(stderr=True, highlight=False)
    try:
        result = toolchain.compile_contracts(force=force)
    except toolchain.ToolchainError as exc:
        console.print(str(exc), style="red", markup=False)
        raise typer.Exit(1) from exc
    for warning in result.warnings:
        console.print(warning, style="yellow", markup=False)
    solc = result.solc
    if result.compiled:
        verb = f"compiled {len(result.contracts)} contracts"
    else:
        verb = f"up to date, {len(result.contracts)} contracts"
    console.print(
        f"{verb} with solc {solc.version} ({solc.origin}: {solc.path}) -> {result.artifacts_dir}",
        markup=False,
        soft_wrap=True,
    )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the database migrations (TWIN_BRIDGE_DATABASE_URL, default SQLite in the data dir)."""
    settings = _settings()
    migrate.upgrade(settings.resolved_database_url)
    _stderr().print(
        f"database at {make_url(settings.resolved_database_url).render_as_string()} is up to date",
        markup=False,
    )


@brand_app.command("create")
def brand_create(
    name: Annotated[str, typer.Option("--name", help="The brand's name (unique).")],
    address: Annotated[str, typer.Option("--address", help="The brand's on-chain address.")],
) -> None:
    """Register a brand and print its API key (shown once; only its hash is stored)."""
    if not is_address(address):
        _stderr().print(f"{address!r} is not an Ethereum address", style="red", markup=False)
        raise typer.Exit(2)
    key = new_api_key()
    store = _migrated_store(_settings())
    try:
        with store.session() as session:
            brand = create_brand(
                session,
                name=name,
                address=to_checksum_address(address),
                api_key_hash=hash_api_key(key),
            )
    except BrandExistsError as exc:
        _stderr().print(str(exc), style="red", markup=False)
        raise typer.Exit(1) from exc
    finally:
        store.close()
    _stderr().print(
        f"brand {brand.id} {brand.name} ({brand.address}) created; its API key, shown only once:",
        markup=False,
    )
    typer.echo(key)


@brand_app.command("list")
def brand_list() -> None:
    """List the registered brands."""
    store = _migrated_store(_settings())
    try:
        with store.session() as session:
            brands = list_brands(session)
    finally:
        store.close()
    table = Table("id", "name", "address", "created")
    for brand in brands:
        table.add_row(str(brand.id), brand.name, brand.address, brand.created_at.isoformat())
    Console(highlight=False, width=200).print(table)


@app.command("worker")
def worker_command(
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve this process's Prometheus metrics on this TCP port."),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="Interface the metrics port listens on.")
    ] = "127.0.0.1",
) -> None:
    """Run the settlement worker until SIGTERM or Ctrl-C (the batch in flight stays stored and
    resumes on the next start)."""
    import signal
    import threading

    from prometheus_client import start_http_server

    from bridge.chain.client import Web3ChainClient
    from bridge.chain.signers import signers_from_settings
    from bridge.errors import BridgeError
    from bridge.settlement.worker import SettlementWorker, WorkerConfig

    settings = with_deployment(_settings())
    if not settings.rpc_urls or settings.ledger_address is None:
        _stderr().print(
            "the worker needs TWIN_BRIDGE_RPC_URL and TWIN_BRIDGE_LEDGER_ADDRESS",
            style="red",
            markup=False,
        )
        raise typer.Exit(2)
    chain = Web3ChainClient(settings.rpc_urls)
    try:
        attester, relayer = signers_from_settings(settings, chain_id=chain.chain_id())
    except BridgeError as exc:
        _stderr().print(str(exc), style="red", markup=False)
        raise typer.Exit(2) from exc
    store = _migrated_store(settings)
    worker = SettlementWorker(
        store=store,
        chain=chain,
        attester=attester,
        relayer=relayer,
        config=WorkerConfig.from_settings(settings),
    )
    if metrics_port is not None:
        start_http_server(metrics_port, addr=metrics_host, registry=worker.metrics.registry)
        _stderr().print(
            f"worker metrics on http://{metrics_host}:{metrics_port}/metrics", markup=False
        )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    _stderr().print(
        f"settling for relayer {relayer.address} (attester {attester.address}) on chain "
        f"{chain.chain_id()} through {', '.join(settings.rpc_urls)}",
        markup=False,
        soft_wrap=True,
    )
    try:
        worker.run(stop)
    finally:
        store.close()


@app.command("indexer")
def indexer_command() -> None:
    """Index the ledger's confirmed events into the store until SIGTERM or Ctrl-C (resumes from
    its cursor on the next start; rewinds on reorgs deeper than the confirmation depth)."""
    import signal
    import threading

    from bridge.chain.client import Web3ChainClient
    from bridge.deploy.deployment import LEDGER, load_manifest
    from bridge.errors import BridgeError
    from bridge.indexer.indexer import Indexer

    settings = with_deployment(_settings())
    if not settings.rpc_urls or settings.ledger_address is None:
        _stderr().print(
            "the indexer needs TWIN_BRIDGE_RPC_URL and TWIN_BRIDGE_LEDGER_ADDRESS",
            style="red",
            markup=False,
        )
        raise typer.Exit(2)
    start = settings.indexer_start_block
    if start is None and settings.deployment is not None:
        start = load_manifest(settings.deployment).contracts[LEDGER].block_number
    chain = Web3ChainClient(settings.rpc_urls)
    store = _migrated_store(settings)
    indexer = Indexer(
        store,
        chain,
        ledger_address=settings.ledger_address,
        confirmations=settings.confirmations,
        start_block=start or 0,
        max_block_range=settings.indexer_max_block_range,
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    cursor = indexer.cursor()
    _stderr().print(
        f"indexing ledger {indexer.ledger} on chain {chain.chain_id()} from block "
        f"{indexer.start_block if cursor is None else cursor + 1} with "
        f"{settings.confirmations} confirmation(s) through {', '.join(settings.rpc_urls)}",
        markup=False,
        soft_wrap=True,
    )
    try:
        indexer.run(stop, poll_s=settings.indexer_poll_s)
    except BridgeError as exc:  # a log the ABI cannot decode, a store of another ledger
        _stderr().print(f"indexer stopped: {exc}", style="red", markup=False, soft_wrap=True)
        raise typer.Exit(1) from exc
    finally:
        store.close()


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="API processes. More than one: each listens on its own SO_REUSEPORT socket, so "
            "the kernel spreads connections over them; /metrics sums them; rate limits are "
            "counted in each.",
        ),
    ] = 1,
    access_log: Annotated[
        bool, typer.Option(help="Log every request (uvicorn's access log).")
    ] = True,
) -> None:
    """Serve the brand API (migrates the database first)."""
    from bridge.api import create_app
    from bridge.api.serving import serve as serve_api

    try:
        api = create_app(with_deployment(_settings()))
    except ValueError as exc:
        _stderr().print(str(exc), style="red", markup=False)
        raise typer.Exit(2) from exc
    try:
        serve_api(api, host=host, port=port, workers=workers, access_log=access_log)
    except OSError as exc:
        _stderr().print(f"cannot listen on {host}:{port}: {exc}", style="red", markup=False)
        raise typer.Exit(1) from exc


@app.command("dev")
def dev_command(
    rpc_port: Annotated[int, typer.Option(help="Port of the local anvil chain.")] = 8545,
    api_port: Annotated[int, typer.Option(help="Port of the brand API.")] = 8000,
    block_time: Annotated[
        float,
        typer.Option(
            min=0.1,
            help="Seconds between blocks. The worker settles usages once the chain's time has "
            "passed their time of use, so the chain keeps mining even when idle.",
        ),
    ] = 1.0,
) -> None:
    """Run the whole system locally: anvil (state kept in the data dir), the contracts, a demo
    world, the API, the settlement worker and the indexer, until Ctrl-C."""
    import signal
    import threading

    from bridge.devstack.stack import DevError, DevOptions, DevStack

    settings = _settings()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stack = DevStack(
        DevOptions(
            data_dir=settings.data_dir,
            rpc_port=rpc_port,
            api_port=api_port,
            block_time=block_time,
        )
    )
    try:
        stack.run(stop)
    except DevError as exc:
        _stderr().print(str(exc), style="red", markup=False)
        raise typer.Exit(1) from exc
    _stderr().print("dev stack stopped; chain state saved", markup=False)


def main() -> None:
    """Entry point of the ``twin-bridge`` console script."""
    app()
