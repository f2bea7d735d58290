"""Group commit: ``Ingestor.ingest_many`` (the answers of sequential ``ingest`` with one read, one
license round trip and one commit, on both stores), ``GroupCommit`` (which requests share a
group, and what a failing group does to them) and the usage API's concurrent POSTs."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from bridge.api import create_app
from bridge.chain.views import Verdict
from bridge.domain.usage import UsageCode, UsageType
from bridge.errors import ChainUnavailableError
from bridge.intake.grouping import GATHER_TURNS, Arrival, GroupCommit
from bridge.intake.ingest import Ingestor, ItemResult, ItemStatus, Submission, UsageReport
from bridge.settings import Settings
from bridge.store import migrate
from bridge.store.models import UsageEvent
from bridge.store.repository import (
    BrandRecord,
    InsertResult,
    NewUsage,
    Store,
    insert_brand_usages,
    insert_usages,
)

from .conftest import BRAND_ADDRESS, NOW, OTHER_ADDRESS, TWIN, register_brand
from .fakes import FakeLicense, FakeLicenseView

URL = "/v1/usage-events"
USED_AT = NOW - timedelta(hours=1)
T = int(USED_AT.timestamp())
FEB_1 = int(datetime(2026, 2, 1, tzinfo=UTC).timestamp())
APR_1 = int(datetime(2026, 4, 1, tzinfo=UTC).timestamp())

Key = tuple[str, int, int, int]


# ---------------------------------------------------------------- helpers


@dataclass
class RoundsView(FakeLicenseView):
    """The fake ledger, also recording each ``check_many`` call (one round trip each)."""

    rounds: list[list[Key]] = field(default_factory=list)

    def check_many(self, usages: Sequence[Key]) -> list[Verdict]:
        self.rounds.append(list(usages))
        return super().check_many(usages)


def make_chain() -> RoundsView:
    """Twin 7 licensed to Atelier for images and video and to Cabinet for images only, Feb-Mar
    2026; twin 8 exists without a license; any other twin is unknown."""
    view = RoundsView()
    view.grant(BRAND_ADDRESS, TWIN, FakeLicense(frozenset({0, 1}), FEB_1, APR_1))
    view.grant(OTHER_ADDRESS, TWIN, FakeLicense(frozenset({0}), FEB_1, APR_1))
    view.twins.add(8)
    return view


@pytest.fixture
def rounds_view() -> RoundsView:
    return make_chain()


@pytest.fixture
def ingestor(settings: Settings, rounds_view: RoundsView) -> Ingestor:
    return Ingestor(settings=settings, licenses=rounds_view, clock=lambda: NOW)


@pytest.fixture
def brands(store: Store) -> tuple[BrandRecord, BrandRecord]:
    atelier, _ = register_brand(store, "Atelier", BRAND_ADDRESS)
    cabinet, _ = register_brand(store, "Cabinet", OTHER_ADDRESS)
    return atelier, cabinet


def report(event_id: str = "e-1", **changes: Any) -> UsageReport:
    fields: dict[str, Any] = {
        "event_id": event_id,
        "twin_id": TWIN,
        "usage_type": UsageType.CAMPAIGN_IMAGE,
        "quantity": 2,
        "used_at": USED_AT,
    }
    fields.update(changes)
    return UsageReport(**fields)


def accepted(event_id: str, usage_id: int) -> ItemResult:
    return ItemResult(event_id, ItemStatus.ACCEPTED, usage_id=usage_id)


def duplicate(event_id: str, usage_id: int) -> ItemResult:
    return ItemResult(event_id, ItemStatus.REPLAYED, usage_id=usage_id)


def refused(event_id: str, code: UsageCode, sentence: str) -> ItemResult:
    return ItemResult(event_id, ItemStatus.REFUSED, code=code, sentence=sentence)


def conflict(event_id: str) -> ItemResult:
    return refused(
        event_id,
        UsageCode.EVENT_ID_CONFLICT,
        f"event id {event_id!r} was used before with a different body",
    )


def bare(answers: list[ItemResult]) -> list[ItemResult]:
    """The answers without the usages as they stand (the API tests check those)."""
    return [r._replace(usage=None, chain_time=None) for r in answers]


def group(store: Store, ingestor: Ingestor, *submissions: Submission) -> list[list[ItemResult]]:
    with store.session() as session:
        return [bare(answers) for answers in ingestor.ingest_many(session, submissions)]


def rows(store: Store) -> list[tuple[int, int, str, int, int, int]]:
    """(usage id, brand id, event id, twin, usage type, quantity) of every stored usage, by id."""
    with store.session() as session:
        found = session.execute(
            select(
                UsageEvent.id,
                UsageEvent.brand_id,
                UsageEvent.event_id,
                UsageEvent.twin_id,
                UsageEvent.usage_type,
                UsageEvent.quantity,
            ).order_by(UsageEvent.id)
        )
        return [tuple(row) for row in found]  # type: ignore[misc]


# ---------------------------------------------------------------- ingest_many on both stores


def test_a_later_submission_repeating_an_event_is_a_duplicate_or_a_conflict(
    store: Store,
    ingestor: Ingestor,
    brands: tuple[BrandRecord, BrandRecord],
    rounds_view: RoundsView,
) -> None:
    atelier, _ = brands
    later = USED_AT + timedelta(seconds=1)
    answers = group(
        store,
        ingestor,
        Submission(atelier, [report("e-1")]),
        Submission(atelier, [report("e-1"), report("e-2", used_at=later)]),
        Submission(atelier, [report("e-1", quantity=3), report("e-2", used_at=later)]),
    )
    assert answers == [
        [accepted("e-1", 1)],
        [duplicate("e-1", 1), accepted("e-2", 2)],
        [conflict("e-1"), duplicate("e-2", 2)],
    ]
    assert rows(store) == [(1, atelier.id, "e-1", TWIN, 0, 2), (2, atelier.id, "e-2", TWIN, 0, 2)]
    # e-1 with quantity 3 asks the same question as e-1: (brand, twin, type, second).
    assert rounds_view.calls == [(atelier.address, TWIN, 0, T), (atelier.address, TWIN, 0, T + 1)]
    assert rounds_view.rounds == [rounds_view.calls]


def test_an_event_refused_in_one_submission_is_accepted_corrected_in_a_later_one(
    store: Store,
    ingestor: Ingestor,
    brands: tuple[BrandRecord, BrandRecord],
    rounds_view: RoundsView,
) -> None:
    atelier, _ = brands
    answers = group(
        store,
        ingestor,
        Submission(
            atelier,
            [
                report("e-1", quantity=0),
                report("e-2", used_at=NOW - timedelta(days=36)),
                report("e-3", used_at=NOW + timedelta(minutes=10)),
                report("e-4", twin_id=8),
                report("e-5", usage_type=UsageType.PRINT),
                report("e-6", quantity=0),
            ],
        ),
        Submission(
            atelier,
            [
                report("e-1"),
                report("e-2"),
                report("e-3"),
                report("e-4"),
                report("e-5"),
                report("e-6", quantity=0),  # sent again as it was: refused again
            ],
        ),
    )
    quantity = refused("e-6", UsageCode.QUANTITY_OUT_OF_RANGE, "quantity 0 is outside 1..1000000")
    assert answers == [
        [
            refused("e-1", UsageCode.QUANTITY_OUT_OF_RANGE, "quantity 0 is outside 1..1000000"),
            refused(
                "e-2",
                UsageCode.USED_AT_TOO_OLD,
                "used_at 2026-01-24T12:00:00+00:00 is more than 35 days in the past",
            ),
            refused(
                "e-3",
                UsageCode.USED_AT_IN_FUTURE,
                "used_at 2026-03-01T12:10:00+00:00 is more than 5 minutes in the future",
            ),
            refused("e-4", UsageCode.NO_LICENSE, "the brand holds no license for this twin"),
            refused(
                "e-5",
                UsageCode.USAGE_TYPE_NOT_LICENSED,
                "the license does not cover this usage type",
            ),
            quantity,
        ],
        [
            accepted("e-1", 1),
            accepted("e-2", 2),
            accepted("e-3", 3),
            accepted("e-4", 4),
            accepted("e-5", 5),
            quantity,
        ],
    ]
    assert rows(store) == [(n, atelier.id, f"e-{n}", TWIN, 0, 2) for n in range(1, 6)]
    # The door's refusals ask nothing; the corrected events share one question.
    assert rounds_view.calls == [
        (atelier.address, 8, 0, T),
        (atelier.address, TWIN, int(UsageType.PRINT), T),
        (atelier.address, TWIN, 0, T),
    ]
    assert rounds_view.rounds == [rounds_view.calls]


def test_event_ids_are_per_brand_within_a_group(
    store: Store,
    ingestor: Ingestor,
    brands: tuple[BrandRecord, BrandRecord],
    rounds_view: RoundsView,
) -> None:
    atelier, cabinet = brands
    answers = group(
        store,
        ingestor,
        Submission(atelier, [report("e-1")]),
        Submission(cabinet, [report("e-1")]),
        Submission(cabinet, [report("e-1")]),
        Submission(atelier, [report("e-1", quantity=5)]),
    )
    assert answers == [
        [accepted("e-1", 1)],
        [accepted("e-1", 2)],
        [duplicate("e-1", 2)],
        [conflict("e-1")],
    ]
    assert rows(store) == [(1, atelier.id, "e-1", TWIN, 0, 2), (2, cabinet.id, "e-1", TWIN, 0, 2)]
    assert rounds_view.calls == [(atelier.address, TWIN, 0, T), (cabinet.address, TWIN, 0, T)]
    assert rounds_view.rounds == [rounds_view.calls]


def test_a_repeat_of_an_event_stored_before_the_group_answers_from_the_store(
    store: Store,
    ingestor: Ingestor,
    brands: tuple[BrandRecord, BrandRecord],
    rounds_view: RoundsView,
) -> None:
    atelier, cabinet = brands
    with store.session() as session:
        before = ingestor.ingest(
            session, brand=atelier, reports=[report("e-1"), report("e-2", quantity=1)]
        )
    assert bare(before) == [accepted("e-1", 1), accepted("e-2", 2)]
    rounds_view.calls.clear()
    rounds_view.rounds.clear()

    answers = group(
        store,
        ingestor,
        Submission(atelier, [report("e-1"), report("e-3", used_at=USED_AT + timedelta(seconds=2))]),
        Submission(atelier, [report("e-2", quantity=7), report("e-1")]),
        Submission(cabinet, [report("e-1")]),
    )
    assert answers == [
        [duplicate("e-1", 1), accepted("e-3", 3)],
        [conflict("e-2"), duplicate("e-1", 1)],
        [accepted("e-1", 4)],
    ]
    assert rows(store) == [
        (1, atelier.id, "e-1", TWIN, 0, 2),
        (2, atelier.id, "e-2", TWIN, 0, 1),  # the original body stays
        (3, atelier.id, "e-3", TWIN, 0, 2),
        (4, cabinet.id, "e-1", TWIN, 0, 2),
    ]
    # Stored events (the conflicting e-2 too) ask the chain nothing.
    assert rounds_view.calls == [(atelier.address, TWIN, 0, T + 2), (cabinet.address, TWIN, 0, T)]
    assert rounds_view.rounds == [rounds_view.calls]


def test_repeats_within_one_submission_keep_their_answers_in_a_group(
    store: Store,
    ingestor: Ingestor,
    brands: tuple[BrandRecord, BrandRecord],
    rounds_view: RoundsView,
) -> None:
    atelier, _ = brands
    no_license = refused("e-3", UsageCode.NO_LICENSE, "the brand holds no license for this twin")
    quantity = refused("e-2", UsageCode.QUANTITY_OUT_OF_RANGE, "quantity 0 is outside 1..1000000")
    answers = group(
        store,
        ingestor,
        Submission(
            atelier,
            [
                report("e-1"),
                report("e-1"),
                report("e-1", quantity=3),
                report("e-2", quantity=0),
                report("e-2", quantity=0),
                report("e-2"),
                report("e-3", twin_id=8),
                report("e-3", twin_id=8),
            ],
        ),
        Submission(atelier, [report("e-2"), report("e-1"), report("e-3", twin_id=8)]),
    )
    assert answers == [
        [
            accepted("e-1", 1),
            duplicate("e-1", 1),
            conflict("e-1"),
            quantity,
            quantity,
            conflict("e-2"),  # another body than the first e-2 of the request
            no_license,
            no_license,
        ],
        [accepted("e-2", 2), duplicate("e-1", 1), no_license],
    ]
    assert rows(store) == [(1, atelier.id, "e-1", TWIN, 0, 2), (2, atelier.id, "e-2", TWIN, 0, 2)]
    assert rounds_view.calls == [(atelier.address, TWIN, 0, T), (atelier.address, 8, 0, T)]
    assert rounds_view.rounds == [rounds_view.calls]


def test_a_group_is_one_read_one_license_round_trip_and_one_commit(
    store: Store,
    ingestor: Ingestor,
    brands: tuple[BrandRecord, BrandRecord],
    rounds_view: RoundsView,
) -> None:
    atelier, cabinet = brands
    a, c = atelier.address, cabinet.address
    statements: list[str] = []
    commits: list[int] = []

    def statement(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        statements.append(" ".join(sql.split()[:3]))

    event.listen(store.engine, "before_cursor_execute", statement)

    def commit(_conn: Any) -> None:
        commits.append(1)

    event.listen(store.engine, "commit", commit)
    try:
        answers = group(
            store,
            ingestor,
            Submission(
                atelier,
                [report("a1"), report("a2"), report("a3", used_at=USED_AT + timedelta(seconds=1))],
            ),
            Submission(
                cabinet, [report("b1"), report("b2", usage_type=UsageType.VIDEO), report("a1")]
            ),
            Submission(atelier, [report("a4"), report("a5", usage_type=UsageType.VIDEO)]),
        )
    finally:
        event.remove(store.engine, "before_cursor_execute", statement)
        event.remove(store.engine, "commit", commit)

    stored = rows(store)
    ids = {(brand, event_id): usage_id for usage_id, brand, event_id, *_ in stored}
    assert [usage_id for usage_id, *_ in stored] == [1, 2, 3, 4, 5, 6, 7]
    assert answers == [
        [
            accepted("a1", ids[atelier.id, "a1"]),
            accepted("a2", ids[atelier.id, "a2"]),
            accepted("a3", ids[atelier.id, "a3"]),
        ],
        [
            accepted("b1", ids[cabinet.id, "b1"]),
            refused(
                "b2",
                UsageCode.USAGE_TYPE_NOT_LICENSED,
                "the license does not cover this usage type",
            ),
            accepted("a1", ids[cabinet.id, "a1"]),
        ],
        [accepted("a4", ids[atelier.id, "a4"]), accepted("a5", ids[atelier.id, "a5"])],
    ]
    assert sorted(ids) == sorted(
        [(atelier.id, e) for e in ("a1", "a2", "a3", "a4", "a5")]
        + [(cabinet.id, "a1"), (cabinet.id, "b1")]
    )
    # One question per distinct (brand, twin, type, second) of the whole group, in one call.
    assert rounds_view.rounds == [
        [(a, TWIN, 0, T), (a, TWIN, 0, T + 1), (c, TWIN, 0, T), (c, TWIN, 1, T), (a, TWIN, 1, T)]
    ]
    assert rounds_view.calls == rounds_view.rounds[0]
    assert statements == ["SELECT u.brand_id, u.event_id,", "INSERT INTO usage_events"]
    assert len(commits) == 1


def test_an_event_stored_meanwhile_by_another_request_answers_every_repeat_from_the_store(
    store: Store,
    ingestor: Ingestor,
    brands: tuple[BrandRecord, BrandRecord],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another process stores e-1 and e-2 between the group's read and its insert: the group's
    answers are those of its submissions ingested one after another after that insert."""
    atelier, _ = brands
    theirs = [report("e-1"), report("e-2")]
    real_insert = insert_brand_usages

    def insert_after_them(
        session: Session, usages: Mapping[int, Sequence[NewUsage]], *, now: datetime
    ) -> dict[tuple[int, str], InsertResult]:
        with store.session() as other:
            insert_usages(
                other,
                brand_id=atelier.id,
                usages=[
                    NewUsage(
                        event_id=r.event_id,
                        body_hash=r.body_hash,
                        twin_id=r.twin_id,
                        usage_type=int(r.usage_type),
                        quantity=r.quantity,
                        used_at=r.used_at,
                        campaign_ref=None,
                        asset_ref=None,
                    )
                    for r in theirs
                ],
            )
        return real_insert(session, usages, now=now)

    monkeypatch.setattr("bridge.intake.ingest.insert_brand_usages", insert_after_them)
    answers = group(
        store,
        ingestor,
        Submission(atelier, [report("e-1", quantity=3), report("e-2"), report("e-3")]),
        Submission(atelier, [report("e-1", quantity=3), report("e-2")]),
        Submission(atelier, [report("e-1"), report("e-3")]),
    )
    stored = rows(store)
    e3 = stored[-1][0]  # PostgreSQL's sequence also advanced for the two that hit a conflict
    assert answers == [
        [conflict("e-1"), duplicate("e-2", 2), accepted("e-3", e3)],
        [conflict("e-1"), duplicate("e-2", 2)],
        [duplicate("e-1", 1), duplicate("e-3", e3)],  # e-1 has the body stored meanwhile
    ]
    assert stored == [
        (1, atelier.id, "e-1", TWIN, 0, 2),
        (2, atelier.id, "e-2", TWIN, 0, 2),
        (e3, atelier.id, "e-3", TWIN, 0, 2),
    ]


