"""What an audit found, as ``twin-bridge audit`` prints and writes it (:class:`AuditResult`,
``--json``) and as ``GET /v1/audit`` answers it (:func:`report`: the summary with the latest
transaction behind each figure, and totals per twin, brand and month)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol

from bridge.audit.balances import BalanceCheck
from bridge.audit.export import CSV_TABLES
from bridge.audit.reconcile import DatabaseCheck
from bridge.audit.scan import ScanStats
from bridge.audit.state import ZERO_ADDRESS, Discrepancy, LedgerState, UsageRow, outcome_name
from bridge.domain.codec import Outcome

_PAID: Final = int(Outcome.PAID)


@dataclass
class AuditResult:
    state: LedgerState
    to_block: int
    checks: list[BalanceCheck]
    discrepancies: list[Discrepancy]
    stats: ScanStats
    resumed_from: int | None = None
    database: DatabaseCheck | None = None
    """What ``--against-db`` compared (None: the database was not checked)."""

    @property
    def clean(self) -> bool:
        return not self.discrepancies

    def database_line(self) -> str:
        """Whether and what ``--against-db`` compared, in one sentence."""
        return "database: not checked" if self.database is None else self.database.sentence()

    def summary(self) -> dict[str, Any]:
        state = self.state
        outcomes = Counter(u.outcome for u in state.usages)
        paid = [u for u in state.usages if u.outcome == _PAID]
        versions = [v for pair in state.licenses.values() for v in pair.versions()]
        brands, payees = state.brands.values(), state.payees.values()
        return {
            "twins": len(state.twins),
            "twins_paused": sum(1 for t in state.twins.values() if t.paused_since),
            "licenses": len(state.licenses),
            "license_versions": len(versions),
            "license_versions_revoked": sum(1 for v in versions if v.revoked),
            "license_offers": len(state.offers),
            "license_offers_pending": len(state.pending),
            "license_offers_declined": sum(1 for o in state.offers if o.status == "declined"),
            "license_offers_withdrawn": sum(1 for o in state.offers if o.status == "withdrawn"),
            "brands_with_own_limits": sum(1 for b in brands if b.limits or b.pending_limits),
            "brands_with_own_attester": sum(1 for b in brands if b.attester != ZERO_ADDRESS),
            "usages": len(state.usages),
            "usages_paid": len(paid),
            "usages_rejected": len(state.usages) - len(paid),
            "rejected_by_reason": {
                outcome_name(code): count
                for code, count in sorted(outcomes.items())
                if code != _PAID
            },
            "amount_paid": sum(u.amount or 0 for u in paid),
            "batches": len(state.batches),
            "batches_verified": sum(1 for b in state.batches if b.verified),
            "deposits": len(state.deposits),
            "deposited": sum(d.amount for d in state.deposits),
            "escrow_withdrawals": len(state.withdrawals),
            "escrow_withdrawn": sum(w.amount for w in state.withdrawals),
            "debt_recorded": sum(b.debt_recorded for b in brands),
            "debt_repaid": sum(b.debt_repaid for b in brands),
            "debt_outstanding": sum(b.debt for b in brands),
            "royalties_distributed": sum(d.amount for d in state.distributions),
            "payouts": len(state.payouts),
            "payouts_by_payee": sum(1 for p in state.payouts if p.payee == p.caller),
            "paid_out": sum(p.amount for p in state.payouts),
            "escrow": sum(b.escrow for b in brands),
            "accrued": sum(t.accrued for t in state.twins.values()),
            "claimable": sum(p.claimable for p in payees),
            "liabilities": state.liabilities(),
            "balance_checks": len(self.checks),
            "balance_checks_failed": sum(1 for c in self.checks if not c.ok),
            "discrepancies": len(self.discrepancies),
        }

    def to_json(self) -> dict[str, Any]:
        """The whole audit, as ``twin-bridge audit --json`` writes it."""
        state = self.state.to_json()
        state.pop("format")
        return {
            "ledger": self.state.ledger,
            "chain_id": self.state.chain_id,
            "from_block": self.state.start_block,
            "to_block": self.to_block,
            "clean": self.clean,
            "summary": self.summary(),
            "database_check": self.database_line(),
            "discrepancies": _discrepancies_json(self.discrepancies),
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


def write_json(result: AuditResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")


def _discrepancies_json(discrepancies: list[Discrepancy]) -> list[dict[str, str]]:
    return [{"kind": d.kind, "message": d.message} for d in discrepancies]


# ---------------------------------------------------------------- GET /v1/audit


def report(result: AuditResult, *, audited_at: datetime) -> dict[str, Any]:
    """What ``GET /v1/audit`` answers: the verdict, the summary of ``twin-bridge audit``, every
    discrepancy, the failed balance checks and the totals."""
    return {
        "ledger": result.state.ledger,
        "chain_id": result.state.chain_id,
        "from_block": result.state.start_block,
        "to_block": result.to_block,
        "to_block_hash": result.state.last_block_hash or None,
        "clean": result.clean,
        "audited_at": audited_at.isoformat(),
        "resumed_from": result.resumed_from,
        "summary": result.summary(),
        "summary_sources": summary_sources(result.state),
        "discrepancies": _discrepancies_json(result.discrepancies),
        "failed_checks": [
            {
                "kind": c.kind,
                "subject": c.subject,
                "rebuilt": str(c.rebuilt),
                "on_chain": str(c.on_chain),
            }
            for c in result.checks
            if not c.ok
        ],
        "totals": totals(result.state),
        "csv_tables": list(CSV_TABLES),
    }


_FIGURE_SOURCES: Final[dict[str, tuple[str, ...]]] = {
    "usages": ("batch",),
    "usages_paid": ("batch",),
    "usages_rejected": ("batch",),
    "amount_paid": ("batch",),
    "batches": ("batch",),
    "batches_verified": ("batch",),
    "deposits": ("deposit",),
    "deposited": ("deposit",),
    "escrow_withdrawals": ("withdrawal",),
    "escrow_withdrawn": ("withdrawal",),
    "debt_recorded": ("debt",),
    "debt_repaid": ("debt",),
    "debt_outstanding": ("debt",),
    "royalties_distributed": ("distribution",),
    "payouts": ("payout",),
    "paid_out": ("payout",),
    "escrow": ("deposit", "batch", "withdrawal"),
    "accrued": ("batch", "debt", "distribution"),
    "claimable": ("distribution", "payout"),
    "liabilities": ("batch", "deposit", "withdrawal", "debt", "distribution", "payout"),
}
"""Per figure of the summary, the kinds of record it counts."""


class _Record(Protocol):
    """A record of the rebuilt state that names its transaction."""

    @property
    def block_number(self) -> int: ...

    @property
    def tx_hash(self) -> str: ...


def summary_sources(state: LedgerState) -> dict[str, dict[str, Any]]:
    """Per figure of the summary, the latest transaction it counts (none for counts of twins,
    licenses and checks)."""
    records: dict[str, Sequence[_Record]] = {
        "batch": state.batches,
        "deposit": state.deposits,
        "withdrawal": state.withdrawals,
        "debt": state.debts,
        "distribution": state.distributions,
        "payout": state.payouts,
    }
    latest = {
        kind: (rows[-1].block_number, rows[-1].tx_hash) for kind, rows in records.items() if rows
    }
    sources = {}
    for figure, kinds in _FIGURE_SOURCES.items():
        found = [latest[kind] for kind in kinds if kind in latest]
        if found:
            block, tx = max(found)
            sources[figure] = {"block_number": block, "tx_hash": tx}
    return sources


@dataclass
class _Total:
    usages: int = 0
    paid: int = 0
    rejected: int = 0
    amount: int = 0
    last_tx: str | None = None
    last_block: int | None = None

    def add(self, usage: UsageRow, tx: str, block: int) -> None:
        self.usages += 1
        if usage.outcome == _PAID:
            self.paid += 1
            self.amount += usage.amount or 0
        else:
            self.rejected += 1
        if self.last_block is None or block >= self.last_block:
            self.last_tx, self.last_block = tx, block

    def to_json(self) -> dict[str, Any]:
        return {
            "usages": self.usages,
            "usages_paid": self.paid,
            "usages_rejected": self.rejected,
            "amount_paid": str(self.amount),
            "last_tx_hash": self.last_tx,
            "last_block": self.last_block,
        }


def totals(state: LedgerState) -> dict[str, list[dict[str, Any]]]:
    """Usages and amounts paid per twin, per brand and per UTC month of the settlement block,
    each with the latest transaction counted in it."""
    twins: dict[int, _Total] = {}
    brands: dict[str, _Total] = {}
    months: dict[str, _Total] = {}
    for usage in state.usages:
        batch = state.batches[usage.batch]
        month = datetime.fromtimestamp(batch.block_time, UTC).strftime("%Y-%m")
        for total in (
            twins.setdefault(usage.twin_id, _Total()),
            brands.setdefault(usage.brand, _Total()),
            months.setdefault(month, _Total()),
        ):
            total.add(usage, batch.tx_hash, batch.block_number)
    brand_rows = []
    for brand, total in sorted(brands.items()):
        book = state.brands.get(brand)
        row = {"brand": brand, **total.to_json()}
        if book is not None:
            row |= {"escrow": str(book.escrow), "debt": str(book.debt)}
        brand_rows.append(row)
    return {
        "twins": [{"twin_id": t, **total.to_json()} for t, total in sorted(twins.items())],
        "brands": brand_rows,
        "months": [{"month": m, **total.to_json()} for m, total in sorted(months.items())],
    }
