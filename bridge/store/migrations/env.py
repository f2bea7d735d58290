"""Alembic environment: runs on the engine that ``bridge.store.migrate`` hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from bridge.store.models import Base

engine = context.config.attributes["engine"]
assert isinstance(engine, Engine)  # noqa: S101 - set by bridge.store.migrate

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
