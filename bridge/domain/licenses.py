"""The ledger's rules for license versions, as ``LicenseBook`` applies them on chain.

Each (twin, brand) pair has a history of license versions. A version accepted by the brand
(``LicenseAccepted``), starting at ``t``, ends every earlier version still running at ``t``; a
revocation at ``t`` ends every version running at ``t``. "Ends" is ``LicenseCodec.endedAt``: a
window running past ``t`` stops there, and one not yet started becomes empty at ``t``. The
indexer (for the read API's mirror) and the audit (rebuilding from events alone) both follow these
rules through this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar


class LicenseWindow(Protocol):
    """The effective window of one license version, in unix seconds (``valid_until`` exclusive)."""

    valid_from: int
    valid_until: int


W = TypeVar("W", bound=LicenseWindow)


def end_at(window: LicenseWindow, at: int) -> bool:
    """``LicenseCodec.endedAt``: ``window`` ends at ``at`` if it runs past it; True if it did."""
    if window.valid_until <= at:
        return False
    window.valid_until = at
    window.valid_from = min(window.valid_from, at)
    return True


def end_running(newest_first: Iterable[W], at: int) -> list[W]:
    """Ends at ``at`` every version of one pair still running then, for an acceptance starting
    at ``at`` (given the earlier versions) or a revocation at ``at`` (given them all).

    The walk stops at the first version already over by ``at``: each version was ended no later
    than its successor's start, so every older one is over too.

    Returns:
        the versions it ended, newest first.
    """
    ended: list[W] = []
    for window in newest_first:
        if not end_at(window, at):
            break
        ended.append(window)
    return ended
