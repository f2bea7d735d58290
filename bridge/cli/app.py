"""The ``twin-bridge`` command line: one typer app assembled from one module per command group
(``bridge.cli.db``, ``brand``, ``model``, ``deploy``, ``audit``, ``contracts``, ``services``,
``dev``); their shared helpers are in ``bridge.cli.common``.

A command's module is imported only when that command runs (or its help is shown): web3,
eth-account, SQLAlchemy and FastAPI take seconds to import, and ``twin-bridge --help`` or a
model's ``show`` need none of them. ``COMMANDS`` names each command's module and its one-line help
(a test keeps them equal to the commands' own)."""

from __future__ import annotations

import importlib
from typing import Any, Final

import typer
from typer.core import TyperCommand, TyperGroup

COMMANDS: Final[dict[str, tuple[str, str]]] = {
    "deploy": (
        "bridge.cli.deploy",
        "Deploy the ledger to a network and write its manifest (nothing to do if unchanged).",
    ),
    "doctor": (
        "bridge.cli.deploy",
        "Check a network for the bridge: RPCs, chain id, keys, contracts, roles, relayer balance.",
    ),
    "audit": (
        "bridge.cli.audit",
        "Rebuild the ledger from its events alone (no bridge database) and check it.",
    ),
    "compile": (
        "bridge.cli.contracts",
        "Compile contracts/ into build/artifacts/ (one JSON file per contract).",
    ),
    "worker": ("bridge.cli.services", "Run the settlement worker until SIGTERM or Ctrl-C."),
    "indexer": (
        "bridge.cli.services",
        "Index the ledger's confirmed events into the store until SIGTERM or Ctrl-C.",
    ),
    "serve": ("bridge.cli.services", "Serve the brand API (migrates the database first)."),
    "db": ("bridge.cli.db", "The bridge's database."),
    "brand": (
        "bridge.cli.brand",
        "Brands and their API keys; a brand's offers, acceptances, spending limits and escrow.",
    ),
    "model": (
        "bridge.cli.model",
        "A model's owner actions (signed locally, relayed gas-free) and earnings.",
    ),
    "keystore": ("bridge.cli.deploy", "Encrypted keystore (v3) files."),
    "dev": ("bridge.cli.dev", "Run the whole system locally."),
}
"""Command -> the module whose ``register`` adds it, and the command's one-line help."""


def load_command(name: str) -> Any:
    """The click command ``name``, its module imported and registered on a typer app of its own."""
    holder = typer.Typer()
    importlib.import_module(COMMANDS[name][0]).register(holder)
    return typer.main.get_group(holder).commands[name]


class LazyCommands(TyperGroup):
    """The root group: it lists ``COMMANDS`` with their one-line help and imports a command's
    module only when the command is used."""

    _listing = False

    @property  # type: ignore[override]
    def commands(self) -> dict[str, Any]:
        """Every command, loaded (for tools that walk the tree, like the README's reference)."""
        return {name: load_command(name) for name in COMMANDS}

    @commands.setter
    def commands(self, _value: dict[str, Any]) -> None:
        """click's constructor sets it; the commands are ``COMMANDS``."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in COMMANDS:
            return None
        if self._listing:
            return TyperCommand(cmd_name, help=COMMANDS[cmd_name][1])
        return load_command(cmd_name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(
    help="Twin Bridge: digital-twin licenses and royalties, settled on chain.",
    no_args_is_help=True,
    cls=LazyCommands,
)


@app.callback()
def _root() -> None:
    """Twin Bridge command line."""


def main() -> None:
    """Entry point of the ``twin-bridge`` console script."""
    app()