def test_a_group_with_the_chain_down_stores_nothing(
    store: Store,
    ingestor: Ingestor,
    brands: tuple[BrandRecord, BrandRecord],
    rounds_view: RoundsView,
) -> None:
    atelier, cabinet = brands
    rounds_view.down = True
    with pytest.raises(ChainUnavailableError) as caught:
        group(
            store,
            ingestor,
            Submission(atelier, [report("e-1")]),
            Submission(cabinet, [report("e-1")]),
        )
    assert str(caught.value) == "chain at fake://chain unavailable: connection refused"
    assert rows(store) == []
    assert rounds_view.rounds == [[(atelier.address, TWIN, 0, T), (cabinet.address, TWIN, 0, T)]]


def test_a_group_needing_no_license_check_asks_the_chain_nothing(
    store: Store,
    ingestor: Ingestor,
    brands: tuple[BrandRecord, BrandRecord],
    rounds_view: RoundsView,
) -> None:
    atelier, _ = brands
    rounds_view.down = True  # not asked, so not a failure
    answers = group(
        store,
        ingestor,
        Submission(atelier, [report("e-1", quantity=0)]),
        Submission(atelier, [report("e-1", quantity=-1)]),
    )
    assert answers == [
        [refused("e-1", UsageCode.QUANTITY_OUT_OF_RANGE, "quantity 0 is outside 1..1000000")],
        [refused("e-1", UsageCode.QUANTITY_OUT_OF_RANGE, "quantity -1 is outside 1..1000000")],
    ]
    assert rounds_view.rounds == []
    assert rows(store) == []


