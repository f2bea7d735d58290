"""The bridge's settings: one pydantic-settings class, read from ``TWIN_BRIDGE_*`` variables.

Build it once at the edge (the CLI, a test) and pass it in; nothing deeper reads the environment.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Self

from pydantic import Field, PositiveFloat, PositiveInt, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bridge.domain.codec import MAX_QUANTITY

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
    max_batch_events: PositiveInt = Field(
        default=MAX_BATCH_EVENTS, le=MAX_BATCH_EVENTS, description="Most events per POST."
    )
    max_body_bytes: PositiveInt = Field(default=1024 * 1024, description="Larger bodies get 413.")
    group_commit_max_events: int = Field(
        default=2000,
        ge=0,
        description="Concurrent usage reports share one transaction, up to this many events "
        "(a larger request goes alone); 0: one transaction per request.",
    )
    rate_limit_per_s: PositiveFloat = Field(
        default=200.0,
        description="Requests/s per brand, counted in each API process (serve --workers N: N "
        "buckets per brand).",
    )
    action_rate_limit_per_s: PositiveFloat = Field(
        default=1.0, description="Relayed owner actions per second per signer (burst 10)."
    )
    rate_limit_burst: PositiveInt = Field(default=400, description="Token-bucket size per brand.")
    usage_max_age: timedelta = Field(
        default=timedelta(days=35), description="Older times of use are refused (ISO 8601 or s)."
    )
    usage_max_ahead: timedelta = Field(
        default=timedelta(minutes=5), description="Times of use further ahead are refused."
    )
    max_quantity: PositiveInt = Field(
        default=1_000_000, le=MAX_QUANTITY, description="Largest quantity of one usage event."
    )
    rpc_url: str | None = Field(default=None, description="JSON-RPC endpoint of the chain.")
    ledger_address: str | None = Field(default=None, description="Deployed TwinLedger address.")
    deployment: Path | None = Field(
        default=None,
        description="Deployment manifest (deploy/deployments/<network>.json): the ledger address "
        "is taken from it after checking it against the chain at rpc_url.",
    )
    license_cache_ttl_s: float = Field(
        default=10.0, ge=0, description="Seconds the API caches a license check's answer."
    )
    rpc_fallback_urls: list[str] = Field(
        default_factory=list, description="Further RPC endpoints, tried when rpc_url fails."
    )
    indexer_start_block: int | None = Field(
        default=None,
        ge=0,
        description="First block the indexer reads when the store has no cursor yet; defaults to "
        "the ledger's deployment block from the manifest, else 0.",
    )
    indexer_max_block_range: PositiveInt = Field(
        default=2000, description="Most blocks per eth_getLogs (halved while the node refuses)."
    )
    indexer_poll_s: PositiveFloat = Field(
        default=1.0, description="Wait between indexer steps once no confirmed block is left."
    )

    batch_size: PositiveInt = Field(default=500, le=5000, description="Usages per settle tx.")
    batch_max_age: timedelta = Field(
        default=timedelta(seconds=2), description="Settle a smaller batch once its oldest is older."
    )
    batch_deadline_s: PositiveInt = Field(default=3600, description="Signed batch validity.")
    confirmations: int = Field(
        default=1, ge=0, le=1000, description="Blocks on top (incl. its own) before settled."
    )
    max_fee_per_gas_wei: PositiveInt = Field(
        default=500 * 10**9, description="Cap on the EIP-1559 max fee per gas."
    )
    worker_poll_s: PositiveFloat = Field(
        default=0.2, description="Wait between worker steps when nothing moved."
    )
    replace_after: timedelta = Field(
        default=timedelta(seconds=60),
        description="Replace a pending settlement tx with a fee bump after this long.",
    )
    worker_lease_ttl: timedelta = Field(
        default=timedelta(seconds=30),
        description="A worker that has not renewed its relayer lease this long is replaced.",
    )
    max_settle_attempts: PositiveInt = Field(
        default=3,
        description="Reverted batches (estimation or on chain) a usage is in before it is held.",
    )
    reorg_watch_blocks: int = Field(
        default=64,
        ge=0,
        le=100_000,
        description="Confirmed batches of the last this many blocks are checked to be still in "
        "their block (a reorg deeper than the confirmation depth); 0 turns the watch off.",
    )
    attester_keystore: Path | None = Field(
        default=None, description="Keystore v3 file of the key that signs usage batches."
    )
    relayer_keystore: Path | None = Field(
        default=None, description="Keystore v3 file of the key that sends transactions."
    )
    keystore_password: SecretStr | None = Field(
        default=None, description="Password of the keystores (prefer keystore_password_file)."
    )
    keystore_password_file: Path | None = Field(
        default=None, description="File holding the keystores' password."
    )
    attester_private_key: SecretStr | None = Field(
        default=None, description="Raw key, accepted on local dev chains (31337, 1337) only."
    )
    relayer_private_key: SecretStr | None = Field(
        default=None, description="Raw key, accepted on local dev chains (31337, 1337) only."
    )

    @model_validator(mode="after")
    def _chain_settings_come_together(self) -> Self:
        if self.deployment is not None:
            if self.rpc_url is None:
                raise ValueError("deployment needs rpc_url")
        elif (self.rpc_url is None) != (self.ledger_address is None):
            raise ValueError("rpc_url and ledger_address must be set together")
        return self

    @property
    def rpc_urls(self) -> list[str]:
        """``rpc_url`` then the fallbacks."""
        return ([self.rpc_url] if self.rpc_url else []) + list(self.rpc_fallback_urls)

    @property
    def resolved_database_url(self) -> str:
        """``database_url``, or the SQLite file under ``data_dir``."""
        if self.database_url is not None:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'bridge.db').as_posix()}"
