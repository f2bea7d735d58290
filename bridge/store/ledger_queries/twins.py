"""Twins and their licenses as the read API shows them: owner, metadata, pauses, payees, every
accepted license version with its state at a given time and the offers waiting for a brand's
acceptance, each with the ledger event it came from."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bridge.domain.codec import Outcome
from bridge.store.engine import in_chunks
from bridge.store.ledger_queries.common import (
    BPS_DENOMINATOR,
    Source,
    source_of,
    usage_type_name,
)
from bridge.store.ledger_queries.offers import Offer, offer_of
from bridge.store.models import (
    LedgerEventRow,
    LicenseOfferRow,
    LicenseRevocation,
    LicenseVersionRow,
    OfferStatus,
    SettledUsageRow,
    TwinChange,
    TwinRow,
)


class LicenseState(StrEnum):
    """Where a license version stands at a given time."""

    ACTIVE = "active"
    NOT_STARTED = "not_started"
    EXPIRED = "expired"
    REVOKED = "revoked"
    SUPERSEDED = "superseded"
    """Ended (or never started) because a later version replaced it from its start."""


def license_state(
    *, effective_from: int, effective_until: int, valid_until: int, revoked: bool, at: int
) -> LicenseState:
    """The state at ``at`` of a version with the effective window the indexer computed."""
    if revoked and at >= effective_until:
        return LicenseState.REVOKED
    if effective_from <= at < effective_until:
        return LicenseState.ACTIVE
    if at < effective_from:
        return LicenseState.NOT_STARTED
    if effective_until < valid_until:
        return LicenseState.SUPERSEDED
    return LicenseState.EXPIRED


@dataclass(frozen=True, slots=True)
class Price:
    usage_type: str | None
    usage_type_code: int
    price: int


@dataclass(frozen=True, slots=True)
class LicenseVersion:
    version: int
    state: LicenseState
    valid_from: int
    valid_until: int
    effective_from: int
    effective_until: int
    revoked: bool
    max_uses: int | None
    uses: int
    purpose_hash: str
    consent_hash: str
    prices: list[Price]
    terms_hash: str | None
    """The terms hash the brand accepted."""
    offered_from: int | None
    """The start its offer named (``valid_from`` is the later of it and the acceptance)."""
    source: Source
    """The ``LicenseAccepted`` event."""


@dataclass(frozen=True, slots=True)
class Revocation:
    version: int
    revoked_at: int
    source: Source


@dataclass(frozen=True, slots=True)
class License:
    brand: str
    state: LicenseState
    current_version: int
    current: LicenseVersion
    versions: list[LicenseVersion]
    revocations: list[Revocation]


@dataclass(frozen=True, slots=True)
class Owner:
    address: str
    source: Source


@dataclass(frozen=True, slots=True)
class PauseInterval:
    paused_at: int
    paused_source: Source
    unpaused_at: int | None
    unpaused_source: Source | None


@dataclass(frozen=True, slots=True)
class PauseState:
    paused: bool
    paused_since: int | None
    source: Source | None
    history: list[PauseInterval]


@dataclass(frozen=True, slots=True)
class Payee:
    account: str
    bps: int


@dataclass(frozen=True, slots=True)
class Split:
    payees: list[Payee]
    owner_bps: int
    source: Source | None


@dataclass(frozen=True, slots=True)
class Twin:
    twin_id: int
    owner: Owner
    metadata_uri: str
    consent_hash: str
    minted: Source
    pause: PauseState
    payees: Split
    licenses: list[License]
    offers: list[Offer]
    """The offers waiting for a brand's acceptance (one per brand at most), by brand."""


def twins_page(
    session: Session, *, owner: str | None, after: int | None, limit: int, at: int
) -> tuple[list[Twin], bool]:
    """Up to ``limit`` twins by id after ``after``, optionally only ``owner``'s, with license
    states as of unix time ``at``; and whether more follow."""
    query = select(TwinRow).order_by(TwinRow.twin_id).limit(limit + 1)
    if owner is not None:
        query = query.where(TwinRow.owner == owner)
    if after is not None:
        query = query.where(TwinRow.twin_id > after)
    rows = list(session.scalars(query))
    return _load_twins(session, rows[:limit], at=at), len(rows) > limit


