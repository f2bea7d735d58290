"""Settings come from TWIN_BRIDGE_* variables, with safe defaults and validation."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from bridge.settings import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATA_DIR", "DATABASE_URL", "RPC_URL", "LEDGER_ADDRESS", "MAX_QUANTITY"):
        monkeypatch.delenv(f"TWIN_BRIDGE_{name}", raising=False)


def test_defaults() -> None:
    settings = Settings()
    assert settings.resolved_database_url == "sqlite:///.twin-bridge/bridge.db"
    assert (settings.max_batch_events, settings.max_quantity) == (1000, 1_000_000)
    assert (settings.usage_max_age, settings.usage_max_ahead) == (
        timedelta(days=35),
        timedelta(minutes=5),
    )
    assert settings.reorg_watch_blocks == 64


def test_read_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TWIN_BRIDGE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TWIN_BRIDGE_MAX_QUANTITY", "50")
    settings = Settings()
    assert settings.resolved_database_url == f"sqlite:///{tmp_path}/bridge.db"
    assert settings.max_quantity == 50
    monkeypatch.setenv("TWIN_BRIDGE_DATABASE_URL", "postgresql+psycopg://u@h/db")
    assert Settings().resolved_database_url == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"max_batch_events": 1001}, "less than or equal to 1000"),
        ({"max_quantity": 2**32}, "less than or equal to 4294967295"),
        ({"max_quantity": 0}, "greater than 0"),
        ({"reorg_watch_blocks": -1}, "greater than or equal to 0"),
        ({"rpc_url": "http://127.0.0.1:8545"}, "rpc_url and ledger_address must be set together"),
        ({"unknown": 1}, "Extra inputs are not permitted"),
    ],
)
def test_unsafe_values_are_refused(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**values)  # type: ignore[arg-type]
