"""The balance checks: at the last audited block the ledger's views (``twinState``, ``ownerOf``,
``brandAccount``, ``brandLimits``, ``pausedSeconds``, ``debtQueue``, ``claimable``,
``licenseVersionCount``, ``totalLiabilities``)
must equal the rebuilt state, and the token balance of the ledger must equal what it owes: the sum
of escrow, debt reserves, accrued royalties and claimable balances (``totalLiabilities()``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from eth_abi.abi import decode, encode
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.address import to_checksum_address

from bridge.audit.state import AuditError, BrandBook, Discrepancy, LedgerState
from bridge.chain.rpc import JsonRpc
from bridge.errors import RpcError


@dataclass(frozen=True, slots=True)
class View:
    """A view function: its arguments' and answer's ABI types (addresses come back checksummed)."""

    name: str
    args: tuple[str, ...]
    returns: tuple[str, ...]

    def calldata(self, *values: Any) -> bytes:
        selector = function_signature_to_4byte_selector(f"{self.name}({','.join(self.args)})")
        return selector + encode(list(self.args), list(values))

    def decode(self, answer: bytes) -> tuple[Any, ...]:
        values = decode(list(self.returns), answer)
        return tuple(
            to_checksum_address(v) if kind == "address" else v
            for kind, v in zip(self.returns, values, strict=True)
        )


TOTAL_LIABILITIES: Final = View("totalLiabilities", (), ("uint256",))
PAYMENT_TOKEN: Final = View("paymentToken", (), ("address",))
TWIN_STATE: Final = View("twinState", ("uint256",), ("uint256", "uint40", "uint256"))
OWNER_OF: Final = View("ownerOf", ("uint256",), ("address",))
BRAND_ACCOUNT: Final = View(
    "brandAccount", ("address",), ("uint256", "uint256", "uint256", "uint256", "uint40", "uint40")
)
BRAND_LIMITS: Final = View(
    "brandLimits",
    ("address",),
    ("uint256", "uint256", "uint256", "uint40", "uint256", "uint256", "uint40", "address"),
)
PAUSED_SECONDS: Final = View("pausedSeconds", (), ("uint256",))
CLAIM_WINDOW: Final = 7 * 24 * 3600
"""``TwinLedger.CLAIM_WINDOW``: a withdrawal request lapses this long after it unlocks."""
DEBT_QUEUE: Final = View("debtQueue", ("address",), ("uint256", "uint256"))
CLAIMABLE: Final = View("claimable", ("address",), ("uint256",))
LICENSE_VERSION_COUNT: Final = View("licenseVersionCount", ("uint256", "address"), ("uint256",))
BALANCE_OF: Final = View("balanceOf", ("address",), ("uint256",))


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


@dataclass(frozen=True, slots=True)
class ViewCheck:
    """One view call and what each value of its answer must be: ``(kind, rebuilt value)`` per
    returned value, in order, all about ``subject``."""

    view: View
    args: tuple[Any, ...]
    subject: str
    expected: tuple[tuple[str, int | str], ...]

    def calldata(self) -> bytes:
        return self.view.calldata(*self.args)

    def checks(self, answer: bytes) -> list[BalanceCheck]:
        values = self.view.decode(answer)
        return [
            BalanceCheck(kind, self.subject, rebuilt, on_chain)
            for (kind, rebuilt), on_chain in zip(self.expected, values, strict=True)
        ]


def view_checks(state: LedgerState, now: int = 0) -> Iterator[ViewCheck]:
    """Every view of the ledger that the rebuilt ``state`` says the answer of at time ``now``
    (the audited block's; 0: the time-dependent views are not checked)."""
    yield ViewCheck(TOTAL_LIABILITIES, (), "ledger", (("total liabilities", state.liabilities()),))
    if now:
        paused = state.paused_seconds_at(now)
        yield ViewCheck(PAUSED_SECONDS, (), "ledger", (("paused seconds", paused),))
    for twin_id, twin in state.twins.items():
        subject = f"twin {twin_id}"
        yield ViewCheck(
            TWIN_STATE,
            (twin_id,),
            subject,
            (
                ("accrued royalties", twin.accrued),
                ("paused since", twin.paused_since),
                ("pause intervals", len(twin.pauses)),
            ),
        )
        yield ViewCheck(OWNER_OF, (twin_id,), subject, (("owner", twin.owner),))
    for brand, book in state.brands.items():
        yield _account_check(state, brand, book, now)
        limits = _limits_check(state, brand, book, now)
        if limits is not None:
            yield limits
        yield ViewCheck(
            DEBT_QUEUE,
            (brand,),
            brand,
            (("debt queue head", book.debt_head), ("debt entries", len(book.debt_entries))),
        )
    for payee, payee_book in state.payees.items():
        yield ViewCheck(CLAIMABLE, (payee,), payee, (("claimable", payee_book.claimable),))
    for (twin_id, brand), pair in state.licenses.items():
        yield ViewCheck(
            LICENSE_VERSION_COUNT,
            (twin_id, brand),
            f"twin {twin_id} / {brand}",
            (("license versions", len(pair.versions())),),
        )


def _account_check(state: LedgerState, brand: str, book: BrandBook, now: int) -> ViewCheck:
    """``brandAccount``: the withdrawal's times as of ``now``, later by the pauses since its
    request (unchecked when ``now`` is unknown and a request waits)."""
    unlocks = lapses = 0
    if book.pending_withdrawal:
        shift = state.paused_seconds_at(now) - book.pause_mark if now else 0
        unlocks = book.unlocks_at + shift
        lapses = unlocks + CLAIM_WINDOW
    return ViewCheck(
        BRAND_ACCOUNT,
        (brand,),
        brand,
        (
            ("escrow", book.escrow),
            ("debt", book.debt),
            ("debt reserve", book.debt_reserve),
            ("pending withdrawal", book.pending_withdrawal),
            ("withdrawal unlocks at", unlocks),
            ("withdrawal lapses at", lapses),
        ),
    )


def _limits_check(state: LedgerState, brand: str, book: BrandBook, now: int) -> ViewCheck | None:
    """``brandLimits`` at ``now``: the limits in force (a raise whose time has come counts),
    the current period's spend and start, a raise still waiting and the brand's own attester
    (None without the ledger's ``config()`` or the time)."""
    config = state.config
    if config is None or not now or int(config[1]) <= 0:
        return None
    period = int(config[1])
    limits, pending = book.limits, book.pending_limits
    if pending is not None and pending[2] <= now:
        limits, pending = pending, None
    per_usage, per_period = (int(config[3]), int(config[4])) if limits is None else limits[:2]
    index = now // period
    spent = book.spent_in_period if book.period_index == index else 0
    waiting = pending or [0, 0, 0]
    return ViewCheck(
        BRAND_LIMITS,
        (brand,),
        brand,
        (
            ("limit per usage", per_usage),
            ("limit per period", per_period),
            ("spent in period", spent),
            ("period start", index * period),
            ("raise per usage", waiting[0]),
            ("raise per period", waiting[1]),
            ("raise effective at", waiting[2]),
            ("own attester", book.attester),
        ),
    )


def check_balances(rpc: JsonRpc, state: LedgerState, *, block: int) -> list[BalanceCheck]:
    """Every rebuilt balance against the ledger's views at ``block``, the token balance last.

    Raises:
        AuditError: the node does not keep the state of ``block``.
    """
    header = rpc.request("eth_getBlockByNumber", [hex(block), False])
    now = int(header["timestamp"], 16) if header else 0
    planned = list(view_checks(state, now))
    calls = [PAYMENT_TOKEN.calldata(), *(check.calldata() for check in planned)]
    try:
        answers = rpc.call_many(state.ledger, calls, block)
    except RpcError as exc:
        raise AuditError(
            f"the ledger's views at block {block} cannot be read ({exc.message}); an archive "
            "node keeps old state, or audit up to a recent block"
        ) from exc
    checks = [
        check
        for view_check, answer in zip(planned, answers[1:], strict=True)
        for check in view_check.checks(answer)
    ]
    (token,) = PAYMENT_TOKEN.decode(answers[0])
    (balance,) = BALANCE_OF.decode(rpc.call(token, BALANCE_OF.calldata(state.ledger), block))
    checks.append(BalanceCheck("token balance", f"ledger in {token}", state.liabilities(), balance))
    return checks


def balance_discrepancies(state: LedgerState, checks: Sequence[BalanceCheck]) -> list[Discrepancy]:
    """The failed checks in words, and the flow identity (deposits less withdrawals and payouts is
    what the ledger owes)."""
    found = [_failed_check(check) for check in checks if not check.ok]
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


def _failed_check(check: BalanceCheck) -> Discrepancy:
    if check.kind != "token balance":
        return Discrepancy(
            "balance",
            f"{check.kind} of {check.subject} is {check.on_chain} on chain, but the events "
            f"add up to {check.rebuilt}",
        )
    gap = int(check.on_chain) - int(check.rebuilt)
    words = "more" if gap > 0 else "less"
    return Discrepancy(
        "balance",
        f"the ledger holds {check.on_chain} tokens but its events say it owes "
        f"{check.rebuilt} (escrow, debt reserves, accrued royalties and claimable "
        f"balances): {abs(gap)} {words} than it owes",
    )
