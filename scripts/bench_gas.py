"""Gas per settled usage (``make bench-gas``), after and before issue 13's ledger change.

Starts a throwaway anvil on a free loopback port with Prague rules and sets up the test world
(``bridge.testing.world``: the access manager and the ledger with its linked libraries, 20 twins
licensed to 3 brands with realistic terms the brands accepted, spending limits in force), then
settles signed usage batches of 1, 10, 100 and 500 usages and, in the same run, usages settled one
per transaction. Reports the median ``gasUsed`` per usage from the receipts and the ratio to one
usage per transaction.

In the same run it measures the ledger before agreements, limits and roles (``BASELINE_COMMIT``)
with that commit's own benchmark: ``git archive`` of its contracts, ``bridge`` package and scripts
into a temporary directory, where a subprocess of this Python, with those packages first on
``PYTHONPATH`` and the repository's ``node_modules`` linked in (read only), compiles its contracts
into that directory and runs its ``scripts/bench_gas.py``. Each batch size is reported before and
after, with the ratio after / before. A clone without that commit (shallow, or no git at all) gets
the before figures reported as unavailable, with the reason.

Writes ``build/bench/gas.json`` and a README table snippet ``build/bench/gas.md``. It is a
measurement: it exits 0 whether or not the targets are met, and non-zero only when the benchmark
itself could not run (no anvil, a reverted transaction, a usage that was not paid, or the baseline
commit is there but its benchmark fails).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
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
from scripts.bench_common import OUT_DIR, REPO_ROOT, BenchError, machine, write_report

BATCH_RUNS: Final = {1: 9, 10: 9, 100: 9, 500: 5}
"""Batch size -> number of measured batches."""
SINGLE_TX_RUNS: Final = 50

TARGET_SIZE: Final = 100
TARGET_GAS_PER_USAGE: Final = 6_000
TARGET_RATIO: Final = 10.0

BASELINE_COMMIT: Final = "571c28fc4c65e4ffb97e5cbfd4cbb02fe72ac844"
"""The ledger before issue 13's change: the parent of 50a8613, the commit that made licenses offers
the brand accepts and brought in brand spending limits and roles in an access manager. Its tree has
its own ``scripts/bench_gas.py`` (the same world and batches, on that ledger), which measures it."""
BASELINE_PATHS: Final = ("contracts", "bridge", "scripts", "pyproject.toml", "package.json")
"""What that benchmark needs from its commit: the sources it compiles, the ``bridge`` package that
compiles, deploys and settles them, its ``scripts`` (the benchmark and the solc shim) and the solc
pin (``package.json``)."""
BASELINE_REPORT: Final = Path("build", "bench", "gas.json")
"""Where that commit's ``bench_gas`` writes, under its own root (its ``bench_common.OUT_DIR``)."""
BASELINE_COMPILE: Final = """\
import sys
from pathlib import Path

import bridge
import scripts
from bridge.chain.toolchain import compile_contracts

root = Path.cwd().resolve()
for package in (bridge, scripts):
    if not Path(package.__file__).resolve().is_relative_to(root):
        sys.exit(f"{package.__name__} imported from {package.__file__}, not from {root}")
result = compile_contracts()
if not result.artifacts_dir.resolve().is_relative_to(root):
    sys.exit(f"compiled into {result.artifacts_dir}, not under {root}")
print(f"compiled {len(result.contracts)} contracts with solc {result.solc.version}")
"""
"""Run in the archived tree: checks that its own ``bridge`` and ``scripts`` are the ones imported,
then compiles its contracts with its own toolchain (whose root is the archived tree, so the
artifacts go to its ``build/artifacts``). That commit's ``bench_gas`` expects them compiled."""
BASELINE_TIMEOUT_S: Final = 1_800.0
"""Per step (compile, benchmark); the wasm solc takes about a minute on 2 cores."""


class BaselineUnavailableError(Exception):
    """This clone cannot give the baseline commit's tree (no git, a shallow clone, no such
    commit); the baseline is reported unavailable."""


# ====================================================================== baseline


def _git(*args: str) -> subprocess.CompletedProcess[bytes]:
    git = shutil.which("git")
    if git is None:
        raise BaselineUnavailableError("git is not installed")
    return subprocess.run(  # noqa: S603 - git, with fixed arguments
        [git, "-C", str(REPO_ROOT), *args], capture_output=True, check=False
    )


def _stderr(proc: subprocess.CompletedProcess[bytes]) -> str:
    return proc.stderr.decode(errors="replace").strip()


def baseline_commit() -> str:
    """The baseline commit's full id, once it is known to be in this clone's history.

    Raises:
        BaselineUnavailableError: no git, not a git clone, or a history without that commit.
    """
    short = BASELINE_COMMIT[:7]
    found = _git("rev-parse", "--verify", "--quiet", f"{BASELINE_COMMIT}^{{commit}}")
    if found.returncode == 0:
        return found.stdout.decode().strip()
    shallow = _git("rev-parse", "--is-shallow-repository")
    if shallow.returncode != 0:
        raise BaselineUnavailableError(
            f"{REPO_ROOT} is not a git clone, so commit {short} cannot be read ({_stderr(shallow)})"
        )
    if shallow.stdout.strip() == b"true":
        raise BaselineUnavailableError(
            f"shallow clone: commit {short} is not in its history (`git fetch --unshallow`)"
        )
    raise BaselineUnavailableError(f"commit {short} is not in this clone's history")


