"""``twin-bridge serve``, ``worker`` and ``indexer``: the bridge's long-running services."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from bridge.cli.common import (
    fail,
    load_settings,
    migrated_store,
    stderr,
    stop_on_signals,
    with_deployment,
)
from bridge.errors import BridgeError

if TYPE_CHECKING:
    from bridge.chain.client import Web3ChainClient
    from bridge.indexer.follow import Indexer
    from bridge.settings import Settings


def _chain_settings(service: str) -> tuple[Settings, str]:
    """The settings with the deployment applied, and the ledger's address; exits 2 unless they
    name a chain and a ledger."""
    settings = with_deployment(load_settings())
    if not settings.rpc_urls or settings.ledger_address is None:
        raise fail(f"the {service} needs TWIN_BRIDGE_RPC_URL and TWIN_BRIDGE_LEDGER_ADDRESS", 2)
    return settings, settings.ledger_address


def _say(text: str) -> None:
    stderr().print(text, markup=False, soft_wrap=True)


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
    from prometheus_client import start_http_server

    from bridge.chain.client import Web3ChainClient
    from bridge.chain.signers import signers_from_settings
    from bridge.settlement.worker import SettlementWorker, WorkerConfig

    settings, _ = _chain_settings("worker")
    chain = Web3ChainClient(settings.rpc_urls)
    try:
        attester, relayer = signers_from_settings(settings, chain_id=chain.chain_id())
    except BridgeError as exc:
        raise fail(str(exc), 2) from exc
    store = migrated_store(settings)
    worker = SettlementWorker(
        store=store,
        chain=chain,
        attester=attester,
        relayer=relayer,
        config=WorkerConfig.from_settings(settings),
    )
    if metrics_port is not None:
        start_http_server(metrics_port, addr=metrics_host, registry=worker.metrics.registry)
        _say(f"worker metrics on http://{metrics_host}:{metrics_port}/metrics")
    stop = stop_on_signals()
    _say(
        f"settling for relayer {relayer.address} (attester {attester.address}) on chain "
        f"{chain.chain_id()} through {', '.join(settings.rpc_urls)}"
    )
    try:
        worker.run(stop)
    finally:
        store.close()


def _indexer_start_block(settings: Settings) -> int:
    """``TWIN_BRIDGE_INDEXER_START_BLOCK``, else the ledger's deployment block, else 0."""
    from bridge.chain.deploy import LEDGER
    from bridge.deploy.manifest import load_manifest

    start = settings.indexer_start_block
    if start is None and settings.deployment is not None:
        start = load_manifest(settings.deployment).contracts[LEDGER].block_number
    return start or 0


def indexer_command() -> None:
    """Index the ledger's confirmed events into the store until SIGTERM or Ctrl-C (resumes from
    its cursor on the next start; rewinds on reorgs deeper than the confirmation depth)."""
    from bridge.chain.client import Web3ChainClient
    from bridge.indexer.follow import Indexer

    settings, ledger = _chain_settings("indexer")
    start = _indexer_start_block(settings)
    chain = Web3ChainClient(settings.rpc_urls)
    store = migrated_store(settings)
    indexer = Indexer(
        store,
        chain,
        ledger_address=ledger,
        confirmations=settings.confirmations,
        start_block=start,
        max_block_range=settings.indexer_max_block_range,
    )
    stop = stop_on_signals()
    _announce_indexer(indexer, chain, settings)
    try:
        indexer.run(stop, poll_s=settings.indexer_poll_s)
    except BridgeError as exc:  # a log the ABI cannot decode, a store of another ledger
        raise fail(f"indexer stopped: {exc}", 1) from exc
    finally:
        store.close()


def _announce_indexer(indexer: Indexer, chain: Web3ChainClient, settings: Settings) -> None:
    cursor = indexer.cursor()
    _say(
        f"indexing ledger {indexer.ledger} on chain {chain.chain_id()} from block "
        f"{indexer.start_block if cursor is None else cursor + 1} with "
        f"{settings.confirmations} confirmation(s) through {', '.join(settings.rpc_urls)}"
    )


def serve_command(
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
        api = create_app(with_deployment(load_settings()))
    except ValueError as exc:
        raise fail(str(exc), 2) from exc
    try:
        serve_api(api, host=host, port=port, workers=workers, access_log=access_log)
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc}", 1) from exc


def register(app: typer.Typer) -> None:
    """Adds ``worker``, ``indexer`` and ``serve`` to the ``twin-bridge`` app."""
    app.command("worker")(worker_command)
    app.command("indexer")(indexer_command)
    app.command("serve")(serve_command)
