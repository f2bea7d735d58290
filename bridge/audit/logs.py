"""The ledger's logs and settlement transactions as the node answers them (raw JSON-RPC), decoded
for the rebuild: ``UsagesSettled`` by hand (it carries every usage, so it is the hot path), every
other event through ``bridge.chain.events``."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from bridge.audit.state import AuditError
from bridge.chain.client import LogEntry
from bridge.chain.ledger import USAGES_SETTLED_TOPIC

SETTLED_TOPIC: Final = "0x" + USAGES_SETTLED_TOPIC.hex()
"""``UsagesSettled``'s topic as raw logs spell it."""
TIMED_TOPICS: Final = frozenset(
    "0x" + keccak(text=signature).hex()
    for signature in (
        "LicenseAccepted(uint256,address,uint256,uint40)",
        "SpendingLimitsSet(address,uint256,uint256,uint40)",
        "EscrowWithdrawalRequested(address,uint256,uint40)",
        "Paused(address)",
        "Unpaused(address)",
    )
)
"""Topics of the events whose check needs their block's time (as raw logs spell them)."""

RawLog = dict[str, Any]
"""One log of an ``eth_getLogs`` answer."""


@lru_cache(maxsize=65_536)
def checksum(address: str) -> str:
    """``to_checksum_address``, remembered: a history names few distinct accounts."""
    return to_checksum_address(address)


def is_settlement(raw: RawLog) -> bool:
    """Whether ``raw`` is a ``UsagesSettled`` event."""
    topics = raw["topics"]
    return bool(topics) and topics[0] == SETTLED_TOPIC


@dataclass(frozen=True, slots=True)
class SettledLog:
    """A ``UsagesSettled`` log, decoded without the ABI machinery (it carries every usage)."""

    block_number: int
    tx_hash: str
    log_index: int
    digest: str
    brand: str
    attester: str
    paid: int
    results: list[int]

    @classmethod
    def from_raw(cls, raw: RawLog) -> SettledLog:
        """Raises:
        AuditError: the data is not ``(uint256 paid, uint256[] results)``."""
        topics = raw["topics"]
        data = raw["data"][2:]
        count = int(data[128:192], 16)
        if len(data) != 192 + 64 * count or int(data[64:128], 16) != 64:
            raise AuditError(f"UsagesSettled log of tx {raw['transactionHash']} is malformed")
        return cls(
            block_number=int(raw["blockNumber"], 16),
            tx_hash=raw["transactionHash"],
            log_index=int(raw["logIndex"], 16),
            digest=topics[1],
            brand=checksum("0x" + topics[2][-40:]),
            attester=checksum("0x" + topics[3][-40:]),
            paid=int(data[0:64], 16),
            results=[int(data[i : i + 64], 16) for i in range(192, 192 + 64 * count, 64)],
        )


def log_entry(raw: RawLog) -> LogEntry:
    """``raw`` as ``bridge.chain.events`` decodes it."""
    return LogEntry(
        address=checksum(raw["address"]),
        topics=tuple(bytes.fromhex(t[2:]) for t in raw["topics"]),
        data=bytes.fromhex(raw["data"][2:]),
        block_number=int(raw["blockNumber"], 16),
        block_hash=raw["blockHash"],
        tx_hash=raw["transactionHash"],
        log_index=int(raw["logIndex"], 16),
    )


@dataclass(frozen=True, slots=True)
class TxInfo:
    """What the batch verification needs of a settlement transaction."""

    to: str | None
    input: bytes
    block_time: int
