"""``twin-bridge dev``: the whole system on this machine (see :mod:`bridge.devstack.stack`), and
``twin-bridge dev env``: the running stack's shell environment (:mod:`bridge.devstack.env`)."""

from __future__ import annotations

from typing import Annotated

import typer

from bridge.cli.common import fail, load_settings, stderr, stop_on_signals

dev_app = typer.Typer()


@dev_app.callback(invoke_without_command=True)
def dev_command(
    ctx: typer.Context,
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
    if ctx.invoked_subcommand is not None:
        return
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


@dev_app.command("env")
def env_command() -> None:
    """Print the running dev stack's environment as `export` lines: eval "$(twin-bridge dev env)".

    Its API and RPC URLs, a demo brand's API key and address, and keystores (anvil's public dev
    keys, written into the data dir) of that brand and of a demo model, as the README's examples
    use them.
    """
    from bridge.devstack.env import env_lines
    from bridge.devstack.options import DevError, DevOptions

    try:
        lines = env_lines(DevOptions(data_dir=load_settings().data_dir))
    except DevError as exc:
        raise fail(str(exc), 1) from exc
    typer.echo("\n".join(lines))


def register(app: typer.Typer) -> None:
    """Adds ``dev`` and ``dev env`` to the ``twin-bridge`` app."""
    app.add_typer(dev_app, name="dev")
