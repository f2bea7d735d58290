"""The store on SQLite and PostgreSQL: migrations, pragmas, idempotent inserts, concurrency."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import IntegrityError

from bridge.errors import BrandExistsError
from bridge.store import migrate
from bridge.store.engine import make_engine
from bridge.store.models import UsageEvent, UsageStatus
from bridge.store.repository import (
    InsertOutcome,
    NewUsage,
    Store,
    create_brand,
    get_usage,
    insert_usages,
    list_brands,
)

USED_AT = datetime(2026, 3, 1, 11, 0, 0, 123456, tzinfo=UTC)


def usage(event_id: str, body_hash: str = "h" * 64, **changes: object) -> NewUsage:
    fields: dict[str, object] = {
        "event_id": event_id,
        "body_hash": body_hash,
        "twin_id": 2**63 - 1,
        "usage_type": 3,
        "quantity": 4_000_000_000,
        "used_at": USED_AT,
        "campaign_ref": "spring",
        "asset_ref": None,
    }
    fields.update(changes)
    return NewUsage(**fields)  # type: ignore[arg-type]


def brand_id(store: Store, name: str = "Atelier", address: str = "0x" + "11" * 20) -> int:
    with store.session() as session:
        return create_brand(session, name=name, address=address, api_key_hash=name * 8).id


def count(store: Store) -> int:
    with store.session() as session:
        return session.scalar(select(func.count()).select_from(UsageEvent)) or 0


def test_upgrade_on_an_empty_database_creates_the_tables(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url)
    engine = make_engine(empty_db_url)
    try:
        inspector = inspect(engine)
        assert set(inspector.get_table_names()) == {
            "alembic_version",
            "brands",
            "usage_events",
            "settlement_batches",
            "relayer_nonces",
            "worker_leases",
            "indexed_blocks",
            "indexer_cursors",
            "ledger_events",
            "settled_usages",
            "twins",
            "twin_changes",
            "license_versions",
            "license_revocations",
            "brand_accounts",
            "brand_account_changes",
            "royalty_distributions",
            "payee_payouts",
            "owner_actions",
        }
        uniques = inspector.get_unique_constraints("usage_events")
        assert [u["column_names"] for u in uniques] == [["brand_id", "event_id"]]
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT version_num FROM alembic_version")) == "0006"
        migrate.upgrade(empty_db_url)  # a second upgrade is a no-op
        migrate.downgrade(engine, "base")
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    finally:
        engine.dispose()


def test_migrations_match_the_models(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from bridge.store.models import Base

    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_sqlite_runs_in_wal_with_foreign_keys(tmp_path: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/nested/dir/bridge.db")
    try:
        with engine.connect() as conn:
            assert conn.scalar(text("PRAGMA journal_mode")) == "wal"
            assert conn.scalar(text("PRAGMA synchronous")) == 2  # FULL: committed means on disk
            assert conn.scalar(text("PRAGMA foreign_keys")) == 1
    finally:
        engine.dispose()


def test_brands_are_unique_by_name_and_address(store: Store) -> None:
    brand_id(store, "Atelier", "0x" + "11" * 20)
    with store.session() as session, pytest.raises(BrandExistsError) as caught:
        create_brand(session, name="Atelier", address="0x" + "22" * 20, api_key_hash="x" * 64)
    assert caught.value.name == "Atelier"
    with store.session() as session, pytest.raises(BrandExistsError):
        create_brand(session, name="Other", address="0x" + "11" * 20, api_key_hash="y" * 64)
    with store.session() as session:
        assert [b.name for b in list_brands(session)] == ["Atelier"]


def test_insert_answers_inserted_duplicate_conflict(store: Store, backend: str) -> None:
    brand = brand_id(store)
    with store.session() as session:
        first = insert_usages(session, brand_id=brand, usages=[usage("a"), usage("b")])
    assert {k: (r.outcome, r.usage_id) for k, r in first.items()} == {
        "a": (InsertOutcome.INSERTED, 1),
        "b": (InsertOutcome.INSERTED, 2),
    }
    with store.session() as session:
        again = insert_usages(
            session, brand_id=brand, usages=[usage("a"), usage("b", "z" * 64), usage("c")]
        )
    assert {k: (r.outcome, r.usage_id) for k, r in again.items()} == {
        "a": (InsertOutcome.DUPLICATE, 1),
        "b": (InsertOutcome.CONFLICT, 2),
        # PostgreSQL's sequence also advances for the rows that hit the conflict: ids have gaps.
        "c": (InsertOutcome.INSERTED, 3 if backend == "sqlite" else 5),
    }
    assert again["b"].body_hash == "h" * 64  # the original stays
    assert count(store) == 3


def test_stored_values_round_trip(store: Store) -> None:
    brand = brand_id(store)
    local = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    with store.session() as session:
        insert_usages(session, brand_id=brand, usages=[usage("a", used_at=local)])
    with store.session() as session:
        row = get_usage(session, brand_id=brand, event_id="a")
    assert row is not None
    assert row.used_at == USED_AT
    assert row.used_at.tzinfo is not None
    assert (row.twin_id, row.usage_type, row.quantity) == (2**63 - 1, 3, 4_000_000_000)
    assert (row.campaign_ref, row.asset_ref, row.status) == ("spring", None, UsageStatus.ACCEPTED)
    with store.session() as session:
        stored = session.get_one(UsageEvent, row.usage_id)
        stored.amount = 2**256 - 1
        stored.status = UsageStatus.SETTLED
        session.commit()
    with store.session() as session:
        settled = get_usage(session, brand_id=brand, event_id="a")
    assert settled is not None
    assert (settled.amount, settled.status) == (2**256 - 1, UsageStatus.SETTLED)
    assert settled.updated_at >= settled.created_at


def test_status_outside_the_enum_is_refused_by_the_database(store: Store) -> None:
    brand = brand_id(store)
    with store.session() as session:
        insert_usages(session, brand_id=brand, usages=[usage("a")])
    with store.engine.begin() as conn, pytest.raises(IntegrityError, match=r"(?i)check"):
        conn.execute(text("UPDATE usage_events SET status = 'lost'"))


def test_usage_of_an_unknown_brand_is_refused_by_the_foreign_key(store: Store) -> None:
    with store.session() as session, pytest.raises(IntegrityError, match=r"(?i)foreign key"):
        insert_usages(session, brand_id=999, usages=[usage("a")])
    assert count(store) == 0


def test_batch_of_1000_inserts_in_one_transaction(store: Store) -> None:
    brand = brand_id(store)
    batch = [usage(f"e{i}") for i in range(1000)]
    with store.session() as session:
        results = insert_usages(session, brand_id=brand, usages=batch)
    assert sorted(r.usage_id for r in results.values()) == list(range(1, 1001))
    assert {r.outcome for r in results.values()} == {InsertOutcome.INSERTED}
    assert count(store) == 1000


def test_failed_batch_leaves_nothing(store: Store) -> None:
    brand = brand_id(store)
    with store.session() as session, pytest.raises(ValueError, match=r"naive datetime"):
        insert_usages(
            session,
            brand_id=brand,
            usages=[usage("a"), usage("b", used_at=datetime(2026, 3, 1))],
        )
    assert count(store) == 0


def test_event_ids_in_one_insert_must_be_distinct(store: Store) -> None:
    with store.session() as session, pytest.raises(ValueError, match="distinct"):
        insert_usages(session, brand_id=1, usages=[usage("a"), usage("a")])


@pytest.mark.parametrize("same_body", [True, False], ids=["same-body", "other-body"])
def test_two_threads_inserting_one_event_store_one_row(store: Store, same_body: bool) -> None:
    brand = brand_id(store)
    rounds = 10
    barrier = threading.Barrier(2)
    outcomes: list[list[InsertOutcome]] = [[], []]
    errors: list[BaseException] = []

    def worker(slot: int) -> None:
        try:
            for n in range(rounds):
                body = "h" * 64 if same_body else str(slot) * 64
                barrier.wait(timeout=10)
                with store.session() as session:
                    result = insert_usages(session, brand_id=brand, usages=[usage(f"r{n}", body)])
                outcomes[slot].append(result[f"r{n}"].outcome)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert count(store) == rounds
    loser = InsertOutcome.DUPLICATE if same_body else InsertOutcome.CONFLICT
    for n in range(rounds):
        assert sorted([outcomes[0][n], outcomes[1][n]]) == sorted([InsertOutcome.INSERTED, loser])