def twin_exists(session: Session, twin_id: int) -> bool:
    return session.scalar(select(TwinRow.twin_id).where(TwinRow.twin_id == twin_id)) is not None


def twin(session: Session, twin_id: int, *, at: int) -> Twin | None:
    row = session.get(TwinRow, twin_id)
    return None if row is None else _load_twins(session, [row], at=at)[0]


def _load_twins(session: Session, rows: list[TwinRow], *, at: int) -> list[Twin]:
    """The twins of ``rows`` with their sources, pauses and licenses, in a few queries."""
    histories = _Histories()
    for chunk in in_chunks([row.twin_id for row in rows]):
        histories.read(session, chunk)
    return [histories.twin(row, at=at) for row in rows]


Pair = tuple[int, str]
"""(twin id, brand)"""


@dataclass(slots=True)
class _Histories:
    """The stored history of some twins, read a chunk of twins at a time."""

    changes: defaultdict[int, list[TwinChange]] = field(default_factory=lambda: defaultdict(list))
    pauses: defaultdict[int, list[LedgerEventRow]] = field(
        default_factory=lambda: defaultdict(list)
    )
    versions: defaultdict[Pair, list[LicenseVersionRow]] = field(
        default_factory=lambda: defaultdict(list)
    )
    revocations: defaultdict[Pair, list[LicenseRevocation]] = field(
        default_factory=lambda: defaultdict(list)
    )
    uses: dict[tuple[int, str, int], int] = field(default_factory=dict)
    """(twin, brand, version) -> the paid quantity settled under that version."""
    offers: defaultdict[int, list[Offer]] = field(default_factory=lambda: defaultdict(list))
    """twin -> its waiting offers."""

    def read(self, session: Session, twin_ids: Sequence[int]) -> None:
        for change in session.scalars(
            select(TwinChange)
            .where(TwinChange.twin_id.in_(twin_ids))
            .order_by(TwinChange.block_number, TwinChange.log_index)
        ):
            self.changes[change.twin_id].append(change)
        for event in session.scalars(
            select(LedgerEventRow)
            .where(
                LedgerEventRow.twin_id.in_(twin_ids),
                LedgerEventRow.name.in_(("TwinPaused", "TwinUnpaused")),
            )
            .order_by(LedgerEventRow.block_number, LedgerEventRow.log_index)
        ):
            assert event.twin_id is not None  # noqa: S101 - selected by twin
            self.pauses[event.twin_id].append(event)
        self._read_licenses(session, twin_ids)
        self._read_uses(session, twin_ids)

    def _read_licenses(self, session: Session, twin_ids: Sequence[int]) -> None:
        for version in session.scalars(
            select(LicenseVersionRow)
            .where(LicenseVersionRow.twin_id.in_(twin_ids))
            .order_by(LicenseVersionRow.version)
        ):
            self.versions[version.twin_id, version.brand].append(version)
        for revocation in session.scalars(
            select(LicenseRevocation)
            .where(LicenseRevocation.twin_id.in_(twin_ids))
            .order_by(LicenseRevocation.block_number, LicenseRevocation.log_index)
        ):
            self.revocations[revocation.twin_id, revocation.brand].append(revocation)
        for offer in session.scalars(
            select(LicenseOfferRow)
            .where(
                LicenseOfferRow.twin_id.in_(twin_ids),
                LicenseOfferRow.status == OfferStatus.PENDING,
            )
            .order_by(LicenseOfferRow.brand)
        ):
            self.offers[offer.twin_id].append(offer_of(offer))

    def _read_uses(self, session: Session, twin_ids: Sequence[int]) -> None:
        usage = SettledUsageRow
        for twin_id, brand, number, quantity in session.execute(
            select(usage.twin_id, usage.brand, usage.license_version, func.sum(usage.quantity))
            .where(
                usage.twin_id.in_(twin_ids),
                usage.outcome == int(Outcome.PAID),
                usage.license_version.is_not(None),
            )
            .group_by(usage.twin_id, usage.brand, usage.license_version)
        ):
            if number is not None:  # selected so
                self.uses[twin_id, brand, number] = int(quantity)

    def twin(self, row: TwinRow, *, at: int) -> Twin:
        history = self.changes[row.twin_id]
        return Twin(
            twin_id=row.twin_id,
            owner=Owner(
                address=row.owner,
                source=source_of(_last(history, ("TwinMinted", "Transfer"))),
            ),
            metadata_uri=row.uri,
            consent_hash=row.consent_hash,
            minted=source_of(_last(history, ("TwinMinted",))),
            pause=_pause(row, self.pauses[row.twin_id]),
            payees=_split(row, history),
            licenses=[
                _license(
                    brand,
                    self.versions[twin_id, brand],
                    self.revocations[twin_id, brand],
                    self.uses,
                    at,
                )
                for twin_id, brand in sorted(self.versions)
                if twin_id == row.twin_id
            ],
            offers=self.offers[row.twin_id],
        )


