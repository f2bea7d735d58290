"""A ledger with a hold window for the tests of holds, voids and disputes: its deployment, the
proof of a settled usage (results and splits, rebuilt from the receipt as a client would) and the
reading of a twin's held royalties."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from bridge.domain.codec import Outcome

from .conftest import ARBITER_ROLE, TEST_CONFIG
from .helpers import Ledger, decode_result

HOLD = 3_600
"""The hold window of these tests: one hour."""
HOLD_CONFIG = (*TEST_CONFIG[:5], HOLD)
PRICE = 1_000_000
TIME_MASK = (1 << 40) - 1
FUNDED_SHIFT, DEBT_SHIFT = 152, 48
AMOUNT_MASK = (1 << 104) - 1

# DisputeKind
BRAND, GROUP, USAGE, REPORTED_AFTER_REVOCATION = 0, 1, 2, 3


def split(funded: int, debt: int = 0, entry: int = 0) -> int:
    """A usage's split word: ``funded << 152 | debt << 48 | entry``."""
    return (funded << FUNDED_SHIFT) | (debt << DEBT_SHIFT) | entry


def commitment(results: Sequence[int], splits: Sequence[int]) -> bytes:
    """The high 216 bits of ``keccak256(abi.encodePacked(results, splits))`` (the record's)."""
    digest = keccak(b"".join(w.to_bytes(32, "big") for w in [*results, *splits]))
    return (int.from_bytes(digest, "big") & ~TIME_MASK).to_bytes(32, "big")


@dataclass(frozen=True)
class Group:
    """One brand's settled group as a client rebuilds it from the settlement's receipt."""

    digest: bytes
    brand: str
    results: list[int]
    splits: list[int]
    settled_at: int

    def proof(self, index: int, **changes: Any) -> tuple[Any, ...]:
        """The ``UsageProof`` of usage ``index`` (fields overridden by ``changes``)."""
        fields = {
            "batchDigest": self.digest,
            "brand": self.brand,
            "index": index,
            "results": self.results,
            "splits": self.splits,
            **changes,
        }
        return tuple(fields.values())

    def usage_id(self, index: int) -> int:
        return self.results[index] >> 192


def settled_group(lg: Ledger, receipt: Any, brand: str) -> Group:
    """The brand's group in ``receipt``: its results, and each paid usage's split rebuilt from its
    price (``priceAt``) and the group's ``DebtRecorded`` events, which belong, in order, to the last
    paid usages with a price (escrow pays in order; once short, every later usage owes)."""
    [event] = [e for e in lg.events(receipt, "UsagesSettled") if e["brand"] == brand]
    results = list(event["results"])
    debts = [e for e in lg.events(receipt, "DebtRecorded") if e["brand"] == brand]
    amounts: dict[int, int] = {}
    for i, word in enumerate(results):
        usage, outcome = decode_result(word)
        if outcome == Outcome.PAID:
            _, price = lg.fn.priceAt(usage.twin_id, brand, usage.usage_type, usage.used_at).call()
            amounts[i] = price * usage.quantity
    charged = [i for i, amount in amounts.items() if amount]
    splits = [split(amounts[i]) if i in amounts else 0 for i in range(len(results))]
    for i, debt in zip(charged[len(charged) - len(debts) :], debts, strict=True):
        splits[i] = split(amounts[i] - debt["amount"], debt["amount"], debt["entry"])
    return Group(bytes(event["batchDigest"]), brand, results, splits, lg.block_time(receipt))


def held(lg: Ledger, twin_id: int) -> dict[str, int]:
    """``heldRoyalties(twin)`` by field name."""
    names = (
        "matured",
        "earlier",
        "earlierMaturesAt",
        "later",
        "laterMaturesAt",
        "openDisputes",
    )
    return dict(zip(names, lg.fn.heldRoyalties(twin_id).call(), strict=True))


def hold_world(
    deploy_world: Callable[..., Ledger], arbiter: LocalAccount, *, hold: int = HOLD
) -> Ledger:
    """A ledger with hold window ``hold``; the session world's roles, and ``arbiter`` as arbiter."""
    lg = deploy_world(config=(*TEST_CONFIG[:5], hold), members=None)
    lg.grant_role(ARBITER_ROLE, arbiter)
    return lg


def licensed(lg: Ledger, *, model: int = 0, brand: int = 0, price: int = PRICE) -> int:
    """A new twin of model ``model`` licensed to brand ``brand`` at ``price`` per use (type 0),
    its license in force for uses from a second ago."""
    owner = lg.actors.models[model]
    twin = lg.mint(owner)
    lg.offer_and_accept(twin, lg.terms(lg.actors.brands[brand], {0: price}), owner)
    lg.advance(2)  # a use one second before now is under the license
    return twin


def aligned(lg: Ledger, *, offset: int = 0) -> int:
    """The start of the next hold period (plus ``offset``) at least a minute ahead."""
    return ((lg.now() + 60) // HOLD + 1) * HOLD + offset