# ---------------------------------------------------------------- equivalence with sequential


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[BrandRecord]]:
    """A migrated SQLite file holding the two brands, copied for each example."""
    path = tmp_path_factory.mktemp("template") / "bridge.db"
    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    store = Store.from_url(url)
    try:
        atelier, _ = register_brand(store, "Atelier", BRAND_ADDRESS)
        cabinet, _ = register_brand(store, "Cabinet", OTHER_ADDRESS)
    finally:
        store.close()
    return path, [atelier, cabinet]


@dataclass
class Copy:
    store: Store
    chain: RoundsView
    ingestor: Ingestor


@contextmanager
def two_copies(template: Path) -> Iterator[tuple[Copy, Copy]]:
    """Two fresh stores from the template, with a ledger each: for the grouped and the
    sequential run."""
    settings = Settings(data_dir=Path(tempfile.gettempdir()) / "unused")
    with tempfile.TemporaryDirectory() as directory:
        pair: list[Copy] = []
        try:
            for name in ("grouped", "sequential"):
                path = Path(directory) / f"{name}.db"
                shutil.copyfile(template, path)
                chain = make_chain()
                ingestor = Ingestor(settings=settings, licenses=chain, clock=lambda: NOW)
                pair.append(Copy(Store.from_url(f"sqlite:///{path}"), chain, ingestor))
            yield pair[0], pair[1]
        finally:
            for copy in pair:
                copy.store.close()


