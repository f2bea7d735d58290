"""The bridge's settings: one pydantic-settings class, read from ``TWIN_BRIDGE_*`` variables.

Build it once at the edge (the CLI, a test) and pass it in; nothing deeper reads the environment.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Self

from pydantic import Field, PositiveFloat, PositiveInt, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bridge.codec import MAX_QUANTITY

MAX_BATCH_EVENTS = 1000


class Settings(BaseSettings):
    """Everything the API, the store and the CLI need, with the defaults of a local dev setup."""

    model_config = SettingsConfigDict(env_prefix="TWIN_BRIDGE_", extra="forbid", frozen=True)

    data_dir: Path = Field(default=Path(".twin-bridge"), description="Local state directory.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; defaults to SQLite at <data_dir>/bridge.db. "
        "PostgreSQL: postgresql+psycopg://user@host/db",
    )
    max_batch_events: PositiveInt = Field(default=MAX_BATCH_EVENTS, le=MAX_BATCH_EVENTS)
    max_body_bytes: PositiveInt = Field(default=1024 * 1024, description="Larger bodies get 413.")
    rate_limit_per_s: PositiveFloat = Field(default=200.0, description="Requests/s per brand.")
    rate_limit_burst: PositiveInt = Field(default=400, description="Token-bucket size per brand.")
    usage_max_age: timedelta = Field(default=timedelta(days=35))
    usage_max_ahead: timedelta = Field(default=timedelta(minutes=5))
    max_quantity: PositiveInt = Field(default=1_000_000, le=MAX_QUANTITY)
    rpc_url: str | None = Field(default=None, description="JSON-RPC endpoint of the chain.")
    ledger_address: str | None = Field(default=None, description="Deployed TwinLedger address.")
    license_cache_ttl_s: float = Field(default=10.0, ge=0)

    @model_validator(mode="after")
    def _chain_settings_come_together(self) -> Self:
        if (self.rpc_url is None) != (self.ledger_address is None):
            raise ValueError("rpc_url and ledger_address must be set together")
        return self

    @property
    def resolved_database_url(self) -> str:
        """``database_url``, or the SQLite file under ``data_dir``."""
        if self.database_url is not None:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'bridge.db').as_posix()}"
