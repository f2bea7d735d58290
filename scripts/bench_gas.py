"""Gas per settled usage (``make bench-gas``).

Starts a throwaway anvil on a free loopback port with Prague rules and sets up the test world
(``bridge.testing.world``: the access manager and the ledger with its linked libraries, 20 twins
licensed to 3 brands with realistic terms the brands accepted, spending limits in force), then
settles signed usage batches of 1, 10, 100 and 500 usages and, in the same run, the baseline: usages
settled one per transaction. Reports the median ``gasUsed`` per usage from the receipts, the ratio
to the baseline and the figure at 100 usages before this ledger's agreements, limits and roles (a
constant: measured on the previous ledger), and writes ``build/bench/gas.json`` and a README table
snippet ``build/bench/gas.md``.

It is a measurement: it exits 0 whether or not the targets are met, and non-zero only when the
benchmark itself could not run (no anvil, a reverted transaction, a usage that was not paid).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from bridge.chain.toolchain import load_artifact
from bridge.testing.anvil import BLOCK_GAS_LIMIT, HARDFORK, local_anvil
from bridge.testing.world import (
    BRANDS,
    SEED,
    TWINS,
    USAGE_TYPES,
    World,
    random_usages,
    settle,
    setup,
    warm_up_usages,
)
from scripts.bench_common import OUT_DIR, machine, write_report

BATCH_RUNS: Final = {1: 9, 10: 9, 100: 9, 500: 5}
"""Batch size -> number of measured batches."""
SINGLE_TX_RUNS: Final = 50

TARGET_SIZE: Final = 100
TARGET_GAS_PER_USAGE: Final = 6_000
TARGET_RATIO: Final = 10.0
BEFORE_GAS_PER_USAGE: Final = 5_603
"""Gas per usage at 100 usages per batch on the ledger before licenses became agreements and
spending limits and delayed roles came in (``make bench-gas`` at commit 571c28f)."""


# ====================================================================== run and report


@dataclass(frozen=True)
class SizeResult:
    size: int
    samples: list[int]

    @property
    def gas_per_batch(self) -> int:
        return round(statistics.median(self.samples))

    @property
    def gas_per_usage(self) -> int:
        return round(statistics.median(g / self.size for g in self.samples))

    @property
    def mean_gas_per_usage(self) -> int:
        return round(statistics.fmean(self.samples) / self.size)


def _ratio(single: int, per_usage: int) -> float:
    return round(single / per_usage, 2) if per_usage else float("inf")


def report(
    world: World,
    results: list[SizeResult],
    single: SizeResult,
    warm_up: int,
    client: str,
    runtime: bytes,
    seconds: float,
) -> dict[str, Any]:
    ledger_artifact = load_artifact("TwinLedger")
    at_target = next(r for r in results if r.size == TARGET_SIZE)
    single_gpu = single.gas_per_usage
    ratio = _ratio(single_gpu, at_target.gas_per_usage)
    return {
        "batches": [{"size": r.size, "gas_per_usage": r.gas_per_usage} for r in results],
        "single_tx_gas_per_usage": single_gpu,
        "batch_details": [
            {
                "size": r.size,
                "runs": len(r.samples),
                "gas_per_batch_median": r.gas_per_batch,
                "gas_per_usage_median": r.gas_per_usage,
                "gas_per_usage_mean": r.mean_gas_per_usage,
                "ratio_vs_single_tx": _ratio(single_gpu, r.gas_per_usage),
                "samples_gas_used": r.samples,
            }
            for r in results
        ],
        "single_tx": {"runs": len(single.samples), "samples_gas_used": single.samples},
        "warm_up_batch": {"size": len(world.twin_ids) * BRANDS, "gas_used": warm_up},
        "before_gas_per_usage_at_target": BEFORE_GAS_PER_USAGE,
        "targets": {
            "batch_size": TARGET_SIZE,
            "max_gas_per_usage": TARGET_GAS_PER_USAGE,
            "min_ratio_vs_single_tx": TARGET_RATIO,
        },
        "ratio_vs_single_tx_at_target": ratio,
        "target_met": {
            "gas_per_usage_le_6000_at_100": at_target.gas_per_usage <= TARGET_GAS_PER_USAGE,
            "ten_x_below_single_tx_at_100": ratio >= TARGET_RATIO,
        },
        "twins": len(world.twin_ids),
        "brands": BRANDS,
        "licenses": len(world.licenses),
        "capped_licenses": sum(1 for p in world.licenses.values() if p.max_uses),
        "prices_per_license": {
            str(n): sum(1 for p in world.licenses.values() if len(p.prices) == n) for n in (1, 2, 3)
        },
        "twins_with_payees": world.payee_twins,
        "usage_types": {str(t): name for t, (name, _, _) in USAGE_TYPES.items()},
        "seed": SEED,
        "method": (
            "receipt gasUsed of ITwinLedger.settle(batch, attester, signature) sent by a relayer "
            "(includes the 21,000 intrinsic gas, calldata priced under Prague/EIP-7623, the "
            "attester's EIP-712 signature check (SignatureChecker), its ATTESTER_ROLE in the "
            "access manager, each license's acceptance, the brand's spending limits and the "
            "UsagesSettled events). Licenses: offered by the models, accepted by the brands; "
            "spending limits: the world's defaults, never reached. Usages: uniform over twins and "
            "brands, a random licensed usage type, quantity 1-3, used up to 30 min before "
            "signing, sequential usage ids; one UsageGroup per brand, sorted by twin id. Every "
            "usage is checked to be Paid. One warm-up batch (one usage per twin and brand) runs "
            "first and is not counted, so no measured batch pays a twin's first-ever accrual (a "
            "zero-to-non-zero store); a twin whose royalties were just paid out would pay that "
            "again once, which this steady state does not model. New words of the processed-usage "
            "bitmaps (per brand, one word per 256 usage ids; ids are global, so each brand's words "
            "hold about a third of them) are counted where they fall. Per size: median over "
            "its batches of gasUsed / size. Single-tx: the same kind of usage settled alone in "
            "its own signed batch, median gasUsed."
        ),
        "hardfork": HARDFORK,
        "chain": {"client": client, "block_gas_limit": BLOCK_GAS_LIMIT},
        "compiler": {
            "version": ledger_artifact.compiler_version,
            "settings": dict(ledger_artifact.settings),
        },
        "ledger_runtime_bytes": len(runtime),
        "ledger_runtime_sha256": hashlib.sha256(runtime).hexdigest(),
        "machine": machine(),
        "wall_seconds": round(seconds, 1),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def markdown(data: dict[str, Any]) -> str:
    single = data["single_tx_gas_per_usage"]
    settings = data["compiler"]["settings"]
    optimizer = settings.get("optimizer", {})
    lines = [
        "| usages per batch | gas per batch (median) | gas per usage (median) "
        "| one usage per tx ÷ this |",
        "|---:|---:|---:|---:|",
    ]
    for d in data["batch_details"]:
        lines.append(
            f"| {d['size']:,} | {d['gas_per_batch_median']:,} | {d['gas_per_usage_median']:,} "
            f"| {d['ratio_vs_single_tx']:.2f}x |"
        )
    lines.append(f"| 1, one per transaction | {single:,} | {single:,} | 1.00x |")
    met = data["target_met"]
    lines += [
        "",
        f"Measured by `make bench-gas` on {data['chain']['client']} "
        f"with `--hardfork {data['hardfork']}`: "
        f"{data['twins']} twins x {data['brands']} brands, median of "
        + ", ".join(f"{d['runs']}" for d in data["batch_details"])
        + f" batches and {data['single_tx']['runs']} single-usage transactions "
        "after one warm-up batch; "
        f"solc {data['compiler']['version'].split('+')[0]} "
        f"({'via-IR, ' if settings.get('viaIR') else ''}"
        f"optimizer runs {optimizer.get('runs', 'off')}, "
        f"EVM target {settings.get('evmVersion', 'default')}). "
        f"Targets at {TARGET_SIZE} usages: ≤ {TARGET_GAS_PER_USAGE:,} gas per usage "
        f"({_verdict(met['gas_per_usage_le_6000_at_100'])}), ≥ {TARGET_RATIO:.0f}x below one usage "
        f"per transaction ({_verdict(met['ten_x_below_single_tx_at_100'])}).",
    ]
    return "\n".join(lines) + "\n"


def print_table(data: dict[str, Any]) -> None:
    single = data["single_tx_gas_per_usage"]
    print()
    print(
        f"{'size':>8}  {'gas/batch (median)':>19}  {'gas/usage (median)':>19}  {'vs single-tx':>13}"
    )
    for d in data["batch_details"]:
        print(
            f"{d['size']:>8,}  {d['gas_per_batch_median']:>19,}  {d['gas_per_usage_median']:>19,}"
            f"  {d['ratio_vs_single_tx']:>12.2f}x"
        )
    print(f"{'single':>8}  {single:>19,}  {single:>19,}  {1:>12.2f}x")
    met = data["target_met"]
    at = next(d for d in data["batch_details"] if d["size"] == TARGET_SIZE)
    print()
    print(
        f"target ≤ {TARGET_GAS_PER_USAGE:,} gas/usage at {TARGET_SIZE}: "
        f"{_verdict(met['gas_per_usage_le_6000_at_100'])} ({at['gas_per_usage_median']:,}; "
        f"{data['before_gas_per_usage_at_target']:,} before agreements, limits and roles)"
    )
    print(
        f"target ≥ {TARGET_RATIO:.0f}x below single-tx at {TARGET_SIZE}: "
        f"{_verdict(met['ten_x_below_single_tx_at_100'])} "
        f"({data['ratio_vs_single_tx_at_target']:.2f}x)"
    )


def run() -> dict[str, Any]:
    started = time.monotonic()
    with local_anvil() as w3:
        client = str(w3.client_version)
        print(f"{client} on {w3.provider.endpoint_uri}, hardfork {HARDFORK}")  # type: ignore[attr-defined]
        world = setup(w3)
        print(f"ledger at {world.ledger.address}: {TWINS} twins, {BRANDS} brands, set up")
        warm_up = settle(world, warm_up_usages(world))
        results = []
        for size, runs in BATCH_RUNS.items():
            samples = [settle(world, random_usages(world, size)) for _ in range(runs)]
            results.append(SizeResult(size, samples))
            print(f"  batches of {size}: {samples}")
        single = SizeResult(
            1, [settle(world, random_usages(world, 1)) for _ in range(SINGLE_TX_RUNS)]
        )
        print(f"  single-usage transactions: {SINGLE_TX_RUNS} settled")
        runtime = bytes(w3.eth.get_code(world.ledger.address))
        return report(world, results, single, warm_up, client, runtime, time.monotonic() - started)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR, help="where gas.json goes")
    args = parser.parse_args(argv)
    return write_report("gas", run, print_table, args.out_dir, table=markdown)


if __name__ == "__main__":
    sys.exit(main())
