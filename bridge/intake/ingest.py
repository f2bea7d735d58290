"""Taking usage events in: checks at the door, idempotent storage, one answer per event."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import NamedTuple

import orjson
from sqlalchemy.orm import Session

from bridge.chain.views import LicenseView, Verdict
from bridge.domain.codec import Outcome
from bridge.domain.usage import UsageCode, UsageType
from bridge.settings import Settings
from bridge.store.models import UsageStatus, utcnow
from bridge.store.repository import (
    BrandRecord,
    InsertOutcome,
    InsertResult,
    NewUsage,
    StoredKey,
    StoredUsage,
    end_read,
    insert_brand_usages,
    stored_keys,
    usages_by_keys,
)
from bridge.store.settlement import chain_time


class UsageReport(NamedTuple):
    """One usage event as a brand reported it, already well-formed (a named tuple: a batch makes a
    thousand)."""

    event_id: str
    twin_id: int
    usage_type: UsageType
    quantity: int
    used_at: datetime
    campaign_ref: str | None = None
    asset_ref: str | None = None

    @property
    def body_hash(self) -> str:
        """SHA-256 of the event's canonical JSON: what makes a repeat a duplicate or a conflict."""
        return hashlib.sha256(self.canonical_json()).hexdigest()

    def canonical_json(self) -> bytes:
        """The event as compact UTF-8 JSON with sorted keys: what ``json.dumps(..., sort_keys=True,
        separators=(",", ":"), ensure_ascii=False)`` gives, byte for byte, from orjson (a tenth of
        the time) and from ``json`` for what orjson does not take (a lone surrogate)."""
        canonical = {  # in sorted key order
            "asset_ref": self.asset_ref,
            "campaign_ref": self.campaign_ref,
            "event_id": self.event_id,
            "quantity": self.quantity,
            "twin_id": self.twin_id,
            "usage_type": int(self.usage_type),
            "used_at": self.used_at.astimezone(UTC).isoformat(timespec="microseconds"),
        }
        try:
            return orjson.dumps(canonical)
        except orjson.JSONEncodeError:
            return json.dumps(canonical, separators=(",", ":"), ensure_ascii=False).encode()


class ItemStatus(StrEnum):
    """What the door did with one event: stored it now (``accepted``), found it stored before
    with the same body (``replayed``), or refused it (nothing stored, the event id not kept)."""

    ACCEPTED = "accepted"
    REPLAYED = "replayed"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Submission:
    """The reports of one request, from one brand."""

    brand: BrandRecord
    reports: Sequence[UsageReport]


class ItemResult(NamedTuple):
    """The answer for one event: accepted or replayed (with its usage id and, once ingested, the
    stored usage as it stands), or refused (a code and the sentence for this event)."""

    event_id: str
    status: ItemStatus
    usage_id: int | None = None
    code: UsageCode | None = None
    sentence: str | None = None
    usage: StoredUsage | None = None
    """The usage as it stands now (what ``GET /v1/usage-events/{id}`` answers)."""
    chain_time: datetime | None = None
    """The chain's clock as the workers last read it, for an accepted usage used after it."""


@dataclass(eq=False, slots=True)
class _Item:
    """One report of a group on its way to its answer. The first report of an event id in its
    submission is checked and decided; a later one answers from that first."""

    brand: BrandRecord
    report: UsageReport
    body_hash: str
    first: _Item | None
    """The submission's first report of the same event id (None: this is that first)."""
    refusal: tuple[UsageCode, str] | None = None
    """Why the door or the ledger refuses it (checked for firsts not stored before)."""
    inserts: bool = False
    """Whether it brings its usage to the write (the group's first of that brand and event id)."""
    answer: ItemResult | None = None
    """Its answer: a repeat or a refusal before the write, one that writes after it."""

    @property
    def key(self) -> tuple[int, str]:
        return self.brand.id, self.report.event_id