def extract_baseline(commit: str, tree: Path) -> None:
    """Writes ``BASELINE_PATHS`` of ``commit`` into ``tree`` and links the repository's
    ``node_modules`` there (anvil, solc and OpenZeppelin, read only)."""
    archive = _git("archive", "--format=tar", commit, "--", *BASELINE_PATHS)
    if archive.returncode != 0:
        raise BenchError(f"git archive {commit[:7]} failed: {_stderr(archive)}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(tree, filter="data")
    node_modules = REPO_ROOT / "node_modules"
    if not node_modules.is_dir():
        raise BenchError(f"{node_modules} not found: run `make node_modules`")
    (tree / "node_modules").symlink_to(node_modules, target_is_directory=True)


def _run_python(tree: Path, args: Sequence[str], step: str) -> str:
    """``args`` run by this Python in ``tree``, whose ``bridge`` and ``scripts`` come first on
    ``PYTHONPATH`` (before the installed ones); its standard output.

    Raises:
        BenchError: it failed or did not finish in time.
    """
    paths = [str(tree), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    try:
        proc = subprocess.run(  # noqa: S603 - this interpreter, on the archived tree
            [sys.executable, *args],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
            timeout=BASELINE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"baseline {step}: not done in {BASELINE_TIMEOUT_S:.0f} s") from exc
    if proc.returncode != 0:
        output = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise BenchError(f"baseline {step} failed (exit {proc.returncode}):\n{output}")
    return proc.stdout


def measure_baseline_at(commit: str) -> dict[str, Any]:
    """That commit's own ``bench_gas`` report, run on its own tree in a temporary directory.

    Raises:
        BenchError: the tree could not be written, compiled or benchmarked.
    """
    with tempfile.TemporaryDirectory(prefix=f"bench-gas-{commit[:7]}-") as tmp:
        tree = Path(tmp)
        extract_baseline(commit, tree)
        print(f"baseline {commit[:7]}: archived into {tree}")
        compiled = _run_python(tree, ["-c", BASELINE_COMPILE], "compile").strip()
        print(f"baseline {commit[:7]}: {compiled}")
        _run_python(tree, ["-m", "scripts.bench_gas"], "benchmark")
        try:
            report: dict[str, Any] = json.loads((tree / BASELINE_REPORT).read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise BenchError(f"baseline benchmark wrote no readable {BASELINE_REPORT}") from exc
    return report


def measure_baseline() -> dict[str, Any]:
    """The before figures for the report: ``available`` and the baseline's medians per batch
    size, or ``available`` false and the ``reason``.

    Raises:
        BenchError: the commit is there but its benchmark failed.
    """
    try:
        commit = baseline_commit()
    except BaselineUnavailableError as exc:
        print(f"bench-gas: baseline unavailable: {exc}; no before figures", file=sys.stderr)
        return {"commit": BASELINE_COMMIT, "available": False, "reason": str(exc)}
    report = measure_baseline_at(commit)
    single = report["single_tx_gas_per_usage"]
    for d in report["batch_details"]:
        print(f"  baseline batches of {d['size']}: {d['gas_per_usage_median']:,} gas per usage")
    print(f"  baseline single-usage transactions: {single:,} gas")
    return {
        "commit": commit,
        "available": True,
        "measured": (
            "in this run, by the commit's own scripts/bench_gas.py on its own contracts and "
            "bridge (git archive into a temporary directory, compiled there)"
        ),
        "batches": [
            {
                "size": d["size"],
                "runs": d["runs"],
                "gas_per_batch_median": d["gas_per_batch_median"],
                "gas_per_usage_median": d["gas_per_usage_median"],
                "ratio_vs_single_tx": d["ratio_vs_single_tx"],
            }
            for d in report["batch_details"]
        ],
        "single_tx_gas_per_usage": single,
        "hardfork": report["hardfork"],
        "chain": report["chain"],
        "compiler": report["compiler"],
        "ledger_runtime_bytes": report["ledger_runtime_bytes"],
        "ledger_runtime_sha256": report["ledger_runtime_sha256"],
        "wall_seconds": report["wall_seconds"],
    }


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


def _after_vs_before(after: int, before: int | None) -> float | None:
    return round(after / before, 4) if before else None


def report(
    world: World,
    results: list[SizeResult],
    single: SizeResult,
    warm_up: int,
    client: str,
    runtime: bytes,
    baseline: dict[str, Any],
    seconds: float,
) -> dict[str, Any]:
    ledger_artifact = load_artifact("TwinLedger")
    at_target = next(r for r in results if r.size == TARGET_SIZE)
    single_gpu = single.gas_per_usage
    ratio = _ratio(single_gpu, at_target.gas_per_usage)
    before = {b["size"]: b["gas_per_usage_median"] for b in baseline.get("batches", [])}
    before_single = baseline.get("single_tx_gas_per_usage")
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
                "before_gas_per_usage_median": before.get(r.size),
                "after_vs_before": _after_vs_before(r.gas_per_usage, before.get(r.size)),
                "samples_gas_used": r.samples,
            }
            for r in results
        ],
        "single_tx": {
            "runs": len(single.samples),
            "samples_gas_used": single.samples,
            "before_gas_per_usage": before_single,
            "after_vs_before": _after_vs_before(single_gpu, before_single),
        },
        "warm_up_batch": {"size": len(world.twin_ids) * BRANDS, "gas_used": warm_up},
        "before_gas_per_usage_at_target": before.get(TARGET_SIZE),
        "after_vs_before_at_target": _after_vs_before(
            at_target.gas_per_usage, before.get(TARGET_SIZE)
        ),
        "baseline": baseline,
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
            "its own signed batch, median gasUsed. Before: the baseline commit's own bench_gas "
            "(the same world, seed and batches on that ledger and bridge), run in the same run; "
            "after_vs_before = after / before gas per usage."
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


def _gas(value: int | None) -> str:
    return "n/a" if value is None else f"{value:,}"


def _times(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}x"


def _baseline_note(baseline: dict[str, Any]) -> str:
    commit = baseline["commit"][:7]
    if not baseline["available"]:
        return f"before (commit {commit}): unavailable, {baseline['reason']}"
    return f"before: commit {commit}, measured in this run by its own bench_gas"


def markdown(data: dict[str, Any]) -> str:
    single = data["single_tx_gas_per_usage"]
    settings = data["compiler"]["settings"]
    optimizer = settings.get("optimizer", {})
    baseline = data["baseline"]
    lines = [
        "| usages per batch | gas per batch (median) | gas per usage (median) "
        f"| before ({baseline['commit'][:7]}): gas per usage | after ÷ before "
        "| one usage per tx ÷ this |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for d in data["batch_details"]:
        lines.append(
            f"| {d['size']:,} | {d['gas_per_batch_median']:,} | {d['gas_per_usage_median']:,} "
            f"| {_gas(d['before_gas_per_usage_median'])} | {_times(d['after_vs_before'])} "
            f"| {d['ratio_vs_single_tx']:.2f}x |"
        )
    tx = data["single_tx"]
    lines.append(
        f"| 1, one per transaction | {single:,} | {single:,} | {_gas(tx['before_gas_per_usage'])} "
        f"| {_times(tx['after_vs_before'])} | 1.00x |"
    )
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
        f"EVM target {settings.get('evmVersion', 'default')}); "
        f"{_baseline_note(baseline)}. "
        f"Targets at {TARGET_SIZE} usages: ≤ {TARGET_GAS_PER_USAGE:,} gas per usage "
        f"({_verdict(met['gas_per_usage_le_6000_at_100'])}), ≥ {TARGET_RATIO:.0f}x below one usage "
        f"per transaction ({_verdict(met['ten_x_below_single_tx_at_100'])}).",
    ]
    return "\n".join(lines) + "\n"


def print_table(data: dict[str, Any]) -> None:
    single = data["single_tx_gas_per_usage"]
    tx = data["single_tx"]
    print()
    print(
        f"{'size':>8}  {'gas/batch (median)':>19}  {'gas/usage (median)':>19}"
        f"  {'before':>8}  {'after/before':>12}  {'vs single-tx':>13}"
    )
    for d in data["batch_details"]:
        print(
            f"{d['size']:>8,}  {d['gas_per_batch_median']:>19,}  {d['gas_per_usage_median']:>19,}"
            f"  {_gas(d['before_gas_per_usage_median']):>8}  {_times(d['after_vs_before']):>12}"
            f"  {d['ratio_vs_single_tx']:>12.2f}x"
        )
    print(
        f"{'single':>8}  {single:>19,}  {single:>19,}  {_gas(tx['before_gas_per_usage']):>8}"
        f"  {_times(tx['after_vs_before']):>12}  {1:>12.2f}x"
    )
    met = data["target_met"]
    at = next(d for d in data["batch_details"] if d["size"] == TARGET_SIZE)
    print()
    print(_baseline_note(data["baseline"]))
    print(
        f"target ≤ {TARGET_GAS_PER_USAGE:,} gas/usage at {TARGET_SIZE}: "
        f"{_verdict(met['gas_per_usage_le_6000_at_100'])} ({at['gas_per_usage_median']:,}; "
        f"before {_gas(data['before_gas_per_usage_at_target'])}, "
        f"after/before {_times(data['after_vs_before_at_target'])})"
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
    baseline = measure_baseline()
    return report(
        world, results, single, warm_up, client, runtime, baseline, time.monotonic() - started
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR, help="where gas.json goes")
    args = parser.parse_args(argv)
    return write_report("gas", run, print_table, args.out_dir, table=markdown)


if __name__ == "__main__":
    sys.exit(main())