REPORTS = st.builds(
    report,
    st.sampled_from(["e-1", "e-2", "e-3"]),
    twin_id=st.sampled_from([TWIN, TWIN, 8, 9]),
    usage_type=st.sampled_from([UsageType.CAMPAIGN_IMAGE, UsageType.VIDEO]),
    quantity=st.sampled_from([0, 1, 2, 2]),
    used_at=st.sampled_from(
        [USED_AT, USED_AT, USED_AT + timedelta(seconds=1), NOW - timedelta(days=40)]
    ),
    campaign_ref=st.sampled_from([None, "spring"]),
)
SUBMISSIONS = st.lists(
    st.tuples(st.sampled_from([0, 0, 1]), st.lists(REPORTS, min_size=1, max_size=4)),
    min_size=1,
    max_size=5,
)


def full_rows(store: Store) -> list[tuple[Any, ...]]:
    with store.session() as session:
        found = session.execute(
            select(
                UsageEvent.id,
                UsageEvent.brand_id,
                UsageEvent.event_id,
                UsageEvent.body_hash,
                UsageEvent.twin_id,
                UsageEvent.usage_type,
                UsageEvent.quantity,
                UsageEvent.used_at,
                UsageEvent.campaign_ref,
                UsageEvent.asset_ref,
                UsageEvent.status,
            ).order_by(UsageEvent.id)
        )
        return [tuple(row) for row in found]


