"""The ledger's state as the audit rebuilds it from events, and its checkpoint JSON.

A :class:`LedgerState` holds everything ``bridge.audit.rebuild`` recomputed up to its last block:
twins, license offers (waiting, accepted, declined, withdrawn) and accepted versions, brands'
escrow, debt, spending limits and own attesters, payees, the access manager's roles, every usage
and every settlement batch. It saves to and loads from a checkpoint file so a later audit
resumes where this one ended.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NamedTuple

from bridge.domain.codec import Outcome
from bridge.errors import BridgeError

CHECKPOINT_FORMAT: Final = "twin-bridge-audit-state-2"
ZERO_ADDRESS: Final = "0x0000000000000000000000000000000000000000"


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
    """An outcome code in words (``paid`` or the reason of a rejection); a code the bridge does
    not know is named as such, never raised on."""
    try:
        outcome = Outcome(code)
    except ValueError:
        return f"unknown outcome {code}"
    return outcome.description if getattr(outcome, "known", True) else f"unknown outcome {code}"


def outcome_name(code: int) -> str:
    """An outcome code's name (``license_revoked``); ``unknown_<code>`` for a code the bridge does
    not know."""
    try:
        outcome = Outcome(code)
    except ValueError:
        return f"unknown_{code}"
    return outcome.name.lower() if getattr(outcome, "known", True) else f"unknown_{code}"


class _SlotsJson:
    """``to_json`` of a slotted dataclass whose fields are all JSON already: its fields by name."""

    __slots__ = ()

    def to_json(self) -> dict[str, Any]:
        names: tuple[str, ...] = self.__slots__
        return {name: getattr(self, name) for name in names}


@dataclass(slots=True)
class Version:
    """One accepted license version; ``valid_from``/``valid_until`` are its effective window (later
    acceptances and revocations end it earlier: ``bridge.domain.licenses``),
    ``granted_from``/``granted_until`` the window it was accepted with
    (``LicenseAccepted.validFrom``: the later of the offered start and the acceptance),
    ``granted_block``/``granted_tx`` its acceptance, ``offered_from`` the start its offer named
    and ``terms_hash`` what the brand accepted."""

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
    offered_from: int = 0
    terms_hash: str = ""

    def to_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__slots__}
        data["prices"] = {str(k): v for k, v in self.prices.items()}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Version:
        return cls(**{**data, "prices": {int(k): int(v) for k, v in data["prices"].items()}})


@dataclass(slots=True)
class Offer:
    """A ``LicenseOffered`` event and how the offer ended: ``status`` is ``pending`` until the
    brand accepts or declines it or the owner withdraws it (``closed_block``/``closed_tx``)."""

    twin_id: int
    brand: str
    version: int
    valid_from: int
    valid_until: int
    max_uses: int
    prices: dict[int, int]
    purpose_hash: str
    consent_hash: str
    terms_hash: str
    offered_block: int
    offered_tx: str
    status: str = "pending"
    closed_block: int = 0
    closed_tx: str = ""
    accepted_from: int = 0

    def to_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__slots__}
        data["prices"] = {str(k): v for k, v in self.prices.items()}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Offer:
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

    def newest_first(self) -> list[Version]:
        return self.versions()[::-1]

    def reindex(self) -> None:
        self.froms = [v.valid_from for v in self.history]


@dataclass(slots=True)
class Twin(_SlotsJson):
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

    def paused_at(self, at: int) -> bool:
        """``TwinLedger._isPausedAt``."""
        if self.paused_since and at >= self.paused_since:
            return True
        for since, end in reversed(self.pauses):
            if since <= at:
                return at < end
        return False


@dataclass(slots=True)
class BrandBook(_SlotsJson):
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
    limits: list[int] | None = None
    """``[perUsage, perPeriod, effectiveAt]`` in force (None: the ledger's defaults)."""
    pending_limits: list[int] | None = None
    """``[perUsage, perPeriod, effectiveAt]`` of a setting not yet in force at the last event."""
    attester: str = ZERO_ADDRESS
    """The brand's own attester (zero: the bridge's attesters sign for it)."""
    pause_mark: int = 0
    """The ledger's paused seconds when the pending withdrawal was requested (its times move
    later by the time the ledger is paused after)."""
    period_index: int = -1
    """The spending period of the brand's last settlement (``block time // spendingPeriod``)."""
    spent_in_period: int = 0
    """What the brand's settlements in that period cost."""


@dataclass(slots=True)
class PayeeBook(_SlotsJson):
    claimable: int = 0
    credited: int = 0
    paid_out: int = 0
    payouts: int = 0


@dataclass(slots=True)
class Batch(_SlotsJson):
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


class UsageRow(NamedTuple):
    """One settled usage as the chain reports it (a JSON array in the checkpoint)."""

    usage_id: int
    brand: str
    twin_id: int
    used_at: int
    quantity: int
    usage_type: int
    outcome: int
    """The outcome code of the event (``Outcome``, or an unknown code as reported)."""
    amount: int | None
    """What it paid, when paid and priced by the rebuilt licenses."""
    license_version: int | None
    batch: int
    """Index of its batch in ``LedgerState.batches``."""
    log_index: int


class Deposit(NamedTuple):
    block_number: int
    tx_hash: str
    brand: str
    sender: str
    """Who paid it in (``from`` in the CSV)."""
    amount: int
    to_debt: int
    """The part that went to the brand's debt reserve."""


class Withdrawal(NamedTuple):
    """Escrow withdrawn."""

    block_number: int
    tx_hash: str
    brand: str
    amount: int


class DebtChange(NamedTuple):
    block_number: int
    tx_hash: str
    event: str
    """``recorded`` or ``repaid``."""
    brand: str
    twin_id: int
    amount: int
    entry: int


class Payout(NamedTuple):
    block_number: int
    tx_hash: str
    payee: str
    caller: str
    amount: int


class Distribution(NamedTuple):
    block_number: int
    tx_hash: str
    twin_id: int
    payee: str
    amount: int


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
    manager: str | None = None
    """The ledger's access manager, whose role events are rebuilt too (None: unknown)."""
    config: list[int] | None = None
    """The ledger's ``config()``: notice period, spending period, raise delay, default limits
    per usage and per period (None: not read, the limits are then not checked)."""
    offers: list[Offer] = field(default_factory=list)
    roles: dict[str, dict[str, int]] = field(default_factory=dict)
    """Role name -> account -> when it counts as a member (``RoleGranted.since``)."""
    role_history: list[list[Any]] = field(default_factory=list)
    """``[block, tx, role name, account, "granted"|"revoked"|"grant delay", since]``."""
    usages: list[UsageRow] = field(default_factory=list)
    batches: list[Batch] = field(default_factory=list)
    deposits: list[Deposit] = field(default_factory=list)
    withdrawals: list[Withdrawal] = field(default_factory=list)
    debts: list[DebtChange] = field(default_factory=list)
    payouts: list[Payout] = field(default_factory=list)
    distributions: list[Distribution] = field(default_factory=list)
    events: Counter[str] = field(default_factory=Counter)
    paused: bool = False
    paused_seconds: int = 0
    """Seconds the ledger was paused in its finished pauses."""
    paused_at: int = 0
    """When the current pause began (0: not paused, or its time unknown)."""
    discrepancies: list[Discrepancy] = field(default_factory=list)
    pending: dict[tuple[int, str], Offer] = field(default_factory=dict, repr=False)
    """(twin, brand) -> its waiting offer (derived from ``offers``)."""

    def reindex_offers(self) -> None:
        """``pending`` from ``offers``."""
        self.pending = {(o.twin_id, o.brand): o for o in self.offers if o.status == "pending"}

    def paused_seconds_at(self, at: int) -> int:
        """``TwinLedger.pausedSeconds()`` at time ``at``: the current pause included."""
        running = at - self.paused_at if self.paused and self.paused_at else 0
        return self.paused_seconds + running

    def is_member(self, role: str, account: str, at: int) -> bool:
        """Whether ``account`` counted as a member of ``role`` at ``at`` (a grant counts from its
        ``since``: after the role's grant delay)."""
        since = self.roles.get(role, {}).get(account)
        return since is not None and since <= at

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
            "manager": self.manager,
            "config": self.config,
            "offers": [o.to_json() for o in self.offers],
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
            "paused_seconds": self.paused_seconds,
            "paused_at": self.paused_at,
            "discrepancies": [[d.kind, d.message] for d in self.discrepancies],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LedgerState:
        if data.get("format") != CHECKPOINT_FORMAT:
            raise AuditError(f"not an audit checkpoint (format {data.get('format')!r})")
        state = cls(
            ledger=data["ledger"],
            chain_id=int(data["chain_id"]),
            start_block=int(data["start_block"]),
            last_block=int(data["last_block"]),
            last_block_hash=str(data["last_block_hash"]),
            twins={int(t["twin_id"]): Twin(**t) for t in data["twins"]},
            licenses=dict(_license_pair_from_json(item) for item in data["licenses"]),
            brands={k: BrandBook(**v) for k, v in data["brands"].items()},
            payees={k: PayeeBook(**v) for k, v in data["payees"].items()},
            manager=data["manager"],
            config=data["config"],
            offers=[Offer.from_json(o) for o in data["offers"]],
            roles={k: {a: int(t) for a, t in v.items()} for k, v in data["roles"].items()},
            role_history=data["role_history"],
            usages=[UsageRow(*u) for u in data["usages"]],
            batches=[Batch(**b) for b in data["batches"]],
            deposits=[Deposit(*d) for d in data["deposits"]],
            withdrawals=[Withdrawal(*w) for w in data["withdrawals"]],
            debts=[DebtChange(*d) for d in data["debts"]],
            payouts=[Payout(*p) for p in data["payouts"]],
            distributions=[Distribution(*d) for d in data["distributions"]],
            events=Counter(data["events"]),
            paused=bool(data["paused"]),
            paused_seconds=int(data["paused_seconds"]),
            paused_at=int(data["paused_at"]),
            discrepancies=[Discrepancy(k, m) for k, m in data["discrepancies"]],
        )
        state.reindex_offers()
        return state

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


def _license_pair_from_json(item: dict[str, Any]) -> tuple[tuple[int, str], LicensePair]:
    pair = LicensePair(
        history=[Version.from_json(v) for v in item["history"]],
        current=None if item["current"] is None else Version.from_json(item["current"]),
    )
    pair.reindex()
    return (int(item["twin_id"]), str(item["brand"])), pair
