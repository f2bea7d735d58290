"""``twin-bridge audit``: the whole ledger rebuilt from its events alone, checked against the chain.

Nothing here reads the bridge's database (``bridge.audit.reconcile`` reconciles with one on
request).
The auditor needs an RPC endpoint, the ledger's address and the block it was deployed in:

1. **Scan.** ``eth_getLogs`` of the ledger from the deployment block to the last block audited, in
   ranges that halve when the node refuses them ("too many results", "block range too wide") and
   grow back after each answer. The rebuilt state and the last scanned block can be kept in a
   checkpoint file: a later run resumes from it and ends where a full scan ends.
2. **Rebuild.** Twins (owner history, URI, consent hash, pauses, payees), every license version
   with its effective window after later grants and revocations, every usage with its outcome and,
   when paid, its amount (the price of the version in force at its time times its quantity), each
   brand's escrow, debt queue (recorded and repaid first in, first out), deposits and withdrawals,
   each twin's accrued royalties, each payee's claimable balance and payouts, and who held which
   role when. Each usage's outcome is decided again from the rebuilt licenses, pauses, caps and
   escrow, exactly as ``TwinLedger._settleGroup`` does, and must be the one the event reports; the
   amounts must add up to the event's ``paid`` and the escrow shortfalls to its ``DebtRecorded``
   events; royalties must be split as the payees in force say.
3. **Verify batches.** For each settlement transaction: its input decodes as ``settle(batch,
   signature)``, the EIP-712 digest recomputed with ``bridge.domain.eip712`` is the events'
   batch digest, the signature recovers to the events' attester, who held ``ATTESTER_ROLE`` at
   that point of the role events, and the results are the signed usage words in the signed order.
4. **Check balances.** At the last audited block the ledger's views (``twinState``, ``ownerOf``,
   ``brandAccount``, ``debtQueue``, ``claimable``, ``licenseVersionCount``, ``totalLiabilities``)
   must equal the rebuilt state, and the token balance of the ledger must equal what it owes: the
   sum of escrow, debt reserves, accrued royalties and claimable balances (``totalLiabilities()``).

Every disagreement is a :class:`Discrepancy` in plain words; the audit is clean when there is none.
"""

from __future__ import annotations

import csv
import json
import time
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

from eth_abi.abi import decode, encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from bridge.chain.client import LogEntry
from bridge.chain.events import LedgerEvent, ledger_decoder
from bridge.chain.ledger import decode_settle_calldata
from bridge.chain.rpc import JsonRpc
from bridge.domain import eip712
from bridge.domain.codec import Outcome
from bridge.errors import BridgeError, LogRangeTooLargeError, RpcError

CHECKPOINT_FORMAT: Final = "twin-bridge-audit-state-1"
DEFAULT_MAX_BLOCK_RANGE: Final = 10_000
CHECKPOINT_EVERY_S: Final = 10.0
"""Seconds between checkpoint writes during a scan (one is always written at its end)."""

ZERO_ADDRESS: Final = "0x0000000000000000000000000000000000000000"
ATTESTER_ROLE: Final = "0x" + keccak(text="ATTESTER_ROLE").hex()
ROLE_NAMES: Final = {
    "0x" + "00" * 32: "DEFAULT_ADMIN_ROLE",
    ATTESTER_ROLE: "ATTESTER_ROLE",
    "0x" + keccak(text="REGISTRAR_ROLE").hex(): "REGISTRAR_ROLE",
    "0x" + keccak(text="PAUSER_ROLE").hex(): "PAUSER_ROLE",
}
BPS: Final = 10_000

_USAGES_SETTLED_TOPIC: Final = (
    "0x" + keccak(text="UsagesSettled(bytes32,address,address,uint256,uint256[])").hex()
)
_M64: Final = 2**64 - 1
_M40: Final = 2**40 - 1
_M32: Final = 2**32 - 1

_PAID: Final = int(Outcome.PAID)
_UNKNOWN_TWIN: Final = int(Outcome.UNKNOWN_TWIN)
_NO_LICENSE: Final = int(Outcome.NO_LICENSE)
_NOT_STARTED: Final = int(Outcome.LICENSE_NOT_STARTED)
_EXPIRED: Final = int(Outcome.LICENSE_EXPIRED)
_REVOKED: Final = int(Outcome.LICENSE_REVOKED)
_TYPE_NOT_LICENSED: Final = int(Outcome.USAGE_TYPE_NOT_LICENSED)
_CAP_REACHED: Final = int(Outcome.USE_CAP_REACHED)
_PAUSED: Final = int(Outcome.TWIN_PAUSED)
_ZERO_QUANTITY: Final = int(Outcome.ZERO_QUANTITY)
_IN_FUTURE: Final = int(Outcome.USAGE_IN_FUTURE)


class AuditError(BridgeError):
    """The audit could not run (no answer from the RPC, a checkpoint of another ledger, ...)."""


@dataclass(frozen=True, slots=True)
class Discrepancy:
    """One way the chain disagrees with its own events (or the database with the chain)."""

    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


def outcome_words(code: int) -> str:
    """An outcome code in words (``paid`` or the reason of a rejection)."""
    try:
        return Outcome(code).description
    except ValueError:
        return f"unknown outcome {code}"


# ====================================================================== rebuilt state


@dataclass(slots=True)
class Version:
    """One license version; ``valid_from``/``valid_until`` are its effective window (later grants
    and revocations end it earlier), ``granted_from``/``granted_until`` the window it was granted
    with (the start already clamped to the grant time by the ledger)."""

    number: int
    valid_from: int
    valid_until: int
    max_uses: int
    prices: dict[int, int]
    purpose_hash: str
    consent_hash: str
    granted_block: int
    granted_tx: str
    granted_from: int = 0
    granted_until: int = 0
    uses: int = 0
    revoked: bool = False
    revoked_at: int | None = None

    def end_at(self, end: int) -> None:
        """``LicenseCodec.endedAt``."""
        if self.valid_until > end:
            self.valid_until = end
        if self.valid_from > end:
            self.valid_from = end

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "valid_from": self.valid_from,
            "valid_until": self.valid_until,
            "max_uses": self.max_uses,
            "prices": {str(k): v for k, v in self.prices.items()},
            "purpose_hash": self.purpose_hash,
            "consent_hash": self.consent_hash,
            "granted_block": self.granted_block,
            "granted_tx": self.granted_tx,
            "granted_from": self.granted_from,
            "granted_until": self.granted_until,
            "uses": self.uses,
            "revoked": self.revoked,
            "revoked_at": self.revoked_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Version:
        return cls(**{**data, "prices": {int(k): int(v) for k, v in data["prices"].items()}})


@dataclass(slots=True)
class LicensePair:
    """The license versions of one (twin, brand): ``history`` then ``current``, like the ledger."""

    history: list[Version] = field(default_factory=list)
    current: Version | None = None
    froms: list[int] = field(default_factory=list)
    """``valid_from`` of each history version (sorted), for the binary search of lookups."""

    def versions(self) -> list[Version]:
        return [*self.history, *([self.current] if self.current is not None else [])]

    def reindex(self) -> None:
        self.froms = [v.valid_from for v in self.history]