def _last(history: list[TwinChange], events: tuple[str, ...]) -> TwinChange:
    return next(c for c in reversed(history) if c.event in events)


def _pause(row: TwinRow, events: list[LedgerEventRow]) -> PauseState:
    intervals: list[PauseInterval] = []
    for event in events:
        at = int(event.args["at"])
        if event.name == "TwinPaused":
            intervals.append(PauseInterval(at, source_of(event), None, None))
        elif intervals and intervals[-1].unpaused_at is None:
            last = intervals[-1]
            intervals[-1] = PauseInterval(last.paused_at, last.paused_source, at, source_of(event))
    return PauseState(
        paused=row.paused,
        paused_since=row.paused_since,
        source=source_of(events[-1]) if events else None,
        history=intervals,
    )


def _split(row: TwinRow, history: list[TwinChange]) -> Split:
    payees = [Payee(account=p["account"], bps=int(p["bps"])) for p in row.payees]
    setting = next((c for c in reversed(history) if c.event == "PayeesSet"), None)
    return Split(
        payees=payees,
        owner_bps=BPS_DENOMINATOR - sum(p.bps for p in payees),
        source=None if setting is None else source_of(setting),
    )


def _license(
    brand: str,
    rows: list[LicenseVersionRow],
    revocations: list[LicenseRevocation],
    uses: dict[tuple[int, str, int], int],
    at: int,
) -> License:
    versions = [
        LicenseVersion(
            version=row.version,
            state=license_state(
                effective_from=row.effective_from,
                effective_until=row.effective_until,
                valid_until=row.valid_until,
                revoked=row.revoked,
                at=at,
            ),
            valid_from=row.valid_from,
            valid_until=row.valid_until,
            effective_from=row.effective_from,
            effective_until=row.effective_until,
            revoked=row.revoked,
            max_uses=row.max_uses or None,
            uses=uses.get((row.twin_id, row.brand, row.version), 0),
            purpose_hash=row.purpose_hash,
            consent_hash=row.consent_hash,
            prices=[
                Price(
                    usage_type=usage_type_name(int(p["usageType"])),
                    usage_type_code=int(p["usageType"]),
                    price=int(p["price"]),
                )
                for p in row.prices
            ],
            terms_hash=row.terms_hash,
            offered_from=row.offered_from,
            source=source_of(row),
        )
        for row in rows
    ]
    current = next((v for v in versions if v.state is LicenseState.ACTIVE), versions[-1])
    return License(
        brand=brand,
        state=current.state,
        current_version=current.version,
        current=current,
        versions=versions,
        revocations=[Revocation(r.version, r.revoked_at, source_of(r)) for r in revocations],
    )
