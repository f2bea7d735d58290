"""``twin-bridge db upgrade``, ``brand create``, ``brand list`` on a temporary data dir."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect
from typer.testing import CliRunner

from bridge.cli.app import app
from bridge.intake.api_keys import API_KEY_PREFIX, hash_api_key
from bridge.store.engine import make_engine
from bridge.store.repository import Store, brand_by_key_hash

ADDRESS = "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"
CHECKSUMMED = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in ("TWIN_BRIDGE_DATABASE_URL", "TWIN_BRIDGE_RPC_URL", "TWIN_BRIDGE_LEDGER_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TWIN_BRIDGE_DATA_DIR", str(tmp_path / "state"))
    return CliRunner()


def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state' / 'bridge.db'}"


def test_db_upgrade_creates_the_default_sqlite_database(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "is up to date" in result.output
    engine = make_engine(db_url(tmp_path))
    try:
        assert {"brands", "usage_events"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_brand_create_prints_the_key_once_and_stores_its_hash(
    runner: CliRunner, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["brand", "create", "--name", "Atelier", "--address", ADDRESS])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith(API_KEY_PREFIX)
    assert len(key) == len(API_KEY_PREFIX) + 43
    store = Store.from_url(db_url(tmp_path))
    try:
        with store.session() as session:
            found = brand_by_key_hash(session, hash_api_key(key))
    finally:
        store.close()
    assert found is not None
    brand, stored_hash = found
    assert (brand.name, brand.address) == ("Atelier", CHECKSUMMED)
    assert stored_hash == hash_api_key(key)
    assert key not in Path(db_url(tmp_path).removeprefix("sqlite:///")).read_bytes().decode(
        "latin-1"
    )

    listing = runner.invoke(app, ["brand", "list"])
    assert listing.exit_code == 0
    assert "Atelier" in listing.stdout
    assert CHECKSUMMED in listing.stdout
    assert key not in listing.stdout


def test_brand_create_refuses_a_taken_name_and_a_bad_address(runner: CliRunner) -> None:
    assert (
        runner.invoke(app, ["brand", "create", "--name", "A", "--address", ADDRESS]).exit_code == 0
    )
    taken = runner.invoke(app, ["brand", "create", "--name", "A", "--address", ADDRESS])
    assert taken.exit_code == 1
    assert "already exists" in taken.output
    bad = runner.invoke(app, ["brand", "create", "--name", "B", "--address", "0x1234"])
    assert bad.exit_code == 2
    assert "'0x1234' is not an Ethereum address" in bad.output


def test_serve_without_a_chain_explains_what_to_set(runner: CliRunner) -> None:
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 2
    assert "TWIN_BRIDGE_RPC_URL" in result.output


def test_invalid_settings_are_reported(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWIN_BRIDGE_RPC_URL", "http://127.0.0.1:8545")
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 2
    assert "rpc_url and ledger_address must be set together" in result.output


def test_worker_needs_an_rpc_url_and_a_ledger(runner: CliRunner) -> None:
    result = runner.invoke(app, ["worker"])
    assert result.exit_code == 2
    assert "the worker needs TWIN_BRIDGE_RPC_URL and TWIN_BRIDGE_LEDGER_ADDRESS" in result.output
