"""``twin-bridge db``: the bridge's database."""

from __future__ import annotations

import typer
from sqlalchemy.engine import make_url

from bridge.cli.common import load_settings, stderr
from bridge.store import migrate

db_app = typer.Typer(help="The bridge's database.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the database migrations (TWIN_BRIDGE_DATABASE_URL, default SQLite in the data dir)."""
    settings = load_settings()
    migrate.upgrade(settings.resolved_database_url)
    stderr().print(
        f"database at {make_url(settings.resolved_database_url).render_as_string()} is up to date",
        markup=False,
    )


def register(app: typer.Typer) -> None:
    """Adds ``db`` to the ``twin-bridge`` app."""
    app.add_typer(db_app, name="db")