class Ingestor:
    """Checks usage events at the door and stores those that pass, idempotently per brand."""

    def __init__(
        self,
        *,
        settings: Settings,
        licenses: LicenseView,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._settings = settings
        self._licenses = licenses
        self._clock = clock

    def ingest(
        self, session: Session, *, brand: BrandRecord, reports: Sequence[UsageReport]
    ) -> list[ItemResult]:
        """Answers every report in order; the accepted ones are committed before this returns.

        A repeated event id answers with the stored usage as it stands (``replayed``) when the
        body is the same and is refused with ``event_id_conflict`` otherwise, within a batch as
        across requests. A refused event is not stored: its id stays free for a corrected body.

        Raises:
            ChainUnavailableError: when the license check cannot reach the chain.
        """
        [answers] = self.ingest_many(session, [Submission(brand, reports)])
        return answers

    def ingest_many(
        self, session: Session, submissions: Sequence[Submission]
    ) -> list[list[ItemResult]]:
        """``ingest`` of each submission, with the answers it would get were the submissions
        ingested one after another in this order, but with one read per brand, one round trip to
        the chain and one commit for them all (group commit).

        Raises:
            ChainUnavailableError: when the license check cannot reach the chain (for them all).
        """
        groups = [_items(submission) for submission in submissions]
        firsts = [item for items in groups for item in items if item.first is None]
        stored = stored_keys(session, (item.key for item in firsts))
        end_read(session)
        self._check([item for item in firsts if item.key not in stored])
        claims = _claim(firsts, stored)
        received = utcnow()  # the wall clock (``_clock`` is the door's: a chain's in tests)
        written = insert_brand_usages(session, _by_brand(claims), now=received)
        for item in firsts:
            if item.answer is None:
                item.answer = _written(item, written[item.key])
        answers = [[_answer(item) for item in items] for items in groups]
        return _with_states(session, groups, answers, claims, received=received, now=self._clock())

    def _check(self, fresh: Sequence[_Item]) -> None:
        """The door checks, then the ledger for those that pass: one question for the group."""
        for item in fresh:
            item.refusal = self._refusal(item.report)
        passed = [item for item in fresh if item.refusal is None]
        verdicts = self._license_verdicts([(item.brand, item.report) for item in passed])
        for item, verdict in zip(passed, verdicts, strict=True):
            if verdict.own_attester is not None:
                item.refusal = UsageCode.BRAND_ATTESTS_ITSELF, _attests_itself(verdict.own_attester)
                continue
            outcome = verdict.outcome_for(item.report.quantity)
            if outcome is not Outcome.PAID:
                item.refusal = UsageCode.refusal_of(outcome), _reason(verdict, item.report)

    def _refusal(self, report: UsageReport) -> tuple[UsageCode, str] | None:
        """The door checks that need no chain: quantity and time of use."""
        settings = self._settings
        if not 0 < report.quantity <= settings.max_quantity:
            return (
                UsageCode.QUANTITY_OUT_OF_RANGE,
                f"quantity {report.quantity} is outside 1..{settings.max_quantity}",
            )
        now = self._clock()
        if report.used_at < now - settings.usage_max_age:
            return (
                UsageCode.USED_AT_TOO_OLD,
                f"used_at {report.used_at.isoformat()} is more than "
                f"{_human(settings.usage_max_age.total_seconds())} in the past",
            )
        if report.used_at > now + settings.usage_max_ahead:
            return (
                UsageCode.USED_AT_IN_FUTURE,
                f"used_at {report.used_at.isoformat()} is more than "
                f"{_human(settings.usage_max_ahead.total_seconds())} in the future",
            )
        return None

    def _license_verdicts(
        self, reports: Sequence[tuple[BrandRecord, UsageReport]]
    ) -> list[Verdict]:
        """What the ledger says of each brand's report, asked once per (brand, twin, type, second)
        in one call."""
        keys = [
            (brand.address, r.twin_id, int(r.usage_type), int(r.used_at.timestamp()))
            for brand, r in reports
        ]
        distinct = list(dict.fromkeys(keys))
        if not distinct:
            return []
        answers = self._licenses.check_many(distinct)
        by_key = dict(zip(distinct, answers, strict=True))
        return [by_key[key] for key in keys]


def _reason(verdict: Verdict, report: UsageReport) -> str:
    """A refused usage's reason in words; the cost and the limit for one over the limit."""
    outcome = verdict.outcome_for(report.quantity)
    if outcome is Outcome.OVER_USAGE_LIMIT:
        return (
            f"{outcome.description}: {report.quantity} x {verdict.price} = "
            f"{report.quantity * verdict.price} is above {verdict.per_usage_limit}"
        )
    return outcome.description


def _attests_itself(attester: str) -> str:
    return (
        f"the brand named its own attester {attester} on the ledger, which takes its usages "
        "signed by that attester only: settle them with `twin-bridge brand settle`"
    )


def _human(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} seconds"


def _items(submission: Submission) -> list[_Item]:
    """The submission's reports, each linked to the first of its event id."""
    firsts: dict[str, _Item] = {}
    items: list[_Item] = []
    for report in submission.reports:
        first = firsts.get(report.event_id)
        item = _Item(submission.brand, report, report.body_hash, first)
        if first is None:
            firsts[report.event_id] = item
        items.append(item)
    return items


def _claim(
    firsts: Sequence[_Item], stored: Mapping[tuple[int, str], StoredKey]
) -> dict[tuple[int, str], NewUsage]:
    """Decides each first in turn against the store and the usages claimed before it (a repeat of
    a stored usage, a refusal, or a claim); the usages to write."""
    claims: dict[tuple[int, str], NewUsage] = {}
    for item in firsts:
        event_id = item.report.event_id
        known = stored.get(item.key)
        if known is not None:
            item.answer = _repeat(event_id, known, item.body_hash)
        elif item.key in claims:
            pass  # answered once written, against the body written
        elif item.refusal is not None:
            item.answer = _refused(event_id, item.refusal)
        else:
            claims[item.key] = _new_usage(item.report, item.body_hash)
            item.inserts = True
    return claims


def _by_brand(claims: Mapping[tuple[int, str], NewUsage]) -> dict[int, list[NewUsage]]:
    by_brand: dict[int, list[NewUsage]] = {}
    for (brand_id, _event_id), usage in claims.items():
        by_brand.setdefault(brand_id, []).append(usage)
    return by_brand


def _written(item: _Item, written_as: InsertResult) -> ItemResult:
    """The answer of a claim once written: accepted if it brought the usage that was inserted;
    else a repeat of the group's own usage, or of one a concurrent request stored since the read."""
    event_id = item.report.event_id
    if item.inserts and written_as.outcome is InsertOutcome.INSERTED:
        return ItemResult(event_id, ItemStatus.ACCEPTED, usage_id=written_as.usage_id)
    stored = StoredKey(written_as.usage_id, written_as.body_hash)
    return _repeat(event_id, stored, item.body_hash)


def _answer(item: _Item) -> ItemResult:
    """A first's own answer; a later report of its event id conflicts with it (another body),
    shares its refusal, or repeats it."""
    first = item.first
    if first is None:
        assert item.answer is not None  # noqa: S101 - every first is answered
        return item.answer
    original = first.answer
    assert original is not None  # noqa: S101 - every first is answered
    event_id = item.report.event_id
    if item.body_hash != first.body_hash:
        return _conflict(event_id)
    if original.status is ItemStatus.REFUSED:
        return original
    return ItemResult(event_id, ItemStatus.REPLAYED, usage_id=original.usage_id)


def _new_usage(report: UsageReport, body_hash: str) -> NewUsage:
    return NewUsage(
        event_id=report.event_id,
        body_hash=body_hash,
        twin_id=report.twin_id,
        usage_type=int(report.usage_type),
        quantity=report.quantity,
        used_at=report.used_at,
        campaign_ref=report.campaign_ref,
        asset_ref=report.asset_ref,
    )


def _repeat(event_id: str, stored: StoredKey, body_hash: str) -> ItemResult:
    if stored.body_hash != body_hash:
        return _conflict(event_id)
    return ItemResult(event_id, ItemStatus.REPLAYED, usage_id=stored.usage_id)


def _refused(event_id: str, refusal: tuple[UsageCode, str]) -> ItemResult:
    code, sentence = refusal
    return ItemResult(event_id, ItemStatus.REFUSED, code=code, sentence=sentence)


def _conflict(event_id: str) -> ItemResult:
    return ItemResult(
        event_id,
        ItemStatus.REFUSED,
        code=UsageCode.EVENT_ID_CONFLICT,
        sentence=f"event id {event_id!r} was used before with a different body",
    )


def _with_states(
    session: Session,
    groups: Sequence[Sequence[_Item]],
    answers: list[list[ItemResult]],
    claims: Mapping[tuple[int, str], NewUsage],
    *,
    received: datetime,
    now: datetime,
) -> list[list[ItemResult]]:
    """The answers with their usages as they stand: an accepted one as just written, a replayed
    one as the store holds it now (read in one query, only when there are replays), and the
    chain's clock for those accepted but used after it. The clock is read (once) only for a
    replay or a usage dated after ``now`` (the door's): a group of usages from the past stays
    one read, one write and one commit (``GET`` tells the wait of any accepted usage)."""
    replayed = [
        item.key
        for items, results in zip(groups, answers, strict=True)
        for item, result in zip(items, results, strict=True)
        if result.status is ItemStatus.REPLAYED
    ]
    stored = usages_by_keys(session, replayed) if replayed else {}
    clock: list[datetime | None] = []

    def state(item: _Item, result: ItemResult) -> ItemResult:
        if result.status is ItemStatus.REFUSED:
            return result
        usage = stored.get(item.key)
        if usage is None:
            usage = _stored(item.brand.id, claims[item.key], result.usage_id, received)
        if usage.status is not UsageStatus.ACCEPTED or (not replayed and usage.used_at <= now):
            return result._replace(usage=usage)
        if not clock:
            clock.append(chain_time(session))
        ahead = clock[0] is not None and usage.used_at > clock[0]
        return result._replace(usage=usage, chain_time=clock[0] if ahead else None)

    return [
        [state(item, result) for item, result in zip(items, results, strict=True)]
        for items, results in zip(groups, answers, strict=True)
    ]


def _stored(brand_id: int, usage: NewUsage, usage_id: int | None, now: datetime) -> StoredUsage:
    """A usage as this group just stored it."""
    assert usage_id is not None  # noqa: S101 - an accepted answer carries its usage id
    return StoredUsage(
        usage_id=usage_id,
        brand_id=brand_id,
        event_id=usage.event_id,
        body_hash=usage.body_hash,
        twin_id=usage.twin_id,
        usage_type=usage.usage_type,
        quantity=usage.quantity,
        used_at=usage.used_at.astimezone(UTC),
        campaign_ref=usage.campaign_ref,
        asset_ref=usage.asset_ref,
        status=UsageStatus.ACCEPTED,
        reason_code=None,
        tx_hash=None,
        block_number=None,
        log_index=None,
        amount=None,
        created_at=now,
        updated_at=now,
    )