@dataclass(slots=True)
class Twin:
    twin_id: int
    owner: str
    uri: str
    consent_hash: str
    minted_block: int
    minted_tx: str
    owners: list[list[Any]] = field(default_factory=list)
    """``[block, tx, owner]`` per owner in turn, the minting one first."""
    paused_since: int = 0
    pauses: list[list[int]] = field(default_factory=list)
    """Finished pauses ``[since, end]``."""
    payees: list[list[Any]] = field(default_factory=list)
    """``[account, bps]`` in force."""
    accrued: int = 0
    earned: int = 0
    """Funded usage amounts and repaid debt credited to the twin so far."""
    distributed: int = 0
    paid_usages: int = 0

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(slots=True)
class BrandBook:
    escrow: int = 0
    debt: int = 0
    debt_reserve: int = 0
    pending_withdrawal: int = 0
    unlocks_at: int = 0
    debt_entries: list[list[int]] = field(default_factory=list)
    """``[twin id, amount still owed]`` per debt entry."""
    debt_head: int = 0
    deposited: int = 0
    withdrawn: int = 0
    spent: int = 0
    """Escrow that paid usages."""
    debt_recorded: int = 0
    debt_repaid: int = 0
    usages_paid: int = 0
    usages_rejected: int = 0
    amount_paid: int = 0

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(slots=True)
class PayeeBook:
    claimable: int = 0
    credited: int = 0
    paid_out: int = 0
    payouts: int = 0

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(slots=True)
class Batch:
    """One settlement transaction and what its verification found."""

    tx_hash: str
    block_number: int
    block_time: int
    digest: str
    attester: str
    groups: list[list[Any]] = field(default_factory=list)
    """``[brand, log index, usages, paid]`` per ``UsagesSettled`` event, in log order."""
    first_usage: int = 0
    """Index of its first usage in the rebuilt usage list."""
    signer: str | None = None
    verified: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def usages(self) -> int:
        return sum(int(g[2]) for g in self.groups)

    @property
    def paid(self) -> int:
        return sum(int(g[3]) for g in self.groups)

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


# One usage: (usage id, brand, twin id, used at, quantity, usage type, outcome, amount or None,
# license version or None, batch index, log index)
UsageRow = tuple[int, str, int, int, int, int, int, int | None, int | None, int, int]


