"""``twin-bridge dev``: the whole system on this machine (see :mod:`bridge.devstack.stack`)."""

from __future__ import annotations

from typing import Annotated

import typer

from bridge.cli.common import fail, load_settings, stderr, stop_on_signals


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
    from bridge.devstack.options import DevError, DevOptions
    from bridge.devstack.stack import DevStack

    settings = load_settings()
    stop = stop_on_signals()
    options = DevOptions(
        data_dir=settings.data_dir, rpc_port=rpc_port, api_port=api_port, block_time=block_time
    )
    try:
        DevStack(options).run(stop)
    except DevError as exc:
        raise fail(str(exc), 1) from exc
    stderr().print("dev stack stopped; chain state saved", markup=False)


def register(app: typer.Typer) -> None:
    """Adds ``dev`` to the ``twin-bridge`` app."""
    app.command("dev")(dev_command)
