"""Every ``TwinLedger`` event, and every event of its access manager (``TwinAccessManager``),
decoded from raw logs with the compiled ABIs, as frozen dataclasses.

Pure functions (no provider, no database): the indexer stores what they return, and an auditor
that trusts no database can rebuild the ledger's history from them alone. ``UsagesSettled`` results
expand into one ``SettledUsage`` per usage word (``bridge.domain.codec``; an outcome code the bridge
does not know decodes to an ``UNKNOWN`` outcome keeping its number, never an error).

Licenses are agreements: a version exists from ``LicenseAccepted`` with the terms of the matching
``LicenseOffered`` (``LicenseGranted`` is gone). Roles are the manager's (``RoleGranted``,
``RoleRevoked``, ``RoleGrantDelayChanged`` with ``uint64`` role ids), not the ledger's.

Argument values are normalised for storage and comparison: addresses are checksummed strings,
``bytes32`` and other byte strings are ``0x``-hex strings, integers stay integers (uint256 exact),
structs are read-only mappings and arrays are tuples.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType
from typing import Any, Final

from hexbytes import HexBytes
from web3 import Web3
from web3.contract.contract import ContractEvent

from bridge.chain.client import LogEntry
from bridge.chain.toolchain import load_artifact
from bridge.domain.codec import Outcome, decode_result
from bridge.errors import BridgeError

Arg = int | bool | str | tuple["Arg", ...] | Mapping[str, "Arg"]
"""A decoded, normalised event argument."""

USAGES_SETTLED: Final = "UsagesSettled"
LICENSE_EVENTS: Final = frozenset(
    {
        "LicenseOffered",
        "LicenseAccepted",
        "LicenseDeclined",
        "LicenseOfferWithdrawn",
        "LicenseRevoked",
    }
)
"""The ledger's events of license offers and versions."""
ROLE_EVENTS: Final = frozenset({"RoleGranted", "RoleRevoked", "RoleGrantDelayChanged"})
"""The access manager's events of role membership and grant delays."""


class EventDecodeError(BridgeError):
    """A log of the ledger that its ABI cannot decode (unknown topic or malformed data)."""

    def __init__(self, log: LogEntry, reason: str) -> None:
        self.log = log
        self.reason = reason
        super().__init__(
            f"log {log.log_index} of block {log.block_number} (tx {log.tx_hash}): {reason}"
        )


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    """One decoded event of the ledger, where it happened and its arguments by ABI name."""

    name: str
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int
    args: Mapping[str, Arg]
    address: str = ""
    """The contract that emitted it (the ledger or its access manager; empty when unknown)."""

    def int_arg(self, name: str) -> int:
        """An integer argument (``TypeError`` if ``name`` is no integer)."""
        value = self.args[name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{self.name}.{name} is {value!r}, not an integer")
        return value

    def str_arg(self, name: str) -> str:
        """An address, bytes or string argument (``TypeError`` if ``name`` is none of those)."""
        value = self.args[name]
        if not isinstance(value, str):
            raise TypeError(f"{self.name}.{name} is {value!r}, not a string")
        return value

    def ints_arg(self, name: str) -> tuple[int, ...]:
        """An integer array argument."""
        value = self.args[name]
        if not isinstance(value, tuple) or not all(
            isinstance(item, int) and not isinstance(item, bool) for item in value
        ):
            raise TypeError(f"{self.name}.{name} is {value!r}, not an integer array")
        return tuple(int(item) for item in value)  # type: ignore[arg-type]

    def json_args(self) -> dict[str, Any]:
        """The arguments as plain JSON values (mappings to dicts, tuples to lists)."""
        return {key: _plain(value) for key, value in self.args.items()}


@dataclass(frozen=True, slots=True)
class SettledUsage:
    """One usage of a ``UsagesSettled`` event with its outcome; ``position`` is its index in the
    event's ``results``."""

    usage_id: int
    twin_id: int
    used_at: int
    quantity: int
    usage_type: int
    outcome: Outcome
    brand: str
    attester: str
    batch_digest: str
    position: int
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int


def _plain(value: Arg) -> Any:
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


def _normalise(value: Any) -> Arg:
    if isinstance(value, bytes | bytearray):
        return HexBytes(value).to_0x_hex()
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): _normalise(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_normalise(item) for item in value)
    raise TypeError(f"unexpected decoded value {value!r}")


