"""License versions as the mirror needs them: each version's effective window (the ledger's rule in
``bridge.domain.licenses``) and the version that priced a paid usage."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bridge.domain.licenses import end_running


@dataclass(slots=True)
class _Window:
    """One version's effective window (a ``LicenseWindow``) and whether a revocation ended it."""

    valid_from: int
    valid_until: int
    revoked: bool = False


def license_windows(
    actions: Iterable[tuple[str, int, int, int]],
) -> dict[int, tuple[int, int, bool]]:
    """The effective window and revocation flag of each version of one (twin, brand) pair.

    ``actions`` are in log order: ``("grant", version, valid_from, valid_until)`` for an
    acceptance (``valid_from`` as accepted: the later of the offered start and the acceptance) or
    ``("revoke", 0, revoked_at, 0)``. An acceptance ends every earlier version still running at its
    start, a revocation every version running at its time, as ``LicenseBook`` does.

    Returns:
        version -> (effective_from, effective_until, revoked)
    """
    granted: list[tuple[int, _Window]] = []
    for kind, version, at, until in actions:
        ended = end_running((window for _, window in reversed(granted)), at)
        if kind == "revoke":
            for window in ended:
                window.revoked = True
        else:
            granted.append((version, _Window(at, until)))
    return {v: (w.valid_from, w.valid_until, w.revoked) for v, w in granted}


@dataclass(frozen=True, slots=True)
class PricedVersion:
    """A license version of one (twin, brand) pair as far as pricing needs it."""

    version: int
    valid_from: int
    prices: dict[int, int]
    position: tuple[int, int]
    """(block, log index) of its acceptance."""


def covering_version(
    versions: Sequence[PricedVersion], *, at: int, before: tuple[int, int]
) -> PricedVersion | None:
    """The version that priced a paid use at ``at`` settled at log position ``before``: the newest
    version accepted before it that starts at or before ``at`` (a later acceptance ends every
    earlier version at its own start, so no other can still cover ``at``)."""
    eligible = [v for v in versions if v.position < before and v.valid_from <= at]
    return max(eligible, key=lambda v: v.version, default=None)
