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
from bridge.store.settlement import SettledElsewhere, settle_elsewhere

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
            "license_offers",
            "spending_limit_changes",
            "brand_attester_changes",
            "role_changes",
            "chain_heads",
        }
        uniques = inspector.get_unique_constraints("usage_events")
        assert [u["column_names"] for u in uniques] == [["brand_id", "event_id"]]
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT version_num FROM alembic_version")) == "0008"
        assert inspector.get_pk_constraint("settled_usages")["constrained_columns"] == [
            "usage_id",
            "brand",
        ]
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


# ---------------------------------------------------------------- offers and limits (0007)

_BRAND = "0x00000000000000000000000000000000000B0A2D"
_OTHER = "0x000000000000000000000000000000000000A11e"
_ATTESTER = "0x0000000000000000000000000000000000A77e57"
_ZERO = "0x0000000000000000000000000000000000000000"


def _where(block: int, at: int) -> dict[str, object]:
    return {
        "block_number": block,
        "log_index": 0,
        "tx_hash": "0x" + f"{block:064x}",
        "block_time": datetime.fromtimestamp(at, UTC),
    }


def _clear(session: object, *tables: type) -> None:
    from sqlalchemy import delete

    for table in tables:
        session.execute(delete(table))  # type: ignore[attr-defined]


def test_brand_limits_follow_lowerings_raises_after_their_delay_and_own_attesters(
    store: Store,
) -> None:
    from bridge.store.ledger_queries import brand_limits
    from bridge.store.models import BrandAttesterChange, LedgerEventRow, SpendingLimitChange

    with store.session() as session, session.begin():
        _clear(session, SpendingLimitChange, BrandAttesterChange, LedgerEventRow)
        for block, at, per_usage, per_period, effective in (
            (10, 1_000, 10, 100, 1_000),  # a lowering: in force at once
            (20, 2_000, 50, 500, 2_600),  # a raise: waits 600 s
            (30, 3_000, 70, 700, 3_600),  # a raise after the first took effect
            (40, 3_100, 5, 50, 3_100),  # a lowering: drops the waiting raise
        ):
            session.add(
                SpendingLimitChange(
                    brand=_BRAND,
                    per_usage=per_usage,
                    per_period=per_period,
                    effective_at=effective,
                    **_where(block, at),
                )
            )
        session.add(BrandAttesterChange(brand=_BRAND, attester=_ATTESTER, **_where(15, 1_500)))
        for block, at, paid in (
            (50, 86_400 * 2 - 1, 7),
            (51, 86_400 * 2, 11),
            (52, 86_400 * 3 - 1, 13),
        ):
            session.add(
                LedgerEventRow(
                    block_hash="0x" + "00" * 32,
                    name="UsagesSettled",
                    twin_id=None,
                    brand=_BRAND,
                    args={"paid": paid, "results": []},
                    **_where(block, at),
                )
            )

    def limits(at: int) -> tuple[object, ...]:
        with store.session() as session:
            found = brand_limits(session, _BRAND, at=at)
        in_force, pending = found.in_force, found.pending
        return (
            None if in_force is None else (in_force.per_usage, in_force.per_period),
            None
            if pending is None
            else (pending.per_usage, pending.per_period, pending.effective_at),
            found.attester,
        )

    assert limits(999) == (None, None, None)  # before any setting: the deployment's defaults
    assert limits(1_000) == ((10, 100), None, None)
    assert limits(2_599) == ((10, 100), (50, 500, 2_600), _ATTESTER)
    assert limits(2_600) == ((50, 500), None, _ATTESTER)
    with store.session() as session:
        at_3000 = brand_limits(session, _BRAND, at=3_050)
    assert at_3000.in_force is not None
    assert at_3000.pending is not None
    assert (at_3000.in_force.per_usage, at_3000.pending.effective_at) == (50, 3_600)
    assert at_3000.in_force.source.block_number == 20
    assert limits(10_000) == ((5, 50), None, _ATTESTER)
    with store.session() as session, session.begin():
        session.add(BrandAttesterChange(brand=_BRAND, attester=_ZERO, **_where(60, 9_000)))
    with store.session() as session:
        found = brand_limits(session, _BRAND, at=86_400 * 2 + 5, spending_period=86_400)
        assert (found.attester, found.period_start, found.spent_in_period) == (
            None, 86_400 * 2, 11 + 13
        )  # fmt: skip
        assert found.attester_source is not None
        assert found.attester_source.block_number == 60
        nothing = brand_limits(session, _OTHER, at=1)
        assert (nothing.in_force, nothing.pending, nothing.attester, nothing.spent_in_period) == (
            None, None, None, None
        )  # fmt: skip