class EventDecoder:
    """Decodes the logs of a contract from its ABI with web3's event processing."""

    def __init__(self, abi: Sequence[Mapping[str, Any]]) -> None:
        contract = Web3().eth.contract(abi=list(abi))
        self._by_topic: dict[bytes, ContractEvent] = {}
        for entry in abi:
            if entry.get("type") != "event" or entry.get("anonymous"):
                continue
            event: ContractEvent = contract.events[str(entry["name"])]()
            self._by_topic[bytes(HexBytes(event.topic))] = event

    @property
    def topics(self) -> dict[bytes, str]:
        """Topic 0 -> event name, for every event of the ABI."""
        return {topic: event.event_name for topic, event in self._by_topic.items()}

    def decode(self, log: LogEntry) -> LedgerEvent:
        """The event of ``log``.

        Raises:
            EventDecodeError: the topic is no event of the ABI, or the data does not decode.
        """
        if not log.topics:
            raise EventDecodeError(log, "anonymous log (no topics)")
        event = self._by_topic.get(log.topics[0])
        if event is None:
            raise EventDecodeError(log, f"unknown topic {HexBytes(log.topics[0]).to_0x_hex()}")
        raw: Any = {
            "address": log.address,
            "topics": [HexBytes(topic) for topic in log.topics],
            "data": HexBytes(log.data),
            "blockNumber": log.block_number,
            "blockHash": HexBytes(log.block_hash),
            "transactionHash": HexBytes(log.tx_hash),
            "logIndex": log.log_index,
            "transactionIndex": 0,
        }
        try:
            decoded = event.process_log(raw)
        except Exception as exc:  # web3 raises several types for malformed logs
            raise EventDecodeError(log, f"{event.event_name}: {exc}") from exc
        return LedgerEvent(
            name=event.event_name,
            block_number=log.block_number,
            block_hash=log.block_hash,
            tx_hash=log.tx_hash,
            log_index=log.log_index,
            args=MappingProxyType({k: _normalise(v) for k, v in decoded["args"].items()}),
            address=log.address,
        )


@cache
def ledger_decoder() -> EventDecoder:
    """The decoder of ``TwinLedger`` (with its libraries' events) from the compiled artifact."""
    return EventDecoder(load_artifact("TwinLedger").abi)


@cache
def manager_decoder() -> EventDecoder:
    """The decoder of the ledger's access manager (``TwinAccessManager``, OpenZeppelin's
    ``AccessManager``) from the compiled artifact."""
    return EventDecoder(load_artifact("TwinAccessManager").abi)


def decode_logs(
    logs: Iterable[LogEntry],
    *,
    ledger: str,
    decoder: EventDecoder | None = None,
    manager: str | None = None,
) -> list[LedgerEvent]:
    """The events that ``ledger`` (and ``manager``, its access manager, when given) emitted
    among ``logs``, in (block, log index) order; logs of other addresses are skipped.

    Raises:
        EventDecodeError: a log does not decode with its contract's ABI.
    """
    decoders = {ledger.lower(): decoder or ledger_decoder()}
    if manager is not None:
        decoders.setdefault(manager.lower(), manager_decoder())
    mine = [log for log in logs if log.address.lower() in decoders]
    mine.sort(key=lambda log: (log.block_number, log.log_index))
    return [decoders[log.address.lower()].decode(log) for log in mine]


def settled_usages(event: LedgerEvent) -> tuple[SettledUsage, ...]:
    """The usages of a ``UsagesSettled`` event, each with its outcome, in ``results`` order.

    Raises:
        ValueError: ``event`` is not ``UsagesSettled``.
    """
    if event.name != USAGES_SETTLED:
        raise ValueError(f"{event.name} is not {USAGES_SETTLED}")
    brand, attester = event.str_arg("brand"), event.str_arg("attester")
    digest = event.str_arg("batchDigest")
    usages = []
    for position, word in enumerate(event.ints_arg("results")):
        usage, outcome = decode_result(word)
        usages.append(
            SettledUsage(
                usage_id=usage.usage_id,
                twin_id=usage.twin_id,
                used_at=usage.used_at,
                quantity=usage.quantity,
                usage_type=usage.usage_type,
                outcome=outcome,
                brand=brand,
                attester=attester,
                batch_digest=digest,
                position=position,
                block_number=event.block_number,
                block_hash=event.block_hash,
                tx_hash=event.tx_hash,
                log_index=event.log_index,
            )
        )
    return tuple(usages)