@hypothesis_settings(max_examples=40, deadline=None, database=None)
@given(drawn=SUBMISSIONS)
def test_ingest_many_answers_as_sequential_ingest_would(
    template: tuple[Path, list[BrandRecord]],
    drawn: list[tuple[int, list[UsageReport]]],
) -> None:
    path, brands = template
    submissions = [Submission(brands[b], reports) for b, reports in drawn]
    with two_copies(path) as (grouped, sequential):
        check_equivalence(grouped, sequential, submissions, brands)


def check_equivalence(
    grouped: Copy, sequential: Copy, submissions: list[Submission], brands: list[BrandRecord]
) -> None:
    with grouped.store.session() as session:
        together = grouped.ingestor.ingest_many(session, submissions)
    one_by_one: list[list[ItemResult]] = []
    for submission in submissions:
        with sequential.store.session() as session:
            one_by_one.append(
                sequential.ingestor.ingest(
                    session, brand=submission.brand, reports=submission.reports
                )
            )

    def words(answers: list[ItemResult]) -> list[tuple[Any, ...]]:
        return [(r.event_id, r.status, r.code, r.sentence, r.usage_id is None) for r in answers]

    assert [words(a) for a in together] == [words(a) for a in one_by_one]
    # The usage ids may be numbered otherwise, but the same answers name the same usage.
    ids: dict[int, int] = {}
    for mine, theirs in zip(together, one_by_one, strict=True):
        for r, s in zip(mine, theirs, strict=True):
            if r.usage_id is not None:
                assert s.usage_id is not None
                assert ids.setdefault(r.usage_id, s.usage_id) == s.usage_id
    assert len(set(ids.values())) == len(ids)

    rows_grouped, rows_sequential = full_rows(grouped.store), full_rows(sequential.store)
    assert sorted(ids) == [row[0] for row in rows_grouped]  # every stored usage was answered
    assert sorted((ids[row[0]], *row[1:]) for row in rows_grouped) == rows_sequential
    for brand in brands:  # and a brand's usages are numbered in the same order
        assert [r[2] for r in rows_grouped if r[1] == brand.id] == [
            r[2] for r in rows_sequential if r[1] == brand.id
        ]
    # One round trip at most, asking each question once.
    assert len(grouped.chain.rounds) <= 1
    for asked in grouped.chain.rounds:
        assert len(set(asked)) == len(asked)


# ---------------------------------------------------------------- GroupCommit


BRAND = BrandRecord(id=1, name="Atelier", address=BRAND_ADDRESS, created_at=NOW)


def sub(name: str, events: int = 1) -> Submission:
    """A submission named ``name`` with events ``name:0``, ``name:1``, ..."""
    return Submission(BRAND, [report(f"{name}:{i}") for i in range(events)])


