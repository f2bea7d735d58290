"""``twin-bridge audit``: rebuild the ledger from its events alone and check it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from eth_utils.address import is_address, to_checksum_address
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bridge.audit.core import (
    DEFAULT_MAX_BLOCK_RANGE,
    AuditResult,
    run_audit,
    write_csv,
    write_json,
)
from bridge.chain.rpc import JsonRpc
from bridge.deploy.deployment import (
    DEFAULT_NETWORKS_FILE,
    LEDGER,
    DeploymentError,
    load_manifest,
    load_networks,
)
from bridge.errors import BridgeError

MAX_PRINTED: int = 50
"""Discrepancies printed on the terminal (the JSON and CSV exports hold all)."""


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


def _fail(message: str, code: int = 2) -> typer.Exit:
    _stderr().print(message, style="red", markup=False, soft_wrap=True)
    return typer.Exit(code)


def _target(
    network: str | None,
    networks_file: Path,
    rpc: str | None,
    deployment: Path | None,
    ledger: str | None,
    from_block: int | None,
) -> tuple[list[str], str, int, int | None]:
    """RPC URLs, ledger address, first block and expected chain id from the options."""
    urls: list[str] = [rpc] if rpc else []
    chain_id: int | None = None
    if network is not None:
        try:
            networks = load_networks(networks_file)
        except DeploymentError as exc:
            raise _fail(str(exc)) from exc
        if network not in networks:
            raise _fail(f"no network {network!r} in {networks_file}; there are: "
                        f"{', '.join(networks)}")  # fmt: skip
        config = networks[network]
        urls = urls or list(config.rpc_urls)
        if not urls:
            raise _fail(f"network {network} has no RPC URL (set {', '.join(config.missing_env)})")
        deployment = deployment or config.default_manifest_path()
        chain_id = config.chain_id
    if not urls:
        raise _fail("give --network NAME, or --rpc URL with --deployment FILE or --ledger ADDRESS")
    if ledger is not None:
        if not is_address(ledger):
            raise _fail(f"--ledger {ledger!r} is not an address")
        return urls, to_checksum_address(ledger), from_block or 0, chain_id
    if deployment is None:
        raise _fail("--rpc needs --deployment FILE (the manifest) or --ledger ADDRESS")
    try:
        manifest = load_manifest(deployment)
    except DeploymentError as exc:
        raise _fail(str(exc)) from exc
    start = manifest.contracts[LEDGER].block_number if from_block is None else from_block
    return urls, manifest.ledger_address, start, manifest.chain_id


def _connect(urls: list[str], chain_id: int | None) -> JsonRpc:
    errors = []
    for url in urls:
        rpc = JsonRpc(url)
        try:
            answered = int(rpc.request("eth_chainId", []), 16)
        except BridgeError as exc:
            errors.append(str(exc))
            rpc.close()
            continue
        if chain_id is not None and answered != chain_id:
            raise _fail(f"the RPC {url} is chain {answered}, the deployment is on chain {chain_id}")
        return rpc
    raise _fail(f"no RPC answers: {'; '.join(errors)}")


def _amount(value: int) -> str:
    return f"{value:,}"


def print_summary(result: AuditResult, console: Console) -> None:
    """The rebuilt ledger and the checks in one table, then each discrepancy in words."""
    s = result.summary()
    table = Table(
        title=f"Audit of ledger {result.state.ledger} on chain {result.state.chain_id}, blocks "
        f"{result.state.start_block}-{result.to_block}",
        show_header=True,
    )
    table.add_column("what")
    table.add_column("count / amount", justify="right")
    rows: list[tuple[str, Any]] = [
        ("twins", s["twins"]),
        ("  paused now", s["twins_paused"]),
        ("licenses (twin, brand)", s["licenses"]),
        ("  versions granted", s["license_versions"]),
        ("  versions revoked", s["license_versions_revoked"]),
        ("usages settled", s["usages"]),
        ("  paid", s["usages_paid"]),
        ("  rejected", s["usages_rejected"]),
        *((f"    {reason.replace('_', ' ')}", n) for reason, n in s["rejected_by_reason"].items()),
        ("amount paid for usages", _amount(s["amount_paid"])),
        ("settlement batches", s["batches"]),
        ("  verified (digest, signer, role, usages)", s["batches_verified"]),
        ("deposits", s["deposits"]),
        ("  deposited", _amount(s["deposited"])),
        ("escrow withdrawals", s["escrow_withdrawals"]),
        ("  withdrawn", _amount(s["escrow_withdrawn"])),
        ("debt recorded", _amount(s["debt_recorded"])),
        ("debt repaid", _amount(s["debt_repaid"])),
        ("debt outstanding", _amount(s["debt_outstanding"])),
        ("royalties distributed", _amount(s["royalties_distributed"])),
        ("payouts", s["payouts"]),
        ("  withdrawn by the payee itself", s["payouts_by_payee"]),
        ("  paid out", _amount(s["paid_out"])),
        ("escrow held", _amount(s["escrow"])),
        ("royalties accrued on twins", _amount(s["accrued"])),
        ("claimable by payees", _amount(s["claimable"])),
        ("owed in total (liabilities)", _amount(s["liabilities"])),
        ("balance checks against the ledger's views", s["balance_checks"]),
        ("  failed", s["balance_checks_failed"]),
        ("discrepancies", s["discrepancies"]),
    ]
    for what, value in rows:
        table.add_row(what, f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)
    if result.clean:
        console.print("[green]clean: the ledger's state is what its events say[/]")
        return
    console.print(f"[red]{len(result.discrepancies)} discrepancies:[/]")
    for d in result.discrepancies[:MAX_PRINTED]:
        console.print(f"✗ {d.kind}: ", end="", style="red")
        console.print(d.message, markup=False)
    if len(result.discrepancies) > MAX_PRINTED:
        console.print(f"… and {len(result.discrepancies) - MAX_PRINTED} more (see --json or --csv)")


def audit_command(
    network: Annotated[
        str | None, typer.Option("--network", help="A network of the networks file.")
    ] = None,
    networks_file: Annotated[
        Path, typer.Option("--networks", help="The networks file.", dir_okay=False)
    ] = DEFAULT_NETWORKS_FILE,
    rpc: Annotated[str | None, typer.Option("--rpc", help="JSON-RPC URL of the chain.")] = None,
    deployment: Annotated[
        Path | None,
        typer.Option(
            "--deployment",
            "--manifest",
            help="Deployment manifest (default deploy/deployments/<network>.json).",
        ),
    ] = None,
    ledger: Annotated[
        str | None, typer.Option("--ledger", help="The ledger's address (instead of a manifest).")
    ] = None,
    from_block: Annotated[
        int | None,
        typer.Option("--from-block", min=0, help="First block (default: the deployment block)."),
    ] = None,
    to_block: Annotated[
        int | None, typer.Option("--to-block", min=0, help="Last block (default: the latest).")
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option("--state", help="Checkpoint file: resumed from when it exists, then updated."),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the full audit as JSON here.")
    ] = None,
    csv_dir: Annotated[
        Path | None,
        typer.Option("--csv", help="Write usages.csv, batches.csv, balances.csv ... here."),
    ] = None,
    against_db: Annotated[
        str | None,
        typer.Option("--against-db", help="Reconcile with this bridge database (read only)."),
    ] = None,
    max_block_range: Annotated[
        int, typer.Option("--max-block-range", min=1, help="Most blocks per eth_getLogs.")
    ] = DEFAULT_MAX_BLOCK_RANGE,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Rebuild the ledger from its events alone (no bridge database) and check it: every batch's
    signature and role, every usage's outcome and amount, every balance against the ledger's
    views and the token balance. Exits 0 when clean, 1 naming each discrepancy, 2 when the audit
    cannot run."""
    urls, address, start, chain_id = _target(
        network, networks_file, rpc, deployment, ledger, from_block
    )
    client = _connect(urls, chain_id)
    err = _stderr()
    progress = Progress(
        TextColumn("[bold]auditing[/] blocks"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[usages]:,} usages"),
        TimeElapsedColumn(),
        console=err,
        disable=quiet,
        transient=False,
    )
    task = progress.add_task("scan", total=None, usages=0)

    def advance(block: int, target: int, usages: int) -> None:
        progress.update(task, completed=block - start + 1, total=target - start + 1, usages=usages)

    try:
        with progress:
            result = run_audit(
                client,
                ledger=address,
                start_block=start,
                to_block=to_block,
                checkpoint=state,
                max_block_range=max_block_range,
                progress=advance,
            )
        if against_db is not None:
            from bridge.audit.reconcile import reconcile

            result.discrepancies.extend(reconcile(against_db, result.state))
    except BridgeError as exc:
        raise _fail(f"audit stopped: {exc}") from exc
    finally:
        client.close()
    stats = result.stats
    err.print(
        f"scanned {stats.ranges} range(s), {stats.logs:,} logs, {stats.usages:,} usages in "
        f"{stats.seconds:.2f} s"
        + (f" (resumed after block {result.resumed_from})" if result.resumed_from else ""),
        markup=False,
    )
    if json_out is not None:
        write_json(result, json_out)
    if csv_dir is not None:
        write_csv(result, csv_dir)
    print_summary(result, Console(highlight=False, soft_wrap=True))
    if not result.clean:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Adds ``audit`` to the ``twin-bridge`` app."""
    app.command("audit")(audit_command)
