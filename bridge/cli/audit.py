"""``twin-bridge audit``: rebuild the ledger from its events alone and check it (the audit itself
is :mod:`bridge.audit`; this module reads the options, shows progress and prints the result)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

import typer
from rich.console import Console

from bridge.cli.common import DevOption, dev_stack, fail, stderr
from bridge.cli.deploy import DEFAULT_NETWORKS_FILE, network_config
from bridge.errors import BridgeError

if TYPE_CHECKING:
    from rich.progress import Progress
    from rich.table import Table

    from bridge.audit.report import AuditResult
    from bridge.chain.rpc import JsonRpc
    from bridge.cli.money import Token
    from bridge.devstack.datadir import RunningStack

DEFAULT_MAX_BLOCK_RANGE: int = 10_000
"""Most blocks per eth_getLogs by default (``bridge.audit.scan.DEFAULT_MAX_BLOCK_RANGE``; a test
keeps them equal: this module does not import web3 to start fast)."""

MAX_PRINTED: int = 50
"""Discrepancies printed on the terminal (the JSON and CSV exports hold all)."""

NetworkOption = Annotated[
    str | None, typer.Option("--network", help="A network of the networks file.")
]
NetworksOption = Annotated[
    Path, typer.Option("--networks", help="The networks file.", dir_okay=False)
]
RpcOption = Annotated[str | None, typer.Option("--rpc", help="JSON-RPC URL of the chain.")]
DeploymentOption = Annotated[
    Path | None,
    typer.Option(
        "--deployment",
        "--manifest",
        help="Deployment manifest (default deploy/deployments/<network>.json, or the dev stack's).",
    ),
]
LedgerOption = Annotated[
    str | None, typer.Option("--ledger", help="The ledger's address (instead of a manifest).")
]
FromBlockOption = Annotated[
    int | None,
    typer.Option("--from-block", min=0, help="First block (default: the deployment block)."),
]
ToBlockOption = Annotated[
    int | None, typer.Option("--to-block", min=0, help="Last block (default: the latest).")
]
StateOption = Annotated[
    Path | None,
    typer.Option("--state", help="Checkpoint file: resumed from when it exists, then updated."),
]
JsonOption = Annotated[
    Path | None, typer.Option("--json", help="Write the full audit as JSON here.")
]
CsvOption = Annotated[
    Path | None,
    typer.Option("--csv", help="Write usages.csv, batches.csv, balances.csv ... here."),
]
AgainstDbOption = Annotated[
    str | None,
    typer.Option(
        "--against-db",
        help="Reconcile with this bridge database: a URL or a SQLite file, only read (never "
        "created).",
    ),
]
MaxBlockRangeOption = Annotated[
    int, typer.Option("--max-block-range", min=1, help="Most blocks per eth_getLogs.")
]
QuietOption = Annotated[bool, typer.Option("--quiet", help="No progress bar.")]


class AuditTarget(NamedTuple):
    """What to audit, from the options."""

    urls: list[str]
    ledger: str
    start_block: int
    chain_id: int | None
    """The chain the RPC must be on (None: any, when only --rpc and --ledger are given)."""


def _target(
    network: str | None,
    networks_file: Path,
    rpc: str | None,
    deployment: Path | None,
    ledger: str | None,
    from_block: int | None,
    stack: RunningStack | None,
) -> AuditTarget:
    """RPC URLs, ledger address, first block and expected chain id from the options (and the dev
    stack's ``dev.json``: its RPC and manifest, unless the options name others)."""
    from eth_utils.address import is_address, to_checksum_address

    urls: list[str] = [rpc] if rpc else []
    chain_id: int | None = None
    if stack is not None and network is None:
        urls = urls or [stack.rpc_url]
        if ledger is None:
            deployment = deployment or stack.deployment
        chain_id = stack.chain_id
    if network is not None:
        config = network_config(network, networks_file)
        urls = urls or list(config.rpc_urls)
        if not urls:
            raise fail(f"network {network} has no RPC URL (set {', '.join(config.missing_env)})", 2)
        if deployment is None and stack is not None and stack.rpc_url in urls:
            deployment = stack.deployment
        deployment = deployment or config.default_manifest_path()
        chain_id = config.chain_id
    if not urls:
        raise fail(
            "give --dev (a running `make run`), --network NAME, or --rpc URL with --deployment "
            "FILE or --ledger ADDRESS",
            2,
        )
    if ledger is not None:
        if not is_address(ledger):
            raise fail(f"--ledger {ledger!r} is not an address", 2)
        return AuditTarget(urls, to_checksum_address(ledger), from_block or 0, chain_id)
    if deployment is None:
        raise fail("--rpc needs --deployment FILE (the manifest) or --ledger ADDRESS", 2)
    return _manifest_target(urls, deployment, from_block)


def _manifest_target(urls: list[str], deployment: Path, from_block: int | None) -> AuditTarget:
    """The ledger of a deployment manifest, from its deployment block unless told otherwise."""
    from bridge.chain.deploy import LEDGER
    from bridge.deploy.errors import DeploymentError
    from bridge.deploy.manifest import load_manifest

    try:
        manifest = load_manifest(deployment)
    except DeploymentError as exc:
        raise fail(str(exc), 2) from exc
    start = manifest.contracts[LEDGER].block_number if from_block is None else from_block
    return AuditTarget(urls, manifest.ledger_address, start, manifest.chain_id)


def _connect(target: AuditTarget) -> JsonRpc:
    """A JSON-RPC client on the first of the target's URLs that answers; exits 2 when none does
    or one is on another chain."""
    from bridge.chain.rpc import NoRpcAnswersError, WrongChainError, connect_json_rpc

    try:
        return connect_json_rpc(target.urls, chain_id=target.chain_id)
    except WrongChainError as exc:
        raise fail(
            f"the RPC {exc.rpc_url} is chain {exc.chain_id}, the deployment is on chain "
            f"{exc.expected}",
            2,
        ) from exc
    except NoRpcAnswersError as exc:
        raise fail(str(exc), 2) from exc


def _progress(
    console: Console, *, quiet: bool, start: int
) -> tuple[Progress, Callable[[int, int, int], None]]:
    """The progress bar, and the callback ``run_audit`` advances it with."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    progress = Progress(
        TextColumn("[bold]auditing[/] blocks"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[usages]:,} usages"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
        transient=False,
    )
    task = progress.add_task("scan", total=None, usages=0)

    def advance(block: int, target: int, usages: int) -> None:
        progress.update(task, completed=block - start + 1, total=target - start + 1, usages=usages)

    return progress, advance


def _scan_line(result: AuditResult) -> str:
    stats = result.stats
    return (
        f"scanned {stats.ranges} range(s), {stats.logs:,} logs, {stats.usages:,} usages in "
        f"{stats.seconds:.2f} s"
        + (f" (resumed after block {result.resumed_from})" if result.resumed_from else "")
    )


def _summary_rows(s: dict[str, Any], money: Token) -> list[tuple[str, Any]]:
    """The summary table's rows (a declarative table: what, then its count or amount)."""
    return [
        ("twins", s["twins"]),
        ("  paused now", s["twins_paused"]),
        ("licenses (twin, brand)", s["licenses"]),
        ("  versions granted", s["license_versions"]),
        ("  versions revoked", s["license_versions_revoked"]),
        ("usages settled", s["usages"]),
        ("  paid", s["usages_paid"]),
        ("  rejected", s["usages_rejected"]),
        *((f"    {reason.replace('_', ' ')}", n) for reason, n in s["rejected_by_reason"].items()),
        ("amount paid for usages", money.show(s["amount_paid"])),
        ("settlement batches", s["batches"]),
        ("  verified (digest, signer, role, usages)", s["batches_verified"]),
        ("deposits", s["deposits"]),
        ("  deposited", money.show(s["deposited"])),
        ("escrow withdrawals", s["escrow_withdrawals"]),
        ("  withdrawn", money.show(s["escrow_withdrawn"])),
        ("debt recorded", money.show(s["debt_recorded"])),
        ("debt repaid", money.show(s["debt_repaid"])),
        ("debt outstanding", money.show(s["debt_outstanding"])),
        ("royalties distributed", money.show(s["royalties_distributed"])),
        ("payouts", s["payouts"]),
        ("  withdrawn by the payee itself", s["payouts_by_payee"]),
        ("  paid out", money.show(s["paid_out"])),
        ("escrow held", money.show(s["escrow"])),
        ("royalties accrued on twins", money.show(s["accrued"])),
        ("claimable by payees", money.show(s["claimable"])),
        ("owed in total (liabilities)", money.show(s["liabilities"])),
        ("balance checks against the ledger's views", s["balance_checks"]),
        ("  failed", s["balance_checks_failed"]),
        ("discrepancies", s["discrepancies"]),
    ]


def _summary_table(result: AuditResult, money: Token) -> Table:
    from rich.table import Table

    table = Table(
        title=f"Audit of ledger {result.state.ledger} on chain {result.state.chain_id}, blocks "
        f"{result.state.start_block}-{result.to_block}",
        show_header=True,
    )
    table.add_column("what")
    table.add_column("count / amount", justify="right")
    for what, value in _summary_rows(result.summary(), money):
        table.add_row(what, f"{value:,}" if isinstance(value, int) else str(value))
    return table


def print_summary(result: AuditResult, console: Console, money: Token) -> None:
    """The rebuilt ledger and the checks in one table (amounts in the payment token ``money``),
    then each discrepancy in words."""
    console.print(_summary_table(result, money))
    if result.clean:
        console.print("[green]clean: the ledger's state is what its events say[/]")
        console.print(result.database_line(), markup=False)
        return
    console.print(f"[red]{len(result.discrepancies)} discrepancies:[/]")
    for d in result.discrepancies[:MAX_PRINTED]:
        console.print(f"✗ {d.kind}: ", end="", style="red")
        console.print(d.message, markup=False)
    if len(result.discrepancies) > MAX_PRINTED:
        console.print(f"… and {len(result.discrepancies) - MAX_PRINTED} more (see --json or --csv)")
    console.print(result.database_line(), markup=False)


def _token(target: AuditTarget) -> Token:
    """The payment token's symbol and decimals, from the chain (an audit writes nothing it was
    not asked to, so no cache), for the amounts of the summary; exits 2 when the chain cannot
    say."""
    from bridge.chain.client import Web3ChainClient
    from bridge.cli.money import read_token

    try:
        return read_token(Web3ChainClient(target.urls), target.ledger)
    except BridgeError as exc:
        raise fail(f"audit stopped: {exc}", 2) from exc


def _audit(
    target: AuditTarget,
    *,
    to_block: int | None,
    checkpoint: Path | None,
    max_block_range: int,
    against_db: str | None,
    console: Console,
    quiet: bool,
) -> AuditResult:
    """Runs the audit (and the reconciliation with a bridge database, if asked); exits 2 when
    it cannot run to the end."""
    from bridge.audit.run import run_audit

    client = _connect(target)
    progress, advance = _progress(console, quiet=quiet, start=target.start_block)
    try:
        with progress:
            result = run_audit(
                client,
                ledger=target.ledger,
                start_block=target.start_block,
                to_block=to_block,
                checkpoint=checkpoint,
                max_block_range=max_block_range,
                progress=advance,
            )
        if against_db is not None:
            from bridge.audit.reconcile import reconcile

            result.database = reconcile(against_db, result.state)
            result.discrepancies.extend(result.database.discrepancies)
    except BridgeError as exc:
        raise fail(f"audit stopped: {exc}", 2) from exc
    finally:
        client.close()
    return result


def audit_command(
    dev: DevOption = False,
    network: NetworkOption = None,
    networks_file: NetworksOption = DEFAULT_NETWORKS_FILE,
    rpc: RpcOption = None,
    deployment: DeploymentOption = None,
    ledger: LedgerOption = None,
    from_block: FromBlockOption = None,
    to_block: ToBlockOption = None,
    state: StateOption = None,
    json_out: JsonOption = None,
    csv_dir: CsvOption = None,
    against_db: AgainstDbOption = None,
    max_block_range: MaxBlockRangeOption = DEFAULT_MAX_BLOCK_RANGE,
    quiet: QuietOption = False,
) -> None:
    """Rebuild the ledger from its events alone (no bridge database) and check it: every batch's
    signature and role, every usage's outcome and amount, every balance against the ledger's
    views and the token balance. Exits 0 when clean, 1 naming each discrepancy, 2 when the audit
    cannot run."""
    from bridge.audit.export import write_csv
    from bridge.audit.report import write_json

    stack = dev_stack(asked=dev, elsewhere=bool(network or rpc))
    target = _target(network, networks_file, rpc, deployment, ledger, from_block, stack)
    err = stderr()
    result = _audit(
        target,
        to_block=to_block,
        checkpoint=state,
        max_block_range=max_block_range,
        against_db=against_db,
        console=err,
        quiet=quiet,
    )
    err.print(_scan_line(result), markup=False)
    if json_out is not None:
        write_json(result, json_out)
    if csv_dir is not None:
        write_csv(result, csv_dir)
    money = _token(target)
    print_summary(result, Console(highlight=False, soft_wrap=True), money)
    if not result.clean:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Adds ``audit`` to the ``twin-bridge`` app."""
    app.command("audit")(audit_command)
