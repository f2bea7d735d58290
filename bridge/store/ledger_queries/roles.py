"""Who holds which role of the ledger's access manager, from its ``RoleGranted`` and
``RoleRevoked`` events: members in force, and grants still waiting for their role's grant delay."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.store.ledger_queries.common import Source, source_of
from bridge.store.models import RoleChange

ROLE_NAMES = {0: "ADMIN_ROLE", 1: "REGISTRAR_ROLE", 2: "ATTESTER_ROLE", 3: "PAUSER_ROLE"}
"""The ledger's role ids (``TwinLedger.*_ROLE``); the manager's admin role is 0."""


@dataclass(frozen=True, slots=True)
class RoleMember:
    """An account granted a role and not revoked since.

    ``role`` is its name (``ROLE_<id>`` for an id the ledger does not use); ``since`` is when the
    grant counts (after the role's grant delay); ``waiting`` is True while ``since`` is after the
    time asked about (the account is no member yet: ``hasRole`` answers false). ``execution_delay``
    is the delay its calls through the manager must wait (the admin's, for example).
    """

    role_id: int
    role: str
    account: str
    since: int
    waiting: bool
    execution_delay: int
    source: Source
    """The ``RoleGranted`` event."""


def role_members(session: Session, *, at: int | None = None) -> list[RoleMember]:
    """Every account holding (or waiting to hold) a role as of unix time ``at`` (default: now),
    from the role events of blocks timed at or before it, by role id then account."""
    now = int(time.time()) if at is None else at
    rows = session.scalars(
        select(RoleChange)
        .where(
            RoleChange.event.in_(("RoleGranted", "RoleRevoked")),
            RoleChange.block_time <= datetime.fromtimestamp(now, UTC),
        )
        .order_by(RoleChange.block_number, RoleChange.log_index)
    )
    held: dict[tuple[int, str], RoleChange] = {}
    for row in rows:
        assert row.account is not None  # noqa: S101 - grants and revocations name one
        if row.event == "RoleGranted":
            held[row.role_id, row.account] = row
        else:
            held.pop((row.role_id, row.account), None)
    return [
        RoleMember(
            role_id=role_id,
            role=ROLE_NAMES.get(role_id, f"ROLE_{role_id}"),
            account=account,
            since=int(row.since or 0),
            waiting=int(row.since or 0) > now,
            execution_delay=row.delay,
            source=source_of(row),
        )
        for (role_id, account), row in sorted(held.items())
    ]