class FakeIngest:
    """An ``ingest_many`` that records the submissions of each call (by name) and answers every
    event accepted with the call's number as usage id. It can hold its first call until
    released, wait at a barrier, or fail a call (``fail(names)`` gives the exception)."""

    def __init__(
        self,
        *,
        hold_first: bool = False,
        barrier: threading.Barrier | None = None,
        fail: Callable[[list[str]], Exception | None] = lambda _names: None,
    ) -> None:
        self.calls: list[list[str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self._hold_first = hold_first
        self._barrier = barrier
        self._fail = fail
        self._lock = threading.Lock()

    def __call__(self, submissions: Sequence[Submission]) -> list[list[ItemResult]]:
        names = [s.reports[0].event_id.split(":")[0] for s in submissions]
        with self._lock:
            self.calls.append(names)
            number = len(self.calls)
        if self._hold_first and number == 1:
            self.entered.set()
            assert self.release.wait(10), "never released"
        if self._barrier is not None:
            self._barrier.wait()
        error = self._fail(names)
        if error is not None:
            raise error
        return [[accepted(r.event_id, number) for r in s.reports] for s in submissions]


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.001)


async def held_then_queued(
    commit: GroupCommit, fake: FakeIngest, first: Submission, queued: Sequence[Submission]
) -> tuple[asyncio.Task[list[ItemResult]], list[asyncio.Task[list[ItemResult]]]]:
    """Submits ``first`` and, once its group is held in the worker thread, ``queued``; returns
    their tasks with all of them waiting."""
    held = asyncio.create_task(commit.submit(first))
    await until(fake.entered.is_set)
    tasks = [asyncio.create_task(commit.submit(s)) for s in queued]
    await asyncio.sleep(0)  # each task runs up to its wait
    assert fake.calls == [[first.reports[0].event_id.split(":")[0]]]
    return held, tasks


def test_arrivals_while_a_group_is_written_form_the_next_group() -> None:
    fake = FakeIngest(hold_first=True)
    sizes: list[int] = []
    commit = GroupCommit(fake, max_events=100, on_group=sizes.append)

    async def scenario() -> list[list[ItemResult]]:
        held, tasks = await held_then_queued(commit, fake, sub("a"), [sub("b"), sub("c", 2)])
        tasks.append(asyncio.create_task(commit.submit(sub("d"))))
        await asyncio.sleep(0)
        fake.release.set()
        return await asyncio.gather(held, *tasks)

    answers = asyncio.run(scenario())
    assert fake.calls == [["a"], ["b", "c", "d"]]
    assert answers == [
        [accepted("a:0", 1)],
        [accepted("b:0", 2)],
        [accepted("c:0", 2), accepted("c:1", 2)],
        [accepted("d:0", 2)],
    ]
    assert sizes == [1, 3]


def test_a_lone_submission_is_written_at_once_in_each_event_loop() -> None:
    fake = FakeIngest()
    sizes: list[int] = []
    commit = GroupCommit(fake, max_events=100, on_group=sizes.append)

    async def one(submission: Submission) -> list[ItemResult]:
        return await asyncio.wait_for(commit.submit(submission), timeout=5)

    assert asyncio.run(one(sub("a", 2))) == [accepted("a:0", 1), accepted("a:1", 1)]
    assert asyncio.run(one(sub("b"))) == [accepted("b:0", 2)]  # another loop, another queue
    assert fake.calls == [["a"], ["b"]]
    assert sizes == [1, 1]


def _late_second(commit: GroupCommit, turns: int) -> list[list[ItemResult]]:
    """``a`` submitted, then ``b`` ``turns`` turns of the loop later (a request still on its way
    from the socket when ``a`` was queued)."""

    async def scenario() -> list[list[ItemResult]]:
        first = asyncio.create_task(commit.submit(sub("a")))
        for _ in range(turns):
            await asyncio.sleep(0)
        second = asyncio.create_task(commit.submit(sub("b")))
        return list(await asyncio.wait_for(asyncio.gather(first, second), timeout=5))

    return asyncio.run(scenario())


def test_a_request_on_its_way_makes_the_writer_gather_the_next_arrivals() -> None:
    fake = FakeIngest()
    commit = GroupCommit(fake, max_events=100)
    arrival = commit.arrival()  # a request in the app, not yet queued: load
    assert commit.arriving == 1
    answers = _late_second(commit, turns=GATHER_TURNS - 2)
    assert fake.calls == [["a", "b"]]  # one group: b arrived while the writer gathered
    assert answers == [[accepted("a:0", 1)], [accepted("b:0", 1)]]
    arrival.close()
    arrival.close()  # once only
    assert commit.arriving == 0


def test_without_load_a_request_is_written_at_once_and_one_arriving_later_waits() -> None:
    fake = FakeIngest()
    commit = GroupCommit(fake, max_events=100)
    _late_second(commit, turns=GATHER_TURNS - 2)
    assert fake.calls == [["a"], ["b"]]  # nothing on its way: a went at once, b after it


def test_after_a_group_of_several_the_writer_gathers_before_the_next() -> None:
    fake = FakeIngest(hold_first=True)
    commit = GroupCommit(fake, max_events=100)

    async def scenario() -> None:
        held, tasks = await held_then_queued(commit, fake, sub("a"), [sub("b"), sub("c")])
        fake.release.set()
        await asyncio.gather(held, *tasks)
        # The last group held two: the next one gathers for GATHER_TURNS turns of the loop.
        first = asyncio.create_task(commit.submit(sub("d")))
        for _ in range(GATHER_TURNS - 2):
            await asyncio.sleep(0)
        await asyncio.wait_for(asyncio.gather(first, commit.submit(sub("e"))), timeout=5)

    asyncio.run(scenario())
    assert fake.calls == [["a"], ["b", "c"], ["d", "e"]]


def test_max_events_caps_a_group_and_a_larger_submission_goes_alone() -> None:
    fake = FakeIngest(hold_first=True)
    sizes: list[int] = []
    commit = GroupCommit(fake, max_events=4, on_group=sizes.append)
    queued = [sub("b", 2), sub("c", 2), sub("d", 1), sub("e", 6), sub("f", 1), sub("g", 3)]

    async def scenario() -> list[list[ItemResult]]:
        held, tasks = await held_then_queued(commit, fake, sub("a"), queued)
        fake.release.set()
        return await asyncio.gather(held, *tasks)

    answers = asyncio.run(scenario())
    assert fake.calls == [["a"], ["b", "c"], ["d"], ["e"], ["f", "g"]]
    assert sizes == [1, 2, 1, 1, 2]
    numbers = {"a": 1, "b": 2, "c": 2, "d": 3, "e": 4, "f": 5, "g": 5}
    assert answers == [
        [accepted(r.event_id, numbers[name]) for r in s.reports]
        for name, s in zip("abcdefg", [sub("a"), *queued], strict=True)
    ]


def test_chain_unavailable_reaches_every_request_of_the_group() -> None:
    error = ChainUnavailableError("fake://chain", "connection refused")
    fake = FakeIngest(hold_first=True, fail=lambda names: error if len(names) > 1 else None)
    sizes: list[int] = []
    commit = GroupCommit(fake, max_events=100, on_group=sizes.append)

    async def scenario() -> list[list[ItemResult] | BaseException]:
        held, tasks = await held_then_queued(commit, fake, sub("a"), [sub("b"), sub("c"), sub("d")])
        fake.release.set()
        return await asyncio.gather(held, *tasks, return_exceptions=True)

    answers = asyncio.run(scenario())
    assert answers == [[accepted("a:0", 1)], error, error, error]
    assert all(answer is error for answer in answers[1:])
    assert fake.calls == [["a"], ["b", "c", "d"]]  # not retried: the chain is down for all
    assert sizes == [1, 3]


def test_another_failure_of_a_group_is_retried_singly_so_only_its_cause_fails() -> None:
    def poison(names: list[str]) -> Exception | None:
        return ValueError("poisoned") if "p" in names else None

    fake = FakeIngest(hold_first=True, fail=poison)
    sizes: list[int] = []
    commit = GroupCommit(fake, max_events=100, on_group=sizes.append)

    async def scenario() -> list[list[ItemResult] | BaseException]:
        held, tasks = await held_then_queued(commit, fake, sub("a"), [sub("b"), sub("p"), sub("c")])
        fake.release.set()
        answers = await asyncio.gather(held, *tasks, return_exceptions=True)
        alone = await asyncio.gather(commit.submit(sub("p")), return_exceptions=True)
        return [*answers, *alone]

    answers = asyncio.run(scenario())
    assert fake.calls == [["a"], ["b", "p", "c"], ["b"], ["p"], ["c"], ["p"]]
    a, b, p, c, p_alone = answers
    assert a == [accepted("a:0", 1)]
    assert b == [accepted("b:0", 3)]
    assert c == [accepted("c:0", 5)]
    for failed in (p, p_alone):
        assert isinstance(failed, ValueError)
        assert str(failed) == "poisoned"
    assert sizes == [1, 3, 1]  # the retries of a group are not groups of their own


def test_a_cancelled_waiter_leaves_the_others_answered() -> None:
    fake = FakeIngest(hold_first=True)
    sizes: list[int] = []
    commit = GroupCommit(fake, max_events=100, on_group=sizes.append)

    async def scenario() -> tuple[list[bool], list[list[ItemResult]]]:
        held, (b, c, d) = await held_then_queued(
            commit, fake, sub("a"), [sub("b"), sub("c"), sub("d")]
        )
        held.cancel()  # while its group is in the worker thread
        c.cancel()  # while it waits for the next group
        await asyncio.sleep(0)
        fake.release.set()
        answers = await asyncio.gather(b, d)
        e = await commit.submit(sub("e"))  # the writer goes on
        return [held.cancelled(), c.cancelled()], [*answers, e]

    cancelled, answers = asyncio.run(scenario())
    assert cancelled == [True, True]
    assert answers == [[accepted("b:0", 2)], [accepted("d:0", 2)], [accepted("e:0", 3)]]
    # Submitted is submitted: the cancelled ones were written all the same (idempotent if sent
    # again).
    assert fake.calls == [["a"], ["b", "c", "d"], ["e"]]
    assert sizes == [1, 3, 1]


def test_max_events_zero_writes_every_submission_alone() -> None:
    fake = FakeIngest(barrier=threading.Barrier(3, timeout=10))  # all three at once, each alone
    sizes: list[int] = []
    commit = GroupCommit(fake, max_events=0, on_group=sizes.append)

    async def scenario() -> list[list[ItemResult]]:
        return list(
            await asyncio.gather(*(commit.submit(s) for s in (sub("a"), sub("b", 2), sub("c"))))
        )

    answers = asyncio.run(scenario())
    assert sorted(fake.calls) == [["a"], ["b"], ["c"]]
    number = {name: n + 1 for n, [name] in enumerate(fake.calls)}
    assert answers == [
        [accepted("a:0", number["a"])],
        [accepted("b:0", number["b"]), accepted("b:1", number["b"])],
        [accepted("c:0", number["c"])],
    ]
    assert sizes == [1, 1, 1]


def test_group_commit_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).group_commit_max_events == 2000
    monkeypatch.setenv("TWIN_BRIDGE_GROUP_COMMIT_MAX_EVENTS", "0")
    assert Settings(data_dir=tmp_path).group_commit_max_events == 0
    monkeypatch.setenv("TWIN_BRIDGE_GROUP_COMMIT_MAX_EVENTS", "-1")
    with pytest.raises(ValidationError) as caught:
        Settings(data_dir=tmp_path)
    [error] = caught.value.errors()
    assert (error["loc"], error["type"]) == (("group_commit_max_events",), "greater_than_equal")


