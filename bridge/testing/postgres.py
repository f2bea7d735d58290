"""Throwaway PostgreSQL databases for the tests and the ingest benchmark: made with a random name
on a server reached through its admin URL, and dropped at the end."""

from __future__ import annotations

import secrets

import psycopg
from sqlalchemy.engine import make_url


def conninfo(url: str, dbname: str | None = None) -> str:
    """libpq's ``key=value`` connection string of a SQLAlchemy URL (``dbname`` overrides its
    database)."""
    parsed = make_url(url)
    parts = {
        "host": parsed.host or "127.0.0.1",
        "port": str(parsed.port or 5432),
        "user": parsed.username or "postgres",
        "dbname": dbname or parsed.database or "postgres",
    }
    if parsed.password:
        parts["password"] = str(parsed.password)
    return " ".join(f"{k}={v}" for k, v in parts.items())


def create_database(admin_url: str, prefix: str, *, connect_timeout: int | None = None) -> str:
    """A new empty database ``<prefix><random>`` on ``admin_url``'s server: its name.

    Raises:
        psycopg.Error: the server did not answer or refused.
    """
    name = f"{prefix}{secrets.token_hex(6)}"
    with psycopg.connect(
        conninfo(admin_url), connect_timeout=connect_timeout, autocommit=True
    ) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_databases(admin_url: str, *names: str) -> None:
    """Drops these databases (connections to them closed by force)."""
    with psycopg.connect(conninfo(admin_url), autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_url(admin_url: str, name: str) -> str:
    """``admin_url`` with database ``name`` (its password kept)."""
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)
