"""Alembic environment: runs on the engine that ``bridge.store.migrate`` hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine, text

from bridge.store.models import Base

engine = context.config.attributes["engine"]
assert isinstance(engine, Engine)  # noqa: S101 - set by bridge.store.migrate

MIGRATION_LOCK = 0x7477696E_62726467
"""PostgreSQL advisory lock key ("twinbrdg") held while migrating: one process at a time."""

with engine.begin() as connection:
    if connection.dialect.name == "postgresql":
        # Held to the end of this transaction, so the next process reads the version after it.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