# ---------------------------------------------------------------- the API


class GatedIngestor(Ingestor):
    """Records the number of submissions of each group; with ``hold_first`` its first group
    waits in the worker thread until released."""

    def __init__(self, *, hold_first: bool, settings: Settings, licenses: RoundsView) -> None:
        super().__init__(settings=settings, licenses=licenses, clock=lambda: NOW)
        self.groups: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self._hold_first = hold_first

    def ingest_many(
        self, session: Session, submissions: Sequence[Submission]
    ) -> list[list[ItemResult]]:
        self.groups.append(len(submissions))
        if self._hold_first and len(self.groups) == 1:
            self.entered.set()
            assert self.release.wait(10), "never released"
        return super().ingest_many(session, submissions)


def usage_event(event_id: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "twin_id": TWIN,
        "usage_type": "campaign_image",
        "quantity": 2,
        "used_at": "2026-03-01T11:00:00Z",
    }


def histogram(text: str, name: str) -> dict[str, float]:
    [family] = [f for f in text_string_to_metric_families(text) if f.name == name]
    assert family.type == "histogram"
    return {
        s.name.removeprefix(name)
        + (f"{{le={s.labels['le']}}}" if "le" in s.labels else ""): s.value
        for s in family.samples
        if not s.name.endswith("_created")
    }


