"""License offers as brands see them: the offers waiting for a brand's acceptance, and every offer
of a (twin, brand) pair with how it ended. An offer is payable only once the brand accepts it."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.store.ledger_queries.common import Source, source_of, usage_type_name
from bridge.store.models import LicenseOfferRow, OfferStatus


@dataclass(frozen=True, slots=True)
class OfferPrice:
    """One price of an offer: the usage type's API name (None for a code the bridge does not
    name), its code and the price per use in payment-token base units."""

    usage_type: str | None
    usage_type_code: int
    price: int


@dataclass(frozen=True, slots=True)
class Offer:
    """A ``LicenseOffered`` event and where the offer stands.

    ``version`` and ``terms_hash`` are what ``acceptLicense(twin_id, version, terms_hash)`` takes.
    ``max_uses`` is None for no cap. ``accepted_from`` is set once accepted (the later of the
    offered start and the acceptance); ``closed`` is the event that ended the offer (accepted,
    declined or withdrawn), None while it waits. ``source`` is the ``LicenseOffered`` event.
    """

    twin_id: int
    brand: str
    version: int
    status: OfferStatus
    valid_from: int
    valid_until: int
    max_uses: int | None
    purpose_hash: str
    consent_hash: str
    prices: list[OfferPrice]
    terms_hash: str
    accepted_from: int | None
    source: Source
    closed: Source | None


PendingOffer = Offer
"""An offer whose ``status`` is ``OfferStatus.PENDING`` (``closed`` and ``accepted_from`` None)."""


def pending_offers(session: Session, brand: str) -> list[Offer]:
    """The offers waiting for ``brand``'s acceptance (at most one per twin), by twin id.

    ``brand`` is a checksummed address (as the indexer stores it). An offer whose window has
    already ended is still listed: it waits on chain, but ``acceptLicense`` would revert with
    ``LicenseOfferExpired``; compare ``valid_until`` with the time to tell.
    """
    rows = session.scalars(
        select(LicenseOfferRow)
        .where(LicenseOfferRow.brand == brand, LicenseOfferRow.status == OfferStatus.PENDING)
        .order_by(LicenseOfferRow.twin_id, LicenseOfferRow.block_number, LicenseOfferRow.log_index)
    )
    return [offer_of(row) for row in rows]


def pair_offers(session: Session, twin_id: int, brand: str) -> list[Offer]:
    """Every offer of the (twin, brand) pair in the order they were made, with its status."""
    rows = session.scalars(
        select(LicenseOfferRow)
        .where(LicenseOfferRow.twin_id == twin_id, LicenseOfferRow.brand == brand)
        .order_by(LicenseOfferRow.block_number, LicenseOfferRow.log_index)
    )
    return [offer_of(row) for row in rows]


def offer_of(row: LicenseOfferRow) -> Offer:
    """The ``Offer`` of a stored ``license_offers`` row."""
    closed = None
    if row.closed_block is not None:
        assert row.closed_log_index is not None  # noqa: S101 - written together
        assert row.closed_tx_hash is not None  # noqa: S101
        assert row.closed_time is not None  # noqa: S101
        closed = Source(row.closed_tx_hash, row.closed_block, row.closed_log_index, row.closed_time)
    return Offer(
        twin_id=row.twin_id,
        brand=row.brand,
        version=row.version,
        status=OfferStatus(row.status),
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        max_uses=row.max_uses or None,
        purpose_hash=row.purpose_hash,
        consent_hash=row.consent_hash,
        prices=[
            OfferPrice(
                usage_type=usage_type_name(int(p["usageType"])),
                usage_type_code=int(p["usageType"]),
                price=int(p["price"]),
            )
            for p in row.prices
        ],
        terms_hash=row.terms_hash,
        accepted_from=row.accepted_from,
        source=source_of(row),
        closed=closed,
    )
