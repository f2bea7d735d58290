"""Alembic migrations without an alembic.ini: ``upgrade(url)`` brings a database to the head."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from bridge.store.engine import make_engine, writer_lock

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    """An Alembic config that runs the bridge's migrations on ``engine``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def upgrade(url: str | Engine, revision: str = "head") -> None:
    """Applies the migrations up to ``revision`` (default: the newest). Processes starting at once
    on one database (API workers, the settlement worker, the indexer) take turns: on SQLite under
    the store's writer lock, on PostgreSQL under an advisory lock (``migrations/env.py``), so the
    first one migrates and the others find the database at the revision."""
    engine = make_engine(url) if isinstance(url, str) else url
    try:
        with writer_lock(engine):
            command.upgrade(alembic_config(engine), revision)
    finally:
        if isinstance(url, str):
            engine.dispose()


def downgrade(url: str | Engine, revision: str) -> None:
    """Reverts the migrations down to ``revision`` (``base`` for an empty database)."""
    engine = make_engine(url) if isinstance(url, str) else url
    try:
        command.downgrade(alembic_config(engine), revision)
    finally:
        if isinstance(url, str):
            engine.dispose()
