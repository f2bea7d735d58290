"""Fixtures of the bridge suite: settings in a temporary data dir, SQLite and PostgreSQL stores,
a fake license view, the API with a fixed clock and a registered brand."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from bridge.api import create_app
from bridge.intake.api_keys import hash_api_key, new_api_key
from bridge.intake.ingest import Ingestor
from bridge.settings import Settings
from bridge.store import migrate
from bridge.store.repository import BrandRecord, Store, create_brand
from bridge.testing.postgres import conninfo, create_database, database_url, drop_databases
from bridge.testing.world import AnvilChain, anvil_chain

from .fakes import FakeLicense, FakeLicenseView

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BRAND_ADDRESS = "0x00000000000000000000000000000000000B4A2D"
OTHER_ADDRESS = "0x0000000000000000000000000000000000000CAB"
TWIN = 7
PG_ADMIN_URL = os.environ.get(
    "TWIN_BRIDGE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


# ---------------------------------------------------------------- PostgreSQL


@dataclass
class PostgresServer:
    """Creates uniquely named databases (``tb_test_<random>``) and drops them at the end."""

    admin_url: str
    created: list[str]

    def new_database(self) -> str:
        name = create_database(self.admin_url, "tb_test_")
        self.created.append(name)
        return database_url(self.admin_url, name)

    def drop_all(self) -> None:
        drop_databases(self.admin_url, *self.created)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The PostgreSQL server; required in CI, skipped elsewhere when none answers."""
    try:
        with psycopg.connect(conninfo(PG_ADMIN_URL), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but PostgreSQL at {PG_ADMIN_URL} is unreachable: {exc}")
        pytest.skip(f"no PostgreSQL at {PG_ADMIN_URL} (set TWIN_BRIDGE_TEST_PG_URL): {exc}")
    server = PostgresServer(PG_ADMIN_URL, [])
    try:
        yield server
    finally:
        server.drop_all()


@pytest.fixture(scope="session")
def postgres_store_url(postgres: PostgresServer) -> str:
    """One migrated database shared by the PostgreSQL store tests (emptied before each)."""
    url = postgres.new_database()
    migrate.upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def empty_db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database (no tables) of the backend."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database()


@pytest.fixture
def store(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A migrated, empty store on each backend."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'bridge.db'}"
        migrate.upgrade(url)
    else:
        url = request.getfixturevalue("postgres_store_url")
    store = Store.from_url(url)
    if backend == "postgresql":
        with store.engine.begin() as conn:
            conn.execute(
                text(
                    "TRUNCATE usage_events, settlement_batches, relayer_nonces, worker_leases,"
                    " brands RESTART IDENTITY CASCADE"
                )
            )
    try:
        yield store
    finally:
        store.close()


# ---------------------------------------------------------------- the API


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", rate_limit_per_s=1000, rate_limit_burst=1000)


@pytest.fixture
def license_view() -> FakeLicenseView:
    """A ledger with twin 7 licensed to the brand for images and video all of Feb-Mar 2026, and
    twin 8 existing without a license."""
    view = FakeLicenseView()
    view.grant(
        BRAND_ADDRESS,
        TWIN,
        FakeLicense(
            usage_types=frozenset({0, 1}),
            valid_from=int(datetime(2026, 2, 1, tzinfo=UTC).timestamp()),
            valid_until=int(datetime(2026, 4, 1, tzinfo=UTC).timestamp()),
        ),
    )
    view.twins.add(8)
    return view


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Api:
    client: TestClient
    store: Store
    chain: FakeLicenseView
    brand: BrandRecord
    key: str
    clock: Clock

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def register_brand(store: Store, name: str, address: str) -> tuple[BrandRecord, str]:
    key = new_api_key()
    with store.session() as session:
        brand = create_brand(session, name=name, address=address, api_key_hash=hash_api_key(key))
    return brand, key


@pytest.fixture
def make_api(settings: Settings, license_view: FakeLicenseView) -> Iterator[Callable[..., Api]]:
    """Builds an API on a fresh SQLite store with the fake ledger and a clock stopped at NOW."""
    stores: list[Store] = []
    clients: list[TestClient] = []

    def make(**overrides: object) -> Api:
        app_settings = settings.model_copy(update=overrides)
        store = Store.from_url(app_settings.resolved_database_url)
        stores.append(store)
        clock = Clock()
        ingestor = Ingestor(settings=app_settings, licenses=license_view, clock=clock)
        app = create_app(app_settings, store=store, chain=license_view, ingestor=ingestor)
        client = TestClient(app, raise_server_exceptions=True)
        client.__enter__()
        clients.append(client)
        brand, key = register_brand(store, "Atelier", BRAND_ADDRESS)
        return Api(
            client=client, store=store, chain=license_view, brand=brand, key=key, clock=clock
        )

    yield make
    for client in clients:
        client.__exit__(None, None, None)
    for store in stores:
        store.close()


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    return make_api()


# ---------------------------------------------------------------- anvil


@pytest.fixture(scope="module")
def anvil() -> Iterator[AnvilChain]:
    """One anvil per test module, with the gas benchmark's world."""
    with anvil_chain() as started:
        yield started


@pytest.fixture
def snapshot(anvil_chain: AnvilChain) -> Iterator[AnvilChain]:
    """The ``anvil_chain`` of a module (its ``anvil``, made ready for its tests), reverted to its
    state before the test when the test ends."""
    with anvil_chain.snapshot():
        yield anvil_chain
