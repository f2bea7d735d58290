"""The ``twin-bridge`` command line: one typer app assembled from one module per command group
(``bridge.cli.db``, ``brand``, ``model``, ``deploy``, ``audit``, ``contracts``, ``services``,
``dev``); their shared helpers are in ``bridge.cli.common``."""

from __future__ import annotations

import typer

from bridge.cli import audit, brand, contracts, db, deploy, dev, model, services

app = typer.Typer(
    help="Twin Bridge: digital-twin licenses and royalties, settled on chain.",
    no_args_is_help=True,
)


@app.callback()
def _root() -> None:
    """Twin Bridge command line."""


for group in (db, brand, model, deploy, audit, contracts, services, dev):
    group.register(app)


def main() -> None:
    """Entry point of the ``twin-bridge`` console script."""
    app()
