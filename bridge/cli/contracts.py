"""``twin-bridge compile``: the contracts, compiled with the pinned solc."""

from __future__ import annotations

from typing import Annotated

import typer

from bridge.chain import toolchain
from bridge.cli.common import fail, stderr


def compile_command(
    force: Annotated[
        bool, typer.Option("--force", help="Recompile even if nothing changed.")
    ] = False,
) -> None:
    """Compile contracts/ into build/artifacts/ (one JSON file per contract)."""
    try:
        result = toolchain.compile_contracts(force=force)
    except toolchain.ToolchainError as exc:
        raise fail(str(exc), 1) from exc
    console = stderr()
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


def register(app: typer.Typer) -> None:
    """Adds ``compile`` to the ``twin-bridge`` app."""
    app.command("compile")(compile_command)
