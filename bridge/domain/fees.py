"""The EIP-1559 fee rule every transaction the bridge sends follows, and its bump.

One small policy object (in the manner of a retry strategy): the worker prices its settlement and
relay transactions with it, replaces a stuck one with ``bump``, and the deployer prices the
deployment with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class Fees(NamedTuple):
    """What a transaction offers per unit of gas, in wei."""

    max_fee: int
    """``maxFeePerGas``."""
    priority: int
    """``maxPriorityFeePerGas``."""


def bumped(fee: int) -> int:
    """The least fee a node takes to replace a pending transaction paying ``fee``: 10 % more,
    rounded up (geth's and anvil's price bump), and at least one wei more."""
    return fee + max(1, -(-fee // 10))


@dataclass(frozen=True, slots=True)
class FeePolicy:
    """``max_fee = min(cap, 2 * base_fee + tip)``: room for the base fee to double before the
    transaction stops being includable, never above ``cap``; the tip is the node's suggestion,
    capped too."""

    cap: int
    """The most the operator pays per unit of gas, in wei."""

    def fees(self, *, base_fee: int, tip: int) -> Fees:
        """The fees of a new transaction when the latest base fee is ``base_fee`` and the node
        suggests ``tip``. Below ``base_fee`` when the cap is (``payable`` says so)."""
        priority = min(tip, self.cap)
        return Fees(max_fee=min(self.cap, 2 * base_fee + priority), priority=priority)

    def bump(self, previous: Fees, *, base_fee: int, tip: int) -> Fees | None:
        """The fees of a replacement for a pending transaction offering ``previous``: what the
        network asks now, and at least 10 % more than before (``bumped``); None when that would
        pass the cap."""
        now = self.fees(base_fee=base_fee, tip=tip)
        priority = max(now.priority, bumped(previous.priority))
        max_fee = max(min(self.cap, 2 * base_fee + priority), bumped(previous.max_fee))
        if max_fee > self.cap or priority > max_fee:
            return None
        return Fees(max_fee=max_fee, priority=priority)

    def payable(self, base_fee: int) -> bool:
        """Whether a transaction under this cap can be included at ``base_fee`` at all."""
        return base_fee <= self.cap
