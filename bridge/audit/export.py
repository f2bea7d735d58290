"""The audit's CSV tables (``twin-bridge audit --csv``, ``GET /v1/audit/csv``): each declared once
by its name, header and rows."""

from __future__ import annotations

import csv
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

from bridge.domain.codec import Outcome
from bridge.domain.usage import UsageCode, split_payment

if TYPE_CHECKING:
    from bridge.audit.report import AuditResult

CsvTable = Literal[
    "usages",
    "batches",
    "balances",
    "twins",
    "licenses",
    "offers",
    "deposits",
    "debts",
    "payouts",
    "discrepancies",
]
"""The tables ``twin-bridge audit --csv`` writes (``write_csv``)."""
CSV_TABLES: Final = get_args(CsvTable)
_PAID: Final = int(Outcome.PAID)

Rows = Iterable[Sequence[Any]]


@dataclass(frozen=True, slots=True)
class Table:
    name: CsvTable
    header: tuple[str, ...]
    rows: Callable[[AuditResult], Rows]

    def write(self, result: AuditResult, directory: Path) -> Path:
        path = directory / f"{self.name}.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(self.header)
            writer.writerows(self.rows(result))
        return path


def _blank(value: object) -> object:
    return "" if value is None else value


def _usages(result: AuditResult) -> Rows:
    batches = result.state.batches
    paid_by = _paid_by(result)
    for index, u in enumerate(result.state.usages):
        batch = batches[u.batch]
        outcome = Outcome(u.outcome)
        escrow, debt = paid_by.get(index, (None, None))
        yield [
            u.usage_id,
            u.brand,
            u.twin_id,
            u.used_at,
            u.quantity,
            u.usage_type,
            UsageCode.of_outcome(outcome).value,
            u.outcome,
            outcome.description,
            _blank(u.amount),
            _blank(escrow),
            _blank(debt),
            _blank(u.license_version),
            batch.tx_hash,
            batch.block_number,
            u.log_index,
            batch.digest,
        ]


def _paid_by(result: AuditResult) -> dict[int, tuple[int, int]]:
    """How each paid and priced usage (by its index in ``state.usages``) was paid, from escrow
    and as debt: per settlement transaction and brand, the ``DebtRecorded`` amounts belong to its
    last usages that cost something (``split_payment``). A brand whose usages of a transaction
    are not all priced, or whose debts do not fit them, is left blank."""
    state = result.state
    usages: defaultdict[tuple[str, str], list[int]] = defaultdict(list)
    for index, u in enumerate(state.usages):
        if u.outcome == _PAID:
            usages[state.batches[u.batch].tx_hash, u.brand.lower()].append(index)
    debts: defaultdict[tuple[str, str], list[int]] = defaultdict(list)
    for d in state.debts:
        if d.event == "recorded":
            debts[d.tx_hash, d.brand.lower()].append(d.amount)
    paid_by: dict[int, tuple[int, int]] = {}
    for key, indexes in usages.items():
        amounts = [state.usages[i].amount for i in indexes]
        if any(amount is None for amount in amounts):
            continue
        try:
            ways = split_payment([a or 0 for a in amounts], debts.get(key, []))
        except ValueError:
            continue  # the audit names the shortfall that does not add up as a discrepancy
        paid_by.update(zip(indexes, ways, strict=True))
    return paid_by


def _batches(result: AuditResult) -> Rows:
    return (
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
        for b in result.state.batches
    )


def _twins(result: AuditResult) -> Rows:
    return (
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
        for t in result.state.twins.values()
    )


def _licenses(result: AuditResult) -> Rows:
    return (
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
            _blank(v.revoked_at),
            " ".join(f"{k}:{p}" for k, p in sorted(v.prices.items())),
            v.purpose_hash,
            v.consent_hash,
            v.granted_block,
            v.granted_tx,
            v.offered_from,
            v.terms_hash,
        ]
        for (twin, brand), pair in result.state.licenses.items()
        for v in pair.versions()
    )


def _offers(result: AuditResult) -> Rows:
    return (
        [
            o.twin_id,
            o.brand,
            o.version,
            o.status,
            o.valid_from,
            o.valid_until,
            o.max_uses,
            " ".join(f"{k}:{p}" for k, p in sorted(o.prices.items())),
            o.terms_hash,
            o.offered_block,
            o.offered_tx,
            _blank(o.closed_block or None),
            o.closed_tx,
            _blank(o.accepted_from or None),
        ]
        for o in result.state.offers
    )


TABLES: Final = (
    Table(
        "usages",
        (
            "usage_id", "brand", "twin_id", "used_at", "quantity", "usage_type", "code",
            "outcome_code", "sentence", "amount", "paid_from_escrow", "recorded_as_debt",
            "license_version", "tx_hash", "block_number", "log_index", "batch_digest",
        ),
        _usages,
    ),
    Table(
        "batches",
        (
            "tx_hash", "block_number", "block_time", "digest", "attester", "signer", "groups",
            "usages", "paid", "verified", "problems",
        ),
        _batches,
    ),
    Table(
        "balances",
        ("kind", "subject", "rebuilt", "on_chain", "ok"),
        lambda result: ([c.kind, c.subject, c.rebuilt, c.on_chain, c.ok] for c in result.checks),
    ),
    Table(
        "twins",
        (
            "twin_id", "owner", "uri", "consent_hash", "minted_block", "owners", "paused_since",
            "pauses", "payees", "earned", "distributed", "accrued", "paid_usages",
        ),
        _twins,
    ),
    Table(
        "licenses",
        (
            "twin_id", "brand", "version", "valid_from", "valid_until", "granted_from",
            "granted_until", "max_uses", "uses", "revoked", "revoked_at", "prices",
            "purpose_hash", "consent_hash", "granted_block", "granted_tx", "offered_from",
            "terms_hash",
        ),
        _licenses,
    ),
    Table(
        "offers",
        (
            "twin_id", "brand", "version", "status", "valid_from", "valid_until", "max_uses",
            "prices", "terms_hash", "offered_block", "offered_tx", "closed_block", "closed_tx",
            "accepted_from",
        ),
        _offers,
    ),
    Table(
        "deposits",
        ("block_number", "tx_hash", "brand", "from", "amount", "to_debt"),
        lambda result: result.state.deposits,
    ),
    Table(
        "debts",
        ("block_number", "tx_hash", "event", "brand", "twin_id", "amount", "entry"),
        lambda result: result.state.debts,
    ),
    Table(
        "payouts",
        ("block_number", "tx_hash", "payee", "caller", "amount"),
        lambda result: result.state.payouts,
    ),
    Table(
        "discrepancies",
        ("kind", "message"),
        lambda result: ([d.kind, d.message] for d in result.discrepancies),
    ),
)  # fmt: skip
"""Every table, in the order of ``CsvTable``."""
_BY_NAME: Final = {table.name: table for table in TABLES}


def write_csv(result: AuditResult, directory: Path) -> list[Path]:
    """usages.csv, batches.csv, balances.csv, twins.csv, licenses.csv, offers.csv,
    deposits.csv, debts.csv, payouts.csv and discrepancies.csv in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    return [table.write(result, directory) for table in TABLES]


def csv_table(result: AuditResult, table: CsvTable) -> str:
    """One table of ``write_csv`` as text."""
    with tempfile.TemporaryDirectory(prefix="twin-bridge-audit-") as tmp:
        return _BY_NAME[table].write(result, Path(tmp)).read_text(encoding="utf-8")
