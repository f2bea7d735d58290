"""Settled usages as the read API lists them: filtered, in ledger order, a page at a time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, select, tuple_
from sqlalchemy.orm import Session

from bridge.domain.codec import Outcome
from bridge.store.models import SettledUsageRow


@dataclass(frozen=True, slots=True)
class UsageFilter:
    twin_id: int | None = None
    brand: str | None = None
    usage_type: int | None = None
    outcome: int | None = None
    rejected: bool = False
    """Every outcome but paid."""
    unknown_outcome: bool = False
    """Only outcome codes this bridge does not know."""
    used_from: datetime | None = None
    used_to: datetime | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        """The WHERE conditions of the filters that are set."""
        usage = SettledUsageRow
        equal: list[tuple[Any, object]] = [
            (usage.twin_id, self.twin_id),
            (usage.brand, self.brand),
            (usage.usage_type, self.usage_type),
            (usage.outcome, self.outcome),
        ]
        conditions = [column == value for column, value in equal if value is not None]
        if self.rejected:
            conditions.append(usage.outcome != int(Outcome.PAID))
        if self.unknown_outcome:
            conditions.append(usage.outcome.not_in([int(o) for o in Outcome]))
        if self.used_from is not None:
            conditions.append(usage.used_at >= self.used_from)
        if self.used_to is not None:
            conditions.append(usage.used_at < self.used_to)
        return conditions


UsageKey = tuple[int, int, int]
"""(block number, log index, position in the event): the stable order of settled usages."""


def usages_page(
    session: Session, where: UsageFilter, *, after: UsageKey | None, limit: int
) -> tuple[list[SettledUsageRow], UsageKey | None]:
    """Up to ``limit`` settled usages in ledger order after ``after``, and the key to continue
    from (None on the last page)."""
    order = (SettledUsageRow.block_number, SettledUsageRow.log_index, SettledUsageRow.position)
    query = select(SettledUsageRow).where(*where.conditions()).order_by(*order).limit(limit + 1)
    if after is not None:
        query = query.where(tuple_(*order) > tuple_(*after))
    rows = list(session.scalars(query))
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    last = rows[-1]
    return rows, (last.block_number, last.log_index, last.position)
