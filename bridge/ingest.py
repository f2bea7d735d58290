"""Taking usage events in: checks at the door, idempotent storage, one answer per event."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy.orm import Session

from bridge.chain.views import LicenseView
from bridge.codec import Outcome
from bridge.settings import Settings
from bridge.store.repository import (
    BrandRecord,
    InsertOutcome,
    NewUsage,
    StoredUsage,
    find_usages,
    insert_usages,
)
from bridge.usage import Refusal, UsageType


@dataclass(frozen=True, slots=True)
class UsageReport:
    """One usage event as a brand reported it, already well-formed."""

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
        canonical = {
            "event_id": self.event_id,
            "twin_id": self.twin_id,
            "usage_type": int(self.usage_type),
            "quantity": self.quantity,
            "used_at": self.used_at.astimezone(UTC).isoformat(timespec="microseconds"),
            "campaign_ref": self.campaign_ref,
            "asset_ref": self.asset_ref,
        }
        encoded = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(encoded.encode()).hexdigest()


class ItemStatus(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class ItemResult:
    """The answer for one event: accepted or duplicate (with its usage id) or refused (why)."""

    event_id: str
    status: ItemStatus
    usage_id: int | None = None
    reason: Refusal | None = None
    detail: str | None = None


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

        A repeated event id answers with the stored usage (``duplicate``) when the body is the same
        and is refused with ``event_id_conflict`` otherwise, within a batch as across requests.

        Raises:
            ChainUnavailableError: when the license check cannot reach the chain.
        """
        hashes = [r.body_hash for r in reports]
        first: dict[str, int] = {}
        for index, report in enumerate(reports):
            first.setdefault(report.event_id, index)
        stored = find_usages(session, brand_id=brand.id, event_ids=first)
        session.rollback()  # end the read; the insert below runs in a transaction of its own

        results: dict[int, ItemResult] = {}
        to_check: list[int] = []
        for event_id, index in first.items():
            if event_id in stored:
                results[index] = _repeat(stored[event_id], hashes[index])
                continue
            refusal = self._refusal(reports[index])
            if refusal is not None:
                results[index] = _refused(event_id, refusal)
                continue
            to_check.append(index)
        outcomes = self._license_outcomes(brand, [reports[i] for i in to_check])
        fresh: list[tuple[int, NewUsage]] = []
        for index, verdict in zip(to_check, outcomes, strict=True):
            report = reports[index]
            if verdict is not Outcome.PAID:
                refusal = Refusal.from_outcome(verdict), verdict.description
                results[index] = _refused(report.event_id, refusal)
                continue
            fresh.append((index, _new_usage(report, hashes[index])))

        written = insert_usages(session, brand_id=brand.id, usages=[u for _, u in fresh])
        for index, usage in fresh:
            outcome = written[usage.event_id]
            if outcome.outcome is InsertOutcome.INSERTED:
                results[index] = ItemResult(
                    usage.event_id, ItemStatus.ACCEPTED, usage_id=outcome.usage.usage_id
                )
            else:  # stored by a concurrent request since the read above
                results[index] = _repeat(outcome.usage, usage.body_hash)

        answers: list[ItemResult] = []
        for index, report in enumerate(reports):
            original = results[first[report.event_id]]
            if index == first[report.event_id]:
                answers.append(original)
            elif hashes[index] != hashes[first[report.event_id]]:
                answers.append(_conflict(report.event_id))
            elif original.status is ItemStatus.REFUSED:
                answers.append(original)
            else:
                answers.append(
                    ItemResult(report.event_id, ItemStatus.DUPLICATE, usage_id=original.usage_id)
                )
        return answers

    def _refusal(self, report: UsageReport) -> tuple[Refusal, str] | None:
        """The door checks that need no chain: quantity and time of use."""
        settings = self._settings
        if not 0 < report.quantity <= settings.max_quantity:
            return (
                Refusal.QUANTITY_OUT_OF_RANGE,
                f"quantity {report.quantity} is outside 1..{settings.max_quantity}",
            )
        now = self._clock()
        if report.used_at < now - settings.usage_max_age:
            return (
                Refusal.USED_AT_TOO_OLD,
                f"used_at {report.used_at.isoformat()} is more than "
                f"{_human(settings.usage_max_age.total_seconds())} in the past",
            )
        if report.used_at > now + settings.usage_max_ahead:
            return (
                Refusal.USED_AT_IN_FUTURE,
                f"used_at {report.used_at.isoformat()} is more than "
                f"{_human(settings.usage_max_ahead.total_seconds())} in the future",
            )
        return None

    def _license_outcomes(
        self, brand: BrandRecord, reports: Sequence[UsageReport]
    ) -> list[Outcome]:
        """What the ledger says of each report, asked once per (twin, type, second) in one call."""
        keys = [(r.twin_id, int(r.usage_type), int(r.used_at.timestamp())) for r in reports]
        distinct = list(dict.fromkeys(keys))
        if not distinct:
            return []
        answers = self._licenses.check_usages(brand=brand.address, usages=distinct)
        by_key = dict(zip(distinct, answers, strict=True))
        return [by_key[key] for key in keys]


def _human(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} seconds"


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


def _repeat(stored: StoredUsage, body_hash: str) -> ItemResult:
    if stored.body_hash != body_hash:
        return _conflict(stored.event_id)
    return ItemResult(stored.event_id, ItemStatus.DUPLICATE, usage_id=stored.usage_id)


def _refused(event_id: str, refusal: tuple[Refusal, str]) -> ItemResult:
    reason, detail = refusal
    return ItemResult(event_id, ItemStatus.REFUSED, reason=reason, detail=detail)


def _conflict(event_id: str) -> ItemResult:
    return ItemResult(
        event_id,
        ItemStatus.REFUSED,
        reason=Refusal.EVENT_ID_CONFLICT,
        detail=f"event id {event_id!r} was used before with a different body",
    )
