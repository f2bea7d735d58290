"""A brand's spending limits and own attester as the ledger's events set them
(``SpendingLimitsSet``, ``BrandAttesterSet``), with what its settlements spent in the current
period."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.store.ledger_queries.common import Source, source_of
from bridge.store.models import BrandAttesterChange, LedgerEventRow, SpendingLimitChange

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


@dataclass(frozen=True, slots=True)
class LimitSetting:
    """Limits a brand set (payment-token base units, as the ledger rounded them), in force from
    ``effective_at`` (unix seconds); ``source`` is its ``SpendingLimitsSet`` event."""

    per_usage: int
    per_period: int
    effective_at: int
    source: Source


@dataclass(frozen=True, slots=True)
class BrandLimits:
    """A brand's spending limits at a time.

    ``in_force`` is None while the brand never set its own limits (the deployment's defaults,
    ``config().defaultPerUsage``/``defaultPerPeriod``, apply). ``pending`` is a raise still waiting
    for its delay (None when none waits). ``attester`` is the brand's own attester, None when the
    bridge's attesters sign for it. ``period_start``/``spent_in_period`` are None unless the
    spending period was given: then they are the current period's start and what the brand's
    settlements in it cost (``UsagesSettled.paid``, escrow and debt together).
    """

    brand: str
    in_force: LimitSetting | None
    pending: LimitSetting | None
    attester: str | None
    attester_source: Source | None
    period_start: int | None
    spent_in_period: int | None


def brand_limits(
    session: Session, brand: str, *, at: int | None = None, spending_period: int | None = None
) -> BrandLimits:
    """``brand``'s limits as of unix time ``at`` (default: now): the settings of blocks timed at
    or before it, a raise counted once its delay has passed; with ``spending_period`` (seconds,
    the ledger's ``config().spendingPeriod``) also the spend of the period holding ``at``
    (periods are aligned to multiples of their length). ``brand`` is a checksummed address. A
    brand without events gets no limits of its own."""
    now = int(time.time()) if at is None else at
    until = datetime.fromtimestamp(now, UTC)
    changes = session.scalars(
        select(SpendingLimitChange)
        .where(SpendingLimitChange.brand == brand, SpendingLimitChange.block_time <= until)
        .order_by(SpendingLimitChange.block_number, SpendingLimitChange.log_index)
    )
    in_force, pending = limits_in_force(changes, at=now)
    attester = session.scalars(
        select(BrandAttesterChange)
        .where(BrandAttesterChange.brand == brand, BrandAttesterChange.block_time <= until)
        .order_by(BrandAttesterChange.block_number.desc(), BrandAttesterChange.log_index.desc())
        .limit(1)
    ).first()
    own = None if attester is None or attester.attester == ZERO_ADDRESS else attester.attester
    period_start = spent = None
    if spending_period is not None:
        period_start = now // spending_period * spending_period
        spent = _spent(session, brand, period_start, period_start + spending_period)
    return BrandLimits(
        brand=brand,
        in_force=in_force,
        pending=pending,
        attester=own,
        attester_source=None if attester is None else source_of(attester),
        period_start=period_start,
        spent_in_period=spent,
    )


def limits_in_force(
    changes: Iterable[SpendingLimitChange], *, at: int
) -> tuple[LimitSetting | None, LimitSetting | None]:
    """The limits in force at ``at`` and the raise still waiting then, from a brand's changes in
    log order: a setting effective at its own block time (a lowering) takes effect at once and
    drops a waiting raise; a later one (a raise) waits, replacing a raise still waiting, and
    counts from its ``effective_at`` on (``SpendingBook.current``)."""
    in_force: LimitSetting | None = None
    pending: LimitSetting | None = None
    for change in changes:
        setting = LimitSetting(
            change.per_usage, change.per_period, change.effective_at, source_of(change)
        )
        block_time = int(change.block_time.timestamp())
        if pending is not None and pending.effective_at <= block_time:
            in_force = pending
        pending = None
        if setting.effective_at <= block_time:
            in_force = setting
        else:
            pending = setting
    if pending is not None and pending.effective_at <= at:
        return pending, None
    return in_force, pending


def _spent(session: Session, brand: str, start: int, end: int) -> int:
    """What ``brand``'s settlements in blocks timed ``[start, end)`` cost."""
    rows = session.scalars(
        select(LedgerEventRow.args).where(
            LedgerEventRow.brand == brand,
            LedgerEventRow.name == "UsagesSettled",
            LedgerEventRow.block_time >= datetime.fromtimestamp(start, UTC),
            LedgerEventRow.block_time < datetime.fromtimestamp(end, UTC),
        )
    )
    return sum(int(args["paid"]) for args in rows)