@dataclass
class LedgerState:
    """Everything rebuilt from the ledger's events up to ``last_block``."""

    ledger: str
    chain_id: int
    start_block: int
    last_block: int
    last_block_hash: str = ""
    twins: dict[int, Twin] = field(default_factory=dict)
    licenses: dict[tuple[int, str], LicensePair] = field(default_factory=dict)
    brands: dict[str, BrandBook] = field(default_factory=dict)
    payees: dict[str, PayeeBook] = field(default_factory=dict)
    roles: dict[str, list[str]] = field(default_factory=dict)
    """Role -> accounts holding it now."""
    role_history: list[list[Any]] = field(default_factory=list)
    """``[block, tx, role name, account, "granted"|"revoked", sender]``."""
    usages: list[UsageRow] = field(default_factory=list)
    batches: list[Batch] = field(default_factory=list)
    deposits: list[list[Any]] = field(default_factory=list)
    """``[block, tx, brand, from, amount, to debt]``."""
    withdrawals: list[list[Any]] = field(default_factory=list)
    """``[block, tx, brand, amount]`` (escrow withdrawn)."""
    debts: list[list[Any]] = field(default_factory=list)
    """``[block, tx, "recorded"|"repaid", brand, twin, amount, entry]``."""
    payouts: list[list[Any]] = field(default_factory=list)
    """``[block, tx, payee, caller, amount]``."""
    distributions: list[list[Any]] = field(default_factory=list)
    """``[block, tx, twin, payee, amount]``."""
    events: Counter[str] = field(default_factory=Counter)
    paused: bool = False
    discrepancies: list[Discrepancy] = field(default_factory=list)

    # ---------------------------------------------------------------- checkpoint

    def to_json(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "ledger": self.ledger,
            "chain_id": self.chain_id,
            "start_block": self.start_block,
            "last_block": self.last_block,
            "last_block_hash": self.last_block_hash,
            "twins": [t.to_json() for t in self.twins.values()],
            "licenses": [
                {
                    "twin_id": twin,
                    "brand": brand,
                    "history": [v.to_json() for v in pair.history],
                    "current": None if pair.current is None else pair.current.to_json(),
                }
                for (twin, brand), pair in self.licenses.items()
            ],
            "brands": {brand: b.to_json() for brand, b in self.brands.items()},
            "payees": {payee: p.to_json() for payee, p in self.payees.items()},
            "roles": self.roles,
            "role_history": self.role_history,
            "usages": self.usages,
            "batches": [b.to_json() for b in self.batches],
            "deposits": self.deposits,
            "withdrawals": self.withdrawals,
            "debts": self.debts,
            "payouts": self.payouts,
            "distributions": self.distributions,
            "events": dict(sorted(self.events.items())),
            "paused": self.paused,
            "discrepancies": [[d.kind, d.message] for d in self.discrepancies],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LedgerState:
        if data.get("format") != CHECKPOINT_FORMAT:
            raise AuditError(f"not an audit checkpoint (format {data.get('format')!r})")
        licenses = {}
        for item in data["licenses"]:
            pair = LicensePair(
                history=[Version.from_json(v) for v in item["history"]],
                current=None if item["current"] is None else Version.from_json(item["current"]),
            )
            pair.reindex()
            licenses[int(item["twin_id"]), str(item["brand"])] = pair
        return cls(
            ledger=data["ledger"],
            chain_id=int(data["chain_id"]),
            start_block=int(data["start_block"]),
            last_block=int(data["last_block"]),
            last_block_hash=str(data["last_block_hash"]),
            twins={int(t["twin_id"]): Twin(**t) for t in data["twins"]},
            licenses=licenses,
            brands={k: BrandBook(**v) for k, v in data["brands"].items()},
            payees={k: PayeeBook(**v) for k, v in data["payees"].items()},
            roles={k: list(v) for k, v in data["roles"].items()},
            role_history=data["role_history"],
            usages=[tuple(u) for u in data["usages"]],
            batches=[Batch(**b) for b in data["batches"]],
            deposits=data["deposits"],
            withdrawals=data["withdrawals"],
            debts=data["debts"],
            payouts=data["payouts"],
            distributions=data["distributions"],
            events=Counter(data["events"]),
            paused=bool(data["paused"]),
            discrepancies=[Discrepancy(k, m) for k, m in data["discrepancies"]],
        )

    def save(self, path: Path) -> None:
        """Writes the checkpoint atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.tmp")
        # json, not orjson: amounts of 18-decimal tokens pass 64 bits.
        staging.write_text(json.dumps(self.to_json(), separators=(",", ":")), encoding="utf-8")
        staging.replace(path)

    @classmethod
    def load(cls, path: Path) -> LedgerState:
        try:
            return cls.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AuditError(f"cannot read the audit checkpoint {path}: {exc}") from exc

    # ---------------------------------------------------------------- totals

    def liabilities(self) -> int:
        """What the ledger owes by its events: escrow, debt reserves, accrued royalties and
        claimable balances."""
        return (
            sum(b.escrow + b.debt_reserve for b in self.brands.values())
            + sum(t.accrued for t in self.twins.values())
            + sum(p.claimable for p in self.payees.values())
        )


# ====================================================================== rebuilding


@dataclass(frozen=True, slots=True)
class _Settled:
    """A ``UsagesSettled`` log, decoded without the ABI machinery (it carries every usage)."""

    block_number: int
    tx_hash: str
    log_index: int
    digest: str
    brand: str
    attester: str
    paid: int
    results: list[int]


@lru_cache(maxsize=65_536)
def _checksum(address: str) -> str:
    """``to_checksum_address``, remembered: a history names few distinct accounts."""
    return to_checksum_address(address)


def _topic_address(topic: str) -> str:
    return _checksum("0x" + topic[-40:])


def _settled_from_raw(raw: dict[str, Any]) -> _Settled:
    topics = raw["topics"]
    data = raw["data"][2:]
    count = int(data[128:192], 16)
    if len(data) != 192 + 64 * count or int(data[64:128], 16) != 64:
        raise AuditError(f"UsagesSettled log of tx {raw['transactionHash']} is malformed")
    return _Settled(
        block_number=int(raw["blockNumber"], 16),
        tx_hash=raw["transactionHash"],
        log_index=int(raw["logIndex"], 16),
        digest=topics[1],
        brand=_topic_address(topics[2]),
        attester=_topic_address(topics[3]),
        paid=int(data[0:64], 16),
        results=[int(data[i : i + 64], 16) for i in range(192, 192 + 64 * count, 64)],
    )


def _log_entry(raw: dict[str, Any]) -> LogEntry:
    return LogEntry(
        address=_checksum(raw["address"]),
        topics=tuple(bytes.fromhex(t[2:]) for t in raw["topics"]),
        data=bytes.fromhex(raw["data"][2:]),
        block_number=int(raw["blockNumber"], 16),
        block_hash=raw["blockHash"],
        tx_hash=raw["transactionHash"],
        log_index=int(raw["logIndex"], 16),
    )


@dataclass(frozen=True, slots=True)
class _TxInfo:
    to: str | None
    input: bytes
    block_time: int


class Rebuilder:
    """Applies the ledger's events, in order, to a :class:`LedgerState`, checking each step."""

    def __init__(self, state: LedgerState) -> None:
        self.state = state
        self._decoder = ledger_decoder()
        self._seen_usages = {u[0] for u in state.usages}
        self._pending_debts: list[tuple[int, int]] = []
        self._pending_tx = ""
        self._distribution: list[LedgerEvent] = []

    def problem(self, kind: str, message: str) -> None:
        self.state.discrepancies.append(Discrepancy(kind, message))

    # ---------------------------------------------------------------- a range of logs

    def apply_range(
        self, raw_logs: Sequence[dict[str, Any]], txs: dict[str, _TxInfo], chain_id: int
    ) -> int:
        """Applies the logs of whole blocks (in log order) and verifies their settlement
        transactions (``txs`` by hash). Returns the number of usages settled in them."""
        settled_before = len(self.state.usages)
        batch: Batch | None = None
        for raw in raw_logs:
            tx_hash = raw["transactionHash"]
            if tx_hash != self._pending_tx:
                self._end_tx()
                self._pending_tx = tx_hash
            topics = raw["topics"]
            if topics and topics[0] == _USAGES_SETTLED_TOPIC:
                self._flush_distribution()
                event = _settled_from_raw(raw)
                info = txs.get(event.tx_hash)
                if batch is None or batch.tx_hash != event.tx_hash:
                    if batch is not None:
                        self._verify_batch(batch, txs.get(batch.tx_hash), chain_id)
                    batch = Batch(
                        tx_hash=event.tx_hash,
                        block_number=event.block_number,
                        block_time=info.block_time if info else 0,
                        digest=event.digest,
                        attester=event.attester,
                        first_usage=len(self.state.usages),
                    )
                    self.state.batches.append(batch)
                self._settle_group(event, batch, len(self.state.batches) - 1)
                self.state.events["UsagesSettled"] += 1
                continue
            event_ = self._decoder.decode(_log_entry(raw))
            if event_.name != "RoyaltiesDistributed" or (
                self._distribution
                and (
                    self._distribution[0].int_arg("twinId") != event_.int_arg("twinId")
                    or self._distribution[0].tx_hash != event_.tx_hash
                )
            ):
                self._flush_distribution()
            self.state.events[event_.name] += 1
            self._apply(event_)
        if batch is not None:
            self._verify_batch(batch, txs.get(batch.tx_hash), chain_id)
        self._end_tx()
        return len(self.state.usages) - settled_before

    def _end_tx(self) -> None:
        self._flush_distribution()
        if self._pending_debts:
            self.problem(
                "debt",
                f"tx {self._pending_tx} records debt {self._pending_debts} that no settlement "
                "in it accounts for",
            )
            self._pending_debts = []

    # ---------------------------------------------------------------- events other than usages

    def _apply(self, event: LedgerEvent) -> None:
        handler = getattr(self, f"_on_{event.name}", None)
        if handler is not None:
            handler(event)

    def _twin(self, twin_id: int, event: LedgerEvent) -> Twin | None:
        twin = self.state.twins.get(twin_id)
        if twin is None:
            self.problem(
                "twin",
                f"{event.name} in tx {event.tx_hash} names twin {twin_id}, which was never minted",
            )
        return twin

    def _brand(self, brand: str) -> BrandBook:
        book = self.state.brands.get(brand)
        if book is None:
            book = self.state.brands[brand] = BrandBook()
        return book

    def _payee(self, payee: str) -> PayeeBook:
        book = self.state.payees.get(payee)
        if book is None:
            book = self.state.payees[payee] = PayeeBook()
        return book

    def _on_TwinMinted(self, e: LedgerEvent) -> None:
        twin_id, owner = e.int_arg("twinId"), e.str_arg("owner")
        if twin_id in self.state.twins:
            self.problem("twin", f"twin {twin_id} minted twice (again in tx {e.tx_hash})")
        expected = max(self.state.twins, default=0) + 1
        if twin_id != expected:
            self.problem("twin", f"twin {twin_id} minted in tx {e.tx_hash}; expected id {expected}")
        self.state.twins[twin_id] = Twin(
            twin_id=twin_id,
            owner=owner,
            uri=e.str_arg("uri"),
            consent_hash=e.str_arg("consentHash"),
            minted_block=e.block_number,
            minted_tx=e.tx_hash,
            owners=[[e.block_number, e.tx_hash, owner]],
        )

    def _on_Transfer(self, e: LedgerEvent) -> None:
        source, target, twin_id = e.str_arg("from"), e.str_arg("to"), e.int_arg("tokenId")
        twin = self._twin(twin_id, e)
        if twin is None:
            return
        if source == ZERO_ADDRESS:
            if target != twin.owner:
                self.problem(
                    "twin", f"twin {twin_id} minted to {target}, TwinMinted says {twin.owner}"
                )
            return
        if source != twin.owner:
            self.problem(
                "twin",
                f"twin {twin_id} transferred from {source} in tx {e.tx_hash}, but its owner was "
                f"{twin.owner}",
            )
        if twin.accrued:
            self.problem(
                "royalties",
                f"twin {twin_id} changed hands in tx {e.tx_hash} with {twin.accrued} undistributed",
            )
        twin.owner = target
        twin.owners.append([e.block_number, e.tx_hash, target])

    def _on_TwinPaused(self, e: LedgerEvent) -> None:
        twin = self._twin(e.int_arg("twinId"), e)
        if twin is None:
            return
        if twin.paused_since:
            self.problem("pause", f"twin {twin.twin_id} paused again in tx {e.tx_hash}")
        twin.paused_since = e.int_arg("at")

    def _on_TwinUnpaused(self, e: LedgerEvent) -> None:
        twin = self._twin(e.int_arg("twinId"), e)
        if twin is None:
            return
        if not twin.paused_since:
            self.problem(
                "pause", f"twin {twin.twin_id} unpaused in tx {e.tx_hash} while not paused"
            )
        twin.pauses.append([twin.paused_since, e.int_arg("at")])
        twin.paused_since = 0

    def _on_PayeesSet(self, e: LedgerEvent) -> None:
        twin = self._twin(e.int_arg("twinId"), e)
        if twin is None:
            return
        payees = e.json_args()["payees"]
        twin.payees = [[str(p["account"]), int(p["bps"])] for p in payees]
        if twin.accrued:
            self.problem(
                "royalties",
                f"payees of twin {twin.twin_id} replaced in tx {e.tx_hash} with "
                f"{twin.accrued} undistributed",
            )

    def _on_LicenseGranted(self, e: LedgerEvent) -> None:
        twin_id, brand = e.int_arg("twinId"), e.str_arg("brand")
        self._twin(twin_id, e)
        pair = self.state.licenses.setdefault((twin_id, brand), LicensePair())
        start = e.int_arg("validFrom")
        if pair.current is not None:
            pair.history.append(pair.current)
            for old in reversed(pair.history):
                if old.valid_until <= start:
                    break
                old.end_at(start)
        number = len(pair.history)
        if e.int_arg("version") != number:
            self.problem(
                "license",
                f"license of twin {twin_id} to {brand} granted in tx {e.tx_hash} as version "
                f"{e.int_arg('version')}; its history makes it version {number}",
            )
        prices = e.json_args()["prices"]
        pair.current = Version(
            number=number,
            valid_from=start,
            valid_until=e.int_arg("validUntil"),
            max_uses=e.int_arg("maxUses"),
            prices={int(p["usageType"]): int(p["price"]) for p in prices},
            purpose_hash=e.str_arg("purposeHash"),
            consent_hash=e.str_arg("consentHash"),
            granted_block=e.block_number,
            granted_tx=e.tx_hash,
            granted_from=start,
            granted_until=e.int_arg("validUntil"),
        )
        pair.reindex()

    def _on_LicenseRevoked(self, e: LedgerEvent) -> None:
        twin_id, brand, at = e.int_arg("twinId"), e.str_arg("brand"), e.int_arg("revokedAt")
        pair = self.state.licenses.get((twin_id, brand))
        if pair is None or pair.current is None:
            self.problem(
                "license",
                f"tx {e.tx_hash} revokes a license of twin {twin_id} to "
                f"{brand} that was never granted",
            )
            return
        for version in [pair.current, *reversed(pair.history)]:
            if version is not pair.current and version.valid_until <= at:
                break
            if version.valid_until > at:
                version.end_at(at)
                version.revoked = True
                version.revoked_at = at
        if e.int_arg("version") != len(pair.history):
            self.problem(
                "license",
                f"revocation in tx {e.tx_hash} names version "
                f"{e.int_arg('version')}, the current one is {len(pair.history)}",
            )
        pair.reindex()

    def _on_RoleGranted(self, e: LedgerEvent) -> None:
        role, account = e.str_arg("role"), e.str_arg("account")
        holders = self.state.roles.setdefault(role, [])
        if account not in holders:
            holders.append(account)
        self.state.role_history.append(
            [
                e.block_number,
                e.tx_hash,
                ROLE_NAMES.get(role, role),
                account,
                "granted",
                e.str_arg("sender"),
            ]
        )

    def _on_RoleRevoked(self, e: LedgerEvent) -> None:
        role, account = e.str_arg("role"), e.str_arg("account")
        holders = self.state.roles.setdefault(role, [])
        if account in holders:
            holders.remove(account)
        self.state.role_history.append(
            [
                e.block_number,
                e.tx_hash,
                ROLE_NAMES.get(role, role),
                account,
                "revoked",
                e.str_arg("sender"),
            ]
        )

    def _on_Paused(self, e: LedgerEvent) -> None:
        self.state.paused = True

    def _on_Unpaused(self, e: LedgerEvent) -> None:
        self.state.paused = False

    def _on_EscrowDeposited(self, e: LedgerEvent) -> None:
        brand, amount, to_debt = e.str_arg("brand"), e.int_arg("amount"), e.int_arg("toDebt")
        book = self._brand(brand)
        expected = min(amount, book.debt - book.debt_reserve)
        if to_debt != expected:
            self.problem(
                "escrow",
                f"deposit of {amount} for {brand} in tx {e.tx_hash} put "
                f"{to_debt} to debt; its outstanding debt makes it {expected}",
            )
        book.debt_reserve += to_debt
        book.escrow += amount - to_debt
        book.deposited += amount
        self.state.deposits.append(
            [e.block_number, e.tx_hash, brand, e.str_arg("from"), amount, to_debt]
        )

    def _on_EscrowWithdrawalRequested(self, e: LedgerEvent) -> None:
        book = self._brand(e.str_arg("brand"))
        book.pending_withdrawal = e.int_arg("amount")
        book.unlocks_at = e.int_arg("unlocksAt")

    def _on_EscrowWithdrawalCancelled(self, e: LedgerEvent) -> None:
        book = self._brand(e.str_arg("brand"))
        book.pending_withdrawal = 0
        book.unlocks_at = 0

    def _on_EscrowWithdrawn(self, e: LedgerEvent) -> None:
        brand, amount = e.str_arg("brand"), e.int_arg("amount")
        book = self._brand(brand)
        expected = min(book.pending_withdrawal, book.escrow)
        if amount != expected:
            self.problem(
                "escrow",
                f"{brand} withdrew {amount} of escrow in tx {e.tx_hash}; its "
                f"request and escrow allow {expected}",
            )
        book.escrow -= amount
        book.withdrawn += amount
        book.pending_withdrawal = 0
        book.unlocks_at = 0
        self.state.withdrawals.append([e.block_number, e.tx_hash, brand, amount])

    def _on_DebtRecorded(self, e: LedgerEvent) -> None:
        brand, twin_id = e.str_arg("brand"), e.int_arg("twinId")
        amount, entry = e.int_arg("amount"), e.int_arg("entry")
        book = self._brand(brand)
        entries = book.debt_entries
        merge = len(entries) > book.debt_head and entries[-1][0] == twin_id
        expected = len(entries) - 1 if merge else len(entries)
        if entry != expected:
            self.problem(
                "debt",
                f"debt of {brand} to twin {twin_id} in tx {e.tx_hash} recorded "
                f"as entry {entry}; its queue makes it entry {expected}",
            )
        if merge:
            entries[-1][1] += amount
        else:
            entries.append([twin_id, amount])
        book.debt += amount
        book.debt_recorded += amount
        self._pending_debts.append((twin_id, amount))
        self.state.debts.append(
            [e.block_number, e.tx_hash, "recorded", brand, twin_id, amount, entry]
        )

    def _on_DebtRepaid(self, e: LedgerEvent) -> None:
        brand, twin_id = e.str_arg("brand"), e.int_arg("twinId")
        amount, entry = e.int_arg("amount"), e.int_arg("entry")
        book = self._brand(brand)
        head = book.debt_head
        if head >= len(book.debt_entries) or entry != head:
            self.problem(
                "debt",
                f"tx {e.tx_hash} repays debt entry {entry} of {brand}; first in "
                f"line is entry {head} of {len(book.debt_entries)}",
            )
        else:
            owed_twin, owed = book.debt_entries[head]
            expected = min(owed, book.debt_reserve)
            if owed_twin != twin_id or amount != expected:
                self.problem(
                    "debt",
                    f"tx {e.tx_hash} repays {amount} of entry {entry} of {brand} "
                    f"to twin {twin_id}; the entry owes {owed} to twin {owed_twin} and "
                    f"the reserve pays {expected}",
                )
            book.debt_entries[head][1] -= amount
            if book.debt_entries[head][1] <= 0:
                book.debt_head += 1
        book.debt_reserve -= amount
        book.debt -= amount
        book.debt_repaid += amount
        twin = self._twin(twin_id, e)
        if twin is not None:
            twin.accrued += amount
            twin.earned += amount
        self.state.debts.append(
            [e.block_number, e.tx_hash, "repaid", brand, twin_id, amount, entry]
        )

    def _on_RoyaltiesDistributed(self, e: LedgerEvent) -> None:
        self._distribution.append(e)
        payee, amount = e.str_arg("payee"), e.int_arg("amount")
        book = self._payee(payee)
        book.claimable += amount
        book.credited += amount
        self.state.distributions.append(
            [e.block_number, e.tx_hash, e.int_arg("twinId"), payee, amount]
        )

    def _flush_distribution(self) -> None:
        """Checks one distribution (consecutive ``RoyaltiesDistributed`` of a twin in one tx): it
        empties the twin's account, split as its payees say, the rest to the owner."""
        if not self._distribution:
            return
        events, self._distribution = self._distribution, []
        first = events[0]
        twin = self._twin(first.int_arg("twinId"), first)
        if twin is None:
            return
        total = sum(e.int_arg("amount") for e in events)
        expected: list[tuple[str, int]] = []
        rest = twin.accrued
        for account, bps in twin.payees:
            share = twin.accrued * int(bps) // BPS
            if share:
                expected.append((str(account), share))
                rest -= share
        if rest:
            expected.append((twin.owner, rest))
        actual = [(e.str_arg("payee"), e.int_arg("amount")) for e in events]
        if actual != expected:
            self.problem(
                "royalties",
                f"twin {twin.twin_id}'s royalties distributed in tx "
                f"{first.tx_hash} as {actual}; its account of {twin.accrued} and payees "
                f"make it {expected}",
            )
        twin.accrued -= total
        twin.distributed += total

    def _on_PayeePaid(self, e: LedgerEvent) -> None:
        payee, amount = e.str_arg("payee"), e.int_arg("amount")
        book = self._payee(payee)
        if amount != book.claimable:
            self.problem(
                "payout",
                f"{payee} was paid {amount} in tx {e.tx_hash}; its claimable "
                f"balance was {book.claimable}",
            )
        book.claimable -= amount
        book.paid_out += amount
        book.payouts += 1
        self.state.payouts.append([e.block_number, e.tx_hash, payee, e.str_arg("caller"), amount])

    # ---------------------------------------------------------------- settlement

    def _settle_group(self, event: _Settled, batch: Batch, batch_index: int) -> None:
        """Decides every usage of a group again and applies it, like ``_settleGroup``."""
        state = self.state
        brand = event.brand
        book = self._brand(brand)
        if not batch.groups and event.attester not in state.roles.get(ATTESTER_ROLE, ()):
            self.problem(
                "attester",
                f"batch {event.digest} (tx {event.tx_hash}, block {event.block_number}) was "
                f"signed by {event.attester}, which did not hold ATTESTER_ROLE then according to "
                "the role events",
            )
        if event.attester != batch.attester or event.digest != batch.digest:
            batch.problems.append(
                f"its events name different digests or attesters ({event.digest}, {event.attester})"
            )
        block_time = batch.block_time
        escrow = book.escrow
        total = 0
        shortfalls: list[tuple[int, int]] = []
        seen = self._seen_usages
        usages = state.usages
        twins = state.twins
        licenses = state.licenses
        log_index = event.log_index
        twin_id = -1
        twin: Twin | None = None
        pair: LicensePair | None = None
        paid_count = 0
        for word in event.results:
            code = word & 0xFF
            usage_id = word >> 192
            if twin_id != (word >> 128) & _M64:
                twin_id = (word >> 128) & _M64
                twin = twins.get(twin_id)
                pair = licenses.get((twin_id, brand))
            at = (word >> 88) & _M40
            quantity = (word >> 56) & _M32
            usage_type = (word >> 48) & 0xFF
            if usage_id in seen:
                self.problem("usage", f"usage {usage_id} settled again in tx {event.tx_hash}")
            seen.add(usage_id)

            # The decision of TwinLedger._slowPrice / _fastPrice, then the cap.
            version: Version | None = None
            if quantity == 0:
                expected = _ZERO_QUANTITY
            elif block_time and at > block_time:
                expected = _IN_FUTURE
            elif pair is None or pair.current is None:
                expected = _UNKNOWN_TWIN if twin is None else _NO_LICENSE
            else:
                version = pair.current
                expected = _PAID
                if at < version.valid_from:
                    index = bisect_right(pair.froms, at)
                    if index == 0:
                        expected = _NOT_STARTED
                    else:
                        version = pair.history[index - 1]
                if expected == _PAID and at >= version.valid_until:
                    expected = _REVOKED if version.revoked else _EXPIRED
                if expected == _PAID and usage_type not in version.prices:
                    expected = _TYPE_NOT_LICENSED
                if expected == _PAID and twin is not None and _paused_at(twin, at):
                    expected = _PAUSED
                if (
                    expected == _PAID
                    and version.max_uses
                    and version.uses + quantity > version.max_uses
                ):
                    expected = _CAP_REACHED
            if expected != code:
                self.problem(
                    "outcome",
                    f"usage {usage_id} (twin {twin_id}, brand {brand}, type {usage_type}, time "
                    f"{at}) is '{outcome_words(code)}' on chain (tx {event.tx_hash}), but the "
                    f"licenses and pauses of the events make it '{outcome_words(expected)}'",
                )
            amount: int | None = None
            number: int | None = None
            if code == _PAID:
                paid_count += 1
                if expected == _PAID and version is not None:
                    number = version.number
                    amount = version.prices[usage_type] * quantity
                    if version.max_uses:
                        version.uses += quantity
                    total += amount
                    funded = amount if amount < escrow else escrow
                    escrow -= funded
                    if amount > funded:
                        shortfalls.append((twin_id, amount - funded))
                    if twin is not None:
                        twin.accrued += funded
                        twin.earned += funded
                        twin.paid_usages += 1
            usages.append(
                (
                    usage_id,
                    brand,
                    twin_id,
                    at,
                    quantity,
                    usage_type,
                    code,
                    amount,
                    number,
                    batch_index,
                    log_index,
                )
            )
        if total != event.paid:
            self.problem(
                "amount",
                f"the group of {brand} in tx {event.tx_hash} says {event.paid} was paid; its "
                f"paid usages at the prices of their licenses add up to {total}",
            )
        if shortfalls != self._pending_debts:
            self.problem(
                "debt",
                f"the group of {brand} in tx {event.tx_hash} ran short of escrow by "
                f"{shortfalls} (twin, amount); its DebtRecorded events say {self._pending_debts}",
            )
        self._pending_debts = []
        book.spent += book.escrow - escrow
        book.escrow = escrow
        book.usages_paid += paid_count
        book.usages_rejected += len(event.results) - paid_count
        book.amount_paid += event.paid
        batch.groups.append([brand, log_index, len(event.results), event.paid])

    def _verify_batch(self, batch: Batch, info: _TxInfo | None, chain_id: int) -> None:
        """The settlement transaction's signed input against its events."""
        problems = batch.problems
        if info is None:
            problems.append("the transaction could not be fetched")
        elif info.to is None or info.to.lower() != self.state.ledger.lower():
            problems.append(
                f"the transaction calls {info.to}, not the ledger: its input is not "
                "the signed batch"
            )
        else:
            try:
                deadline, groups, signature = decode_settle_calldata(info.input)
            except Exception as exc:  # eth-abi raises several types for bad input
                problems.append(f"its input is not a settle() call ({exc})")
            else:
                self._compare_batch(batch, deadline, groups, signature, chain_id)
        batch.verified = not problems
        if problems:
            self.problem(
                "batch",
                f"batch {batch.digest} in tx {batch.tx_hash} (block {batch.block_number}): "
                + "; ".join(problems),
            )

    def _compare_batch(
        self,
        batch: Batch,
        deadline: int,
        groups: list[tuple[str, list[int]]],
        signature: bytes,
        chain_id: int,
    ) -> None:
        problems = batch.problems
        typed = eip712.usage_batch(deadline, groups, chain_id=chain_id, ledger=self.state.ledger)
        digest = "0x" + eip712.digest(typed).hex()
        if digest != batch.digest:
            problems.append(f"the signed input hashes to {digest}, not the events' digest")
        try:
            signer = _checksum(
                Account.recover_message(encode_typed_data(full_message=typed), signature=signature)
            )
        except Exception as exc:  # eth-keys raises several types for a bad signature
            problems.append(f"its signature does not recover ({exc})")
        else:
            batch.signer = signer
            if signer != batch.attester:
                problems.append(
                    f"the signature recovers to {signer}, not the events' attester {batch.attester}"
                )
        if batch.block_time > deadline:
            problems.append(f"it was mined at {batch.block_time}, after its deadline {deadline}")
        if len(groups) != len(batch.groups):
            problems.append(f"it signs {len(groups)} groups but {len(batch.groups)} were settled")
            return
        usages = self.state.usages
        position = batch.first_usage
        for (brand, words), (settled_brand, _, count, _) in zip(groups, batch.groups, strict=True):
            if brand != settled_brand:
                problems.append(f"a group signed for {brand} was settled for {settled_brand}")
            if len(words) != count:
                problems.append(
                    f"the group of {brand} signs {len(words)} usages, {count} were settled"
                )
                position += count
                continue
            for word, row in zip(words, usages[position : position + count], strict=True):
                if (
                    word >> 192 != row[0]
                    or (word >> 128) & _M64 != row[2]
                    or (word >> 88) & _M40 != row[3]
                    or (word >> 56) & _M32 != row[4]
                    or (word >> 48) & 0xFF != row[5]
                ):
                    problems.append(
                        f"usage {row[0]} as settled is not the usage signed at its "
                        f"place ({word:#x})"
                    )
                    break
            position += count


# ====================================================================== the signed batch


def _paused_at(twin: Twin, at: int) -> bool:
    """``TwinLedger._isPausedAt``."""
    if twin.paused_since and at >= twin.paused_since:
        return True
    for since, end in reversed(twin.pauses):
        if since <= at:
            return at < end
    return False


# ====================================================================== scanning


@dataclass
class RangeSizer:
    """The ``eth_getLogs`` range: halves while the node refuses, doubles back after an answer."""

    max_range: int = DEFAULT_MAX_BLOCK_RANGE
    current: int = 0
    refusals: list[int] = field(default_factory=list)
    """The size of every refused range, in order."""

    def __post_init__(self) -> None:
        if self.max_range < 1:
            raise ValueError("max_range must be >= 1")
        self.current = self.current or self.max_range

    def refused(self, size: int) -> None:
        self.refusals.append(size)
        self.current = max(1, size // 2)

    def answered(self, size: int) -> None:
        if size >= self.current:
            self.current = min(self.max_range, self.current * 2)


@dataclass
class ScanStats:
    ranges: int = 0
    logs: int = 0
    usages: int = 0
    rpc_requests: int = 0
    seconds: float = 0.0


def fetch_logs(
    rpc: JsonRpc, address: str, first: int, last: int, sizer: RangeSizer
) -> tuple[int, list[dict[str, Any]]]:
    """The raw logs of ``address`` in ``[first, end]`` for the largest ``end <= last`` the node
    serves, and ``end``."""
    while True:
        end = min(last, first + sizer.current - 1)
        try:
            logs = rpc.request(
                "eth_getLogs", [{"address": address, "fromBlock": hex(first), "toBlock": hex(end)}]
            )
        except LogRangeTooLargeError:
            if end == first:
                raise
            sizer.refused(end - first + 1)
            continue
        sizer.answered(end - first + 1)
        return end, list(logs)


def _transactions(rpc: JsonRpc, raw_logs: Sequence[dict[str, Any]]) -> dict[str, _TxInfo]:
    """The settlement transactions of ``raw_logs`` with their block times, in one batch. A
    transaction's block is the one its logs name: a node may still answer a transaction just
    mined as pending (anvil does, for a moment, with no block number)."""
    hashes: list[str] = []
    blocks: list[str] = []
    block_of: dict[str, str] = {}
    for raw in raw_logs:
        if raw["topics"] and raw["topics"][0] == _USAGES_SETTLED_TOPIC:
            if not hashes or hashes[-1] != raw["transactionHash"]:
                hashes.append(raw["transactionHash"])
                block_of[raw["transactionHash"]] = raw["blockNumber"]
            if not blocks or blocks[-1] != raw["blockNumber"]:
                blocks.append(raw["blockNumber"])
    if not hashes:
        return {}
    answers = rpc.batch(
        [("eth_getTransactionByHash", [h]) for h in hashes]
        + [("eth_getBlockByNumber", [b, False]) for b in blocks]
    )
    times = {
        b: int(answer["timestamp"], 16)
        for b, answer in zip(blocks, answers[len(hashes) :], strict=True)
    }
    txs = {}
    for tx_hash, tx in zip(hashes, answers[: len(hashes)], strict=True):
        if tx is None:
            continue
        txs[tx_hash] = _TxInfo(
            to=None if tx.get("to") is None else _checksum(tx["to"]),
            input=bytes.fromhex(tx["input"][2:]),
            block_time=times[block_of[tx_hash]],
        )
    return txs


ProgressFn = Callable[[int, int], None]
"""Called after each range with (last scanned block, usages so far)."""


def scan(
    rpc: JsonRpc,
    state: LedgerState,
    *,
    to_block: int,
    sizer: RangeSizer | None = None,
    checkpoint: Path | None = None,
    progress: ProgressFn | None = None,
) -> ScanStats:
    """Rebuilds ``state`` from the block after its ``last_block`` through ``to_block``, saving it
    to ``checkpoint`` every few seconds and at the end."""
    sizer = sizer or RangeSizer()
    rebuilder = Rebuilder(state)
    stats = ScanStats()
    started = time.perf_counter()
    requests_before = rpc.requests
    last_saved = time.monotonic()
    first = state.last_block + 1
    while first <= to_block:
        end, logs = fetch_logs(rpc, state.ledger, first, to_block, sizer)
        txs = _transactions(rpc, logs)
        stats.usages += rebuilder.apply_range(logs, txs, state.chain_id)
        stats.logs += len(logs)
        stats.ranges += 1
        state.last_block = end
        state.last_block_hash = ""
        first = end + 1
        if progress is not None:
            progress(end, len(state.usages))
        if checkpoint is not None and time.monotonic() - last_saved >= CHECKPOINT_EVERY_S:
            state.last_block_hash = _block_hash(rpc, end)
            state.save(checkpoint)
            last_saved = time.monotonic()
    if state.last_block >= 0 and not state.last_block_hash:
        state.last_block_hash = _block_hash(rpc, state.last_block)
    if checkpoint is not None:
        state.save(checkpoint)
    stats.seconds = time.perf_counter() - started
    stats.rpc_requests = rpc.requests - requests_before
    return stats


def _block_hash(rpc: JsonRpc, number: int) -> str:
    block = rpc.request("eth_getBlockByNumber", [hex(number), False])
    if block is None:
        raise AuditError(f"block {number} is not on the chain")
    return str(block["hash"])


# ====================================================================== views at the last block


def _selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


def _calldata(signature: str, types: Sequence[str], values: Sequence[Any]) -> bytes:
    return _selector(signature) + encode(list(types), list(values))


@dataclass(frozen=True, slots=True)
class BalanceCheck:
    """One rebuilt figure against the ledger's view of it."""

    kind: str
    subject: str
    rebuilt: int | str
    on_chain: int | str

    @property
    def ok(self) -> bool:
        return self.rebuilt == self.on_chain


def check_balances(rpc: JsonRpc, state: LedgerState, *, block: int) -> list[BalanceCheck]:
    """Every rebuilt balance against the ledger's views at ``block``."""
    ledger = state.ledger
    calls: list[tuple[str, str, bytes]] = []  # (kind, subject, calldata)
    calls.append(("total liabilities", "ledger", _calldata("totalLiabilities()", [], [])))
    calls.append(("payment token", "ledger", _calldata("paymentToken()", [], [])))
    for twin_id in state.twins:
        calls.append(
            ("twin", str(twin_id), _calldata("twinState(uint256)", ["uint256"], [twin_id]))
        )
        calls.append(("owner", str(twin_id), _calldata("ownerOf(uint256)", ["uint256"], [twin_id])))
    for brand in state.brands:
        calls.append(("brand", brand, _calldata("brandAccount(address)", ["address"], [brand])))
        calls.append(("debt queue", brand, _calldata("debtQueue(address)", ["address"], [brand])))
    for payee in state.payees:
        calls.append(("claimable", payee, _calldata("claimable(address)", ["address"], [payee])))
    for twin_id, brand in state.licenses:
        calls.append(
            (
                "license versions",
                f"twin {twin_id} / {brand}",
                _calldata(
                    "licenseVersionCount(uint256,address)", ["uint256", "address"], [twin_id, brand]
                ),
            )
        )
    try:
        answers = rpc.call_many(ledger, [data for _, _, data in calls], block)
    except RpcError as exc:
        raise AuditError(
            f"the ledger's views at block {block} cannot be read ({exc.message}); an archive "
            "node keeps old state, or audit up to a recent block"
        ) from exc
    checks: list[BalanceCheck] = []
    token = ""
    for (kind, subject, _), answer in zip(calls, answers, strict=True):
        if kind == "total liabilities":
            (on_chain,) = decode(["uint256"], answer)
            checks.append(
                BalanceCheck("total liabilities", "ledger", state.liabilities(), on_chain)
            )
        elif kind == "payment token":
            (token,) = decode(["address"], answer)
            token = to_checksum_address(token)
        elif kind == "twin":
            twin = state.twins[int(subject)]
            accrued, paused_since, intervals = decode(["uint256", "uint40", "uint256"], answer)
            checks.append(
                BalanceCheck("accrued royalties", f"twin {subject}", twin.accrued, accrued)
            )
            checks.append(
                BalanceCheck("paused since", f"twin {subject}", twin.paused_since, paused_since)
            )
            checks.append(
                BalanceCheck("pause intervals", f"twin {subject}", len(twin.pauses), intervals)
            )
        elif kind == "owner":
            (owner,) = decode(["address"], answer)
            checks.append(
                BalanceCheck(
                    "owner",
                    f"twin {subject}",
                    state.twins[int(subject)].owner,
                    to_checksum_address(owner),
                )
            )
        elif kind == "brand":
            book = state.brands[subject]
            escrow, debt, reserve, pending, unlocks = decode(
                ["uint256", "uint256", "uint256", "uint256", "uint40"], answer
            )
            for name, rebuilt, value in (
                ("escrow", book.escrow, escrow),
                ("debt", book.debt, debt),
                ("debt reserve", book.debt_reserve, reserve),
                ("pending withdrawal", book.pending_withdrawal, pending),
                ("withdrawal unlocks at", book.unlocks_at, unlocks),
            ):
                checks.append(BalanceCheck(name, subject, rebuilt, value))
        elif kind == "debt queue":
            book = state.brands[subject]
            head, length = decode(["uint256", "uint256"], answer)
            checks.append(BalanceCheck("debt queue head", subject, book.debt_head, head))
            checks.append(BalanceCheck("debt entries", subject, len(book.debt_entries), length))
        elif kind == "claimable":
            (claimable,) = decode(["uint256"], answer)
            checks.append(
                BalanceCheck("claimable", subject, state.payees[subject].claimable, claimable)
            )
        elif kind == "license versions":
            twin_s, brand = subject.split(" / ")
            pair = state.licenses[int(twin_s.removeprefix("twin ")), brand]
            (count,) = decode(["uint256"], answer)
            checks.append(BalanceCheck(kind, subject, len(pair.versions()), count))
    balance = decode(
        ["uint256"],
        rpc.call(token, _calldata("balanceOf(address)", ["address"], [ledger]), block),
    )[0]
    checks.append(BalanceCheck("token balance", f"ledger in {token}", state.liabilities(), balance))
    return checks


def balance_discrepancies(state: LedgerState, checks: Sequence[BalanceCheck]) -> list[Discrepancy]:
    """The failed checks in words, and the flow identity (deposits less withdrawals and payouts is
    what the ledger owes)."""
    found = []
    for check in checks:
        if check.ok:
            continue
        if check.kind == "token balance":
            gap = int(check.on_chain) - int(check.rebuilt)
            words = "more" if gap > 0 else "less"
            found.append(
                Discrepancy(
                    "balance",
                    f"the ledger holds {check.on_chain} tokens but its events say it owes "
                    f"{check.rebuilt} (escrow, debt reserves, accrued royalties and claimable "
                    f"balances): {abs(gap)} {words} than it owes",
                )
            )
        else:
            found.append(
                Discrepancy(
                    "balance",
                    f"{check.kind} of {check.subject} is {check.on_chain} on chain, but the events "
                    f"add up to {check.rebuilt}",
                )
            )
    deposited = sum(b.deposited for b in state.brands.values())
    out = sum(b.withdrawn for b in state.brands.values()) + sum(
        p.paid_out for p in state.payees.values()
    )
    if deposited - out != state.liabilities():
        found.append(
            Discrepancy(
                "balance",
                f"deposits ({deposited}) less withdrawals and payouts ({out}) are "
                f"{deposited - out}, but the rebuilt balances add up to {state.liabilities()}",
            )
        )
    return found


# ====================================================================== the audit


@dataclass
class AuditResult:
    state: LedgerState
    to_block: int
    checks: list[BalanceCheck]
    discrepancies: list[Discrepancy]
    stats: ScanStats
    resumed_from: int | None = None

    @property
    def clean(self) -> bool:
        return not self.discrepancies

    def summary(self) -> dict[str, Any]:
        state = self.state
        outcomes = Counter(u[6] for u in state.usages)
        paid = [u for u in state.usages if u[6] == _PAID]
        versions = [v for pair in state.licenses.values() for v in pair.versions()]
        return {
            "twins": len(state.twins),
            "twins_paused": sum(1 for t in state.twins.values() if t.paused_since),
            "licenses": len(state.licenses),
            "license_versions": len(versions),
            "license_versions_revoked": sum(1 for v in versions if v.revoked),
            "usages": len(state.usages),
            "usages_paid": len(paid),
            "usages_rejected": len(state.usages) - len(paid),
            "rejected_by_reason": {
                Outcome(code).name.lower(): count
                for code, count in sorted(outcomes.items())
                if code != _PAID and code in Outcome._value2member_map_
            },
            "amount_paid": sum(u[7] or 0 for u in paid),
            "batches": len(state.batches),
            "batches_verified": sum(1 for b in state.batches if b.verified),
            "deposits": len(state.deposits),
            "deposited": sum(d[4] for d in state.deposits),
            "escrow_withdrawals": len(state.withdrawals),
            "escrow_withdrawn": sum(w[3] for w in state.withdrawals),
            "debt_recorded": sum(b.debt_recorded for b in state.brands.values()),
            "debt_repaid": sum(b.debt_repaid for b in state.brands.values()),
            "debt_outstanding": sum(b.debt for b in state.brands.values()),
            "royalties_distributed": sum(d[4] for d in state.distributions),
            "payouts": len(state.payouts),
            "payouts_by_payee": sum(1 for p in state.payouts if p[2] == p[3]),
            "paid_out": sum(p[4] for p in state.payouts),
            "escrow": sum(b.escrow for b in state.brands.values()),
            "accrued": sum(t.accrued for t in state.twins.values()),
            "claimable": sum(p.claimable for p in state.payees.values()),
            "liabilities": state.liabilities(),
            "balance_checks": len(self.checks),
            "balance_checks_failed": sum(1 for c in self.checks if not c.ok),
            "discrepancies": len(self.discrepancies),
        }

    def to_json(self) -> dict[str, Any]:
        state = self.state.to_json()
        state.pop("format")
        return {
            "ledger": self.state.ledger,
            "chain_id": self.state.chain_id,
            "from_block": self.state.start_block,
            "to_block": self.to_block,
            "clean": self.clean,
            "summary": self.summary(),
            "discrepancies": [{"kind": d.kind, "message": d.message} for d in self.discrepancies],
            "balances": [
                {
                    "kind": c.kind,
                    "subject": c.subject,
                    "rebuilt": c.rebuilt,
                    "on_chain": c.on_chain,
                    "ok": c.ok,
                }
                for c in self.checks
            ],
            "state": state,
        }


def open_state(
    rpc: JsonRpc, *, ledger: str, start_block: int, checkpoint: Path | None
) -> tuple[LedgerState, int | None]:
    """The checkpoint's state when it exists and still matches the chain, else an empty one.

    Raises:
        AuditError: the checkpoint belongs to another ledger or chain, or its last block is no
            longer on the chain (a reorg: delete it and scan again).
    """
    chain_id = int(rpc.request("eth_chainId", []), 16)
    ledger = to_checksum_address(ledger)
    if checkpoint is None or not checkpoint.exists():
        return LedgerState(ledger, chain_id, start_block, start_block - 1), None
    state = LedgerState.load(checkpoint)
    if state.ledger != ledger or state.chain_id != chain_id:
        raise AuditError(
            f"{checkpoint} is the audit of ledger {state.ledger} on chain "
            f"{state.chain_id}, not {ledger} on chain {chain_id}"
        )
    if state.start_block != start_block:
        raise AuditError(f"{checkpoint} starts at block {state.start_block}, not {start_block}")
    if state.last_block >= start_block and _block_hash(rpc, state.last_block) != (
        state.last_block_hash
    ):
        raise AuditError(
            f"block {state.last_block} of {checkpoint} left the chain (a reorg): "
            "delete the checkpoint and audit again"
        )
    return state, state.last_block


def run_audit(
    rpc: JsonRpc,
    *,
    ledger: str,
    start_block: int,
    to_block: int | None = None,
    checkpoint: Path | None = None,
    max_block_range: int = DEFAULT_MAX_BLOCK_RANGE,
    sizer: RangeSizer | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> AuditResult:
    """The audit of ``ledger`` from ``start_block`` through ``to_block`` (default: the latest),
    resuming from ``checkpoint`` when it exists; ``progress`` is called after each range with
    (block scanned up to, target block, usages so far).

    Raises:
        AuditError: the audit cannot run (see :func:`open_state`, :func:`check_balances`).
        RpcError, ChainUnavailableError: the node refused or could not be reached.
    """
    latest = int(rpc.request("eth_blockNumber", []), 16)
    target = latest if to_block is None else to_block
    if target > latest:
        raise AuditError(f"block {target} is not mined yet (the latest is {latest})")
    state, resumed = open_state(rpc, ledger=ledger, start_block=start_block, checkpoint=checkpoint)
    if state.last_block > target:
        raise AuditError(f"the checkpoint is at block {state.last_block}, past {target}")
    sizer = sizer or RangeSizer(max_block_range)

    def report(block: int, usages: int) -> None:
        if progress is not None:
            progress(block, target, usages)

    report(state.last_block, len(state.usages))
    stats = scan(rpc, state, to_block=target, sizer=sizer, checkpoint=checkpoint, progress=report)
    checks = check_balances(rpc, state, block=target)
    discrepancies = [*state.discrepancies, *balance_discrepancies(state, checks)]
    return AuditResult(state, target, checks, discrepancies, stats, resumed)


# ====================================================================== exports


def write_json(result: AuditResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")


def _rows(writer: Any, header: Sequence[str], rows: Iterator[Sequence[Any]]) -> None:
    writer.writerow(header)
    writer.writerows(rows)


def write_csv(result: AuditResult, directory: Path) -> list[Path]:
    """usages.csv, batches.csv, balances.csv, twins.csv, licenses.csv, deposits.csv,
    debts.csv, payouts.csv and discrepancies.csv in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    state = result.state
    tables: dict[str, tuple[Sequence[str], Iterator[Sequence[Any]]]] = {
        "usages.csv": (
            [
                "usage_id",
                "brand",
                "twin_id",
                "used_at",
                "quantity",
                "usage_type",
                "outcome",
                "reason",
                "amount",
                "license_version",
                "tx_hash",
                "block_number",
                "log_index",
                "batch_digest",
            ],
            (
                [
                    u[0],
                    u[1],
                    u[2],
                    u[3],
                    u[4],
                    u[5],
                    Outcome(u[6]).name.lower(),
                    "" if u[6] == _PAID else outcome_words(u[6]),
                    "" if u[7] is None else u[7],
                    "" if u[8] is None else u[8],
                    state.batches[u[9]].tx_hash,
                    state.batches[u[9]].block_number,
                    u[10],
                    state.batches[u[9]].digest,
                ]
                for u in state.usages
            ),
        ),
        "batches.csv": (
            [
                "tx_hash",
                "block_number",
                "block_time",
                "digest",
                "attester",
                "signer",
                "groups",
                "usages",
                "paid",
                "verified",
                "problems",
            ],
            (
                [
                    b.tx_hash,
                    b.block_number,
                    b.block_time,
                    b.digest,
                    b.attester,
                    b.signer or "",
                    len(b.groups),
                    b.usages,
                    b.paid,
                    b.verified,
                    "; ".join(b.problems),
                ]
                for b in state.batches
            ),
        ),
        "balances.csv": (
            ["kind", "subject", "rebuilt", "on_chain", "ok"],
            ([c.kind, c.subject, c.rebuilt, c.on_chain, c.ok] for c in result.checks),
        ),
        "twins.csv": (
            [
                "twin_id",
                "owner",
                "uri",
                "consent_hash",
                "minted_block",
                "owners",
                "paused_since",
                "pauses",
                "payees",
                "earned",
                "distributed",
                "accrued",
                "paid_usages",
            ],
            (
                [
                    t.twin_id,
                    t.owner,
                    t.uri,
                    t.consent_hash,
                    t.minted_block,
                    " ".join(str(o[2]) for o in t.owners),
                    t.paused_since,
                    " ".join(f"{s}-{e}" for s, e in t.pauses),
                    " ".join(f"{a}:{b}" for a, b in t.payees),
                    t.earned,
                    t.distributed,
                    t.accrued,
                    t.paid_usages,
                ]
                for t in state.twins.values()
            ),
        ),
        "licenses.csv": (
            [
                "twin_id",
                "brand",
                "version",
                "valid_from",
                "valid_until",
                "granted_from",
                "granted_until",
                "max_uses",
                "uses",
                "revoked",
                "revoked_at",
                "prices",
                "purpose_hash",
                "consent_hash",
                "granted_block",
                "granted_tx",
            ],
            (
                [
                    twin,
                    brand,
                    v.number,
                    v.valid_from,
                    v.valid_until,
                    v.granted_from,
                    v.granted_until,
                    v.max_uses,
                    v.uses,
                    v.revoked,
                    "" if v.revoked_at is None else v.revoked_at,
                    " ".join(f"{k}:{p}" for k, p in sorted(v.prices.items())),
                    v.purpose_hash,
                    v.consent_hash,
                    v.granted_block,
                    v.granted_tx,
                ]
                for (twin, brand), pair in state.licenses.items()
                for v in pair.versions()
            ),
        ),
        "deposits.csv": (
            ["block_number", "tx_hash", "brand", "from", "amount", "to_debt"],
            iter(state.deposits),
        ),
        "debts.csv": (
            ["block_number", "tx_hash", "event", "brand", "twin_id", "amount", "entry"],
            iter(state.debts),
        ),
        "payouts.csv": (
            ["block_number", "tx_hash", "payee", "caller", "amount"],
            iter(state.payouts),
        ),
        "discrepancies.csv": (
            ["kind", "message"],
            ([d.kind, d.message] for d in result.discrepancies),
        ),
    }
    written = []
    for name, (header, rows) in tables.items():
        path = directory / name
        with path.open("w", newline="", encoding="utf-8") as handle:
            _rows(csv.writer(handle), header, rows)
        written.append(path)
    return written
