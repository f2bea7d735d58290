"""The ``twin-bridge`` command line."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from bridge import toolchain

app = typer.Typer(
    help="Twin Bridge: digital-twin licenses and royalties, settled on chain.",
    no_args_is_help=True,
)


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


def main() -> None:
    """Entry point of the ``twin-bridge`` console script."""
    app()