@pytest.mark.parametrize("max_events", [2000, 0])
def test_concurrent_posts_share_groups_and_the_metric_counts_them(
    store: Store,
    settings: Settings,
    rounds_view: RoundsView,
    monkeypatch: pytest.MonkeyPatch,
    max_events: int,
) -> None:
    app_settings = settings.model_copy(update={"group_commit_max_events": max_events})
    ingestor = GatedIngestor(hold_first=max_events > 0, settings=app_settings, licenses=rounds_view)
    app = create_app(app_settings, store=store, chain=rounds_view, ingestor=ingestor)
    brand, key = register_brand(store, "Atelier", BRAND_ADDRESS)
    auth = {"Authorization": f"Bearer {key}"}
    commit: GroupCommit = app.state.context.group_commit
    arrived: list[str] = []
    submit = commit.submit

    async def counting(submission: Submission, *, arrival: Arrival | None) -> list[ItemResult]:
        assert arrival is not None  # every POST is counted from the moment it enters the app
        arrived.append(submission.reports[0].event_id)
        return await submit(submission, arrival=arrival)

    monkeypatch.setattr(commit, "submit", counting)

    async def scenario() -> tuple[list[httpx.Response], str]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:

            def post(n: int) -> asyncio.Task[httpx.Response]:
                return asyncio.create_task(
                    client.post(URL, json=usage_event(f"e-{n}"), headers=auth)
                )

            if max_events:  # the first held in its group while the 19 others queue up
                first = post(0)
                await until(ingestor.entered.is_set)
                rest = [post(n) for n in range(1, 20)]
                await until(lambda: len(arrived) == 20)
                ingestor.release.set()
                responses = await asyncio.gather(first, *rest)
            else:
                responses = await asyncio.gather(*(post(n) for n in range(20)))
            metrics = await client.get("/metrics")
            assert metrics.status_code == 200
            return list(responses), metrics.text

    responses, metrics = asyncio.run(scenario())
    assert [r.status_code for r in responses] == [202] * 20
    answered = {r.json()["event_id"]: r.json()["usage_id"] for r in responses}
    assert [r.json()["status"] for r in responses] == ["accepted"] * 20
    assert sorted(answered) == sorted(f"e-{n}" for n in range(20))
    stored = rows(store)
    assert {event_id: usage_id for usage_id, _, event_id, *_ in stored} == answered
    assert sorted(answered.values()) == list(range(1, 21))
    assert {brand_id for _, brand_id, *_ in stored} == {brand.id}

    groups = [1, 19] if max_events else [1] * 20
    assert ingestor.groups == groups
    assert histogram(metrics, "twin_bridge_ingest_group_requests") == {
        "_bucket{le=1.0}": float(groups.count(1)),
        "_bucket{le=2.0}": float(groups.count(1)),
        "_bucket{le=4.0}": float(groups.count(1)),
        "_bucket{le=8.0}": float(groups.count(1)),
        "_bucket{le=16.0}": float(groups.count(1)),
        "_bucket{le=32.0}": float(len(groups)),
        "_bucket{le=64.0}": float(len(groups)),
        "_bucket{le=+Inf}": float(len(groups)),
        "_count": float(len(groups)),
        "_sum": 20.0,
    }
    # One license question for the 19 of the second group (same brand, twin, type, second).
    assert rounds_view.rounds == [[(brand.address, TWIN, 0, T)]] * (2 if max_events else 20)
