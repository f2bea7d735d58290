"""``twin-bridge brand``: brands and their API keys (the bridge operator's ``create`` and ``list``),
the brand's own side of its agreements (``offers``, ``accept``, ``decline``, ``limits``:
``bridge.cli.brand_offers``) and its money (``deposit``, ``withdraw-request``, ``withdraw``,
``escrow``: ``bridge.cli.brand_money``)."""

from __future__ import annotations

from typing import Annotated

import typer
from eth_utils.address import is_address, to_checksum_address
from rich.console import Console
from rich.table import Table

from bridge.cli import brand_attest, brand_money, brand_offers
from bridge.cli.common import fail, load_settings, migrated_store, stderr
from bridge.errors import BrandExistsError
from bridge.intake.api_keys import hash_api_key, new_api_key
from bridge.store.repository import create_brand, list_brands

brand_app = typer.Typer(
    help="Brands and their API keys; a brand's offers, acceptances, spending limits and escrow.",
    no_args_is_help=True,
)


@brand_app.command("create")
def brand_create(
    name: Annotated[str, typer.Option("--name", help="The brand's name (unique).")],
    address: Annotated[str, typer.Option("--address", help="The brand's on-chain address.")],
) -> None:
    """Register a brand and print its API key (shown once; only its hash is stored)."""
    if not is_address(address):
        raise fail(f"{address!r} is not an Ethereum address", 2)
    key = new_api_key()
    store = migrated_store(load_settings())
    try:
        with store.session() as session:
            brand = create_brand(
                session,
                name=name,
                address=to_checksum_address(address),
                api_key_hash=hash_api_key(key),
            )
    except BrandExistsError as exc:
        raise fail(str(exc), 1) from exc
    finally:
        store.close()
    stderr().print(
        f"brand {brand.id} {brand.name} ({brand.address}) created; its API key, shown only once:",
        markup=False,
    )
    typer.echo(key)


@brand_app.command("list")
def brand_list() -> None:
    """List the registered brands."""
    store = migrated_store(load_settings())
    try:
        with store.session() as session:
            brands = list_brands(session)
    finally:
        store.close()
    table = Table("id", "name", "address", "created")
    for brand in brands:
        table.add_row(str(brand.id), brand.name, brand.address, brand.created_at.isoformat())
    Console(highlight=False, width=200).print(table)


def register(app: typer.Typer) -> None:
    """Adds ``brand`` to the ``twin-bridge`` app."""
    brand_offers.add_commands(brand_app)
    brand_money.add_commands(brand_app)
    brand_attest.add_commands(brand_app)
    app.add_typer(brand_app, name="brand")