def test_pending_offers_are_the_brands_waiting_offers_by_twin(store: Store) -> None:
    from bridge.store.ledger_queries import OfferPrice, pending_offers
    from bridge.store.models import LicenseOfferRow, OfferStatus

    def offer(twin: int, brand: str, block: int, status: OfferStatus) -> LicenseOfferRow:
        closed = block + 1 if status is not OfferStatus.PENDING else None
        return LicenseOfferRow(
            twin_id=twin,
            brand=brand,
            version=block % 3,
            valid_from=0,
            valid_until=5_000 + block,
            max_uses=0 if twin == 2 else 9,
            purpose_hash="0x" + "11" * 32,
            consent_hash="0x" + "22" * 32,
            prices=[{"usageType": 1, "price": 25 * 10**6}, {"usageType": 200, "price": 1}],
            terms_hash="0x" + f"{block:064x}",
            status=status,
            accepted_from=None,
            closed_block=closed,
            closed_log_index=None if closed is None else 0,
            closed_tx_hash=None if closed is None else "0x" + "ee" * 32,
            closed_time=None if closed is None else datetime.fromtimestamp(closed, UTC),
            **_where(block, 1_000 + block),
        )

    with store.session() as session, session.begin():
        _clear(session, LicenseOfferRow)
        session.add_all([
            offer(3, _BRAND, 70, OfferStatus.PENDING),
            offer(1, _BRAND, 71, OfferStatus.ACCEPTED),
            offer(2, _BRAND, 72, OfferStatus.PENDING),
            offer(2, _OTHER, 73, OfferStatus.PENDING),
            offer(4, _BRAND, 74, OfferStatus.DECLINED),
            offer(5, _BRAND, 75, OfferStatus.WITHDRAWN),
        ])  # fmt: skip
    with store.session() as session:
        found = pending_offers(session, _BRAND)
    assert [(o.twin_id, o.version, o.status, o.terms_hash) for o in found] == [
        (2, 0, OfferStatus.PENDING, "0x" + f"{72:064x}"),
        (3, 1, OfferStatus.PENDING, "0x" + f"{70:064x}"),
    ]
    two = found[0]
    assert (two.valid_from, two.valid_until, two.max_uses, two.accepted_from, two.closed) == (
        0, 5_072, None, None, None
    )  # fmt: skip
    assert two.prices == [OfferPrice("video", 1, 25 * 10**6), OfferPrice(None, 200, 1)]
    assert (two.source.block_number, two.source.block_time) == (
        72, datetime.fromtimestamp(1_072, UTC)
    )  # fmt: skip
    assert found[1].max_uses == 9


def test_role_members_are_granted_and_not_revoked_waiting_until_their_since(store: Store) -> None:
    from bridge.store.ledger_queries import role_members
    from bridge.store.models import RoleChange

    def change(block: int, event: str, role: int, account: str | None, since: int | None) -> None:
        session.add(
            RoleChange(
                event=event,
                role_id=role,
                account=account,
                delay=300 if role == 0 else 0,
                since=since,
                new_member=True if event == "RoleGranted" else None,
                **_where(block, 1_000 + block),
            )
        )

    with store.session() as session, session.begin():
        _clear(session, RoleChange)
        change(1, "RoleGranted", 0, _OTHER, 1_001)
        change(2, "RoleGranted", 2, _ATTESTER, 1_002)
        change(3, "RoleGrantDelayChanged", 2, None, 1_500)
        change(4, "RoleGranted", 2, _BRAND, 1_604)  # waits its grant delay of 600 s
        change(5, "RoleRevoked", 2, _ATTESTER, None)
        change(6, "RoleGranted", 9, _BRAND, 1_006)

    def members(at: int) -> list[tuple[object, ...]]:
        with store.session() as session:
            return [
                (m.role, m.account, m.since, m.waiting, m.execution_delay, m.source.block_number)
                for m in role_members(session, at=at)
            ]

    assert members(1_003) == [
        ("ADMIN_ROLE", _OTHER, 1_001, False, 300, 1),
        ("ATTESTER_ROLE", _ATTESTER, 1_002, False, 0, 2),
    ]
    assert members(1_010) == [
        ("ADMIN_ROLE", _OTHER, 1_001, False, 300, 1),
        ("ATTESTER_ROLE", _BRAND, 1_604, True, 0, 4),
        ("ROLE_9", _BRAND, 1_006, False, 0, 6),
    ]
    assert members(1_604)[1] == ("ATTESTER_ROLE", _BRAND, 1_604, False, 0, 4)


def test_a_usage_settled_elsewhere_is_recorded_once_and_only_while_accepted(store: Store) -> None:
    """``settle_elsewhere`` writes the outcome of an accepted usage settled by a transaction
    this bridge did not send; a usage no longer accepted is left as it is."""
    brand = brand_id(store)
    with store.session() as session:
        results = insert_usages(session, brand_id=brand, usages=[usage("a"), usage("b")])
    a, b = results["a"].usage_id, results["b"].usage_id
    tx = "0x" + "ab" * 32
    paid = SettledElsewhere(a, True, None, tx, 41, 3, 1_250_000)
    with store.session() as session:
        assert settle_elsewhere(session, paid) is True
        assert settle_elsewhere(session, paid) is False  # settled now: not written again
        assert settle_elsewhere(session, SettledElsewhere(b, False, 6, tx, 41, 3, None)) is True
    with store.session() as session:
        rows = [session.get_one(UsageEvent, i) for i in (a, b)]
        assert [
            (r.status, r.reason_code, r.tx_hash, r.block_number, r.log_index, r.amount, r.batch_id)
            for r in rows
        ] == [
            (UsageStatus.SETTLED, None, tx, 41, 3, 1_250_000, None),
            (UsageStatus.REJECTED, 6, tx, 41, 3, None, None),
        ]
